//! WebhookSource: `POST /webhooks/<namespace>/<name>` on the main listener turns
//! the request into a CloudEvent (pure: [`WebhookPlan::event`]) and answers only
//! once the sink took it. What the headers alone can refuse is refused before the
//! body is read; a replayed delivery id is answered without delivering it again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use cebus_events::http::{DecodeError, Decoded};
use cebus_events::{Event, attr};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use jiff::Timestamp;

use crate::auth::{AuthError, AuthPlan, verify_body, verify_headers};
use crate::replay::{Claim, DedupPlan, DeliveryLog, MAX_DELIVERY_ID_BYTES};
use crate::sink::{Sender, SinkTarget, webhook_status};

/// The one method webhooks accept.
const ALLOW: &str = "POST";

/// Default `source` of a WebhookSource's events.
pub fn webhook_source_attr(namespace: &str, name: &str) -> String {
    format!("/apis/v1/namespaces/{namespace}/webhooksources/{name}")
}

/// Where the event type comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventType {
    /// Always this type.
    Fixed(String),
    /// `prefix` + the value of `header`.
    FromHeader {
        /// Header.
        header: HeaderName,
        /// Prefix.
        prefix: String,
    },
}

/// One WebhookSource, ready to serve.
#[derive(Debug, Clone)]
pub struct WebhookPlan {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Event type.
    pub event_type: EventType,
    /// Event source.
    pub event_source: String,
    /// Header giving the event id.
    pub id_header: Option<HeaderName>,
    /// Extension ← header.
    pub extension_headers: Vec<(String, HeaderName)>,
    /// `ceOverrides.extensions`.
    pub extensions: BTreeMap<String, String>,
    /// Authentication.
    pub auth: AuthPlan,
    /// Deduplication by delivery id (`None`: off).
    pub dedup: Option<DedupPlan>,
    /// Largest accepted body.
    pub max_body: usize,
    /// Where events go.
    pub sink: SinkTarget,
}

/// Why a request did not become an event (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The header that gives the type is absent or empty.
    #[error("missing header {0}, which gives the event type")]
    MissingTypeHeader(String),
    /// The request is a CloudEvent, but an invalid one (or a batch).
    #[error("{0}")]
    InvalidCloudEvent(String),
}

/// The event a request stands for, and whether it was a CloudEvent already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Built {
    /// The request was a CloudEvent; it travels unchanged.
    PassThrough(Event),
    /// A new event wrapping the body.
    Wrapped(Event),
}

impl Built {
    /// The event.
    pub fn into_event(self) -> Event {
        match self {
            Built::PassThrough(e) | Built::Wrapped(e) => e,
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

impl WebhookPlan {
    /// The event for a request: a valid CloudEvent (binary or structured) passes
    /// through unchanged; anything else becomes a new event with the body as data
    /// and the request's `Content-Type` as `datacontenttype`. `new_id` is called
    /// when no id header is configured or present.
    pub fn event(
        &self,
        headers: &HeaderMap,
        body: Bytes,
        received: Timestamp,
        new_id: impl FnOnce() -> String,
    ) -> Result<Built, WebhookError> {
        match cebus_events::http::decode(headers, body.clone()) {
            Ok(Decoded::Single(e)) => {
                return cebus_events::validate(&e)
                    .map(|()| Built::PassThrough(e))
                    .map_err(|e| WebhookError::InvalidCloudEvent(e.to_string()));
            }
            Ok(Decoded::Batch(_)) => {
                return Err(WebhookError::InvalidCloudEvent(
                    "a webhook takes one event per request, not a batch".into(),
                ));
            }
            Err(DecodeError::NotCloudEvent { .. }) => {}
            Err(e) => return Err(WebhookError::InvalidCloudEvent(e.to_string())),
        }
        let ty = match &self.event_type {
            EventType::Fixed(t) => t.clone(),
            EventType::FromHeader { header, prefix } => {
                let v = header_str(headers, header)
                    .ok_or_else(|| WebhookError::MissingTypeHeader(header.to_string()))?;
                format!("{prefix}{v}")
            }
        };
        let id = self
            .id_header
            .as_ref()
            .and_then(|h| header_str(headers, h))
            .map_or_else(new_id, str::to_owned);
        let mut e = Event::with_required(&id, &self.event_source, &ty);
        e.set(attr::TIME, crate::ping::rfc3339(received));
        if let Some(ct) = header_str(headers, &header::CONTENT_TYPE) {
            e.set(attr::DATACONTENTTYPE, ct);
        }
        for (ext, h) in &self.extension_headers {
            if let Some(v) = header_str(headers, h) {
                e.set(ext.as_str(), v);
            }
        }
        for (k, v) in &self.extensions {
            e.set(k.as_str(), v.as_str());
        }
        e.set_data((!body.is_empty()).then_some(body));
        Ok(Built::Wrapped(e))
    }
}

/// The webhook plans by `namespace/name`, replaced as a whole on every config.
pub type WebhookTable = ArcSwap<BTreeMap<String, Arc<WebhookPlan>>>;

#[derive(Clone)]
struct Hooks {
    table: Arc<WebhookTable>,
    sender: Sender,
    /// Delivery logs by `namespace/name`. They live here, not in the plans, so
    /// they outlive a config reload (plans are rebuilt on every one).
    logs: Arc<Mutex<HashMap<String, DeliveryLog>>>,
}

/// The `/webhooks/{namespace}/{name}` route.
pub fn router(table: Arc<WebhookTable>, sender: Sender) -> Router {
    Router::new()
        .route("/webhooks/{namespace}/{name}", any(endpoint))
        .with_state(Hooks {
            table,
            sender,
            logs: Arc::default(),
        })
}

/// A delivery id claimed in its source's log: accepted on success, released
/// otherwise — also when the request is dropped halfway (the client went away).
struct Claimed {
    hooks: Hooks,
    source: String,
    id: String,
    accepted: bool,
}

impl Claimed {
    fn accept(mut self) {
        self.accepted = true;
        let mut logs = self.hooks.logs.lock().expect("delivery logs poisoned");
        let Some(log) = logs.get_mut(&self.source) else {
            return;
        };
        if let Some(e) = log.accept(&self.id, tokio::time::Instant::now().into_std()) {
            // The window is shorter than promised for these ids: say so, so the
            // operator can raise `dedup.maxEntries`.
            tracing::warn!(
                webhook = %self.source,
                evicted = e.now,
                evicted_total = e.total,
                max_entries = log_capacity(&self.hooks, &self.source),
                "delivery ids forgotten before their dedup window ended (dedup.maxEntries reached); a replay of them would be delivered again"
            );
        }
    }
}

fn log_capacity(hooks: &Hooks, source: &str) -> usize {
    hooks
        .table
        .load()
        .get(source)
        .and_then(|p| p.dedup.as_ref())
        .map_or(0, |d| d.max_entries)
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if !self.accepted
            && let Ok(mut logs) = self.hooks.logs.lock()
            && let Some(log) = logs.get_mut(&self.source)
        {
            log.release(&self.id);
        }
    }
}

/// Claims `id` in the log of `source` (made, or re-bounded, from `dedup`).
fn claim(hooks: &Hooks, source: &str, dedup: &DedupPlan, id: &str) -> Claim {
    let now = tokio::time::Instant::now().into_std();
    let mut logs = hooks.logs.lock().expect("delivery logs poisoned");
    if !logs.contains_key(source) {
        // A new source: drop the logs of sources no longer configured.
        let table = hooks.table.load();
        logs.retain(|k, _| table.contains_key(k));
    }
    let log = logs
        .entry(source.to_owned())
        .or_insert_with(|| DeliveryLog::new(dedup.window, dedup.max_entries));
    log.set_bounds(dedup.window, dedup.max_entries);
    log.claim(id, now)
}

fn duplicate(id: &str, age: Duration) -> Response {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({
            "duplicate": id,
            "message": format!(
                "delivery {id} was accepted {} s ago; not delivered again",
                age.as_secs()
            ),
        })),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

fn unauthorized(e: &AuthError) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, &e.to_string());
    if let Some(c) = e.challenge() {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    r
}

async fn endpoint(
    State(hooks): State<Hooks>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    if request.method() != Method::POST {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!(
                "method {} not allowed; webhooks take POST",
                request.method()
            ),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
        return r;
    }
    let Some(plan) = hooks
        .table
        .load()
        .get(&format!("{namespace}/{name}"))
        .cloned()
    else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no WebhookSource {namespace}/{name}"),
        );
    };
    let (parts, body) = request.into_parts();
    let now = Timestamp::now();
    // What the headers can refuse is refused before the body (up to the size
    // limit) is read: credentials, absent or oversized signatures, stale times.
    if let Err(e) = verify_headers(&plan.auth, &parts.headers, now) {
        return unauthorized(&e);
    }
    let delivery = match delivery_id(plan.dedup.as_ref(), &parts.headers) {
        Ok(d) => d,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let body = match read_body(body, plan.max_body).await {
        Ok(b) => b,
        Err(status) if status == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                status,
                &format!("request body exceeds the limit of {} bytes", plan.max_body),
            );
        }
        Err(status) => return error(status, "could not read the request body"),
    };
    if let Err(e) = verify_body(&plan.auth, &parts.headers, &body, now) {
        return unauthorized(&e);
    }
    let built = match plan.event(&parts.headers, body, now, || {
        uuid::Uuid::new_v4().to_string()
    }) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    // A passed-through event keeps its hop count: the broker decrements it, a URL
    // sink gets it back as the attribute.
    let (event, ttl) = match built {
        Built::PassThrough(mut e) => {
            let ttl = e
                .remove(attr::KNATIVE_BROKER_TTL)
                .map(|v| v.as_str().into_owned());
            (e, ttl)
        }
        Built::Wrapped(e) => (e, None),
    };
    let id = event.id().into_owned();
    let source = format!("{namespace}/{name}");
    // Claimed only now, authenticated and well-formed: only what the sink takes
    // is remembered, and a concurrent copy is told to come back.
    let claimed = match (&plan.dedup, delivery) {
        (Some(dedup), Some(delivery)) => match claim(&hooks, &source, dedup, &delivery) {
            Claim::Fresh => Some(Claimed {
                hooks: hooks.clone(),
                source: source.clone(),
                id: delivery,
                accepted: false,
            }),
            Claim::Duplicate { age } => return duplicate(&delivery, age),
            Claim::InFlight => {
                let mut r = error(
                    StatusCode::CONFLICT,
                    &format!(
                        "delivery {delivery} is being delivered by another request; retry later"
                    ),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
        },
        _ => None,
    };
    match hooks
        .sender
        .send_once(&plan.sink, event, ttl, forwarded_headers(&parts.headers))
        .await
    {
        Ok(()) => {
            if let Some(c) = claimed {
                c.accept();
            }
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({ "id": id })),
            )
                .into_response()
        }
        Err(r) => {
            let status = webhook_status(&r);
            tracing::warn!(webhook = %format!("{namespace}/{name}"), sink = %plan.sink, reason = %r.message, "webhook event refused by its sink");
            let mut resp = error(status, &r.message);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                let secs = r.retry_after.map_or(1, |d| d.as_secs().max(1));
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            resp
        }
    }
}

/// The delivery id to deduplicate on: `None` when dedup is off or the request has
/// none; too long an id is refused (it bounds the memory of the log).
fn delivery_id(dedup: Option<&DedupPlan>, headers: &HeaderMap) -> Result<Option<String>, String> {
    let Some(d) = dedup else { return Ok(None) };
    let Some(v) = headers.get(&d.header) else {
        return Ok(None);
    };
    if v.len() > MAX_DELIVERY_ID_BYTES {
        return Err(format!(
            "delivery id in {} is {} bytes; at most {MAX_DELIVERY_ID_BYTES}",
            d.header,
            v.len()
        ));
    }
    Ok(header_str(headers, &d.header).map(str::to_owned))
}

/// Tracing headers that travel with the event, as at the broker ingress.
fn forwarded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| {
            let n = n.as_str();
            n == "traceparent"
                || n == "tracestate"
                || n == "x-request-id"
                || n.starts_with("knative-")
        })
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// Reads at most `limit` bytes; more is 413, checked while reading.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, StatusCode> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        }
        Err(_) => Err(StatusCode::BAD_REQUEST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> WebhookPlan {
        WebhookPlan {
            namespace: "ci".into(),
            name: "github".into(),
            event_type: EventType::FromHeader {
                header: HeaderName::from_static("x-github-event"),
                prefix: "com.github.".into(),
            },
            event_source: webhook_source_attr("ci", "github"),
            id_header: Some(HeaderName::from_static("x-github-delivery")),
            extension_headers: vec![(
                "githubhookid".into(),
                HeaderName::from_static("x-github-hook-id"),
            )],
            extensions: [("team".to_owned(), "infra".to_owned())].into(),
            auth: AuthPlan::default(),
            dedup: None,
            max_body: 1024,
            sink: SinkTarget::Url("http://sink.example/".into()),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn t() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn wraps_a_github_delivery() {
        let h = headers(&[
            ("x-github-event", "push"),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("x-github-hook-id", "42"),
            ("content-type", "application/json"),
        ]);
        let body = Bytes::from_static(br#"{"ref":"refs/heads/main"}"#);
        let built = plan()
            .event(&h, body.clone(), t(), || unreachable!())
            .unwrap();
        let Built::Wrapped(e) = built else {
            panic!("not wrapped")
        };
        cebus_events::validate(&e).unwrap();
        let get = |k| e.get_str(k).map(|v| v.into_owned());
        assert_eq!(
            get("id").as_deref(),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        assert_eq!(get("type").as_deref(), Some("com.github.push"));
        assert_eq!(
            get("source").as_deref(),
            Some("/apis/v1/namespaces/ci/webhooksources/github")
        );
        assert_eq!(get("datacontenttype").as_deref(), Some("application/json"));
        assert_eq!(get("githubhookid").as_deref(), Some("42"));
        assert_eq!(get("team").as_deref(), Some("infra"));
        assert_eq!(get("time").as_deref(), Some("2024-05-01T12:00:00.000000Z"));
        assert_eq!(e.data(), Some(&body));
    }

    #[test]
    fn fixed_type_fresh_id_and_no_body() {
        let mut p = plan();
        p.event_type = EventType::Fixed("dev.example.ping".into());
        let e = p
            .event(&HeaderMap::new(), Bytes::new(), t(), || "fresh".into())
            .unwrap()
            .into_event();
        assert_eq!(e.id(), "fresh");
        assert_eq!(e.ty(), "dev.example.ping");
        assert!(e.data().is_none() && e.get("datacontenttype").is_none());
        assert!(e.get("githubhookid").is_none());
    }

    #[test]
    fn type_header_required() {
        assert_eq!(
            plan().event(&HeaderMap::new(), Bytes::new(), t(), || "x".into()),
            Err(WebhookError::MissingTypeHeader("x-github-event".into()))
        );
    }

    #[test]
    fn cloudevents_pass_through_unchanged() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "abc"),
            ("ce-source", "/producer"),
            ("ce-type", "com.example.thing"),
            ("ce-time", "2020-01-01T00:00:00Z"),
            ("content-type", "text/plain"),
        ]);
        let built = plan()
            .event(&h, Bytes::from_static(b"hi"), t(), || unreachable!())
            .unwrap();
        let Built::PassThrough(e) = built else {
            panic!("wrapped a CloudEvent")
        };
        assert_eq!(e.id(), "abc");
        assert_eq!(e.get_str("time").as_deref(), Some("2020-01-01T00:00:00Z"));
        assert!(
            e.get("team").is_none(),
            "overrides do not touch pass-through events"
        );
        let structured = headers(&[("content-type", "application/cloudevents+json")]);
        let body = br#"{"specversion":"1.0","id":"s1","source":"/p","type":"t","data":{"a":1}}"#;
        let e = plan()
            .event(
                &structured,
                Bytes::from_static(body),
                t(),
                || unreachable!(),
            )
            .unwrap();
        assert!(matches!(e, Built::PassThrough(ref e) if e.id() == "s1"));
        // An invalid CloudEvent is refused, not wrapped.
        let bad = headers(&[("ce-specversion", "1.0"), ("ce-id", "x")]);
        assert!(matches!(
            plan().event(&bad, Bytes::new(), t(), || unreachable!()),
            Err(WebhookError::InvalidCloudEvent(_))
        ));
        let batch = headers(&[("content-type", "application/cloudevents-batch+json")]);
        assert!(
            plan()
                .event(&batch, Bytes::from_static(b"[]"), t(), || unreachable!())
                .is_err()
        );
    }
}
