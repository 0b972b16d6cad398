//! KafkaSource: a consumer group reads Kafka topics and turns each record into a
//! CloudEvent (pure: [`KafkaPlan::event`]); a record's offset is committed only
//! after the sink accepted its event, retrying with backoff until it does.
//!
//! Offsets: librdkafka auto-commits (every [`AUTO_COMMIT_INTERVAL_MS`] and when the
//! consumer closes) only offsets this module *stored*, and it stores an offset only
//! when every record below it in the partition was accepted by the sink (or was an
//! invalid CloudEvent, skipped with a warning and counted). So a crash or a stop
//! redelivers, never loses: at-least-once.

use prometheus_client::metrics::counter::Counter;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use cebus_api::{KafkaInitialOffset, KafkaOrdering};
use cebus_channels::kafka::binding::{self as binding, KafkaRecord};
use cebus_channels::kafka::{CommitTracker, client_config, consumer_settings};
use cebus_events::{Event, attr};
use jiff::Timestamp;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::sink::{Sender, SinkTarget};
use crate::webhook::Built;

/// `type` of a wrapped record's event (Knative's).
pub const KAFKA_EVENT_TYPE: &str = "dev.knative.kafka.event";
/// Extension carrying the record key (Knative's).
pub const KEY_EXTENSION: &str = "key";
/// Records of one ordered KafkaSource received but not yet accepted, across its
/// partitions; the consumer stops reading when they are all taken.
pub const MAX_BUFFERED_ORDERED: usize = 256;
/// Deliveries of one unordered KafkaSource in flight at once.
pub const MAX_IN_FLIGHT_UNORDERED: usize = 64;
/// First retry delay of a refused delivery; doubles per attempt.
pub const RETRY_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay (a sink's `Retry-After` may ask for up to
/// [`RETRY_AFTER_MAX`]).
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// Longest `Retry-After` honoured.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);
/// How often librdkafka commits the stored offsets.
pub const AUTO_COMMIT_INTERVAL_MS: u32 = 1000;
/// A consumer that did not ask for records this long leaves the group. Long, as
/// the consumer deliberately stops asking while a refusing sink holds every
/// buffered record (backpressure), and rejoining would redeliver them.
pub const MAX_POLL_INTERVAL_MS: u32 = 3_600_000;
/// A consumer that stopped heartbeating (crashed) is dropped from its group after
/// this long (every cebus consumer's), so a restarted cebus gets its partitions
/// back quickly.
pub use cebus_channels::kafka::SESSION_TIMEOUT_MS;

/// `source` of a wrapped record's event (Knative's).
pub fn kafka_source_attr(namespace: &str, name: &str, topic: &str) -> String {
    format!("/apis/v1/namespaces/{namespace}/kafkasources/{name}#{topic}")
}

/// The consumer group of a KafkaSource without `consumerGroup`: stable across
/// restarts, so committed offsets are found again.
pub fn default_consumer_group(namespace: &str, name: &str) -> String {
    format!("cebus-kafkasource-{namespace}-{name}")
}

/// One KafkaSource, ready to run.
#[derive(Debug, Clone)]
pub struct KafkaPlan {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `bootstrap.servers`: the spec's entries joined with `,`.
    pub bootstrap_servers: String,
    /// Topics.
    pub topics: Vec<String>,
    /// Consumer group.
    pub group: String,
    /// Where a group without committed offsets starts.
    pub initial_offset: KafkaInitialOffset,
    /// Ordered or unordered delivery.
    pub ordering: KafkaOrdering,
    /// `ceOverrides.extensions` (wrapped records only).
    pub extensions: BTreeMap<String, String>,
    /// Where events go.
    pub sink: SinkTarget,
}

/// Where a record was read: what a wrapped event's attributes are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The record timestamp in milliseconds since the epoch, when it has one.
    pub timestamp_ms: Option<i64>,
}

/// Why a record was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaSourceError {
    /// The record is a CloudEvent (a `ce_specversion` header or a CloudEvents
    /// `content-type`) but not a valid one.
    #[error("invalid CloudEvent record: {0}")]
    InvalidCloudEvent(String),
}

/// Whether `record` claims to be a CloudEvent in the Kafka binding: a
/// `ce_specversion` header (binary mode) or a `content-type` naming a CloudEvents
/// format (structured mode). Anything else is wrapped, as Knative does, even a
/// value that happens to be a JSON event.
pub fn is_cloudevent(record: &KafkaRecord) -> bool {
    record.header(binding::CE_SPECVERSION).is_some()
        || content_type(record).is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with(cebus_channels::binding::CLOUDEVENTS_MEDIA_TYPE_PREFIX)
        })
}

/// The first `content-type` header (name matched case-insensitively) as
/// non-empty UTF-8 text.
fn content_type(record: &KafkaRecord) -> Option<&str> {
    record
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(binding::CONTENT_TYPE))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

impl KafkaPlan {
    /// The event of a record: a valid CloudEvent (binary or structured binding)
    /// passes through unchanged; any other record is wrapped Knative's way.
    pub fn event(
        &self,
        meta: &RecordMeta,
        record: &KafkaRecord,
    ) -> Result<Built, KafkaSourceError> {
        if is_cloudevent(record) {
            let event = binding::decode(record)
                .map_err(|e| KafkaSourceError::InvalidCloudEvent(e.to_string()))?;
            cebus_events::validate(&event)
                .map_err(|e| KafkaSourceError::InvalidCloudEvent(e.to_string()))?;
            return Ok(Built::PassThrough(event));
        }
        let (p, o) = (meta.partition, meta.offset);
        let mut e = Event::with_required(
            &format!("partition:{p}/offset:{o}"),
            &kafka_source_attr(&self.namespace, &self.name, &meta.topic),
            KAFKA_EVENT_TYPE,
        );
        e.set(attr::SUBJECT, format!("partition:{p}#{o}"));
        if let Some(t) = meta
            .timestamp_ms
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        {
            e.set(attr::TIME, crate::ping::rfc3339(t));
        }
        if let Some(ct) = content_type(record) {
            e.set(attr::DATACONTENTTYPE, ct);
        }
        if let Some(key) = &record.key {
            e.set(KEY_EXTENSION, key_text(key));
        }
        for (k, v) in &self.extensions {
            e.set(k.as_str(), v.as_str());
        }
        e.set_data(record.value.clone());
        Ok(Built::Wrapped(e))
    }

    /// The librdkafka settings of this source's consumer.
    pub fn client_settings(&self) -> Vec<(&'static str, String)> {
        let mut c = consumer_settings(
            &self.bootstrap_servers,
            format!("cebus-kafkasource-{}-{}", self.namespace, self.name),
            &self.group,
            offset_name(self.initial_offset),
        );
        c.extend([
            // Commit only what `store_offsets` stored: after the sink accepted.
            ("enable.auto.commit", "true".to_owned()),
            (
                "auto.commit.interval.ms",
                AUTO_COMMIT_INTERVAL_MS.to_string(),
            ),
            ("max.poll.interval.ms", MAX_POLL_INTERVAL_MS.to_string()),
        ]);
        c
    }
}

/// `earliest` or `latest`, as written in YAML.
pub fn offset_name(o: KafkaInitialOffset) -> &'static str {
    match o {
        KafkaInitialOffset::Earliest => "earliest",
        KafkaInitialOffset::Latest => "latest",
    }
}

/// `ordered` or `unordered`, as written in YAML.
pub fn ordering_name(o: KafkaOrdering) -> &'static str {
    match o {
        KafkaOrdering::Ordered => "ordered",
        KafkaOrdering::Unordered => "unordered",
    }
}

/// A record key as the `key` extension: the text when it is UTF-8 (Knative's
/// default string key type), else standard base64 (the CloudEvents Binary type's
/// text form, as Knative's `byte-array` key type).
pub fn key_text(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) => s.to_owned(),
        Err(_) => base64::engine::general_purpose::STANDARD.encode(key),
    }
}

/// Delay before retry `attempt` (1-based): 100 ms doubling to 30 s, or the sink's
/// `Retry-After` when longer (capped at 5 minutes).
pub fn retry_delay(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let shift = attempt.saturating_sub(1).min(20);
    let backoff = (RETRY_BASE * (1u32 << shift)).min(RETRY_MAX);
    retry_after.map_or(backoff, |ra| ra.min(RETRY_AFTER_MAX).max(backoff))
}

/// Counters of one running KafkaSource (exported on `/metrics` as
/// `cebus_source_records_total{source, outcome}`).
#[derive(Debug, Default)]
pub struct KafkaCounters {
    /// Events the sink accepted.
    pub delivered: Counter,
    /// Records that claimed to be CloudEvents but were invalid: skipped.
    pub invalid: Counter,
}

impl KafkaCounters {
    /// The counters of source `label` in `metrics`.
    pub fn new(metrics: &cebus_broker::metrics::Metrics, label: &str) -> KafkaCounters {
        KafkaCounters {
            delivered: metrics.source(label, "delivered"),
            invalid: metrics.source(label, "skipped"),
        }
    }
}

/// A record as read, owned.
#[derive(Debug, Clone)]
struct Job {
    meta: RecordMeta,
    record: KafkaRecord,
}

/// A record whose event the sink accepted, or that was skipped.
#[derive(Debug)]
struct Done {
    topic: String,
    partition: i32,
    offset: i64,
}

fn owned(msg: &BorrowedMessage<'_>) -> Job {
    let headers = msg
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(Bytes::copy_from_slice).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Job {
        meta: RecordMeta {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp_ms: msg.timestamp().to_millis(),
        },
        record: KafkaRecord {
            key: msg.key().map(Bytes::copy_from_slice),
            headers,
            value: msg.payload().map(Bytes::copy_from_slice),
        },
    }
}

/// What a job needs to be delivered.
#[derive(Clone)]
struct Worker {
    plan: Arc<KafkaPlan>,
    sender: Sender,
    counters: Arc<KafkaCounters>,
    done: mpsc::UnboundedSender<Done>,
    cancel: CancellationToken,
    key: Arc<str>,
}

impl Worker {
    /// Delivers one record until the sink accepts it (reports it done), or until
    /// cancelled (reports nothing: the record is redelivered after a restart).
    async fn handle(&self, job: Job) {
        let done = Done {
            topic: job.meta.topic.clone(),
            partition: job.meta.partition,
            offset: job.meta.offset,
        };
        let event = match self.plan.event(&job.meta, &job.record) {
            Ok(built) => built.into_event(),
            Err(e) => {
                let skipped = self.counters.invalid.inc() + 1;
                tracing::warn!(
                    kafkasource = %self.key, topic = %job.meta.topic,
                    partition = job.meta.partition, offset = job.meta.offset,
                    skipped, error = %e, "record skipped"
                );
                let _ = self.done.send(done);
                return;
            }
        };
        let mut attempt = 0u32;
        loop {
            let sent = tokio::select! {
                () = self.cancel.cancelled() => return,
                r = self.sender.send_once(&self.plan.sink, event.clone(), None, Vec::new()) => r,
            };
            let refusal = match sent {
                Ok(()) => {
                    self.counters.delivered.inc();
                    let _ = self.done.send(done);
                    return;
                }
                Err(r) => r,
            };
            attempt += 1;
            let wait = retry_delay(attempt, refusal.retry_after);
            if attempt == 1 || attempt.is_multiple_of(10) {
                tracing::warn!(
                    kafkasource = %self.key, sink = %self.plan.sink, topic = %done.topic,
                    partition = done.partition, offset = done.offset, attempt, ?wait,
                    reason = %refusal.message, "sink refused the event; retrying (offset not committed)"
                );
            } else {
                tracing::debug!(kafkasource = %self.key, attempt, ?wait, reason = %refusal.message, "retrying");
            }
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Runs one KafkaSource until `cancel`: consumes, delivers, stores offsets.
pub async fn run(
    plan: Arc<KafkaPlan>,
    sender: Sender,
    counters: Arc<KafkaCounters>,
    cancel: CancellationToken,
) {
    let key: Arc<str> = format!("{}/{}", plan.namespace, plan.name).into();
    let mut failures = 0u32;
    while !cancel.is_cancelled() {
        match consume(&plan, &sender, &counters, &cancel, &key).await {
            Ok(()) => return,
            Err(e) => {
                failures += 1;
                let wait = retry_delay(failures + 5, None);
                tracing::error!(kafkasource = %key, error = %e, ?wait, "consumer failed; restarting");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// One consumer's life: returns `Ok` when cancelled, `Err` when it could not
/// be created or subscribed.
async fn consume(
    plan: &Arc<KafkaPlan>,
    sender: &Sender,
    counters: &Arc<KafkaCounters>,
    cancel: &CancellationToken,
    key: &Arc<str>,
) -> Result<(), rdkafka::error::KafkaError> {
    let consumer: StreamConsumer = client_config(&plan.client_settings()).create()?;
    let topics: Vec<&str> = plan.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(kafkasource = %key, topics = ?plan.topics, group = %plan.group, ordering = ?plan.ordering, "consumer subscribed");

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let worker = Worker {
        plan: plan.clone(),
        sender: sender.clone(),
        counters: counters.clone(),
        done: done_tx,
        cancel: cancel.child_token(),
        key: key.clone(),
    };
    let capacity = match plan.ordering {
        KafkaOrdering::Ordered => MAX_BUFFERED_ORDERED,
        KafkaOrdering::Unordered => MAX_IN_FLIGHT_UNORDERED,
    };
    let permits = Arc::new(Semaphore::new(capacity));
    let tasks = TaskTracker::new();
    let mut trackers: HashMap<(String, i32), CommitTracker> = HashMap::new();
    let mut partitions: HashMap<
        (String, i32),
        mpsc::UnboundedSender<(Job, tokio::sync::OwnedSemaphorePermit)>,
    > = HashMap::new();

    let store = |trackers: &mut HashMap<(String, i32), CommitTracker>, d: Done| {
        let tp = (d.topic, d.partition);
        let Some(next) = trackers.get_mut(&tp).and_then(|t| t.finish(d.offset)) else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        if let Err(e) = tpl
            .add_partition_offset(&tp.0, tp.1, Offset::Offset(next))
            .and_then(|()| consumer.store_offsets(&tpl))
        {
            // The partition was revoked meanwhile; its new owner redelivers.
            tracing::debug!(kafkasource = %key, topic = %tp.0, partition = tp.1, error = %e, "offset not stored");
        }
    };

    'run: loop {
        // Capacity first, so a refusing sink stops the reading (bounded memory).
        let permit = loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break 'run,
                Some(d) = done_rx.recv() => store(&mut trackers, d),
                p = permits.clone().acquire_owned() => break p.expect("semaphore never closed"),
            }
        };
        let job = loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break 'run,
                Some(d) = done_rx.recv() => store(&mut trackers, d),
                m = consumer.recv() => match m {
                    Ok(m) => break owned(&m),
                    // Transport and broker errors are reported here while
                    // librdkafka reconnects by itself: log and keep reading.
                    Err(e) => {
                        tracing::warn!(kafkasource = %key, error = %e, "kafka consumer error");
                    }
                },
            }
        };
        let tp = (job.meta.topic.clone(), job.meta.partition);
        trackers
            .entry(tp.clone())
            .or_insert_with(CommitTracker::from_stored_position)
            .start(job.meta.offset);
        match plan.ordering {
            KafkaOrdering::Unordered => {
                let w = worker.clone();
                tasks.spawn(async move {
                    w.handle(job).await;
                    drop(permit);
                });
            }
            KafkaOrdering::Ordered => {
                let queue = partitions.entry(tp).or_insert_with(|| {
                    let (tx, mut rx) =
                        mpsc::unbounded_channel::<(Job, tokio::sync::OwnedSemaphorePermit)>();
                    let w = worker.clone();
                    // One task per partition: its records one at a time, in order.
                    tasks.spawn(async move {
                        while let Some((job, permit)) = rx.recv().await {
                            w.handle(job).await;
                            drop(permit);
                            if w.cancel.is_cancelled() {
                                return;
                            }
                        }
                    });
                    tx
                });
                let _ = queue.send((job, permit));
            }
        }
    }

    // Stop: deliveries in flight end (a retrying one without storing); store what
    // was accepted meanwhile, commit, then leave the group.
    worker.cancel.cancel();
    drop(partitions);
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
    drop(worker);
    while let Ok(d) = done_rx.try_recv() {
        store(&mut trackers, d);
    }
    // Closing blocks in librdkafka (commit, leave group): off the async threads.
    let closing = tokio::task::spawn_blocking(move || {
        if let Err(e) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
            tracing::debug!(error = %e, "final commit");
        }
        drop(consumer);
    });
    let _ = closing.await;
    tracing::info!(kafkasource = %key, "consumer closed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> KafkaPlan {
        KafkaPlan {
            namespace: "shop".into(),
            name: "orders".into(),
            bootstrap_servers: "a:9092,b:9092".into(),
            topics: vec!["orders".into()],
            group: "g".into(),
            initial_offset: KafkaInitialOffset::Earliest,
            ordering: KafkaOrdering::Ordered,
            extensions: BTreeMap::new(),
            sink: SinkTarget::Url("http://sink/".into()),
        }
    }

    fn meta() -> RecordMeta {
        RecordMeta {
            topic: "orders".into(),
            partition: 3,
            offset: 42,
            timestamp_ms: Some(1_717_243_200_123),
        }
    }

    fn record(key: Option<&[u8]>, headers: &[(&str, &[u8])], value: Option<&[u8]>) -> KafkaRecord {
        KafkaRecord {
            key: key.map(Bytes::copy_from_slice),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), Bytes::copy_from_slice(v)))
                .collect(),
            value: value.map(Bytes::copy_from_slice),
        }
    }

    fn wrapped(p: &KafkaPlan, r: &KafkaRecord) -> Event {
        match p.event(&meta(), r).unwrap() {
            Built::Wrapped(e) => e,
            other => panic!("expected a wrapped event, got {other:?}"),
        }
    }

    #[test]
    fn wraps_a_plain_record_knatives_way() {
        let e = wrapped(
            &plan(),
            &record(
                Some(b"order-7"),
                &[("Content-Type", b"application/json")],
                Some(br#"{"total": 12}"#),
            ),
        );
        let attrs: BTreeMap<&str, String> = e
            .attributes()
            .map(|(k, v)| (k, v.as_str().into_owned()))
            .collect();
        assert_eq!(e.specversion(), cebus_events::SpecVersion::V10);
        let want: BTreeMap<&str, String> = [
            ("id", "partition:3/offset:42"),
            (
                "source",
                "/apis/v1/namespaces/shop/kafkasources/orders#orders",
            ),
            ("type", "dev.knative.kafka.event"),
            ("subject", "partition:3#42"),
            ("time", "2024-06-01T12:00:00.123000Z"),
            ("datacontenttype", "application/json"),
            ("key", "order-7"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
        assert_eq!(attrs, want);
        assert_eq!(e.data().map(|d| &d[..]), Some(&br#"{"total": 12}"#[..]));
        cebus_events::validate(&e).unwrap();
    }

    #[test]
    fn key_is_text_when_utf8_else_base64() {
        let cases: [(Option<&[u8]>, Option<&str>); 4] = [
            (Some(b"user-1"), Some("user-1")),
            (Some("clé €".as_bytes()), Some("clé €")),
            (Some(b"\xff\x00\x01"), Some("/wAB")),
            (None, None),
        ];
        for (key, want) in cases {
            let e = wrapped(&plan(), &record(key, &[], Some(b"v")));
            assert_eq!(e.get_str(KEY_EXTENSION).as_deref(), want, "{key:?}");
        }
    }

    #[test]
    fn optional_parts_of_a_wrapped_record() {
        // No content-type, no timestamp, null value: no datacontenttype, time or data.
        let p = plan();
        let mut m = meta();
        m.timestamp_ms = None;
        let e = match p
            .event(&m, &record(None, &[("other", b"x")], None))
            .unwrap()
        {
            Built::Wrapped(e) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(e.get(attr::DATACONTENTTYPE), None);
        assert_eq!(e.get(attr::TIME), None);
        assert_eq!(e.data(), None);
        // An empty value is empty data; a content-type that is not UTF-8 is ignored.
        let e = wrapped(&p, &record(None, &[("content-type", b"\xff")], Some(b"")));
        assert_eq!(e.get(attr::DATACONTENTTYPE), None);
        assert_eq!(e.data().map(Bytes::len), Some(0));
        // ceOverrides on wrapped events, after Knative's attributes (`key` too).
        let mut p = plan();
        p.extensions = [("origin", "kafka"), ("key", "fixed")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        let e = wrapped(&p, &record(Some(b"k"), &[], Some(b"v")));
        assert_eq!(e.get_str("origin").as_deref(), Some("kafka"));
        assert_eq!(e.get_str("key").as_deref(), Some("fixed"));
        // The topic is part of the source.
        let mut m = meta();
        m.topic = "audit.log".into();
        let e = match plan().event(&m, &record(None, &[], Some(b"v"))).unwrap() {
            Built::Wrapped(e) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            e.source(),
            "/apis/v1/namespaces/shop/kafkasources/orders#audit.log"
        );
    }

    #[test]
    fn cloudevent_records_pass_through_unchanged() {
        let mut p = plan();
        p.extensions = [("origin".to_owned(), "kafka".to_owned())].into();
        let binary = record(
            Some(b"k"),
            &[
                ("ce_specversion", b"1.0"),
                ("ce_id", b"evt-1"),
                ("ce_source", b"/orders/service"),
                ("ce_type", b"com.example.order.created"),
                ("ce_time", b"2024-06-01T12:00:00Z"),
                ("ce_partitionkey", b"k"),
                ("content-type", b"application/json"),
            ],
            Some(br#"{"n":1}"#),
        );
        let Built::PassThrough(e) = p.event(&meta(), &binary).unwrap() else {
            panic!("binary CloudEvent not passed through");
        };
        assert_eq!(e, binding::decode(&binary).unwrap(), "unchanged");
        assert_eq!(e.id(), "evt-1");
        assert_eq!(e.get(KEY_EXTENSION), None, "no key extension");
        assert_eq!(e.get("origin"), None, "no overrides on pass-through");

        let json = br#"{"specversion":"1.0","id":"s-1","source":"/s","type":"t","data":{"a":1}}"#;
        let structured = record(
            None,
            &[(
                "content-type",
                b"application/cloudevents+json; charset=utf-8",
            )],
            Some(json),
        );
        let Built::PassThrough(e) = p.event(&meta(), &structured).unwrap() else {
            panic!("structured CloudEvent not passed through");
        };
        assert_eq!(e.id(), "s-1");
        assert_eq!(e.data().map(|d| &d[..]), Some(&br#"{"a":1}"#[..]));

        // A JSON event without content-type is a plain record to Knative: wrapped.
        let e = wrapped(&p, &record(None, &[], Some(json)));
        assert_eq!(e.ty(), KAFKA_EVENT_TYPE);
    }

    #[test]
    fn invalid_cloudevent_records_are_errors() {
        let cases: [KafkaRecord; 4] = [
            // Binary without the required id.
            record(
                None,
                &[
                    ("ce_specversion", b"1.0"),
                    ("ce_source", b"/s"),
                    ("ce_type", b"t"),
                ],
                Some(b"x"),
            ),
            // Unknown spec version.
            record(
                None,
                &[("ce_specversion", b"9.9"), ("ce_id", b"1")],
                Some(b"x"),
            ),
            // Structured but not JSON.
            record(
                None,
                &[("content-type", b"application/cloudevents+json")],
                Some(b"{nope"),
            ),
            // Structured in a format cebus does not read.
            record(
                None,
                &[("content-type", b"application/cloudevents+avro")],
                Some(b"x"),
            ),
        ];
        for r in cases {
            let got = plan().event(&meta(), &r);
            assert!(
                matches!(got, Err(KafkaSourceError::InvalidCloudEvent(_))),
                "{r:?}: {got:?}"
            );
        }
    }

    #[test]
    fn consumer_settings() {
        let s: BTreeMap<&str, String> = plan().client_settings().into_iter().collect();
        assert_eq!(s["bootstrap.servers"], "a:9092,b:9092");
        assert_eq!(s["group.id"], "g");
        assert_eq!(s["auto.offset.reset"], "earliest");
        assert_eq!(s["enable.auto.offset.store"], "false");
        assert_eq!(s["enable.auto.commit"], "true");
        let mut p = plan();
        p.initial_offset = KafkaInitialOffset::Latest;
        let s: BTreeMap<&str, String> = p.client_settings().into_iter().collect();
        assert_eq!(s["auto.offset.reset"], "latest");
        // No security settings: plaintext only.
        assert!(
            s.keys()
                .all(|k| !k.starts_with("ssl") && !k.starts_with("sasl"))
        );
    }

    #[test]
    fn retry_delays_double_cap_and_honour_retry_after() {
        let got: Vec<u64> = (1..=11)
            .map(|n| retry_delay(n, None).as_millis() as u64)
            .collect();
        assert_eq!(
            got,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000
            ]
        );
        assert_eq!(retry_delay(u32::MAX, None), RETRY_MAX);
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(3600))),
            RETRY_AFTER_MAX
        );
        assert_eq!(
            retry_delay(9, Some(Duration::from_millis(1))),
            Duration::from_millis(25600)
        );
    }
}
