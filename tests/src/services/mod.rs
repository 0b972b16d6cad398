//! The real services the tests run against, found or started loudly: Kafka and
//! kcat ([`kafka`]), nats-server ([`nats`]), the CloudEvents Python SDK
//! ([`python`]). A test that needs a missing service fails, naming the script
//! that provides it; it never skips.

use std::time::Duration;

pub mod kafka;
pub mod nats;
pub mod python;

/// The address of the Kafka broker the tests use, `$KAFKA_BOOTSTRAP`
/// (`host:port`). Panics when it is unset: `scripts/test` starts Kafka
/// (`scripts/kafka.sh`) and sets it; a test that needs Kafka never skips.
pub fn kafka_bootstrap() -> String {
    service_env("KAFKA_BOOTSTRAP", "scripts/kafka.sh")
}

/// The URL of the NATS server (JetStream enabled) the tests use, `$NATS_URL`.
/// Panics when it is unset: `scripts/test` starts nats-server (`scripts/nats.sh`)
/// and sets it; a test that needs NATS never skips.
pub fn nats_url() -> String {
    service_env("NATS_URL", "scripts/nats.sh")
}

fn service_env(var: &str, script: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{var} is not set: run scripts/test, which starts Kafka/NATS \
             (or by hand: {script} start && eval \"$({script} env)\")"
        ),
    }
}

/// Runs `command` with `stdin` as its input and waits at most `within` for it to
/// exit; kills it and panics after that. Panics, with its stderr, when it fails.
pub fn run_tool(
    command: &mut std::process::Command,
    stdin: &[u8],
    within: Duration,
) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .unwrap_or_else(|e| panic!("writing to {what}: {e}"));
    // Wait in a thread so a chatty tool never blocks on a full pipe.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(within) {
        Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {what}: {e}")),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("{what} did not finish within {within:?}");
        }
    };
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
