//! The CloudEvents Kafka protocol binding 1.0: an event as a Kafka record, in binary
//! mode (`ce_` headers, `content-type`, the data as the value) or structured mode
//! (the JSON event as the value), and back.
//!
//! Binary mode is byte-exact: header values are the attributes' UTF-8 text with no
//! escaping (the binding needs none, Kafka header values are bytes), and a record
//! without a value is an event without data (the binding's tombstone), while an
//! empty value is empty data. Attribute header names are matched exactly, `ce_`
//! lowercase, as Kafka header keys are case-sensitive; `content-type` is matched
//! case-insensitively.
//!
//! Decoding checks the format only; validate the event with
//! [`cebus_events::validate`] afterwards.

use bytes::Bytes;
use cebus_events::{Event, attr};

use crate::binding::{
    BinaryAttributes, BindingError, decode_structured, is_cloudevents_media_type,
};

/// Prefix of the headers that carry attributes in binary mode.
pub const CE_PREFIX: &str = "ce_";
/// The binary-mode `specversion` header; its presence marks a binary-mode record.
pub const CE_SPECVERSION: &str = "ce_specversion";
/// The header carrying `datacontenttype` (binary) or the event format (structured).
pub const CONTENT_TYPE: &str = "content-type";
/// The Partitioning extension attribute whose value becomes the record key.
pub const PARTITION_KEY: &str = "partitionkey";

/// A Kafka record as the binding sees it: no topic, partition or offset, which are
/// the channel's business.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KafkaRecord {
    /// The record key (`partitionkey` when the event has one).
    pub key: Option<Bytes>,
    /// Headers in record order; Kafka allows repeated names.
    pub headers: Vec<(String, Bytes)>,
    /// The record value; `None` is Kafka's null value.
    pub value: Option<Bytes>,
}

impl KafkaRecord {
    /// The value of the first header named exactly `name`.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// The record key the binding's key mapper gives `event`: its `partitionkey`
/// extension, as-is, when present.
fn key_of(event: &Event) -> Option<Bytes> {
    event
        .get_str(PARTITION_KEY)
        .map(|k| Bytes::copy_from_slice(k.as_bytes()))
}

/// Encodes `event` in binary mode: a `ce_` header per attribute (`ce_specversion`
/// first), `datacontenttype` as the `content-type` header, the data as the value
/// (no data ⇒ null value) and `partitionkey` as the key (it stays a header too, as
/// the binding requires).
///
/// A `datacontenttype` that itself names a CloudEvents format
/// (`application/cloudevents...`) travels as `ce_datacontenttype` instead, because
/// as a `content-type` it would make the record look structured.
pub fn encode_binary(event: &Event) -> KafkaRecord {
    let mut headers = Vec::with_capacity(8);
    headers.push((
        CE_SPECVERSION.to_owned(),
        Bytes::from_static(event.specversion().as_str().as_bytes()),
    ));
    for (name, value) in event.attributes() {
        if name == attr::SPECVERSION {
            continue;
        }
        let text = Bytes::copy_from_slice(value.as_str().as_bytes());
        if name == attr::DATACONTENTTYPE && !is_cloudevents_media_type(&value.as_str()) {
            headers.push((CONTENT_TYPE.to_owned(), text));
        } else {
            headers.push((format!("{CE_PREFIX}{name}"), text));
        }
    }
    KafkaRecord {
        key: key_of(event),
        headers,
        value: event.data().cloned(),
    }
}

/// Encodes `event` in structured mode: `content-type: application/cloudevents+json`,
/// the JSON event (see [`cebus_events::to_json`]) as the value, `partitionkey` as
/// the key.
pub fn encode_structured(event: &Event) -> KafkaRecord {
    KafkaRecord {
        key: key_of(event),
        headers: vec![(
            CONTENT_TYPE.to_owned(),
            Bytes::from_static(cebus_events::http::CONTENT_TYPE_CLOUDEVENTS_JSON.as_bytes()),
        )],
        value: Some(Bytes::from(cebus_events::to_json(event))),
    }
}

/// Decodes a record into an event, checking the format only.
///
/// The mode comes from `content-type`, as the binding says: a CloudEvents media
/// type means structured (only `application/cloudevents+json` is read), otherwise a
/// `ce_specversion` header means binary. A record with neither `content-type` nor
/// `ce_specversion` is read as a structured JSON event when it is one (the binding
/// lets structured records omit `content-type`). The key is not read: a key mapper
/// must not add attributes, and `partitionkey` travels as a header anyway.
pub fn decode(record: &KafkaRecord) -> Result<Event, BindingError> {
    let content_type = content_type(record)?;
    if let Some(ct) = content_type.as_deref()
        && is_cloudevents_media_type(ct)
    {
        let value = record.value.as_ref().ok_or(BindingError::MissingPayload)?;
        return decode_structured(ct, value);
    }
    if record.headers.iter().any(|(n, _)| n == CE_SPECVERSION) {
        return decode_binary(record, content_type);
    }
    let not_cloudevent = || BindingError::NotCloudEvent {
        specversion_header: CE_SPECVERSION,
        content_type: content_type.clone(),
    };
    match (&content_type, &record.value) {
        (None, Some(value)) => cebus_events::from_json(value).map_err(|_| not_cloudevent()),
        _ => Err(not_cloudevent()),
    }
}

/// The single `content-type` header (name matched case-insensitively), as text.
fn content_type(record: &KafkaRecord) -> Result<Option<String>, BindingError> {
    let mut found: Option<(&str, &Bytes)> = None;
    for (name, value) in &record.headers {
        if !name.eq_ignore_ascii_case(CONTENT_TYPE) {
            continue;
        }
        if found.is_some() {
            return Err(BindingError::DuplicateHeader {
                header: name.clone(),
            });
        }
        found = Some((name, value));
    }
    found
        .map(|(name, value)| utf8(name, value).map(str::to_owned))
        .transpose()
}

/// A header value as UTF-8 text, as the binding requires of attribute headers.
fn utf8<'v>(name: &str, value: &'v [u8]) -> Result<&'v str, BindingError> {
    std::str::from_utf8(value).map_err(|_| BindingError::Header {
        header: name.to_owned(),
        message: "value is not valid UTF-8; the Kafka binding carries attributes as UTF-8 text"
            .to_owned(),
    })
}

fn decode_binary(
    record: &KafkaRecord,
    content_type: Option<String>,
) -> Result<Event, BindingError> {
    let mut attributes = BinaryAttributes::default();
    for (name, value) in &record.headers {
        let Some(attribute) = name.strip_prefix(CE_PREFIX) else {
            continue;
        };
        attributes.add(name, attribute, utf8(name, value)?.to_owned())?;
    }
    // `content-type` carries `datacontenttype`; an explicit `ce_datacontenttype`
    // (what `encode_binary` writes for CloudEvents media types) wins.
    Ok(attributes.into_event(content_type, record.value.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cebus_events::DecodeError;

    fn record(headers: &[(&str, &[u8])], value: Option<&[u8]>) -> KafkaRecord {
        KafkaRecord {
            key: None,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), Bytes::copy_from_slice(v)))
                .collect(),
            value: value.map(Bytes::copy_from_slice),
        }
    }

    const REQUIRED: [(&str, &[u8]); 4] = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"1"),
        ("ce_source", b"/s"),
        ("ce_type", b"t"),
    ];

    type Headers = Vec<(&'static str, &'static [u8])>;

    fn with_required(extra: &[(&'static str, &'static [u8])]) -> Headers {
        let mut h = REQUIRED.to_vec();
        h.extend_from_slice(extra);
        h
    }

    #[test]
    fn binary_decode_table() {
        // (extra headers, attribute, expected value)
        type Case = (
            &'static [(&'static str, &'static [u8])],
            &'static str,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            // Values are raw UTF-8: no percent-decoding, no quote handling.
            (
                &[("ce_subject", b"a%20b \"c\"")],
                "subject",
                Some("a%20b \"c\""),
            ),
            (
                &[("ce_subject", b"\xc3\xa9t\xc3\xa9 \xe2\x82\xac")],
                "subject",
                Some("été €"),
            ),
            (&[("ce_subject", b" padded ")], "subject", Some(" padded ")),
            (&[("ce_empty", b"")], "empty", Some("")),
            (&[("ce_myext", b"v")], "myext", Some("v")),
            // Kafka header keys are case-sensitive: only `ce_` counts.
            (&[("CE_other", b"v")], "other", None),
            (&[("ce-other", b"v")], "other", None),
            (
                &[("content-type", b"text/plain; charset=utf-8")],
                "datacontenttype",
                Some("text/plain; charset=utf-8"),
            ),
            (
                &[("Content-Type", b"text/plain")],
                "datacontenttype",
                Some("text/plain"),
            ),
            (
                &[
                    ("content-type", b"text/plain"),
                    ("ce_datacontenttype", b"application/json"),
                ],
                "datacontenttype",
                Some("application/json"),
            ),
            (&[], "datacontenttype", None),
            (&[("ce_partitionkey", b"k")], "partitionkey", Some("k")),
        ];
        for (extra, attribute, expected) in cases {
            let event = decode(&record(&with_required(extra), Some(b"data")))
                .unwrap_or_else(|e| panic!("{extra:?}: {e}"));
            assert_eq!(
                event.get_str(attribute).as_deref(),
                *expected,
                "{extra:?} -> {attribute}"
            );
            assert_eq!(event.id(), "1");
            assert_eq!(event.data().map(|d| &d[..]), Some(&b"data"[..]));
        }
    }

    #[test]
    fn binary_data_null_empty_and_bytes() {
        let none = decode(&record(&REQUIRED, None)).unwrap();
        assert_eq!(none.data(), None, "a null value is an event without data");
        let empty = decode(&record(&REQUIRED, Some(b""))).unwrap();
        assert_eq!(empty.data().map(|d| d.len()), Some(0));
        let bytes = decode(&record(&REQUIRED, Some(b"\x00\xff{not json"))).unwrap();
        assert_eq!(
            bytes.data().map(|d| &d[..]),
            Some(&b"\x00\xff{not json"[..])
        );
        assert_eq!(bytes.specversion(), cebus_events::SpecVersion::V10);
    }

    #[test]
    fn binary_decode_errors() {
        let cases: &[(Headers, BindingError)] = &[
            (
                with_required(&[("ce_id", b"2")]),
                BindingError::DuplicateHeader {
                    header: "ce_id".into(),
                },
            ),
            (
                with_required(&[("ce_specversion", b"1.0")]),
                BindingError::DuplicateHeader {
                    header: "ce_specversion".into(),
                },
            ),
            (
                with_required(&[("content-type", b"a/b"), ("Content-Type", b"a/b")]),
                BindingError::DuplicateHeader {
                    header: "Content-Type".into(),
                },
            ),
            (
                vec![("ce_specversion", b"2.0"), ("ce_id", b"1")],
                BindingError::UnknownSpecVersion("2.0".into()),
            ),
            (
                with_required(&[("ce_subject", b"\xff")]),
                BindingError::Header {
                    header: "ce_subject".into(),
                    message: "value is not valid UTF-8; the Kafka binding carries attributes as \
                              UTF-8 text"
                        .into(),
                },
            ),
            (
                vec![("ce_id", b"1"), ("ce_source", b"/s")],
                BindingError::NotCloudEvent {
                    specversion_header: CE_SPECVERSION,
                    content_type: None,
                },
            ),
            (
                vec![("content-type", b"application/json")],
                BindingError::NotCloudEvent {
                    specversion_header: CE_SPECVERSION,
                    content_type: Some("application/json".into()),
                },
            ),
        ];
        for (headers, expected) in cases {
            assert_eq!(
                decode(&record(headers, Some(b"{}"))).as_ref(),
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
            "content-type",
            &b"application/cloudevents+json; charset=UTF-8"[..],
        )];
        let event = decode(&record(&structured, Some(json))).unwrap();
        assert_eq!(event.data().map(|d| &d[..]), Some(&br#"{"a": 1}"#[..]));
        assert_eq!(event.get(attr::DATACONTENTTYPE), None);

        // Structured wins over stray `ce_` headers (the binding allows both).
        let mut both = REQUIRED.to_vec();
        both.push(structured[0]);
        assert_eq!(decode(&record(&both, Some(json))).unwrap(), event);

        // Without `content-type` and `ce_specversion`, a JSON event is still read.
        assert_eq!(decode(&record(&[], Some(json))).unwrap(), event);

        assert_eq!(
            decode(&record(&structured, None)),
            Err(BindingError::MissingPayload)
        );
        assert_eq!(
            decode(&record(
                &[("content-type", b"application/cloudevents+avro")],
                Some(json)
            )),
            Err(BindingError::UnsupportedFormat(
                "application/cloudevents+avro".into()
            ))
        );
        assert!(matches!(
            decode(&record(&structured, Some(b"{\"specversion\":\"1.0\""))),
            Err(BindingError::Structured(DecodeError::Json(_)))
        ));
        assert_eq!(
            decode(&record(&[], Some(b"not json"))),
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
        event.set(PARTITION_KEY, "user-7");
        event.set(attr::SUBJECT, "a b\"%€");
        event.set_data(Some(Bytes::from_static(b"{\"x\":1}")));
        let record = encode_binary(&event);
        assert_eq!(record.key.as_deref(), Some(&b"user-7"[..]));
        assert_eq!(record.value.as_deref(), Some(&b"{\"x\":1}"[..]));
        let headers: Vec<(&str, &[u8])> = record
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), &v[..]))
            .collect();
        assert_eq!(
            headers,
            [
                ("ce_specversion", &b"1.0"[..]),
                ("content-type", b"application/json"),
                ("ce_id", b"1"),
                ("ce_partitionkey", b"user-7"),
                ("ce_source", b"/s"),
                ("ce_subject", "a b\"%€".as_bytes()),
                ("ce_type", b"t"),
            ]
        );
        assert_eq!(decode(&record).unwrap(), event);

        // No data: a null value; no partitionkey: no key.
        let bare = encode_binary(&Event::with_required("1", "/s", "t"));
        assert_eq!((bare.key, bare.value), (None, None));
    }

    #[test]
    fn binary_keeps_a_cloudevents_datacontenttype_out_of_content_type() {
        let mut event = Event::with_required("1", "/s", "t");
        event.set(attr::DATACONTENTTYPE, "application/cloudevents+json");
        event.set_data(Some(Bytes::from_static(b"{}")));
        let record = encode_binary(&event);
        assert!(record.header(CONTENT_TYPE).is_none());
        assert_eq!(
            record.header("ce_datacontenttype").map(|v| &v[..]),
            Some(&b"application/cloudevents+json"[..])
        );
        assert_eq!(decode(&record).unwrap(), event);
    }

    #[test]
    fn structured_encode_shape() {
        let mut event = Event::with_required("1", "/s", "t");
        event.set(PARTITION_KEY, "k");
        event.set_data(Some(Bytes::from_static(b"[1, 2]")));
        let record = encode_structured(&event);
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(
            record.header(CONTENT_TYPE).map(|v| &v[..]),
            Some(&b"application/cloudevents+json"[..])
        );
        assert_eq!(
            record.value.as_deref(),
            Some(&cebus_events::to_json(&event)[..])
        );
        assert_eq!(decode(&record).unwrap(), event);
    }

    mod properties {
        use super::super::*;
        use crate::binding::strategies;
        use proptest::prelude::*;

        proptest! {
            /// Binary mode is exact for every event whose attributes are strings:
            /// any names, any values, null, empty and non-empty data.
            #[test]
            fn binary_round_trip(event in strategies::event(
                prop_oneof!["[a-z0-9]{1,12}", ".{0,8}"],
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            )) {
                let record = encode_binary(&event);
                let key = event.get_str(PARTITION_KEY);
                prop_assert_eq!(record.key.as_deref(), key.as_deref().map(str::as_bytes));
                prop_assert_eq!(decode(&record), Ok(event));
            }

            /// Structured mode gives what the JSON format gives.
            #[test]
            fn structured_round_trip(event in strategies::event(
                "[a-z0-9]{1,12}",
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            )) {
                let record = encode_structured(&event);
                let json = cebus_events::from_json(record.value.as_deref().unwrap());
                prop_assert_eq!(decode(&record), json.map_err(BindingError::from));
            }

            /// Decoding never panics, whatever the headers and value.
            #[test]
            fn decode_never_panics(
                headers in proptest::collection::vec(
                    (prop_oneof!["ce_[a-z]{0,6}", "content-type", ".{0,6}"],
                     proptest::collection::vec(any::<u8>(), 0..12)),
                    0..8,
                ),
                value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            ) {
                let record = KafkaRecord {
                    key: None,
                    headers: headers.into_iter().map(|(n, v)| (n, Bytes::from(v))).collect(),
                    value: value.map(Bytes::from),
                };
                let _ = decode(&record);
            }
        }
    }
}
