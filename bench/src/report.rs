//! Results: one row per measured case, as JSON (round-trips through serde) and as a
//! plain table; medians over repeated runs.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hist::LatencySummary;

/// What a row measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Generator straight to the sink: the machine's own limit.
    Direct,
    /// Through a `cebus run`.
    Broker,
    /// Through `cebus-bench proxy`: accept and forward, nothing else; the
    /// ceiling of any two-hop path on the machine.
    Proxy,
}

/// The settings a report was measured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Measured window per case, seconds.
    pub duration_s: f64,
    /// Warm-up before each window, seconds.
    pub warmup_s: f64,
    /// Generator connections.
    pub connections: usize,
    /// Event data size, bytes.
    pub size_bytes: usize,
    /// `--channel-capacity` given to cebus.
    pub channel_capacity: usize,
    /// `--max-in-flight` given to cebus.
    pub max_in_flight: usize,
    /// `--workers` given to cebus (none: one per CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_workers: Option<u16>,
    /// Runs the figures are the median of.
    pub runs: usize,
}

/// One measured case.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Row {
    /// Direct or through the broker.
    pub target: Option<Target>,
    /// Which case (`N=10`, `1000/s`, `idle`, ...).
    pub case: String,
    /// Triggers in the generated config.
    pub triggers: usize,
    /// Deliveries each accepted event causes (0: nothing matches).
    pub matches_per_event: u64,
    /// Pacing (`closed`, `open 1000/s`); empty for rows without load.
    pub load: String,
    /// Events sent in the window.
    pub sent: u64,
    /// Events answered 2xx in the window.
    pub accepted: u64,
    /// Accepted events per second.
    pub accepted_per_s: f64,
    /// 503 answers (backpressure) in the window.
    pub backpressure_503: u64,
    /// Other non-2xx answers in the window.
    pub other_status: u64,
    /// Connection errors.
    pub errors: u64,
    /// Open loop: events due in the window that were never sent.
    pub missed: u64,
    /// Time from (intended) send to the ingress answer.
    pub ack: Option<LatencySummary>,
    /// Deliveries the sink received in the window.
    pub delivered: u64,
    /// Deliveries per second.
    pub delivered_per_s: f64,
    /// The headline rate (`delivered_per_s`, or `accepted_per_s` when nothing
    /// matches) over the direct row's (broker rows only).
    pub vs_direct: Option<f64>,
    /// Deliveries still missing after the drain wait.
    pub undelivered_after_drain: u64,
    /// Time from (intended) send to the sink receiving it.
    pub e2e: Option<LatencySummary>,
    /// Broker CPU seconds (user + system) in the window.
    pub broker_cpu_s: Option<f64>,
    /// CPU seconds of cebus-bench itself (generator + sink) in the window: near
    /// the core count means the harness, not the broker, is the limit.
    pub harness_cpu_s: Option<f64>,
    /// Headline events (deliveries, or accepted events when nothing matches) per
    /// broker CPU second.
    pub events_per_cpu_s: Option<f64>,
    /// Broker resident memory, KiB.
    pub rss_kib: Option<u64>,
    /// Time from spawn to `/readyz` 200, ms.
    pub ready_ms: Option<f64>,
    /// Time from rewriting the config to the changed filters taking effect, ms.
    pub apply_ms: Option<f64>,
}

/// The result of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name as given.
    pub scenario: String,
    /// Channel backend.
    pub backend: String,
    /// Settings.
    pub settings: Settings,
    /// Measured cases.
    pub rows: Vec<Row>,
    /// Caveats worth reading beside the figures.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Report {
    /// Parses a report printed with `--json`.
    pub fn from_json(s: &str) -> serde_json::Result<Report> {
        serde_json::from_str(s)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }

    /// Fills `vs_direct` of every broker row from the nearest direct row above it
    /// with the same load.
    pub fn compare_to_direct(&mut self) {
        let mut direct: Vec<(String, f64)> = Vec::new();
        for row in &mut self.rows {
            match row.target {
                Some(Target::Direct) => direct.push((row.load.clone(), row.delivered_per_s)),
                Some(Target::Broker | Target::Proxy) => {
                    let headline = if row.matches_per_event == 0 {
                        row.accepted_per_s
                    } else {
                        row.delivered_per_s
                    };
                    row.vs_direct = direct
                        .iter()
                        .rev()
                        .find(|(load, _)| *load == row.load)
                        .filter(|(_, d)| *d > 0.0)
                        .map(|(_, d)| headline / d);
                }
                None => {}
            }
        }
    }

    /// A plain-text table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "scenario {} ({} channel) — {} s window after {} s warm-up, {} connections, {} B events, \
             channel capacity {}, max in flight {}{}{}",
            self.scenario,
            self.backend,
            s.duration_s,
            s.warmup_s,
            s.connections,
            s.size_bytes,
            s.channel_capacity,
            s.max_in_flight,
            s.broker_workers
                .map(|n| format!(", {n} broker worker(s)"))
                .unwrap_or_default(),
            if s.runs > 1 {
                format!(", median of {} runs", s.runs)
            } else {
                String::new()
            },
        );
        let load_rows: Vec<&Row> = self.rows.iter().filter(|r| !r.load.is_empty()).collect();
        if !load_rows.is_empty() {
            let header = [
                "target",
                "case",
                "load",
                "accepted/s",
                "503s",
                "err",
                "delivered/s",
                "×direct",
                "ack p50",
                "ack p99",
                "e2e p50",
                "e2e p99",
                "e2e p99.9",
                "e2e max",
                "cpu s",
                "bench cpu s",
                "events/cpu-s",
            ];
            let rows: Vec<Vec<String>> = load_rows
                .iter()
                .map(|r| {
                    vec![
                        target_name(r.target).into(),
                        r.case.clone(),
                        r.load.clone(),
                        rate(r.accepted_per_s),
                        (r.backpressure_503 + r.other_status).to_string(),
                        (r.errors + r.missed).to_string(),
                        rate(r.delivered_per_s),
                        opt(r.vs_direct, |v| format!("{v:.2}")),
                        opt(r.ack, |l| ms(l.p50_ms)),
                        opt(r.ack, |l| ms(l.p99_ms)),
                        opt(r.e2e, |l| ms(l.p50_ms)),
                        opt(r.e2e, |l| ms(l.p99_ms)),
                        opt(r.e2e, |l| ms(l.p999_ms)),
                        opt(r.e2e, |l| ms(l.max_ms)),
                        opt(r.broker_cpu_s, |v| format!("{v:.2}")),
                        opt(r.harness_cpu_s, |v| format!("{v:.2}")),
                        opt(r.events_per_cpu_s, rate),
                    ]
                })
                .collect();
            render(&mut out, &header, &rows);
            let _ = writeln!(
                out,
                "(latencies in ms; 503s = backpressure + other non-2xx; err = errors + open-loop events never sent; \
                 cpu s = broker CPU seconds in the window, bench cpu s = this harness's)"
            );
        }
        let mem_rows: Vec<&Row> = self.rows.iter().filter(|r| r.load.is_empty()).collect();
        if !mem_rows.is_empty() {
            let base = mem_rows
                .iter()
                .find(|r| r.triggers == 0)
                .and_then(|r| r.rss_kib);
            let header = [
                "case",
                "triggers",
                "RSS MiB",
                "MiB/1000 triggers",
                "ready ms",
                "apply ms",
            ];
            let rows: Vec<Vec<String>> = mem_rows
                .iter()
                .map(|r| {
                    let per_k = match (r.rss_kib, base) {
                        (Some(rss), Some(b)) if r.triggers > 0 => format!(
                            "{:.2}",
                            (rss as f64 - b as f64) / 1024.0 / r.triggers as f64 * 1000.0
                        ),
                        _ => "-".into(),
                    };
                    vec![
                        r.case.clone(),
                        r.triggers.to_string(),
                        opt(r.rss_kib, |k| format!("{:.1}", k as f64 / 1024.0)),
                        per_k,
                        opt(r.ready_ms, |v| format!("{v:.0}")),
                        opt(r.apply_ms, |v| format!("{v:.0}")),
                    ]
                })
                .collect();
            render(&mut out, &header, &rows);
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }
}

fn target_name(t: Option<Target>) -> &'static str {
    match t {
        Some(Target::Direct) => "direct",
        Some(Target::Broker) => "broker",
        Some(Target::Proxy) => "proxy",
        None => "-",
    }
}

fn rate(v: f64) -> String {
    format!("{v:.0}")
}

fn ms(v: f64) -> String {
    format!("{v:.3}")
}

fn opt<T: Copy>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

fn render(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    };
    line(out, &mut header.iter().copied());
    for r in rows {
        line(out, &mut r.iter().map(String::as_str));
    }
}

/// The median report of several runs of one scenario: every number is the median
/// of that number across runs (the upper middle one for an even count); anything
/// else comes from the first run. Rows are matched by position.
pub fn median(runs: &[Report]) -> anyhow::Result<Report> {
    anyhow::ensure!(!runs.is_empty(), "no runs to take the median of");
    let values: Vec<Value> = runs
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    let mut m: Report = serde_json::from_value(median_value(&values))?;
    m.settings.runs = runs.len();
    m.compare_to_direct();
    Ok(m)
}

fn median_value(values: &[Value]) -> Value {
    match &values[0] {
        Value::Number(_) => {
            let mut nums: Vec<(f64, &Value)> = values
                .iter()
                .filter_map(|v| v.as_f64().map(|f| (f, v)))
                .collect();
            if nums.is_empty() {
                return values[0].clone();
            }
            nums.sort_by(|a, b| a.0.total_cmp(&b.0));
            nums[nums.len() / 2].1.clone()
        }
        Value::Object(first) => {
            let mut out = serde_json::Map::new();
            for (k, v0) in first {
                let column: Vec<Value> = values
                    .iter()
                    .map(|v| v.get(k).cloned().unwrap_or_else(|| v0.clone()))
                    .collect();
                out.insert(k.clone(), median_value(&column));
            }
            Value::Object(out)
        }
        Value::Array(first) => Value::Array(
            (0..first.len())
                .map(|i| {
                    let column: Vec<Value> = values
                        .iter()
                        .map(|v| v.get(i).cloned().unwrap_or_else(|| first[i].clone()))
                        .collect();
                    median_value(&column)
                })
                .collect(),
        ),
        // An Option that is None in the first run but measured in others: take the
        // median of the runs that have it.
        Value::Null => {
            let present: Vec<Value> = values.iter().filter(|v| !v.is_null()).cloned().collect();
            if present.is_empty() {
                Value::Null
            } else {
                median_value(&present)
            }
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lat(p50: f64) -> LatencySummary {
        LatencySummary {
            count: 10,
            mean_ms: p50,
            p50_ms: p50,
            p90_ms: p50 * 2.0,
            p99_ms: p50 * 3.0,
            p999_ms: p50 * 4.0,
            max_ms: p50 * 5.0,
        }
    }

    fn sample(delivered_per_s: f64, p50: f64) -> Report {
        Report {
            scenario: "e2e-1".into(),
            backend: "in-memory".into(),
            settings: Settings {
                duration_s: 5.0,
                warmup_s: 1.0,
                connections: 32,
                size_bytes: 1024,
                channel_capacity: 100_000,
                max_in_flight: 100,
                broker_workers: None,
                runs: 1,
            },
            rows: vec![
                Row {
                    target: Some(Target::Direct),
                    case: "direct".into(),
                    load: "closed".into(),
                    delivered_per_s: 100_000.0,
                    e2e: Some(lat(0.1)),
                    ..Row::default()
                },
                Row {
                    target: Some(Target::Broker),
                    case: "1 trigger".into(),
                    triggers: 1,
                    matches_per_event: 1,
                    load: "closed".into(),
                    accepted: 42,
                    delivered_per_s,
                    e2e: Some(lat(p50)),
                    broker_cpu_s: Some(1.5),
                    ..Row::default()
                },
                Row {
                    case: "idle".into(),
                    rss_kib: Some(10_240),
                    ..Row::default()
                },
            ],
            notes: vec!["noisy".into()],
        }
    }

    #[test]
    fn json_round_trips() {
        let mut r = sample(40_000.0, 0.5);
        r.compare_to_direct();
        let back = Report::from_json(&r.to_json()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn json_with_missing_fields_parses_with_defaults() {
        let text = r#"{"scenario":"direct","backend":"in-memory",
            "settings":{"duration_s":1,"warmup_s":0,"connections":1,"size_bytes":0,
                        "channel_capacity":1,"max_in_flight":1,"runs":1},
            "rows":[{"target":"direct","delivered_per_s":12.5}]}"#;
        let r = Report::from_json(text).unwrap();
        assert_eq!(r.rows[0].target, Some(Target::Direct));
        assert_eq!(r.rows[0].delivered_per_s, 12.5);
        assert_eq!(r.rows[0].e2e, None);
        assert!(r.notes.is_empty());
        assert!(Report::from_json("{}").is_err());
    }

    #[test]
    fn broker_rows_are_compared_to_direct() {
        let mut r = sample(40_000.0, 0.5);
        r.compare_to_direct();
        assert_eq!(r.rows[0].vs_direct, None);
        assert_eq!(r.rows[1].vs_direct, Some(0.4));
    }

    #[test]
    fn ingress_only_rows_compare_accepted_events() {
        let mut r = sample(0.0, 0.5);
        r.rows[1].matches_per_event = 0;
        r.rows[1].accepted_per_s = 25_000.0;
        r.compare_to_direct();
        assert_eq!(r.rows[1].vs_direct, Some(0.25));
    }

    #[test]
    fn median_takes_each_number_from_the_middle_run() {
        let runs = [
            sample(30_000.0, 0.9),
            sample(50_000.0, 0.2),
            sample(40_000.0, 0.5),
        ];
        let m = median(&runs).unwrap();
        assert_eq!(m.settings.runs, 3);
        assert_eq!(m.rows[1].delivered_per_s, 40_000.0);
        assert_eq!(m.rows[1].e2e.unwrap().p50_ms, 0.5);
        assert_eq!(m.rows[1].accepted, 42);
        assert_eq!(m.rows[1].vs_direct, Some(0.4));
        assert_eq!(m.rows[2].rss_kib, Some(10_240));
        assert_eq!(m.notes, ["noisy"]);
    }

    #[test]
    fn table_shows_throughput_and_memory_rows() {
        let mut r = sample(40_000.0, 0.5);
        r.compare_to_direct();
        let t = r.table();
        assert!(t.contains("delivered/s"), "{t}");
        assert!(t.contains("40000"), "{t}");
        assert!(t.contains("0.40"), "{t}");
        assert!(t.contains("RSS MiB"), "{t}");
        assert!(t.contains("10.0"), "{t}");
        assert!(t.contains("note: noisy"), "{t}");
    }
}
