//! Knative's resource model (Broker, Trigger, ConfigMap), its loading from YAML,
//! validation and defaults. Pure: no I/O beyond what the caller hands in (and the
//! thin `load_path`, which reads files).

pub mod channel_template;
pub mod config;
pub mod duration;
pub mod error;
pub mod kafka;
pub mod load;
pub mod nats;
pub mod resolve;
pub mod types;
pub mod validate;
mod yaml;

pub use channel_template::{
    ChannelTemplate, broker_channel_name, broker_channel_template, is_channel_based_broker,
    kafka_channel_topic,
};
pub use duration::{DurationError, parse_iso8601};
pub use error::{ConfigError, FieldPath};
pub use kafka::{
    DELIVERY_ORDER_ANNOTATION, DeliveryOrder, KAFKA_BROKER_CLASS, KafkaBrokerConfig,
    delivery_order, parse_kafka_config,
};
pub use load::{
    Config, ConfigFiles, Located, Object, load_and_validate, load_files, load_path, load_sources,
    load_str, read_path,
};
pub use nats::{
    NATS_BROKER_CLASS, NatsBrokerConfig, NatsClientCert, NatsCredentials, NatsKeys,
    NatsStorageKind, NatsTls, parse_nats_config,
};
pub use resolve::{broker_ttl, ignores_invalid_reply, max_event_size, resolve_destination};
pub use types::*;
pub use validate::{is_json_media_type, is_kafka_broker, is_nats_broker, validate};
