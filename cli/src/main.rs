//! `cebus`: run brokers and triggers from Knative YAML, send events, validate a
//! config, and display received events.

mod display;
mod route;
mod send;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

// mimalloc: the data path allocates small buffers per event on every worker
// thread, where glibc's malloc showed up at ~15 % of the broker's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often [`allocator_upkeep`] nudges mimalloc.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Lets mimalloc hand freed memory back to the OS while the process is idle.
///
/// mimalloc returns freed pages to the OS a delay (1 s) after they were freed,
/// but it only checks for pages whose delay has passed when it frees a page
/// itself. A broker that loaded a large config and then sits idle therefore kept
/// the loader's garbage resident (with 10,000 triggers: 100 MiB, against 75 MiB
/// with this upkeep). Freeing one huge block is such a page free: it costs a few
/// microseconds every [`UPKEEP_EVERY`], and with no purge due it does nothing.
/// (`mi_collect` would do this directly, but it is an FFI call and the project
/// has no `unsafe`.)
async fn allocator_upkeep() {
    /// Larger than mimalloc's largest size class, so it gets a page of its own,
    /// which is freed at once; never touched, so it never becomes resident.
    const HUGE: usize = 64 << 20;
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // `black_box`: an allocation that is freed unused may be optimised away.
        drop(std::hint::black_box(Vec::<u8>::with_capacity(HUGE)));
    }
}

/// CloudEvents broker and trigger router: Knative Eventing in one binary.
#[derive(Debug, Parser)]
#[command(name = "cebus", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the brokers and triggers defined in Knative YAML.
    Run(RunArgs),
    /// Send one CloudEvent to a URL and print the response.
    Send(send::SendArgs),
    /// Load and validate Knative YAML; print brokers, triggers, sources and where
    /// each delivers (and a PingSource's next fire times).
    Validate {
        /// A YAML file or a directory of `*.yaml`/`*.yml` files.
        #[arg(short = 'f', long = "file")]
        path: PathBuf,
    },
    /// Show which triggers of a broker match each event, without sending anything.
    Route(route::RouteArgs),
    /// Run an event-display sink that prints every CloudEvent it receives.
    Display(display::DisplayArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A YAML file or a directory of `*.yaml`/`*.yml` files (watched for changes).
    #[arg(short = 'f', long = "file")]
    path: PathBuf,
    /// Ingress listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Ingress threads (default: one per CPU). Each takes in, fans out and,
    /// for in-memory brokers, delivers its connections' events on a runtime of
    /// its own. As many threads again (default: one per CPU, or
    /// `TOKIO_WORKER_THREADS`) run the rest: durable channels' fan-out and
    /// deliveries, sources, reloads. Fewer than the CPUs leaves cores to the
    /// subscribers and producers on the same machine.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// Largest accepted request body per broker, in bytes (a broker's
    /// `cebus.dev/max-event-size` annotation overrides it).
    #[arg(long, default_value_t = 1 << 20)]
    max_event_size: usize,
    /// Ingress connections open at once; further clients wait to be accepted
    /// until one closes.
    #[arg(long, default_value_t = cebus_broker::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Unacknowledged events a broker holds before answering 503.
    #[arg(long, default_value_t = 10_000)]
    channel_capacity: usize,
    /// Concurrent deliveries per trigger.
    #[arg(long, default_value_t = 100)]
    max_in_flight: usize,
    /// HTTP requests in flight at once to one subscriber host (also the size of
    /// the keep-alive pool per host).
    #[arg(long, default_value_t = 1024)]
    max_outbound: usize,
    /// Time limit of a delivery attempt when the trigger sets no `delivery.timeout`, in seconds.
    #[arg(long, default_value_t = 60)]
    default_timeout_secs: u64,
    /// On SIGTERM or ctrl-c, how long to wait for in-flight deliveries, in seconds
    /// (then at most 5 s more for channels and sources to close).
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
    /// Where sources keep state across restarts (the last tick of a PingSource
    /// with the `cebus.dev/catch-up` annotation).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

/// How long the process waits, once the command returned (for `run`: after its
/// `--drain-secs` drain), for blocking work still running before it exits anyway.
/// A healthy close of a Kafka consumer (the final commit, leaving the group)
/// takes well under a second.
const EXIT_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_telemetry();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Run(RunArgs {
        workers: Some(n), ..
    }) = &cli.command
    {
        builder.worker_threads(usize::from(*n));
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async move {
        tokio::spawn(allocator_upkeep());
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Send(args) => send::send(args).await,
            Command::Validate { path } => validate(&path),
            Command::Display(args) => display::display(args).await,
            Command::Route(args) => route::route(args),
        }
    });
    // Bounded exit. Dropping a runtime waits for its blocking tasks without a
    // limit, and librdkafka's close of a consumer (the Kafka channel and the
    // KafkaSource run it in `spawn_blocking`) can block forever when Kafka is
    // already gone. So once the drain (`--drain-secs`) is over, the process exits
    // within EXIT_GRACE. A close cut short costs what a crash costs: the group
    // learns of the member's departure only after its session timeout (10 s), and
    // records acknowledged after the last commit are delivered again.
    runtime.shutdown_timeout(EXIT_GRACE);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_telemetry() {
    // One TLS stack for the whole binary: rustls with ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut opts = cebus_broker::ServerOptions::new(args.addr, args.path);
    opts.max_event_size = args.max_event_size;
    opts.max_connections = args.max_connections;
    opts.ingress_threads = args.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    opts.limits.channel_capacity = args.channel_capacity;
    opts.limits.max_in_flight_per_trigger = args.max_in_flight;
    opts.limits.max_outbound = args.max_outbound;
    opts.limits.default_timeout = Duration::from_secs(args.default_timeout_secs);
    opts.extensions = vec![Arc::new(cebus_sources::Sources::new(
        cebus_sources::SourcesOptions {
            state_dir: args.state_dir,
            ..Default::default()
        },
    ))];
    let server = match cebus_broker::Server::start(opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    // SIGHUP: read the config now (as nginx and Prometheus do), not at the
    // next poll.
    #[cfg(unix)]
    {
        let reload = server.reloader();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .expect("SIGHUP handler");
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reading the config now");
                reload.now();
            }
        });
    }
    println!("cebus listening on http://{}", server.local_addr());
    for url in server.ingress_urls() {
        println!("broker ingress: {url}");
    }
    shutdown_signal().await;
    eprintln!(
        "shutting down: draining in-flight deliveries (up to {}s)",
        args.drain_secs
    );
    let drained = server.shutdown(Duration::from_secs(args.drain_secs)).await;
    if !drained {
        eprintln!("drain deadline passed; exiting with deliveries still in flight");
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn validate(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let opts = cebus_broker::PlanOptions {
        ingress_base: "http://127.0.0.1:8080".into(),
        max_event_size: 1 << 20,
    };
    // Sources are checked as `cebus run` checks them; a state directory is assumed
    // so that catch-up annotations are not reported here.
    let sources_opts = cebus_sources::SourcesOptions {
        state_dir: Some(PathBuf::from(".")),
        ..Default::default()
    };
    let planned = cebus_broker::load_plan(path, &opts).and_then(|plan| {
        let lines = cebus_sources::describe(&plan, &sources_opts, jiff::Timestamp::now(), 3)?;
        Ok((plan, lines))
    });
    match planned {
        Ok((plan, sources)) => {
            for broker in plan.brokers.values() {
                println!(
                    "Broker {} (ingress {}/{})",
                    broker.key(),
                    opts.ingress_base,
                    broker.key()
                );
                for t in broker.triggers.values() {
                    let dls = t
                        .dead_letter_sink
                        .as_deref()
                        .map(|d| format!(", dead letters to {d}"))
                        .unwrap_or_default();
                    println!(
                        "  Trigger {}/{} -> {}{dls}",
                        t.namespace, t.name, t.subscriber
                    );
                }
            }
            for line in sources {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{}", cebus_broker::server::format_errors(&errors));
            eprintln!("{} error(s)", errors.len());
            Ok(ExitCode::FAILURE)
        }
    }
}
