//! End-to-end tests only the `Kafka` broker class has, against a real Apache
//! Kafka: ordered vs unordered triggers, a SIGTERM after Kafka is gone (the
//! process still exits), and interop with `kcat` in both directions. The
//! scenarios every backend runs (retries, replies, restarts, an outage) are in
//! `backends.rs`.
//!
//! `scripts/test` starts the shared Kafka (`scripts/kafka.sh`) and sets
//! `KAFKA_BOOTSTRAP`; the Kafka-gone test starts its own Kafka (a separate
//! `KAFKA_STATE`) so it never disturbs the others. Without Kafka these tests
//! fail; they never skip.

use std::collections::HashMap;
use std::time::Duration;

use cebus_e2e::{
    Cebus, PrivateKafka, Proc, Reply, Sink, Trigger, kafka_bootstrap, kafka_yaml, kcat_consume,
    post, post_until_accepted, unique, wait_for_id, wait_ready,
};

const WAIT: Duration = Duration::from_secs(60);

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
            Trigger::new(
                "ordered",
                "  filter:\n    attributes:\n      type: keyed\n",
                &ordered.url(),
            )
            .annotated("    kafka.eventing.knative.dev/delivery.order: ordered\n"),
            Trigger::new(
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
            &[Trigger::new("t", "", &sink.url())],
        ),
    )
    .unwrap();
    let cebus = Proc::start(dir.path(), &["--drain-secs", "1"]);
    wait_ready(&format!("{}/default/{broker}", cebus.base)).await;
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
        &[Trigger::new(
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
