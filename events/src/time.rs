//! RFC 3339 formatting of instants in UTC, for the timestamps cebus writes itself
//! (`knativearrivaltime`, a PingSource's `time`, a NATS message's arrival time).
//!
//! Pure: the instant is a parameter; reading the clock is the caller's business.

use std::time::{SystemTime, UNIX_EPOCH};

/// How many fractional-second digits [`rfc3339`] writes (truncated, never rounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// No fraction: `2023-11-14T22:13:20Z`.
    Seconds,
    /// Three digits: `2023-11-14T22:13:20.123Z`.
    Millis,
    /// Six digits, as Knative writes `knativearrivaltime`: `2023-11-14T22:13:20.123456Z`.
    Micros,
    /// Nine digits: `2023-11-14T22:13:20.123456789Z`.
    Nanos,
}

impl Precision {
    /// Fractional digits written.
    fn digits(self) -> u32 {
        match self {
            Precision::Seconds => 0,
            Precision::Millis => 3,
            Precision::Micros => 6,
            Precision::Nanos => 9,
        }
    }
}

/// `t` as `YYYY-MM-DDTHH:MM:SS[.f…]Z` in UTC, with as many fractional digits as
/// `precision` says. Instants before 1970 are written as the calendar says
/// (`1969-12-31T23:59:59.5…`); years beyond 9999 with all their digits.
pub fn rfc3339(t: SystemTime, precision: Precision) -> String {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(before) => {
            // `before` is how far before the epoch; the fraction counts forward
            // from the whole second below it.
            let d = before.duration();
            let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, 1_000_000_000 - n),
            }
        }
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u64;
    let (y, m, day) = civil_from_days(days);
    // Once per event: digits written straight into one right-sized string
    // (`format!` grew its buffer three times).
    let fraction = precision.digits();
    let mut out = String::with_capacity(21 + fraction as usize);
    if (0..=9999).contains(&y) {
        digits(&mut out, y as u64, 4);
    } else {
        out.push_str(&y.to_string());
    }
    for (sep, v) in [
        ('-', u64::from(m)),
        ('-', u64::from(day)),
        ('T', rem / 3600),
        (':', (rem / 60) % 60),
        (':', rem % 60),
    ] {
        out.push(sep);
        digits(&mut out, v, 2);
    }
    if fraction > 0 {
        out.push('.');
        digits(
            &mut out,
            u64::from(nanos / 10u32.pow(9 - fraction)),
            fraction,
        );
    }
    out.push('Z');
    out
}

/// Appends `v` as exactly `width` decimal digits (zero-padded; `v` fits).
fn digits(out: &mut String, v: u64, width: u32) {
    let mut div = 10u64.pow(width - 1);
    while div > 0 {
        out.push(char::from(b'0' + ((v / div) % 10) as u8));
        div /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn formats_known_instants_with_microseconds() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 0, "2000-02-29T00:00:00.000000Z"),
            (1_700_000_000, 123_456_789, "2023-11-14T22:13:20.123456Z"),
            (4_102_444_799, 999_999_000, "2099-12-31T23:59:59.999999Z"),
            (253_402_300_799, 999_999_999, "9999-12-31T23:59:59.999999Z"),
            (253_402_300_800, 0, "10000-01-01T00:00:00.000000Z"),
        ];
        for (secs, nanos, want) in cases {
            assert_eq!(
                rfc3339(at(secs, nanos), Precision::Micros),
                want,
                "{secs}.{nanos}"
            );
        }
    }

    #[test]
    fn precision_truncates_the_fraction() {
        let t = at(1_700_000_000, 123_456_789);
        let cases = [
            (Precision::Seconds, "2023-11-14T22:13:20Z"),
            (Precision::Millis, "2023-11-14T22:13:20.123Z"),
            (Precision::Micros, "2023-11-14T22:13:20.123456Z"),
            (Precision::Nanos, "2023-11-14T22:13:20.123456789Z"),
        ];
        for (precision, want) in cases {
            assert_eq!(rfc3339(t, precision), want, "{precision:?}");
        }
    }

    #[test]
    fn instants_before_the_epoch_follow_the_calendar() {
        let cases = [
            (Duration::new(0, 1), "1969-12-31T23:59:59.999999999Z"),
            (Duration::new(1, 0), "1969-12-31T23:59:59.000000000Z"),
            (
                Duration::new(86_400, 500_000_000),
                "1969-12-30T23:59:59.500000000Z",
            ),
            (
                Duration::new(2_208_988_800, 0),
                "1900-01-01T00:00:00.000000000Z",
            ),
        ];
        for (before, want) in cases {
            assert_eq!(
                rfc3339(UNIX_EPOCH - before, Precision::Nanos),
                want,
                "{before:?}"
            );
        }
    }

    #[test]
    fn matches_format_across_centuries() {
        // The digit writer against `format!`, at instants spread over 1970–2290.
        for i in 0..20_000u64 {
            let secs = i * 503_113 + i % 7;
            let nanos = ((i * 7_919_333) % 1_000_000_000) as u32;
            let days = (secs / 86_400) as i64;
            let rem = secs % 86_400;
            let (y, m, d) = civil_from_days(days);
            let want = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
                rem / 3600,
                (rem / 60) % 60,
                rem % 60,
                nanos / 1_000,
            );
            assert_eq!(rfc3339(at(secs, nanos), Precision::Micros), want);
        }
    }
}
