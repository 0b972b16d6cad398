//! The librdkafka clients cebus creates: a configuration from (key, value)
//! settings, the consumer's logging context, and closing a consumer without
//! blocking the async threads.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How long closing a consumer (and so a cursor) waits for its final commit.
pub(super) const CLOSE_MAX: Duration = Duration::from_secs(10);

/// A consumer that stopped heartbeating (crashed) is dropped from its group after
/// this long, so a restarted cebus gets its partitions back quickly.
pub const SESSION_TIMEOUT_MS: u32 = 10_000;

/// The librdkafka settings every cebus consumer starts from (the broker's, a
/// cursor's, a KafkaSource's): servers, client id, group, where a group without
/// a stored position starts (`offset_reset`), and positions stored only by
/// cebus, once a record is done. Each adds how it commits and reads.
pub fn consumer_settings(
    bootstrap_servers: &str,
    client_id: String,
    group: &str,
    offset_reset: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("bootstrap.servers", bootstrap_servers.to_owned()),
        ("client.id", client_id),
        ("group.id", group.to_owned()),
        // An offset is stored only when every record below it is done.
        ("enable.auto.offset.store", "false".to_owned()),
        ("auto.offset.reset", offset_reset.to_owned()),
        ("enable.partition.eof", "false".to_owned()),
        ("session.timeout.ms", SESSION_TIMEOUT_MS.to_string()),
    ]
}

/// A librdkafka client configuration with `settings` (key, value).
pub fn client_config(settings: &[(&'static str, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in settings {
        c.set(*k, v);
    }
    c
}

/// The consumer's librdkafka context: logs errors with the topic (an
/// end-of-partition event is not one).
pub(super) struct ConsumerLog {
    pub(super) topic: String,
}

impl ClientContext for ConsumerLog {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::warn!(topic = %self.topic, error = %error, %reason, "Kafka consumer error");
        }
    }
}

impl ConsumerContext for ConsumerLog {}

/// The broker's consumer.
pub(super) type BrokerConsumer = StreamConsumer<ConsumerLog>;

/// Drops a consumer off the async threads, for at most [`CLOSE_MAX`]:
/// librdkafka's close (final commit, leaving the group) blocks, and with Kafka
/// gone it can block for long; the process must still be able to stop.
pub(super) async fn close_consumer(consumer: Arc<BrokerConsumer>, topic: &str) {
    let close = tokio::task::spawn_blocking(move || drop(consumer));
    if tokio::time::timeout(CLOSE_MAX, close).await.is_err() {
        tracing::warn!(%topic, "Kafka consumer did not close in time; leaving it behind");
    }
}
