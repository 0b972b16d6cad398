//! `cebus-bench`: load generator, sink and scenarios for measuring cebus, in one
//! binary (generator and sink share a clock, so end-to-end latency needs no sync).

mod cebus;
mod client;
mod event;
mod hist;
mod load;
mod nats_direct;
mod pace;
mod proxy;
mod report;
mod scenario;
mod sink;
mod yaml;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use http::StatusCode;

use crate::report::Report;

/// Benchmark harness for cebus: runs a scenario against a `cebus run` it starts itself.
#[derive(Debug, Parser)]
#[command(name = "cebus-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario (see `list`) and print its results.
    Scenario(Box<ScenarioArgs>),
    /// List the scenarios.
    List,
    /// JetStream alone, no cebus: publish with ack and a pull consumer on
    /// `$NATS_URL`, the baseline to set beside `nats-e2e-1`.
    NatsDirect(NatsDirectArgs),
    /// The `proxy` baseline's process (started by `scenario e2e-1`): answers 202
    /// and forwards each event to `--to`; prints its address on the first line.
    #[command(hide = true)]
    Proxy {
        /// The sink's address.
        #[arg(long)]
        to: std::net::SocketAddr,
    },
    /// Print the median of several `--json` reports of one scenario.
    Median {
        /// Report files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct ScenarioArgs {
    /// Scenario name, optionally prefixed with a backend (`kafka-`, `nats-`).
    name: String,
    /// Measured seconds per case.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before each measured window (sent, not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Generator keep-alive connections (default 32 closed loop, 64 open loop).
    #[arg(long)]
    connections: Option<usize>,
    /// Event data size: 0, 1KiB, 64KiB, ...
    #[arg(long, default_value = "1KiB", value_parser = event::parse_size)]
    size: usize,
    /// Open loop at this many events/s instead of closed loop (`latency`: this rate only).
    #[arg(long)]
    rate: Option<u64>,
    /// Trigger counts instead of the scenario's list (fanout-N, fanout-all-N, memory), e.g. 1,100.
    #[arg(long, value_delimiter = ',')]
    counts: Option<Vec<usize>>,
    /// Run the scenario this many times and report the median of each figure.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The cebus binary (default: `cebus` next to this binary).
    #[arg(long)]
    cebus: Option<PathBuf>,
    /// `cebus run --channel-capacity`.
    #[arg(long, default_value_t = 100_000)]
    channel_capacity: usize,
    /// `cebus run --max-in-flight` (per trigger).
    #[arg(long, default_value_t = 100)]
    max_in_flight: usize,
    /// `cebus run --workers` (default: cebus's, one per CPU).
    #[arg(long)]
    broker_workers: Option<u16>,
    /// Broker class annotation for the generated Broker (default: the backend's).
    #[arg(long)]
    broker_class: Option<String>,
    /// Status the sink answers with.
    #[arg(long, default_value_t = 200)]
    sink_status: u16,
    /// Milliseconds the sink waits before answering.
    #[arg(long, default_value_t = 0)]
    sink_delay_ms: u64,
    /// Longest wait, in seconds, for queued deliveries after sending stops.
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// Longest wait, in seconds, for cebus to become ready.
    #[arg(long, default_value_t = 300.0)]
    ready_timeout: f64,
    /// `RUST_LOG` for cebus.
    #[arg(long, default_value = "warn")]
    broker_log: String,
}

#[derive(Debug, clap::Args)]
struct NatsDirectArgs {
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before the window.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Publishes awaiting their ack at once.
    #[arg(long, default_value_t = 64)]
    publishers: usize,
    /// Payload size: 0, 1KiB, 64KiB, ...
    #[arg(long, default_value = "1KiB", value_parser = event::parse_size)]
    size: usize,
    /// One ack per 100 messages (`AckPolicy::All`) instead of one per message.
    #[arg(long)]
    ack_all: bool,
    /// Memory storage instead of file storage.
    #[arg(long)]
    memory: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Fix the shared clock before anything measures.
    let _ = event::epoch();
    match cli.command {
        Command::List => {
            for (name, what) in scenario::NAMES {
                println!("{name:14} {what}");
            }
            Ok(())
        }
        Command::Median { files, json } => {
            let runs = files
                .iter()
                .map(|f| {
                    let text = std::fs::read_to_string(f)?;
                    Report::from_json(&text).map_err(|e| {
                        anyhow::anyhow!("{}: not a cebus-bench report: {e}", f.display())
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            print(&report::median(&runs)?, json);
            Ok(())
        }
        Command::NatsDirect(args) => {
            let url = std::env::var("NATS_URL").map_err(|_| {
                anyhow::anyhow!(
                    "nats-direct needs NATS_URL: scripts/nats.sh start && eval \"$(scripts/nats.sh env)\""
                )
            })?;
            let opts = nats_direct::Options {
                url,
                duration: Duration::try_from_secs_f64(args.duration)?,
                warmup: Duration::try_from_secs_f64(args.warmup)?,
                publishers: args.publishers.max(1),
                size: args.size,
                ack_all: args.ack_all,
                memory: args.memory,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let figures = runtime.block_on(nats_direct::run(&opts))?;
            print!("{}", nats_direct::table(&opts, &figures));
            Ok(())
        }
        Command::Proxy { to } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                println!("{}", listener.local_addr()?);
                proxy::serve(listener, to).await
            })
        }
        Command::Scenario(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(scenario_command(*args))
        }
    }
}

async fn scenario_command(args: ScenarioArgs) -> anyhow::Result<()> {
    let secs = |s: f64, what: &str| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| anyhow::anyhow!("--{what} {s}: not a number of seconds"))
    };
    let opts = scenario::Options {
        duration: secs(args.duration, "duration")?,
        warmup: secs(args.warmup, "warmup")?,
        connections: args.connections,
        size: args.size,
        rate: args.rate,
        counts: args.counts,
        cebus: cebus::CebusOptions {
            bin: cebus::find_binary(args.cebus)?,
            channel_capacity: args.channel_capacity,
            max_in_flight: args.max_in_flight,
            workers: args.broker_workers,
            log: args.broker_log,
            ready_timeout: secs(args.ready_timeout, "ready-timeout")?,
        },
        sink: sink::SinkReply {
            status: StatusCode::from_u16(args.sink_status).map_err(|_| {
                anyhow::anyhow!("--sink-status {}: not an HTTP status", args.sink_status)
            })?,
            delay: Duration::from_millis(args.sink_delay_ms),
        },
        broker_class: args.broker_class,
        drain_timeout: secs(args.drain_timeout, "drain-timeout")?,
    };
    scenario::parse(&args.name).map_err(anyhow::Error::msg)?;
    let mut runs = Vec::with_capacity(args.repeat.max(1));
    for i in 0..args.repeat.max(1) {
        if args.repeat > 1 {
            eprintln!("cebus-bench: run {} of {}", i + 1, args.repeat);
        }
        runs.push(scenario::run(&args.name, &opts).await?);
    }
    let report = if runs.len() == 1 {
        runs.remove(0)
    } else {
        report::median(&runs)?
    };
    print(&report, args.json);
    Ok(())
}

fn print(report: &Report, json: bool) {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.table());
    }
}
