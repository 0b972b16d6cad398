//! The delivery policy as pure functions: merging trigger and broker `delivery`,
//! defaults, which outcomes are retried, backoff, `Retry-After`, dead-letter
//! events, reply classification and the `knativebrokerttl` hop counter.
//!
//! The rules are the "Decisions" table of the design; nothing here reads a clock
//! (the caller passes `now`) or does I/O.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use cebus_api::{BackoffPolicy, DeliveryFormat, DeliverySpec};
use cebus_events::{Event, attr};

use crate::Error;

/// Extra attempts when neither trigger nor broker sets `retry` (Knative's
/// `config-br-defaults`).
pub const DEFAULT_RETRY: u32 = 10;
/// Base backoff delay when none is set (`PT0.2S`, Knative's broker default).
pub const DEFAULT_BACKOFF_DELAY: Duration = Duration::from_millis(200);
/// Hard ceiling on any single wait between attempts (one day). Backoff saturates
/// here instead of overflowing, and an unbounded `Retry-After` is cut to it.
pub const MAX_DELAY: Duration = Duration::from_secs(24 * 60 * 60);
/// How many bytes of the failed response body go into `knativeerrordata`.
pub const ERROR_DATA_MAX_BYTES: usize = 1024;

/// Combines a trigger's and its broker's `delivery` field by field: a field the
/// trigger sets wins, the broker fills the fields the trigger leaves unset.
pub fn merge(trigger: Option<&DeliverySpec>, broker: Option<&DeliverySpec>) -> DeliverySpec {
    let empty = DeliverySpec::default();
    let t = trigger.unwrap_or(&empty);
    let b = broker.unwrap_or(&empty);
    DeliverySpec {
        dead_letter_sink: t
            .dead_letter_sink
            .clone()
            .or_else(|| b.dead_letter_sink.clone()),
        retry: t.retry.or(b.retry),
        backoff_policy: t.backoff_policy.or(b.backoff_policy),
        backoff_delay: t.backoff_delay.clone().or_else(|| b.backoff_delay.clone()),
        timeout: t.timeout.clone().or_else(|| b.timeout.clone()),
        retry_after_max: t
            .retry_after_max
            .clone()
            .or_else(|| b.retry_after_max.clone()),
        format: t.format.or(b.format),
    }
}

/// A merged `delivery` with every default applied and every duration parsed.
/// The dead-letter sink is not here: the dispatcher resolves destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Extra attempts after the first; total attempts = `retry + 1`.
    pub retry: u32,
    /// Linear or exponential backoff.
    pub backoff: BackoffPolicy,
    /// The base backoff delay.
    pub backoff_delay: Duration,
    /// Time limit of each attempt; `None` = no per-trigger limit (the dispatcher
    /// may still impose its own global cap).
    pub timeout: Option<Duration>,
    /// Cap on a honoured `Retry-After`; `None` = only [`MAX_DELAY`] caps it.
    pub retry_after_max: Option<Duration>,
    /// Content mode of outgoing deliveries.
    pub format: DeliveryFormat,
}

impl Default for DeliveryPolicy {
    /// Knative's broker defaults: retry 10, exponential, `PT0.2S`, binary, no timeout.
    fn default() -> Self {
        DeliveryPolicy {
            retry: DEFAULT_RETRY,
            backoff: BackoffPolicy::Exponential,
            backoff_delay: DEFAULT_BACKOFF_DELAY,
            timeout: None,
            retry_after_max: None,
            format: DeliveryFormat::Binary,
        }
    }
}

impl DeliveryPolicy {
    /// Applies the defaults to a (merged) spec and parses its durations. Fails on
    /// a negative `retry`, an unparsable duration or a zero `timeout`.
    pub fn from_spec(spec: &DeliverySpec) -> Result<DeliveryPolicy, Error> {
        let d = DeliveryPolicy::default();
        let retry = match spec.retry {
            None => d.retry,
            Some(r) => u32::try_from(r).map_err(|_| Error::InvalidRetry { value: r })?,
        };
        let backoff_delay = match &spec.backoff_delay {
            None => d.backoff_delay,
            Some(s) => parse_duration("backoffDelay", s)?,
        };
        let timeout = match &spec.timeout {
            None => None,
            Some(s) => {
                let t = parse_duration("timeout", s)?;
                if t.is_zero() {
                    return Err(Error::InvalidDuration {
                        field: "timeout",
                        value: s.clone(),
                        reason: format!(
                            "{s:?}: a zero timeout fails every attempt; give a positive \
                             duration such as PT10S, or leave it unset"
                        ),
                    });
                }
                Some(t)
            }
        };
        let retry_after_max = match &spec.retry_after_max {
            None => None,
            Some(s) => Some(parse_duration("retryAfterMax", s)?),
        };
        Ok(DeliveryPolicy {
            retry,
            backoff: spec.backoff_policy.unwrap_or(d.backoff),
            backoff_delay,
            timeout,
            retry_after_max,
            format: spec.format.unwrap_or(d.format),
        })
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The subscriber answered with this HTTP status.
    Status(u16),
    /// No response: connection refused, reset, DNS failure, TLS error.
    Transport,
    /// The attempt ran past its timeout.
    Timeout,
}

/// Whether a failed attempt is worth retrying: 5xx, 404, 408, 409, 429,
/// transport errors and timeouts. 2xx is success (not retried); 1xx, 3xx and
/// the other 4xx are terminal.
pub fn is_retryable(outcome: &AttemptOutcome) -> bool {
    match *outcome {
        AttemptOutcome::Status(s) => matches!(s, 404 | 408 | 409 | 429 | 500..=599),
        AttemptOutcome::Transport | AttemptOutcome::Timeout => true,
    }
}

/// The backoff before retry `retry_k` (1-based): exponential `delay × 2^(k-1)`,
/// linear `delay × k`. Saturates at [`MAX_DELAY`]; `retry_k = 0` is not a retry
/// and yields zero.
pub fn backoff(policy: &DeliveryPolicy, retry_k: u32) -> Duration {
    let delay = policy.backoff_delay.as_nanos();
    if retry_k == 0 || delay == 0 {
        return Duration::ZERO;
    }
    let nanos = match policy.backoff {
        BackoffPolicy::Linear => delay.checked_mul(u128::from(retry_k)),
        BackoffPolicy::Exponential => {
            let shift = retry_k - 1;
            // `delay` is at least 1 ns, so a shift of 127+ overflows anyway.
            if shift >= 127 {
                None
            } else {
                delay.checked_mul(1u128 << shift)
            }
        }
    };
    nanos.map_or(MAX_DELAY, capped_from_nanos)
}

fn capped_from_nanos(nanos: u128) -> Duration {
    if nanos >= MAX_DELAY.as_nanos() {
        return MAX_DELAY;
    }
    // Below one day, so both parts fit.
    Duration::new(
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    )
}

/// A parsed `Retry-After` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `delta-seconds`.
    Delay(Duration),
    /// An HTTP-date.
    Date(SystemTime),
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP-date; `None` when it
/// is neither (the header is then ignored). An absurdly large number saturates.
pub fn parse_retry_after(header: &str) -> Option<RetryAfter> {
    let value = header.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(RetryAfter::Delay(Duration::from_secs(secs)));
    }
    httpdate::parse_http_date(value).ok().map(RetryAfter::Date)
}

/// Given that attempt `attempt` (1-based; 1 is the first try, 0 is read as 1)
/// just failed with `outcome`, the wait before the next attempt, or `None` to
/// give up: terminal outcome, or all `retry + 1` attempts used. On 429 and 503
/// a `Retry-After` is honoured: wait = max(backoff, Retry-After capped by
/// `retry_after_max`); a date in the past counts as zero. No wait exceeds
/// [`MAX_DELAY`].
pub fn next_delay(
    policy: &DeliveryPolicy,
    attempt: u32,
    outcome: &AttemptOutcome,
    retry_after: Option<&RetryAfter>,
    now: SystemTime,
) -> Option<Duration> {
    if !is_retryable(outcome) {
        return None;
    }
    // After attempt n the next one is retry n; there are `retry` of them.
    let retry_k = attempt.max(1);
    if retry_k > policy.retry {
        return None;
    }
    let mut wait = backoff(policy, retry_k);
    if let (AttemptOutcome::Status(429 | 503), Some(ra)) = (outcome, retry_after) {
        let mut asked = match *ra {
            RetryAfter::Delay(d) => d,
            RetryAfter::Date(at) => at.duration_since(now).unwrap_or(Duration::ZERO),
        };
        if let Some(max) = policy.retry_after_max {
            asked = asked.min(max);
        }
        wait = wait.max(asked.min(MAX_DELAY));
    }
    Some(wait)
}

/// The event sent to the dead-letter sink: `event` unchanged (attributes and
/// data) plus `knativeerrordest` = `dest`, `knativeerrorcode` = `status` when
/// there was a response, and `knativeerrordata` = standard base64 of the first
/// [`ERROR_DATA_MAX_BYTES`] bytes of `body` when it is non-empty. Error
/// attributes left from an earlier failure that do not apply to this one are
/// removed, so the three always describe the same failure.
pub fn dead_letter_event(event: &Event, dest: &str, status: Option<u16>, body: &[u8]) -> Event {
    let mut out = event.clone();
    out.set(attr::KNATIVE_ERROR_DEST, dest);
    match status {
        Some(code) => out.set(attr::KNATIVE_ERROR_CODE, code.to_string()),
        None => {
            out.remove(attr::KNATIVE_ERROR_CODE);
        }
    }
    if body.is_empty() {
        out.remove(attr::KNATIVE_ERROR_DATA);
    } else {
        let head = &body[..body.len().min(ERROR_DATA_MAX_BYTES)];
        out.set(
            attr::KNATIVE_ERROR_DATA,
            base64::engine::general_purpose::STANDARD.encode(head),
        );
    }
    out
}

/// What to do with a subscriber's response to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyDecision {
    /// Nothing to forward: the delivery is complete.
    Done,
    /// The response is a CloudEvent: send it back into the same broker.
    Reply,
    /// A non-empty body that is not a CloudEvent: the dispatcher fails the
    /// attempt unless the trigger opts out (`cebus.dev/ignore-invalid-reply`).
    Invalid,
}

/// Classifies a response. `looks_like_cloudevent` is true for a binary-mode
/// response (`ce-specversion` header; its body may be empty) and for a
/// structured one; `has_body` is whether the body is non-empty. 2xx except 202
/// carrying a CloudEvent is a reply; 202 is never a reply; no event and no body
/// is done; a body that is not an event is invalid. Non-2xx statuses yield
/// `Done`: their failure is decided by [`is_retryable`] and [`next_delay`].
pub fn classify_reply(status: u16, has_body: bool, looks_like_cloudevent: bool) -> ReplyDecision {
    if !(200..300).contains(&status) || status == 202 {
        return ReplyDecision::Done;
    }
    if looks_like_cloudevent {
        ReplyDecision::Reply
    } else if has_body {
        ReplyDecision::Invalid
    } else {
        ReplyDecision::Done
    }
}

/// The `knativebrokerttl` to store at ingress: absent ⇒ the broker's `max`;
/// present ⇒ its value minus one. A result of 0 or less (a `max` of 0 included)
/// is [`Error::TtlExhausted`], a non-integer is [`Error::InvalidTtl`]; the
/// ingress answers 400 to both.
pub fn ttl_on_ingress(current: Option<&str>, max: u32) -> Result<u32, Error> {
    let Some(raw) = current else {
        return if max == 0 {
            Err(Error::TtlExhausted { received: 0 })
        } else {
            Ok(max)
        };
    };
    // A CloudEvents Integer is a signed 32-bit number.
    let received = raw.trim().parse::<i32>().map_err(|_| Error::InvalidTtl {
        value: raw.to_owned(),
    })?;
    let left = i64::from(received) - 1;
    u32::try_from(left)
        .ok()
        .filter(|&l| l > 0)
        .ok_or(Error::TtlExhausted {
            received: i64::from(received),
        })
}

/// Parses a DeliverySpec duration field with the api crate's ISO-8601 grammar
/// (the same one config validation uses), naming the field on failure.
fn parse_duration(field: &'static str, value: &str) -> Result<Duration, Error> {
    cebus_api::parse_iso8601(value).map_err(|e| Error::InvalidDuration {
        field,
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use cebus_api::Destination;
    use cebus_events::AttrValue;
    use proptest::prelude::*;

    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;
    const SECS: fn(u64) -> Duration = Duration::from_secs;

    fn policy(retry: u32, backoff: BackoffPolicy, delay: Duration) -> DeliveryPolicy {
        DeliveryPolicy {
            retry,
            backoff,
            backoff_delay: delay,
            ..DeliveryPolicy::default()
        }
    }

    fn dest(uri: &str) -> Destination {
        Destination {
            uri: Some(uri.to_owned()),
            ..Destination::default()
        }
    }

    #[test]
    fn merge_field_by_field() {
        let trigger = DeliverySpec {
            retry: Some(3),
            timeout: Some("PT5S".into()),
            format: Some(DeliveryFormat::Json),
            ..DeliverySpec::default()
        };
        let broker = DeliverySpec {
            dead_letter_sink: Some(dest("http://dls")),
            retry: Some(7),
            backoff_policy: Some(BackoffPolicy::Linear),
            backoff_delay: Some("PT1S".into()),
            retry_after_max: Some("PT30S".into()),
            format: Some(DeliveryFormat::Binary),
            ..DeliverySpec::default()
        };
        let m = merge(Some(&trigger), Some(&broker));
        assert_eq!(
            m,
            DeliverySpec {
                dead_letter_sink: Some(dest("http://dls")),
                retry: Some(3),
                backoff_policy: Some(BackoffPolicy::Linear),
                backoff_delay: Some("PT1S".into()),
                timeout: Some("PT5S".into()),
                retry_after_max: Some("PT30S".into()),
                format: Some(DeliveryFormat::Json),
            }
        );
        assert_eq!(merge(None, Some(&broker)), broker);
        assert_eq!(merge(Some(&trigger), None), trigger);
        assert_eq!(merge(None, None), DeliverySpec::default());
        // A trigger's own dead-letter sink replaces the broker's as a whole.
        let t = DeliverySpec {
            dead_letter_sink: Some(dest("http://mine")),
            ..DeliverySpec::default()
        };
        assert_eq!(
            merge(Some(&t), Some(&broker)).dead_letter_sink,
            Some(dest("http://mine"))
        );
    }

    #[test]
    fn policy_defaults_and_parsing() {
        let p = DeliveryPolicy::from_spec(&DeliverySpec::default()).unwrap();
        assert_eq!(p, DeliveryPolicy::default());
        assert_eq!(p.retry, 10);
        assert_eq!(p.backoff, BackoffPolicy::Exponential);
        assert_eq!(p.backoff_delay, MS(200));
        assert_eq!(p.timeout, None);
        assert_eq!(p.retry_after_max, None);
        assert_eq!(p.format, DeliveryFormat::Binary);

        let p = DeliveryPolicy::from_spec(&DeliverySpec {
            retry: Some(0),
            backoff_policy: Some(BackoffPolicy::Linear),
            backoff_delay: Some("PT1.5S".into()),
            timeout: Some("PT1M".into()),
            retry_after_max: Some("PT0S".into()),
            format: Some(DeliveryFormat::Json),
            ..DeliverySpec::default()
        })
        .unwrap();
        assert_eq!(
            p,
            DeliveryPolicy {
                retry: 0,
                backoff: BackoffPolicy::Linear,
                backoff_delay: MS(1500),
                timeout: Some(SECS(60)),
                retry_after_max: Some(Duration::ZERO),
                format: DeliveryFormat::Json,
            }
        );
    }

    #[test]
    fn policy_errors() {
        let spec = |f: fn(&mut DeliverySpec)| {
            let mut s = DeliverySpec::default();
            f(&mut s);
            DeliveryPolicy::from_spec(&s)
        };
        assert_eq!(
            spec(|s| s.retry = Some(-1)),
            Err(Error::InvalidRetry { value: -1 })
        );
        let field_of = |r: Result<DeliveryPolicy, Error>| match r {
            Err(Error::InvalidDuration { field, .. }) => field,
            other => panic!("expected InvalidDuration, got {other:?}"),
        };
        assert_eq!(
            field_of(spec(|s| s.backoff_delay = Some("1s".into()))),
            "backoffDelay"
        );
        assert_eq!(
            field_of(spec(|s| s.timeout = Some("PT0S".into()))),
            "timeout"
        );
        assert_eq!(
            field_of(spec(|s| s.timeout = Some("P1M".into()))),
            "timeout"
        );
        assert_eq!(
            field_of(spec(|s| s.retry_after_max = Some("PT".into()))),
            "retryAfterMax"
        );
        let msg = spec(|s| s.backoff_delay = Some("200ms".into()))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("backoffDelay") && msg.contains("200ms") && msg.contains("PT0.2S"),
            "{msg}"
        );
    }

    #[test]
    fn retryable_table() {
        use AttemptOutcome::*;
        let cases = [
            (Status(200), false),
            (Status(202), false),
            (Status(204), false),
            (Status(100), false),
            (Status(301), false),
            (Status(302), false),
            (Status(400), false),
            (Status(401), false),
            (Status(403), false),
            (Status(404), true),
            (Status(405), false),
            (Status(408), true),
            (Status(409), true),
            (Status(410), false),
            (Status(413), false),
            (Status(422), false),
            (Status(429), true),
            (Status(500), true),
            (Status(502), true),
            (Status(503), true),
            (Status(504), true),
            (Status(599), true),
            (Status(600), false),
            (Transport, true),
            (Timeout, true),
        ];
        for (outcome, want) in cases {
            assert_eq!(is_retryable(&outcome), want, "{outcome:?}");
        }
    }

    #[test]
    fn backoff_table() {
        let exp = policy(10, BackoffPolicy::Exponential, MS(200));
        let lin = policy(10, BackoffPolicy::Linear, MS(200));
        let cases = [
            (&exp, 0, Duration::ZERO),
            (&exp, 1, MS(200)),
            (&exp, 2, MS(400)),
            (&exp, 3, MS(800)),
            (&exp, 10, MS(200 * 512)),
            (&exp, 40, MAX_DELAY),
            (&exp, 1000, MAX_DELAY),
            (&exp, u32::MAX, MAX_DELAY),
            (&lin, 0, Duration::ZERO),
            (&lin, 1, MS(200)),
            (&lin, 2, MS(400)),
            (&lin, 10, MS(2000)),
            (&lin, u32::MAX, MAX_DELAY),
        ];
        for (p, k, want) in cases {
            assert_eq!(backoff(p, k), want, "{:?} k={k}", p.backoff);
        }
        let zero = policy(10, BackoffPolicy::Exponential, Duration::ZERO);
        assert_eq!(backoff(&zero, 1000), Duration::ZERO);
        let huge = policy(10, BackoffPolicy::Exponential, Duration::MAX);
        assert_eq!(backoff(&huge, 1), MAX_DELAY);
        assert_eq!(backoff(&huge, 200), MAX_DELAY);
    }

    #[test]
    fn retry_after_parsing() {
        let date = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let cases = [
            ("120", Some(RetryAfter::Delay(SECS(120)))),
            (" 0 ", Some(RetryAfter::Delay(Duration::ZERO))),
            (
                "99999999999999999999999",
                Some(RetryAfter::Delay(SECS(u64::MAX))),
            ),
            (
                "Wed, 21 Oct 2015 07:28:00 GMT",
                Some(RetryAfter::Date(date)),
            ),
            ("", None),
            ("-5", None),
            ("1.5", None),
            ("soon", None),
            ("Wed, 21 Oct 2015", None),
        ];
        for (header, want) in cases {
            assert_eq!(parse_retry_after(header), want, "{header:?}");
        }
    }

    /// name, policy, failed attempt, outcome, Retry-After, expected wait.
    type NextDelayCase<'a> = (
        &'a str,
        &'a DeliveryPolicy,
        u32,
        AttemptOutcome,
        Option<RetryAfter>,
        Option<Duration>,
    );

    #[test]
    fn next_delay_table() {
        use AttemptOutcome::*;
        let now = SystemTime::UNIX_EPOCH + SECS(1_700_000_000);
        let p = policy(3, BackoffPolicy::Exponential, SECS(1));
        let capped = DeliveryPolicy {
            retry_after_max: Some(SECS(10)),
            ..p
        };
        let off = DeliveryPolicy {
            retry_after_max: Some(Duration::ZERO),
            ..p
        };
        let ra = |s| RetryAfter::Delay(SECS(s));
        let future = RetryAfter::Date(now + SECS(30));
        let past = RetryAfter::Date(now - SECS(30));
        #[rustfmt::skip]
        let cases: Vec<NextDelayCase> = vec![
            ("first failure, 500", &p, 1, Status(500), None, Some(SECS(1))),
            ("second failure", &p, 2, Status(500), None, Some(SECS(2))),
            ("third failure (last retry)", &p, 3, Transport, None, Some(SECS(4))),
            ("retries exhausted", &p, 4, Status(500), None, None),
            ("far beyond", &p, 100, Timeout, None, None),
            ("attempt 0 read as 1", &p, 0, Status(500), None, Some(SECS(1))),
            ("terminal 400", &p, 1, Status(400), None, None),
            ("terminal 3xx", &p, 1, Status(302), None, None),
            ("success", &p, 1, Status(200), None, None),
            ("429 Retry-After above backoff", &p, 1, Status(429), Some(ra(5)), Some(SECS(5))),
            ("503 Retry-After below backoff", &p, 3, Status(503), Some(ra(1)), Some(SECS(4))),
            ("500 ignores Retry-After", &p, 1, Status(500), Some(ra(60)), Some(SECS(1))),
            ("404 ignores Retry-After", &p, 1, Status(404), Some(ra(60)), Some(SECS(1))),
            ("Retry-After capped by retryAfterMax", &capped, 1, Status(429), Some(ra(60)), Some(SECS(10))),
            ("cap never lowers backoff", &capped, 3, Status(429), Some(ra(60)), Some(SECS(10))),
            ("retryAfterMax PT0S opts out", &off, 2, Status(503), Some(ra(60)), Some(SECS(2))),
            ("date in the future", &p, 1, Status(503), Some(future), Some(SECS(30))),
            ("date in the past counts as zero", &p, 1, Status(503), Some(past), Some(SECS(1))),
            ("date capped", &capped, 1, Status(429), Some(future), Some(SECS(10))),
            ("huge Retry-After cut to MAX_DELAY", &p, 1, Status(429), Some(ra(u64::MAX)), Some(MAX_DELAY)),
            ("Retry-After does not revive exhausted", &p, 4, Status(429), Some(ra(1)), None),
        ];
        for (name, pol, attempt, outcome, ra, want) in cases {
            assert_eq!(
                next_delay(pol, attempt, &outcome, ra.as_ref(), now),
                want,
                "{name}"
            );
        }
        let no_retry = policy(0, BackoffPolicy::Linear, SECS(1));
        assert_eq!(next_delay(&no_retry, 1, &Status(500), None, now), None);
    }

    fn sample_event() -> Event {
        let mut e = Event::with_required("42", "/src", "t");
        e.set("count", AttrValue::Integer(7));
        e.set_data(Some(Bytes::from_static(b"{\"a\":1}")));
        e
    }

    /// name, original, status, body, expected code, expected data.
    type DeadLetterCase<'a> = (
        &'a str,
        Event,
        Option<u16>,
        &'a [u8],
        Option<&'a str>,
        Option<String>,
    );

    #[test]
    fn dead_letter_table() {
        use base64::engine::general_purpose::STANDARD;
        let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let non_utf8 = [0xff, 0xfe, 0x00, 0x80];
        let mut stale = sample_event();
        stale.set(attr::KNATIVE_ERROR_CODE, "500");
        stale.set(attr::KNATIVE_ERROR_DATA, "b2xk");
        #[rustfmt::skip]
        let cases: Vec<DeadLetterCase> = vec![
            ("500 with body", sample_event(), Some(500), b"boom", Some("500"), Some(STANDARD.encode("boom"))),
            ("404, empty body", sample_event(), Some(404), b"", Some("404"), None),
            ("no response", sample_event(), None, b"", None, None),
            ("body far above 1024 bytes", sample_event(), Some(502), &big, Some("502"), Some(STANDARD.encode(&big[..1024]))),
            ("exactly 1024 bytes", sample_event(), Some(502), &big[..1024], Some("502"), Some(STANDARD.encode(&big[..1024]))),
            ("non-UTF-8 body", sample_event(), Some(500), &non_utf8, Some("500"), Some("//4AgA==".to_owned())),
            ("stale error attributes replaced", stale.clone(), Some(503), b"new", Some("503"), Some(STANDARD.encode("new"))),
            ("stale error attributes removed", stale, None, b"", None, None),
        ];
        for (name, original, status, body, code, data) in cases {
            let dl = dead_letter_event(&original, "http://sub/x", status, body);
            assert_eq!(
                dl.get_str(attr::KNATIVE_ERROR_DEST).as_deref(),
                Some("http://sub/x"),
                "{name}"
            );
            assert_eq!(
                dl.get_str(attr::KNATIVE_ERROR_CODE).as_deref(),
                code,
                "{name}"
            );
            assert_eq!(
                dl.get_str(attr::KNATIVE_ERROR_DATA).map(|c| c.into_owned()),
                data,
                "{name}"
            );
            // Everything else is the original event, untouched.
            let mut rest = dl.clone();
            for a in [
                attr::KNATIVE_ERROR_DEST,
                attr::KNATIVE_ERROR_CODE,
                attr::KNATIVE_ERROR_DATA,
            ] {
                rest.remove(a);
            }
            let mut orig = original.clone();
            for a in [attr::KNATIVE_ERROR_CODE, attr::KNATIVE_ERROR_DATA] {
                orig.remove(a);
            }
            assert_eq!(rest, orig, "{name}");
            assert_eq!(dl.data(), original.data(), "{name}");
            assert_eq!(dl.get("count"), Some(&AttrValue::Integer(7)), "{name}");
        }
        let encoded = dead_letter_event(&sample_event(), "d", Some(500), &big)
            .get_str(attr::KNATIVE_ERROR_DATA)
            .unwrap()
            .into_owned();
        assert_eq!(STANDARD.decode(encoded).unwrap(), &big[..1024]);
    }

    #[test]
    fn reply_table() {
        use ReplyDecision::*;
        // (status, has_body, looks_like_cloudevent) -> decision
        let cases = [
            (200, true, true, Reply),
            (201, true, true, Reply),
            (203, true, true, Reply),
            (204, false, true, Reply), // binary mode, event without data
            (200, false, true, Reply),
            (202, true, true, Done),
            (202, true, false, Done),
            (202, false, false, Done),
            (200, false, false, Done),
            (204, false, false, Done),
            (200, true, false, Invalid),
            (201, true, false, Invalid),
            (500, true, true, Done),
            (404, true, false, Done),
            (302, false, false, Done),
        ];
        for (status, body, ce, want) in cases {
            assert_eq!(
                classify_reply(status, body, ce),
                want,
                "{status} body={body} ce={ce}"
            );
        }
    }

    #[test]
    fn ttl_table() {
        let exhausted = |received| Err(Error::TtlExhausted { received });
        let invalid = |v: &str| {
            Err(Error::InvalidTtl {
                value: v.to_owned(),
            })
        };
        let cases: Vec<(Option<&str>, u32, Result<u32, Error>)> = vec![
            (None, 255, Ok(255)),
            (None, 1, Ok(1)),
            (None, 0, exhausted(0)),
            (Some("255"), 255, Ok(254)),
            (Some("3"), 255, Ok(2)),
            (Some("2"), 255, Ok(1)),
            (Some("1"), 255, exhausted(1)),
            (Some("0"), 255, exhausted(0)),
            (Some("-4"), 255, exhausted(-4)),
            (Some(" 10 "), 255, Ok(9)),
            (Some("1000"), 255, Ok(999)),
            (Some("2147483647"), 255, Ok(2_147_483_646)),
            (Some("2147483648"), 255, invalid("2147483648")),
            (Some(""), 255, invalid("")),
            (Some("ten"), 255, invalid("ten")),
            (Some("1.5"), 255, invalid("1.5")),
        ];
        for (current, max, want) in cases {
            assert_eq!(ttl_on_ingress(current, max), want, "{current:?} max={max}");
        }
    }

    fn opt_duration_str() -> impl Strategy<Value = Option<String>> {
        proptest::option::of((0u32..600).prop_map(|s| format!("PT{s}S")))
    }

    fn any_spec() -> impl Strategy<Value = DeliverySpec> {
        (
            proptest::option::of("[a-z]{1,5}".prop_map(|h| dest(&format!("http://{h}")))),
            proptest::option::of(-2i32..20),
            proptest::option::of(prop_oneof![
                Just(BackoffPolicy::Linear),
                Just(BackoffPolicy::Exponential)
            ]),
            opt_duration_str(),
            opt_duration_str(),
            opt_duration_str(),
            proptest::option::of(prop_oneof![
                Just(DeliveryFormat::Json),
                Just(DeliveryFormat::Binary)
            ]),
        )
            .prop_map(|(dls, retry, bp, bd, to, ram, fmt)| DeliverySpec {
                dead_letter_sink: dls,
                retry,
                backoff_policy: bp,
                backoff_delay: bd,
                timeout: to,
                retry_after_max: ram,
                format: fmt,
            })
    }

    fn any_policy() -> impl Strategy<Value = DeliveryPolicy> {
        (
            0u32..50,
            prop_oneof![
                Just(BackoffPolicy::Linear),
                Just(BackoffPolicy::Exponential)
            ],
            any::<u64>(),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(retry, backoff, nanos, ram)| DeliveryPolicy {
                retry,
                backoff,
                backoff_delay: Duration::from_nanos(nanos),
                retry_after_max: ram.map(Duration::from_nanos),
                ..DeliveryPolicy::default()
            })
    }

    fn any_outcome() -> impl Strategy<Value = AttemptOutcome> {
        prop_oneof![
            (100u16..700).prop_map(AttemptOutcome::Status),
            Just(AttemptOutcome::Transport),
            Just(AttemptOutcome::Timeout),
        ]
    }

    proptest! {
        #[test]
        fn exponential_backoff_is_monotone(nanos in any::<u64>(), k in 0u32..2000) {
            let p = policy(10, BackoffPolicy::Exponential, Duration::from_nanos(nanos));
            let (a, b) = (backoff(&p, k), backoff(&p, k + 1));
            prop_assert!(a <= b);
            prop_assert!(b <= MAX_DELAY);
        }

        #[test]
        fn backoff_never_panics(p in any_policy(), k in any::<u32>()) {
            prop_assert!(backoff(&p, k) <= MAX_DELAY);
        }

        #[test]
        fn linear_backoff_is_delay_times_k(ms in 0u64..10_000, k in 0u32..1000) {
            let p = policy(10, BackoffPolicy::Linear, MS(ms));
            // Below the ceiling it is exactly `delay × k`; at or above it, the ceiling.
            prop_assert_eq!(backoff(&p, k), (MS(ms) * k).min(MAX_DELAY));
        }

        #[test]
        fn exponential_backoff_is_delay_times_power(ms in 0u64..10_000, k in 1u32..20) {
            let p = policy(10, BackoffPolicy::Exponential, MS(ms));
            prop_assert_eq!(backoff(&p, k), (MS(ms) * (1 << (k - 1))).min(MAX_DELAY));
        }

        #[test]
        fn no_retry_after_last_attempt(
            p in any_policy(),
            extra in 0u32..1000,
            outcome in any_outcome(),
            ra in proptest::option::of(any::<u64>().prop_map(|s| RetryAfter::Delay(SECS(s)))),
        ) {
            let now = SystemTime::UNIX_EPOCH;
            prop_assert_eq!(next_delay(&p, p.retry + 1 + extra, &outcome, ra.as_ref(), now), None);
        }

        #[test]
        fn next_delay_at_least_backoff(
            p in any_policy(),
            attempt in 1u32..60,
            outcome in any_outcome(),
            secs in proptest::option::of(0u64..100_000),
        ) {
            let ra = secs.map(|s| RetryAfter::Delay(SECS(s)));
            let got = next_delay(&p, attempt, &outcome, ra.as_ref(), SystemTime::UNIX_EPOCH);
            if is_retryable(&outcome) && attempt <= p.retry {
                let wait = got.expect("a retry is due");
                prop_assert!(wait >= backoff(&p, attempt));
                prop_assert!(wait <= MAX_DELAY);
            } else {
                prop_assert_eq!(got, None);
            }
        }

        #[test]
        fn merge_is_idempotent_and_trigger_wins(t in any_spec(), b in any_spec()) {
            let m = merge(Some(&t), Some(&b));
            prop_assert_eq!(&merge(Some(&m), Some(&m)), &m);
            prop_assert_eq!(&merge(Some(&m), Some(&b)), &m);
            prop_assert_eq!(&merge(Some(&t), Some(&m)), &m);
            if t.dead_letter_sink.is_some() { prop_assert_eq!(&m.dead_letter_sink, &t.dead_letter_sink); }
            if t.retry.is_some() { prop_assert_eq!(m.retry, t.retry); }
            if t.backoff_policy.is_some() { prop_assert_eq!(m.backoff_policy, t.backoff_policy); }
            if t.backoff_delay.is_some() { prop_assert_eq!(&m.backoff_delay, &t.backoff_delay); }
            if t.timeout.is_some() { prop_assert_eq!(&m.timeout, &t.timeout); }
            if t.retry_after_max.is_some() { prop_assert_eq!(&m.retry_after_max, &t.retry_after_max); }
            if t.format.is_some() { prop_assert_eq!(m.format, t.format); }
            // Every unset trigger field is the broker's.
            let filled = DeliverySpec {
                dead_letter_sink: t.dead_letter_sink.clone().or(b.dead_letter_sink.clone()),
                retry: t.retry.or(b.retry),
                backoff_policy: t.backoff_policy.or(b.backoff_policy),
                backoff_delay: t.backoff_delay.clone().or(b.backoff_delay.clone()),
                timeout: t.timeout.clone().or(b.timeout.clone()),
                retry_after_max: t.retry_after_max.clone().or(b.retry_after_max.clone()),
                format: t.format.or(b.format),
            };
            prop_assert_eq!(&m, &filled);
        }

        #[test]
        fn from_spec_never_panics(delay in "P?T?[0-9.,]{0,25}[WDHMS]?", retry in any::<i32>()) {
            let spec = DeliverySpec {
                retry: Some(retry),
                backoff_delay: Some(delay),
                ..DeliverySpec::default()
            };
            if let Ok(p) = DeliveryPolicy::from_spec(&spec) {
                prop_assert_eq!(i64::from(p.retry), i64::from(retry));
            }
        }

        #[test]
        fn ttl_decrements(ttl in 2i32..=i32::MAX) {
            prop_assert_eq!(ttl_on_ingress(Some(&ttl.to_string()), 255), Ok((ttl - 1) as u32));
        }
    }
}
