//! cebus on Kubernetes: the CustomResourceDefinitions of Knative's kinds, generated
//! from the `api` types (`crd`), their schemas (`schema`) and the status shapes
//! cebus writes (`status`); the operator: the API as a config source (`source`,
//! `watch`, `snapshot`), `ref` resolution (`address`) and status (`report`).

pub mod address;
pub mod crd;
pub mod error;
pub mod report;
pub mod schema;
pub mod snapshot;
pub mod source;
pub mod status;
pub mod watch;

pub use crd::{CrdFile, crd_files, crds, stale_files, write_files};
pub use error::KubeError;
pub use source::{KubeOptions, KubeSource};
