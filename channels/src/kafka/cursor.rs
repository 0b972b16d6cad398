//! A Kafka cursor: a trigger's own consumer, assigned (not subscribed) to every
//! partition, its position committed under its own group — placed at its
//! start, read by the same loop as the broker's consumer, deleted with its
//! group.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::client::{BrokerConsumer, CLOSE_MAX, ConsumerLog, client_config};
use super::commit::CommitTracker;
use super::config::KafkaSettings;
use super::connect::Clients;
use super::record::{position, split};
use crate::channel::{ChannelError, Record};
use crate::durable::Feed;
use crate::durable::link::unavailable;
use crate::log::{CursorReader, CursorStart};

/// Time limit of the metadata, offset and group requests a cursor makes.
pub(super) const CURSOR_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Deletes consumer group `group`; one that does not exist is fine.
pub(super) async fn delete_group(clients: &Clients, group: &str) -> Result<(), ChannelError> {
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
pub(super) fn seeded(
    read: &BTreeMap<i32, i64>,
    held: &[(u32, u64)],
) -> (HashMap<i32, CommitTracker>, usize) {
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
pub(super) fn place_cursor(
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
pub(super) type Offsets = BTreeMap<i32, i64>;

/// A trigger's own reader (see [`crate::log`]).
pub struct KafkaReader {
    pub(super) group: String,
    pub(super) feed: Feed,
    pub(super) close_tx: watch::Sender<bool>,
    pub(super) task: tokio::task::JoinHandle<()>,
    pub(super) clients: Arc<Clients>,
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl CursorReader for KafkaReader {
    async fn recv(&self) -> Option<Record> {
        self.feed.recv().await
    }

    fn ack(&self, position: u64) {
        self.feed.ack(position);
    }

    async fn close(self, delete: bool) -> Result<(), ChannelError> {
        let _ = self.close_tx.send(true);
        // The task commits what was acknowledged, then closes its consumer.
        if tokio::time::timeout(CLOSE_MAX * 2, self.task)
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
