//! KafkaSource end to end against the real Kafka of `scripts/kafka.sh`: records
//! produced with kcat reach a recording subscriber (through a broker, or a sink
//! URI), plain records wrapped Knative's way and CloudEvent records unchanged;
//! offsets are committed only after the sink accepted; `initialOffset` decides
//! where a new group starts. Every test uses a fresh topic and consumer group.

use std::time::Duration;

use cebus_e2e::{
    Reply, Sink, broker_yaml, kafka_bootstrap, kcat_produce, start_with_sources, unique,
};

/// Generous: a new consumer group joins, is assigned and fetches in a few seconds.
const WAIT: Duration = Duration::from_secs(30);

/// A KafkaSource `name` reading `topic` as `group`, from `initial` (earliest or
/// latest), into `sink` (YAML lines under `sink:`, indented by 4).
fn kafka_source(name: &str, topic: &str, group: &str, initial: &str, sink: &str) -> String {
    format!(
        "apiVersion: sources.knative.dev/v1beta1\nkind: KafkaSource\nmetadata:\n  name: {name}\n\
         spec:\n  bootstrapServers:\n    - {}\n  topics: [{topic}]\n  consumerGroup: {group}\n  \
         initialOffset: {initial}\n  sink:\n{sink}",
        kafka_bootstrap()
    )
}

const BROKER_SINK: &str = "    ref:\n      apiVersion: eventing.knative.dev/v1\n      kind: Broker\n      name: default\n";

fn uri_sink(sink: &Sink) -> String {
    format!("    uri: {}\n", sink.url())
}

/// The ids of the events a sink received, in order (refused attempts included).
fn ids(sink: &Sink) -> Vec<String> {
    sink.received()
        .iter()
        .map(|r| r.header("ce-id").unwrap_or_default().to_owned())
        .collect()
}

/// Produces with kcat off the async threads, so the consumers keep running.
async fn produce(topic: &str, key: Option<&str>, headers: &[(&str, &str)], value: &str) {
    let (topic, key, value) = (topic.to_owned(), key.map(str::to_owned), value.to_owned());
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        kcat_produce(&topic, key.as_deref(), &h, &value);
    })
    .await
    .expect("kcat task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_cloudevent_records_reach_the_subscriber_through_a_broker() {
    let topic = unique("orders");
    // Records first (the topic is auto-created), read from `earliest`.
    produce(
        &topic,
        Some("order-7"),
        &[("content-type", "application/json")],
        r#"{"order":7,"total":12.5}"#,
    )
    .await;
    // Claims to be a CloudEvent (ce_specversion) but has no id: skipped, counted,
    // and it does not hold back the records after it.
    produce(
        &topic,
        None,
        &[
            ("ce_specversion", "1.0"),
            ("ce_source", "/orders"),
            ("ce_type", "com.example.broken"),
        ],
        "{}",
    )
    .await;
    produce(
        &topic,
        Some("order-8"),
        &[
            ("ce_specversion", "1.0"),
            ("ce_id", "evt-8"),
            ("ce_source", "/orders/service"),
            ("ce_type", "com.example.order.created"),
            ("ce_time", "2024-06-01T12:00:00Z"),
            ("ce_team", "shop"),
            ("content-type", "application/json"),
        ],
        r#"{"order":8}"#,
    )
    .await;

    let sub = Sink::start().await;
    let yaml = format!(
        "{}\n---\n{}  ceOverrides:\n    extensions:\n      origin: kafka\n",
        broker_yaml("default", "", &[("all", "", &sub.url())]),
        kafka_source("orders", &topic, &topic, "earliest", BROKER_SINK)
    );
    let cebus = start_with_sources(&yaml).await;
    let got = sub.wait_for(2, WAIT).await;
    // The broker delivers to the trigger concurrently: find each by its id.
    let by_id = |id: &str| {
        got.iter()
            .find(|r| r.header("ce-id") == Some(id))
            .unwrap_or_else(|| panic!("no event {id}: {got:?}"))
    };

    let plain = by_id("partition:0/offset:0");
    assert_eq!(plain.header("ce-type"), Some("dev.knative.kafka.event"));
    assert_eq!(
        plain.header("ce-source").map(str::to_owned),
        Some(format!(
            "/apis/v1/namespaces/default/kafkasources/orders#{topic}"
        ))
    );
    assert_eq!(plain.header("ce-subject"), Some("partition:0#0"));
    assert_eq!(plain.header("ce-id"), Some("partition:0/offset:0"));
    assert_eq!(plain.header("ce-key"), Some("order-7"));
    assert_eq!(plain.header("ce-origin"), Some("kafka"));
    assert_eq!(plain.header("content-type"), Some("application/json"));
    assert!(
        plain
            .header("ce-time")
            .is_some_and(cebus_events::is_rfc3339)
    );
    assert_eq!(plain.body.as_ref(), br#"{"order":7,"total":12.5}"#);

    // The CloudEvent record passes through unchanged: its own attributes, no
    // wrapping, no key extension, no overrides.
    let ce = by_id("evt-8");
    assert_eq!(ce.header("ce-id"), Some("evt-8"));
    assert_eq!(ce.header("ce-type"), Some("com.example.order.created"));
    assert_eq!(ce.header("ce-source"), Some("/orders/service"));
    assert_eq!(ce.header("ce-time"), Some("2024-06-01T12:00:00Z"));
    assert_eq!(ce.header("ce-team"), Some("shop"));
    assert_eq!(ce.header("content-type"), Some("application/json"));
    assert_eq!(ce.header("ce-key"), None);
    assert_eq!(ce.header("ce-origin"), None);
    assert_eq!(ce.body.as_ref(), br#"{"order":8}"#);

    // The source has read all three records once it delivered two and skipped
    // one; with nothing in flight in the broker, the two deliveries are all.
    let records = "cebus_source_records_total";
    cebus
        .wait_metric(&[records, "outcome=\"delivered\""], 2, WAIT)
        .await;
    cebus
        .wait_metric(&[records, "outcome=\"skipped\""], 1, WAIT)
        .await;
    cebus.wait_settled("default", "default", WAIT).await;
    assert_eq!(sub.received().len(), 2, "{:?}", ids(&sub));
    // The skipped record is counted where operators look.
    let metrics = cebus.metrics().await;
    let skipped = metrics
        .lines()
        .find(|l| l.starts_with("cebus_source_records_total") && l.contains("outcome=\"skipped\""))
        .unwrap_or_else(|| panic!("no skipped counter in /metrics:\n{metrics}"));
    assert!(skipped.ends_with(" 1"), "{skipped}");
    cebus.server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_committed_only_after_the_sink_accepted() {
    let topic = unique("commits");
    produce(&topic, None, &[], "a").await;
    let sink = Sink::start_with(Reply::status(202)).await;
    let yaml = kafka_source("commits", &topic, &topic, "earliest", &uri_sink(&sink));
    let a = "partition:0/offset:0";
    let (b, c, d) = (
        "partition:0/offset:1",
        "partition:0/offset:2",
        "partition:0/offset:3",
    );

    let cebus = start_with_sources(&yaml).await;
    sink.wait_for(1, WAIT).await;
    assert_eq!(ids(&sink), [a]);

    // The sink goes down: b is refused and retried, c waits behind it (ordered).
    sink.set_default(Reply::status(503));
    produce(&topic, None, &[], "b").await;
    produce(&topic, None, &[], "c").await;
    sink.wait_for(3, WAIT).await;
    let seen = ids(&sink);
    assert!(seen[1..].iter().all(|id| id == b), "{seen:?}");

    // Stopped while the sink refuses; a record arrives while cebus is down.
    cebus.server.shutdown(Duration::from_secs(5)).await;
    produce(&topic, None, &[], "d").await;

    // Back with the sink up: b, c and d arrive in order, a is not delivered again.
    sink.set_default(Reply::status(202));
    let refused = sink.received().len();
    let cebus = start_with_sources(&yaml).await;
    sink.wait_for(refused + 3, WAIT).await;
    let after: Vec<String> = ids(&sink)[refused..].to_vec();
    assert_eq!(after, [b, c, d], "nothing lost, a committed");
    // The source counts a record once the sink accepted it: d was the last.
    cebus
        .wait_metric(
            &["cebus_source_records_total", "outcome=\"delivered\""],
            3,
            WAIT,
        )
        .await;
    assert_eq!(sink.received().len(), refused + 3, "{:?}", ids(&sink));
    cebus.server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_offset_earliest_reads_the_backlog_and_latest_does_not() {
    let topic = unique("initial");
    produce(&topic, None, &[], "backlog").await;
    let (early, late) = (Sink::start().await, Sink::start().await);
    let yaml = format!(
        "{}---\n{}",
        kafka_source(
            "early",
            &topic,
            &format!("{topic}-early"),
            "earliest",
            &uri_sink(&early)
        ),
        kafka_source(
            "late",
            &topic,
            &format!("{topic}-late"),
            "latest",
            &uri_sink(&late)
        ),
    );
    let cebus = start_with_sources(&yaml).await;
    let got = early.wait_for(1, WAIT).await;
    assert_eq!(got[0].body.as_ref(), b"backlog");

    // `latest` starts at the end of the partition once its group is assigned; when
    // that happens is not observable, so produce until it has seen a record.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut n = 0;
    while late.received().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "latest saw nothing");
        n += 1;
        produce(&topic, None, &[], &format!("live-{n}")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let bodies: Vec<String> = late
        .received()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(
        bodies.iter().all(|b| b.starts_with("live-")),
        "latest must not read the backlog: {bodies:?}"
    );
    // `earliest` has read everything, in order.
    let all = early.wait_for(n + 1, WAIT).await;
    assert_eq!(all[0].body.as_ref(), b"backlog");
    assert_eq!(all[1].body.as_ref(), b"live-1");
    cebus.server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_delivers_a_partition_concurrently_and_commits_contiguously() {
    let topic = unique("unordered");
    for i in 0..5 {
        produce(&topic, None, &[], &format!("r{i}")).await;
    }
    let sink = Sink::start_with(Reply::status(202)).await;
    // The first delivery is held for 3 s: in order, nothing else could arrive
    // before it is answered.
    let hold = Duration::from_secs(3);
    sink.script([Reply::status(202).delay(hold)]);
    let yaml = format!(
        "{}  ordering: unordered\n",
        kafka_source("fast", &topic, &topic, "earliest", &uri_sink(&sink))
    );
    let cebus = start_with_sources(&yaml).await;
    let got = sink.wait_for(5, WAIT).await;
    let spread = got[4].at - got[0].at;
    assert!(spread < hold, "not concurrent: {spread:?}");
    let mut bodies: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["r0", "r1", "r2", "r3", "r4"]);
    // Stopped while one record is still held (the first to arrive, whichever that
    // was): the others were accepted, but the commit point cannot pass the held one,
    // so after a restart the group starts there again: a suffix of r0..r4 that is
    // delivered a second time, the accepted records after the held one included.
    cebus.server.shutdown(Duration::from_secs(5)).await;
    let cebus = start_with_sources(&yaml).await;
    sink.wait_for(6, WAIT).await;
    // How long the redelivered suffix is depends on which record was held, and
    // nothing reports the group's committed offset: watch for a second.
    sink.expect_no_more_than(10, Duration::from_millis(1000))
        .await;
    let mut again: Vec<String> = sink.received()[5..]
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    again.sort();
    let all = ["r0", "r1", "r2", "r3", "r4"];
    assert_eq!(again, all[5 - again.len()..], "not a suffix: {again:?}");
    cebus.server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_waits_for_each_record_of_a_partition() {
    let topic = unique("ordered");
    for i in 0..3 {
        produce(&topic, None, &[], &format!("r{i}")).await;
    }
    let sink = Sink::start_with(Reply::status(202)).await;
    let hold = Duration::from_secs(1);
    sink.script([Reply::status(202).delay(hold)]);
    let yaml = kafka_source("inorder", &topic, &topic, "earliest", &uri_sink(&sink));
    let cebus = start_with_sources(&yaml).await;
    let got = sink.wait_for(3, WAIT).await;
    assert!(
        got[1].at - got[0].at >= hold,
        "r1 sent before r0 was accepted"
    );
    let bodies: Vec<&[u8]> = got.iter().map(|r| r.body.as_ref()).collect();
    assert_eq!(bodies, [b"r0", b"r1", b"r2"]);
    cebus.server.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn validate_lists_kafka_sources_and_reports_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        format!(
            "{}\n---\napiVersion: sources.knative.dev/v1\nkind: KafkaSource\nmetadata:\n  \
             name: orders\nspec:\n  bootstrapServers: [kafka-a:9092, kafka-b:9092]\n  \
             topics: [orders, refunds]\n  ordering: unordered\n  sink:\n{BROKER_SINK}",
            broker_yaml("default", "", &[])
        ),
    )
    .unwrap();
    let out = std::process::Command::new(cebus_e2e::cebus_bin())
        .args(["validate", "-f"])
        .arg(&good)
        .output()
        .expect("run cebus validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "KafkaSource default/orders -> Broker default/default \
             (http://127.0.0.1:8080/default/default)\n    topics [\"orders\", \"refunds\"] from \
             kafka-a:9092,kafka-b:9092 as group cebus-kafkasource-default-orders \
             (initialOffset latest, unordered)"
        ),
        "{stdout}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: sources.knative.dev/v1beta1\nkind: KafkaSource\nmetadata:\n  name: k\n\
         spec:\n  bootstrapServers: [kafka:9092]\n  topics: ['orders/eu']\n  sink:\n    \
         uri: http://127.0.0.1:9/\n",
    )
    .unwrap();
    let out = std::process::Command::new(cebus_e2e::cebus_bin())
        .args(["validate", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "KafkaSource default/k: spec.topics[0]: \"orders/eu\" is not a Kafka topic name"
        ),
        "{stderr}"
    );
}
