//! The scenarios: what each one configures, sends and reports. Every throughput
//! or latency scenario measures `direct` (generator straight to the sink) in the
//! same run, so each broker figure sits beside the machine's own limit; `e2e-1`
//! also measures `proxy` (accept and forward, nothing else: the ceiling of any
//! two-hop path).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cebus::{Cebus, CebusOptions, INGRESS_PATH};
use crate::client::{Conn, host_header};
use crate::event::EventShape;
use crate::hist::LatencySummary;
use crate::load::{self, LoadPlan, Mode};
use crate::pace::Schedule;
use crate::proxy::Proxy;
use crate::report::{Report, Row, Settings, Target};
use crate::sink::{Sink, SinkReply};
use crate::yaml::{self, Backend, BrokerSpec, TriggerSpec};

/// Trigger counts of `fanout-N`.
pub const FANOUT_COUNTS: [usize; 5] = [1, 10, 100, 1_000, 10_000];
/// Trigger counts of `fanout-all-N`.
pub const FANOUT_ALL_COUNTS: [usize; 3] = [10, 100, 1_000];
/// Arrival rates of `latency`, events/s.
pub const LATENCY_RATES: [u64; 3] = [1_000, 10_000, 25_000];
/// Trigger counts of `memory`.
pub const MEMORY_COUNTS: [usize; 4] = [0, 1_000, 10_000, 100_000];
/// Trigger changes applied by `memory`.
const CHANGED_TRIGGERS: usize = 1_000;
/// How long an idle broker settles before its RSS is read: mimalloc returns the
/// pages freed after loading the config a second or so later (10,000 triggers
/// in one file: 108 MiB at 1 s, 82 MiB from 2 s on), and idle means that
/// steady state.
const IDLE_SETTLE: Duration = Duration::from_secs(3);

/// One scenario, parsed from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Generator straight to the sink.
    Direct,
    /// One broker, no matching trigger: accepted events/s and ack latency.
    IngressOnly,
    /// One trigger with an exact `type` filter: delivered events/s.
    E2e1,
    /// N triggers with distinct types, each event matching one.
    Fanout(Vec<usize>),
    /// N triggers all matching every event.
    FanoutAll(Vec<usize>),
    /// One trigger at fixed arrival rates.
    Latency(Vec<u64>),
    /// Idle RSS by trigger count, and the time to apply trigger changes.
    Memory(Vec<usize>),
}

/// Every scenario name, with what it measures (for `cebus-bench list`).
pub const NAMES: &[(&str, &str)] = &[
    (
        "direct",
        "generator straight to the sink: the machine's own limit",
    ),
    (
        "ingress-only",
        "one broker, no matching trigger: accepted events/s, ack p99",
    ),
    (
        "e2e-1",
        "one trigger with an exact type filter: delivered events/s (beside direct and a bare proxy)",
    ),
    (
        "fanout-N",
        "N = 1, 10, 100, 1000, 10000 triggers, each event matching one (fanout-100: one N)",
    ),
    (
        "fanout-all-N",
        "N = 10, 100, 1000 triggers all matching: deliveries/s (fanout-all-10: one N)",
    ),
    (
        "latency",
        "one trigger, open loop at 1000/10000/25000 events/s (--rate R: one rate)",
    ),
    (
        "memory",
        "idle RSS with 0/1000/10000/100000 triggers; time to apply 1000 trigger changes",
    ),
];

/// Parses `[kafka-|nats-]<scenario>`.
pub fn parse(name: &str) -> Result<(Backend, Kind), String> {
    let (backend, rest) = Backend::split(name);
    let count = |s: &str, all: &[usize]| -> Result<Vec<usize>, String> {
        if s == "N" {
            Ok(all.to_vec())
        } else {
            s.parse()
                .map(|n| vec![n])
                .map_err(|_| format!("scenario {name:?}: expected N or a number after the dash"))
        }
    };
    let kind = match rest {
        "direct" => Kind::Direct,
        "ingress-only" => Kind::IngressOnly,
        "e2e-1" => Kind::E2e1,
        "latency" => Kind::Latency(LATENCY_RATES.to_vec()),
        "memory" => Kind::Memory(MEMORY_COUNTS.to_vec()),
        s if s.starts_with("fanout-all-") => {
            Kind::FanoutAll(count(&s["fanout-all-".len()..], &FANOUT_ALL_COUNTS)?)
        }
        s if s.starts_with("fanout-") => {
            Kind::Fanout(count(&s["fanout-".len()..], &FANOUT_COUNTS)?)
        }
        _ => {
            let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown scenario {name:?}; one of: {} (optionally prefixed kafka- or nats-)",
                known.join(", ")
            ));
        }
    };
    Ok((backend, kind))
}

/// Everything a scenario run is configured with.
#[derive(Debug, Clone)]
pub struct Options {
    /// Measured window per case.
    pub duration: Duration,
    /// Warm-up before each window (sent but not counted).
    pub warmup: Duration,
    /// Generator connections (`None`: 32 closed loop, 64 open loop).
    pub connections: Option<usize>,
    /// Event data size, bytes.
    pub size: usize,
    /// Open loop at this rate instead of closed loop (for `latency`: the one rate).
    pub rate: Option<u64>,
    /// Trigger counts instead of the scenario's own list.
    pub counts: Option<Vec<usize>>,
    /// How to start cebus.
    pub cebus: CebusOptions,
    /// How the sink answers.
    pub sink: SinkReply,
    /// Broker class annotation instead of the backend's.
    pub broker_class: Option<String>,
    /// Longest wait for queued deliveries after sending stops.
    pub drain_timeout: Duration,
}

impl Options {
    fn connections(&self, mode: Mode) -> usize {
        self.connections.unwrap_or(match mode {
            Mode::Closed => 32,
            Mode::Open(_) => 64,
        })
    }

    fn mode(&self) -> Mode {
        self.rate
            .map_or(Mode::Closed, |r| Mode::Open(Schedule::new(r)))
    }
}

/// One broker configuration and the load sent to it.
#[derive(Clone)]
struct Case {
    label: String,
    triggers: Vec<TriggerSpec>,
    /// Event types, rotated by sequence number.
    types: Vec<String>,
    /// Deliveries each accepted event causes.
    matches: u64,
    mode: Mode,
}

impl Case {
    fn one_trigger(label: String, mode: Mode) -> Case {
        Case {
            label,
            triggers: vec![TriggerSpec::numbered(0)],
            types: vec!["bench.t0".into()],
            matches: 1,
            mode,
        }
    }
}

/// Runs scenario `name` once.
pub async fn run(name: &str, opts: &Options) -> anyhow::Result<Report> {
    let (backend, kind) = parse(name).map_err(anyhow::Error::msg)?;
    let broker = BrokerSpec {
        class: opts
            .broker_class
            .clone()
            .or_else(|| backend.broker_class().map(str::to_owned)),
        nats_url: match backend {
            Backend::Nats => Some(std::env::var("NATS_URL").map_err(|_| {
                anyhow::anyhow!(
                    "nats- scenarios need NATS_URL: scripts/nats.sh start && \
                     eval \"$(scripts/nats.sh env)\""
                )
            })?),
            _ => None,
        },
        kafka_bootstrap: match backend {
            Backend::Kafka => Some(std::env::var("KAFKA_BOOTSTRAP").map_err(|_| {
                anyhow::anyhow!(
                    "kafka- scenarios need KAFKA_BOOTSTRAP: scripts/kafka.sh start && \
                     eval \"$(scripts/kafka.sh env)\""
                )
            })?),
            _ => None,
        },
        kafka_topic: (backend == Backend::Kafka).then(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            format!("cebus-bench-{nanos}")
        }),
    };
    let mode = opts.mode();
    let mut report = Report {
        scenario: name.to_owned(),
        backend: backend.name().to_owned(),
        settings: Settings {
            duration_s: opts.duration.as_secs_f64(),
            warmup_s: opts.warmup.as_secs_f64(),
            connections: opts.connections(mode),
            size_bytes: opts.size,
            channel_capacity: opts.cebus.channel_capacity,
            max_in_flight: opts.cebus.max_in_flight,
            broker_workers: opts.cebus.workers,
            runs: 1,
        },
        rows: Vec::new(),
        notes: vec![
            "generator, sink and broker share this machine's cores; figures from a busy machine are noisy"
                .into(),
        ],
    };
    let cases: Vec<Case> = match &kind {
        Kind::Memory(counts) => {
            let counts = opts.counts.clone().unwrap_or_else(|| counts.clone());
            memory(opts, &broker, &counts, &mut report).await?;
            return Ok(report);
        }
        Kind::Direct => Vec::new(),
        Kind::IngressOnly => vec![Case {
            label: "no match".into(),
            triggers: vec![TriggerSpec {
                name: "nomatch".into(),
                event_type: "bench.nomatch".into(),
            }],
            types: vec!["bench.t0".into()],
            matches: 0,
            mode,
        }],
        Kind::E2e1 => vec![Case::one_trigger("1 trigger".into(), mode)],
        Kind::Fanout(counts) => opts
            .counts
            .as_ref()
            .unwrap_or(counts)
            .iter()
            .map(|&n| Case {
                label: format!("N={n}"),
                triggers: (0..n).map(TriggerSpec::numbered).collect(),
                types: (0..n).map(|i| format!("bench.t{i}")).collect(),
                matches: 1,
                mode,
            })
            .collect(),
        Kind::FanoutAll(counts) => opts
            .counts
            .as_ref()
            .unwrap_or(counts)
            .iter()
            .map(|&n| Case {
                label: format!("N={n} all"),
                triggers: (0..n)
                    .map(|i| TriggerSpec {
                        name: yaml::trigger_name(i),
                        event_type: "bench.all".into(),
                    })
                    .collect(),
                types: vec!["bench.all".into()],
                matches: n as u64,
                mode,
            })
            .collect(),
        Kind::Latency(rates) => {
            let rates = opts.rate.map_or_else(|| rates.clone(), |r| vec![r]);
            rates
                .iter()
                .map(|&r| Case::one_trigger(format!("{r}/s"), Mode::Open(Schedule::new(r))))
                .collect()
        }
    };
    if let Kind::Latency(_) = kind {
        report.settings.connections = opts.connections(Mode::Open(Schedule::new(1)));
        report.notes.push(
            "open loop: latency counts from each event's intended send time (no coordinated omission)"
                .into(),
        );
    }
    let names = ["direct".to_owned(), "proxy".to_owned()].into_iter().chain(
        cases
            .iter()
            .flat_map(|c| c.triggers.iter().map(|t| t.name.clone())),
    );
    let sink = Sink::start(opts.sink, names).await?;
    // Direct first, once per distinct load, then the broker cases.
    let mut direct_done: Vec<Mode> = Vec::new();
    let direct_modes: Vec<Mode> = if cases.is_empty() {
        vec![mode]
    } else {
        cases.iter().map(|c| c.mode).collect()
    };
    for m in direct_modes {
        if direct_done.contains(&m) {
            continue;
        }
        direct_done.push(m);
        let case = Case {
            label: "direct".into(),
            triggers: Vec::new(),
            types: vec!["bench.t0".into()],
            matches: 1,
            mode: m,
        };
        let row = phase(opts, &sink, Under::Direct, &case).await?;
        report.rows.push(row);
        if kind == Kind::E2e1 {
            report.rows.push(proxy_phase(opts, &sink, &case).await?);
        }
        if let Kind::Latency(_) = kind {
            // Keep each rate's direct row next to its broker row.
            let broker_case = cases.iter().find(|c| c.mode == m).expect("a case per mode");
            let row = broker_phase(opts, &broker, &sink, broker_case).await?;
            report.rows.push(row);
        }
    }
    if !matches!(kind, Kind::Latency(_)) {
        for case in &cases {
            let row = broker_phase(opts, &broker, &sink, case).await?;
            report.rows.push(row);
        }
    }
    if sink.unknown() > 0 {
        report.notes.push(format!(
            "{} deliveries reached paths no trigger was generated for",
            sink.unknown()
        ));
    }
    report.compare_to_direct();
    Ok(report)
}

async fn broker_phase(
    opts: &Options,
    broker: &BrokerSpec,
    sink: &Sink,
    case: &Case,
) -> anyhow::Result<Row> {
    let yaml = yaml::config(broker, &case.triggers, &sink.base_url());
    status(&format!(
        "starting cebus with {} triggers",
        case.triggers.len()
    ));
    let (cebus, ready) = Cebus::start(&opts.cebus, &yaml).await?;
    let result = match first_delivery(opts, sink, &cebus, case).await {
        Ok(()) => phase(opts, sink, Under::Broker(&cebus), case).await,
        Err(e) => Err(e),
    };
    let rss = cebus.rss_kib().ok();
    cebus.stop().await;
    let mut row = result?;
    row.ready_ms = Some(ready.as_secs_f64() * 1e3);
    row.rss_kib = rss;
    Ok(row)
}

/// Waits until one event went all the way through before the load starts: a
/// durable channel's consumer joins its group after `/readyz` already answers,
/// and a backlog built meanwhile would be measured as latency of the window.
/// Cases whose events match no trigger have nothing to wait for.
async fn first_delivery(
    opts: &Options,
    sink: &Sink,
    cebus: &Cebus,
    case: &Case,
) -> anyhow::Result<()> {
    if case.matches == 0 {
        return Ok(());
    }
    let before = sink.total();
    let mut conn = Conn::connect(cebus.addr()).await?;
    let host = host_header(cebus.addr());
    let shape = EventShape::try_new(&case.types[..1], 0)?;
    conn.send(shape.request(&host, INGRESS_PATH, 0, 0)).await?;
    wait_for(|| sink.total() > before, opts.cebus.ready_timeout)
        .await
        .with_context(|| format!("no first delivery:\n{}", cebus.log_tail()))
}

/// The `proxy` baseline with `direct`'s load: the same events, through
/// `cebus-bench proxy` to the sink's `/proxy`.
async fn proxy_phase(opts: &Options, sink: &Sink, direct: &Case) -> anyhow::Result<Row> {
    status("starting the proxy baseline");
    let proxy = Proxy::start(sink.addr()).await?;
    let case = Case {
        label: "proxy".into(),
        ..direct.clone()
    };
    let row = phase(opts, sink, Under::Proxy(&proxy), &case).await;
    proxy.stop().await;
    row
}

/// What a phase sends through.
#[derive(Clone, Copy)]
enum Under<'a> {
    /// Nothing: straight to the sink.
    Direct,
    /// The accept-and-forward baseline.
    Proxy(&'a Proxy),
    /// A `cebus run`.
    Broker(&'a Cebus),
}

impl Under<'_> {
    fn target(self) -> Target {
        match self {
            Under::Direct => Target::Direct,
            Under::Proxy(_) => Target::Proxy,
            Under::Broker(_) => Target::Broker,
        }
    }

    /// CPU seconds of the process under test (none for `direct`).
    fn cpu_seconds(self) -> Option<f64> {
        match self {
            Under::Direct => None,
            Under::Proxy(p) => p.cpu_seconds().ok(),
            Under::Broker(c) => c.cpu_seconds().ok(),
        }
    }
}

/// Sends one case's load (to the sink, or through a proxy or `cebus`) and
/// measures it.
async fn phase(opts: &Options, sink: &Sink, under: Under<'_>, case: &Case) -> anyhow::Result<Row> {
    let target = under.target();
    let (addr, path) = match under {
        Under::Broker(c) => (c.addr(), INGRESS_PATH.to_owned()),
        Under::Proxy(p) => (p.addr(), INGRESS_PATH.to_owned()),
        Under::Direct => (sink.addr(), "/direct".to_owned()),
    };
    status(&format!(
        "{} {}: {} for {:?} after {:?} warm-up",
        target_label(target),
        case.label,
        case.mode.label(),
        opts.duration,
        opts.warmup
    ));
    let shape = Arc::new(EventShape::try_new(&case.types, opts.size)?);
    // Connecting happens before `start`; leave it time so the schedule starts on time.
    let start = Instant::now() + Duration::from_millis(200);
    let window_start = start + opts.warmup;
    let end = window_start + opts.duration;
    let base = sink.total();
    sink.set_window(window_start, end);
    let progress = Arc::new(AtomicU64::new(0));
    let plan = LoadPlan {
        addr,
        path,
        connections: opts.connections(case.mode),
        mode: case.mode,
        shape,
        start,
        window_start,
        end,
    };
    let generator = tokio::spawn(load::run(plan, progress.clone()));

    let bar = progress_bar(opts.warmup + opts.duration, &case.label);
    let cpu = || under.cpu_seconds();
    let mut marks = Marks::default();
    let mut last = (Instant::now(), 0u64);
    loop {
        let now = Instant::now();
        if marks.cpu0.is_none() && marks.sink0.is_none() && now >= window_start {
            marks.sink0 = Some(sink.total());
            marks.cpu0 = cpu();
            marks.own0 = crate::cebus::own_cpu_seconds();
        }
        if now >= end {
            marks.sink1 = sink.total();
            marks.cpu1 = cpu();
            marks.own1 = crate::cebus::own_cpu_seconds();
            break;
        }
        if generator.is_finished() {
            break; // failed early; the error surfaces below
        }
        let acked = progress.load(Ordering::Relaxed);
        let dt = now.duration_since(last.0).as_secs_f64();
        if dt >= 0.5 {
            bar.set_message(format!("{:.0} accepted/s", (acked - last.1) as f64 / dt));
            last = (now, acked);
        }
        bar.set_position(now.saturating_duration_since(start).as_millis() as u64);
        let next = (now + Duration::from_millis(100)).min(if marks.sink0.is_none() {
            window_start
        } else {
            end
        });
        tokio::time::sleep_until(next.into()).await;
    }
    bar.finish_and_clear();
    let stats = generator.await.context("generator task")??;

    // Drain: wait until every accepted event's deliveries arrived, or nothing moves.
    let expected = base + stats.accepted_all * case.matches;
    let drain_deadline = Instant::now() + opts.drain_timeout;
    let mut seen = (sink.total(), Instant::now());
    while sink.total() < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = sink.total();
        if t != seen.0 {
            seen = (t, Instant::now());
        } else if seen.1.elapsed() > Duration::from_secs(1) {
            break;
        }
    }
    let e2e = sink.take_e2e();

    let window = opts.duration.as_secs_f64();
    let delivered = marks.sink1.saturating_sub(marks.sink0.unwrap_or(base));
    let cpu_s = marks.cpu0.zip(marks.cpu1).map(|(a, b)| b - a);
    let headline = if case.matches == 0 {
        stats.accepted
    } else {
        delivered
    };
    Ok(Row {
        target: Some(target),
        case: case.label.clone(),
        triggers: case.triggers.len(),
        matches_per_event: case.matches,
        load: case.mode.label(),
        sent: stats.sent,
        accepted: stats.accepted,
        accepted_per_s: stats.accepted as f64 / window,
        backpressure_503: stats.backpressure,
        other_status: stats.other_status,
        errors: stats.errors,
        missed: stats.missed,
        ack: stats.ack.as_ref().and_then(LatencySummary::of),
        delivered,
        delivered_per_s: delivered as f64 / window,
        vs_direct: None,
        undelivered_after_drain: expected.saturating_sub(sink.total()),
        e2e: LatencySummary::of(&e2e),
        broker_cpu_s: cpu_s,
        harness_cpu_s: marks.own0.zip(marks.own1).map(|(a, b)| b - a),
        events_per_cpu_s: cpu_s.filter(|&c| c > 0.0).map(|c| headline as f64 / c),
        rss_kib: None,
        ready_ms: None,
        apply_ms: None,
    })
}

#[derive(Default)]
struct Marks {
    sink0: Option<u64>,
    sink1: u64,
    cpu0: Option<f64>,
    cpu1: Option<f64>,
    own0: Option<f64>,
    own1: Option<f64>,
}

/// `memory`: idle RSS per trigger count, then the time to apply trigger changes.
async fn memory(
    opts: &Options,
    broker: &BrokerSpec,
    counts: &[usize],
    report: &mut Report,
) -> anyhow::Result<()> {
    let most = counts
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(CHANGED_TRIGGERS);
    let sink = Sink::start(opts.sink, (0..most).map(yaml::trigger_name)).await?;
    for &n in counts {
        let triggers: Vec<_> = (0..n).map(TriggerSpec::numbered).collect();
        let yaml = yaml::config(broker, &triggers, &sink.base_url());
        status(&format!("memory: starting cebus with {n} triggers"));
        let (cebus, ready) = Cebus::start(&opts.cebus, &yaml).await?;
        tokio::time::sleep(IDLE_SETTLE).await;
        let rss = cebus.rss_kib()?;
        cebus.stop().await;
        report.rows.push(Row {
            case: "idle".into(),
            triggers: n,
            rss_kib: Some(rss),
            ready_ms: Some(ready.as_secs_f64() * 1e3),
            ..Row::default()
        });
    }

    // Apply: 1000 triggers, then rewrite every filter and time until events of the
    // new types reach the sink through the first, middle and last trigger.
    let n = CHANGED_TRIGGERS;
    let before: Vec<_> = (0..n).map(TriggerSpec::numbered).collect();
    let after: Vec<_> = (0..n)
        .map(|i| TriggerSpec {
            name: yaml::trigger_name(i),
            event_type: format!("bench.v{i}"),
        })
        .collect();
    status(&format!("memory: applying {n} trigger changes"));
    let (cebus, _) = Cebus::start(
        &opts.cebus,
        &yaml::config(broker, &before, &sink.base_url()),
    )
    .await?;
    let probes = [0, n / 2, n - 1];
    let result = async {
        let mut conn = Conn::connect(cebus.addr()).await?;
        let host = host_header(cebus.addr());
        let old = EventShape::try_new(&[format!("bench.t{}", n - 1)], 0)?;
        conn.send(old.request(&host, INGRESS_PATH, 0, 0)).await?;
        wait_for(
            || sink.count(&yaml::trigger_name(n - 1)) >= 1,
            Duration::from_secs(10),
        )
        .await
        .context("the unchanged config did not deliver")?;
        let counts0: Vec<u64> = probes
            .iter()
            .map(|&i| sink.count(&yaml::trigger_name(i)))
            .collect();
        let types: Vec<String> = probes
            .iter()
            .map(|&i| after[i].event_type.clone())
            .collect();
        let shape = EventShape::try_new(&types, 0)?;
        cebus.rewrite(&yaml::config(broker, &after, &sink.base_url()))?;
        let t0 = Instant::now();
        // As an operator would after an edit; the poll alone adds up to its
        // interval (100 ms) of waiting to the figure.
        cebus.reload()?;
        let mut seq = 0u64;
        loop {
            let done = probes
                .iter()
                .zip(&counts0)
                .all(|(&i, &c0)| sink.count(&yaml::trigger_name(i)) > c0);
            if done {
                return Ok::<_, anyhow::Error>(t0.elapsed());
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(60),
                "changed filters not applied within 60 s:\n{}",
                cebus.log_tail()
            );
            for _ in 0..probes.len() {
                conn.send(shape.request(&host, INGRESS_PATH, seq, 0))
                    .await?;
                seq += 1;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    .await;
    cebus.stop().await;
    let applied = result?;
    report.rows.push(Row {
        case: format!("apply {n} changes"),
        triggers: n,
        apply_ms: Some(applied.as_secs_f64() * 1e3),
        ..Row::default()
    });
    report.notes.push(format!(
        "apply time: from the rewritten files (and a SIGHUP) until events of the new types \
         reached triggers {probes:?} of {n}"
    ));
    Ok(())
}

async fn wait_for(mut cond: impl FnMut() -> bool, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        anyhow::ensure!(Instant::now() < deadline, "timed out after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn target_label(t: Target) -> &'static str {
    match t {
        Target::Direct => "direct",
        Target::Broker => "broker",
        Target::Proxy => "proxy",
    }
}

/// A line on stderr saying what runs now.
fn status(msg: &str) {
    eprintln!("cebus-bench: {msg}");
}

/// A progress bar over `total`, on stderr only when it is a terminal.
fn progress_bar(total: Duration, label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:40}] {elapsed:>4} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_parse() {
        assert_eq!(parse("direct"), Ok((Backend::InMemory, Kind::Direct)));
        assert_eq!(parse("e2e-1"), Ok((Backend::InMemory, Kind::E2e1)));
        assert_eq!(
            parse("fanout-N"),
            Ok((Backend::InMemory, Kind::Fanout(FANOUT_COUNTS.to_vec())))
        );
        assert_eq!(
            parse("fanout-100"),
            Ok((Backend::InMemory, Kind::Fanout(vec![100])))
        );
        assert_eq!(
            parse("fanout-all-N"),
            Ok((
                Backend::InMemory,
                Kind::FanoutAll(FANOUT_ALL_COUNTS.to_vec())
            ))
        );
        assert_eq!(
            parse("fanout-all-10"),
            Ok((Backend::InMemory, Kind::FanoutAll(vec![10])))
        );
        assert_eq!(parse("kafka-e2e-1"), Ok((Backend::Kafka, Kind::E2e1)));
        assert_eq!(
            parse("memory"),
            Ok((Backend::InMemory, Kind::Memory(MEMORY_COUNTS.to_vec())))
        );
        assert!(parse("fanout-x").unwrap_err().contains("expected N"));
        assert!(parse("e2e-2").unwrap_err().contains("unknown scenario"));
    }

    #[test]
    fn every_listed_name_parses() {
        for (name, _) in NAMES {
            assert!(parse(name).is_ok(), "{name}");
        }
    }
}
