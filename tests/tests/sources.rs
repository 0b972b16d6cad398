//! Sources end to end, from YAML through a broker to a recording subscriber:
//! WebhookSource with real GitHub-style signatures, a real-time PingSource, and a
//! ContainerSource whose script posts to `$K_SINK` with curl.

use std::time::Duration;

use cebus_e2e::{Reply, Sink, broker_yaml, github_signature, post, request, start_with_sources};

const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "It's a Secret to Everybody";

fn github_yaml(sink: &Sink) -> String {
    format!(
        "{}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: github\ndata:\n  secret: {}\n\
         ---\napiVersion: sources.cebus.dev/v1alpha1\nkind: WebhookSource\nmetadata:\n  name: github\n  \
         annotations:\n    cebus.dev/max-event-size: \"2048\"\nspec:\n  eventTypeFromHeader:\n    \
         header: X-GitHub-Event\n    prefix: com.github.\n  eventSource: https://github.com/cebus-dev/cebus\n  \
         idFromHeader: X-GitHub-Delivery\n  extensionsFromHeaders:\n    githubhookid: X-GitHub-Hook-ID\n  \
         ceOverrides:\n    extensions:\n      team: infra\n  auth:\n    hmac:\n      secretKeyRef:\n        \
         name: github\n        key: secret\n  sink:\n    ref:\n      apiVersion: eventing.knative.dev/v1\n      \
         kind: Broker\n      name: default\n",
        broker_yaml("default", "", &[("all", "", &sink.url())]),
        // The secret as base64 under `data`, as `kubectl create secret` writes it.
        "SXQncyBhIFNlY3JldCB0byBFdmVyeWJvZHk=",
    )
}

#[tokio::test]
async fn github_signed_webhook_reaches_the_subscriber() {
    let sink = Sink::start().await;
    let cebus = start_with_sources(&github_yaml(&sink)).await;
    let url = format!("{}/webhooks/default/github", cebus.base());
    let body = br#"{"ref":"refs/heads/main","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c","repository":{"full_name":"cebus-dev/cebus"}}"#;
    let signature = github_signature(SECRET, body);
    fn headers(sig: &str) -> Vec<(&'static str, &str)> {
        vec![
            ("x-github-event", "push"),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("x-github-hook-id", "292430182"),
            ("content-type", "application/json"),
            ("user-agent", "GitHub-Hookshot/044aadd"),
            ("x-hub-signature-256", sig),
        ]
    }
    let (status, body_text) = post(&url, &headers(&signature), body.to_vec()).await;
    assert_eq!(status, 202, "{body_text}");
    let got = sink.wait_for(1, WAIT).await;
    let r = &got[0];
    assert_eq!(r.header("ce-type"), Some("com.github.push"));
    assert_eq!(
        r.header("ce-id"),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    assert_eq!(
        r.header("ce-source"),
        Some("https://github.com/cebus-dev/cebus")
    );
    assert_eq!(r.header("ce-githubhookid"), Some("292430182"));
    assert_eq!(r.header("ce-team"), Some("infra"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("ce-time").is_some_and(cebus_events::is_rfc3339));
    assert_eq!(r.body.as_ref(), body, "the body is the data, byte for byte");

    // Refused: bad, missing, wrong-algorithm signatures; nothing reaches the sink.
    let other = github_signature("another secret", body);
    let (status, text) = post(&url, &headers(&other), body.to_vec()).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("does not match"), "{text}");
    let mut tampered = body.to_vec();
    tampered[10] = b'X';
    assert_eq!(post(&url, &headers(&signature), tampered).await.0, 401);
    let unsigned: Vec<_> = headers("").into_iter().take(5).collect();
    let (status, text) = post(&url, &unsigned, body.to_vec()).await;
    assert_eq!(status, 401);
    assert!(
        text.contains("missing signature header x-hub-signature-256"),
        "{text}"
    );
    let (status, text) = post(
        &url,
        &headers("sha1=7d38cdd689735b008b3c702edd92eea23791c5f6"),
        body.to_vec(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(text.contains("uses sha1; expected sha256"), "{text}");

    // Above the WebhookSource's size limit: 413, before the signature is checked.
    let big = vec![b'x'; 4096];
    assert_eq!(
        post(&url, &headers(&github_signature(SECRET, &big)), big)
            .await
            .0,
        413
    );
    // Other methods: 405 with Allow; unknown source: 404.
    let (status, h, _) = request(reqwest::Method::GET, &url, &[], "").await;
    assert_eq!(status, 405);
    assert_eq!(h.get("allow").and_then(|v| v.to_str().ok()), Some("POST"));
    let (status, _) = post(&format!("{}/webhooks/default/nope", cebus.base()), &[], "x").await;
    assert_eq!(status, 404);

    // A refused request never reaches the broker; a stored one would be in
    // flight until delivered.
    cebus.wait_settled("default", "default", WAIT).await;
    assert_eq!(sink.received().len(), 1, "only the signed push");
    cebus.server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn webhook_to_a_uri_sink_answers_after_the_sink() {
    let target = Sink::start().await;
    let yaml = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: default\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: tokens\n  namespace: plant\nstringData:\n  iot: t0ken\n---\n\
         apiVersion: sources.cebus.dev/v1alpha1\nkind: WebhookSource\nmetadata:\n  name: iot\n  namespace: plant\n\
         spec:\n  eventType: dev.example.reading\n  auth:\n    bearer:\n      tokenSecretKeyRef:\n        \
         name: tokens\n        key: iot\n  sink:\n    uri: {}\n",
        target.url()
    );
    let cebus = start_with_sources(&yaml).await;
    let url = format!("{}/webhooks/plant/iot", cebus.base());
    let auth = [
        ("authorization", "Bearer t0ken"),
        ("content-type", "text/csv"),
    ];

    let (status, text) = post(&url, &auth, "21.5,48").await;
    assert_eq!(status, 202, "{text}");
    let got = target.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("ce-type"), Some("dev.example.reading"));
    assert_eq!(
        got[0].header("ce-source"),
        Some("/apis/v1/namespaces/plant/webhooksources/iot")
    );
    assert_eq!(got[0].header("content-type"), Some("text/csv"));
    let id = got[0].header("ce-id").unwrap();
    assert_eq!(id.len(), 36, "a UUID when no id header is configured: {id}");
    assert!(text.contains(id), "the answer names the event id: {text}");

    // Wrong or missing token.
    let (status, h, _) = request(
        reqwest::Method::POST,
        &url,
        &[("authorization", "Bearer nope")],
        "x",
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        h.get("www-authenticate").and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    assert_eq!(post(&url, &[], "x").await.0, 401);

    // A request that already is a CloudEvent passes through unchanged.
    let ce = [
        ("authorization", "Bearer t0ken"),
        ("ce-specversion", "1.0"),
        ("ce-id", "reading-7"),
        ("ce-source", "/sensors/7"),
        ("ce-type", "dev.example.raw"),
        ("ce-time", "2020-01-01T00:00:00Z"),
        ("content-type", "application/json"),
    ];
    assert_eq!(post(&url, &ce, r#"{"t": 1}"#).await.0, 202);
    let got = target.wait_for(2, WAIT).await;
    assert_eq!(got[1].header("ce-id"), Some("reading-7"));
    assert_eq!(got[1].header("ce-type"), Some("dev.example.raw"));
    assert_eq!(got[1].header("ce-time"), Some("2020-01-01T00:00:00Z"));
    assert_eq!(got[1].body.as_ref(), br#"{"t": 1}"#);

    // The sink refuses: busy ⇒ 503 with Retry-After (the sender retries), broken ⇒ 502.
    target.script([
        Reply::status(503).header("retry-after", "7"),
        Reply::status(500),
    ]);
    let (status, h, _) = request(reqwest::Method::POST, &url, &auth, "1").await;
    assert_eq!(status, 503);
    assert_eq!(
        h.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert_eq!(post(&url, &auth, "2").await.0, 502);
    cebus.server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn ping_source_fires_every_second_in_real_time() {
    let sink = Sink::start().await;
    let yaml = format!(
        "{}\n---\napiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata:\n  name: beat\n  namespace: default\n\
         spec:\n  schedule: \"* * * * * *\"\n  timezone: Europe/Berlin\n  contentType: application/json\n  \
         data: '{{\"beat\": true}}'\n  ceOverrides:\n    extensions:\n      env: test\n  sink:\n    ref:\n      \
         apiVersion: eventing.knative.dev/v1\n      kind: Broker\n      name: default\n",
        broker_yaml("default", "", &[("all", "", &sink.url())])
    );
    let cebus = start_with_sources(&yaml).await;
    let got = sink.wait_for(3, WAIT).await;
    let mut ids = std::collections::HashSet::new();
    for r in &got[..3] {
        assert_eq!(r.header("ce-type"), Some("dev.knative.sources.ping"));
        assert_eq!(
            r.header("ce-source"),
            Some("/apis/v1/namespaces/default/pingsources/beat")
        );
        assert_eq!(r.header("ce-env"), Some("test"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body.as_ref(), br#"{"beat": true}"#);
        assert!(r.header("ce-time").is_some_and(cebus_events::is_rfc3339));
        ids.insert(r.header("ce-id").unwrap().to_owned());
    }
    assert_eq!(ids.len(), 3, "a fresh id per tick");
    // One tick per second, not a burst.
    let spread = got[2].at - got[0].at;
    assert!(spread >= Duration::from_millis(1500), "{spread:?}");

    // Removing the source stops it.
    cebus.write(
        "config.yaml",
        &broker_yaml("default", "", &[("all", "", &sink.url())]),
    );
    // Nothing reports that the source's timer stopped: allow the reload (100 ms
    // poll) and a tick in flight to pass, then watch more than two periods.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = sink.received().len();
    sink.expect_no_more_than(before, Duration::from_millis(2500))
        .await;
    cebus.server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn container_source_script_posts_to_k_sink_with_curl() {
    let sink = Sink::start().await;
    // The script posts one event (its K_CE_OVERRIDES as data) and exits; cebus
    // restarts it, so a second event arrives about a second later.
    let script = r#"curl -sS -o /dev/null -X POST "$K_SINK" -H 'ce-specversion: 1.0' -H "ce-id: run-$$" -H 'ce-source: /script' -H "ce-type: $EVENT_TYPE" -H 'content-type: application/json' --data "$K_CE_OVERRIDES""#;
    let yaml = format!(
        "{}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  type: dev.example.script\n---\n\
         apiVersion: sources.knative.dev/v1\nkind: ContainerSource\nmetadata:\n  name: script\nspec:\n  template:\n    \
         spec:\n      containers:\n        - name: script\n          image: curlimages/curl\n          \
         command: [sh, -c]\n          args:\n            - '{}'\n          env:\n            - name: EVENT_TYPE\n              \
         valueFrom:\n                secretKeyRef:\n                  name: s\n                  key: type\n  \
         ceOverrides:\n    extensions:\n      origin: script\n  sink:\n    ref:\n      \
         apiVersion: eventing.knative.dev/v1\n      kind: Broker\n      name: default\n",
        broker_yaml("default", "", &[("all", "", &sink.url())]),
        script.replace('\'', "''"),
    );
    let cebus = start_with_sources(&yaml).await;
    let got = sink.wait_for(2, WAIT).await;
    for r in &got[..2] {
        assert_eq!(r.header("ce-type"), Some("dev.example.script"));
        assert_eq!(r.header("ce-source"), Some("/script"));
        assert_eq!(r.body.as_ref(), br#"{"extensions":{"origin":"script"}}"#);
    }
    assert_ne!(got[0].header("ce-id"), got[1].header("ce-id"), "two runs");
    // Stopped with cebus: no more runs. Nothing reports that a process ended, so
    // watch for more than two restart periods.
    cebus.server.shutdown(Duration::from_secs(5)).await;
    let after = sink.received().len();
    sink.expect_no_more_than(after, Duration::from_millis(2500))
        .await;
}

/// The pid part of the ids a looping script sends (`<pid>-<n>`).
fn pids(sink: &Sink, skip: usize) -> std::collections::BTreeSet<String> {
    sink.received()[skip..]
        .iter()
        .filter(|r| r.header("ce-source") == Some("/loop"))
        .filter_map(|r| {
            r.header("ce-id")?
                .split_once('-')
                .map(|(p, _)| p.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn reload_keeps_untouched_sources_restarts_changed_and_removes_gone_ones() {
    let sink = Sink::start().await;
    let looping = |marker: &str| {
        format!(
            "apiVersion: sources.knative.dev/v1\nkind: ContainerSource\nmetadata:\n  name: loop\nspec:\n  template:\n    \
             spec:\n      containers:\n        - command: [sh, -c]\n          args:\n            - 'n=0; while true; do n=$((n+1)); \
             curl -sS -o /dev/null -X POST \"$K_SINK\" -H \"ce-specversion: 1.0\" -H \"ce-id: $$-$n\" -H \"ce-source: /loop\" \
             -H \"ce-type: $MARK\"; sleep 0.2; done'\n          env:\n            - name: MARK\n              value: {marker}\n  \
             sink:\n    ref:\n      kind: Broker\n      name: default\n"
        )
    };
    let hook = |name: &str| {
        format!(
            "apiVersion: sources.cebus.dev/v1alpha1\nkind: WebhookSource\nmetadata:\n  name: {name}\nspec:\n  \
             eventType: dev.example.{name}\n  sink:\n    ref:\n      kind: Broker\n      name: default\n"
        )
    };
    let base = broker_yaml("default", "", &[("all", "", &sink.url())]);
    let cebus = start_with_sources(&format!(
        "{base}\n---\n{}---\n{}",
        looping("one"),
        hook("a")
    ))
    .await;
    let hooks = |name: &str| format!("{}/webhooks/default/{name}", cebus.base());
    sink.wait_for(3, WAIT).await;
    let first = pids(&sink, 0);
    assert_eq!(first.len(), 1, "{first:?}");

    // An unrelated change (webhook a → b): the process keeps running.
    cebus.write(
        "config.yaml",
        &format!("{base}\n---\n{}---\n{}", looping("one"), hook("b")),
    );
    let deadline = std::time::Instant::now() + WAIT;
    while post(&hooks("b"), &[], "x").await.0 != 202 {
        assert!(
            std::time::Instant::now() < deadline,
            "webhook b never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        post(&hooks("a"), &[], "x").await.0,
        404,
        "removed webhook still served"
    );
    // Four more events of the loop (one every 0.2 s) show which process runs now.
    let mark = sink.received().len();
    sink.wait_for(mark + 4, WAIT).await;
    assert_eq!(
        pids(&sink, mark),
        first,
        "an untouched ContainerSource was restarted"
    );

    // Its env changes: it restarts (new pid, new type) and the old process is gone.
    cebus.write("config.yaml", &format!("{base}\n---\n{}", looping("two")));
    let deadline = std::time::Instant::now() + WAIT;
    let switched = loop {
        if let Some(i) = sink
            .received()
            .iter()
            .position(|r| r.header("ce-type") == Some("two"))
        {
            break i;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "changed source not restarted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Four more events after the switch: an old process still running would
    // post its own among them (both loop every 0.2 s).
    sink.wait_for(switched + 5, WAIT).await;
    let later = &sink.received()[switched..];
    assert!(
        later.iter().all(|r| r.header("ce-type") != Some("one")),
        "old process still running"
    );
    assert!(!pids(&sink, switched).iter().any(|p| first.contains(p)));
    cebus.server.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn validate_lists_sources_with_sinks_and_next_fire_times() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sources.yaml");
    let out = std::process::Command::new(cebus_e2e::cebus_bin())
        .args(["validate", "-f"])
        .arg(&example)
        .output()
        .expect("run cebus validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("PingSource default/heartbeat -> Broker default/default (http://127.0.0.1:8080/default/default)"),
        "{stdout}"
    );
    let next = stdout
        .lines()
        .find(|l| l.contains("schedule \"0 9 * * MON-FRI\" in Europe/Berlin; next: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(next.matches("T09:00:00+0").count(), 3, "{next}");
    assert!(
        stdout.contains("POST http://127.0.0.1:8080/webhooks/default/github"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ContainerSource default/uptime -> Broker default/default"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata:\n  name: p\nspec:\n  \
         timezone: Mars/Olympus\n  sink:\n    uri: http://127.0.0.1:9/\n",
    )
    .unwrap();
    let out = std::process::Command::new(cebus_e2e::cebus_bin())
        .args(["validate", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PingSource default/p: spec.timezone: unknown time zone \"Mars/Olympus\""),
        "{stderr}"
    );
}
