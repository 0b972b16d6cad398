//! End-to-end tests only the `NatsJetStreamBroker` has, against a real
//! nats-server: a SIGTERM of cebus while the subscriber is down, a nats-server
//! restart with a backlog in its file store, and a message published by another
//! client (Python `nats-py`). The scenarios every backend runs (retries,
//! replies, restarts of cebus, an outage) are in `backends.rs`.
//!
//! `scripts/test` starts the shared nats-server (`scripts/nats.sh`) and sets
//! `NATS_URL`; the restart test runs its own nats-server so it never disturbs
//! the others. Without them these tests fail; they never skip.

use std::process::Command;
use std::time::Duration;

use cebus_e2e::{
    Cebus, DownSink, PrivateNats, Proc, Reply, Sink, Trigger, cloudevents_python, nats_url,
    nats_yaml, post_many, post_until_accepted, run_tool, unique, wait_all, wait_ready,
};

const WAIT: Duration = Duration::from_secs(60);

/// The subscriber's retries while it is down: far more than the test lasts.
const RETRY_FOR_EVER: &str =
    "  delivery:\n    retry: 1000\n    backoffPolicy: linear\n    backoffDelay: PT0.2S\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_subscriber_down_loses_nothing() {
    const N: usize = 50;
    // The window (`--channel-capacity`, JetStream's `max_ack_pending`): smaller
    // than the backlog, so the first process holds some events and the rest
    // wait in the stream.
    const WINDOW: usize = 20;
    let broker = unique("restart");
    let dir = tempfile::tempdir().unwrap();
    // The subscriber is down (nothing listens on its port) while events arrive.
    let down = DownSink::reserve();
    let write = |sub: &str| {
        std::fs::write(
            dir.path().join("config.yaml"),
            nats_yaml(
                &broker,
                &nats_url(),
                "",
                &[Trigger::new("t", RETRY_FOR_EVER, sub)],
            ),
        )
        .unwrap()
    };
    write(&down.url());
    let window = WINDOW.to_string();
    let first = Proc::start(
        dir.path(),
        &["--drain-secs", "1", "--channel-capacity", &window],
    );
    let url = format!("{}/default/{broker}", first.base);
    wait_ready(&url).await;
    post_many(&url, "r", N, 4).await;
    first.signal("-TERM");
    // The drain gives up on the deliveries to the down subscriber after a
    // second; how the process exits is not this test's point.
    let _ = first.wait_status(WAIT);

    let sink = Sink::start().await;
    write(&sink.url());
    let second = Proc::start(dir.path(), &[]);
    // JetStream redelivers what the first process held after ack_wait (10 s).
    let dups = wait_all(&sink, "r-", N, WAIT).await;
    println!("restart after SIGTERM: {N} of {N} delivered, {dups} duplicates");
    // The first process reached no subscriber, so every request the sink got
    // came from the second. JetStream hands a message out again only when it
    // had no ack for it: the messages the first process held, at most the
    // window. (The expected count is 0: the second process acknowledges each
    // delivery long before ack_wait.)
    assert!(
        dups <= WINDOW,
        "{dups} duplicates: more than the window ({WINDOW}) the first process held"
    );
    drop(second);
    drop(down);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_restart_keeps_the_backlog_in_file_storage() {
    const N: usize = 500;
    // A window smaller than the backlog: most events wait in the stream, not in
    // cebus.
    const WINDOW: usize = 100;
    let mut nats = tokio::task::spawn_blocking(PrivateNats::start)
        .await
        .unwrap();
    // The subscriber is down (connections refused) until after the restart.
    let down = DownSink::reserve();
    let broker = unique("backlog");
    let cebus = Cebus::start_with(
        &nats_yaml(
            &broker,
            &nats.url(),
            "  storage: file\n",
            &[Trigger::new("t", RETRY_FOR_EVER, &down.url())],
        ),
        |opts| opts.limits.channel_capacity = WINDOW,
    )
    .await;
    let url = cebus.broker_url("default", &broker);
    post_until_accepted(&url, "probe", "probe").await;
    post_many(&url, "b", N, 4).await;

    // Every event was answered 202, so JetStream stored it; a clean stop and a
    // start on the same port and store must keep them all.
    let nats = tokio::task::spawn_blocking(move || {
        nats.terminate();
        nats.launch();
        nats
    })
    .await
    .unwrap();
    let sink = down.up(Reply::status(200));
    let dups = wait_all(&sink, "b-", N, Duration::from_secs(180)).await;
    println!("nats-server restart: {N} of {N} delivered, {dups} duplicates");
    // Only the messages cebus held across the restart (handed out, not yet
    // acknowledged: at most the window) can reach the subscriber twice: cebus'
    // own retry delivers one, and JetStream hands it out again after ack_wait
    // when the in-progress acks or the ack were lost with the connection. The
    // backlog in the stream was never handed out, so it comes once.
    assert!(
        dups <= WINDOW,
        "{dups} duplicates: more than the window ({WINDOW}) cebus held"
    );
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
        &[
            Trigger::new(
                "py",
                "  filter:\n    attributes:\n      type: dev.cebus.interop\n",
                &sink.url(),
            ),
            Trigger::new(
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
    // py-1 is acknowledged only once every trigger it matched is done with it:
    // with nothing in flight, a delivery to `other` would have been made.
    cebus.wait_settled("default", &broker, WAIT).await;
    assert!(other.received().is_empty(), "{:?}", other.received());
}
