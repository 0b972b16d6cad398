//! The open-loop schedule: event `k` is due `k / rate` seconds after the start,
//! whatever happened to earlier events, so a slow response cannot delay (and hide)
//! the events behind it. Pure integer arithmetic; the generator does the waiting.

/// A fixed arrival rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    rate: u64,
}

impl Schedule {
    /// `rate` events per second (at least 1).
    pub fn new(rate: u64) -> Schedule {
        Schedule { rate: rate.max(1) }
    }

    /// Events per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// When event `k` is intended to be sent, in nanoseconds after the start.
    pub fn offset_ns(&self, k: u64) -> u64 {
        (u128::from(k) * 1_000_000_000 / u128::from(self.rate)) as u64
    }

    /// How many events are due by `elapsed_ns` after the start (those with
    /// `offset_ns(k) <= elapsed_ns`).
    pub fn due(&self, elapsed_ns: u64) -> u64 {
        // offset(k) = floor(k·1e9/rate) ≤ e  ⇔  k·1e9 < (e+1)·rate  ⇔  k < ceil((e+1)·rate/1e9).
        let n = (u128::from(elapsed_ns) + 1) * u128::from(self.rate);
        n.div_ceil(1_000_000_000) as u64
    }

    /// How many events fall inside the first `span_ns` (those with `offset_ns(k) < span_ns`).
    pub fn total(&self, span_ns: u64) -> u64 {
        if span_ns == 0 {
            0
        } else {
            self.due(span_ns - 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_evenly_spaced() {
        let s = Schedule::new(1_000);
        assert_eq!(s.offset_ns(0), 0);
        assert_eq!(s.offset_ns(1), 1_000_000);
        assert_eq!(s.offset_ns(1_000), 1_000_000_000);
        let s = Schedule::new(3);
        assert_eq!(s.offset_ns(1), 333_333_333);
        assert_eq!(s.offset_ns(3), 1_000_000_000);
    }

    #[test]
    fn due_counts_exactly_the_events_whose_time_has_come() {
        for rate in [1, 3, 7, 1_000, 25_000, 1_000_000_007] {
            let s = Schedule::new(rate);
            for e in [
                0,
                1,
                39_999,
                40_000,
                40_001,
                999_999_999,
                1_000_000_000,
                2_718_281_828,
            ] {
                let naive = (0..)
                    .take_while(|&k| s.offset_ns(k) <= e)
                    .take(3_000_000)
                    .count() as u64;
                if naive < 3_000_000 {
                    assert_eq!(s.due(e), naive, "rate {rate} elapsed {e}");
                }
            }
        }
    }

    #[test]
    fn event_zero_is_due_at_once_and_one_second_holds_rate_events() {
        let s = Schedule::new(25_000);
        assert_eq!(s.due(0), 1);
        assert_eq!(s.total(1_000_000_000), 25_000);
        assert_eq!(s.total(0), 0);
        assert_eq!(Schedule::new(0).rate(), 1);
    }

    #[test]
    fn schedule_is_monotonic() {
        let s = Schedule::new(10_000);
        let mut last = 0;
        for e in (0..5_000_000).step_by(7_919) {
            let d = s.due(e);
            assert!(d >= last);
            last = d;
        }
    }
}
