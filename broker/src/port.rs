//! The port through which events enter a broker of this process from inside
//! it: subscribers' replies (delivery) and sources. It is backed by the
//! registry's table of running brokers and looks the broker up by name on
//! every send, so neither a delivery nor a source holds a reference into a
//! running broker; a broker that was replaced or removed is simply found anew,
//! or not at all.

use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;

use cebus_channels::ChannelError;
use cebus_events::Event;

/// Why ingest refused events.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// `knativebrokerttl` unparsable or exhausted, for the event at `index`.
    #[error("event {index}: {message}")]
    Ttl {
        /// Position in the batch.
        index: usize,
        /// What was wrong.
        message: String,
    },
    /// The channel refused the batch.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// No broker of that name runs in this process (never configured, removed,
    /// or the process is shutting down).
    #[error("broker {namespace}/{name} is not running")]
    NotRunning {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

/// One validated event on its way into a broker.
#[derive(Debug)]
pub struct Incoming {
    /// The event, without `knativebrokerttl`.
    pub event: Event,
    /// The `knativebrokerttl` it arrived with, if any.
    pub ttl: Option<String>,
    /// Headers to forward to subscribers.
    pub headers: Vec<(String, String)>,
}

/// The boxed future an [`Inlet`] answers with.
pub(crate) type Ingesting<'a> = Pin<Box<dyn Future<Output = Result<(), IngestError>> + Send + 'a>>;

/// What a [`Port`] hands events to: the registry's table of running brokers.
/// A trait so that delivery, which sends replies through the port, does not
/// depend on the broker that runs it.
pub(crate) trait Inlet: Send + Sync + std::fmt::Debug {
    /// Stores `events` in the broker `namespace/name`, as the broker's ingest does.
    fn ingest<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        events: Vec<Incoming>,
    ) -> Ingesting<'a>;
}

/// Hands events to the brokers of this process by name (see the module docs).
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Port {
    // Weak: the brokers' deliveries hold the port, and the table holds the
    // brokers; a strong reference would keep a dropped registry alive.
    inlet: Weak<dyn Inlet>,
}

impl Port {
    /// A port onto `inlet`.
    pub(crate) fn new(inlet: Weak<dyn Inlet>) -> Port {
        Port { inlet }
    }

    /// Validated events into the broker `namespace/name`, stored or refused as
    /// a whole (as `BrokerRuntime::ingest` does).
    pub async fn send(
        &self,
        namespace: &str,
        name: &str,
        events: Vec<Incoming>,
    ) -> Result<(), IngestError> {
        let Some(inlet) = self.inlet.upgrade() else {
            return Err(IngestError::NotRunning {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            });
        };
        inlet.ingest(namespace, name, events).await
    }
}

/// A port onto a recording inlet, for the stages' tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex, Weak};

    use super::{Incoming, IngestError, Ingesting, Inlet, Port};

    /// One send a [`Recorder`] received.
    #[derive(Debug)]
    pub(crate) struct Sent {
        /// `namespace/name` it was sent to.
        pub(crate) to: String,
        /// The events.
        pub(crate) events: Vec<Incoming>,
    }

    /// An inlet that records what it is sent and answers with `answer`.
    #[derive(Debug)]
    pub(crate) struct Recorder {
        pub(crate) sent: Mutex<Vec<Sent>>,
        answer: fn() -> Result<(), IngestError>,
    }

    impl Recorder {
        /// A recorder answering every send with `answer()`, and a port onto it.
        pub(crate) fn port(answer: fn() -> Result<(), IngestError>) -> (Arc<Recorder>, Port) {
            let recorder = Arc::new(Recorder {
                sent: Mutex::new(Vec::new()),
                answer,
            });
            let inlet: Weak<dyn Inlet> = Arc::<Recorder>::downgrade(&recorder);
            (recorder, Port::new(inlet))
        }
    }

    impl Inlet for Recorder {
        fn ingest<'a>(
            &'a self,
            namespace: &'a str,
            name: &'a str,
            events: Vec<Incoming>,
        ) -> Ingesting<'a> {
            self.sent.lock().expect("recorder lock").push(Sent {
                to: format!("{namespace}/{name}"),
                events,
            });
            let answer = (self.answer)();
            Box::pin(async move { answer })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Recorder;
    use super::*;

    fn incoming(id: &str) -> Incoming {
        Incoming {
            event: Event::with_required(id, "/test", "test.event"),
            ttl: None,
            headers: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_send_reaches_the_inlet_with_the_broker_it_names() {
        let (recorder, port) = Recorder::port(|| Ok(()));
        port.send("team", "default", vec![incoming("a"), incoming("b")])
            .await
            .expect("stored");
        let sent = recorder.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, "team/default");
        let ids: Vec<_> = sent[0].events.iter().map(|i| i.event.id()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[tokio::test]
    async fn the_inlet_answer_is_the_senders() {
        let (_recorder, port) = Recorder::port(|| Err(ChannelError::Closed.into()));
        let err = port.send("team", "default", vec![incoming("a")]).await;
        assert!(matches!(
            err,
            Err(IngestError::Channel(ChannelError::Closed))
        ));
    }

    #[tokio::test]
    async fn without_its_registry_a_port_finds_no_broker() {
        let (recorder, port) = Recorder::port(|| Ok(()));
        drop(recorder);
        match port.send("team", "default", vec![incoming("a")]).await {
            Err(e @ IngestError::NotRunning { .. }) => {
                assert_eq!(e.to_string(), "broker team/default is not running");
            }
            other => panic!("expected NotRunning, got {other:?}"),
        }
    }
}
