//! `KubeError`, the one error type of the Kubernetes crate.

use std::path::PathBuf;

/// What went wrong generating, writing or checking the CRDs.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// A generated schema did not fit Kubernetes' `JSONSchemaProps`.
    #[error("the schema of {type_name} is not a valid CRD schema: {source}")]
    Schema {
        /// The Rust type whose schema failed.
        type_name: String,
        /// Why it did not deserialize.
        source: serde_json::Error,
    },
    /// A CRD could not be written as YAML.
    #[error("writing the CRD {name} as YAML: {message}")]
    Yaml {
        /// The CRD's name.
        name: String,
        /// The serializer's message.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
