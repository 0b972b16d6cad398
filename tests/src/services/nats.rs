//! nats-server: a private server with its own store and configuration (the
//! outage, restart and authentication tests), and operator-mode credentials.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::unique;

/// A private nats-server with JetStream on a free loopback port, its own store
/// and, when given, its own configuration file (authorization, TLS, operator
/// mode). Panics when nats-server is missing: `scripts/test` installs it.
pub struct PrivateNats {
    child: Option<Child>,
    /// The client port.
    pub port: u16,
    dir: tempfile::TempDir,
    config: Option<std::path::PathBuf>,
}

impl PrivateNats {
    /// Starts nats-server without a configuration file.
    pub fn start() -> PrivateNats {
        PrivateNats::start_with_config(None)
    }

    /// Starts nats-server with `config` (nats-server's configuration syntax) as
    /// its configuration file, if any; the flags set JetStream, the address, the
    /// port and the store.
    pub fn start_with_config(config: Option<&str>) -> PrivateNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config.map(|text| {
            let path = dir.path().join("nats.conf");
            std::fs::write(&path, text).expect("write nats.conf");
            path
        });
        let mut n = PrivateNats {
            child: None,
            port,
            dir,
            config,
        };
        n.launch();
        n
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and store) and waits until it
    /// accepts connections; panics with its log when it exits instead.
    pub fn launch(&mut self) {
        let log = self.dir.path().join("nats.log");
        let mut cmd = Command::new("nats-server");
        cmd.args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-sd",
        ])
        .arg(self.dir.path().join("store"))
        .arg("-l")
        .arg(&log);
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian package nats-server; scripts/nats.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "private nats-server exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "private nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// Stops the server with SIGTERM (a clean shutdown: the file store is synced)
    /// and waits until it exited.
    pub fn terminate(&mut self) {
        let mut c = self.child.take().expect("nats-server is running");
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.try_wait().expect("try_wait").is_none() {
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("nats-server did not exit within a minute of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Operator mode for a [`PrivateNats`]: an operator that signs an account with
/// JetStream limits (and the system account JetStream needs), and a user of that
/// account, as `nsc` would make them.
pub struct NatsOperator {
    /// The nats-server configuration lines (operator, resolver, preloads).
    pub config: String,
    /// The user's `.creds` file, as `nsc generate creds` writes it.
    pub creds: String,
}

impl NatsOperator {
    /// Fresh keys and JWTs.
    pub fn new() -> NatsOperator {
        use nkeys::KeyPair;
        let operator = KeyPair::new_operator();
        let account = KeyPair::new_account();
        let system = KeyPair::new_account();
        let user = KeyPair::new_user();
        let operator_jwt = nats_jwt(
            &operator,
            &operator.public_key(),
            "cebus-test",
            serde_json::json!({"type": "operator", "version": 2}),
        );
        let account_jwt = nats_jwt(
            &operator,
            &account.public_key(),
            "cebus",
            serde_json::json!({
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
        let system_jwt = nats_jwt(
            &operator,
            &system.public_key(),
            "SYS",
            serde_json::json!({"type": "account", "version": 2}),
        );
        let user_jwt = nats_jwt(
            &account,
            &user.public_key(),
            "broker",
            serde_json::json!({
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2
            }),
        );
        let config = format!(
            "operator: {operator_jwt}\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {acc}: {account_jwt}\n  {sys}: {system_jwt}\n}}\n",
            acc = account.public_key(),
            sys = system.public_key(),
        );
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n",
            user.seed().expect("the user's seed")
        );
        NatsOperator { config, creds }
    }
}

impl Default for NatsOperator {
    fn default() -> Self {
        NatsOperator::new()
    }
}

/// A NATS JWT (the nats-jwt v2 encoding): base64url JSON claims signed with
/// ed25519 by `issuer`.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let claims = serde_json::json!({
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
