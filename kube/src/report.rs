//! The status cebus writes on Brokers and Triggers, as Knative writes it: the
//! conditions (`Ready`, `Addressable`; `BrokerReady`, `SubscriberResolved`,
//! `DeadLetterSinkResolved`), `observedGeneration`, the broker's address and a
//! trigger's resolved URIs. [`broker_status`] and [`trigger_status`] decide
//! (pure); [`write`] patches the status subresource when it changed.

use std::collections::BTreeMap;

use cebus_api::ConfigError;
use cebus_broker::control::{ObjectKey, ObjectState, Report};
use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::Value;

use crate::address::Ingress;
use crate::snapshot::{Built, Problem, Seen};
use crate::status::{Addressable, BrokerStatus, Condition, TriggerStatus};

/// What became of one object, before and after admission.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Running as given.
    Ready,
    /// Left out: its spec is invalid (the errors name the field).
    Invalid(Vec<ConfigError>),
    /// Left out: a destination does not resolve.
    Unresolved {
        /// Why the subscriber does not resolve.
        subscriber: Option<String>,
        /// Why the dead-letter sink does not resolve.
        dead_letter_sink: Option<String>,
    },
    /// A trigger whose broker (named) does not exist.
    NoBroker(String),
    /// A trigger whose broker exists but is not ready.
    BrokerNotReady,
    /// Not applied yet (the config in force stays).
    Unknown,
}

/// Each Broker and Trigger of a snapshot with its outcome: its problem before
/// admission, else what admission said.
pub fn outcomes(built: &Built, report: &Report) -> Vec<(Seen, Outcome)> {
    let states: BTreeMap<&ObjectKey, &ObjectState> =
        report.objects.iter().map(|(k, s)| (k, s)).collect();
    let broker_ready = |ns: &str, name: &str| {
        let key = ObjectKey {
            kind: "Broker",
            namespace: ns.to_owned(),
            name: name.to_owned(),
        };
        built
            .seen
            .iter()
            .any(|s| s.key == key)
            .then(|| matches!(states.get(&key), Some(ObjectState::Ready)))
    };
    let trigger_broker: BTreeMap<(&str, &str), &str> = built
        .config
        .triggers
        .iter()
        .map(|t| {
            let m = &t.object.metadata;
            (
                (m.namespace(), m.name.as_str()),
                t.object.spec.broker.as_str(),
            )
        })
        .collect();
    built
        .seen
        .iter()
        .map(|seen| {
            let outcome = match &seen.problem {
                Some(Problem::Invalid(errors)) => Outcome::Invalid(errors.clone()),
                Some(Problem::Unresolved {
                    subscriber,
                    dead_letter_sink,
                }) => Outcome::Unresolved {
                    subscriber: subscriber.clone(),
                    dead_letter_sink: dead_letter_sink.clone(),
                },
                None => match states.get(&seen.key) {
                    Some(ObjectState::Ready) => Outcome::Ready,
                    Some(ObjectState::Invalid(errors)) => {
                        let broker = trigger_broker
                            .get(&(seen.key.namespace.as_str(), seen.key.name.as_str()))
                            .filter(|_| seen.key.kind == "Trigger");
                        match broker.map(|b| (b, broker_ready(&seen.key.namespace, b))) {
                            Some((b, None)) => Outcome::NoBroker((*b).to_owned()),
                            Some((_, Some(false))) => Outcome::BrokerNotReady,
                            _ => Outcome::Invalid(errors.clone()),
                        }
                    }
                    Some(ObjectState::Held) | None => Outcome::Unknown,
                },
            };
            (seen.clone(), outcome)
        })
        .collect()
}

/// `field: message` of each error, as a status message.
fn describe(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| match &e.field {
            Some(field) => format!("{field}: {}", e.message),
            None => e.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A condition of `condition_type`: `Ok(())` is `True`, `Err((reason, message))`
/// is `False`, and `None` is `Unknown`. Its transition time is the previous one
/// when the status did not change, else `now`.
fn condition(
    condition_type: &str,
    state: Option<Result<(), (&str, String)>>,
    previous: &[Condition],
    now: &str,
) -> Condition {
    let (status, reason, message) = match state {
        Some(Ok(())) => ("True", None, None),
        Some(Err((reason, message))) => ("False", Some(reason.to_owned()), Some(message)),
        None => ("Unknown", Some("Pending".to_owned()), None),
    };
    let since = previous
        .iter()
        .find(|c| c.condition_type == condition_type && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_owned());
    Condition {
        condition_type: condition_type.to_owned(),
        status: status.to_owned(),
        severity: None,
        last_transition_time: Some(since),
        reason,
        message,
    }
}

fn previous_conditions(status: &Value) -> Vec<Condition> {
    status
        .get("conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default()
}

/// The status of a broker with `outcome`; `now` is RFC 3339.
pub fn broker_status(seen: &Seen, outcome: &Outcome, ingress: &Ingress, now: &str) -> BrokerStatus {
    let previous = previous_conditions(&seen.status);
    let ready: Option<Result<(), (&str, String)>> = match outcome {
        Outcome::Ready => Some(Ok(())),
        Outcome::Invalid(errors) => Some(Err(("InvalidSpec", describe(errors)))),
        Outcome::Unresolved {
            dead_letter_sink, ..
        } => Some(Err((
            "DeadLetterSinkResolveFailed",
            dead_letter_sink.clone().unwrap_or_default(),
        ))),
        Outcome::NoBroker(_) | Outcome::BrokerNotReady | Outcome::Unknown => None,
    };
    let url = matches!(outcome, Outcome::Ready)
        .then(|| ingress.broker_url(&seen.key.namespace, &seen.key.name));
    let addressable = match &url {
        Some(_) => Some(Ok(())),
        None => ready
            .clone()
            .map(|_| Err(("NotAddressable", "the broker is not ready".into()))),
    };
    BrokerStatus {
        observed_generation: seen.generation,
        conditions: vec![
            condition("Addressable", addressable, &previous, now),
            condition("Ready", ready, &previous, now),
        ],
        address: url.clone().map(|url| Addressable {
            name: Some("http".into()),
            url: Some(url),
            ..Addressable::default()
        }),
        dead_letter_sink_uri: seen.uris.dead_letter_sink.clone(),
        ..BrokerStatus::default()
    }
}

/// The status of a trigger with `outcome`; `now` is RFC 3339.
pub fn trigger_status(seen: &Seen, outcome: &Outcome, now: &str) -> TriggerStatus {
    let previous = previous_conditions(&seen.status);
    type State = Option<Result<(), (&'static str, String)>>;
    let not_configured = || {
        Some(Ok(())) // Knative marks an absent dead-letter sink as resolved
    };
    let (broker, subscriber, dls, ready): (State, State, State, State) = match outcome {
        Outcome::Ready => (Some(Ok(())), Some(Ok(())), not_configured(), Some(Ok(()))),
        Outcome::Invalid(errors) => {
            let why = describe(errors);
            (Some(Ok(())), None, None, Some(Err(("InvalidSpec", why))))
        }
        Outcome::Unresolved {
            subscriber,
            dead_letter_sink,
        } => {
            let sub: State = match subscriber {
                Some(why) => Some(Err(("Unresolvable", why.clone()))),
                None => Some(Ok(())),
            };
            let dls: State = match dead_letter_sink {
                Some(why) => Some(Err(("Unresolvable", why.clone()))),
                None => not_configured(),
            };
            let (reason, why) = match (subscriber, dead_letter_sink) {
                (Some(why), _) => ("SubscriberResolveFailed", why.clone()),
                (None, Some(why)) => ("DeadLetterSinkResolveFailed", why.clone()),
                (None, None) => ("Unresolvable", String::new()),
            };
            (None, sub, dls, Some(Err((reason, why))))
        }
        Outcome::NoBroker(broker) => {
            let why = format!("Broker {}/{broker} does not exist", seen.key.namespace);
            let state = || Some(Err(("BrokerDoesNotExist", why.clone())));
            (state(), None, None, state())
        }
        Outcome::BrokerNotReady => {
            let state = || {
                Some(Err((
                    "BrokerNotReady",
                    "the broker is not ready".to_owned(),
                )))
            };
            (state(), None, None, state())
        }
        Outcome::Unknown => (None, None, None, None),
    };
    let resolved = matches!(outcome, Outcome::Ready);
    TriggerStatus {
        observed_generation: seen.generation,
        conditions: vec![
            condition("BrokerReady", broker, &previous, now),
            condition("DeadLetterSinkResolved", dls, &previous, now),
            condition("Ready", ready, &previous, now),
            condition("SubscriberResolved", subscriber, &previous, now),
        ],
        subscriber_uri: seen.uris.subscriber.clone().filter(|_| resolved),
        dead_letter_sink_uri: seen.uris.dead_letter_sink.clone().filter(|_| resolved),
        ..TriggerStatus::default()
    }
}

/// The merge patch that makes `current` into `desired`: `desired`, with `null`
/// for each field `current` has and `desired` lacks. `None` when they are equal.
pub fn status_patch(current: &Value, desired: &Value) -> Option<Value> {
    if current == desired {
        return None;
    }
    let mut patch = desired.clone();
    if let (Some(current), Some(patch)) = (current.as_object(), patch.as_object_mut()) {
        for key in current.keys() {
            patch.entry(key.clone()).or_insert(Value::Null);
        }
    }
    Some(serde_json::json!({ "status": patch }))
}

/// How many status writes run at once.
const WRITES_IN_FLIGHT: usize = 16;
/// Attempts of one status write.
const WRITE_ATTEMPTS: u32 = 3;

/// One status write: the object and its patch.
pub struct StatusWrite {
    /// Which object.
    pub key: ObjectKey,
    /// The merge patch of its `status`.
    pub patch: Value,
}

/// The status writes that bring each object's status to what `outcomes` says.
pub fn writes(outcomes: &[(Seen, Outcome)], ingress: &Ingress, now: &str) -> Vec<StatusWrite> {
    outcomes
        .iter()
        .filter_map(|(seen, outcome)| {
            let desired = match seen.key.kind {
                "Broker" => serde_json::to_value(broker_status(seen, outcome, ingress, now)),
                _ => serde_json::to_value(trigger_status(seen, outcome, now)),
            }
            .ok()?;
            let patch = status_patch(&seen.status, &desired)?;
            Some(StatusWrite {
                key: seen.key.clone(),
                patch,
            })
        })
        .collect()
}

/// The API resource of a kind cebus writes status on.
pub fn resource(kind: &str) -> ApiResource {
    let plural = match kind {
        "Broker" => "brokers",
        _ => "triggers",
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("eventing.knative.dev", "v1", kind),
        plural,
    )
}

/// Patches each status (merge patches carry no resourceVersion, so a concurrent
/// write never conflicts; other failures are retried). The number that failed.
pub async fn write(client: &Client, writes: Vec<StatusWrite>) -> usize {
    let params = PatchParams::default();
    let results = futures::stream::iter(writes)
        .map(|w| {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &w.key.namespace, &resource(w.key.kind));
            let params = &params;
            async move {
                let mut delay = std::time::Duration::from_millis(100);
                for attempt in 1..=WRITE_ATTEMPTS {
                    match api.patch_status(&w.key.name, params, &Patch::Merge(&w.patch)).await {
                        Ok(_) => return true,
                        // Deleted since the snapshot: nothing to report on.
                        Err(kube::Error::Api(e)) if e.code == 404 => return true,
                        Err(e) => {
                            tracing::warn!(object = %w.key.label(), attempt, error = %e, "status write failed");
                            tokio::time::sleep(delay).await;
                            delay *= 4;
                        }
                    }
                }
                false
            }
        })
        .buffer_unordered(WRITES_IN_FLIGHT)
        .collect::<Vec<bool>>()
        .await;
    results.iter().filter(|ok| !**ok).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress() -> Ingress {
        Ingress {
            service: "broker-ingress".into(),
            namespace: "knative-eventing".into(),
        }
    }

    fn seen(kind: &'static str, status: Value) -> Seen {
        Seen {
            key: ObjectKey {
                kind,
                namespace: "shop".into(),
                name: "x".into(),
            },
            generation: Some(4),
            status,
            problem: None,
            uris: crate::snapshot::Uris {
                subscriber: Some("http://sub/".into()),
                dead_letter_sink: None,
            },
        }
    }

    /// (type, status, reason) of each condition.
    fn conditions(value: &Value) -> Vec<(String, String, String)> {
        value["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let s = |f: &str| c[f].as_str().unwrap_or_default().to_owned();
                (s("type"), s("status"), s("reason"))
            })
            .collect()
    }

    #[test]
    fn a_ready_broker_is_addressable_at_the_ingress_service() {
        let status = broker_status(
            &seen("Broker", Value::Null),
            &Outcome::Ready,
            &ingress(),
            "T1",
        );
        let value = serde_json::to_value(&status).unwrap();
        assert_eq!(value["observedGeneration"], 4);
        assert_eq!(
            value["address"]["url"],
            "http://broker-ingress.knative-eventing.svc.cluster.local/shop/x"
        );
        let want = [("Addressable", "True", ""), ("Ready", "True", "")];
        let want: Vec<_> = want
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(conditions(&value), want);
    }

    #[test]
    fn trigger_conditions_follow_the_outcome() {
        let bad = ConfigError::file(std::path::Path::new("f"), "must not be empty")
            .with_field("spec.filters[0].exact.type");
        let cases: Vec<(Outcome, [&str; 4], &str)> = vec![
            (Outcome::Ready, ["True", "True", "True", "True"], ""),
            (
                Outcome::Invalid(vec![bad]),
                ["True", "Unknown", "False", "Unknown"],
                "InvalidSpec: spec.filters[0].exact.type: must not be empty",
            ),
            (
                Outcome::Unresolved {
                    subscriber: Some("Route shop/r does not exist".into()),
                    dead_letter_sink: None,
                },
                ["Unknown", "True", "False", "False"],
                "SubscriberResolveFailed: Route shop/r does not exist",
            ),
            (
                Outcome::BrokerNotReady,
                ["False", "Unknown", "False", "Unknown"],
                "BrokerNotReady: the broker is not ready",
            ),
        ];
        for (outcome, want, ready) in cases {
            let status = trigger_status(&seen("Trigger", Value::Null), &outcome, "T1");
            let value = serde_json::to_value(&status).unwrap();
            let got: Vec<String> = conditions(&value).into_iter().map(|c| c.1).collect();
            assert_eq!(got, want, "{outcome:?}");
            let r = &value["conditions"][2];
            let text = match r["reason"].as_str() {
                Some(reason) if r["status"] == "False" => {
                    format!("{reason}: {}", r["message"].as_str().unwrap_or_default())
                }
                _ => String::new(),
            };
            assert_eq!(text, ready, "{outcome:?}");
            let uri = value.get("subscriberUri").and_then(Value::as_str);
            assert_eq!(uri.is_some(), outcome == Outcome::Ready, "{outcome:?}");
        }
    }

    #[test]
    fn an_unchanged_status_is_not_written_and_keeps_its_transition_times() {
        let first = trigger_status(&seen("Trigger", Value::Null), &Outcome::Ready, "T1");
        let current = serde_json::to_value(&first).unwrap();
        let again = trigger_status(&seen("Trigger", current.clone()), &Outcome::Ready, "T2");
        let desired = serde_json::to_value(&again).unwrap();
        assert_eq!(status_patch(&current, &desired), None);
    }

    #[test]
    fn a_patch_clears_fields_the_new_status_lacks() {
        let current = json!({"subscriberUri": "http://a/", "observedGeneration": 1});
        let desired = json!({"observedGeneration": 2});
        assert_eq!(
            status_patch(&current, &desired),
            Some(json!({"status": {"observedGeneration": 2, "subscriberUri": null}}))
        );
    }
}
