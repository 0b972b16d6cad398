//! The one place that names the channel backends: the dispatch enums the
//! broker holds ([`AnyChannel`], [`AnyReader`]). Everything else — ingress,
//! fan-out, cursors, delivery — sees only the [`Channel`] and [`Log`] traits,
//! so adding a backend is its folder plus a line in [`backends!`] here.

use std::sync::Arc;

use crate::channel::{Channel, ChannelError, Envelope, Record};
use crate::kafka::{KafkaChannel, KafkaReader};
use crate::log::{Cursor, CursorReader, CursorStart, Log, NoCursor};
use crate::memory::MemoryChannel;
use crate::nats::{NatsChannel, NatsReader};

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
