//! Latency recording: HDR histograms in nanoseconds, a sharded recorder that many
//! tasks write to, and the percentile summary that reports carry.

use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Lowest discernible latency (1 µs); smaller values land in the first bucket.
const LOWEST_NS: u64 = 1_000;
/// Highest trackable latency (10 min); larger values are clamped.
const HIGHEST_NS: u64 = 600_000_000_000;
/// Three significant figures: 0.1 % value error.
const SIGFIG: u8 = 3;

/// An empty latency histogram (nanoseconds, 1 µs .. 10 min, 3 significant figures).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGFIG).expect("valid histogram bounds")
}

/// Percentiles of one latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Recorded values.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest value.
    pub max_ms: f64,
}

impl LatencySummary {
    /// The summary of `h`, or `None` when it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<LatencySummary> {
        if h.is_empty() {
            return None;
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        Some(LatencySummary {
            count: h.len(),
            mean_ms: h.mean() / 1e6,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        })
    }
}

/// Histograms that many tasks record into: each writer picks a shard by a hint
/// (its connection number), so locks are rarely contended and memory stays fixed
/// however many connections there are.
#[derive(Debug)]
pub struct Recorder {
    shards: Box<[Mutex<Histogram<u64>>]>,
}

impl Recorder {
    /// A recorder with `shards` histograms (at least one).
    pub fn new(shards: usize) -> Recorder {
        Recorder {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(new_histogram()))
                .collect(),
        }
    }

    /// Records `ns` into the shard for `hint`.
    pub fn record(&self, hint: usize, ns: u64) {
        let shard = &self.shards[hint % self.shards.len()];
        shard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .saturating_record(ns);
    }

    /// All shards merged; the recorder is empty afterwards.
    pub fn take(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in &self.shards {
            let mut h = shard.lock().unwrap_or_else(|e| e.into_inner());
            // Same bounds everywhere, so adding cannot fail.
            all.add(&*h).expect("histograms with equal bounds");
            h.reset();
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        // 3 significant figures: within 0.1 % (plus one bucket at the bottom).
        (a - b).abs() <= b * 0.001 + 0.001
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            h.record(us * 1_000).unwrap();
        }
        let s = LatencySummary::of(&h).unwrap();
        assert_eq!(s.count, 10_000);
        assert!(close(s.p50_ms, 5.0), "{s:?}");
        assert!(close(s.p90_ms, 9.0), "{s:?}");
        assert!(close(s.p99_ms, 9.9), "{s:?}");
        assert!(close(s.p999_ms, 9.99), "{s:?}");
        assert!(close(s.max_ms, 10.0), "{s:?}");
        assert!(close(s.mean_ms, 5.0005), "{s:?}");
    }

    #[test]
    fn tail_percentiles_see_rare_outliers() {
        let mut h = new_histogram();
        for _ in 0..990 {
            h.record(100_000).unwrap(); // 0.1 ms
        }
        for _ in 0..10 {
            h.record(50_000_000).unwrap(); // 50 ms
        }
        let s = LatencySummary::of(&h).unwrap();
        assert!(close(s.p50_ms, 0.1), "{s:?}");
        assert!(close(s.p99_ms, 0.1), "{s:?}");
        assert!(close(s.p999_ms, 50.0), "{s:?}");
        assert!(close(s.max_ms, 50.0), "{s:?}");
    }

    #[test]
    fn empty_histogram_has_no_summary() {
        assert_eq!(LatencySummary::of(&new_histogram()), None);
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let r = Recorder::new(1);
        r.record(0, 0);
        r.record(0, u64::MAX);
        let h = r.take();
        assert_eq!(h.len(), 2);
        assert!(h.max() >= HIGHEST_NS);
    }

    #[test]
    fn recorder_merges_shards_and_resets() {
        let r = Recorder::new(4);
        for i in 0..100u64 {
            r.record(i as usize, (i + 1) * 1_000_000);
        }
        let h = r.take();
        assert_eq!(h.len(), 100);
        let s = LatencySummary::of(&h).unwrap();
        assert!(close(s.max_ms, 100.0), "{s:?}");
        assert!(r.take().is_empty());
    }
}
