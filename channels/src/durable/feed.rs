//! The consumer side of a backend reader: the records its task hands out, and
//! the acknowledgements going back to the task that sends them (so `ack` stays
//! synchronous). Shared by every channel and cursor that reads in a task.

use tokio::sync::{Mutex, mpsc};

use crate::channel::Record;

/// Records from a reader task, acknowledgements back to it.
#[derive(Debug)]
pub(crate) struct Feed {
    rx: Mutex<mpsc::Receiver<Record>>,
    acks: mpsc::UnboundedSender<u64>,
}

impl Feed {
    /// Reads from `rx`; acks go to `acks`.
    pub(crate) fn new(rx: mpsc::Receiver<Record>, acks: mpsc::UnboundedSender<u64>) -> Feed {
        Feed {
            rx: Mutex::new(rx),
            acks,
        }
    }

    /// The next record; `None` once the task ended.
    pub(crate) async fn recv(&self) -> Option<Record> {
        self.rx.lock().await.recv().await
    }

    /// Acknowledges `position`. If the task is gone, so is its connection, and
    /// the backend gives the record again after a restart (at least once).
    pub(crate) fn ack(&self, position: u64) {
        let _ = self.acks.send(position);
    }
}
