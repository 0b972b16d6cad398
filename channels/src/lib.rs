//! Channels: where a broker stores each accepted event until every matching
//! trigger has had it delivered or dead-lettered. One trait ([`Channel`], and
//! [`Log`] for the durable ones with per-trigger cursors), one folder per
//! backend (in-memory, NATS JetStream and Kafka; the embedded log later), what
//! the durable backends share written once ([`durable`]), and one place that
//! names the backends: [`open`](mod@open).
//!
//! The contract suite that every backend must pass is compiled for tests only
//! (this crate's own, or a crate enabling the `contract` feature).

pub mod binding;
pub mod channel;
#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod durable;
pub mod kafka;
pub mod log;
pub mod memory;
pub mod nats;
pub mod open;

pub use channel::{Channel, ChannelError, DEFAULT_TTL, Envelope, Record};
pub use kafka::{KafkaChannel, KafkaSettings};
pub use log::{CursorReader, CursorStart, Log};
pub use memory::MemoryChannel;
pub use nats::{NatsChannel, NatsSettings};
pub use open::{AnyChannel, AnyReader, ChannelConfig, Placement, open};

/// A cursor of any backend, as the broker holds it.
pub type Cursor = log::Cursor<AnyReader>;
