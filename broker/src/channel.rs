//! The one place a broker's channel is made from its plan. No backend is named
//! here: `cebus_channels::open` is the one place that does.

use cebus_channels::{AnyChannel, Placement};

use crate::limits::Limits;
use crate::plan::BrokerPlan;

/// The channel `plan` asks for. A durable channel connects in the background;
/// until it is ready, ingress answers 503.
pub(crate) fn make_channel(plan: &BrokerPlan, limits: &Limits) -> AnyChannel {
    cebus_channels::open(
        &plan.channel,
        &Placement {
            namespace: &plan.namespace,
            broker: &plan.name,
            // The window: records stored or handed out and not yet delivered
            // everywhere.
            window: limits.channel_capacity,
            max_event_size: plan.max_event_size,
            default_ttl: plan.max_ttl,
        },
    )
}
