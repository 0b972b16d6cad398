//! The test kit of the end-to-end suites: cebus started in-process on
//! `127.0.0.1:0` from YAML or as the real binary ([`harness`]), recording HTTP
//! subscribers with scripted answers ([`sink`]), a producer ([`client`]), the
//! Knative YAML of brokers ([`yaml`]) on each channel backend ([`backend`]), the
//! real services they need ([`services`]), test certificates ([`certificates`])
//! and the config barrier of the reload tests ([`barrier`]).
//!
//! The names the suites use are re-exported here.

pub mod backend;
pub mod barrier;
pub mod certificates;
pub mod client;
pub mod harness;
pub mod services;
pub mod sink;
pub mod yaml;

pub use backend::{Backend, PrivateServer};
pub use barrier::{Barrier, barrier_type};
pub use certificates::{make_certificates, nats_mutual_tls_config};
pub use client::{
    READY, github_signature, post, post_binary, post_many, post_until_accepted, request, wait_ready,
};
pub use harness::{Cebus, Proc, cebus_bin, free_addr, init, start_with_sources, unique};
pub use services::kafka::{PrivateKafka, kcat, kcat_consume, kcat_produce};
pub use services::nats::{NatsOperator, PrivateNats};
pub use services::python::cloudevents_python;
pub use services::{kafka_bootstrap, nats_url, run_tool};
pub use sink::{
    DownSink, Received, Reply, Sink, count_id, received_ids, tally, wait_all, wait_for_id,
};
pub use yaml::{Trigger, broker_yaml, kafka_yaml, memory_yaml, nats_yaml};

/// One `#[tokio::test]` per backend for a scenario `async fn scenario(backend:
/// Backend)`: a module named after the scenario holding a test per listed
/// backend, so `cargo test scenario::kafka` runs one, `cargo test kafka` all of
/// a backend's.
///
/// ```ignore
/// per_backend!(retries_then_dead_letters: memory => Memory, kafka => Kafka, nats => Nats);
/// ```
#[macro_export]
macro_rules! per_backend {
    ($scenario:ident: $($test:ident => $backend:ident),+ $(,)?) => {
        mod $scenario {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$scenario($crate::Backend::$backend).await;
                }
            )+
        }
    };
}
