//! Fan-out end to end: each event goes to exactly the triggers whose filters
//! match, and a slow, failing or stuck subscriber never holds up another trigger.

use std::time::Duration;

use cebus_e2e::{Cebus, Reply, Sink, broker_yaml, post};

const WAIT: Duration = Duration::from_secs(5);

async fn send(url: &str, id: &str, ty: &str, source: &str, ext: Option<(&str, &str)>) {
    let mut h = vec![
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", source),
        ("ce-type", ty),
    ];
    if let Some(e) = ext {
        h.push(e);
    }
    assert_eq!(post(url, &h, "").await.0, 202);
}

#[tokio::test]
async fn events_reach_exactly_the_matching_triggers() {
    let names = [
        "exact",
        "prefix",
        "suffix",
        "any",
        "not",
        "legacy",
        "legacy-exists",
        "all",
    ];
    let mut sinks = Vec::new();
    for _ in names {
        sinks.push(Sink::start().await);
    }
    let specs = [
        "  filters:\n    - exact:\n        type: com.shop.order\n",
        "  filters:\n    - prefix:\n        type: com.shop.\n",
        "  filters:\n    - suffix:\n        source: /eu\n",
        "  filters:\n    - any:\n        - exact:\n            type: a\n        - exact:\n            type: b\n",
        "  filters:\n    - not:\n        prefix:\n          type: com.\n",
        "  filter:\n    attributes:\n      type: com.shop.order\n      source: /shop/eu\n",
        "  filter:\n    attributes:\n      region: \"\"\n",
        "",
    ];
    let triggers: Vec<(&str, &str, String)> = names
        .iter()
        .zip(specs)
        .zip(&sinks)
        .map(|((n, s), sink)| (*n, s, sink.url()))
        .collect();
    let triggers: Vec<(&str, &str, &str)> = triggers
        .iter()
        .map(|(n, s, u)| (*n, *s, u.as_str()))
        .collect();
    let cebus = Cebus::start(&broker_yaml("default", "", &triggers)).await;
    let url = cebus.broker_url("default", "default");

    send(
        &url,
        "1",
        "com.shop.order",
        "/shop/eu",
        Some(("ce-region", "eu")),
    )
    .await;
    send(
        &url,
        "2",
        "com.shop.refund",
        "/shop/us",
        Some(("ce-region", "")),
    )
    .await;
    send(&url, "3", "a", "/x/eu", None).await;
    send(&url, "4", "b", "/y", None).await;

    // Expected ids per trigger, in the order of `names`.
    let want: [&[&str]; 8] = [
        &["1"],
        &["1", "2"],
        &["1", "3"],
        &["3", "4"],
        &["3", "4"],
        &["1"],
        &["1"],
        &["1", "2", "3", "4"],
    ];
    for (sink, want) in sinks.iter().zip(want) {
        sink.wait_for(want.len(), WAIT).await;
    }
    // Every event was matched at ingress; with nothing in flight every delivery
    // it matched has been made, so the lists below are complete.
    cebus.wait_settled("default", "default", WAIT).await;
    for ((name, sink), want) in names.iter().zip(&sinks).zip(want) {
        let got = sink.received();
        let mut ids: Vec<String> = got.iter().map(|r| r.event().id().into_owned()).collect();
        ids.sort();
        assert_eq!(ids, want, "trigger {name}");
    }
}

#[tokio::test]
async fn a_stuck_or_failing_subscriber_does_not_delay_other_triggers() {
    let stuck = Sink::start_with(Reply::status(200).delay(Duration::from_secs(30))).await;
    let failing = Sink::start_with(Reply::status(500)).await;
    let fast = Sink::start().await;
    let yaml = broker_yaml(
        "default",
        "",
        &[
            ("stuck", "", &stuck.url()),
            (
                "failing",
                "  delivery: {retry: 20, backoffPolicy: linear, backoffDelay: PT0.5S}\n",
                &failing.url(),
            ),
            ("fast", "", &fast.url()),
        ],
    );
    let cebus = Cebus::start_with(&yaml, |o| {
        o.limits.max_in_flight_per_trigger = 4;
        o.limits.default_timeout = Duration::from_secs(60);
    })
    .await;
    let url = cebus.broker_url("default", "default");
    for i in 0..100 {
        send(&url, &i.to_string(), "t", "/s", None).await;
    }
    // The fast trigger gets all 100 while the stuck one has answered none.
    let got = fast.wait_for(100, WAIT).await;
    assert_eq!(got.len(), 100);
    // The stuck trigger holds only its own in-flight slots.
    assert_eq!(
        stuck.received().len(),
        4,
        "in-flight deliveries per trigger are bounded"
    );
    assert!(failing.received().len() >= 4);
}

#[tokio::test]
async fn a_backlog_drains_through_the_triggers_slots_and_loses_nothing() {
    // Three slots, a subscriber that answers after 10 ms, and 8 producers at
    // once on both ingress threads: most events wait in the backlog while the
    // slots' tasks finish and pick up the next, the races between a push and
    // a slot coming free included. Every event must arrive, each once.
    let sub = Sink::start_with(Reply::status(200).delay(Duration::from_millis(10))).await;
    let cebus = Cebus::start_with(&broker_yaml("default", "", &[("t", "", &sub.url())]), |o| {
        o.limits.max_in_flight_per_trigger = 3;
    })
    .await;
    let url = cebus.broker_url("default", "default");
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let url = url.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    send(&url, &format!("{p}-{i}"), "t", "/s", None).await;
                }
            })
        })
        .collect();
    for p in producers {
        p.await.unwrap();
    }
    let got = sub.wait_for(200, Duration::from_secs(20)).await;
    let ids: std::collections::BTreeSet<String> =
        got.iter().map(|r| r.event().id().into_owned()).collect();
    assert_eq!((got.len(), ids.len()), (200, 200), "each event once");
    cebus.wait_settled("default", "default", WAIT).await;
    assert_eq!(sub.received().len(), 200, "nothing delivered twice");
}
