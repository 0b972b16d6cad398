//! Turning Destinations into URLs without Kubernetes, and the per-object settings
//! read from annotations (broker TTL, event size limit, invalid-reply handling).

use crate::types::{
    BROKER_TTL_ANNOTATION, Broker, Destination, EVENTING_V1, IGNORE_INVALID_REPLY_ANNOTATION,
    KReference, MAX_EVENT_SIZE_ANNOTATION, Trigger,
};

/// Default maximum `knativebrokerttl` hop count.
pub const DEFAULT_BROKER_TTL: u32 = 255;
/// Default largest accepted event, in bytes (1 MiB).
pub const DEFAULT_MAX_EVENT_SIZE: usize = 1024 * 1024;

/// The URL a destination resolves to. `namespace` is the referrer's (used when the
/// ref has none); `ingress_base` is cebus' ingress, e.g. `http://127.0.0.1:8080`,
/// under which broker `ns/name` lives at `/{ns}/{name}`.
pub fn resolve_destination(
    dest: &Destination,
    namespace: &str,
    ingress_base: &str,
) -> Result<String, String> {
    let Some(reference) = &dest.reference else {
        return match dest.uri.as_deref() {
            Some(uri) if is_absolute_http(uri) => Ok(uri.to_owned()),
            Some(uri) => Err(format!(
                "uri {uri:?} is not an absolute http or https URL and there is no ref"
            )),
            None => Err("destination has neither ref nor uri".to_owned()),
        };
    };
    let base = resolve_ref(reference, namespace, ingress_base)?;
    match dest.uri.as_deref() {
        None => Ok(base),
        Some(uri) if has_scheme(uri) => Err(format!(
            "uri {uri:?} must be relative when ref is set (it is resolved against the ref's address)"
        )),
        Some(uri) => Ok(resolve_reference(&base, uri)),
    }
}

fn resolve_ref(r: &KReference, namespace: &str, ingress_base: &str) -> Result<String, String> {
    let ns = r
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(namespace);
    // `group` is Knative's alternative to `apiVersion`; an absent one is taken to
    // mean the usual API of the kind.
    let api = r.api_version.as_deref().filter(|a| !a.is_empty());
    let group = r.group.as_deref();
    let is = |api_version: &str| {
        let want_group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        api.map_or(group.is_none_or(|g| g == want_group), |a| a == api_version)
    };
    match r.kind.as_str() {
        "Broker" if is(EVENTING_V1) => Ok(format!(
            "{}/{ns}/{}",
            ingress_base.trim_end_matches('/'),
            r.name
        )),
        "Service" if is("v1") || is("serving.knative.dev/v1") => {
            Ok(format!("http://{}.{ns}.svc.cluster.local", r.name))
        }
        kind => Err(format!(
            "cannot resolve ref to {kind} without Kubernetes; use uri"
        )),
    }
}

/// The broker's maximum hop count: the `cebus.dev/broker-ttl` annotation, or 255.
pub fn broker_ttl(b: &Broker) -> u32 {
    b.metadata
        .annotations
        .get(BROKER_TTL_ANNOTATION)
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|ttl| *ttl >= 1)
        .map_or(DEFAULT_BROKER_TTL, |ttl| ttl.unsigned_abs())
}

/// The broker's largest accepted event in bytes: the `cebus.dev/max-event-size`
/// annotation, or `default`.
pub fn max_event_size(b: &Broker, default: usize) -> usize {
    b.metadata
        .annotations
        .get(MAX_EVENT_SIZE_ANNOTATION)
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|size| *size > 0)
        .unwrap_or(default)
}

/// Whether the trigger treats a non-CloudEvent reply body as success with no
/// reply (annotation `cebus.dev/ignore-invalid-reply: "true"`).
pub fn ignores_invalid_reply(t: &Trigger) -> bool {
    t.metadata
        .annotations
        .get(IGNORE_INVALID_REPLY_ANNOTATION)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Whether `s` starts with an RFC 3986 scheme (`http:`, `kafka:`, ...).
pub(crate) fn has_scheme(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Whether `s` is an absolute `http://` or `https://` URL with a host.
pub(crate) fn is_absolute_http(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return false;
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => return false,
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    !host.is_empty() && port.is_none_or(|p| p.is_empty() || p.bytes().all(|b| b.is_ascii_digit()))
}

/// RFC 3986 §5.2 resolution of a relative reference against `base` (an absolute
/// URL without query or fragment), as Go's `url.ResolveReference`, which Knative
/// uses for `ref` + `uri`.
fn resolve_reference(base: &str, reference: &str) -> String {
    let (scheme, after_scheme) = base.split_once("://").unwrap_or(("http", base));
    if let Some(network_path) = reference.strip_prefix("//") {
        return format!("{scheme}://{network_path}");
    }
    let path_start = after_scheme.find('/').unwrap_or(after_scheme.len());
    let (authority, base_path) = after_scheme.split_at(path_start);
    let origin = format!("{scheme}://{authority}");
    let split = reference.find(['?', '#']).unwrap_or(reference.len());
    let (ref_path, suffix) = reference.split_at(split);
    if ref_path.is_empty() {
        return format!("{origin}{base_path}{suffix}");
    }
    let merged = if ref_path.starts_with('/') {
        ref_path.to_owned()
    } else if base_path.is_empty() {
        format!("/{ref_path}")
    } else {
        let dir = &base_path[..=base_path.rfind('/').unwrap_or(0)];
        format!("{dir}{ref_path}")
    };
    format!("{origin}{}{suffix}", remove_dot_segments(&merged))
}

/// RFC 3986 §5.2.4 for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ObjectMeta;

    const BASE: &str = "http://127.0.0.1:8080";

    fn kref(api: Option<&str>, kind: &str, name: &str, ns: Option<&str>) -> KReference {
        KReference {
            kind: kind.into(),
            name: name.into(),
            api_version: api.map(Into::into),
            namespace: ns.map(Into::into),
            ..Default::default()
        }
    }

    fn dest(r: Option<KReference>, uri: Option<&str>) -> Destination {
        Destination {
            reference: r,
            uri: uri.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn resolves_destinations() {
        let broker = |ns| kref(Some(EVENTING_V1), "Broker", "b", ns);
        let k8s_svc = kref(Some("v1"), "Service", "svc", None);
        let kn_svc = kref(
            Some("serving.knative.dev/v1"),
            "Service",
            "ksvc",
            Some("apps"),
        );
        let cases = [
            (
                dest(None, Some("https://x.example/hook")),
                "https://x.example/hook",
            ),
            (
                dest(Some(broker(None)), None),
                "http://127.0.0.1:8080/team/b",
            ),
            (
                dest(Some(broker(Some("other"))), None),
                "http://127.0.0.1:8080/other/b",
            ),
            (
                dest(Some(k8s_svc.clone()), None),
                "http://svc.team.svc.cluster.local",
            ),
            (
                dest(Some(kn_svc), None),
                "http://ksvc.apps.svc.cluster.local",
            ),
            (
                dest(Some(k8s_svc.clone()), Some("/dead")),
                "http://svc.team.svc.cluster.local/dead",
            ),
            (
                dest(Some(k8s_svc.clone()), Some("dead?x=1")),
                "http://svc.team.svc.cluster.local/dead?x=1",
            ),
            (
                dest(Some(broker(None)), Some("../x/./y")),
                "http://127.0.0.1:8080/x/y",
            ),
            (
                dest(Some(kref(None, "Service", "svc", None)), None),
                "http://svc.team.svc.cluster.local",
            ),
        ];
        for (d, want) in cases {
            assert_eq!(
                resolve_destination(&d, "team", BASE).as_deref(),
                Ok(want),
                "{d:?}"
            );
        }
    }

    #[test]
    fn rejects_unresolvable_destinations() {
        let channel = kref(
            Some("messaging.knative.dev/v1"),
            "InMemoryChannel",
            "c",
            None,
        );
        let err = resolve_destination(&dest(Some(channel), None), "team", BASE).unwrap_err();
        assert_eq!(
            err,
            "cannot resolve ref to InMemoryChannel without Kubernetes; use uri"
        );
        let wrong_api = kref(Some("apps/v1"), "Service", "s", None);
        assert!(resolve_destination(&dest(Some(wrong_api), None), "team", BASE).is_err());
        let svc = kref(Some("v1"), "Service", "s", None);
        assert!(resolve_destination(&dest(Some(svc), Some("http://abs/x")), "t", BASE).is_err());
        assert!(resolve_destination(&dest(None, Some("/relative")), "t", BASE).is_err());
        assert!(resolve_destination(&dest(None, None), "t", BASE).is_err());
    }

    #[test]
    fn url_checks() {
        for ok in [
            "http://a",
            "https://a.b:8080/x?y#z",
            "HTTP://[::1]:80/",
            "http://u@h/",
        ] {
            assert!(is_absolute_http(ok), "{ok}");
        }
        for bad in [
            "",
            "/x",
            "a",
            "ftp://a",
            "http://",
            "http:///x",
            "http://a:b/",
            "http://a b",
        ] {
            assert!(!is_absolute_http(bad), "{bad}");
        }
        assert!(has_scheme("kafka:topic") && has_scheme("http://x"));
        assert!(!has_scheme("/x:y") && !has_scheme("x/y:z") && !has_scheme("1a:b"));
    }

    fn broker_with(key: &str, value: &str) -> Broker {
        let mut b = Broker {
            metadata: ObjectMeta::default(),
            ..Default::default()
        };
        b.metadata.annotations.insert(key.into(), value.into());
        b
    }

    #[test]
    fn annotation_settings() {
        assert_eq!(broker_ttl(&Broker::default()), 255);
        assert_eq!(broker_ttl(&broker_with(BROKER_TTL_ANNOTATION, "10")), 10);
        assert_eq!(
            broker_ttl(&broker_with(BROKER_TTL_ANNOTATION, "1000")),
            1000
        );
        assert_eq!(broker_ttl(&broker_with(BROKER_TTL_ANNOTATION, "0")), 255);
        assert_eq!(broker_ttl(&broker_with(BROKER_TTL_ANNOTATION, "x")), 255);
        assert_eq!(max_event_size(&Broker::default(), 7), 7);
        assert_eq!(
            max_event_size(&broker_with(MAX_EVENT_SIZE_ANNOTATION, "2048"), 7),
            2048
        );
        assert_eq!(
            max_event_size(&broker_with(MAX_EVENT_SIZE_ANNOTATION, "0"), 7),
            7
        );
        let mut t = Trigger::default();
        assert!(!ignores_invalid_reply(&t));
        t.metadata
            .annotations
            .insert(IGNORE_INVALID_REPLY_ANNOTATION.into(), "true".into());
        assert!(ignores_invalid_reply(&t));
    }
}
