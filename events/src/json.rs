//! The CloudEvents JSON event format (1.0 and 0.3), byte-exact for data.
//!
//! Members are read as raw JSON text so that `data` reaches subscribers exactly as the
//! producer wrote it, whitespace and number spelling included. When the input is a
//! [`Bytes`] buffer, data is a slice of it (no copy).

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::DecodeError;
use crate::event::{AttrValue, Event, SpecVersion, attr};

/// The JSON member carrying data that is not embedded as JSON (1.0).
pub const DATA_BASE64: &str = "data_base64";
/// The JSON member carrying data.
pub const DATA: &str = "data";

/// Standard base64 alphabet; padding optional on input, written on output.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Whether a media type is JSON: `application/json`, `text/json` or any `*/*+json`,
/// parameters and case ignored. An absent content type counts as JSON, as the JSON
/// format specifies.
pub fn is_json_content_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return true;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("text/json")
        || (essence.len() > 5
            && essence.contains('/')
            && essence.as_bytes()[essence.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

/// A JSON object kept as raw member texts, in input order; duplicate names rejected.
pub(crate) struct RawObject<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CloudEvent JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members: Vec<(String, &'de RawValue)> = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if members.iter().any(|(n, _)| *n == name) {
                        return Err(serde::de::Error::custom(format_args!(
                            "member {name:?} appears more than once"
                        )));
                    }
                    members.push((name, map.next_value()?));
                }
                Ok(RawObject(members))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// The bytes a parsed event came from, so data can be sliced out instead of copied.
#[derive(Clone, Copy)]
pub(crate) enum Backing<'a> {
    /// A shared buffer: slices of it become cheap `Bytes` clones.
    Shared(&'a Bytes),
    /// A borrowed slice: data is copied.
    Borrowed,
}

impl Backing<'_> {
    fn bytes_of(self, part: &[u8]) -> Bytes {
        if let Backing::Shared(buf) = self {
            let start = buf.as_ptr() as usize;
            let at = part.as_ptr() as usize;
            if !part.is_empty() && at >= start && at + part.len() <= start + buf.len() {
                return buf.slice_ref(part);
            }
        }
        Bytes::copy_from_slice(part)
    }
}

/// Parses one structured-mode JSON event.
pub fn from_json(bytes: &[u8]) -> Result<Event, DecodeError> {
    parse_event(bytes, Backing::Borrowed)
}

/// Parses one structured-mode JSON event held in `body`; data slices `body`.
pub(crate) fn parse_event(input: &[u8], backing: Backing<'_>) -> Result<Event, DecodeError> {
    let object: RawObject<'_> =
        serde_json::from_slice(input).map_err(|e| DecodeError::Json(e.to_string()))?;
    event_from_object(object, backing)
}

/// Parses a batch: a JSON array of structured events, all or nothing.
pub(crate) fn parse_batch(input: &[u8], backing: Backing<'_>) -> Result<Vec<Event>, DecodeError> {
    let elements: Vec<&RawValue> = serde_json::from_slice(input)
        .map_err(|e| DecodeError::Json(format!("a batch must be a JSON array of events: {e}")))?;
    elements
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            parse_event(raw.get().as_bytes(), backing).map_err(|source| DecodeError::Batch {
                index,
                source: Box::new(source),
            })
        })
        .collect()
}

fn attribute_error(attribute: &str, message: impl Into<String>) -> DecodeError {
    DecodeError::Attribute {
        attribute: attribute.to_owned(),
        message: message.into(),
    }
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// Decodes a JSON string member; `what` names it in errors.
fn json_string<'a>(raw: &'a RawValue, what: &str) -> Result<Cow<'a, str>, DecodeError> {
    // `&str` borrows when the string has no escapes; only then is it zero-copy.
    if let Ok(s) = serde_json::from_str::<&str>(raw.get()) {
        return Ok(Cow::Borrowed(s));
    }
    serde_json::from_str::<String>(raw.get())
        .map(Cow::Owned)
        .map_err(|_| attribute_error(what, format!("must be a JSON string, got {}", excerpt(raw))))
}

fn excerpt(raw: &RawValue) -> String {
    crate::validate::quote(raw.get())
        .trim_matches('"')
        .to_owned()
}

fn attr_value(name: &str, raw: &RawValue) -> Result<AttrValue, DecodeError> {
    let value: serde_json::Value = serde_json::from_str(raw.get())
        .map_err(|e| attribute_error(name, format!("is not valid JSON: {e}")))?;
    match value {
        serde_json::Value::String(s) => Ok(AttrValue::String(s)),
        serde_json::Value::Bool(b) => Ok(AttrValue::Boolean(b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            // `1.0` and `1e3` parse as floats: rejected rather than respelled as `1`.
            Some(i) => Ok(AttrValue::Integer(i)),
            None if n.is_u64() => Err(attribute_error(
                name,
                format!("integer {n} does not fit a signed 64-bit integer"),
            )),
            None => Err(attribute_error(
                name,
                format!(
                    "{} is not an integer; attribute numbers must be whole numbers without fraction or exponent",
                    raw.get()
                ),
            )),
        },
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => Err(attribute_error(
            name,
            "must be a string, an integer or a boolean, got a JSON array or object",
        )),
        // Callers drop nulls before getting here.
        serde_json::Value::Null => Err(attribute_error(name, "is null")),
    }
}

fn event_from_object(object: RawObject<'_>, backing: Backing<'_>) -> Result<Event, DecodeError> {
    let mut members = object.0;
    members.retain(|(_, raw)| !is_null(raw));
    fn take<'a>(members: &mut Vec<(String, &'a RawValue)>, name: &str) -> Option<&'a RawValue> {
        members
            .iter()
            .position(|(n, _)| n == name)
            .map(|at| members.swap_remove(at).1)
    }

    let Some(raw_version) = take(&mut members, attr::SPECVERSION) else {
        return Err(DecodeError::MissingSpecVersion);
    };
    let version_text = json_string(raw_version, attr::SPECVERSION)?;
    let version = SpecVersion::parse(&version_text)
        .ok_or_else(|| DecodeError::UnknownSpecVersion(version_text.into_owned()))?;

    let data = take(&mut members, DATA);
    let data_base64 = take(&mut members, DATA_BASE64);
    let encoding = match version {
        SpecVersion::V03 => take(&mut members, attr::DATACONTENTENCODING),
        SpecVersion::V10 => None,
    };

    let mut event = Event::new(version);
    for (name, raw) in members {
        let value = attr_value(&name, raw)?;
        event.set(name, value);
    }

    let base64_data = |raw: &RawValue, what: &str| -> Result<Bytes, DecodeError> {
        let text = json_string(raw, what)?;
        BASE64
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(|e| attribute_error(what, format!("is not valid base64 ({e})")))
    };

    let data = match (version, data, data_base64) {
        (_, None, None) => None,
        (SpecVersion::V10, Some(_), Some(_)) => {
            return Err(attribute_error(
                DATA_BASE64,
                "an event carries either \"data\" or \"data_base64\", not both",
            ));
        }
        (SpecVersion::V10, None, Some(raw)) => Some(base64_data(raw, DATA_BASE64)?),
        (SpecVersion::V03, _, Some(_)) => {
            return Err(attribute_error(
                DATA_BASE64,
                "is a CloudEvents 1.0 member; a 0.3 event carries binary data as \"data\" with \"datacontentencoding\": \"base64\"",
            ));
        }
        (_, Some(raw), None) => Some(match encoding {
            Some(enc) => {
                let enc = json_string(enc, attr::DATACONTENTENCODING)?;
                if !enc.eq_ignore_ascii_case("base64") {
                    return Err(attribute_error(
                        attr::DATACONTENTENCODING,
                        format!(
                            "{} is not supported; the only encoding is \"base64\"",
                            crate::validate::quote(&enc)
                        ),
                    ));
                }
                base64_data(raw, DATA)?
            }
            None => {
                let content_type = event.get(attr::DATACONTENTTYPE).map(AttrValue::as_str);
                if is_json_content_type(content_type.as_deref()) {
                    backing.bytes_of(raw.get().as_bytes())
                } else if raw.get().starts_with('"') {
                    match json_string(raw, DATA)? {
                        Cow::Borrowed(s) => backing.bytes_of(s.as_bytes()),
                        Cow::Owned(s) => Bytes::from(s),
                    }
                } else {
                    backing.bytes_of(raw.get().as_bytes())
                }
            }
        }),
    };
    event.set_data(data);
    Ok(event)
}

/// Writes `value` as a JSON string.
fn push_json_string(out: &mut Vec<u8>, value: &str) {
    // Serialising a `str` into a Vec cannot fail.
    serde_json::to_writer(&mut *out, value).expect("string serialises");
}

/// Encodes `event` in the structured JSON format.
///
/// Attributes keep their types. Data is embedded as raw JSON when the content type is
/// absent or JSON and the bytes are exactly one JSON value (no surrounding whitespace,
/// so decoding gives back the same bytes); otherwise as a JSON string when it is UTF-8
/// and the content type is not JSON; otherwise base64 (`data_base64` in 1.0,
/// `datacontentencoding: "base64"` in 0.3). Names the format reserves (`specversion`,
/// `data`, `data_base64`, and `datacontentencoding` in 0.3) are not written from the
/// attribute map; such events fail [`crate::validate::validate`] anyway.
pub fn to_json(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + event.approx_size() * 4 / 3);
    write_json(event, &mut out);
    out
}

pub(crate) fn write_json(event: &Event, out: &mut Vec<u8>) {
    let version = event.specversion();
    out.extend_from_slice(b"{\"specversion\":");
    push_json_string(out, version.as_str());
    for (name, value) in event.attributes() {
        let reserved = matches!(name, attr::SPECVERSION | DATA | DATA_BASE64)
            || (version == SpecVersion::V03 && name == attr::DATACONTENTENCODING);
        if reserved {
            continue;
        }
        out.push(b',');
        push_json_string(out, name);
        out.push(b':');
        match value {
            AttrValue::String(s) => push_json_string(out, s),
            AttrValue::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
            AttrValue::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        }
    }
    if let Some(data) = event.data() {
        let content_type = event.get(attr::DATACONTENTTYPE).map(AttrValue::as_str);
        let json_type = is_json_content_type(content_type.as_deref());
        if json_type && is_exact_json_value(data) {
            out.extend_from_slice(b",\"data\":");
            out.extend_from_slice(data);
        } else if let (false, Ok(text)) = (json_type, std::str::from_utf8(data)) {
            out.extend_from_slice(b",\"data\":");
            push_json_string(out, text);
        } else {
            let encoded = BASE64.encode(data);
            match version {
                SpecVersion::V10 => out.extend_from_slice(b",\"data_base64\":"),
                SpecVersion::V03 => {
                    out.extend_from_slice(b",\"datacontentencoding\":\"base64\",\"data\":")
                }
            }
            push_json_string(out, &encoded);
        }
    }
    out.push(b'}');
}

/// Whether `bytes` is one JSON value with nothing around it, so that embedding it and
/// parsing it back as a raw member yields the same bytes.
fn is_exact_json_value(bytes: &[u8]) -> bool {
    // JSON `null` as data would read back as "no data".
    serde_json::from_slice::<&RawValue>(bytes)
        .is_ok_and(|raw| raw.get().as_bytes() == bytes && raw.get() != "null")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Event, DecodeError> {
        from_json(text.as_bytes())
    }

    fn data(text: &str) -> Vec<u8> {
        parse(text).unwrap().data().expect("has data").to_vec()
    }

    #[test]
    fn content_type_json_table() {
        for (ct, json) in [
            (None, true),
            (Some("application/json"), true),
            (Some("Application/JSON; charset=utf-8"), true),
            (Some("text/json"), true),
            (Some("application/vnd.foo+json"), true),
            (Some("application/cloudevents+json"), true),
            (Some("  application/json  ;x=y"), true),
            (Some("text/plain"), false),
            (Some("application/octet-stream"), false),
            (Some("application/jsonx"), false),
            (Some("+json"), false),
            (Some("application/xml"), false),
            (Some(""), false),
        ] {
            assert_eq!(is_json_content_type(ct), json, "{ct:?}");
        }
    }

    #[test]
    fn data_table() {
        let cases: &[(&str, &[u8])] = &[
            // JSON data (no content type) is kept byte for byte, whitespace included.
            (
                r#"{"specversion":"1.0","data":{ "id" : 1 ,"x":[1, 2.50]}}"#,
                br#"{ "id" : 1 ,"x":[1, 2.50]}"#,
            ),
            (r#"{"specversion":"1.0","data":"abc"}"#, br#""abc""#),
            (r#"{"specversion":"1.0","data":1.0e3}"#, b"1.0e3"),
            (
                r#"{"specversion":"1.0","data":"\u00e9\n"}"#,
                br#""\u00e9\n""#,
            ),
            (
                r#"{"specversion":"1.0","datacontenttype":"application/json","data":  [ ]  }"#,
                b"[ ]",
            ),
            (
                r#"{"specversion":"1.0","datacontenttype":"application/vnd.x+json; v=1","data":"s"}"#,
                br#""s""#,
            ),
            // Non-JSON content type: a string is its text, anything else its raw JSON.
            (
                r#"{"specversion":"1.0","datacontenttype":"text/plain","data":"a\"b\u00e9"}"#,
                "a\"bé".as_bytes(),
            ),
            (
                r#"{"specversion":"1.0","datacontenttype":"text/plain","data":"plain"}"#,
                b"plain",
            ),
            (
                r#"{"specversion":"1.0","datacontenttype":"text/plain","data":{"a": 1}}"#,
                br#"{"a": 1}"#,
            ),
            (
                r#"{"specversion":"1.0","datacontenttype":"text/plain","data":""}"#,
                b"",
            ),
            // Base64.
            (
                r#"{"specversion":"1.0","data_base64":"AAEC/w=="}"#,
                &[0, 1, 2, 255],
            ),
            (
                r#"{"specversion":"1.0","data_base64":"AAEC/w"}"#,
                &[0, 1, 2, 255],
            ),
            (r#"{"specversion":"1.0","data_base64":""}"#, b""),
            (
                r#"{"specversion":"1.0","data_base64":"AAEC/w==","data":null}"#,
                &[0, 1, 2, 255],
            ),
            (
                r#"{"specversion":"0.3","datacontentencoding":"base64","data":"aGk="}"#,
                b"hi",
            ),
            (
                r#"{"specversion":"0.3","datacontentencoding":"Base64","data":"aGk="}"#,
                b"hi",
            ),
            (r#"{"specversion":"0.3","data":{"a":1}}"#, br#"{"a":1}"#),
        ];
        for (input, expected) in cases {
            assert_eq!(data(input), *expected, "{input}");
        }
    }

    #[test]
    fn attributes_keep_their_types() {
        let e = parse(
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","n":-42,"b":true,"f":false,"s":"x","z":null,"time":"2020-01-01t00:00:00.000000001+01:00"}"#,
        )
        .unwrap();
        assert_eq!(e.specversion(), SpecVersion::V10);
        assert_eq!(e.get("n"), Some(&AttrValue::Integer(-42)));
        assert_eq!(e.get("b"), Some(&AttrValue::Boolean(true)));
        assert_eq!(e.get("f"), Some(&AttrValue::Boolean(false)));
        assert_eq!(e.get("s"), Some(&AttrValue::from("x")));
        assert_eq!(e.get("z"), None, "null means absent");
        assert_eq!(
            e.get_str(attr::TIME).as_deref(),
            Some("2020-01-01t00:00:00.000000001+01:00")
        );
        assert_eq!(e.data(), None);
        assert_eq!(e.attributes().count(), 8);
    }

    #[test]
    fn nulls_are_absent() {
        let e = parse(
            r#"{"specversion":"1.0","id":"1","data":null,"data_base64":null,"subject":null}"#,
        )
        .unwrap();
        assert_eq!(e.data(), None);
        assert_eq!(e.get(attr::SUBJECT), None);
        assert_eq!(e.attributes().count(), 1);
    }

    #[test]
    fn datacontentencoding_is_a_format_detail_in_0_3_only() {
        let e =
            parse(r#"{"specversion":"0.3","datacontentencoding":"base64","data":"aGk="}"#).unwrap();
        assert_eq!(e.get(attr::DATACONTENTENCODING), None);
        // In 1.0 it is an ordinary extension and does not change how data is read.
        let e =
            parse(r#"{"specversion":"1.0","datacontentencoding":"base64","data":"aGk="}"#).unwrap();
        assert_eq!(
            e.get(attr::DATACONTENTENCODING),
            Some(&AttrValue::from("base64"))
        );
        assert_eq!(e.data().unwrap().as_ref(), br#""aGk=""#);
    }

    #[test]
    fn error_table() {
        // (input, attribute at fault, fragment of the message)
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("", None, "invalid JSON"),
            ("[]", None, "expected a CloudEvent JSON object"),
            ("{", None, "invalid JSON"),
            (r#"{"specversion":"1.0"} x"#, None, "trailing"),
            (r#"{"id":"1"}"#, Some("specversion"), "missing"),
            (r#"{"specversion":null}"#, Some("specversion"), "missing"),
            (r#"{"specversion":"2.0"}"#, Some("specversion"), "\"2.0\""),
            (
                r#"{"specversion":1.0}"#,
                Some("specversion"),
                "must be a JSON string",
            ),
            (
                r#"{"specversion":"1.0","id":"1","id":"2"}"#,
                None,
                "\"id\" appears more than once",
            ),
            (
                r#"{"specversion":"1.0","id":1.5}"#,
                Some("id"),
                "not an integer",
            ),
            (
                r#"{"specversion":"1.0","n":1.0}"#,
                Some("n"),
                "without fraction or exponent",
            ),
            (
                r#"{"specversion":"1.0","n":1e3}"#,
                Some("n"),
                "not an integer",
            ),
            (
                r#"{"specversion":"1.0","n":18446744073709551615}"#,
                Some("n"),
                "64-bit",
            ),
            (
                r#"{"specversion":"1.0","o":{"a":1}}"#,
                Some("o"),
                "array or object",
            ),
            (
                r#"{"specversion":"1.0","a":[1]}"#,
                Some("a"),
                "array or object",
            ),
            (
                r#"{"specversion":"1.0","data":1,"data_base64":"AA=="}"#,
                Some("data_base64"),
                "not both",
            ),
            (
                r#"{"specversion":"1.0","data_base64":"!!"}"#,
                Some("data_base64"),
                "not valid base64",
            ),
            (
                r#"{"specversion":"1.0","data_base64":5}"#,
                Some("data_base64"),
                "must be a JSON string",
            ),
            (
                r#"{"specversion":"0.3","data_base64":"AA=="}"#,
                Some("data_base64"),
                "1.0 member",
            ),
            (
                r#"{"specversion":"0.3","datacontentencoding":"base64","data":{}}"#,
                Some("data"),
                "must be a JSON string",
            ),
            (
                r#"{"specversion":"0.3","datacontentencoding":"base64","data":"%%"}"#,
                Some("data"),
                "base64",
            ),
            (
                r#"{"specversion":"0.3","datacontentencoding":"gzip","data":"x"}"#,
                Some("datacontentencoding"),
                "\"gzip\" is not supported",
            ),
        ];
        for (input, attribute, fragment) in cases {
            let err = parse(input).expect_err(input);
            assert_eq!(err.attribute(), *attribute, "{input}: {err}");
            assert!(
                err.to_string().contains(fragment),
                "{input}: {err} lacks {fragment}"
            );
        }
    }

    #[test]
    fn data_is_a_slice_of_a_shared_body() {
        let body = Bytes::from_static(br#"{"specversion":"1.0","data":{"k":"v"}}"#);
        let e = parse_event(&body, Backing::Shared(&body)).unwrap();
        let data = e.data().unwrap();
        assert_eq!(data.as_ref(), br#"{"k":"v"}"#);
        let start = body.as_ptr() as usize;
        let at = data.as_ptr() as usize;
        assert!(at >= start && at < start + body.len(), "data was copied");
    }

    #[test]
    fn to_json_encodes_data_by_content_type() {
        let mut e = Event::with_required("1", "/s", "t");
        let cases: &[(Option<&str>, &[u8], &str)] = &[
            (None, br#"{"a": 1}"#, r#","data":{"a": 1}}"#),
            (Some("application/json"), br#""s""#, r#","data":"s"}"#),
            // Not exactly one JSON value: would not read back byte-exact, so base64.
            (
                Some("application/json"),
                b"{\"a\":1}\n",
                r#","data_base64":"eyJhIjoxfQo="}"#,
            ),
            (
                Some("application/json"),
                b"plain",
                r#","data_base64":"cGxhaW4="}"#,
            ),
            (None, b"null", r#","data_base64":"bnVsbA=="}"#),
            (Some("text/plain"), "é\"".as_bytes(), r#","data":"é\""}"#),
            (Some("text/plain"), b"{}", r#","data":"{}"}"#),
            (
                Some("application/octet-stream"),
                &[0xff, 0],
                r#","data_base64":"/wA="}"#,
            ),
        ];
        for (ct, data, tail) in cases {
            match ct {
                Some(ct) => e.set(attr::DATACONTENTTYPE, *ct),
                None => drop(e.remove(attr::DATACONTENTTYPE)),
            }
            e.set_data(Some(Bytes::copy_from_slice(data)));
            let out = String::from_utf8(to_json(&e)).unwrap();
            assert!(out.ends_with(tail), "{out} should end with {tail}");
            assert_eq!(from_json(out.as_bytes()).unwrap(), e, "{out}");
        }
    }

    #[test]
    fn to_json_0_3_uses_datacontentencoding() {
        let mut e = Event::new(SpecVersion::V03);
        e.set(attr::ID, "1");
        e.set_data(Some(Bytes::from_static(&[1, 2, 3])));
        let out = String::from_utf8(to_json(&e)).unwrap();
        assert_eq!(
            out,
            r#"{"specversion":"0.3","id":"1","datacontentencoding":"base64","data":"AQID"}"#
        );
        assert_eq!(from_json(out.as_bytes()).unwrap(), e);
    }

    #[test]
    fn to_json_writes_typed_attributes_and_exact_time() {
        let mut e = Event::with_required("1", "/s", "t");
        e.set("n", AttrValue::Integer(-7));
        e.set("b", AttrValue::Boolean(false));
        e.set(attr::TIME, "2020-01-01T00:00:00.000000001+01:00");
        let out = String::from_utf8(to_json(&e)).unwrap();
        assert_eq!(
            out,
            r#"{"specversion":"1.0","b":false,"id":"1","n":-7,"source":"/s","time":"2020-01-01T00:00:00.000000001+01:00","type":"t"}"#
        );
        assert_eq!(from_json(out.as_bytes()).unwrap(), e);
    }
}
