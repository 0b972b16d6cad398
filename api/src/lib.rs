//! Knative's resource model (Broker, Trigger, ConfigMap), its loading from YAML,
//! validation and defaults. Pure: no I/O beyond what the caller hands in.

pub mod types;

pub use types::*;
