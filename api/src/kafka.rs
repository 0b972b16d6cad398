//! The ConfigMap of a `Kafka` broker (Knative's `kafka-broker-config` keys) and
//! the Trigger's delivery-order annotation, parsed once into typed values. Pure.

use crate::error::FieldPath;
use crate::types::{ConfigMap, Trigger};

/// The broker class whose events live in an Apache Kafka topic.
pub const KAFKA_BROKER_CLASS: &str = "Kafka";

/// Knative's Trigger annotation choosing per-partition ordering on a Kafka broker.
pub const DELIVERY_ORDER_ANNOTATION: &str = "kafka.eventing.knative.dev/delivery.order";

/// Every key the ConfigMap may hold.
pub const KAFKA_CONFIG_KEYS: &[&str] = &[
    "bootstrap.servers",
    "default.topic.partitions",
    "default.topic.replication.factor",
    "default.topic",
];

/// Knative's default partition count of a broker topic.
pub const DEFAULT_TOPIC_PARTITIONS: i32 = 10;
/// Default replication factor (1, so a single-node Kafka works; Knative's
/// default of 3 needs three brokers).
pub const DEFAULT_TOPIC_REPLICATION_FACTOR: i16 = 1;

/// A `Kafka` broker's validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaBrokerConfig {
    /// `bootstrap.servers`: comma-separated `host:port`, as librdkafka takes them.
    pub bootstrap_servers: String,
    /// `default.topic.partitions` (default 10).
    pub partitions: i32,
    /// `default.topic.replication.factor` (default 1).
    pub replication_factor: i16,
    /// `default.topic`: the topic name instead of `knative-broker-<ns>-<name>`.
    pub topic: Option<String>,
}

/// How an ordered or unordered trigger gets its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryOrder {
    /// Concurrent deliveries (the default).
    #[default]
    Unordered,
    /// Per partition, the next event only after the previous one's final outcome.
    Ordered,
}

/// The trigger's [`DELIVERY_ORDER_ANNOTATION`]: `ordered` or `unordered` (default).
pub fn parse_delivery_order(value: Option<&str>) -> Result<DeliveryOrder, String> {
    match value {
        None | Some("unordered") => Ok(DeliveryOrder::Unordered),
        Some("ordered") => Ok(DeliveryOrder::Ordered),
        Some(other) => Err(format!(
            "{other:?} is not a delivery order; use ordered or unordered"
        )),
    }
}

/// The delivery order `t` asks for (unordered when the annotation is invalid,
/// which validation reports).
pub fn delivery_order(t: &Trigger) -> DeliveryOrder {
    parse_delivery_order(
        t.metadata
            .annotations
            .get(DELIVERY_ORDER_ANNOTATION)
            .map(String::as_str),
    )
    .unwrap_or_default()
}

/// Parses the ConfigMap `cm` of a Kafka broker. Errors are (field path under the
/// ConfigMap, message), every one of them.
pub fn parse_kafka_config(cm: &ConfigMap) -> Result<KafkaBrokerConfig, Vec<(FieldPath, String)>> {
    let data = |k: &str| cm.data.get(k).map(|v| v.trim());
    let at = |k: &str| FieldPath::root().key("data").key(k);
    let mut errors = Vec::new();
    for key in cm.data.keys() {
        if !KAFKA_CONFIG_KEYS.contains(&key.as_str()) {
            errors.push((
                at(key),
                format!(
                    "unknown key {key:?} for a {KAFKA_BROKER_CLASS} broker; known keys: {}",
                    KAFKA_CONFIG_KEYS.join(", ")
                ),
            ));
        }
    }
    let bootstrap_servers = match data("bootstrap.servers") {
        None | Some("") => {
            errors.push((
                at("bootstrap.servers"),
                "required: one or more comma-separated host:port, e.g. 127.0.0.1:9092".into(),
            ));
            String::new()
        }
        Some(list) => {
            for server in list.split(',').map(str::trim) {
                if let Some(e) = check_server(server) {
                    errors.push((at("bootstrap.servers"), e));
                }
            }
            list.split(',').map(str::trim).collect::<Vec<_>>().join(",")
        }
    };
    let mut int = |key: &str, max: i64, default: i64| -> i64 {
        let Some(v) = data(key) else { return default };
        match v.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                errors.push((at(key), format!("{v:?} is not an integer from 1 to {max}")));
                default
            }
        }
    };
    let partitions = int(
        "default.topic.partitions",
        100_000,
        i64::from(DEFAULT_TOPIC_PARTITIONS),
    ) as i32;
    let replication_factor = int(
        "default.topic.replication.factor",
        i64::from(i16::MAX),
        i64::from(DEFAULT_TOPIC_REPLICATION_FACTOR),
    ) as i16;
    let topic = data("default.topic").map(str::to_owned);
    if let Some(t) = &topic
        && let Some(e) = check_topic(t)
    {
        errors.push((at("default.topic"), e));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(KafkaBrokerConfig {
        bootstrap_servers,
        partitions,
        replication_factor,
        topic,
    })
}

/// Why `server` is not a `host:port`, if it is not.
pub(crate) fn check_server(server: &str) -> Option<String> {
    if server.contains("://") {
        return Some(format!(
            "{server:?}: write host:port without a scheme, e.g. 127.0.0.1:9092"
        ));
    }
    let Some((host, port)) = server.rsplit_once(':') else {
        return Some(format!("{server:?} has no port; write host:port"));
    };
    if host.is_empty() {
        return Some(format!("{server:?} has no host; write host:port"));
    }
    if port.parse::<u16>().is_err() {
        return Some(format!("{server:?}: {port:?} is not a port"));
    }
    None
}

/// Why `topic` is not a legal Kafka topic name, if it is not.
fn check_topic(topic: &str) -> Option<String> {
    if topic.is_empty() || topic.len() > 249 || topic == "." || topic == ".." {
        return Some(format!(
            "{topic:?} is not a topic name (1 to 249 characters)"
        ));
    }
    topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .map(|c| {
            format!("{topic:?}: {c:?} is not allowed in a topic name (letters, digits, . _ -)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: &[(&str, &str)]) -> ConfigMap {
        let mut c = ConfigMap::default();
        for (k, v) in data {
            c.data.insert((*k).to_owned(), (*v).to_owned());
        }
        c
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse_kafka_config(&cm(&[("bootstrap.servers", "a:9092, b:9093")])).unwrap();
        assert_eq!(c.bootstrap_servers, "a:9092,b:9093");
        assert_eq!(c.partitions, 10);
        assert_eq!(c.replication_factor, 1);
        assert_eq!(c.topic, None);
        let c = parse_kafka_config(&cm(&[
            ("bootstrap.servers", "k:1"),
            ("default.topic.partitions", "3"),
            ("default.topic.replication.factor", "2"),
            ("default.topic", "my.topic_1"),
        ]))
        .unwrap();
        assert_eq!(
            (c.partitions, c.replication_factor, c.topic.as_deref()),
            (3, 2, Some("my.topic_1"))
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let errs = parse_kafka_config(&cm(&[
            ("default.topic.partitions", "0"),
            ("default.topic", "no spaces"),
            ("auth.secret.ref.name", "x"),
        ]))
        .unwrap_err();
        let keys: Vec<String> = errs.iter().map(|(f, _)| f.to_string()).collect();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(keys.iter().any(|k| k.contains("bootstrap.servers")));
        assert!(keys.iter().any(|k| k.contains("auth.secret.ref.name")));
        let e = parse_kafka_config(&cm(&[("bootstrap.servers", "kafka://h:1")])).unwrap_err();
        assert!(e[0].1.contains("without a scheme"), "{e:?}");
        let e = parse_kafka_config(&cm(&[("bootstrap.servers", "h")])).unwrap_err();
        assert!(e[0].1.contains("no port"), "{e:?}");
    }

    #[test]
    fn delivery_order_values() {
        assert_eq!(parse_delivery_order(None), Ok(DeliveryOrder::Unordered));
        assert_eq!(
            parse_delivery_order(Some("ordered")),
            Ok(DeliveryOrder::Ordered)
        );
        assert!(parse_delivery_order(Some("Ordered")).is_err());
    }
}
