//! The Kafka channel: appends produce to the broker's topic and wait for
//! Kafka's acknowledgement; records come from the broker's consumer task; the
//! per-trigger cursors are consumer groups of their own (see the module docs
//! of [`crate::kafka`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use tokio::sync::{mpsc, watch};

use super::client::close_consumer;
use super::config::KafkaSettings;
use super::connect::{Clients, setup};
use super::consume::Consume;
use super::cursor::{CURSOR_REQUEST_TIMEOUT, KafkaReader, delete_group, place_cursor, seeded};
use super::record::{encode, position};
use crate::channel::{Channel, ChannelError, Envelope, Record};
use crate::durable::Feed;
use crate::durable::link::{self, Link, unavailable};
use crate::log::{Cursor, CursorStart, Log};

/// `Retry-After` suggested when the producer's queue is full.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A broker channel on Kafka (see the module docs).
pub struct KafkaChannel {
    settings: Arc<KafkaSettings>,
    link: watch::Receiver<Link<Clients>>,
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

    /// The clients once ready, waiting a moment while connecting.
    async fn clients(&self) -> Result<Arc<Clients>, ChannelError> {
        link::ready(&self.link).await
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

impl Log for KafkaChannel {
    type Reader = KafkaReader;

    fn has_cursors(&self) -> bool {
        true
    }

    /// Trigger names of the cursor groups of this broker found in Kafka.
    async fn stored_cursors(&self) -> Result<Vec<String>, ChannelError> {
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

    /// Opens the cursor of trigger `name` (see [`crate::log`]); `window`
    /// bounds the records it hands out unacknowledged, held ones included.
    async fn open_cursor(
        &self,
        name: &str,
        start: Option<CursorStart>,
        window: usize,
    ) -> Result<Cursor<KafkaReader>, ChannelError> {
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
        Ok(Cursor::new(
            lanes(&read),
            lanes(&shared),
            KafkaReader {
                group: settings.group.clone(),
                feed: Feed::new(rx, acks),
                close_tx,
                task,
                clients,
            },
        ))
    }

    /// Deletes the consumer group of trigger `name`'s cursor, if there is one.
    async fn delete_cursor(&self, name: &str) -> Result<(), ChannelError> {
        let clients = self.clients().await?;
        delete_group(&clients, &format!("{}{name}", self.settings.cursor_prefix)).await
    }
}

/// The background task: set up, then consume until closed and drained.
async fn run(
    settings: Arc<KafkaSettings>,
    link: watch::Sender<Link<Clients>>,
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
