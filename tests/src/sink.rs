//! Recording HTTP subscribers on loopback: a [`Sink`] records every request and
//! answers from a script, a [`DownSink`] refuses connections until it comes up,
//! and helpers count what a sink received by CloudEvent id.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// One request a sink received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
    /// The client's address (one per TCP connection).
    pub peer: SocketAddr,
}

impl Received {
    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The CloudEvent in the request.
    pub fn event(&self) -> cebus_events::Event {
        match cebus_events::http::decode(&self.headers, self.body.clone()) {
            Ok(cebus_events::http::Decoded::Single(e)) => e,
            other => panic!("sink did not receive one CloudEvent: {other:?}"),
        }
    }
}

/// How a sink answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Wait before answering.
    pub delay: Duration,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Bytes,
}

impl Reply {
    /// Just a status.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a delay.
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Reply {
        self.body = body.into();
        self
    }

    /// A binary-mode reply event.
    pub fn event(status: u16, id: &str, ty: &str, data: &str) -> Reply {
        Reply::status(status)
            .header("ce-specversion", "1.0")
            .header("ce-id", id)
            .header("ce-source", "/replier")
            .header("ce-type", ty)
            .header("content-type", "application/json")
            .body(data.to_owned())
    }
}

#[derive(Debug)]
struct SinkState {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    notify: tokio::sync::Notify,
}

/// A real HTTP subscriber on loopback that records every request and answers
/// from a script (then with a default answer).
#[derive(Debug, Clone)]
pub struct Sink {
    state: Arc<SinkState>,
    addr: SocketAddr,
}

impl Sink {
    /// A sink answering 200 with no body.
    pub async fn start() -> Sink {
        Sink::start_with(Reply::status(200)).await
    }

    /// A sink answering `default` unless scripted otherwise.
    pub async fn start_with(default: Reply) -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sink");
        Sink::serve(listener, default)
    }

    /// A sink on `listener`, answering `default` unless scripted otherwise.
    pub fn serve(listener: tokio::net::TcpListener, default: Reply) -> Sink {
        let state = Arc::new(SinkState {
            received: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(default),
            notify: tokio::sync::Notify::new(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let addr = listener.local_addr().expect("sink addr");
        tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, app).await;
        });
        Sink { state, addr }
    }

    /// The sink's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Queues answers for the next requests.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Changes the default answer.
    pub fn set_default(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = reply;
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (panics after `within`).
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.state.notify.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "sink {} got {} of {n} expected requests within {within:?}",
                    self.url(),
                    self.received().len()
                );
            }
        }
    }

    /// Asserts nothing more than `n` requests arrive during `quiet`.
    pub async fn expect_no_more_than(&self, n: usize, quiet: Duration) {
        tokio::time::sleep(quiet).await;
        let got = self.received().len();
        assert!(
            got <= n,
            "sink {} got {got} requests, expected at most {n}",
            self.url()
        );
    }
}

async fn handle(
    State(state): State<Arc<SinkState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let scripted = state.script.lock().unwrap().pop_front();
        scripted.unwrap_or_else(|| state.default.lock().unwrap().clone())
    };
    state.received.lock().unwrap().push(Received {
        headers,
        body,
        at: Instant::now(),
        peer,
    });
    state.notify.notify_waiters();
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(&v).unwrap(),
        );
    }
    resp
}

/// A subscriber that is down: its address is bound but not listening, so every
/// connection is refused, until [`DownSink::up`] starts a [`Sink`] on the same
/// address (no other process can take the port meanwhile).
#[derive(Debug)]
pub struct DownSink {
    socket: tokio::net::TcpSocket,
    addr: SocketAddr,
}

impl DownSink {
    /// Reserves a free loopback port.
    pub fn reserve() -> DownSink {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().unwrap())
            .expect("bind subscriber port");
        let addr = socket.local_addr().expect("subscriber addr");
        DownSink { socket, addr }
    }

    /// The subscriber's URL (the URL of the [`Sink`] that `up` starts).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Brings the subscriber up: a [`Sink`] answering `default` on this address.
    pub fn up(self, default: Reply) -> Sink {
        let listener = self.socket.listen(1024).expect("listen on subscriber port");
        Sink::serve(listener, default)
    }
}

/// The `ce-id`s of every request `sink` received.
pub fn received_ids(sink: &Sink) -> Vec<String> {
    sink.received()
        .iter()
        .filter_map(|r| r.header("ce-id").map(str::to_owned))
        .collect()
}

/// How many requests `sink` received for event `id`.
pub fn count_id(sink: &Sink, id: &str) -> usize {
    received_ids(sink).iter().filter(|i| *i == id).count()
}

/// Waits until `sink` received event `id` (panics after `within`).
pub async fn wait_for_id(sink: &Sink, id: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while count_id(sink, id) == 0 {
        assert!(
            Instant::now() < deadline,
            "sink {} did not receive event {id} within {within:?}; got {:?}",
            sink.url(),
            received_ids(sink)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Unique ids received by `sink` with `prefix`, and how many requests repeated one.
pub fn tally(sink: &Sink, prefix: &str) -> (usize, usize) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in received_ids(sink) {
        if id.starts_with(prefix) {
            *seen.entry(id).or_default() += 1;
        }
    }
    let dups = seen.values().map(|c| c - 1).sum();
    (seen.len(), dups)
}

/// Waits until `sink` received `n` unique ids with `prefix` (or `within` passed);
/// returns how many it has.
pub async fn wait_all(sink: &Sink, prefix: &str, n: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let (unique, dups) = tally(sink, prefix);
        if unique == n {
            return dups;
        }
        assert!(
            Instant::now() < deadline,
            "only {unique} of {n} events were delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
