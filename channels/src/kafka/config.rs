//! What a Kafka channel is configured with: its settings, Knative's names of a
//! broker's topic and group, and the librdkafka settings of its producer and
//! consumer. Pure.

use std::time::Duration;

use cebus_api::KafkaBrokerConfig;

use super::client::consumer_settings;
use crate::channel::DEFAULT_TTL;

/// Knative's default partition count of a broker topic.
pub const DEFAULT_PARTITIONS: i32 = 10;
/// Default replication factor of a broker topic (1: a single-node Kafka works).
pub const DEFAULT_REPLICATION_FACTOR: i16 = 1;
/// How long Kafka may take to acknowledge a record before `append` fails (503).
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Producer linger. Every 202 waits for linger plus Kafka's `acks=all` round
/// trip, so linger is paid on every request (a closed loop needs more
/// connections for the same rate); too short a linger sends many tiny produce
/// requests, which costs CPU and a worse tail. Measured at 5,000 events/s with
/// [`FETCH_WAIT_MAX_MS`] (docs/benchmarks.md, "Durable channels"): 5 ms gave an
/// end-to-end p99 of 9 ms and 14,400 events per broker CPU-second, against
/// 25–52 ms and 10,900 with 2 ms; one trigger reached 29,000 events/s with 256
/// connections.
pub const LINGER_MS: u32 = 5;
/// How long Kafka may hold a fetch of the broker's consumer when no record is
/// there (librdkafka's default is 500 ms). With the long wait, the 202s of the
/// same broker had a tail of 55–135 ms at 5,000 events/s; 100 ms cut it to
/// 9–10 ms (measured, docs/benchmarks.md).
pub const FETCH_WAIT_MAX_MS: u32 = 100;

/// Everything a Kafka channel needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `bootstrap.servers`: comma-separated `host:port`.
    pub bootstrap_servers: String,
    /// The broker's topic.
    pub topic: String,
    /// The consumer group of the broker's consumer.
    pub group: String,
    /// Prefix of the consumer groups of per-trigger cursors; the trigger's name
    /// follows. `/` cannot occur in Kubernetes names, so the split is unambiguous.
    pub cursor_prefix: String,
    /// Partitions of the topic when cebus creates it.
    pub partitions: i32,
    /// Replication factor of the topic when cebus creates it.
    pub replication_factor: i16,
    /// Largest record value cebus produces (the broker's max event size); the
    /// topic and producer limits are raised to fit it with its headers.
    pub max_message_bytes: usize,
    /// Records handed out and not yet acknowledged, at most.
    pub window: usize,
    /// Time Kafka has to acknowledge a produced record.
    pub delivery_timeout: Duration,
    /// Hop budget of a record produced by another client without one.
    pub default_ttl: u32,
}

impl KafkaSettings {
    /// Defaults for broker `namespace/broker` on `bootstrap_servers`: Knative's
    /// topic name, 10 partitions, replication factor 1.
    pub fn new(bootstrap_servers: &str, namespace: &str, broker: &str) -> KafkaSettings {
        KafkaSettings {
            bootstrap_servers: bootstrap_servers.to_owned(),
            topic: topic_name(namespace, broker),
            group: group_name(namespace, broker),
            cursor_prefix: format!("cebus/{namespace}/{broker}/"),
            partitions: DEFAULT_PARTITIONS,
            replication_factor: DEFAULT_REPLICATION_FACTOR,
            max_message_bytes: 1024 * 1024,
            window: crate::memory::DEFAULT_CAPACITY,
            delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
            default_ttl: DEFAULT_TTL,
        }
    }

    /// Broker `namespace/broker` on the Kafka its ConfigMap names (`config`,
    /// as the api parsed it): its topic (Knative's name unless
    /// `default.topic` gives one), partitions and replication factor.
    pub fn from_config(config: &KafkaBrokerConfig, namespace: &str, broker: &str) -> KafkaSettings {
        let mut s = KafkaSettings::new(&config.bootstrap_servers, namespace, broker);
        if let Some(topic) = &config.topic {
            s.topic.clone_from(topic);
        }
        s.partitions = config.partitions;
        s.replication_factor = config.replication_factor;
        s
    }

    /// The topic's and producer's record size limit: the event plus room for
    /// its headers, and never below Kafka's own default of 1 MiB.
    pub(super) fn message_max_bytes(&self) -> usize {
        (self.max_message_bytes + 64 * 1024).max(1024 * 1024)
    }

    /// librdkafka settings of the producer.
    pub fn producer_config(&self) -> Vec<(&'static str, String)> {
        vec![
            ("bootstrap.servers", self.bootstrap_servers.clone()),
            ("client.id", format!("cebus-{}", self.topic)),
            // A 202 means stored on every in-sync replica, once, even when the
            // producer retries internally.
            ("enable.idempotence", "true".to_owned()),
            ("acks", "all".to_owned()),
            ("linger.ms", LINGER_MS.to_string()),
            (
                "message.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            ),
            ("message.max.bytes", self.message_max_bytes().to_string()),
            // Back quickly after an outage.
            ("reconnect.backoff.max.ms", "1000".to_owned()),
        ]
    }

    /// librdkafka settings of the broker's consumer.
    pub fn consumer_config(&self) -> Vec<(&'static str, String)> {
        // A new group starts at the beginning: events accepted before the
        // consumer joined are delivered, not skipped.
        let mut c = consumer_settings(
            &self.bootstrap_servers,
            format!("cebus-{}", self.topic),
            &self.group,
            "earliest",
        );
        c.extend([
            // Positions move only through the contiguous commits of the
            // consumer loop.
            ("enable.auto.commit", "false".to_owned()),
            ("heartbeat.interval.ms", "2000".to_owned()),
            // Bound librdkafka's prefetch: the window bounds what cebus holds.
            (
                "queued.min.messages",
                self.window.clamp(1, 10_000).to_string(),
            ),
            ("queued.max.messages.kbytes", "16384".to_owned()),
            // Once that prefetch is full librdkafka waits this long before it
            // fetches again (default 1 s): a 1 s stall whenever cebus drained
            // the queue faster than that, which is the normal case.
            ("fetch.queue.backoff.ms", "10".to_owned()),
            ("fetch.wait.max.ms", FETCH_WAIT_MAX_MS.to_string()),
            ("reconnect.backoff.max.ms", "1000".to_owned()),
        ]);
        c
    }
}

/// Knative's topic of broker `namespace/name`: `knative-broker-<namespace>-<name>`.
pub fn topic_name(namespace: &str, broker: &str) -> String {
    format!("knative-broker-{namespace}-{broker}")
}

/// The consumer group of broker `namespace/name` (same text as its topic).
pub fn group_name(namespace: &str, broker: &str) -> String {
    format!("knative-broker-{namespace}-{broker}")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_configmap_names_the_servers_topic_partitions_and_replicas() {
        let mut config = KafkaBrokerConfig {
            bootstrap_servers: "k1:9092,k2:9092".into(),
            partitions: 3,
            replication_factor: 2,
            topic: None,
        };
        let s = KafkaSettings::from_config(&config, "ns", "b");
        assert_eq!(s.bootstrap_servers, "k1:9092,k2:9092");
        assert_eq!(s.topic, "knative-broker-ns-b");
        assert_eq!(s.group, "knative-broker-ns-b");
        assert_eq!((s.partitions, s.replication_factor), (3, 2));
        config.topic = Some("orders".into());
        let s = KafkaSettings::from_config(&config, "ns", "b");
        assert_eq!(s.topic, "orders");
        assert_eq!(
            s.group, "knative-broker-ns-b",
            "the group keeps Knative's name"
        );
    }

    #[test]
    fn producer_and_consumer_settings() {
        let s = KafkaSettings::new("k:9092", "ns", "b");
        let p: HashMap<_, _> = s.producer_config().into_iter().collect();
        assert_eq!(p["acks"], "all");
        assert_eq!(p["enable.idempotence"], "true");
        let c: HashMap<_, _> = s.consumer_config().into_iter().collect();
        assert_eq!(c["enable.auto.commit"], "false");
        assert_eq!(c["group.id"], "knative-broker-ns-b");
        assert_eq!(c["auto.offset.reset"], "earliest");
    }
}
