//! The CloudEvents NATS protocol binding: an event as a NATS message, in binary mode
//! (NATS headers `ce-<attribute>`, the data as the payload) or structured mode (the
//! JSON event as the payload, `Content-Type: application/cloudevents+json`), and
//! back; plus the `Nats-Msg-Id` that lets JetStream drop a producer's retries.
//!
//! Binary mode follows the binding's header rules, which are HTTP's: header names
//! are case-insensitive, and values are percent-encoded (space, `"`, `%`, controls
//! and every non-ASCII character) so that any attribute text fits a NATS header
//! line. On the way in a value may also be a quoted string. `datacontenttype` is a
//! `ce-datacontenttype` header like any other attribute (the binding says so;
//! a plain `Content-Type` is still read when that header is absent). An empty
//! payload in binary mode is an event without data.
//!
//! Decoding checks the format only; validate the event with
//! [`cebus_events::validate`] afterwards.

use bytes::Bytes;
use cebus_events::{Event, attr};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

use crate::binding::{
    BinaryAttributes, BindingError, decode_structured, is_cloudevents_media_type,
};

/// Prefix of the headers that carry attributes in binary mode.
pub const CE_PREFIX: &str = "ce-";
/// The binary-mode `specversion` header; its presence marks a binary-mode message.
pub const CE_SPECVERSION: &str = "ce-specversion";
/// The header naming the event format in structured mode.
pub const CONTENT_TYPE: &str = "Content-Type";
/// JetStream's de-duplication header; see [`msg_id`].
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";

/// What the binding requires to be percent-encoded in a header value: controls
/// (and DEL), space, `"`, `%`; non-ASCII is always encoded by the UTF-8 encoder.
const HEADER_VALUE_ESCAPES: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');

/// A NATS message as the binding sees it: no subject or reply subject, which are
/// the channel's business.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatsMessage {
    /// Headers in message order, as (name, value); NATS allows repeated names.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: Bytes,
}

impl NatsMessage {
    /// The value of the first header named `name`, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The `Nats-Msg-Id` of `event`: its `source` and `id`, so that JetStream's
/// duplicate window drops a re-publish of the same event and keeps every other.
///
/// Format: `<byte length of source>:<source><id>`, then percent-encoded like a
/// `ce-` header value. The length prefix makes the pair unambiguous (`("a", "bc")`
/// and `("ab", "c")` differ, whatever characters source and id contain), and the
/// percent-encoding, which is injective, keeps any text a valid header value.
pub fn msg_id(event: &Event) -> String {
    let source = event.source();
    let raw = format!("{}:{}{}", source.len(), source, event.id());
    utf8_percent_encode(&raw, HEADER_VALUE_ESCAPES).to_string()
}

/// Whether `name` can be sent as the lowercase header `ce-<name>`: visible ASCII,
/// no `:` and no uppercase (header names are case-insensitive, so an uppercase
/// attribute name would not come back as it was).
fn header_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (b'!'..=b'~').contains(&b) && b != b':' && !b.is_ascii_uppercase())
}

/// Encodes `event` in binary mode: `ce-specversion` first, then a percent-encoded
/// `ce-` header per attribute, and the data as the payload (no data ⇒ empty).
///
/// An attribute whose name cannot be a header name (see the module docs: empty,
/// uppercase, `:` or non-visible characters) is skipped; no validated event has
/// one. Empty data is not distinguishable from no data in binary mode.
pub fn encode_binary(event: &Event) -> NatsMessage {
    let mut headers = Vec::with_capacity(8);
    headers.push((
        CE_SPECVERSION.to_owned(),
        event.specversion().as_str().to_owned(),
    ));
    for (name, value) in event.attributes() {
        if name == attr::SPECVERSION || !header_safe_name(name) {
            continue;
        }
        headers.push((
            format!("{CE_PREFIX}{name}"),
            utf8_percent_encode(&value.as_str(), HEADER_VALUE_ESCAPES).to_string(),
        ));
    }
    NatsMessage {
        headers,
        payload: event.data().cloned().unwrap_or_default(),
    }
}

/// Encodes `event` in structured mode: `Content-Type: application/cloudevents+json`
/// and the JSON event (see [`cebus_events::to_json`]) as the payload.
pub fn encode_structured(event: &Event) -> NatsMessage {
    NatsMessage {
        headers: vec![(
            CONTENT_TYPE.to_owned(),
            cebus_events::http::CONTENT_TYPE_CLOUDEVENTS_JSON.to_owned(),
        )],
        payload: Bytes::from(cebus_events::to_json(event)),
    }
}

/// Decodes a message into an event, checking the format only.
///
/// As the binding says: a `Content-Type` naming a CloudEvents format means
/// structured mode (only `application/cloudevents+json` is read), otherwise the
/// message is binary, recognised by its `ce-specversion` header. A message with
/// neither header is read as a structured JSON event when it is one, as the
/// binding's 1.0.2 version (structured only, no headers) has publishers send it.
pub fn decode(message: &NatsMessage) -> Result<Event, BindingError> {
    let content_type = single(message, CONTENT_TYPE)?;
    if let Some(ct) = content_type
        && is_cloudevents_media_type(ct)
    {
        if message.payload.is_empty() {
            return Err(BindingError::MissingPayload);
        }
        return decode_structured(ct, &message.payload);
    }
    if message
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(CE_SPECVERSION))
    {
        return decode_binary(message, content_type);
    }
    let not_cloudevent = || BindingError::NotCloudEvent {
        specversion_header: CE_SPECVERSION,
        content_type: content_type.map(str::to_owned),
    };
    if content_type.is_none() && !message.payload.is_empty() {
        return cebus_events::from_json(&message.payload).map_err(|_| not_cloudevent());
    }
    Err(not_cloudevent())
}

/// The value of the header `name` (case-insensitive) when it appears at most once.
fn single<'m>(message: &'m NatsMessage, name: &str) -> Result<Option<&'m str>, BindingError> {
    let mut found = None;
    for (n, v) in &message.headers {
        if n.eq_ignore_ascii_case(name) {
            if found.is_some() {
                return Err(BindingError::DuplicateHeader { header: n.clone() });
            }
            found = Some(v.as_str());
        }
    }
    Ok(found)
}

fn decode_binary(message: &NatsMessage, content_type: Option<&str>) -> Result<Event, BindingError> {
    let mut attributes = BinaryAttributes::default();
    for (name, value) in &message.headers {
        let lower = name.to_ascii_lowercase();
        let Some(attribute) = lower.strip_prefix(CE_PREFIX) else {
            continue;
        };
        attributes.add(name, attribute, header_text(name, value)?)?;
    }
    let data = (!message.payload.is_empty()).then(|| message.payload.clone());
    Ok(attributes.into_event(content_type.map(str::to_owned), data))
}

/// A `ce-` header value as attribute text: surrounding whitespace dropped, a quoted
/// string unquoted (RFC 7230 §3.2.6, for older senders), then one round of
/// percent-decoding, whose result must be UTF-8.
fn header_text(name: &str, value: &str) -> Result<String, BindingError> {
    let error = |message: &str| BindingError::Header {
        header: name.to_owned(),
        message: message.to_owned(),
    };
    let value = value.trim_matches([' ', '\t']);
    let unquoted;
    let value = if let Some(inner) = value.strip_prefix('"') {
        unquoted = unquote(inner).ok_or_else(|| {
            error("unterminated quoted string; percent-encode the value instead of quoting it")
        })?;
        unquoted.as_str()
    } else {
        value
    };
    percent_decode_str(value)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            error(
                "value is not valid UTF-8 after percent-decoding; percent-encode the UTF-8 \
                 bytes of the value",
            )
        })
}

/// The content of a quoted string after its opening `"`: backslash escapes
/// resolved; `None` unless a closing `"` ends the value.
fn unquote(inner: &str) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(out),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use cebus_events::DecodeError;

    fn message(headers: &[(&str, &str)], payload: &[u8]) -> NatsMessage {
        NatsMessage {
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            payload: Bytes::copy_from_slice(payload),
        }
    }

    const REQUIRED: [(&str, &str); 4] = [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "/s"),
        ("ce-type", "t"),
    ];

    fn with_required(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut h = REQUIRED.to_vec();
        h.extend_from_slice(extra);
        h
    }

    #[test]
    fn binary_decode_table() {
        // (extra headers, attribute, expected value)
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static str,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            (
                &[("ce-subject", "a%20b%22c%25d")],
                "subject",
                Some("a b\"c%d"),
            ),
            (
                &[("ce-subject", "Euro%20%E2%82%AC%20%F0%9F%98%80")],
                "subject",
                Some("Euro € 😀"),
            ),
            (&[("ce-subject", "%e2%82%ac")], "subject", Some("€")),
            (&[("ce-subject", "100%")], "subject", Some("100%")),
            (&[("ce-subject", "  padded\t")], "subject", Some("padded")),
            // Quoted strings (older senders): unquoted, then percent-decoded.
            (
                &[("ce-subject", r#""a \"b\" c""#)],
                "subject",
                Some("a \"b\" c"),
            ),
            (&[("ce-subject", r#""x%41""#)], "subject", Some("xA")),
            (&[("CE-MyExt", "v")], "myext", Some("v")),
            (&[("Ce-Specversion", "1.0")], "specversion", Some("1.0")),
            (&[("ce-empty", "")], "empty", Some("")),
            (
                &[("ce-datacontenttype", "application/json")],
                "datacontenttype",
                Some("application/json"),
            ),
            (
                &[("Content-Type", "text/plain")],
                "datacontenttype",
                Some("text/plain"),
            ),
            (
                &[
                    ("content-type", "text/plain"),
                    ("ce-datacontenttype", "application/json"),
                ],
                "datacontenttype",
                Some("application/json"),
            ),
            (&[("Nats-Msg-Id", "x")], "nats-msg-id", None),
            (&[("cex-id", "v")], "x-id", None),
        ];
        for (extra, attribute, expected) in cases {
            let mut headers = REQUIRED.to_vec();
            // A second ce-specversion in another case is a duplicate; replace it.
            if extra
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(CE_SPECVERSION))
            {
                headers.remove(0);
            }
            headers.extend_from_slice(extra);
            let event =
                decode(&message(&headers, b"data")).unwrap_or_else(|e| panic!("{extra:?}: {e}"));
            assert_eq!(
                event.get_str(attribute).as_deref(),
                *expected,
                "{extra:?} -> {attribute}"
            );
            assert_eq!(event.data().map(|d| &d[..]), Some(&b"data"[..]));
        }
        let empty = decode(&message(&REQUIRED, b"")).unwrap();
        assert_eq!(empty.data(), None, "an empty payload is no data");
    }

    #[test]
    fn binary_decode_errors() {
        let cases: &[(Vec<(&str, &str)>, BindingError)] = &[
            (
                with_required(&[("CE-ID", "2")]),
                BindingError::DuplicateHeader {
                    header: "CE-ID".into(),
                },
            ),
            (
                with_required(&[("content-type", "a/b"), ("Content-Type", "a/b")]),
                BindingError::DuplicateHeader {
                    header: "Content-Type".into(),
                },
            ),
            (
                vec![("ce-specversion", "0.2")],
                BindingError::UnknownSpecVersion("0.2".into()),
            ),
            (
                with_required(&[("ce-subject", "%C0%A0")]),
                BindingError::Header {
                    header: "ce-subject".into(),
                    message: "value is not valid UTF-8 after percent-decoding; percent-encode \
                              the UTF-8 bytes of the value"
                        .into(),
                },
            ),
            (
                with_required(&[("ce-subject", "\"open")]),
                BindingError::Header {
                    header: "ce-subject".into(),
                    message: "unterminated quoted string; percent-encode the value instead of \
                              quoting it"
                        .into(),
                },
            ),
            (
                with_required(&[("ce-subject", "\"a\"b\"")]),
                BindingError::Header {
                    header: "ce-subject".into(),
                    message: "unterminated quoted string; percent-encode the value instead of \
                              quoting it"
                        .into(),
                },
            ),
            (
                vec![("ce-id", "1")],
                BindingError::NotCloudEvent {
                    specversion_header: CE_SPECVERSION,
                    content_type: None,
                },
            ),
            (
                vec![("Content-Type", "text/plain")],
                BindingError::NotCloudEvent {
                    specversion_header: CE_SPECVERSION,
                    content_type: Some("text/plain".into()),
                },
            ),
        ];
        for (headers, expected) in cases {
            assert_eq!(
                decode(&message(headers, b"{}")).as_ref(),
                Err(expected),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn structured_decode() {
        let json: &[u8] =
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a": 1}}"#;
        let structured = [(
            "Content-Type",
            "application/cloudevents+json; charset=utf-8",
        )];
        let event = decode(&message(&structured, json)).unwrap();
        assert_eq!(event.data().map(|d| &d[..]), Some(&br#"{"a": 1}"#[..]));
        // The binding's 1.0.2 form: no headers at all.
        assert_eq!(decode(&message(&[], json)).unwrap(), event);
        assert_eq!(
            decode(&message(&structured, b"")),
            Err(BindingError::MissingPayload)
        );
        assert_eq!(
            decode(&message(
                &[("content-type", "application/cloudevents+protobuf")],
                json
            )),
            Err(BindingError::UnsupportedFormat(
                "application/cloudevents+protobuf".into()
            ))
        );
        assert!(matches!(
            decode(&message(&structured, b"[]")),
            Err(BindingError::Structured(DecodeError::Json(_)))
        ));
        assert_eq!(
            decode(&message(&[], b"hello")),
            Err(BindingError::NotCloudEvent {
                specversion_header: CE_SPECVERSION,
                content_type: None
            })
        );
    }

    #[test]
    fn binary_encode_shape() {
        let mut event = Event::with_required("1", "/s", "t");
        event.set(attr::DATACONTENTTYPE, "application/json");
        event.set(attr::SUBJECT, "Euro € 😀 \"q\" 100%\r\n");
        event.set("Upper", "skipped");
        event.set("a:b", "skipped");
        event.set_data(Some(Bytes::from_static(b"{\"x\":1}")));
        let message = encode_binary(&event);
        let headers: Vec<(&str, &str)> = message
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            headers,
            [
                ("ce-specversion", "1.0"),
                ("ce-datacontenttype", "application/json"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                (
                    "ce-subject",
                    "Euro%20%E2%82%AC%20%F0%9F%98%80%20%22q%22%20100%25%0D%0A"
                ),
                ("ce-type", "t"),
            ]
        );
        assert_eq!(&message.payload[..], b"{\"x\":1}");
        let mut expected = event.clone();
        expected.remove("Upper");
        expected.remove("a:b");
        assert_eq!(decode(&message).unwrap(), expected);
    }

    #[test]
    fn structured_encode_shape() {
        let mut event = Event::with_required("1", "/s", "t");
        event.set_data(Some(Bytes::from_static(b"[1, 2]")));
        let message = encode_structured(&event);
        assert_eq!(
            message.header("content-type"),
            Some("application/cloudevents+json")
        );
        assert_eq!(&message.payload[..], &cebus_events::to_json(&event)[..]);
        assert_eq!(decode(&message).unwrap(), event);
    }

    #[test]
    fn msg_id_table() {
        let id = |source: &str, id: &str| msg_id(&Event::with_required(id, source, "t"));
        assert_eq!(id("/orders", "42"), "7:/orders42");
        assert_eq!(id("", ""), "0:");
        assert_eq!(id("a b", "é"), "3:a%20b%C3%A9");
        assert_eq!(id("100%", "\"\n"), "4:100%25%22%0A");
        // The pairs a plain concatenation would confuse stay apart.
        assert_ne!(id("a", "bc"), id("ab", "c"));
        assert_ne!(id("1:a", ""), id("1", ":a"));
    }

    mod properties {
        use super::super::*;
        use crate::binding::strategies;
        use proptest::prelude::*;

        /// Names that can be header names, including punctuation.
        fn name() -> impl Strategy<Value = String> {
            prop_oneof!["[a-z0-9]{1,12}", "[!-9;-@\\[-~]{1,8}"]
        }

        proptest! {
            /// Binary mode is exact for events with string attributes, header-safe
            /// names and no or non-empty data, whatever the attribute text.
            #[test]
            fn binary_round_trip(event in strategies::event(
                name(),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 1..64)),
            )) {
                let message = encode_binary(&event);
                for (n, v) in &message.headers {
                    prop_assert!(n.bytes().all(|b| (b'!'..=b'~').contains(&b)), "{n:?}");
                    prop_assert!(v.bytes().all(|b| (b'!'..=b'~').contains(&b)), "{v:?}");
                }
                prop_assert_eq!(decode(&message), Ok(event));
            }

            /// Structured mode gives what the JSON format gives.
            #[test]
            fn structured_round_trip(event in strategies::event(
                "[a-z0-9]{1,12}",
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            )) {
                let message = encode_structured(&event);
                let json = cebus_events::from_json(&message.payload);
                prop_assert_eq!(decode(&message), json.map_err(BindingError::from));
            }

            /// `Nats-Msg-Id` is a valid header value, and equal exactly when source
            /// and id both are.
            #[test]
            fn msg_id_is_injective(
                a in (strategies::text(), strategies::text()),
                b in (strategies::text(), strategies::text()),
            ) {
                let ida = msg_id(&Event::with_required(&a.1, &a.0, "t"));
                let idb = msg_id(&Event::with_required(&b.1, &b.0, "t"));
                prop_assert!(ida.bytes().all(|c| (b'!'..=b'~').contains(&c)));
                prop_assert_eq!(ida == idb, a == b);
            }

            /// Decoding never panics, whatever the headers and payload.
            #[test]
            fn decode_never_panics(
                headers in proptest::collection::vec(
                    (prop_oneof!["[cC][eE]-[a-z]{0,6}", "content-type", ".{0,6}"],
                     strategies::text()),
                    0..8,
                ),
                payload in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let _ = decode(&NatsMessage { headers, payload: Bytes::from(payload) });
            }
        }
    }
}
