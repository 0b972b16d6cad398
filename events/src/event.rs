//! The CloudEvent value as cebus carries it: attributes kept exactly as received.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;

/// Attribute names the spec defines for every version cebus speaks.
pub mod attr {
    /// `specversion`.
    pub const SPECVERSION: &str = "specversion";
    /// `id`.
    pub const ID: &str = "id";
    /// `source`.
    pub const SOURCE: &str = "source";
    /// `type`.
    pub const TYPE: &str = "type";
    /// `subject`.
    pub const SUBJECT: &str = "subject";
    /// `time`.
    pub const TIME: &str = "time";
    /// `datacontenttype`.
    pub const DATACONTENTTYPE: &str = "datacontenttype";
    /// `dataschema` (1.0).
    pub const DATASCHEMA: &str = "dataschema";
    /// `schemaurl` (0.3).
    pub const SCHEMAURL: &str = "schemaurl";
    /// `datacontentencoding` (0.3, structured mode only).
    pub const DATACONTENTENCODING: &str = "datacontentencoding";
    /// Knative: time the broker ingress accepted the event.
    pub const KNATIVE_ARRIVAL_TIME: &str = "knativearrivaltime";
    /// Knative: remaining broker hops before the event is rejected.
    pub const KNATIVE_BROKER_TTL: &str = "knativebrokerttl";
    /// Knative dead-letter extension: where delivery failed.
    pub const KNATIVE_ERROR_DEST: &str = "knativeerrordest";
    /// Knative dead-letter extension: the last HTTP status.
    pub const KNATIVE_ERROR_CODE: &str = "knativeerrorcode";
    /// Knative dead-letter extension: base64 of the start of the last response body.
    pub const KNATIVE_ERROR_DATA: &str = "knativeerrordata";
}

/// The map key of attribute `name`: a static for the names the spec and Knative
/// define, else the name itself.
fn name_key<N: AsRef<str> + Into<String>>(name: N) -> Cow<'static, str> {
    const KNOWN: [&str; 15] = [
        attr::ID,
        attr::SOURCE,
        attr::TYPE,
        attr::SUBJECT,
        attr::TIME,
        attr::DATACONTENTTYPE,
        attr::DATASCHEMA,
        attr::SCHEMAURL,
        attr::DATACONTENTENCODING,
        attr::KNATIVE_ARRIVAL_TIME,
        attr::KNATIVE_BROKER_TTL,
        attr::KNATIVE_ERROR_DEST,
        attr::KNATIVE_ERROR_CODE,
        attr::KNATIVE_ERROR_DATA,
        "traceparent",
    ];
    match KNOWN.iter().find(|k| **k == name.as_ref()) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(name.into()),
    }
}

/// CloudEvents specification version of an event; kept as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecVersion {
    /// CloudEvents 0.3.
    V03,
    /// CloudEvents 1.0.
    V10,
}

impl SpecVersion {
    /// The wire string (`"0.3"` or `"1.0"`).
    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V03 => "0.3",
            SpecVersion::V10 => "1.0",
        }
    }

    /// Parses the wire string; `None` for versions cebus does not speak.
    pub fn parse(s: &str) -> Option<SpecVersion> {
        match s {
            "0.3" => Some(SpecVersion::V03),
            "1.0" => Some(SpecVersion::V10),
            _ => None,
        }
    }

    /// Whether `name` is a context attribute this version defines (not an extension).
    pub fn is_core_attribute(self, name: &str) -> bool {
        match self {
            SpecVersion::V10 => matches!(
                name,
                attr::SPECVERSION
                    | attr::ID
                    | attr::SOURCE
                    | attr::TYPE
                    | attr::SUBJECT
                    | attr::TIME
                    | attr::DATACONTENTTYPE
                    | attr::DATASCHEMA
            ),
            SpecVersion::V03 => matches!(
                name,
                attr::SPECVERSION
                    | attr::ID
                    | attr::SOURCE
                    | attr::TYPE
                    | attr::SUBJECT
                    | attr::TIME
                    | attr::DATACONTENTTYPE
                    | attr::SCHEMAURL
                    | attr::DATACONTENTENCODING
            ),
        }
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value of a context attribute. Binary mode only carries strings; the JSON
/// format can also carry integers and booleans, kept so a JSON round trip is exact.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttrValue {
    /// A string (also URI, URI-reference, Timestamp, Binary in canonical form).
    String(String),
    /// A JSON number that is an integer (CloudEvents Integer).
    Integer(i64),
    /// A JSON boolean (CloudEvents Boolean).
    Boolean(bool),
}

impl AttrValue {
    /// Canonical string form (what binary mode puts in a header).
    pub fn as_str(&self) -> Cow<'_, str> {
        match self {
            AttrValue::String(s) => Cow::Borrowed(s),
            AttrValue::Integer(i) => Cow::Owned(i.to_string()),
            AttrValue::Boolean(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        }
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::String(s)
    }
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::String(s.to_owned())
    }
}

/// One CloudEvent: its spec version, every other context attribute (core and
/// extension, by name) and the data bytes. Nothing is normalised: the `time`
/// string, attribute spellings and data bytes are what the producer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    specversion: SpecVersion,
    // Names the spec or Knative define are borrowed statics ([`name_key`]):
    // most events carry only those, so a decoded event allocates no names.
    attrs: BTreeMap<Cow<'static, str>, AttrValue>,
    data: Option<Bytes>,
}

impl Event {
    /// An event of `specversion` with no attributes and no data.
    pub fn new(specversion: SpecVersion) -> Event {
        Event {
            specversion,
            attrs: BTreeMap::new(),
            data: None,
        }
    }

    /// A 1.0 event with the four required attributes set.
    pub fn with_required(id: &str, source: &str, ty: &str) -> Event {
        let mut e = Event::new(SpecVersion::V10);
        e.set(attr::ID, id);
        e.set(attr::SOURCE, source);
        e.set(attr::TYPE, ty);
        e
    }

    /// The spec version.
    pub fn specversion(&self) -> SpecVersion {
        self.specversion
    }

    /// An attribute by name (not `specversion`, see [`Event::get_str`]).
    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.attrs.get(name)
    }

    /// An attribute in canonical string form, `specversion` included.
    pub fn get_str(&self, name: &str) -> Option<Cow<'_, str>> {
        if name == attr::SPECVERSION {
            return Some(Cow::Borrowed(self.specversion.as_str()));
        }
        self.attrs.get(name).map(AttrValue::as_str)
    }

    /// Sets an attribute (not `specversion`), replacing any previous value.
    pub fn set<N: AsRef<str> + Into<String>>(&mut self, name: N, value: impl Into<AttrValue>) {
        self.attrs.insert(name_key(name), value.into());
    }

    /// Removes an attribute and returns its value.
    pub fn remove(&mut self, name: &str) -> Option<AttrValue> {
        self.attrs.remove(name)
    }

    /// Every attribute except `specversion`, sorted by name.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &AttrValue)> {
        self.attrs.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The data bytes, if the event has data.
    pub fn data(&self) -> Option<&Bytes> {
        self.data.as_ref()
    }

    /// Replaces the data.
    pub fn set_data(&mut self, data: Option<Bytes>) {
        self.data = data;
    }

    /// `id`, or `""` when absent (only on events not yet validated).
    pub fn id(&self) -> Cow<'_, str> {
        self.get_str(attr::ID).unwrap_or(Cow::Borrowed(""))
    }

    /// `type`, or `""` when absent.
    pub fn ty(&self) -> Cow<'_, str> {
        self.get_str(attr::TYPE).unwrap_or(Cow::Borrowed(""))
    }

    /// `source`, or `""` when absent.
    pub fn source(&self) -> Cow<'_, str> {
        self.get_str(attr::SOURCE).unwrap_or(Cow::Borrowed(""))
    }

    /// Rough size in bytes (attribute names, values and data), for limits.
    pub fn approx_size(&self) -> usize {
        let attrs: usize = self
            .attrs
            .iter()
            .map(|(k, v)| k.len() + v.as_str().len())
            .sum();
        attrs + self.data.as_ref().map_or(0, Bytes::len)
    }
}
