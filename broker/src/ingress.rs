//! Broker ingress: one HTTP listener for every broker at `POST /<namespace>/<broker>`,
//! plus `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use cebus_channels::ChannelError;
use cebus_events::attr;
use cebus_events::http::{Decoded, decode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prometheus_client::registry::Registry as PromRegistry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::port::{Incoming, IngestError};
use crate::registry::Registry;

/// Methods the broker endpoint allows.
const ALLOW: &str = "POST, OPTIONS";

/// State shared by the ingress handlers.
#[derive(Clone)]
pub struct Ingress {
    /// The running brokers.
    pub registry: Arc<Registry>,
    /// Metrics registry for `/metrics`.
    pub prometheus: Arc<PromRegistry>,
}

/// The ingress router.
pub fn router(state: Ingress) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/{namespace}/{broker}", any(broker_endpoint))
        .with_state(state)
}

async fn readyz(State(state): State<Ingress>) -> Response {
    if state.registry.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "config not applied yet").into_response()
    }
}

async fn metrics(State(state): State<Ingress>) -> Response {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &state.prometheus).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// A JSON error body: `{"error": ..., "attribute": ..., "index": ...}`.
fn error(
    status: StatusCode,
    message: &str,
    attribute: Option<&str>,
    index: Option<usize>,
) -> Response {
    let mut body = serde_json::json!({ "error": message });
    if let Some(a) = attribute {
        body["attribute"] = a.into();
    }
    if let Some(i) = index {
        body["index"] = i.into();
    }
    (status, axum::Json(body)).into_response()
}

/// Whether an incoming header travels with the event to subscribers.
fn forwarded(name: &str) -> bool {
    name == "traceparent"
        || name == "tracestate"
        || name == "x-request-id"
        || name.starts_with("knative-")
}

fn forwarded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| forwarded(n.as_str()))
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

async fn broker_endpoint(
    State(state): State<Ingress>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    accept(&state, &namespace, &name, request).await
}

/// The broker endpoint proper: validates and stores the request's events.
async fn accept<B>(
    state: &Ingress,
    namespace: &str,
    name: &str,
    request: http::Request<B>,
) -> Response
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match *request.method() {
        Method::POST => {}
        Method::OPTIONS => {
            return (
                StatusCode::OK,
                [(header::ALLOW, HeaderValue::from_static(ALLOW))],
            )
                .into_response();
        }
        _ => {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!(
                    "method {} not allowed; send events with POST",
                    request.method()
                ),
                None,
                None,
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            return r;
        }
    }
    let Some(broker) = state.registry.get(namespace, name) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no broker {namespace}/{name}"),
            None,
            None,
        );
    };
    let limit = broker.settings().max_event_size;
    let counters = broker.counters();
    let (parts, body) = request.into_parts();
    let body = match read_body(body, limit).await {
        Ok(b) => b,
        Err(status) => {
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                counters.too_large.inc();
                return error(
                    status,
                    &format!("request body exceeds the broker's limit of {limit} bytes"),
                    None,
                    None,
                );
            }
            return error(status, "could not read the request body", None, None);
        }
    };
    // A single event is kept apart from a batch's vector: no vector of one
    // allocated per request only to be emptied into `batch`.
    let (single, events) = match decode(&parts.headers, body) {
        Ok(Decoded::Single(e)) => (Some(e), Vec::new()),
        Ok(Decoded::Batch(es)) => (None, es),
        Err(e) => {
            counters.invalid.inc();
            return error(
                StatusCode::BAD_REQUEST,
                &e.to_string(),
                e.attribute(),
                e.index(),
            );
        }
    };
    let n = (usize::from(single.is_some()) + events.len()) as u64;
    let headers = forwarded_headers(&parts.headers);
    let mut batch = Vec::with_capacity(n as usize);
    for (index, mut event) in single.into_iter().chain(events).enumerate() {
        if let Err(e) = cebus_events::validate(&event) {
            counters.invalid.inc_by(n);
            let index = (n > 1 || is_batch(&parts.headers)).then_some(index);
            return error(
                StatusCode::BAD_REQUEST,
                &e.to_string(),
                e.attribute(),
                index,
            );
        }
        let ttl = event
            .remove(attr::KNATIVE_BROKER_TTL)
            .map(|v| v.as_str().into_owned());
        batch.push(Incoming {
            event,
            ttl,
            headers: headers.clone(),
        });
    }
    if batch.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    match broker.ingest(batch).await {
        Ok(()) => {
            counters.accepted.inc_by(n);
            StatusCode::ACCEPTED.into_response()
        }
        Err(IngestError::Ttl { index, message }) => {
            counters.ttl_exhausted.inc_by(n);
            let index = is_batch(&parts.headers).then_some(index);
            error(
                StatusCode::BAD_REQUEST,
                &message,
                Some(attr::KNATIVE_BROKER_TTL),
                index,
            )
        }
        Err(IngestError::Channel(ChannelError::Full { retry_after, .. })) => {
            counters.backpressure.inc_by(n);
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "broker is at capacity; retry later",
                None,
                None,
            );
            let secs = retry_after.as_secs().max(1).to_string();
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&secs).unwrap_or(HeaderValue::from_static("1")),
            );
            r
        }
        Err(IngestError::Channel(e @ ChannelError::BatchTooLarge { .. })) => {
            counters.too_large.inc_by(n);
            error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string(), None, None)
        }
        Err(IngestError::Channel(e @ ChannelError::Unavailable { .. })) => {
            // NATS unreachable or refusing: nothing was promised; the producer retries.
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None, None);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Err(IngestError::Channel(ChannelError::Closed)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "broker is shutting down",
            None,
            None,
        ),
        // Only through the port: the broker was looked up above.
        Err(e @ IngestError::NotRunning { .. }) => {
            error(StatusCode::NOT_FOUND, &e.to_string(), None, None)
        }
    }
}

fn is_batch(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/cloudevents-batch+json")
        })
}

/// Reads at most `limit` bytes; more is 413 (checked on `Content-Length` first,
/// then while reading, so a lying or absent length cannot get past the bound).
async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, StatusCode>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        }
        Err(_) => Err(StatusCode::BAD_REQUEST),
    }
}

/// The listener's service: a `POST /<namespace>/<broker>` whose path needs no
/// decoding goes straight to the broker endpoint; everything else (health,
/// metrics, extension routes, encoded paths, other methods) through the router.
/// The hot path so skips the router's per-request service clone, parameter
/// map and percent-decoding, about 5 % of ingress CPU.
#[derive(Clone)]
pub struct Front {
    state: Ingress,
    router: Router,
}

impl Front {
    /// `router` serves what the fast path does not.
    pub fn new(state: Ingress, router: Router) -> Front {
        Front { state, router }
    }
}

/// `/<namespace>/<broker>` when both are plain segments (no `%`, nothing else).
fn plain_broker_path(path: &str) -> Option<(&str, &str)> {
    let (namespace, name) = path.strip_prefix('/')?.split_once('/')?;
    let plain = |s: &str| !s.is_empty() && !s.contains(['/', '%']);
    (plain(namespace) && plain(name)).then_some((namespace, name))
}

/// The listener's requests, straight from hyper: a plain broker path goes to
/// [`accept`] with hyper's body as it is; the rest through the router.
impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Front {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Self::Error>> + Send>>;

    fn call(&self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let fast =
            *request.method() == Method::POST && plain_broker_path(request.uri().path()).is_some();
        if fast {
            let state = self.state.clone();
            return Box::pin(async move {
                // A `Uri` clone shares its bytes: no copy of the path.
                let uri = request.uri().clone();
                let (namespace, name) = plain_broker_path(uri.path()).unwrap_or_default();
                Ok(accept(&state, namespace, name, request).await)
            });
        }
        let mut router = self.router.clone();
        Box::pin(
            async move { tower_service::Service::call(&mut router, request.map(Body::new)).await },
        )
    }
}

/// Serves `front` on `listener`, HTTP/1.1 with keep-alive, with at most
/// `max_connections` connections open (the next client waits in the kernel's
/// accept queue until one closes), until `stop` is cancelled; then stops
/// accepting, lets every connection finish the request it is on (idle ones
/// close at once) and returns when all are closed.
///
/// Accepted connections go to the runtimes of `threads` in turn, or run on
/// the caller's runtime when there are none. On a single-threaded runtime a
/// connection's requests, their fan-out and (in-memory channel) their
/// deliveries all run on one thread, with no work stealing or cross-thread
/// wake-ups in between.
///
/// hyper's own connection, not `axum::serve`: that one wraps every connection
/// in protocol detection and every request in a tower adapter and a boxed body,
/// about a tenth of the ingress's CPU per event.
pub async fn serve(
    listener: tokio::net::TcpListener,
    front: Front,
    max_connections: usize,
    stop: CancellationToken,
    threads: Vec<tokio::runtime::Handle>,
) {
    let connections = TaskTracker::new();
    let mut next = 0;
    let open = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = open.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of
                    // spinning; a client that reset before accept needs nothing.
                    if e.kind() != std::io::ErrorKind::ConnectionAborted {
                        tracing::warn!(error = %e, "ingress accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (front, stop) = (front.clone(), stop.clone());
        if threads.is_empty() {
            connections.spawn(connection(stream, front, slot, stop));
            continue;
        }
        // Registered anew with the thread's runtime; a socket that fails it is
        // closed, as if reset.
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        connections.spawn_on(
            async move {
                if let Ok(stream) = tokio::net::TcpStream::from_std(stream) {
                    connection(stream, front, slot, stop).await;
                }
            },
            &threads[next % threads.len()],
        );
        next = next.wrapping_add(1);
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Serves one connection until it closes, or until `stop`: then it finishes
/// the request it is on and closes.
async fn connection(
    stream: tokio::net::TcpStream,
    front: Front,
    slot: tokio::sync::OwnedSemaphorePermit,
    stop: CancellationToken,
) {
    // Held while the connection is open.
    let _slot = slot;
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), front);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Pause after a failed `accept` (for example, no file descriptors left).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::plain_broker_path;

    #[test]
    fn only_plain_two_segment_paths_take_the_fast_path() {
        let cases = [
            ("/default/default", Some(("default", "default"))),
            ("/ns/my-broker", Some(("ns", "my-broker"))),
            ("/ns/b%20x", None),
            ("/ns/b/extra", None),
            ("/ns/", None),
            ("//b", None),
            ("/healthz", None),
            ("/", None),
            ("", None),
        ];
        for (path, want) in cases {
            assert_eq!(plain_broker_path(path), want, "{path:?}");
        }
    }
}
