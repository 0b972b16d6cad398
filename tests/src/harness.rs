//! Starting cebus: in-process from a config folder ([`Cebus`]), or as the real
//! binary in a child process ([`Proc`]), and names no other test uses.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cebus_broker::{Limits, Server, ServerOptions};

/// Installs the process-wide TLS provider (ring) once.
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A running cebus with its config folder.
pub struct Cebus {
    /// The server.
    pub server: Server,
    /// The config folder (deleted on drop).
    pub dir: tempfile::TempDir,
}

impl Cebus {
    /// Starts cebus with `yaml` as `config.yaml` and default limits.
    pub async fn start(yaml: &str) -> Cebus {
        Cebus::start_with(yaml, |_| {}).await
    }

    /// Starts cebus with `yaml`, letting `tune` adjust the options.
    pub async fn start_with(yaml: &str, tune: impl FnOnce(&mut ServerOptions)) -> Cebus {
        init();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config.yaml"), yaml).expect("write config");
        let mut opts = ServerOptions::new("127.0.0.1:0".parse().unwrap(), dir.path());
        opts.reload_interval = Duration::from_millis(100);
        // As `cebus run` does: connections served on threads of their own.
        opts.ingress_threads = 2;
        opts.limits = Limits {
            default_timeout: Duration::from_secs(10),
            ..Limits::default()
        };
        tune(&mut opts);
        let server = Server::start(opts)
            .await
            .unwrap_or_else(|e| panic!("cebus did not start: {e}"));
        Cebus { server, dir }
    }

    /// `http://127.0.0.1:port`.
    pub fn base(&self) -> String {
        format!("http://{}", self.server.local_addr())
    }

    /// The ingress URL of `namespace/name`.
    pub fn broker_url(&self, namespace: &str, name: &str) -> String {
        format!("{}/{namespace}/{name}", self.base())
    }

    /// Replaces or adds a config file.
    pub fn write(&self, file: &str, yaml: &str) {
        // Write then rename, as editors do, so the watcher never sees half a file.
        let tmp = self.dir.path().join(format!(".{file}.tmp"));
        std::fs::write(&tmp, yaml).expect("write config");
        std::fs::rename(&tmp, self.dir.path().join(file)).expect("rename config");
    }

    /// Removes a config file.
    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.dir.path().join(file)).expect("remove config");
    }

    /// Waits until broker `namespace/name` holds no event it has not finished:
    /// every event its channel handed out was delivered, dead-lettered or
    /// dropped for every trigger it matched (panics after `within`).
    ///
    /// This is the event that replaces "sleep, then check nothing more arrived":
    /// once it holds, a delivery the broker was going to make has been made. On
    /// the in-memory channel it covers every event ingress accepted (they count
    /// from the 202); on a durable channel only those already read from the log,
    /// so wait first for a delivery that shows the reader got that far.
    pub async fn wait_settled(&self, namespace: &str, name: &str, within: Duration) {
        let broker = self
            .server
            .registry()
            .get(namespace, name)
            .unwrap_or_else(|| panic!("no broker {namespace}/{name} runs"));
        let deadline = Instant::now() + within;
        while broker.pending() > 0 {
            assert!(
                Instant::now() < deadline,
                "broker {namespace}/{name} still has {} events in flight after {within:?}",
                broker.pending()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The value of the `/metrics` sample whose line contains every one of
    /// `parts` (0 when there is none yet).
    pub async fn metric(&self, parts: &[&str]) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the `/metrics` sample matching `parts` (see [`Cebus::metric`])
    /// reaches `at_least` (panics after `within`); returns its value.
    pub async fn wait_metric(&self, parts: &[&str], at_least: u64, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let value = self.metric(parts).await;
            if value >= at_least {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "metric {parts:?} is {value}, not {at_least}, after {within:?}:\n{}",
                self.metrics().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base()))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }
}

/// The workspace's `cebus` binary, built once per test run so it is never stale.
pub fn cebus_bin() -> &'static std::path::Path {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let built = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "cebus"])
            .current_dir(&workspace)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("run cargo build -p cebus");
        assert!(built.success(), "cargo build -p cebus failed");
        let bin = target.join("debug").join("cebus");
        assert!(bin.is_file(), "no cebus binary at {}", bin.display());
        bin
    })
}

/// Starts cebus with `yaml` and the sources extension (PingSource, WebhookSource,
/// ContainerSource), as `cebus run` does.
pub async fn start_with_sources(yaml: &str) -> Cebus {
    Cebus::start_with(yaml, |opts| {
        opts.extensions = vec![Arc::new(cebus_sources::Sources::new(
            cebus_sources::SourcesOptions::default(),
        ))];
    })
    .await
}

// --- Helpers of the durable-channel tests (Kafka, NATS): the real `cebus` binary.

/// A free loopback address (bound to port 0, read, released) for a child process.
pub fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .to_string()
}

/// The real binary on a free port, with its config in `dir`.
pub struct Proc {
    /// The child process.
    pub child: Child,
    /// `http://127.0.0.1:port`.
    pub base: String,
}

impl Proc {
    /// Starts `cebus run -f dir` on a free port with `extra` flags.
    pub fn start(dir: &std::path::Path, extra: &[&str]) -> Proc {
        let addr = free_addr();
        let child = Command::new(cebus_bin())
            .args(["run", "-f"])
            .arg(dir)
            .args(["--addr", &addr])
            .args(extra)
            // CEBUS_TEST_LOG=info shows what the process did, when a test needs it.
            .env(
                "RUST_LOG",
                std::env::var("CEBUS_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cebus");
        Proc {
            child,
            base: format!("http://{addr}"),
        }
    }

    /// Sends `sig` (e.g. `-TERM`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// Waits until the process exits and returns how it exited (panics after
    /// `within`, killing it).
    pub fn wait_status(mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "cebus did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker name no other test (or earlier run on the same Kafka or NATS) uses,
/// so each test has its own topic, stream and consumer groups.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}
