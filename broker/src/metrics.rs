//! Prometheus metrics. Labels are typed and bounded: broker, trigger and an
//! outcome class — never an event id or a raw error string.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// What happened to a request at ingress.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum IngressOutcome {
    /// Stored by the channel (202).
    Accepted,
    /// Not a valid CloudEvent (400).
    Invalid,
    /// `knativebrokerttl` exhausted (400).
    TtlExhausted,
    /// Above the size limit (413).
    TooLarge,
    /// Channel full (503).
    Backpressure,
}

/// Final outcome of one event for one trigger.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum DeliveryOutcome {
    /// The subscriber accepted it.
    Delivered,
    /// Delivery gave up and the dead-letter sink accepted it.
    DeadLettered,
    /// Delivery gave up and there is no dead-letter sink: dropped, with a warning.
    DroppedNoDls,
    /// Delivery gave up and the dead-letter sink failed too: dropped, with an error.
    DroppedDlsFailed,
}

/// Labels of ingress counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngressLabels {
    /// `namespace/name` of the broker.
    pub broker: String,
    /// Outcome class.
    pub outcome: IngressOutcome,
}

/// Labels of delivery counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `namespace/name` of the broker.
    pub broker: Arc<str>,
    /// Trigger name.
    pub trigger: Arc<str>,
    /// Outcome class.
    pub outcome: DeliveryOutcome,
}

/// Labels of the attempt counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// `namespace/name` of the broker.
    pub broker: Arc<str>,
    /// Trigger name.
    pub trigger: Arc<str>,
}

/// Labels of source counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `Kind namespace/name` of the source.
    pub source: String,
    /// `delivered` or `skipped`.
    pub outcome: &'static str,
}

/// Every metric cebus exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Ingress requests by outcome (events, for batches).
    pub ingress: Family<IngressLabels, Counter>,
    /// Final delivery outcomes.
    pub deliveries: Family<DeliveryLabels, Counter>,
    /// HTTP attempts to subscribers (retries included).
    pub attempts: Family<AttemptLabels, Counter>,
    /// Replies that re-entered a broker.
    pub replies: Family<AttemptLabels, Counter>,
    /// Records read by sources, by outcome (for example a KafkaSource's invalid
    /// CloudEvent records, skipped).
    pub sources: Family<SourceLabels, Counter>,
}

impl Metrics {
    /// Registers every family in a fresh registry.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("cebus");
        r.register(
            "ingress_events",
            "Events received at ingress, by outcome",
            self.ingress.clone(),
        );
        r.register(
            "deliveries",
            "Final delivery outcomes per trigger",
            self.deliveries.clone(),
        );
        r.register(
            "delivery_attempts",
            "HTTP attempts to subscribers",
            self.attempts.clone(),
        );
        r.register(
            "replies",
            "Reply events that re-entered the broker",
            self.replies.clone(),
        );
        r.register(
            "source_records",
            "Records read by sources, by outcome",
            self.sources.clone(),
        );
        r
    }

    /// Counter handles for one trigger, created once so the hot path only
    /// increments atomics.
    pub fn trigger(&self, broker: &str, trigger: &str) -> TriggerCounters {
        // The six label sets share two strings (about 250 bytes less per
        // trigger than a copy of each in each).
        let (broker, trigger): (Arc<str>, Arc<str>) = (broker.into(), trigger.into());
        let outcome = |outcome| {
            self.deliveries
                .get_or_create(&DeliveryLabels {
                    broker: broker.clone(),
                    trigger: trigger.clone(),
                    outcome,
                })
                .clone()
        };
        let labels = AttemptLabels {
            broker: broker.clone(),
            trigger: trigger.clone(),
        };
        TriggerCounters {
            delivered: outcome(DeliveryOutcome::Delivered),
            dead_lettered: outcome(DeliveryOutcome::DeadLettered),
            dropped_no_dls: outcome(DeliveryOutcome::DroppedNoDls),
            dropped_dls_failed: outcome(DeliveryOutcome::DroppedDlsFailed),
            attempts: self.attempts.get_or_create(&labels).clone(),
            replies: self.replies.get_or_create(&labels).clone(),
        }
    }

    /// The counter of one source's `outcome` (`delivered`, `skipped`).
    pub fn source(&self, source: &str, outcome: &'static str) -> Counter {
        self.sources
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
                outcome,
            })
            .clone()
    }

    /// Counter handles for one broker's ingress.
    pub fn broker(&self, broker: &str) -> BrokerCounters {
        let outcome = |outcome| {
            self.ingress
                .get_or_create(&IngressLabels {
                    broker: broker.to_owned(),
                    outcome,
                })
                .clone()
        };
        BrokerCounters {
            accepted: outcome(IngressOutcome::Accepted),
            invalid: outcome(IngressOutcome::Invalid),
            ttl_exhausted: outcome(IngressOutcome::TtlExhausted),
            too_large: outcome(IngressOutcome::TooLarge),
            backpressure: outcome(IngressOutcome::Backpressure),
        }
    }
}

/// Pre-created counters of one trigger.
#[derive(Debug, Clone, Default)]
pub struct TriggerCounters {
    /// Delivered to the subscriber.
    pub delivered: Counter,
    /// Sent to the dead-letter sink.
    pub dead_lettered: Counter,
    /// Given up without a dead-letter sink.
    pub dropped_no_dls: Counter,
    /// Given up and the dead-letter sink failed.
    pub dropped_dls_failed: Counter,
    /// HTTP attempts.
    pub attempts: Counter,
    /// Replies re-entering the broker.
    pub replies: Counter,
}

impl TriggerCounters {
    /// The counter of a final outcome.
    pub fn outcome(&self, outcome: DeliveryOutcome) -> &Counter {
        match outcome {
            DeliveryOutcome::Delivered => &self.delivered,
            DeliveryOutcome::DeadLettered => &self.dead_lettered,
            DeliveryOutcome::DroppedNoDls => &self.dropped_no_dls,
            DeliveryOutcome::DroppedDlsFailed => &self.dropped_dls_failed,
        }
    }
}

/// Pre-created ingress counters of one broker.
#[derive(Debug, Clone, Default)]
pub struct BrokerCounters {
    /// 202.
    pub accepted: Counter,
    /// 400, not a valid event.
    pub invalid: Counter,
    /// 400, hop budget exhausted.
    pub ttl_exhausted: Counter,
    /// 413.
    pub too_large: Counter,
    /// 503.
    pub backpressure: Counter,
}
