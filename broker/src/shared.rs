//! What every broker of the process shares: the delivery client and its
//! per-host permits, metrics, the task tracker and the limits.

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::deliver;
use crate::limits::Limits;
use crate::metrics::Metrics;

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

#[cfg(test)]
impl Shared {
    /// A context for unit tests, with `limits`.
    pub(crate) fn for_tests(limits: Limits) -> Arc<Shared> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Arc::new(Shared {
            client: deliver::Client::new(4),
            metrics: Arc::new(Metrics::default()),
            tasks: TaskTracker::new(),
            outbound: Arc::new(deliver::HostLimits::new(limits.max_outbound)),
            limits,
        })
    }
}
