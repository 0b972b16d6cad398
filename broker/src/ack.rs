//! Acknowledgements: a channel record is acknowledged once every matching
//! trigger is done with it ([`AckTracker`]), and each piece of work a trigger
//! has out carries its share of that ([`Ack`]), given when dropped.
//!
//! On a durable channel a trigger's shares go through [`Held`]: each is a
//! share of a shared record (acknowledged on the broker's channel once every
//! matching trigger is done) or of a cursor record (acknowledged on the
//! cursor). When the trigger detaches (`follow.rs`), its shared shares
//! are released at once — the window of the shared reader is freed — and
//! handed to the cursor, whose stored position stays below them until they are
//! done.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cebus_channels::{AnyChannel, Channel, Cursor, CursorStart};
use tokio::sync::Notify;

// === impl Ack, AckTracker ===

/// This trigger's share of a record's acknowledgement, given when dropped: after
/// the delivery finished, when the trigger is gone, and even if a delivery task
/// panicked — so channel capacity can never leak.
#[derive(Debug)]
pub(crate) enum Ack {
    /// Straight to the record's tracker (channels without cursors).
    Plain(Arc<AckTracker>),
    /// Through the trigger's shares, which know whether the shared reader or
    /// the trigger's cursor now answers for the record.
    Held(Arc<Held>, u64),
}

impl Drop for Ack {
    fn drop(&mut self) {
        match self {
            Ack::Plain(tracker) => tracker.done(),
            Ack::Held(held, id) => held.finish(*id),
        }
    }
}

/// Acknowledges a channel record once every matching trigger is done with it.
#[derive(Debug)]
pub(crate) struct AckTracker {
    remaining: AtomicUsize,
    offset: u64,
    channel: AnyChannel,
}

impl AckTracker {
    /// The acknowledgement of the record at `offset` of `channel`, given when
    /// `matching` triggers are done with it.
    pub(crate) fn new(matching: usize, offset: u64, channel: AnyChannel) -> AckTracker {
        AckTracker {
            remaining: AtomicUsize::new(matching),
            offset,
            channel,
        }
    }

    /// One matching trigger is done with the record.
    pub(crate) fn done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.channel.ack(self.offset);
        }
    }
}

// === impl Held ===

/// Who feeds a trigger.
#[derive(Debug, Default)]
enum Feed {
    /// The shared reader.
    #[default]
    Shared,
    /// Its cursor; the shared reader skips it.
    Cursor,
    /// Rejoining: the shared reader feeds it records at or after the lane's
    /// split position (lanes not listed: all); the cursor those before.
    Split(BTreeMap<u32, u64>),
}

/// Whose acknowledgement one piece of work carries.
#[derive(Debug)]
enum Share {
    Shared(Arc<AckTracker>, u32, u64),
    Cursor(Arc<Cursor>, u64),
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    shares: HashMap<u64, Share>,
    feed: Feed,
    /// Work of the cursor still out.
    cursor_out: usize,
    /// Whether a cursor task runs for this trigger (until it has stored its
    /// position and, having caught up, deleted it; no second one meanwhile).
    following: bool,
}

/// A trigger's shares and feed (see the module docs).
#[derive(Debug, Default)]
pub struct Held {
    state: Mutex<State>,
    /// Signalled whenever a share finishes.
    pub released: Notify,
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("trigger share lock poisoned")
    }

    /// The shared reader offers the record at (`lane`, `pos`): the share's id if
    /// this trigger takes it from the shared reader, `None` if its cursor does.
    pub fn admit_shared(&self, lane: u32, pos: u64, tracker: &Arc<AckTracker>) -> Option<u64> {
        let mut st = self.lock();
        match &mut st.feed {
            Feed::Shared => {}
            Feed::Cursor => return None,
            Feed::Split(split) => {
                if let Some(&at) = split.get(&lane) {
                    if pos < at {
                        return None;
                    }
                    // Lanes come in order: from here on this lane is shared.
                    split.remove(&lane);
                }
                if split.is_empty() {
                    st.feed = Feed::Shared;
                }
            }
        }
        let id = st.next_id;
        st.next_id += 1;
        st.shares
            .insert(id, Share::Shared(tracker.clone(), lane, pos));
        Some(id)
    }

    /// The cursor hands over the record at `pos`: the share's id.
    pub fn admit_cursor(&self, cursor: &Arc<Cursor>, pos: u64) -> u64 {
        let mut st = self.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.shares.insert(id, Share::Cursor(cursor.clone(), pos));
        st.cursor_out += 1;
        id
    }

    /// The work of share `id` is done: acknowledges it where it belongs.
    pub fn finish(&self, id: u64) {
        let share = {
            let mut st = self.lock();
            let share = st.shares.remove(&id);
            if matches!(share, Some(Share::Cursor(..))) {
                st.cursor_out -= 1;
            }
            share
        };
        match share {
            Some(Share::Shared(tracker, _, _)) => tracker.done(),
            Some(Share::Cursor(cursor, pos)) => cursor.ack(pos),
            None => {}
        }
        self.released.notify_one();
    }

    /// Work out, from either reader.
    pub fn outstanding(&self) -> usize {
        self.lock().shares.len()
    }

    /// Work of the cursor still out.
    pub fn cursor_out(&self) -> usize {
        self.lock().cursor_out
    }

    /// Whether the trigger may leave the shared reader now: it is fed by it
    /// alone and no earlier cursor of it is still finishing.
    pub fn can_detach(&self) -> bool {
        let st = self.lock();
        matches!(st.feed, Feed::Shared) && !st.following
    }

    /// The cursor task ended.
    pub fn stopped_following(&self) {
        self.lock().following = false;
    }

    /// Where a cursor must start to take over: the shared reader's next position
    /// per lane, and the shared records this trigger still has out.
    pub fn cursor_start(&self, shared_next: &HashMap<u32, u64>) -> CursorStart {
        let st = self.lock();
        CursorStart {
            read: shared_next.iter().map(|(&l, &p)| (l, p)).collect(),
            held: st
                .shares
                .values()
                .filter_map(|s| match s {
                    Share::Shared(_, lane, pos) => Some((*lane, *pos)),
                    Share::Cursor(..) => None,
                })
                .collect(),
        }
    }

    /// The cursor takes over: the shared shares move to it (their records stay
    /// below its stored position until done) and the shared reader is released
    /// from them now. `start` is what the cursor was opened with; a held record
    /// that finished meanwhile is acknowledged on the cursor at once.
    pub fn hand_to_cursor(&self, cursor: &Arc<Cursor>, start: &CursorStart) {
        let mut release = Vec::new();
        let mut done_meanwhile = Vec::new();
        {
            let mut st = self.lock();
            let mut still: HashMap<(u32, u64), usize> = HashMap::new();
            for &(lane, pos) in &start.held {
                *still.entry((lane, pos)).or_default() += 1;
            }
            let mut moved = 0;
            for share in st.shares.values_mut() {
                if let Share::Shared(tracker, lane, pos) = share
                    && let Some(n) = still.get_mut(&(*lane, *pos))
                    && *n > 0
                {
                    *n -= 1;
                    release.push(tracker.clone());
                    *share = Share::Cursor(cursor.clone(), *pos);
                    moved += 1;
                }
            }
            st.cursor_out += moved;
            st.following = true;
            for ((_, pos), n) in still {
                done_meanwhile.extend(std::iter::repeat_n(pos, n));
            }
            st.feed = Feed::Cursor;
        }
        for pos in done_meanwhile {
            cursor.ack(pos);
        }
        for tracker in release {
            tracker.done();
        }
    }

    /// A stored cursor feeds this trigger from the start (after a restart).
    pub fn follow_stored(&self) {
        let mut st = self.lock();
        st.feed = Feed::Cursor;
        st.following = true;
    }

    /// Tries to rejoin: `decide` gets the work the trigger has out and the
    /// shared reader's positions, and returns the split (see
    /// `follow::rejoin_split`); with one, the shared reader feeds the
    /// trigger again from the split on. `shared_next` is read under this
    /// trigger's lock, so the shared reader cannot slip a record between the
    /// check and the switch.
    pub fn try_rejoin(
        &self,
        shared_next: &Mutex<HashMap<u32, u64>>,
        decide: impl FnOnce(usize, &HashMap<u32, u64>) -> Option<BTreeMap<u32, u64>>,
    ) -> Option<BTreeMap<u32, u64>> {
        let mut st = self.lock();
        let shared = shared_next.lock().expect("shared position lock poisoned");
        let split = decide(st.shares.len(), &shared)?;
        st.feed = Feed::Split(split.clone());
        Some(split)
    }
}

#[cfg(test)]
mod tests {
    use cebus_channels::MemoryChannel;

    use super::*;
    use crate::testkit::records;

    /// A channel holding `n` records, and a tracker of its first record that
    /// waits for `matching` triggers.
    fn tracked(n: usize, matching: usize) -> (Arc<MemoryChannel>, Arc<AckTracker>) {
        let channel = Arc::new(MemoryChannel::new(16));
        let first = records(&channel, n)[0].offset;
        let any = AnyChannel::Memory(channel.clone());
        (channel, Arc::new(AckTracker::new(matching, first, any)))
    }

    #[test]
    fn a_record_is_acknowledged_when_the_last_matching_trigger_is_done() {
        let (channel, tracker) = tracked(1, 3);
        let shares: Vec<Ack> = (0..3).map(|_| Ack::Plain(tracker.clone())).collect();
        let mut shares = shares.into_iter();
        drop(shares.next());
        drop(shares.next());
        assert_eq!(channel.pending(), 1, "one trigger still has it");
        drop(shares.next());
        assert_eq!(channel.pending(), 0);
    }

    #[test]
    fn a_shared_share_acknowledges_through_its_tracker() {
        let (channel, tracker) = tracked(1, 1);
        let held = Arc::new(Held::default());
        let id = held
            .admit_shared(0, 0, &tracker)
            .expect("fed by the shared reader");
        assert_eq!(held.outstanding(), 1);
        assert!(held.can_detach());
        drop(Ack::Held(held.clone(), id));
        assert_eq!(held.outstanding(), 0);
        assert_eq!(channel.pending(), 0);
        // A share finished twice (never expected) acknowledges nothing twice.
        held.finish(id);
    }

    #[test]
    fn a_cursor_starts_at_the_shared_position_below_the_records_still_out() {
        let (_channel, tracker) = tracked(1, 3);
        let held = Held::default();
        held.admit_shared(0, 4, &tracker);
        let done = held.admit_shared(0, 5, &tracker).unwrap();
        held.admit_shared(1, 2, &tracker);
        held.finish(done);
        let start = held.cursor_start(&HashMap::from([(0, 6), (1, 3)]));
        assert_eq!(start.read, BTreeMap::from([(0, 6), (1, 3)]));
        let mut out = start.held.clone();
        out.sort_unstable();
        assert_eq!(out, [(0, 4), (1, 2)]);
    }

    #[test]
    fn a_rejoining_trigger_takes_each_lane_from_the_shared_reader_from_its_split_on() {
        let (_channel, tracker) = tracked(1, 8);
        let held = Held::default();
        held.follow_stored();
        assert!(!held.can_detach(), "fed by its cursor");
        assert_eq!(
            held.admit_shared(0, 1, &tracker),
            None,
            "the cursor feeds it"
        );

        let shared_next = Mutex::new(HashMap::from([(0, 10), (1, 20)]));
        // Not yet: nothing changes.
        assert_eq!(held.try_rejoin(&shared_next, |_, _| None), None);
        assert_eq!(held.admit_shared(0, 10, &tracker), None);
        let split = held.try_rejoin(&shared_next, |outstanding, shared| {
            assert_eq!(outstanding, 0);
            assert_eq!(shared.get(&1), Some(&20));
            Some(BTreeMap::from([(0, 10), (1, 20)]))
        });
        assert_eq!(split, Some(BTreeMap::from([(0, 10), (1, 20)])));
        assert_eq!(held.admit_shared(0, 9, &tracker), None, "below the split");
        assert!(
            held.admit_shared(0, 10, &tracker).is_some(),
            "from the split on"
        );
        // Lane 0 is shared from now on; lane 1 still waits for its split.
        assert!(held.admit_shared(0, 3, &tracker).is_some());
        assert_eq!(held.admit_shared(1, 19, &tracker), None);
        assert!(held.admit_shared(1, 20, &tracker).is_some());
        // Every lane is shared again; once the cursor task ends it may detach.
        held.stopped_following();
        assert!(held.can_detach());
    }
}
