//! `ConfigError`, the one error shape of loading and validation: file, object, field
//! path and message, and the field-path notation both share.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in the configuration, located as precisely as known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// Index of the document in the file (0-based, counting non-empty documents),
    /// when the problem belongs to one document.
    pub doc: Option<usize>,
    /// The object, as `Kind namespace/name` (e.g. `Trigger default/orders`).
    pub object: Option<String>,
    /// Field path inside the object, e.g. `spec.filters[0].exact.type`.
    pub field: Option<String>,
    /// What is wrong (and, where it helps, what would be right).
    pub message: String,
}

impl ConfigError {
    /// An error about a whole file.
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            doc: None,
            object: None,
            field: None,
            message: message.into(),
        }
    }

    /// Sets the document index.
    pub fn with_doc(mut self, doc: usize) -> Self {
        self.doc = Some(doc);
        self
    }

    /// Sets the object label (`Kind namespace/name`).
    pub fn with_object(mut self, object: Option<String>) -> Self {
        self.object = object;
        self
    }

    /// Sets the field path; an empty path means the whole object.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = (!field.is_empty()).then_some(field);
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        match (&self.object, self.doc) {
            (Some(object), _) => write!(f, ": {object}")?,
            // Without a name the document number is the only way to find the object.
            (None, Some(doc)) => write!(f, ": document {}", doc + 1)?,
            (None, None) => {}
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// `Kind namespace/name`, the label errors use for an object.
pub fn object_label(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind} {namespace}/{name}")
}

/// A field path under construction: `spec.filters[0].exact.type`. Map keys that are
/// not plain identifiers (annotation names, empty keys) are quoted:
/// `metadata.annotations["cebus.dev/broker-ttl"]`, `exact[""]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    /// The empty path (the object itself).
    pub fn root() -> Self {
        FieldPath(String::new())
    }

    /// This path extended by a map key or struct field.
    pub fn key(&self, key: &str) -> Self {
        let mut s = self.0.clone();
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if plain {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(key);
        } else {
            s.push('[');
            s.push_str(&serde_json::Value::String(key.to_owned()).to_string());
            s.push(']');
        }
        FieldPath(s)
    }

    /// This path extended by a sequence index.
    pub fn index(&self, index: usize) -> Self {
        FieldPath(format!("{}[{index}]", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Converts a `serde_path_to_error` path to this notation.
    pub(crate) fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        path.iter().fold(FieldPath::root(), |acc, seg| match seg {
            Segment::Seq { index } => acc.index(*index),
            Segment::Map { key } => acc.key(key),
            Segment::Enum { variant } => acc.key(variant),
            Segment::Unknown => acc.key("?"),
        })
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<FieldPath> for String {
    fn from(p: FieldPath) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_path_notation() {
        let p = FieldPath::root().key("spec").key("filters").index(0);
        assert_eq!(
            p.key("exact").key("type").as_str(),
            "spec.filters[0].exact.type"
        );
        assert_eq!(
            p.key("exact").key("").as_str(),
            "spec.filters[0].exact[\"\"]"
        );
        assert_eq!(
            FieldPath::root()
                .key("metadata")
                .key("annotations")
                .key("cebus.dev/broker-ttl")
                .as_str(),
            "metadata.annotations[\"cebus.dev/broker-ttl\"]"
        );
    }

    #[test]
    fn display_omits_absent_parts() {
        let base = ConfigError::file(Path::new("a.yaml"), "boom");
        assert_eq!(base.to_string(), "a.yaml: boom");
        assert_eq!(
            base.clone().with_doc(1).to_string(),
            "a.yaml: document 2: boom"
        );
        let full = base
            .with_doc(0)
            .with_object(Some(object_label("Trigger", "default", "orders")))
            .with_field("spec.broker");
        assert_eq!(
            full.to_string(),
            "a.yaml: Trigger default/orders: spec.broker: boom"
        );
    }
}
