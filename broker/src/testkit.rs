//! Fixtures for the data plane's unit tests (compiled for tests only): plans,
//! limits, records and events. (The shared context and a delivery context are
//! made by `Shared::for_tests` and `Ctx::for_tests`, a recording port by
//! `port::testing`, so that this file depends on no stage that tests it.)
//! Subscribers are [`NOWHERE`], a URL without a host, so every attempt fails at
//! once without network I/O and the tests run under tokio's paused clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cebus_api::BackoffPolicy;
use cebus_channels::{Envelope, MemoryChannel, Record};
use cebus_events::Event;
use cebus_triggers::{DeliveryPolicy, Filter};

use crate::limits::Limits;
use crate::metrics::{Metrics, TriggerCounters};
use crate::plan::{BrokerPlan, ChannelPlan, TriggerPlan};
use crate::port::Incoming;

/// A subscriber URL without a host: every attempt fails at once (transport).
pub(crate) const NOWHERE: &str = "file:///nowhere";
/// The namespace of the fixtures' brokers and triggers.
pub(crate) const NS: &str = "team";
/// The name of the fixtures' broker.
pub(crate) const BROKER: &str = "default";

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
pub(crate) fn counters(metrics: &Metrics, name: &str) -> TriggerCounters {
    metrics.trigger(&format!("{NS}/{BROKER}"), name)
}

/// Lets every task that is ready run; the paused clock does not move.
pub(crate) async fn settle() {
    for _ in 0..32 {
        tokio::task::yield_now().await;
    }
}
