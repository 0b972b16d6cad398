//! CloudEvents as cebus carries them: the event value, its validation against the
//! CloudEvents spec, and the HTTP binding (binary, structured and batch modes).

pub mod error;
pub mod event;
pub mod http;
pub mod json;
pub mod time;
pub mod validate;
pub mod wire;

pub use event::{AttrValue, Event, SpecVersion, attr};
pub use http::{
    DecodeError, Decoded, decode, decode_and_validate, encode_batch, encode_binary,
    encode_structured,
};
pub use json::{from_json, to_json};
pub use validate::{EventError, is_rfc3339, validate};
