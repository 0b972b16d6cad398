//! End-to-end tests of the `Kafka` broker class against a real Apache Kafka: the
//! core delivery scenarios (retries, dead letters, replies, filters), ordered vs
//! unordered triggers, SIGTERM and `kill -9` of the real binary mid-stream, a
//! Kafka outage (503, then recovery), a SIGTERM after Kafka is gone (the process
//! still exits), and interop with `kcat` in both directions.
//!
//! `scripts/test` starts the shared Kafka (`scripts/kafka.sh`) and sets
//! `KAFKA_BOOTSTRAP`; the outage tests start their own Kafka (a separate
//! `KAFKA_STATE`) so they never disturb the others. Without Kafka these tests
//! fail; they never skip.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cebus_e2e::{
    Cebus, Proc, Reply, Sink, kafka_bootstrap, kcat_consume, post, post_binary, post_many,
    post_until_accepted, received_ids, run_tool, tally, unique, wait_all, wait_for_id,
};

const WAIT: Duration = Duration::from_secs(60);

/// One trigger of [`kafka_yaml`].
struct T<'a> {
    name: &'a str,
    /// `metadata.annotations` lines, indented by 4.
    annotations: &'a str,
    /// Extra spec lines, indented by 2.
    spec: &'a str,
    subscriber: &'a str,
}

/// A `Kafka` broker named `broker` on `bootstrap` with its ConfigMap (plus
/// `cm_extra` lines, indented by 2) and triggers.
fn kafka_yaml(broker: &str, bootstrap: &str, cm_extra: &str, triggers: &[T<'_>]) -> String {
    let mut y = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {broker}\n  \
         annotations:\n    eventing.knative.dev/broker.class: Kafka\nspec:\n  \
         config:\n    apiVersion: v1\n    kind: ConfigMap\n    name: {broker}-kafka\n\
         ---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {broker}-kafka\ndata:\n  \
         bootstrap.servers: \"{bootstrap}\"\n{cm_extra}"
    );
    for t in triggers {
        let annotations = if t.annotations.is_empty() {
            String::new()
        } else {
            format!("  annotations:\n{}", t.annotations)
        };
        y.push_str(&format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {}\n\
             {annotations}spec:\n  broker: {broker}\n  subscriber:\n    uri: {}\n{}",
            t.name, t.subscriber, t.spec
        ));
    }
    y
}

fn trigger<'a>(name: &'a str, spec: &'a str, subscriber: &'a str) -> T<'a> {
    T {
        name,
        annotations: "",
        spec,
        subscriber,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_dead_letters_with_the_error_attributes() {
    let sub = Sink::start_with(Reply::status(500).body("boom")).await;
    let dls = Sink::start().await;
    let broker = unique("dls");
    let spec = format!(
        "  delivery:\n    retry: 2\n    backoffPolicy: linear\n    backoffDelay: PT0.05S\n    \
         deadLetterSink:\n      uri: {}\n",
        dls.url()
    );
    let cebus = Cebus::start(&kafka_yaml(
        &broker,
        &kafka_bootstrap(),
        "",
        &[trigger("t", &spec, &sub.url())],
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_re_enter_and_filters_route() {
    let orders = Sink::start_with(Reply::event(200, "reply-1", "order.done", "{}")).await;
    let done = Sink::start().await;
    let broker = unique("reply");
    let cebus = Cebus::start(&kafka_yaml(
        &broker,
        &kafka_bootstrap(),
        "",
        &[
            trigger(
                "orders",
                "  filter:\n    attributes:\n      type: order.created\n",
                &orders.url(),
            ),
            trigger(
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

/// Posts a binary event with a `partitionkey`, expecting 202.
async fn post_keyed(url: &str, id: &str, key: &str) {
    let (status, body) = post(
        url,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", id),
            ("ce-source", "/e2e/kafka"),
            ("ce-type", "keyed"),
            ("ce-partitionkey", key),
        ],
        "{}",
    )
    .await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_event_holds_back_its_partition_only_when_ordered() {
    const SLOW: Duration = Duration::from_secs(3);
    let ordered = Sink::start().await;
    let unordered = Sink::start().await;
    // Each sink answers its first request slowly, the rest at once.
    ordered.script([Reply::status(200).delay(SLOW)]);
    unordered.script([Reply::status(200).delay(SLOW)]);
    let broker = unique("order");
    let cebus = Cebus::start(&kafka_yaml(
        &broker,
        &kafka_bootstrap(),
        "",
        &[
            T {
                name: "ordered",
                annotations: "    kafka.eventing.knative.dev/delivery.order: ordered\n",
                spec: "  filter:\n    attributes:\n      type: keyed\n",
                subscriber: &ordered.url(),
            },
            trigger(
                "unordered",
                "  filter:\n    attributes:\n      type: keyed\n",
                &unordered.url(),
            ),
        ],
    ))
    .await;
    let url = cebus.broker_url("default", &broker);
    post_until_accepted(&url, "probe", "probe").await;
    // Same key: same partition, in this order.
    for id in ["k-1", "k-2", "k-3"] {
        post_keyed(&url, id, "customer-7").await;
    }
    // Unordered: k-2 and k-3 arrive while k-1 is still being answered (the sink
    // holds its first request for SLOW), judged by the sink's arrival times.
    let got = unordered.wait_for(3, WAIT).await;
    assert!(
        got[2].at.duration_since(got[0].at) < SLOW,
        "unordered: k-2 and k-3 do not wait for k-1 ({:?})",
        got[2].at.duration_since(got[0].at)
    );
    assert!(
        ordered.received().len() <= 1,
        "ordered: k-2 waits for k-1's outcome"
    );
    let got = ordered.wait_for(3, WAIT).await;
    let ids: Vec<String> = got.iter().map(|r| r.event().id().into_owned()).collect();
    assert_eq!(ids, ["k-1", "k-2", "k-3"]);
    assert!(
        got[1].at.duration_since(got[0].at) >= SLOW - Duration::from_millis(100),
        "k-2 came only after k-1 was answered"
    );
}

/// Posts until the process at `base` listens and its broker accepts.
async fn wait_ready(base: &str, broker: &str) {
    cebus_e2e::init();
    let url = format!("{base}/default/{broker}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let r = client
            .post(&url)
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

/// A config folder with a fresh broker (named from `prefix`) and one trigger
/// whose subscriber takes 5 ms per event, for the restart tests.
async fn slow_subscriber_config(prefix: &str) -> (String, tempfile::TempDir, Sink) {
    let broker = unique(prefix);
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start_with(Reply::status(200).delay(Duration::from_millis(5))).await;
    std::fs::write(
        dir.path().join("config.yaml"),
        kafka_yaml(
            &broker,
            &kafka_bootstrap(),
            "",
            &[trigger("t", "", &sink.url())],
        ),
    )
    .unwrap();
    (broker, dir, sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_delivers_every_acknowledged_event() {
    const N: usize = 10_000;
    let (broker, dir, sink) = slow_subscriber_config("crash").await;
    // Two deliveries at a time against a 5 ms subscriber: delivery lags far behind
    // ingress, so the kill lands mid-stream.
    let first = Proc::start(dir.path(), &["--max-in-flight", "2"]);
    wait_ready(&first.base, &broker).await;
    let url = format!("{}/default/{broker}", first.base);
    post_many(&url, "c", N, 16).await;
    first.kill_9();
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
async fn sigterm_mid_stream_resumes_from_the_committed_offsets() {
    const N: usize = 10_000;
    // The window: records handed to the triggers and not yet acknowledged.
    const WINDOW: usize = 500;
    let (broker, dir, sink) = slow_subscriber_config("sigterm").await;
    // Two deliveries at a time against a slow (5 ms) subscriber: delivery lags
    // far behind ingress, so the stop lands mid-stream with a backlog in Kafka.
    let window = WINDOW.to_string();
    let first = Proc::start(
        dir.path(),
        &[
            "--max-in-flight",
            "2",
            "--channel-capacity",
            &window,
            "--drain-secs",
            "1",
        ],
    );
    wait_ready(&first.base, &broker).await;
    let url = format!("{}/default/{broker}", first.base);
    post_many(&url, "s", N, 16).await;
    // More than a window delivered (and committed) before the stop, so a restart
    // from the beginning instead of the committed offsets would show as more
    // duplicates than the bound below.
    sink.wait_for(4 * WINDOW, WAIT).await;
    first.signal("-TERM");
    let status = first.wait_status(WAIT);
    assert!(status.success(), "cebus exited with {status} after SIGTERM");
    let at_stop = tally(&sink, "s-").0;
    assert!(
        at_stop < N,
        "the stop came after every delivery ({at_stop})"
    );

    sink.set_default(Reply::status(200));
    let second = Proc::start(dir.path(), &[]);
    let dups = wait_all(&sink, "s-", N, Duration::from_secs(180)).await;
    println!(
        "SIGTERM after {at_stop} of {N} delivered; after restart {N} of {N} delivered, {dups} duplicates"
    );
    // Redelivered after the restart: what was handed out and not acknowledged
    // when the first process stopped (at most the window), plus what was
    // acknowledged after its last commit (a commit every 100 ms; at 2 × 5 ms
    // deliveries that is some 40 events).
    assert!(
        dups <= WINDOW,
        "{dups} duplicates: more than the window ({WINDOW}); did the restart ignore the committed offsets?"
    );
    drop(second);
}

/// A private Kafka (`scripts/kafka.sh` with its own `KAFKA_STATE`), stopped and
/// its state removed when dropped.
struct PrivateKafka {
    state: tempfile::TempDir,
    bootstrap: String,
}

impl PrivateKafka {
    fn script(&self, command: &str) -> String {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
        let out = run_tool(
            Command::new(script)
                .arg(command)
                .env("KAFKA_STATE", self.state.path()),
            b"",
            Duration::from_secs(300),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn start() -> PrivateKafka {
        let mut k = PrivateKafka {
            state: tempfile::tempdir().unwrap(),
            bootstrap: String::new(),
        };
        k.script("start");
        let env = k.script("env");
        k.bootstrap = env
            .trim()
            .strip_prefix("export KAFKA_BOOTSTRAP=")
            .unwrap_or_else(|| panic!("kafka.sh env printed {env:?}"))
            .to_owned();
        k
    }

    fn kill(&self) {
        let pid = self.script("pid");
        let ok = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
        let _ = Command::new(script)
            .arg("stop")
            .env("KAFKA_STATE", self.state.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_means_503_and_recovery_after_restart() {
    let kafka = tokio::task::spawn_blocking(PrivateKafka::start)
        .await
        .unwrap();
    let sink = Sink::start().await;
    let broker = unique("outage");
    let cebus = Cebus::start(&kafka_yaml(
        &broker,
        &kafka.bootstrap,
        "  default.topic.partitions: \"2\"\n",
        &[trigger("t", "", &sink.url())],
    ))
    .await;
    let url = cebus.broker_url("default", &broker);
    post_until_accepted(&url, "before", "t").await;
    wait_for_id(&sink, "before", WAIT).await;

    kafka.kill();
    let (status, body) = post_binary(&url, "during", "t", "{}").await;
    assert_eq!(status, 503, "{body}");
    let reason: serde_json::Value = serde_json::from_str(&body).expect("JSON reason");
    assert!(
        reason["error"]
            .as_str()
            .is_some_and(|e| e.contains("Kafka")),
        "{body}"
    );

    let kafka = tokio::task::spawn_blocking(move || {
        kafka.script("restart");
        kafka
    })
    .await
    .unwrap();
    post_until_accepted(&url, "after", "t").await;
    wait_for_id(&sink, "after", WAIT).await;
    // Stop cebus while its Kafka is still up: librdkafka's close talks to the
    // broker, and a runtime cannot finish shutting down around a blocking close
    // that waits for a Kafka that is already gone.
    cebus.server.shutdown(Duration::from_secs(10)).await;
    drop(cebus.dir);
    drop(kafka);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_kafka_gone_still_exits() {
    let kafka = tokio::task::spawn_blocking(PrivateKafka::start)
        .await
        .unwrap();
    let sink = Sink::start().await;
    let broker = unique("gone");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        kafka_yaml(
            &broker,
            &kafka.bootstrap,
            "  default.topic.partitions: \"2\"\n",
            &[trigger("t", "", &sink.url())],
        ),
    )
    .unwrap();
    let cebus = Proc::start(dir.path(), &["--drain-secs", "1"]);
    wait_ready(&cebus.base, &broker).await;
    // The consumer is in its group and reading: there is a consumer to close.
    wait_for_id(&sink, "ready-probe", WAIT).await;

    kafka.kill();
    cebus.signal("-TERM");
    // librdkafka's close of the consumer (final commit, leaving the group) can
    // wait forever for a Kafka that is gone; the process must exit anyway, after
    // the drain deadline plus its exit grace (cli `EXIT_GRACE`).
    let status = cebus.wait_status(WAIT);
    assert!(status.success(), "cebus exited with {status} after SIGTERM");
    drop(kafka);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_records_are_routed_and_cebus_records_are_binary_mode() {
    let sink = Sink::start().await;
    let broker = unique("interop");
    let cebus = Cebus::start(&kafka_yaml(
        &broker,
        &kafka_bootstrap(),
        "",
        &[trigger(
            "kcat",
            "  filter:\n    attributes:\n      type: dev.cebus.interop\n",
            &sink.url(),
        )],
    ))
    .await;
    let url = cebus.broker_url("default", &broker);
    post_until_accepted(&url, "probe", "probe").await;
    let topic = format!("knative-broker-default-{broker}");

    // kcat → broker: a binary-mode record produced by another client.
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        cebus_e2e::kcat_produce(
            &t,
            Some("key-1"),
            &[
                ("ce_specversion", "1.0"),
                ("ce_id", "kcat-1"),
                ("ce_source", "/kcat"),
                ("ce_type", "dev.cebus.interop"),
                ("content-type", "application/json"),
            ],
            r#"{"from":"kcat"}"#,
        )
    })
    .await
    .unwrap();
    let got = sink.wait_for(1, WAIT).await;
    let e = got[0].event();
    assert_eq!(e.id(), "kcat-1");
    assert_eq!(e.source(), "/kcat");
    assert_eq!(
        e.data().map(|d| d.as_ref()),
        Some(&br#"{"from":"kcat"}"#[..])
    );
    assert!(e.get("knativearrivaltime").is_some());

    // cebus → kcat: what cebus wrote is a binary-mode record with the key.
    let (status, body) = post(
        &url,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "cebus-1"),
            ("ce-source", "/e2e"),
            ("ce-type", "other"),
            ("ce-partitionkey", "pk-9"),
            ("content-type", "text/plain"),
        ],
        "hello",
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let records = kcat_consume(&topic).await;
    let record = records
        .iter()
        .find(|r| r["payload"] == "hello")
        .unwrap_or_else(|| panic!("no record of cebus-1 in: {records:?}"));
    assert_eq!(record["key"], "pk-9");
    let headers: Vec<String> = record["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| h.as_str().unwrap_or_default().to_owned())
        .collect();
    // kcat -J lists headers as [name, value, name, value, ...].
    let pairs: HashMap<&str, &str> = headers
        .chunks(2)
        .map(|c| (c[0].as_str(), c[1].as_str()))
        .collect();
    assert_eq!(pairs.get("ce_specversion"), Some(&"1.0"));
    assert_eq!(pairs.get("ce_id"), Some(&"cebus-1"));
    assert_eq!(pairs.get("ce_type"), Some(&"other"));
    assert_eq!(pairs.get("ce_partitionkey"), Some(&"pk-9"));
    assert_eq!(pairs.get("content-type"), Some(&"text/plain"));
    assert!(pairs.contains_key("ce_knativearrivaltime"));
}
