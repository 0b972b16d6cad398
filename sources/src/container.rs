//! ContainerSource in standalone mode: the pod template's first container runs as
//! a child process with `K_SINK` and `K_CE_OVERRIDES`, is restarted with backoff
//! when it exits, and is killed (with its process group) when the source stops.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// Environment variable with the sink URL (Knative's SinkBinding contract).
pub const K_SINK: &str = "K_SINK";
/// Environment variable with the CloudEvent overrides as JSON.
pub const K_CE_OVERRIDES: &str = "K_CE_OVERRIDES";
/// First restart delay; doubles per consecutive quick exit.
pub const RESTART_BASE: Duration = Duration::from_secs(1);
/// Longest restart delay.
pub const RESTART_MAX: Duration = Duration::from_secs(60);
/// A process that ran this long resets the backoff.
pub const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// One ContainerSource, ready to run.
#[derive(Debug, Clone)]
pub struct ContainerPlan {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Program (`command[0]`).
    pub program: String,
    /// The rest of `command`, then `args`.
    pub args: Vec<String>,
    /// `env` (Secret references resolved), then `K_SINK` and `K_CE_OVERRIDES`.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub working_dir: Option<String>,
}

impl ContainerPlan {
    /// The process environment cebus adds: the container's `env`, then `K_SINK`
    /// and, when `ceOverrides` is set, `K_CE_OVERRIDES` (Knative's JSON form
    /// `{"extensions":{...}}`).
    pub fn environment(
        env: Vec<(String, String)>,
        sink_url: &str,
        overrides: Option<&BTreeMap<String, String>>,
    ) -> Vec<(String, String)> {
        let mut out = env;
        out.push((K_SINK.to_owned(), sink_url.to_owned()));
        if let Some(ext) = overrides {
            let json = serde_json::json!({ "extensions": ext }).to_string();
            out.push((K_CE_OVERRIDES.to_owned(), json));
        }
        out
    }
}

/// Delay before restart number `n` (1-based) after quick exits: 1 s, 2 s, 4 s, …
/// capped at [`RESTART_MAX`].
pub fn restart_delay(n: u32) -> Duration {
    let shift = n.saturating_sub(1).min(16);
    (RESTART_BASE * (1u32 << shift)).min(RESTART_MAX)
}

/// The running process of one ContainerSource, so it can be killed at once.
#[derive(Debug, Default)]
pub struct ProcessHandle {
    pid: AtomicU32,
}

impl ProcessHandle {
    /// Kills the current process and its process group (SIGKILL), if any.
    pub fn kill(&self) {
        let pid = self.pid.swap(0, Ordering::SeqCst);
        if pid != 0 {
            kill_group(pid);
        }
    }
}

/// SIGKILL to process group `pid` (the child leads its own group), through the
/// `kill` utility so this crate needs no unsafe code.
fn kill_group(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs the process until `cancel`, restarting it with backoff.
pub async fn supervise(
    plan: Arc<ContainerPlan>,
    handle: Arc<ProcessHandle>,
    cancel: CancellationToken,
) {
    let key = format!("{}/{}", plan.namespace, plan.name);
    let mut quick_exits = 0u32;
    loop {
        let mut cmd = Command::new(&plan.program);
        cmd.args(&plan.args)
            .envs(plan.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        if let Some(dir) = &plan.working_dir {
            cmd.current_dir(dir);
        }
        let started = tokio::time::Instant::now();
        match cmd.spawn() {
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                handle.pid.store(pid, Ordering::SeqCst);
                tracing::info!(containersource = %key, pid, program = %plan.program, "process started");
                if let Some(out) = child.stdout.take() {
                    tokio::spawn(forward(out, key.clone(), "stdout"));
                }
                if let Some(err) = child.stderr.take() {
                    tokio::spawn(forward(err, key.clone(), "stderr"));
                }
                tokio::select! {
                    status = child.wait() => {
                        handle.pid.store(0, Ordering::SeqCst);
                        // Whatever the leader left in its group goes with it.
                        if pid != 0 {
                            kill_group(pid);
                        }
                        tracing::warn!(containersource = %key, ?status, "process exited; restarting");
                    }
                    () = cancel.cancelled() => {
                        handle.kill();
                        let _ = child.kill().await;
                        tracing::info!(containersource = %key, "process stopped");
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::error!(containersource = %key, program = %plan.program, error = %e, "cannot start process");
            }
        }
        if started.elapsed() >= HEALTHY_RUN {
            quick_exits = 0;
        }
        quick_exits += 1;
        let wait = restart_delay(quick_exits);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn forward(stream: impl AsyncRead + Unpin, key: String, name: &'static str) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(containersource = %key, stream = name, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let got: Vec<u64> = (1..=9).map(|n| restart_delay(n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(restart_delay(u32::MAX), RESTART_MAX);
    }

    #[test]
    fn environment_has_sink_and_overrides() {
        let env = ContainerPlan::environment(
            vec![("A".into(), "1".into())],
            "http://127.0.0.1:8080/default/default",
            Some(&[("team".to_owned(), "infra".to_owned())].into()),
        );
        assert_eq!(
            env,
            [
                ("A", "1"),
                ("K_SINK", "http://127.0.0.1:8080/default/default"),
                ("K_CE_OVERRIDES", r#"{"extensions":{"team":"infra"}}"#),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        let env = ContainerPlan::environment(Vec::new(), "http://x/", None);
        assert_eq!(env.len(), 1);
    }

    #[tokio::test]
    async fn restarts_after_exit_and_stops_when_cancelled() {
        let dir = std::env::temp_dir().join(format!("cebus-container-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("runs");
        let _ = std::fs::remove_file(&log);
        let plan = Arc::new(ContainerPlan {
            namespace: "default".into(),
            name: "c".into(),
            program: "sh".into(),
            args: vec![
                "-c".into(),
                format!("echo \"$K_SINK\" >> {}", log.display()),
            ],
            env: ContainerPlan::environment(Vec::new(), "http://sink/", None),
            working_dir: None,
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(supervise(plan, Arc::default(), cancel.clone()));
        let runs = || std::fs::read_to_string(&log).unwrap_or_default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // Exits at once; restarted 1 s later.
        while runs().lines().count() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not restarted: {:?}",
                runs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(runs().lines().all(|l| l == "http://sink/"), "{}", runs());
        cancel.cancel();
        task.await.unwrap();
        let after = runs().lines().count();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(runs().lines().count(), after, "restarted after stop");
        let _ = std::fs::remove_dir_all(dir);
    }
}
