//! End-to-end tests of the `NatsJetStreamBroker` against a real nats-server: the
//! core delivery scenarios (retries, dead letters, replies, filters), restarts of
//! cebus (SIGTERM and `kill -9` of the real binary), a nats-server outage (503,
//! then recovery), a nats-server restart with a backlog in its file store, and a
//! message published by another client (Python `nats-py`).
//!
//! `scripts/test` starts the shared nats-server (`scripts/nats.sh`) and sets
//! `NATS_URL`; the outage and restart tests run their own nats-server so they
//! never disturb the others. Without them these tests fail; they never skip.

use std::process::Command;
use std::time::{Duration, Instant};

use cebus_e2e::{
    Cebus, DownSink, PrivateNats, Proc, Reply, Sink, cloudevents_python, nats_url, nats_yaml,
    post_binary, post_many, post_until_accepted, received_ids, run_tool, tally, unique, wait_all,
    wait_for_id,
};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn retries_then_dead_letters_with_the_error_attributes() {
    let sub = Sink::start_with(Reply::status(500).body("boom")).await;
    let dls = Sink::start().await;
    let broker = unique("dls");
    let trigger = format!(
        "  delivery:\n    retry: 2\n    backoffPolicy: linear\n    backoffDelay: PT0.05S\n    \
         deadLetterSink:\n      uri: {}\n",
        dls.url()
    );
    let cebus = Cebus::start(&nats_yaml(
        &broker,
        &nats_url(),
        "  storage: memory\n",
        "",
        &[("t", &trigger, &sub.url())],
    ))
    .await;
    let url = cebus.broker_url("default", &broker);
    post_until_accepted(&url, "e-1", "order.created").await;

    let dead = dls.wait_for(1, WAIT).await;
    let e = dead[0].event();
    assert_eq!(e.id(), "e-1");
    assert_eq!(
        e.get_str("knativeerrordest").as_deref(),
        Some(sub.url().as_str())
    );
    assert_eq!(e.get_str("knativeerrorcode").as_deref(), Some("500"));
    assert_eq!(e.get_str("knativeerrordata").as_deref(), Some("Ym9vbQ=="));
    assert_eq!(sub.received().len(), 3, "retry 2 = 3 attempts");
    sub.expect_no_more_than(3, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn replies_re_enter_and_filters_route() {
    let orders = Sink::start_with(Reply::event(200, "reply-1", "order.done", "{}")).await;
    let done = Sink::start().await;
    let broker = unique("reply");
    let cebus = Cebus::start(&nats_yaml(
        &broker,
        &nats_url(),
        "",
        "",
        &[
            (
                "orders",
                "  filter:\n    attributes:\n      type: order.created\n",
                &orders.url(),
            ),
            (
                "done",
                "  filters:\n    - prefix:\n        type: order.do\n",
                &done.url(),
            ),
        ],
    ))
    .await;
    let url = cebus.broker_url("default", &broker);
    post_until_accepted(&url, "o-1", "order.created").await;
    let (status, _) = post_binary(&url, "x-1", "other.type", "{}").await;
    assert_eq!(status, 202);

    let got = done.wait_for(1, WAIT).await;
    let reply = got[0].event();
    assert_eq!(reply.id(), "reply-1");
    assert_eq!(reply.ty(), "order.done");
    assert!(
        reply.get("knativebrokerttl").is_none(),
        "the hop counter is internal"
    );
    orders
        .expect_no_more_than(1, Duration::from_millis(500))
        .await;
    assert_eq!(received_ids(&orders), ["o-1"]);
    done.expect_no_more_than(1, Duration::from_millis(300))
        .await;
}

async fn wait_ready(base: &str, broker: &str) {
    cebus_e2e::init();
    let url = format!("{base}/default/{broker}");
    post_until_accepted_retrying_connect(&url).await;
}

/// Like [`post_until_accepted`], tolerating a process that is not listening yet.
async fn post_until_accepted_retrying_connect(url: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let r = client
            .post(url)
            .header("ce-specversion", "1.0")
            .header("ce-id", "ready-probe")
            .header("ce-source", "/e2e/probe")
            .header("ce-type", "probe")
            .send()
            .await;
        if r.is_ok_and(|r| r.status().as_u16() == 202) {
            return;
        }
        assert!(Instant::now() < deadline, "cebus never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_subscriber_down_loses_nothing() {
    let broker = unique("restart");
    let dir = tempfile::tempdir().unwrap();
    // The subscriber is down (nothing listens on its port) while events arrive.
    let down = format!(
        "http://{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    );
    let trigger =
        "  delivery:\n    retry: 1000\n    backoffPolicy: linear\n    backoffDelay: PT0.2S\n";
    let write = |sub: &str| {
        std::fs::write(
            dir.path().join("config.yaml"),
            nats_yaml(&broker, &nats_url(), "", "", &[("t", trigger, sub)]),
        )
        .unwrap()
    };
    write(&down);
    let first = Proc::start(dir.path(), &["--drain-secs", "1"]);
    wait_ready(&first.base, &broker).await;
    let url = format!("{}/default/{broker}", first.base);
    post_many(&url, "r", 50, 4).await;
    first.signal("-TERM");
    first.wait(WAIT);

    let sink = Sink::start().await;
    write(&sink.url());
    let second = Proc::start(dir.path(), &[]);
    // JetStream redelivers what the first process held after ack_wait (10 s).
    let dups = wait_all(&sink, "r-", 50, WAIT).await;
    println!("restart after SIGTERM: 50 of 50 delivered, {dups} duplicates");
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_delivers_every_acknowledged_event() {
    const N: usize = 10_000;
    let broker = unique("crash");
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start_with(Reply::status(200).delay(Duration::from_millis(5))).await;
    std::fs::write(
        dir.path().join("config.yaml"),
        nats_yaml(&broker, &nats_url(), "", "", &[("t", "", &sink.url())]),
    )
    .unwrap();
    // Two deliveries at a time against a 5 ms subscriber: delivery lags far behind
    // ingress, so the kill lands mid-stream.
    let first = Proc::start(dir.path(), &["--max-in-flight", "2"]);
    wait_ready(&first.base, &broker).await;
    let url = format!("{}/default/{broker}", first.base);
    post_many(&url, "c", N, 16).await;
    first.signal("-KILL");
    first.wait(WAIT);
    let at_kill = tally(&sink, "c-").0;
    assert!(
        at_kill < N,
        "the kill came after every delivery ({at_kill})"
    );

    let second = Proc::start(dir.path(), &[]);
    let dups = wait_all(&sink, "c-", N, Duration::from_secs(180)).await;
    println!(
        "kill -9 after {at_kill} of {N} delivered; after restart {N} of {N} delivered, {dups} duplicates"
    );
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_down_means_503_and_recovery_after_restart() {
    let mut nats = PrivateNats::start();
    let sink = Sink::start().await;
    let broker = unique("outage");
    let cebus = Cebus::start(&nats_yaml(
        &broker,
        &nats.url(),
        "",
        "",
        &[("t", "", &sink.url())],
    ))
    .await;
    let url = cebus.broker_url("default", &broker);
    post_until_accepted(&url, "before", "t").await;
    wait_for_id(&sink, "before", WAIT).await;

    nats.kill();
    // The client notices the closed connection at once; allow it a moment.
    let deadline = Instant::now() + WAIT;
    let (status, body) = loop {
        let (status, body) = post_binary(&url, "during", "t", "{}").await;
        if status != 202 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 503, "{body}");
    let reason: serde_json::Value = serde_json::from_str(&body).expect("JSON reason");
    assert!(
        reason["error"].as_str().is_some_and(|e| e.contains("NATS")),
        "{body}"
    );

    nats.launch();
    post_until_accepted(&url, "after", "t").await;
    wait_for_id(&sink, "after", WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_restart_keeps_the_backlog_in_file_storage() {
    const N: usize = 500;
    let mut nats = PrivateNats::start();
    // The subscriber is down (connections refused) until after the restart.
    let down = DownSink::reserve();
    let broker = unique("backlog");
    let trigger =
        "  delivery:\n    retry: 1000\n    backoffPolicy: linear\n    backoffDelay: PT0.2S\n";
    let cebus = Cebus::start_with(
        &nats_yaml(
            &broker,
            &nats.url(),
            "  storage: file\n",
            "",
            &[("t", trigger, &down.url())],
        ),
        // A window smaller than the backlog: most events wait in the stream,
        // not in cebus.
        |opts| opts.limits.channel_capacity = 100,
    )
    .await;
    let url = cebus.broker_url("default", &broker);
    post_until_accepted(&url, "probe", "probe").await;
    post_many(&url, "b", N, 4).await;

    // Every event was answered 202, so JetStream stored it; a clean stop and a
    // start on the same port and store must keep them all.
    nats.terminate();
    nats.launch();
    let sink = down.up(Reply::status(200));
    let dups = wait_all(&sink, "b-", N, Duration::from_secs(180)).await;
    println!("nats-server restart: {N} of {N} delivered, {dups} duplicates");
    // Stop cebus while its nats-server is still up.
    cebus.server.shutdown(Duration::from_secs(10)).await;
    drop(cebus.dir);
    drop(nats);
}

/// Publishes one binary-mode CloudEvent with nats-py through JetStream.
const PUBLISH: &str = r#"
import asyncio, sys
import nats

async def main(url, subject):
    nc = await nats.connect(url, connect_timeout=10)
    js = nc.jetstream()
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "py-1",
        "ce-source": "/python/nats-py",
        "ce-type": "dev.cebus.interop",
        "ce-subject": "caf%C3%A9",
        "ce-datacontenttype": "application/json",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    ack = await js.publish(subject, b'{"from": "python"}', headers=headers)
    print(ack.seq)
    await nc.drain()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_by_nats_py_is_routed() {
    let sink = Sink::start().await;
    let other = Sink::start().await;
    let broker = unique("interop");
    let cebus = Cebus::start(&nats_yaml(
        &broker,
        &nats_url(),
        "",
        "",
        &[
            (
                "py",
                "  filter:\n    attributes:\n      type: dev.cebus.interop\n",
                &sink.url(),
            ),
            (
                "other",
                "  filter:\n    attributes:\n      type: nope\n",
                &other.url(),
            ),
        ],
    ))
    .await;
    // Ready (stream and consumer exist) once ingress accepts.
    post_until_accepted(&cebus.broker_url("default", &broker), "probe", "probe").await;

    let subject = format!("cebus.default.{broker}");
    let url = nats_url();
    tokio::task::spawn_blocking(move || {
        run_tool(
            Command::new(cloudevents_python()).args(["-c", PUBLISH, &url, &subject]),
            b"",
            WAIT,
        )
    })
    .await
    .unwrap();

    let got = sink.wait_for(1, WAIT).await;
    let e = got[0].event();
    assert_eq!(e.id(), "py-1");
    assert_eq!(e.source(), "/python/nats-py");
    assert_eq!(e.get_str("subject").as_deref(), Some("café"));
    assert_eq!(
        e.data().map(|d| d.as_ref()),
        Some(&b"{\"from\": \"python\"}"[..])
    );
    assert!(
        e.get("knativearrivaltime").is_some(),
        "stamped with the time JetStream stored it"
    );
    assert_eq!(
        got[0].header("traceparent"),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    other
        .expect_no_more_than(0, Duration::from_millis(300))
        .await;
}
