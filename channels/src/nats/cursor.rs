//! A NATS cursor: a trigger's own durable pull consumer on the broker's
//! stream, read by the same fetch loop as the broker's consumer, deleted with
//! the cursor.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use tokio::sync::{Mutex, watch};

use crate::channel::{ChannelError, Record};
use crate::durable::Feed;
use crate::durable::link::unavailable;
use crate::log::CursorReader;

/// How long closing a cursor waits for each of its steps.
const CURSOR_CLOSE_MAX: Duration = Duration::from_secs(10);

/// Deletes consumer `name` of `stream`; one that does not exist is fine.
pub(super) async fn delete_consumer(
    stream: &stream::Stream,
    name: &str,
) -> Result<(), ChannelError> {
    match stream.delete_consumer(name).await {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().to_ascii_lowercase().contains("not found") => Ok(()),
        Err(e) => Err(unavailable(format!(
            "cannot delete NATS consumer {name}: {e}"
        ))),
    }
}

/// A trigger's own reader on NATS (see [`crate::log`]).
pub struct NatsReader {
    pub(super) name: String,
    pub(super) feed: Feed,
    pub(super) close_tx: watch::Sender<bool>,
    pub(super) task: tokio::task::JoinHandle<()>,
    pub(super) acker: tokio::task::JoinHandle<()>,
    pub(super) client: async_nats::Client,
    pub(super) stream: stream::Stream,
    pub(super) consumer: Mutex<jetstream::consumer::PullConsumer>,
}

impl std::fmt::Debug for NatsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsReader")
            .field("consumer", &self.name)
            .finish_non_exhaustive()
    }
}

impl CursorReader for NatsReader {
    async fn recv(&self) -> Option<Record> {
        self.feed.recv().await
    }

    fn ack(&self, position: u64) {
        self.feed.ack(position);
    }

    /// Whether JetStream holds no message delivered to this consumer and not
    /// acknowledged: after a restart, what the previous run had out comes back
    /// only after `ack_wait`, below positions already read.
    async fn settled(&self) -> bool {
        match self.consumer.lock().await.info().await {
            Ok(info) => info.num_ack_pending == 0,
            Err(_) => false,
        }
    }

    async fn close(self, delete: bool) -> Result<(), ChannelError> {
        let _ = self.close_tx.send(true);
        let _ = tokio::time::timeout(CURSOR_CLOSE_MAX, self.task).await;
        // The acker sends what was acknowledged, then ends with its channel.
        drop(self.feed);
        let _ = tokio::time::timeout(CURSOR_CLOSE_MAX, self.acker).await;
        let _ = tokio::time::timeout(CURSOR_CLOSE_MAX, self.client.flush()).await;
        if delete {
            delete_consumer(&self.stream, &self.name).await?;
        }
        Ok(())
    }
}
