//! The Kafka channel: a durable broker channel on Apache Kafka, Knative's `Kafka`
//! broker class.
//!
//! The scheme (docs/architecture.md, "Kafka"): one topic per broker
//! (`knative-broker-<namespace>-<name>`, created if missing) and ONE consumer per
//! broker (group `knative-broker-<namespace>-<name>`) whose position is shared by
//! all the broker's triggers — not Knative's consumer group per trigger, so 1,000
//! triggers cost 1,000 matcher entries, not 1,000 consumers.
//!
//! Write path: each event is a binary-mode record (`ce_` headers, `content-type`,
//! `partitionkey` as the key) plus the hop budget and extension types in the
//! NATS channel's headers ([`TTL_HEADER`], [`TYPED_HEADER`]); the producer is
//! idempotent with `acks=all`, and `append` returns only once Kafka acknowledged
//! every record of the batch.
//!
//! Read path: records are handed out with [`Record::offset`] = partition and
//! Kafka offset packed into one `u64` ([`position`]), and [`Record::partition`]
//! the partition. Auto-commit is off: per partition the set of handed-out,
//! unacknowledged offsets is kept, and the committed offset is the lowest of
//! them (or one past the highest acknowledged), committed every
//! [`COMMIT_INTERVAL`] and on close. So a crash redelivers at most the window
//! plus what was acknowledged in the last interval. At most `window` records are
//! handed out unacknowledged; when the window is full the partitions are paused
//! (the consumer keeps polling, so it stays in its group).
//!
//! Cursors ([`crate::Cursor`]): a trigger that falls behind reads on its own,
//! through a consumer assigned (not subscribed) to every partition whose
//! position is committed under its own group,
//! `cebus/<namespace>/<broker>/<trigger>` ([`KafkaSettings::cursor_prefix`]).
//! The group exists only while the trigger lags; `kafka-consumer-groups.sh
//! --describe` shows its lag.
//!
//! Connecting is asynchronous: [`KafkaChannel::connect`] returns at once and a
//! task creates the clients and the topic and subscribes; until then (and when a
//! produce fails) `append` fails with [`ChannelError::Unavailable`], which ingress
//! turns into 503.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cebus_events::{AttrValue, attr};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use crate::binding::kafka::{self as binding, KafkaRecord};
use crate::cursor::{self, Cursor, CursorStart};
pub use crate::nats::{TTL_HEADER, TYPED_HEADER};
use crate::{Channel, ChannelError, DEFAULT_TTL, Envelope, Feed, Record};

/// Knative's default partition count of a broker topic.
pub const DEFAULT_PARTITIONS: i32 = 10;
/// Default replication factor of a broker topic (1: a single-node Kafka works).
pub const DEFAULT_REPLICATION_FACTOR: i16 = 1;
/// How often the contiguous commit points are committed.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// How long Kafka may take to acknowledge a record before `append` fails (503).
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Producer linger. Every 202 waits for linger plus Kafka's `acks=all` round
/// trip, so linger is paid on every request (a closed loop needs more
/// connections for the same rate); too short a linger sends many tiny produce
/// requests, which costs CPU and a worse tail. Measured at 5,000 events/s with
/// [`FETCH_WAIT_MAX_MS`] (docs/benchmarks.md, "Durable channels"): 5 ms gave an
/// end-to-end p99 of 9 ms and 14,400 events per broker CPU-second, against
/// 25–52 ms and 10,900 with 2 ms; one trigger reached 29,000 events/s with 256
/// connections.
pub const LINGER_MS: u32 = 5;
/// How long Kafka may hold a fetch of the broker's consumer when no record is
/// there (librdkafka's default is 500 ms). With the long wait, the 202s of the
/// same broker had a tail of 55–135 ms at 5,000 events/s; 100 ms cut it to
/// 9–10 ms (measured, docs/benchmarks.md).
pub const FETCH_WAIT_MAX_MS: u32 = 100;
/// `Retry-After` suggested when the producer's queue is full.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long `append` waits for a channel that is still connecting.
const READY_WAIT: Duration = Duration::from_secs(2);
/// Longest wait between two attempts to set up the clients and the topic.
const SETUP_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// After `close`, the longest time the consumer keeps reading to drain the topic
/// and waits for acks; the rest stays in Kafka for the next run.
const DRAIN_MAX: Duration = Duration::from_secs(30);
/// While draining, how often the consumer asks Kafka whether it is caught up.
const DRAIN_CHECK: Duration = Duration::from_millis(300);
/// Bits of a packed position that hold the Kafka offset (2^40 ≈ 10^12 records
/// per partition); the partition number sits above them.
const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
/// Time limit of the metadata, offset and group requests a cursor makes.
const CURSOR_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long closing a cursor waits for its final commit.
const CURSOR_CLOSE_MAX: Duration = Duration::from_secs(10);

/// Everything a Kafka channel needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `bootstrap.servers`: comma-separated `host:port`.
    pub bootstrap_servers: String,
    /// The broker's topic.
    pub topic: String,
    /// The consumer group of the broker's consumer.
    pub group: String,
    /// Prefix of the consumer groups of per-trigger cursors; the trigger's name
    /// follows. `/` cannot occur in Kubernetes names, so the split is unambiguous.
    pub cursor_prefix: String,
    /// Partitions of the topic when cebus creates it.
    pub partitions: i32,
    /// Replication factor of the topic when cebus creates it.
    pub replication_factor: i16,
    /// Largest record value cebus produces (the broker's max event size); the
    /// topic and producer limits are raised to fit it with its headers.
    pub max_message_bytes: usize,
    /// Records handed out and not yet acknowledged, at most.
    pub window: usize,
    /// Time Kafka has to acknowledge a produced record.
    pub delivery_timeout: Duration,
    /// Hop budget of a record produced by another client without one.
    pub default_ttl: u32,
}

impl KafkaSettings {
    /// Defaults for broker `namespace/broker` on `bootstrap_servers`: Knative's
    /// topic name, 10 partitions, replication factor 1.
    pub fn new(bootstrap_servers: &str, namespace: &str, broker: &str) -> KafkaSettings {
        KafkaSettings {
            bootstrap_servers: bootstrap_servers.to_owned(),
            topic: topic_name(namespace, broker),
            group: group_name(namespace, broker),
            cursor_prefix: format!("cebus/{namespace}/{broker}/"),
            partitions: DEFAULT_PARTITIONS,
            replication_factor: DEFAULT_REPLICATION_FACTOR,
            max_message_bytes: 1024 * 1024,
            window: crate::memory::DEFAULT_CAPACITY,
            delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
            default_ttl: DEFAULT_TTL,
        }
    }

    /// The topic's and producer's record size limit: the event plus room for
    /// its headers, and never below Kafka's own default of 1 MiB.
    fn message_max_bytes(&self) -> usize {
        (self.max_message_bytes + 64 * 1024).max(1024 * 1024)
    }

    /// librdkafka settings of the producer.
    pub fn producer_config(&self) -> Vec<(&'static str, String)> {
        vec![
            ("bootstrap.servers", self.bootstrap_servers.clone()),
            ("client.id", format!("cebus-{}", self.topic)),
            // A 202 means stored on every in-sync replica, once, even when the
            // producer retries internally.
            ("enable.idempotence", "true".to_owned()),
            ("acks", "all".to_owned()),
            ("linger.ms", LINGER_MS.to_string()),
            (
                "message.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            ),
            ("message.max.bytes", self.message_max_bytes().to_string()),
            // Back quickly after an outage.
            ("reconnect.backoff.max.ms", "1000".to_owned()),
        ]
    }

    /// librdkafka settings of the broker's consumer.
    pub fn consumer_config(&self) -> Vec<(&'static str, String)> {
        vec![
            ("bootstrap.servers", self.bootstrap_servers.clone()),
            ("client.id", format!("cebus-{}", self.topic)),
            ("group.id", self.group.clone()),
            // Positions move only through the contiguous commits below.
            ("enable.auto.commit", "false".to_owned()),
            ("enable.auto.offset.store", "false".to_owned()),
            // A new group starts at the beginning: events accepted before the
            // consumer joined are delivered, not skipped.
            ("auto.offset.reset", "earliest".to_owned()),
            ("enable.partition.eof", "false".to_owned()),
            // A restarted cebus gets its partitions back within this time after
            // a crash (the old member's session must expire first).
            ("session.timeout.ms", "10000".to_owned()),
            ("heartbeat.interval.ms", "2000".to_owned()),
            // Bound librdkafka's prefetch: the window bounds what cebus holds.
            (
                "queued.min.messages",
                self.window.clamp(1, 10_000).to_string(),
            ),
            ("queued.max.messages.kbytes", "16384".to_owned()),
            // Once that prefetch is full librdkafka waits this long before it
            // fetches again (default 1 s): a 1 s stall whenever cebus drained
            // the queue faster than that, which is the normal case.
            ("fetch.queue.backoff.ms", "10".to_owned()),
            ("fetch.wait.max.ms", FETCH_WAIT_MAX_MS.to_string()),
            ("reconnect.backoff.max.ms", "1000".to_owned()),
        ]
    }
}

/// Knative's topic of broker `namespace/name`: `knative-broker-<namespace>-<name>`.
pub fn topic_name(namespace: &str, broker: &str) -> String {
    format!("knative-broker-{namespace}-{broker}")
}

/// The consumer group of broker `namespace/name` (same text as its topic).
pub fn group_name(namespace: &str, broker: &str) -> String {
    format!("knative-broker-{namespace}-{broker}")
}

/// A partition and an offset packed into a record position.
pub fn position(partition: i32, offset: i64) -> u64 {
    (u64::try_from(partition).unwrap_or(0) << OFFSET_BITS)
        | (u64::try_from(offset).unwrap_or(0) & OFFSET_MASK)
}

/// The partition and offset of a packed position.
pub fn split(position: u64) -> (i32, i64) {
    (
        i32::try_from(position >> OFFSET_BITS).unwrap_or(i32::MAX),
        i64::try_from(position & OFFSET_MASK).unwrap_or(i64::MAX),
    )
}

/// An envelope as the record cebus produces: binary mode, the hop budget, the
/// extension types, and the forwarded headers under their own names.
pub fn encode(envelope: &Envelope) -> KafkaRecord {
    let event = &envelope.event;
    let mut r = binding::encode_binary(event);
    r.headers
        .push((TTL_HEADER.to_owned(), Bytes::from(envelope.ttl.to_string())));
    let typed: Vec<String> = event
        .attributes()
        .filter_map(|(name, value)| match value {
            AttrValue::Integer(_) => Some(format!("{name}=integer")),
            AttrValue::Boolean(_) => Some(format!("{name}=boolean")),
            AttrValue::String(_) => None,
        })
        .collect();
    if !typed.is_empty() {
        r.headers
            .push((TYPED_HEADER.to_owned(), Bytes::from(typed.join(","))));
    }
    r.headers.extend(
        envelope
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), Bytes::copy_from_slice(v.as_bytes()))),
    );
    r
}

/// A stored record back into an envelope, validated as ingress would.
///
/// Records from other producers (kcat, Knative's data plane) are welcome:
/// without `cebus-ttl` the hop counter follows ingress's rule (absent ⇒
/// `default_ttl`; present ⇒ decremented, ≤ 0 refuses the record), and a missing
/// `knativearrivaltime` is `arrival` (the record's timestamp).
pub fn decode(record: &KafkaRecord, default_ttl: u32, arrival: &str) -> Result<Envelope, String> {
    let text = |name: &str| {
        record
            .header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let mut event = binding::decode(record).map_err(|e| e.to_string())?;
    if let Some(typed) = text(TYPED_HEADER) {
        for (name, kind) in typed.split(',').filter_map(|item| item.split_once('=')) {
            let Some(value) = event.get_str(name).map(|t| t.into_owned()) else {
                continue;
            };
            let typed = match kind {
                "integer" => value.parse().ok().map(AttrValue::Integer),
                "boolean" => value.parse().ok().map(AttrValue::Boolean),
                _ => None,
            };
            if let Some(v) = typed {
                event.set(name, v);
            }
        }
    }
    let carried = event.remove(attr::KNATIVE_BROKER_TTL);
    let foreign = record.header(TTL_HEADER).is_none();
    let ttl = crate::record_ttl(
        record
            .header(TTL_HEADER)
            .map(|t| std::str::from_utf8(t).unwrap_or("\u{FFFD}")),
        TTL_HEADER,
        carried,
        default_ttl,
    )?;
    if foreign && event.get(attr::KNATIVE_ARRIVAL_TIME).is_none() {
        event.set(attr::KNATIVE_ARRIVAL_TIME, arrival);
    }
    cebus_events::validate(&event).map_err(|e| e.to_string())?;
    let headers = record
        .headers
        .iter()
        .filter_map(|(n, v)| {
            let lower = n.to_ascii_lowercase();
            let value = std::str::from_utf8(v).ok()?;
            crate::nats::forwarded(&lower).then(|| (lower, value.to_owned()))
        })
        .collect();
    Ok(Envelope {
        event,
        headers,
        ttl,
    })
}

/// The commit point of one partition when records finish out of order: the next
/// offset to consume is the lowest one handed out and not yet finished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitTracker {
    pending: BTreeSet<i64>,
    highest_done: Option<i64>,
    committed: Option<i64>,
}

impl CommitTracker {
    /// A tracker that resumes at `next`: everything below it is done except
    /// what is then [`start`](Self::start)ed (records still held elsewhere).
    pub fn resume_from(next: i64) -> CommitTracker {
        CommitTracker {
            pending: BTreeSet::new(),
            highest_done: next.checked_sub(1).filter(|h| *h >= 0),
            committed: None,
        }
    }

    /// The record at `offset` was taken from Kafka.
    pub fn start(&mut self, offset: i64) {
        self.pending.insert(offset);
    }

    /// The record at `offset` is finished; the new commit point (next offset to
    /// consume) when it moved forward. Unknown offsets are ignored.
    pub fn finish(&mut self, offset: i64) -> Option<i64> {
        if !self.pending.remove(&offset) {
            return None;
        }
        self.highest_done = Some(self.highest_done.map_or(offset, |h| h.max(offset)));
        let next = match self.pending.first() {
            Some(&lowest) => lowest,
            None => self.highest_done? + 1,
        };
        if self.committed.is_some_and(|c| c >= next) {
            return None;
        }
        self.committed = Some(next);
        Some(next)
    }

    /// Records taken and not finished.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }
}

/// Where the background task is.
#[derive(Clone)]
enum Link {
    /// Not ready; the reason is the last failure.
    Down(String),
    /// Topic exists, clients created.
    Ready(Arc<Clients>),
}

/// The clients of a ready channel.
struct Clients {
    producer: FutureProducer,
    /// The broker's shared consumer (its group's committed offsets and the
    /// group list are read through it).
    consumer: Arc<BrokerConsumer>,
    admin: AdminClient<DefaultClientContext>,
}

/// A broker channel on Kafka (see the module docs).
pub struct KafkaChannel {
    settings: Arc<KafkaSettings>,
    link: watch::Receiver<Link>,
    closed: AtomicBool,
    close_tx: watch::Sender<bool>,
    feed: Feed,
    handed: Arc<AtomicUsize>,
}

impl std::fmt::Debug for KafkaChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaChannel")
            .field("topic", &self.settings.topic)
            .field("bootstrap_servers", &self.settings.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

fn unavailable(reason: impl Into<String>) -> ChannelError {
    ChannelError::Unavailable {
        reason: reason.into(),
    }
}

impl KafkaChannel {
    /// Starts connecting in the background (call inside a tokio runtime) and
    /// returns at once; see the module docs.
    pub fn connect(settings: KafkaSettings) -> KafkaChannel {
        let settings = Arc::new(settings);
        let (link_tx, link) = watch::channel(Link::Down(format!(
            "connecting to Kafka at {}",
            settings.bootstrap_servers
        )));
        let (close_tx, close_rx) = watch::channel(false);
        let (records_tx, rx) = mpsc::channel(settings.window.clamp(1, 65_536));
        let (acks, acks_rx) = mpsc::unbounded_channel();
        let handed = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(
            settings.clone(),
            link_tx,
            close_rx,
            records_tx,
            handed.clone(),
            acks_rx,
        ));
        KafkaChannel {
            settings,
            link,
            closed: AtomicBool::new(false),
            close_tx,
            feed: Feed::new(rx, acks),
            handed,
        }
    }

    /// The settings the channel runs with.
    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    /// The clients once ready, waiting up to [`READY_WAIT`] while connecting.
    async fn clients(&self) -> Result<Arc<Clients>, ChannelError> {
        let mut link = self.link.clone();
        let _ =
            tokio::time::timeout(READY_WAIT, link.wait_for(|l| matches!(l, Link::Ready(_)))).await;
        match &*self.link.borrow() {
            Link::Ready(p) => Ok(p.clone()),
            Link::Down(reason) => Err(unavailable(reason.clone())),
        }
    }

    /// A record Kafka did not take: full when the local queue is, else unavailable.
    fn refused(&self, error: &KafkaError) -> ChannelError {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) {
            return ChannelError::Full {
                capacity: self.settings.window,
                retry_after: RETRY_AFTER,
            };
        }
        unavailable(format!(
            "Kafka ({}) did not store the event in topic {}: {error}",
            self.settings.bootstrap_servers, self.settings.topic
        ))
    }
}

impl Channel for KafkaChannel {
    async fn append(&self, batch: Vec<Envelope>) -> Result<(), ChannelError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ChannelError::Closed);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let clients = self.clients().await?;
        let producer = &clients.producer;
        // Enqueue all, then await every acknowledgement: the batch shares produce
        // requests. A failure part-way may leave earlier events stored (a retry by
        // the producer of the batch then duplicates them: at-least-once).
        let mut deliveries = Vec::with_capacity(batch.len());
        for envelope in &batch {
            let r = encode(envelope);
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (key, value) in &r.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_ref()),
                });
            }
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.settings.topic).headers(headers);
            if let Some(k) = &r.key {
                record = record.key(k.as_ref());
            }
            if let Some(v) = &r.value {
                record = record.payload(v.as_ref());
            }
            match producer.send_result(record) {
                Ok(d) => deliveries.push(d),
                Err((e, _)) => return Err(self.refused(&e)),
            }
        }
        for d in deliveries {
            match d.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(self.refused(&e)),
                Err(_) => return Err(unavailable("the Kafka producer was closed")),
            }
        }
        Ok(())
    }

    async fn recv(&self) -> Option<Record> {
        self.feed.recv().await
    }

    fn ack(&self, offset: u64) {
        // The consumer task takes it; if it is gone, so is the consumer, and the
        // uncommitted records are redelivered to the next one.
        self.feed.ack(offset);
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.close_tx.send(true);
    }

    /// Records handed to the consumer and not yet acknowledged; the backlog in
    /// the topic is not counted (it is durable and waits in Kafka).
    fn pending(&self) -> usize {
        self.handed.load(Ordering::Acquire)
    }
}

impl KafkaChannel {
    /// Trigger names of the cursor groups of this broker found in Kafka.
    pub async fn stored_cursors(&self) -> Result<Vec<String>, ChannelError> {
        let clients = self.clients().await?;
        let prefix = self.settings.cursor_prefix.clone();
        let servers = self.settings.bootstrap_servers.clone();
        tokio::task::spawn_blocking(move || {
            let groups = clients
                .consumer
                .fetch_group_list(None, CURSOR_REQUEST_TIMEOUT)
                .map_err(|e| {
                    unavailable(format!("cannot list consumer groups on {servers}: {e}"))
                })?;
            Ok(groups
                .groups()
                .iter()
                .filter_map(|g| g.name().strip_prefix(prefix.as_str()))
                .map(str::to_owned)
                .collect())
        })
        .await
        .map_err(|e| unavailable(format!("listing consumer groups: {e}")))?
    }

    /// Opens the cursor of trigger `name` (see [`crate::cursor`]); `window`
    /// bounds the records it hands out unacknowledged, held ones included.
    pub async fn open_cursor(
        &self,
        name: &str,
        start: Option<CursorStart>,
        window: usize,
    ) -> Result<Cursor, ChannelError> {
        let clients = self.clients().await?;
        let mut settings = (*self.settings).clone();
        settings.group = format!("{}{name}", self.settings.cursor_prefix);
        settings.window = window.max(1);
        let settings = Arc::new(settings);
        let held = start.as_ref().map(|s| s.held.clone()).unwrap_or_default();
        let (consumer, read, shared) = {
            let settings = settings.clone();
            let clients = clients.clone();
            tokio::task::spawn_blocking(move || place_cursor(&settings, &clients, start))
                .await
                .map_err(|e| unavailable(format!("opening a cursor: {e}")))??
        };
        let consumer = Arc::new(consumer);
        let (close_tx, close_rx) = watch::channel(false);
        let (records_tx, rx) = mpsc::channel(settings.window.clamp(1, 1024));
        let (acks, acks_rx) = mpsc::unbounded_channel();
        let (trackers, held_count) = seeded(&read, &held);
        // Held records count as handed out: they are acknowledged here too.
        let handed = Arc::new(AtomicUsize::new(held_count));
        let task = {
            let settings = settings.clone();
            tokio::spawn(async move {
                let mut consume = Consume::new(&settings, consumer.clone(), handed, false);
                consume.trackers = trackers;
                consume.run(close_rx, records_tx, acks_rx).await;
                close_consumer(consumer, &settings.topic).await;
            })
        };
        let lanes = |m: &BTreeMap<i32, i64>| {
            m.iter()
                .map(|(&p, &o)| (u32::try_from(p).unwrap_or(0), position(p, o)))
                .collect()
        };
        Ok(Cursor {
            start: lanes(&read),
            shared_start: lanes(&shared),
            inner: cursor::Inner::Kafka(KafkaCursor {
                group: settings.group.clone(),
                feed: Feed::new(rx, acks),
                close_tx,
                task,
                clients,
            }),
        })
    }

    /// Deletes the consumer group of trigger `name`'s cursor, if there is one.
    pub async fn delete_cursor(&self, name: &str) -> Result<(), ChannelError> {
        let clients = self.clients().await?;
        delete_group(&clients, &format!("{}{name}", self.settings.cursor_prefix)).await
    }
}

/// Deletes consumer group `group`; one that does not exist is fine.
async fn delete_group(clients: &Clients, group: &str) -> Result<(), ChannelError> {
    let opts = AdminOptions::new().request_timeout(Some(CURSOR_REQUEST_TIMEOUT));
    let results = clients
        .admin
        .delete_groups(&[group], &opts)
        .await
        .map_err(|e| unavailable(format!("cannot delete consumer group {group}: {e}")))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
            Err((g, code)) => {
                return Err(unavailable(format!(
                    "cannot delete consumer group {g}: {code}"
                )));
            }
        }
    }
    Ok(())
}

/// The commit trackers of a cursor that reads from `read` while `held` records
/// (below it) are still being delivered, and how many those are.
fn seeded(read: &BTreeMap<i32, i64>, held: &[(u32, u64)]) -> (HashMap<i32, CommitTracker>, usize) {
    let mut trackers: HashMap<i32, CommitTracker> = read
        .iter()
        .map(|(&p, &next)| (p, CommitTracker::resume_from(next)))
        .collect();
    for &(_, pos) in held {
        let (p, o) = split(pos);
        trackers.entry(p).or_default().start(o);
    }
    (trackers, held.len())
}

/// Creates a cursor's consumer and places it: for a new cursor, its resume
/// points are committed (synchronously: the shared reader may move past them
/// as soon as this returns) and it reads from `start.read`; a stored cursor
/// reads from its committed offsets. Lanes `start` does not name, and
/// partitions a stored cursor has no offset for, start where the broker's
/// consumer group stands (or at the beginning); that position of every
/// partition is returned too. Blocking.
fn place_cursor(
    settings: &KafkaSettings,
    clients: &Clients,
    start: Option<CursorStart>,
) -> Result<(BrokerConsumer, Offsets, Offsets), ChannelError> {
    let topic = settings.topic.as_str();
    let failed = |what: &str, e: KafkaError| {
        unavailable(format!(
            "cursor {} on topic {topic}: cannot {what}: {e}",
            settings.group
        ))
    };
    let consumer: BrokerConsumer = client_config(&settings.consumer_config())
        .create_with_context(ConsumerLog {
            topic: settings.topic.clone(),
        })
        .map_err(|e| failed("create the consumer", e))?;
    let metadata = clients
        .consumer
        .fetch_metadata(Some(topic), CURSOR_REQUEST_TIMEOUT)
        .map_err(|e| failed("read the topic's partitions", e))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(unavailable(format!("topic {topic} has no partitions")));
    }
    let all = |offset: Offset| -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            let _ = tpl.add_partition_offset(topic, p, offset);
        }
        tpl
    };
    let offsets = |tpl: &TopicPartitionList| -> HashMap<i32, i64> {
        tpl.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    };
    let mut read: BTreeMap<i32, i64> = match &start {
        Some(s) => s.read.values().map(|&pos| split(pos)).collect(),
        None => offsets(
            &consumer
                .committed_offsets(all(Offset::Invalid), CURSOR_REQUEST_TIMEOUT)
                .map_err(|e| failed("read its committed offsets", e))?,
        )
        .into_iter()
        .collect(),
    };
    // Where the broker's group stands on each partition (where its consumer
    // starts one it has not read yet): its committed offset, or the beginning.
    let committed = offsets(
        &clients
            .consumer
            .committed_offsets(all(Offset::Invalid), CURSOR_REQUEST_TIMEOUT)
            .map_err(|e| failed("read the broker group's offsets", e))?,
    );
    let mut shared = BTreeMap::new();
    for &p in &partitions {
        let at = match committed.get(&p) {
            Some(&o) => o,
            None => {
                clients
                    .consumer
                    .fetch_watermarks(topic, p, CURSOR_REQUEST_TIMEOUT)
                    .map_err(|e| failed("read a partition's watermarks", e))?
                    .0
            }
        };
        shared.insert(p, at);
        read.entry(p).or_insert(at);
    }
    if let Some(s) = &start {
        let mut points = s.clone();
        points.read = read
            .iter()
            .map(|(&p, &o)| (u32::try_from(p).unwrap_or(0), position(p, o)))
            .collect();
        let mut tpl = TopicPartitionList::new();
        for pos in points.resume_points().into_values() {
            let (p, o) = split(pos);
            let _ = tpl.add_partition_offset(topic, p, Offset::Offset(o));
        }
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| failed("store its start", e))?;
    }
    let mut tpl = TopicPartitionList::new();
    for (&p, &o) in &read {
        let _ = tpl.add_partition_offset(topic, p, Offset::Offset(o));
    }
    consumer
        .assign(&tpl)
        .map_err(|e| failed("assign the partitions", e))?;
    Ok((consumer, read, shared))
}

/// Kafka offsets by partition.
type Offsets = BTreeMap<i32, i64>;

/// A trigger's own reader (see [`crate::cursor`]).
pub(crate) struct KafkaCursor {
    group: String,
    feed: Feed,
    close_tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    clients: Arc<Clients>,
}

impl std::fmt::Debug for KafkaCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaCursor")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl KafkaCursor {
    pub(crate) async fn recv(&self) -> Option<Record> {
        self.feed.recv().await
    }

    pub(crate) fn ack(&self, position: u64) {
        self.feed.ack(position);
    }

    pub(crate) async fn close(self, delete: bool) -> Result<(), ChannelError> {
        let _ = self.close_tx.send(true);
        // The task commits what was acknowledged, then closes its consumer.
        if tokio::time::timeout(CURSOR_CLOSE_MAX * 2, self.task)
            .await
            .is_err()
        {
            tracing::warn!(group = %self.group, "Kafka cursor did not stop in time");
        }
        if delete {
            delete_group(&self.clients, &self.group).await?;
        }
        Ok(())
    }
}

/// The background task: set up, then consume until closed and drained.
async fn run(
    settings: Arc<KafkaSettings>,
    link: watch::Sender<Link>,
    mut close: watch::Receiver<bool>,
    records: mpsc::Sender<Record>,
    handed: Arc<AtomicUsize>,
    acks: mpsc::UnboundedReceiver<u64>,
) {
    let Some((producer, consumer, admin)) = setup(&settings, &link, &mut close).await else {
        return;
    };
    let consumer = Arc::new(consumer);
    let _ = link.send(Link::Ready(Arc::new(Clients {
        producer,
        consumer: consumer.clone(),
        admin,
    })));
    Consume::new(&settings, consumer.clone(), handed, true)
        .run(close, records, acks)
        .await;
    // Release the link's clients, so the consumer below is the last one.
    let _ = link.send(Link::Down("the channel is closed".to_owned()));
    close_consumer(consumer, &settings.topic).await;
}

/// Drops a consumer off the async threads, for at most [`CURSOR_CLOSE_MAX`]:
/// librdkafka's close (final commit, leaving the group) blocks, and with Kafka
/// gone it can block for long; the process must still be able to stop.
async fn close_consumer(consumer: Arc<BrokerConsumer>, topic: &str) {
    let close = tokio::task::spawn_blocking(move || drop(consumer));
    if tokio::time::timeout(CURSOR_CLOSE_MAX, close).await.is_err() {
        tracing::warn!(%topic, "Kafka consumer did not close in time; leaving it behind");
    }
}

/// Creates the clients and the topic and subscribes, retrying with backoff
/// until it works or the channel is closed.
async fn setup(
    settings: &KafkaSettings,
    link: &watch::Sender<Link>,
    close: &mut watch::Receiver<bool>,
) -> Option<(
    FutureProducer,
    BrokerConsumer,
    AdminClient<DefaultClientContext>,
)> {
    let mut delay = Duration::from_millis(100);
    loop {
        if *close.borrow() {
            return None;
        }
        match try_setup(settings).await {
            Ok(clients) => {
                tracing::info!(topic = %settings.topic, group = %settings.group, "Kafka topic and consumer ready");
                return Some(clients);
            }
            Err(reason) => {
                tracing::warn!(topic = %settings.topic, %reason, "Kafka setup failed; retrying");
                let _ = link.send(Link::Down(reason));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = close.changed() => return None,
        }
        delay = (delay * 2).min(SETUP_BACKOFF_MAX);
    }
}

fn client_config(settings: &[(&'static str, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in settings {
        c.set(*k, v);
    }
    c
}

async fn try_setup(
    settings: &KafkaSettings,
) -> Result<
    (
        FutureProducer,
        BrokerConsumer,
        AdminClient<DefaultClientContext>,
    ),
    String,
> {
    let servers = &settings.bootstrap_servers;
    let admin: AdminClient<DefaultClientContext> = client_config(&[
        ("bootstrap.servers", servers.clone()),
        ("reconnect.backoff.max.ms", "1000".to_owned()),
    ])
    .create()
    .map_err(|e| format!("Kafka admin client for {servers}: {e}"))?;
    let max_bytes = settings.message_max_bytes().to_string();
    let topic = NewTopic::new(
        &settings.topic,
        settings.partitions,
        TopicReplication::Fixed(i32::from(settings.replication_factor)),
    )
    .set("max.message.bytes", &max_bytes);
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    let results = admin.create_topics([&topic], &opts).await.map_err(|e| {
        format!(
            "cannot create Kafka topic {} on {servers}: {e}",
            settings.topic
        )
    })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(format!(
                    "cannot create Kafka topic {name} on {servers}: {code}"
                ));
            }
        }
    }
    let producer: FutureProducer = client_config(&settings.producer_config())
        .create()
        .map_err(|e| format!("Kafka producer for {servers}: {e}"))?;
    let consumer: BrokerConsumer = client_config(&settings.consumer_config())
        .create_with_context(ConsumerLog {
            topic: settings.topic.clone(),
        })
        .map_err(|e| format!("Kafka consumer for {servers}: {e}"))?;
    consumer
        .subscribe(&[settings.topic.as_str()])
        .map_err(|e| format!("cannot subscribe to Kafka topic {}: {e}", settings.topic))?;
    Ok((producer, consumer, admin))
}

/// The consumer's librdkafka context: logs errors with the topic (an
/// end-of-partition event is not one).
struct ConsumerLog {
    topic: String,
}

impl ClientContext for ConsumerLog {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::warn!(topic = %self.topic, error = %error, %reason, "Kafka consumer error");
        }
    }
}

impl ConsumerContext for ConsumerLog {}

/// The broker's consumer.
type BrokerConsumer = StreamConsumer<ConsumerLog>;

/// The consumer loop's state.
struct Consume<'a> {
    settings: &'a KafkaSettings,
    consumer: Arc<BrokerConsumer>,
    /// Records handed out and not acknowledged (shared with `pending`).
    handed: Arc<AtomicUsize>,
    /// Per partition: offsets taken and not finished.
    trackers: HashMap<i32, CommitTracker>,
    /// Per partition: commit points not yet committed.
    dirty: HashMap<i32, i64>,
    /// Records taken while the window was full (prefetched before the pause).
    overflow: VecDeque<Record>,
    /// Whether the assignment is paused.
    paused: bool,
    /// The broker's consumer drains the topic on close (a cursor stops at once:
    /// what it did not hand out stays for the shared reader or its next run).
    drain: bool,
}

impl<'a> Consume<'a> {
    fn new(
        settings: &'a KafkaSettings,
        consumer: Arc<BrokerConsumer>,
        handed: Arc<AtomicUsize>,
        drain: bool,
    ) -> Consume<'a> {
        Consume {
            settings,
            consumer,
            handed,
            trackers: HashMap::new(),
            dirty: HashMap::new(),
            overflow: VecDeque::new(),
            paused: false,
            drain,
        }
    }

    async fn run(
        mut self,
        mut close: watch::Receiver<bool>,
        records: mpsc::Sender<Record>,
        mut acks: mpsc::UnboundedReceiver<u64>,
    ) {
        let window = self.settings.window.max(1);
        let mut records = Some(records);
        let mut tick = tokio::time::interval(COMMIT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing_since: Option<Instant> = None;
        let consumer = self.consumer.clone();
        let mut last_check = Instant::now();
        loop {
            // Hand out what waits while the window has room.
            while self.handed.load(Ordering::Acquire) < window
                && let Some(tx) = &records
                && let Some(r) = self.overflow.pop_front()
            {
                // Counted before it is visible to `recv`, so `pending` never
                // lags behind what the consumer holds.
                self.handed.fetch_add(1, Ordering::AcqRel);
                match tx.try_send(r) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(r)) => {
                        self.handed.fetch_sub(1, Ordering::AcqRel);
                        self.overflow.push_front(r);
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        self.handed.fetch_sub(1, Ordering::AcqRel);
                        records = None;
                    }
                }
            }
            self.pause_when_full(window);
            if let Some(since) = closing_since {
                let drained = records.is_none();
                if drained && self.handed.load(Ordering::Acquire) == 0 {
                    break;
                }
                if since.elapsed() > DRAIN_MAX {
                    tracing::info!(topic = %self.settings.topic, "Kafka channel closed before draining; the rest stays in the topic");
                    break;
                }
            }
            tokio::select! {
                biased;
                Some(pos) = acks.recv() => self.acked(pos),
                _ = tick.tick() => {
                    self.commit(CommitMode::Async);
                    if closing_since.is_some()
                        && records.is_some()
                        && last_check.elapsed() >= DRAIN_CHECK
                    {
                        last_check = Instant::now();
                        if self.caught_up().await {
                            // Everything stored before close was handed out.
                            records = None;
                        }
                    }
                }
                _ = close.changed(), if closing_since.is_none() => {
                    if !self.drain {
                        break;
                    }
                    closing_since = Some(Instant::now());
                }
                m = consumer.recv(), if records.is_some() => match m {
                    Ok(m) => self.take(&m),
                    // librdkafka reconnects by itself: log and keep reading.
                    Err(e) => tracing::warn!(topic = %self.settings.topic, error = %e, "Kafka consumer error"),
                },
            }
        }
        while let Ok(pos) = acks.try_recv() {
            self.acked(pos);
        }
        self.commit(CommitMode::Sync);
    }

    /// Pauses the assignment when the window is full, resumes when it has room.
    fn pause_when_full(&mut self, window: usize) {
        let full = self.handed.load(Ordering::Acquire) + self.overflow.len() >= window;
        if full == self.paused {
            return;
        }
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let r = if full {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        if let Err(e) = r {
            tracing::debug!(topic = %self.settings.topic, error = %e, "Kafka pause/resume");
        }
        self.paused = full;
    }

    /// Whether every assigned partition was read to its end (its position has
    /// reached the high watermark). Asks Kafka, off the async threads.
    async fn caught_up(&self) -> bool {
        if !self.overflow.is_empty() {
            return false;
        }
        let consumer = self.consumer.clone();
        let topic = self.settings.topic.clone();
        tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_secs(1);
            let Ok(assignment) = consumer.assignment() else {
                return false;
            };
            let Ok(position) = consumer.position() else {
                return false;
            };
            let elements = assignment.elements();
            !elements.is_empty()
                && elements.iter().all(|e| {
                    let p = e.partition();
                    let Ok((low, high)) = consumer.fetch_watermarks(&topic, p, timeout) else {
                        return false;
                    };
                    let offset_of = |tpl: &TopicPartitionList| match tpl
                        .find_partition(&topic, p)
                        .map(|e| e.offset())
                    {
                        Some(Offset::Offset(o)) => Some(o),
                        _ => None,
                    };
                    // Nothing read yet from this partition: it starts at its
                    // committed offset, or at the beginning.
                    let at = offset_of(&position).unwrap_or_else(|| {
                        consumer
                            .committed(timeout)
                            .ok()
                            .and_then(|c| offset_of(&c))
                            .unwrap_or(low)
                    });
                    at >= high
                })
        })
        .await
        .unwrap_or(false)
    }

    /// One Kafka record in: tracked for the commit point, then handed out (or
    /// kept until the window has room). An invalid record is logged and skipped.
    fn take(&mut self, m: &BorrowedMessage<'_>) {
        let (partition, offset) = (m.partition(), m.offset());
        self.trackers.entry(partition).or_default().start(offset);
        let record = KafkaRecord {
            key: m.key().map(Bytes::copy_from_slice),
            headers: m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                h.value.map(Bytes::copy_from_slice).unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            value: m.payload().map(Bytes::copy_from_slice),
        };
        let arrival = m
            .timestamp()
            .to_millis()
            .and_then(|ms| {
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
            })
            .unwrap_or_else(time::OffsetDateTime::now_utc);
        match decode(
            &record,
            self.settings.default_ttl,
            &crate::nats::rfc3339_micros(arrival),
        ) {
            Ok(envelope) => self.overflow.push_back(Record {
                offset: position(partition, offset),
                partition: u32::try_from(partition).unwrap_or(0),
                envelope: Arc::new(envelope),
            }),
            Err(reason) => {
                tracing::warn!(topic = %self.settings.topic, partition, offset, %reason, "Kafka record is not an acceptable CloudEvent; skipped");
                self.finish(partition, offset);
            }
        }
    }

    fn acked(&mut self, pos: u64) {
        self.handed.fetch_sub(1, Ordering::AcqRel);
        let (partition, offset) = split(pos);
        self.finish(partition, offset);
    }

    fn finish(&mut self, partition: i32, offset: i64) {
        if let Some(next) = self
            .trackers
            .get_mut(&partition)
            .and_then(|t| t.finish(offset))
        {
            self.dirty.insert(partition, next);
        }
    }

    /// Commits the commit points that moved. A partition revoked meanwhile fails
    /// to commit; its new owner redelivers from the last committed offset.
    fn commit(&mut self, mode: CommitMode) {
        if self.dirty.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (&p, &next) in &self.dirty {
            if let Err(e) = tpl.add_partition_offset(&self.settings.topic, p, Offset::Offset(next))
            {
                tracing::debug!(error = %e, "Kafka commit point");
            }
        }
        self.dirty.clear();
        if let Err(e) = self.consumer.commit(&tpl, mode) {
            tracing::debug!(topic = %self.settings.topic, error = %e, "Kafka commit failed; records after the last commit may be redelivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Bound, run_all};
    use cebus_events::Event;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicUsize;

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
        crate::contract::cursors(crate::AnyChannel::Kafka(Arc::new(KafkaChannel::connect(
            fresh(100),
        ))))
        .await;
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

    #[test]
    fn positions_pack_partition_and_offset() {
        for (p, o) in [(0, 0), (9, 12_345), (1023, (1 << 40) - 1)] {
            assert_eq!(split(position(p, o)), (p, o));
        }
        assert!(position(0, 5) < position(0, 6));
        assert_eq!(topic_name("ns", "b"), "knative-broker-ns-b");
    }

    #[test]
    fn commit_point_is_contiguous() {
        let mut t = CommitTracker::default();
        for o in 10..15 {
            t.start(o);
        }
        assert_eq!(
            t.finish(11),
            Some(10),
            "10 is still pending: the point stays there"
        );
        assert_eq!(t.finish(10), Some(12));
        assert_eq!(t.finish(14), None);
        assert_eq!(t.finish(12), Some(13));
        assert_eq!(t.finish(13), Some(15));
        assert_eq!(t.finish(13), None, "finishing twice is ignored");
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn envelopes_round_trip_in_binary_mode() {
        let mut e = Event::with_required("id-1", "/src", "t");
        e.set("count", AttrValue::Integer(-7));
        e.set("flag", AttrValue::Boolean(true));
        e.set("partitionkey", "order-7");
        e.set(attr::KNATIVE_ARRIVAL_TIME, "2024-01-01T00:00:00.000001Z");
        e.set_data(Some(bytes::Bytes::from_static(b"\x00\xff")));
        let env = Envelope {
            event: e,
            headers: vec![("traceparent".into(), "00-a-b-01".into())],
            ttl: 9,
        };
        let r = encode(&env);
        assert_eq!(r.key.as_deref(), Some(&b"order-7"[..]));
        assert_eq!(r.header("ce_id").map(|v| v.as_ref()), Some(&b"id-1"[..]));
        assert_eq!(r.header(TTL_HEADER).map(|v| v.as_ref()), Some(&b"9"[..]));
        assert_eq!(decode(&r, 255, "unused").unwrap(), env);
    }

    #[test]
    fn foreign_records_follow_the_ingress_hop_rules() {
        let foreign = |ttl: Option<&str>| {
            let mut e = Event::with_required("x", "/kcat", "t");
            if let Some(t) = ttl {
                e.set(attr::KNATIVE_BROKER_TTL, t);
            }
            binding::encode_binary(&e)
        };
        let arrival = "2024-05-01T10:00:00.000000Z";
        let env = decode(&foreign(None), 17, arrival).unwrap();
        assert_eq!(env.ttl, 17);
        assert_eq!(
            env.event.get_str(attr::KNATIVE_ARRIVAL_TIME).as_deref(),
            Some(arrival)
        );
        assert_eq!(decode(&foreign(Some("5")), 17, arrival).unwrap().ttl, 4);
        assert!(decode(&foreign(Some("1")), 17, arrival).is_err());
        let mut no_type = binding::encode_binary(&Event::with_required("x", "/k", "t"));
        no_type.headers.retain(|(n, _)| n != "ce_type");
        assert!(decode(&no_type, 17, arrival).is_err());
    }

    #[test]
    fn producer_and_consumer_settings() {
        let s = KafkaSettings::new("k:9092", "ns", "b");
        let p: HashMap<_, _> = s.producer_config().into_iter().collect();
        assert_eq!(p["acks"], "all");
        assert_eq!(p["enable.idempotence"], "true");
        let c: HashMap<_, _> = s.consumer_config().into_iter().collect();
        assert_eq!(c["enable.auto.commit"], "false");
        assert_eq!(c["group.id"], "knative-broker-ns-b");
        assert_eq!(c["auto.offset.reset"], "earliest");
    }
}
