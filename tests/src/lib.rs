//! Shared helpers of the end-to-end tests: a cebus data plane started in-process
//! on `127.0.0.1:0` from YAML, recording HTTP subscribers with scripted answers,
//! and a client that posts CloudEvents.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cebus_broker::{Limits, Server, ServerOptions};

/// Installs the process-wide TLS provider (ring) once.
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A running cebus with its config folder.
pub struct Cebus {
    /// The server.
    pub server: Server,
    /// The config folder (deleted on drop).
    pub dir: tempfile::TempDir,
}

impl Cebus {
    /// Starts cebus with `yaml` as `config.yaml` and default limits.
    pub async fn start(yaml: &str) -> Cebus {
        Cebus::start_with(yaml, |_| {}).await
    }

    /// Starts cebus with `yaml`, letting `tune` adjust the options.
    pub async fn start_with(yaml: &str, tune: impl FnOnce(&mut ServerOptions)) -> Cebus {
        init();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config.yaml"), yaml).expect("write config");
        let mut opts = ServerOptions::new("127.0.0.1:0".parse().unwrap(), dir.path());
        opts.reload_interval = Duration::from_millis(100);
        // As `cebus run` does: connections served on threads of their own.
        opts.ingress_threads = 2;
        opts.limits = Limits {
            default_timeout: Duration::from_secs(10),
            ..Limits::default()
        };
        tune(&mut opts);
        let server = Server::start(opts)
            .await
            .unwrap_or_else(|e| panic!("cebus did not start: {e}"));
        Cebus { server, dir }
    }

    /// `http://127.0.0.1:port`.
    pub fn base(&self) -> String {
        format!("http://{}", self.server.local_addr())
    }

    /// The ingress URL of `namespace/name`.
    pub fn broker_url(&self, namespace: &str, name: &str) -> String {
        format!("{}/{namespace}/{name}", self.base())
    }

    /// Replaces or adds a config file.
    pub fn write(&self, file: &str, yaml: &str) {
        // Write then rename, as editors do, so the watcher never sees half a file.
        let tmp = self.dir.path().join(format!(".{file}.tmp"));
        std::fs::write(&tmp, yaml).expect("write config");
        std::fs::rename(&tmp, self.dir.path().join(file)).expect("rename config");
    }

    /// Removes a config file.
    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.dir.path().join(file)).expect("remove config");
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base()))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }
}

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

/// Posts a binary-mode 1.0 event; returns (status, body).
pub async fn post_binary(url: &str, id: &str, ty: &str, data: &str) -> (u16, String) {
    post(
        url,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", id),
            ("ce-source", "/e2e"),
            ("ce-type", ty),
            ("content-type", "application/json"),
        ],
        data.to_owned(),
    )
    .await
}

/// Posts raw headers and body; returns (status, body).
pub async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    init();
    let mut req = reqwest::Client::new().post(url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("post to cebus");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// A Broker and Triggers as Knative YAML: `triggers` are (name, extra spec YAML
/// indented by 2, subscriber URL).
pub fn broker_yaml(broker: &str, broker_extra: &str, triggers: &[(&str, &str, &str)]) -> String {
    let mut y = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {broker}\n{broker_extra}"
    );
    for (name, extra, url) in triggers {
        y.push_str(&format!(
            "\n---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {name}\nspec:\n  broker: {broker}\n  subscriber:\n    uri: {url}\n{extra}"
        ));
    }
    y
}

/// A config barrier for reload tests: a trigger whose exact filter changes on every
/// `sync`, plus a sink it delivers to. Once a probe of the new generation arrives,
/// every config change written before the `sync` has been applied to that broker
/// (the runtime applies a whole reload before the next, removals before updates).
#[derive(Debug)]
pub struct Barrier {
    sink: Sink,
    generation: std::sync::atomic::AtomicU32,
}

/// The event type of barrier probes of `generation`.
pub fn barrier_type(generation: u32) -> String {
    format!("dev.cebus.e2e.barrier.{generation}")
}

impl Barrier {
    /// A barrier with its own sink.
    pub async fn start() -> Barrier {
        Barrier {
            sink: Sink::start().await,
            generation: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// The file the barrier trigger of `namespace/broker` lives in.
    pub fn file(namespace: &str, broker: &str) -> String {
        format!("zz-barrier-{namespace}-{broker}.yaml")
    }

    /// Rewrites the barrier trigger of `namespace/broker` in `cebus`'s config folder
    /// and posts probes until one of the new generation arrives (panics after `within`).
    pub async fn sync(&self, cebus: &Cebus, namespace: &str, broker: &str, within: Duration) {
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let ty = barrier_type(generation);
        cebus.write(
            &Barrier::file(namespace, broker),
            &format!(
                "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: zz-barrier\n  namespace: {namespace}\nspec:\n  broker: {broker}\n  filters:\n    - exact:\n        type: {ty}\n  subscriber:\n    uri: {}\n",
                self.sink.url()
            ),
        );
        let url = cebus.broker_url(namespace, broker);
        let deadline = Instant::now() + within;
        let mut probe = 0;
        loop {
            probe += 1;
            let (status, body) =
                post_binary(&url, &format!("barrier-{generation}-{probe}"), &ty, "{}").await;
            assert_eq!(status, 202, "barrier probe refused: {body}");
            let step = Instant::now() + Duration::from_millis(100);
            while Instant::now() < step {
                if self
                    .sink
                    .received()
                    .iter()
                    .any(|r| r.header("ce-type") == Some(ty.as_str()))
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(
                Instant::now() < deadline,
                "config change to {namespace}/{broker} not applied within {within:?}"
            );
        }
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

/// The Python interpreter that has the CloudEvents Python SDK (PyPI `cloudevents`,
/// the `cloudevents.http` API): `$CEBUS_PYTHON` (set by `scripts/test`, or by hand
/// as `CEBUS_PYTHON=$(scripts/python-env)`), else `python3` if it can import the
/// SDK. Panics otherwise, in CI and locally alike: a test that needs the SDK never
/// silently skips.
pub fn cloudevents_python() -> String {
    static PYTHON: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(find_cloudevents_python)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn find_cloudevents_python() -> Result<String, String> {
    fn has_sdk(python: &str) -> Result<(), String> {
        match std::process::Command::new(python)
            .args(["-c", "import cloudevents.http"])
            .output()
        {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("no output")
                .to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }
    let hint = "run scripts/test, which installs the CloudEvents Python SDK \
                (or set CEBUS_PYTHON=$(scripts/python-env) when running cargo test by hand)";
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match std::env::var("CEBUS_PYTHON") {
        Ok(python) if !python.is_empty() => {
            has_sdk(&python).map(|()| python.clone()).map_err(|e| {
                format!("CEBUS_PYTHON={python} cannot import cloudevents.http ({e}): {hint}")
            })
        }
        _ => match has_sdk("python3") {
            Ok(()) => Ok("python3".to_owned()),
            Err(e) => Err(format!(
                "the CloudEvents Python SDK is missing: CEBUS_PYTHON is unset and python3 \
                 cannot import cloudevents.http ({e}){}: {hint}",
                if ci { " in CI" } else { "" }
            )),
        },
    }
}

/// The workspace's `cebus` binary, built once per test run so it is never stale.
pub fn cebus_bin() -> &'static std::path::Path {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let built = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "cebus"])
            .current_dir(&workspace)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("run cargo build -p cebus");
        assert!(built.success(), "cargo build -p cebus failed");
        let bin = target.join("debug").join("cebus");
        assert!(bin.is_file(), "no cebus binary at {}", bin.display());
        bin
    })
}

/// The address of the Kafka broker the tests use, `$KAFKA_BOOTSTRAP`
/// (`host:port`). Panics when it is unset: `scripts/test` starts Kafka
/// (`scripts/kafka.sh`) and sets it; a test that needs Kafka never skips.
pub fn kafka_bootstrap() -> String {
    service_env("KAFKA_BOOTSTRAP", "scripts/kafka.sh")
}

/// The URL of the NATS server (JetStream enabled) the tests use, `$NATS_URL`.
/// Panics when it is unset: `scripts/test` starts nats-server (`scripts/nats.sh`)
/// and sets it; a test that needs NATS never skips.
pub fn nats_url() -> String {
    service_env("NATS_URL", "scripts/nats.sh")
}

fn service_env(var: &str, script: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{var} is not set: run scripts/test, which starts Kafka/NATS \
             (or by hand: {script} start && eval \"$({script} env)\")"
        ),
    }
}

/// Runs `command` with `stdin` as its input and waits at most `within` for it to
/// exit; kills it and panics after that. Panics, with its stderr, when it fails.
pub fn run_tool(
    command: &mut std::process::Command,
    stdin: &[u8],
    within: Duration,
) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .unwrap_or_else(|e| panic!("writing to {what}: {e}"));
    // Wait in a thread so a chatty tool never blocks on a full pipe.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(within) {
        Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {what}: {e}")),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("{what} did not finish within {within:?}");
        }
    };
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Starts cebus with `yaml` and the sources extension (PingSource, WebhookSource,
/// ContainerSource), as `cebus run` does.
pub async fn start_with_sources(yaml: &str) -> Cebus {
    Cebus::start_with(yaml, |opts| {
        opts.extensions = vec![Arc::new(cebus_sources::Sources::new(
            cebus_sources::SourcesOptions::default(),
        ))];
    })
    .await
}

/// GitHub's `X-Hub-Signature-256` value for `body` signed with `secret`.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Sends `method` to `url` with `headers` and `body`; returns (status, headers, body).
pub async fn request(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, String) {
    init();
    let mut req = reqwest::Client::new().request(method, url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request to cebus");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap_or_default())
}

/// A topic name no other test run uses (the broker auto-creates it on first use).
pub fn unique_topic(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Every record of `topic` on `$KAFKA_BOOTSTRAP` as kcat's JSON (`-J`: one
/// object per line, headers as `[name, value, name, value, …]`), read to the end.
pub async fn kcat_consume(topic: &str) -> Vec<serde_json::Value> {
    let (bootstrap, topic) = (kafka_bootstrap(), topic.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        run_tool(
            std::process::Command::new("kcat")
                .args(["-C", "-b", &bootstrap, "-t", &topic, "-J", "-e", "-q"]),
            b"",
            Duration::from_secs(60),
        )
    })
    .await
    .expect("kcat task");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Produces one record to `topic` on `$KAFKA_BOOTSTRAP` with kcat: `value` (one
/// line), an optional `key`, and `headers`. Returns when Kafka acknowledged it.
pub fn kcat_produce(topic: &str, key: Option<&str>, headers: &[(&str, &str)], value: &str) {
    assert!(!value.contains('\n'), "one record is one line for kcat");
    let mut cmd = std::process::Command::new("kcat");
    cmd.args(["-P", "-b", &kafka_bootstrap(), "-t", topic]);
    if let Some(k) = key {
        cmd.args(["-k", k]);
    }
    for (name, v) in headers {
        cmd.args(["-H", &format!("{name}={v}")]);
    }
    run_tool(
        &mut cmd,
        format!("{value}\n").as_bytes(),
        Duration::from_secs(30),
    );
}

/// A `NatsJetStreamBroker` named `broker` on `url`, its ConfigMap (plus
/// `cm_extra` lines, indented by 2) and triggers (name, extra spec, subscriber).
pub fn nats_yaml(
    broker: &str,
    url: &str,
    cm_extra: &str,
    broker_spec_extra: &str,
    triggers: &[(&str, &str, &str)],
) -> String {
    let mut y = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {broker}\n  \
         annotations:\n    eventing.knative.dev/broker.class: NatsJetStreamBroker\nspec:\n  \
         config:\n    apiVersion: v1\n    kind: ConfigMap\n    name: {broker}-nats\n{broker_spec_extra}\
         ---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {broker}-nats\ndata:\n  \
         url: {url}\n{cm_extra}"
    );
    for (name, extra, sub) in triggers {
        y.push_str(&format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {name}\n\
             spec:\n  broker: {broker}\n  subscriber:\n    uri: {sub}\n{extra}"
        ));
    }
    y
}

/// A private nats-server with JetStream on a free loopback port, its own store
/// and, when given, its own configuration file (authorization, TLS, operator
/// mode). Panics when nats-server is missing: `scripts/test` installs it.
pub struct PrivateNats {
    child: Option<Child>,
    /// The client port.
    pub port: u16,
    dir: tempfile::TempDir,
    config: Option<std::path::PathBuf>,
}

impl PrivateNats {
    /// Starts nats-server without a configuration file.
    pub fn start() -> PrivateNats {
        PrivateNats::start_with_config(None)
    }

    /// Starts nats-server with `config` (nats-server's configuration syntax) as
    /// its configuration file, if any; the flags set JetStream, the address, the
    /// port and the store.
    pub fn start_with_config(config: Option<&str>) -> PrivateNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config.map(|text| {
            let path = dir.path().join("nats.conf");
            std::fs::write(&path, text).expect("write nats.conf");
            path
        });
        let mut n = PrivateNats {
            child: None,
            port,
            dir,
            config,
        };
        n.launch();
        n
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and store) and waits until it
    /// accepts connections; panics with its log when it exits instead.
    pub fn launch(&mut self) {
        let log = self.dir.path().join("nats.log");
        let mut cmd = Command::new("nats-server");
        cmd.args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-sd",
        ])
        .arg(self.dir.path().join("store"))
        .arg("-l")
        .arg(&log);
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian package nats-server; scripts/nats.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "private nats-server exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "private nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// Stops the server with SIGTERM (a clean shutdown: the file store is synced)
    /// and waits until it exited.
    pub fn terminate(&mut self) {
        let mut c = self.child.take().expect("nats-server is running");
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.try_wait().expect("try_wait").is_none() {
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("nats-server did not exit within a minute of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

// --- Helpers of the durable-channel tests (Kafka, NATS): the real `cebus` binary.

/// The real binary on a free port, with its config in `dir`.
pub struct Proc {
    /// The child process.
    pub child: Child,
    /// `http://127.0.0.1:port`.
    pub base: String,
}

impl Proc {
    /// Starts `cebus run -f dir` on a free port with `extra` flags.
    pub fn start(dir: &std::path::Path, extra: &[&str]) -> Proc {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .to_string();
        let child = Command::new(cebus_bin())
            .args(["run", "-f"])
            .arg(dir)
            .args(["--addr", &addr])
            .args(extra)
            // CEBUS_TEST_LOG=info shows what the process did, when a test needs it.
            .env(
                "RUST_LOG",
                std::env::var("CEBUS_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cebus");
        Proc {
            child,
            base: format!("http://{addr}"),
        }
    }

    /// Sends `sig` (e.g. `-TERM`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// Waits until the process exits (panics after `within`).
    pub fn wait(mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "cebus did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the process exits and returns how it exited (panics after
    /// `within`, killing it).
    pub fn wait_status(mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "cebus did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// `n` events (ids `prefix-0`…, source `/e2e/<prefix>`) posted with `concurrency`
/// clients; every answer must be 202.
pub async fn post_many(url: &str, prefix: &str, n: usize, concurrency: usize) {
    let client = reqwest::Client::new();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, url, prefix) = (
            client.clone(),
            next.clone(),
            url.to_owned(),
            prefix.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let resp = client
                    .post(&url)
                    .header("ce-specversion", "1.0")
                    .header("ce-id", format!("{prefix}-{i}"))
                    .header("ce-source", format!("/e2e/{prefix}"))
                    .header("ce-type", "load")
                    .body("{}")
                    .send()
                    .await
                    .expect("post");
                assert_eq!(resp.status().as_u16(), 202, "event {i}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("poster");
    }
}

/// A broker name no other test (or earlier run on the same Kafka or NATS) uses,
/// so each test has its own topic, stream and consumer groups.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// Posts a binary event until the broker accepts it (a durable broker sets up
/// its topic or stream in the background); panics after a minute.
pub async fn post_until_accepted(url: &str, id: &str, ty: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = post_binary(url, id, ty, "{}").await;
        if status == 202 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "broker never accepted: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Operator mode for a [`PrivateNats`]: an operator that signs an account with
/// JetStream limits (and the system account JetStream needs), and a user of that
/// account, as `nsc` would make them.
pub struct NatsOperator {
    /// The nats-server configuration lines (operator, resolver, preloads).
    pub config: String,
    /// The user's `.creds` file, as `nsc generate creds` writes it.
    pub creds: String,
}

impl NatsOperator {
    /// Fresh keys and JWTs.
    pub fn new() -> NatsOperator {
        use nkeys::KeyPair;
        let operator = KeyPair::new_operator();
        let account = KeyPair::new_account();
        let system = KeyPair::new_account();
        let user = KeyPair::new_user();
        let operator_jwt = nats_jwt(
            &operator,
            &operator.public_key(),
            "cebus-test",
            serde_json::json!({"type": "operator", "version": 2}),
        );
        let account_jwt = nats_jwt(
            &operator,
            &account.public_key(),
            "cebus",
            serde_json::json!({
                "limits": {
                    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                    "wildcards": true, "conn": -1, "leaf": -1,
                    "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
                },
                "default_permissions": {"pub": {}, "sub": {}},
                "type": "account",
                "version": 2
            }),
        );
        let system_jwt = nats_jwt(
            &operator,
            &system.public_key(),
            "SYS",
            serde_json::json!({"type": "account", "version": 2}),
        );
        let user_jwt = nats_jwt(
            &account,
            &user.public_key(),
            "broker",
            serde_json::json!({
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2
            }),
        );
        let config = format!(
            "operator: {operator_jwt}\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {acc}: {account_jwt}\n  {sys}: {system_jwt}\n}}\n",
            acc = account.public_key(),
            sys = system.public_key(),
        );
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n",
            user.seed().expect("the user's seed")
        );
        NatsOperator { config, creds }
    }
}

impl Default for NatsOperator {
    fn default() -> Self {
        NatsOperator::new()
    }
}

/// A NATS JWT (the nats-jwt v2 encoding): base64url JSON claims signed with
/// ed25519 by `issuer`.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let claims = serde_json::json!({
        "jti": unique(name).to_uppercase(),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = issuer.sign(signed.as_bytes()).expect("sign the JWT");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Runs openssl with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    run_tool(
        Command::new("openssl").args(args).current_dir(dir),
        b"",
        Duration::from_secs(60),
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made by
/// the openssl CLI in `dir`: `ca.pem`, `server.pem`/`.key`, `client.pem`/`.key`.
/// Panics when openssl is missing.
pub fn make_certificates(dir: &std::path::Path) {
    let version = Command::new("openssl").arg("version").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "the openssl CLI is needed to make the test certificates (Debian package openssl)"
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509", "-days", "2", "-subj", "/CN=cebus test CA"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    for (name, usage) in [
        ("server", "serverAuth\nsubjectAltName=IP:127.0.0.1"),
        ("client", "clientAuth"),
    ] {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(
            dir.join(&ext),
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n"),
        )
        .expect("write the extensions file");
        openssl(
            dir,
            &[
                &["req", "-new", "-subj", &format!("/CN={name}")][..],
                &ec,
                &["-keyout", &key, "-out", &csr],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        );
    }
}

/// The nats-server `tls` block for the certificates of [`make_certificates`]
/// in `dir`: the server certificate, and clients must present one the CA
/// signed (mutual TLS).
pub fn nats_mutual_tls_config(dir: &std::path::Path) -> String {
    let path = |f: &str| dir.join(f).display().to_string();
    format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  \
         timeout: 5\n}}\n",
        path("server.pem"),
        path("server.key"),
        path("ca.pem")
    )
}
