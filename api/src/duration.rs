//! ISO-8601 durations as Knative writes them in `DeliverySpec` (`PT0.2S`, `P1DT2H`).
//!
//! Only units of fixed length are accepted: weeks, days, hours, minutes, seconds.
//! Years and months are rejected because their length depends on the calendar.

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string does not start with `P`.
    #[error("{0:?} is not an ISO-8601 duration (expected e.g. PT0.2S, PT10M, P1DT2H)")]
    Syntax(String),
    /// A sign; delays cannot be negative.
    #[error("{0:?}: negative durations are not allowed")]
    Negative(String),
    /// `P` or `PT` with no components.
    #[error("{0:?}: duration has no components (write e.g. PT0S for zero)")]
    Empty(String),
    /// Years or months, whose length is ambiguous.
    #[error(
        "{0:?}: years and months are not allowed (ambiguous length); use weeks, days, hours, minutes or seconds"
    )]
    YearsOrMonths(String),
    /// A component that is malformed, repeated, out of order or misplaced.
    #[error("{input:?}: {reason}")]
    Component {
        /// The whole input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// More than `Duration` can hold.
    #[error("{0:?}: duration is too large")]
    Overflow(String),
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a Knative ISO-8601 duration: `PnW` or `PnDTnHnMnS`, each component
/// optional but at least one present, fractions (`.` or `,`) on the last component.
pub fn parse_iso8601(s: &str) -> Result<Duration, DurationError> {
    let owned = || s.to_owned();
    let component = |reason: &str| DurationError::Component {
        input: s.to_owned(),
        reason: reason.to_owned(),
    };
    if s.starts_with('-') || s.starts_with('+') {
        return Err(DurationError::Negative(owned()));
    }
    let Some(body) = s.strip_prefix('P') else {
        return Err(DurationError::Syntax(owned()));
    };

    let (date, time) = match body.split_once('T') {
        Some((date, time)) => {
            if time.is_empty() {
                return Err(DurationError::Empty(owned()));
            }
            (date, Some(time))
        }
        None => (body, None),
    };
    if date.is_empty() && time.is_none() {
        return Err(DurationError::Empty(owned()));
    }

    let mut total: u128 = 0;
    let mut saw_fraction = false;
    let mut parse_part = |part: &str, units: &[(char, u128)]| -> Result<(), DurationError> {
        let mut rest = part;
        let mut next_unit = 0;
        while !rest.is_empty() {
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
                .ok_or_else(|| component("number without a unit designator"))?;
            let (number, tail) = rest.split_at(end);
            let designator = tail.chars().next().unwrap_or_default();
            rest = &tail[designator.len_utf8()..];
            if number.is_empty() {
                return Err(component(&format!("{designator} has no number")));
            }
            let pos = units[next_unit..]
                .iter()
                .position(|(u, _)| *u == designator)
                .ok_or_else(|| {
                    if units.iter().any(|(u, _)| *u == designator) {
                        component(&format!("{designator} is repeated or out of order"))
                    } else {
                        component(&format!("unexpected {designator:?}"))
                    }
                })?;
            let (unit, unit_secs) = units[next_unit + pos];
            next_unit += pos + 1;
            if saw_fraction {
                return Err(component("only the last component may have a fraction"));
            }
            let nanos = parse_number(number, unit_secs * NANOS_PER_SEC, &mut saw_fraction)
                .ok_or_else(|| component(&format!("bad number {number:?} before {unit}")))?;
            total = total
                .checked_add(nanos)
                .ok_or_else(|| DurationError::Overflow(s.to_owned()))?;
        }
        Ok(())
    };

    // Years and months get their own message rather than "unexpected Y".
    if date.contains('Y') || date.contains('M') {
        return Err(DurationError::YearsOrMonths(owned()));
    }
    // Units in the order they must appear, with their length in seconds.
    parse_part(date, &[('W', 7 * 86_400), ('D', 86_400)])?;
    if let Some(time) = time {
        parse_part(time, &[('H', 3_600), ('M', 60), ('S', 1)])?;
    }

    let secs =
        u64::try_from(total / NANOS_PER_SEC).map_err(|_| DurationError::Overflow(owned()))?;
    // The remainder is below 10^9 and fits a u32.
    let nanos = (total % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, nanos))
}

/// `number` (digits, optionally `.`/`,` and more digits) times `unit_nanos`, in
/// nanoseconds; digits beyond nanosecond precision are truncated.
fn parse_number(number: &str, unit_nanos: u128, saw_fraction: &mut bool) -> Option<u128> {
    let (int, frac) = match number.find(['.', ',']) {
        Some(i) => (&number[..i], Some(&number[i + 1..])),
        None => (number, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos = int.parse::<u128>().ok()?.checked_mul(unit_nanos)?;
    if let Some(frac) = frac {
        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *saw_fraction = true;
        // Eighteen digits keep the product within u128 and are far below a nanosecond.
        let digits = &frac[..frac.len().min(18)];
        let value: u128 = digits.parse().ok()?;
        nanos = nanos.checked_add(value * unit_nanos / 10u128.pow(digits.len() as u32))?;
    }
    Some(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_knative_durations() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let cases = [
            ("PT0.2S", ms(200)),
            ("PT1.5S", ms(1_500)),
            ("PT0,5S", ms(500)),
            ("PT0S", s(0)),
            ("PT10M", s(600)),
            ("PT2H", s(7_200)),
            ("P1D", s(86_400)),
            ("P1DT2H", s(86_400 + 7_200)),
            ("P1DT1H1M1S", s(86_400 + 3_600 + 60 + 1)),
            ("P2W", s(14 * 86_400)),
            ("P1W1D", s(8 * 86_400)),
            ("PT1.5M", s(90)),
            ("PT0.000000001S", Duration::from_nanos(1)),
            ("PT0.0000000019S", Duration::from_nanos(1)),
            ("PT90S", s(90)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_iso8601(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        use DurationError as E;
        type Check = fn(&DurationError) -> bool;
        let cases: [(&str, Check); 20] = [
            ("", |e| matches!(e, E::Syntax(_))),
            ("1S", |e| matches!(e, E::Syntax(_))),
            ("pt1s", |e| matches!(e, E::Syntax(_))),
            (" PT1S", |e| matches!(e, E::Syntax(_))),
            ("-PT1S", |e| matches!(e, E::Negative(_))),
            ("P", |e| matches!(e, E::Empty(_))),
            ("PT", |e| matches!(e, E::Empty(_))),
            ("P1DT", |e| matches!(e, E::Empty(_))),
            ("P1Y", |e| matches!(e, E::YearsOrMonths(_))),
            ("P1M", |e| matches!(e, E::YearsOrMonths(_))),
            ("P1Y2M3DT4H", |e| matches!(e, E::YearsOrMonths(_))),
            ("PT1S ", |e| matches!(e, E::Component { .. })),
            ("PT1", |e| matches!(e, E::Component { .. })),
            ("PTS", |e| matches!(e, E::Component { .. })),
            ("PT1S1M", |e| matches!(e, E::Component { .. })),
            ("PT1M1M", |e| matches!(e, E::Component { .. })),
            ("PT1.5M1S", |e| matches!(e, E::Component { .. })),
            ("PT1.S", |e| matches!(e, E::Component { .. })),
            ("P1H", |e| matches!(e, E::Component { .. })),
            ("PT99999999999999999999999999999999999999H", |e| {
                matches!(e, E::Component { .. } | E::Overflow(_))
            }),
        ];
        for (input, check) in cases {
            let err = parse_iso8601(input).expect_err(input);
            assert!(check(&err), "{input}: {err:?}");
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
    }

    #[test]
    fn overflow_is_reported() {
        let huge = format!("PT{}H", u64::MAX);
        assert!(matches!(
            parse_iso8601(&huge),
            Err(DurationError::Overflow(_))
        ));
    }
}
