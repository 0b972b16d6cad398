//! The channel backends a scenario runs on: one [`Backend`] value per backend,
//! so an end-to-end scenario is written once and run against each (see
//! `tests/backends.rs` and `tests/isolation.rs`).

use std::time::Duration;

use crate::services::kafka::PrivateKafka;
use crate::services::nats::PrivateNats;
use crate::yaml::{Trigger, kafka_yaml, memory_yaml, nats_yaml};
use crate::{kafka_bootstrap, nats_url};

/// A channel backend of a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The default, channel-based broker on the in-memory channel.
    Memory,
    /// The `Kafka` broker class, on the shared Kafka (`$KAFKA_BOOTSTRAP`).
    Kafka,
    /// The `NatsJetStreamBroker` class, on the shared nats-server (`$NATS_URL`).
    Nats,
}

impl Backend {
    /// The backend's name as ingress' 503 reasons spell it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Kafka => "Kafka",
            Backend::Nats => "NATS",
        }
    }

    /// A broker `broker` on this backend's shared server with `triggers`.
    pub fn broker_yaml(self, broker: &str, triggers: &[Trigger<'_>]) -> String {
        self.broker_yaml_with(broker, "", triggers)
    }

    /// [`Backend::broker_yaml`] with `cm_extra` lines (indented by 2) in a
    /// durable broker's ConfigMap; the in-memory broker has none.
    pub fn broker_yaml_with(
        self,
        broker: &str,
        cm_extra: &str,
        triggers: &[Trigger<'_>],
    ) -> String {
        match self {
            Backend::Memory => {
                assert!(cm_extra.is_empty(), "an in-memory broker has no ConfigMap");
                memory_yaml(broker, "", triggers.iter().copied())
            }
            Backend::Kafka => kafka_yaml(broker, &kafka_bootstrap(), cm_extra, triggers),
            Backend::Nats => nats_yaml(broker, &nats_url(), cm_extra, triggers),
        }
    }

    /// How long a delivery may take on this backend: a durable broker's consumer
    /// joins its group (Kafka) or creates its consumer (NATS) first.
    pub fn wait(self) -> Duration {
        match self {
            Backend::Memory => Duration::from_secs(10),
            Backend::Kafka | Backend::Nats => Duration::from_secs(60),
        }
    }
}

/// A durable backend's server of a test's own, which the test may kill and
/// start again without disturbing the others.
pub enum PrivateServer {
    /// A private Kafka (`scripts/kafka.sh` with its own state).
    Kafka(PrivateKafka),
    /// A private nats-server (its own port and store).
    Nats(PrivateNats),
}

impl PrivateServer {
    /// Starts a private server of `backend` (a durable one), off the async threads.
    pub async fn start(backend: Backend) -> PrivateServer {
        tokio::task::spawn_blocking(move || match backend {
            Backend::Kafka => PrivateServer::Kafka(PrivateKafka::start()),
            Backend::Nats => PrivateServer::Nats(PrivateNats::start()),
            Backend::Memory => panic!("the in-memory channel has no server"),
        })
        .await
        .expect("start the private server")
    }

    /// A broker `broker` on this server with `cm_extra` ConfigMap lines
    /// (indented by 2) and `triggers`.
    pub fn broker_yaml(&self, broker: &str, cm_extra: &str, triggers: &[Trigger<'_>]) -> String {
        match self {
            PrivateServer::Kafka(k) => kafka_yaml(broker, &k.bootstrap, cm_extra, triggers),
            PrivateServer::Nats(n) => nats_yaml(broker, &n.url(), cm_extra, triggers),
        }
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        match self {
            PrivateServer::Kafka(k) => k.kill(),
            PrivateServer::Nats(n) => n.kill(),
        }
    }

    /// Starts the server again on the same port and store, off the async threads.
    pub async fn restart(self) -> PrivateServer {
        tokio::task::spawn_blocking(move || {
            let mut server = self;
            match &mut server {
                PrivateServer::Kafka(k) => k.restart(),
                PrivateServer::Nats(n) => n.launch(),
            }
            server
        })
        .await
        .expect("restart the private server")
    }
}
