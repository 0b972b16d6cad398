//! Triggers that fall behind on a durable channel (Kafka): they leave the
//! broker's shared reader for a cursor of their own, so a failing or slow
//! trigger never holds back the others, and rejoin when they have caught up
//! (docs/architecture.md, "Triggers that fall behind").
//!
//! Every piece of work a trigger has out is registered here as a *share*: of a
//! shared record (acknowledged on the broker's channel once every matching
//! trigger is done) or of a cursor record (acknowledged on the cursor). When the
//! trigger detaches, its shared shares are released at once — the window of the
//! shared reader is freed — and handed to the cursor, whose stored position stays
//! below them until they are done.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cebus_channels::{Cursor, CursorStart};
use tokio::sync::Notify;

use crate::runtime::AckTracker;

/// How long a following trigger waits for its deliveries at shutdown before its
/// cursor stores its position anyway (what is not done is redelivered).
pub const FOLLOW_DRAIN_MAX: Duration = Duration::from_secs(30);
/// How often an idle cursor checks whether its trigger can rejoin.
pub const REJOIN_CHECK: Duration = Duration::from_millis(100);
/// After a failed detach, how long before the trigger tries again.
pub const DETACH_RETRY: Duration = Duration::from_secs(1);

/// Whether a trigger leaves the shared reader: the shared window is at least
/// three quarters full and this trigger has at least a full set of deliveries
/// out (or a quarter of the window, when that is smaller). Below that pressure
/// nobody is held back, and a trigger with fewer records out is not the cause.
pub fn should_detach(
    outstanding: usize,
    pending: usize,
    window: usize,
    max_in_flight: usize,
) -> bool {
    pending.saturating_mul(4) >= window.saturating_mul(3)
        && outstanding >= max_in_flight.min(window / 4).max(1)
}

/// Records a following trigger may have out at once (its cursor reads no
/// further ahead): two full sets of deliveries.
pub fn follow_budget(max_in_flight: usize) -> usize {
    max_in_flight.max(1).saturating_mul(2)
}

/// Records a cursor may read ahead of its trigger (beyond the records handed
/// over to it): enough for librdkafka to fetch in batches instead of pausing
/// and resuming the partitions for every few records.
pub fn cursor_window(max_in_flight: usize) -> usize {
    follow_budget(max_in_flight).max(1024)
}

/// How far the cursor is behind the shared reader, summed over lanes.
fn lag(cursor_next: &BTreeMap<u32, u64>, shared_next: &HashMap<u32, u64>) -> u64 {
    shared_next
        .iter()
        .map(|(lane, &s)| s.saturating_sub(cursor_next.get(lane).copied().unwrap_or(0)))
        .sum()
}

/// Where a following trigger rejoins the shared reader, if it may now: it has
/// at most a set of deliveries out, and the cursor is close behind (or, for an
/// ordered trigger, not behind at all) the shared reader on every lane. The
/// split is, per lane, the first position the shared reader feeds it again; the
/// cursor feeds it everything below.
pub fn rejoin_split(
    cursor_next: &BTreeMap<u32, u64>,
    shared_next: &HashMap<u32, u64>,
    outstanding: usize,
    max_in_flight: usize,
    ordered: bool,
) -> Option<BTreeMap<u32, u64>> {
    if outstanding > max_in_flight {
        return None;
    }
    let behind = lag(cursor_next, shared_next);
    let allowed = if ordered { 0 } else { max_in_flight as u64 };
    if behind > allowed {
        return None;
    }
    let mut split = cursor_next.clone();
    for (&lane, &s) in shared_next {
        let at = split.entry(lane).or_insert(s);
        *at = (*at).max(s);
    }
    Some(split)
}

/// Who feeds a trigger.
#[derive(Debug, Default)]
pub enum Feed {
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

    /// Whether the cursor is within `max_in_flight` records of the shared
    /// reader (a first, unlocked look before draining the trigger to rejoin).
    pub fn close_behind(
        &self,
        cursor_next: &BTreeMap<u32, u64>,
        shared_next: &Mutex<HashMap<u32, u64>>,
        max_in_flight: usize,
    ) -> bool {
        let shared = shared_next.lock().expect("shared position lock poisoned");
        lag(cursor_next, &shared) <= max_in_flight as u64
    }

    /// Tries to rejoin (see [`rejoin_split`]); on success the shared reader
    /// feeds the trigger again from the returned split on. `shared_next` is
    /// read under this trigger's lock, so the shared reader cannot slip a record
    /// between the check and the switch.
    pub fn try_rejoin(
        &self,
        cursor_next: &BTreeMap<u32, u64>,
        shared_next: &Mutex<HashMap<u32, u64>>,
        max_in_flight: usize,
        ordered: bool,
    ) -> Option<BTreeMap<u32, u64>> {
        let mut st = self.lock();
        let shared = shared_next.lock().expect("shared position lock poisoned");
        let split = rejoin_split(
            cursor_next,
            &shared,
            st.shares.len(),
            max_in_flight,
            ordered,
        )?;
        st.feed = Feed::Split(split.clone());
        Some(split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_needs_window_pressure_and_a_backlog() {
        // (outstanding, pending, window, max_in_flight) → detach?
        let table = [
            (100, 7_500, 10_000, 100, true),
            (100, 7_499, 10_000, 100, false),
            (99, 9_000, 10_000, 100, false),
            (5_000, 10_000, 10_000, 100, true),
            // A small window: a quarter of it is enough of a backlog.
            (2, 8, 8, 100, true),
            (1, 8, 8, 100, false),
            (1, 1, 1, 100, true),
            (0, 0, 0, 100, false),
        ];
        for (out, pending, window, mif, want) in table {
            assert_eq!(
                should_detach(out, pending, window, mif),
                want,
                "{out} {pending} {window} {mif}"
            );
        }
    }

    #[test]
    fn rejoin_waits_for_a_healthy_trigger_close_behind() {
        let cursor = BTreeMap::from([(0, 10), (1, 20)]);
        let shared = HashMap::from([(0, 15), (1, 20)]);
        // 5 behind: fine for unordered within 100, not for ordered.
        assert_eq!(
            rejoin_split(&cursor, &shared, 0, 100, false),
            Some(BTreeMap::from([(0, 15), (1, 20)]))
        );
        assert_eq!(rejoin_split(&cursor, &shared, 0, 100, true), None);
        // Too much out: not healthy yet.
        assert_eq!(rejoin_split(&cursor, &shared, 101, 100, false), None);
        // Too far behind.
        assert_eq!(rejoin_split(&cursor, &shared, 0, 4, false), None);
        // Cursor ahead, and a lane the shared reader has not read yet: the
        // split is where the cursor is.
        let ahead = BTreeMap::from([(0, 30), (1, 20), (2, 7)]);
        assert_eq!(
            rejoin_split(&ahead, &shared, 0, 100, true),
            Some(BTreeMap::from([(0, 30), (1, 20), (2, 7)]))
        );
    }

    #[test]
    fn follow_budget_is_two_sets_of_deliveries() {
        assert_eq!(follow_budget(100), 200);
        assert_eq!(follow_budget(0), 2);
    }
}
