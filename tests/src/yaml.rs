//! Knative YAML of brokers and triggers: a channel-based broker, a `Kafka` broker
//! and a `NatsJetStreamBroker`, each with its ConfigMap and triggers.

/// One Trigger of a broker, as the builders below write it.
#[derive(Debug, Clone, Copy)]
pub struct Trigger<'a> {
    /// `metadata.name`.
    pub name: &'a str,
    /// `metadata.annotations` lines, indented by 4 (empty: none).
    pub annotations: &'a str,
    /// Extra `spec` lines (filters, delivery), indented by 2.
    pub spec: &'a str,
    /// The subscriber's URI.
    pub subscriber: &'a str,
}

impl<'a> Trigger<'a> {
    /// A trigger `name` with `spec` lines (indented by 2) delivering to `subscriber`.
    pub fn new(name: &'a str, spec: &'a str, subscriber: &'a str) -> Trigger<'a> {
        Trigger {
            name,
            annotations: "",
            spec,
            subscriber,
        }
    }

    /// The same trigger with `annotations` lines (indented by 4).
    pub fn annotated(self, annotations: &'a str) -> Trigger<'a> {
        Trigger {
            annotations,
            ..self
        }
    }

    /// The Trigger document of broker `broker` (ends with the spec lines).
    pub fn yaml(&self, broker: &str) -> String {
        let annotations = if self.annotations.is_empty() {
            String::new()
        } else {
            format!("  annotations:\n{}", self.annotations)
        };
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {}\n\
             {annotations}spec:\n  broker: {broker}\n  subscriber:\n    uri: {}\n{}",
            self.name, self.subscriber, self.spec
        )
    }
}

/// `head` followed by the documents of `triggers` of `broker`, each after `---`.
fn with_triggers<'a>(
    mut head: String,
    broker: &str,
    triggers: impl IntoIterator<Item = Trigger<'a>>,
) -> String {
    for t in triggers {
        if !head.ends_with('\n') {
            head.push('\n');
        }
        head.push_str("---\n");
        head.push_str(&t.yaml(broker));
    }
    head
}

/// A Broker (the default, channel-based class, in memory) and Triggers as
/// Knative YAML: `broker_extra` are lines after the broker's `metadata.name`
/// (annotations, spec); `triggers` are (name, extra spec YAML indented by 2,
/// subscriber URL).
pub fn broker_yaml(broker: &str, broker_extra: &str, triggers: &[(&str, &str, &str)]) -> String {
    memory_yaml(
        broker,
        broker_extra,
        triggers
            .iter()
            .map(|(name, spec, url)| Trigger::new(name, spec, url)),
    )
}

/// [`broker_yaml`] with [`Trigger`]s.
pub fn memory_yaml<'a>(
    broker: &str,
    broker_extra: &str,
    triggers: impl IntoIterator<Item = Trigger<'a>>,
) -> String {
    with_triggers(
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {broker}\n{broker_extra}"
        ),
        broker,
        triggers,
    )
}

/// A durable Broker of broker class `class` with its ConfigMap `<broker>-<cm>`
/// holding `data` (lines indented by 2), and triggers.
fn durable_yaml(
    broker: &str,
    class: &str,
    cm: &str,
    data: &str,
    triggers: &[Trigger<'_>],
) -> String {
    with_triggers(
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {broker}\n  \
             annotations:\n    eventing.knative.dev/broker.class: {class}\nspec:\n  \
             config:\n    apiVersion: v1\n    kind: ConfigMap\n    name: {broker}-{cm}\n\
             ---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {broker}-{cm}\ndata:\n{data}"
        ),
        broker,
        triggers.iter().copied(),
    )
}

/// A `Kafka` broker named `broker` on `bootstrap` with its ConfigMap (plus
/// `cm_extra` lines, indented by 2) and triggers.
pub fn kafka_yaml(
    broker: &str,
    bootstrap: &str,
    cm_extra: &str,
    triggers: &[Trigger<'_>],
) -> String {
    durable_yaml(
        broker,
        "Kafka",
        "kafka",
        &format!("  bootstrap.servers: \"{bootstrap}\"\n{cm_extra}"),
        triggers,
    )
}

/// A `NatsJetStreamBroker` named `broker` on `url`, its ConfigMap (plus
/// `cm_extra` lines, indented by 2) and triggers.
pub fn nats_yaml(broker: &str, url: &str, cm_extra: &str, triggers: &[Trigger<'_>]) -> String {
    durable_yaml(
        broker,
        "NatsJetStreamBroker",
        "nats",
        &format!("  url: {url}\n{cm_extra}"),
        triggers,
    )
}
