//! The channel of an `MTChannelBasedBroker`: Knative's `channel-template-spec`
//! (a key of the ConfigMap the Broker's `spec.config` names) read into the
//! in-memory channel, a Kafka topic or a NATS JetStream stream. The Kafka
//! bootstrap servers and the NATS URL, credentials and TLS come from the
//! ConfigMaps (and, for NATS, Secrets) Knative's KafkaChannel and
//! NatsJetStreamChannel read in `knative-eventing` (`kafka-channel-config`,
//! `config-nats`), given in the same config. Pure.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{Config, Located};
use crate::duration::parse_iso8601;
use crate::error::{ConfigError, FieldPath};
use crate::kafka::{KafkaBrokerConfig, check_server};
use crate::nats::{
    DEFAULT_DUPLICATE_WINDOW, NatsBrokerConfig, NatsClientCert, NatsCredentials, NatsKeys,
    NatsStorageKind, NatsTls, cert_problem, check_url, creds_problem, key_problem,
};
use crate::types::{BROKER_CLASS_ANNOTATION, Broker, ConfigMap, DEFAULT_BROKER_CLASS};

/// The ConfigMap key holding the channel template (Knative's
/// `config-br-default-channel` layout).
pub const CHANNEL_TEMPLATE_KEY: &str = "channel-template-spec";
/// Where Knative keeps the settings of its channel implementations.
pub const KNATIVE_SYSTEM_NAMESPACE: &str = "knative-eventing";
/// Knative's ConfigMap with the KafkaChannel's `bootstrap.servers`.
pub const KAFKA_CHANNEL_CONFIG: &str = "kafka-channel-config";
/// Knative's ConfigMap with the NatsJetStreamChannel's connection settings.
pub const NATS_CHANNEL_CONFIG: &str = "config-nats";
/// The key of [`NATS_CHANNEL_CONFIG`] holding them, as YAML (`url: nats://...`).
pub const NATS_CHANNEL_CONFIG_KEY: &str = "eventing-nats";
/// Knative's prefix of a KafkaChannel's topic.
pub const KAFKA_CHANNEL_TOPIC_PREFIX: &str = "knative-messaging-kafka";
/// `apiVersion` and `kind` of Knative's in-memory channel.
pub const IN_MEMORY_CHANNEL: (&str, &str) = ("messaging.knative.dev/v1", "InMemoryChannel");
/// `apiVersion` and `kind` of Knative's KafkaChannel (eventing-kafka-broker).
pub const KAFKA_CHANNEL: (&str, &str) = ("messaging.knative.dev/v1beta1", "KafkaChannel");
/// `apiVersion` and `kind` of Knative's NatsJetStreamChannel (eventing-natss).
pub const NATS_JETSTREAM_CHANNEL: (&str, &str) =
    ("messaging.knative.dev/v1alpha1", "NatsJetStreamChannel");
/// The KafkaChannel's default `retentionDuration` (7 days), which is also
/// Kafka's default `log.retention.hours`: the only retention a topic cebus
/// creates gets.
pub const KAFKA_CHANNEL_RETENTION: Duration = Duration::from_secs(168 * 3600);

/// The Kafka bootstrap servers key of [`KAFKA_CHANNEL_CONFIG`].
const BOOTSTRAP_SERVERS: &str = "bootstrap.servers";
/// The suffix Knative's channel-based broker gives its channel's name.
const CHANNEL_SUFFIX: &str = "-kne-trigger";
/// The longest Kubernetes object name.
const LONGEST_NAME: usize = 63;

/// What an `MTChannelBasedBroker`'s channel template asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelTemplate {
    /// `InMemoryChannel`, or no template: the bounded in-memory channel.
    InMemory,
    /// `KafkaChannel`: a topic; [`broker_channel_template`] sets its name.
    Kafka(KafkaBrokerConfig),
    /// `NatsJetStreamChannel`: a JetStream stream.
    Nats(NatsBrokerConfig),
}

/// Whether `b` is of class `MTChannelBasedBroker` (the default class).
pub fn is_channel_based_broker(b: &Broker) -> bool {
    b.metadata
        .annotations
        .get(BROKER_CLASS_ANNOTATION)
        .is_none_or(|c| c == DEFAULT_BROKER_CLASS)
}

/// The name Knative gives the channel of channel-based broker `broker`:
/// `<broker>-kne-trigger`, shortened with an MD5 of the name when that would
/// exceed 63 characters (knative.dev/pkg `kmeta.ChildName`).
pub fn broker_channel_name(broker: &str) -> String {
    if broker.len() + CHANNEL_SUFFIX.len() <= LONGEST_NAME {
        return format!("{broker}{CHANNEL_SUFFIX}");
    }
    use md5::Digest;
    let hash: String = md5::Md5::digest(broker.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // kmeta keeps 63 - 32 (the hash) - len(suffix) characters of the name.
    let keep = LONGEST_NAME - hash.len() - CHANNEL_SUFFIX.len();
    let head: String = broker.chars().take(keep).collect();
    format!("{head}{hash}{CHANNEL_SUFFIX}")
}

/// The topic of KafkaChannel `namespace/channel`, as Knative names it:
/// `knative-messaging-kafka.<namespace>.<channel>`.
pub fn kafka_channel_topic(namespace: &str, channel: &str) -> String {
    format!("{KAFKA_CHANNEL_TOPIC_PREFIX}.{namespace}.{channel}")
}

/// The channel of channel-based broker `broker`: in memory without
/// `spec.config` or without a template; else its template, with a Kafka
/// topic named as Knative's KafkaChannel of that broker names it.
pub fn broker_channel_template(
    config: &Config,
    broker: &Located<Broker>,
) -> Result<ChannelTemplate, Vec<ConfigError>> {
    let b = &broker.object;
    let Some(r) = &b.spec.config else {
        return Ok(ChannelTemplate::InMemory);
    };
    let ns = b.metadata.namespace();
    let cm_ns = r
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(ns);
    let Some(cm) = config.config_map(cm_ns, &r.name) else {
        return Err(vec![broker.error(
            FieldPath::root().key("spec").key("config"),
            format!("ConfigMap {cm_ns}/{} is not defined", r.name),
        )]);
    };
    Ok(match parse_channel_template(cm, config)? {
        ChannelTemplate::Kafka(mut k) => {
            let channel = broker_channel_name(&b.metadata.name);
            k.topic = Some(kafka_channel_topic(ns, &channel));
            ChannelTemplate::Kafka(k)
        }
        other => other,
    })
}

/// Reads the channel template of ConfigMap `cm`; every problem is reported,
/// located in `cm`, `kafka-channel-config` or `config-nats`. A ConfigMap without
/// the key means the in-memory channel (cebus reads no `config-br-defaults`).
pub fn parse_channel_template(
    cm: &Located<ConfigMap>,
    config: &Config,
) -> Result<ChannelTemplate, Vec<ConfigError>> {
    let at = FieldPath::root().key("data").key(CHANNEL_TEMPLATE_KEY);
    let Some(text) = cm.object.data.get(CHANNEL_TEMPLATE_KEY) else {
        // eventing-natss' own example spells the key this way; Knative's
        // channel-based broker would not read it, so neither does cebus.
        if cm.object.data.contains_key("channelTemplateSpec") {
            return Err(vec![cm.error(
                FieldPath::root().key("data").key("channelTemplateSpec"),
                format!("the key of a channel template is {CHANNEL_TEMPLATE_KEY}"),
            )]);
        }
        return Ok(ChannelTemplate::InMemory);
    };
    let doc = parse_yaml(text, "the template").map_err(|m| vec![cm.error(at.clone(), m)])?;
    let mut problems = Problems::default();
    let template = read_template(doc, &at, config, &mut problems);
    let mut errors: Vec<ConfigError> = problems
        .here
        .into_iter()
        .map(|(field, message)| cm.error(field, message))
        .collect();
    errors.extend(problems.elsewhere);
    match template {
        Some(t) if errors.is_empty() => Ok(t),
        _ => Err(errors),
    }
}

/// Problems found while reading a template: in its own ConfigMap (by field
/// path) and in the system ConfigMaps (already located).
#[derive(Default)]
struct Problems {
    here: Vec<(FieldPath, String)>,
    elsewhere: Vec<ConfigError>,
}

impl Problems {
    fn at(&mut self, field: FieldPath, message: impl Into<String>) {
        self.here.push((field, message.into()));
    }
}

/// The top level of a template (Knative's `ChannelTemplateSpec`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TemplateDoc {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    spec: Option<Value>,
}

/// `spec` of an InMemoryChannel.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InMemorySpec {
    delivery: Option<Value>,
    subscribers: Option<Value>,
}

/// `spec` of a KafkaChannel (messaging.knative.dev/v1beta1).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KafkaSpec {
    num_partitions: Option<i64>,
    replication_factor: Option<i64>,
    retention_duration: Option<String>,
    delivery: Option<Value>,
    subscribers: Option<Value>,
}

/// `spec` of a NatsJetStreamChannel (messaging.knative.dev/v1alpha1).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NatsSpec {
    stream: Option<NatsStream>,
    consumer_config_template: Option<Value>,
    deployment_spec_template: Option<Value>,
    delivery: Option<Value>,
    subscribers: Option<Value>,
}

/// `spec.stream` of a NatsJetStreamChannel.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NatsStream {
    override_name: Option<String>,
    config: Option<NatsStreamConfig>,
}

/// `spec.stream.config`: eventing-natss' `StreamConfig`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NatsStreamConfig {
    additional_subjects: Option<Value>,
    retention: Option<String>,
    max_consumers: Option<Value>,
    max_msgs: Option<i64>,
    max_bytes: Option<i64>,
    discard: Option<String>,
    max_age: Option<String>,
    max_msg_size: Option<i64>,
    storage: Option<String>,
    replicas: Option<i64>,
    no_ack: Option<Value>,
    duplicate_window: Option<String>,
    placement: Option<Value>,
    mirror: Option<Value>,
    sources: Option<Value>,
}

/// The YAML of `data["eventing-nats"]` (eventing-natss' `EventingNatsConfig`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventingNats {
    url: Option<String>,
    conn_opts: Option<Value>,
    auth: Option<NatsAuth>,
    /// How to verify the server (eventing-natss' `ENConfigRootCA`).
    tls: Option<NatsRootCa>,
}

/// `auth` of `data["eventing-nats"]`: a `.creds` file and a client certificate.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NatsAuth {
    credential_file: Option<NatsCredentialFile>,
    tls: Option<NatsClientTls>,
}

/// `auth.credentialFile`: the Secret key holding a `.creds` file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NatsCredentialFile {
    secret: Option<SecretKeySelector>,
}

/// `auth.tls`: a `kubernetes.io/tls` Secret with the client certificate.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NatsClientTls {
    secret: Option<SecretReference>,
}

/// `tls`: the CA that signed the server's certificate, inline or in a Secret.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NatsRootCa {
    ca_bundle: Option<String>,
    secret: Option<SecretReference>,
}

/// A Kubernetes `SecretKeySelector` (name and key of a Secret).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretKeySelector {
    name: Option<String>,
    key: Option<String>,
}

/// A Kubernetes `LocalObjectReference` to a Secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretReference {
    name: Option<String>,
}

/// The template in `doc` (found at `at`), or `None` after recording why not.
fn read_template(
    doc: Value,
    at: &FieldPath,
    config: &Config,
    problems: &mut Problems,
) -> Option<ChannelTemplate> {
    let t: TemplateDoc = match typed(doc, at) {
        Ok(t) => t,
        Err((field, message)) => {
            problems.at(field, message);
            return None;
        }
    };
    let known = [IN_MEMORY_CHANNEL, KAFKA_CHANNEL, NATS_JETSTREAM_CHANNEL];
    let choices = known
        .iter()
        .map(|(api, kind)| format!("{kind} ({api})"))
        .collect::<Vec<_>>()
        .join(", ");
    let Some(kind) = t.kind.as_deref().filter(|k| !k.is_empty()) else {
        problems.at(at.key("kind"), format!("required: one of {choices}"));
        return None;
    };
    let Some(&(api, _)) = known.iter().find(|(_, k)| *k == kind) else {
        problems.at(
            at.key("kind"),
            format!("{kind:?} is not a channel cebus runs; use one of {choices}"),
        );
        return None;
    };
    if t.api_version.as_deref() != Some(api) {
        problems.at(
            at.key("apiVersion"),
            match t.api_version.as_deref() {
                None | Some("") => format!("required: {kind} is {api}"),
                Some(other) => format!("{kind} is {api}, not {other:?}"),
            },
        );
        return None;
    }
    let spec_at = at.key("spec");
    let spec = t.spec.unwrap_or_else(|| Value::Object(Default::default()));
    match kind {
        "KafkaChannel" => kafka_template(spec, &spec_at, at, config, problems),
        "NatsJetStreamChannel" => nats_template(spec, &spec_at, at, config, problems),
        _ => {
            let spec: InMemorySpec = record(typed(spec, &spec_at), problems)?;
            unsupported_channel_fields(spec.delivery, spec.subscribers, &spec_at, problems);
            Some(ChannelTemplate::InMemory)
        }
    }
}

/// A KafkaChannel template: partitions, replication factor, and the servers
/// from `knative-eventing/kafka-channel-config`.
fn kafka_template(
    spec: Value,
    spec_at: &FieldPath,
    at: &FieldPath,
    config: &Config,
    problems: &mut Problems,
) -> Option<ChannelTemplate> {
    let spec: KafkaSpec = record(typed(spec, spec_at), problems)?;
    unsupported_channel_fields(spec.delivery, spec.subscribers, spec_at, problems);
    // The CRD's defaults: one partition, replication factor 1.
    let mut count = |field: &str, value: Option<i64>, max: i64| -> i64 {
        match value {
            None => 1,
            Some(n) if (1..=max).contains(&n) => n,
            Some(n) => {
                problems.at(
                    spec_at.key(field),
                    format!("{n} is not an integer from 1 to {max}"),
                );
                1
            }
        }
    };
    let partitions = count("numPartitions", spec.num_partitions, 100_000) as i32;
    let replication_factor = count(
        "replicationFactor",
        spec.replication_factor,
        i64::from(i16::MAX),
    ) as i16;
    if let Some(r) = &spec.retention_duration {
        match parse_iso8601(r) {
            Err(e) => problems.at(spec_at.key("retentionDuration"), e.to_string()),
            Ok(d) if d != KAFKA_CHANNEL_RETENTION => problems.at(
                spec_at.key("retentionDuration"),
                format!(
                    "{r:?}: only the default retention (PT168H, Kafka's own default) is supported \
                     yet; remove the field"
                ),
            ),
            Ok(_) => {}
        }
    }
    let servers = kafka_servers(at, config, problems)?;
    Some(ChannelTemplate::Kafka(KafkaBrokerConfig {
        bootstrap_servers: servers,
        partitions,
        replication_factor,
        topic: None,
    }))
}

/// `bootstrap.servers` of `knative-eventing/kafka-channel-config`, where
/// Knative's KafkaChannel reads them.
fn kafka_servers(at: &FieldPath, config: &Config, problems: &mut Problems) -> Option<String> {
    let Some(sys) = config.config_map(KNATIVE_SYSTEM_NAMESPACE, KAFKA_CHANNEL_CONFIG) else {
        problems.at(
            at.clone(),
            format!(
                "a KafkaChannel needs its Kafka bootstrap servers: add a ConfigMap \
                 {KAFKA_CHANNEL_CONFIG} in namespace {KNATIVE_SYSTEM_NAMESPACE} with \
                 data.{BOOTSTRAP_SERVERS} (host:port, comma-separated), where Knative's \
                 KafkaChannel reads them"
            ),
        );
        return None;
    };
    let key_at = |k: &str| FieldPath::root().key("data").key(k);
    let before = problems.elsewhere.len();
    for key in sys.object.data.keys().filter(|k| *k != BOOTSTRAP_SERVERS) {
        let message = if key == "auth.secret.ref.name" {
            "TLS/SASL (auth.secret.ref.name) is not supported yet; cebus speaks plaintext to Kafka"
                .to_owned()
        } else {
            format!("unknown key {key:?}; the only key is {BOOTSTRAP_SERVERS}")
        };
        problems.elsewhere.push(sys.error(key_at(key), message));
    }
    let list = sys
        .object
        .data
        .get(BOOTSTRAP_SERVERS)
        .map(|v| v.trim())
        .unwrap_or_default();
    if list.is_empty() {
        problems.elsewhere.push(sys.error(
            key_at(BOOTSTRAP_SERVERS),
            "required: one or more comma-separated host:port, e.g. 127.0.0.1:9092",
        ));
    }
    for server in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Some(e) = check_server(server) {
            problems
                .elsewhere
                .push(sys.error(key_at(BOOTSTRAP_SERVERS), e));
        }
    }
    (problems.elsewhere.len() == before).then(|| {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// A NatsJetStreamChannel template: `spec.stream.config`, and the URL,
/// credentials and TLS from `knative-eventing/config-nats`.
fn nats_template(
    spec: Value,
    spec_at: &FieldPath,
    at: &FieldPath,
    config: &Config,
    problems: &mut Problems,
) -> Option<ChannelTemplate> {
    let spec: NatsSpec = record(typed(spec, spec_at), problems)?;
    unsupported_channel_fields(spec.delivery, spec.subscribers, spec_at, problems);
    unsupported(
        spec.consumer_config_template,
        spec_at.key("consumerConfigTemplate"),
        "cebus runs one consumer per broker and retries with the trigger's delivery",
        problems,
    );
    unsupported(
        spec.deployment_spec_template,
        spec_at.key("deploymentSpecTemplate"),
        "cebus runs no dispatcher deployment",
        problems,
    );
    let stream_at = spec_at.key("stream");
    let stream = spec.stream.unwrap_or(NatsStream {
        override_name: None,
        config: None,
    });
    if stream
        .override_name
        .as_deref()
        .is_some_and(|n| !n.is_empty())
    {
        problems.at(
            stream_at.key("overrideName"),
            "not supported: the stream of broker <namespace>/<name> is cebus_<namespace>_<name>",
        );
    }
    let c_at = stream_at.key("config");
    let c = stream.config.unwrap_or(NatsStreamConfig {
        additional_subjects: None,
        retention: None,
        max_consumers: None,
        max_msgs: None,
        max_bytes: None,
        discard: None,
        max_age: None,
        max_msg_size: None,
        storage: None,
        replicas: None,
        no_ack: None,
        duplicate_window: None,
        placement: None,
        mirror: None,
        sources: None,
    });
    for (field, value) in [
        ("additionalSubjects", c.additional_subjects),
        ("maxConsumers", c.max_consumers),
        ("noAck", c.no_ack),
        ("placement", c.placement),
        ("mirror", c.mirror),
        ("sources", c.sources),
    ] {
        unsupported(
            value,
            c_at.key(field),
            "the stream is cebus' own (one subject, one consumer, acknowledged)",
            problems,
        );
    }
    // cebus keeps an event until every trigger is done with it and refuses new
    // ones when full (interest retention, discard new): the only policies whose
    // behaviour it promises.
    if let Some(r) = c.retention.as_deref().filter(|r| *r != "Interest") {
        problems.at(
            c_at.key("retention"),
            format!(
                "{r:?} is not supported: an event stays until every trigger delivered or \
                 dead-lettered it (Interest)"
            ),
        );
    }
    if let Some(d) = c.discard.as_deref().filter(|d| *d != "New") {
        problems.at(
            c_at.key("discard"),
            format!("{d:?} is not supported: a full stream refuses new events with 503 (New)"),
        );
    }
    // Zero (Go's unset) and -1 (JetStream's "unlimited") mean no limit.
    let mut limit = |field: &str, value: Option<i64>, max: i64| -> Option<i64> {
        match value? {
            0 | -1 => None,
            n if (1..=max).contains(&n) => Some(n),
            n => {
                problems.at(
                    c_at.key(field),
                    format!("{n} is not an integer from 1 to {max} (0 or -1: no limit)"),
                );
                None
            }
        }
    };
    let max_messages = limit("maxMsgs", c.max_msgs, i64::MAX);
    let max_bytes = limit("maxBytes", c.max_bytes, i64::MAX);
    let max_message_size =
        limit("maxMsgSize", c.max_msg_size, i64::from(i32::MAX)).map(|n| n as i32);
    let replicas = match c.replicas {
        None | Some(0) => 1,
        Some(n) if (1..=5).contains(&n) => n as usize,
        Some(n) => {
            problems.at(
                c_at.key("replicas"),
                format!("{n} is not an integer from 1 to 5"),
            );
            1
        }
    };
    let storage = match c.storage.as_deref() {
        None | Some("") => NatsStorageKind::File,
        Some(s) if s.eq_ignore_ascii_case("file") => NatsStorageKind::File,
        Some(s) if s.eq_ignore_ascii_case("memory") => NatsStorageKind::Memory,
        Some(other) => {
            problems.at(
                c_at.key("storage"),
                format!("{other:?} is not a storage; use File or Memory"),
            );
            NatsStorageKind::File
        }
    };
    let mut duration = |field: &str, value: Option<&str>| -> Option<Duration> {
        match parse_go_duration(value?) {
            Ok(d) => Some(d),
            Err(e) => {
                problems.at(c_at.key(field), e);
                None
            }
        }
    };
    // As in JetStream: no maxAge (or zero) keeps events without an age limit.
    let max_age = duration("maxAge", c.max_age.as_deref()).unwrap_or(Duration::ZERO);
    let duplicate_window = duration("duplicateWindow", c.duplicate_window.as_deref())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_DUPLICATE_WINDOW);
    if !max_age.is_zero() && duplicate_window > max_age {
        problems.at(
            c_at.key("duplicateWindow"),
            format!(
                "may not be longer than maxAge (JetStream refuses it); without duplicateWindow \
                 it is {}s",
                DEFAULT_DUPLICATE_WINDOW.as_secs()
            ),
        );
    }
    let (servers, credentials, tls) = nats_connection(at, config, problems)?;
    Some(ChannelTemplate::Nats(NatsBrokerConfig {
        servers,
        keys: &NatsKeys::CONFIG_NATS,
        credentials,
        tls,
        storage,
        replicas,
        max_age,
        max_bytes,
        max_messages,
        max_message_size,
        duplicate_window,
    }))
}

/// The server URLs, credentials and TLS of `knative-eventing/config-nats`
/// (`data["eventing-nats"]`, YAML with `url`, `auth` and `tls`), where Knative's
/// NatsJetStreamChannel reads them; the Secrets they name are in
/// `knative-eventing` too.
fn nats_connection(
    at: &FieldPath,
    config: &Config,
    problems: &mut Problems,
) -> Option<(Vec<String>, NatsCredentials, NatsTls)> {
    let Some(sys) = config.config_map(KNATIVE_SYSTEM_NAMESPACE, NATS_CHANNEL_CONFIG) else {
        problems.at(
            at.clone(),
            format!(
                "a NatsJetStreamChannel needs the NATS URL: add a ConfigMap {NATS_CHANNEL_CONFIG} \
                 in namespace {KNATIVE_SYSTEM_NAMESPACE} whose key {NATS_CHANNEL_CONFIG_KEY} holds \
                 `url: nats://host:4222`, where Knative's NatsJetStreamChannel reads it"
            ),
        );
        return None;
    };
    let key_at = FieldPath::root().key("data").key(NATS_CHANNEL_CONFIG_KEY);
    let mut errors = Vec::new();
    for key in sys
        .object
        .data
        .keys()
        .filter(|k| *k != NATS_CHANNEL_CONFIG_KEY)
    {
        errors.push((
            FieldPath::root().key("data").key(key),
            format!("unknown key {key:?}; the only key is {NATS_CHANNEL_CONFIG_KEY}"),
        ));
    }
    let mut servers = Vec::new();
    let mut credentials = NatsCredentials::None;
    let mut tls = NatsTls::default();
    match sys.object.data.get(NATS_CHANNEL_CONFIG_KEY) {
        None => errors.push((
            key_at.clone(),
            "required: YAML with at least `url: nats://host:4222`".to_owned(),
        )),
        Some(text) => match parse_yaml(text, "the settings")
            .map_err(|m| (key_at.clone(), m))
            .and_then(|v| typed::<EventingNats>(v, &key_at))
        {
            Err(e) => errors.push(e),
            Ok(n) => {
                let mut secrets = SystemSecrets {
                    config,
                    errors: &mut errors,
                };
                credentials = secrets.credentials(n.auth.as_ref(), &key_at.key("auth"));
                tls = secrets.tls(n.auth.as_ref(), n.tls.as_ref(), &key_at);
                // connOpts tune nats.go's reconnection; cebus reconnects without end
                // on its own, so they have nothing to change.
                let _ = n.conn_opts;
                let urls = n.url.unwrap_or_default();
                if urls.trim().is_empty() {
                    errors.push((
                        key_at.key("url"),
                        "required: one or more comma-separated NATS URLs, e.g. \
                         nats://127.0.0.1:4222"
                            .to_owned(),
                    ));
                }
                for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                    match check_url(url) {
                        Some(e) => errors.push((key_at.key("url"), e)),
                        None => servers.push(url.to_owned()),
                    }
                }
            }
        },
    }
    let ok = errors.is_empty();
    problems.elsewhere.extend(
        errors
            .into_iter()
            .map(|(field, message)| sys.error(field, message)),
    );
    ok.then_some((servers, credentials, tls))
}

/// eventing-natss' default key of the `.creds` file in `auth.credentialFile.secret`.
const CREDS_KEY: &str = "nats.creds";
/// The keys of a `kubernetes.io/tls` Secret (`auth.tls.secret`).
const TLS_CERT_KEY: &str = "tls.crt";
const TLS_KEY_KEY: &str = "tls.key";
/// The key of the CA certificate in the Secret of `tls.secret`.
const CA_KEY: &str = "ca.crt";

/// The Secrets `config-nats` names, all in `knative-eventing`, with the errors
/// found reading them (field path under the ConfigMap, message). No message
/// holds a Secret's value.
struct SystemSecrets<'a> {
    config: &'a Config,
    errors: &'a mut Vec<(FieldPath, String)>,
}

impl SystemSecrets<'_> {
    /// `auth.credentialFile` (at `auth_at.credentialFile`): the `.creds` file.
    fn credentials(&mut self, auth: Option<&NatsAuth>, auth_at: &FieldPath) -> NatsCredentials {
        let Some(file) = auth.and_then(|a| a.credential_file.as_ref()) else {
            return NatsCredentials::None;
        };
        let at = auth_at.key("credentialFile").key("secret");
        let selector = file.secret.as_ref();
        let name = selector.and_then(|s| s.name.as_deref());
        let key = selector
            .and_then(|s| s.key.as_deref())
            .filter(|k| !k.is_empty());
        // Where a problem with the key shows: the key, or the name when the key
        // is eventing-natss' default.
        let key_at = if key.is_some() {
            at.key("key")
        } else {
            at.key("name")
        };
        self.value(
            name,
            &at.key("name"),
            key.unwrap_or(CREDS_KEY),
            &key_at,
            "the NATS .creds file (user JWT and NKey seed)",
            creds_problem,
        )
        .map_or(NatsCredentials::None, NatsCredentials::Creds)
    }

    /// `auth.tls` (the client certificate) and `tls` (the server's CA), under
    /// `at` (`data.eventing-nats`). Either one means TLS, as in eventing-natss.
    fn tls(
        &mut self,
        auth: Option<&NatsAuth>,
        root_ca: Option<&NatsRootCa>,
        at: &FieldPath,
    ) -> NatsTls {
        let client = auth.and_then(|a| a.tls.as_ref()).and_then(|t| {
            let name_at = at.key("auth").key("tls").key("secret").key("name");
            let name = t.secret.as_ref().and_then(|s| s.name.as_deref());
            let what = "the client certificate (a kubernetes.io/tls Secret with tls.crt and \
                        tls.key)";
            let cert = self.value(name, &name_at, TLS_CERT_KEY, &name_at, what, cert_problem);
            // Without the Secret, one error is enough.
            let key = if name
                .is_some_and(|n| self.config.secret(KNATIVE_SYSTEM_NAMESPACE, n).is_some())
            {
                self.value(name, &name_at, TLS_KEY_KEY, &name_at, what, key_problem)
            } else {
                None
            };
            Some(NatsClientCert {
                cert: cert?,
                key: key?,
            })
        });
        let ca = root_ca.and_then(|r| {
            let tls_at = at.key("tls");
            match (r.ca_bundle.as_deref().filter(|b| !b.is_empty()), &r.secret) {
                (Some(_), Some(_)) => {
                    self.errors.push((
                        tls_at,
                        "set caBundle or secret, not both: each gives the CA certificate that \
                         signed the server's"
                            .to_owned(),
                    ));
                    None
                }
                (Some(bundle), None) => ca_bundle(bundle)
                    .map_err(|e| self.errors.push((tls_at.key("caBundle"), e)))
                    .ok(),
                (None, Some(secret)) => {
                    let name_at = tls_at.key("secret").key("name");
                    self.value(
                        secret.name.as_deref(),
                        &name_at,
                        CA_KEY,
                        &name_at,
                        "the CA certificate (ca.crt) that signed the server's",
                        cert_problem,
                    )
                }
                (None, None) => None,
            }
        });
        NatsTls {
            required: ca.is_some() || client.is_some(),
            ca,
            client,
        }
    }

    /// The text under `key` of Secret `knative-eventing/<name>` (which holds
    /// `what`), when `problem` finds nothing wrong with it; problems with the
    /// name show at `name_at`, with the value at `key_at`.
    fn value(
        &mut self,
        name: Option<&str>,
        name_at: &FieldPath,
        key: &str,
        key_at: &FieldPath,
        what: &str,
        problem: fn(&str) -> Option<&'static str>,
    ) -> Option<String> {
        let ns = KNATIVE_SYSTEM_NAMESPACE;
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            self.errors.push((
                name_at.clone(),
                format!("required: the name of the Secret in namespace {ns} holding {what}"),
            ));
            return None;
        };
        let Some(secret) = self.config.secret(ns, name) else {
            self.errors.push((
                name_at.clone(),
                format!("Secret {ns}/{name} is not defined in the configuration; it holds {what}"),
            ));
            return None;
        };
        let problem = match secret.object.value(key).map(String::from_utf8) {
            None if secret.object.has_key(key) => "is not valid base64".to_owned(),
            None => {
                self.errors.push((
                    key_at.clone(),
                    format!("Secret {ns}/{name} has no key {key:?}; it must hold {what}"),
                ));
                return None;
            }
            Some(Err(_)) => "is not UTF-8 text".to_owned(),
            Some(Ok(v)) => match problem(&v) {
                None => return Some(v),
                Some(p) => p.to_owned(),
            },
        };
        // Never the value: it is a secret.
        self.errors.push((
            key_at.clone(),
            format!("Secret {ns}/{name} key {key:?} {problem}"),
        ));
        None
    }
}

/// The PEM CA certificate of `tls.caBundle` (standard base64, as eventing-natss
/// decodes it; line breaks are ignored).
fn ca_bundle(bundle: &str) -> Result<String, String> {
    use base64::Engine as _;
    let compact: String = bundle.split_ascii_whitespace().collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| {
            "is not base64: write the PEM CA certificate base64-encoded (base64 -w0 ca.crt)"
                .to_owned()
        })?;
    let pem = String::from_utf8(bytes)
        .map_err(|_| "is base64, but not of a PEM CA certificate (not UTF-8 text)".to_owned())?;
    match cert_problem(&pem) {
        Some(p) => Err(format!("decoded, {p}")),
        None => Ok(pem),
    }
}

/// Records `delivery` and `subscribers` of a channel spec as unsupported.
fn unsupported_channel_fields(
    delivery: Option<Value>,
    subscribers: Option<Value>,
    spec_at: &FieldPath,
    problems: &mut Problems,
) {
    unsupported(
        delivery,
        spec_at.key("delivery"),
        "put the delivery on the Broker (spec.delivery), which every trigger inherits, or on a \
         Trigger",
        problems,
    );
    unsupported(
        subscribers,
        spec_at.key("subscribers"),
        "subscribers come from the broker's Triggers",
        problems,
    );
}

/// Records field `at` as unsupported (`why`) unless absent or a zero value,
/// which Knative treats as unset.
fn unsupported(value: Option<Value>, at: FieldPath, why: &str, problems: &mut Problems) {
    if value.as_ref().is_some_and(|v| !is_zero(v)) {
        problems.at(at, format!("not supported: {why}"));
    }
}

/// Whether `v` is what Go decodes as the zero value (unset).
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// `v` as a `T`, or the field path (under `at`) and message of the first problem.
fn typed<T: DeserializeOwned>(v: Value, at: &FieldPath) -> Result<T, (FieldPath, String)> {
    use serde_path_to_error::Segment;
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().iter().fold(at.clone(), |acc, seg| match seg {
            Segment::Seq { index } => acc.index(*index),
            Segment::Map { key } => acc.key(key),
            Segment::Enum { variant } => acc.key(variant),
            Segment::Unknown => acc.key("?"),
        });
        (path, e.into_inner().to_string())
    })
}

/// Moves the problem of `r`, if any, into `problems`.
fn record<T>(r: Result<T, (FieldPath, String)>, problems: &mut Problems) -> Option<T> {
    r.map_err(|(field, message)| problems.at(field, message))
        .ok()
}

/// Parses the YAML text of a ConfigMap value (`what` names it in the message).
fn parse_yaml(text: &str, what: &str) -> Result<Value, String> {
    match serde_saphyr::from_str::<Value>(text) {
        Ok(Value::Object(o)) => Ok(Value::Object(o)),
        Ok(Value::Null) => Err(format!("{what} is empty")),
        Ok(_) => Err(format!("{what} must be a YAML mapping")),
        Err(e) => {
            let plain = e.without_snippet().to_string();
            Err(match e.location() {
                Some(loc) if loc.line() > 0 => {
                    let suffix = format!(" at line {}, column {}", loc.line(), loc.column());
                    let text = plain.strip_suffix(&suffix).unwrap_or(&plain);
                    format!("invalid YAML in {what}{suffix} of the value: {text}")
                }
                _ => format!("invalid YAML in {what}: {plain}"),
            })
        }
    }
}

/// A Go duration (`time.ParseDuration`: `24h`, `1h30m`, `1.5s`, `300ms`), as
/// Knative's NatsJetStreamChannel reads `maxAge` and `duplicateWindow`; an
/// ISO-8601 duration (`PT24H`) is accepted too, cebus' notation elsewhere.
fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{s:?} is not a duration; write e.g. 24h, 90s or 1h30m (as Knative reads it), or \
             PT24H"
        )
    };
    let text = s.trim();
    if text.starts_with('P') {
        return parse_iso8601(text).map_err(|e| e.to_string());
    }
    if text.starts_with('-') {
        return Err(format!("{s:?}: negative durations are not allowed"));
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(bad());
    }
    let mut nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(bad());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        // Digits beyond nanoseconds cannot change the result.
        let fraction = &fraction[..fraction.len().min(18)];
        let fraction_nanos = if fraction.is_empty() {
            0
        } else {
            let digits: u128 = fraction.parse().map_err(|_| bad())?;
            digits * per / 10u128.pow(fraction.len() as u32)
        };
        nanos = whole
            .checked_mul(per)
            .and_then(|n| n.checked_add(fraction_nanos))
            .and_then(|n| n.checked_add(nanos))
            .ok_or_else(|| format!("{s:?}: duration is too large"))?;
        rest = tail;
    }
    let secs = u64::try_from(nanos / 1_000_000_000)
        .map_err(|_| format!("{s:?}: duration is too large"))?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::load::{Config, load_str};

    /// Knative's system ConfigMaps for the two durable channels.
    const KAFKA_SYSTEM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kafka-channel-config, \
                                namespace: knative-eventing}\ndata: {bootstrap.servers: '127.0.0.1:9092'}\n";
    const NATS_SYSTEM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-nats, \
                               namespace: knative-eventing}\ndata:\n  eventing-nats: |\n    \
                               url: nats://127.0.0.1:4222\n    connOpts: {maxReconnects: 5}\n";

    /// Broker `shop/orders` whose ConfigMap `shop/chan` holds `template` (indented
    /// into the block scalar here), plus `extra` documents.
    fn yaml(template: &str, extra: &str) -> String {
        let body: String = template.lines().map(|l| format!("    {l}\n")).collect();
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: orders, namespace: shop}}\n\
             spec: {{config: {{apiVersion: v1, kind: ConfigMap, name: chan}}}}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: chan, namespace: shop}}\ndata:\n  \
             channel-template-spec: |\n{body}---\n{extra}"
        )
    }

    fn config(text: &str) -> Config {
        let objects = load_str(Path::new("cfg.yaml"), text)
            .unwrap_or_else(|e| panic!("load failed: {e:?}\n{text}"));
        Config::from_objects(objects)
    }

    fn template_of(text: &str) -> Result<ChannelTemplate, Vec<ConfigError>> {
        let c = config(text);
        let errors = crate::validate::validate(&c);
        let planned = broker_channel_template(&c, &c.brokers[0]);
        // Validation and planning see the same problems.
        match &planned {
            Ok(_) => assert!(errors.is_empty(), "{errors:#?}"),
            Err(e) => assert_eq!(&errors, e),
        }
        planned
    }

    #[test]
    fn channel_names_and_topics_are_knatives() {
        assert_eq!(broker_channel_name("default"), "default-kne-trigger");
        let fits = "b".repeat(51);
        assert_eq!(broker_channel_name(&fits), format!("{fits}-kne-trigger"));
        // kmeta.ChildName: 19 characters of the name, its MD5, the suffix (the
        // expected value computed with Python's hashlib).
        let long = "a-very-long-broker-name-that-is-longer-than-fifty-one-chars";
        assert_eq!(
            broker_channel_name(long),
            "a-very-long-broker-dcbee26f959c242f6c3a45bb79f41525-kne-trigger"
        );
        assert_eq!(broker_channel_name(long).len(), 63);
        assert_eq!(
            kafka_channel_topic("shop", "orders-kne-trigger"),
            "knative-messaging-kafka.shop.orders-kne-trigger"
        );
    }

    #[test]
    fn templates_become_channels() {
        let memory = [
            // No template key at all: the in-memory channel, as before.
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: orders, namespace: shop}\n\
             spec: {config: {apiVersion: v1, kind: ConfigMap, name: chan}}\n---\napiVersion: v1\n\
             kind: ConfigMap\nmetadata: {name: chan, namespace: shop}\ndata: {other: x}\n"
                .to_owned(),
            yaml("apiVersion: messaging.knative.dev/v1\nkind: InMemoryChannel", ""),
            yaml(
                "apiVersion: messaging.knative.dev/v1\nkind: InMemoryChannel\nspec: {}",
                "",
            ),
        ];
        for text in &memory {
            assert_eq!(template_of(text), Ok(ChannelTemplate::InMemory), "{text}");
        }

        let kafka = template_of(&yaml(
            "apiVersion: messaging.knative.dev/v1beta1\nkind: KafkaChannel\nspec:\n  \
             numPartitions: 3\n  replicationFactor: 1\n  retentionDuration: PT168H",
            KAFKA_SYSTEM,
        ));
        assert_eq!(
            kafka,
            Ok(ChannelTemplate::Kafka(KafkaBrokerConfig {
                bootstrap_servers: "127.0.0.1:9092".into(),
                partitions: 3,
                replication_factor: 1,
                topic: Some("knative-messaging-kafka.shop.orders-kne-trigger".into()),
            }))
        );
        // The CRD's defaults: one partition, replication factor 1.
        let Ok(ChannelTemplate::Kafka(k)) = template_of(&yaml(
            "apiVersion: messaging.knative.dev/v1beta1\nkind: KafkaChannel",
            KAFKA_SYSTEM,
        )) else {
            panic!("a KafkaChannel without spec")
        };
        assert_eq!((k.partitions, k.replication_factor), (1, 1));

        let nats = template_of(&yaml(
            "apiVersion: messaging.knative.dev/v1alpha1\nkind: NatsJetStreamChannel\nspec:\n  \
             stream:\n    config:\n      retention: Interest\n      discard: New\n      \
             maxMsgs: 1000\n      maxBytes: -1\n      maxAge: 1h30m\n      maxMsgSize: 65536\n      \
             storage: Memory\n      replicas: 1\n      duplicateWindow: 90s\n      noAck: false",
            NATS_SYSTEM,
        ));
        assert_eq!(
            nats,
            Ok(ChannelTemplate::Nats(NatsBrokerConfig {
                servers: vec!["nats://127.0.0.1:4222".into()],
                keys: &NatsKeys::CONFIG_NATS,
                credentials: NatsCredentials::None,
                tls: NatsTls::default(),
                storage: NatsStorageKind::Memory,
                replicas: 1,
                max_age: Duration::from_secs(5400),
                max_bytes: None,
                max_messages: Some(1000),
                max_message_size: Some(65536),
                duplicate_window: Duration::from_secs(90),
            }))
        );
        // Without stream settings: JetStream's defaults (no age limit, 2 min window).
        let Ok(ChannelTemplate::Nats(n)) = template_of(&yaml(
            "apiVersion: messaging.knative.dev/v1alpha1\nkind: NatsJetStreamChannel",
            NATS_SYSTEM,
        )) else {
            panic!("a NatsJetStreamChannel without spec")
        };
        assert_eq!(
            (n.storage, n.max_age, n.duplicate_window, n.max_messages),
            (
                NatsStorageKind::File,
                Duration::ZERO,
                Duration::from_secs(120),
                None
            )
        );
    }

    #[test]
    fn a_broker_without_config_or_of_another_class_is_not_read() {
        let c = config(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\n---\n\
             apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: k, annotations: \
             {eventing.knative.dev/broker.class: Kafka}}\n",
        );
        assert_eq!(
            broker_channel_template(&c, &c.brokers[0]),
            Ok(ChannelTemplate::InMemory)
        );
        assert!(is_channel_based_broker(&c.brokers[0].object));
        assert!(!is_channel_based_broker(&c.brokers[1].object));
    }

    /// An expected error: (object, field, part of the message).
    type Expected = (&'static str, String, &'static str);

    /// Each case: config text, then every error expected.
    #[test]
    fn bad_templates_name_file_object_and_field() {
        const CM: &str = "ConfigMap shop/chan";
        const TPL: &str = "data.channel-template-spec";
        const KAFKA_CM: &str = "ConfigMap knative-eventing/kafka-channel-config";
        const NATS_CM: &str = "ConfigMap knative-eventing/config-nats";
        let kafka = |spec: &str, system: &str| {
            yaml(
                &format!("apiVersion: messaging.knative.dev/v1beta1\nkind: KafkaChannel\n{spec}"),
                system,
            )
        };
        let nats = |spec: &str, system: &str| {
            yaml(
                &format!(
                    "apiVersion: messaging.knative.dev/v1alpha1\nkind: NatsJetStreamChannel\n{spec}"
                ),
                system,
            )
        };
        let nats_system = |data: &str| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: config-nats, namespace: \
                 knative-eventing}}\ndata:\n{data}"
            )
        };
        let kafka_system = |data: &str| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: kafka-channel-config, \
                 namespace: knative-eventing}}\ndata: {data}\n"
            )
        };
        let field = |rest: &str| format!("{TPL}{rest}");
        let cases: Vec<(String, Vec<Expected>)> = vec![
            (
                yaml("apiVersion: messaging.knative.dev/v1\nkind: RabbitChannel", ""),
                vec![(CM, field(".kind"), "\"RabbitChannel\" is not a channel cebus runs")],
            ),
            (
                yaml("apiVersion: messaging.knative.dev/v1\nspec: {}", ""),
                vec![(CM, field(".kind"), "required: one of InMemoryChannel")],
            ),
            (
                yaml("apiVersion: messaging.knative.dev/v1\nkind: KafkaChannel", KAFKA_SYSTEM),
                vec![(
                    CM,
                    field(".apiVersion"),
                    "KafkaChannel is messaging.knative.dev/v1beta1, not \"messaging.knative.dev/v1\"",
                )],
            ),
            (
                yaml("kind: [unclosed", ""),
                vec![(CM, field(""), "invalid YAML in the template")],
            ),
            (
                yaml("just text", ""),
                vec![(CM, field(""), "the template must be a YAML mapping")],
            ),
            (
                yaml(
                    "apiVersion: messaging.knative.dev/v1\nkind: InMemoryChannel\nmetadata: {name: x}",
                    "",
                ),
                vec![(CM, field(".metadata"), "unknown field `metadata`")],
            ),
            (
                yaml(
                    "apiVersion: messaging.knative.dev/v1\nkind: InMemoryChannel\nspec:\n  \
                     delivery: {retry: 3}",
                    "",
                ),
                vec![(CM, field(".spec.delivery"), "not supported: put the delivery on the Broker")],
            ),
            (
                kafka("spec: {numPartitions: 3}", ""),
                vec![(CM, field(""), "a KafkaChannel needs its Kafka bootstrap servers")],
            ),
            (
                kafka("spec: {numPartitions: 0, replicationFactor: three}", KAFKA_SYSTEM),
                vec![(CM, field(".spec.replicationFactor"), "invalid type: string \"three\"")],
            ),
            (
                kafka("spec: {numPartitions: 0, partitions: 3}", KAFKA_SYSTEM),
                vec![(CM, field(".spec.partitions"), "unknown field `partitions`")],
            ),
            (
                kafka("spec: {numPartitions: 0, retentionDuration: P1D}", KAFKA_SYSTEM),
                vec![
                    (CM, field(".spec.numPartitions"), "0 is not an integer from 1 to 100000"),
                    (
                        CM,
                        field(".spec.retentionDuration"),
                        "\"P1D\": only the default retention",
                    ),
                ],
            ),
            (
                kafka("", &kafka_system("{other: x}")),
                vec![
                    (KAFKA_CM, "data.other".into(), "unknown key \"other\""),
                    (KAFKA_CM, "data[\"bootstrap.servers\"]".into(), "required"),
                ],
            ),
            (
                kafka(
                    "",
                    &kafka_system("{bootstrap.servers: 'kafka://h:1', auth.secret.ref.name: s}"),
                ),
                vec![
                    (
                        KAFKA_CM,
                        "data[\"auth.secret.ref.name\"]".into(),
                        "TLS/SASL (auth.secret.ref.name) is not supported yet",
                    ),
                    (KAFKA_CM, "data[\"bootstrap.servers\"]".into(), "\"kafka://h:1\": write host:port"),
                ],
            ),
            (
                nats("spec: {}", ""),
                vec![(CM, field(""), "a NatsJetStreamChannel needs the NATS URL")],
            ),
            (
                nats("", &nats_system("  eventing-nats: |\n    connOpts: {}\n")),
                vec![(NATS_CM, "data.eventing-nats.url".into(), "required")],
            ),
            (
                nats("", &nats_system("  eventing-nats: 'url: [x'\n")),
                vec![(NATS_CM, "data.eventing-nats".into(), "invalid YAML in the settings")],
            ),
            (
                nats(
                    "",
                    &nats_system(
                        "  eventing-nats: |\n    url: http://h:4222\n    auth: {credentialFile: {}}\n    \
                         servers: x\n",
                    ),
                ),
                vec![(NATS_CM, "data.eventing-nats.servers".into(), "unknown field `servers`")],
            ),
            (
                nats(
                    "",
                    &nats_system(
                        "  eventing-nats: |\n    url: http://h:4222\n    auth: {credentialFile: {secret: {name: c}}}\n",
                    ),
                ),
                vec![
                    (
                        NATS_CM,
                        "data.eventing-nats.auth.credentialFile.secret.name".into(),
                        "Secret knative-eventing/c is not defined in the configuration; it holds \
                         the NATS .creds file",
                    ),
                    (
                        NATS_CM,
                        "data.eventing-nats.url".into(),
                        "\"http://h:4222\": the scheme must be nats://",
                    ),
                ],
            ),
            (
                nats(
                    "spec:\n  stream:\n    overrideName: MINE\n    config:\n      retention: Limits\n      \
                     discard: Old\n      storage: disk\n      maxAge: 1d\n      replicas: 7\n      \
                     maxMsgs: -5\n      sources: [{name: other}]",
                    NATS_SYSTEM,
                ),
                vec![
                    (CM, field(".spec.stream.overrideName"), "not supported"),
                    (CM, field(".spec.stream.config.sources"), "not supported"),
                    (CM, field(".spec.stream.config.retention"), "\"Limits\" is not supported"),
                    (CM, field(".spec.stream.config.discard"), "\"Old\" is not supported"),
                    (CM, field(".spec.stream.config.maxMsgs"), "-5 is not an integer"),
                    (CM, field(".spec.stream.config.replicas"), "7 is not an integer from 1 to 5"),
                    (CM, field(".spec.stream.config.storage"), "\"disk\" is not a storage"),
                    (CM, field(".spec.stream.config.maxAge"), "\"1d\" is not a duration"),
                ],
            ),
            (
                nats(
                    "spec:\n  consumerConfigTemplate: {maxAckPending: 10}\n  stream:\n    config:\n      \
                     maxAge: 1m\n      duplicateWindow: 2m",
                    NATS_SYSTEM,
                ),
                vec![
                    (CM, field(".spec.consumerConfigTemplate"), "not supported: cebus runs one consumer"),
                    (
                        CM,
                        field(".spec.stream.config.duplicateWindow"),
                        "may not be longer than maxAge",
                    ),
                ],
            ),
            (
                // eventing-natss' example spells the key differently.
                "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: orders, namespace: shop}\n\
                 spec: {config: {apiVersion: v1, kind: ConfigMap, name: chan}}\n---\napiVersion: v1\n\
                 kind: ConfigMap\nmetadata: {name: chan, namespace: shop}\ndata:\n  channelTemplateSpec: |\n    \
                 kind: NatsJetStreamChannel\n"
                    .to_owned(),
                vec![(
                    CM,
                    "data.channelTemplateSpec".into(),
                    "the key of a channel template is channel-template-spec",
                )],
            ),
        ];
        for (text, expected) in &cases {
            let errors = template_of(text).expect_err(text);
            assert_eq!(errors.len(), expected.len(), "{text}\n{errors:#?}");
            for (object, field, message) in expected {
                let found = errors.iter().any(|e| {
                    e.object.as_deref() == Some(*object)
                        && e.field.as_deref() == Some(field.as_str())
                        && e.message.contains(message)
                        && e.file == Path::new("cfg.yaml")
                        && e.doc.is_some()
                });
                assert!(found, "no {object} {field}: {message}\n{text}\n{errors:#?}");
            }
        }
    }

    // A NATS `.creds` file, a PEM certificate and key (shapes only), and its seed.
    use crate::nats::tests::{CERT, CREDS, KEY, SEED};

    /// A NatsJetStreamChannel template with `config-nats` holding `settings`
    /// (lines of `data["eventing-nats"]`) and the Secrets of `knative-eventing`
    /// it may name: `nats-creds` (`nats.creds`, `other.creds`, `junk`),
    /// `nats-client-tls` (`tls.crt`, `tls.key`), `nats-ca` (`ca.crt`),
    /// `half-tls` (only `tls.crt`) and `swapped-tls` (a key as `tls.crt`). A
    /// Secret's bad base64 is validation's (`data` of the Secret).
    fn nats_with(settings: &str) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap();
        let settings: String = settings.lines().map(|l| format!("    {l}\n")).collect();
        let secret = |name: &str, values: &[(&str, &str)]| {
            let body: String = values
                .iter()
                .map(|(k, v)| format!("  {k}: {}\n", q(v)))
                .collect();
            format!(
                "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: \
                 knative-eventing}}\nstringData:\n{body}"
            )
        };
        let system = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: config-nats, namespace: \
             knative-eventing}}\ndata:\n  eventing-nats: |\n{settings}{}{}{}{}{}",
            secret(
                "nats-creds",
                &[
                    ("nats.creds", CREDS),
                    ("other.creds", CREDS),
                    ("junk", "hello")
                ]
            ),
            secret("nats-client-tls", &[("tls.crt", CERT), ("tls.key", KEY)]),
            secret("nats-ca", &[("ca.crt", CERT)]),
            secret("half-tls", &[("tls.crt", CERT)]),
            secret("swapped-tls", &[("tls.crt", KEY), ("tls.key", KEY)]),
        );
        yaml(
            "apiVersion: messaging.knative.dev/v1alpha1\nkind: NatsJetStreamChannel",
            &system,
        )
    }

    #[test]
    fn config_nats_auth_and_tls_become_credentials_and_tls() {
        use base64::Engine as _;
        let bundle = base64::engine::general_purpose::STANDARD.encode(CERT);
        let mtls = NatsTls {
            required: true,
            ca: Some(CERT.into()),
            client: Some(NatsClientCert {
                cert: CERT.into(),
                key: KEY.into(),
            }),
        };
        let cases: Vec<(String, NatsCredentials, NatsTls)> = vec![
            (
                "url: nats://h:4222\nauth: {}\ntls: {}".into(),
                NatsCredentials::None,
                NatsTls::default(),
            ),
            (
                // The key defaults to nats.creds, as in eventing-natss.
                "url: nats://h:4222\nauth:\n  credentialFile:\n    secret: {name: nats-creds}"
                    .into(),
                NatsCredentials::Creds(CREDS.into()),
                NatsTls::default(),
            ),
            (
                "url: nats://h:4222\nauth:\n  credentialFile:\n    secret: {name: nats-creds, \
                 key: other.creds}"
                    .into(),
                NatsCredentials::Creds(CREDS.into()),
                NatsTls::default(),
            ),
            (
                format!(
                    "url: tls://h:4222\nconnOpts: {{maxReconnects: 5}}\nauth:\n  credentialFile:\n    \
                     secret: {{name: nats-creds}}\n  tls:\n    secret: {{name: nats-client-tls}}\n\
                     tls:\n  caBundle: {bundle}"
                ),
                NatsCredentials::Creds(CREDS.into()),
                mtls.clone(),
            ),
            (
                "url: nats://h:4222\nauth:\n  tls:\n    secret: {name: nats-client-tls}\n\
                 tls:\n  secret: {name: nats-ca}"
                    .into(),
                NatsCredentials::None,
                mtls,
            ),
            (
                // Only the server's CA: TLS, without a client certificate.
                "url: nats://h:4222\ntls:\n  secret: {name: nats-ca}".into(),
                NatsCredentials::None,
                NatsTls {
                    required: true,
                    ca: Some(CERT.into()),
                    client: None,
                },
            ),
        ];
        for (settings, credentials, tls) in cases {
            let got = template_of(&nats_with(&settings));
            let Ok(ChannelTemplate::Nats(n)) = got else {
                panic!("{settings}: {got:#?}")
            };
            assert_eq!(n.credentials, credentials, "{settings}");
            assert_eq!(n.tls, tls, "{settings}");
        }
        // A tls:// URL asks for TLS by itself.
        let Ok(ChannelTemplate::Nats(n)) =
            template_of(&nats_with("url: tls://a:4222, nats://b:4222"))
        else {
            panic!("tls:// URLs")
        };
        assert_eq!(n.servers, ["tls://a:4222", "nats://b:4222"]);
    }

    #[test]
    fn config_nats_auth_and_tls_errors_name_the_field_and_no_secret() {
        use base64::Engine as _;
        const NATS_CM: &str = "ConfigMap knative-eventing/config-nats";
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let at = |rest: &str| format!("data.eventing-nats.{rest}");
        let creds = |secret: &str| {
            format!("url: nats://h:4222\nauth:\n  credentialFile:\n    secret: {secret}")
        };
        let client =
            |secret: &str| format!("url: nats://h:4222\nauth:\n  tls:\n    secret: {secret}");
        let cases: Vec<(String, String, String)> = vec![
            (
                creds("{name: missing}"),
                at("auth.credentialFile.secret.name"),
                "Secret knative-eventing/missing is not defined in the configuration".into(),
            ),
            (
                "url: nats://h:4222\nauth:\n  credentialFile: {}".into(),
                at("auth.credentialFile.secret.name"),
                "required: the name of the Secret in namespace knative-eventing holding the \
                 NATS .creds file"
                    .into(),
            ),
            (
                creds("{name: nats-client-tls}"),
                at("auth.credentialFile.secret.name"),
                "Secret knative-eventing/nats-client-tls has no key \"nats.creds\"".into(),
            ),
            (
                creds("{name: nats-creds, key: nope}"),
                at("auth.credentialFile.secret.key"),
                "Secret knative-eventing/nats-creds has no key \"nope\"".into(),
            ),
            (
                creds("{name: nats-creds, key: junk}"),
                at("auth.credentialFile.secret.key"),
                "Secret knative-eventing/nats-creds key \"junk\" is not a NATS credentials file"
                    .into(),
            ),
            (
                creds("{name: nats-creds, optional: true}"),
                at("auth.credentialFile.secret.optional"),
                "unknown field `optional`".into(),
            ),
            (
                client("{name: missing}"),
                at("auth.tls.secret.name"),
                "Secret knative-eventing/missing is not defined in the configuration".into(),
            ),
            (
                client("{name: half-tls}"),
                at("auth.tls.secret.name"),
                "Secret knative-eventing/half-tls has no key \"tls.key\"".into(),
            ),
            (
                client("{name: swapped-tls}"),
                at("auth.tls.secret.name"),
                "Secret knative-eventing/swapped-tls key \"tls.crt\" holds no PEM certificate"
                    .into(),
            ),
            (
                client("{}"),
                at("auth.tls.secret.name"),
                "required: the name of the Secret in namespace knative-eventing holding the \
                 client certificate"
                    .into(),
            ),
            (
                "url: nats://h:4222\ntls:\n  secret: {name: nats-creds}".into(),
                at("tls.secret.name"),
                "Secret knative-eventing/nats-creds has no key \"ca.crt\"".into(),
            ),
            (
                "url: nats://h:4222\ntls:\n  caBundle: 'MHcC!!'".into(),
                at("tls.caBundle"),
                "is not base64: write the PEM CA certificate base64-encoded".into(),
            ),
            (
                format!("url: nats://h:4222\ntls:\n  caBundle: {}", b64(KEY)),
                at("tls.caBundle"),
                "decoded, holds no PEM certificate".into(),
            ),
            (
                format!(
                    "url: nats://h:4222\ntls:\n  caBundle: {}\n  secret: {{name: nats-ca}}",
                    b64(CERT)
                ),
                at("tls"),
                "set caBundle or secret, not both".into(),
            ),
            (
                "url: nats://h:4222\ntls:\n  insecureSkipVerify: true".into(),
                at("tls.insecureSkipVerify"),
                "unknown field `insecureSkipVerify`".into(),
            ),
        ];
        for (settings, field, message) in &cases {
            let errors = template_of(&nats_with(settings)).expect_err(settings);
            assert_eq!(errors.len(), 1, "{settings}\n{errors:#?}");
            let e = &errors[0];
            assert_eq!(e.object.as_deref(), Some(NATS_CM), "{settings}");
            assert_eq!(
                e.field.as_deref(),
                Some(field.as_str()),
                "{settings}: {e:#?}"
            );
            assert!(
                e.message.starts_with(message.as_str()),
                "{settings}: {:?} does not start with {message:?}",
                e.message
            );
            // No message repeats a secret.
            for secret in [SEED, "MHcC", "hello", "MIIB"] {
                assert!(!e.message.contains(secret), "{settings}: {}", e.message);
            }
        }
    }

    #[test]
    fn a_shared_template_is_reported_once() {
        // Two brokers use one bad template: validation names it once.
        let text = format!(
            "{}apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: other, namespace: shop}}\n\
             spec: {{config: {{apiVersion: v1, kind: ConfigMap, name: chan}}}}\n",
            yaml(
                "apiVersion: messaging.knative.dev/v1beta1\nkind: KafkaChannel",
                ""
            )
        );
        let errors = crate::validate::validate(&config(&text));
        assert_eq!(errors.len(), 1, "{errors:#?}");
    }

    #[test]
    fn go_durations() {
        let ok = [
            ("0", 0),
            ("90s", 90_000),
            ("1h30m", 5_400_000),
            ("1.5h", 5_400_000),
            ("300ms", 300),
            ("2m0.5s", 120_500),
            ("+5s", 5_000),
            ("PT24H", 86_400_000),
        ];
        for (text, millis) in ok {
            assert_eq!(
                parse_go_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        assert_eq!(parse_go_duration("1500us"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_go_duration("7ns"), Ok(Duration::from_nanos(7)));
        for bad in ["", "5", "1d", "h", "1..5s", "-1s", "1h 30m", "P1Y"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
