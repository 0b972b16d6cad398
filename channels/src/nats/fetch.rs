//! The reader of a NATS consumer (the broker's or a cursor's): pulls messages
//! and hands them out as records, remembers each for its ack, and acknowledges
//! — with in-progress acks while a record is still being delivered, so
//! JetStream redelivers only after a crash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use async_nats::Subject;
use async_nats::jetstream;
use cebus_events::time::{Precision, rfc3339};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::binding::NatsMessage;
use super::config::NatsSettings;
use super::record::decode;
use crate::channel::Record;

/// After `close`, the fetch loop ends once no message came for this long and the
/// consumer has nothing pending.
const DRAIN_IDLE: Duration = Duration::from_millis(200);

/// A record handed out and not yet acknowledged.
#[derive(Debug)]
pub(super) struct Held {
    /// Where its ack goes; `None` for a record a cursor took over (still being
    /// delivered) that the cursor's consumer has not delivered to it yet.
    pub(super) reply: Option<Subject>,
    pub(super) since: Instant,
    /// Acknowledged by the broker before the cursor's consumer delivered it.
    pub(super) acked: bool,
}

impl Held {
    fn new(reply: Subject) -> Held {
        Held {
            reply: Some(reply),
            since: Instant::now(),
            acked: false,
        }
    }
}

/// The outstanding records by stream sequence.
pub(super) type Outstanding = Arc<StdMutex<HashMap<u64, Held>>>;

/// Sends acks and in-progress acks: one task, so `Channel::ack` stays sync.
pub(super) async fn acker(
    client: async_nats::Client,
    outstanding: Outstanding,
    mut acks: mpsc::UnboundedReceiver<u64>,
    ack_wait: Duration,
) {
    let every = (ack_wait / 3).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            offset = acks.recv() => {
                let Some(offset) = offset else { return };
                let reply = {
                    let mut map = outstanding.lock().expect("outstanding lock poisoned");
                    match map.get_mut(&offset) {
                        Some(held) if held.reply.is_none() => {
                            // Not delivered by the consumer yet: acked when it is.
                            held.acked = true;
                            None
                        }
                        Some(_) => map.remove(&offset).and_then(|h| h.reply),
                        None => None,
                    }
                };
                if let Some(reply) = reply
                    && let Err(e) = client.publish(reply, "+ACK".into()).await
                {
                    tracing::warn!(offset, error = %e, "NATS ack not sent; JetStream will redeliver");
                }
            }
            _ = tick.tick() => {
                // Records still being delivered (retries, slow subscribers): tell
                // JetStream to wait another ack_wait instead of redelivering.
                let now = Instant::now();
                let due: Vec<Subject> = outstanding
                    .lock()
                    .expect("outstanding lock poisoned")
                    .values()
                    .filter(|h| now.duration_since(h.since) >= every)
                    .filter_map(|h| h.reply.clone())
                    .collect();
                for reply in due {
                    let _ = client.publish(reply, "+WPI".into()).await;
                }
            }
        }
    }
}

/// Pulls messages and hands them out as records until closed; after `close`, it
/// hands out what the consumer still has, then ends (so `recv` returns `None`).
pub(super) async fn fetch(
    settings: &NatsSettings,
    mut consumer: jetstream::consumer::PullConsumer,
    mut close: watch::Receiver<bool>,
    records: mpsc::Sender<Record>,
    outstanding: Outstanding,
    drain: bool,
    read_from: Option<u64>,
) {
    let batch = settings.window.clamp(1, 1000);
    'outer: loop {
        let mut messages = match consumer
            .stream()
            .max_messages_per_batch(batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(stream = %settings.stream, error = %e, "NATS pull failed; retrying");
                if *close.borrow() && !has_pending(&mut consumer).await {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            let closing = *close.borrow();
            // A cursor stops at once: what it did not hand out stays in the
            // stream for its next run.
            if closing && !drain {
                break 'outer;
            }
            let next = if closing {
                match tokio::time::timeout(DRAIN_IDLE, messages.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        if has_pending(&mut consumer).await {
                            continue;
                        }
                        break 'outer;
                    }
                }
            } else {
                tokio::select! {
                    n = messages.next() => n,
                    _ = close.changed() => continue,
                }
            };
            match next {
                None => continue 'outer,
                Some(Err(e)) => {
                    tracing::debug!(stream = %settings.stream, error = %e, "NATS pull");
                }
                Some(Ok(m)) => {
                    if let Some(record) = take(settings, m, &outstanding, read_from).await
                        && records.send(record).await.is_err()
                    {
                        break 'outer;
                    }
                }
            }
        }
    }
}

/// Whether the consumer has messages not yet delivered to anyone.
pub(super) async fn has_pending(consumer: &mut jetstream::consumer::PullConsumer) -> bool {
    match consumer.info().await {
        Ok(info) => info.num_pending > 0,
        Err(_) => false,
    }
}

/// One message into a record, remembered for its ack. A message that is not a
/// valid CloudEvent is logged and terminated (never redelivered).
///
/// A cursor reading from `cursor` (its read position) starts lower, at its
/// resume point: a message below the read position is not handed out — one the
/// cursor took over waits for the broker's ack (or is acked now if that came
/// first), any other was done before the cursor existed and is acked now.
async fn take(
    settings: &NatsSettings,
    m: jetstream::Message,
    outstanding: &Outstanding,
    read_from: Option<u64>,
) -> Option<Record> {
    let (seq, arrival) = match m.info() {
        Ok(info) => (
            info.stream_sequence,
            rfc3339(info.published.into(), Precision::Micros),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "NATS message without JetStream metadata; skipped");
            return None;
        }
    };
    if let Some(read_from) = read_from
        && seq < read_from
    {
        let reply = m.reply.clone()?;
        let ack_now = {
            let mut map = outstanding.lock().expect("outstanding lock poisoned");
            match map.get_mut(&seq) {
                Some(held) if held.acked => {
                    map.remove(&seq);
                    true
                }
                Some(held) => {
                    held.reply = Some(reply);
                    held.since = Instant::now();
                    false
                }
                None => true,
            }
        };
        if ack_now {
            let _ = m.ack().await;
        }
        return None;
    }
    let message = NatsMessage {
        headers: m
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .flat_map(|(n, vs)| {
                vs.iter()
                    .map(move |v| (n.to_string(), v.as_str().to_owned()))
            })
            .collect(),
        payload: m.payload.clone(),
    };
    match decode(&message, settings.default_ttl, &arrival) {
        Ok(envelope) => {
            let reply = m.reply.clone()?;
            outstanding
                .lock()
                .expect("outstanding lock poisoned")
                .insert(seq, Held::new(reply));
            Some(Record {
                offset: seq,
                partition: 0,
                envelope: Arc::new(envelope),
            })
        }
        Err(reason) => {
            tracing::warn!(stream = %settings.stream, seq, %reason, "NATS message is not an acceptable CloudEvent; dropped");
            let _ = m.ack_with(jetstream::AckKind::Term).await;
            None
        }
    }
}
