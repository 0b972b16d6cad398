//! [`DecodeError`]: why bytes received over HTTP are not an acceptable CloudEvent.
//! Shared by the HTTP binding and the JSON event format, which both produce it.

use bytes::Bytes;
use http::header::CONTENT_TYPE;

use crate::event::attr;
use crate::validate::{EventError, quote};
use crate::wire::CE_PREFIX;

/// Why a request is not an acceptable CloudEvent. Messages say what was wrong and
/// what would be right; [`DecodeError::to_json_body`] renders one for a 400 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Neither binary nor structured mode.
    #[error(
        "not a CloudEvent: no ce-specversion header and content type is not application/cloudevents+json{}",
        content_type.as_deref().map(|c| format!(" (got {})", quote(c))).unwrap_or_default()
    )]
    NotCloudEvent {
        /// The request's content type, if any.
        content_type: Option<String>,
    },
    /// Structured mode in an event format other than JSON.
    #[error(
        "unsupported event format {}: cebus accepts application/cloudevents+json and application/cloudevents-batch+json",
        quote(.0)
    )]
    UnsupportedFormat(String),
    /// `specversion` is absent from a structured event.
    #[error(
        "attribute \"specversion\": required attribute is missing; expected \"1.0\" or \"0.3\""
    )]
    MissingSpecVersion,
    /// `specversion` is not one cebus speaks.
    #[error("attribute \"specversion\": unsupported spec version {}; expected \"1.0\" or \"0.3\"", quote(.0))]
    UnknownSpecVersion(String),
    /// A header that must appear once appeared more than once.
    #[error("header {header:?} appears more than once; send each attribute once")]
    DuplicateHeader {
        /// The header name.
        header: String,
    },
    /// The body is not the JSON the content type promises.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// An attribute (or the data member) is malformed.
    #[error("attribute {attribute:?}: {message}")]
    Attribute {
        /// The attribute or JSON member name.
        attribute: String,
        /// What was wrong.
        message: String,
    },
    /// The event decoded but breaks a rule of the CloudEvents spec.
    #[error(transparent)]
    Invalid(#[from] EventError),
    /// One element of a batch is bad; the whole batch is rejected.
    #[error("batch element {index}: {source}")]
    Batch {
        /// Zero-based position of the bad element.
        index: usize,
        /// What was wrong with it.
        source: Box<DecodeError>,
    },
}

impl DecodeError {
    /// The attribute at fault, when the error is about one.
    pub fn attribute(&self) -> Option<&str> {
        match self {
            DecodeError::MissingSpecVersion | DecodeError::UnknownSpecVersion(_) => {
                Some(attr::SPECVERSION)
            }
            DecodeError::DuplicateHeader { header } => header
                .strip_prefix(CE_PREFIX)
                .or((header == CONTENT_TYPE.as_str()).then_some(attr::DATACONTENTTYPE)),
            DecodeError::Attribute { attribute, .. } => Some(attribute),
            DecodeError::Invalid(e) => e.attribute(),
            DecodeError::Batch { source, .. } => source.attribute(),
            DecodeError::NotCloudEvent { .. }
            | DecodeError::UnsupportedFormat(_)
            | DecodeError::Json(_) => None,
        }
    }

    /// For a batch, the zero-based index of the element at fault.
    pub fn index(&self) -> Option<usize> {
        match self {
            DecodeError::Batch { index, .. } => Some(*index),
            _ => None,
        }
    }

    /// A JSON body for a 400 response: `{"error": message, "attribute"?: name,
    /// "index"?: n}`.
    pub fn to_json_body(&self) -> Bytes {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.to_string().into());
        if let Some(attribute) = self.attribute() {
            body.insert("attribute".into(), attribute.into());
        }
        if let Some(index) = self.index() {
            body.insert("index".into(), index.into());
        }
        Bytes::from(serde_json::Value::Object(body).to_string())
    }
}
