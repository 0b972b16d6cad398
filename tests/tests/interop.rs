//! Interoperability with the CloudEvents Python SDK (PyPI `cloudevents`), a client
//! nobody here wrote: `tests/python/send.py` posts events to the cebus ingress in
//! binary and structured mode, and `tests/python/receive.py` is a subscriber that
//! parses cebus's deliveries with the SDK. The SDK comes from `$CEBUS_PYTHON`
//! (`scripts/test` installs it); without it these tests fail, they never skip.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use cebus_e2e::{Cebus, Received, Sink, broker_yaml, cloudevents_python, post};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const WAIT: Duration = Duration::from_secs(15);

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// What `send.py` sent and what it got back.
#[derive(Debug)]
struct Sent {
    status: u16,
    /// Every attribute of the SDK's event, including the id and time it chose.
    attributes: Map<String, Value>,
    headers: Map<String, Value>,
    body: Vec<u8>,
    answer: String,
}

impl Sent {
    fn attr(&self, name: &str) -> &str {
        self.attributes
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("the SDK's event has no string attribute {name}: {self:?}"))
    }

    /// The exact text of the `data` member of a structured-mode body.
    fn structured_data_member(&self) -> String {
        let doc: BTreeMap<String, Box<RawValue>> =
            serde_json::from_slice(&self.body).expect("structured body is a JSON object");
        doc.get("data")
            .expect("structured body has data")
            .get()
            .to_owned()
    }
}

/// Runs `send.py url mode attributes data...` with the SDK's interpreter.
async fn send(url: &str, mode: &str, attributes: Value, data: &[&str]) -> Sent {
    let run = Command::new(cloudevents_python())
        .arg(script("send.py"))
        .args([url, mode, &attributes.to_string()])
        .args(data)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("send.py did not finish within 60s")
        .expect("run send.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "send.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let mut lines = stdout.lines();
    let status = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("send.py printed no status:\n{stdout}\n{stderr}"));
    let sent: Value = serde_json::from_str(lines.next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("send.py printed no event ({e}):\n{stdout}\n{stderr}"));
    let object = |key: &str| sent[key].as_object().cloned().unwrap_or_default();
    Sent {
        status,
        attributes: object("attributes"),
        headers: object("headers"),
        body: BASE64
            .decode(sent["body_base64"].as_str().expect("body_base64"))
            .expect("base64 body"),
        answer: lines.next().unwrap_or_default().to_owned(),
    }
}

/// Asserts that `got` (a binary-mode delivery to a [`Sink`]) carries the event the
/// SDK sent, with `data` as its data bytes.
fn assert_delivered(got: &Received, sent: &Sent, data: &[u8]) {
    let event = got.event();
    for (name, value) in &sent.attributes {
        let value = value
            .as_str()
            .unwrap_or_else(|| panic!("attribute {name} is not a string"));
        assert_eq!(
            event.get_str(name).as_deref(),
            Some(value),
            "attribute {name} changed between the Python SDK and the subscriber; headers {:?}",
            got.headers
        );
    }
    // The time the SDK chose (microseconds, +00:00), byte for byte on the wire.
    assert_eq!(
        got.header("ce-time"),
        Some(sent.attr("time")),
        "ce-time header"
    );
    assert_eq!(got.header("ce-id"), Some(sent.attr("id")), "ce-id header");
    if let Some(ct) = sent
        .attributes
        .get("datacontenttype")
        .and_then(Value::as_str)
    {
        assert_eq!(
            got.header("content-type"),
            Some(ct),
            "content-type of the delivery"
        );
    }
    assert_eq!(
        event.data().map(|d| d.to_vec()).unwrap_or_default(),
        data,
        "data bytes changed: sink got {:?}, expected {:?}",
        String::from_utf8_lossy(event.data().map(|d| &d[..]).unwrap_or_default()),
        String::from_utf8_lossy(data)
    );
}

async fn cebus_with_sink() -> (Cebus, Sink) {
    let sink = Sink::start().await;
    let cebus = Cebus::start(&broker_yaml("default", "", &[("all", "", &sink.url())])).await;
    (cebus, sink)
}

fn find<'a>(got: &'a [Received], id: &str) -> &'a Received {
    got.iter()
        .find(|r| r.header("ce-id") == Some(id))
        .unwrap_or_else(|| panic!("sink got no event {id}: {got:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_sends_binary_mode() {
    let (cebus, sink) = cebus_with_sink().await;
    let sent = send(
        &cebus.broker_url("default", "default"),
        "binary",
        json!({
            "type": "com.example.python.binary",
            "source": "/python/sdk",
            "subject": "order-42",
            "datacontenttype": "application/json",
            "pyext": "from-python",
        }),
        &[
            "--json",
            r#"{"order": 42, "items": ["a", "b"], "note": "café ☕"}"#,
        ],
    )
    .await;
    assert!(
        (200..300).contains(&sent.status),
        "ingress answered {} {}",
        sent.status,
        sent.answer
    );
    assert_eq!(
        sent.headers.get("ce-pyext"),
        Some(&json!("from-python")),
        "the SDK sent binary mode"
    );

    let got = sink.wait_for(1, WAIT).await;
    assert_delivered(&got[0], &sent, &sent.body);
    cebus.wait_settled("default", "default", WAIT).await;
    assert_eq!(sink.received().len(), 1, "delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_sends_structured_mode() {
    let (cebus, sink) = cebus_with_sink().await;
    let url = cebus.broker_url("default", "default");

    // JSON data: the SDK writes it as the `data` member.
    let json_event = send(
        &url,
        "structured",
        json!({
            "type": "com.example.python.structured",
            "source": "/python/sdk",
            "datacontenttype": "application/json",
            "pyext": "structured-json",
        }),
        &[
            "--json",
            r#"{"order": 43, "nested": {"ok": true, "none": null}, "note": "ünïcödé"}"#,
        ],
    )
    .await;
    // Bytes: the SDK writes them as `data_base64`.
    let bytes: Vec<u8> = vec![0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, b'\n', b'"'];
    let bytes_event = send(
        &url,
        "structured",
        json!({
            "type": "com.example.python.bytes",
            "source": "/python/sdk",
            "datacontenttype": "application/octet-stream",
            "pyext": "structured-bytes",
        }),
        &["--data-base64", &BASE64.encode(&bytes)],
    )
    .await;
    for sent in [&json_event, &bytes_event] {
        assert!(
            (200..300).contains(&sent.status),
            "ingress answered {} {}",
            sent.status,
            sent.answer
        );
        assert_eq!(
            sent.headers.get("content-type"),
            Some(&json!("application/cloudevents+json")),
            "the SDK sent structured mode"
        );
    }
    assert!(
        String::from_utf8_lossy(&bytes_event.body).contains("\"data_base64\""),
        "the SDK used data_base64"
    );

    let got = sink.wait_for(2, WAIT).await;
    // The `data` member's exact text becomes the binary-mode body.
    assert_delivered(
        find(&got, json_event.attr("id")),
        &json_event,
        json_event.structured_data_member().as_bytes(),
    );
    assert_delivered(find(&got, bytes_event.attr("id")), &bytes_event, &bytes);
    cebus.wait_settled("default", "default", WAIT).await;
    assert_eq!(sink.received().len(), 2, "each delivered once");
}

/// `receive.py` running as a subscriber.
struct Receiver {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    port: u16,
}

impl Receiver {
    /// Starts `receive.py` to take `n` requests.
    async fn start(n: usize) -> Receiver {
        let mut child = Command::new(cloudevents_python())
            .arg(script("receive.py"))
            .arg(n.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start receive.py");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("receive.py printed no port within 30s")
            .expect("read receive.py")
            .expect("receive.py exited before printing its port");
        let port = first
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("receive.py port line: {first:?}"));
        Receiver { child, lines, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// The next request as `receive.py` printed it.
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("receive.py printed no event within {WAIT:?}"))
            .expect("read receive.py")
            .expect("receive.py exited early");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("receive.py line {line:?}: {e}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_receives_binary_and_structured_deliveries() {
    let mut receiver = Receiver::start(4).await;
    let cebus = Cebus::start(&broker_yaml(
        "default",
        "",
        &[
            ("binary", "", &receiver.url("binary")),
            (
                "structured",
                "  delivery:\n    format: json\n",
                &receiver.url("structured"),
            ),
        ],
    ))
    .await;
    let url = cebus.broker_url("default", "default");

    let time = "2024-05-06T07:08:09.123456789+02:00";
    let data =
        json!({"greeting": "hallo", "n": [1, 2, 3], "nested": {"ok": true}, "text": "ünïcödé"});
    let (status, body) = post(
        &url,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "py-json-1"),
            ("ce-source", "/e2e/interop"),
            ("ce-type", "com.example.python.receive"),
            ("ce-time", time),
            ("ce-subject", "s-1"),
            ("ce-pyext", "ext-value"),
            ("content-type", "application/json"),
        ],
        data.to_string(),
    )
    .await;
    assert!(
        (200..300).contains(&status),
        "ingress answered {status} {body}"
    );
    let bytes: Vec<u8> = vec![0, 0x9f, 0x92, 0x96, 0xff, b'{'];
    let (status, body) = post(
        &url,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "py-bytes-1"),
            ("ce-source", "/e2e/interop"),
            ("ce-type", "com.example.python.receive.bytes"),
            ("ce-pyext", "bytes-ext"),
            ("content-type", "application/octet-stream"),
        ],
        bytes.clone(),
    )
    .await;
    assert!(
        (200..300).contains(&status),
        "ingress answered {status} {body}"
    );

    let mut seen = BTreeMap::new();
    for _ in 0..4 {
        let line = receiver.next().await;
        assert!(
            line.get("error").is_none(),
            "the Python SDK rejected a delivery: {line}"
        );
        let key = (
            line["path"].as_str().unwrap_or_default().to_owned(),
            line["attributes"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        assert!(
            seen.insert(key, line.clone()).is_none(),
            "delivered twice: {line}"
        );
    }
    let status = tokio::time::timeout(WAIT, receiver.child.wait())
        .await
        .expect("receive.py did not exit after 4 events")
        .expect("wait receive.py");
    assert!(status.success(), "receive.py exited with {status}");

    // The broker adds Knative's `knativearrivaltime` extension (an RFC 3339 time);
    // everything else must arrive as posted.
    for line in seen.values_mut() {
        let arrival = line["attributes"]
            .as_object_mut()
            .and_then(|a| a.remove("knativearrivaltime"))
            .unwrap_or_else(|| panic!("no knativearrivaltime: {line}"));
        let arrival = arrival.as_str().unwrap_or_default();
        assert!(
            cebus_events::is_rfc3339(arrival),
            "knativearrivaltime {arrival:?}"
        );
    }
    for (path, mode) in [("/binary", "binary"), ("/structured", "structured")] {
        let get = |id: &str| {
            seen.get(&(path.to_owned(), id.to_owned()))
                .unwrap_or_else(|| panic!("no {id} at {path}: {seen:#?}"))
        };

        let json_line = get("py-json-1");
        assert_eq!(json_line["mode"], mode, "{json_line}");
        assert_eq!(
            json_line["attributes"],
            json!({
                "specversion": "1.0",
                "id": "py-json-1",
                "source": "/e2e/interop",
                "type": "com.example.python.receive",
                "time": time,
                "subject": "s-1",
                "pyext": "ext-value",
                "datacontenttype": "application/json",
            }),
            "attributes the Python SDK parsed from the {mode} delivery"
        );
        assert_eq!(json_line["data_kind"], "json", "{json_line}");
        assert_eq!(
            json_line["data_json"], data,
            "data the Python SDK parsed from the {mode} delivery"
        );

        let bytes_line = get("py-bytes-1");
        assert_eq!(bytes_line["mode"], mode, "{bytes_line}");
        // This event has no time; the SDK (1.x) fills in "now" when it parses one.
        let mut attributes = bytes_line["attributes"].clone();
        attributes.as_object_mut().map(|a| a.remove("time"));
        assert_eq!(
            attributes,
            json!({
                "specversion": "1.0",
                "id": "py-bytes-1",
                "source": "/e2e/interop",
                "type": "com.example.python.receive.bytes",
                "pyext": "bytes-ext",
                "datacontenttype": "application/octet-stream",
            }),
            "attributes the Python SDK parsed from the {mode} delivery"
        );
        assert_eq!(bytes_line["data_kind"], "bytes", "{bytes_line}");
        assert_eq!(
            bytes_line["data_base64"],
            BASE64.encode(&bytes),
            "data bytes the Python SDK parsed from the {mode} delivery"
        );
    }
}
