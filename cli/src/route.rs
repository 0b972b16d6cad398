//! `cebus route`: which triggers of a broker match each event, without sending
//! anything — for tests and CI of users' own event graphs.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use cebus_broker::plan::BrokerPlan;
use cebus_events::Event;
use cebus_triggers::{Matcher, explain};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Flags of `cebus route`.
#[derive(Debug, clap::Args)]
pub struct RouteArgs {
    /// A YAML file or a directory of `*.yaml`/`*.yml` files.
    #[arg(short = 'f', long = "file")]
    config: PathBuf,
    /// The broker as `NAMESPACE/NAME` (default: the only broker, else `default/default`).
    #[arg(long)]
    broker: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    output: Format,
    /// For each trigger that did not match, say which part of its filter failed.
    #[arg(long)]
    explain: bool,
    /// Files holding one CloudEvent in structured JSON, or a JSON array of them.
    #[arg(required = true, value_name = "EVENT_FILE")]
    events: Vec<PathBuf>,
}

/// Output format of `cebus route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// One line per event, plus one per unmatched trigger with `--explain`.
    Text,
    /// One JSON object per event and line.
    Json,
}

/// One line of `-o json`.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    id: &'a str,
    broker: &'a str,
    matched: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unmatched: Option<Vec<Unmatched<'a>>>,
}

/// A trigger that did not match, with `--explain`.
#[derive(serde::Serialize)]
struct Unmatched<'a> {
    trigger: &'a str,
    path: String,
    attribute: Option<String>,
    expected: String,
    actual: Option<String>,
    reason: String,
}

/// A broker's triggers compiled for routing.
struct Router {
    key: String,
    names: Vec<String>,
    matcher: Matcher,
    explain: bool,
    format: Format,
    matched: Vec<u32>,
}

impl Router {
    fn new(broker: &BrokerPlan, args: &RouteArgs) -> Router {
        let names = broker
            .triggers
            .values()
            .map(|t| format!("{}/{}", t.namespace, t.name))
            .collect();
        let matcher = Matcher::new(broker.triggers.values().map(|t| t.filter.clone()).collect());
        Router {
            key: broker.key(),
            names,
            matcher,
            explain: args.explain,
            format: args.output,
            matched: Vec::new(),
        }
    }

    fn route(&mut self, event: &Event, out: &mut impl Write) -> std::io::Result<()> {
        self.matcher.matches_into(event, &mut self.matched);
        let matched: Vec<&str> = self
            .matched
            .iter()
            .map(|&i| self.names[i as usize].as_str())
            .collect();
        let unmatched = || {
            (0..self.matcher.len())
                .filter(|i| self.matched.binary_search(&(*i as u32)).is_err())
                .filter_map(|i| {
                    explain(self.matcher.filter(i), event).map(|m| (self.names[i].as_str(), m))
                })
        };
        match self.format {
            Format::Json => {
                let line = JsonLine {
                    id: &event.id(),
                    broker: &self.key,
                    matched,
                    unmatched: self.explain.then(|| {
                        unmatched()
                            .map(|(trigger, m)| Unmatched {
                                trigger,
                                reason: m.to_string(),
                                path: m.path,
                                attribute: m.attribute,
                                expected: m.expected,
                                actual: m.actual,
                            })
                            .collect()
                    }),
                };
                serde_json::to_writer(&mut *out, &line)?;
                writeln!(out)
            }
            Format::Text => {
                if matched.is_empty() {
                    writeln!(out, "{} -> (no trigger)", event.id())?;
                } else {
                    writeln!(out, "{} -> {}", event.id(), matched.join(", "))?;
                }
                if self.explain {
                    for (trigger, m) in unmatched() {
                        writeln!(out, "  not {trigger}: {m}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Calls `each` for every event of a file: one JSON object, or an array streamed
/// element by element (nothing but the current event is held).
fn for_each_event(
    bytes: &[u8],
    mut each: impl FnMut(usize, &RawValue) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        let raw: &RawValue = serde_json::from_slice(bytes).context("not a JSON CloudEvent")?;
        return each(0, raw);
    }
    let mut failure = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = de.deserialize_seq(Elements {
        each: &mut each,
        failure: &mut failure,
    });
    if let Some(e) = failure {
        return Err(e);
    }
    parsed.context("not a JSON array of CloudEvents")?;
    de.end().context("trailing data after the JSON array")?;
    Ok(())
}

/// Visits a JSON array, handing each element to `each` as raw JSON; the first
/// error of `each` stops the walk and is kept in `failure`.
struct Elements<'a, F> {
    each: &'a mut F,
    failure: &'a mut Option<anyhow::Error>,
}

impl<'de, F: FnMut(usize, &RawValue) -> anyhow::Result<()>> Visitor<'de> for Elements<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of CloudEvents")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if let Err(e) = (self.each)(index, raw) {
                *self.failure = Some(e);
                return Err(de::Error::custom("stopped at a bad event"));
            }
            index += 1;
        }
        Ok(())
    }
}

/// Runs `cebus route`.
pub fn route(args: RouteArgs) -> anyhow::Result<ExitCode> {
    let opts = cebus_broker::PlanOptions {
        ingress_base: "http://127.0.0.1:8080".into(),
        max_event_size: 1 << 20,
    };
    let plan = match cebus_broker::load_plan(&args.config, &opts) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{}", cebus_broker::server::format_errors(&errors));
            return Ok(ExitCode::FAILURE);
        }
    };
    let broker = match &args.broker {
        Some(key) => plan
            .brokers
            .get(key)
            .with_context(|| format!("no Broker {key} in {}", args.config.display()))?,
        None if plan.brokers.len() == 1 => plan.brokers.values().next().expect("one broker"),
        None => plan.brokers.get("default/default").with_context(|| {
            format!(
                "{} brokers in {} and none is default/default: choose one with --broker NAMESPACE/NAME ({})",
                plan.brokers.len(),
                args.config.display(),
                plan.brokers.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?,
    };
    let mut router = Router::new(broker, &args);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for file in &args.events {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        for_each_event(&bytes, |index, raw| {
            let event = cebus_events::from_json(raw.get().as_bytes())
                .map_err(anyhow::Error::msg)
                .and_then(|e| {
                    cebus_events::validate(&e)
                        .map(|()| e)
                        .map_err(anyhow::Error::msg)
                })
                .with_context(|| format!("event {index}: not a valid CloudEvent"))?;
            router.route(&event, &mut out).context("writing output")?;
            Ok(())
        })
        .with_context(|| file.display().to_string())?;
    }
    out.flush()?;
    if args.events.is_empty() {
        bail!("no event files given");
    }
    Ok(ExitCode::SUCCESS)
}
