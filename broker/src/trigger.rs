//! A running trigger: its in-flight slots and the unordered work waiting for
//! them, or, for an ordered trigger
//! (`kafka.eventing.knative.dev/delivery.order: ordered`), a dispatcher with
//! one lane per channel partition that delivers the next event of a lane only
//! after the previous one's final outcome (delivered or dead-lettered). An
//! unordered trigger delivers up to `max_in_flight_per_trigger` events at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use cebus_channels::Envelope;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

use crate::ack::{Ack, Held};
use crate::deliver;
use crate::plan::TriggerPlan;
use crate::shared::Shared;
use crate::slots::{Offer, Slots};

// === impl TriggerRuntime ===

/// A running trigger: its current plan, its in-flight slots and the work
/// waiting for one.
#[derive(Debug)]
pub struct TriggerRuntime {
    /// The current plan, replaced in place when the trigger changes.
    pub(crate) plan: Arc<ArcSwap<TriggerPlan>>,
    // Both queues below are unbounded in type, bounded in fact: every queued
    // item is an unacknowledged channel record, and the channel holds at most
    // `channel_capacity` of those.
    /// In-flight slots (`max_in_flight_per_trigger`) of unordered work, and
    /// the work waiting for one, which the tasks holding the slots take as
    /// each finishes (no dispatcher in between).
    slots: Slots<Work>,
    /// Ordered work, to the dispatcher that keeps its lanes. Made, with the
    /// dispatcher task, the first time an ordered event comes: an idle queue
    /// and task cost about 2.7 KiB per trigger.
    tx: OnceLock<mpsc::UnboundedSender<Work>>,
    /// Items in `tx` not yet taken by the dispatcher.
    queued: Arc<AtomicUsize>,
    /// What each delivery needs, shared: a delivery takes one reference, not
    /// one to each of the dozen handles inside (client, counters, ...).
    ctx: Arc<deliver::Ctx>,
    shared: Arc<Shared>,
    /// Its shares and feed, on channels with cursors.
    pub(crate) held: Option<Arc<Held>>,
    /// Cancelled when the trigger is removed.
    pub(crate) cancel: CancellationToken,
}

impl TriggerRuntime {
    /// A trigger delivering with `ctx`, with shares and a feed when its
    /// broker's channel has cursors; `cancel` is its broker's child token.
    pub(crate) fn new(
        plan: Arc<TriggerPlan>,
        ctx: deliver::Ctx,
        shared: Arc<Shared>,
        cursors: bool,
        cancel: CancellationToken,
    ) -> Arc<TriggerRuntime> {
        Arc::new(TriggerRuntime {
            plan: Arc::new(ArcSwap::new(plan)),
            slots: Slots::new(shared.limits.max_in_flight_per_trigger),
            tx: OnceLock::new(),
            queued: Arc::new(AtomicUsize::new(0)),
            ctx: Arc::new(ctx),
            shared,
            held: cursors.then(|| Arc::new(Held::default())),
            cancel,
        })
    }

    /// Hands `work` over: to a new delivery task when a slot is free and
    /// nothing waits, else to the backlog, which the tasks holding the slots
    /// work through. Ordered work goes to the dispatcher, which keeps lanes.
    /// True when it had to wait behind others: the trigger is behind.
    pub(crate) fn submit(self: &Arc<Self>, work: Work) -> bool {
        if self.plan.load().ordered {
            let behind = self.queued.fetch_add(1, Ordering::AcqRel) > 0;
            let tx = self.tx.get_or_init(|| self.start_dispatcher());
            if let Err(mpsc::error::SendError(work)) = tx.send(work) {
                // The dispatcher is gone (the trigger was removed): dropping the
                // work acknowledges this trigger's share.
                self.queued.fetch_sub(1, Ordering::AcqRel);
                drop(work);
            }
            return behind;
        }
        match self.slots.offer(work) {
            Offer::Run(permit, work) => {
                self.spawn_worker(Some(work), permit);
                false
            }
            Offer::Queued(spare) => {
                if let Some(permit) = spare {
                    self.spawn_worker(None, permit);
                }
                true
            }
        }
    }

    /// Runs [`TriggerRuntime::work`] in a task of its own.
    fn spawn_worker(self: &Arc<Self>, first: Option<Work>, permit: OwnedSemaphorePermit) {
        let t = self.clone();
        // Boxed: the delivery future is about 2.5 KiB (the HTTP exchange,
        // retries, timeouts inline), and a spawn moves its future more than once
        // on the way into the task; boxed, it is written once and the moves are
        // of a pointer.
        self.shared
            .tasks
            .spawn(Box::pin(async move { t.work(first, permit).await }));
    }

    /// Holding one slot, delivers `first` and then waiting work, each to its
    /// final outcome, until none waits.
    async fn work(self: Arc<Self>, mut next: Option<Work>, permit: OwnedSemaphorePermit) {
        // Declared first, dropped last: after the slot, if a delivery panicked.
        let _respawn = Respawn(&self);
        let mut permit = Some(permit);
        loop {
            let work = match next.take().or_else(|| self.slots.take()) {
                Some(work) => work,
                None => match permit.take().and_then(|p| self.slots.release(p)) {
                    // Work came in while this task was looking.
                    Some(again) => {
                        permit = Some(again);
                        continue;
                    }
                    None => return,
                },
            };
            let plan = self.plan.load_full();
            let outcome = deliver::deliver(&work.envelope, &work.encoded, &plan, &self.ctx).await;
            self.ctx.counters.outcome(outcome).inc();
            drop(work);
        }
    }

    /// Spawns the dispatcher that drains this trigger's queue; it ends when the
    /// trigger (the only sender) is dropped.
    fn start_dispatcher(&self) -> mpsc::UnboundedSender<Work> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared.tasks.spawn(dispatch(
            rx,
            self.plan.clone(),
            self.queued.clone(),
            self.ctx.clone(),
            self.shared.clone(),
        ));
        tx
    }
}

/// Should a delivery panic, the backlog it was working through gets a new task
/// (the panicking one's slot is free by then), so no waiting work is stranded.
struct Respawn<'a>(&'a Arc<TriggerRuntime>);

impl Drop for Respawn<'_> {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(permit) = self.0.slots.spare()
        {
            self.0.spawn_worker(None, permit);
        }
    }
}

/// One event for one trigger.
#[derive(Debug)]
pub(crate) struct Work {
    /// The record's partition (its ordering lane).
    pub(crate) partition: u32,
    /// The record's event.
    pub(crate) envelope: Arc<Envelope>,
    /// Its encoded forms, shared by every trigger that delivers it.
    pub(crate) encoded: Arc<deliver::Encoded>,
    /// This trigger's share of the record's acknowledgement.
    pub(crate) _ack: Ack,
}

// === ordered lanes ===

/// An ordered trigger's dispatcher: takes its work in order and hands each item
/// to its partition's lane. Work that came in ordered stays in its lane even if
/// the trigger has since become unordered.
async fn dispatch(
    mut rx: mpsc::UnboundedReceiver<Work>,
    plan: Arc<ArcSwap<TriggerPlan>>,
    queued: Arc<AtomicUsize>,
    ctx: Arc<deliver::Ctx>,
    shared: Arc<Shared>,
) {
    let mut lanes: HashMap<u32, mpsc::UnboundedSender<Work>> = HashMap::new();
    while let Some(work) = rx.recv().await {
        queued.fetch_sub(1, Ordering::AcqRel);
        let lane_tx = lanes.entry(work.partition).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            shared.tasks.spawn(lane(rx, plan.clone(), ctx.clone()));
            tx
        });
        // A lane ends only when its sender is dropped, below.
        let _ = lane_tx.send(work);
    }
}

/// One partition of an ordered trigger: its events one at a time, each to its
/// final outcome (retries and dead-lettering included) before the next.
async fn lane(
    mut rx: mpsc::UnboundedReceiver<Work>,
    plan: Arc<ArcSwap<TriggerPlan>>,
    ctx: Arc<deliver::Ctx>,
) {
    while let Some(work) = rx.recv().await {
        let plan = plan.load_full();
        let outcome = deliver::deliver(&work.envelope, &work.encoded, &plan, &ctx).await;
        ctx.counters.outcome(outcome).inc();
        drop(work);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cebus_channels::{AnyChannel, Channel, MemoryChannel};

    use super::*;
    use crate::ack::AckTracker;
    use crate::port::testing::Recorder;
    use crate::testkit::{self, linear, records, settle};

    /// A trigger `t` with `max_in_flight` slots delivering to nowhere, one retry
    /// a second later, and the channel its records come from.
    fn fixture(
        max_in_flight: usize,
        ordered: bool,
    ) -> (Arc<TriggerRuntime>, Arc<MemoryChannel>, Arc<Shared>) {
        let shared = Shared::for_tests(testkit::limits(max_in_flight));
        let (_recorder, port) = Recorder::port(|| Ok(()));
        let plan = testkit::trigger("t", linear(1, Duration::from_secs(1)), ordered);
        let counters = testkit::counters(&shared.metrics, "t");
        let ctx = deliver::Ctx::for_tests(shared.client.clone(), counters, port);
        let t = TriggerRuntime::new(plan, ctx, shared.clone(), false, CancellationToken::new());
        (t, Arc::new(MemoryChannel::new(100)), shared)
    }

    /// Hands `n` new records of `channel` to `t`; whether each was behind.
    fn submit(t: &Arc<TriggerRuntime>, channel: &Arc<MemoryChannel>, n: usize) -> Vec<bool> {
        records(channel, n)
            .into_iter()
            .map(|r| {
                let any = AnyChannel::Memory(channel.clone());
                t.submit(Work {
                    partition: r.partition,
                    envelope: r.envelope,
                    encoded: Arc::default(),
                    _ack: Ack::Plain(Arc::new(AckTracker::new(1, r.offset, any))),
                })
            })
            .collect()
    }

    /// Attempts so far, after letting every ready task run.
    async fn attempts(shared: &Shared) -> u64 {
        settle().await;
        testkit::counters(&shared.metrics, "t").attempts.get()
    }

    #[tokio::test(start_paused = true)]
    async fn an_unordered_trigger_delivers_at_most_its_slots_at_once() {
        let (t, channel, shared) = fixture(2, false);
        // Two get a slot; three wait behind them (the trigger is behind).
        assert_eq!(submit(&t, &channel, 5), [false, false, true, true, true]);
        let second = Duration::from_secs(1);
        assert_eq!(attempts(&shared).await, 2);
        assert_eq!(channel.pending(), 5);
        // At 1 s the first two retry and give up; their slots take the next two.
        tokio::time::advance(second).await;
        assert_eq!(attempts(&shared).await, 6);
        assert_eq!(channel.pending(), 3, "the first two are acknowledged");
        tokio::time::advance(second).await;
        assert_eq!(attempts(&shared).await, 9);
        tokio::time::advance(second).await;
        assert_eq!(attempts(&shared).await, 10);
        assert_eq!(channel.pending(), 0, "every record acknowledged");
        let dropped = testkit::counters(&shared.metrics, "t").dropped_no_dls.get();
        assert_eq!(dropped, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ordered_trigger_delivers_one_event_of_a_lane_at_a_time() {
        let (t, channel, shared) = fixture(100, true);
        // The first is taken by the dispatcher before the next comes.
        submit(&t, &channel, 3);
        let second = Duration::from_secs(1);
        assert_eq!(attempts(&shared).await, 1, "the lane holds the rest back");
        // Each event's retry, then the next event's first attempt.
        tokio::time::advance(second).await;
        assert_eq!(attempts(&shared).await, 3);
        assert_eq!(channel.pending(), 2);
        tokio::time::advance(second).await;
        assert_eq!(attempts(&shared).await, 5);
        tokio::time::advance(second).await;
        assert_eq!(attempts(&shared).await, 6);
        assert_eq!(channel.pending(), 0);
    }
}
