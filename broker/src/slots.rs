//! A trigger's in-flight slots and the unordered work waiting for one. A task
//! holding a slot delivers, then takes the next waiting item itself: no
//! dispatcher task to wake per event when a trigger is behind.
//!
//! No item may be stranded: work queued while every slot is held must be taken
//! by some holder. Both sides look again after acting: [`Slots::offer`] tries
//! for a slot after queueing, and [`Slots::release`] looks at the queue after
//! freeing its slot. Whichever of the two comes second sees the other's
//! action (the queue's lock orders them), so one of them takes the item.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// In-flight slots and the queue of work waiting for one.
#[derive(Debug)]
pub(crate) struct Slots<W> {
    // Unbounded in type; the caller bounds what it offers.
    waiting: Mutex<VecDeque<W>>,
    permits: Arc<Semaphore>,
}

/// What [`Slots::offer`] did with an item.
#[derive(Debug)]
pub(crate) enum Offer<W> {
    /// A slot was free and nothing waited: run the item now, holding the slot.
    Run(OwnedSemaphorePermit, W),
    /// Queued. With a slot: start a holder that takes from the queue (every
    /// earlier holder may have looked before the item came); without one, the
    /// current holders will take it.
    Queued(Option<OwnedSemaphorePermit>),
}

impl<W> Slots<W> {
    /// `n` slots (at least one), nothing waiting. Allocates no queue until an
    /// item has to wait.
    pub(crate) fn new(n: usize) -> Slots<W> {
        Slots {
            waiting: Mutex::new(VecDeque::new()),
            permits: Arc::new(Semaphore::new(n.max(1))),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, VecDeque<W>> {
        self.waiting.lock().expect("slot queue lock poisoned")
    }

    /// Runs `item` at once when a slot is free and nothing waits (so it never
    /// overtakes waiting work), else queues it.
    pub(crate) fn offer(&self, item: W) -> Offer<W> {
        if self.waiting().is_empty()
            && let Ok(permit) = self.permits.clone().try_acquire_owned()
        {
            return Offer::Run(permit, item);
        }
        self.waiting().push_back(item);
        Offer::Queued(self.spare())
    }

    /// The next waiting item, for a task holding a slot.
    pub(crate) fn take(&self) -> Option<W> {
        self.waiting().pop_front()
    }

    /// A holder that found nothing to take gives its slot back. If work came
    /// in meanwhile and a slot is free, it gets one back to go on with.
    pub(crate) fn release(&self, permit: OwnedSemaphorePermit) -> Option<OwnedSemaphorePermit> {
        drop(permit);
        self.spare()
    }

    /// A free slot, if work waits for one.
    pub(crate) fn spare(&self) -> Option<OwnedSemaphorePermit> {
        if self.waiting().is_empty() {
            return None;
        }
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Items waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<W: std::fmt::Debug>(offer: Offer<W>) -> (OwnedSemaphorePermit, W) {
        match offer {
            Offer::Run(p, w) => (p, w),
            other => panic!("expected Run, got {other:?}"),
        }
    }

    #[test]
    fn runs_while_slots_are_free_then_queues_in_order() {
        let slots = Slots::new(2);
        let (_a, _) = run(slots.offer("a"));
        let (b, _) = run(slots.offer("b"));
        assert!(matches!(slots.offer("c"), Offer::Queued(None)));
        assert!(matches!(slots.offer("d"), Offer::Queued(None)));
        // A holder done with "b" goes on with the queue, oldest first.
        assert_eq!(slots.take(), Some("c"));
        assert_eq!(slots.take(), Some("d"));
        assert_eq!(slots.take(), None);
        assert!(
            slots.release(b).is_none(),
            "nothing waits: the slot is freed"
        );
        let (_e, e) = run(slots.offer("e"));
        assert_eq!(e, "e");
    }

    #[test]
    fn a_free_slot_never_overtakes_waiting_work() {
        let slots = Slots::new(1);
        let (p, _) = run(slots.offer(1));
        assert!(matches!(slots.offer(2), Offer::Queued(None)));
        drop(p); // a slot frees while 2 waits
        // 3 must queue behind 2; the offer hands out the free slot to take 2.
        match slots.offer(3) {
            Offer::Queued(Some(_p)) => {}
            other => panic!("expected Queued with a slot, got {other:?}"),
        }
        assert_eq!((slots.take(), slots.take()), (Some(2), Some(3)));
    }

    #[test]
    fn work_queued_while_the_last_holder_looks_away_is_not_stranded() {
        // The holder looks (nothing), then the offer queues while the slot is
        // still held (no slot for it), then the holder releases: the release
        // must hand the slot straight back for the queued item.
        let slots = Slots::new(1);
        let (p, _) = run(slots.offer("a"));
        assert_eq!(slots.take(), None);
        assert!(matches!(slots.offer("b"), Offer::Queued(None)));
        let again = slots.release(p).expect("a slot back to take b");
        assert_eq!(slots.take(), Some("b"));
        assert!(slots.release(again).is_none());
        assert_eq!(slots.len(), 0);
    }

    #[test]
    fn work_queued_after_the_holder_released_gets_the_free_slot() {
        // The other order: the holder looks and releases first, then the
        // offer comes; the slot is free and nothing waits, so it runs.
        let slots = Slots::new(1);
        let (p, _) = run(slots.offer("a"));
        assert_eq!(slots.take(), None);
        assert!(slots.release(p).is_none());
        let (_p, b) = run(slots.offer("b"));
        assert_eq!(b, "b");
    }

    #[test]
    fn spare_only_while_work_waits() {
        let slots = Slots::new(3);
        assert!(slots.spare().is_none(), "nothing waits");
        let (p1, _) = run(slots.offer(1));
        let (p2, _) = run(slots.offer(2));
        let (p3, _) = run(slots.offer(3));
        assert!(matches!(slots.offer(4), Offer::Queued(None)));
        assert!(slots.spare().is_none(), "every slot is held");
        drop(p3);
        let spare = slots.spare().expect("a free slot while 4 waits");
        drop((p1, p2, spare));
    }
}
