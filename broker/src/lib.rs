//! The broker data plane: ingress, per-trigger dispatchers (delivery, retries,
//! dead-letter sink, replies), the broker runtime and config reload.

mod ack;
pub mod broker;
mod channel;
pub mod deliver;
mod fanout;
mod follow;
pub mod ingress;
pub mod limits;
pub mod metrics;
pub mod plan;
pub mod port;
pub mod registry;
pub mod server;
pub mod shared;
mod slots;
pub mod time;
mod trigger;

pub use limits::Limits;
pub use plan::{Plan, PlanOptions};
pub use server::{
    DEFAULT_MAX_CONNECTIONS, Extension, Reload, Server, ServerOptions, StartError, load_plan,
};
