//! The contiguous commit point of a Kafka partition whose records finish out
//! of order: shared by the Kafka channel and the KafkaSource. Pure.

use std::collections::BTreeSet;

/// The commit point of one partition when records finish out of order: the next
/// offset to consume is the lowest one handed out and not yet finished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitTracker {
    /// Offsets taken and not finished.
    pending: BTreeSet<i64>,
    /// Highest finished offset.
    highest_done: Option<i64>,
    /// The last commit point returned by [`finish`](Self::finish) (or, see
    /// [`from_stored_position`](Self::from_stored_position), the first offset
    /// taken).
    committed: Option<i64>,
    /// Whether the first offset taken counts as committed already.
    first_is_stored: bool,
}

impl CommitTracker {
    /// A tracker that resumes at `next`: everything below it is done except
    /// what is then [`start`](Self::start)ed (records still held elsewhere).
    pub fn resume_from(next: i64) -> CommitTracker {
        CommitTracker {
            pending: BTreeSet::new(),
            highest_done: next.checked_sub(1).filter(|h| *h >= 0),
            committed: None,
            first_is_stored: false,
        }
    }

    /// A tracker for a consumer that reads from its group's stored position
    /// (the KafkaSource): the first offset taken is where the group already
    /// stands, so a commit point equal to it is never reported.
    pub fn from_stored_position() -> CommitTracker {
        CommitTracker {
            first_is_stored: true,
            ..CommitTracker::default()
        }
    }

    /// The record at `offset` was taken from Kafka.
    pub fn start(&mut self, offset: i64) {
        self.pending.insert(offset);
        if self.first_is_stored {
            // Before the first record finishes, the position is that record itself.
            self.committed.get_or_insert(offset);
        }
    }

    /// The record at `offset` is finished; the new commit point (next offset to
    /// consume) when it moved forward. Unknown offsets are ignored.
    pub fn finish(&mut self, offset: i64) -> Option<i64> {
        if !self.pending.remove(&offset) {
            return None;
        }
        self.highest_done = Some(self.highest_done.map_or(offset, |h| h.max(offset)));
        let next = match self.pending.first() {
            Some(&lowest) => lowest,
            None => self.highest_done? + 1,
        };
        if self.committed.is_some_and(|c| c >= next) {
            return None;
        }
        self.committed = Some(next);
        Some(next)
    }

    /// Records taken and not finished.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_point_is_contiguous() {
        let mut t = CommitTracker::default();
        for o in 10..15 {
            t.start(o);
        }
        assert_eq!(
            t.finish(11),
            Some(10),
            "10 is still pending: the point stays there"
        );
        assert_eq!(t.finish(10), Some(12));
        assert_eq!(t.finish(14), None);
        assert_eq!(t.finish(12), Some(13));
        assert_eq!(t.finish(13), Some(15));
        assert_eq!(t.finish(13), None, "finishing twice is ignored");
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn from_the_stored_position_the_commit_point_is_contiguous() {
        // (offsets started, then finished one by one, with the commit point expected
        // after each finish)
        type Case = (&'static [i64], &'static [(i64, Option<i64>)]);
        let cases: &[Case] = &[
            // In order: every finish moves the commit point.
            (&[5, 6, 7], &[(5, Some(6)), (6, Some(7)), (7, Some(8))]),
            // Out of order: nothing until the lowest finishes, then past all done.
            (&[5, 6, 7], &[(7, None), (6, None), (5, Some(8))]),
            (&[5, 6, 7], &[(6, None), (5, Some(7)), (7, Some(8))]),
            // Unknown or repeated offsets change nothing.
            (&[1, 2], &[(9, None), (1, Some(2)), (1, None), (2, Some(3))]),
            // Gaps in offsets (compacted topics, transactions) are fine.
            (&[10, 20, 30], &[(20, None), (10, Some(30)), (30, Some(31))]),
        ];
        for (started, finishes) in cases {
            let mut t = CommitTracker::from_stored_position();
            for o in *started {
                t.start(*o);
            }
            for (o, want) in *finishes {
                assert_eq!(t.finish(*o), *want, "{started:?} {finishes:?} at {o}");
            }
        }
        // Records keep arriving while earlier ones are in flight.
        let mut t = CommitTracker::from_stored_position();
        t.start(0);
        t.start(1);
        assert_eq!(t.finish(1), None);
        t.start(2);
        assert_eq!(t.finish(0), Some(2));
        assert_eq!(t.finish(2), Some(3));
    }
}
