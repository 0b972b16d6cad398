//! Validation of an event against the CloudEvents 1.0 and 0.3 specifications.
//!
//! Validation only judges; it never rewrites. An event that passes is forwarded with
//! every attribute exactly as received.

use crate::event::{AttrValue, Event, SpecVersion, attr};

/// Why an event does not conform to the CloudEvents spec: the attribute at fault and
/// what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("attribute {attribute:?}: {message}")]
pub struct EventError {
    attribute: String,
    message: String,
}

impl EventError {
    /// An error about `attribute`; `message` says what was wrong and what would be right.
    pub fn new(attribute: impl Into<String>, message: impl Into<String>) -> EventError {
        EventError {
            attribute: attribute.into(),
            message: message.into(),
        }
    }

    /// The name of the attribute at fault.
    pub fn attribute(&self) -> Option<&str> {
        Some(&self.attribute)
    }

    /// What was wrong, without the attribute name.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The range the spec gives the CloudEvents `Integer` type (a signed 32-bit integer).
const INTEGER_RANGE: std::ops::RangeInclusive<i64> = (i32::MIN as i64)..=(i32::MAX as i64);

/// Checks `event` against the CloudEvents spec of its version.
///
/// Rules: `id`, `source`, `type` present and non-empty strings; `subject` non-empty;
/// `time` an RFC 3339 timestamp; `datacontenttype` a media type; `dataschema` (1.0) or
/// `schemaurl` (0.3) non-empty; core attributes are strings; every attribute name is
/// `[a-z0-9]+` and not a name the JSON format reserves; integers fit the spec's 32-bit
/// `Integer` type. The first violation found is returned.
pub fn validate(event: &Event) -> Result<(), EventError> {
    let version = event.specversion();
    for required in [attr::ID, attr::SOURCE, attr::TYPE] {
        if event.get(required).is_none() {
            return Err(EventError::new(
                required,
                format!(
                    "required attribute is missing (CloudEvents {version} requires id, source and type)"
                ),
            ));
        }
    }
    for (name, value) in event.attributes() {
        check_name(name)?;
        if version.is_core_attribute(name) {
            let AttrValue::String(s) = value else {
                return Err(EventError::new(
                    name,
                    format!("must be a string, got {} {value}", type_name(value)),
                ));
            };
            check_core(version, name, s)?;
        } else if let AttrValue::Integer(i) = value
            && !INTEGER_RANGE.contains(i)
        {
            return Err(EventError::new(
                name,
                format!(
                    "integer {i} is outside the CloudEvents Integer range {}..={}",
                    i32::MIN,
                    i32::MAX
                ),
            ));
        }
    }
    Ok(())
}

fn type_name(value: &AttrValue) -> &'static str {
    match value {
        AttrValue::String(_) => "string",
        AttrValue::Integer(_) => "integer",
        AttrValue::Boolean(_) => "boolean",
    }
}

fn check_name(name: &str) -> Result<(), EventError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(EventError::new(
            name,
            "attribute names must be non-empty and contain only lowercase letters a-z and digits 0-9",
        ));
    }
    // `specversion` lives outside the attribute map; `data` is the JSON format's data
    // member and cannot also be an extension.
    if name == attr::SPECVERSION || name == "data" {
        return Err(EventError::new(
            name,
            "is reserved and cannot be used as an extension attribute name",
        ));
    }
    Ok(())
}

fn check_core(version: SpecVersion, name: &str, value: &str) -> Result<(), EventError> {
    let non_empty = |what: &str| {
        if value.is_empty() {
            Err(EventError::new(
                name,
                format!("must be a non-empty {what} when present"),
            ))
        } else {
            Ok(())
        }
    };
    match name {
        attr::ID | attr::TYPE | attr::SUBJECT => non_empty("string"),
        attr::SOURCE => non_empty("URI-reference"),
        attr::DATASCHEMA | attr::SCHEMAURL => non_empty("URI"),
        attr::TIME if !is_rfc3339(value) => Err(EventError::new(
            name,
            format!(
                "{} is not an RFC 3339 timestamp; expected YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), e.g. \"2020-01-31T23:59:59Z\"",
                quote(value)
            ),
        )),
        attr::DATACONTENTTYPE if !is_media_type(value) => Err(EventError::new(
            name,
            format!(
                "{} is not a media type; expected type/subtype[; parameters], e.g. \"application/json\"",
                quote(value)
            ),
        )),
        attr::DATACONTENTENCODING if version == SpecVersion::V03 => non_empty("string"),
        _ => Ok(()),
    }
}

/// A value quoted for an error message, cut short so messages stay readable.
pub(crate) fn quote(value: &str) -> String {
    const MAX_CHARS: usize = 80;
    match value.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// Whether `s` is an RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
///
/// Strict: every field has its exact width, ranges are checked (day of month per month
/// and leap year, hour 0-23, minute 0-59, second 0-60 for leap seconds, offset up to
/// 23:59). `t` and `z` may be lowercase, as RFC 3339 allows. Pure: nothing is parsed
/// into a time value, so callers keep the string exactly as given.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    // Shortest form: "YYYY-MM-DDTHH:MM:SSZ".
    if b.len() < 20 {
        return false;
    }
    let digits = |at: usize, n: usize| -> Option<u32> {
        b.get(at..at + n)?.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0, 4),
        digits(5, 2),
        digits(8, 2),
        digits(11, 2),
        digits(14, 2),
        digits(17, 2),
    ) else {
        return false;
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', ..] if b.len() - i == 6 => {
            b[i + 3] == b':'
                && digits(i + 1, 2).is_some_and(|h| h <= 23)
                && digits(i + 4, 2).is_some_and(|m| m <= 59)
        }
        _ => false,
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

/// RFC 9110 `token` character.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Whether `s` looks like a media type: `type/subtype` as tokens, then optional
/// parameters of header-safe characters. Parameters are not parsed further; cebus only
/// needs to know the value can travel as a `Content-Type` header.
fn is_media_type(s: &str) -> bool {
    let (essence, params) = s.split_once(';').unwrap_or((s, ""));
    let Some((ty, subtype)) = essence.trim_end_matches([' ', '\t']).split_once('/') else {
        return false;
    };
    let token = |t: &str| !t.is_empty() && t.bytes().all(is_tchar);
    token(ty)
        && token(subtype)
        && params
            .bytes()
            .all(|c| c == b' ' || c == b'\t' || c.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v10() -> Event {
        Event::with_required("1", "/src", "com.example.t")
    }

    fn v03() -> Event {
        let mut e = Event::new(SpecVersion::V03);
        e.set(attr::ID, "1");
        e.set(attr::SOURCE, "/src");
        e.set(attr::TYPE, "com.example.t");
        e
    }

    #[test]
    fn rfc3339_table() {
        let good = [
            "2020-01-01T00:00:00Z",
            "2020-01-01t00:00:00z",
            "2020-01-01T00:00:00.000000001+01:00",
            "2020-01-01T23:59:59.5-23:59",
            "1985-04-12T23:20:50.52Z",
            "1996-12-19T16:39:57-08:00",
            "1990-12-31T23:59:60Z",
            "1990-12-31T15:59:60-08:00",
            "2000-02-29T00:00:00Z",
            "2024-02-29T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2020-04-30T00:00:00+00:00",
            "2020-01-31T00:00:00-00:00",
        ];
        for s in good {
            assert!(is_rfc3339(s), "{s} should be accepted");
        }
        let bad = [
            "",
            "2020-01-01",
            "2020-01-01T00:00:00",
            "2020-13-01T00:00:00Z",
            "2020-00-01T00:00:00Z",
            "2020-01-00T00:00:00Z",
            "2020-01-32T00:00:00Z",
            "2020-04-31T00:00:00Z",
            "2019-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2020-01-01T24:00:00Z",
            "2020-01-01T00:60:00Z",
            "2020-01-01T00:00:61Z",
            "2020-01-01 00:00:00Z",
            "2020-01-01T00:00:00.Z",
            "2020-01-01T00:00:00+0100",
            "2020-01-01T00:00:00+1:00",
            "2020-01-01T00:00:00+24:00",
            "2020-01-01T00:00:00+01:60",
            "2020-01-01T00:00:00+01:00:00",
            "2020-01-01T00:00:00ZZ",
            "2020-01-01T00:00:00Z ",
            " 2020-01-01T00:00:00Z",
            "20-01-01T00:00:00Z",
            "2020-1-01T00:00:00Z",
            "2020/01/01T00:00:00Z",
            "2020-01-01T00:00:00,5Z",
            "2020-01-01T0a:00:00Z",
            "+2020-01-01T00:00:00Z",
            "2020-01-01T00:00:00UTC",
            "2020-01-01T00:00:00.123",
            "２020-01-01T00:00:00Z",
        ];
        for s in bad {
            assert!(!is_rfc3339(s), "{s} should be rejected");
        }
    }

    #[test]
    fn minimal_events_of_both_versions_are_valid() {
        assert_eq!(validate(&v10()), Ok(()));
        assert_eq!(validate(&v03()), Ok(()));
    }

    #[test]
    fn full_events_are_valid() {
        let mut e = v10();
        e.set(attr::SUBJECT, "s");
        e.set(attr::TIME, "2020-01-01T00:00:00.000000001+01:00");
        e.set(attr::DATACONTENTTYPE, "application/json; charset=utf-8");
        e.set(attr::DATASCHEMA, "https://example.com/schema");
        e.set("ext1", AttrValue::Integer(-5));
        e.set("flag", AttrValue::Boolean(true));
        assert_eq!(validate(&e), Ok(()));

        let mut e = v03();
        e.set(attr::SCHEMAURL, "https://example.com/schema");
        e.set(attr::DATACONTENTENCODING, "base64");
        e.set(attr::TIME, "2020-01-01t00:00:00z");
        assert_eq!(validate(&e), Ok(()));
    }

    /// (mutation, attribute expected at fault, fragment of the message).
    type Case = (fn(&mut Event), &'static str, &'static str);

    #[test]
    fn rule_table_for_both_versions() {
        let cases: &[Case] = &[
            (
                |e| drop(e.remove(attr::ID)),
                "id",
                "required attribute is missing",
            ),
            (|e| drop(e.remove(attr::SOURCE)), "source", "required"),
            (|e| drop(e.remove(attr::TYPE)), "type", "required"),
            (|e| e.set(attr::ID, ""), "id", "non-empty"),
            (
                |e| e.set(attr::SOURCE, ""),
                "source",
                "non-empty URI-reference",
            ),
            (|e| e.set(attr::TYPE, ""), "type", "non-empty"),
            (|e| e.set(attr::SUBJECT, ""), "subject", "non-empty"),
            (
                |e| e.set(attr::ID, AttrValue::Integer(1)),
                "id",
                "must be a string, got integer 1",
            ),
            (
                |e| e.set(attr::TYPE, AttrValue::Boolean(true)),
                "type",
                "must be a string, got boolean",
            ),
            (
                |e| e.set(attr::TIME, AttrValue::Integer(0)),
                "time",
                "must be a string",
            ),
            (
                |e| e.set(attr::TIME, "2020-13-01T00:00:00Z"),
                "time",
                "\"2020-13-01T00:00:00Z\" is not an RFC 3339 timestamp",
            ),
            (|e| e.set(attr::TIME, "yesterday"), "time", "RFC 3339"),
            (
                |e| e.set(attr::DATACONTENTTYPE, ""),
                "datacontenttype",
                "not a media type",
            ),
            (
                |e| e.set(attr::DATACONTENTTYPE, "json"),
                "datacontenttype",
                "not a media type",
            ),
            (
                |e| e.set(attr::DATACONTENTTYPE, "application/"),
                "datacontenttype",
                "type/subtype",
            ),
            (
                |e| e.set(attr::DATACONTENTTYPE, "a b/c"),
                "datacontenttype",
                "media type",
            ),
            (
                |e| e.set(attr::DATACONTENTTYPE, "text/plain; x=\u{1}"),
                "datacontenttype",
                "media type",
            ),
            (|e| e.set("Ext", "v"), "Ext", "lowercase letters"),
            (|e| e.set("my-ext", "v"), "my-ext", "lowercase letters"),
            (|e| e.set("my_ext", "v"), "my_ext", "lowercase letters"),
            (|e| e.set("", "v"), "", "non-empty"),
            (|e| e.set("data", "v"), "data", "reserved"),
            (|e| e.set("specversion", "1.0"), "specversion", "reserved"),
            (
                |e| e.set("big", AttrValue::Integer(1 << 31)),
                "big",
                "outside the CloudEvents Integer range",
            ),
            (
                |e| e.set("small", AttrValue::Integer(-(1 << 31) - 1)),
                "small",
                "Integer range",
            ),
        ];
        for make in [v10, v03] {
            for (mutate, attribute, fragment) in cases {
                let mut e = make();
                mutate(&mut e);
                let err = validate(&e).expect_err(&format!("{e:?} should be invalid"));
                assert_eq!(err.attribute(), Some(*attribute), "{err}");
                assert!(err.to_string().contains(fragment), "{err} lacks {fragment}");
            }
        }
    }

    #[test]
    fn version_specific_schema_attributes() {
        let mut e = v10();
        e.set(attr::DATASCHEMA, "");
        assert_eq!(validate(&e).unwrap_err().attribute(), Some("dataschema"));
        // In 0.3 `dataschema` is only an extension, so an empty value is fine.
        let mut e = v03();
        e.set(attr::DATASCHEMA, "");
        assert_eq!(validate(&e), Ok(()));
        e.set(attr::SCHEMAURL, "");
        assert_eq!(validate(&e).unwrap_err().attribute(), Some("schemaurl"));
        // ...and `schemaurl` is only an extension in 1.0, where any type is fine.
        let mut e = v10();
        e.set(attr::SCHEMAURL, AttrValue::Integer(3));
        assert_eq!(validate(&e), Ok(()));
        let mut e = v03();
        e.set(attr::DATACONTENTENCODING, AttrValue::Boolean(true));
        assert_eq!(
            validate(&e).unwrap_err().attribute(),
            Some("datacontentencoding")
        );
    }

    #[test]
    fn message_names_attribute_and_value() {
        let mut e = v10();
        e.set(attr::TIME, "2020-13-01T00:00:00Z");
        let msg = validate(&e).unwrap_err().to_string();
        assert!(
            msg.starts_with(
                r#"attribute "time": "2020-13-01T00:00:00Z" is not an RFC 3339 timestamp"#
            ),
            "{msg}"
        );
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let mut e = v10();
        e.set(attr::TIME, "x".repeat(10_000));
        let msg = validate(&e).unwrap_err().to_string();
        assert!(msg.len() < 400, "{msg}");
    }
}
