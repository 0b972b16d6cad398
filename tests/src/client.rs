//! The producer side: posting CloudEvents (binary mode, raw, many at once, until
//! a durable broker is ready) and other requests to cebus.

use std::time::{Duration, Instant};

use crate::init;

/// The headers of a binary-mode 1.0 event with JSON data.
fn binary_headers<'a>(id: &'a str, ty: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", "/e2e"),
        ("ce-type", ty),
        ("content-type", "application/json"),
    ]
}

/// Posts a binary-mode 1.0 event; returns (status, body).
pub async fn post_binary(url: &str, id: &str, ty: &str, data: &str) -> (u16, String) {
    post(url, &binary_headers(id, ty), data.to_owned()).await
}

/// Posts raw headers and body; returns (status, body).
pub async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let (status, _, body) = request(reqwest::Method::POST, url, headers, body).await;
    (status, body)
}

/// GitHub's `X-Hub-Signature-256` value for `body` signed with `secret`.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Sends `method` to `url` with `headers` and `body`; returns (status, headers, body).
pub async fn request(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, String) {
    init();
    let mut req = reqwest::Client::new().request(method, url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap_or_default())
}

/// `n` events (ids `prefix-0`…, source `/e2e/<prefix>`) posted with `concurrency`
/// clients; every answer must be 202.
pub async fn post_many(url: &str, prefix: &str, n: usize, concurrency: usize) {
    let client = reqwest::Client::new();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, url, prefix) = (
            client.clone(),
            next.clone(),
            url.to_owned(),
            prefix.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let resp = client
                    .post(&url)
                    .header("ce-specversion", "1.0")
                    .header("ce-id", format!("{prefix}-{i}"))
                    .header("ce-source", format!("/e2e/{prefix}"))
                    .header("ce-type", "load")
                    .body("{}")
                    .send()
                    .await
                    .expect("post");
                assert_eq!(resp.status().as_u16(), 202, "event {i}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("poster");
    }
}

/// How long a broker may take to accept its first event: a durable broker sets
/// up its topic or stream in the background, and a child process must start.
pub const READY: Duration = Duration::from_secs(90);

/// Posts a binary event until the broker accepts it (202), tolerating refused
/// connections (a child process not listening yet) and other answers (a
/// durable broker still setting up its topic or stream); panics after [`READY`].
pub async fn post_until_accepted(url: &str, id: &str, ty: &str) {
    init();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + READY;
    loop {
        let mut req = client.post(url).body("{}");
        for (k, v) in binary_headers(id, ty) {
            req = req.header(k, v);
        }
        let last = match req.send().await {
            Ok(resp) if resp.status().as_u16() == 202 => return,
            Ok(resp) => format!(
                "{} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            ),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "broker at {url} never accepted within {READY:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the broker at `url` accepts events (see [`post_until_accepted`]),
/// posting probes with id `ready-probe` and type `probe`.
pub async fn wait_ready(url: &str) {
    post_until_accepted(url, "ready-probe", "probe").await;
}
