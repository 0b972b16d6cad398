//! The system under test: a `cebus run` child process on generated YAML in a temp
//! dir, its readiness, and its CPU time and resident memory from `/proc`.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use http::StatusCode;
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::client;
use crate::yaml::ConfigFile;

/// The ingress path of Broker `default` in namespace `default`.
pub const INGRESS_PATH: &str = "/default/default";

/// How to start cebus.
#[derive(Debug, Clone)]
pub struct CebusOptions {
    /// The `cebus` binary.
    pub bin: PathBuf,
    /// `--channel-capacity`.
    pub channel_capacity: usize,
    /// `--max-in-flight` (per trigger).
    pub max_in_flight: usize,
    /// `--workers` (default: cebus's own, one per CPU).
    pub workers: Option<u16>,
    /// `RUST_LOG` of the child.
    pub log: String,
    /// How long to wait for `GET /readyz` to answer 200.
    pub ready_timeout: Duration,
}

/// A running `cebus run`; killed when dropped.
pub struct Cebus {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    dir: TempDir,
    ticks_per_s: f64,
}

/// The `cebus` binary: `explicit`, else the one next to this executable.
pub fn find_binary(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(p.is_file(), "--cebus {}: no such file", p.display());
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let next_to = exe.with_file_name("cebus");
    anyhow::ensure!(
        next_to.is_file(),
        "no cebus binary at {}; build it (cargo build --release -p cebus) or pass --cebus PATH",
        next_to.display()
    );
    Ok(next_to)
}

impl Cebus {
    /// Writes `files`, starts cebus on a free loopback port and waits until it is
    /// ready. Returns the process and how long readiness took.
    pub async fn start(
        opts: &CebusOptions,
        files: &[ConfigFile],
    ) -> anyhow::Result<(Cebus, Duration)> {
        let dir = tempfile::Builder::new().prefix("cebus-bench-").tempdir()?;
        for f in files {
            std::fs::write(dir.path().join(&f.name), &f.text)?;
        }
        let addr = free_port()?;
        let log = std::fs::File::create(dir.path().join("cebus.log"))?;
        let started = Instant::now();
        let child = Command::new(&opts.bin)
            .arg("run")
            .arg("-f")
            .arg(dir.path())
            .arg("--addr")
            .arg(addr.to_string())
            .arg("--channel-capacity")
            .arg(opts.channel_capacity.to_string())
            .arg("--max-in-flight")
            .arg(opts.max_in_flight.to_string())
            .args(
                opts.workers
                    .map(|n| vec!["--workers".to_owned(), n.to_string()])
                    .unwrap_or_default(),
            )
            .env("RUST_LOG", &opts.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", opts.bin.display()))?;
        let pid = child.id().context("cebus exited at once")?;
        let mut cebus = Cebus {
            child,
            pid,
            addr,
            dir,
            ticks_per_s: clock_ticks_per_second(),
        };
        loop {
            if let Some(status) = cebus.child.try_wait()? {
                anyhow::bail!(
                    "cebus exited ({status}) before it was ready:\n{}",
                    cebus.log_tail()
                );
            }
            if let Ok(StatusCode::OK) = client::get(addr, "/readyz").await {
                return Ok((cebus, started.elapsed()));
            }
            if started.elapsed() > opts.ready_timeout {
                anyhow::bail!(
                    "cebus was not ready within {:?}:\n{}",
                    opts.ready_timeout,
                    cebus.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ingress listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces config files, each atomically (written aside, then renamed over
    /// the old one); a change spanning files may be seen half-done by one poll.
    pub fn rewrite(&self, files: &[ConfigFile]) -> anyhow::Result<()> {
        for f in files {
            // A name cebus does not load (not *.yaml), so a half-written file is never read.
            let tmp = self.dir.path().join(format!("{}.tmp", f.name));
            std::fs::write(&tmp, &f.text)?;
            std::fs::rename(&tmp, self.dir.path().join(&f.name))?;
        }
        Ok(())
    }

    /// Sends SIGHUP: cebus reads its config now instead of at its next poll.
    pub fn reload(&self) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .arg("-HUP")
            .arg(self.pid.to_string())
            .status()
            .context("running kill -HUP")?;
        anyhow::ensure!(status.success(), "kill -HUP {} failed", self.pid);
        Ok(())
    }

    /// User + system CPU seconds the process has used so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds_of(&self.pid.to_string(), self.ticks_per_s)
    }

    /// Resident memory (VmRSS) in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        parse_vmrss_kib(&status).context("no VmRSS in /proc/<pid>/status")
    }

    /// The last lines cebus wrote to stderr.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("cebus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Kills the process and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// User + system CPU seconds of this process (the generator and sink).
pub fn own_cpu_seconds() -> Option<f64> {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    cpu_seconds_of("self", *TICKS.get_or_init(clock_ticks_per_second)).ok()
}

/// User + system CPU seconds of another process (a nats-server, say).
pub fn cpu_seconds_of_pid(pid: u32) -> anyhow::Result<f64> {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    cpu_seconds_of(&pid.to_string(), *TICKS.get_or_init(clock_ticks_per_second))
}

fn cpu_seconds_of(pid: &str, ticks_per_s: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_cpu_ticks(&stat).context("unexpected /proc/<pid>/stat format")?;
    Ok(ticks as f64 / ticks_per_s)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces; count
    // fields after the last ')': field 3 (state) is index 0 there.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The `VmRSS:` value of `/proc/<pid>/status`, in KiB.
pub fn parse_vmrss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `getconf CLK_TCK` (100 on every Linux we know of, used if getconf is missing).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

/// A loopback port that was free a moment ago (cebus binds it right after).
fn free_port() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime() {
        let stat = "4242 (cebus run) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    350 75 0 0 20 0 6 0 123456 1000000 2000 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(425));
        // A command name with ") " in it does not shift the fields.
        let odd = "7 (a) b) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_cpu_ticks(odd), Some(11));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn vmrss_is_read_in_kib() {
        let status = "Name:\tcebus\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vmrss_kib(status), Some(12345));
        assert_eq!(parse_vmrss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn own_process_figures_are_readable() {
        let me = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        assert!(parse_cpu_ticks(&stat).is_some());
        let status = std::fs::read_to_string(format!("/proc/{me}/status")).unwrap();
        assert!(parse_vmrss_kib(&status).unwrap() > 0);
    }
}
