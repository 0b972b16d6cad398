//! Reload never loses an accepted event: a config file saved in place (truncated,
//! then written after a pause, again and again) while producers send events under
//! load. Every event answered 202 reaches the subscriber exactly once, and the
//! broker never vanishes (no 404) while its file is momentarily empty.
//!
//! Counts are exact and by event id; no assertion is about speed (the deadline
//! only bounds how long a failing run waits).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cebus_e2e::{Cebus, Sink, broker_yaml, received_ids};

/// Producers sending at once.
const PRODUCERS: usize = 4;
/// In-place saves of the file under test.
const SAVES: usize = 15;
/// How long a saved file stays empty between its truncation and its write: longer
/// than the watcher's poll (100 ms in these tests), so the watcher sees it empty.
const EMPTY_FOR: Duration = Duration::from_millis(150);
/// Between two saves.
const BETWEEN: Duration = Duration::from_millis(100);
/// Every load event's id starts with this.
const LOAD_PREFIX: &str = "load-";
/// Bounds the wait for deliveries in a failing run (not a speed goal).
const DELIVER: Duration = Duration::from_secs(20);

/// Saves `yaml` to `path` in place, as an editor without atomic saves does:
/// truncate, pause for [`EMPTY_FOR`], then write.
async fn save_in_place(path: &Path, yaml: &str) {
    let mut file = std::fs::File::create(path).expect("truncate config");
    tokio::time::sleep(EMPTY_FOR).await;
    file.write_all(yaml.as_bytes()).expect("write config");
    file.sync_all().expect("sync config");
}

/// A Trigger of broker `default` in a file of its own.
fn trigger_yaml(name: &str, url: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {name}\nspec:\n  broker: default\n  subscriber:\n    uri: {url}\n"
    )
}

/// Sends events to `url` until `stop`; returns every answer by event id.
async fn produce(url: String, producer: usize, stop: Arc<AtomicBool>) -> Vec<(String, u16)> {
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let id = format!("{LOAD_PREFIX}{producer}-{i}");
        let status = client
            .post(&url)
            .header("ce-specversion", "1.0")
            .header("ce-id", &id)
            .header("ce-source", "/e2e/reload-safety")
            .header("ce-type", "order")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("post to cebus")
            .status()
            .as_u16();
        answers.push((id, status));
    }
    answers
}

/// Runs the producers while `file` (holding `yaml`) is saved in place [`SAVES`]
/// times, then checks: every answer was 202 and every event was delivered to
/// `sink` exactly once.
async fn rewrite_under_load(cebus: &Cebus, sink: &Sink, file: &str, yaml: &str) {
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            tokio::spawn(produce(
                cebus.broker_url("default", "default"),
                p,
                stop.clone(),
            ))
        })
        .collect();
    let path = cebus.dir.path().join(file);
    for _ in 0..SAVES {
        save_in_place(&path, yaml).await;
        tokio::time::sleep(BETWEEN).await;
    }
    stop.store(true, Ordering::Release);
    let mut answers = Vec::new();
    for p in producers {
        answers.extend(p.await.expect("producer task"));
    }

    let refused: Vec<_> = answers.iter().filter(|(_, s)| *s != 202).collect();
    assert!(
        refused.is_empty(),
        "{} of {} events were refused while {file} was saved in place (the broker must \
         not vanish): {:?}",
        refused.len(),
        answers.len(),
        &refused[..refused.len().min(10)]
    );
    // Wait until the subscriber has as many requests as events accepted (or
    // the bound passes), then count by id.
    let accepted = answers.len();
    let deadline = tokio::time::Instant::now() + DELIVER;
    while load_ids(sink).len() < accepted && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in load_ids(sink) {
        *counts.entry(id).or_default() += 1;
    }
    let lost: Vec<&str> = answers
        .iter()
        .filter(|(id, _)| !counts.contains_key(id))
        .map(|(id, _)| id.as_str())
        .collect();
    let twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        lost.is_empty() && twice.is_empty(),
        "of {accepted} events answered 202, {} were never delivered (first: {:?}) and {} \
         delivered more than once ({:?})",
        lost.len(),
        &lost[..lost.len().min(10)],
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    assert_eq!(
        counts.len(),
        accepted,
        "the subscriber got events nobody sent"
    );
}

#[tokio::test]
async fn trigger_file_saved_in_place_under_load_loses_no_accepted_event() {
    let sink = Sink::start().await;
    let cebus = Cebus::start(&broker_yaml("default", "", &[])).await;
    let trigger = trigger_yaml("a", &sink.url());
    cebus.write("trigger.yaml", &trigger);
    wait_until_live(&cebus, &sink).await;
    rewrite_under_load(&cebus, &sink, "trigger.yaml", &trigger).await;
}

#[tokio::test]
async fn broker_file_saved_in_place_under_load_loses_no_accepted_event() {
    let sink = Sink::start().await;
    let broker = broker_yaml("default", "", &[]);
    let cebus = Cebus::start(&broker).await;
    cebus.write("trigger.yaml", &trigger_yaml("a", &sink.url()));
    wait_until_live(&cebus, &sink).await;
    rewrite_under_load(&cebus, &sink, "config.yaml", &broker).await;
}

#[tokio::test]
async fn one_file_saved_in_place_under_load_loses_no_accepted_event() {
    let sink = Sink::start().await;
    let both = broker_yaml("default", "", &[("a", "", &sink.url())]);
    let cebus = Cebus::start(&both).await;
    wait_until_live(&cebus, &sink).await;
    rewrite_under_load(&cebus, &sink, "config.yaml", &both).await;
}

/// Posts warm-up events until one reaches `sink`: the trigger is live before the
/// load starts. (Warm-ups are not counted: [`load_ids`] keeps the load's own.)
async fn wait_until_live(cebus: &Cebus, sink: &Sink) {
    let url = cebus.broker_url("default", "default");
    for i in 0.. {
        assert!(i < 100, "the trigger never went live");
        let (status, body) = cebus_e2e::post_binary(&url, &format!("warm-{i}"), "warm", "{}").await;
        assert_eq!(status, 202, "warm-up refused: {body}");
        if !sink.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ids of the producers' events `sink` received (warm-ups left out).
fn load_ids(sink: &Sink) -> Vec<String> {
    received_ids(sink)
        .into_iter()
        .filter(|id| id.starts_with(LOAD_PREFIX))
        .collect()
}
