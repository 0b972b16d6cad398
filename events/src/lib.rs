//! CloudEvents as cebus carries them: the event value, its validation against the
//! CloudEvents spec, and the HTTP binding (binary, structured and batch modes).

pub mod event;

pub use event::{AttrValue, Event, SpecVersion, attr};
