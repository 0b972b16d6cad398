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
