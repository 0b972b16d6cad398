//! Header names and content types of the CloudEvents HTTP binding, shared by the
//! binding (`http`) and its errors (`error`).

/// Prefix of the headers that carry attributes in binary mode.
pub const CE_PREFIX: &str = "ce-";
/// The binary-mode `specversion` header; its presence marks a binary-mode event.
pub const CE_SPECVERSION: &str = "ce-specversion";
/// Content type of a structured-mode JSON event.
pub const CONTENT_TYPE_CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
/// Content type of a batch of JSON events.
pub const CONTENT_TYPE_CLOUDEVENTS_BATCH_JSON: &str = "application/cloudevents-batch+json";
/// Prefix of every structured-mode content type (`+json`, `+avro`, ...).
pub const CONTENT_TYPE_STRUCTURED_PREFIX: &str = "application/cloudevents+";
/// Prefix of every batch-mode content type.
pub const CONTENT_TYPE_BATCH_PREFIX: &str = "application/cloudevents-batch+";
