//! Smoke tests of the real services the durable channels run on, with clients
//! nobody here wrote: a record with `ce_` headers through Apache Kafka with `kcat`,
//! and a message with `ce-` headers through nats-server (core NATS and JetStream,
//! with `Nats-Msg-Id` de-duplication) with the Python `nats-py` client.
//!
//! `scripts/test` starts both (`scripts/kafka.sh`, `scripts/nats.sh`) and sets
//! `KAFKA_BOOTSTRAP` and `NATS_URL`; without them these tests fail, they never skip.

use std::process::Command;
use std::time::Duration;

use cebus_e2e::{cloudevents_python, kafka_bootstrap, kcat, nats_url, run_tool, unique};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn kafka_carries_a_binary_mode_record_through_kcat() {
    let bootstrap = kafka_bootstrap();
    let topic = unique("cebus-smoke");
    let headers = [
        ("ce_specversion", "1.0"),
        ("ce_id", "smoke-1"),
        ("ce_source", "/tests/services"),
        ("ce_type", "dev.cebus.smoke"),
        ("ce_subject", "été €"),
        ("content-type", "application/json"),
    ];
    let payload = r#"{"hello": "kafka"}"#;

    // The topic is created by the broker on first use (scripts/kafka.sh enables
    // auto-creation for kcat, which cannot create topics).
    let mut produce = kcat();
    produce.args(["-b", &bootstrap, "-P", "-t", &topic, "-k", "user-7"]);
    for (name, value) in headers {
        produce.args(["-H", &format!("{name}={value}")]);
    }
    run_tool(&mut produce, payload.as_bytes(), WAIT);

    let out = run_tool(
        kcat().args([
            "-b",
            &bootstrap,
            "-C",
            "-t",
            &topic,
            "-o",
            "beginning",
            "-c",
            "1",
            "-e",
            "-J",
        ]),
        b"",
        WAIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let record: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("kcat -J printed no JSON record ({e}):\n{stdout}"));
    assert_eq!(record["topic"], json!(topic));
    assert_eq!(record["key"], json!("user-7"));
    assert_eq!(record["payload"], json!(payload));
    // kcat -J lists headers as a flat [name, value, name, value, ...] array.
    let got: Vec<&str> = record["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("no headers in {record}"))
        .iter()
        .map(|v| v.as_str().expect("header text"))
        .collect();
    let expected: Vec<&str> = headers.iter().flat_map(|(n, v)| [*n, *v]).collect();
    assert_eq!(got, expected, "headers come back in order, byte for byte");
}

/// Publishes one message with `ce-` headers on core NATS and through JetStream
/// (twice, with the same `Nats-Msg-Id`), and prints what came back as JSON.
const NATS_SCRIPT: &str = r#"
import asyncio, json, sys
import nats

async def main(url, subject, stream):
    headers = json.loads(sys.argv[4])
    payload = sys.argv[5].encode()
    nc = await nats.connect(url, connect_timeout=10)
    out = {}

    sub = await nc.subscribe(subject + ".core")
    await nc.publish(subject + ".core", payload, headers=headers)
    msg = await sub.next_msg(timeout=10)
    out["core"] = {"headers": dict(msg.headers or {}), "payload": msg.data.decode()}

    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[subject + ".js"])
    js_headers = dict(headers, **{"Nats-Msg-Id": "7:/orders42"})
    first = await js.publish(subject + ".js", payload, headers=js_headers)
    again = await js.publish(subject + ".js", payload, headers=js_headers)
    out["acks"] = [{"seq": a.seq, "duplicate": bool(a.duplicate)} for a in (first, again)]
    psub = await js.pull_subscribe(subject + ".js", durable="smoke")
    msgs = await psub.fetch(1, timeout=10)
    await msgs[0].ack()
    info = await js.stream_info(stream)
    out["js"] = {
        "headers": dict(msgs[0].headers or {}),
        "payload": msgs[0].data.decode(),
        "messages": info.state.messages,
    }
    await js.delete_stream(stream)
    await nc.drain()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
"#;

#[test]
fn nats_carries_ce_headers_and_jetstream_drops_duplicates() {
    let url = nats_url();
    let name = unique("cebus_smoke").replace('-', "_");
    let headers = json!({
        "ce-specversion": "1.0",
        "ce-id": "smoke-1",
        "ce-source": "/tests/services",
        "ce-type": "dev.cebus.smoke",
        "ce-subject": "Euro%20%E2%82%AC",
    });
    let payload = r#"{"hello": "nats"}"#;
    let out = run_tool(
        Command::new(cloudevents_python()).args([
            "-c",
            NATS_SCRIPT,
            &url,
            &name,
            &name.to_uppercase(),
            &headers.to_string(),
            payload,
        ]),
        b"",
        WAIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let got: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the nats-py script printed no JSON ({e}); is nats-py installed in \
             CEBUS_PYTHON? scripts/test installs it:\n{stdout}"
        )
    });

    assert_eq!(
        got["core"]["headers"], headers,
        "core NATS keeps the headers"
    );
    assert_eq!(got["core"]["payload"], json!(payload));

    let mut js_headers = headers.clone();
    js_headers["Nats-Msg-Id"] = json!("7:/orders42");
    assert_eq!(
        got["js"]["headers"], js_headers,
        "JetStream keeps the headers"
    );
    assert_eq!(got["js"]["payload"], json!(payload));
    assert_eq!(
        got["acks"],
        json!([{"seq": 1, "duplicate": false}, {"seq": 1, "duplicate": true}]),
        "the second publish with the same Nats-Msg-Id is acknowledged as a duplicate"
    );
    assert_eq!(got["js"]["messages"], json!(1), "the stream stored it once");
}
