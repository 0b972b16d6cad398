//! PingSource: the event of one tick (pure) and the task that waits for each fire
//! time, sends, and — when opted in — replays ticks missed while cebus was down.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cebus_api::BackoffPolicy;
use cebus_events::{Event, attr};
use cebus_triggers::DeliveryPolicy;
use jiff::Timestamp;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::schedule::Schedule;
use crate::sink::{Sender, SinkTarget};

/// `type` of every PingSource event (Knative's).
pub const PING_EVENT_TYPE: &str = "dev.knative.sources.ping";
/// Extension on replayed (catch-up) ticks: the scheduled fire time they stand for.
pub const CATCH_UP_EXTENSION: &str = "cebusscheduledtime";
/// Deliveries of one PingSource in flight at once; a tick beyond that is dropped
/// with a warning rather than queued without bound.
pub const MAX_IN_FLIGHT: usize = 16;

/// `source` of a PingSource's events (Knative's).
pub fn ping_source_attr(namespace: &str, name: &str) -> String {
    format!("/apis/v1/namespaces/{namespace}/pingsources/{name}")
}

/// Retries of a tick's delivery: 3 more attempts, 1 s, 2 s, 4 s apart; a tick
/// never retries into the next minute.
pub fn ping_policy() -> DeliveryPolicy {
    DeliveryPolicy {
        retry: 3,
        backoff: BackoffPolicy::Exponential,
        backoff_delay: Duration::from_secs(1),
        ..DeliveryPolicy::default()
    }
}

/// One PingSource, ready to run.
#[derive(Debug, Clone)]
pub struct PingPlan {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// When to fire.
    pub schedule: Schedule,
    /// `datacontenttype`.
    pub content_type: Option<String>,
    /// Data (`data`, or `dataBase64` decoded).
    pub data: Option<Bytes>,
    /// `ceOverrides.extensions`.
    pub extensions: BTreeMap<String, String>,
    /// Replay at most this many missed ticks at start (annotation `cebus.dev/catch-up`).
    pub catch_up: Option<u32>,
    /// Where events go.
    pub sink: SinkTarget,
}

impl PingPlan {
    /// The event of one tick: fresh `id`, `time` = the send time.
    pub fn event(&self, id: &str, sent: Timestamp) -> Event {
        let mut e = Event::with_required(
            id,
            &ping_source_attr(&self.namespace, &self.name),
            PING_EVENT_TYPE,
        );
        e.set(attr::TIME, rfc3339(sent));
        if let Some(ct) = &self.content_type {
            e.set(attr::DATACONTENTTYPE, ct.as_str());
        }
        for (k, v) in &self.extensions {
            e.set(k.as_str(), v.as_str());
        }
        e.set_data(self.data.clone());
        e
    }

    fn state_file(&self, dir: &std::path::Path) -> PathBuf {
        dir.join("pingsources")
            .join(&self.namespace)
            .join(format!("{}.last", self.name))
    }
}

/// RFC 3339 in UTC with microseconds, as `knativearrivaltime`.
pub fn rfc3339(t: Timestamp) -> String {
    cebus_broker::time::rfc3339(SystemTime::from(t))
}

/// Where a ping task puts its events.
#[derive(Debug, Clone)]
pub enum Output {
    /// To the plan's sink, with bounded retries.
    Sink(Sender),
    /// Into a channel (embedding and tests; the plan's sink is not used).
    Channel(tokio::sync::mpsc::UnboundedSender<Event>),
}

/// What a ping task needs besides its plan.
#[derive(Debug, Clone)]
pub struct PingContext {
    /// Where events go.
    pub output: Output,
    /// Wall time.
    pub clock: Clock,
    /// Where the last fired tick is kept (catch-up).
    pub state_dir: Option<PathBuf>,
}

/// Runs one PingSource until `cancel`.
pub async fn run(plan: Arc<PingPlan>, cx: PingContext, cancel: CancellationToken) {
    let key = format!("{}/{}", plan.namespace, plan.name);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let state = plan
        .catch_up
        .and(cx.state_dir.as_deref())
        .map(|d| plan.state_file(d));
    let mut after = cx.clock.now();
    if let (Some(max), Some(file)) = (plan.catch_up, &state) {
        if let Some(last) = on_blocking_pool(file, read_last).await.flatten() {
            let missed = plan.schedule.missed(last, after, max as usize);
            if !missed.is_empty() {
                tracing::info!(pingsource = %key, ticks = missed.len(), "replaying ticks missed while stopped");
            }
            for tick in missed {
                let mut event = plan.event(&uuid::Uuid::new_v4().to_string(), cx.clock.now());
                event.set(CATCH_UP_EXTENSION, rfc3339(tick));
                dispatch(&plan, &cx, &in_flight, event, &key);
            }
        }
        on_blocking_pool(file, move |f| write_last(f, after)).await;
    }
    loop {
        let Some(next) = plan.schedule.next_after(after) else {
            tracing::warn!(pingsource = %key, schedule = plan.schedule.text(), "schedule never fires again");
            return;
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = cx.clock.sleep_until(next) => {}
        }
        let now = cx.clock.now();
        let event = plan.event(&uuid::Uuid::new_v4().to_string(), now);
        dispatch(&plan, &cx, &in_flight, event, &key);
        if let Some(file) = &state {
            on_blocking_pool(file, move |f| write_last(f, next)).await;
        }
        // Ticks that passed while this one was late (the process was paused) are
        // not fired in a burst; the schedule resumes from now.
        after = next.max(now);
    }
}

fn dispatch(
    plan: &Arc<PingPlan>,
    cx: &PingContext,
    in_flight: &Arc<Semaphore>,
    event: Event,
    key: &str,
) {
    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
        tracing::warn!(pingsource = %key, "tick dropped: {MAX_IN_FLIGHT} deliveries still in flight");
        return;
    };
    let sender = match &cx.output {
        Output::Sink(s) => s.clone(),
        Output::Channel(tx) => {
            let _ = tx.send(event);
            return;
        }
    };
    let (target, key) = (plan.sink.clone(), key.to_owned());
    tokio::spawn(async move {
        let id = event.id().into_owned();
        if let Err(r) = sender.send(&target, event, &ping_policy()).await {
            tracing::warn!(pingsource = %key, id, sink = %target, reason = %r.message, "ping event not delivered");
        }
        drop(permit);
    });
}

/// Runs file I/O on `file` on tokio's blocking pool, off the async threads.
/// `None` if it panicked (logged).
async fn on_blocking_pool<T: Send + 'static>(
    file: &std::path::Path,
    io: impl FnOnce(&std::path::Path) -> T + Send + 'static,
) -> Option<T> {
    let file = file.to_owned();
    match tokio::task::spawn_blocking(move || io(&file)).await {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::warn!(error = %e, "PingSource state file I/O failed");
            None
        }
    }
}

fn read_last(file: &std::path::Path) -> Option<Timestamp> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn write_last(file: &std::path::Path, t: Timestamp) {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, t.to_string())?;
        std::fs::rename(&tmp, file)
    };
    if let Err(e) = write() {
        tracing::warn!(file = %file.display(), error = %e, "cannot record the last PingSource tick");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> PingPlan {
        PingPlan {
            namespace: "team".into(),
            name: "heartbeat".into(),
            schedule: Schedule::parse(None, None).unwrap(),
            content_type: Some("application/json".into()),
            data: Some(Bytes::from_static(br#"{"beat":true}"#)),
            extensions: [("env".to_owned(), "prod".to_owned())].into(),
            catch_up: None,
            sink: SinkTarget::Url("http://sink.example/".into()),
        }
    }

    #[test]
    fn tick_event() {
        let t: Timestamp = "2024-05-01T12:00:00.5Z".parse().unwrap();
        let e = plan().event("id-1", t);
        cebus_events::validate(&e).unwrap();
        let attrs: Vec<(String, String)> = e
            .attributes()
            .map(|(k, v)| (k.to_owned(), v.as_str().into_owned()))
            .collect();
        assert_eq!(
            attrs,
            [
                ("datacontenttype", "application/json"),
                ("env", "prod"),
                ("id", "id-1"),
                ("source", "/apis/v1/namespaces/team/pingsources/heartbeat"),
                ("time", "2024-05-01T12:00:00.500000Z"),
                ("type", "dev.knative.sources.ping"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(e.data().unwrap().as_ref(), br#"{"beat":true}"#);
        let mut bare = plan();
        bare.content_type = None;
        bare.data = None;
        bare.extensions.clear();
        let e = bare.event("x", t);
        assert!(e.get(attr::DATACONTENTTYPE).is_none() && e.data().is_none());
    }

    #[test]
    fn last_tick_round_trips() {
        let dir = std::env::temp_dir().join(format!("cebus-ping-{}", std::process::id()));
        let file = plan().state_file(&dir);
        assert_eq!(read_last(&file), None);
        let t: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        write_last(&file, t);
        assert_eq!(read_last(&file), Some(t));
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The runner on tokio's paused clock: fire times, time zones, DST, catch-up.
#[cfg(test)]
mod paused {
    use super::*;
    use tokio::sync::mpsc;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn plan(schedule: &str, zone: Option<&str>) -> PingPlan {
        PingPlan {
            namespace: "default".into(),
            name: "p".into(),
            schedule: Schedule::parse(Some(schedule), zone).unwrap(),
            content_type: None,
            data: None,
            extensions: BTreeMap::new(),
            catch_up: None,
            sink: SinkTarget::Url("http://unused/".into()),
        }
    }

    /// Runs `plan` from wall time `start` and returns the `time` of the first `n`
    /// events (the paused clock jumps from one fire time to the next).
    async fn fire_times(
        plan: PingPlan,
        start: &str,
        state_dir: Option<PathBuf>,
        n: usize,
    ) -> Vec<Event> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cx = PingContext {
            output: Output::Channel(tx),
            clock: Clock::starting_at(ts(start)),
            state_dir,
        };
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(Arc::new(plan), cx, cancel.clone()));
        let mut out = Vec::new();
        while out.len() < n {
            let e = tokio::time::timeout(Duration::from_secs(3 * 86_400), rx.recv())
                .await
                .expect("no tick within three days")
                .expect("ping task ended");
            out.push(e);
        }
        cancel.cancel();
        task.await.unwrap();
        out
    }

    fn times(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| e.get_str(attr::TIME).unwrap().into_owned())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn every_minute_in_utc() {
        let events = fire_times(plan("* * * * *", None), "2024-01-01T00:00:30Z", None, 3).await;
        assert_eq!(
            times(&events),
            [
                "2024-01-01T00:01:00.000000Z",
                "2024-01-01T00:02:00.000000Z",
                "2024-01-01T00:03:00.000000Z"
            ]
        );
        let ids: std::collections::HashSet<_> =
            events.iter().map(|e| e.id().into_owned()).collect();
        assert_eq!(ids.len(), 3, "a fresh id per tick");
        assert!(events.iter().all(|e| e.ty() == PING_EVENT_TYPE));
    }

    #[tokio::test(start_paused = true)]
    async fn seconds_and_zones() {
        let events = fire_times(
            plan("*/20 * * * * *", None),
            "2024-01-01T00:00:05Z",
            None,
            3,
        )
        .await;
        assert_eq!(
            times(&events),
            [
                "2024-01-01T00:00:20.000000Z",
                "2024-01-01T00:00:40.000000Z",
                "2024-01-01T00:01:00.000000Z"
            ]
        );
        // 09:00 in Tokyo is 00:00 UTC.
        let events = fire_times(
            plan("0 9 * * *", Some("Asia/Tokyo")),
            "2024-01-01T01:00:00Z",
            None,
            2,
        )
        .await;
        assert_eq!(
            times(&events),
            ["2024-01-02T00:00:00.000000Z", "2024-01-03T00:00:00.000000Z"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn daylight_saving_gap_and_overlap() {
        // 02:30 does not exist in New York on 2024-03-10: fires at 03:00 EDT, then
        // 02:30 EDT the next day.
        let events = fire_times(
            plan("30 2 * * *", Some("America/New_York")),
            "2024-03-10T06:00:00Z",
            None,
            2,
        )
        .await;
        assert_eq!(
            times(&events),
            ["2024-03-10T07:00:00.000000Z", "2024-03-11T06:30:00.000000Z"]
        );
        // 01:30 happens twice on 2024-11-03: fires once.
        let events = fire_times(
            plan("CRON_TZ=America/New_York 30 1 * * *", None),
            "2024-11-03T05:00:00Z",
            None,
            2,
        )
        .await;
        assert_eq!(
            times(&events),
            ["2024-11-03T05:30:00.000000Z", "2024-11-04T06:30:00.000000Z"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn catch_up_replays_the_last_missed_ticks_once() {
        let dir = std::env::temp_dir().join(format!("cebus-catchup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut p = plan("* * * * *", None);
        p.catch_up = Some(3);
        // Last tick 10 minutes before this start.
        write_last(&p.state_file(&dir), ts("2024-01-01T00:00:00Z"));
        let events = fire_times(p.clone(), "2024-01-01T00:10:30Z", Some(dir.clone()), 4).await;
        let scheduled: Vec<_> = events
            .iter()
            .map(|e| e.get_str(CATCH_UP_EXTENSION).map(|v| v.into_owned()))
            .collect();
        assert_eq!(
            scheduled,
            [
                Some("2024-01-01T00:08:00.000000Z".to_owned()),
                Some("2024-01-01T00:09:00.000000Z".to_owned()),
                Some("2024-01-01T00:10:00.000000Z".to_owned()),
                None
            ]
        );
        assert_eq!(times(&events)[3], "2024-01-01T00:11:00.000000Z");
        assert_eq!(
            read_last(&p.state_file(&dir)),
            Some(ts("2024-01-01T00:11:00Z"))
        );
        // Restarted right away: nothing was missed, nothing is replayed.
        let events = fire_times(p.clone(), "2024-01-01T00:11:10Z", Some(dir.clone()), 1).await;
        assert!(events[0].get(CATCH_UP_EXTENSION).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
