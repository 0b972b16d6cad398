//! The pooled HTTP client deliveries go through.
//!
//! Plain `http://` destinations, the usual in-cluster subscriber, use hyper's
//! HTTP/1.1 connections from a keep-alive pool of the broker's own. A
//! connection is driven by the delivery that holds it: the request is written
//! and the answer read in the delivery's task, with no connection task to hand
//! the request to and the response back from (two task wake-ups per delivery
//! less), and none of reqwest's per-request layers (client and connector
//! clones, header merging, URL conversions), which showed in the profile.
//!
//! `https://` URLs, URLs with credentials and destinations the environment's
//! proxy settings (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) send
//! through a proxy go through reqwest, unchanged: rustls with the process's
//! provider and the platform's roots, HTTP/2 when offered, Basic credentials
//! from the URL, proxies.
//!
//! Either way, redirects are never followed (3xx is a terminal answer in
//! Knative's contract) and idle connections are kept [`POOL_IDLE`].

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cebus_triggers::AttemptOutcome;
use http::{HeaderMap, HeaderValue, Method, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher as ProxyMatcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower_service::Service;

/// How long an idle keep-alive connection stays in the pool.
pub const POOL_IDLE: Duration = Duration::from_secs(90);
/// Longest wait for a TCP connection (the attempt's timeout still bounds it).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keep-alive probes on pooled connections, so a peer that vanished is
/// noticed (reqwest's defaults, kept).
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
/// How often idle connections past [`POOL_IDLE`] are closed.
const REAP_EVERY: Duration = Duration::from_secs(30);

/// The pooled keep-alive HTTP client for subscribers and dead-letter sinks.
#[derive(Clone)]
pub struct Client {
    pool: Arc<Pool>,
    connector: HttpConnector,
    h1: http1::Builder,
    /// For the destinations the pool does not serve, and for callers outside
    /// deliveries ([`Client::post`]).
    general: reqwest::Client,
    /// Only when a proxy variable is set, so the common case checks nothing.
    proxy_rules: Option<Arc<ProxyMatcher>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("max_idle_per_host", &self.pool.max_idle_per_host)
            .field("proxy_rules", &self.proxy_rules)
            .finish_non_exhaustive()
    }
}

/// Status, headers and the (possibly cut) body of an answer.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// At most the limit the caller gave.
    pub body: Bytes,
}

/// Where requests for one URL go, worked out once per delivery rather than
/// once per attempt.
#[derive(Debug)]
pub struct Target {
    /// `host:port`: the key of the host's request permits and idle connections.
    pub host_key: String,
    route: Route,
}

#[derive(Debug)]
enum Route {
    /// A pooled HTTP/1.1 connection to `connect` (`http://host:port`).
    Pooled {
        connect: Uri,
        /// The request line's `/path?query`.
        origin: Uri,
        host: HeaderValue,
    },
    /// reqwest.
    General(reqwest::Url),
}

impl Client {
    /// A client keeping up to `max_idle_per_host` idle connections per host
    /// (the same figure as the host's request permits, so every connection
    /// they allow can go back to the pool). Inside a tokio runtime, a task
    /// closes connections idle longer than 90 s; call after the process's
    /// rustls crypto provider is installed.
    pub fn new(max_idle_per_host: usize) -> Client {
        Client::with_shards(max_idle_per_host, 1)
    }

    /// Like [`Client::new`], with the idle connections kept in `shards` pools
    /// apart (at least one), each up to `max_idle_per_host`: a thread takes and
    /// returns connections in the shard [`use_pool_shard`] gave it (shard 0
    /// unless told). A connection answers to the runtime of the thread that
    /// opened it; one taken up on another runtime's thread would wake that
    /// thread for every read.
    pub fn with_shards(max_idle_per_host: usize, shards: usize) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_keepalive(Some(TCP_KEEPALIVE));
        connector.set_keepalive_interval(Some(TCP_KEEPALIVE));
        connector.set_keepalive_retries(Some(3));
        let pool = Arc::new(Pool {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            max_idle_per_host,
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(reap(Arc::downgrade(&pool)));
        }
        let general = reqwest::Client::builder()
            .pool_max_idle_per_host(max_idle_per_host)
            .pool_idle_timeout(POOL_IDLE)
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client configuration is static and valid");
        Client {
            pool,
            connector,
            h1: http1::Builder::new(),
            general,
            proxy_rules: proxy_configured().then(|| Arc::new(ProxyMatcher::from_env())),
        }
    }

    /// A request through reqwest (proxies, per-request timeouts), for callers
    /// outside the delivery path, such as sources' sinks.
    pub fn post(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.general.post(url)
    }

    /// Where requests for `url` go; `None` when it names no host.
    pub fn target(&self, url: &reqwest::Url) -> Option<Target> {
        let host = url.host_str()?;
        let host_key = format!("{host}:{}", url.port_or_known_default()?);
        let general = || Target {
            host_key: host_key.clone(),
            route: Route::General(url.clone()),
        };
        // Credentials in the URL: reqwest turns them into Basic authentication.
        if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
            return Some(general());
        }
        let Ok(full) = Uri::try_from(url.as_str()) else {
            return Some(general());
        };
        if self
            .proxy_rules
            .as_ref()
            .is_some_and(|rules| rules.intercept(&full).is_some())
        {
            return Some(general());
        }
        // `Url::port` is `None` for the scheme's default port, which `Host`
        // leaves out too.
        let host = match url.port() {
            Some(port) => HeaderValue::try_from(format!("{host}:{port}")),
            None => HeaderValue::try_from(host),
        };
        let (Some(origin), Ok(host)) = (full.path_and_query().cloned(), host) else {
            return Some(general());
        };
        Some(Target {
            route: Route::Pooled {
                connect: full,
                origin: Uri::from(origin),
                host,
            },
            host_key,
        })
    }

    /// POSTs `headers` and `body` to `target`; the answer with at most
    /// `limit()` bytes of its body (`limit` is only asked when there is one).
    /// `headers` may hold the [`reserve_host`] placeholder.
    pub async fn exchange(
        &self,
        target: &Target,
        headers: &HeaderMap,
        body: &Bytes,
        limit: impl FnOnce() -> usize,
    ) -> Result<Response, AttemptOutcome> {
        match &target.route {
            Route::Pooled {
                connect,
                origin,
                host,
            } => {
                let mut req = http::Request::new(Full::new(body.clone()));
                *req.method_mut() = Method::POST;
                *req.uri_mut() = origin.clone();
                // With the placeholder, `Host` replaces a value in the copy;
                // without it, the copy would grow (reallocate, rehash) for it.
                let mut headers = headers.clone();
                headers.insert(http::header::HOST, host.clone());
                *req.headers_mut() = headers;
                self.pooled(&target.host_key, connect, req, limit).await
            }
            // Boxed: reqwest's future is large, and https/proxied subscribers
            // are the exception; inline it would grow every delivery's future.
            Route::General(url) => Box::pin(self.general(url, headers, body, limit)).await,
        }
    }

    /// One exchange through reqwest (https, proxies, credentials in the URL).
    async fn general(
        &self,
        url: &reqwest::Url,
        headers: &HeaderMap,
        body: &Bytes,
        limit: impl FnOnce() -> usize,
    ) -> Result<Response, AttemptOutcome> {
        let mut headers = headers.clone();
        // reqwest sets `Host` from the URL.
        headers.remove(http::header::HOST);
        let resp = self
            .general
            .post(url.clone())
            .headers(headers)
            .body(body.clone())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    AttemptOutcome::Timeout
                } else {
                    AttemptOutcome::Transport
                }
            })?;
        let resp = http::Response::from(resp);
        let status = resp.status().as_u16();
        let (parts, mut body) = resp.into_parts();
        let mut cut = Cut::new(limit, body.is_end_stream());
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| classify(&e))?;
            if let Ok(chunk) = frame.into_data()
                && !cut.push(&chunk)
            {
                break;
            }
        }
        Ok(Response {
            status,
            headers: parts.headers,
            body: cut.into_body(),
        })
    }

    /// One exchange on a pooled connection to `connect`, opening one if none
    /// is idle. A request that a reused connection closed before it was
    /// written (the server timed the connection out meanwhile) is sent again on
    /// another; anything later is the attempt's outcome.
    async fn pooled(
        &self,
        key: &str,
        connect: &Uri,
        req: http::Request<Full<Bytes>>,
        limit: impl FnOnce() -> usize,
    ) -> Result<Response, AttemptOutcome> {
        let mut req = req;
        let (mut conn, resp) = loop {
            let (mut conn, reused) = match self.checkout(key).await {
                Some(conn) => (conn, true),
                // Boxed: opening a connection is rare once the pool is warm,
                // and inline it would grow every delivery's future.
                None => (Box::pin(self.connect(connect)).await?, false),
            };
            let sent = {
                let mut answer = pin!(conn.sender.try_send_request(req));
                poll_fn(|cx| conn.io.poll_with(cx, |cx| answer.as_mut().poll(cx))).await
            };
            match sent {
                Ok(resp) => break (conn, resp),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(classify(e.error())),
                },
            }
        };
        let status = resp.status().as_u16();
        let (parts, mut body) = resp.into_parts();
        let mut cut = Cut::new(limit, body.is_end_stream());
        let mut whole = true;
        if !body.is_end_stream() {
            loop {
                let frame = poll_fn(|cx| {
                    conn.io
                        .poll_with(cx, |cx| Pin::new(&mut body).poll_frame(cx))
                })
                .await;
                let Some(frame) = frame else { break };
                let frame = frame.map_err(|e| classify(&e))?;
                if let Ok(chunk) = frame.into_data()
                    && !cut.push(&chunk)
                {
                    // Unread bytes would be taken for the next answer.
                    whole = false;
                    break;
                }
            }
        }
        drop(body);
        if whole {
            self.pool.put(key, conn);
        }
        Ok(Response {
            status,
            headers: parts.headers,
            body: cut.into_body(),
        })
    }

    /// An idle connection to `key` that can take a request now, if any.
    async fn checkout(&self, key: &str) -> Option<Box<Conn>> {
        while let Some(mut conn) = self.pool.take(key) {
            // The usual case, with no I/O: the connection asked for the next
            // request when it was last polled. Should the server have closed it
            // since, the connection reads that before writing and hands the
            // request back unsent, and `pooled` sends it on another.
            if conn.sender.is_ready() {
                return Some(conn);
            }
            // One poll settles it: the connection reads what arrived while it
            // sat idle and is ready, or it is not usable.
            let ready = poll_fn(|cx| {
                conn.io
                    .poll_with(cx, |cx| Poll::Ready(conn_ready(&mut conn.sender, cx)))
            });
            if ready.await {
                return Some(conn);
            }
        }
        None
    }

    /// A new connection to `uri`.
    async fn connect(&self, uri: &Uri) -> Result<Box<Conn>, AttemptOutcome> {
        let mut connector = self.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|e| classify(&e))?;
        let io = connector
            .call(uri.clone())
            .await
            .map_err(|e| classify(&e))?;
        let (sender, conn) = self.h1.handshake(io).await.map_err(|e| classify(&e))?;
        // Boxed: it moves in and out of the pool and through every delivery's
        // future, and is several hundred bytes.
        Ok(Box::new(Conn {
            sender,
            io: Driver(Some(conn)),
        }))
    }
}

/// Adds an empty `Host` to request headers built once and sent many times:
/// [`Client::exchange`] puts the destination's host in its place in each copy,
/// which then keeps the size the map was built with.
pub fn reserve_host(headers: &mut HeaderMap) {
    headers.insert(http::header::HOST, HeaderValue::from_static(""));
}

/// Whether an idle connection's sender takes a request now.
fn conn_ready(sender: &mut http1::SendRequest<Full<Bytes>>, cx: &mut Context<'_>) -> bool {
    matches!(sender.poll_ready(cx), Poll::Ready(Ok(())))
}

/// One keep-alive HTTP/1.1 connection: the handle requests go in by, and the
/// state machine doing its I/O, polled by whichever delivery holds it.
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    io: Driver,
}

/// A connection's I/O state machine; `None` once it finished (closed or
/// failed).
struct Driver(Option<http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>);

impl Driver {
    /// Moves the connection's I/O along, then polls `f`, which waits on it
    /// (the answer, a body frame, readiness).
    fn poll_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        if let Some(conn) = &mut self.0
            && Pin::new(conn).poll(cx).is_ready()
        {
            // Dropped at once: that hands a request still queued on it back
            // unsent (or fails it), so whatever waits on it never hangs. What
            // ended it reaches `f` as that error, or as an answer that was
            // complete before the close.
            self.0 = None;
        }
        f(cx)
    }
}

/// An idle connection and since when.
struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

thread_local! {
    /// This thread's shard of every [`Client`]'s idle connections.
    static POOL_SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Makes this thread take and return idle connections in shard `shard` of
/// every [`Client`] (modulo its shard count). For a thread that runs a
/// runtime of its own, so its deliveries keep to connections its own runtime
/// drives.
pub fn use_pool_shard(shard: usize) {
    POOL_SHARD.set(shard);
}

/// One shard's idle connections by `host:port`, most recently used last.
type Shard = Mutex<HashMap<String, Vec<Idle>>>;

/// Idle connections, in shards.
struct Pool {
    shards: Box<[Shard]>,
    max_idle_per_host: usize,
}

impl Pool {
    /// The calling thread's shard.
    fn idle(&self) -> &Shard {
        &self.shards[POOL_SHARD.get() % self.shards.len()]
    }

    /// The most recently used idle connection to `key`.
    fn take(&self, key: &str) -> Option<Box<Conn>> {
        let mut stale = Vec::new();
        let conn = {
            let mut idle = self.idle().lock().expect("connection pool lock poisoned");
            let list = idle.get_mut(key)?;
            let found = list.pop();
            match found {
                Some(i) if i.since.elapsed() < POOL_IDLE => Some(i.conn),
                // The newest is stale, so all are: closed below, outside the lock.
                Some(i) => {
                    stale.push(i);
                    stale.append(list);
                    None
                }
                None => None,
            }
        };
        drop(stale);
        conn
    }

    /// Keeps `conn` for the next request to `key`, unless the host has enough
    /// idle connections already or it cannot take another request.
    fn put(&self, key: &str, conn: Box<Conn>) {
        if conn.io.0.is_none() || conn.sender.is_closed() {
            return;
        }
        let mut idle = self.idle().lock().expect("connection pool lock poisoned");
        let list = match idle.get_mut(key) {
            Some(list) => list,
            None => idle.entry(key.to_owned()).or_default(),
        };
        if list.len() < self.max_idle_per_host {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        } else {
            drop(idle);
            drop(conn);
        }
    }

    /// Takes out every connection idle past [`POOL_IDLE`] and hosts left
    /// without any, so they can be closed outside the lock.
    fn expired(&self) -> Vec<Idle> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut idle = shard.lock().expect("connection pool lock poisoned");
            idle.retain(|_, list| {
                // Oldest first: the expired ones are a prefix.
                let n = list.partition_point(|i| i.since.elapsed() >= POOL_IDLE);
                out.extend(list.drain(..n));
                !list.is_empty()
            });
        }
        out
    }
}

/// Closes idle connections past [`POOL_IDLE`] until the pool is gone.
async fn reap(pool: Weak<Pool>) {
    let mut every = tokio::time::interval(REAP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        drop(pool.expired());
    }
}

/// A body read up to a limit.
struct Cut<L> {
    limit: Option<L>,
    max: usize,
    body: BytesMut,
}

impl<L: FnOnce() -> usize> Cut<L> {
    /// `empty`: the body is known to have no bytes, so `limit` is not needed.
    fn new(limit: L, empty: bool) -> Cut<L> {
        Cut {
            limit: (!empty).then_some(limit),
            max: 0,
            body: BytesMut::new(),
        }
    }

    /// Appends `chunk`; false once the limit is reached (the rest is not
    /// needed).
    fn push(&mut self, chunk: &[u8]) -> bool {
        if let Some(limit) = self.limit.take() {
            self.max = limit();
        }
        if self.body.len() + chunk.len() > self.max {
            self.body
                .extend_from_slice(&chunk[..self.max - self.body.len()]);
            return false;
        }
        self.body.extend_from_slice(chunk);
        true
    }

    fn into_body(self) -> Bytes {
        self.body.freeze()
    }
}

/// Whether the environment names a proxy (the variables reqwest reads).
fn proxy_configured() -> bool {
    [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// A connection that could not be opened in time is a timeout; anything else
/// without an answer is a transport failure.
fn classify(e: &(dyn std::error::Error + 'static)) -> AttemptOutcome {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return AttemptOutcome::Timeout;
        }
        cause = c.source();
    }
    AttemptOutcome::Transport
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A sink on loopback answering every request with `answer`; after `per_conn`
    /// requests on a connection it closes it, `linger` later. Counts the
    /// connections accepted.
    async fn sink_lingering(
        answer: &'static str,
        per_conn: usize,
        linger: Duration,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for _ in 0..per_conn {
                        if !read_request(&mut sock, &mut buf).await {
                            return;
                        }
                        sock.write_all(answer.as_bytes()).await.unwrap();
                    }
                    tokio::time::sleep(linger).await;
                });
            }
        });
        (addr, accepted)
    }

    async fn sink(answer: &'static str, per_conn: usize) -> (SocketAddr, Arc<AtomicUsize>) {
        sink_lingering(answer, per_conn, Duration::ZERO).await
    }

    /// Reads one request (headers and a `content-length` body) off `sock`.
    async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= end + 4 + len {
                    buf.drain(..end + 4 + len);
                    return true;
                }
            }
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// A client, with the crypto provider `cebus run` installs.
    fn client() -> Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client::new(8)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";

    async fn post(client: &Client, url: &str, limit: usize) -> Result<Response, AttemptOutcome> {
        let target = client.target(&reqwest::Url::parse(url).unwrap()).unwrap();
        let (headers, body) = (HeaderMap::new(), Bytes::from_static(b"{}"));
        let exchange = client.exchange(&target, &headers, &body, || limit);
        // A connection that died must fail or resend the request, never hang.
        tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .expect("an answer or an error in time")
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (addr, accepted) = sink(OK, usize::MAX).await;
        let client = client();
        for _ in 0..5 {
            let resp = post(&client, &format!("http://{addr}/x"), 1024)
                .await
                .unwrap();
            assert_eq!(resp.status, 200);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_thread_reuses_connections_of_its_own_shard_only() {
        let (addr, accepted) = sink(OK, usize::MAX).await;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::with_shards(8, 2);
        let url = format!("http://{addr}/x");
        // Shard 0 (this thread's, untold): one connection, kept.
        post(&client, &url, 1024).await.unwrap();
        post(&client, &url, 1024).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // A thread of shard 1 with a runtime of its own opens its own, keeps
        // it, and leaves shard 0's alone.
        let (c, u) = (client.clone(), url.clone());
        // A thread of the blocking pool, so this test's runtime serves the sink.
        tokio::task::spawn_blocking(move || {
            use_pool_shard(1);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                post(&c, &u, 1024).await.unwrap();
                post(&c, &u, 1024).await.unwrap();
            });
        })
        .await
        .unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        post(&client, &url, 1024).await.unwrap();
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "shard 0 kept its connection"
        );
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_replaced() {
        // The close comes after the answer, once the connection is back in the
        // pool: the next request finds it closed and goes on a new one.
        let (addr, accepted) = sink_lingering(OK, 1, Duration::from_millis(10)).await;
        let client = client();
        for _ in 0..3 {
            let resp = post(&client, &format!("http://{addr}/"), 1024)
                .await
                .unwrap();
            assert_eq!(resp.status, 200);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_cut_and_its_connection_not_reused() {
        let (addr, accepted) = sink(
            "HTTP/1.1 500 Oops\r\nretry-after: 3\r\ncontent-length: 10\r\n\r\n0123456789",
            usize::MAX,
        )
        .await;
        let client = client();
        let url = format!("http://{addr}/");
        let resp = post(&client, &url, 4).await.unwrap();
        assert_eq!(resp.status, 500);
        assert_eq!(resp.headers["retry-after"], "3");
        assert_eq!(&resp.body[..], b"0123");
        let resp = post(&client, &url, 100).await.unwrap();
        assert_eq!(&resp.body[..], b"0123456789");
        // The first connection still had unread bytes, so it was closed.
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        post(&client, &url, 100).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn redirects_are_answers_not_followed() {
        let (addr, _) = sink(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/\r\ncontent-length: 0\r\n\r\n",
            usize::MAX,
        )
        .await;
        let resp = post(&client(), &format!("http://{addr}/"), 1024)
            .await
            .unwrap();
        assert_eq!(resp.status, 302);
    }

    #[tokio::test]
    async fn connections_idle_past_the_pool_timeout_are_not_used() {
        let (addr, accepted) = sink(OK, usize::MAX).await;
        let client = client();
        let url = format!("http://{addr}/");
        post(&client, &url, 1024).await.unwrap();
        tokio::time::pause();
        tokio::time::advance(POOL_IDLE + Duration::from_secs(1)).await;
        tokio::time::resume();
        post(&client, &url, 1024).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transport_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = post(&client(), &format!("http://{addr}/"), 1024)
            .await
            .unwrap_err();
        assert_eq!(err, AttemptOutcome::Transport);
    }

    #[test]
    fn targets_pool_plain_http_and_leave_the_rest_to_reqwest() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async { client() });
        let target = |u: &str| client.target(&reqwest::Url::parse(u).unwrap()).unwrap();

        let t = target("http://sub.ns.svc.cluster.local/a/b?c=d#frag");
        assert_eq!(t.host_key, "sub.ns.svc.cluster.local:80");
        let Route::Pooled {
            connect,
            origin,
            host,
        } = &t.route
        else {
            panic!("plain http is pooled: {t:?}");
        };
        assert_eq!(origin, "/a/b?c=d");
        assert_eq!(host, "sub.ns.svc.cluster.local");
        assert_eq!(connect.port_u16(), None);

        let t = target("http://[::1]:8080");
        assert_eq!(t.host_key, "[::1]:8080");
        let Route::Pooled { origin, host, .. } = &t.route else {
            panic!("plain http is pooled: {t:?}");
        };
        assert_eq!(origin, "/");
        assert_eq!(host, "[::1]:8080");

        for url in ["https://hooks.example/x", "http://user:pw@sub.example/x"] {
            assert!(
                matches!(target(url).route, Route::General(_)),
                "{url} goes through reqwest"
            );
        }
        assert_eq!(
            target("https://hooks.example/x").host_key,
            "hooks.example:443"
        );
    }
}
