//! The contiguous commit point of a Kafka partition whose records finish out
//! of order: shared by the Kafka channel and the KafkaSource. Pure.

use std::collections::BTreeSet;

/// The commit point of one partition when records finish out of order: the next
/// offset to consume is the lowest one handed out and not yet finished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitTracker {
    pending: BTreeSet<i64>,
    highest_done: Option<i64>,
    committed: Option<i64>,
}

impl CommitTracker {
    /// A tracker that resumes at `next`: everything below it is done except
    /// what is then [`start`](Self::start)ed (records still held elsewhere).
    pub fn resume_from(next: i64) -> CommitTracker {
        CommitTracker {
            pending: BTreeSet::new(),
            highest_done: next.checked_sub(1).filter(|h| *h >= 0),
            committed: None,
        }
    }

    /// The record at `offset` was taken from Kafka.
    pub fn start(&mut self, offset: i64) {
        self.pending.insert(offset);
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
}
