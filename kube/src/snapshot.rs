//! Objects read from the API server into a `cebus_api::Config`: each decoded as
//! file mode decodes a YAML document (its `Located` names the object), its `ref`
//! destinations resolved ([`crate::address`]), and what kept an object out.
//! Pure: the watches hand in the objects as JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use cebus_api::channel_template::{
    KAFKA_CHANNEL_CONFIG, KNATIVE_SYSTEM_NAMESPACE, NATS_CHANNEL_CONFIG,
};
use cebus_api::{Config, ConfigError, Destination, Object};
use cebus_broker::control::ObjectKey;
use serde_json::Value;

use crate::address::{self, Ingress, Lookup, Referent};

/// The objects of one moment, as JSON with `apiVersion` and `kind` set.
#[derive(Debug, Default, Clone)]
pub struct Listed {
    /// Brokers.
    pub brokers: Vec<Value>,
    /// Triggers.
    pub triggers: Vec<Value>,
    /// ConfigMaps (all the watches saw; only the ones brokers use are kept).
    pub config_maps: Vec<Value>,
}

/// One Broker or Trigger as the snapshot saw it, and what became of it before
/// admission.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// Its kind, namespace and name.
    pub key: ObjectKey,
    /// Its `metadata.generation`.
    pub generation: Option<i64>,
    /// Its `status` as read (what a status write compares against).
    pub status: Value,
    /// Why it was left out of the config, if it was.
    pub problem: Option<Problem>,
    /// Its resolved destinations.
    pub uris: Uris,
}

/// Why an object was left out before admission.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// It does not decode: the errors name the field.
    Invalid(Vec<ConfigError>),
    /// A destination does not resolve: the reasons.
    Unresolved {
        /// Why the subscriber does not resolve.
        subscriber: Option<String>,
        /// Why the dead-letter sink does not resolve.
        dead_letter_sink: Option<String>,
    },
}

/// The resolved URIs of an object's destinations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uris {
    /// A trigger's subscriber.
    pub subscriber: Option<String>,
    /// The dead-letter sink (a trigger's own, else its broker's).
    pub dead_letter_sink: Option<String>,
}

/// A snapshot's config and what the status writer needs to know of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    /// The decoded, resolved objects (not validated).
    pub config: Config,
    /// Every Broker and Trigger seen, in key order.
    pub seen: Vec<Seen>,
}

/// Where an object is, as its `Located::file`: the tail of its API path, so
/// errors and the admission name it.
pub fn object_path(plural: &str, namespace: &str, name: &str) -> PathBuf {
    PathBuf::from(format!("namespaces/{namespace}/{plural}/{name}"))
}

fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object
        .pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn key_of(kind: &'static str, object: &Value) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: meta_str(object, "namespace").to_owned(),
        name: meta_str(object, "name").to_owned(),
    }
}

/// Decodes one object; the errors of a failed decode.
fn decode(kind: &'static str, plural: &str, object: &Value) -> Result<Object, Vec<ConfigError>> {
    let key = key_of(kind, object);
    let file = object_path(plural, &key.namespace, &key.name);
    // `status` is cebus' own output, not config: it is not decoded.
    let mut value = object.clone();
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
    }
    cebus_api::load::load_doc(&file, 0, value).map_err(|e| vec![e])
}

/// The referents `listed`'s triggers and brokers need looked up.
pub fn referents(listed: &Listed) -> BTreeSet<Referent> {
    let mut out = BTreeSet::new();
    for (kind, plural, list) in [
        ("Broker", "brokers", &listed.brokers),
        ("Trigger", "triggers", &listed.triggers),
    ] {
        for object in list {
            let Ok(object) = decode(kind, plural, object) else {
                continue;
            };
            let ns = object.metadata().namespace().to_owned();
            for dest in destinations(&object) {
                out.extend(address::needs(dest, &ns));
            }
        }
    }
    out
}

/// The destinations of an object: a trigger's subscriber and dead-letter sink,
/// a broker's dead-letter sink.
fn destinations(object: &Object) -> Vec<&Destination> {
    match object {
        Object::Trigger(t) => {
            let spec = &t.object.spec;
            let dls = spec
                .delivery
                .as_ref()
                .and_then(|d| d.dead_letter_sink.as_ref());
            std::iter::once(&spec.subscriber).chain(dls).collect()
        }
        Object::Broker(b) => b
            .object
            .spec
            .delivery
            .as_ref()
            .and_then(|d| d.dead_letter_sink.as_ref())
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// Builds the config of `listed`. `lookup` answers for each referent of
/// [`referents`].
pub fn build<'a>(
    listed: &Listed,
    ingress: &Ingress,
    lookup: impl Fn(&Referent) -> Lookup<'a>,
) -> Built {
    let mut config = Config::default();
    let mut seen = Vec::new();
    let mut broker_dls: BTreeMap<(String, String), String> = BTreeMap::new();
    let resolve = |dest: &Destination, ns: &str| {
        let found = address::needs(dest, ns).map(|r| lookup(&r));
        address::resolve(dest, ns, ingress, found)
    };
    for object in &listed.brokers {
        let mut entry = seen_entry("Broker", object);
        match decode("Broker", "brokers", object) {
            Err(errors) => entry.problem = Some(Problem::Invalid(errors)),
            Ok(Object::Broker(mut b)) => {
                let ns = b.object.metadata.namespace().to_owned();
                let dls = b
                    .object
                    .spec
                    .delivery
                    .as_mut()
                    .and_then(|d| d.dead_letter_sink.as_mut());
                match dls.map(|d| (resolve(d, &ns), d)) {
                    Some((Err(why), _)) => {
                        entry.problem = Some(Problem::Unresolved {
                            subscriber: None,
                            dead_letter_sink: Some(why),
                        });
                    }
                    Some((Ok(resolved), d)) => {
                        *d = resolved.destination;
                        entry.uris.dead_letter_sink = Some(resolved.uri.clone());
                        broker_dls.insert((ns, b.object.metadata.name.clone()), resolved.uri);
                        config.brokers.push(b);
                    }
                    None => config.brokers.push(b),
                }
            }
            Ok(_) => unreachable!("a Broker decodes to a Broker"),
        }
        seen.push(entry);
    }
    for object in &listed.triggers {
        let mut entry = seen_entry("Trigger", object);
        match decode("Trigger", "triggers", object) {
            Err(errors) => entry.problem = Some(Problem::Invalid(errors)),
            Ok(Object::Trigger(mut t)) => {
                let ns = t.object.metadata.namespace().to_owned();
                let spec = &mut t.object.spec;
                let subscriber = resolve(&spec.subscriber, &ns);
                let dls = spec
                    .delivery
                    .as_ref()
                    .and_then(|d| d.dead_letter_sink.as_ref())
                    .map(|d| resolve(d, &ns));
                match (subscriber, dls) {
                    (Ok(sub), Some(Ok(dls))) => {
                        spec.subscriber = sub.destination;
                        if let Some(d) = spec.delivery.as_mut() {
                            d.dead_letter_sink = Some(dls.destination);
                        }
                        entry.uris.subscriber = Some(sub.uri);
                        entry.uris.dead_letter_sink = Some(dls.uri);
                        config.triggers.push(t);
                    }
                    (Ok(sub), None) => {
                        spec.subscriber = sub.destination;
                        entry.uris.subscriber = Some(sub.uri);
                        entry.uris.dead_letter_sink =
                            broker_dls.get(&(ns, spec.broker.clone())).cloned();
                        config.triggers.push(t);
                    }
                    (sub, dls) => {
                        entry.problem = Some(Problem::Unresolved {
                            subscriber: sub.err(),
                            dead_letter_sink: dls.and_then(Result::err),
                        });
                    }
                }
            }
            Ok(_) => unreachable!("a Trigger decodes to a Trigger"),
        }
        seen.push(entry);
    }
    let wanted = config_maps_used(&config);
    for object in &listed.config_maps {
        let key = key_of("ConfigMap", object);
        if !wanted.contains(&(key.namespace.clone(), key.name.clone())) {
            continue;
        }
        // A ConfigMap that does not decode is reported by the broker that names
        // it (its config is then missing).
        if let Ok(o) = decode("ConfigMap", "configmaps", object) {
            config.push(o);
        }
    }
    seen.sort_by(|a, b| a.key.cmp(&b.key));
    Built { config, seen }
}

fn seen_entry(kind: &'static str, object: &Value) -> Seen {
    Seen {
        key: key_of(kind, object),
        generation: object
            .pointer("/metadata/generation")
            .and_then(Value::as_i64),
        status: object.get("status").cloned().unwrap_or(Value::Null),
        problem: None,
        uris: Uris::default(),
    }
}

/// The ConfigMaps (namespace, name) the config reads: each broker's
/// `spec.config`, and the channel configs of `knative-eventing`.
fn config_maps_used(config: &Config) -> BTreeSet<(String, String)> {
    let mut used: BTreeSet<(String, String)> = [KAFKA_CHANNEL_CONFIG, NATS_CHANNEL_CONFIG]
        .into_iter()
        .map(|name| (KNATIVE_SYSTEM_NAMESPACE.to_owned(), name.to_owned()))
        .collect();
    for b in &config.brokers {
        if let Some(r) = &b.object.spec.config
            && r.kind == "ConfigMap"
        {
            let ns = r
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(b.object.metadata.namespace());
            used.insert((ns.to_owned(), r.name.clone()));
        }
    }
    used
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

    fn broker(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
               "metadata": {"name": name, "namespace": "shop", "generation": 3,
                            "uid": "u", "resourceVersion": "7", "managedFields": []},
               "spec": spec, "status": {"conditions": []}})
    }

    fn trigger(name: &str, subscriber: Value) -> Value {
        json!({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
               "metadata": {"name": name, "namespace": "shop", "generation": 1},
               "spec": {"broker": "default", "subscriber": subscriber}})
    }

    fn problem<'a>(built: &'a Built, name: &str) -> Option<&'a Problem> {
        built
            .seen
            .iter()
            .find(|s| s.key.name == name)
            .and_then(|s| s.problem.as_ref())
    }

    #[test]
    fn api_server_objects_decode_as_file_mode_decodes_yaml() {
        let listed = Listed {
            brokers: vec![broker(
                "default",
                json!({"config": {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"}}),
            )],
            triggers: vec![trigger("t", json!({"uri": "http://sink.example/"}))],
            config_maps: vec![
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "cfg", "namespace": "shop"}, "data": {}}),
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "kube-root-ca.crt", "namespace": "shop"}}),
            ],
        };
        let built = build(&listed, &ingress(), |_| Lookup::NotFound);
        assert_eq!(built.config.brokers.len(), 1);
        assert_eq!(built.config.triggers.len(), 1);
        let names: Vec<_> = built
            .config
            .config_maps
            .iter()
            .map(|c| c.object.metadata.name.as_str())
            .collect();
        assert_eq!(names, ["cfg"], "only the ConfigMaps brokers use");
        assert_eq!(
            built.config.triggers[0].file,
            PathBuf::from("namespaces/shop/triggers/t")
        );
        let b = &built.seen[0];
        assert_eq!((b.key.kind, b.generation), ("Broker", Some(3)));
        assert_eq!(
            built.seen[1].uris.subscriber.as_deref(),
            Some("http://sink.example/")
        );
    }

    #[test]
    fn an_object_that_does_not_decode_is_left_out_naming_the_field() {
        let mut bad = trigger("bad", json!({"uri": "http://s/"}));
        bad["spec"]["filter"] = json!({"attributes": {"type": "x"}, "nope": 1});
        let listed = Listed {
            triggers: vec![bad, trigger("good", json!({"uri": "http://s/"}))],
            ..Listed::default()
        };
        let built = build(&listed, &ingress(), |_| Lookup::NotFound);
        assert_eq!(built.config.triggers.len(), 1);
        let Some(Problem::Invalid(errors)) = problem(&built, "bad") else {
            panic!("bad is invalid: {:?}", built.seen)
        };
        assert_eq!(errors[0].field.as_deref(), Some("spec.filter.nope"));
        assert_eq!(problem(&built, "good"), None);
    }

    #[test]
    fn an_unresolved_subscriber_keeps_its_trigger_out() {
        let listed = Listed {
            triggers: vec![
                trigger(
                    "to-route",
                    json!({"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Route", "name": "r"}}),
                ),
                trigger(
                    "to-svc",
                    json!({"ref": {"apiVersion": "v1", "kind": "Service", "name": "s"}}),
                ),
            ],
            ..Listed::default()
        };
        let built = build(&listed, &ingress(), |_| Lookup::NotFound);
        assert_eq!(
            problem(&built, "to-route"),
            Some(&Problem::Unresolved {
                subscriber: Some("Route shop/r does not exist".into()),
                dead_letter_sink: None
            })
        );
        let svc = &built.config.triggers[0].object.spec.subscriber;
        assert_eq!(svc.uri.as_deref(), Some("http://s.shop.svc.cluster.local"));
        assert_eq!(referents(&listed).len(), 1);
    }
}
