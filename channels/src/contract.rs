//! The channel contract: one scenario suite that every backend runs, so the
//! broker can rely on the same behaviour whatever stores its events.
//!
//! Backends bound what they hold in one of two ways ([`Bound`]), and the two
//! capacity scenarios check each backend against its own kind; what both kinds
//! promise is the same: never more than `capacity` records outstanding at the
//! consumer, never a silent drop, and an ack frees room.

use std::time::Duration;

use cebus_events::Event;

use crate::channel::{Channel, ChannelError, Envelope, Record};
use crate::log::{Cursor, CursorReader, CursorStart, Log};

/// How a backend keeps its `capacity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The channel stores at most `capacity` unacknowledged events and refuses
    /// appends beyond that (`Full`, `BatchTooLarge`), storing nothing of a refused
    /// batch (the in-memory channel).
    Store,
    /// A durable log is the buffer: appends are not refused for capacity, and at
    /// most `capacity` records are handed to the consumer unacknowledged; the
    /// rest waits in the log until acks free the window (NATS JetStream's
    /// `max_ack_pending`).
    Window,
}

/// How long a scenario waits to be sure a record is held back. A negative
/// check needs some wait; it is short, and a wrong backend fails it reliably.
const HELD_BACK: Duration = Duration::from_millis(300);

fn envelope(id: &str) -> Envelope {
    Envelope::new(Event::with_required(id, "/contract", "contract.test"))
}

async fn ids<C: Channel>(channel: &C, n: usize) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = channel.recv().await.expect("record");
        out.push((r.offset, r.envelope.event.id().into_owned()));
    }
    out
}

/// Runs every scenario against fresh channels from `make(capacity)`.
pub async fn run_all<C: Channel, F: Fn(usize) -> C>(make: F, bound: Bound) {
    appends_are_received_in_order(make(8)).await;
    a_full_channel_holds_back_and_ack_frees_room(make(2), bound).await;
    batches_are_all_or_nothing(make(3), bound).await;
    close_drains_then_ends(make(4)).await;
    events_are_unchanged(make(4)).await;
}

/// Appended events come out in append order with increasing offsets.
pub async fn appends_are_received_in_order<C: Channel>(c: C) {
    c.append(vec![envelope("a")]).await.unwrap();
    c.append(vec![envelope("b"), envelope("c")]).await.unwrap();
    let got = ids(&c, 3).await;
    let names: Vec<_> = got.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "offsets increase: {got:?}"
    );
    assert_eq!(c.pending(), 3);
}

/// A full channel says so or holds back (never blocks an append, never drops);
/// at most `capacity` records are outstanding; acking frees room.
pub async fn a_full_channel_holds_back_and_ack_frees_room<C: Channel>(c: C, bound: Bound) {
    c.append(vec![envelope("1"), envelope("2")]).await.unwrap();
    let third = c.append(vec![envelope("3")]).await;
    match bound {
        Bound::Store => assert!(matches!(third, Err(ChannelError::Full { .. })), "{third:?}"),
        Bound::Window => third.expect("a window-bound channel stores beyond its window"),
    }
    let got = ids(&c, 2).await;
    assert!(
        tokio::time::timeout(HELD_BACK, c.recv()).await.is_err(),
        "no more than capacity records are outstanding"
    );
    c.ack(got[0].0);
    if bound == Bound::Store {
        c.append(vec![envelope("3")]).await.unwrap();
    }
    let got = ids(&c, 1).await;
    assert_eq!(got[0].1, "3");
}

/// A batch is stored whole or not at all: a refused batch leaves nothing behind
/// (store-bound), and an accepted batch larger than the window comes out whole
/// and in order as acks free the window (window-bound).
pub async fn batches_are_all_or_nothing<C: Channel>(c: C, bound: Bound) {
    c.append(vec![envelope("x"), envelope("y")]).await.unwrap();
    if bound == Bound::Window {
        let big: Vec<_> = ["p", "q", "r", "s"].into_iter().map(envelope).collect();
        c.append(big).await.unwrap();
        let mut names = Vec::new();
        for _ in 0..6 {
            let r = c.recv().await.expect("record");
            names.push(r.envelope.event.id().into_owned());
            c.ack(r.offset);
        }
        assert_eq!(names, ["x", "y", "p", "q", "r", "s"]);
        return;
    }
    let err = c
        .append(vec![envelope("p"), envelope("q")])
        .await
        .unwrap_err();
    assert!(matches!(err, ChannelError::Full { .. }), "{err:?}");
    assert_eq!(c.pending(), 2, "nothing of the rejected batch was stored");
    let err = c
        .append((0..4).map(|i| envelope(&i.to_string())).collect())
        .await
        .unwrap_err();
    assert!(matches!(err, ChannelError::BatchTooLarge { .. }), "{err:?}");
    c.append(vec![envelope("z")]).await.unwrap();
    let names: Vec<_> = ids(&c, 3).await.into_iter().map(|(_, id)| id).collect();
    assert_eq!(names, ["x", "y", "z"]);
}

/// After close, appends fail, stored records still come out, then `None`.
pub async fn close_drains_then_ends<C: Channel>(c: C) {
    c.append(vec![envelope("last")]).await.unwrap();
    c.close();
    assert_eq!(
        c.append(vec![envelope("late")]).await.unwrap_err(),
        ChannelError::Closed
    );
    assert_eq!(ids(&c, 1).await[0].1, "last");
    assert!(c.recv().await.is_none());
}

/// The stored event and headers are exactly what was appended.
pub async fn events_are_unchanged<C: Channel>(c: C) {
    let mut e = Event::with_required("id-1", "/src", "t");
    e.set("time", "2020-01-01T00:00:00.000000001+01:00");
    e.set("count", cebus_events::AttrValue::Integer(7));
    e.set_data(Some(bytes::Bytes::from_static(b"\x00\xffraw")));
    let env = Envelope {
        event: e,
        headers: vec![("traceparent".into(), "00-abc-def-01".into())],
        ttl: 17,
    };
    c.append(vec![env.clone()]).await.unwrap();
    let r = c.recv().await.unwrap();
    assert_eq!(*r.envelope, env);
}

/// Per-trigger cursors (durable backends): a cursor reads from its start and
/// never hands out the records below it; held records are acknowledged on it;
/// it is listed while stored, resumes where it was after a reopen, gives back
/// an unacknowledged record (at least once), and is gone once deleted. `c` must
/// be a fresh, single-lane channel.
pub async fn cursors<L: Log>(c: L) {
    c.append((0..6).map(|i| envelope(&format!("e{i}"))).collect())
        .await
        .unwrap();
    // The shared reader took all six; the trigger still has e1 out.
    let mut pos = Vec::new();
    for _ in 0..6 {
        let r = c.recv().await.expect("record");
        pos.push((r.partition, r.offset));
    }
    let (lane, _) = pos[0];
    let start = CursorStart {
        read: [(lane, pos[3].1)].into(),
        held: vec![(lane, pos[1].1)],
    };
    let cur = c.open_cursor("c.one", Some(start), 16).await.unwrap();
    assert_eq!(cur.start().get(&lane), Some(&pos[3].1));
    let mut got = Vec::new();
    for _ in 0..3 {
        let r = next_of(&cur).await;
        got.push(r.envelope.event.id().into_owned());
        cur.ack(r.offset);
    }
    assert_eq!(
        got,
        ["e3", "e4", "e5"],
        "from the start on, nothing below it"
    );
    assert!(
        c.stored_cursors()
            .await
            .unwrap()
            .contains(&"c.one".to_owned()),
        "listed while stored"
    );
    // The held record is not acknowledged: after a reopen it comes back.
    cur.close(false).await.unwrap();
    let again = c.open_cursor("c.one", None, 16).await.unwrap();
    let back = next_of(&again).await;
    assert_eq!(
        back.envelope.event.id(),
        "e1",
        "the held record is given back"
    );
    again.ack(back.offset);
    // Acknowledged everywhere now: nothing else is owed (records the backend
    // reads again in order are fine, e1 must not come twice).
    while let Ok(Some(r)) = tokio::time::timeout(HELD_BACK * 3, again.recv()).await {
        assert_ne!(r.envelope.event.id(), "e1");
        again.ack(r.offset);
    }
    again.close(true).await.unwrap();
    assert!(
        !c.stored_cursors()
            .await
            .unwrap()
            .contains(&"c.one".to_owned()),
        "gone once deleted"
    );
    c.close();
}

/// The cursor's next record (panics after a minute).
async fn next_of<R: CursorReader>(cursor: &Cursor<R>) -> Record {
    tokio::time::timeout(Duration::from_secs(60), cursor.recv())
        .await
        .expect("a record from the cursor")
        .expect("the cursor is open")
}
