//! The plan: a validated config turned into what the runtime needs — resolved
//! URLs, merged delivery policies and compiled filters. Pure, so the reload logic
//! can diff two plans and the CLI's `validate` can print one.

use std::collections::BTreeMap;
use std::sync::Arc;

use cebus_api::{Config, ConfigError, Located};
use cebus_triggers::{DeliveryPolicy, Filter};

/// Settings that turn a config into a plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Base URL of this process's ingress, for `ref`s to Brokers.
    pub ingress_base: String,
    /// Largest request body a broker accepts unless its annotation says otherwise.
    pub max_event_size: usize,
}

/// One broker: `namespace/name` plus its settings and triggers.
#[derive(Debug, Clone)]
pub struct BrokerPlan {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Hop budget given to events that arrive without `knativebrokerttl`.
    pub max_ttl: u32,
    /// Largest accepted request body, in bytes.
    pub max_event_size: usize,
    /// Where the broker stores its events.
    pub channel: ChannelPlan,
    /// Triggers by name.
    pub triggers: BTreeMap<String, Arc<TriggerPlan>>,
}

/// The channel a broker runs on, from its class and ConfigMap: the channels
/// crate's configuration of a channel, which [`cebus_channels::open`] opens.
pub type ChannelPlan = cebus_channels::ChannelConfig;

impl BrokerPlan {
    /// `namespace/name`, the registry key and the ingress path.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// One trigger, ready to dispatch.
#[derive(Debug)]
pub struct TriggerPlan {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The compiled filter.
    pub filter: Filter,
    /// Resolved subscriber URL.
    pub subscriber: String,
    /// Resolved dead-letter sink URL.
    pub dead_letter_sink: Option<String>,
    /// `subscriber`, parsed once (not per delivery).
    pub subscriber_url: reqwest::Url,
    /// `dead_letter_sink`, parsed once.
    pub dead_letter_url: Option<reqwest::Url>,
    /// Retries, backoff, timeout and format, trigger merged over broker.
    pub policy: DeliveryPolicy,
    /// Whether a non-CloudEvent reply body counts as success.
    pub ignore_invalid_reply: bool,
    /// `kafka.eventing.knative.dev/delivery.order`: ordered triggers get one event
    /// per partition at a time (memory and NATS channels are one partition).
    pub ordered: bool,
    /// Everything the trigger's behaviour derives from, to detect changes.
    pub fingerprint: String,
    /// `namespace` as the `Kn-Namespace` header value, built once: cloning it
    /// into each delivery shares its bytes.
    pub namespace_header: Option<http::HeaderValue>,
}

/// A whole config as the runtime applies it: brokers by `namespace/name`.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Brokers by key.
    pub brokers: BTreeMap<String, BrokerPlan>,
    /// The validated config the plan was made from (extensions such as sources
    /// read their own objects from it).
    pub config: Arc<Config>,
    /// How the plan was made (ingress base URL, size limit).
    pub options: Option<PlanOptions>,
}

fn object_error<T>(
    loc: &Located<T>,
    kind: &str,
    ns: &str,
    name: &str,
    field: &str,
    message: String,
) -> ConfigError {
    ConfigError::file(&loc.file, message)
        .with_doc(loc.doc)
        .with_object(Some(cebus_api::error::object_label(kind, ns, name)))
        .with_field(field)
}

/// The NATS settings `nats` with the stream's message size limit defaulted to
/// the broker's: JetStream then refuses nothing ingress accepted.
fn nats_plan(mut nats: cebus_api::NatsBrokerConfig, max_event_size: usize) -> ChannelPlan {
    if nats.max_message_size.is_none() {
        nats.max_message_size = Some(i32::try_from(max_event_size).unwrap_or(i32::MAX));
    }
    ChannelPlan::Nats(nats)
}

/// The channel of broker `loc`: for `MTChannelBasedBroker` its channel
/// template (memory, Kafka or NATS), else NATS or Kafka with its parsed
/// ConfigMap.
fn channel_plan(
    config: &Config,
    loc: &Located<cebus_api::Broker>,
    max_event_size: usize,
) -> Result<ChannelPlan, Vec<ConfigError>> {
    let b = &loc.object;
    let kafka = cebus_api::is_kafka_broker(b);
    if !kafka && !cebus_api::is_nats_broker(b) {
        return Ok(match cebus_api::broker_channel_template(config, loc)? {
            cebus_api::ChannelTemplate::InMemory => ChannelPlan::Memory,
            cebus_api::ChannelTemplate::Kafka(k) => ChannelPlan::Kafka(k),
            cebus_api::ChannelTemplate::Nats(n) => nats_plan(n, max_event_size),
        });
    }
    let class = if kafka {
        cebus_api::KAFKA_BROKER_CLASS
    } else {
        cebus_api::NATS_BROKER_CLASS
    };
    let ns = b.metadata.namespace();
    let missing = |message: String| {
        vec![object_error(
            loc,
            "Broker",
            ns,
            &b.metadata.name,
            "spec.config",
            message,
        )]
    };
    let Some(r) = &b.spec.config else {
        return Err(missing(format!(
            "a {class} broker needs spec.config naming a ConfigMap"
        )));
    };
    let cm_ns = r
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(ns);
    let Some(cm) = config.config_map(cm_ns, &r.name) else {
        return Err(missing(format!(
            "ConfigMap {cm_ns}/{} is not defined",
            r.name
        )));
    };
    let located = |e: Vec<(cebus_api::FieldPath, String)>| {
        e.into_iter()
            .map(|(field, message)| {
                object_error(cm, "ConfigMap", cm_ns, &r.name, field.as_str(), message)
            })
            .collect::<Vec<_>>()
    };
    if kafka {
        return cebus_api::parse_kafka_config(&cm.object)
            .map(ChannelPlan::Kafka)
            .map_err(located);
    }
    let nats = cebus_api::parse_nats_config(&cm.object, cm_ns, config).map_err(located)?;
    Ok(nats_plan(nats, max_event_size))
}

/// Builds the plan for a validated config; errors name file, object and field.
pub fn plan(config: &Config, opts: &PlanOptions) -> Result<Plan, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut brokers = BTreeMap::new();
    for loc in &config.brokers {
        let b = &loc.object;
        let max_event_size = cebus_api::max_event_size(b, opts.max_event_size);
        let channel = match channel_plan(config, loc, max_event_size) {
            Ok(c) => c,
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        let plan = BrokerPlan {
            namespace: b.metadata.namespace().to_owned(),
            name: b.metadata.name.clone(),
            max_ttl: cebus_api::broker_ttl(b),
            max_event_size,
            channel,
            triggers: BTreeMap::new(),
        };
        brokers.insert(plan.key(), (loc, plan));
    }
    for loc in &config.triggers {
        let t = &loc.object;
        let ns = t.metadata.namespace();
        let name = t.metadata.name.as_str();
        let err =
            |field: &str, message: String| object_error(loc, "Trigger", ns, name, field, message);
        let Some((broker_loc, broker)) = brokers.get_mut(&format!("{ns}/{}", t.spec.broker)) else {
            errors.push(err(
                "spec.broker",
                format!("no Broker {ns}/{} in the config", t.spec.broker),
            ));
            continue;
        };
        let broker_delivery = broker_loc.object.spec.delivery.as_ref();
        let merged = cebus_triggers::merge(t.spec.delivery.as_ref(), broker_delivery);
        let filter = match Filter::compile(&t.spec) {
            Ok(f) => f,
            Err(cebus_triggers::Error::InvalidFilter { path, reason }) => {
                errors.push(err(&format!("spec.{path}"), reason));
                continue;
            }
            Err(e) => {
                errors.push(err("spec.filters", e.to_string()));
                continue;
            }
        };
        let subscriber =
            match cebus_api::resolve_destination(&t.spec.subscriber, ns, &opts.ingress_base) {
                Ok(u) => u,
                Err(e) => {
                    errors.push(err("spec.subscriber", e));
                    continue;
                }
            };
        let dead_letter_sink = match merged.dead_letter_sink.as_ref() {
            None => None,
            Some(d) => match cebus_api::resolve_destination(d, ns, &opts.ingress_base) {
                Ok(u) => Some(u),
                Err(e) => {
                    errors.push(err("spec.delivery.deadLetterSink", e));
                    continue;
                }
            },
        };
        let parse = |u: &str, field: &str| {
            reqwest::Url::parse(u)
                .map_err(|e| err(field, format!("{u:?} is not a usable URL: {e}")))
        };
        let subscriber_url = match parse(&subscriber, "spec.subscriber") {
            Ok(u) => u,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let dead_letter_url = match dead_letter_sink
            .as_deref()
            .map(|d| parse(d, "spec.delivery.deadLetterSink"))
        {
            None => None,
            Some(Ok(u)) => Some(u),
            Some(Err(e)) => {
                errors.push(e);
                continue;
            }
        };
        let policy = match DeliveryPolicy::from_spec(&merged) {
            Ok(p) => p,
            Err(e) => {
                errors.push(err("spec.delivery", e.to_string()));
                continue;
            }
        };
        let ignore_invalid_reply = cebus_api::ignores_invalid_reply(t);
        let ordered = cebus_api::delivery_order(t) == cebus_api::DeliveryOrder::Ordered;
        let fingerprint = serde_json::json!({
            "ordered": ordered,
            "spec": t.spec,
            "merged": merged,
            "subscriber": subscriber,
            "dls": dead_letter_sink,
            "ignoreInvalidReply": ignore_invalid_reply,
        })
        .to_string();
        // Kept for the trigger's life: no growth slack (a tenth of its memory).
        let mut fingerprint = fingerprint;
        fingerprint.shrink_to_fit();
        broker.triggers.insert(
            name.to_owned(),
            Arc::new(TriggerPlan {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                filter,
                subscriber,
                dead_letter_sink,
                subscriber_url,
                dead_letter_url,
                policy,
                ignore_invalid_reply,
                ordered,
                fingerprint,
                namespace_header: http::HeaderValue::from_str(ns).ok(),
            }),
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Plan {
        brokers: brokers.into_iter().map(|(k, (_, p))| (k, p)).collect(),
        config: Arc::new(config.clone()),
        options: Some(opts.clone()),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn plan_of(yaml: &str) -> Plan {
        let objects = cebus_api::load_str(Path::new("cfg.yaml"), yaml).expect("loads");
        let config = Config::from_objects(objects);
        let opts = PlanOptions {
            ingress_base: "http://127.0.0.1:8080".into(),
            max_event_size: 4096,
        };
        plan(&config, &opts).expect("plans")
    }

    /// An `MTChannelBasedBroker` runs on the channel its template names.
    #[test]
    fn channel_templates_choose_the_channel() {
        let broker = |template: &str| {
            format!(
                "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: b, namespace: ns}}\n\
                 spec: {{config: {{apiVersion: v1, kind: ConfigMap, name: t, namespace: knative-eventing}}}}\n\
                 ---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: t, namespace: knative-eventing}}\n\
                 data:\n  channel-template-spec: |\n    {template}\n---\napiVersion: v1\nkind: ConfigMap\n\
                 metadata: {{name: kafka-channel-config, namespace: knative-eventing}}\n\
                 data: {{bootstrap.servers: 'k:9092'}}\n---\napiVersion: v1\nkind: ConfigMap\n\
                 metadata: {{name: config-nats, namespace: knative-eventing}}\n\
                 data: {{eventing-nats: 'url: nats://n:4222'}}\n"
            )
        };
        let channel = |template: &str| plan_of(&broker(template)).brokers["ns/b"].channel.clone();
        assert_eq!(
            channel("{apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel}"),
            ChannelPlan::Memory
        );
        let ChannelPlan::Kafka(k) = channel(
            "{apiVersion: messaging.knative.dev/v1beta1, kind: KafkaChannel, spec: {numPartitions: 3}}",
        ) else {
            panic!("not Kafka")
        };
        assert_eq!(
            (
                k.bootstrap_servers.as_str(),
                k.partitions,
                k.topic.as_deref()
            ),
            (
                "k:9092",
                3,
                Some("knative-messaging-kafka.ns.b-kne-trigger")
            )
        );
        let ChannelPlan::Nats(n) =
            channel("{apiVersion: messaging.knative.dev/v1alpha1, kind: NatsJetStreamChannel}")
        else {
            panic!("not NATS")
        };
        assert_eq!(n.servers, ["nats://n:4222"]);
        assert_eq!(n.max_message_size, Some(4096), "the broker's size limit");
    }
}
