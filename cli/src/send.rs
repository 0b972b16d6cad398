//! `cebus send`: build one CloudEvent from flags and POST it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bytes::Bytes;
use cebus_events::{Event, attr};
use http::HeaderMap;

/// Flags of `cebus send`.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// Where to POST the event (a broker ingress URL or any sink).
    url: String,
    /// `type` attribute.
    #[arg(long = "type")]
    ty: String,
    /// `source` attribute.
    #[arg(long)]
    source: String,
    /// `id` attribute (default: a fresh unique id).
    #[arg(long)]
    id: Option<String>,
    /// `subject` attribute.
    #[arg(long)]
    subject: Option<String>,
    /// Extension attribute as `key=value` (repeatable).
    #[arg(short = 'e', long = "extension", value_name = "KEY=VALUE")]
    extensions: Vec<String>,
    /// Event data as a string.
    #[arg(long, conflicts_with = "data_file")]
    data: Option<String>,
    /// Event data read from a file.
    #[arg(long)]
    data_file: Option<PathBuf>,
    /// `datacontenttype` (default `application/json` when there is data).
    #[arg(long)]
    content_type: Option<String>,
    /// Send in structured mode (`application/cloudevents+json`) instead of binary.
    #[arg(long)]
    structured: bool,
}

fn fresh_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{nanos:x}-{}", std::process::id())
}

/// Runs `cebus send`.
pub async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let mut event = Event::with_required(&args.id.unwrap_or_else(fresh_id), &args.source, &args.ty);
    if let Some(s) = args.subject {
        event.set(attr::SUBJECT, s);
    }
    for kv in &args.extensions {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("extension {kv:?} is not key=value"))?;
        event.set(k, v);
    }
    let data = match (args.data, args.data_file) {
        (Some(d), _) => Some(Bytes::from(d)),
        (None, Some(f)) => Some(Bytes::from(
            std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?,
        )),
        (None, None) => None,
    };
    if data.is_some() {
        event.set(
            attr::DATACONTENTTYPE,
            args.content_type
                .unwrap_or_else(|| "application/json".into()),
        );
    }
    event.set_data(data);
    if let Err(e) = cebus_events::validate(&event) {
        anyhow::bail!("invalid event: {e}");
    }
    let mut headers = HeaderMap::new();
    let body = if args.structured {
        cebus_events::http::encode_structured(&event, &mut headers)
    } else {
        cebus_events::http::encode_binary(&event, &mut headers)
    };
    let client = reqwest::Client::new();
    let resp = client
        .post(&args.url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .with_context(|| format!("sending to {}", args.url))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    println!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    if !text.is_empty() {
        println!("{text}");
    }
    if status.is_success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "server refused the event: {} {}",
            status.as_u16(),
            text.trim()
        );
        Ok(ExitCode::FAILURE)
    }
}
