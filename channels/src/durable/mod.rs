//! What every durable channel backend shares, written once beside the traits:
//! the feed a reader task hands records through ([`Feed`]), the cebus headers a
//! stored event carries and the rules that turn a stored record back into an
//! envelope ([`headers`]), the connection state and the set-up retry loop
//! ([`link`]).
//! A backend folder imports from here, never from another backend.

mod feed;
pub mod headers;
pub(crate) mod link;

pub(crate) use feed::Feed;
pub use headers::{TTL_HEADER, TYPED_HEADER};
