//! Trigger logic with no I/O: compiled trigger filters and the delivery policy
//! maths (retries, backoff, `Retry-After`, dead-letter events, replies, TTL).
//!
//! Everything here is a pure function of its inputs; time is always a parameter.
//! The broker's dispatcher loops, awaits and sends around these decisions.

pub mod cesql;
pub mod delivery;
pub mod explain;
pub mod filter;
pub mod matcher;

pub use delivery::{
    AttemptOutcome, DEFAULT_BACKOFF_DELAY, DEFAULT_RETRY, DeliveryPolicy, ERROR_DATA_MAX_BYTES,
    MAX_DELAY, ReplyDecision, RetryAfter, backoff, classify_reply, dead_letter_event, is_retryable,
    merge, next_delay, parse_retry_after, ttl_on_ingress,
};
pub use explain::{Mismatch, explain};
pub use filter::Filter;
pub use matcher::Matcher;

/// Everything that can go wrong in this crate. Each variant says what was wrong
/// and where, so it can be shown to the user who wrote the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A trigger filter that cannot be compiled (the api validator should have
    /// rejected it first; compile checks again rather than panic).
    #[error("invalid filter at {path}: {reason}")]
    InvalidFilter {
        /// Where in the trigger spec, e.g. `filters[0].any[1].exact["type"]`.
        path: String,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// A `delivery` duration that is not a usable ISO-8601 duration.
    #[error("invalid delivery.{field}: {reason}")]
    InvalidDuration {
        /// The DeliverySpec field (`backoffDelay`, `timeout`, `retryAfterMax`).
        field: &'static str,
        /// The value as written.
        value: String,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// A negative `delivery.retry`.
    #[error("invalid delivery.retry {value}: must be 0 or more (extra attempts after the first)")]
    InvalidRetry {
        /// The value as written.
        value: i32,
    },
    /// `knativebrokerttl` is present but is not an integer.
    #[error("invalid knativebrokerttl {value:?}: expected an integer")]
    InvalidTtl {
        /// The attribute value as received.
        value: String,
    },
    /// The event has used up its broker hops (a loop, most likely).
    #[error("knativebrokerttl exhausted: received {received}, no hops left")]
    TtlExhausted {
        /// The TTL the event arrived with (or the broker maximum when absent).
        received: i64,
    },
}
