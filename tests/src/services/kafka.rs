//! Apache Kafka: kcat as the client nobody here wrote, and a private Kafka the
//! outage tests may kill.

use std::time::Duration;

use super::{kafka_bootstrap, run_tool};

/// A `kcat` command. Panics, naming what installs it, when kcat is missing:
/// a test that needs it never skips.
pub fn kcat() -> std::process::Command {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let found = *FOUND.get_or_init(|| {
        std::process::Command::new("kcat")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(
        found,
        "kcat is missing: scripts/test (or scripts/kafka.sh start) installs it \
         (Debian package kcat)"
    );
    std::process::Command::new("kcat")
}

/// Every record of `topic` on `$KAFKA_BOOTSTRAP` as kcat's JSON (`-J`: one
/// object per line, headers as `[name, value, name, value, …]`), read to the end.
pub async fn kcat_consume(topic: &str) -> Vec<serde_json::Value> {
    let (bootstrap, topic) = (kafka_bootstrap(), topic.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        run_tool(
            kcat().args(["-C", "-b", &bootstrap, "-t", &topic, "-J", "-e", "-q"]),
            b"",
            Duration::from_secs(60),
        )
    })
    .await
    .expect("kcat task");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Produces one record to `topic` on `$KAFKA_BOOTSTRAP` with kcat: `value` (one
/// line), an optional `key`, and `headers`. Returns when Kafka acknowledged it.
pub fn kcat_produce(topic: &str, key: Option<&str>, headers: &[(&str, &str)], value: &str) {
    assert!(!value.contains('\n'), "one record is one line for kcat");
    let mut cmd = kcat();
    cmd.args(["-P", "-b", &kafka_bootstrap(), "-t", topic]);
    if let Some(k) = key {
        cmd.args(["-k", k]);
    }
    for (name, v) in headers {
        cmd.args(["-H", &format!("{name}={v}")]);
    }
    run_tool(
        &mut cmd,
        format!("{value}\n").as_bytes(),
        Duration::from_secs(30),
    );
}

/// A private Kafka (`scripts/kafka.sh` with its own `KAFKA_STATE`), stopped and
/// its state removed when dropped.
pub struct PrivateKafka {
    state: tempfile::TempDir,
    /// Its `host:port`.
    pub bootstrap: String,
}

impl PrivateKafka {
    /// Runs `scripts/kafka.sh <command>` on this Kafka's state; returns its stdout.
    fn script(&self, command: &str) -> String {
        let out = run_tool(
            kafka_sh(self.state.path()).arg(command),
            b"",
            Duration::from_secs(300),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a Kafka of its own (blocking: call it off the async threads).
    pub fn start() -> PrivateKafka {
        let mut k = PrivateKafka {
            state: tempfile::tempdir().expect("tempdir"),
            bootstrap: String::new(),
        };
        k.script("start");
        let env = k.script("env");
        k.bootstrap = env
            .trim()
            .strip_prefix("export KAFKA_BOOTSTRAP=")
            .unwrap_or_else(|| panic!("kafka.sh env printed {env:?}"))
            .to_owned();
        k
    }

    /// Kills Kafka (SIGKILL).
    pub fn kill(&self) {
        let pid = self.script("pid");
        let ok = std::process::Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// Starts it again on the same port and state (blocking).
    pub fn restart(&self) {
        self.script("restart");
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        let _ = kafka_sh(self.state.path())
            .arg("stop")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// `scripts/kafka.sh` with `KAFKA_STATE` = `state`.
fn kafka_sh(state: &std::path::Path) -> std::process::Command {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
    let mut cmd = std::process::Command::new(script);
    cmd.env("KAFKA_STATE", state);
    cmd
}
