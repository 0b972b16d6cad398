//! The NATS JetStream channel: a durable broker channel on a nats-server.
//!
//! The scheme (docs/architecture.md, "NATS JetStream"): one stream per broker
//! (`cebus_<namespace>_<broker>`, subject `cebus.<namespace>.<broker>`, interest
//! retention so acknowledged events leave the stream) and one durable pull
//! consumer (`cebus`) per broker with explicit acks and `max_ack_pending` = the
//! broker's window. `append` publishes each event in binary mode with
//! `Nats-Msg-Id` = `source`+`id` and returns only once JetStream acknowledged every
//! publish of the batch. `recv` yields the consumer's messages as records whose
//! offset is the stream sequence; `ack(offset)` acknowledges that message.
//!
//! Retries and backoff are the broker's (the core's schedule); JetStream
//! redelivery only covers a crash: a record still being delivered gets an
//! in-progress ack (`+WPI`) every third of `ack_wait`, so JetStream never
//! redelivers it while cebus is working on it.
//!
//! Connecting is asynchronous: [`NatsChannel::connect`] returns at once and a task
//! connects, creates or updates the stream and the consumer, and then fetches;
//! until it is ready (and whenever the connection is down) `append` fails with
//! [`ChannelError::Unavailable`], which ingress turns into 503.

pub mod binding;
mod channel;
mod config;
mod connect;
mod cursor;
mod fetch;
mod record;
#[cfg(test)]
mod tests;

pub use channel::{NatsChannel, RETRY_AFTER};
pub use config::{
    CONSUMER_NAME, CURSOR_PREFIX, DEFAULT_ACK_WAIT, NatsSettings, cursor_consumer, stream_name,
    subject_name,
};
pub use cursor::NatsReader;
pub use record::{decode, encode};

pub use crate::durable::{TTL_HEADER, TYPED_HEADER};
