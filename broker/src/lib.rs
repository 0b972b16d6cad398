//! The broker data plane, by stage: ingress, registry (brokers by key), broker
//! (ingest and the in-memory channel's inline fan-out), fanout (the loop that
//! reads a channel), follow (triggers that leave it for a cursor), trigger
//! (slots, ordered lanes), ack, deliver (attempts, retries, dead-letter sink,
//! replies, the connection pool) and the port through which replies and
//! sources hand events in; plus the plan, the control side (config sources,
//! admission, reload) and the server.

mod ack;
pub mod broker;
mod channel;
pub mod control;
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
#[cfg(test)]
mod testkit;
pub mod time;
mod trigger;

pub use control::{ConfigSource, Extension, FileSource, Reload, load_plan};
pub use limits::Limits;
pub use plan::{Plan, PlanOptions};
pub use server::{DEFAULT_MAX_CONNECTIONS, Server, ServerOptions, StartError};
