//! Fixtures for the data plane's unit tests (compiled for tests only): plans,
//! the shared context, events, and a port that records what it is sent.
//! Subscribers are [`NOWHERE`], a URL without a host, so every attempt fails at
//! once without network I/O and the tests run under tokio's paused clock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use cebus_api::BackoffPolicy;
use cebus_channels::{Envelope, MemoryChannel, Record};
use cebus_events::Event;
use cebus_triggers::{DeliveryPolicy, Filter};
use tokio_util::task::TaskTracker;

use crate::deliver;
use crate::limits::{BrokerSettings, Limits};
use crate::metrics::{Metrics, TriggerCounters};
use crate::plan::{BrokerPlan, ChannelPlan, TriggerPlan};
use crate::port::{Incoming, IngestError, Ingesting, Inlet, Port};
use crate::shared::Shared;

/// A subscriber URL without a host: every attempt fails at once (transport).
pub(crate) const NOWHERE: &str = "file:///nowhere";
/// The namespace of the fixtures' brokers and triggers.
pub(crate) const NS: &str = "team";
/// The name of the fixtures' broker.
pub(crate) const BROKER: &str = "default";

/// What every broker shares, with `limits`.
pub(crate) fn shared(limits: Limits) -> Arc<Shared> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Arc::new(Shared {
        client: deliver::Client::new(4),
        metrics: Arc::new(Metrics::default()),
        tasks: TaskTracker::new(),
        outbound: Arc::new(deliver::HostLimits::new(limits.max_outbound)),
        limits,
    })
}

/// A delivery context for trigger `trigger` of `team/default`, replies to `port`.
pub(crate) fn ctx(shared: &Shared, trigger: &str, port: Port) -> deliver::Ctx {
    deliver::Ctx {
        client: shared.client.clone(),
        settings: Arc::new(ArcSwap::from_pointee(BrokerSettings {
            max_ttl: 255,
            max_event_size: 1 << 20,
        })),
        port,
        broker: BROKER.into(),
        counters: counters(shared, trigger),
        default_timeout: shared.limits.default_timeout,
        outbound: shared.outbound.clone(),
        resolved: Arc::default(),
    }
}

/// Records of `n` new events stored in `channel`, in order.
pub(crate) fn records(channel: &MemoryChannel, n: usize) -> Vec<Record> {
    let batch = (0..n)
        .map(|i| {
            Envelope::new(Event::with_required(
                &format!("e{i}"),
                "/test",
                "test.event",
            ))
        })
        .collect();
    let mut records = Vec::new();
    channel
        .append_inline(batch, |r| records.push(r))
        .expect("room in the channel");
    records
}

/// Limits with `max_in_flight` deliveries per trigger.
pub(crate) fn limits(max_in_flight: usize) -> Limits {
    Limits {
        max_in_flight_per_trigger: max_in_flight,
        ..Limits::default()
    }
}

/// `retry` extra attempts with a linear backoff of `delay` × attempt.
pub(crate) fn linear(retry: u32, delay: Duration) -> DeliveryPolicy {
    DeliveryPolicy {
        retry,
        backoff: BackoffPolicy::Linear,
        backoff_delay: delay,
        ..DeliveryPolicy::default()
    }
}

/// A trigger `name` taking every event, delivering to [`NOWHERE`] with `policy`.
pub(crate) fn trigger(name: &str, policy: DeliveryPolicy, ordered: bool) -> Arc<TriggerPlan> {
    Arc::new(trigger_plan(name, policy, ordered, Filter::All(Vec::new())))
}

/// A trigger `name` taking the events `filter` matches, delivering to
/// [`NOWHERE`] with `policy`.
pub(crate) fn trigger_plan(
    name: &str,
    policy: DeliveryPolicy,
    ordered: bool,
    filter: Filter,
) -> TriggerPlan {
    TriggerPlan {
        namespace: NS.into(),
        name: name.into(),
        fingerprint: format!("{name} {filter:?} {policy:?} {ordered}"),
        filter,
        subscriber: NOWHERE.into(),
        dead_letter_sink: None,
        subscriber_url: reqwest::Url::parse(NOWHERE).expect("a URL"),
        dead_letter_url: None,
        policy,
        ignore_invalid_reply: false,
        ordered,
        namespace_header: None,
    }
}

/// The in-memory broker `team/default` with `triggers`.
pub(crate) fn broker_plan(triggers: &[Arc<TriggerPlan>]) -> BrokerPlan {
    BrokerPlan {
        namespace: NS.into(),
        name: BROKER.into(),
        max_ttl: 255,
        max_event_size: 1 << 20,
        channel: ChannelPlan::Memory,
        triggers: triggers
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// A new event `id`, as ingress hands it in.
pub(crate) fn incoming(id: &str) -> Incoming {
    Incoming {
        event: Event::with_required(id, "/test", "test.event"),
        ttl: None,
        headers: Vec::new(),
    }
}

/// The counters of trigger `name` of the fixtures' broker.
pub(crate) fn counters(shared: &Shared, name: &str) -> TriggerCounters {
    shared.metrics.trigger(&format!("{NS}/{BROKER}"), name)
}

/// Lets every task that is ready run; the paused clock does not move.
pub(crate) async fn settle() {
    for _ in 0..32 {
        tokio::task::yield_now().await;
    }
}

/// One send a [`Recorder`] received.
#[derive(Debug)]
pub(crate) struct Sent {
    /// `namespace/name` it was sent to.
    pub(crate) to: String,
    /// The events.
    pub(crate) events: Vec<Incoming>,
}

/// An inlet that records what it is sent and answers with `answer`.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub(crate) sent: Mutex<Vec<Sent>>,
    answer: fn() -> Result<(), IngestError>,
}

impl Recorder {
    /// A recorder answering every send with `answer()`, and a port onto it.
    pub(crate) fn port(answer: fn() -> Result<(), IngestError>) -> (Arc<Recorder>, Port) {
        let recorder = Arc::new(Recorder {
            sent: Mutex::new(Vec::new()),
            answer,
        });
        let inlet: Weak<dyn Inlet> = Arc::<Recorder>::downgrade(&recorder);
        (recorder, Port::new(inlet))
    }
}

impl Inlet for Recorder {
    fn ingest<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        events: Vec<Incoming>,
    ) -> Ingesting<'a> {
        self.sent.lock().expect("recorder lock").push(Sent {
            to: format!("{namespace}/{name}"),
            events,
        });
        let answer = (self.answer)();
        Box::pin(async move { answer })
    }
}
