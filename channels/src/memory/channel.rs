//! The in-memory channel: bounded and best-effort. Events live in process memory
//! until acknowledged; a crash or restart loses them (use a durable channel when
//! that matters). The bound is on unacknowledged events, so a lagging trigger
//! eventually turns into 503 backpressure at ingress, never into unbounded memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};

use crate::channel::{Channel, ChannelError, Envelope, Record};
use crate::log::{Log, NoCursor};

/// Default number of unacknowledged events a memory channel holds.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// Suggested `Retry-After` when the channel is full.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Bounded in-memory channel with a single consumer.
#[derive(Debug)]
pub struct MemoryChannel {
    capacity: usize,
    /// Appended and not yet acknowledged; reserved before sending so the
    /// unbounded queue below can never exceed `capacity`.
    pending: AtomicUsize,
    next_offset: AtomicU64,
    closed: AtomicBool,
    // The sender is dropped on close so `recv` ends after draining.
    tx: std::sync::Mutex<Option<mpsc::UnboundedSender<Record>>>,
    rx: Mutex<mpsc::UnboundedReceiver<Record>>,
}

impl MemoryChannel {
    /// A channel holding at most `capacity` unacknowledged events (at least 1).
    pub fn new(capacity: usize) -> MemoryChannel {
        let (tx, rx) = mpsc::unbounded_channel();
        MemoryChannel {
            capacity: capacity.max(1),
            pending: AtomicUsize::new(0),
            next_offset: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            tx: std::sync::Mutex::new(Some(tx)),
            rx: Mutex::new(rx),
        }
    }

    /// Reserves room for `n` events, all or nothing.
    fn reserve(&self, n: usize) -> Result<(), ChannelError> {
        if n > self.capacity {
            return Err(ChannelError::BatchTooLarge {
                len: n,
                capacity: self.capacity,
            });
        }
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (p + n <= self.capacity).then_some(p + n)
            })
            .map(|_| ())
            .map_err(|_| ChannelError::Full {
                capacity: self.capacity,
                retry_after: FULL_RETRY_AFTER,
            })
    }
}

impl MemoryChannel {
    /// Stores `batch` like [`Channel::append`] but hands each record straight to
    /// `route`, in offset order, instead of queueing it for [`Channel::recv`]:
    /// the broker fans an event out on the thread that took it in, with no task
    /// hand-off in between. The bound is the same: a record counts against the
    /// capacity until [`Channel::ack`].
    ///
    /// Records of one call reach `route` in their order; records of calls made
    /// at the same time have no order between them, as with `append`.
    pub fn append_inline(
        &self,
        batch: Vec<Envelope>,
        mut route: impl FnMut(Record),
    ) -> Result<(), ChannelError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ChannelError::Closed);
        }
        let n = batch.len();
        self.reserve(n)?;
        let first = self.next_offset.fetch_add(n as u64, Ordering::Relaxed);
        for (offset, envelope) in (first..).zip(batch) {
            route(Record {
                partition: 0,
                offset,
                envelope: Arc::new(envelope),
            });
        }
        Ok(())
    }
}

impl Default for MemoryChannel {
    fn default() -> Self {
        MemoryChannel::new(DEFAULT_CAPACITY)
    }
}

impl Channel for MemoryChannel {
    async fn append(&self, batch: Vec<Envelope>) -> Result<(), ChannelError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ChannelError::Closed);
        }
        let n = batch.len();
        self.reserve(n)?;
        let guard = self.tx.lock().expect("memory channel sender lock poisoned");
        let Some(tx) = guard.as_ref() else {
            self.pending.fetch_sub(n, Ordering::AcqRel);
            return Err(ChannelError::Closed);
        };
        // Offsets are taken under the sender lock so the queue order is offset order.
        for envelope in batch {
            let offset = self.next_offset.fetch_add(1, Ordering::Relaxed);
            let record = Record {
                partition: 0,
                offset,
                envelope: Arc::new(envelope),
            };
            if tx.send(record).is_err() {
                // The receiver only goes away with the channel itself.
                return Err(ChannelError::Closed);
            }
        }
        Ok(())
    }

    async fn recv(&self) -> Option<Record> {
        self.rx.lock().await.recv().await
    }

    fn ack(&self, _offset: u64) {
        // In memory there is nothing to commit: acknowledging frees capacity.
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1));
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.tx
            .lock()
            .expect("memory channel sender lock poisoned")
            .take();
    }

    fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    fn try_append_inline(
        &self,
        batch: Vec<Envelope>,
        route: &mut dyn FnMut(Record),
    ) -> Result<Result<(), ChannelError>, Vec<Envelope>> {
        Ok(self.append_inline(batch, route))
    }
}

/// No per-trigger cursors: events live only until acknowledged.
impl Log for MemoryChannel {
    type Reader = NoCursor;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_channel_passes_the_contract() {
        crate::contract::run_all(MemoryChannel::new, crate::contract::Bound::Store).await;
    }

    fn batch(ids: &[&str]) -> Vec<Envelope> {
        ids.iter()
            .map(|id| Envelope::new(cebus_events::Event::with_required(id, "/t", "t")))
            .collect()
    }

    #[test]
    fn inline_records_come_in_order_and_hold_capacity_until_acked() {
        let ch = MemoryChannel::new(3);
        let mut seen = Vec::new();
        ch.append_inline(batch(&["a", "b"]), |r| seen.push(r))
            .unwrap();
        ch.append_inline(batch(&["c"]), |r| seen.push(r)).unwrap();
        let got: Vec<(u64, String)> = seen
            .iter()
            .map(|r| (r.offset, r.envelope.event.id().into_owned()))
            .collect();
        assert_eq!(
            got,
            [(0, "a".into()), (1, "b".into()), (2, "c".into())],
            "offsets and order"
        );
        assert_eq!(ch.pending(), 3);
        // Full: nothing of the refused batch reaches the router.
        let refused = ch.append_inline(batch(&["d"]), |_| panic!("routed past the bound"));
        assert!(
            matches!(refused, Err(ChannelError::Full { .. })),
            "{refused:?}"
        );
        ch.ack(0);
        ch.append_inline(batch(&["d"]), |r| seen.push(r)).unwrap();
        assert_eq!(seen.last().unwrap().offset, 3);
        let too_big = ch.append_inline(batch(&["1", "2", "3", "4"]), |_| panic!("routed"));
        assert!(
            matches!(
                too_big,
                Err(ChannelError::BatchTooLarge {
                    len: 4,
                    capacity: 3
                })
            ),
            "{too_big:?}"
        );
    }

    #[tokio::test]
    async fn inline_appends_are_refused_after_close_and_never_queued() {
        let ch = MemoryChannel::new(10);
        ch.append_inline(batch(&["a"]), drop).unwrap();
        ch.close();
        // Nothing went to the queue `recv` reads: it ends at once.
        assert!(ch.recv().await.is_none());
        let closed = ch.append_inline(batch(&["b"]), |_| panic!("routed after close"));
        assert_eq!(closed, Err(ChannelError::Closed));
    }
}
