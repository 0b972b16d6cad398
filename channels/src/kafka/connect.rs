//! How a Kafka channel sets up: the admin client, the topic (created if
//! missing), the producer and the broker's subscribed consumer, retried with
//! backoff until Kafka answers (see [`crate::durable::link`]).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::FutureProducer;
use tokio::sync::watch;

use super::client::{BrokerConsumer, ConsumerLog, client_config};
use super::config::KafkaSettings;
use crate::durable::link::{self, Link};

/// The clients of a ready channel.
pub(super) struct Clients {
    pub(super) producer: FutureProducer,
    /// The broker's shared consumer (its group's committed offsets and the
    /// group list are read through it).
    pub(super) consumer: Arc<BrokerConsumer>,
    pub(super) admin: AdminClient<DefaultClientContext>,
}

/// Creates the clients and the topic and subscribes, retrying with backoff
/// until it works or the channel is closed.
pub(super) async fn setup(
    settings: &KafkaSettings,
    link: &watch::Sender<Link<Clients>>,
    close: &mut watch::Receiver<bool>,
) -> Option<(
    FutureProducer,
    BrokerConsumer,
    AdminClient<DefaultClientContext>,
)> {
    let clients = link::retry(&settings.topic, link, close, "Kafka setup failed", || {
        try_setup(settings)
    })
    .await?;
    tracing::info!(topic = %settings.topic, group = %settings.group, "Kafka topic and consumer ready");
    Some(clients)
}

async fn try_setup(
    settings: &KafkaSettings,
) -> Result<
    (
        FutureProducer,
        BrokerConsumer,
        AdminClient<DefaultClientContext>,
    ),
    String,
> {
    let servers = &settings.bootstrap_servers;
    let admin: AdminClient<DefaultClientContext> = client_config(&[
        ("bootstrap.servers", servers.clone()),
        ("reconnect.backoff.max.ms", "1000".to_owned()),
    ])
    .create()
    .map_err(|e| format!("Kafka admin client for {servers}: {e}"))?;
    let max_bytes = settings.message_max_bytes().to_string();
    let topic = NewTopic::new(
        &settings.topic,
        settings.partitions,
        TopicReplication::Fixed(i32::from(settings.replication_factor)),
    )
    .set("max.message.bytes", &max_bytes);
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    let results = admin.create_topics([&topic], &opts).await.map_err(|e| {
        format!(
            "cannot create Kafka topic {} on {servers}: {e}",
            settings.topic
        )
    })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(format!(
                    "cannot create Kafka topic {name} on {servers}: {code}"
                ));
            }
        }
    }
    let producer: FutureProducer = client_config(&settings.producer_config())
        .create()
        .map_err(|e| format!("Kafka producer for {servers}: {e}"))?;
    let consumer: BrokerConsumer = client_config(&settings.consumer_config())
        .create_with_context(ConsumerLog {
            topic: settings.topic.clone(),
        })
        .map_err(|e| format!("Kafka consumer for {servers}: {e}"))?;
    consumer
        .subscribe(&[settings.topic.as_str()])
        .map_err(|e| format!("cannot subscribe to Kafka topic {}: {e}", settings.topic))?;
    Ok((producer, consumer, admin))
}
