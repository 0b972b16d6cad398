//! Wall-clock time for schedules, read either from the system or from tokio's
//! clock (so a test with `start_paused = true` can move cron time with
//! `tokio::time::advance`). Waiting is always done with `tokio::time`.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Longest single sleep: the wall clock is re-read at least this often, so a
/// clock step (NTP, a suspended laptop) delays a tick by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Where "now" comes from.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// `anchor` at tokio instant `at`, moving with tokio's clock (tests).
    Anchored {
        /// Wall time at `at`.
        anchor: Timestamp,
        /// tokio's instant when the clock was made.
        at: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that reads `anchor` now and advances with tokio's (possibly
    /// paused) clock. Must be called inside a tokio runtime.
    pub fn starting_at(anchor: Timestamp) -> Clock {
        Clock::Anchored {
            anchor,
            at: tokio::time::Instant::now(),
        }
    }

    /// The current wall time.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Anchored { anchor, at } => {
                let elapsed = SignedDuration::try_from(at.elapsed()).unwrap_or(SignedDuration::MAX);
                anchor.saturating_add(elapsed).unwrap_or(*anchor)
            }
        }
    }

    /// Sleeps (with `tokio::time`) until the wall clock reads `t` or later.
    pub async fn sleep_until(&self, t: Timestamp) {
        loop {
            let left = t.duration_since(self.now());
            if left <= SignedDuration::ZERO {
                return;
            }
            let left = Duration::try_from(left).unwrap_or(MAX_SLEEP);
            tokio::time::sleep(left.min(MAX_SLEEP)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn anchored_clock_follows_tokio_time() {
        let t0: Timestamp = "2024-03-10T06:59:58Z".parse().unwrap();
        let clock = Clock::starting_at(t0);
        assert_eq!(clock.now(), t0);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), "2024-03-10T07:01:28Z".parse().unwrap());
        let start = tokio::time::Instant::now();
        clock
            .sleep_until("2024-03-10T08:00:00Z".parse().unwrap())
            .await;
        assert_eq!(start.elapsed(), Duration::from_secs(3512));
        // A time in the past returns at once.
        clock.sleep_until(t0).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3512));
    }
}
