//! A running broker: its channel, and its triggers compiled into one matcher.
//! Events come in through [`BrokerRuntime::ingest`]; on the in-memory channel
//! they are fanned out right there, on the thread that took them in (durable
//! channels are read by `fanout.rs`). Config changes are applied one
//! trigger at a time; untouched triggers keep their queues and in-flight
//! deliveries.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use cebus_channels::{AnyChannel, Channel, Envelope, Log, Record};
use cebus_events::attr;
use cebus_triggers::Matcher;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ack::{Ack, AckTracker};
use crate::channel::make_channel;
use crate::deliver;
use crate::limits::BrokerSettings;
use crate::metrics::BrokerCounters;
use crate::plan::{BrokerPlan, ChannelPlan, TriggerPlan};
use crate::port::{Incoming, IngestError, Port};
use crate::shared::Shared;
use crate::time::rfc3339;
use crate::trigger::{TriggerRuntime, Work};

/// Most scheduler turns an ingress answer waits for triggers that are behind.
const MAX_TURNS_BEHIND: usize = 32;

thread_local! {
    /// Matching trigger indices of the record being routed on this thread,
    /// reused so routing allocates no vector per event.
    static MATCHED: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A running broker.
#[derive(Debug)]
pub struct BrokerRuntime {
    /// `namespace/name`.
    pub key: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    name: String,
    /// Shared with the triggers' deliveries, which read the size limit of a
    /// reply from it.
    settings: Arc<ArcSwap<BrokerSettings>>,
    pub(crate) channel: AnyChannel,
    /// What the channel was made from; a change replaces the broker.
    pub(crate) channel_plan: ChannelPlan,
    /// The matcher and its triggers: read once per event, replaced on every
    /// trigger change.
    pub(crate) snapshot: ArcSwap<Snapshot>,
    /// Control-plane index of the same triggers (never touched per event).
    pub(crate) by_name: Mutex<BTreeMap<String, Arc<TriggerRuntime>>>,
    counters: BrokerCounters,
    pub(crate) shared: Arc<Shared>,
    /// Where the triggers' replies re-enter (this broker, looked up by name).
    port: Port,
    /// Per lane, the position after the last record the fan-out loop took: where
    /// the shared reader stands, for triggers leaving or rejoining it.
    pub(crate) shared_next: Mutex<HashMap<u32, u64>>,
    /// Cancelled when the broker stops (its cursors store their positions).
    pub(crate) cancel: CancellationToken,
    /// Whether the first set of triggers was applied (the fan-out loop waits for
    /// it before looking for stored cursors).
    pub(crate) applied: watch::Sender<bool>,
}

/// All triggers of a broker compiled into one matcher; filter `i` of the matcher
/// belongs to `triggers[i]`.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Every trigger's filter, compiled.
    pub(crate) matcher: Matcher,
    /// The triggers, in the matcher's order.
    pub(crate) triggers: Vec<Arc<TriggerRuntime>>,
}

// === impl BrokerRuntime ===

impl BrokerRuntime {
    /// A broker with the channel `plan` asks for and no triggers yet; its
    /// triggers' replies go through `port`. Its fan-out loop is the caller's to
    /// start (`fanout::fan_out`).
    pub(crate) fn new(plan: &BrokerPlan, shared: Arc<Shared>, port: Port) -> Arc<BrokerRuntime> {
        let key = plan.key();
        Arc::new(BrokerRuntime {
            counters: shared.metrics.broker(&key),
            key,
            namespace: plan.namespace.clone(),
            name: plan.name.clone(),
            settings: Arc::new(ArcSwap::from_pointee(settings_of(plan))),
            channel: make_channel(plan, &shared.limits),
            channel_plan: plan.channel.clone(),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            by_name: Mutex::new(BTreeMap::new()),
            shared,
            port,
            shared_next: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
            applied: watch::Sender::new(false),
        })
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
        // Fanned out here, on the thread that took the events in, when the
        // channel can (the in-memory one): no hand-off to the fan-out task and
        // back (a wake-up, often of another thread).
        let mut behind = 0;
        let inline = self
            .channel
            .try_append_inline(batch, &mut |r| behind += self.route(r));
        match inline {
            Ok(stored) => {
                stored?;
                // Deliveries are waiting on this thread: the producer's answer
                // waits one scheduler turn for each it added to a backlog, so
                // that every task ready meanwhile runs first. A producer faster
                // than the subscribers is so slowed in proportion to the work
                // it queues, instead of crowding out the deliveries.
                for _ in 0..behind.min(MAX_TURNS_BEHIND) {
                    tokio::task::yield_now().await;
                }
            }
            Err(batch) => self.channel.append(batch).await?,
        }
        Ok(())
    }

    /// Matches `record` against the triggers once and hands it to each that
    /// matches; acknowledged at once when none does. For channels without
    /// cursors, where every trigger reads the one shared stream. Returns how
    /// many matching triggers are behind (the record waits for their slots).
    pub(crate) fn route(&self, record: Record) -> usize {
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
    pub(crate) fn tracker(&self, record: &Record, matching: usize) -> Arc<AckTracker> {
        Arc::new(AckTracker::new(
            matching,
            record.offset,
            self.channel.clone(),
        ))
    }

    /// Brings the triggers in line with `plan`: new ones start, changed ones get
    /// their new plan in place (same queue, same in-flight deliveries), removed ones
    /// stop receiving; untouched ones are not touched. The matcher is rebuilt once.
    pub(crate) fn apply(self: &Arc<Self>, plan: &BrokerPlan) {
        self.settings.store(Arc::new(settings_of(plan)));
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

    fn start_trigger(&self, plan: Arc<TriggerPlan>) -> Arc<TriggerRuntime> {
        let ctx = deliver::Ctx {
            client: self.shared.client.clone(),
            settings: self.settings.clone(),
            port: self.port.clone(),
            broker: self.name.clone(),
            counters: self.shared.metrics.trigger(&self.key, &plan.name),
            default_timeout: self.shared.limits.default_timeout,
            outbound: self.shared.outbound.clone(),
            resolved: Arc::default(),
        };
        TriggerRuntime::new(
            plan,
            ctx,
            self.shared.clone(),
            self.channel.has_cursors(),
            self.cancel.child_token(),
        )
    }

    /// Stops taking events: the channel refuses new ones and drains, cursors
    /// store their positions.
    pub(crate) fn stop(&self) {
        self.cancel.cancel();
        self.channel.close();
    }

    /// Events stored and not yet delivered or dead-lettered everywhere.
    pub fn pending(&self) -> usize {
        self.channel.pending()
    }
}

/// The settings of `plan` that change without replacing the broker.
fn settings_of(plan: &BrokerPlan) -> BrokerSettings {
    BrokerSettings {
        max_ttl: plan.max_ttl,
        max_event_size: plan.max_event_size,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cebus_triggers::Filter;

    use super::*;
    use crate::port::testing::Recorder;
    use crate::testkit::{self, broker_plan, incoming, linear, settle, trigger};

    /// The in-memory broker `team/default` with `triggers` applied.
    fn start(triggers: &[Arc<TriggerPlan>]) -> (Arc<BrokerRuntime>, Arc<Shared>) {
        let shared = Shared::for_tests(testkit::limits(100));
        let (_recorder, port) = Recorder::port(|| Ok(()));
        let broker = BrokerRuntime::new(&broker_plan(triggers), shared.clone(), port);
        broker.apply(&broker_plan(triggers));
        (broker, shared)
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_no_trigger_matches_is_acknowledged_at_once() {
        let other = Filter::Exact {
            attribute: "type".into(),
            value: "other".into(),
        };
        let t = testkit::trigger_plan("t", linear(1, Duration::from_secs(1)), false, other);
        let (broker, shared) = start(&[Arc::new(t)]);
        broker
            .ingest(vec![incoming("a"), incoming("b")])
            .await
            .expect("stored");
        settle().await;
        assert_eq!(broker.pending(), 0);
        assert_eq!(testkit::counters(&shared.metrics, "t").attempts.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_is_held_until_every_matching_trigger_is_done() {
        let s = Duration::from_secs(1);
        // `quick` gives up at 1 s, `slow` at 3 s (linear: 1 s, then 2 s).
        let (broker, _shared) = start(&[
            trigger("quick", linear(1, s), false),
            trigger("slow", linear(2, s), false),
        ]);
        broker.ingest(vec![incoming("a")]).await.expect("stored");
        settle().await;
        assert_eq!(broker.pending(), 1);
        tokio::time::advance(s).await;
        settle().await;
        assert_eq!(broker.pending(), 1, "slow still has it");
        tokio::time::advance(2 * s).await;
        settle().await;
        assert_eq!(broker.pending(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_with_a_spent_hop_budget_is_refused_whole() {
        let (broker, shared) = start(&[trigger("t", linear(0, Duration::ZERO), false)]);
        let mut spent = incoming("b");
        spent.ttl = Some("1".into());
        match broker.ingest(vec![incoming("a"), spent]).await {
            Err(IngestError::Ttl { index, .. }) => assert_eq!(index, 1),
            other => panic!("expected a TTL refusal, got {other:?}"),
        }
        settle().await;
        assert_eq!(testkit::counters(&shared.metrics, "t").attempts.get(), 0);
        assert_eq!(broker.pending(), 0, "nothing of the batch was stored");
    }

    #[tokio::test]
    async fn trigger_changes_are_applied_one_trigger_at_a_time() {
        let s = Duration::from_secs(1);
        let (broker, _shared) = start(&[
            trigger("a", linear(1, s), false),
            trigger("b", linear(1, s), false),
        ]);
        let by_name = |name: &str| broker.by_name.lock().unwrap().get(name).cloned();
        let (a, b) = (by_name("a").unwrap(), by_name("b").unwrap());
        let before = broker.snapshot.load_full();
        assert_eq!(before.triggers.len(), 2);

        // Applying the same plan again changes nothing, not even the matcher.
        broker.apply(&broker_plan(&[
            trigger("a", linear(1, s), false),
            trigger("b", linear(1, s), false),
        ]));
        assert!(Arc::ptr_eq(&before, &broker.snapshot.load_full()));

        // `a` changes, `b` goes, `c` comes.
        let mut plan = broker_plan(&[
            trigger("a", linear(5, s), false),
            trigger("c", linear(1, s), false),
        ]);
        plan.max_ttl = 9;
        broker.apply(&plan);
        let a2 = by_name("a").expect("a stays");
        assert!(Arc::ptr_eq(&a, &a2), "a changed in place");
        assert_eq!(a2.plan.load().policy.retry, 5);
        assert!(by_name("b").is_none());
        assert!(b.cancel.is_cancelled(), "b stopped");
        assert!(!a.cancel.is_cancelled());
        assert!(by_name("c").is_some());
        let names: Vec<String> = broker
            .snapshot
            .load()
            .triggers
            .iter()
            .map(|t| t.plan.load().name.clone())
            .collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(broker.settings().max_ttl, 9, "settings change in place");
    }

    #[tokio::test]
    async fn a_stopped_broker_refuses_events() {
        let (broker, _shared) = start(&[]);
        broker.stop();
        assert!(matches!(
            broker.ingest(vec![incoming("a")]).await,
            Err(IngestError::Channel(cebus_channels::ChannelError::Closed))
        ));
        assert!(broker.cancel.is_cancelled());
    }
}
