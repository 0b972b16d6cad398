//! End-to-end tests of NATS authentication and TLS: each test starts its own
//! nats-server with a generated configuration (an NKey user, operator mode with
//! JWTs, mutual TLS with certificates made by the openssl CLI) and checks that a
//! `NatsJetStreamBroker` configured for it routes an event, and that a wrong
//! seed, a missing credentials file or an untrusted server certificate gets
//! ingress's 503 with a reason naming the cause.
//!
//! nats-server and openssl must be installed (`scripts/test` installs
//! nats-server); without them these tests fail, they never skip.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cebus_e2e::{
    Cebus, PrivateNats, Sink, nats_yaml, post_binary, post_until_accepted, run_tool, unique,
    wait_for_id,
};
use nkeys::KeyPair;
use serde_json::json;

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
            nats_yaml(broker, url, cm, "", &[(&trigger, "", &sink.url())])
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

/// A NATS JWT (the nats-jwt v2 encoding): base64url JSON claims signed with
/// ed25519 by `issuer`.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "jti": unique(name).to_uppercase(),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = issuer.sign(signed.as_bytes()).expect("sign the JWT");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A `.creds` file for `user` with `user_jwt`, as `nsc generate creds` writes it.
fn creds(user_jwt: &str, user: &KeyPair) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n",
        user.seed().unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_credentials_route_events_from_a_secret_or_a_file() {
    // Operator mode: the operator signs the account (with JetStream limits) and
    // the system account JetStream needs; the account signs the user of the
    // .creds file.
    let operator = KeyPair::new_operator();
    let account = KeyPair::new_account();
    let system = KeyPair::new_account();
    let user = KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "cebus-test",
        json!({"type": "operator", "version": 2}),
    );
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "cebus",
        json!({
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1,
                "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
            },
            "default_permissions": {"pub": {}, "sub": {}},
            "type": "account",
            "version": 2
        }),
    );
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        json!({"type": "account", "version": 2}),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "broker",
        json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2
        }),
    );
    let nats = PrivateNats::start_with_config(Some(&format!(
        "operator: {operator_jwt}\nsystem_account: {sys}\nresolver: MEMORY\n\
         resolver_preload: {{\n  {acc}: {account_jwt}\n  {sys}: {system_jwt}\n}}\n",
        acc = account.public_key(),
        sys = system.public_key(),
    )));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cebus.creds");
    std::fs::write(&file, creds(&user_jwt, &user)).unwrap();
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
    ) + &secret_yaml(&[("creds", &creds(&user_jwt, &user))]);
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

/// Runs openssl with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    run_tool(
        Command::new("openssl").args(args).current_dir(dir),
        b"",
        WAIT,
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made by
/// the openssl CLI in `dir`: `ca.pem`, `server.pem`/`.key`, `client.pem`/`.key`.
fn make_certificates(dir: &Path) {
    let version = Command::new("openssl").arg("version").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "the openssl CLI is needed to make the test certificates (Debian package openssl)"
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509", "-days", "2", "-subj", "/CN=cebus test CA"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    for (name, usage) in [
        ("server", "serverAuth\nsubjectAltName=IP:127.0.0.1"),
        ("client", "clientAuth"),
    ] {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(
            dir.join(&ext),
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n"),
        )
        .unwrap();
        openssl(
            dir,
            &[
                &["req", "-new", "-subj", &format!("/CN={name}")][..],
                &ec,
                &["-keyout", &key, "-out", &csr],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_routes_events_and_an_untrusted_server_gets_503() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let path = |f: &str| dir.path().join(f).display().to_string();
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    // verify: clients must present a certificate the CA signed.
    let nats = PrivateNats::start_with_config(Some(&format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  \
         timeout: 5\n}}\n",
        path("server.pem"),
        path("server.key"),
        path("ca.pem")
    )));
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
