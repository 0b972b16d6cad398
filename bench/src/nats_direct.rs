//! `cebus-bench nats-direct`: JetStream alone, no cebus — publish with ack and a
//! pull consumer, the same message shape cebus stores. It is the NATS
//! counterpart of the `direct` baseline: the rate this machine's nats-server
//! sustains, and its CPU per event, to set beside `nats-e2e-1`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::cebus::{cpu_seconds_of_pid, own_cpu_seconds};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server, `nats://host:port`.
    pub url: String,
    /// Measured window.
    pub duration: Duration,
    /// Load before the window, not counted.
    pub warmup: Duration,
    /// Publishes awaiting their ack at once.
    pub publishers: usize,
    /// Payload bytes.
    pub size: usize,
    /// One ack per message (`Explicit`) or one per fetched burst (`All`).
    pub ack_all: bool,
    /// `memory` instead of `file` storage.
    pub memory: bool,
}

/// Figures of one run.
#[derive(Debug)]
pub struct Figures {
    pub published_per_s: f64,
    pub consumed_per_s: f64,
    pub server_cpu_s: Option<f64>,
    pub client_cpu_s: Option<f64>,
}

/// Runs the load and returns its figures.
pub async fn run(opts: &Options) -> anyhow::Result<Figures> {
    let client = async_nats::connect(&opts.url)
        .await
        .with_context(|| format!("cannot connect to {}", opts.url))?;
    let js = jetstream::new(client.clone());
    let name = format!("bench_direct_{}", std::process::id());
    let subject = format!("bench.direct.{}", std::process::id());
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        retention: stream::RetentionPolicy::Interest,
        storage: if opts.memory {
            stream::StorageType::Memory
        } else {
            stream::StorageType::File
        },
        ..Default::default()
    })
    .await
    .context("cannot create the stream")?;
    let consumer: consumer::PullConsumer = js
        .create_consumer_on_stream(
            consumer::pull::Config {
                durable_name: Some("bench".to_owned()),
                ack_policy: if opts.ack_all {
                    consumer::AckPolicy::All
                } else {
                    consumer::AckPolicy::Explicit
                },
                max_ack_pending: 100_000,
                ..Default::default()
            },
            &name,
        )
        .await
        .context("cannot create the consumer")?;

    let published = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let payload = Bytes::from(vec![b'x'; opts.size]);
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..opts.publishers {
        let (js, subject, payload) = (js.clone(), subject.clone(), payload.clone());
        let (published, stop) = (published.clone(), stop.clone());
        tasks.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let headers = headers(p, n);
                let Ok(ack) = js
                    .publish_with_headers(subject.clone(), headers, payload.clone())
                    .await
                else {
                    continue;
                };
                if ack.await.is_ok() {
                    published.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    {
        let (consumed, stop, ack_all) = (consumed.clone(), stop.clone(), opts.ack_all);
        tasks.spawn(async move {
            let Ok(mut messages) = consumer
                .stream()
                .max_messages_per_batch(1000)
                .messages()
                .await
            else {
                return;
            };
            let mut since_ack = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let next = tokio::time::timeout(Duration::from_millis(200), messages.next()).await;
                let Ok(Some(Ok(m))) = next else { continue };
                consumed.fetch_add(1, Ordering::Relaxed);
                since_ack += 1;
                // Explicit: every message. All: one per 100, like a floor ack
                // after a burst of deliveries.
                if !ack_all || since_ack >= 100 {
                    since_ack = 0;
                    let _ = m.ack().await;
                }
            }
        });
    }
    let server = server_pid(&opts.url);
    tokio::time::sleep(opts.warmup).await;
    let (p0, c0) = (
        published.load(Ordering::Relaxed),
        consumed.load(Ordering::Relaxed),
    );
    let s0 = server.and_then(|p| cpu_seconds_of_pid(p).ok());
    let own0 = own_cpu_seconds();
    let t0 = Instant::now();
    tokio::time::sleep(opts.duration).await;
    let secs = t0.elapsed().as_secs_f64();
    let (p1, c1) = (
        published.load(Ordering::Relaxed),
        consumed.load(Ordering::Relaxed),
    );
    let s1 = server.and_then(|p| cpu_seconds_of_pid(p).ok());
    let own1 = own_cpu_seconds();
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let _ = js.delete_stream(&name).await;
    Ok(Figures {
        published_per_s: (p1 - p0) as f64 / secs,
        consumed_per_s: (c1 - c0) as f64 / secs,
        server_cpu_s: s0.zip(s1).map(|(a, b)| b - a),
        client_cpu_s: own0.zip(own1).map(|(a, b)| b - a),
    })
}

/// The headers cebus stores with an event (binary mode plus its own).
fn headers(publisher: usize, n: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    let id = format!("{publisher}-{n}");
    h.insert("Nats-Msg-Id", format!("bench/{id}").as_str());
    h.insert("ce-specversion", "1.0");
    h.insert("ce-id", id.as_str());
    h.insert("ce-source", "bench");
    h.insert("ce-type", "bench.event");
    h.insert("ce-time", "2026-11-26T10:00:00.000000Z");
    h.insert("ce-knativearrivaltime", "2026-11-26T10:00:00.000000Z");
    h.insert("content-type", "application/octet-stream");
    h.insert("cebus-ttl", "255");
    h
}

/// The nats-server process listening on the URL's port, found in `/proc`.
fn server_pid(url: &str) -> Option<u32> {
    let port = url.rsplit(':').next()?.trim_end_matches('/');
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        serves(&String::from_utf8_lossy(&cmdline), port).then_some(pid)
    })
}

/// Whether a `/proc/<pid>/cmdline` (NUL-separated) is a nats-server on `port`.
fn serves(cmdline: &str, port: &str) -> bool {
    let mut args = cmdline.split('\0');
    let is_server = args
        .next()
        .is_some_and(|a| a.rsplit('/').next() == Some("nats-server"));
    let mut args = args.peekable();
    let mut on_port = false;
    while let Some(a) = args.next() {
        if (a == "-p" || a == "--port") && args.peek() == Some(&port) {
            on_port = true;
        }
    }
    is_server && on_port
}

/// The figures as a table.
pub fn table(opts: &Options, f: &Figures) -> String {
    let per_event = |cpu: Option<f64>| {
        cpu.map_or("-".to_owned(), |c| {
            format!(
                "{:.1}",
                c * 1e6 / f.consumed_per_s.max(1.0) / opts.duration.as_secs_f64()
            )
        })
    };
    let secs = |cpu: Option<f64>| cpu.map_or("-".to_owned(), |c| format!("{c:.2}"));
    format!(
        "nats-direct ({} storage, {} acks, {} publishers, {} B) — {:.0} s window\n\
         published/s  consumed/s  server cpu s  server µs/event  client cpu s  client µs/event\n\
         {:>11.0}  {:>10.0}  {:>12}  {:>15}  {:>12}  {:>15}\n",
        if opts.memory { "memory" } else { "file" },
        if opts.ack_all {
            "cumulative"
        } else {
            "per-message"
        },
        opts.publishers,
        opts.size,
        opts.duration.as_secs_f64(),
        f.published_per_s,
        f.consumed_per_s,
        secs(f.server_cpu_s),
        per_event(f.server_cpu_s),
        secs(f.client_cpu_s),
        per_event(f.client_cpu_s),
    )
}

#[cfg(test)]
mod tests {
    use super::serves;

    #[test]
    fn finds_the_server_by_port() {
        let cases = [
            ("nats-server\0-js\0-p\x004222\0", true),
            ("/usr/bin/nats-server\0--port\x004222\0-js\0", true),
            ("nats-server\0-p\x0042220\0", false),
            ("nats-server\0-m\x004222\0", false),
            ("not-nats\0-p\x004222\0", false),
            ("", false),
        ];
        for (cmdline, want) in cases {
            assert_eq!(serves(cmdline, "4222"), want, "{cmdline:?}");
        }
    }
}
