//! WebhookSource replays end to end, against the real `cebus run` binary: a
//! captured signed GitHub delivery sent again is answered without a second
//! delivery (and one that failed downstream stays retryable), Stripe-style
//! timestamped signatures outside the tolerance are refused, and a request
//! without its signature header is refused from its headers alone.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cebus_e2e::{Proc, Reply, Sink, broker_yaml, github_signature, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const STRIPE_SECRET: &str = "whsec_e2eReplaySecret";

/// A broker with one trigger to `sink`, and WebhookSources: `github` (HMAC,
/// default dedup on `X-GitHub-Delivery`) into the broker and `relay` (HMAC)
/// straight to `direct`'s URL — YAML that cebus read before replays were
/// handled, so the tests of GitHub deliveries fail on that code for the right
/// reason — plus, `with_stripe`, `stripe` (Stripe's signature) into the broker.
fn config(sink: &Sink, direct: &Sink, with_stripe: bool) -> String {
    let source = |name: &str, spec: &str| {
        format!(
            "---\napiVersion: sources.cebus.dev/v1alpha1\nkind: WebhookSource\nmetadata:\n  \
             name: {name}\nspec:\n{spec}"
        )
    };
    let hmac = "  auth:\n    hmac:\n      secretKeyRef: {name: hooks, key: github}\n";
    let to_broker =
        "  sink:\n    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}\n";
    format!(
        "{}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: hooks\nstringData:\n  \
         github: \"{GITHUB_SECRET}\"\n  stripe: {STRIPE_SECRET}\n{}{}{}",
        broker_yaml("default", "", &[("all", "", &sink.url())]),
        source(
            "github",
            &format!(
                "  eventTypeFromHeader: {{header: X-GitHub-Event, prefix: com.github.}}\n  \
                 idFromHeader: X-GitHub-Delivery\n{hmac}{to_broker}"
            ),
        ),
        if with_stripe {
            source(
                "stripe",
                &format!(
                    "  eventType: com.stripe.event\n  auth:\n    stripe:\n      \
                     secretKeyRef: {{name: hooks, key: stripe}}\n{to_broker}"
                ),
            )
        } else {
            String::new()
        },
        source(
            "relay",
            &format!(
                "  eventType: com.github.push\n{hmac}  sink:\n    uri: {}\n",
                direct.url()
            ),
        ),
    )
}

/// `cebus run` on `yaml`, once it answers `/readyz`.
async fn start(yaml: &str) -> (Proc, tempfile::TempDir) {
    cebus_e2e::init();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.yaml"), yaml).expect("write config");
    let cebus = Proc::start(dir.path(), &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = reqwest::get(format!("{}/readyz", cebus.base))
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return (cebus, dir);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cebus never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn github_headers<'a>(delivery: &'a str, signature: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("x-github-event", "push"),
        ("x-github-delivery", delivery),
        ("x-github-hook-id", "292430182"),
        ("content-type", "application/json"),
        ("user-agent", "GitHub-Hookshot/044aadd"),
        ("x-hub-signature-256", signature),
    ]
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Stripe's `Stripe-Signature` for `body` at `t`.
fn stripe_signature(t: i64, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(STRIPE_SECRET.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// Sends a request head announcing a 1 MiB body and never sends the body: the
/// answer must come from the headers alone. Returns (status, body).
async fn head_only(base: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 1048576\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).await.expect("write head");
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    let status = text[9..12].parse().expect("status code");
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]);
                    return (status, body.into_owned());
                }
            }
            let n = conn.read(&mut chunk).await.expect("read answer");
            assert!(n > 0, "connection closed without a full answer: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap_or_else(|_| panic!("no answer to {path} within 5 s: the server waits for the body"))
}

#[tokio::test]
async fn a_replayed_github_delivery_is_delivered_once() {
    let sink = Sink::start().await;
    let direct = Sink::start().await;
    let (cebus, _dir) = start(&config(&sink, &direct, false)).await;
    let url = format!("{}/webhooks/default/github", cebus.base);
    let body = br#"{"ref":"refs/heads/main","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"}"#;
    let signature = github_signature(GITHUB_SECRET, body);
    let delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    let captured = github_headers(delivery, &signature);

    let (status, text) = post(&url, &captured, body.to_vec()).await;
    assert_eq!(status, 202, "{text}");
    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("ce-id"), Some(delivery));

    // The same captured request, byte for byte: answered 200 (so the provider
    // stops retrying), not delivered again.
    let (status, text) = post(&url, &captured, body.to_vec()).await;
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON answer");
    assert_eq!(answer["duplicate"], delivery, "{text}");

    // Another delivery id is another delivery.
    let (status, text) = post(
        &url,
        &github_headers("9a1b2c3d-0000-11e3-81ab-4c9367dc0958", &signature),
        body.to_vec(),
    )
    .await;
    assert_eq!(status, 202, "{text}");
    sink.wait_for(2, WAIT).await;
    // A replay with a forged signature is refused, not reported as a duplicate.
    let forged = github_signature("another secret", body);
    let (status, text) = post(&url, &github_headers(delivery, &forged), body.to_vec()).await;
    assert_eq!(status, 401, "{text}");
    sink.expect_no_more_than(2, Duration::from_millis(500))
        .await;

    // A delivery its sink refused is not remembered: the provider's retry goes
    // through, and only then is the id a duplicate.
    let relay = format!("{}/webhooks/default/relay", cebus.base);
    direct.script([Reply::status(500)]);
    let retried = github_headers("5e5e5e5e-1111-11e3-81ab-4c9367dc0958", &signature);
    let (status, text) = post(&relay, &retried, body.to_vec()).await;
    assert_eq!(status, 502, "{text}");
    let (status, text) = post(&relay, &retried, body.to_vec()).await;
    assert_eq!(status, 202, "{text}");
    let (status, text) = post(&relay, &retried, body.to_vec()).await;
    assert_eq!(status, 200, "{text}");
    direct.wait_for(2, WAIT).await;
    direct
        .expect_no_more_than(2, Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn stripe_signatures_outside_the_tolerance_are_refused() {
    let sink = Sink::start().await;
    let direct = Sink::start().await;
    let (cebus, _dir) = start(&config(&sink, &direct, true)).await;
    let url = format!("{}/webhooks/default/stripe", cebus.base);
    let body =
        br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"charge.succeeded"}"#;
    let json = ("content-type", "application/json");

    // Captured an hour ago: correctly signed, but stale.
    let old = stripe_signature(unix_now() - 3600, body);
    let (status, text) = post(&url, &[("stripe-signature", &old), json], body.to_vec()).await;
    assert_eq!(status, 401, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON answer");
    let reason = answer["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("stripe-signature") && reason.contains("the tolerance is 300 s"),
        "{text}"
    );

    // A stale timestamp is known from the headers alone.
    let (status, text) = head_only(
        &cebus.base,
        "/webhooks/default/stripe",
        &[json, ("stripe-signature", &old)],
    )
    .await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("s old; the tolerance is 300 s"), "{text}");

    // Fresh: delivered, once.
    let fresh = stripe_signature(unix_now(), body);
    let (status, text) = post(&url, &[("stripe-signature", &fresh), json], body.to_vec()).await;
    assert_eq!(status, 202, "{text}");
    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("ce-type"), Some("com.stripe.event"));
    assert_eq!(got[0].body.as_ref(), body);
    // Fresh, but for another body: refused.
    let (status, _) = post(&url, &[("stripe-signature", &fresh), json], "{}").await;
    assert_eq!(status, 401);
    sink.expect_no_more_than(1, Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn a_request_without_its_signature_is_refused_from_the_headers() {
    let sink = Sink::start().await;
    let direct = Sink::start().await;
    let (cebus, _dir) = start(&config(&sink, &direct, false)).await;
    let event = ("x-github-event", "push");
    let json = ("content-type", "application/json");

    let (status, text) = head_only(&cebus.base, "/webhooks/default/github", &[event, json]).await;
    assert_eq!(status, 401, "{text}");
    assert!(
        text.contains("missing signature header x-hub-signature-256"),
        "{text}"
    );

    let huge = format!("sha256={}", "0".repeat(8192));
    let (status, text) = head_only(
        &cebus.base,
        "/webhooks/default/github",
        &[event, json, ("x-hub-signature-256", &huge)],
    )
    .await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("at most 1024"), "{text}");
    sink.expect_no_more_than(0, Duration::from_millis(200))
        .await;
}
