//! Process-wide limits of the data plane, and the per-broker settings that
//! can change without replacing a broker.

use std::time::Duration;

/// Process-wide limits of the data plane.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Unacknowledged events per broker channel (beyond it: 503).
    pub channel_capacity: usize,
    /// Concurrent deliveries per trigger.
    pub max_in_flight_per_trigger: usize,
    /// Time limit of an attempt when the delivery spec sets no `timeout`.
    pub default_timeout: Duration,
    /// HTTP requests in flight at once to one subscriber or dead-letter host
    /// (`host:port`). Bounds the connections to it (the keep-alive pool holds as
    /// many), so many triggers delivering to one host reuse connections instead of
    /// opening and closing them; a stuck host only uses up its own permits.
    pub max_outbound: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            channel_capacity: cebus_channels::memory::DEFAULT_CAPACITY,
            max_in_flight_per_trigger: 100,
            default_timeout: Duration::from_secs(60),
            max_outbound: 1024,
        }
    }
}

/// Broker settings that can change without replacing the broker.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Hop budget for events without `knativebrokerttl`.
    pub max_ttl: u32,
    /// Largest accepted request body.
    pub max_event_size: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let l = Limits::default();
        assert_eq!(l.channel_capacity, cebus_channels::memory::DEFAULT_CAPACITY);
        assert_eq!(l.max_in_flight_per_trigger, 100);
        assert_eq!(l.default_timeout, Duration::from_secs(60));
        assert_eq!(l.max_outbound, 1024);
    }
}
