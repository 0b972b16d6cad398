//! The real `cebus` binary end to end: `validate`, `run` + `display` + `send`,
//! graceful shutdown on SIGTERM, and every `--help`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cebus_e2e::{Cebus, Reply, Sink, broker_yaml, cebus_bin, post_binary};

/// How long a process may take to become ready, answer or exit.
const WITHIN: Duration = Duration::from_secs(15);

fn cebus() -> Command {
    let mut c = Command::new(cebus_bin());
    c.env("RUST_LOG", "info");
    c
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// A free port on loopback (bind :0, read it, release it).
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind :0");
    l.local_addr().expect("local addr").to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Lines a child wrote so far, appended by a reader thread.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

impl Lines {
    fn collect(stream: impl Read + Send + 'static) -> Arc<Lines> {
        let lines = Arc::new(Lines::default());
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                sink.lines.lock().unwrap().push(line);
                sink.grew.notify_all();
            }
        });
        lines
    }

    fn all(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The first line satisfying `pred`, waiting up to `within`.
    fn wait(&self, within: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        let mut lines = self.lines.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no line {what} within {within:?}; got:\n{}",
                lines.join("\n")
            );
            lines = self.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Waits until the whole output contains `needle`.
    fn wait_contains(&self, within: Duration, needle: &str) {
        let deadline = Instant::now() + within;
        let mut lines = self.lines.lock().unwrap();
        loop {
            if lines.join("\n").contains(needle) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "output lacks {needle:?} after {within:?}:\n{}",
                lines.join("\n")
            );
            lines = self.grew.wait_timeout(lines, left).unwrap().0;
        }
    }
}

/// A child `cebus` process, killed if the test ends before it exits.
struct Proc {
    child: Child,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = cebus()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn cebus {args:?}: {e}"));
        let stdout = Lines::collect(child.stdout.take().unwrap());
        let stderr = Lines::collect(child.stderr.take().unwrap());
        Proc {
            child,
            stdout,
            stderr,
        }
    }

    /// `cebus run -f dir --addr addr`, returned once it printed `broker ingress: <url>`
    /// for `broker`; also returns that URL.
    fn run(dir: &Path, addr: &str, broker: &str) -> (Proc, String) {
        Proc::run_with(dir, addr, broker, &[])
    }

    /// [`Proc::run`] with `extra` arguments.
    fn run_with(dir: &Path, addr: &str, broker: &str, extra: &[&str]) -> (Proc, String) {
        let mut args = vec!["run", "-f", dir.to_str().unwrap(), "--addr", addr];
        args.extend_from_slice(extra);
        let p = Proc::spawn(&args);
        let suffix = format!("/{broker}");
        let line = p.stdout.wait(WITHIN, "announcing the ingress", |l| {
            l.starts_with("broker ingress: ") && l.ends_with(&suffix)
        });
        let url = line.trim_start_matches("broker ingress: ").to_owned();
        assert_eq!(url, format!("http://{addr}{suffix}"));
        (p, url)
    }

    /// `cebus display --addr addr`, returned once it listens.
    fn display(addr: &str) -> Proc {
        let p = Proc::spawn(&["display", "--addr", addr]);
        p.stderr.wait(WITHIN, "announcing the display", |l| {
            l.contains("event display listening on")
        });
        p
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit; returns its status and when it was seen exiting.
    fn wait_exit(&mut self, within: Duration) -> (ExitStatus, Instant) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status, Instant::now());
            }
            assert!(
                Instant::now() < deadline,
                "cebus did not exit within {within:?}; stderr:\n{}",
                self.stderr.all()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs cebus to completion.
fn output(args: &[&str]) -> Output {
    cebus()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run cebus {args:?}: {e}"))
}

/// `validate -f dir` on a folder holding `files`; returns the output.
fn validate_files(files: &[(&str, &str)]) -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().unwrap();
    for (name, yaml) in files {
        std::fs::write(dir.path().join(name), yaml).unwrap();
    }
    let out = output(&["validate", "-f", dir.path().to_str().unwrap()]);
    (dir, out)
}

const BROKER: &str =
    "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: default\n";

fn trigger_x(broker: &str, filters: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: x\nspec:\n  broker: {broker}\n  subscriber:\n    uri: http://127.0.0.1:9/\n{filters}"
    )
}

#[test]
fn validate_quickstart_lists_brokers_and_triggers() {
    let out = output(&[
        "validate",
        "-f",
        examples().join("quickstart").to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "validate failed:\n{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    for expected in [
        "Broker default/default (ingress http://127.0.0.1:8080/default/default)",
        "Trigger default/orders -> http://127.0.0.1:8081/",
        "Trigger default/shop-audit -> http://127.0.0.1:8081/audit",
    ] {
        assert!(
            lines.contains(&expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn validate_reports_file_object_and_field() {
    let cases = [
        (
            "unknown spec field",
            trigger_x("default", "  colour: red\n"),
            "spec.colour",
            "unknown field",
        ),
        (
            "empty exact value",
            trigger_x("default", "  filters:\n    - exact:\n        type: \"\"\n"),
            "spec.filters[0].exact",
            "must not be empty",
        ),
        (
            "missing broker",
            trigger_x("nope", ""),
            "spec.broker",
            "nope",
        ),
        (
            "unparsable cesql filter",
            trigger_x("default", "  filters:\n    - cesql: \"type = \"\n"),
            "spec.filters[0].cesql",
            "expected",
        ),
    ];
    for (case, trigger, field, message) in cases {
        let (_dir, out) =
            validate_files(&[("a-broker.yaml", BROKER), ("x-trigger.yaml", &trigger)]);
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success(),
            "{case}: validate accepted it:\n{}",
            text(&out.stdout)
        );
        let line = stderr
            .lines()
            .find(|l| l.contains("Trigger default/x"))
            .unwrap_or_else(|| panic!("{case}: no error names Trigger default/x:\n{stderr}"));
        for part in ["x-trigger.yaml", field, message] {
            assert!(line.contains(part), "{case}: error lacks {part:?}: {line}");
        }
    }
}

#[test]
fn run_display_and_send() {
    let dir = tempfile::tempdir().unwrap();
    let (run_addr, display_addr) = (free_addr(), free_addr());
    std::fs::write(
        dir.path().join("config.yaml"),
        broker_yaml(
            "default",
            "",
            &[("all", "", &format!("http://{display_addr}/"))],
        ),
    )
    .unwrap();
    let display = Proc::display(&display_addr);
    let (_run, ingress) = Proc::run(dir.path(), &run_addr, "default/default");

    let out = output(&[
        "send",
        &ingress,
        "--type",
        "com.example.order",
        "--source",
        "/shop",
        "--id",
        "binary-1",
        "--data",
        r#"{"id":1}"#,
        "-e",
        "color=red",
        "--subject",
        "s",
    ]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "send failed: {stdout}{}",
        text(&out.stderr)
    );
    assert!(stdout.starts_with("202"), "send printed: {stdout}");
    // The data line comes last in the display's block: wait for the whole block.
    display.stdout.wait_contains(WITHIN, r#"{"id":1}"#);
    let shown = display.stdout.all();
    for part in [
        "type: com.example.order",
        "source: /shop",
        "subject: s",
        "color: red",
        r#"{"id":1}"#,
    ] {
        assert!(shown.contains(part), "display lacks {part:?}:\n{shown}");
    }

    let out = output(&[
        "send",
        &ingress,
        "--structured",
        "--type",
        "com.example.refund",
        "--source",
        "/till",
        "--id",
        "structured-1",
        "--data",
        r#"{"id":2}"#,
        "-e",
        "color=blue",
    ]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "structured send failed: {stdout}{}",
        text(&out.stderr)
    );
    assert!(
        stdout.starts_with("202"),
        "structured send printed: {stdout}"
    );
    // The data line comes last in the display's block: wait for the whole block.
    display.stdout.wait_contains(WITHIN, r#"{"id":2}"#);
    let shown = display.stdout.all();
    let event = shown
        .split("cloudevents.Event")
        .find(|block| block.contains("id: structured-1"))
        .expect("the structured event's block");
    for part in [
        "type: com.example.refund",
        "source: /till",
        "color: blue",
        r#""id":2"#,
    ] {
        assert!(
            event.replace(' ', "").contains(&part.replace(' ', "")),
            "display lacks {part:?} for the structured event:\n{event}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_unknown_broker_fails_with_the_reason() {
    let cebus = Cebus::start(&broker_yaml("default", "", &[])).await;
    let url = cebus.broker_url("default", "nope");
    let out = tokio::task::spawn_blocking(move || {
        output(&[
            "send", &url, "--type", "t", "--source", "/s", "--data", "{}",
        ])
    })
    .await
    .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success(),
        "send to an unknown broker exited 0: {stdout}"
    );
    assert!(stdout.starts_with("404"), "send printed: {stdout}");
    assert!(
        stderr.contains("404") && stderr.contains("no broker default/nope"),
        "stderr lacks the server's reason: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_in_flight_delivery_and_exits_0() {
    let answer_after = Duration::from_secs(1);
    let sink = Sink::start_with(Reply::status(200).delay(answer_after)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        broker_yaml("default", "", &[("slow", "", &sink.url())]),
    )
    .unwrap();
    let addr = free_addr();
    let dir_path = dir.path().to_owned();
    let (mut run, ingress) =
        tokio::task::spawn_blocking(move || Proc::run(&dir_path, &addr, "default/default"))
            .await
            .unwrap();

    let (status, body) = post_binary(&ingress, "drain-me", "order", "{}").await;
    assert_eq!(status, 202, "{body}");
    let got = sink.wait_for(1, WITHIN).await; // the delivery is now in flight
    run.signal("TERM");
    let (run, (exit, exited_at)) = tokio::task::spawn_blocking(move || {
        let r = run.wait_exit(WITHIN);
        (run, r)
    })
    .await
    .unwrap();

    let stderr = run.stderr.all();
    assert!(exit.success(), "cebus run exited with {exit:?}:\n{stderr}");
    assert_eq!(
        sink.received().len(),
        1,
        "the event must be delivered exactly once"
    );
    assert_eq!(got[0].header("ce-id"), Some("drain-me"));
    // Ordering, not speed: the sink answers `answer_after` after the request
    // arrived, and cebus must not exit before that answer.
    assert!(
        exited_at >= got[0].at + answer_after,
        "cebus exited {:?} after the request arrived, before the subscriber answered",
        exited_at - got[0].at
    );
    assert!(
        !stderr.contains("drain deadline passed"),
        "cebus gave up draining:\n{stderr}"
    );
}

/// `cebus run` (with `extra` arguments) on a folder holding `yaml` as
/// `config.yaml`, once it announced Broker default/default: the folder, the
/// process and the ingress URL.
async fn run_with_config(yaml: &str, extra: &[&'static str]) -> (tempfile::TempDir, Proc, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    let addr = free_addr();
    let dir_path = dir.path().to_owned();
    let extra = extra.to_vec();
    let (run, ingress) = tokio::task::spawn_blocking(move || {
        Proc::run_with(&dir_path, &addr, "default/default", &extra)
    })
    .await
    .unwrap();
    (dir, run, ingress)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_a_bad_edit_and_keeps_serving() {
    let sink = Sink::start().await;
    let good = broker_yaml("default", "", &[("a", "", &sink.url())]);
    let (dir, run, ingress) = run_with_config(&good, &[]).await;

    // Write then rename, as editors do.
    let bad = good.replace(
        "spec:\n  broker: default\n",
        "spec:\n  broker: default\n  colour: red\n",
    );
    assert_ne!(bad, good);
    std::fs::write(dir.path().join(".config.yaml.tmp"), &bad).unwrap();
    std::fs::rename(
        dir.path().join(".config.yaml.tmp"),
        dir.path().join("config.yaml"),
    )
    .unwrap();
    let stderr = run.stderr.clone();
    let line = tokio::task::spawn_blocking(move || {
        stderr.wait(WITHIN, "rejecting the reload", |l| {
            l.contains("config reload rejected")
        })
    })
    .await
    .unwrap();
    for part in ["config.yaml", "Trigger default/a", "spec.colour"] {
        assert!(
            line.contains(part),
            "the rejection does not say {part:?}: {line}"
        );
    }

    let (status, body) = post_binary(&ingress, "still-served", "order", "{}").await;
    assert_eq!(status, 202, "{body}");
    let got = sink.wait_for(1, WITHIN).await;
    assert_eq!(got[0].header("ce-id"), Some("still-served"));
}

#[test]
fn every_help_exits_0() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["send", "--help"],
        &["validate", "--help"],
        &["display", "--help"],
    ] {
        let out = output(args);
        assert!(
            out.status.success(),
            "cebus {args:?} exited {:?}: {}",
            out.status,
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("Usage"),
            "cebus {args:?} printed no usage"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reads_the_config_at_once_and_one_worker_serves() {
    let sink = Sink::start().await;
    let yaml = broker_yaml("default", "", &[("a", "", &sink.url())]);
    // One worker thread (`--workers`) serves as well.
    let (_dir, run, ingress) = run_with_config(&yaml, &["--workers", "1"]).await;
    // Unchanged files: only the signal makes cebus read them again.
    run.signal("HUP");
    let stderr = run.stderr.clone();
    tokio::task::spawn_blocking(move || {
        stderr.wait_contains(WITHIN, "SIGHUP: reading the config now");
        stderr.wait_contains(WITHIN, "config reloaded");
    })
    .await
    .unwrap();
    let (status, body) = post_binary(&ingress, "after-hup", "order", "{}").await;
    assert_eq!(status, 202, "{body}");
    let got = sink.wait_for(1, WITHIN).await;
    assert_eq!(got[0].header("ce-id"), Some("after-hup"));
}
