//! The Kafka channel: a durable broker channel on Apache Kafka, Knative's `Kafka`
//! broker class.
//!
//! The scheme (docs/architecture.md, "Kafka"): one topic per broker
//! (`knative-broker-<namespace>-<name>`, created if missing) and ONE consumer per
//! broker (group `knative-broker-<namespace>-<name>`) whose position is shared by
//! all the broker's triggers — not Knative's consumer group per trigger, so 1,000
//! triggers cost 1,000 matcher entries, not 1,000 consumers.
//!
//! Write path: each event is a binary-mode record (`ce_` headers, `content-type`,
//! `partitionkey` as the key) plus the hop budget and extension types in the
//! headers every durable channel adds ([`TTL_HEADER`], [`TYPED_HEADER`]); the producer is
//! idempotent with `acks=all`, and `append` returns only once Kafka acknowledged
//! every record of the batch.
//!
//! Read path: records are handed out with [`Record::offset`] = partition and
//! Kafka offset packed into one `u64` ([`position`]), and [`Record::partition`]
//! the partition. Auto-commit is off: per partition the set of handed-out,
//! unacknowledged offsets is kept, and the committed offset is the lowest of
//! them (or one past the highest acknowledged), committed every
//! [`COMMIT_INTERVAL`] and on close. So a crash redelivers at most the window
//! plus what was acknowledged in the last interval. At most `window` records are
//! handed out unacknowledged; when the window is full the partitions are paused
//! (the consumer keeps polling, so it stays in its group).
//!
//! Cursors ([`crate::log::Cursor`]): a trigger that falls behind reads on its own,
//! through a consumer assigned (not subscribed) to every partition whose
//! position is committed under its own group,
//! `cebus/<namespace>/<broker>/<trigger>` ([`KafkaSettings::cursor_prefix`]).
//! The group exists only while the trigger lags; `kafka-consumer-groups.sh
//! --describe` shows its lag.
//!
//! Connecting is asynchronous: [`KafkaChannel::connect`] returns at once and a
//! task creates the clients and the topic and subscribes; until then (and when a
//! produce fails) `append` fails with [`ChannelError::Unavailable`], which ingress
//! turns into 503.

pub mod binding;
mod channel;
mod client;
mod commit;
mod config;
mod connect;
mod consume;
mod cursor;
mod record;
#[cfg(test)]
mod tests;

pub use crate::durable::{TTL_HEADER, TYPED_HEADER};
pub use channel::{KafkaChannel, RETRY_AFTER};
pub use client::{SESSION_TIMEOUT_MS, client_config, consumer_settings};
pub use commit::CommitTracker;
pub use config::{
    DEFAULT_DELIVERY_TIMEOUT, DEFAULT_PARTITIONS, DEFAULT_REPLICATION_FACTOR, FETCH_WAIT_MAX_MS,
    KafkaSettings, LINGER_MS, group_name, topic_name,
};
pub use consume::COMMIT_INTERVAL;
pub use cursor::KafkaReader;
pub use record::{decode, encode, position, split};
