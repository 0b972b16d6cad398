//! `cebus display`: an event-display sink, the quickstart's subscriber.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use cebus_events::http::decode;

/// Flags of `cebus display`.
#[derive(Debug, clap::Args)]
pub struct DisplayArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    addr: SocketAddr,
    /// Print only a count of received events once a second (for load tests).
    #[arg(long)]
    quiet: bool,
}

/// Events received, for `--quiet`.
static RECEIVED: AtomicU64 = AtomicU64::new(0);
/// Whether to print each event.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Renders an event the way Knative's event_display does.
pub fn render(event: &cebus_events::Event) -> String {
    let mut out = String::from("☁️  cloudevents.Event\nContext Attributes,\n");
    out.push_str(&format!("  specversion: {}\n", event.specversion()));
    for (name, value) in event.attributes() {
        out.push_str(&format!("  {name}: {value}\n"));
    }
    if let Some(data) = event.data() {
        out.push_str("Data,\n  ");
        match std::str::from_utf8(data) {
            Ok(s) => out.push_str(s),
            Err(_) => out.push_str(&format!("<{} bytes of binary data>", data.len())),
        }
        out.push('\n');
    }
    out
}

async fn receive(uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    if QUIET.load(Ordering::Relaxed) {
        return match decode(&headers, body) {
            Ok(d) => {
                RECEIVED.fetch_add(d.into_events().len() as u64, Ordering::Relaxed);
                (StatusCode::ACCEPTED, String::new())
            }
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()),
        };
    }
    match decode(&headers, body) {
        Ok(d) => {
            // One write per event, so concurrent deliveries never interleave lines.
            let mut out = std::io::stdout().lock();
            // Where it was delivered and how: one display can serve several
            // triggers (different paths, binary or structured mode).
            let mode = if headers.contains_key("ce-specversion") {
                "binary"
            } else {
                "structured"
            };
            for e in d.into_events() {
                let _ = writeln!(out, "POST {} ({mode} mode)\n{}", uri.path(), render(&e));
            }
            let _ = out.flush();
            (StatusCode::ACCEPTED, String::new())
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Runs `cebus display` until ctrl-c.
pub async fn display(args: DisplayArgs) -> anyhow::Result<ExitCode> {
    if args.quiet {
        QUIET.store(true, Ordering::Relaxed);
        tokio::spawn(async {
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let now = RECEIVED.load(Ordering::Relaxed);
                if now != last {
                    println!("received {now} events ({}/s)", now - last);
                    last = now;
                }
            }
        });
    }
    let app = Router::new().route("/", post(receive)).fallback(receive);
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    eprintln!(
        "event display listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}
