//! Broker ingress end to end: status codes, validation, modes, limits, hop
//! counter, arrival time, and that nothing the producer sent is altered.

use std::time::Duration;

use cebus_e2e::{Cebus, Reply, Sink, broker_yaml, post, post_binary};

const WAIT: Duration = Duration::from_secs(5);

async fn one_trigger(extra_broker: &str) -> (Cebus, Sink) {
    let sink = Sink::start().await;
    let cebus = Cebus::start(&broker_yaml(
        "default",
        extra_broker,
        &[("all", "", &sink.url())],
    ))
    .await;
    (cebus, sink)
}

#[tokio::test]
async fn binary_event_is_accepted_and_delivered_unchanged() {
    let (cebus, sink) = one_trigger("").await;
    let url = cebus.broker_url("default", "default");
    let time = "2020-01-01T00:00:00.000000001+01:00";
    let data = "{ \"id\" : 1 ,\n \"x\":[1,2] }";
    let (status, _) = post(
        &url,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "abc"),
            ("ce-source", "/src"),
            ("ce-type", "t.one"),
            ("ce-time", time),
            ("ce-subject", "caf%C3%A9"),
            ("ce-myext", "v"),
            ("content-type", "application/json; charset=utf-8"),
        ],
        data,
    )
    .await;
    assert_eq!(status, 202);
    let got = sink.wait_for(1, WAIT).await;
    let r = &got[0];
    assert_eq!(r.header("ce-specversion"), Some("1.0"));
    assert_eq!(r.header("ce-time"), Some(time), "time string byte for byte");
    assert_eq!(r.header("ce-myext"), Some("v"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(&r.body[..], data.as_bytes(), "data bytes unchanged");
    let e = r.event();
    assert_eq!(e.get_str("subject").as_deref(), Some("café"));
    assert!(
        e.get("knativearrivaltime").is_some(),
        "ingress adds knativearrivaltime"
    );
    assert!(
        e.get("knativebrokerttl").is_none(),
        "the hop counter is never delivered"
    );
}

#[tokio::test]
async fn structured_and_v03_events_keep_their_specversion_and_data() {
    let (cebus, sink) = one_trigger("").await;
    let url = cebus.broker_url("default", "default");
    let body = r#"{"specversion":"0.3","id":"s1","source":"/s","type":"t","time":"2021-06-01T10:00:00Z","schemaurl":"http://x/s","datacontenttype":"application/json","data":{"k":  [1, 2]},"count":5}"#;
    let (status, _) = post(
        &url,
        &[("content-type", "application/cloudevents+json")],
        body,
    )
    .await;
    assert_eq!(status, 202);
    let r = &sink.wait_for(1, WAIT).await[0];
    assert_eq!(r.header("ce-specversion"), Some("0.3"));
    assert_eq!(r.header("ce-schemaurl"), Some("http://x/s"));
    assert_eq!(r.header("ce-time"), Some("2021-06-01T10:00:00Z"));
    assert_eq!(r.header("ce-count"), Some("5"));
    assert_eq!(
        &r.body[..],
        br#"{"k":  [1, 2]}"#,
        "raw JSON data kept byte for byte"
    );
}

#[tokio::test]
async fn batch_is_accepted_whole_or_rejected_whole() {
    let (cebus, sink) = one_trigger("").await;
    let url = cebus.broker_url("default", "default");
    let ok = r#"[{"specversion":"1.0","id":"b1","source":"/s","type":"t"},{"specversion":"1.0","id":"b2","source":"/s","type":"t","data":"x","datacontenttype":"text/plain"}]"#;
    let (status, _) = post(
        &url,
        &[("content-type", "application/cloudevents-batch+json")],
        ok,
    )
    .await;
    assert_eq!(status, 202);
    let got = sink.wait_for(2, WAIT).await;
    let mut ids: Vec<String> = got.iter().map(|r| r.event().id().into_owned()).collect();
    ids.sort();
    assert_eq!(ids, ["b1", "b2"]);

    let bad = r#"[{"specversion":"1.0","id":"c1","source":"/s","type":"t"},{"specversion":"1.0","id":"c2","source":"/s"}]"#;
    let (status, body) = post(
        &url,
        &[("content-type", "application/cloudevents-batch+json")],
        bad,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["index"], 1, "the error names the bad element: {body}");
    assert_eq!(v["attribute"], "type", "{body}");
    // A stored element of the rejected batch would be in flight until delivered.
    cebus.wait_settled("default", "default", WAIT).await;
    assert_eq!(sink.received().len(), 2, "nothing of the rejected batch");
}

#[tokio::test]
async fn invalid_events_get_400_naming_the_problem() {
    let (cebus, sink) = one_trigger("").await;
    let url = cebus.broker_url("default", "default");
    let base = [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "/s"),
        ("ce-type", "t"),
    ];
    let with = |extra: (&'static str, &'static str)| {
        let mut h: Vec<(&str, &str)> = base.to_vec();
        h.retain(|(k, _)| *k != extra.0);
        h.push(extra);
        h
    };
    // (headers, what is wrong, the attribute the error must name)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (with(("ce-id", "")), "empty id", Some("id")),
        (
            with(("ce-time", "2020-13-01T00:00:00Z")),
            "bad time",
            Some("time"),
        ),
        (
            with(("ce-bad_name", "x")),
            "bad extension name",
            Some("bad_name"),
        ),
        (with(("ce-specversion", "2.0")), "unknown specversion", None),
        (
            vec![("content-type", "application/json")],
            "not a CloudEvent",
            None,
        ),
        (
            base.iter()
                .copied()
                .filter(|(k, _)| *k != "ce-source")
                .collect(),
            "missing source",
            Some("source"),
        ),
    ];
    for (headers, what, attribute) in cases {
        let (status, body) = post(&url, &headers, "{}").await;
        assert_eq!(status, 400, "{what}: {body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: JSON body: {body}"));
        assert!(
            v["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        if let Some(a) = attribute {
            assert_eq!(v["attribute"], a, "{what}: {body}");
        }
    }
    let (status, body) = post(
        &url,
        &[("content-type", "application/cloudevents+json")],
        "{not json",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // A stored invalid event would be in flight until delivered.
    cebus.wait_settled("default", "default", WAIT).await;
    assert!(sink.received().is_empty(), "{:?}", sink.received());
}

#[tokio::test]
async fn routes_methods_and_health() {
    let (cebus, _sink) = one_trigger("").await;
    let url = cebus.broker_url("default", "default");
    let client = reqwest::Client::new();

    let (status, body) = post_binary(&cebus.broker_url("default", "nope"), "1", "t", "{}").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("default/nope"), "{body}");

    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let r = client.request(method.clone(), &url).send().await.unwrap();
        assert_eq!(r.status(), 405, "{method}");
        assert_eq!(r.headers()["allow"], "POST, OPTIONS");
    }
    let r = client
        .request(reqwest::Method::OPTIONS, &url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["allow"], "POST, OPTIONS");

    for path in ["healthz", "readyz"] {
        let r = client
            .get(format!("{}/{path}", cebus.base()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn bodies_above_the_limit_get_413() {
    let sink = Sink::start().await;
    let yaml = broker_yaml(
        "default",
        "  annotations:\n    cebus.dev/max-event-size: \"1000\"\n",
        &[("all", "", &sink.url())],
    );
    let cebus = Cebus::start(&yaml).await;
    let url = cebus.broker_url("default", "default");
    let (status, _) = post_binary(&url, "small", "t", &"x".repeat(900)).await;
    assert_eq!(status, 202);
    let (status, body) = post_binary(&url, "big", "t", &"x".repeat(1001)).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("1000"), "says the limit: {body}");
    // The global flag applies to brokers without the annotation.
    let cebus2 = Cebus::start_with(
        &broker_yaml("default", "", &[("all", "", &sink.url())]),
        |o| o.max_event_size = 2000,
    )
    .await;
    let (status, _) = post_binary(
        &cebus2.broker_url("default", "default"),
        "b2",
        "t",
        &"x".repeat(2500),
    )
    .await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn full_channel_answers_503_with_retry_after_and_loses_nothing() {
    // The subscriber holds each answer far longer than the six posts take, even
    // on a loaded machine: the two accepted events keep the channel full, so
    // exactly two are accepted (an 800 ms hold let a delivery finish and free a
    // place between slow posts). The sink records each request on arrival.
    let sink = Sink::start_with(Reply::status(200).delay(Duration::from_secs(30))).await;
    let cebus = Cebus::start_with(
        &broker_yaml("default", "", &[("slow", "", &sink.url())]),
        |o| {
            o.limits.channel_capacity = 2;
        },
    )
    .await;
    let url = cebus.broker_url("default", "default");
    let mut accepted = 0;
    let mut saw_503 = false;
    for i in 0..6 {
        let r = reqwest::Client::new()
            .post(&url)
            .header("ce-specversion", "1.0")
            .header("ce-id", i.to_string())
            .header("ce-source", "/s")
            .header("ce-type", "t")
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            202 => accepted += 1,
            503 => {
                saw_503 = true;
                let ra: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(ra >= 1);
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(saw_503, "a full channel must push back");
    assert_eq!(accepted, 2);
    // Every accepted event is still delivered.
    let got = sink.wait_for(accepted, WAIT).await;
    assert_eq!(got.len(), accepted);
}

#[tokio::test]
async fn hop_counter_is_set_decremented_and_enforced() {
    let sink = Sink::start().await;
    let yaml = broker_yaml(
        "default",
        "  annotations:\n    cebus.dev/broker-ttl: \"3\"\n",
        &[("all", "", &sink.url())],
    );
    let cebus = Cebus::start(&yaml).await;
    let url = cebus.broker_url("default", "default");
    let h = |ttl: &'static str| {
        vec![
            ("ce-specversion", "1.0"),
            ("ce-id", "ttl"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("ce-knativebrokerttl", ttl),
        ]
    };
    let (status, body) = post(&url, &h("1"), "").await;
    assert_eq!(status, 400, "ttl 1 is exhausted after this hop: {body}");
    assert!(body.contains("knativebrokerttl"), "{body}");
    let (status, _) = post(&url, &h("abc"), "").await;
    assert_eq!(status, 400);
    let (status, _) = post(&url, &h("2"), "").await;
    assert_eq!(status, 202);
    sink.wait_for(1, WAIT).await;
    assert!(cebus.metrics().await.contains("TtlExhausted\"} 2"));
}

/// Sends `GET /healthz` on `conn`.
async fn ask_healthz(conn: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: cebus\r\n\r\n")
        .await
        .unwrap();
}

/// The start of the next answer on `conn`.
async fn read_answer(conn: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 512];
    let n = conn.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let cebus = Cebus::start_with(&broker_yaml("default", "", &[]), |o| {
        o.max_connections = 1;
    })
    .await;
    let addr = cebus.server.local_addr();
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    ask_healthz(&mut first).await;
    let answer = read_answer(&mut first).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The kernel completes the handshake, but cebus does not take the
    // connection while the first one is open.
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    ask_healthz(&mut second).await;
    // No event says "not accepted": watch the connection for a while.
    let waiting = tokio::time::timeout(Duration::from_millis(500), read_answer(&mut second)).await;
    assert!(
        waiting.is_err(),
        "a connection over the limit was served: {waiting:?}"
    );

    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(10), read_answer(&mut second))
        .await
        .expect("the waiting connection was not served after the first closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn without_ingress_threads_the_callers_runtime_serves_and_delivers() {
    let sink = Sink::start().await;
    let yaml = broker_yaml("default", "", &[("all", "", &sink.url())]);
    let cebus = Cebus::start_with(&yaml, |o| o.ingress_threads = 0).await;
    let url = cebus.broker_url("default", "default");
    for i in 0..3 {
        let (status, body) = post_binary(&url, &format!("e{i}"), "t", "{}").await;
        assert_eq!(status, 202, "{body}");
    }
    let got = sink.wait_for(3, WAIT).await;
    let mut ids: Vec<String> = got.iter().map(|r| r.event().id().into_owned()).collect();
    ids.sort();
    assert_eq!(ids, ["e0", "e1", "e2"]);
    assert!(cebus.server.shutdown(WAIT).await, "drained");
}

#[tokio::test]
async fn shutdown_waits_for_deliveries_running_on_the_ingress_threads() {
    // The delivery runs on the ingress thread that took the event in; it
    // must finish before shutdown returns, and the thread outlive it.
    let sink = Sink::start_with(Reply::status(200).delay(Duration::from_millis(500))).await;
    let yaml = broker_yaml("default", "", &[("all", "", &sink.url())]);
    let cebus = Cebus::start_with(&yaml, |o| o.ingress_threads = 2).await;
    let (status, body) =
        post_binary(&cebus.broker_url("default", "default"), "slow", "t", "{}").await;
    assert_eq!(status, 202, "{body}");
    assert!(cebus.server.shutdown(WAIT).await, "drained");
    let got = sink.received();
    assert_eq!(got.len(), 1, "delivered before shutdown returned");
    assert_eq!(got[0].event().id(), "slow");
}
