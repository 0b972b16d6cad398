//! A broker's fan-out loop: reads the channel, matches each record once
//! against every trigger and hands it to those that match. On a durable
//! channel this loop is the *shared reader*, and a trigger that falls behind
//! leaves it for a cursor of its own (`follow.rs`).

use std::sync::Arc;

use cebus_channels::{Channel, Log};

use crate::ack::Ack;
use crate::broker::BrokerRuntime;
use crate::deliver;
use crate::follow;
use crate::trigger::Work;

/// Reads the channel, matches each event once against every trigger and hands it
/// to the queues of those that match. On a channel with cursors, a trigger that
/// falls behind leaves for a cursor of its own ([`follow`]).
pub(crate) async fn fan_out(broker: Arc<BrokerRuntime>) {
    let cursors = broker.channel.has_cursors();
    if cursors && !follow::resume_stored_cursors(&broker).await {
        return;
    }
    let window = broker.shared.limits.channel_capacity;
    let max_in_flight = broker.shared.limits.max_in_flight_per_trigger;
    let mut detach_again = tokio::time::Instant::now();
    let mut matched = Vec::new();
    while let Some(record) = broker.channel.recv().await {
        if !cursors {
            // The broker's own events on the in-memory channel are routed at
            // ingest and never come this way; records appended through
            // `Channel::append` would.
            broker.route(record);
            continue;
        }
        broker
            .shared_next
            .lock()
            .expect("shared position lock poisoned")
            .entry(record.partition)
            // Redeliveries (NATS after ack_wait, Kafka after a rebalance)
            // come back lower: the reader has still been that far.
            .and_modify(|n| *n = (*n).max(record.offset + 1))
            .or_insert(record.offset + 1);
        let snapshot = broker.snapshot.load_full();
        snapshot
            .matcher
            .matches_into(&record.envelope.event, &mut matched);
        if matched.is_empty() {
            broker.channel.ack(record.offset);
            continue;
        }
        let encoded = Arc::new(deliver::Encoded::default());
        let ack = broker.tracker(&record, matched.len());
        // Looked at once per record: below this pressure nobody detaches, and
        // a broker's only trigger holds back nobody else.
        let cursors_help = snapshot.triggers.len() > 1;
        let mut pending = if cursors_help {
            broker.channel.pending()
        } else {
            0
        };
        let mut pressure =
            cursors_help && follow::should_detach(usize::MAX, pending, window, max_in_flight);
        for &i in &matched {
            let t = &snapshot.triggers[i as usize];
            let share = match &t.held {
                None => Ack::Plain(ack.clone()),
                Some(held) => match held.admit_shared(record.partition, record.offset, &ack) {
                    Some(id) => Ack::Held(held.clone(), id),
                    // Its cursor feeds it this record.
                    None => {
                        ack.done();
                        continue;
                    }
                },
            };
            t.submit(Work {
                partition: record.partition,
                envelope: record.envelope.clone(),
                encoded: encoded.clone(),
                _ack: share,
            });
            if pressure
                && let Some(held) = &t.held
                && follow::should_detach(held.outstanding(), pending, window, max_in_flight)
                && held.can_detach()
                && tokio::time::Instant::now() >= detach_again
            {
                if follow::detach(&broker, t).await {
                    // Its records were released: maybe no pressure is left.
                    pending = broker.channel.pending();
                    pressure = follow::should_detach(usize::MAX, pending, window, max_in_flight);
                } else {
                    detach_again = tokio::time::Instant::now() + follow::DETACH_RETRY;
                }
            }
        }
    }
    // Closed and drained: let the dispatchers finish their queues and end.
    broker.snapshot.store(Arc::default());
    broker
        .by_name
        .lock()
        .expect("trigger index lock poisoned")
        .clear();
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cebus_channels::Envelope;
    use cebus_events::Event;

    use super::*;
    use crate::port::testing::Recorder;
    use crate::shared::Shared;
    use crate::testkit::{self, broker_plan, linear, settle, trigger};

    #[tokio::test(start_paused = true)]
    async fn records_appended_to_the_channel_reach_the_triggers_and_a_stop_ends_the_loop() {
        let shared = Shared::for_tests(testkit::limits(100));
        let (_recorder, port) = Recorder::port(|| Ok(()));
        let plan = broker_plan(&[trigger("t", linear(0, Duration::ZERO), false)]);
        let broker = BrokerRuntime::new(&plan, shared.clone(), port);
        broker.apply(&plan);
        let task = tokio::spawn(fan_out(broker.clone()));
        // Not through ingest (which routes in-memory events itself): the
        // channel's own queue, which only this loop reads.
        let event = Event::with_required("a", "/test", "test.event");
        broker
            .channel
            .append(vec![Envelope::new(event)])
            .await
            .expect("stored");
        settle().await;
        assert_eq!(testkit::counters(&shared.metrics, "t").attempts.get(), 1);
        assert_eq!(
            broker.pending(),
            0,
            "delivered (or given up) and acknowledged"
        );

        broker.stop();
        settle().await;
        assert!(
            task.is_finished(),
            "a closed, drained channel ends the loop"
        );
        assert!(broker.snapshot.load().triggers.is_empty());
        assert!(broker.by_name.lock().unwrap().is_empty());
    }
}
