//! Triggers that fall behind on a durable channel (Kafka, NATS): they leave
//! the broker's shared reader for a cursor of their own, so a failing or slow
//! trigger never holds back the others, and rejoin when they have caught up
//! (docs/architecture.md, "Triggers that fall behind"). The decisions are pure
//! functions (table-tested below); the tasks that open, follow and close the
//! cursors come after them. The shares a trigger has out are kept in
//! `ack::Held`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cebus_channels::{Cursor, Log};

use crate::ack::Ack;
use crate::broker::BrokerRuntime;
use crate::deliver;
use crate::trigger::{TriggerRuntime, Work};

// === decisions ===

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

/// Whether the cursor is within `max_in_flight` records of the shared reader
/// (a first, unlocked look before draining the trigger to rejoin).
fn close_behind(
    cursor_next: &BTreeMap<u32, u64>,
    shared_next: &Mutex<HashMap<u32, u64>>,
    max_in_flight: usize,
) -> bool {
    let shared = shared_next.lock().expect("shared position lock poisoned");
    lag(cursor_next, &shared) <= max_in_flight as u64
}

// === tasks ===

/// Trigger `t` leaves the shared reader for a cursor of its own, which takes
/// over the records it has out. False when the cursor could not be opened (the
/// trigger stays on the shared reader).
pub(crate) async fn detach(broker: &Arc<BrokerRuntime>, t: &Arc<TriggerRuntime>) -> bool {
    let Some(held) = &t.held else {
        return false;
    };
    let start = held.cursor_start(
        &broker
            .shared_next
            .lock()
            .expect("shared position lock poisoned"),
    );
    let name = t.plan.load().name.clone();
    let window = cursor_window(broker.shared.limits.max_in_flight_per_trigger);
    match broker
        .channel
        .open_cursor(&name, Some(start.clone()), start.held.len() + window)
        .await
    {
        Ok(cursor) => {
            let cursor = Arc::new(cursor);
            held.hand_to_cursor(&cursor, &start);
            tracing::info!(broker = %broker.key, trigger = %name, held = start.held.len(), "trigger fell behind; it reads from its own cursor until it catches up");
            broker
                .shared
                .tasks
                .spawn(follow_cursor(broker.clone(), t.clone(), cursor));
            true
        }
        Err(e) => {
            tracing::warn!(broker = %broker.key, trigger = %name, error = %e, "trigger fell behind but its cursor could not be opened; it stays on the shared reader");
            false
        }
    }
}

/// After a restart: triggers whose cursor an earlier run stored read from it;
/// cursors of triggers that no longer exist are deleted. Retries until the
/// channel answers; false when the broker stopped meanwhile.
pub(crate) async fn resume_stored_cursors(broker: &Arc<BrokerRuntime>) -> bool {
    let mut applied = broker.applied.subscribe();
    tokio::select! {
        _ = applied.wait_for(|a| *a) => {}
        _ = broker.cancel.cancelled() => return false,
    }
    let retry = || async {
        tokio::select! {
            _ = tokio::time::sleep(DETACH_RETRY) => true,
            _ = broker.cancel.cancelled() => false,
        }
    };
    let names = loop {
        match broker.channel.stored_cursors().await {
            Ok(names) => break names,
            Err(e) => {
                tracing::warn!(broker = %broker.key, error = %e, "cannot list stored trigger cursors; retrying");
                if !retry().await {
                    return false;
                }
            }
        }
    };
    let window = cursor_window(broker.shared.limits.max_in_flight_per_trigger);
    for name in names {
        let trigger = broker
            .by_name
            .lock()
            .expect("trigger index lock poisoned")
            .get(&name)
            .cloned();
        let Some(t) = trigger else {
            tracing::info!(broker = %broker.key, trigger = %name, "deleting the stored cursor of a trigger that no longer exists");
            if let Err(e) = broker.channel.delete_cursor(&name).await {
                tracing::warn!(broker = %broker.key, trigger = %name, error = %e, "cannot delete a stale trigger cursor");
            }
            continue;
        };
        let Some(held) = t.held.clone() else {
            continue;
        };
        // Until it is open the trigger must not take shared records: the ones
        // between its stored position and the shared one would be lost to it.
        let cursor = loop {
            match broker.channel.open_cursor(&name, None, window).await {
                Ok(c) => break Arc::new(c),
                Err(e) => {
                    tracing::warn!(broker = %broker.key, trigger = %name, error = %e, "cannot reopen a stored trigger cursor; retrying");
                    if !retry().await {
                        return false;
                    }
                }
            }
        };
        held.follow_stored();
        tracing::info!(broker = %broker.key, trigger = %name, "trigger resumes from its stored cursor");
        broker
            .shared
            .tasks
            .spawn(follow_cursor(broker.clone(), t.clone(), cursor));
    }
    true
}

/// Feeds trigger `t` from its cursor, at most [`follow_budget`]
/// records out at a time, until it has caught up with the shared reader (then
/// the cursor is deleted), the trigger is removed (deleted too) or the broker
/// stops (the cursor's position stays stored for the next run).
async fn follow_cursor(broker: Arc<BrokerRuntime>, t: Arc<TriggerRuntime>, cursor: Arc<Cursor>) {
    let Some(held) = t.held.clone() else {
        return;
    };
    let name = t.plan.load().name.clone();
    let max_in_flight = broker.shared.limits.max_in_flight_per_trigger;
    let budget = follow_budget(max_in_flight);
    let mut next = cursor.start().clone();
    {
        // A lane the fan-out loop has not read yet starts at the stored shared
        // position; without it a cursor behind that position would look caught up.
        let mut shared = broker
            .shared_next
            .lock()
            .expect("shared position lock poisoned");
        for (&lane, &pos) in cursor.shared_start() {
            shared.entry(lane).or_insert(pos);
        }
    }
    let mut split: Option<BTreeMap<u32, u64>> = None;
    let mut caught_up = false;
    loop {
        if t.cancel.is_cancelled() {
            break;
        }
        if let Some(s) = &split
            && s.iter()
                .all(|(lane, at)| next.get(lane).is_some_and(|n| n >= at))
        {
            caught_up = true;
            break;
        }
        if held.outstanding() >= budget {
            tokio::select! {
                _ = held.released.notified() => {}
                _ = t.cancel.cancelled() => {}
            }
            continue;
        }
        if split.is_none()
            && held.outstanding() <= max_in_flight
            && close_behind(&next, &broker.shared_next, max_in_flight)
        {
            // Close enough to rejoin. Its own deliveries must be done first: one
            // that keeps failing would keep this cursor open after the rejoin,
            // and the trigger could not leave the shared reader again meanwhile.
            if held.cursor_out() > 0 {
                tokio::select! {
                    _ = held.released.notified() => {}
                    _ = tokio::time::sleep(REJOIN_CHECK) => {}
                    _ = t.cancel.cancelled() => {}
                }
                continue;
            }
            // Not settled: records given out before (a previous run's, on NATS)
            // are still to come back; keep reading them.
            if cursor.settled().await {
                let ordered = t.plan.load().ordered;
                split = held.try_rejoin(&broker.shared_next, |outstanding, shared| {
                    rejoin_split(&next, shared, outstanding, max_in_flight, ordered)
                });
                if split.is_some() {
                    tracing::info!(broker = %broker.key, trigger = %name, "trigger caught up; it rejoins the shared reader");
                    continue;
                }
            }
        }
        let record = tokio::select! {
            r = cursor.recv() => r,
            _ = tokio::time::sleep(REJOIN_CHECK) => continue,
            _ = t.cancel.cancelled() => break,
        };
        let Some(record) = record else {
            break;
        };
        next.entry(record.partition)
            .and_modify(|n| *n = (*n).max(record.offset + 1))
            .or_insert(record.offset + 1);
        let shared_feeds_it = split
            .as_ref()
            .and_then(|s| s.get(&record.partition))
            .is_some_and(|&at| record.offset >= at);
        if shared_feeds_it || !t.plan.load().filter.matches(&record.envelope.event) {
            cursor.ack(record.offset);
            continue;
        }
        let id = held.admit_cursor(&cursor, record.offset);
        t.submit(Work {
            partition: record.partition,
            envelope: record.envelope,
            encoded: Arc::new(deliver::Encoded::default()),
            _ack: Ack::Held(held.clone(), id),
        });
    }
    let removed = t.cancel.is_cancelled() && !broker.cancel.is_cancelled();
    // The cursor's position is stored after its last record is done.
    let _ = tokio::time::timeout(FOLLOW_DRAIN_MAX, async {
        while held.cursor_out() > 0 {
            held.released.notified().await;
        }
    })
    .await;
    let delete = caught_up || removed;
    let closed = match Arc::try_unwrap(cursor) {
        Ok(cursor) => cursor.close(delete).await,
        // Deliveries still hold it: it stores its position when they are done.
        Err(_) if delete => broker.channel.delete_cursor(&name).await,
        Err(_) => Ok(()),
    };
    if let Err(e) = closed {
        tracing::warn!(broker = %broker.key, trigger = %name, error = %e, "closing a trigger cursor");
    }
    held.stopped_following();
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
    fn close_behind_sums_the_lag_over_lanes() {
        let shared = Mutex::new(HashMap::from([(0, 15), (1, 20), (2, 4)]));
        // 5 + 0 + 4 (lane 2 not read by the cursor yet) = 9 behind.
        let cursor = BTreeMap::from([(0, 10), (1, 20)]);
        assert!(close_behind(&cursor, &shared, 9));
        assert!(!close_behind(&cursor, &shared, 8));
        // Ahead of the shared reader is not behind.
        let ahead = BTreeMap::from([(0, 30), (1, 30), (2, 30)]);
        assert!(close_behind(&ahead, &shared, 0));
    }

    #[test]
    fn a_cursor_reads_ahead_at_least_a_fetch_batch() {
        assert_eq!(cursor_window(100), 1024);
        assert_eq!(cursor_window(1000), 2000);
    }

    #[test]
    fn follow_budget_is_two_sets_of_deliveries() {
        assert_eq!(follow_budget(100), 200);
        assert_eq!(follow_budget(0), 2);
    }
}
