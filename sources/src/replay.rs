//! Replays of a webhook delivery: the provider's delivery ids accepted within a
//! window (GitHub's `X-GitHub-Delivery` by default), bounded in entries, and the
//! ids being delivered right now. Pure: the time is passed in.
//!
//! Only an accepted delivery is remembered (authenticated, and taken by the sink):
//! a request that failed downstream stays retryable.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use cebus_api::WebhookDedup;
use http::HeaderName;

/// The header deduplicated on by default: GitHub's delivery GUID, which GitHub
/// keeps when it redelivers.
pub const DEFAULT_DEDUP_HEADER: &str = "x-github-delivery";
/// How long an accepted delivery id is remembered by default.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(600);
/// Most delivery ids remembered per source by default.
pub const DEFAULT_DEDUP_ENTRIES: usize = 10_000;
/// Longest delivery id; a longer one is refused (it bounds the memory per entry).
pub const MAX_DELIVERY_ID_BYTES: usize = 256;

/// A source's deduplication settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupPlan {
    /// Header carrying the delivery id.
    pub header: HeaderName,
    /// How long an accepted id is remembered.
    pub window: Duration,
    /// Most ids remembered.
    pub max_entries: usize,
}

impl DedupPlan {
    /// The settings of a (validated) `spec.dedup`, defaults filled in; `None` when
    /// the window is zero (deduplication off). The error is (field, message).
    pub fn from_spec(spec: Option<&WebhookDedup>) -> Result<Option<DedupPlan>, (String, String)> {
        let d = spec.cloned().unwrap_or_default();
        let header = match d.header.as_deref() {
            None => HeaderName::from_static(DEFAULT_DEDUP_HEADER),
            Some(h) => HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                (
                    "spec.dedup.header".to_owned(),
                    format!("{h:?} is not an HTTP header name"),
                )
            })?,
        };
        let window = match d.window.as_deref() {
            None => DEFAULT_DEDUP_WINDOW,
            Some(w) => cebus_api::parse_iso8601(w)
                .map_err(|e| ("spec.dedup.window".to_owned(), e.to_string()))?,
        };
        let max_entries = d.max_entries.map_or(DEFAULT_DEDUP_ENTRIES, |n| n as usize);
        if max_entries == 0 {
            return Err((
                "spec.dedup.maxEntries".to_owned(),
                "maxEntries must be at least 1".to_owned(),
            ));
        }
        Ok((!window.is_zero()).then_some(DedupPlan {
            header,
            window,
            max_entries,
        }))
    }
}

/// What a delivery id is, seen from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not seen within the window: deliver it (and [`DeliveryLog::accept`] or
    /// [`DeliveryLog::release`] it after).
    Fresh,
    /// Accepted `age` ago, within the window: answer without delivering.
    Duplicate {
        /// Since it was accepted.
        age: Duration,
    },
    /// Another request with this id is being delivered now.
    InFlight,
}

/// Delivery ids dropped before their window ended, to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlyEviction {
    /// Dropped by this accept.
    pub now: usize,
    /// Dropped since the log was made.
    pub total: u64,
}

/// The delivery ids of one source: accepted ones (bounded in time and number,
/// oldest forgotten first) and those in flight.
#[derive(Debug)]
pub struct DeliveryLog {
    window: Duration,
    max_entries: usize,
    accepted: HashMap<Box<str>, Instant>,
    /// Accept order; an entry whose time differs from `accepted`'s is stale (the
    /// id was accepted again after its window) and skipped.
    order: VecDeque<(Instant, Box<str>)>,
    in_flight: HashSet<Box<str>>,
    evicted_early: u64,
}

impl DeliveryLog {
    /// An empty log.
    pub fn new(window: Duration, max_entries: usize) -> DeliveryLog {
        DeliveryLog {
            window,
            max_entries: max_entries.max(1),
            accepted: HashMap::new(),
            order: VecDeque::new(),
            in_flight: HashSet::new(),
            evicted_early: 0,
        }
    }

    /// New bounds (a changed config); what is remembered stays, within them.
    pub fn set_bounds(&mut self, window: Duration, max_entries: usize) {
        self.window = window;
        self.max_entries = max_entries.max(1);
    }

    /// Ids remembered as accepted (some may have outlived the window).
    pub fn len(&self) -> usize {
        self.accepted.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty()
    }

    /// Whether `id` may be delivered; a [`Claim::Fresh`] id is in flight until
    /// [`accept`](Self::accept) or [`release`](Self::release).
    pub fn claim(&mut self, id: &str, now: Instant) -> Claim {
        if let Some(&at) = self.accepted.get(id) {
            let age = now.saturating_duration_since(at);
            if age < self.window {
                return Claim::Duplicate { age };
            }
        }
        if !self.in_flight.insert(id.into()) {
            return Claim::InFlight;
        }
        Claim::Fresh
    }

    /// The sink took `id`: remember it for the window. Expired ids are dropped
    /// first; when the log is still full, the oldest go, and are reported.
    pub fn accept(&mut self, id: &str, now: Instant) -> Option<EarlyEviction> {
        self.in_flight.remove(id);
        self.expire(now);
        let mut early = 0;
        while self.accepted.len() >= self.max_entries && !self.accepted.contains_key(id) {
            let Some((at, old)) = self.order.pop_front() else {
                break;
            };
            if self.accepted.get(&old) == Some(&at) {
                self.accepted.remove(&old);
                early += 1;
            }
        }
        let id: Box<str> = id.into();
        self.accepted.insert(id.clone(), now);
        self.order.push_back((now, id));
        // Stale order entries (ids accepted again) never outnumber live ones.
        if self.order.len() > 2 * self.accepted.len() {
            let accepted = &self.accepted;
            self.order.retain(|(at, id)| accepted.get(id) == Some(at));
        }
        (early > 0).then(|| {
            self.evicted_early += early as u64;
            EarlyEviction {
                now: early,
                total: self.evicted_early,
            }
        })
    }

    /// The delivery of `id` failed: forget that it was in flight, so a retry of
    /// it is delivered.
    pub fn release(&mut self, id: &str) {
        self.in_flight.remove(id);
    }

    /// Drops the ids whose window ended.
    fn expire(&mut self, now: Instant) {
        while let Some((at, id)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.window {
                break;
            }
            if self.accepted.get(id) == Some(at) {
                self.accepted.remove(id);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn settings_from_yaml() {
        let plan = |d: WebhookDedup| DedupPlan::from_spec(Some(&d));
        assert_eq!(
            DedupPlan::from_spec(None),
            Ok(Some(DedupPlan {
                header: HeaderName::from_static("x-github-delivery"),
                window: 10 * MIN,
                max_entries: 10_000,
            }))
        );
        assert_eq!(
            plan(WebhookDedup {
                header: Some("Idempotency-Key".into()),
                window: Some("PT1H".into()),
                max_entries: Some(5),
            }),
            Ok(Some(DedupPlan {
                header: HeaderName::from_static("idempotency-key"),
                window: 60 * MIN,
                max_entries: 5,
            }))
        );
        assert_eq!(
            plan(WebhookDedup {
                window: Some("PT0S".into()),
                ..WebhookDedup::default()
            }),
            Ok(None),
            "a zero window turns it off"
        );
        assert_eq!(
            plan(WebhookDedup {
                max_entries: Some(0),
                ..WebhookDedup::default()
            })
            .unwrap_err()
            .0,
            "spec.dedup.maxEntries"
        );
        assert_eq!(
            plan(WebhookDedup {
                window: Some("10m".into()),
                ..WebhookDedup::default()
            })
            .unwrap_err()
            .0,
            "spec.dedup.window"
        );
    }

    #[test]
    fn an_accepted_id_is_a_duplicate_for_the_window() {
        let t0 = Instant::now();
        let mut log = DeliveryLog::new(10 * MIN, 100);
        // (offset from t0, id, claim)
        let cases: &[(Duration, &str, Claim)] = &[
            (Duration::ZERO, "a", Claim::Fresh),
            // Claimed, not yet accepted: a concurrent copy waits.
            (Duration::ZERO, "a", Claim::InFlight),
        ];
        for (at, id, want) in cases {
            assert_eq!(log.claim(id, t0 + *at), *want, "{id} at {at:?}");
        }
        assert_eq!(log.accept("a", t0), None);
        assert_eq!(log.claim("a", t0 + MIN), Claim::Duplicate { age: MIN });
        assert_eq!(
            log.claim("a", t0 + 10 * MIN - Duration::from_millis(1)),
            Claim::Duplicate {
                age: 10 * MIN - Duration::from_millis(1)
            }
        );
        // At the end of the window it is fresh again, and accepted anew.
        assert_eq!(log.claim("a", t0 + 10 * MIN), Claim::Fresh);
        assert_eq!(log.accept("a", t0 + 10 * MIN), None);
        assert_eq!(log.len(), 1);
        assert_eq!(
            log.claim("a", t0 + 15 * MIN),
            Claim::Duplicate { age: 5 * MIN }
        );
    }

    #[test]
    fn a_failed_delivery_stays_retryable() {
        let t0 = Instant::now();
        let mut log = DeliveryLog::new(10 * MIN, 100);
        assert_eq!(log.claim("x", t0), Claim::Fresh);
        log.release("x");
        assert_eq!(log.claim("x", t0), Claim::Fresh, "a retry is delivered");
        assert_eq!(log.accept("x", t0), None);
        assert!(matches!(log.claim("x", t0), Claim::Duplicate { .. }));
        assert!(!log.is_empty());
    }

    #[test]
    fn bounded_oldest_evicted_first_and_reported() {
        let t0 = Instant::now();
        let mut log = DeliveryLog::new(10 * MIN, 3);
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(log.claim(id, t0 + i as u32 * MIN), Claim::Fresh);
            assert_eq!(log.accept(id, t0 + i as u32 * MIN), None);
        }
        // Full, nothing expired: "a" goes before its window ended.
        assert_eq!(log.claim("d", t0 + 3 * MIN), Claim::Fresh);
        assert_eq!(
            log.accept("d", t0 + 3 * MIN),
            Some(EarlyEviction { now: 1, total: 1 })
        );
        assert_eq!(log.len(), 3);
        assert_eq!(log.claim("a", t0 + 3 * MIN), Claim::Fresh);
        log.release("a");
        assert!(matches!(
            log.claim("b", t0 + 3 * MIN),
            Claim::Duplicate { .. }
        ));
        // Later, "b" and "c" have expired: room without early eviction.
        assert_eq!(log.claim("e", t0 + 12 * MIN + MIN / 2), Claim::Fresh);
        assert_eq!(log.accept("e", t0 + 12 * MIN + MIN / 2), None);
        assert_eq!(log.len(), 2, "d and e");
        // Shrinking the bounds keeps what fits: "d" has just expired, "e" has not.
        log.set_bounds(10 * MIN, 1);
        assert_eq!(log.claim("f", t0 + 13 * MIN), Claim::Fresh);
        assert_eq!(
            log.accept("f", t0 + 13 * MIN),
            Some(EarlyEviction { now: 1, total: 2 })
        );
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn memory_stays_bounded_under_many_ids() {
        let t0 = Instant::now();
        let mut log = DeliveryLog::new(10 * MIN, 50);
        for i in 0..10_000u32 {
            let id = format!("id-{}", i % 70);
            let now = t0 + Duration::from_secs(u64::from(i));
            if log.claim(&id, now) == Claim::Fresh {
                log.accept(&id, now);
            }
            assert!(log.len() <= 50);
            assert!(log.order.len() <= 2 * 50 + 1, "{}", log.order.len());
            assert!(log.in_flight.is_empty());
        }
    }
}
