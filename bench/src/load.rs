//! The load generator: closed loop (each connection sends as soon as its last
//! response arrived: the maximum rate) or open loop (a fixed arrival rate; latency
//! counts from each event's intended send time, so queueing in the system under
//! test cannot hide behind a stalled client — no coordinated omission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http::{HeaderValue, StatusCode};
use tokio::sync::Semaphore;

use crate::client::{Conn, host_header};
use crate::event::{EventShape, nanos_since_epoch};
use crate::hist::Recorder;
use crate::pace::Schedule;

/// How events are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As fast as responses come back.
    Closed,
    /// A fixed number of events per second.
    Open(Schedule),
}

impl Mode {
    /// `closed` or `open N/s`.
    pub fn label(&self) -> String {
        match self {
            Mode::Closed => "closed".into(),
            Mode::Open(s) => format!("open {}/s", s.rate()),
        }
    }
}

/// One run of the generator.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Where to send.
    pub addr: SocketAddr,
    /// Request path.
    pub path: String,
    /// Keep-alive connections.
    pub connections: usize,
    /// Pacing.
    pub mode: Mode,
    /// What to send.
    pub shape: Arc<EventShape>,
    /// When sending starts.
    pub start: Instant,
    /// When counting starts (after the warm-up).
    pub window_start: Instant,
    /// When sending stops (and counting ends).
    pub end: Instant,
}

/// What the generator saw. Counts are of events sent inside the window unless
/// the name says otherwise.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Events sent (first attempts).
    pub sent: u64,
    /// Events answered 2xx.
    pub accepted: u64,
    /// 2xx answers over the whole run, warm-up included (for drain accounting).
    pub accepted_all: u64,
    /// 503 answers (backpressure); each retry after one counts again.
    pub backpressure: u64,
    /// Other non-2xx answers.
    pub other_status: u64,
    /// Connection or protocol errors.
    pub errors: u64,
    /// Open loop: events intended inside the window that were never sent
    /// because every connection was still busy when the run ended.
    pub missed: u64,
    /// Time from (intended) send to response, in ns.
    pub ack: Option<Histogram<u64>>,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    accepted: AtomicU64,
    accepted_all: AtomicU64,
    backpressure: AtomicU64,
    other_status: AtomicU64,
    errors: AtomicU64,
}

struct Shared {
    plan: LoadPlan,
    host: HeaderValue,
    seq: AtomicU64,
    counters: Counters,
    ack: Recorder,
}

/// Pause after a 503 before the closed loop retries the same event.
const BACKPRESSURE_PAUSE: Duration = Duration::from_millis(1);

/// How long after the end open-loop events already due may still be sent.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// Runs the plan to its end and returns what was seen. `progress` is bumped for
/// every 2xx answer (for a live rate display).
pub async fn run(plan: LoadPlan, progress: Arc<AtomicU64>) -> anyhow::Result<LoadStats> {
    let connections = plan.connections.max(1);
    let shared = Arc::new(Shared {
        host: host_header(plan.addr),
        seq: AtomicU64::new(0),
        counters: Counters::default(),
        ack: Recorder::new(connections.min(16)),
        plan,
    });
    // Connect everything before the start so set-up is not measured.
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Conn::connect(shared.plan.addr).await?);
    }
    let mut workers = tokio::task::JoinSet::new();
    let mut missed = 0;
    match shared.plan.mode {
        Mode::Closed => {
            for (id, conn) in conns.into_iter().enumerate() {
                workers.spawn(closed_worker(shared.clone(), id, conn, progress.clone()));
            }
            while workers.join_next().await.is_some() {}
        }
        Mode::Open(schedule) => {
            let permits = Arc::new(Semaphore::new(0));
            let pacer = {
                let (permits, start, end) = (permits.clone(), shared.plan.start, shared.plan.end);
                std::thread::spawn(move || pace(schedule, start, end, &permits))
            };
            for (id, conn) in conns.into_iter().enumerate() {
                workers.spawn(open_worker(
                    shared.clone(),
                    id,
                    conn,
                    schedule,
                    permits.clone(),
                    progress.clone(),
                ));
            }
            while workers.join_next().await.is_some() {}
            let _ = pacer.join();
            let p = &shared.plan;
            let intended_in_window = schedule.total(dur_ns(p.end - p.start))
                - schedule.total(dur_ns(p.window_start - p.start));
            missed =
                intended_in_window.saturating_sub(shared.counters.sent.load(Ordering::Relaxed));
        }
    }
    let c = &shared.counters;
    let ack = shared.ack.take();
    Ok(LoadStats {
        sent: c.sent.load(Ordering::Relaxed),
        accepted: c.accepted.load(Ordering::Relaxed),
        accepted_all: c.accepted_all.load(Ordering::Relaxed),
        backpressure: c.backpressure.load(Ordering::Relaxed),
        other_status: c.other_status.load(Ordering::Relaxed),
        errors: c.errors.load(Ordering::Relaxed),
        missed,
        ack: (!ack.is_empty()).then_some(ack),
    })
}

fn dur_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The pacer thread: releases one permit per due event, sleeping (precise to
/// tens of µs, unlike tokio's 1 ms timer wheel) until the next is due; closes
/// the semaphore at the end so idle workers stop.
fn pace(schedule: Schedule, start: Instant, end: Instant, permits: &Semaphore) {
    let span = dur_ns(end - start);
    let total = schedule.total(span);
    let mut released = 0u64;
    loop {
        let now = Instant::now();
        if now >= end || released >= total {
            break;
        }
        let due = schedule
            .due(dur_ns(now.saturating_duration_since(start)))
            .min(total);
        if due > released {
            permits.add_permits((due - released) as usize);
            released = due;
        }
        let next = start + Duration::from_nanos(schedule.offset_ns(released));
        let wake = next.min(end);
        if let Some(wait) = wake.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    // Events due just before the end may still be waiting for a free connection:
    // give them a grace period, then stop the workers still waiting for a permit
    // (what is left then counts as missed).
    if let Some(wait) = (end + CLOSE_GRACE).checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    permits.close();
}

async fn closed_worker(shared: Arc<Shared>, id: usize, mut conn: Conn, progress: Arc<AtomicU64>) {
    let p = &shared.plan;
    tokio::time::sleep_until(p.start.into()).await;
    loop {
        let sent = Instant::now();
        if sent >= p.end {
            return;
        }
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        let in_window = sent >= p.window_start;
        if in_window {
            shared.counters.sent.fetch_add(1, Ordering::Relaxed);
        }
        // Retries keep the original send time: backpressure waits count as latency.
        loop {
            let req = p
                .shape
                .request(&shared.host, &p.path, seq, nanos_since_epoch(sent));
            let outcome = conn.send(req).await;
            let done = Instant::now();
            match outcome {
                Ok(s) if s.is_success() => {
                    shared.on_accepted(id, in_window, sent, done, &progress);
                    break;
                }
                Ok(StatusCode::SERVICE_UNAVAILABLE) => {
                    if in_window {
                        shared.counters.backpressure.fetch_add(1, Ordering::Relaxed);
                    }
                    if done >= p.end {
                        return;
                    }
                    tokio::time::sleep(BACKPRESSURE_PAUSE).await;
                }
                Ok(_) => {
                    if in_window {
                        shared.counters.other_status.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                Err(_) => {
                    shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                    match reconnect(&shared, p.end).await {
                        Some(c) => conn = c,
                        None => return,
                    }
                    break;
                }
            }
        }
    }
}

async fn open_worker(
    shared: Arc<Shared>,
    id: usize,
    mut conn: Conn,
    schedule: Schedule,
    permits: Arc<Semaphore>,
    progress: Arc<AtomicU64>,
) {
    let p = &shared.plan;
    loop {
        match permits.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return, // closed: the run is over
        }
        // Permits are released in order, so event `k` is already due.
        let k = shared.seq.fetch_add(1, Ordering::Relaxed);
        let intended = p.start + Duration::from_nanos(schedule.offset_ns(k));
        let in_window = intended >= p.window_start && intended < p.end;
        if in_window {
            shared.counters.sent.fetch_add(1, Ordering::Relaxed);
        }
        let req = p
            .shape
            .request(&shared.host, &p.path, k, nanos_since_epoch(intended));
        let outcome = conn.send(req).await;
        let done = Instant::now();
        match outcome {
            Ok(s) if s.is_success() => shared.on_accepted(id, in_window, intended, done, &progress),
            // Open loop does not retry: a rejected event is counted, not re-sent.
            Ok(StatusCode::SERVICE_UNAVAILABLE) if in_window => {
                shared.counters.backpressure.fetch_add(1, Ordering::Relaxed);
            }
            Ok(s) if in_window && s != StatusCode::SERVICE_UNAVAILABLE => {
                shared.counters.other_status.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(_) => {
                shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                match reconnect(&shared, p.end).await {
                    Some(c) => conn = c,
                    None => return,
                }
            }
        }
    }
}

impl Shared {
    fn on_accepted(
        &self,
        id: usize,
        in_window: bool,
        sent: Instant,
        done: Instant,
        progress: &AtomicU64,
    ) {
        self.counters.accepted_all.fetch_add(1, Ordering::Relaxed);
        progress.fetch_add(1, Ordering::Relaxed);
        if in_window {
            self.counters.accepted.fetch_add(1, Ordering::Relaxed);
            self.ack
                .record(id, dur_ns(done.saturating_duration_since(sent)));
        }
    }
}

async fn reconnect(shared: &Shared, end: Instant) -> Option<Conn> {
    while Instant::now() < end {
        if let Ok(c) = Conn::connect(shared.plan.addr).await {
            return Some(c);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}
