//! The sink: an HTTP/1.1 subscriber that answers at once (or after a set delay,
//! with a set status), counts deliveries per path (one path per trigger), and
//! records end-to-end latency from `ce-benchsent` into HDR histograms.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::event::{self, nanos_since_epoch};
use crate::hist::Recorder;

/// How the sink answers.
#[derive(Debug, Clone, Copy)]
pub struct SinkReply {
    /// Response status (200 by default).
    pub status: StatusCode,
    /// Wait before answering.
    pub delay: Duration,
}

impl Default for SinkReply {
    fn default() -> SinkReply {
        SinkReply {
            status: StatusCode::OK,
            delay: Duration::ZERO,
        }
    }
}

struct State {
    reply: SinkReply,
    index: HashMap<Box<str>, usize>,
    counts: Box<[AtomicU64]>,
    unknown: AtomicU64,
    total: AtomicU64,
    e2e: Recorder,
    window_start_ns: AtomicU64,
    window_end_ns: AtomicU64,
}

/// A running sink.
pub struct Sink {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// Listens on an ephemeral loopback port; `names` are the paths (without the
    /// leading `/`) counted separately.
    pub async fn start(
        reply: SinkReply,
        names: impl IntoIterator<Item = String>,
    ) -> anyhow::Result<Sink> {
        let mut index: HashMap<Box<str>, usize> = HashMap::new();
        for n in names {
            let next = index.len();
            index.entry(n.into_boxed_str()).or_insert(next);
        }
        let shards = std::thread::available_parallelism().map_or(2, |n| n.get()) * 4;
        let state = Arc::new(State {
            reply,
            counts: (0..index.len()).map(|_| AtomicU64::new(0)).collect(),
            index,
            unknown: AtomicU64::new(0),
            total: AtomicU64::new(0),
            e2e: Recorder::new(shards),
            window_start_ns: AtomicU64::new(0),
            window_end_ns: AtomicU64::new(u64::MAX),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Ok(Sink { addr, state, task })
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL a generated subscriber URI starts with.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Deliveries received so far, on every path.
    pub fn total(&self) -> u64 {
        self.state.total.load(Ordering::Relaxed)
    }

    /// Deliveries received so far on the path of `name` (0 for an unknown name).
    pub fn count(&self, name: &str) -> u64 {
        self.state
            .index
            .get(name)
            .map_or(0, |&i| self.state.counts[i].load(Ordering::Relaxed))
    }

    /// Deliveries to paths that no trigger was generated for.
    pub fn unknown(&self) -> u64 {
        self.state.unknown.load(Ordering::Relaxed)
    }

    /// From now on, record end-to-end latency only for events sent in
    /// `[start, end)`; clears what was recorded.
    pub fn set_window(&self, start: Instant, end: Instant) {
        self.state
            .window_start_ns
            .store(nanos_since_epoch(start), Ordering::Relaxed);
        self.state
            .window_end_ns
            .store(nanos_since_epoch(end), Ordering::Relaxed);
        self.state.e2e.take();
    }

    /// The end-to-end latencies recorded since [`Sink::set_window`].
    pub fn take_e2e(&self) -> Histogram<u64> {
        self.state.e2e.take()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    serve_http1(listener, move |conn_id| {
        let st = state.clone();
        service_fn(move |req| handle(st.clone(), conn_id, req))
    })
    .await;
}

/// Accepts connections on `listener` for ever (TCP_NODELAY on), serving the
/// `n`-th with HTTP/1.1 and the service `make(n)` gives it.
pub async fn serve_http1<F, S>(listener: TcpListener, mut make: F)
where
    F: FnMut(usize) -> S,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<Full<Bytes>>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut n = 0;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = make(n);
        n += 1;
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    state: Arc<State>,
    conn_id: usize,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let sent = event::sent_ns(req.headers());
    let name = req.uri().path().trim_start_matches('/');
    match state.index.get(name) {
        Some(&i) => state.counts[i].fetch_add(1, Ordering::Relaxed),
        None => state.unknown.fetch_add(1, Ordering::Relaxed),
    };
    // Read the body so the connection stays reusable.
    let _ = req.into_body().collect().await;
    if let Some(sent) = sent
        && sent >= state.window_start_ns.load(Ordering::Relaxed)
        && sent < state.window_end_ns.load(Ordering::Relaxed)
    {
        let now = nanos_since_epoch(Instant::now());
        state.e2e.record(conn_id, now.saturating_sub(sent));
    }
    state.total.fetch_add(1, Ordering::Relaxed);
    if !state.reply.delay.is_zero() {
        tokio::time::sleep(state.reply.delay).await;
    }
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = state.reply.status;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Conn, host_header};
    use crate::event::EventShape;

    #[tokio::test]
    async fn counts_per_path_and_records_latency_of_stamped_events() {
        let names = ["direct", "t-0", "t-0", "t-1"].map(String::from);
        let sink = Sink::start(SinkReply::default(), names).await.unwrap();
        let mut conn = Conn::connect(sink.addr()).await.unwrap();
        let host = host_header(sink.addr());
        let shape = EventShape::try_new(&["a".into()], 16).unwrap();
        let now = nanos_since_epoch(Instant::now());
        for (i, path) in ["/t-0", "/t-0", "/t-1", "/nope"].iter().enumerate() {
            let status = conn
                .send(shape.request(&host, path, i as u64, now))
                .await
                .unwrap();
            assert_eq!(status, StatusCode::OK);
        }
        assert_eq!(sink.count("t-0"), 2);
        assert_eq!(sink.count("t-1"), 1);
        assert_eq!(sink.count("direct"), 0);
        assert_eq!(sink.unknown(), 1);
        assert_eq!(sink.total(), 4);
        assert_eq!(sink.take_e2e().len(), 4);
    }

    #[tokio::test]
    async fn answers_with_the_configured_status_and_windows_latency() {
        let reply = SinkReply {
            status: StatusCode::SERVICE_UNAVAILABLE,
            delay: Duration::ZERO,
        };
        let sink = Sink::start(reply, ["t-0".to_owned()]).await.unwrap();
        let start = Instant::now() + Duration::from_secs(3600);
        sink.set_window(start, start + Duration::from_secs(1));
        let mut conn = Conn::connect(sink.addr()).await.unwrap();
        let shape = EventShape::try_new(&["a".into()], 0).unwrap();
        let req = shape.request(
            &host_header(sink.addr()),
            "/t-0",
            0,
            nanos_since_epoch(Instant::now()),
        );
        assert_eq!(
            conn.send(req).await.unwrap(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(sink.count("t-0"), 1);
        // Sent before the window: counted, but no latency recorded.
        assert!(sink.take_e2e().is_empty());
    }
}
