//! The `status` shapes cebus writes on Kubernetes, as Knative writes them (its duck
//! types `Status`, `AddressStatus` and `SourceStatus`): conditions with
//! `observedGeneration`, the broker's address, a trigger's resolved URIs, a
//! source's sink. They give the CRDs their status schemas; the operator will write
//! them through the status subresource.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One condition, as in Knative's `apis.Condition`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of condition (`Ready`, `Addressable`, `BrokerReady`, …).
    #[serde(rename = "type")]
    pub condition_type: String,
    /// Status of the condition, one of `True`, `False`, `Unknown`.
    pub status: String,
    /// Severity of a failure of this condition: `Error` when empty, or `Warning`, `Info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// When the condition last changed status (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The reason of the last transition, one CamelCase word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable message about the transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An address events can be sent to (Knative's `duckv1.Addressable`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Addressable {
    /// Name of the address, when the object has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// PEM CA certificates to trust for the URL.
    #[serde(default, rename = "CACerts", skip_serializing_if = "Option::is_none")]
    pub ca_certs: Option<String>,
    /// OIDC audience of the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// Broker `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Addressable`, `FilterReady`, `IngressReady`, ….
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Further state the reconciler reports.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The ingress URL of the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Addressable>,
    /// Every address of the broker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Addressable>,
    /// The resolved URI of the broker's dead-letter sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink_uri: Option<String>,
    /// PEM CA certificates of the dead-letter sink.
    #[serde(
        default,
        rename = "deadLetterSinkCACerts",
        skip_serializing_if = "Option::is_none"
    )]
    pub dead_letter_sink_ca_certs: Option<String>,
    /// OIDC audience of the dead-letter sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink_audience: Option<String>,
}

/// Trigger `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `BrokerReady`, `SubscriberResolved`, `DeadLetterSinkResolved`, ….
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Further state the reconciler reports.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The resolved URI of the subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_uri: Option<String>,
    /// PEM CA certificates of the subscriber.
    #[serde(
        default,
        rename = "subscriberCACerts",
        skip_serializing_if = "Option::is_none"
    )]
    pub subscriber_ca_certs: Option<String>,
    /// OIDC audience of the subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_audience: Option<String>,
    /// The resolved URI of the dead-letter sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink_uri: Option<String>,
    /// PEM CA certificates of the dead-letter sink.
    #[serde(
        default,
        rename = "deadLetterSinkCACerts",
        skip_serializing_if = "Option::is_none"
    )]
    pub dead_letter_sink_ca_certs: Option<String>,
    /// OIDC audience of the dead-letter sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink_audience: Option<String>,
}

/// The `type` and `source` of events a source sends (Knative's `CloudEventAttributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudEventAttributes {
    /// The events' `type`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// The events' `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `status` of every source kind (Knative's `duckv1.SourceStatus`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `SinkProvided`, ….
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Further state the reconciler reports.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The resolved URI of the sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_uri: Option<String>,
    /// PEM CA certificates of the sink.
    #[serde(
        default,
        rename = "sinkCACerts",
        skip_serializing_if = "Option::is_none"
    )]
    pub sink_ca_certs: Option<String>,
    /// OIDC audience of the sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_audience: Option<String>,
    /// The attributes of the events the source sends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ce_attributes: Vec<CloudEventAttributes>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trigger_status_uses_knatives_field_names() {
        let status = TriggerStatus {
            observed_generation: Some(2),
            conditions: vec![Condition {
                condition_type: "Ready".into(),
                status: "True".into(),
                ..Condition::default()
            }],
            subscriber_uri: Some("http://s".into()),
            subscriber_ca_certs: Some("pem".into()),
            dead_letter_sink_ca_certs: Some("pem2".into()),
            ..TriggerStatus::default()
        };
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({
                "observedGeneration": 2,
                "conditions": [{"type": "Ready", "status": "True"}],
                "subscriberUri": "http://s",
                "subscriberCACerts": "pem",
                "deadLetterSinkCACerts": "pem2"
            })
        );
    }

    #[test]
    fn broker_and_source_status_use_knatives_field_names() {
        let broker = BrokerStatus {
            address: Some(Addressable {
                url: Some("http://b".into()),
                ca_certs: Some("pem".into()),
                ..Addressable::default()
            }),
            dead_letter_sink_ca_certs: Some("pem".into()),
            ..BrokerStatus::default()
        };
        assert_eq!(
            serde_json::to_value(&broker).unwrap(),
            json!({"address": {"url": "http://b", "CACerts": "pem"}, "deadLetterSinkCACerts": "pem"})
        );
        let source = SourceStatus {
            sink_uri: Some("http://k".into()),
            sink_ca_certs: Some("pem".into()),
            ce_attributes: vec![CloudEventAttributes {
                event_type: Some("dev.knative.sources.ping".into()),
                source: Some("/apis/v1/namespaces/ns/pingsources/p".into()),
            }],
            ..SourceStatus::default()
        };
        assert_eq!(
            serde_json::to_value(&source).unwrap(),
            json!({
                "sinkUri": "http://k",
                "sinkCACerts": "pem",
                "ceAttributes": [{"type": "dev.knative.sources.ping", "source": "/apis/v1/namespaces/ns/pingsources/p"}]
            })
        );
    }
}
