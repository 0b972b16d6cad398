//! The scenarios every channel backend must pass, written once and run per
//! backend ([`per_backend!`]: `scenario::memory`, `scenario::kafka`,
//! `scenario::nats`): retries and dead letters, replies and filters on all
//! three; on the durable ones (Kafka, NATS JetStream) a `kill -9` and a SIGTERM
//! of the real binary mid-stream, with the number of duplicates bounded by the
//! in-flight window, and an outage of the server (503, then recovery).
//!
//! What only one backend has stays in its own suite (`kafka.rs`: ordering,
//! kcat interop, SIGTERM with Kafka gone; `nats.rs`: the file store across a
//! nats-server restart, nats-py interop). `scripts/test` starts the shared
//! Kafka and nats-server and sets `KAFKA_BOOTSTRAP` and `NATS_URL`; the outage
//! tests start servers of their own. Without them these tests fail; they never
//! skip.

use std::time::{Duration, Instant};

use cebus_e2e::{
    Backend, Cebus, PrivateServer, Proc, Reply, Sink, Trigger, per_backend, post_binary, post_many,
    post_until_accepted, received_ids, tally, unique, wait_all, wait_for_id, wait_ready,
};

/// How long the restarted process may take to deliver everything (a durable
/// backend redelivers what the first one held after JetStream's `ack_wait` or a
/// Kafka group rebalance).
const CATCH_UP: Duration = Duration::from_secs(180);

per_backend!(retries_then_dead_letters_with_the_error_attributes:
    memory => Memory, kafka => Kafka, nats => Nats);
per_backend!(replies_re_enter_and_filters_route:
    memory => Memory, kafka => Kafka, nats => Nats);
per_backend!(kill_9_mid_stream_delivers_every_acknowledged_event:
    kafka => Kafka, nats => Nats);
per_backend!(sigterm_mid_stream_resumes_from_the_committed_position:
    kafka => Kafka, nats => Nats);
per_backend!(server_down_means_503_and_recovery_after_restart:
    kafka => Kafka, nats => Nats);

async fn retries_then_dead_letters_with_the_error_attributes(backend: Backend) {
    let sub = Sink::start_with(Reply::status(500).body("boom")).await;
    let dls = Sink::start().await;
    let broker = unique("dls");
    let spec = format!(
        "  delivery:\n    retry: 2\n    backoffPolicy: linear\n    backoffDelay: PT0.05S\n    \
         deadLetterSink:\n      uri: {}\n",
        dls.url()
    );
    // NATS on its memory storage, as its suite has always run this scenario
    // (the file store is the restart tests' part).
    let cm = match backend {
        Backend::Nats => "  storage: memory\n",
        Backend::Memory | Backend::Kafka => "",
    };
    let cebus = Cebus::start(&backend.broker_yaml_with(
        &broker,
        cm,
        &[Trigger::new("t", &spec, &sub.url())],
    ))
    .await;
    let url = cebus.broker_url("default", &broker);
    post_until_accepted(&url, "e-1", "order.created").await;

    let dead = dls.wait_for(1, backend.wait()).await;
    let e = dead[0].event();
    assert_eq!(e.id(), "e-1");
    assert_eq!(
        e.get_str("knativeerrordest").as_deref(),
        Some(sub.url().as_str())
    );
    assert_eq!(e.get_str("knativeerrorcode").as_deref(), Some("500"));
    assert_eq!(e.get_str("knativeerrordata").as_deref(), Some("Ym9vbQ=="));
    assert_eq!(sub.received().len(), 3, "retry 2 = 3 attempts");
    // Once the broker has nothing in flight, e-1 is done for good (dead-lettered
    // and acknowledged): an attempt after the dead letter would have come by now.
    cebus.wait_settled("default", &broker, backend.wait()).await;
    assert_eq!(sub.received().len(), 3, "no attempt after the dead letter");
    assert_eq!(dls.received().len(), 1, "dead-lettered once");
}

async fn replies_re_enter_and_filters_route(backend: Backend) {
    let orders = Sink::start_with(Reply::event(200, "reply-1", "order.done", "{}")).await;
    let done = Sink::start().await;
    // Matches everything: once it has seen every event, each went through the
    // broker's one matching pass.
    let witness = Sink::start().await;
    let broker = unique("reply");
    let cebus = Cebus::start(&backend.broker_yaml(
        &broker,
        &[
            Trigger::new(
                "orders",
                "  filter:\n    attributes:\n      type: order.created\n",
                &orders.url(),
            ),
            Trigger::new(
                "done",
                "  filters:\n    - prefix:\n        type: order.do\n",
                &done.url(),
            ),
            Trigger::new("witness", "", &witness.url()),
        ],
    ))
    .await;
    let url = cebus.broker_url("default", &broker);
    post_until_accepted(&url, "o-1", "order.created").await;
    let (status, _) = post_binary(&url, "x-1", "other.type", "{}").await;
    assert_eq!(status, 202);

    let got = done.wait_for(1, backend.wait()).await;
    let reply = got[0].event();
    assert_eq!(reply.id(), "reply-1");
    assert_eq!(reply.ty(), "order.done");
    assert!(
        reply.get("knativebrokerttl").is_none(),
        "the hop counter is internal"
    );
    // Every event (o-1, x-1 and the reply) has been matched once the witness got
    // it, and once the broker has nothing in flight every delivery they match
    // has been made: the counts below are final.
    for id in ["o-1", "x-1", "reply-1"] {
        wait_for_id(&witness, id, backend.wait()).await;
    }
    cebus.wait_settled("default", &broker, backend.wait()).await;
    assert_eq!(received_ids(&orders), ["o-1"]);
    assert_eq!(received_ids(&done), ["reply-1"]);
}

/// The in-flight window of the restart scenarios (`--channel-capacity`): records
/// handed to the triggers and not yet acknowledged, at most. JetStream hands
/// out no more unacknowledged (`max_ack_pending`), Kafka pauses its partitions.
const WINDOW: usize = 500;

/// Events posted in the restart scenarios.
const N: usize = 10_000;

/// A config folder with a fresh broker on `backend` (named from `prefix`) and
/// one trigger whose subscriber takes 5 ms per event, for the restart
/// scenarios: with two deliveries at a time (`--max-in-flight 2`) delivery lags
/// far behind ingress, so a stop lands mid-stream, and at most 400 events a
/// second are acknowledged.
async fn slow_subscriber_config(
    backend: Backend,
    prefix: &str,
) -> (String, tempfile::TempDir, Sink) {
    let broker = unique(prefix);
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start_with(Reply::status(200).delay(Duration::from_millis(5))).await;
    std::fs::write(
        dir.path().join("config.yaml"),
        backend.broker_yaml(&broker, &[Trigger::new("t", "", &sink.url())]),
    )
    .unwrap();
    (broker, dir, sink)
}

/// The flags of the first process of the restart scenarios, then `extra`.
fn restart_flags<'a>(window: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut flags = vec!["--max-in-flight", "2", "--channel-capacity", window];
    flags.extend_from_slice(extra);
    flags
}

/// How many duplicates a `kill -9` of the process may cause on `backend`.
fn kill_9_bound(backend: Backend) -> usize {
    match backend {
        // JetStream redelivers exactly the messages it handed out and got no
        // ack for, and it hands out at most the window (`max_ack_pending`).
        Backend::Nats => WINDOW,
        // Kafka restarts from the last committed offsets (committed every
        // 100 ms, `COMMIT_INTERVAL`): what was handed out and not acknowledged
        // (at most the window) plus what was acknowledged since that commit. At
        // two 5 ms deliveries at a time that is at most 400 a second: 400 is a
        // whole second of acknowledgements, ten commit intervals, so a commit
        // delayed on a loaded machine stays within the bound.
        Backend::Kafka => WINDOW + 400,
        Backend::Memory => unreachable!("the in-memory channel loses events on a crash"),
    }
}

async fn kill_9_mid_stream_delivers_every_acknowledged_event(backend: Backend) {
    let (broker, dir, sink) = slow_subscriber_config(backend, "crash").await;
    let window = WINDOW.to_string();
    let first = Proc::start(dir.path(), &restart_flags(&window, &[]));
    let url = format!("{}/default/{broker}", first.base);
    wait_ready(&url).await;
    post_many(&url, "c", N, 16).await;
    first.kill_9();
    let at_kill = tally(&sink, "c-").0;
    assert!(
        at_kill < N,
        "the kill came after every delivery ({at_kill})"
    );

    let second = Proc::start(dir.path(), &[]);
    let dups = wait_all(&sink, "c-", N, CATCH_UP).await;
    println!(
        "{}: kill -9 after {at_kill} of {N} delivered; after restart {N} of {N} delivered, \
         {dups} duplicates",
        backend.name()
    );
    let bound = kill_9_bound(backend);
    assert!(
        dups <= bound,
        "{dups} duplicates: more than the window allows ({bound}); did the restart ignore \
         the stored position?"
    );
    drop(second);
}

async fn sigterm_mid_stream_resumes_from_the_committed_position(backend: Backend) {
    let (broker, dir, sink) = slow_subscriber_config(backend, "sigterm").await;
    let window = WINDOW.to_string();
    let first = Proc::start(dir.path(), &restart_flags(&window, &["--drain-secs", "1"]));
    let url = format!("{}/default/{broker}", first.base);
    wait_ready(&url).await;
    post_many(&url, "s", N, 16).await;
    // More than a window delivered (and committed or acknowledged) before the
    // stop, so a restart from the beginning instead of the stored position
    // would show as more duplicates than the bound below.
    sink.wait_for(4 * WINDOW, backend.wait()).await;
    first.signal("-TERM");
    let status = first.wait_status(backend.wait());
    assert!(status.success(), "cebus exited with {status} after SIGTERM");
    let at_stop = tally(&sink, "s-").0;
    assert!(
        at_stop < N,
        "the stop came after every delivery ({at_stop})"
    );

    sink.set_default(Reply::status(200));
    let second = Proc::start(dir.path(), &[]);
    let dups = wait_all(&sink, "s-", N, CATCH_UP).await;
    println!(
        "{}: SIGTERM after {at_stop} of {N} delivered; after restart {N} of {N} delivered, \
         {dups} duplicates",
        backend.name()
    );
    // Redelivered after the restart: what was handed out and not acknowledged
    // when the first process stopped (at most the window; the drain finished
    // what was in flight). Kafka commits on close, so what was acknowledged
    // after its last periodic commit is not redelivered; JetStream has every
    // ack of the drain.
    assert!(
        dups <= WINDOW,
        "{dups} duplicates: more than the window ({WINDOW}); did the restart ignore the \
         committed position?"
    );
    drop(second);
}

async fn server_down_means_503_and_recovery_after_restart(backend: Backend) {
    let mut server = PrivateServer::start(backend).await;
    let sink = Sink::start().await;
    let broker = unique("outage");
    // Kafka: a topic of two partitions, as its suite has always run this.
    let cm = match backend {
        Backend::Kafka => "  default.topic.partitions: \"2\"\n",
        Backend::Memory | Backend::Nats => "",
    };
    let cebus =
        Cebus::start(&server.broker_yaml(&broker, cm, &[Trigger::new("t", "", &sink.url())])).await;
    let url = cebus.broker_url("default", &broker);
    post_until_accepted(&url, "before", "t").await;
    wait_for_id(&sink, "before", backend.wait()).await;

    server.kill();
    let (status, body) = match backend {
        // librdkafka's produce to a dead broker fails at once: the first event
        // after the kill is refused.
        Backend::Kafka => post_binary(&url, "during", "t", "{}").await,
        // The NATS client notices the closed connection at once; allow it a
        // moment.
        Backend::Nats | Backend::Memory => {
            let deadline = Instant::now() + backend.wait();
            loop {
                let (status, body) = post_binary(&url, "during", "t", "{}").await;
                if status != 202 || Instant::now() > deadline {
                    break (status, body);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(status, 503, "{body}");
    let reason: serde_json::Value = serde_json::from_str(&body).expect("JSON reason");
    assert!(
        reason["error"]
            .as_str()
            .is_some_and(|e| e.contains(backend.name())),
        "{body}"
    );

    let server = server.restart().await;
    post_until_accepted(&url, "after", "t").await;
    wait_for_id(&sink, "after", backend.wait()).await;
    // Stop cebus while its server is still up: librdkafka's close talks to the
    // broker, and a runtime cannot finish shutting down around a blocking close
    // that waits for a Kafka that is already gone.
    cebus.server.shutdown(Duration::from_secs(10)).await;
    drop(cebus.dir);
    drop(server);
}
