//! The one place that names the channel backends: what a broker's channel is
//! configured with ([`ChannelConfig`]), how it is opened ([`open`]), and the
//! dispatch enums the broker holds ([`AnyChannel`], [`AnyReader`]). Everything
//! else — ingress, fan-out, cursors, delivery — sees only the [`Channel`] and
//! [`Log`] traits, so adding a backend is its folder, a variant of
//! [`ChannelConfig`] and a line in `backends!` here.

use std::sync::Arc;

use cebus_api::{KafkaBrokerConfig, NatsBrokerConfig};

use crate::channel::{Channel, ChannelError, Envelope, Record};
use crate::kafka::{KafkaChannel, KafkaReader, KafkaSettings};
use crate::log::{Cursor, CursorReader, CursorStart, Log, NoCursor};
use crate::memory::MemoryChannel;
use crate::nats::{NatsChannel, NatsReader, NatsSettings};

/// The channel a broker runs on, from its class and ConfigMap (or its channel
/// template), with the backend's configuration as the api parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelConfig {
    /// `MTChannelBasedBroker` without a template or with an `InMemoryChannel`
    /// one: the bounded in-memory channel.
    Memory,
    /// `NatsJetStreamBroker` (settings from its ConfigMap), or an
    /// `MTChannelBasedBroker` with a `NatsJetStreamChannel` template: a JetStream
    /// stream (`maxMessageSize` defaulted to the broker's max event size).
    Nats(NatsBrokerConfig),
    /// `Kafka` (settings from its ConfigMap), or an `MTChannelBasedBroker` with a
    /// `KafkaChannel` template (topic `knative-messaging-kafka.<ns>.<channel>`):
    /// a topic per broker.
    Kafka(KafkaBrokerConfig),
}

/// Whose channel it is and the limits its broker sets.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// The broker's namespace.
    pub namespace: &'a str,
    /// The broker's name.
    pub broker: &'a str,
    /// Records stored (memory) or handed out (durable logs) and not yet
    /// delivered everywhere, at most.
    pub window: usize,
    /// The broker's largest event, in bytes.
    pub max_event_size: usize,
    /// Hop budget of a record another producer stored without one.
    pub default_ttl: u32,
}

/// Opens the channel `config` describes for the broker at `at`. A durable
/// channel connects in the background; until it is ready, appends fail as
/// unavailable (ingress answers 503). Call inside a tokio runtime.
pub fn open(config: &ChannelConfig, at: &Placement<'_>) -> AnyChannel {
    match config {
        ChannelConfig::Memory => AnyChannel::Memory(Arc::new(MemoryChannel::new(at.window))),
        ChannelConfig::Nats(n) => {
            let mut s = NatsSettings::new(n.clone(), at.namespace, at.broker);
            s.window = at.window;
            s.default_ttl = at.default_ttl;
            AnyChannel::Nats(Arc::new(NatsChannel::connect(s)))
        }
        ChannelConfig::Kafka(k) => {
            let mut s = KafkaSettings::from_config(k, at.namespace, at.broker);
            s.max_message_bytes = at.max_event_size;
            s.window = at.window;
            s.default_ttl = at.default_ttl;
            AnyChannel::Kafka(Arc::new(KafkaChannel::connect(s)))
        }
    }
}

/// Declares the dispatch enums from one list of backends, `Variant(channel
/// type, reader type)`, and `dispatch!`, which forwards a call to whichever
/// variant a value is. (`$d` is a `$` passed in, for the inner macro's own
/// variables.)
macro_rules! backends {
    ($d:tt $($variant:ident($channel:ty, $reader:ty)),+ $(,)?) => {
        /// Enum dispatch over the backends, so brokers hold one concrete type.
        #[derive(Debug, Clone)]
        pub enum AnyChannel {
            $(
                #[doc = concat!("A `", stringify!($channel), "`.")]
                $variant(Arc<$channel>),
            )+
        }

        /// The cursor reader of any backend.
        #[derive(Debug)]
        pub enum AnyReader {
            $(
                #[doc = concat!("A `", stringify!($reader), "`.")]
                $variant($reader),
            )+
        }

        $(
            impl From<$reader> for AnyReader {
                fn from(reader: $reader) -> AnyReader {
                    AnyReader::$variant(reader)
                }
            }
        )+

        macro_rules! dispatch {
            ($d value:expr, $d kind:ident, $d x:ident => $d call:expr) => {
                match $d value {
                    $($d kind::$variant($d x) => $d call,)+
                }
            };
        }
    };
}

backends! { $
    Memory(MemoryChannel, NoCursor),
    Nats(NatsChannel, Box<NatsReader>),
    Kafka(KafkaChannel, KafkaReader),
}

// === impl AnyChannel ===

impl Channel for AnyChannel {
    async fn append(&self, batch: Vec<Envelope>) -> Result<(), ChannelError> {
        dispatch!(self, AnyChannel, c => c.append(batch).await)
    }

    async fn recv(&self) -> Option<Record> {
        dispatch!(self, AnyChannel, c => c.recv().await)
    }

    fn ack(&self, offset: u64) {
        dispatch!(self, AnyChannel, c => c.ack(offset))
    }

    fn close(&self) {
        dispatch!(self, AnyChannel, c => c.close())
    }

    fn pending(&self) -> usize {
        dispatch!(self, AnyChannel, c => c.pending())
    }

    fn try_append_inline(
        &self,
        batch: Vec<Envelope>,
        route: &mut dyn FnMut(Record),
    ) -> Result<Result<(), ChannelError>, Vec<Envelope>> {
        dispatch!(self, AnyChannel, c => c.try_append_inline(batch, route))
    }
}

impl Log for AnyChannel {
    type Reader = AnyReader;

    fn has_cursors(&self) -> bool {
        dispatch!(self, AnyChannel, c => c.has_cursors())
    }

    async fn stored_cursors(&self) -> Result<Vec<String>, ChannelError> {
        dispatch!(self, AnyChannel, c => c.stored_cursors().await)
    }

    async fn open_cursor(
        &self,
        name: &str,
        start: Option<CursorStart>,
        window: usize,
    ) -> Result<Cursor<AnyReader>, ChannelError> {
        dispatch!(self, AnyChannel, c => Ok(c.open_cursor(name, start, window).await?.map(Into::into)))
    }

    async fn delete_cursor(&self, name: &str) -> Result<(), ChannelError> {
        dispatch!(self, AnyChannel, c => c.delete_cursor(name).await)
    }
}

// === impl AnyReader ===

impl CursorReader for AnyReader {
    async fn recv(&self) -> Option<Record> {
        dispatch!(self, AnyReader, r => r.recv().await)
    }

    fn ack(&self, position: u64) {
        dispatch!(self, AnyReader, r => r.ack(position))
    }

    async fn settled(&self) -> bool {
        dispatch!(self, AnyReader, r => r.settled().await)
    }

    async fn close(self, delete: bool) -> Result<(), ChannelError> {
        dispatch!(self, AnyReader, r => r.close(delete).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(window: usize) -> Placement<'static> {
        Placement {
            namespace: "ns",
            broker: "b",
            window,
            max_event_size: 1024,
            default_ttl: 255,
        }
    }

    #[tokio::test]
    async fn a_memory_channel_routes_inline_and_keeps_no_cursors() {
        let c = open(&ChannelConfig::Memory, &at(2));
        assert!(!c.has_cursors());
        assert_eq!(c.stored_cursors().await.unwrap(), Vec::<String>::new());
        assert!(c.open_cursor("t", None, 1).await.is_err());
        let batch = vec![Envelope::new(cebus_events::Event::with_required(
            "1", "/s", "t",
        ))];
        let mut routed = Vec::new();
        let stored = c.try_append_inline(batch, &mut |r| routed.push(r.offset));
        assert_eq!(stored, Ok(Ok(())));
        assert_eq!(routed, [0]);
        assert_eq!(c.pending(), 1, "the window counts it until acked");
    }
}
