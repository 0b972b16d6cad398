//! The in-memory backend: bounded and best-effort, no configuration beyond its
//! capacity, no cursors (every trigger reads the broker's one stream), and the
//! only channel that routes inline (see [`MemoryChannel::append_inline`]).

mod channel;

pub use channel::{DEFAULT_CAPACITY, MemoryChannel};
