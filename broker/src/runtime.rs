//! The running brokers: one channel, one fan-out loop and one dispatcher per
//! trigger each. Config changes are applied one trigger at a time; untouched
//! triggers keep their queues and in-flight deliveries.
//!
//! An unordered trigger delivers up to `max_in_flight_per_trigger` events at
//! once; an ordered one (`kafka.eventing.knative.dev/delivery.order: ordered`)
//! has one lane per channel partition and delivers the next event of a lane only
//! after the previous one's final outcome (delivered or dead-lettered).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use cebus_channels::{AnyChannel, Channel, ChannelError, Cursor, Envelope, Log, Record};
use cebus_events::{Event, attr};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use cebus_triggers::Matcher;

use crate::channel::make_channel;
use crate::deliver;
use crate::follow::{self, Held};
pub use crate::limits::Limits;
use crate::metrics::{BrokerCounters, Metrics};
use crate::plan::{BrokerPlan, ChannelPlan, Plan, TriggerPlan};
use crate::slots::{Offer, Slots};
use crate::time::rfc3339;

/// Most scheduler turns an ingress answer waits for triggers that are behind.
const MAX_TURNS_BEHIND: usize = 32;

thread_local! {
    /// Matching trigger indices of the record being routed on this thread,
    /// reused so routing allocates no vector per event.
    static MATCHED: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What every broker shares: the HTTP client pool, metrics, task tracker, limits.
#[derive(Debug)]
pub struct Shared {
    /// Pooled keep-alive client for subscribers and dead-letter sinks.
    pub client: deliver::Client,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Every fan-out loop, dispatcher and delivery, so shutdown can drain them.
    pub tasks: TaskTracker,
    /// Limits.
    pub limits: Limits,
    /// Outbound request permits per host (`limits.max_outbound` each).
    pub outbound: Arc<deliver::HostLimits>,
}

/// Why ingest refused events.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// `knativebrokerttl` unparsable or exhausted, for the event at `index`.
    #[error("event {index}: {message}")]
    Ttl {
        /// Position in the batch.
        index: usize,
        /// What was wrong.
        message: String,
    },
    /// The channel refused the batch.
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

/// One validated event on its way into a broker.
#[derive(Debug)]
pub struct Incoming {
    /// The event, without `knativebrokerttl`.
    pub event: Event,
    /// The `knativebrokerttl` it arrived with, if any.
    pub ttl: Option<String>,
    /// Headers to forward to subscribers.
    pub headers: Vec<(String, String)>,
}

/// Broker settings that can change without replacing the broker.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Hop budget for events without `knativebrokerttl`.
    pub max_ttl: u32,
    /// Largest accepted request body.
    pub max_event_size: usize,
}

/// A running broker.
#[derive(Debug)]
pub struct BrokerRuntime {
    /// `namespace/name`.
    pub key: String,
    /// Namespace.
    pub namespace: String,
    settings: ArcSwap<BrokerSettings>,
    channel: AnyChannel,
    /// What the channel was made from; a change replaces the broker.
    channel_plan: ChannelPlan,
    /// The matcher and its triggers: read once per event, replaced on every
    /// trigger change.
    snapshot: ArcSwap<Snapshot>,
    /// Control-plane index of the same triggers (never touched per event).
    by_name: Mutex<BTreeMap<String, Arc<TriggerRuntime>>>,
    counters: BrokerCounters,
    shared: Arc<Shared>,
    /// Per lane, the position after the last record the fan-out loop took: where
    /// the shared reader stands, for triggers leaving or rejoining it.
    shared_next: Mutex<HashMap<u32, u64>>,
    /// Cancelled when the broker stops (its cursors store their positions).
    cancel: CancellationToken,
    /// Whether the first set of triggers was applied (the fan-out loop waits for
    /// it before looking for stored cursors).
    applied: watch::Sender<bool>,
}

/// All triggers of a broker compiled into one matcher; filter `i` of the matcher
/// belongs to `triggers[i]`.
#[derive(Debug, Default)]
struct Snapshot {
    matcher: Matcher,
    triggers: Vec<Arc<TriggerRuntime>>,
}

/// A running trigger: its current plan, its in-flight slots and the work
/// waiting for one.
#[derive(Debug)]
pub struct TriggerRuntime {
    plan: Arc<ArcSwap<TriggerPlan>>,
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
    held: Option<Arc<Held>>,
    /// Cancelled when the trigger is removed.
    cancel: CancellationToken,
}

impl TriggerRuntime {
    /// Hands `work` over: to a new delivery task when a slot is free and
    /// nothing waits, else to the backlog, which the tasks holding the slots
    /// work through. Ordered work goes to the dispatcher, which keeps lanes.
    /// True when it had to wait behind others: the trigger is behind.
    fn submit(self: &Arc<Self>, work: Work) -> bool {
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
struct Work {
    /// The record's partition (its ordering lane).
    partition: u32,
    envelope: Arc<Envelope>,
    encoded: Arc<deliver::Encoded>,
    _ack: Ack,
}

/// This trigger's share of a record's acknowledgement, given when dropped: after
/// the delivery finished, when the trigger is gone, and even if a delivery task
/// panicked — so channel capacity can never leak.
#[derive(Debug)]
enum Ack {
    /// Straight to the record's tracker (channels without cursors).
    Plain(Arc<AckTracker>),
    /// Through the trigger's shares, which know whether the shared reader or
    /// the trigger's cursor now answers for the record.
    Held(Arc<Held>, u64),
}

impl Drop for Ack {
    fn drop(&mut self) {
        match self {
            Ack::Plain(tracker) => tracker.done(),
            Ack::Held(held, id) => held.finish(*id),
        }
    }
}

/// Acknowledges a channel record once every matching trigger is done with it.
#[derive(Debug)]
pub(crate) struct AckTracker {
    remaining: AtomicUsize,
    offset: u64,
    channel: AnyChannel,
}

impl AckTracker {
    /// One matching trigger is done with the record.
    pub(crate) fn done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.channel.ack(self.offset);
        }
    }
}

impl BrokerRuntime {
    fn start(plan: &BrokerPlan, shared: Arc<Shared>) -> Arc<BrokerRuntime> {
        let key = plan.key();
        let broker = Arc::new(BrokerRuntime {
            counters: shared.metrics.broker(&key),
            key,
            namespace: plan.namespace.clone(),
            settings: ArcSwap::from_pointee(BrokerSettings {
                max_ttl: plan.max_ttl,
                max_event_size: plan.max_event_size,
            }),
            channel: make_channel(plan, &shared.limits),
            channel_plan: plan.channel.clone(),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            by_name: Mutex::new(BTreeMap::new()),
            shared: shared.clone(),
            shared_next: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
            applied: watch::Sender::new(false),
        });
        shared.tasks.spawn(fan_out(broker.clone()));
        broker
    }

    /// Current settings.
    pub fn settings(&self) -> Arc<BrokerSettings> {
        self.settings.load_full()
    }

    /// Ingress counters.
    pub fn counters(&self) -> &BrokerCounters {
        &self.counters
    }

    /// Validated events in, stored or refused as a whole. `ttl` of each is the
    /// incoming `knativebrokerttl` (absent for new events); it is decremented here.
    pub async fn ingest(&self, events: Vec<Incoming>) -> Result<(), IngestError> {
        let settings = self.settings.load();
        let arrival = rfc3339(SystemTime::now());
        let mut batch = Vec::with_capacity(events.len());
        for (index, incoming) in events.into_iter().enumerate() {
            let Incoming {
                mut event,
                ttl,
                headers,
            } = incoming;
            let ttl =
                cebus_triggers::ttl_on_ingress(ttl.as_deref(), settings.max_ttl).map_err(|e| {
                    IngestError::Ttl {
                        index,
                        message: e.to_string(),
                    }
                })?;
            event.set(attr::KNATIVE_ARRIVAL_TIME, arrival.as_str());
            batch.push(Envelope {
                event,
                headers,
                ttl,
            });
        }
        match &self.channel {
            // Fanned out here, on the thread that took the events in: no hand-off
            // to the fan-out task and back (a wake-up, often of another thread).
            AnyChannel::Memory(memory) => {
                let mut behind = 0;
                memory.append_inline(batch, |r| behind += self.route(r))?;
                // Deliveries are waiting on this thread: the producer's answer
                // waits one scheduler turn for each it added to a backlog, so
                // that every task ready meanwhile runs first. A producer faster
                // than the subscribers is so slowed in proportion to the work
                // it queues, instead of crowding out the deliveries.
                for _ in 0..behind.min(MAX_TURNS_BEHIND) {
                    tokio::task::yield_now().await;
                }
            }
            channel => channel.append(batch).await?,
        }
        Ok(())
    }

    /// Matches `record` against the triggers once and hands it to each that
    /// matches; acknowledged at once when none does. For channels without
    /// cursors, where every trigger reads the one shared stream. Returns how
    /// many matching triggers are behind (the record waits for their slots).
    fn route(&self, record: Record) -> usize {
        let snapshot = self.snapshot.load();
        MATCHED.with_borrow_mut(|matched| {
            snapshot
                .matcher
                .matches_into(&record.envelope.event, matched);
            if matched.is_empty() {
                self.channel.ack(record.offset);
                return 0;
            }
            let encoded = Arc::new(deliver::Encoded::default());
            let ack = self.tracker(&record, matched.len());
            let mut behind = 0;
            for &i in matched.iter() {
                behind += usize::from(snapshot.triggers[i as usize].submit(Work {
                    partition: record.partition,
                    envelope: record.envelope.clone(),
                    encoded: encoded.clone(),
                    _ack: Ack::Plain(ack.clone()),
                }));
            }
            behind
        })
    }

    /// The acknowledgement of `record`, given when `matching` triggers are done.
    fn tracker(&self, record: &Record, matching: usize) -> Arc<AckTracker> {
        Arc::new(AckTracker {
            remaining: AtomicUsize::new(matching),
            offset: record.offset,
            channel: self.channel.clone(),
        })
    }

    /// Brings the triggers in line with `plan`: new ones start, changed ones get
    /// their new plan in place (same queue, same in-flight deliveries), removed ones
    /// stop receiving; untouched ones are not touched. The matcher is rebuilt once.
    fn apply(self: &Arc<Self>, plan: &BrokerPlan) {
        self.settings.store(Arc::new(BrokerSettings {
            max_ttl: plan.max_ttl,
            max_event_size: plan.max_event_size,
        }));
        let mut by_name = self.by_name.lock().expect("trigger index lock poisoned");
        let before = by_name.len();
        by_name.retain(|name, t| {
            let keep = plan.triggers.contains_key(name);
            if !keep {
                tracing::info!(broker = %self.key, trigger = %name, "trigger removed");
                // Its cursor, if it has one, is deleted.
                t.cancel.cancel();
            }
            keep
        });
        let mut changed = by_name.len() != before;
        for (name, tp) in &plan.triggers {
            match by_name.get(name) {
                Some(t) if t.plan.load().fingerprint == tp.fingerprint => {}
                Some(t) => {
                    t.plan.store(tp.clone());
                    changed = true;
                    tracing::info!(broker = %self.key, trigger = %name, "trigger updated");
                }
                None => {
                    let t = self.start_trigger(tp.clone());
                    by_name.insert(name.clone(), t);
                    changed = true;
                    tracing::info!(broker = %self.key, trigger = %name, subscriber = %tp.subscriber, "trigger added");
                }
            }
        }
        if changed {
            self.publish(&by_name);
        }
        self.applied.send_replace(true);
    }

    /// Compiles the current triggers into a new matcher and swaps it in.
    fn publish(&self, by_name: &BTreeMap<String, Arc<TriggerRuntime>>) {
        let triggers: Vec<Arc<TriggerRuntime>> = by_name.values().cloned().collect();
        let matcher = Matcher::new(
            triggers
                .iter()
                .map(|t| t.plan.load().filter.clone())
                .collect(),
        );
        self.snapshot
            .store(Arc::new(Snapshot { matcher, triggers }));
    }

    fn start_trigger(self: &Arc<Self>, plan: Arc<TriggerPlan>) -> Arc<TriggerRuntime> {
        let plan = Arc::new(ArcSwap::new(plan));
        let ctx = Arc::new(deliver::Ctx {
            client: self.shared.client.clone(),
            broker: Arc::downgrade(self),
            counters: self.shared.metrics.trigger(&self.key, &plan.load().name),
            default_timeout: self.shared.limits.default_timeout,
            outbound: self.shared.outbound.clone(),
            resolved: Arc::default(),
        });
        let queued = Arc::new(AtomicUsize::new(0));
        Arc::new(TriggerRuntime {
            plan,
            slots: Slots::new(self.shared.limits.max_in_flight_per_trigger),
            tx: OnceLock::new(),
            queued,
            ctx,
            shared: self.shared.clone(),
            held: self
                .channel
                .has_cursors()
                .then(|| Arc::new(Held::default())),
            cancel: self.cancel.child_token(),
        })
    }

    fn stop(&self) {
        self.cancel.cancel();
        self.channel.close();
    }

    /// Events stored and not yet delivered or dead-lettered everywhere.
    pub fn pending(&self) -> usize {
        self.channel.pending()
    }
}

/// Reads the channel, matches each event once against every trigger and hands it
/// to the queues of those that match. On a channel with cursors, a trigger that
/// falls behind leaves for a cursor of its own ([`follow`]).
async fn fan_out(broker: Arc<BrokerRuntime>) {
    let cursors = broker.channel.has_cursors();
    if cursors && !resume_stored_cursors(&broker).await {
        return;
    }
    let window = broker.shared.limits.channel_capacity;
    let max_in_flight = broker.shared.limits.max_in_flight_per_trigger;
    let mut detach_again = tokio::time::Instant::now();
    let mut matched = Vec::new();
    while let Some(record) = broker.channel.recv().await {
        if !cursors {
            // The broker's own events on the in-memory channel are routed at
            // ingest and never come this way; records appended through
            // `Channel::append` would.
            broker.route(record);
            continue;
        }
        broker
            .shared_next
            .lock()
            .expect("shared position lock poisoned")
            .entry(record.partition)
            // Redeliveries (NATS after ack_wait, Kafka after a rebalance)
            // come back lower: the reader has still been that far.
            .and_modify(|n| *n = (*n).max(record.offset + 1))
            .or_insert(record.offset + 1);
        let snapshot = broker.snapshot.load_full();
        snapshot
            .matcher
            .matches_into(&record.envelope.event, &mut matched);
        if matched.is_empty() {
            broker.channel.ack(record.offset);
            continue;
        }
        let encoded = Arc::new(deliver::Encoded::default());
        let ack = broker.tracker(&record, matched.len());
        // Looked at once per record: below this pressure nobody detaches, and
        // a broker's only trigger holds back nobody else.
        let cursors_help = snapshot.triggers.len() > 1;
        let mut pending = if cursors_help {
            broker.channel.pending()
        } else {
            0
        };
        let mut pressure =
            cursors_help && follow::should_detach(usize::MAX, pending, window, max_in_flight);
        for &i in &matched {
            let t = &snapshot.triggers[i as usize];
            let share = match &t.held {
                None => Ack::Plain(ack.clone()),
                Some(held) => match held.admit_shared(record.partition, record.offset, &ack) {
                    Some(id) => Ack::Held(held.clone(), id),
                    // Its cursor feeds it this record.
                    None => {
                        ack.done();
                        continue;
                    }
                },
            };
            t.submit(Work {
                partition: record.partition,
                envelope: record.envelope.clone(),
                encoded: encoded.clone(),
                _ack: share,
            });
            if pressure
                && let Some(held) = &t.held
                && follow::should_detach(held.outstanding(), pending, window, max_in_flight)
                && held.can_detach()
                && tokio::time::Instant::now() >= detach_again
            {
                if detach(&broker, t).await {
                    // Its records were released: maybe no pressure is left.
                    pending = broker.channel.pending();
                    pressure = follow::should_detach(usize::MAX, pending, window, max_in_flight);
                } else {
                    detach_again = tokio::time::Instant::now() + follow::DETACH_RETRY;
                }
            }
        }
    }
    // Closed and drained: let the dispatchers finish their queues and end.
    broker.snapshot.store(Arc::new(Snapshot::default()));
    broker
        .by_name
        .lock()
        .expect("trigger index lock poisoned")
        .clear();
}

/// Trigger `t` leaves the shared reader for a cursor of its own, which takes
/// over the records it has out. False when the cursor could not be opened (the
/// trigger stays on the shared reader).
async fn detach(broker: &Arc<BrokerRuntime>, t: &Arc<TriggerRuntime>) -> bool {
    let Some(held) = &t.held else {
        return false;
    };
    let start = held.cursor_start(
        &broker
            .shared_next
            .lock()
            .expect("shared position lock poisoned"),
    );
    let name = t.plan.load().name.clone();
    let window = follow::cursor_window(broker.shared.limits.max_in_flight_per_trigger);
    match broker
        .channel
        .open_cursor(&name, Some(start.clone()), start.held.len() + window)
        .await
    {
        Ok(cursor) => {
            let cursor = Arc::new(cursor);
            held.hand_to_cursor(&cursor, &start);
            tracing::info!(broker = %broker.key, trigger = %name, held = start.held.len(), "trigger fell behind; it reads from its own cursor until it catches up");
            broker
                .shared
                .tasks
                .spawn(follow_cursor(broker.clone(), t.clone(), cursor));
            true
        }
        Err(e) => {
            tracing::warn!(broker = %broker.key, trigger = %name, error = %e, "trigger fell behind but its cursor could not be opened; it stays on the shared reader");
            false
        }
    }
}

/// After a restart: triggers whose cursor an earlier run stored read from it;
/// cursors of triggers that no longer exist are deleted. Retries until the
/// channel answers; false when the broker stopped meanwhile.
async fn resume_stored_cursors(broker: &Arc<BrokerRuntime>) -> bool {
    let mut applied = broker.applied.subscribe();
    tokio::select! {
        _ = applied.wait_for(|a| *a) => {}
        _ = broker.cancel.cancelled() => return false,
    }
    let retry = || async {
        tokio::select! {
            _ = tokio::time::sleep(follow::DETACH_RETRY) => true,
            _ = broker.cancel.cancelled() => false,
        }
    };
    let names = loop {
        match broker.channel.stored_cursors().await {
            Ok(names) => break names,
            Err(e) => {
                tracing::warn!(broker = %broker.key, error = %e, "cannot list stored trigger cursors; retrying");
                if !retry().await {
                    return false;
                }
            }
        }
    };
    let window = follow::cursor_window(broker.shared.limits.max_in_flight_per_trigger);
    for name in names {
        let trigger = broker
            .by_name
            .lock()
            .expect("trigger index lock poisoned")
            .get(&name)
            .cloned();
        let Some(t) = trigger else {
            tracing::info!(broker = %broker.key, trigger = %name, "deleting the stored cursor of a trigger that no longer exists");
            if let Err(e) = broker.channel.delete_cursor(&name).await {
                tracing::warn!(broker = %broker.key, trigger = %name, error = %e, "cannot delete a stale trigger cursor");
            }
            continue;
        };
        let Some(held) = t.held.clone() else {
            continue;
        };
        // Until it is open the trigger must not take shared records: the ones
        // between its stored position and the shared one would be lost to it.
        let cursor = loop {
            match broker.channel.open_cursor(&name, None, window).await {
                Ok(c) => break Arc::new(c),
                Err(e) => {
                    tracing::warn!(broker = %broker.key, trigger = %name, error = %e, "cannot reopen a stored trigger cursor; retrying");
                    if !retry().await {
                        return false;
                    }
                }
            }
        };
        held.follow_stored();
        tracing::info!(broker = %broker.key, trigger = %name, "trigger resumes from its stored cursor");
        broker
            .shared
            .tasks
            .spawn(follow_cursor(broker.clone(), t.clone(), cursor));
    }
    true
}

/// Feeds trigger `t` from its cursor, at most [`follow::follow_budget`]
/// records out at a time, until it has caught up with the shared reader (then
/// the cursor is deleted), the trigger is removed (deleted too) or the broker
/// stops (the cursor's position stays stored for the next run).
async fn follow_cursor(broker: Arc<BrokerRuntime>, t: Arc<TriggerRuntime>, cursor: Arc<Cursor>) {
    let Some(held) = t.held.clone() else {
        return;
    };
    let name = t.plan.load().name.clone();
    let max_in_flight = broker.shared.limits.max_in_flight_per_trigger;
    let budget = follow::follow_budget(max_in_flight);
    let mut next = cursor.start().clone();
    {
        // A lane the fan-out loop has not read yet starts at the stored shared
        // position; without it a cursor behind that position would look caught up.
        let mut shared = broker
            .shared_next
            .lock()
            .expect("shared position lock poisoned");
        for (&lane, &pos) in cursor.shared_start() {
            shared.entry(lane).or_insert(pos);
        }
    }
    let mut split: Option<BTreeMap<u32, u64>> = None;
    let mut caught_up = false;
    loop {
        if t.cancel.is_cancelled() {
            break;
        }
        if let Some(s) = &split
            && s.iter()
                .all(|(lane, at)| next.get(lane).is_some_and(|n| n >= at))
        {
            caught_up = true;
            break;
        }
        if held.outstanding() >= budget {
            tokio::select! {
                _ = held.released.notified() => {}
                _ = t.cancel.cancelled() => {}
            }
            continue;
        }
        if split.is_none()
            && held.outstanding() <= max_in_flight
            && held.close_behind(&next, &broker.shared_next, max_in_flight)
        {
            // Close enough to rejoin. Its own deliveries must be done first: one
            // that keeps failing would keep this cursor open after the rejoin,
            // and the trigger could not leave the shared reader again meanwhile.
            if held.cursor_out() > 0 {
                tokio::select! {
                    _ = held.released.notified() => {}
                    _ = tokio::time::sleep(follow::REJOIN_CHECK) => {}
                    _ = t.cancel.cancelled() => {}
                }
                continue;
            }
            // Not settled: records given out before (a previous run's, on NATS)
            // are still to come back; keep reading them.
            if cursor.settled().await {
                split = held.try_rejoin(
                    &next,
                    &broker.shared_next,
                    max_in_flight,
                    t.plan.load().ordered,
                );
                if split.is_some() {
                    tracing::info!(broker = %broker.key, trigger = %name, "trigger caught up; it rejoins the shared reader");
                    continue;
                }
            }
        }
        let record = tokio::select! {
            r = cursor.recv() => r,
            _ = tokio::time::sleep(follow::REJOIN_CHECK) => continue,
            _ = t.cancel.cancelled() => break,
        };
        let Some(record) = record else {
            break;
        };
        next.entry(record.partition)
            .and_modify(|n| *n = (*n).max(record.offset + 1))
            .or_insert(record.offset + 1);
        let shared_feeds_it = split
            .as_ref()
            .and_then(|s| s.get(&record.partition))
            .is_some_and(|&at| record.offset >= at);
        if shared_feeds_it || !t.plan.load().filter.matches(&record.envelope.event) {
            cursor.ack(record.offset);
            continue;
        }
        let id = held.admit_cursor(&cursor, record.offset);
        t.submit(Work {
            partition: record.partition,
            envelope: record.envelope,
            encoded: Arc::new(deliver::Encoded::default()),
            _ack: Ack::Held(held.clone(), id),
        });
    }
    let removed = t.cancel.is_cancelled() && !broker.cancel.is_cancelled();
    // The cursor's position is stored after its last record is done.
    let _ = tokio::time::timeout(follow::FOLLOW_DRAIN_MAX, async {
        while held.cursor_out() > 0 {
            held.released.notified().await;
        }
    })
    .await;
    let delete = caught_up || removed;
    let closed = match Arc::try_unwrap(cursor) {
        Ok(cursor) => cursor.close(delete).await,
        // Deliveries still hold it: it stores its position when they are done.
        Err(_) if delete => broker.channel.delete_cursor(&name).await,
        Err(_) => Ok(()),
    };
    if let Err(e) = closed {
        tracing::warn!(broker = %broker.key, trigger = %name, error = %e, "closing a trigger cursor");
    }
    held.stopped_following();
}

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

/// Every running broker, by `namespace/name`.
#[derive(Debug)]
pub struct Registry {
    brokers: ArcSwap<HashMap<String, Arc<BrokerRuntime>>>,
    /// The same brokers by namespace then name, for the ingress lookup.
    by_namespace: ArcSwap<HashMap<String, HashMap<String, Arc<BrokerRuntime>>>>,
    ready: AtomicBool,
    shared: Arc<Shared>,
    // Serialises config applications (reload vs shutdown).
    apply_lock: Mutex<()>,
}

impl Registry {
    /// An empty registry.
    pub fn new(shared: Arc<Shared>) -> Registry {
        Registry {
            brokers: ArcSwap::from_pointee(HashMap::new()),
            by_namespace: ArcSwap::from_pointee(HashMap::new()),
            ready: AtomicBool::new(false),
            shared,
            apply_lock: Mutex::new(()),
        }
    }

    /// The broker at `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<BrokerRuntime>> {
        // Read without locks or allocation: namespace, then name.
        self.by_namespace.load().get(namespace)?.get(name).cloned()
    }

    /// Keys of every running broker.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.brokers.load().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Whether a config has been applied.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Makes the running brokers and triggers match `plan`, one change at a time.
    pub fn apply(&self, plan: &Plan) {
        let _guard = self.apply_lock.lock().expect("apply lock poisoned");
        let current = self.brokers.load_full();
        let mut next: HashMap<String, Arc<BrokerRuntime>> = HashMap::new();
        for (key, bp) in &plan.brokers {
            let broker = match current.get(key) {
                Some(b) if b.channel_plan == bp.channel => b.clone(),
                Some(b) => {
                    // A new class or new channel settings: a new channel. The old
                    // broker drains what it holds; a durable backlog stays in the
                    // stream for the new one.
                    tracing::info!(broker = %key, "broker channel changed; replacing the broker");
                    b.stop();
                    BrokerRuntime::start(bp, self.shared.clone())
                }
                None => {
                    tracing::info!(broker = %key, "broker added");
                    BrokerRuntime::start(bp, self.shared.clone())
                }
            };
            broker.apply(bp);
            next.insert(key.clone(), broker);
        }
        for (key, broker) in current.iter() {
            if !plan.brokers.contains_key(key) {
                tracing::info!(broker = %key, "broker removed; draining its channel");
                broker.stop();
            }
        }
        let mut by_namespace: HashMap<String, HashMap<String, Arc<BrokerRuntime>>> = HashMap::new();
        for (key, b) in &plan.brokers {
            by_namespace
                .entry(b.namespace.clone())
                .or_default()
                .insert(b.name.clone(), next[key].clone());
        }
        self.by_namespace.store(Arc::new(by_namespace));
        self.brokers.store(Arc::new(next));
        self.ready.store(true, Ordering::Release);
    }

    /// Stops every broker: channels refuse new events and drain.
    pub fn close_all(&self) {
        let _guard = self.apply_lock.lock().expect("apply lock poisoned");
        for broker in self.brokers.load().values() {
            broker.stop();
        }
    }
}
