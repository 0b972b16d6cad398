//! The CloudEvents HTTP protocol binding (1.0 and 0.3): binary, structured and batch
//! modes, as pure functions on a header map and a body.
//!
//! [`decode`] only checks the format; [`decode_and_validate`] also applies
//! [`validate()`] to every event and is the one call an ingress needs: it returns
//! the events or a [`DecodeError`] whose [`DecodeError::to_json_body`] is a 400 body.

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode, utf8_percent_encode};

use crate::event::{AttrValue, Event, SpecVersion, attr};
use crate::json::{self, Backing};
use crate::validate::validate;

pub use crate::error::DecodeError;
pub use crate::wire::{
    CE_PREFIX, CE_SPECVERSION, CONTENT_TYPE_BATCH_PREFIX, CONTENT_TYPE_CLOUDEVENTS_BATCH_JSON,
    CONTENT_TYPE_CLOUDEVENTS_JSON, CONTENT_TYPE_STRUCTURED_PREFIX,
};

/// Characters the binding requires to be percent-encoded in `ce-` header values:
/// controls, space, `"`, `%` and (implicitly, via UTF-8 encoding) everything non-ASCII.
const HEADER_VALUE_ESCAPES: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');

/// What an HTTP request carried: one event (binary or structured mode) or a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// One event.
    Single(Event),
    /// A batch, in request order; may be empty.
    Batch(Vec<Event>),
}

impl Decoded {
    /// The events, one for a single event.
    pub fn into_events(self) -> Vec<Event> {
        match self {
            Decoded::Single(e) => vec![e],
            Decoded::Batch(events) => events,
        }
    }
}

/// The media type of a Content-Type value, lowercased, parameters dropped.
fn media_type(value: &[u8]) -> String {
    let essence = value.split(|&b| b == b';').next().unwrap_or(b"");
    String::from_utf8_lossy(essence.trim_ascii()).to_ascii_lowercase()
}

/// Decodes an HTTP request into events, checking the format only (see
/// [`decode_and_validate`] for spec validation).
///
/// Mode comes from `Content-Type` (case-insensitive, parameters ignored):
/// `application/cloudevents+json` is structured, `application/cloudevents-batch+json`
/// a batch (all or nothing), other `application/cloudevents+*` formats are refused;
/// otherwise a `ce-specversion` header means binary mode. In binary mode `Content-Type`
/// gives `datacontenttype` unless a `ce-datacontenttype` header sets it explicitly (as
/// [`encode_binary`] does for values a `Content-Type` cannot carry). Data is never
/// copied in binary mode and is a slice of `body` in structured mode where possible.
pub fn decode(headers: &HeaderMap, body: Bytes) -> Result<Decoded, DecodeError> {
    let content_type = headers.get(CONTENT_TYPE).map(|v| media_type(v.as_bytes()));
    if let Some(ct) = content_type.as_deref() {
        if ct == CONTENT_TYPE_CLOUDEVENTS_JSON {
            return json::parse_event(&body, Backing::Shared(&body)).map(Decoded::Single);
        }
        if ct == CONTENT_TYPE_CLOUDEVENTS_BATCH_JSON {
            return json::parse_batch(&body, Backing::Shared(&body)).map(Decoded::Batch);
        }
        if ct.starts_with(CONTENT_TYPE_STRUCTURED_PREFIX)
            || ct.starts_with(CONTENT_TYPE_BATCH_PREFIX)
        {
            return Err(DecodeError::UnsupportedFormat(ct.to_owned()));
        }
    }
    if headers.contains_key(CE_SPECVERSION) {
        return decode_binary(headers, body).map(Decoded::Single);
    }
    Err(DecodeError::NotCloudEvent { content_type })
}

/// [`decode`], then [`validate`] on every event. A batch fails as a whole, naming
/// the index of the first invalid element.
pub fn decode_and_validate(headers: &HeaderMap, body: Bytes) -> Result<Decoded, DecodeError> {
    let decoded = decode(headers, body)?;
    match &decoded {
        Decoded::Single(event) => validate(event)?,
        Decoded::Batch(events) => {
            for (index, event) in events.iter().enumerate() {
                validate(event).map_err(|e| DecodeError::Batch {
                    index,
                    source: Box::new(DecodeError::Invalid(e)),
                })?;
            }
        }
    }
    Ok(decoded)
}

/// The single value of `name`, or an error when it appears more than once.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h HeaderValue>, DecodeError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(DecodeError::DuplicateHeader {
            header: name.as_str().to_owned(),
        });
    }
    Ok(first)
}

fn decode_binary(headers: &HeaderMap, body: Bytes) -> Result<Event, DecodeError> {
    let version_value = single(headers, &HeaderName::from_static(CE_SPECVERSION))?
        .map(|v| header_text(attr::SPECVERSION, v))
        .transpose()?
        .unwrap_or_default();
    let version =
        SpecVersion::parse(&version_value).ok_or(DecodeError::UnknownSpecVersion(version_value))?;
    let mut event = Event::new(version);
    // `HeaderMap::keys` yields each name once, already lowercase.
    for name in headers.keys() {
        let Some(attribute) = name.as_str().strip_prefix(CE_PREFIX) else {
            continue;
        };
        if attribute == attr::SPECVERSION {
            continue;
        }
        let Some(value) = single(headers, name)? else {
            continue;
        };
        event.set(attribute, header_text(attribute, value)?);
    }
    // `Content-Type` carries `datacontenttype`. A producer that also sent an explicit
    // `ce-datacontenttype` header keeps that value; it is the attribute as set.
    if let Some(value) = single(headers, &CONTENT_TYPE)?
        && event.get(attr::DATACONTENTTYPE).is_none()
    {
        let text = std::str::from_utf8(value.as_bytes()).map_err(|_| DecodeError::Attribute {
            attribute: attr::DATACONTENTTYPE.to_owned(),
            message: "the Content-Type header is not valid UTF-8".to_owned(),
        })?;
        event.set(attr::DATACONTENTTYPE, text);
    }
    if !body.is_empty() {
        event.set_data(Some(body));
    }
    Ok(event)
}

/// A `ce-` header value, percent-decoded.
fn header_text(attribute: &str, value: &HeaderValue) -> Result<String, DecodeError> {
    percent_decode(value.as_bytes())
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| DecodeError::Attribute {
            attribute: attribute.to_owned(),
            message: "header value is not valid UTF-8 after percent-decoding; percent-encode the UTF-8 bytes of the value".to_owned(),
        })
}

/// The header of a context attribute every event has, without allocating.
fn known_header(name: &str) -> Option<HeaderName> {
    Some(HeaderName::from_static(match name {
        attr::ID => "ce-id",
        attr::SOURCE => "ce-source",
        attr::TYPE => "ce-type",
        attr::SUBJECT => "ce-subject",
        attr::TIME => "ce-time",
        attr::DATACONTENTTYPE => "ce-datacontenttype",
        attr::DATASCHEMA => "ce-dataschema",
        attr::SCHEMAURL => "ce-schemaurl",
        attr::KNATIVE_ARRIVAL_TIME => "ce-knativearrivaltime",
        attr::KNATIVE_ERROR_DEST => "ce-knativeerrordest",
        attr::KNATIVE_ERROR_CODE => "ce-knativeerrorcode",
        attr::KNATIVE_ERROR_DATA => "ce-knativeerrordata",
        _ => return None,
    }))
}

/// The `ce-<name>` header of an extension attribute; `None` for a name that is
/// not a lowercase header name (`from_bytes` lowercases, which could merge two
/// names).
///
/// Names are kept per thread, a bounded number of them: a header name that is
/// not a standard one is a copied string, and a kept one is cloned by a
/// reference count instead of being built (and allocated) per event.
fn extension_header(name: &str) -> Option<HeaderName> {
    /// Names kept per thread; events with ever new extension names just build
    /// theirs.
    const KEPT: usize = 256;
    thread_local! {
        static KNOWN: std::cell::RefCell<std::collections::HashMap<Box<str>, HeaderName>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    if let Some(h) = KNOWN.with_borrow(|known| known.get(name).cloned()) {
        return Some(h);
    }
    let header = HeaderName::from_bytes(format!("{CE_PREFIX}{name}").as_bytes()).ok()?;
    if header.as_str()[CE_PREFIX.len()..] != *name {
        return None;
    }
    KNOWN.with_borrow_mut(|known| {
        if known.len() < KEPT {
            known.insert(name.into(), header.clone());
        }
    });
    Some(header)
}

/// Encodes `event` in binary mode: sets a `ce-` header per attribute (values
/// percent-encoded as the binding requires) and `Content-Type` from
/// `datacontenttype`, and returns the body, which is the data (a cheap clone).
///
/// Existing `ce-` headers in `headers` are removed first so none leak into the event.
/// An attribute whose name is not a lowercase header name is skipped, and a
/// `datacontenttype` that cannot be a `Content-Type` value travels as a
/// `ce-datacontenttype` header instead; neither happens to a validated event. In
/// binary mode an empty body means no data, so empty data is not distinguishable from
/// none.
pub fn encode_binary(event: &Event, headers: &mut HeaderMap) -> Bytes {
    let stale: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with(CE_PREFIX))
        .cloned()
        .collect();
    for name in stale {
        headers.remove(&name);
    }
    headers.remove(CONTENT_TYPE);
    headers.insert(
        HeaderName::from_static(CE_SPECVERSION),
        HeaderValue::from_static(event.specversion().as_str()),
    );
    // Every value is written into one buffer and each header holds a slice of
    // it: one allocation for all the values instead of one each, and a clone of
    // the map (one per delivery) shares the values instead of copying each.
    let room = event
        .attributes()
        .map(|(_, v)| match v {
            AttrValue::String(s) => s.len(),
            _ => 20,
        })
        .sum::<usize>();
    let mut buf = BytesMut::with_capacity(room + 16);
    for (name, value) in event.attributes() {
        if name == attr::SPECVERSION {
            continue;
        }
        let text = value.as_str();
        // Only printable ASCII goes in `Content-Type`: it cannot be percent-encoded,
        // and HTTP parsers trim surrounding whitespace from header values.
        if name == attr::DATACONTENTTYPE
            && text
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            && text.trim_matches([' ', '\t']) == text
        {
            buf.extend_from_slice(text.as_bytes());
            if let Ok(ct) = HeaderValue::from_maybe_shared(buf.split().freeze()) {
                headers.insert(CONTENT_TYPE, ct);
                continue;
            }
        }
        let Some(header) = known_header(name).or_else(|| extension_header(name)) else {
            continue;
        };
        for chunk in utf8_percent_encode(&text, HEADER_VALUE_ESCAPES) {
            buf.extend_from_slice(chunk.as_bytes());
        }
        let value = HeaderValue::from_maybe_shared(buf.split().freeze())
            .expect("percent-encoded text is visible ASCII");
        headers.insert(header, value);
    }
    event.data().cloned().unwrap_or_default()
}

/// Encodes `event` in structured mode: `Content-Type: application/cloudevents+json`
/// and the JSON event as the body (see [`crate::json::to_json`]).
pub fn encode_structured(event: &Event, headers: &mut HeaderMap) -> Bytes {
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_CLOUDEVENTS_JSON),
    );
    Bytes::from(json::to_json(event))
}

/// Encodes `events` as a batch body (a JSON array of structured events), to be sent
/// with `Content-Type:` [`CONTENT_TYPE_CLOUDEVENTS_BATCH_JSON`].
pub fn encode_batch(events: &[Event]) -> Bytes {
    let mut out =
        Vec::with_capacity(2 + events.iter().map(|e| 128 + e.approx_size()).sum::<usize>());
    out.push(b'[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_json(event, &mut out);
    }
    out.push(b']');
    Bytes::from(out)
}

/// Re-exported so callers of the binding need one module.
pub use crate::json::{from_json, to_json};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AttrValue;
    use crate::validate::EventError;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn single(decoded: Decoded) -> Event {
        match decoded {
            Decoded::Single(e) => e,
            Decoded::Batch(b) => panic!("expected one event, got a batch of {}", b.len()),
        }
    }

    const REQUIRED: [(&str, &str); 4] = [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "/s"),
        ("ce-type", "t"),
    ];

    #[test]
    fn extension_names_beyond_the_kept_ones_still_encode() {
        // More distinct extension names than each thread keeps: the ones past
        // the bound are built per event, and every one round-trips.
        for i in 0..300 {
            let mut event = Event::with_required("1", "/s", "t");
            let name = format!("ext{i}");
            event.set(name.as_str(), AttrValue::from("v w"));
            let mut map = HeaderMap::new();
            encode_binary(&event, &mut map);
            assert_eq!(
                map.get(format!("ce-{name}").as_str())
                    .and_then(|v| v.to_str().ok()),
                Some("v%20w"),
                "{name}"
            );
            let back = single(decode(&map, Bytes::new()).unwrap());
            assert_eq!(back, event, "{name}");
        }
    }

    #[test]
    fn binary_decode_table() {
        // (extra headers, attribute, expected value)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Option<&'a str>);
        let cases: &[Case] = &[
            (
                &[("ce-subject", "a%20b%22c%25d")],
                "subject",
                Some("a b\"c%d"),
            ),
            (&[("ce-subject", "%C3%A9t%C3%A9")], "subject", Some("été")),
            (&[("ce-subject", "%e2%82%ac")], "subject", Some("€")),
            (&[("ce-subject", "100%")], "subject", Some("100%")),
            (&[("CE-MyExt", "v")], "myext", Some("v")),
            (&[("ce-empty", "")], "empty", Some("")),
            (
                &[("ce-time", "2020-01-01t00:00:00.000000001+01:00")],
                "time",
                Some("2020-01-01t00:00:00.000000001+01:00"),
            ),
            (
                &[("content-type", "text/plain; charset=utf-8")],
                "datacontenttype",
                Some("text/plain; charset=utf-8"),
            ),
            (
                &[
                    ("content-type", "text/plain"),
                    ("ce-datacontenttype", "application/json"),
                ],
                "datacontenttype",
                Some("application/json"),
            ),
            (&[], "datacontenttype", None),
            (&[("x-other", "v")], "x-other", None),
            (&[("cex-id", "v")], "x-id", None),
        ];
        for (extra, attribute, expected) in cases {
            let mut pairs = REQUIRED.to_vec();
            pairs.extend_from_slice(extra);
            let e = single(decode(&headers(&pairs), Bytes::new()).unwrap());
            assert_eq!(e.get_str(attribute).as_deref(), *expected, "{extra:?}");
            assert_eq!(e.get_str(attr::ID).as_deref(), Some("1"));
        }
    }

    #[test]
    fn binary_body_is_data_without_copy() {
        let body = Bytes::from_static(b"\x00\xffraw");
        let e = single(decode(&headers(&REQUIRED), body.clone()).unwrap());
        assert_eq!(e.data(), Some(&body));
        assert_eq!(e.data().unwrap().as_ptr(), body.as_ptr());
        assert_eq!(e.specversion(), SpecVersion::V10);
        assert_eq!(
            e.get(attr::SPECVERSION),
            None,
            "specversion is not an attribute"
        );

        let e = single(decode(&headers(&REQUIRED), Bytes::new()).unwrap());
        assert_eq!(e.data(), None, "empty body means no data");
    }

    #[test]
    fn binary_0_3() {
        let mut pairs = REQUIRED.to_vec();
        pairs[0] = ("ce-specversion", "0.3");
        pairs.push(("ce-schemaurl", "https://x"));
        let e = single(decode_and_validate(&headers(&pairs), Bytes::new()).unwrap());
        assert_eq!(e.specversion(), SpecVersion::V03);
        assert_eq!(e.get_str(attr::SCHEMAURL).as_deref(), Some("https://x"));
    }

    #[test]
    fn binary_error_table() {
        let mut bad_utf8 = headers(&REQUIRED);
        bad_utf8.insert("ce-subject", HeaderValue::from_static("%FF%FE"));
        let mut raw_bad_utf8 = headers(&REQUIRED);
        raw_bad_utf8.insert("ce-subject", HeaderValue::from_bytes(b"\xff").unwrap());
        let mut bad_ct = headers(&REQUIRED);
        bad_ct.insert(CONTENT_TYPE, HeaderValue::from_bytes(b"text/\xff").unwrap());
        let cases: Vec<(HeaderMap, Option<&str>, &str)> = vec![
            (
                headers(&[("ce-specversion", "2.0"), ("ce-id", "1")]),
                Some("specversion"),
                "unsupported spec version \"2.0\"",
            ),
            (
                headers(&[("ce-specversion", ""), ("ce-id", "1")]),
                Some("specversion"),
                "unsupported spec version \"\"",
            ),
            (
                headers(&[("ce-specversion", "1.0"), ("ce-specversion", "1.0")]),
                Some("specversion"),
                "\"ce-specversion\" appears more than once",
            ),
            (
                headers(&[("ce-specversion", "1.0"), ("ce-id", "1"), ("CE-ID", "2")]),
                Some("id"),
                "\"ce-id\" appears more than once",
            ),
            (
                headers(&[
                    ("ce-specversion", "1.0"),
                    ("content-type", "a/b"),
                    ("content-type", "c/d"),
                ]),
                Some("datacontenttype"),
                "more than once",
            ),
            (
                bad_utf8,
                Some("subject"),
                "not valid UTF-8 after percent-decoding",
            ),
            (raw_bad_utf8, Some("subject"), "UTF-8"),
            (bad_ct, Some("datacontenttype"), "UTF-8"),
            (
                headers(&[("ce-id", "1")]),
                None,
                "not a CloudEvent: no ce-specversion header",
            ),
            (
                headers(&[("content-type", "application/json")]),
                None,
                "(got \"application/json\")",
            ),
            (
                headers(&[
                    ("ce-specversion", "1.0"),
                    ("content-type", "application/cloudevents+avro"),
                ]),
                None,
                "unsupported event format \"application/cloudevents+avro\"",
            ),
            (
                headers(&[("content-type", "application/cloudevents-batch+protobuf")]),
                None,
                "unsupported event format",
            ),
        ];
        for (map, attribute, fragment) in cases {
            let err = decode(&map, Bytes::from_static(b"x")).expect_err(&format!("{map:?}"));
            assert_eq!(err.attribute(), attribute, "{err}");
            assert!(err.to_string().contains(fragment), "{err} lacks {fragment}");
        }
    }

    #[test]
    fn structured_mode_detection_ignores_case_and_parameters() {
        let body = Bytes::from_static(
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{ "a" : 1 }}"#,
        );
        for ct in [
            "application/cloudevents+json",
            "Application/CloudEvents+JSON",
            "application/cloudevents+json; charset=utf-8",
            " application/cloudevents+json ;charset=UTF-8",
        ] {
            // ce- headers are ignored in structured mode.
            let map = headers(&[
                ("content-type", ct),
                ("ce-specversion", "0.3"),
                ("ce-id", "9"),
            ]);
            let e = single(decode_and_validate(&map, body.clone()).unwrap());
            assert_eq!(e.specversion(), SpecVersion::V10, "{ct}");
            assert_eq!(e.id(), "1");
            assert_eq!(e.data().unwrap().as_ref(), br#"{ "a" : 1 }"#);
            assert_eq!(e.get(attr::DATACONTENTTYPE), None);
        }
    }

    #[test]
    fn structured_errors_surface() {
        let map = headers(&[("content-type", CONTENT_TYPE_CLOUDEVENTS_JSON)]);
        let err = decode(&map, Bytes::from_static(b"{")).unwrap_err();
        assert!(err.to_string().starts_with("invalid JSON"), "{err}");
        let err = decode(&map, Bytes::from_static(br#"{"specversion":"1.0","x":{}}"#)).unwrap_err();
        assert_eq!(err.attribute(), Some("x"));
    }

    fn batch_headers() -> HeaderMap {
        headers(&[(
            "content-type",
            "application/cloudevents-batch+json; charset=utf-8",
        )])
    }

    #[test]
    fn batch_decode() {
        let decoded = decode_and_validate(&batch_headers(), Bytes::from_static(b" [ ] ")).unwrap();
        assert_eq!(decoded, Decoded::Batch(vec![]));

        let body = Bytes::from_static(
            br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t","data":[1, 2]},
                {"specversion":"0.3","id":"2","source":"/s","type":"t","datacontenttype":"text/plain","data":"hi"}]"#,
        );
        let Decoded::Batch(events) = decode_and_validate(&batch_headers(), body).unwrap() else {
            panic!("expected a batch");
        };
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data().unwrap().as_ref(), b"[1, 2]");
        assert_eq!(events[1].specversion(), SpecVersion::V03);
        assert_eq!(events[1].data().unwrap().as_ref(), b"hi");
    }

    #[test]
    fn batch_is_all_or_nothing() {
        let cases: &[(&str, Option<usize>, Option<&str>, &str)] = &[
            (
                r#"{"specversion":"1.0"}"#,
                None,
                None,
                "a batch must be a JSON array",
            ),
            (
                r#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"}, 5]"#,
                Some(1),
                None,
                "batch element 1: invalid JSON",
            ),
            (
                r#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"9"}]"#,
                Some(1),
                Some("specversion"),
                "batch element 1: attribute \"specversion\"",
            ),
            (
                r#"[{"specversion":"1.0","id":"1","source":"/s"}]"#,
                Some(0),
                Some("type"),
                "batch element 0: attribute \"type\": required",
            ),
            (
                r#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2","source":"/s","type":"t","time":"now"}]"#,
                Some(1),
                Some("time"),
                "\"now\" is not an RFC 3339",
            ),
        ];
        for (body, index, attribute, fragment) in cases {
            let err = decode_and_validate(&batch_headers(), Bytes::from_static(body.as_bytes()))
                .expect_err(body);
            assert_eq!(err.index(), *index, "{err}");
            assert_eq!(err.attribute(), *attribute, "{err}");
            assert!(err.to_string().contains(fragment), "{err} lacks {fragment}");
        }
    }

    #[test]
    fn decode_does_not_validate_but_decode_and_validate_does() {
        let map = headers(&[("ce-specversion", "1.0"), ("ce-id", "1")]);
        assert!(decode(&map, Bytes::new()).is_ok());
        let err = decode_and_validate(&map, Bytes::new()).unwrap_err();
        assert_eq!(err.attribute(), Some("source"));
        assert_eq!(err.index(), None);
    }

    #[test]
    fn error_json_body() {
        let err = DecodeError::Batch {
            index: 3,
            source: Box::new(DecodeError::Invalid(EventError::new(
                "id",
                "must be a non-empty string when present",
            ))),
        };
        let body: serde_json::Value = serde_json::from_slice(&err.to_json_body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "error": "batch element 3: attribute \"id\": must be a non-empty string when present",
                "attribute": "id",
                "index": 3,
            })
        );
        let body: serde_json::Value = serde_json::from_slice(
            &DecodeError::NotCloudEvent { content_type: None }.to_json_body(),
        )
        .unwrap();
        assert_eq!(body.as_object().unwrap().len(), 1);
    }

    fn full_event() -> Event {
        let mut e = Event::with_required("id 1", "/src?q=\"x\"", "com.example.t");
        e.set(attr::TIME, "2020-01-01T00:00:00.000000001+01:00");
        e.set(attr::SUBJECT, "ü 100%\r\n\t");
        e.set(attr::DATACONTENTTYPE, "text/plain; charset=utf-8");
        e.set("ext", "v");
        e.set_data(Some(Bytes::from_static(b"hello")));
        e
    }

    #[test]
    fn encode_binary_sets_percent_encoded_headers() {
        let e = full_event();
        let mut map = headers(&[("ce-stale", "x"), ("x-keep", "y")]);
        let body = encode_binary(&e, &mut map);
        assert_eq!(
            body.as_ptr(),
            e.data().unwrap().as_ptr(),
            "body is the data, not a copy"
        );
        let get = |n: &str| map.get(n).map(|v| v.to_str().unwrap());
        assert_eq!(get("ce-specversion"), Some("1.0"));
        assert_eq!(get("ce-id"), Some("id%201"));
        assert_eq!(get("ce-source"), Some("/src?q=%22x%22"));
        assert_eq!(get("ce-subject"), Some("%C3%BC%20100%25%0D%0A%09"));
        assert_eq!(get("ce-time"), Some("2020-01-01T00:00:00.000000001+01:00"));
        assert_eq!(get("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(get("ce-datacontenttype"), None);
        assert_eq!(get("ce-stale"), None, "stale ce- headers are removed");
        assert_eq!(get("x-keep"), Some("y"));
        assert_eq!(single(decode(&map, body).unwrap()), e);
    }

    #[test]
    fn encode_binary_falls_back_for_unsendable_content_type() {
        let mut e = Event::with_required("1", "/s", "t");
        for ct in ["text/plain; name=\"é\"", "text/plain; x=y ", "a/b; c=\u{1}"] {
            e.set(attr::DATACONTENTTYPE, ct);
            let mut map = HeaderMap::new();
            let body = encode_binary(&e, &mut map);
            assert_eq!(map.get(CONTENT_TYPE), None, "{ct:?}");
            assert!(map.contains_key("ce-datacontenttype"), "{ct:?}");
            assert_eq!(single(decode(&map, body).unwrap()), e);
        }
    }

    #[test]
    fn encode_structured_and_batch() {
        let e = full_event();
        let mut map = HeaderMap::new();
        let body = encode_structured(&e, &mut map);
        assert_eq!(map[CONTENT_TYPE], CONTENT_TYPE_CLOUDEVENTS_JSON);
        assert!(
            std::str::from_utf8(&body)
                .unwrap()
                .contains(r#""time":"2020-01-01T00:00:00.000000001+01:00""#)
        );
        assert_eq!(single(decode(&map, body).unwrap()), e);

        let mut e2 = Event::new(SpecVersion::V03);
        e2.set(attr::ID, "2");
        e2.set("n", AttrValue::Integer(5));
        let batch = encode_batch(&[e.clone(), e2.clone()]);
        assert_eq!(
            decode(&batch_headers(), batch).unwrap(),
            Decoded::Batch(vec![e, e2])
        );
        assert_eq!(encode_batch(&[]).as_ref(), b"[]");
    }

    #[test]
    fn time_is_byte_exact_through_every_encoding() {
        for time in [
            "2020-01-01T00:00:00.000000001+01:00",
            "2020-01-01t00:00:00z",
            "1990-12-31T23:59:60.000Z",
        ] {
            let mut e = Event::with_required("1", "/s", "t");
            e.set(attr::TIME, time);
            let mut map = HeaderMap::new();
            let body = encode_binary(&e, &mut map);
            let binary = single(decode_and_validate(&map, body).unwrap());
            let mut map = HeaderMap::new();
            let body = encode_structured(&e, &mut map);
            let structured = single(decode_and_validate(&map, body).unwrap());
            for got in [binary, structured] {
                assert_eq!(got.get(attr::TIME), Some(&AttrValue::from(time)));
            }
        }
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;
    use crate::event::AttrValue;

    fn rfc3339() -> impl Strategy<Value = String> {
        (
            0u32..10_000,
            1u32..=12,
            1u32..=28,
            0u32..24,
            0u32..60,
            0u32..=60,
            proptest::option::of("[0-9]{1,9}"),
            prop_oneof![
                Just("Z".to_owned()),
                Just("z".to_owned()),
                "[+-](0[0-9]|1[0-9]|2[0-3]):[0-5][0-9]"
            ],
            any::<bool>(),
        )
            .prop_map(|(y, mo, d, h, mi, s, frac, zone, lower)| {
                let t = if lower { 't' } else { 'T' };
                let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
                format!("{y:04}-{mo:02}-{d:02}{t}{h:02}:{mi:02}:{s:02}{frac}{zone}")
            })
    }

    fn content_type() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("application/json".to_owned()),
            Just("text/plain; charset=utf-8".to_owned()),
            Just("application/octet-stream".to_owned()),
            Just("application/vnd.example+json".to_owned()),
            "[a-z]{1,8}/[a-z0-9.+-]{1,12}",
        ]
    }

    fn extension_name() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,20}".prop_filter("not a core or reserved name", |n| {
            !SpecVersion::V10.is_core_attribute(n)
                && !SpecVersion::V03.is_core_attribute(n)
                && n != "data"
        })
    }

    /// A valid event whose attributes are all strings (binary mode carries only strings).
    fn string_event() -> impl Strategy<Value = Event> {
        (
            prop_oneof![Just(SpecVersion::V10), Just(SpecVersion::V03)],
            ".+",
            ".+",
            ".+",
            proptest::option::of(".+"),
            proptest::option::of(rfc3339()),
            proptest::option::of(content_type()),
            proptest::collection::btree_map(extension_name(), ".*", 0..4),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 1..64)),
        )
            .prop_map(|(version, id, source, ty, subject, time, ct, exts, data)| {
                let mut e = Event::new(version);
                e.set(attr::ID, id);
                e.set(attr::SOURCE, source);
                e.set(attr::TYPE, ty);
                let optional = [
                    (attr::SUBJECT, subject),
                    (attr::TIME, time),
                    (attr::DATACONTENTTYPE, ct),
                ];
                for (name, value) in optional {
                    if let Some(value) = value {
                        e.set(name, value);
                    }
                }
                for (name, value) in exts {
                    e.set(name, value);
                }
                e.set_data(data.map(Bytes::from));
                e
            })
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e9f64..1e9).prop_map(serde_json::Value::from),
            ".*".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(".*", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// (datacontenttype, data) pairs covering every data encoding path.
    fn typed_data() -> impl Strategy<Value = (Option<String>, Option<Bytes>)> {
        prop_oneof![
            Just((None, None)),
            // JSON data under a JSON (or absent) content type, compact or pretty.
            (
                prop_oneof![
                    Just(None),
                    Just(Some("application/json".to_owned())),
                    Just(Some("application/cloudevents+json".to_owned()))
                ],
                json_value(),
                any::<bool>()
            )
                .prop_map(|(ct, v, pretty)| {
                    let text = if pretty {
                        serde_json::to_vec_pretty(&v)
                    } else {
                        serde_json::to_vec(&v)
                    };
                    (ct, Some(Bytes::from(text.unwrap())))
                }),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|d| (
                Some("application/octet-stream".to_owned()),
                Some(Bytes::from(d))
            )),
            ".*".prop_map(|s| (Some("text/plain".to_owned()), Some(Bytes::from(s)))),
            // Bytes that are not JSON under a JSON content type go base64.
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|d| (None, Some(Bytes::from(d)))),
        ]
    }

    fn attr_value() -> impl Strategy<Value = AttrValue> {
        prop_oneof![
            ".*".prop_map(AttrValue::String),
            any::<i64>().prop_map(AttrValue::Integer),
            any::<bool>().prop_map(AttrValue::Boolean),
        ]
    }

    /// An event with typed extension attributes and data of every kind.
    fn typed_event() -> impl Strategy<Value = Event> {
        (
            string_event(),
            proptest::collection::btree_map(extension_name(), attr_value(), 0..4),
            typed_data(),
        )
            .prop_map(|(mut e, exts, (ct, data))| {
                for (name, value) in exts {
                    e.set(name, value);
                }
                match ct {
                    Some(ct) => e.set(attr::DATACONTENTTYPE, ct),
                    None => drop(e.remove(attr::DATACONTENTTYPE)),
                }
                e.set_data(data);
                e
            })
    }

    proptest! {
        #[test]
        fn generated_events_are_valid(e in string_event()) {
            prop_assert_eq!(crate::validate::validate(&e), Ok(()));
        }

        #[test]
        fn binary_round_trip(e in string_event()) {
            let mut map = HeaderMap::new();
            let body = encode_binary(&e, &mut map);
            let got = decode_and_validate(&map, body).map_err(|err| TestCaseError::fail(err.to_string()))?;
            prop_assert_eq!(got, Decoded::Single(e));
        }

        #[test]
        fn json_round_trip(e in typed_event()) {
            let text = to_json(&e);
            let got = from_json(&text).map_err(|err| TestCaseError::fail(format!("{err}: {}", String::from_utf8_lossy(&text))))?;
            prop_assert_eq!(got, e);
        }

        #[test]
        fn structured_and_batch_round_trip(events in proptest::collection::vec(typed_event(), 0..4)) {
            for e in &events {
                let mut map = HeaderMap::new();
                let body = encode_structured(e, &mut map);
                prop_assert_eq!(decode(&map, body).ok(), Some(Decoded::Single(e.clone())));
            }
            let mut map = HeaderMap::new();
            map.insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_CLOUDEVENTS_BATCH_JSON));
            prop_assert_eq!(decode(&map, encode_batch(&events)).ok(), Some(Decoded::Batch(events)));
        }

        #[test]
        fn decode_never_panics(
            names in proptest::collection::vec("(ce-)?[a-z-]{0,8}", 0..6),
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..6),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut map = HeaderMap::new();
            for (name, value) in names.iter().zip(values) {
                if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(&value)) {
                    map.append(n, v);
                }
            }
            let _ = decode_and_validate(&map, Bytes::from(body));
        }
    }
}
