//! The NATS JetStream channel: a durable broker channel on a nats-server.
//!
//! The scheme (docs/architecture.md, "NATS JetStream"): one stream per broker
//! (`cebus_<namespace>_<broker>`, subject `cebus.<namespace>.<broker>`, interest
//! retention so acknowledged events leave the stream) and one durable pull
//! consumer (`cebus`) per broker with explicit acks and `max_ack_pending` = the
//! broker's window. `append` publishes each event in binary mode with
//! `Nats-Msg-Id` = `source`+`id` and returns only once JetStream acknowledged every
//! publish of the batch. `recv` yields the consumer's messages as records whose
//! offset is the stream sequence; `ack(offset)` acknowledges that message.
//!
//! Retries and backoff are the broker's (the core's schedule); JetStream
//! redelivery only covers a crash: a record still being delivered gets an
//! in-progress ack (`+WPI`) every third of `ack_wait`, so JetStream never
//! redelivers it while cebus is working on it.
//!
//! Connecting is asynchronous: [`NatsChannel::connect`] returns at once and a task
//! connects, creates or updates the stream and the consumer, and then fetches;
//! until it is ready (and whenever the connection is down) `append` fails with
//! [`ChannelError::Unavailable`], which ingress turns into 503.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use async_nats::{HeaderMap, Subject};
use cebus_events::{AttrValue, attr};
use futures_util::StreamExt;
use tokio::sync::{Mutex, mpsc, watch};

use crate::binding::nats::{self as binding, NatsMessage};
use crate::cursor::{self, Cursor, CursorStart};
use crate::{Channel, ChannelError, DEFAULT_TTL, Envelope, Feed, Record};

/// Credentials and TLS as the broker's ConfigMap gives them (Debug redacts secrets).
pub use cebus_api::{NatsClientCert, NatsCredentials, NatsKeys, NatsTls};

mod connect;

/// Header carrying the remaining hop budget (`knativebrokerttl`) of a stored event.
pub const TTL_HEADER: &str = "cebus-ttl";
/// Header naming the extensions whose values are integers or booleans
/// (`name=integer,other=boolean`): binary mode carries only text, and cebus
/// delivers what it was given, types included.
pub const TYPED_HEADER: &str = "cebus-typed";
/// The durable consumer of a broker's stream.
pub const CONSUMER_NAME: &str = "cebus";
/// Prefix of the durable consumers of per-trigger cursors; the trigger's name
/// follows ([`cursor_consumer`]).
pub const CURSOR_PREFIX: &str = "trigger_";
/// Default time JetStream waits for an ack before it redelivers (after a crash).
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(10);
/// Default duplicate window (`duplicateWindow`).
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Default age limit of an unacknowledged event (`maxAge`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// How long `append` waits for a channel that is still connecting.
const READY_WAIT: Duration = Duration::from_secs(2);
/// `Retry-After` suggested when the stream is full.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest wait between two attempts to set up the stream and consumer.
const SETUP_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// After `close`, the fetch loop ends once no message came for this long and the
/// consumer has nothing pending.
const DRAIN_IDLE: Duration = Duration::from_millis(200);
/// How long closing a cursor waits for each of its steps.
const CURSOR_CLOSE_MAX: Duration = Duration::from_secs(10);

/// Where the stream keeps its messages (`storage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsStorage {
    /// On disk (the default): survives a nats-server restart.
    File,
    /// In the server's memory.
    Memory,
}

/// Everything a NATS channel needs: connection, stream and consumer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// Server URLs (`nats://host:port`, `tls://host:port`), tried in turn.
    pub servers: Vec<String>,
    /// Credentials (Debug output redacts the secrets).
    pub auth: NatsCredentials,
    /// TLS: CA to trust, client certificate, TLS on `nats://` URLs too.
    pub tls: NatsTls,
    /// Where `auth` and `tls` came from, for messages.
    pub keys: &'static NatsKeys,
    /// Stream name.
    pub stream: String,
    /// The stream's only subject, where events are published.
    pub subject: String,
    /// Storage of the stream.
    pub storage: NatsStorage,
    /// Replicas of the stream (1 on a single server).
    pub replicas: usize,
    /// Age after which JetStream drops an event, acknowledged or not.
    pub max_age: Duration,
    /// Size limit of the stream in bytes; beyond it appends fail (503).
    pub max_bytes: Option<i64>,
    /// Message limit of the stream; beyond it appends fail (503).
    pub max_messages: Option<i64>,
    /// Largest message (headers and data) the stream takes.
    pub max_message_size: Option<i32>,
    /// Window in which a second publish with the same `Nats-Msg-Id` is dropped.
    pub duplicate_window: Duration,
    /// Records handed out and not yet acknowledged, at most (`max_ack_pending`).
    pub window: usize,
    /// JetStream's ack wait (redelivery after a crash).
    pub ack_wait: Duration,
    /// Hop budget of an event published by another client without one.
    pub default_ttl: u32,
}

impl NatsSettings {
    /// Defaults for broker `namespace/broker` on `servers`: file storage, one
    /// replica, 24 h, no size limits, a 2 min duplicate window.
    pub fn new(servers: Vec<String>, namespace: &str, broker: &str) -> NatsSettings {
        NatsSettings {
            servers,
            auth: NatsCredentials::None,
            tls: NatsTls::default(),
            keys: &NatsKeys::BROKER,
            stream: stream_name(namespace, broker),
            subject: subject_name(namespace, broker),
            storage: NatsStorage::File,
            replicas: 1,
            max_age: DEFAULT_MAX_AGE,
            max_bytes: None,
            max_messages: None,
            max_message_size: None,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            window: crate::memory::DEFAULT_CAPACITY,
            ack_wait: DEFAULT_ACK_WAIT,
            default_ttl: DEFAULT_TTL,
        }
    }

    /// The JetStream stream configuration these settings describe.
    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![self.subject.clone()],
            // Interest: a message stays until the consumer acknowledged it, so the
            // stream holds the backlog, and its limits bound the backlog.
            retention: stream::RetentionPolicy::Interest,
            // A full stream refuses new events (503) rather than dropping old,
            // unacknowledged ones.
            discard: stream::DiscardPolicy::New,
            storage: match self.storage {
                NatsStorage::File => stream::StorageType::File,
                NatsStorage::Memory => stream::StorageType::Memory,
            },
            num_replicas: self.replicas,
            max_age: self.max_age,
            max_bytes: self.max_bytes.unwrap_or(-1),
            max_messages: self.max_messages.unwrap_or(-1),
            max_message_size: self.max_message_size.unwrap_or(-1),
            duplicate_window: self.duplicate_window,
            ..Default::default()
        }
    }

    /// The durable pull consumer configuration.
    fn consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(CONSUMER_NAME.to_owned()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_ack_pending: i64::try_from(self.window.max(1)).unwrap_or(i64::MAX),
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            // Redelivery is for crashes only; it may happen any number of times.
            max_deliver: -1,
            ..Default::default()
        }
    }
}

/// The stream of broker `namespace/name`: `cebus_<namespace>_<name>` with `.` in
/// the name written `_` (stream names may not contain dots). Injective, because
/// Kubernetes names never contain `_` and namespaces never contain `.`.
pub fn stream_name(namespace: &str, broker: &str) -> String {
    format!("cebus_{namespace}_{}", broker.replace('.', "_"))
}

/// The durable consumer of trigger `name`'s cursor: `trigger_<name>` with `.`
/// written `_` (consumer names may not contain dots); injective, because
/// Kubernetes names never contain `_`.
pub fn cursor_consumer(trigger: &str) -> String {
    format!("{CURSOR_PREFIX}{}", trigger.replace('.', "_"))
}

/// The subject of broker `namespace/name`: `cebus.<namespace>.<name>`.
pub fn subject_name(namespace: &str, broker: &str) -> String {
    format!("cebus.{namespace}.{broker}")
}

/// Whether a header travels with the event to subscribers (as ingress decides).
pub(crate) fn forwarded(name: &str) -> bool {
    name == "traceparent"
        || name == "tracestate"
        || name == "x-request-id"
        || name.starts_with("knative-")
}

/// An envelope as the NATS message cebus publishes: binary mode (`ce-` headers,
/// data as payload), `Nats-Msg-Id`, the hop budget, the extension types, and the
/// forwarded headers under their own names.
pub fn encode(envelope: &Envelope) -> NatsMessage {
    let event = &envelope.event;
    let mut m = binding::encode_binary(event);
    m.headers
        .push((binding::NATS_MSG_ID.to_owned(), binding::msg_id(event)));
    m.headers
        .push((TTL_HEADER.to_owned(), envelope.ttl.to_string()));
    let typed: Vec<String> = event
        .attributes()
        .filter_map(|(name, value)| match value {
            AttrValue::Integer(_) => Some(format!("{name}=integer")),
            AttrValue::Boolean(_) => Some(format!("{name}=boolean")),
            AttrValue::String(_) => None,
        })
        .collect();
    if !typed.is_empty() {
        m.headers.push((TYPED_HEADER.to_owned(), typed.join(",")));
    }
    m.headers.extend(envelope.headers.iter().cloned());
    m
}

/// A stored message back into an envelope, validated as ingress would.
///
/// Messages from other publishers are welcome: without `cebus-ttl`, the hop
/// counter follows ingress's rule (absent ⇒ `default_ttl`; present ⇒ decremented,
/// and ≤ 0 refuses the message), and a missing `knativearrivaltime` is `arrival`
/// (when JetStream stored the message).
pub fn decode(message: &NatsMessage, default_ttl: u32, arrival: &str) -> Result<Envelope, String> {
    let mut event = binding::decode(message).map_err(|e| e.to_string())?;
    if let Some(typed) = message.header(TYPED_HEADER) {
        for (name, kind) in typed.split(',').filter_map(|item| item.split_once('=')) {
            let Some(text) = event.get_str(name).map(|t| t.into_owned()) else {
                continue;
            };
            let value = match kind {
                "integer" => text.parse().ok().map(AttrValue::Integer),
                "boolean" => text.parse().ok().map(AttrValue::Boolean),
                _ => None,
            };
            if let Some(v) = value {
                event.set(name, v);
            }
        }
    }
    let carried = event.remove(attr::KNATIVE_BROKER_TTL);
    let foreign = message.header(TTL_HEADER).is_none();
    let ttl = crate::record_ttl(message.header(TTL_HEADER), TTL_HEADER, carried, default_ttl)?;
    // cebus's own events got theirs at ingress; another publisher's get the time
    // JetStream stored them.
    if foreign && event.get(attr::KNATIVE_ARRIVAL_TIME).is_none() {
        event.set(attr::KNATIVE_ARRIVAL_TIME, arrival);
    }
    cebus_events::validate(&event).map_err(|e| e.to_string())?;
    let headers = message
        .headers
        .iter()
        .filter_map(|(n, v)| {
            let lower = n.to_ascii_lowercase();
            forwarded(&lower).then(|| (lower, v.clone()))
        })
        .collect();
    Ok(Envelope {
        event,
        headers,
        ttl,
    })
}

/// RFC 3339 UTC with microseconds, as ingress writes `knativearrivaltime`.
pub(crate) fn rfc3339_micros(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Where the background task is: connecting, or ready to publish.
#[derive(Clone)]
enum Link {
    /// Not ready; the reason is the last failure.
    Down(String),
    /// Stream and consumer exist.
    Ready(Arc<Ready>),
}

#[derive(Clone)]
struct Ready {
    client: async_nats::Client,
    js: jetstream::Context,
}

/// A record handed out and not yet acknowledged.
#[derive(Debug)]
struct Held {
    /// Where its ack goes; `None` for a record a cursor took over (still being
    /// delivered) that the cursor's consumer has not delivered to it yet.
    reply: Option<Subject>,
    since: Instant,
    /// Acknowledged by the broker before the cursor's consumer delivered it.
    acked: bool,
}

impl Held {
    fn new(reply: Subject) -> Held {
        Held {
            reply: Some(reply),
            since: Instant::now(),
            acked: false,
        }
    }
}

/// The outstanding records by stream sequence.
type Outstanding = Arc<StdMutex<HashMap<u64, Held>>>;

/// A broker channel on NATS JetStream (see the module docs).
pub struct NatsChannel {
    settings: Arc<NatsSettings>,
    link: watch::Receiver<Link>,
    closed: AtomicBool,
    close_tx: watch::Sender<bool>,
    feed: Feed,
    outstanding: Outstanding,
}

impl std::fmt::Debug for NatsChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsChannel")
            .field("stream", &self.settings.stream)
            .field("servers", &self.settings.servers)
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

    /// The connection once ready, waiting up to [`READY_WAIT`] while connecting.
    async fn ready(&self) -> Result<Arc<Ready>, ChannelError> {
        let mut link = self.link.clone();
        let wait =
            tokio::time::timeout(READY_WAIT, link.wait_for(|l| matches!(l, Link::Ready(_)))).await;
        match wait {
            Ok(Ok(l)) => match &*l {
                Link::Ready(r) => Ok(r.clone()),
                Link::Down(reason) => Err(unavailable(reason)),
            },
            _ => match &*self.link.borrow() {
                Link::Ready(r) => Ok(r.clone()),
                Link::Down(reason) => Err(unavailable(reason)),
            },
        }
    }
}

fn unavailable(reason: &str) -> ChannelError {
    ChannelError::Unavailable {
        reason: reason.to_owned(),
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
            return Err(unavailable(&format!(
                "not connected to NATS ({})",
                self.settings.servers.join(", ")
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
                    .max_messages
                    .and_then(|m| usize::try_from(m).ok())
                    .unwrap_or(self.settings.window),
                retry_after: RETRY_AFTER,
            };
        }
        unavailable(&format!("NATS JetStream did not store the event: {error}"))
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
            .map_err(|e| unavailable(&format!("NATS stream {}: {e}", self.settings.stream)))?;
        Ok((ready, stream))
    }

    /// Trigger names of the cursor consumers on this broker's stream.
    pub async fn stored_cursors(&self) -> Result<Vec<String>, ChannelError> {
        let (_, stream) = self.stream().await?;
        let mut names = stream.consumer_names();
        let mut out = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(|e| unavailable(&format!("listing NATS consumers: {e}")))?;
            if let Some(trigger) = name.strip_prefix(CURSOR_PREFIX) {
                out.push(trigger.replace('_', "."));
            }
        }
        Ok(out)
    }

    /// Deletes the consumer of trigger `name`'s cursor, if there is one.
    pub async fn delete_cursor(&self, name: &str) -> Result<(), ChannelError> {
        let (_, stream) = self.stream().await?;
        delete_consumer(&stream, &cursor_consumer(name)).await
    }

    /// Opens the cursor of trigger `name` (see [`crate::cursor`]): a durable
    /// pull consumer on the stream, `max_ack_pending` = `window`.
    pub async fn open_cursor(
        &self,
        name: &str,
        start: Option<CursorStart>,
        window: usize,
    ) -> Result<Cursor, ChannelError> {
        let (ready, stream) = self.stream().await?;
        let consumer_name = cursor_consumer(name);
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            unavailable(&format!(
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
        Ok(Cursor {
            start: [(0, first)].into(),
            shared_start: [(0, shared_next)].into(),
            inner: cursor::Inner::Nats(Box::new(NatsCursor {
                name: consumer_name,
                feed: Feed::new(rx, acks),
                close_tx,
                task,
                acker,
                client: ready.client.clone(),
                stream,
                consumer: Mutex::new(watched),
            })),
        })
    }
}

/// Deletes consumer `name` of `stream`; one that does not exist is fine.
async fn delete_consumer(stream: &stream::Stream, name: &str) -> Result<(), ChannelError> {
    match stream.delete_consumer(name).await {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().to_ascii_lowercase().contains("not found") => Ok(()),
        Err(e) => Err(unavailable(&format!(
            "cannot delete NATS consumer {name}: {e}"
        ))),
    }
}

/// A trigger's own reader on NATS (see [`crate::cursor`]).
pub(crate) struct NatsCursor {
    name: String,
    feed: Feed,
    close_tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    acker: tokio::task::JoinHandle<()>,
    client: async_nats::Client,
    stream: stream::Stream,
    consumer: Mutex<jetstream::consumer::PullConsumer>,
}

impl std::fmt::Debug for NatsCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsCursor")
            .field("consumer", &self.name)
            .finish_non_exhaustive()
    }
}

impl NatsCursor {
    pub(crate) async fn recv(&self) -> Option<Record> {
        self.feed.recv().await
    }

    pub(crate) fn ack(&self, position: u64) {
        self.feed.ack(position);
    }

    /// Whether JetStream holds no message delivered to this consumer and not
    /// acknowledged: after a restart, what the previous run had out comes back
    /// only after `ack_wait`, below positions already read.
    pub(crate) async fn settled(&self) -> bool {
        match self.consumer.lock().await.info().await {
            Ok(info) => info.num_ack_pending == 0,
            Err(_) => false,
        }
    }

    pub(crate) async fn close(self, delete: bool) -> Result<(), ChannelError> {
        let _ = self.close_tx.send(true);
        let _ = tokio::time::timeout(CURSOR_CLOSE_MAX, self.task).await;
        // The acker sends what was acknowledged, then ends with its channel.
        drop(self.feed);
        let _ = tokio::time::timeout(CURSOR_CLOSE_MAX, self.acker).await;
        let _ = tokio::time::timeout(CURSOR_CLOSE_MAX, self.client.flush()).await;
        if delete {
            delete_consumer(&self.stream, &self.name).await?;
        }
        Ok(())
    }
}

/// The background task: connect, set up, fetch; ack and keep records alive.
async fn run(
    settings: Arc<NatsSettings>,
    link: watch::Sender<Link>,
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
    let _ = link.send(Link::Ready(Arc::new(ready.clone())));
    // Keep the link state in step with the connection for error messages.
    fetch(&settings, consumer, close, records, outstanding, true, None).await;
}

/// Connects and creates or updates the stream and the consumer, retrying with
/// backoff until it works or the channel is closed.
async fn setup(
    settings: &NatsSettings,
    link: &watch::Sender<Link>,
    close: &mut watch::Receiver<bool>,
) -> Option<(Ready, jetstream::consumer::PullConsumer)> {
    // A failed connection attempt's error (refused, TLS, authorization) is the
    // reason ingress gives until one succeeds.
    let client = retry(settings, link, close, "NATS connection failed", || {
        connect::connect(settings)
    })
    .await?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(5));
    let consumer = retry(settings, link, close, "NATS JetStream setup failed", || {
        create(settings, &js)
    })
    .await?;
    tracing::info!(stream = %settings.stream, subject = %settings.subject, "NATS JetStream stream and consumer ready");
    Some((Ready { client, js }, consumer))
}

/// Runs `attempt` until it succeeds, with backoff between attempts; each
/// failure becomes the link's reason. `None` once the channel is closed.
async fn retry<T, F, Fut>(
    settings: &NatsSettings,
    link: &watch::Sender<Link>,
    close: &mut watch::Receiver<bool>,
    failed: &str,
    mut attempt: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        if *close.borrow() {
            return None;
        }
        let result = tokio::select! {
            r = attempt() => r,
            _ = close.changed() => return None,
        };
        match result {
            Ok(v) => return Some(v),
            Err(reason) => {
                tracing::warn!(stream = %settings.stream, %reason, "{failed}; retrying");
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

async fn create(
    settings: &NatsSettings,
    js: &jetstream::Context,
) -> Result<jetstream::consumer::PullConsumer, String> {
    let stream = match js.create_or_update_stream(settings.stream_config()).await {
        Ok(_) => js
            .get_stream(&settings.stream)
            .await
            .map_err(|e| format!("NATS JetStream stream {}: {e}", settings.stream))?,
        Err(e) => {
            return Err(format!(
                "cannot create or update NATS JetStream stream {}: {e}",
                settings.stream
            ));
        }
    };
    js.create_consumer_on_stream(settings.consumer_config(), &settings.stream)
        .await
        .map_err(|e| {
            format!(
                "cannot create the consumer {CONSUMER_NAME} on stream {}: {e}",
                settings.stream
            )
        })?;
    stream.get_consumer(CONSUMER_NAME).await.map_err(|e| {
        format!(
            "consumer {CONSUMER_NAME} on stream {}: {e}",
            settings.stream
        )
    })
}

/// Sends acks and in-progress acks: one task, so `Channel::ack` stays sync.
async fn acker(
    client: async_nats::Client,
    outstanding: Outstanding,
    mut acks: mpsc::UnboundedReceiver<u64>,
    ack_wait: Duration,
) {
    let every = (ack_wait / 3).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            offset = acks.recv() => {
                let Some(offset) = offset else { return };
                let reply = {
                    let mut map = outstanding.lock().expect("outstanding lock poisoned");
                    match map.get_mut(&offset) {
                        Some(held) if held.reply.is_none() => {
                            // Not delivered by the consumer yet: acked when it is.
                            held.acked = true;
                            None
                        }
                        Some(_) => map.remove(&offset).and_then(|h| h.reply),
                        None => None,
                    }
                };
                if let Some(reply) = reply
                    && let Err(e) = client.publish(reply, "+ACK".into()).await
                {
                    tracing::warn!(offset, error = %e, "NATS ack not sent; JetStream will redeliver");
                }
            }
            _ = tick.tick() => {
                // Records still being delivered (retries, slow subscribers): tell
                // JetStream to wait another ack_wait instead of redelivering.
                let now = Instant::now();
                let due: Vec<Subject> = outstanding
                    .lock()
                    .expect("outstanding lock poisoned")
                    .values()
                    .filter(|h| now.duration_since(h.since) >= every)
                    .filter_map(|h| h.reply.clone())
                    .collect();
                for reply in due {
                    let _ = client.publish(reply, "+WPI".into()).await;
                }
            }
        }
    }
}

/// Pulls messages and hands them out as records until closed; after `close`, it
/// hands out what the consumer still has, then ends (so `recv` returns `None`).
async fn fetch(
    settings: &NatsSettings,
    mut consumer: jetstream::consumer::PullConsumer,
    mut close: watch::Receiver<bool>,
    records: mpsc::Sender<Record>,
    outstanding: Outstanding,
    drain: bool,
    read_from: Option<u64>,
) {
    let batch = settings.window.clamp(1, 1000);
    'outer: loop {
        let mut messages = match consumer
            .stream()
            .max_messages_per_batch(batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(stream = %settings.stream, error = %e, "NATS pull failed; retrying");
                if *close.borrow() && !has_pending(&mut consumer).await {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            let closing = *close.borrow();
            // A cursor stops at once: what it did not hand out stays in the
            // stream for its next run.
            if closing && !drain {
                break 'outer;
            }
            let next = if closing {
                match tokio::time::timeout(DRAIN_IDLE, messages.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        if has_pending(&mut consumer).await {
                            continue;
                        }
                        break 'outer;
                    }
                }
            } else {
                tokio::select! {
                    n = messages.next() => n,
                    _ = close.changed() => continue,
                }
            };
            match next {
                None => continue 'outer,
                Some(Err(e)) => {
                    tracing::debug!(stream = %settings.stream, error = %e, "NATS pull");
                }
                Some(Ok(m)) => {
                    if let Some(record) = take(settings, m, &outstanding, read_from).await
                        && records.send(record).await.is_err()
                    {
                        break 'outer;
                    }
                }
            }
        }
    }
}

/// Whether the consumer has messages not yet delivered to anyone.
async fn has_pending(consumer: &mut jetstream::consumer::PullConsumer) -> bool {
    match consumer.info().await {
        Ok(info) => info.num_pending > 0,
        Err(_) => false,
    }
}

/// One message into a record, remembered for its ack. A message that is not a
/// valid CloudEvent is logged and terminated (never redelivered).
///
/// A cursor reading from `cursor` (its read position) starts lower, at its
/// resume point: a message below the read position is not handed out — one the
/// cursor took over waits for the broker's ack (or is acked now if that came
/// first), any other was done before the cursor existed and is acked now.
async fn take(
    settings: &NatsSettings,
    m: jetstream::Message,
    outstanding: &Outstanding,
    read_from: Option<u64>,
) -> Option<Record> {
    let (seq, arrival) = match m.info() {
        Ok(info) => (info.stream_sequence, rfc3339_micros(info.published)),
        Err(e) => {
            tracing::warn!(error = %e, "NATS message without JetStream metadata; skipped");
            return None;
        }
    };
    if let Some(read_from) = read_from
        && seq < read_from
    {
        let reply = m.reply.clone()?;
        let ack_now = {
            let mut map = outstanding.lock().expect("outstanding lock poisoned");
            match map.get_mut(&seq) {
                Some(held) if held.acked => {
                    map.remove(&seq);
                    true
                }
                Some(held) => {
                    held.reply = Some(reply);
                    held.since = Instant::now();
                    false
                }
                None => true,
            }
        };
        if ack_now {
            let _ = m.ack().await;
        }
        return None;
    }
    let message = NatsMessage {
        headers: m
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .flat_map(|(n, vs)| {
                vs.iter()
                    .map(move |v| (n.to_string(), v.as_str().to_owned()))
            })
            .collect(),
        payload: m.payload.clone(),
    };
    match decode(&message, settings.default_ttl, &arrival) {
        Ok(envelope) => {
            let reply = m.reply.clone()?;
            outstanding
                .lock()
                .expect("outstanding lock poisoned")
                .insert(seq, Held::new(reply));
            Some(Record {
                offset: seq,
                partition: 0,
                envelope: Arc::new(envelope),
            })
        }
        Err(reason) => {
            tracing::warn!(stream = %settings.stream, seq, %reason, "NATS message is not an acceptable CloudEvent; dropped");
            let _ = m.ack_with(jetstream::AckKind::Term).await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Bound, run_all};
    use cebus_events::Event;
    use std::sync::atomic::AtomicUsize;

    /// `$NATS_URL`; `scripts/test` starts nats-server and sets it. Never skips.
    fn nats_url() -> String {
        std::env::var("NATS_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "NATS_URL is not set: run scripts/test, or by hand: scripts/nats.sh start && \
                 eval \"$(scripts/nats.sh env)\""
                )
            })
    }

    /// Settings for a stream no other test (or test run) uses.
    fn fresh(window: usize) -> NatsSettings {
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
        let mut s = NatsSettings::new(vec![nats_url()], "contract", &name);
        s.window = window;
        s.storage = NatsStorage::Memory;
        s
    }

    #[tokio::test]
    async fn nats_channel_passes_the_contract() {
        run_all(
            |capacity| NatsChannel::connect(fresh(capacity)),
            Bound::Window,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nats_cursors_pass_the_contract() {
        let mut s = fresh(100);
        // A held record comes back after ack_wait: keep the test short.
        s.ack_wait = Duration::from_secs(1);
        crate::contract::cursors(crate::AnyChannel::Nats(Arc::new(NatsChannel::connect(s)))).await;
    }

    #[tokio::test]
    async fn a_stream_at_its_message_limit_refuses_appends_as_full() {
        let mut s = fresh(10);
        s.max_messages = Some(2);
        let c = NatsChannel::connect(s);
        c.append(vec![Envelope::new(Event::with_required("1", "/s", "t"))])
            .await
            .unwrap();
        c.append(vec![Envelope::new(Event::with_required("2", "/s", "t"))])
            .await
            .unwrap();
        let err = c
            .append(vec![Envelope::new(Event::with_required("3", "/s", "t"))])
            .await
            .unwrap_err();
        assert!(matches!(err, ChannelError::Full { .. }), "{err:?}");
        // An acknowledged event leaves the stream (interest retention): room again.
        let r = c.recv().await.unwrap();
        c.ack(r.offset);
        let mut accepted = false;
        for _ in 0..50 {
            if c.append(vec![Envelope::new(Event::with_required("3", "/s", "t"))])
                .await
                .is_ok()
            {
                accepted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(accepted, "an ack frees room in the stream");
    }

    #[tokio::test]
    async fn producer_retries_are_stored_once() {
        let c = NatsChannel::connect(fresh(10));
        let e = Envelope::new(Event::with_required("same", "/s", "t"));
        c.append(vec![e.clone()]).await.unwrap();
        c.append(vec![e.clone()]).await.unwrap();
        c.append(vec![Envelope::new(Event::with_required("next", "/s", "t"))])
            .await
            .unwrap();
        let a = c.recv().await.unwrap();
        let b = c.recv().await.unwrap();
        assert_eq!(a.envelope.event.id(), "same");
        assert_eq!(b.envelope.event.id(), "next", "the retry was de-duplicated");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_not_a_hang() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = fresh(10);
        s.servers = vec![format!("nats://127.0.0.1:{port}")];
        let c = NatsChannel::connect(s);
        let err = c
            .append(vec![Envelope::new(Event::with_required("1", "/s", "t"))])
            .await
            .unwrap_err();
        assert!(matches!(err, ChannelError::Unavailable { .. }), "{err:?}");
        c.close();
    }

    #[test]
    fn names_are_injective_and_valid() {
        assert_eq!(stream_name("team", "orders.v1"), "cebus_team_orders_v1");
        assert_eq!(subject_name("team", "orders.v1"), "cebus.team.orders.v1");
        assert_ne!(stream_name("a", "b-c"), stream_name("a-b", "c"));
    }

    #[test]
    fn envelopes_round_trip_with_types_ttl_and_headers() {
        let mut e = Event::with_required("id-1", "/src", "t");
        e.set("count", AttrValue::Integer(-7));
        e.set("flag", AttrValue::Boolean(true));
        e.set("text", "42");
        e.set(attr::KNATIVE_ARRIVAL_TIME, "2024-01-01T00:00:00.000001Z");
        e.set_data(Some(bytes::Bytes::from_static(b"\x00\xff")));
        let env = Envelope {
            event: e,
            headers: vec![("traceparent".into(), "00-a-b-01".into())],
            ttl: 9,
        };
        let m = encode(&env);
        assert_eq!(m.header(binding::NATS_MSG_ID), Some("4:/srcid-1"));
        assert_eq!(decode(&m, 255, "unused").unwrap(), env);
    }

    #[test]
    fn foreign_messages_follow_the_ingress_hop_rules() {
        let foreign = |ttl: Option<&str>| {
            let mut e = Event::with_required("x", "/py", "t");
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
        let env = decode(&foreign(Some("5")), 17, arrival).unwrap();
        assert_eq!(env.ttl, 4);
        assert!(env.event.get(attr::KNATIVE_BROKER_TTL).is_none());
        assert!(decode(&foreign(Some("1")), 17, arrival).is_err());
        assert!(decode(&foreign(Some("x")), 17, arrival).is_err());
        let mut no_type = binding::encode_binary(&Event::with_required("x", "/py", "t"));
        no_type.headers.retain(|(n, _)| n != "ce-type");
        assert!(
            decode(&no_type, 17, arrival).is_err(),
            "validated like ingress"
        );
    }
}
