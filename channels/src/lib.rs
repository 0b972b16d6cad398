//! Channels: where a broker stores each accepted event until every matching
//! trigger has had it delivered or dead-lettered. One trait, one implementation per
//! backend (in-memory, NATS JetStream and Kafka; the embedded log later), and one
//! contract suite that every backend must pass.

pub mod binding;
pub mod contract;
pub mod cursor;
pub mod kafka;
pub mod memory;
pub mod nats;

use std::sync::Arc;
use std::time::Duration;

use cebus_events::Event;

pub use cursor::{Cursor, CursorStart};
pub use kafka::{KafkaChannel, KafkaSettings};
pub use memory::MemoryChannel;
pub use nats::{NatsChannel, NatsClientCert, NatsCredentials, NatsSettings, NatsStorage, NatsTls};

/// Hop budget of an event that enters a broker without `knativebrokerttl`.
pub const DEFAULT_TTL: u32 = 255;

/// An accepted event plus the transport headers the ingress forwards to
/// subscribers (`traceparent`, `tracestate`, `knative-*`, `x-request-id`).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The event, exactly as accepted.
    pub event: Event,
    /// Forwarded headers as (lowercase name, value).
    pub headers: Vec<(String, String)>,
    /// Remaining broker hops (`knativebrokerttl`). Kept out of the event so it is
    /// never delivered to subscribers, and carried onto their replies.
    pub ttl: u32,
}

impl Envelope {
    /// An envelope without forwarded headers.
    pub fn new(event: Event) -> Envelope {
        Envelope {
            event,
            headers: Vec::new(),
            ttl: DEFAULT_TTL,
        }
    }
}

/// One stored event as the consumer sees it.
#[derive(Debug, Clone)]
pub struct Record {
    /// Position in the channel; pass it to [`Channel::ack`] when done.
    pub offset: u64,
    /// The ordering lane of the record: the Kafka partition; 0 for backends
    /// with a single total order (memory, NATS). Records of one lane come out in
    /// their stored order, which `ordered` triggers keep.
    pub partition: u32,
    /// The stored envelope, shared by every trigger's delivery without copies.
    pub envelope: Arc<Envelope>,
}

/// Why a channel did not take or give an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelError {
    /// The channel holds as many unacknowledged events as it may; try later.
    #[error("channel is full ({capacity} events awaiting delivery); retry after {retry_after:?}")]
    Full {
        /// Capacity of the channel.
        capacity: usize,
        /// Suggested wait before retrying.
        retry_after: Duration,
    },
    /// A batch larger than the whole channel can never be stored.
    #[error("batch of {len} events exceeds the channel capacity of {capacity}")]
    BatchTooLarge {
        /// Events in the batch.
        len: usize,
        /// Capacity of the channel.
        capacity: usize,
    },
    /// The channel was closed (broker removed or shutting down).
    #[error("channel is closed")]
    Closed,
    /// The backend cannot store events now: NATS unreachable, or it refused the
    /// publish. Nothing is promised about the batch; retry later.
    #[error("channel unavailable: {reason}")]
    Unavailable {
        /// What went wrong, for the producer.
        reason: String,
    },
}

/// What every channel backend provides. A broker has one channel and one consumer
/// (its fan-out loop); positions are acknowledged once every matching trigger is
/// done with the event.
pub trait Channel: Send + Sync {
    /// Stores every event of `batch` or none of them. `Ok` means stored: for
    /// durable backends, durably.
    fn append(&self, batch: Vec<Envelope>)
    -> impl Future<Output = Result<(), ChannelError>> + Send;

    /// The next stored record, in append order; `None` once closed and drained.
    fn recv(&self) -> impl Future<Output = Option<Record>> + Send;

    /// Marks the record at `offset` delivered or dead-lettered for every trigger.
    fn ack(&self, offset: u64);

    /// Stops accepting appends; `recv` returns what is stored, then `None`.
    fn close(&self);

    /// Events stored and not yet acknowledged.
    fn pending(&self) -> usize;
}

/// Enum dispatch over the backends, so brokers hold one concrete type.
#[derive(Debug, Clone)]
pub enum AnyChannel {
    /// The bounded, best-effort in-memory channel.
    Memory(Arc<MemoryChannel>),
    /// The durable NATS JetStream channel.
    Nats(Arc<NatsChannel>),
    /// The durable Kafka channel.
    Kafka(Arc<KafkaChannel>),
}

impl Channel for AnyChannel {
    async fn append(&self, batch: Vec<Envelope>) -> Result<(), ChannelError> {
        match self {
            AnyChannel::Memory(c) => c.append(batch).await,
            AnyChannel::Nats(c) => c.append(batch).await,
            AnyChannel::Kafka(c) => c.append(batch).await,
        }
    }

    async fn recv(&self) -> Option<Record> {
        match self {
            AnyChannel::Memory(c) => c.recv().await,
            AnyChannel::Nats(c) => c.recv().await,
            AnyChannel::Kafka(c) => c.recv().await,
        }
    }

    fn ack(&self, offset: u64) {
        match self {
            AnyChannel::Memory(c) => c.ack(offset),
            AnyChannel::Nats(c) => c.ack(offset),
            AnyChannel::Kafka(c) => c.ack(offset),
        }
    }

    fn close(&self) {
        match self {
            AnyChannel::Memory(c) => c.close(),
            AnyChannel::Nats(c) => c.close(),
            AnyChannel::Kafka(c) => c.close(),
        }
    }

    fn pending(&self) -> usize {
        match self {
            AnyChannel::Memory(c) => c.pending(),
            AnyChannel::Nats(c) => c.pending(),
            AnyChannel::Kafka(c) => c.pending(),
        }
    }
}

impl AnyChannel {
    /// Whether the backend keeps per-trigger cursors (durable logs that can be
    /// read again from a position). Without them a trigger is always fed by the
    /// broker's shared reader.
    pub fn has_cursors(&self) -> bool {
        matches!(self, AnyChannel::Kafka(_) | AnyChannel::Nats(_))
    }

    /// Names of the cursors an earlier run stored and did not delete: triggers
    /// that were reading on their own when it stopped.
    pub async fn stored_cursors(&self) -> Result<Vec<String>, ChannelError> {
        match self {
            AnyChannel::Kafka(c) => c.stored_cursors().await,
            AnyChannel::Nats(c) => c.stored_cursors().await,
            AnyChannel::Memory(_) => Ok(Vec::new()),
        }
    }

    /// Opens cursor `name`: at `start` (stored durably before this returns), or
    /// where it was stored (`None`). At most `window` records (held ones
    /// included) are out unacknowledged.
    pub async fn open_cursor(
        &self,
        name: &str,
        start: Option<CursorStart>,
        window: usize,
    ) -> Result<Cursor, ChannelError> {
        match self {
            AnyChannel::Kafka(c) => c.open_cursor(name, start, window).await,
            AnyChannel::Nats(c) => c.open_cursor(name, start, window).await,
            AnyChannel::Memory(_) => Err(ChannelError::Unavailable {
                reason: "this channel keeps no per-trigger cursors".to_owned(),
            }),
        }
    }

    /// Forgets cursor `name` (its trigger was removed).
    pub async fn delete_cursor(&self, name: &str) -> Result<(), ChannelError> {
        match self {
            AnyChannel::Kafka(c) => c.delete_cursor(name).await,
            AnyChannel::Nats(c) => c.delete_cursor(name).await,
            AnyChannel::Memory(_) => Ok(()),
        }
    }
}

/// The hop budget of a record read back from a durable log. cebus writes the
/// remaining budget in its own header (`header`), already decremented at ingress;
/// a record from another producer has none, so its `knativebrokerttl` attribute
/// (`carried`, taken out of the event) goes through the same rule as at ingress —
/// absent ⇒ `default_ttl`, present ⇒ decremented, exhausted or not a number ⇒ refused.
pub(crate) fn record_ttl(
    header: Option<&str>,
    header_name: &str,
    carried: Option<cebus_events::AttrValue>,
    default_ttl: u32,
) -> Result<u32, String> {
    match header {
        Some(t) => t
            .parse::<u32>()
            .map_err(|_| format!("header {header_name}: {t:?} is not a hop count")),
        None => cebus_triggers::ttl_on_ingress(
            carried.as_ref().map(|v| v.as_str()).as_deref(),
            default_ttl,
        )
        .map_err(|e| format!("attribute {}: {e}", cebus_events::attr::KNATIVE_BROKER_TTL)),
    }
}

/// The consumer side of a backend reader: the records its task hands out, and
/// the acknowledgements going back to the task that sends them (so `ack` stays
/// synchronous). Shared by every channel and cursor that reads in a task.
#[derive(Debug)]
pub(crate) struct Feed {
    rx: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Record>>,
    acks: tokio::sync::mpsc::UnboundedSender<u64>,
}

impl Feed {
    /// Reads from `rx`; acks go to `acks`.
    pub(crate) fn new(
        rx: tokio::sync::mpsc::Receiver<Record>,
        acks: tokio::sync::mpsc::UnboundedSender<u64>,
    ) -> Feed {
        Feed {
            rx: tokio::sync::Mutex::new(rx),
            acks,
        }
    }

    /// The next record; `None` once the task ended.
    pub(crate) async fn recv(&self) -> Option<Record> {
        self.rx.lock().await.recv().await
    }

    /// Acknowledges `position`. If the task is gone, so is its connection, and
    /// the backend gives the record again after a restart (at least once).
    pub(crate) fn ack(&self, position: u64) {
        let _ = self.acks.send(position);
    }
}
