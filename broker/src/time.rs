//! RFC 3339 formatting of instants, for `knativearrivaltime`.

use std::time::{SystemTime, UNIX_EPOCH};

/// `t` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC (microseconds, like Knative).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    // Once per event: digits written straight into one right-sized string
    // (`format!` grew its buffer three times).
    let mut out = String::with_capacity(27);
    if (0..=9999).contains(&y) {
        digits(&mut out, y as u64, 4);
    } else {
        out.push_str(&y.to_string());
    }
    for (sep, v, width) in [
        ('-', u64::from(m), 2),
        ('-', u64::from(day), 2),
        ('T', rem / 3600, 2),
        (':', (rem / 60) % 60, 2),
        (':', rem % 60, 2),
        ('.', u64::from(d.subsec_micros()), 6),
    ] {
        out.push(sep);
        digits(&mut out, v, width);
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

    #[test]
    fn formats_known_instants() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 0, "2000-02-29T00:00:00.000000Z"),
            (1_700_000_000, 123_456_789, "2023-11-14T22:13:20.123456Z"),
            (4_102_444_799, 999_999_000, "2099-12-31T23:59:59.999999Z"),
        ];
        for (secs, nanos, want) in cases {
            let t = UNIX_EPOCH + Duration::new(secs, nanos);
            assert_eq!(rfc3339(t), want, "{secs}.{nanos}");
        }
    }

    #[test]
    fn matches_format_across_centuries() {
        // The digit writer against `format!`, at instants spread over 1970–2290.
        for i in 0..20_000u64 {
            let secs = i * 503_113 + i % 7;
            let micros = (i * 7_919) % 1_000_000;
            let t = UNIX_EPOCH + Duration::new(secs, (micros * 1_000) as u32);
            let days = (secs / 86_400) as i64;
            let rem = secs % 86_400;
            let (y, m, d) = civil_from_days(days);
            let want = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
                rem / 3600,
                (rem / 60) % 60,
                rem % 60,
            );
            assert_eq!(rfc3339(t), want);
        }
    }
}
