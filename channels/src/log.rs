//! The log side of a channel and its per-trigger cursors: a private reader of a durable channel for one trigger
//! that fell behind, so that it never holds back the broker's other triggers
//! (docs/architecture.md, "Triggers that fall behind"). The broker's shared
//! reader serves every trigger that keeps up; a cursor exists only while its
//! trigger lags, and its position is stored in the backend so a restart resumes
//! it.

use std::collections::BTreeMap;

use crate::channel::{Channel, ChannelError, Record};

/// Where a new cursor starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CursorStart {
    /// Per lane, the position ([`Record::offset`]) of the first record the cursor
    /// reads. Lanes not listed start where the broker's shared reader starts
    /// them (its stored position).
    pub read: BTreeMap<u32, u64>,
    /// (lane, position) of records below `read` that are still being delivered:
    /// the shared reader handed them to the trigger before the cursor took over.
    /// Each is acknowledged on the cursor when done.
    pub held: Vec<(u32, u64)>,
}

impl CursorStart {
    /// The position stored for each lane of `read`: the lowest record not done,
    /// i.e. the lowest held position of the lane, else its read position. A crash
    /// before the held records finish redelivers them (at-least-once).
    pub fn resume_points(&self) -> BTreeMap<u32, u64> {
        let mut points = self.read.clone();
        for &(lane, pos) in &self.held {
            points
                .entry(lane)
                .and_modify(|p| *p = (*p).min(pos))
                .or_insert(pos);
        }
        points
    }
}

/// A cursor's reader: what a durable backend implements for [`Cursor`].
pub trait CursorReader: Send + Sync {
    /// The next record, in order per lane; `None` once closed.
    fn recv(&self) -> impl Future<Output = Option<Record>> + Send;

    /// The record at `position` (read by this cursor, or held when it started)
    /// is delivered or dead-lettered.
    fn ack(&self, position: u64);

    /// Whether every record the backend has given out was acknowledged, so
    /// none can come back below the positions read. A backend that rereads in
    /// order (Kafka) is always settled.
    fn settled(&self) -> impl Future<Output = bool> + Send {
        async { true }
    }

    /// Stores the position reached and stops; with `delete`, then forgets the
    /// cursor.
    fn close(self, delete: bool) -> impl Future<Output = Result<(), ChannelError>> + Send;
}

/// A boxed reader reads as the reader it holds (a large reader is boxed in
/// the dispatch enum).
impl<R: CursorReader> CursorReader for Box<R> {
    fn recv(&self) -> impl Future<Output = Option<Record>> + Send {
        (**self).recv()
    }

    fn ack(&self, position: u64) {
        (**self).ack(position);
    }

    fn settled(&self) -> impl Future<Output = bool> + Send {
        (**self).settled()
    }

    fn close(self, delete: bool) -> impl Future<Output = Result<(), ChannelError>> + Send {
        (*self).close(delete)
    }
}

/// A channel that is a log its triggers can read again from a position: the
/// per-trigger cursors (see the module docs). A channel without them (the
/// in-memory one) keeps the defaults: nothing stored, none opened.
pub trait Log: Channel {
    /// The reader of this log's cursors.
    type Reader: CursorReader;

    /// Whether the backend keeps per-trigger cursors. Without them a trigger is
    /// always fed by the broker's shared reader.
    fn has_cursors(&self) -> bool {
        false
    }

    /// Names of the cursors an earlier run stored and did not delete: triggers
    /// that were reading on their own when it stopped.
    fn stored_cursors(&self) -> impl Future<Output = Result<Vec<String>, ChannelError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// Opens cursor `name`: at `start` (stored durably before this returns), or
    /// where it was stored (`None`). At most `window` records (held ones
    /// included) are out unacknowledged.
    fn open_cursor(
        &self,
        name: &str,
        start: Option<CursorStart>,
        window: usize,
    ) -> impl Future<Output = Result<Cursor<Self::Reader>, ChannelError>> + Send {
        let _ = (name, start, window);
        async {
            Err(ChannelError::Unavailable {
                reason: "this channel keeps no per-trigger cursors".to_owned(),
            })
        }
    }

    /// Forgets cursor `name` (its trigger was removed).
    fn delete_cursor(&self, name: &str) -> impl Future<Output = Result<(), ChannelError>> + Send {
        let _ = name;
        async { Ok(()) }
    }
}

/// The reader of a log without cursors: there is none.
#[derive(Debug)]
pub enum NoCursor {}

impl CursorReader for NoCursor {
    async fn recv(&self) -> Option<Record> {
        match *self {}
    }

    fn ack(&self, _position: u64) {
        match *self {}
    }

    async fn close(self, _delete: bool) -> Result<(), ChannelError> {
        match self {}
    }
}

/// An open cursor (see the module docs): where it started, and its reader.
#[derive(Debug)]
pub struct Cursor<R> {
    start: BTreeMap<u32, u64>,
    shared_start: BTreeMap<u32, u64>,
    reader: R,
}

impl<R> Cursor<R> {
    /// A cursor reading with `reader` from `start`, opened while the shared
    /// reader stood at `shared_start` (both per lane).
    pub fn new(start: BTreeMap<u32, u64>, shared_start: BTreeMap<u32, u64>, reader: R) -> Self {
        Cursor {
            start,
            shared_start,
            reader,
        }
    }

    /// The same cursor with its reader wrapped by `f` (into a dispatch enum).
    pub fn map<S>(self, f: impl FnOnce(R) -> S) -> Cursor<S> {
        Cursor {
            start: self.start,
            shared_start: self.shared_start,
            reader: f(self.reader),
        }
    }

    /// Per lane, the position of the first record this cursor reads: every lane
    /// of the channel is listed.
    pub fn start(&self) -> &BTreeMap<u32, u64> {
        &self.start
    }

    /// Per lane, where the broker's shared reader stood when the cursor opened,
    /// as stored: where it starts a lane it has not read yet. A trigger may only
    /// rejoin the shared reader once its cursor has reached that position.
    pub fn shared_start(&self) -> &BTreeMap<u32, u64> {
        &self.shared_start
    }
}

impl<R: CursorReader> Cursor<R> {
    /// The next record, in order per lane; `None` once closed.
    pub async fn recv(&self) -> Option<Record> {
        self.reader.recv().await
    }

    /// The record at `position` (read by this cursor, or held when it started)
    /// is delivered or dead-lettered.
    pub fn ack(&self, position: u64) {
        self.reader.ack(position);
    }

    /// Whether every record the cursor's backend has given out was
    /// acknowledged, so none can come back below the positions read (NATS
    /// redelivers a previous run's unacknowledged messages after `ack_wait`;
    /// Kafka rereads in order, so it is always settled). A trigger rejoins the
    /// shared reader only from a settled cursor.
    pub async fn settled(&self) -> bool {
        self.reader.settled().await
    }

    /// Stores the position reached (the lowest record not acknowledged) and
    /// stops; with `delete`, then forgets the cursor (its trigger caught up or was
    /// removed).
    pub async fn close(self, delete: bool) -> Result<(), ChannelError> {
        self.reader.close(delete).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_point_is_the_lowest_held_or_the_read_position() {
        let start = CursorStart {
            read: BTreeMap::from([(0, 100), (1, 50), (2, 7)]),
            held: vec![(0, 90), (0, 95), (1, 60), (3, 4)],
        };
        let want = BTreeMap::from([(0, 90), (1, 50), (2, 7), (3, 4)]);
        assert_eq!(start.resume_points(), want);
        assert_eq!(CursorStart::default().resume_points(), BTreeMap::new());
    }
}
