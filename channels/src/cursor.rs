//! Per-trigger cursors: a private reader of a durable channel for one trigger
//! that fell behind, so that it never holds back the broker's other triggers
//! (docs/architecture.md, "Triggers that fall behind"). The broker's shared
//! reader serves every trigger that keeps up; a cursor exists only while its
//! trigger lags, and its position is stored in the backend so a restart resumes
//! it.

use std::collections::BTreeMap;

use crate::{ChannelError, Record};

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

/// An open cursor (see the module docs).
#[derive(Debug)]
pub struct Cursor {
    pub(crate) start: BTreeMap<u32, u64>,
    pub(crate) shared_start: BTreeMap<u32, u64>,
    pub(crate) inner: Inner,
}

#[derive(Debug)]
pub(crate) enum Inner {
    Kafka(crate::kafka::KafkaCursor),
    Nats(Box<crate::nats::NatsCursor>),
}

impl Cursor {
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

    /// The next record, in order per lane; `None` once closed.
    pub async fn recv(&self) -> Option<Record> {
        match &self.inner {
            Inner::Kafka(c) => c.recv().await,
            Inner::Nats(c) => c.recv().await,
        }
    }

    /// The record at `position` (read by this cursor, or held when it started)
    /// is delivered or dead-lettered.
    pub fn ack(&self, position: u64) {
        match &self.inner {
            Inner::Kafka(c) => c.ack(position),
            Inner::Nats(c) => c.ack(position),
        }
    }

    /// Whether every record the cursor's backend has given out was
    /// acknowledged, so none can come back below the positions read (NATS
    /// redelivers a previous run's unacknowledged messages after `ack_wait`;
    /// Kafka rereads in order, so it is always settled). A trigger rejoins the
    /// shared reader only from a settled cursor.
    pub async fn settled(&self) -> bool {
        match &self.inner {
            Inner::Kafka(_) => true,
            Inner::Nats(c) => c.settled().await,
        }
    }

    /// Stores the position reached (the lowest record not acknowledged) and
    /// stops; with `delete`, then forgets the cursor (its trigger caught up or was
    /// removed).
    pub async fn close(self, delete: bool) -> Result<(), ChannelError> {
        match self.inner {
            Inner::Kafka(c) => c.close(delete).await,
            Inner::Nats(c) => c.close(delete).await,
        }
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
