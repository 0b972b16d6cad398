//! Semantic checks of KafkaSources (a child module of `validate`, so it shares its
//! error context): bootstrap servers, topic names, consumer group, sink and
//! `ceOverrides`.

use super::{Cx, Seen, root};
use crate::config::Config;
use crate::types::{KafkaSource, Resource};

/// Longest Kafka topic name the brokers accept.
const MAX_TOPIC_LEN: usize = 249;

/// Checks every KafkaSource of `config`, recording duplicates in `seen`.
pub(super) fn validate<'a>(
    config: &'a Config,
    seen: &mut Seen<'a>,
    errors: &mut Vec<crate::error::ConfigError>,
) {
    for k in &config.kafka_sources {
        let mut cx = Cx::new(k, errors);
        cx.metadata(k.object.metadata(), false);
        cx.duplicate(seen, k);
        kafka_source(&mut cx, &k.object, config);
    }
}

fn kafka_source(cx: &mut Cx<'_>, k: &KafkaSource, config: &Config) {
    let ns = k.metadata.namespace();
    let spec = root().key("spec");
    let s = &k.spec;
    if s.bootstrap_servers.is_empty() {
        cx.err(
            spec.key("bootstrapServers"),
            "at least one bootstrap server (host:port) is required",
        );
    }
    for (i, entry) in s.bootstrap_servers.iter().enumerate() {
        // Knative users sometimes write "a:9092,b:9092" as one entry; librdkafka
        // takes that list as is, so each part is checked.
        for server in entry.split(',') {
            if let Err(why) = check_server(server.trim()) {
                cx.err(spec.key("bootstrapServers").index(i), why);
            }
        }
    }
    if s.topics.is_empty() {
        cx.err(spec.key("topics"), "at least one topic is required");
    }
    for (i, topic) in s.topics.iter().enumerate() {
        let at = spec.key("topics").index(i);
        if let Err(why) = check_topic(topic) {
            cx.err(at, why);
        } else if s.topics[..i].contains(topic) {
            cx.err(at, format!("topic {topic:?} is listed twice"));
        }
    }
    if let Some(group) = &s.consumer_group
        && group.trim().is_empty()
    {
        cx.err(
            spec.key("consumerGroup"),
            "consumerGroup must not be empty (remove it for the default \
             cebus-kafkasource-<namespace>-<name>)",
        );
    }
    cx.sink(&s.sink, spec.key("sink"), ns, config);
    cx.overrides(s.ce_overrides.as_ref(), spec.key("ceOverrides"));
}

/// `host:port` with a port from 1 to 65535 (IPv6 as `[::1]:9092`).
fn check_server(server: &str) -> Result<(), String> {
    let hint = "is not host:port, such as my-cluster-kafka-bootstrap.kafka:9092";
    if server.contains("://") {
        return Err(format!(
            "{server:?} {hint} (no scheme: cebus connects in plaintext; TLS and SASL are not \
             supported)"
        ));
    }
    let Some((host, port)) = server.rsplit_once(':') else {
        return Err(format!("{server:?} {hint}"));
    };
    let host_ok = !host.is_empty()
        && !host.contains(char::is_whitespace)
        && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
    if !host_ok || !port.parse::<u16>().is_ok_and(|p| p > 0) {
        return Err(format!("{server:?} {hint}"));
    }
    Ok(())
}

/// A topic name Kafka accepts: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic(topic: &str) -> Result<(), String> {
    let legal = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if topic.is_empty()
        || topic.len() > MAX_TOPIC_LEN
        || topic == "."
        || topic == ".."
        || !topic.bytes().all(legal)
    {
        return Err(format!(
            "{topic:?} is not a Kafka topic name (1 to {MAX_TOPIC_LEN} letters, digits, \
             '.', '_' and '-'; not \".\" or \"..\")"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::load::load_str;

    fn errors_of(spec: &str) -> Vec<(Option<String>, String)> {
        let text = format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: default\n---\n\
             apiVersion: sources.knative.dev/v1\nkind: KafkaSource\nmetadata:\n  name: k\nspec:\n{spec}"
        );
        let objects = load_str(&PathBuf::from("k.yaml"), &text).expect("loads");
        crate::validate::validate(&Config::from_objects(objects))
            .into_iter()
            .map(|e| {
                assert_eq!(e.object.as_deref(), Some("KafkaSource default/k"), "{e}");
                (e.field, e.message)
            })
            .collect()
    }

    const SINK: &str =
        "  sink:\n    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}\n";

    #[test]
    fn valid_kafka_sources() {
        for spec in [
            format!("  bootstrapServers: [127.0.0.1:9092]\n  topics: [orders]\n{SINK}"),
            format!(
                "  bootstrapServers: ['a.kafka:9092,b.kafka:9093', '[::1]:9092']\n  \
                 topics: [orders, audit.log-v2_x]\n  consumerGroup: team\n  \
                 initialOffset: earliest\n  ordering: unordered\n  \
                 ceOverrides: {{extensions: {{origin: kafka}}}}\n{SINK}"
            ),
            "  bootstrapServers: [k:9092]\n  topics: [t]\n  sink: {uri: 'http://127.0.0.1:9/x'}\n"
                .to_owned(),
        ] {
            assert_eq!(errors_of(&spec), [], "{spec}");
        }
    }

    #[test]
    fn invalid_kafka_sources() {
        let cases = [
            (
                format!("  bootstrapServers: []\n  topics: [t]\n{SINK}"),
                "spec.bootstrapServers",
                "at least one bootstrap server",
            ),
            (
                format!("  bootstrapServers: [kafka]\n  topics: [t]\n{SINK}"),
                "spec.bootstrapServers[0]",
                "\"kafka\" is not host:port",
            ),
            (
                format!("  bootstrapServers: ['a:9092,b:x']\n  topics: [t]\n{SINK}"),
                "spec.bootstrapServers[0]",
                "\"b:x\" is not host:port",
            ),
            (
                format!("  bootstrapServers: ['SSL://a:9093']\n  topics: [t]\n{SINK}"),
                "spec.bootstrapServers[0]",
                "TLS and SASL are not supported",
            ),
            (
                format!("  bootstrapServers: [a:9092]\n  topics: []\n{SINK}"),
                "spec.topics",
                "at least one topic",
            ),
            (
                format!("  bootstrapServers: [a:9092]\n  topics: [t, 'bad topic']\n{SINK}"),
                "spec.topics[1]",
                "\"bad topic\" is not a Kafka topic name",
            ),
            (
                format!("  bootstrapServers: [a:9092]\n  topics: ['..']\n{SINK}"),
                "spec.topics[0]",
                "is not a Kafka topic name",
            ),
            (
                format!("  bootstrapServers: [a:9092]\n  topics: [t, t]\n{SINK}"),
                "spec.topics[1]",
                "listed twice",
            ),
            (
                format!("  bootstrapServers: [a:9092]\n  topics: [t]\n  consumerGroup: ''\n{SINK}"),
                "spec.consumerGroup",
                "must not be empty",
            ),
            (
                "  bootstrapServers: [a:9092]\n  topics: [t]\n  sink:\n    ref: \
                 {apiVersion: eventing.knative.dev/v1, kind: Broker, name: nope}\n"
                    .to_owned(),
                "spec.sink.ref",
                "Broker default/nope is not defined",
            ),
            (
                format!(
                    "  bootstrapServers: [a:9092]\n  topics: [t]\n  \
                     ceOverrides: {{extensions: {{id: x}}}}\n{SINK}"
                ),
                "spec.ceOverrides.extensions.id",
                "core CloudEvents attribute",
            ),
        ];
        for (spec, field, message) in cases {
            let errors = errors_of(&spec);
            assert_eq!(errors.len(), 1, "{spec}: {errors:?}");
            assert_eq!(errors[0].0.as_deref(), Some(field), "{spec}: {errors:?}");
            assert!(errors[0].1.contains(message), "{spec}: {errors:?}");
        }
    }

    #[test]
    fn duplicate_kafka_sources_are_reported() {
        let one = "apiVersion: sources.knative.dev/v1beta1\nkind: KafkaSource\nmetadata:\n  \
                   name: k\nspec:\n  bootstrapServers: [a:9092]\n  topics: [t]\n  \
                   sink: {uri: 'http://x/'}\n";
        let text = format!("{one}---\n{one}");
        let objects = load_str(&PathBuf::from("k.yaml"), &text).unwrap();
        let errors = crate::validate::validate(&Config::from_objects(objects));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .message
                .starts_with("duplicate KafkaSource default/k"),
            "{errors:?}"
        );
    }
}
