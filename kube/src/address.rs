//! Addressable resolution of `ref` destinations, as Knative resolves them on a
//! cluster: a `v1` Service is `http://<name>.<ns>.svc.cluster.local`, a Broker is
//! its ingress URL, any other kind is its `status.address.url`. Pure: the caller
//! looks the referent up ([`needs`]) and hands in what it found ([`Lookup`]).

use cebus_api::{Destination, EVENTING_V1, KReference};
use serde_json::Value;

/// Where cebus' ingress is reachable in the cluster: the Service in front of the
/// replicas, as `kubectl get brokers` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingress {
    /// The ingress Service's name (`broker-ingress` by default).
    pub service: String,
    /// The namespace cebus runs in (`knative-eventing` by default).
    pub namespace: String,
}

impl Ingress {
    /// The URL of broker `namespace/name`, as Knative's broker-ingress gives it.
    pub fn broker_url(&self, namespace: &str, name: &str) -> String {
        format!(
            "http://{}.{}.svc.cluster.local/{namespace}/{name}",
            self.service, self.namespace
        )
    }
}

/// An object a `ref` points at that must be read to resolve it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Referent {
    /// Its `apiVersion`, e.g. `serving.knative.dev/v1`.
    pub api_version: String,
    /// Its `kind`.
    pub kind: String,
    /// Its namespace (the referrer's when the ref names none).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// What the caller found for a [`Referent`].
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    /// The API server does not serve the kind (or the lookup failed): the message.
    NotServed(&'a str),
    /// The kind is served but no such object exists.
    NotFound,
    /// The object, as JSON.
    Found(&'a Value),
}

/// A resolved destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The URI the status shows (`subscriberUri`, `deadLetterSinkUri`).
    pub uri: String,
    /// What the data plane is given: a plain `uri`, or the ref itself where cebus
    /// resolves it in-process (a Broker: its local ingress).
    pub destination: Destination,
}

/// Whether `r` is a core `v1` Service (or a Knative Service, which the cluster
/// also serves at the same host name).
fn is_service(r: &KReference) -> bool {
    r.kind == "Service"
        && matches!(
            (r.api_version.as_deref(), r.group.as_deref()),
            (Some("v1" | "serving.knative.dev/v1"), _)
                | (None | Some(""), None | Some("" | "serving.knative.dev"))
        )
}

/// Whether `r` is a Broker of `eventing.knative.dev`.
fn is_broker(r: &KReference) -> bool {
    r.kind == "Broker"
        && match (r.api_version.as_deref(), r.group.as_deref()) {
            (Some(api), _) if !api.is_empty() => api == EVENTING_V1,
            (_, group) => group.is_none_or(|g| g == "eventing.knative.dev"),
        }
}

fn ref_namespace<'a>(r: &'a KReference, referrer: &'a str) -> &'a str {
    r.namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(referrer)
}

/// The object that must be read to resolve `dest`, if any: none for a plain
/// `uri`, a Service or a Broker.
pub fn needs(dest: &Destination, referrer: &str) -> Option<Referent> {
    let r = dest.reference.as_ref()?;
    if is_service(r) || is_broker(r) {
        return None;
    }
    Some(Referent {
        api_version: r.api_version.clone().unwrap_or_default(),
        kind: r.kind.clone(),
        namespace: ref_namespace(r, referrer).to_owned(),
        name: r.name.clone(),
    })
}

/// Resolves `dest` of an object in namespace `referrer`. `found` is what the
/// caller found for [`needs`]`(dest)` (ignored when that is `None`). The error says
/// why it does not resolve, for the status.
pub fn resolve(
    dest: &Destination,
    referrer: &str,
    ingress: &Ingress,
    found: Option<Lookup<'_>>,
) -> Result<Resolved, String> {
    let Some(r) = &dest.reference else {
        // A plain URI: validation judges it, the status shows it as written.
        return Ok(Resolved {
            uri: dest.uri.clone().unwrap_or_default(),
            destination: dest.clone(),
        });
    };
    let ns = ref_namespace(r, referrer);
    let relative = dest.uri.as_deref();
    if is_broker(r) {
        return Ok(Resolved {
            uri: join(&ingress.broker_url(ns, &r.name), relative),
            destination: dest.clone(),
        });
    }
    let base = if is_service(r) {
        format!("http://{}.{ns}.svc.cluster.local", r.name)
    } else {
        let what = format!("{} {ns}/{}", r.kind, r.name);
        if r.api_version.as_deref().is_none_or(str::is_empty) {
            return Err(format!(
                "ref to {what} has no apiVersion; it is needed to find a {}",
                r.kind
            ));
        }
        match found {
            None => return Err(format!("{what} was not looked up")),
            Some(Lookup::NotServed(why)) => return Err(why.to_owned()),
            Some(Lookup::NotFound) => return Err(format!("{what} does not exist")),
            Some(Lookup::Found(object)) => address_url(object).ok_or_else(|| {
                format!("{what} has no status.address.url (it is not addressable, or not ready)")
            })?,
        }
    };
    let uri = join(&base, relative);
    Ok(Resolved {
        uri: uri.clone(),
        destination: Destination {
            reference: None,
            uri: Some(uri),
            ..dest.clone()
        },
    })
}

/// An object's `status.address.url`, when it has a non-empty one.
pub fn address_url(object: &Value) -> Option<String> {
    object
        .pointer("/status/address/url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
}

/// `base` with a relative `uri` (Knative's `ref` + `uri`) appended as a path.
fn join(base: &str, relative: Option<&str>) -> String {
    match relative.filter(|r| !r.is_empty()) {
        None => base.to_owned(),
        Some(r) => format!(
            "{}/{}",
            base.trim_end_matches('/'),
            r.trim_start_matches('/')
        ),
    }
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

    fn to(kind: &str, api: Option<&str>, name: &str, uri: Option<&str>) -> Destination {
        Destination {
            reference: Some(KReference {
                kind: kind.into(),
                name: name.into(),
                api_version: api.map(Into::into),
                ..KReference::default()
            }),
            uri: uri.map(Into::into),
            ..Destination::default()
        }
    }

    #[test]
    fn destinations_resolve_as_knative_resolves_them() {
        let ksvc = json!({"status": {"address": {"url": "http://hello.shop.example.com"}}});
        let no_url = json!({"status": {}});
        type Case<'a> = (
            &'a str,
            Destination,
            Option<Lookup<'a>>,
            Result<&'a str, &'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "v1 Service",
                to("Service", Some("v1"), "sink", None),
                None,
                Ok("http://sink.shop.svc.cluster.local"),
            ),
            (
                "Service with a path",
                to("Service", Some("v1"), "sink", Some("/events")),
                None,
                Ok("http://sink.shop.svc.cluster.local/events"),
            ),
            (
                "Broker",
                to("Broker", Some(EVENTING_V1), "default", None),
                None,
                Ok("http://broker-ingress.knative-eventing.svc.cluster.local/shop/default"),
            ),
            (
                "any addressable",
                to("Route", Some("serving.knative.dev/v1"), "hello", Some("x")),
                Some(Lookup::Found(&ksvc)),
                Ok("http://hello.shop.example.com/x"),
            ),
            (
                "missing referent",
                to("Route", Some("serving.knative.dev/v1"), "hello", None),
                Some(Lookup::NotFound),
                Err("Route shop/hello does not exist"),
            ),
            (
                "not addressable",
                to("Route", Some("serving.knative.dev/v1"), "hello", None),
                Some(Lookup::Found(&no_url)),
                Err(
                    "Route shop/hello has no status.address.url (it is not addressable, or not ready)",
                ),
            ),
            (
                "kind not served",
                to("Thing", Some("example.com/v1"), "t", None),
                Some(Lookup::NotServed("example.com/v1 Thing is not served")),
                Err("example.com/v1 Thing is not served"),
            ),
            (
                "no apiVersion",
                to("Thing", None, "t", None),
                None,
                Err("ref to Thing shop/t has no apiVersion; it is needed to find a Thing"),
            ),
        ];
        for (name, dest, found, want) in cases {
            let got = resolve(&dest, "shop", &ingress(), found);
            assert_eq!(
                got.as_ref().map(|r| r.uri.as_str()).map_err(String::as_str),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn only_other_kinds_need_a_lookup() {
        assert_eq!(needs(&to("Service", Some("v1"), "s", None), "ns"), None);
        assert_eq!(needs(&to("Broker", None, "b", None), "ns"), None);
        let mut dest = to("Route", Some("serving.knative.dev/v1"), "r", None);
        dest.reference.as_mut().unwrap().namespace = Some("other".into());
        assert_eq!(
            needs(&dest, "ns"),
            Some(Referent {
                api_version: "serving.knative.dev/v1".into(),
                kind: "Route".into(),
                namespace: "other".into(),
                name: "r".into(),
            })
        );
    }

    #[test]
    fn a_broker_ref_stays_a_ref_and_an_addressable_becomes_a_uri() {
        let broker = to("Broker", Some(EVENTING_V1), "b", None);
        let resolved = resolve(&broker, "ns", &ingress(), None).unwrap();
        assert_eq!(
            resolved.destination, broker,
            "the data plane resolves a broker locally"
        );
        let found = json!({"status": {"address": {"url": "http://a/"}}});
        let route = to("Route", Some("serving.knative.dev/v1"), "r", None);
        let resolved = resolve(&route, "ns", &ingress(), Some(Lookup::Found(&found))).unwrap();
        assert_eq!(resolved.destination.reference, None);
        assert_eq!(resolved.destination.uri.as_deref(), Some("http://a/"));
    }
}
