//! What a NATS channel is configured with: its settings, the names of a
//! broker's stream, subject and cursor consumers, and the JetStream stream and
//! consumer configurations they describe. Pure.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};

use cebus_api::{NatsBrokerConfig, NatsStorageKind};

use crate::channel::DEFAULT_TTL;

/// The durable consumer of a broker's stream.
pub const CONSUMER_NAME: &str = "cebus";
/// Prefix of the durable consumers of per-trigger cursors; the trigger's name
/// follows ([`cursor_consumer`]).
pub const CURSOR_PREFIX: &str = "trigger_";
/// Default time JetStream waits for an ack before it redelivers (after a crash).
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(10);

/// Everything a NATS channel needs: the broker's NATS configuration as it was
/// parsed from its ConfigMap (servers, credentials, TLS, the stream's storage
/// and limits; [`NatsBrokerConfig`], taken as it is), and where the broker puts
/// its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// The broker's NATS configuration.
    pub config: NatsBrokerConfig,
    /// Stream name.
    pub stream: String,
    /// The stream's only subject, where events are published.
    pub subject: String,
    /// Records handed out and not yet acknowledged, at most (`max_ack_pending`).
    pub window: usize,
    /// JetStream's ack wait (redelivery after a crash).
    pub ack_wait: Duration,
    /// Hop budget of an event published by another client without one.
    pub default_ttl: u32,
}

impl NatsSettings {
    /// Broker `namespace/broker` on `config`, with cebus's stream and subject
    /// names, the default window, ack wait and hop budget.
    pub fn new(config: NatsBrokerConfig, namespace: &str, broker: &str) -> NatsSettings {
        NatsSettings {
            config,
            stream: stream_name(namespace, broker),
            subject: subject_name(namespace, broker),
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
            storage: match self.config.storage {
                NatsStorageKind::File => stream::StorageType::File,
                NatsStorageKind::Memory => stream::StorageType::Memory,
            },
            num_replicas: self.config.replicas,
            max_age: self.config.max_age,
            max_bytes: self.config.max_bytes.unwrap_or(-1),
            max_messages: self.config.max_messages.unwrap_or(-1),
            max_message_size: self.config.max_message_size.unwrap_or(-1),
            duplicate_window: self.config.duplicate_window,
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

/// A NATS configuration on `servers` with the ConfigMap's defaults (no
/// credentials, no TLS, file storage, one replica, 24 h, no size limits, a 2
/// min duplicate window), for tests.
#[cfg(test)]
pub(super) fn test_config(servers: Vec<String>) -> NatsBrokerConfig {
    NatsBrokerConfig {
        servers,
        keys: &cebus_api::NatsKeys::BROKER,
        credentials: cebus_api::NatsCredentials::None,
        tls: cebus_api::NatsTls::default(),
        storage: NatsStorageKind::File,
        replicas: 1,
        max_age: cebus_api::nats::DEFAULT_MAX_AGE,
        max_bytes: None,
        max_messages: None,
        max_message_size: None,
        duplicate_window: cebus_api::nats::DEFAULT_DUPLICATE_WINDOW,
    }
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
