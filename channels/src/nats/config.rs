//! What a NATS channel is configured with: its settings, the names of a
//! broker's stream, subject and cursor consumers, and the JetStream stream and
//! consumer configurations they describe. Pure.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};

use crate::channel::DEFAULT_TTL;
use cebus_api::{NatsCredentials, NatsKeys, NatsTls};

/// The durable consumer of a broker's stream.
pub const CONSUMER_NAME: &str = "cebus";
/// Prefix of the durable consumers of per-trigger cursors; the trigger's name
/// follows ([`cursor_consumer`]).
pub const CURSOR_PREFIX: &str = "trigger_";
/// Default time JetStream waits for an ack before it redelivers (after a crash).
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(10);
/// Default duplicate window (`duplicateWindow`).
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Default age limit of an unacknowledged event (`maxAge`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Where the stream keeps its messages (`storage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsStorage {
    /// On disk (the default): survives a nats-server restart.
    File,
    /// In the server's memory.
    Memory,
}

/// Everything a NATS channel needs: connection, stream and consumer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// Server URLs (`nats://host:port`, `tls://host:port`), tried in turn.
    pub servers: Vec<String>,
    /// Credentials (Debug output redacts the secrets).
    pub auth: NatsCredentials,
    /// TLS: CA to trust, client certificate, TLS on `nats://` URLs too.
    pub tls: NatsTls,
    /// Where `auth` and `tls` came from, for messages.
    pub keys: &'static NatsKeys,
    /// Stream name.
    pub stream: String,
    /// The stream's only subject, where events are published.
    pub subject: String,
    /// Storage of the stream.
    pub storage: NatsStorage,
    /// Replicas of the stream (1 on a single server).
    pub replicas: usize,
    /// Age after which JetStream drops an event, acknowledged or not.
    pub max_age: Duration,
    /// Size limit of the stream in bytes; beyond it appends fail (503).
    pub max_bytes: Option<i64>,
    /// Message limit of the stream; beyond it appends fail (503).
    pub max_messages: Option<i64>,
    /// Largest message (headers and data) the stream takes.
    pub max_message_size: Option<i32>,
    /// Window in which a second publish with the same `Nats-Msg-Id` is dropped.
    pub duplicate_window: Duration,
    /// Records handed out and not yet acknowledged, at most (`max_ack_pending`).
    pub window: usize,
    /// JetStream's ack wait (redelivery after a crash).
    pub ack_wait: Duration,
    /// Hop budget of an event published by another client without one.
    pub default_ttl: u32,
}

impl NatsSettings {
    /// Defaults for broker `namespace/broker` on `servers`: file storage, one
    /// replica, 24 h, no size limits, a 2 min duplicate window.
    pub fn new(servers: Vec<String>, namespace: &str, broker: &str) -> NatsSettings {
        NatsSettings {
            servers,
            auth: NatsCredentials::None,
            tls: NatsTls::default(),
            keys: &NatsKeys::BROKER,
            stream: stream_name(namespace, broker),
            subject: subject_name(namespace, broker),
            storage: NatsStorage::File,
            replicas: 1,
            max_age: DEFAULT_MAX_AGE,
            max_bytes: None,
            max_messages: None,
            max_message_size: None,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            window: crate::memory::DEFAULT_CAPACITY,
            ack_wait: DEFAULT_ACK_WAIT,
            default_ttl: DEFAULT_TTL,
        }
    }

    /// The JetStream stream configuration these settings describe.
    pub(super) fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![self.subject.clone()],
            // Interest: a message stays until the consumer acknowledged it, so the
            // stream holds the backlog, and its limits bound the backlog.
            retention: stream::RetentionPolicy::Interest,
            // A full stream refuses new events (503) rather than dropping old,
            // unacknowledged ones.
            discard: stream::DiscardPolicy::New,
            storage: match self.storage {
                NatsStorage::File => stream::StorageType::File,
                NatsStorage::Memory => stream::StorageType::Memory,
            },
            num_replicas: self.replicas,
            max_age: self.max_age,
            max_bytes: self.max_bytes.unwrap_or(-1),
            max_messages: self.max_messages.unwrap_or(-1),
            max_message_size: self.max_message_size.unwrap_or(-1),
            duplicate_window: self.duplicate_window,
            ..Default::default()
        }
    }

    /// The durable pull consumer configuration.
    pub(super) fn consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(CONSUMER_NAME.to_owned()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_ack_pending: i64::try_from(self.window.max(1)).unwrap_or(i64::MAX),
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            // Redelivery is for crashes only; it may happen any number of times.
            max_deliver: -1,
            ..Default::default()
        }
    }
}

/// The stream of broker `namespace/name`: `cebus_<namespace>_<name>` with `.` in
/// the name written `_` (stream names may not contain dots). Injective, because
/// Kubernetes names never contain `_` and namespaces never contain `.`.
pub fn stream_name(namespace: &str, broker: &str) -> String {
    format!("cebus_{namespace}_{}", broker.replace('.', "_"))
}

/// The durable consumer of trigger `name`'s cursor: `trigger_<name>` with `.`
/// written `_` (consumer names may not contain dots); injective, because
/// Kubernetes names never contain `_`.
pub fn cursor_consumer(trigger: &str) -> String {
    format!("{CURSOR_PREFIX}{}", trigger.replace('.', "_"))
}

/// The subject of broker `namespace/name`: `cebus.<namespace>.<name>`.
pub fn subject_name(namespace: &str, broker: &str) -> String {
    format!("cebus.{namespace}.{broker}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_injective_and_valid() {
        assert_eq!(stream_name("team", "orders.v1"), "cebus_team_orders_v1");
        assert_eq!(subject_name("team", "orders.v1"), "cebus.team.orders.v1");
        assert_ne!(stream_name("a", "b-c"), stream_name("a-b", "c"));
    }
}
