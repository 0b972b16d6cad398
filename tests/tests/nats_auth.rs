//! End-to-end tests of NATS authentication and TLS: each test starts its own
//! nats-server with a generated configuration (an NKey user, operator mode with
//! JWTs, mutual TLS with certificates made by the openssl CLI) and checks that a
//! `NatsJetStreamBroker` configured for it routes an event, and that a wrong
//! seed, a missing credentials file or an untrusted server certificate gets
//! ingress's 503 with a reason naming the cause.
//!
//! nats-server and openssl must be installed (`scripts/test` installs
//! nats-server); without them these tests fail, they never skip.

use std::time::{Duration, Instant};

use cebus_e2e::{
    Cebus, NatsOperator, PrivateNats, Sink, Trigger, make_certificates, nats_mutual_tls_config,
    nats_yaml, post_binary, post_until_accepted, unique, wait_for_id,
};
use nkeys::KeyPair;

const WAIT: Duration = Duration::from_secs(60);

/// A Secret `nats-auth` with `values` as (key, value).
fn secret_yaml(values: &[(&str, &str)]) -> String {
    let mut y =
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: nats-auth\nstringData:\n".to_owned();
    for (k, v) in values {
        // A JSON string is a YAML double-quoted scalar: PEMs keep their lines.
        y.push_str(&format!("  {k}: {}\n", serde_json::to_string(v).unwrap()));
    }
    y
}

/// One broker per entry, (name, ConfigMap lines), on `url`, each with a trigger
/// to `sink`.
fn brokers_yaml(url: &str, brokers: &[(&str, String)], sink: &Sink) -> String {
    brokers
        .iter()
        .map(|(broker, cm)| {
            let trigger = format!("{broker}-t");
            nats_yaml(broker, url, cm, &[Trigger::new(&trigger, "", &sink.url())])
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Posts to `url` until ingress answers 503 with a reason containing `want`
/// (ignoring case; the first connection attempt may still be running) and
/// returns that reason. Panics on a 202 or after a minute.
async fn refusal(url: &str, want: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = post_binary(url, "refused", "t", "{}").await;
        assert_ne!(status, 202, "accepted, though NATS must refuse: {body}");
        if status == 503 && body.to_lowercase().contains(&want.to_lowercase()) {
            println!("refused as expected: {body}");
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no 503 mentioning {want:?}; the last answer: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nkey_user_routes_events_and_a_wrong_seed_gets_503() {
    let user = KeyPair::new_user();
    let stranger = KeyPair::new_user();
    let nats = PrivateNats::start_with_config(Some(&format!(
        "authorization {{\n  users = [\n    {{ nkey: {} }}\n  ]\n}}\n",
        user.public_key()
    )));
    let sink = Sink::start().await;
    let (good, wrong) = (unique("nkey"), unique("nkey-wrong"));
    let yaml = brokers_yaml(
        &nats.url(),
        &[
            (&good, "  nkeySeedSecret: nats-auth/seed\n".into()),
            (&wrong, "  nkeySeedSecret: nats-auth/stranger\n".into()),
        ],
        &sink,
    ) + &secret_yaml(&[
        ("seed", &user.seed().unwrap()),
        ("stranger", &stranger.seed().unwrap()),
    ]);
    let cebus = Cebus::start(&yaml).await;

    post_until_accepted(&cebus.broker_url("default", &good), "nk-1", "t").await;
    wait_for_id(&sink, "nk-1", WAIT).await;

    let reason = refusal(
        &cebus.broker_url("default", &wrong),
        "authorization violation",
    )
    .await;
    assert!(reason.contains("an NKey seed (nkeySeedSecret)"), "{reason}");
    assert!(
        !reason.contains(&stranger.seed().unwrap()),
        "the seed is secret: {reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_credentials_route_events_from_a_secret_or_a_file() {
    // Operator mode: the operator signs the account; the account signs the user
    // of the .creds file.
    let operator = NatsOperator::new();
    let nats = PrivateNats::start_with_config(Some(&operator.config));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cebus.creds");
    std::fs::write(&file, &operator.creds).unwrap();
    let missing = dir.path().join("missing.creds");

    let sink = Sink::start().await;
    let (from_secret, from_file, from_nowhere) =
        (unique("creds"), unique("creds-file"), unique("creds-none"));
    let yaml = brokers_yaml(
        &nats.url(),
        &[
            (
                &from_secret,
                "  credentialsSecret: nats-auth/creds\n".into(),
            ),
            (
                &from_file,
                format!("  credentialsFile: {}\n", file.display()),
            ),
            (
                &from_nowhere,
                format!("  credentialsFile: {}\n", missing.display()),
            ),
        ],
        &sink,
    ) + &secret_yaml(&[("creds", &operator.creds)]);
    let cebus = Cebus::start(&yaml).await;

    for (broker, id) in [(&from_secret, "cr-secret"), (&from_file, "cr-file")] {
        post_until_accepted(&cebus.broker_url("default", broker), id, "t").await;
        wait_for_id(&sink, id, WAIT).await;
    }
    let reason = refusal(
        &cebus.broker_url("default", &from_nowhere),
        &format!(
            "the credentials file {} (credentialsFile): cannot read it",
            missing.display()
        ),
    )
    .await;
    assert!(reason.contains("No such file"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_routes_events_and_an_untrusted_server_gets_503() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    // verify: clients must present a certificate the CA signed.
    let nats = PrivateNats::start_with_config(Some(&nats_mutual_tls_config(dir.path())));
    let url = format!("tls://127.0.0.1:{}", nats.port);
    let sink = Sink::start().await;
    let (trusted, untrusted) = (unique("mtls"), unique("mtls-no-ca"));
    let client = "  certSecret: nats-auth/cert\n  keySecret: nats-auth/key\n";
    let yaml = brokers_yaml(
        &url,
        &[
            (&trusted, format!("  caSecret: nats-auth/ca\n{client}")),
            // The system's CAs do not know the test CA.
            (&untrusted, client.into()),
        ],
        &sink,
    ) + &secret_yaml(&[
        ("ca", &read("ca.pem")),
        ("cert", &read("client.pem")),
        ("key", &read("client.key")),
    ]);
    let cebus = Cebus::start(&yaml).await;

    post_until_accepted(&cebus.broker_url("default", &trusted), "tls-1", "t").await;
    wait_for_id(&sink, "tls-1", WAIT).await;

    let reason = refusal(&cebus.broker_url("default", &untrusted), "certificate").await;
    assert!(reason.contains("over TLS"), "{reason}");
    assert!(reason.contains("UnknownIssuer"), "{reason}");
    assert!(!reason.contains("PRIVATE KEY"), "{reason}");
    drop(nats);
}
