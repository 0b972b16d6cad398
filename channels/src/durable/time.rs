//! The arrival time a durable backend gives a foreign record (one another
//! producer stored, without `knativearrivaltime`): when the log stored it.

/// RFC 3339 UTC with microseconds, as ingress writes `knativearrivaltime`.
pub(crate) fn rfc3339_micros(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_is_utc_with_microseconds() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_714_557_600_123_456_789)
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(rfc3339_micros(t), "2024-05-01T10:00:00.123456Z");
    }
}
