//! The NATS channel: appends publish to the broker's stream and wait for
//! JetStream's acks; records come from the broker's durable consumer; the
//! per-trigger cursors are durable consumers of their own (see the module
//! docs of [`crate::nats`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;
use tokio::sync::{Mutex, mpsc, watch};

use super::config::{CONSUMER_NAME, CURSOR_PREFIX, NatsSettings, cursor_consumer};
use super::connect::{Ready, setup};
use super::cursor::{NatsReader, delete_consumer};
use super::fetch::{Held, Outstanding, acker, fetch};
use super::record::encode;
use crate::channel::{Channel, ChannelError, Envelope, Record};
use crate::durable::Feed;
use crate::durable::link::{self, Link, unavailable};
use crate::log::{Cursor, CursorStart, Log};

/// `Retry-After` suggested when the stream is full.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A broker channel on NATS JetStream (see the module docs).
pub struct NatsChannel {
    settings: Arc<NatsSettings>,
    link: watch::Receiver<Link<Ready>>,
    closed: AtomicBool,
    close_tx: watch::Sender<bool>,
    feed: Feed,
    outstanding: Outstanding,
}

impl std::fmt::Debug for NatsChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsChannel")
            .field("stream", &self.settings.stream)
            .field("servers", &self.settings.config.servers)
            .finish_non_exhaustive()
    }
}

impl NatsChannel {
    /// Starts connecting in the background (call inside a tokio runtime) and
    /// returns at once; see the module docs.
    pub fn connect(settings: NatsSettings) -> NatsChannel {
        let settings = Arc::new(settings);
        let (link_tx, link) = watch::channel(Link::Down("connecting to NATS".to_owned()));
        let (close_tx, close_rx) = watch::channel(false);
        let (records_tx, rx) = mpsc::channel(settings.window.clamp(1, 65_536));
        let (acks, acks_rx) = mpsc::unbounded_channel();
        let outstanding = Outstanding::default();
        tokio::spawn(run(
            settings.clone(),
            link_tx,
            close_rx,
            records_tx,
            outstanding.clone(),
            acks_rx,
        ));
        NatsChannel {
            settings,
            link,
            closed: AtomicBool::new(false),
            close_tx,
            feed: Feed::new(rx, acks),
            outstanding,
        }
    }

    /// The settings the channel runs with.
    pub fn settings(&self) -> &NatsSettings {
        &self.settings
    }

    /// The connection once ready, waiting a moment while connecting.
    async fn ready(&self) -> Result<Arc<Ready>, ChannelError> {
        link::ready(&self.link).await
    }
}

impl Channel for NatsChannel {
    async fn append(&self, batch: Vec<Envelope>) -> Result<(), ChannelError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ChannelError::Closed);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let ready = self.ready().await?;
        if ready.client.connection_state() != async_nats::connection::State::Connected {
            return Err(unavailable(format!(
                "not connected to NATS ({})",
                self.settings.config.servers.join(", ")
            )));
        }
        // Publish all, then await every ack: one round trip for the batch. A
        // failure part-way may leave earlier events stored; a producer's retry is
        // de-duplicated by Nats-Msg-Id.
        let mut pending = Vec::with_capacity(batch.len());
        for envelope in &batch {
            let m = encode(envelope);
            let mut headers = HeaderMap::new();
            for (n, v) in m.headers {
                headers.append(n, v);
            }
            let ack = ready
                .js
                .publish_with_headers(self.settings.subject.clone(), headers, m.payload)
                .await
                .map_err(|e| self.refused(&e.to_string()))?;
            pending.push(ack);
        }
        for ack in pending {
            ack.await.map_err(|e| self.refused(&e.to_string()))?;
        }
        Ok(())
    }

    async fn recv(&self) -> Option<Record> {
        self.feed.recv().await
    }

    fn ack(&self, offset: u64) {
        // The acker task sends it; if it is gone the connection is gone and
        // JetStream redelivers after ack_wait.
        self.feed.ack(offset);
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.close_tx.send(true);
    }

    /// Records handed to the consumer and not yet acknowledged; the backlog in
    /// the stream is not counted (it is durable and waits for the next fetch).
    fn pending(&self) -> usize {
        self.outstanding
            .lock()
            .expect("outstanding lock poisoned")
            .len()
    }
}

impl NatsChannel {
    /// A publish JetStream did not acknowledge: full when the stream's limits
    /// refused it, else unavailable.
    fn refused(&self, error: &str) -> ChannelError {
        let lower = error.to_ascii_lowercase();
        if lower.contains("maximum messages") || lower.contains("maximum bytes") {
            return ChannelError::Full {
                capacity: self
                    .settings
                    .config
                    .max_messages
                    .and_then(|m| usize::try_from(m).ok())
                    .unwrap_or(self.settings.window),
                retry_after: RETRY_AFTER,
            };
        }
        unavailable(format!("NATS JetStream did not store the event: {error}"))
    }
}

impl NatsChannel {
    /// The broker's stream, once connected.
    async fn stream(&self) -> Result<(Arc<Ready>, stream::Stream), ChannelError> {
        let ready = self.ready().await?;
        let stream = ready
            .js
            .get_stream(&self.settings.stream)
            .await
            .map_err(|e| unavailable(format!("NATS stream {}: {e}", self.settings.stream)))?;
        Ok((ready, stream))
    }
}

impl Log for NatsChannel {
    type Reader = Box<NatsReader>;

    fn has_cursors(&self) -> bool {
        true
    }

    /// Trigger names of the cursor consumers on this broker's stream.
    async fn stored_cursors(&self) -> Result<Vec<String>, ChannelError> {
        let (_, stream) = self.stream().await?;
        let mut names = stream.consumer_names();
        let mut out = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(|e| unavailable(format!("listing NATS consumers: {e}")))?;
            if let Some(trigger) = name.strip_prefix(CURSOR_PREFIX) {
                out.push(trigger.replace('_', "."));
            }
        }
        Ok(out)
    }

    /// Deletes the consumer of trigger `name`'s cursor, if there is one.
    async fn delete_cursor(&self, name: &str) -> Result<(), ChannelError> {
        let (_, stream) = self.stream().await?;
        delete_consumer(&stream, &cursor_consumer(name)).await
    }

    /// Opens the cursor of trigger `name` (see [`crate::cursor`]): a durable
    /// pull consumer on the stream, `max_ack_pending` = `window`.
    async fn open_cursor(
        &self,
        name: &str,
        start: Option<CursorStart>,
        window: usize,
    ) -> Result<Cursor<Box<NatsReader>>, ChannelError> {
        let (ready, stream) = self.stream().await?;
        let consumer_name = cursor_consumer(name);
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            unavailable(format!(
                "cursor {consumer_name} on stream {}: cannot {what}: {e}",
                self.settings.stream
            ))
        };
        // Where the shared consumer stands: the stream sequence after the last
        // message it was given (lower ones it has, or will get again).
        let shared_next = stream
            .consumer_info(CONSUMER_NAME)
            .await
            .map_err(|e| failed("read the broker consumer", &e))?
            .delivered
            .stream_sequence
            + 1;
        let mut held = Vec::new();
        let (consumer, read_from, first): (jetstream::consumer::PullConsumer, _, _) = match start {
            Some(s) => {
                let read = s.read.get(&0).copied().unwrap_or(shared_next);
                let mut points = s.clone();
                points.read.insert(0, read);
                let resume = points.resume_points().get(&0).copied().unwrap_or(read);
                held = s.held;
                // A leftover consumer of that name would keep its old position.
                delete_consumer(&stream, &consumer_name).await?;
                let mut config = self.settings.consumer_config();
                config.durable_name = Some(consumer_name.clone());
                config.max_ack_pending = i64::try_from(window.max(1)).unwrap_or(i64::MAX);
                config.deliver_policy = jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: resume.max(1),
                };
                let consumer = stream
                    .create_consumer(config)
                    .await
                    .map_err(|e| failed("create it", &e))?;
                (consumer, Some(read), read)
            }
            None => {
                let mut consumer: jetstream::consumer::PullConsumer = stream
                    .get_consumer(&consumer_name)
                    .await
                    .map_err(|e| failed("find it", &e))?;
                let floor = consumer
                    .info()
                    .await
                    .map_err(|e| failed("read it", &e))?
                    .ack_floor
                    .stream_sequence;
                (consumer, None, floor + 1)
            }
        };
        let outstanding = Outstanding::default();
        {
            let mut map = outstanding.lock().expect("outstanding lock poisoned");
            for &(_, pos) in &held {
                map.insert(
                    pos,
                    Held {
                        reply: None,
                        since: Instant::now(),
                        acked: false,
                    },
                );
            }
        }
        let (acks, acks_rx) = mpsc::unbounded_channel();
        let acker = tokio::spawn(acker(
            ready.client.clone(),
            outstanding.clone(),
            acks_rx,
            self.settings.ack_wait,
        ));
        let mut settings = (*self.settings).clone();
        settings.window = window.max(1);
        let (records_tx, rx) = mpsc::channel(settings.window.clamp(1, 1024));
        let (close_tx, close_rx) = watch::channel(false);
        let watched = consumer.clone();
        let task = tokio::spawn(async move {
            fetch(
                &settings,
                consumer,
                close_rx,
                records_tx,
                outstanding,
                false,
                read_from,
            )
            .await;
        });
        Ok(Cursor::new(
            [(0, first)].into(),
            [(0, shared_next)].into(),
            Box::new(NatsReader {
                name: consumer_name,
                feed: Feed::new(rx, acks),
                close_tx,
                task,
                acker,
                client: ready.client.clone(),
                stream,
                consumer: Mutex::new(watched),
            }),
        ))
    }
}

/// The background task: connect, set up, fetch; ack and keep records alive.
async fn run(
    settings: Arc<NatsSettings>,
    link: watch::Sender<Link<Ready>>,
    mut close: watch::Receiver<bool>,
    records: mpsc::Sender<Record>,
    outstanding: Outstanding,
    acks: mpsc::UnboundedReceiver<u64>,
) {
    let Some((ready, consumer)) = setup(&settings, &link, &mut close).await else {
        return;
    };
    tokio::spawn(acker(
        ready.client.clone(),
        outstanding.clone(),
        acks,
        settings.ack_wait,
    ));
    let _ = link.send(Link::Ready(Arc::new(ready)));
    fetch(&settings, consumer, close, records, outstanding, true, None).await;
}
