//! A trigger that keeps failing never holds back the other triggers of its
//! durable broker: it leaves the shared reader for a cursor of its own (Kafka:
//! consumer group `cebus/<ns>/<broker>/<trigger>`; NATS: durable consumer
//! `trigger_<trigger>`), catches up when its subscriber recovers, and resumes
//! from that cursor after a restart. Real Kafka and nats-server
//! (`KAFKA_BOOTSTRAP`, `NATS_URL`, started by `scripts/test`); never skip.

use std::time::Duration;

use cebus_e2e::{
    Backend, Cebus, Proc, Reply, Sink, Trigger, per_backend, post_many, tally, unique, wait_all,
    wait_ready,
};

const WAIT: Duration = Duration::from_secs(90);

per_backend!(a_failing_trigger_does_not_hold_back_the_others: kafka => Kafka, nats => Nats);
per_backend!(a_trigger_behind_resumes_from_its_cursor_after_a_restart:
    kafka => Kafka, nats => Nats);

/// A broker on `backend` with a trigger `good` and a trigger `bad` (which
/// retries for a long time before giving up).
fn yaml(backend: Backend, broker: &str, good: &str, bad: &str) -> String {
    backend.broker_yaml(
        broker,
        &[
            Trigger::new("good", "", good),
            Trigger::new(
                "bad",
                "  delivery:\n    retry: 10000\n    backoffPolicy: linear\n    \
                 backoffDelay: PT0.05S\n",
                bad,
            ),
        ],
    )
}

async fn a_failing_trigger_does_not_hold_back_the_others(backend: Backend) {
    const N: usize = 3_000;
    // A window far smaller than N: without cursors the failing trigger's
    // records fill it and the good trigger stops after about this many.
    const WINDOW: usize = 200;
    let good = Sink::start().await;
    let bad = Sink::start_with(Reply::status(500)).await;
    let broker = unique("iso");
    let cebus = Cebus::start_with(&yaml(backend, &broker, &good.url(), &bad.url()), |o| {
        o.limits.channel_capacity = WINDOW;
        o.limits.max_in_flight_per_trigger = 10;
    })
    .await;
    let url = cebus.broker_url("default", &broker);
    wait_ready(&url).await;
    post_many(&url, "i", N, 16).await;

    // Every event reaches the good trigger while the bad one still fails.
    let dups = wait_all(&good, "i-", N, WAIT).await;
    let (bad_seen, _) = tally(&bad, "i-");
    println!("good: {N} of {N} delivered ({dups} duplicates) while bad saw {bad_seen} distinct");
    assert!(bad_seen < N, "the bad trigger was not failing");

    // The bad subscriber recovers: its cursor delivers everything, at least once.
    bad.set_default(Reply::status(200));
    let bad_dups = wait_all(&bad, "i-", N, WAIT).await;
    println!("bad after recovery: {N} of {N} delivered, {bad_dups} duplicate requests");

    // Both are back on the shared reader: later events reach both.
    post_many(&url, "j", 100, 4).await;
    wait_all(&good, "j-", 100, WAIT).await;
    wait_all(&bad, "j-", 100, WAIT).await;
}

async fn a_trigger_behind_resumes_from_its_cursor_after_a_restart(backend: Backend) {
    const N: usize = 3_000;
    const WINDOW: usize = 200;
    cebus_e2e::init();
    let good = Sink::start().await;
    let bad = Sink::start_with(Reply::status(500)).await;
    let broker = unique("isorestart");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        yaml(backend, &broker, &good.url(), &bad.url()),
    )
    .unwrap();
    let flags = [
        "--channel-capacity",
        "200",
        "--max-in-flight",
        "10",
        "--drain-secs",
        "2",
    ];
    let first = Proc::start(dir.path(), &flags);
    let url = format!("{}/default/{broker}", first.base);
    wait_ready(&url).await;
    post_many(&url, "r", N, 16).await;
    wait_all(&good, "r-", N, WAIT).await;
    first.signal("-TERM");
    let status = first.wait_status(WAIT);
    assert!(status.success(), "cebus exited with {status}");
    let (bad_before, _) = tally(&bad, "r-");
    assert!(bad_before < N, "the bad trigger was not behind");

    // After the restart the bad trigger resumes from its stored cursor (the
    // shared group moved on long ago); the good one gets no replay beyond the
    // window.
    bad.set_default(Reply::status(200));
    let second = Proc::start(dir.path(), &flags);
    let bad_dups = wait_all(&bad, "r-", N, Duration::from_secs(180)).await;
    let (_, good_dups) = tally(&good, "r-");
    println!(
        "restart with the bad trigger {bad_before} of {N} in: after it {N} of {N}, \
         {bad_dups} duplicate requests; good trigger {good_dups} duplicates"
    );
    assert!(
        good_dups <= WINDOW,
        "{good_dups} duplicates for the good trigger: more than the window"
    );
    drop(second);
}
