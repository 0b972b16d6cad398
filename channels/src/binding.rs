//! What the wire bindings of CloudEvents onto the durable channels' transports
//! share: the errors, structured mode, and how binary-mode attribute headers
//! become an event. Each transport's binding lives in its backend's folder
//! (`kafka/binding.rs` for Kafka records, `nats/binding.rs` for NATS
//! messages). Pure functions on plain structs, no I/O, so the
//! channels only move bytes and the mappings are table-, property- and
//! fuzz-tested on their own.
//!
//! Decoding checks the wire format only. Whether the event obeys the CloudEvents
//! spec (required attributes, attribute names and types) is the caller's job:
//! apply [`cebus_events::validate`] to what a binding's `decode` returns, as the
//! HTTP ingress does with `decode_and_validate`.

use bytes::Bytes;
use cebus_events::http::CONTENT_TYPE_CLOUDEVENTS_JSON;
use cebus_events::{DecodeError, Event, SpecVersion, attr};

/// The media type prefix of every CloudEvents format; a `content-type` that starts
/// with it (case-insensitively) marks structured mode in both bindings.
pub const CLOUDEVENTS_MEDIA_TYPE_PREFIX: &str = "application/cloudevents";

/// Why a Kafka record or NATS message is not an acceptable CloudEvent. Messages
/// say what was wrong and what would be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// Neither binary mode (no `specversion` header) nor structured mode.
    #[error(
        "not a CloudEvent: no {specversion_header} header, and the content is not a structured \
         application/cloudevents+json event{}",
        content_type.as_deref().map(|c| format!(" (content-type {c:?})")).unwrap_or_default()
    )]
    NotCloudEvent {
        /// The binding's binary-mode `specversion` header name.
        specversion_header: &'static str,
        /// The message's content type, if any.
        content_type: Option<String>,
    },
    /// Structured mode in an event format other than JSON.
    #[error(
        "unsupported event format {0:?}: cebus reads application/cloudevents+json, or binary mode"
    )]
    UnsupportedFormat(String),
    /// Binary mode with a `specversion` cebus does not speak.
    #[error(
        "attribute \"specversion\": unsupported spec version {0:?}; expected \"1.0\" or \"0.3\""
    )]
    UnknownSpecVersion(String),
    /// An attribute header appears more than once.
    #[error("header {header:?} appears more than once; send each attribute once")]
    DuplicateHeader {
        /// The header name as received.
        header: String,
    },
    /// An attribute header's value cannot be read.
    #[error("header {header:?}: {message}")]
    Header {
        /// The header name as received.
        header: String,
        /// What was wrong.
        message: String,
    },
    /// Structured mode without a payload to parse.
    #[error(
        "structured mode (content-type application/cloudevents+json) without a value: the JSON \
         event is missing"
    )]
    MissingPayload,
    /// The structured-mode payload is not a JSON CloudEvent.
    #[error("structured event: {0}")]
    Structured(#[from] DecodeError),
}

/// Whether a content type names a CloudEvents format (`application/cloudevents...`,
/// case-insensitive), which makes the message structured.
pub(crate) fn is_cloudevents_media_type(content_type: &str) -> bool {
    let ct = content_type.trim_start().as_bytes();
    ct.len() >= CLOUDEVENTS_MEDIA_TYPE_PREFIX.len()
        && ct[..CLOUDEVENTS_MEDIA_TYPE_PREFIX.len()]
            .eq_ignore_ascii_case(CLOUDEVENTS_MEDIA_TYPE_PREFIX.as_bytes())
}

/// Decodes a structured-mode payload whose content type is a CloudEvents format:
/// JSON is parsed, any other format (Avro, Protobuf, batches) is refused.
pub(crate) fn decode_structured(content_type: &str, payload: &[u8]) -> Result<Event, BindingError> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != CONTENT_TYPE_CLOUDEVENTS_JSON {
        return Err(BindingError::UnsupportedFormat(essence));
    }
    Ok(cebus_events::from_json(payload)?)
}

#[cfg(test)]
pub(crate) mod strategies {
    //! Proptest strategies shared by the bindings' round-trip properties.

    use bytes::Bytes;
    use cebus_events::{AttrValue, Event, SpecVersion, attr};
    use proptest::prelude::*;

    /// Attribute values: any string, with spaces, quotes, `%`, controls and
    /// non-ASCII characters well represented.
    pub fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".*",
            "[ -~]*",
            "[ \"%a-z\\\\]{0,12}",
            "[\u{0}-\u{1f}\u{7f}é€😀]{0,6}",
        ]
    }

    /// An event whose attributes are all strings (binary mode carries nothing else),
    /// with extension names from `name`.
    pub fn event(
        name: impl Strategy<Value = String>,
        data: impl Strategy<Value = Option<Vec<u8>>>,
    ) -> impl Strategy<Value = Event> {
        (
            prop_oneof![Just(SpecVersion::V10), Just(SpecVersion::V03)],
            text(),
            text(),
            text(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::collection::btree_map(name, text(), 0..5),
            data,
        )
            .prop_map(|(version, id, source, ty, ct, subject, ext, data)| {
                let mut e = Event::new(version);
                e.set(attr::ID, id);
                e.set(attr::SOURCE, source);
                e.set(attr::TYPE, ty);
                if let Some(ct) = ct {
                    e.set(attr::DATACONTENTTYPE, ct);
                }
                if let Some(subject) = subject {
                    e.set(attr::SUBJECT, subject);
                }
                for (name, value) in ext {
                    if name != attr::SPECVERSION {
                        e.set(name, AttrValue::String(value));
                    }
                }
                e.set_data(data.map(Bytes::from));
                e
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudevents_media_types() {
        for (ct, expected) in [
            ("application/cloudevents+json", true),
            ("Application/CloudEvents+JSON; charset=UTF-8", true),
            ("application/cloudevents-batch+json", true),
            ("application/cloudevents", true),
            ("application/cloudevent", false),
            ("application/json", false),
            ("", false),
        ] {
            assert_eq!(is_cloudevents_media_type(ct), expected, "{ct:?}");
        }
    }

    #[test]
    fn only_json_is_a_structured_format() {
        let json = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#;
        assert_eq!(
            decode_structured("application/cloudevents+json; charset=utf-8", json)
                .unwrap()
                .id(),
            "1"
        );
        assert_eq!(
            decode_structured("application/cloudevents+avro", json),
            Err(BindingError::UnsupportedFormat(
                "application/cloudevents+avro".into()
            ))
        );
        assert_eq!(
            decode_structured("application/cloudevents-batch+json", json),
            Err(BindingError::UnsupportedFormat(
                "application/cloudevents-batch+json".into()
            ))
        );
        assert!(matches!(
            decode_structured("application/cloudevents+json", b"{"),
            Err(BindingError::Structured(DecodeError::Json(_)))
        ));
    }
}

/// Binary-mode attribute headers as a decoder meets them: the spec version once,
/// every other attribute once. Shared by both bindings so they agree on duplicates,
/// unknown versions and how `content-type` fills `datacontenttype`.
#[derive(Debug, Default)]
pub(crate) struct BinaryAttributes {
    version: Option<SpecVersion>,
    attributes: Vec<(String, String)>,
}

impl BinaryAttributes {
    /// Adds attribute `attribute` (from header `header`) with value `text`.
    pub(crate) fn add(
        &mut self,
        header: &str,
        attribute: &str,
        text: String,
    ) -> Result<(), BindingError> {
        let duplicate = if attribute == attr::SPECVERSION {
            let seen = self.version.is_some();
            self.version =
                Some(SpecVersion::parse(&text).ok_or(BindingError::UnknownSpecVersion(text))?);
            seen
        } else {
            let seen = self.attributes.iter().any(|(a, _)| a == attribute);
            self.attributes.push((attribute.to_owned(), text));
            seen
        };
        if duplicate {
            return Err(BindingError::DuplicateHeader {
                header: header.to_owned(),
            });
        }
        Ok(())
    }

    /// The event: the attributes, `datacontenttype` from `content_type` unless an
    /// explicit attribute header gave it, and `data`.
    pub(crate) fn into_event(self, content_type: Option<String>, data: Option<Bytes>) -> Event {
        let version = self
            .version
            .expect("decoders only collect attributes after seeing a specversion header");
        let mut event = Event::new(version);
        for (attribute, text) in self.attributes {
            event.set(attribute, text);
        }
        if let Some(ct) = content_type
            && event.get(attr::DATACONTENTTYPE).is_none()
        {
            event.set(attr::DATACONTENTTYPE, ct);
        }
        event.set_data(data);
        event
    }
}
