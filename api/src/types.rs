//! Knative's v1 resource types (Broker, Trigger, ConfigMap and their shared shapes).
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
