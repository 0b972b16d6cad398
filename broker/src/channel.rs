//! The one place a broker's channel is made from its plan: the only code in the
//! broker that names a backend.

use std::sync::Arc;

use cebus_channels::{
    AnyChannel, KafkaChannel, KafkaSettings, MemoryChannel, NatsChannel, NatsSettings, NatsStorage,
};

use crate::limits::Limits;
use crate::plan::{BrokerPlan, ChannelPlan};

/// The channel `plan` asks for. A NATS channel connects in the background; until
/// it is ready, ingress answers 503.
pub(crate) fn make_channel(plan: &BrokerPlan, limits: &Limits) -> AnyChannel {
    match &plan.channel {
        ChannelPlan::Memory => {
            AnyChannel::Memory(Arc::new(MemoryChannel::new(limits.channel_capacity)))
        }
        ChannelPlan::Nats(n) => {
            let mut s = NatsSettings::new(n.servers.clone(), &plan.namespace, &plan.name);
            s.auth = n.credentials.clone();
            s.tls = n.tls.clone();
            s.keys = n.keys;
            s.storage = match n.storage {
                cebus_api::NatsStorageKind::File => NatsStorage::File,
                cebus_api::NatsStorageKind::Memory => NatsStorage::Memory,
            };
            s.replicas = n.replicas;
            s.max_age = n.max_age;
            s.max_bytes = n.max_bytes;
            s.max_messages = n.max_messages;
            s.max_message_size = n.max_message_size;
            s.duplicate_window = n.duplicate_window;
            // The window: records handed out and not yet delivered everywhere.
            s.window = limits.channel_capacity;
            s.default_ttl = plan.max_ttl;
            AnyChannel::Nats(Arc::new(NatsChannel::connect(s)))
        }
        ChannelPlan::Kafka(k) => {
            let mut s = KafkaSettings::new(&k.bootstrap_servers, &plan.namespace, &plan.name);
            if let Some(topic) = &k.topic {
                s.topic.clone_from(topic);
            }
            s.partitions = k.partitions;
            s.replication_factor = k.replication_factor;
            s.max_message_bytes = plan.max_event_size;
            // The window: records handed out and not yet delivered everywhere.
            s.window = limits.channel_capacity;
            s.default_ttl = plan.max_ttl;
            AnyChannel::Kafka(Arc::new(KafkaChannel::connect(s)))
        }
    }
}
