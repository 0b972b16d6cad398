//! Config reload end to end: `cebus run -f <dir>` watches every `*.yaml`/`*.yml`
//! file; adding, editing or removing one applies within 2 s (tests allow 5 s), one
//! trigger at a time, and a bad edit keeps the last good config.
//!
//! "Applied" is observed with a [`Barrier`]: a trigger rewritten after the change
//! under test, whose probe only arrives once everything written before it is live.

use std::time::Duration;

use cebus_e2e::{
    Barrier, Cebus, Reply, Sink, broker_yaml, count_id, post_binary, received_ids, wait_for_id,
};

/// How long a config change may take to apply in these tests (the product promises 2 s).
const APPLY: Duration = Duration::from_secs(5);
/// How long a delivery to a live subscriber may take.
const DELIVER: Duration = Duration::from_secs(5);

/// A Trigger of broker `default` as its own file.
fn trigger_yaml(name: &str, extra: &str, url: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {name}\nspec:\n  broker: default\n  subscriber:\n    uri: {url}\n{extra}"
    )
}

/// `filters` matching exactly one event type.
fn exact_type(ty: &str) -> String {
    format!("  filters:\n    - exact:\n        type: {ty}\n")
}

async fn send(cebus: &Cebus, id: &str, ty: &str) {
    let (status, body) = post_binary(&cebus.broker_url("default", "default"), id, ty, "{}").await;
    assert_eq!(status, 202, "ingress refused {id}: {body}");
}

/// Asserts `sink` never receives `id`, an event `cebus` accepted for broker
/// `default/default`.
async fn assert_never(cebus: &Cebus, sink: &Sink, id: &str) {
    // The in-memory broker counts an event in flight from its 202 until every
    // trigger it matched is done with it: once nothing is in flight, a delivery
    // of `id` to `sink` would have been made.
    cebus.wait_settled("default", "default", DELIVER).await;
    assert_eq!(
        count_id(sink, id),
        0,
        "sink {} received {id} but must not; got {:?}",
        sink.url(),
        received_ids(sink)
    );
}

/// Sends one event through `default/default` and waits until `sink` got it: the
/// server is up and its config watcher has started (see
/// `change_right_after_start_is_applied` for why the tests wait for that).
async fn settle(cebus: &Cebus, sink: &Sink) {
    send(cebus, "settle", "settle").await;
    wait_for_id(sink, "settle", DELIVER).await;
}

/// A change written right after the server started (before its watcher first
/// looked at the folder) must still be applied, without any later edit.
#[tokio::test]
async fn change_right_after_start_is_applied() {
    let (a, b) = (Sink::start().await, Sink::start().await);
    let cebus = Cebus::start(&broker_yaml("default", "", &[("a", "", &a.url())])).await;
    cebus.write("b.yaml", &trigger_yaml("b", "", &b.url()));
    // No barrier here: its own edit would trigger a reload and hide a lost change.
    let deadline = std::time::Instant::now() + APPLY;
    for probe in 0.. {
        let id = format!("probe-{probe}");
        send(&cebus, &id, "order").await;
        wait_for_id(&a, &id, DELIVER).await;
        if !b.received().is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "trigger b, written right after start, was not applied within {APPLY:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn added_file_adds_a_trigger_and_keeps_the_old_one() {
    let (a, b, barrier) = (
        Sink::start().await,
        Sink::start().await,
        Barrier::start().await,
    );
    let cebus = Cebus::start(&broker_yaml("default", "", &[("a", "", &a.url())])).await;
    send(&cebus, "before", "order").await;
    wait_for_id(&a, "before", DELIVER).await;

    cebus.write("b.yaml", &trigger_yaml("b", "", &b.url()));
    barrier.sync(&cebus, "default", "default", APPLY).await;

    send(&cebus, "after", "order").await;
    wait_for_id(&b, "after", DELIVER).await;
    wait_for_id(&a, "after", DELIVER).await;
    assert_eq!(
        count_id(&b, "before"),
        0,
        "a new trigger must not see older events"
    );
    assert_eq!(count_id(&a, "after"), 1);
}

#[tokio::test]
async fn edited_filter_routes_by_the_new_filter() {
    let (a, barrier) = (Sink::start().await, Barrier::start().await);
    let cebus = Cebus::start(&broker_yaml(
        "default",
        "",
        &[("a", &exact_type("com.example.old"), &a.url())],
    ))
    .await;
    // The old filter is in force: "new" is filtered out, "old" delivered.
    send(&cebus, "new-0", "com.example.new").await;
    send(&cebus, "old-0", "com.example.old").await;
    wait_for_id(&a, "old-0", DELIVER).await;
    assert_never(&cebus, &a, "new-0").await;

    cebus.write(
        "config.yaml",
        &broker_yaml(
            "default",
            "",
            &[("a", &exact_type("com.example.new"), &a.url())],
        ),
    );
    barrier.sync(&cebus, "default", "default", APPLY).await;

    send(&cebus, "old-1", "com.example.old").await;
    send(&cebus, "new-1", "com.example.new").await;
    wait_for_id(&a, "new-1", DELIVER).await;
    assert_never(&cebus, &a, "old-1").await;
}

#[tokio::test]
async fn removed_file_stops_its_trigger_only() {
    let (a, b, barrier) = (
        Sink::start().await,
        Sink::start().await,
        Barrier::start().await,
    );
    let cebus = Cebus::start(&broker_yaml("default", "", &[("a", "", &a.url())])).await;
    settle(&cebus, &a).await;
    cebus.write("b.yaml", &trigger_yaml("b", "", &b.url()));
    barrier.sync(&cebus, "default", "default", APPLY).await;
    send(&cebus, "both", "order").await;
    wait_for_id(&a, "both", DELIVER).await;
    wait_for_id(&b, "both", DELIVER).await;

    cebus.remove("b.yaml");
    barrier.sync(&cebus, "default", "default", APPLY).await;

    send(&cebus, "only-a", "order").await;
    wait_for_id(&a, "only-a", DELIVER).await;
    assert_never(&cebus, &b, "only-a").await;
}

/// Sends events for 3 s (12 rounds of 250 ms: longer than the 2 s the product
/// takes to apply a change, so a wrongly applied bad edit would show) and checks
/// each reaches `a` by the old filter (type `com.example.old`) and none of type
/// `com.example.new` does. Time-based on purpose: an in-process server reports
/// no rejected reload that the test could wait for.
async fn assert_old_config_holds(cebus: &Cebus, a: &Sink, tag: &str) {
    for i in 0..12 {
        let (old, new) = (format!("{tag}-old-{i}"), format!("{tag}-new-{i}"));
        send(cebus, &new, "com.example.new").await;
        send(cebus, &old, "com.example.old").await;
        wait_for_id(a, &old, DELIVER).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            count_id(a, &new),
            0,
            "the rejected edit's filter was applied: {:?}",
            received_ids(a)
        );
    }
}

#[tokio::test]
async fn bad_edits_keep_the_last_good_config() {
    let (a, barrier) = (Sink::start().await, Barrier::start().await);
    let good = broker_yaml(
        "default",
        "",
        &[("a", &exact_type("com.example.old"), &a.url())],
    );
    let cebus = Cebus::start(&good).await;

    // A YAML syntax error in the file holding the broker and the trigger.
    let broken = good.replace("  name: a\n", "  name: [a\n");
    assert_ne!(broken, good);
    cebus.write("config.yaml", &broken);
    assert_old_config_holds(&cebus, &a, "syntax").await;

    // A well-formed edit that changes the filter and adds an unknown spec field:
    // rejected as a whole, so the filter change must not apply either.
    let unknown = broker_yaml(
        "default",
        "",
        &[(
            "a",
            &format!("{}  colour: red\n", exact_type("com.example.new")),
            &a.url(),
        )],
    );
    cebus.write("config.yaml", &unknown);
    assert_old_config_holds(&cebus, &a, "unknown-field").await;

    // The watcher still works after rejected edits: a good edit applies.
    cebus.write(
        "config.yaml",
        &broker_yaml(
            "default",
            "",
            &[("a", &exact_type("com.example.new"), &a.url())],
        ),
    );
    barrier.sync(&cebus, "default", "default", APPLY).await;
    send(&cebus, "fixed-new", "com.example.new").await;
    wait_for_id(&a, "fixed-new", DELIVER).await;
}

#[tokio::test]
async fn untouched_trigger_keeps_its_in_flight_delivery() {
    let slow = Duration::from_secs(3);
    let a = Sink::start_with(Reply::status(200).delay(slow)).await;
    let (b, barrier) = (Sink::start().await, Barrier::start().await);
    let cebus = Cebus::start(&broker_yaml(
        "default",
        "",
        &[("a", &exact_type("order"), &a.url())],
    ))
    .await;
    let broker = cebus
        .server
        .registry()
        .get("default", "default")
        .expect("broker default/default runs");

    send(&cebus, "in-flight", "order").await;
    a.wait_for(1, DELIVER).await; // A's subscriber now holds the request for 3 s.
    cebus.write("b.yaml", &trigger_yaml("b", &exact_type("order"), &b.url()));
    barrier.sync(&cebus, "default", "default", APPLY).await;
    // Premise of the test, not a speed goal: B went live while A's delivery was
    // still unanswered (the stored event is acknowledged only once A is done).
    assert!(
        count_id(&a, "in-flight") == 1 && broker.pending() >= 1,
        "premise failed: A's delivery already finished before B was added"
    );
    send(&cebus, "later", "order").await;
    wait_for_id(&b, "later", DELIVER).await;
    wait_for_id(&a, "later", DELIVER).await;

    // Everything stored is delivered (nothing lost or stuck), then A saw the
    // in-flight event exactly once.
    // Nothing in flight: a redelivery of the in-flight event would have been
    // made by now (the in-memory channel holds an event until every trigger is
    // done with it).
    cebus.wait_settled("default", "default", DELIVER).await;
    assert_eq!(count_id(&a, "in-flight"), 1, "A got {:?}", received_ids(&a));
    assert_eq!(count_id(&b, "in-flight"), 0, "B must only get later events");
    let metrics = cebus.metrics().await;
    let delivered_a = metrics
        .lines()
        .find(|l| l.contains("trigger=\"a\"") && l.contains("Delivered") && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("no delivered counter for trigger a:\n{metrics}"));
    assert!(
        delivered_a.trim_end().ends_with(" 2"),
        "trigger a must have delivered exactly 2 events: {delivered_a}"
    );
}

#[tokio::test]
async fn changed_subscriber_url_moves_delivery() {
    let (one, two, barrier) = (
        Sink::start().await,
        Sink::start().await,
        Barrier::start().await,
    );
    let cebus = Cebus::start(&broker_yaml("default", "", &[("a", "", &one.url())])).await;
    send(&cebus, "to-one", "order").await;
    wait_for_id(&one, "to-one", DELIVER).await;

    cebus.write(
        "config.yaml",
        &broker_yaml("default", "", &[("a", "", &two.url())]),
    );
    barrier.sync(&cebus, "default", "default", APPLY).await;

    send(&cebus, "to-two", "order").await;
    wait_for_id(&two, "to-two", DELIVER).await;
    assert_never(&cebus, &one, "to-two").await;
    assert_eq!(count_id(&two, "to-one"), 0);
}

#[tokio::test]
async fn folder_reads_multi_document_yaml_and_yml_but_not_txt() {
    let (t1, t2, t3, txt, barrier) = (
        Sink::start().await,
        Sink::start().await,
        Sink::start().await,
        Sink::start().await,
        Barrier::start().await,
    );
    let base = Sink::start().await;
    let cebus = Cebus::start(&broker_yaml("default", "", &[("base", "", &base.url())])).await;
    settle(&cebus, &base).await;
    cebus.write(
        "triggers.yaml",
        &format!(
            "{}---\n{}",
            trigger_yaml("t1", "", &t1.url()),
            trigger_yaml("t2", "", &t2.url())
        ),
    );
    cebus.write("more.yml", &trigger_yaml("t3", "", &t3.url()));
    // A valid trigger, so it would visibly deliver if `.txt` files were read.
    cebus.write("ignored.txt", &trigger_yaml("t4", "", &txt.url()));
    barrier.sync(&cebus, "default", "default", APPLY).await;

    send(&cebus, "e1", "order").await;
    for sink in [&t1, &t2, &t3] {
        wait_for_id(sink, "e1", DELIVER).await;
    }
    assert_never(&cebus, &txt, "e1").await;
    assert!(
        txt.received().is_empty(),
        "the .txt trigger received {:?}",
        received_ids(&txt)
    );
}

#[tokio::test]
async fn removed_broker_answers_404() {
    let (a, o) = (Sink::start().await, Sink::start().await);
    let cebus = Cebus::start(&broker_yaml("default", "", &[("a", "", &a.url())])).await;
    settle(&cebus, &a).await;
    cebus.write(
        "other.yaml",
        &broker_yaml("other", "", &[("o", "", &o.url())]),
    );
    let other = cebus.broker_url("default", "other");

    // Added: the ingress starts answering 202 and delivers.
    let deadline = std::time::Instant::now() + APPLY;
    let mut probe = 0;
    loop {
        probe += 1;
        let (status, body) = post_binary(&other, &format!("up-{probe}"), "order", "{}").await;
        if status == 202 {
            break;
        }
        assert_eq!(
            status, 404,
            "unexpected answer while broker other starts: {body}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "broker other never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    o.wait_for(1, DELIVER).await;

    cebus.remove("other.yaml");
    let deadline = std::time::Instant::now() + APPLY;
    loop {
        probe += 1;
        let (status, body) = post_binary(&other, &format!("down-{probe}"), "order", "{}").await;
        if status == 404 {
            assert!(
                body.contains("default/other"),
                "404 body should name the broker: {body}"
            );
            break;
        }
        assert_eq!(
            status, 202,
            "unexpected answer while broker other stops: {body}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "broker other still answers after {APPLY:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It stays gone, and the untouched broker still works.
    let (status, _) = post_binary(&other, "gone", "order", "{}").await;
    assert_eq!(status, 404);
    send(&cebus, "still-default", "order").await;
    wait_for_id(&a, "still-default", DELIVER).await;
}

/// The loader skips a sub-folder whose name ends in `.yaml` (it is not a file);
/// its presence must not stop later edits from being applied.
#[tokio::test]
async fn folder_named_like_yaml_does_not_stop_reloads() {
    let (a, b, barrier) = (
        Sink::start().await,
        Sink::start().await,
        Barrier::start().await,
    );
    let cebus = Cebus::start(&broker_yaml("default", "", &[("a", "", &a.url())])).await;
    settle(&cebus, &a).await;
    std::fs::create_dir(cebus.dir.path().join("archive.yaml")).expect("create sub-folder");
    // Two edits one after the other, each awaited: every one must apply.
    barrier.sync(&cebus, "default", "default", APPLY).await;
    cebus.write("b.yaml", &trigger_yaml("b", "", &b.url()));
    barrier.sync(&cebus, "default", "default", APPLY).await;
    send(&cebus, "after", "order").await;
    wait_for_id(&b, "after", DELIVER).await;
}

#[tokio::test]
async fn reload_request_applies_without_waiting_for_the_poll() {
    let (a, b) = (Sink::start().await, Sink::start().await);
    let cebus = Cebus::start_with(&broker_yaml("default", "", &[("a", "", &a.url())]), |o| {
        // Longer than the test: only the request can apply the new file.
        o.reload_interval = Duration::from_secs(3600);
    })
    .await;
    cebus.write("b.yaml", &trigger_yaml("b", "", &b.url()));
    cebus.server.reloader().now();
    // The reload runs in the background: send until the new trigger has one.
    for i in 0.. {
        assert!(i < 50, "the requested reload never added trigger b");
        send(&cebus, &format!("probe-{i}"), "order").await;
        if !b.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
