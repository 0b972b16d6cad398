//! The whole data plane in one object: bind the ingress, apply the config, watch
//! it for changes, and shut down by draining in-flight deliveries.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cebus_api::ConfigError;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{Applier, ConfigSource, FileSource};
pub use crate::control::{Extension, Reload, check, load_plan};
use crate::ingress::{self, Ingress};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::plan::PlanOptions;
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

/// How `cebus run` is configured.
#[derive(Clone)]
pub struct ServerOptions {
    /// Listen address (`127.0.0.1:0` picks a free port).
    pub addr: SocketAddr,
    /// A YAML file or a directory of them: the config of [`Server::start`]
    /// (file mode); [`Server::start_with`] takes its config from a source.
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
    /// How often the config files are checked for changes (file mode).
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

impl Server {
    /// Binds, applies the config of the files at `opts.config_path` (errors stop
    /// the start), serves, and applies each change to the files.
    pub async fn start(opts: ServerOptions) -> Result<Server, StartError> {
        let source = FileSource::new(opts.config_path.clone(), opts.reload_interval);
        Server::start_with(opts, source).await
    }

    /// Binds, applies the first config of `source` (errors stop the start),
    /// serves, and applies every config `source` yields next.
    pub async fn start_with<S: ConfigSource>(
        opts: ServerOptions,
        mut source: S,
    ) -> Result<Server, StartError> {
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
        let first = source.first().await.map_err(StartError::Config)?;
        let (first, report) = crate::control::admit(first, &plan_opts, &opts.extensions);
        let Some(first) = first else {
            return Err(StartError::Config(report.errors));
        };

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
        let applier = Applier {
            opts: plan_opts,
            registry: registry.clone(),
            extensions: opts.extensions.clone(),
        };
        applier.apply(&first);
        source.report(report).await;

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
        let reload = source.reloader();
        http.spawn(crate::control::run(source, applier, stop_accepting.clone()));
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
