//! The Kafka channel against a real Kafka (`$KAFKA_BOOTSTRAP`): the channel and
//! cursor contracts, partitions, resuming after a restart, an unreachable
//! Kafka.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cebus_events::Event;

use super::channel::KafkaChannel;
use super::config::KafkaSettings;
use super::consume::COMMIT_INTERVAL;
use super::record::split;
use crate::channel::{Channel, ChannelError, Envelope};
use crate::contract::{self, Bound, run_all};

/// `$KAFKA_BOOTSTRAP`; `scripts/test` starts Kafka and sets it. Never skips.
fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "KAFKA_BOOTSTRAP is not set: run scripts/test, or by hand: \
                 scripts/kafka.sh start && eval \"$(scripts/kafka.sh env)\""
            )
        })
}

/// Settings for a topic no other test (or test run) uses; one partition, so
/// the contract's total order holds.
fn fresh(window: usize) -> KafkaSettings {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!(
        "t{}x{}x{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut s = KafkaSettings::new(&bootstrap(), "contract", &name);
    s.partitions = 1;
    s.window = window;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_channel_passes_the_contract() {
    run_all(
        |capacity| KafkaChannel::connect(fresh(capacity)),
        Bound::Window,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_spread_over_partitions_and_keys_keep_theirs() {
    let mut s = fresh(100);
    s.partitions = 4;
    let c = KafkaChannel::connect(s);
    let keyed = |id: &str| {
        let mut e = Event::with_required(id, "/s", "t");
        e.set("partitionkey", "k1");
        Envelope::new(e)
    };
    c.append((0..8).map(|i| keyed(&format!("k{i}"))).collect())
        .await
        .unwrap();
    let mut parts = HashSet::new();
    let mut ids = Vec::new();
    for _ in 0..8 {
        let r = c.recv().await.unwrap();
        assert_eq!(split(r.offset).0, i32::try_from(r.partition).unwrap());
        parts.insert(r.partition);
        ids.push(r.envelope.event.id().into_owned());
        c.ack(r.offset);
    }
    assert_eq!(parts.len(), 1, "one key, one partition");
    let want: Vec<String> = (0..8).map(|i| format!("k{i}")).collect();
    assert_eq!(ids, want, "a partition keeps the append order");
    c.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_channel_resumes_after_the_contiguous_commit_point() {
    let s = fresh(100);
    let c = KafkaChannel::connect(s.clone());
    c.append(
        (0..5)
            .map(|i| Envelope::new(Event::with_required(&format!("e{i}"), "/s", "t")))
            .collect(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(c.recv().await.unwrap());
    }
    // 0, 1 and 3 done; 2 and 4 not: the commit point is 2.
    for i in [0, 1, 3] {
        c.ack(got[i].offset);
    }
    tokio::time::sleep(COMMIT_INTERVAL * 5).await;
    c.close();
    drop(c);
    // Wait until the old member left the group, then a new consumer resumes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c = KafkaChannel::connect(s);
    let mut again = Vec::new();
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(60), c.recv())
            .await
            .expect("redelivered")
            .unwrap();
        again.push(r.envelope.event.id().into_owned());
        c.ack(r.offset);
    }
    assert_eq!(again, ["e2", "e3", "e4"]);
    c.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_cursors_pass_the_contract() {
    contract::cursors(KafkaChannel::connect(fresh(100))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_kafka_is_unavailable_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = fresh(10);
    s.bootstrap_servers = format!("127.0.0.1:{port}");
    let c = KafkaChannel::connect(s);
    // A hang would hold ingress requests forever: the append must answer.
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        c.append(vec![Envelope::new(Event::with_required("1", "/s", "t"))]),
    )
    .await
    .expect("append answered instead of hanging")
    .unwrap_err();
    assert!(matches!(err, ChannelError::Unavailable { .. }), "{err:?}");
    c.close();
}
