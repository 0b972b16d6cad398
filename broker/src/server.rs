//! The whole data plane in one object: bind the ingress, apply the config, watch
//! it for changes, and shut down by draining in-flight deliveries.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cebus_api::ConfigError;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ingress::{self, Ingress};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::plan::{Plan, PlanOptions, plan};
use crate::registry::Registry;
use crate::shared::Shared;

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("extensions", &self.extensions.len())
            .finish()
    }
}

/// Something that runs beside the brokers from the same config — sources, for
/// example. The server checks it with every config, applies it after the brokers,
/// serves its routes on the main listener and stops it on shutdown.
pub trait Extension: Send + Sync + 'static {
    /// Extra checks of a planned config; any error rejects the config (at start:
    /// the server does not start; on reload: the last good config stays).
    fn check(&self, plan: &Plan) -> Vec<ConfigError>;
    /// Routes served on the main listener, e.g. `/webhooks/{namespace}/{name}`.
    fn routes(&self, registry: Arc<Registry>) -> axum::Router;
    /// Applies a checked config; `registry` reaches the running brokers.
    fn apply(&self, plan: &Plan, registry: &Arc<Registry>);
    /// Stops whatever the extension runs (called before brokers drain).
    fn stop(&self);
}

/// How `cebus run` is configured.
#[derive(Clone)]
pub struct ServerOptions {
    /// Listen address (`127.0.0.1:0` picks a free port).
    pub addr: SocketAddr,
    /// A YAML file or a directory of them.
    pub config_path: PathBuf,
    /// Default largest request body per broker.
    pub max_event_size: usize,
    /// Ingress connections open at once; further clients wait in the kernel's
    /// accept queue until one closes.
    pub max_connections: usize,
    /// Threads that serve ingress connections, each with a single-threaded
    /// runtime of its own; an in-memory broker fans out and delivers an event
    /// on the thread that took it in. 0 serves them on the caller's runtime.
    pub ingress_threads: usize,
    /// Data-plane limits.
    pub limits: Limits,
    /// How often the config is checked for changes.
    pub reload_interval: Duration,
    /// Extensions started with the brokers.
    pub extensions: Vec<Arc<dyn Extension>>,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("addr", &self.addr)
            .field("config_path", &self.config_path)
            .field("max_event_size", &self.max_event_size)
            .field("max_connections", &self.max_connections)
            .field("ingress_threads", &self.ingress_threads)
            .field("limits", &self.limits)
            .field("reload_interval", &self.reload_interval)
            .field("extensions", &self.extensions.len())
            .finish()
    }
}

/// Default of [`ServerOptions::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

impl ServerOptions {
    /// Defaults for `path` on `addr`.
    pub fn new(addr: SocketAddr, config_path: impl Into<PathBuf>) -> ServerOptions {
        ServerOptions {
            addr,
            config_path: config_path.into(),
            max_event_size: 1 << 20,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            ingress_threads: 0,
            limits: Limits::default(),
            reload_interval: Duration::from_millis(100),
            extensions: Vec::new(),
        }
    }
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The config has errors.
    #[error("{}", format_errors(.0))]
    Config(Vec<ConfigError>),
    /// An ingress thread or its runtime could not be started.
    #[error("cannot start the ingress threads: {0}")]
    Threads(std::io::Error),
}

/// One error per line.
pub fn format_errors(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads, validates and plans the config at `path`.
pub fn load_plan(path: &Path, opts: &PlanOptions) -> Result<Plan, Vec<ConfigError>> {
    let config = cebus_api::load_path(path)?;
    let errors = cebus_api::validate(&config);
    if !errors.is_empty() {
        return Err(errors);
    }
    plan(&config, opts)
}

/// Runs every extension's checks; all their errors, or `Ok`.
pub fn check(plan: &Plan, extensions: &[Arc<dyn Extension>]) -> Result<(), Vec<ConfigError>> {
    let errors: Vec<ConfigError> = extensions.iter().flat_map(|e| e.check(plan)).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// A running cebus data plane.
pub struct Server {
    local_addr: SocketAddr,
    registry: Arc<Registry>,
    reload: Reload,
    stop_accepting: CancellationToken,
    http: TaskTracker,
    extensions: Vec<Arc<dyn Extension>>,
    /// Dropped last: the deliveries running on these threads are drained by
    /// [`Server::shutdown`] first.
    _threads: IngressThreads,
}

/// The ingress threads, each running a single-threaded runtime until this is
/// dropped; then each runtime drops what is left on it.
struct IngressThreads {
    handles: Vec<tokio::runtime::Handle>,
    _exit: tokio_util::sync::DropGuard,
}

impl IngressThreads {
    fn start(n: usize) -> std::io::Result<IngressThreads> {
        let exit = CancellationToken::new();
        // Made first, so threads already running end if a later one fails.
        let guard = exit.clone().drop_guard();
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let exit = exit.clone();
            std::thread::Builder::new()
                .name(format!("cebus-ingress-{i}"))
                .spawn(move || {
                    // Shard 0 is the caller's runtime.
                    crate::deliver::use_pool_shard(i + 1);
                    rt.block_on(exit.cancelled());
                })?;
        }
        Ok(IngressThreads {
            handles,
            _exit: guard,
        })
    }
}

/// Asks a running server to read its config now rather than at the next poll
/// (what `cebus run` does on SIGHUP). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Reload(Arc<tokio::sync::Notify>);

impl Reload {
    /// Reads the config again now, changed or not. A request made while a
    /// reload runs gives one more reload after it.
    pub fn now(&self) {
        self.0.notify_one();
    }
}

impl Server {
    /// Binds, applies the config (errors stop the start) and serves.
    pub async fn start(opts: ServerOptions) -> Result<Server, StartError> {
        let listener = TcpListener::bind(opts.addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: opts.addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: opts.addr,
            source,
        })?;
        let plan_opts = PlanOptions {
            ingress_base: format!("http://{local_addr}"),
            max_event_size: opts.max_event_size,
        };
        // Fingerprint before loading: an edit that lands between the two is seen as
        // a change by the watcher (and applied), never missed.
        let seen = fingerprint(&opts.config_path);
        let first = load_plan(&opts.config_path, &plan_opts)
            .and_then(|plan| check(&plan, &opts.extensions).map(|()| plan))
            .map_err(StartError::Config)?;

        // One TLS stack for the process: rustls with ring (a no-op if the binary
        // already installed it).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let metrics = Arc::new(Metrics::default());
        let prometheus = Arc::new(metrics.registry());
        let threads = IngressThreads::start(opts.ingress_threads).map_err(StartError::Threads)?;
        // Shard 0 for the caller's runtime, one per ingress thread.
        let client =
            crate::deliver::Client::with_shards(opts.limits.max_outbound, 1 + opts.ingress_threads);
        let shared = Arc::new(Shared {
            client,
            metrics,
            tasks: TaskTracker::new(),
            outbound: Arc::new(crate::deliver::HostLimits::new(opts.limits.max_outbound)),
            limits: opts.limits.clone(),
        });
        let registry = Arc::new(Registry::new(shared));
        registry.apply(&first);
        for ext in &opts.extensions {
            ext.apply(&first, &registry);
        }

        let stop_accepting = CancellationToken::new();
        let http = TaskTracker::new();
        let state = Ingress {
            registry: registry.clone(),
            prometheus,
        };
        let mut app = ingress::router(state.clone());
        for ext in &opts.extensions {
            app = app.merge(ext.routes(registry.clone()));
        }
        let app = ingress::Front::new(state, app);
        let token = stop_accepting.clone();
        http.spawn(ingress::serve(
            listener,
            app,
            opts.max_connections,
            token,
            threads.handles.clone(),
        ));
        let reload = Reload::default();
        http.spawn(watch(
            opts.config_path.clone(),
            seen,
            plan_opts,
            Triggers {
                every: opts.reload_interval,
                now: reload.clone(),
                stop: stop_accepting.clone(),
            },
            registry.clone(),
            opts.extensions.clone(),
        ));
        http.close();
        Ok(Server {
            local_addr,
            registry,
            reload,
            stop_accepting,
            http,
            extensions: opts.extensions,
            _threads: threads,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The ingress URL of every broker.
    pub fn ingress_urls(&self) -> Vec<String> {
        self.registry
            .keys()
            .iter()
            .map(|k| format!("http://{}/{k}", self.local_addr))
            .collect()
    }

    /// A handle that makes the server read its config now.
    pub fn reloader(&self) -> Reload {
        self.reload.clone()
    }

    /// The running brokers.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Stops accepting events, then waits up to `deadline` for every stored event
    /// to be delivered or dead-lettered. Returns whether everything drained.
    pub async fn shutdown(self, deadline: Duration) -> bool {
        self.stop_accepting.cancel();
        self.http.wait().await;
        for ext in &self.extensions {
            ext.stop();
        }
        self.registry.close_all();
        let tasks = self.registry.shared().tasks.clone();
        tasks.close();
        let drained = tokio::time::timeout(deadline, tasks.wait()).await.is_ok();
        if !drained {
            tracing::warn!(
                ?deadline,
                "shutdown deadline passed with deliveries still in flight"
            );
        }
        drained
    }
}

/// Config files: the file itself, or the `*.yaml`/`*.yml` regular files of a
/// directory (the loader's selection), sorted.
fn config_files(path: &Path) -> Option<Vec<PathBuf>> {
    if !path.is_dir() {
        return Some(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).ok()? {
        let p = entry.ok()?.path();
        // Regular files only, so a folder named `x.yaml` cannot break the watch.
        if p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            files.push(p);
        }
    }
    files.sort();
    Some(files)
}

/// What the watcher compares between polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    /// Names, sizes, inodes and modification times: cheap, checked every poll.
    meta: Option<u64>,
    /// Names and contents: read every [`CONTENT_EVERY`] polls, for the rare edit
    /// that keeps size and timestamp.
    content: Option<u64>,
}

/// Every how many polls the contents are hashed too.
const CONTENT_EVERY: u32 = 10;

fn meta_fingerprint(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut h = DefaultHasher::new();
    for f in config_files(path)? {
        f.hash(&mut h);
        // A file that vanished mid-listing or cannot be read still counts, by name;
        // the loader reports why.
        if let Ok(m) = std::fs::metadata(&f) {
            (m.len(), m.ino(), m.mtime(), m.mtime_nsec()).hash(&mut h);
        }
    }
    Some(h.finish())
}

fn content_fingerprint(path: &Path) -> Option<u64> {
    let mut h = DefaultHasher::new();
    for f in config_files(path)? {
        f.hash(&mut h);
        std::fs::read(&f).unwrap_or_default().hash(&mut h);
    }
    Some(h.finish())
}

/// Both fingerprints of the config at `path`.
fn fingerprint(path: &Path) -> Fingerprint {
    Fingerprint {
        meta: meta_fingerprint(path),
        content: content_fingerprint(path),
    }
}

/// When the watcher looks at the config.
struct Triggers {
    /// The poll interval.
    every: Duration,
    /// Asked to read it now ([`Reload`]).
    now: Reload,
    /// Stops the watcher.
    stop: CancellationToken,
}

/// Polls the config and applies changes, and reads it at once when asked to
/// ([`Reload`]); a bad edit is reported and the last good config stays. Polling
/// (not inotify) works the same on every filesystem, including editors that
/// replace files and Kubernetes ConfigMap volumes.
async fn watch(
    path: PathBuf,
    mut last: Fingerprint,
    opts: PlanOptions,
    when: Triggers,
    registry: Arc<Registry>,
    extensions: Vec<Arc<dyn Extension>>,
) {
    let mut ticker = tokio::time::interval(when.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut polls: u32 = 0;
    loop {
        let asked = tokio::select! {
            _ = when.stop.cancelled() => return,
            _ = when.now.0.notified() => true,
            _ = ticker.tick() => false,
        };
        polls = polls.wrapping_add(1);
        let meta = meta_fingerprint(&path);
        let changed = if asked || meta != last.meta {
            true
        } else if polls.is_multiple_of(CONTENT_EVERY) {
            content_fingerprint(&path) != last.content
        } else {
            false
        };
        if !changed {
            continue;
        }
        last = fingerprint(&path);
        let (p, o) = (path.clone(), opts.clone());
        let exts = extensions.clone();
        let planned = tokio::task::spawn_blocking(move || {
            load_plan(&p, &o).and_then(|plan| check(&plan, &exts).map(|()| plan))
        })
        .await;
        match planned {
            Ok(Ok(plan)) => {
                registry.apply(&plan);
                for ext in &extensions {
                    ext.apply(&plan, &registry);
                }
                tracing::info!(path = %path.display(), "config reloaded");
            }
            Ok(Err(errors)) => {
                for e in &errors {
                    tracing::error!(error = %e, "config reload rejected; keeping the last good config");
                }
            }
            Err(e) => tracing::error!(error = %e, "config reload failed"),
        }
    }
}
