//! PingSource schedules: Knative's cron dialect (5 fields, 6 with leading seconds,
//! `?`, descriptors, `CRON_TZ=` prefix) in an IANA time zone, and the next fire
//! times. Pure: the caller passes the instant to search from.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The schedule of a PingSource without `spec.schedule` (Knative's default).
pub const DEFAULT_SCHEDULE: &str = "* * * * *";

/// Why a schedule or time zone was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not 5 or 6 fields.
    #[error(
        "{schedule:?} has {found} fields; expected 5 (minute hour day-of-month month \
         day-of-week), 6 with leading seconds, or a descriptor such as @hourly"
    )]
    FieldCount {
        /// The schedule as written.
        schedule: String,
        /// How many fields it has.
        found: usize,
    },
    /// A descriptor cebus does not know (`@every` included).
    #[error(
        "{0:?} is not supported; use @yearly, @annually, @monthly, @weekly, @daily, \
         @midnight or @hourly, or a cron expression"
    )]
    Descriptor(String),
    /// A field the cron parser refused.
    #[error("{schedule:?} is not a valid cron expression: {reason}")]
    Invalid {
        /// The schedule as written.
        schedule: String,
        /// The parser's reason.
        reason: String,
    },
    /// An IANA zone name that the bundled time zone database does not have.
    #[error("unknown time zone {0:?}; use an IANA name such as Europe/Berlin or UTC")]
    UnknownZone(String),
    /// `timezone` and a `CRON_TZ=` prefix name different zones.
    #[error("spec.timezone is {field:?} but the schedule says CRON_TZ={prefix:?}; set one")]
    ConflictingZones {
        /// `spec.timezone`.
        field: String,
        /// The zone of the `CRON_TZ=` prefix.
        prefix: String,
    },
}

impl ScheduleError {
    /// The field of a PingSource the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            ScheduleError::UnknownZone(_) | ScheduleError::ConflictingZones { .. } => {
                "spec.timezone"
            }
            _ => "spec.schedule",
        }
    }
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: TimeZone,
    zone_name: String,
    text: String,
}

impl Schedule {
    /// Parses `spec.schedule` (default [`DEFAULT_SCHEDULE`]) and `spec.timezone`
    /// (default UTC). A `CRON_TZ=<zone> ` (or `TZ=`) prefix of the schedule names
    /// the zone too; naming two different zones is an error.
    pub fn parse(
        schedule: Option<&str>,
        timezone: Option<&str>,
    ) -> Result<Schedule, ScheduleError> {
        let text = schedule
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SCHEDULE);
        let (prefix_zone, expr) = split_zone_prefix(text);
        let zone_name = match (timezone.map(str::trim), prefix_zone) {
            (Some(f), Some(p)) if f != p => {
                return Err(ScheduleError::ConflictingZones {
                    field: f.to_owned(),
                    prefix: p.to_owned(),
                });
            }
            (Some(f), _) => f,
            (None, Some(p)) => p,
            (None, None) => "UTC",
        };
        let zone = TimeZone::get(zone_name)
            .map_err(|_| ScheduleError::UnknownZone(zone_name.to_owned()))?;
        let cron = parse_cron(expr)?;
        Ok(Schedule {
            cron,
            zone,
            zone_name: zone_name.to_owned(),
            text: text.to_owned(),
        })
    }

    /// The schedule as written (default applied).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The IANA name of the zone.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// The first fire time strictly after `after`, or `None` when the schedule
    /// never fires again (e.g. February 30th).
    ///
    /// Wall-clock rules across daylight-saving changes (croner's, as Vixie cron):
    /// a fixed time that falls in a gap fires right after the gap; a fixed time
    /// that happens twice fires once, the first time; wildcard and step fields
    /// fire on every matching real instant and skip the ones in a gap.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = after.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The next `n` fire times after `after`, in the schedule's zone.
    pub fn upcoming(&self, after: Timestamp, n: usize) -> Vec<jiff::Zoned> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            let Some(next) = self.next_after(t) else {
                break;
            };
            out.push(next.to_zoned(self.zone.clone()));
            t = next;
        }
        out
    }

    /// Fire times in `(after, until]`, the last `max` of them, oldest first.
    pub fn missed(&self, after: Timestamp, until: Timestamp, max: usize) -> Vec<Timestamp> {
        let mut ticks = std::collections::VecDeque::with_capacity(max.min(64));
        let mut t = after;
        // The loop ends at `until`; every step moves forward by at least a second.
        while let Some(next) = self.next_after(t) {
            if next > until {
                break;
            }
            if ticks.len() == max {
                ticks.pop_front();
            }
            ticks.push_back(next);
            t = next;
        }
        ticks.into()
    }
}

/// `CRON_TZ=Europe/Berlin 0 9 * * *` → (`Some("Europe/Berlin")`, `0 9 * * *`).
fn split_zone_prefix(text: &str) -> (Option<&str>, &str) {
    for key in ["CRON_TZ=", "TZ="] {
        if let Some(rest) = text.strip_prefix(key) {
            let (zone, expr) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            return (Some(zone), expr.trim());
        }
    }
    (None, text)
}

fn parse_cron(expr: &str) -> Result<Cron, ScheduleError> {
    let expr = if let Some(descriptor) = expr.strip_prefix('@') {
        match descriptor.to_ascii_lowercase().as_str() {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            _ => return Err(ScheduleError::Descriptor(expr.to_owned())),
        }
    } else {
        expr
    };
    let found = expr.split_whitespace().count();
    if !(5..=6).contains(&found) {
        return Err(ScheduleError::FieldCount {
            schedule: expr.to_owned(),
            found,
        });
    }
    if expr.contains('@') {
        return Err(ScheduleError::Descriptor(expr.to_owned()));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        // Knative (robfig/cron) reads `5/15` as `5-59/15`; so does cebus.
        .sloppy_ranges(true)
        .build()
        .parse(expr)
        .map_err(|e| ScheduleError::Invalid {
            schedule: expr.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// (schedule, timezone, after, expected next fire time).
    const NEXT: &[(&str, Option<&str>, &str, &str)] = &[
        // 5 fields, UTC default.
        (
            "*/15 * * * *",
            None,
            "2024-01-01T00:07:00Z",
            "2024-01-01T00:15:00Z",
        ),
        (
            "* * * * *",
            None,
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:01:00Z",
        ),
        (" ", None, "2024-01-01T00:00:30Z", "2024-01-01T00:01:00Z"),
        // 6 fields with leading seconds.
        (
            "30 * * * * *",
            None,
            "2024-01-01T00:00:10Z",
            "2024-01-01T00:00:30Z",
        ),
        (
            "* * * * * *",
            None,
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:01Z",
        ),
        // `?` in day-of-month and day-of-week.
        (
            "0 12 ? * SUN",
            None,
            "2024-01-01T00:00:00Z",
            "2024-01-07T12:00:00Z",
        ),
        (
            "0 12 1 * ?",
            None,
            "2024-01-01T12:00:00Z",
            "2024-02-01T12:00:00Z",
        ),
        // Descriptors.
        (
            "@hourly",
            None,
            "2024-01-01T00:30:00Z",
            "2024-01-01T01:00:00Z",
        ),
        (
            "@daily",
            Some("Asia/Tokyo"),
            "2024-01-01T00:00:00Z",
            "2024-01-01T15:00:00Z",
        ),
        (
            "@midnight",
            None,
            "2024-01-01T00:00:00Z",
            "2024-01-02T00:00:00Z",
        ),
        (
            "@weekly",
            None,
            "2024-01-01T00:00:00Z",
            "2024-01-07T00:00:00Z",
        ),
        (
            "@monthly",
            None,
            "2024-01-15T00:00:00Z",
            "2024-02-01T00:00:00Z",
        ),
        (
            "@yearly",
            None,
            "2024-06-01T00:00:00Z",
            "2025-01-01T00:00:00Z",
        ),
        // Zones: Friday 09:00 Berlin has fired; the next is Monday 09:00 CET.
        (
            "0 9 * * MON-FRI",
            Some("Europe/Berlin"),
            "2024-01-05T08:00:00Z",
            "2024-01-08T08:00:00Z",
        ),
        (
            "0 9 * * MON-FRI",
            Some("Europe/Berlin"),
            "2024-07-05T07:00:00Z",
            "2024-07-08T07:00:00Z",
        ),
        (
            "0 9 * * *",
            Some("America/New_York"),
            "2024-01-01T00:00:00Z",
            "2024-01-01T14:00:00Z",
        ),
        (
            "CRON_TZ=America/New_York 0 9 * * *",
            None,
            "2024-01-01T00:00:00Z",
            "2024-01-01T14:00:00Z",
        ),
        (
            "TZ=Asia/Kolkata 0 9 * * *",
            None,
            "2024-01-01T00:00:00Z",
            "2024-01-01T03:30:00Z",
        ),
        (
            "CRON_TZ=UTC 0 9 * * *",
            Some("UTC"),
            "2024-01-01T00:00:00Z",
            "2024-01-01T09:00:00Z",
        ),
        // Knative's `a/b` step from a start.
        (
            "5/20 * * * *",
            None,
            "2024-01-01T00:06:00Z",
            "2024-01-01T00:25:00Z",
        ),
        // DST gap, New York 2024-03-10 02:00 EST → 03:00 EDT: a fixed 02:30 fires
        // right after the gap (03:00 EDT = 07:00Z) …
        (
            "30 2 * * *",
            Some("America/New_York"),
            "2024-03-10T06:00:00Z",
            "2024-03-10T07:00:00Z",
        ),
        // … and the next day at 02:30 EDT again.
        (
            "30 2 * * *",
            Some("America/New_York"),
            "2024-03-10T07:00:00Z",
            "2024-03-11T06:30:00Z",
        ),
        // A step schedule skips the half hours inside the gap: 01:30 EST → 03:00 EDT.
        (
            "*/30 * * * *",
            Some("America/New_York"),
            "2024-03-10T06:30:00Z",
            "2024-03-10T07:00:00Z",
        ),
        // Berlin gap 2024-03-31 02:00 CET → 03:00 CEST.
        (
            "0 2 * * *",
            Some("Europe/Berlin"),
            "2024-03-30T12:00:00Z",
            "2024-03-31T01:00:00Z",
        ),
        // DST overlap, New York 2024-11-03 01:00–02:00 happens twice: a fixed
        // 01:30 fires once, at the first (EDT, 05:30Z) …
        (
            "30 1 * * *",
            Some("America/New_York"),
            "2024-11-03T05:00:00Z",
            "2024-11-03T05:30:00Z",
        ),
        // … not again at 01:30 EST (06:30Z), but the next day.
        (
            "30 1 * * *",
            Some("America/New_York"),
            "2024-11-03T05:30:00Z",
            "2024-11-04T06:30:00Z",
        ),
        // A step schedule fires on each real half hour of the repeated hour.
        (
            "*/30 * * * *",
            Some("America/New_York"),
            "2024-11-03T05:30:00Z",
            "2024-11-03T06:00:00Z",
        ),
        (
            "*/30 * * * *",
            Some("America/New_York"),
            "2024-11-03T06:00:00Z",
            "2024-11-03T06:30:00Z",
        ),
        // A zone without DST.
        (
            "0 0 * * *",
            Some("Asia/Kolkata"),
            "2024-03-10T00:00:00Z",
            "2024-03-10T18:30:00Z",
        ),
    ];

    #[test]
    fn next_fire_times() {
        for (schedule, zone, after, want) in NEXT {
            let s = Schedule::parse(Some(schedule), *zone)
                .unwrap_or_else(|e| panic!("{schedule} {zone:?}: {e}"));
            assert_eq!(
                s.next_after(ts(after)),
                Some(ts(want)),
                "{schedule} in {zone:?} after {after}"
            );
        }
    }

    #[test]
    fn default_schedule_and_zone() {
        let s = Schedule::parse(None, None).unwrap();
        assert_eq!((s.text(), s.zone_name()), (DEFAULT_SCHEDULE, "UTC"));
        let s = Schedule::parse(Some("CRON_TZ=Europe/Paris @hourly"), None).unwrap();
        assert_eq!(s.zone_name(), "Europe/Paris");
    }

    #[test]
    fn rejected_schedules() {
        let err = |schedule: &str, zone: Option<&str>| {
            Schedule::parse(Some(schedule), zone).expect_err(schedule)
        };
        assert!(matches!(
            err("* * * *", None),
            ScheduleError::FieldCount { found: 4, .. }
        ));
        assert!(matches!(
            err("0 * * * * * 2024", None),
            ScheduleError::FieldCount { found: 7, .. }
        ));
        assert_eq!(
            err("@every 5m", None),
            ScheduleError::Descriptor("@every 5m".into())
        );
        assert!(matches!(
            err("@fortnightly", None),
            ScheduleError::Descriptor(_)
        ));
        assert!(matches!(
            err("61 * * * *", None),
            ScheduleError::Invalid { .. }
        ));
        assert!(matches!(
            err("* * * * FOO", None),
            ScheduleError::Invalid { .. }
        ));
        let e = err("* * * * *", Some("Mars/Olympus_Mons"));
        assert_eq!(e, ScheduleError::UnknownZone("Mars/Olympus_Mons".into()));
        assert_eq!(e.field(), "spec.timezone");
        assert!(e.to_string().contains("Mars/Olympus_Mons"));
        assert!(matches!(
            err("CRON_TZ=Nowhere/Land * * * * *", None),
            ScheduleError::UnknownZone(_)
        ));
        assert!(matches!(
            err("CRON_TZ=Europe/Paris * * * * *", Some("Europe/Berlin")),
            ScheduleError::ConflictingZones { .. }
        ));
    }

    #[test]
    fn upcoming_and_missed() {
        let s = Schedule::parse(Some("0 */6 * * *"), Some("Europe/Berlin")).unwrap();
        let next: Vec<String> = s
            .upcoming(ts("2024-01-01T00:00:00Z"), 3)
            .iter()
            .map(|z| z.to_string())
            .collect();
        assert_eq!(
            next,
            [
                "2024-01-01T06:00:00+01:00[Europe/Berlin]",
                "2024-01-01T12:00:00+01:00[Europe/Berlin]",
                "2024-01-01T18:00:00+01:00[Europe/Berlin]",
            ]
        );
        let s = Schedule::parse(Some("* * * * *"), None).unwrap();
        // Ten ticks in (00:00, 00:10]; keep the last three.
        assert_eq!(
            s.missed(ts("2024-01-01T00:00:00Z"), ts("2024-01-01T00:10:00Z"), 3),
            vec![
                ts("2024-01-01T00:08:00Z"),
                ts("2024-01-01T00:09:00Z"),
                ts("2024-01-01T00:10:00Z")
            ]
        );
        assert!(
            s.missed(ts("2024-01-01T00:00:00Z"), ts("2024-01-01T00:00:59Z"), 3)
                .is_empty()
        );
    }
}
