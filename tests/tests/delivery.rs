//! Delivery end to end: retries and which answers are retried, backoff,
//! Retry-After, timeouts, dead-letter sink, replies, content mode and headers,
//! and trigger-over-broker delivery settings.

use std::time::Duration;

use base64::Engine;
use cebus_e2e::{Cebus, Reply, Sink, broker_yaml, post, post_binary};

const WAIT: Duration = Duration::from_secs(10);

fn delivery(spec: &str) -> String {
    // `spec` is flow-style YAML for the trigger's `delivery`.
    format!("  delivery: {spec}\n")
}

fn gaps(got: &[cebus_e2e::Received]) -> Vec<Duration> {
    got.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test]
async fn gives_up_after_retry_plus_one_attempts_and_dead_letters() {
    let body: Vec<u8> = (0..3000u32).map(|i| (i % 256) as u8).collect();
    let sub = Sink::start_with(Reply::status(500).body(body.clone())).await;
    let dls = Sink::start().await;
    let spec = delivery(&format!(
        "{{retry: 2, backoffPolicy: linear, backoffDelay: PT0.05S, deadLetterSink: {{uri: \"{}\"}}}}",
        dls.url()
    ));
    let cebus = Cebus::start(&broker_yaml("default", "", &[("t", &spec, &sub.url())])).await;
    let (status, _) = post(
        &cebus.broker_url("default", "default"),
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "e1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("ce-time", "2020-01-01T00:00:00Z"),
            ("content-type", "application/octet-stream"),
        ],
        vec![0u8, 159, 146, 150],
    )
    .await;
    assert_eq!(status, 202);
    let dead = &dls.wait_for(1, WAIT).await[0];
    assert_eq!(sub.received().len(), 3, "retry 2 means 3 attempts");
    let e = dead.event();
    assert_eq!(e.id(), "e1");
    assert_eq!(e.get_str("time").as_deref(), Some("2020-01-01T00:00:00Z"));
    assert_eq!(
        e.data().map(|d| &d[..]),
        Some(&[0u8, 159, 146, 150][..]),
        "original data"
    );
    assert_eq!(
        e.get_str("knativeerrordest").as_deref(),
        Some(sub.url().as_str())
    );
    assert_eq!(e.get_str("knativeerrorcode").as_deref(), Some("500"));
    let data = e.get_str("knativeerrordata").expect("knativeerrordata");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .unwrap();
    assert_eq!(
        decoded,
        body[..1024],
        "first 1024 bytes of the response body"
    );
    // With nothing in flight the event is done for good: a second dead letter
    // or a fourth attempt would have come by now.
    cebus.wait_settled("default", "default", WAIT).await;
    assert_eq!(dls.received().len(), 1);
    assert_eq!(sub.received().len(), 3);
    assert!(
        cebus
            .metrics()
            .await
            .contains("trigger=\"t\",outcome=\"DeadLettered\"} 1")
    );
}

#[tokio::test]
async fn retryable_and_terminal_answers() {
    // Each status is answered once, then the subscriber succeeds.
    let retryable = [500, 502, 503, 404, 408, 409, 429];
    let terminal = [301, 302, 400, 401, 403, 413, 422];
    for (status, retried) in retryable
        .iter()
        .map(|s| (*s, true))
        .chain(terminal.iter().map(|s| (*s, false)))
    {
        let sub = Sink::start().await;
        sub.script([Reply::status(status).header("location", "http://127.0.0.1:1/")]);
        let dls = Sink::start().await;
        let spec = delivery(&format!(
            "{{retry: 1, backoffDelay: PT0.01S, deadLetterSink: {{uri: \"{}\"}}}}",
            dls.url()
        ));
        let cebus = Cebus::start(&broker_yaml("default", "", &[("t", &spec, &sub.url())])).await;
        assert_eq!(
            post_binary(&cebus.broker_url("default", "default"), "x", "t", "{}")
                .await
                .0,
            202
        );
        if retried {
            sub.wait_for(2, WAIT).await;
            // Done once nothing is in flight: a dead letter would have come by now.
            cebus.wait_settled("default", "default", WAIT).await;
            assert!(
                dls.received().is_empty(),
                "{status} was retried, not dead-lettered"
            );
        } else {
            let dead = &dls.wait_for(1, WAIT).await[0];
            assert_eq!(
                dead.event().get_str("knativeerrorcode").as_deref(),
                Some(status.to_string().as_str())
            );
            assert_eq!(sub.received().len(), 1, "{status} is terminal: no retry");
        }
    }
}

#[tokio::test]
async fn exponential_and_linear_backoff_spacing() {
    for (policy, want_ms) in [
        ("exponential", [100u64, 200, 400]),
        ("linear", [100, 200, 300]),
    ] {
        let sub = Sink::start_with(Reply::status(503)).await;
        let spec = delivery(&format!(
            "{{retry: 3, backoffPolicy: {policy}, backoffDelay: PT0.1S}}"
        ));
        let cebus = Cebus::start(&broker_yaml("default", "", &[("t", &spec, &sub.url())])).await;
        post_binary(&cebus.broker_url("default", "default"), "x", "t", "{}").await;
        let got = sub.wait_for(4, WAIT).await;
        for (gap, want) in gaps(&got).into_iter().zip(want_ms) {
            // Lower bounds only: the wait may be longer on a busy machine, never shorter.
            assert!(
                gap >= Duration::from_millis(want * 9 / 10),
                "{policy}: gap {gap:?} < {want}ms"
            );
        }
        // Given up after the fourth attempt once nothing is in flight.
        cebus.wait_settled("default", "default", WAIT).await;
        assert_eq!(sub.received().len(), 4, "{policy}: retry 3 = 4 attempts");
    }
}

/// The wait between a first attempt answered `first` and the second attempt,
/// for a trigger with `spec` as its delivery.
async fn wait_after(first: Reply, spec: &str) -> Duration {
    let sub = Sink::start().await;
    sub.script([first]);
    let cebus = Cebus::start(&broker_yaml(
        "default",
        "",
        &[("t", &delivery(spec), &sub.url())],
    ))
    .await;
    post_binary(&cebus.broker_url("default", "default"), "x", "t", "{}").await;
    gaps(&sub.wait_for(2, WAIT).await)[0]
}

#[tokio::test]
async fn retry_after_is_honoured_on_429_and_503_and_capped() {
    let waited = wait_after(
        Reply::status(429).header("retry-after", "1"),
        "{retry: 1, backoffDelay: PT0.01S}",
    )
    .await;
    assert!(
        waited >= Duration::from_millis(900),
        "429: waited {waited:?}"
    );

    let waited = wait_after(
        Reply::status(503).header("retry-after", "30"),
        "{retry: 1, backoffDelay: PT0.01S, retryAfterMax: PT0.3S}",
    )
    .await;
    assert!(
        waited >= Duration::from_millis(270),
        "capped: waited {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(29),
        "capped by retryAfterMax: waited {waited:?}"
    );

    // Not honoured on 500: the next attempt follows the backoff, long before 30 s.
    let waited = wait_after(
        Reply::status(500).header("retry-after", "30"),
        "{retry: 1, backoffDelay: PT0.01S}",
    )
    .await;
    assert!(waited < Duration::from_secs(29), "500: waited {waited:?}");
}

#[tokio::test]
async fn timeout_is_per_attempt_and_dead_letters_without_a_code() {
    let sub = Sink::start_with(Reply::status(200).delay(Duration::from_secs(3))).await;
    let dls = Sink::start().await;
    let spec = delivery(&format!(
        "{{retry: 1, backoffDelay: PT0.01S, timeout: PT0.2S, deadLetterSink: {{uri: \"{}\"}}}}",
        dls.url()
    ));
    let cebus = Cebus::start(&broker_yaml("default", "", &[("t", &spec, &sub.url())])).await;
    post_binary(&cebus.broker_url("default", "default"), "x", "t", "{}").await;
    // Two attempts of 0.2 s each, then the dead-letter sink, long before the
    // subscriber's 3 s answer.
    let dead = &dls.wait_for(1, Duration::from_millis(2500)).await[0];
    assert_eq!(sub.received().len(), 2);
    let e = dead.event();
    assert!(e.get("knativeerrorcode").is_none(), "no response, no code");
    assert!(e.get("knativeerrordata").is_none());
    assert_eq!(
        e.get_str("knativeerrordest").as_deref(),
        Some(sub.url().as_str())
    );
}

#[tokio::test]
async fn no_dead_letter_sink_means_a_counted_drop() {
    let sub = Sink::start_with(Reply::status(400)).await;
    let cebus = Cebus::start(&broker_yaml(
        "default",
        "",
        &[("t", &delivery("{retry: 0}"), &sub.url())],
    ))
    .await;
    post_binary(&cebus.broker_url("default", "default"), "x", "t", "{}").await;
    sub.wait_for(1, WAIT).await;
    let dropped = cebus
        .wait_metric(&["trigger=\"t\"", "outcome=\"DroppedNoDls\""], 1, WAIT)
        .await;
    assert_eq!(dropped, 1, "drop counted once");
}

#[tokio::test]
async fn replies_re_enter_the_broker_and_202_is_never_a_reply() {
    let replier = Sink::start_with(Reply::event(
        200,
        "r1",
        "com.example.reply",
        "{\"ok\":true}",
    ))
    .await;
    let acceptor = Sink::start_with(Reply::event(202, "r2", "com.example.reply", "{}")).await;
    let replies = Sink::start().await;
    let f = |ty: &str| format!("  filter:\n    attributes:\n      type: {ty}\n");
    let yaml = broker_yaml(
        "default",
        "",
        &[
            ("replier", &f("com.example.request"), &replier.url()),
            ("acceptor", &f("com.example.other"), &acceptor.url()),
            ("replies", &f("com.example.reply"), &replies.url()),
        ],
    );
    let cebus = Cebus::start(&yaml).await;
    let url = cebus.broker_url("default", "default");
    post_binary(&url, "q1", "com.example.request", "{}").await;
    let got = replies.wait_for(1, WAIT).await;
    let e = got[0].event();
    assert_eq!(e.id(), "r1");
    assert_eq!(&got[0].body[..], b"{\"ok\":true}");
    assert!(e.get("knativearrivaltime").is_some());
    assert!(e.get("knativebrokerttl").is_none());

    post_binary(&url, "q2", "com.example.other", "{}").await;
    acceptor.wait_for(1, WAIT).await;
    // A reply re-enters the broker before its event is acknowledged, so with
    // nothing in flight a reply to q2 would have been delivered by now.
    cebus.wait_settled("default", "default", WAIT).await;
    assert_eq!(replies.received().len(), 1, "202 is never a reply");
}

#[tokio::test]
async fn reply_loops_end_when_the_hop_budget_is_spent() {
    // A subscriber that answers every event with an event its own trigger matches.
    let looper = Sink::start_with(Reply::event(200, "again", "loop", "{}")).await;
    let yaml = broker_yaml(
        "default",
        "  annotations:\n    cebus.dev/broker-ttl: \"5\"\n",
        &[(
            "looper",
            "  filter:\n    attributes:\n      type: loop\n",
            &looper.url(),
        )],
    );
    let cebus = Cebus::start(&yaml).await;
    post_binary(
        &cebus.broker_url("default", "default"),
        "start",
        "loop",
        "{}",
    )
    .await;
    // Hops with budget 5, 4, 3, 2, 1 are delivered; the reply to the last is dropped.
    looper.wait_for(5, WAIT).await;
    // Each reply re-enters before its event is acknowledged: with nothing in
    // flight the loop has ended.
    cebus.wait_settled("default", "default", WAIT).await;
    assert_eq!(looper.received().len(), 5, "the sixth hop is dropped");
}

#[tokio::test]
async fn a_body_that_is_not_a_cloudevent_fails_the_attempt_unless_opted_out() {
    let sub = Sink::start_with(
        Reply::status(200)
            .header("content-type", "text/plain")
            .body("hello"),
    )
    .await;
    let dls = Sink::start().await;
    let spec = delivery(&format!(
        "{{retry: 1, backoffDelay: PT0.01S, deadLetterSink: {{uri: \"{}\"}}}}",
        dls.url()
    ));
    let cebus = Cebus::start(&broker_yaml("default", "", &[("t", &spec, &sub.url())])).await;
    post_binary(&cebus.broker_url("default", "default"), "x", "t", "{}").await;
    let dead = &dls.wait_for(1, WAIT).await[0];
    assert_eq!(
        sub.received().len(),
        2,
        "the invalid reply failed both attempts"
    );
    let e = dead.event();
    assert_eq!(e.get_str("knativeerrorcode").as_deref(), Some("200"));
    assert_eq!(e.get_str("knativeerrordata").as_deref(), Some("aGVsbG8="));

    // The same subscriber behind a trigger that opts out is simply done.
    let sub = Sink::start_with(
        Reply::status(200)
            .header("content-type", "text/plain")
            .body("hello"),
    )
    .await;
    let yaml = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: default\n---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\n  annotations:\n    cebus.dev/ignore-invalid-reply: \"true\"\nspec:\n  broker: default\n  subscriber:\n    uri: {}\n  delivery: {{retry: 3, backoffDelay: PT0.01S}}\n",
        sub.url()
    );
    let cebus = Cebus::start(&yaml).await;
    post_binary(&cebus.broker_url("default", "default"), "x", "t", "{}").await;
    sub.wait_for(1, WAIT).await;
    cebus.wait_settled("default", "default", WAIT).await;
    assert_eq!(
        sub.received().len(),
        1,
        "the opted-out trigger does not retry"
    );
}

#[tokio::test]
async fn json_format_and_forwarded_headers() {
    let sub = Sink::start().await;
    let bin = Sink::start().await;
    let yaml = broker_yaml(
        "default",
        "",
        &[
            ("json", &delivery("{format: json}"), &sub.url()),
            ("bin", "", &bin.url()),
        ],
    );
    let cebus = Cebus::start(&yaml).await;
    let (status, _) = post(
        &cebus.broker_url("default", "default"),
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "h1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("content-type", "application/json"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("x-request-id", "req-7"),
            ("knative-custom", "kv"),
            ("x-not-forwarded", "no"),
        ],
        "{\"a\":1}",
    )
    .await;
    assert_eq!(status, 202);
    let r = &sub.wait_for(1, WAIT).await[0];
    assert_eq!(
        r.header("content-type"),
        Some("application/cloudevents+json")
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["id"], "h1");
    assert_eq!(v["data"]["a"], 1);
    assert!(
        r.header("ce-id").is_none(),
        "structured mode has no ce- headers"
    );
    for r in [r, &bin.wait_for(1, WAIT).await[0]] {
        assert_eq!(r.header("prefer"), Some("reply"));
        assert_eq!(r.header("kn-namespace"), Some("default"));
        assert_eq!(
            r.header("traceparent"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(r.header("tracestate"), Some("congo=t61rcWkgMzE"));
        assert_eq!(r.header("x-request-id"), Some("req-7"));
        assert_eq!(r.header("knative-custom"), Some("kv"));
        assert!(r.header("x-not-forwarded").is_none());
    }
    assert_eq!(bin.received()[0].header("ce-id"), Some("h1"));
}

#[tokio::test]
async fn trigger_delivery_fields_win_and_the_broker_fills_gaps() {
    let sub = Sink::start_with(Reply::status(500)).await;
    let dls = Sink::start().await;
    let broker_delivery = format!(
        "spec:\n  delivery:\n    retry: 5\n    backoffDelay: PT0.01S\n    deadLetterSink:\n      uri: {}\n",
        dls.url()
    );
    let cebus = Cebus::start(&broker_yaml(
        "default",
        &broker_delivery,
        &[("t", &delivery("{retry: 1}"), &sub.url())],
    ))
    .await;
    post_binary(&cebus.broker_url("default", "default"), "x", "t", "{}").await;
    dls.wait_for(1, WAIT).await;
    assert_eq!(
        sub.received().len(),
        2,
        "the trigger's retry: 1 wins over the broker's 5"
    );
}

#[tokio::test]
async fn ref_to_a_broker_delivers_through_its_ingress() {
    let sub = Sink::start().await;
    let yaml = format!(
        "{}\n---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: forward\nspec:\n  broker: front\n  subscriber:\n    ref:\n      apiVersion: eventing.knative.dev/v1\n      kind: Broker\n      name: back\n",
        broker_yaml("back", "", &[("final", "", &sub.url())])
            + "\n---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: front\n"
    );
    let cebus = Cebus::start(&yaml).await;
    post_binary(&cebus.broker_url("default", "front"), "fw", "t", "{}").await;
    let got = sub.wait_for(1, WAIT).await;
    assert_eq!(got[0].event().id(), "fw");
}

#[tokio::test]
async fn deliveries_reuse_pooled_keep_alive_connections() {
    let sub = Sink::start().await;
    let cebus = Cebus::start(&broker_yaml("default", "", &[("t", "", &sub.url())])).await;
    let url = cebus.broker_url("default", "default");
    // One producer connection, so one ingress thread (and its pool shard)
    // takes every event in.
    let producer = reqwest::Client::new();
    for i in 0..5 {
        let resp = producer
            .post(&url)
            .header("ce-specversion", "1.0")
            .header("ce-id", i.to_string())
            .header("ce-source", "/e2e")
            .header("ce-type", "t")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        sub.wait_for(i + 1, WAIT).await;
    }
    let peers: std::collections::BTreeSet<_> = sub.received().iter().map(|r| r.peer).collect();
    assert_eq!(
        peers.len(),
        1,
        "one connection for sequential deliveries: {peers:?}"
    );
}
