//! The channel: what every backend provides to the broker — store a batch of
//! envelopes, hand out records in order, take acknowledgements — and the values
//! that cross it ([`Envelope`], [`Record`], [`ChannelError`]).

use std::sync::Arc;
use std::time::Duration;

use cebus_events::Event;

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

    /// Stores `batch` like [`append`](Channel::append) but hands each record
    /// straight to `route`, in offset order, instead of queueing it for
    /// [`recv`](Channel::recv) — when the backend can (a channel with no durable
    /// store to wait for): the broker then fans an event out on the thread that
    /// took it in. A backend that cannot gives the batch back untouched
    /// (`Err`), and the caller appends it.
    fn try_append_inline(
        &self,
        batch: Vec<Envelope>,
        route: &mut dyn FnMut(Record),
    ) -> Result<Result<(), ChannelError>, Vec<Envelope>> {
        let _ = route;
        Err(batch)
    }
}
