//! cebus on Kubernetes: the CustomResourceDefinitions of Knative's kinds, generated
//! from the `api` types (`crd`), their schemas (`schema`) and the status shapes
//! cebus writes (`status`); the operator's `ref` resolution (`address`).

pub mod address;
pub mod crd;
pub mod error;
pub mod schema;
pub mod status;

pub use crd::{CrdFile, crd_files, crds, stale_files, write_files};
pub use error::KubeError;
