//! Knative's v1 resource types (Broker, Trigger, ConfigMap, Secret, the sources) and their shared shapes.
//!
//! Field names follow Knative's JSON exactly so a Knative user's YAML parses
//! unchanged. `spec` structs reject unknown fields; `metadata` keeps only what
//! cebus uses and ignores the rest (Kubernetes adds many fields there).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// `eventing.knative.dev/v1`.
pub const EVENTING_V1: &str = "eventing.knative.dev/v1";
/// Annotation that selects the broker class.
pub const BROKER_CLASS_ANNOTATION: &str = "eventing.knative.dev/broker.class";
/// The default broker class (channel based; in-memory channel in cebus).
pub const DEFAULT_BROKER_CLASS: &str = "MTChannelBasedBroker";
/// cebus annotation on a Broker: maximum `knativebrokerttl` hop count (default 255).
pub const BROKER_TTL_ANNOTATION: &str = "cebus.dev/broker-ttl";
/// cebus annotation on a Broker: largest accepted request body in bytes.
pub const MAX_EVENT_SIZE_ANNOTATION: &str = "cebus.dev/max-event-size";
/// cebus annotation on a Trigger: `"true"` treats a non-CloudEvent reply body as
/// success with no reply instead of a failed attempt.
pub const IGNORE_INVALID_REPLY_ANNOTATION: &str = "cebus.dev/ignore-invalid-reply";

/// Object metadata: the subset of Kubernetes' ObjectMeta cebus reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name.
    #[serde(default)]
    pub name: String,
    /// Namespace; `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// The namespace, `default` when unset.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

/// A reference to another Kubernetes object (Knative `KReference`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KReference {
    /// Kind of the referent.
    pub kind: String,
    /// Namespace of the referent; the referrer's when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the referent.
    pub name: String,
    /// API version of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// API group (alternative to `apiVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Name of one of the referent's addresses (Knative's multiple-address support).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Where to send events: `ref`, `uri`, or both (then `uri` is relative to `ref`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// An addressable object.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<KReference>,
    /// An absolute URI, or a path relative to `ref`'s address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// PEM CA certificates to trust for this destination.
    #[serde(default, rename = "CACerts", skip_serializing_if = "Option::is_none")]
    pub ca_certs: Option<String>,
    /// OIDC audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// Backoff policy between retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackoffPolicy {
    /// `delay × k` before retry k.
    Linear,
    /// `delay × 2^(k-1)` before retry k.
    Exponential,
}

/// Content mode of outgoing deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryFormat {
    /// Structured mode, `application/cloudevents+json`.
    Json,
    /// Binary mode (the default).
    Binary,
}

/// Knative `DeliverySpec`: retries, backoff, timeout and dead-letter sink.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliverySpec {
    /// Where events go when delivery gives up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink: Option<Destination>,
    /// Extra attempts after the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<i32>,
    /// `linear` or `exponential`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_policy: Option<BackoffPolicy>,
    /// ISO-8601 duration, the base backoff delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_delay: Option<String>,
    /// ISO-8601 duration, the time limit of each attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// ISO-8601 duration, the cap on a honoured `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_max: Option<String>,
    /// `json` or `binary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DeliveryFormat>,
}

/// Broker `spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrokerSpec {
    /// Backend configuration, usually a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<KReference>,
    /// Default delivery for the broker's triggers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

/// `eventing.knative.dev/v1` Broker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Broker {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: BrokerSpec,
}

/// Legacy trigger filter: exact matches on attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerFilter {
    /// Attribute name → required value (`""` = must exist and be non-empty).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// One entry of `filters` (Knative's SubscriptionsAPIFilter): exactly one
/// dialect per entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionsApiFilter {
    /// Every listed filter must match.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "non_empty_list"
    )]
    pub all: Vec<SubscriptionsApiFilter>,
    /// At least one listed filter must match.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "non_empty_list"
    )]
    pub any: Vec<SubscriptionsApiFilter>,
    /// The nested filter must not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<SubscriptionsApiFilter>>,
    /// Attribute equals value, for every entry.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "non_empty_map"
    )]
    pub exact: BTreeMap<String, String>,
    /// Attribute starts with value, for every entry.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "non_empty_map"
    )]
    pub prefix: BTreeMap<String, String>,
    /// Attribute ends with value, for every entry.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "non_empty_map"
    )]
    pub suffix: BTreeMap<String, String>,
    /// A CloudEvents SQL expression.
    #[serde(default, rename = "cesql", skip_serializing_if = "Option::is_none")]
    pub cesql: Option<String>,
}

/// Trigger `spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerSpec {
    /// Name of the broker in the trigger's namespace.
    pub broker: String,
    /// Knative's experimental cross-namespace broker reference (not supported by
    /// cebus; parsed so that validation can say so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_ref: Option<KReference>,
    /// Legacy attribute filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<TriggerFilter>,
    /// New-style filters (AND of the list); when non-empty `filter` is ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<SubscriptionsApiFilter>,
    /// Where matching events go.
    pub subscriber: Destination,
    /// Delivery options; fields left unset come from the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

/// `eventing.knative.dev/v1` Trigger.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: TriggerSpec,
}

/// `v1` ConfigMap (broker backend configuration, as in Knative).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// String data.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// A kind cebus loads: its `apiVersion`, `kind` and metadata.
pub trait Resource {
    /// `apiVersion` of the kind.
    const API_VERSION: &'static str;
    /// `kind`.
    const KIND: &'static str;
    /// The object's metadata.
    fn metadata(&self) -> &ObjectMeta;
    /// Mutable metadata (the loader fills in defaults).
    fn metadata_mut(&mut self) -> &mut ObjectMeta;
}

macro_rules! resource {
    ($ty:ty, $api:expr, $kind:literal) => {
        impl Resource for $ty {
            const API_VERSION: &'static str = $api;
            const KIND: &'static str = $kind;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
resource!(Broker, EVENTING_V1, "Broker");
resource!(Trigger, EVENTING_V1, "Trigger");
resource!(ConfigMap, "v1", "ConfigMap");

// `all: []` or `exact: {}` written in YAML is a mistake, not "absent"; with plain
// `Vec`/`BTreeMap` fields the two would be indistinguishable after parsing, so
// reject the empty form while deserializing, at its field path.
fn non_empty_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<SubscriptionsApiFilter>, D::Error> {
    let v = Vec::<SubscriptionsApiFilter>::deserialize(d)?;
    if v.is_empty() {
        return Err(serde::de::Error::custom(
            "must list at least one filter (remove the key instead)",
        ));
    }
    Ok(v)
}

fn non_empty_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let m = BTreeMap::<String, String>::deserialize(d)?;
    if m.is_empty() {
        return Err(serde::de::Error::custom(
            "must have exactly one attribute, found none",
        ));
    }
    Ok(m)
}

/// `sources.knative.dev/v1`: Knative's PingSource and ContainerSource.
pub const SOURCES_V1: &str = "sources.knative.dev/v1";
/// `sources.cebus.dev/v1alpha1`: cebus' own source kinds (WebhookSource).
pub const CEBUS_SOURCES_V1ALPHA1: &str = "sources.cebus.dev/v1alpha1";
/// cebus annotation on a PingSource: replay at most this many ticks missed while
/// cebus was not running (needs a state directory).
pub const PING_CATCH_UP_ANNOTATION: &str = "cebus.dev/catch-up";

/// Knative `CloudEventOverrides`: extensions set on every event a source sends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudEventOverrides {
    /// Extension name → value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, String>,
}

/// PingSource `spec` (Knative `sources.knative.dev/v1`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PingSourceSpec {
    /// Cron schedule: 5 fields, 6 with leading seconds, or a descriptor such as
    /// `@hourly`; an optional `CRON_TZ=<zone> ` prefix. Default `* * * * *`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone of the schedule (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Media type of `data` / `dataBase64`, the events' `datacontenttype`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Event data as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Event data as standard base64 (exclusive with `data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// Where events go.
    pub sink: Destination,
    /// Extensions added to every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
}

/// `sources.knative.dev/v1` PingSource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PingSource {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: PingSourceSpec,
}

/// A key of a `v1` Secret in the referrer's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Secret name.
    pub name: String,
    /// Key in the Secret's `data` or `stringData`.
    pub key: String,
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVarSource {
    /// A key of a Secret in the same config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
}

/// One environment variable of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Value from a Secret (exclusive with `value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// The subset of a Kubernetes container that cebus runs as a local process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    /// Container name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Image (not pulled in standalone mode; shown in logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The program and its first arguments (required in standalone mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Further arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Working directory of the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// The subset of a Kubernetes PodSpec cebus reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSpec {
    /// Containers; standalone cebus runs the first.
    #[serde(default)]
    pub containers: Vec<Container>,
}

/// A Kubernetes PodTemplateSpec (metadata and the PodSpec subset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodTemplateSpec {
    /// Pod metadata (ignored in standalone mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ObjectMeta>,
    /// Pod spec.
    #[serde(default)]
    pub spec: PodSpec,
}

/// ContainerSource `spec` (Knative `sources.knative.dev/v1`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerSourceSpec {
    /// The pod template; its first container runs.
    pub template: PodTemplateSpec,
    /// Where the process sends events (`K_SINK`).
    pub sink: Destination,
    /// Extensions the process should add (`K_CE_OVERRIDES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
}

/// `sources.knative.dev/v1` ContainerSource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSource {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: ContainerSourceSpec,
}

/// The event type taken from a request header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderValueFrom {
    /// Request header name (case-insensitive).
    pub header: String,
    /// Text put before the header's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// A hash function of an HMAC signature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// HMAC-SHA-256 (GitHub's `X-Hub-Signature-256`).
    #[default]
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl HmacAlgorithm {
    /// The lowercase name, as in `sha256=` prefixes.
    pub fn as_str(self) -> &'static str {
        match self {
            HmacAlgorithm::Sha256 => "sha256",
            HmacAlgorithm::Sha512 => "sha512",
        }
    }
}

/// How a signature is written in its header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    /// Hexadecimal (GitHub, Stripe-style).
    #[default]
    Hex,
    /// Standard base64.
    Base64,
}

/// HMAC over the raw request body. Every field but the secret defaults to
/// GitHub's scheme: header `X-Hub-Signature-256`, `sha256`, prefix `sha256=`, hex.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HmacAuth {
    /// The shared secret.
    pub secret_key_ref: SecretKeySelector,
    /// Header carrying the signature (default `X-Hub-Signature-256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Hash function (default `sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<HmacAlgorithm>,
    /// Text before the signature (default `<algorithm>=`; `""` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `hex` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<SignatureEncoding>,
}

/// HTTP basic authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    /// Expected user name.
    pub username: String,
    /// Expected password.
    pub password_secret_key_ref: SecretKeySelector,
}

/// `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BearerAuth {
    /// Expected token.
    pub token_secret_key_ref: SecretKeySelector,
}

/// A provider's signature over a timestamp and the body, refused when the
/// timestamp is further from now than `tolerance` (Stripe's `Stripe-Signature`,
/// Slack's `X-Slack-Signature`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimestampedHmacAuth {
    /// The provider's signing secret.
    pub secret_key_ref: SecretKeySelector,
    /// Largest distance between the signed timestamp and now, ISO-8601 (default `PT5M`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<String>,
}

/// Replays of a delivery id answered without delivering them again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookDedup {
    /// Request header carrying the provider's delivery id (default `X-GitHub-Delivery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// How long an accepted delivery id is remembered, ISO-8601 (default `PT10M`;
    /// `PT0S` turns deduplication off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Most delivery ids remembered; the oldest is forgotten first (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<u32>,
}

/// Authentication of webhook requests; every configured check must pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookAuth {
    /// HMAC signature of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac: Option<HmacAuth>,
    /// Basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<BearerAuth>,
    /// Stripe's `Stripe-Signature: t=<unix time>,v1=<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe: Option<TimestampedHmacAuth>,
    /// Slack's `X-Slack-Signature: v0=<hex>` with `X-Slack-Request-Timestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<TimestampedHmacAuth>,
}

/// WebhookSource `spec` (cebus `sources.cebus.dev/v1alpha1`): HTTP POSTs to
/// `/webhooks/<namespace>/<name>` become CloudEvents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSourceSpec {
    /// The events' `type` (exclusive with `eventTypeFromHeader`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// The events' `type` from a request header, with an optional prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type_from_header: Option<HeaderValueFrom>,
    /// The events' `source` (default `/apis/v1/namespaces/<ns>/webhooksources/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_source: Option<String>,
    /// Request header whose value becomes the event `id` (else a fresh UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_from_header: Option<String>,
    /// Extension name → request header copied into it (when present).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions_from_headers: BTreeMap<String, String>,
    /// Authentication; none means anyone who can reach the listener may post.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<WebhookAuth>,
    /// Deduplication by delivery id (on by default, keyed by `X-GitHub-Delivery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<WebhookDedup>,
    /// Where events go.
    pub sink: Destination,
    /// Extensions added to every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
}

/// `sources.cebus.dev/v1alpha1` WebhookSource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSource {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: WebhookSourceSpec,
}

/// `v1` Secret: `data` (standard base64) and `stringData` (plain; wins on the same
/// key, as in Kubernetes). Its `Debug` output never shows values.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Secret type (e.g. `Opaque`); not interpreted.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<String>,
    /// Key → base64 value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Key → plain value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&String> = self.data.keys().chain(self.string_data.keys()).collect();
        f.debug_struct("Secret")
            .field("metadata", &self.metadata)
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

impl Secret {
    /// The bytes of `key`: `stringData` first, then decoded `data`; `None` when
    /// absent or not valid base64 (validation reports the latter).
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        use base64::Engine as _;
        if let Some(v) = self.string_data.get(key) {
            return Some(v.as_bytes().to_vec());
        }
        let v = self.data.get(key)?;
        base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .ok()
    }

    /// Whether the Secret has `key`.
    pub fn has_key(&self, key: &str) -> bool {
        self.string_data.contains_key(key) || self.data.contains_key(key)
    }
}

resource!(PingSource, SOURCES_V1, "PingSource");
resource!(ContainerSource, SOURCES_V1, "ContainerSource");
resource!(WebhookSource, CEBUS_SOURCES_V1ALPHA1, "WebhookSource");
resource!(Secret, "v1", "Secret");

/// `sources.knative.dev/v1beta1`: the KafkaSource version many Knative users still
/// write; loaded exactly like `v1`.
pub const SOURCES_V1BETA1: &str = "sources.knative.dev/v1beta1";

/// Where a KafkaSource's consumer group starts when it has no committed offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KafkaInitialOffset {
    /// The oldest record still in the partition.
    Earliest,
    /// Only records produced after the group first joined (Knative's default).
    #[default]
    Latest,
}

/// How a KafkaSource delivers the records of one partition (Knative's `spec.ordering`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KafkaOrdering {
    /// One record of a partition at a time, in offset order (Knative's default).
    #[default]
    Ordered,
    /// Several records at once (bounded); offsets are still committed contiguously.
    Unordered,
}

/// KafkaSource `spec` (Knative `sources.knative.dev/v1` and `v1beta1`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSourceSpec {
    /// Kafka brokers to bootstrap from, `host:port` each.
    pub bootstrap_servers: Vec<String>,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group (default `cebus-kafkasource-<namespace>-<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
    /// Where a group without committed offsets starts: `earliest` or `latest` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_offset: Option<KafkaInitialOffset>,
    /// `ordered` (default) or `unordered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<KafkaOrdering>,
    /// Where events go.
    pub sink: Destination,
    /// Extensions added to every wrapped record's event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
}

/// `sources.knative.dev/v1` KafkaSource (`v1beta1` is read the same way).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSource {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: KafkaSourceSpec,
}

resource!(KafkaSource, SOURCES_V1, "KafkaSource");
