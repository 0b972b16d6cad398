//! The broker data plane: ingress, per-trigger dispatchers (delivery, retries,
//! dead-letter sink, replies), the broker runtime and config reload.

mod channel;
pub mod deliver;
mod follow;
pub mod ingress;
pub mod limits;
pub mod metrics;
pub mod plan;
pub mod runtime;
pub mod server;
mod slots;
pub mod time;

pub use limits::Limits;
pub use plan::{Plan, PlanOptions};
pub use server::{
    DEFAULT_MAX_CONNECTIONS, Extension, Reload, Server, ServerOptions, StartError, load_plan,
};
