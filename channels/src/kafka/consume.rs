//! The consumer loop of a Kafka channel or cursor: records in, handed out
//! within the window (pausing the partitions when it is full), acks back into
//! the commit trackers, contiguous commit points committed every
//! [`COMMIT_INTERVAL`]; on close, drains the topic (the broker's consumer) or
//! stops at once (a cursor).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cebus_events::time::{Precision, rfc3339};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use super::binding::KafkaRecord;
use super::client::BrokerConsumer;
use super::commit::CommitTracker;
use super::config::KafkaSettings;
use super::record::{decode, position, split};
use crate::channel::Record;

/// How often the contiguous commit points are committed.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// After `close`, the longest time the consumer keeps reading to drain the topic
/// and waits for acks; the rest stays in Kafka for the next run.
const DRAIN_MAX: Duration = Duration::from_secs(30);
/// While draining, how often the consumer asks Kafka whether it is caught up.
const DRAIN_CHECK: Duration = Duration::from_millis(300);

/// The consumer loop's state.
pub(super) struct Consume<'a> {
    settings: &'a KafkaSettings,
    consumer: Arc<BrokerConsumer>,
    /// Records handed out and not acknowledged (shared with `pending`).
    handed: Arc<AtomicUsize>,
    /// Per partition: offsets taken and not finished.
    pub(super) trackers: HashMap<i32, CommitTracker>,
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
    pub(super) fn new(
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

    pub(super) async fn run(
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
        // A record without a usable timestamp arrived now.
        let arrival = m
            .timestamp()
            .to_millis()
            .and_then(|ms| match u64::try_from(ms) {
                Ok(after) => UNIX_EPOCH.checked_add(Duration::from_millis(after)),
                Err(_) => UNIX_EPOCH.checked_sub(Duration::from_millis(ms.unsigned_abs())),
            })
            .unwrap_or_else(SystemTime::now);
        match decode(
            &record,
            self.settings.default_ttl,
            &rfc3339(arrival, Precision::Micros),
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
