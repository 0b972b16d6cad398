//! The ConfigMap of a `NatsJetStreamBroker`: its keys, defaults and checks,
//! parsed once into [`NatsBrokerConfig`]. Pure: secrets come from the loaded
//! config (their contents are checked for shape here, and parsed when the
//! channel connects), durations are ISO-8601 as everywhere in Knative.

use std::time::Duration;

use crate::config::Config;
use crate::duration::parse_iso8601;
use crate::error::FieldPath;
use crate::types::ConfigMap;

/// The broker class whose events live in a NATS JetStream stream.
pub const NATS_BROKER_CLASS: &str = "NatsJetStreamBroker";

/// Every key the ConfigMap may hold.
pub const NATS_CONFIG_KEYS: &[&str] = &[
    "url",
    "token",
    "tokenSecret",
    "user",
    "password",
    "passwordSecret",
    "nkeySeedSecret",
    "credentialsSecret",
    "credentialsFile",
    "caSecret",
    "certSecret",
    "keySecret",
    "tlsRequired",
    "storage",
    "replicas",
    "maxAge",
    "maxBytes",
    "maxMessages",
    "maxMessageSize",
    "duplicateWindow",
];

/// Default `maxAge`: an unacknowledged event is kept for a day.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Default `duplicateWindow`.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Where the stream keeps messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsStorageKind {
    /// On disk (default).
    File,
    /// In the server's memory.
    Memory,
}

/// The ConfigMap keys of each kind of NATS authentication; one kind at most.
const AUTH_KINDS: &[&[&str]] = &[
    &["token", "tokenSecret"],
    &["user", "password", "passwordSecret"],
    &["nkeySeedSecret"],
    &["credentialsSecret", "credentialsFile"],
];

/// Credentials for NATS, resolved from the ConfigMap and Secrets. Debug output
/// never shows a secret.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum NatsCredentials {
    /// None.
    #[default]
    None,
    /// A token (`token`, `tokenSecret`).
    Token(String),
    /// A user and password (`user`, `password`, `passwordSecret`).
    UserPassword {
        /// User.
        user: String,
        /// Password.
        password: String,
    },
    /// A user NKey seed (`nkeySeedSecret`): the server knows the public key.
    NKey(String),
    /// The content of a `.creds` file (`credentialsSecret`): a user JWT and the
    /// NKey seed that signs with it.
    Creds(String),
    /// A `.creds` file on the broker's disk (`credentialsFile`), read each time
    /// the channel connects (it is where the broker runs, not where the config
    /// is checked).
    CredsFile(String),
}

impl std::fmt::Debug for NatsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsCredentials::None => f.write_str("None"),
            NatsCredentials::Token(_) => f.write_str("Token(<redacted>)"),
            NatsCredentials::UserPassword { user, .. } => {
                write!(f, "UserPassword({user}, <redacted>)")
            }
            NatsCredentials::NKey(_) => f.write_str("NKey(<redacted>)"),
            NatsCredentials::Creds(_) => f.write_str("Creds(<redacted>)"),
            NatsCredentials::CredsFile(path) => write!(f, "CredsFile({path})"),
        }
    }
}

impl NatsCredentials {
    /// What kind of authentication this is, for messages (never a secret);
    /// `keys` name where it came from.
    pub fn describe(&self, keys: &NatsKeys) -> String {
        match self {
            NatsCredentials::None => "no authentication".into(),
            NatsCredentials::Token(_) => "a token".into(),
            NatsCredentials::UserPassword { user, .. } => format!("user {user} and a password"),
            NatsCredentials::NKey(_) => "an NKey seed (nkeySeedSecret)".into(),
            NatsCredentials::Creds(_) => format!("the credentials of {}", keys.creds),
            NatsCredentials::CredsFile(path) => {
                format!("the credentials file {path} (credentialsFile)")
            }
        }
    }
}

/// TLS towards NATS: `tlsRequired`, `caSecret`, `certSecret` + `keySecret`.
/// Without any, TLS is still used for `tls://` URLs and servers that require it,
/// trusting the system's certificates.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct NatsTls {
    /// `tlsRequired`: TLS even where the URL is `nats://`.
    pub required: bool,
    /// PEM certificates to trust instead of the system's (`caSecret`).
    pub ca: Option<String>,
    /// A client certificate for mutual TLS (`certSecret`, `keySecret`).
    pub client: Option<NatsClientCert>,
}

impl std::fmt::Debug for NatsTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTls")
            .field("required", &self.required)
            .field("ca", &self.ca.as_ref().map(|_| "<PEM>"))
            .field("client", &self.client)
            .finish()
    }
}

impl NatsTls {
    /// Whether a CA or a client certificate is given.
    pub fn has_material(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }
}

/// A PEM client certificate (chain) and its private key.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsClientCert {
    /// The certificate, then any intermediates.
    pub cert: String,
    /// The private key.
    pub key: String,
}

impl std::fmt::Debug for NatsClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NatsClientCert(<PEM>, <redacted>)")
    }
}

/// The config keys a NATS connection's credentials and TLS material came from,
/// so that messages about them name what the user wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatsKeys {
    /// Where a `.creds` file came from.
    pub creds: &'static str,
    /// Where the CA to trust came from.
    pub ca: &'static str,
    /// Where the client certificate came from.
    pub cert: &'static str,
    /// Where the client certificate's key came from.
    pub key: &'static str,
}

impl NatsKeys {
    /// A `NatsJetStreamBroker`'s ConfigMap.
    pub const BROKER: NatsKeys = NatsKeys {
        creds: "credentialsSecret",
        ca: "caSecret",
        cert: "certSecret",
        key: "keySecret",
    };
    /// `knative-eventing/config-nats`, for a NatsJetStreamChannel template.
    pub const CONFIG_NATS: NatsKeys = NatsKeys {
        creds: "config-nats eventing-nats.auth.credentialFile",
        ca: "config-nats eventing-nats.tls",
        cert: "config-nats eventing-nats.auth.tls (tls.crt)",
        key: "config-nats eventing-nats.auth.tls (tls.key)",
    };
}

/// A `NatsJetStreamBroker`'s validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsBrokerConfig {
    /// Server URLs (`nats://` or `tls://`).
    pub servers: Vec<String>,
    /// Where the credentials and TLS material below came from.
    pub keys: &'static NatsKeys,
    /// Credentials.
    pub credentials: NatsCredentials,
    /// TLS settings.
    pub tls: NatsTls,
    /// Storage (`storage`, default file).
    pub storage: NatsStorageKind,
    /// Replicas (`replicas`, default 1).
    pub replicas: usize,
    /// `maxAge` (default PT24H).
    pub max_age: Duration,
    /// `maxBytes` (default unlimited).
    pub max_bytes: Option<i64>,
    /// `maxMessages` (default unlimited).
    pub max_messages: Option<i64>,
    /// `maxMessageSize` (default: the broker's max event size).
    pub max_message_size: Option<i32>,
    /// `duplicateWindow` (default PT2M).
    pub duplicate_window: Duration,
}

/// Parses the ConfigMap `cm` (namespace `ns`) of a NATS broker. Errors are
/// (field path under the ConfigMap, message), every one of them.
pub fn parse_nats_config(
    cm: &ConfigMap,
    ns: &str,
    config: &Config,
) -> Result<NatsBrokerConfig, Vec<(FieldPath, String)>> {
    let data = |k: &str| cm.data.get(k).map(String::as_str);
    let at = |k: &str| FieldPath::root().key("data").key(k);
    let mut errors = Vec::new();
    for key in cm.data.keys() {
        if !NATS_CONFIG_KEYS.contains(&key.as_str()) {
            errors.push((
                at(key),
                format!(
                    "unknown key {key:?} for a {NATS_BROKER_CLASS}; known keys: {}",
                    NATS_CONFIG_KEYS.join(", ")
                ),
            ));
        }
    }
    let mut servers = Vec::new();
    match data("url") {
        None => errors.push((
            at("url"),
            "required: one or more comma-separated NATS URLs, e.g. nats://127.0.0.1:4222".into(),
        )),
        Some(urls) => {
            for url in urls.split(',').map(str::trim) {
                if let Some(e) = check_url(url) {
                    errors.push((at("url"), e));
                } else {
                    servers.push(url.to_owned());
                }
            }
        }
    }
    let mut keys = Keys {
        cm,
        ns,
        config,
        errors: &mut errors,
    };
    let credentials = keys.credentials();
    let tls = keys.tls();
    if data("tlsRequired") == Some("false")
        && let Some(url) = servers.iter().find(|u| u.starts_with("tls://"))
    {
        errors.push((
            at("tlsRequired"),
            format!("\"false\", but {url} asks for TLS; drop tlsRequired or write nats://"),
        ));
    }
    let storage = match data("storage") {
        None | Some("file") => NatsStorageKind::File,
        Some("memory") => NatsStorageKind::Memory,
        Some(other) => {
            errors.push((
                at("storage"),
                format!("{other:?} is not a storage; use file or memory"),
            ));
            NatsStorageKind::File
        }
    };
    let mut int = |key: &str, max: i64| -> Option<i64> {
        let v = data(key)?;
        match v.trim().parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Some(n),
            _ => {
                errors.push((at(key), format!("{v:?} is not an integer from 1 to {max}")));
                None
            }
        }
    };
    let replicas = int("replicas", 5).unwrap_or(1) as usize;
    let max_bytes = int("maxBytes", i64::MAX);
    let max_messages = int("maxMessages", i64::MAX);
    let max_message_size = int("maxMessageSize", i64::from(i32::MAX)).map(|n| n as i32);
    let mut duration = |key: &str, default: Duration| -> Duration {
        let Some(v) = data(key) else { return default };
        match parse_iso8601(v) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                errors.push((at(key), format!("{v:?} must be longer than zero")));
                default
            }
            Err(e) => {
                errors.push((
                    at(key),
                    format!("{e}; write an ISO-8601 duration such as PT2M"),
                ));
                default
            }
        }
    };
    let max_age = duration("maxAge", DEFAULT_MAX_AGE);
    let duplicate_window = duration("duplicateWindow", DEFAULT_DUPLICATE_WINDOW);
    if data("duplicateWindow").is_some() && data("maxAge").is_some() && duplicate_window > max_age {
        errors.push((
            at("duplicateWindow"),
            "may not be longer than maxAge (JetStream refuses it)".into(),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(NatsBrokerConfig {
        servers,
        keys: &NatsKeys::BROKER,
        credentials,
        tls,
        storage,
        replicas,
        max_age,
        max_bytes,
        max_messages,
        max_message_size,
        duplicate_window,
    })
}

/// The ConfigMap's keys with their Secrets, collecting errors by key.
struct Keys<'a> {
    cm: &'a ConfigMap,
    ns: &'a str,
    config: &'a Config,
    errors: &'a mut Vec<(FieldPath, String)>,
}

impl Keys<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.cm.data.get(key).map(String::as_str)
    }

    fn err(&mut self, key: &str, message: String) {
        self.errors
            .push((FieldPath::root().key("data").key(key), message));
    }

    /// The value behind `<secret-name>/<key>` in `key`, if set, when `problem`
    /// finds nothing wrong with it.
    fn secret(&mut self, key: &str, problem: fn(&str) -> Option<&'static str>) -> Option<String> {
        let reference = self.get(key)?.to_owned();
        let value = match resolve_secret(&reference, self.ns, self.config) {
            Ok(v) => v,
            Err(e) => {
                self.err(key, e);
                return None;
            }
        };
        if let Some(p) = problem(&value) {
            let (name, item) = reference.split_once('/').unwrap_or_default();
            // Never the value: it is a secret.
            self.err(key, format!("Secret {}/{name} key {item:?} {p}", self.ns));
            return None;
        }
        Some(value)
    }

    /// `plain` or the Secret in `key`, not both.
    fn either(&mut self, key: &str, plain: &str) -> Option<String> {
        match (self.get(plain), self.get(key)) {
            (Some(_), Some(_)) => {
                self.err(key, format!("set {plain} or {key}, not both"));
                None
            }
            (Some(v), None) => Some(v.to_owned()),
            (None, Some(_)) => self.secret(key, |_| None),
            (None, None) => None,
        }
    }

    /// The one kind of authentication the keys ask for.
    fn credentials(&mut self) -> NatsCredentials {
        let kinds: Vec<&str> = AUTH_KINDS
            .iter()
            .filter_map(|keys| keys.iter().find(|k| self.get(k).is_some()).copied())
            .collect();
        if let [first, others @ ..] = kinds.as_slice()
            && !others.is_empty()
        {
            for key in others {
                self.err(
                    key,
                    format!(
                        "{key} and {first} are two kinds of NATS authentication; set one: a \
                         token, user and password, nkeySeedSecret, or credentialsSecret/credentialsFile"
                    ),
                );
            }
            return NatsCredentials::None;
        }
        match kinds.first().copied() {
            None => NatsCredentials::None,
            Some("token" | "tokenSecret") => self
                .either("tokenSecret", "token")
                .map_or(NatsCredentials::None, NatsCredentials::Token),
            Some("nkeySeedSecret") => self
                .secret("nkeySeedSecret", nkey_seed_problem)
                .map_or(NatsCredentials::None, |s| {
                    NatsCredentials::NKey(s.trim().to_owned())
                }),
            Some("credentialsSecret") => {
                if self.get("credentialsFile").is_some() {
                    self.err(
                        "credentialsFile",
                        "set credentialsSecret or credentialsFile, not both".into(),
                    );
                    return NatsCredentials::None;
                }
                self.secret("credentialsSecret", creds_problem)
                    .map_or(NatsCredentials::None, NatsCredentials::Creds)
            }
            Some("credentialsFile") => {
                let path = self.get("credentialsFile").unwrap_or_default().to_owned();
                if !path.starts_with('/') {
                    self.err(
                        "credentialsFile",
                        format!(
                            "{path:?} is not an absolute path; write where the broker finds the \
                             .creds file, e.g. /etc/nats/cebus.creds"
                        ),
                    );
                    return NatsCredentials::None;
                }
                NatsCredentials::CredsFile(path)
            }
            Some(_) => {
                let user = self.get("user").map(str::to_owned);
                match (user, self.either("passwordSecret", "password")) {
                    (Some(user), Some(password)) => {
                        NatsCredentials::UserPassword { user, password }
                    }
                    (Some(_), None) => {
                        if self.get("password").is_none() && self.get("passwordSecret").is_none() {
                            self.err(
                                "password",
                                "user is set: password (or passwordSecret) is required".into(),
                            );
                        }
                        NatsCredentials::None
                    }
                    (None, _) => {
                        self.err("user", "password is set: user is required".into());
                        NatsCredentials::None
                    }
                }
            }
        }
    }

    /// `tlsRequired`, `caSecret`, `certSecret` and `keySecret`.
    fn tls(&mut self) -> NatsTls {
        let required = match self.get("tlsRequired") {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                let message = format!("{other:?} is not a boolean; write \"true\" or \"false\"");
                self.err("tlsRequired", message);
                false
            }
        };
        let ca = self.secret("caSecret", cert_problem);
        let cert = self.secret("certSecret", cert_problem);
        let key = self.secret("keySecret", key_problem);
        match (self.get("certSecret"), self.get("keySecret")) {
            (Some(_), None) => self.err(
                "keySecret",
                "certSecret is set: keySecret (the client certificate's private key) is required"
                    .into(),
            ),
            (None, Some(_)) => self.err(
                "certSecret",
                "keySecret is set: certSecret (the client certificate) is required".into(),
            ),
            _ => {}
        }
        NatsTls {
            required,
            ca,
            client: cert
                .zip(key)
                .map(|(cert, key)| NatsClientCert { cert, key }),
        }
    }
}

/// What is wrong with a user NKey seed, if anything (its checksum is checked
/// when connecting).
fn nkey_seed_problem(seed: &str) -> Option<&'static str> {
    let seed = seed.trim();
    let base32 = |c: u8| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c);
    (!(seed.len() == 58 && seed.starts_with("SU") && seed.bytes().all(base32))).then_some(
        "is not a user NKey seed: one is 58 characters of A-Z and 2-7 starting with SU \
         (nk -gen user writes one)",
    )
}

/// What is wrong with the content of a `.creds` file, if anything.
pub(crate) fn creds_problem(creds: &str) -> Option<&'static str> {
    (!(creds.contains("BEGIN NATS USER JWT") && creds.contains("BEGIN USER NKEY SEED"))).then_some(
        "is not a NATS credentials file: it needs a -----BEGIN NATS USER JWT----- block and a \
         -----BEGIN USER NKEY SEED----- block, as nsc generate creds writes them",
    )
}

/// What is wrong with a PEM certificate bundle, if anything.
pub(crate) fn cert_problem(pem: &str) -> Option<&'static str> {
    (!pem.contains("-----BEGIN CERTIFICATE-----"))
        .then_some("holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
}

/// What is wrong with a PEM private key, if anything.
pub(crate) fn key_problem(pem: &str) -> Option<&'static str> {
    let found = pem.lines().any(|l| {
        let l = l.trim();
        l.starts_with("-----BEGIN ") && l.ends_with("PRIVATE KEY-----")
    });
    (!found)
        .then_some("holds no PEM private key (-----BEGIN PRIVATE KEY-----, or an RSA or EC one)")
}

/// Why `url` is not a usable NATS server URL, if it is not.
pub(crate) fn check_url(url: &str) -> Option<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some(format!("{url:?} is not a URL; write nats://host:port"));
    };
    if scheme != "nats" && scheme != "tls" {
        return Some(format!("{url:?}: the scheme must be nats:// or tls://"));
    }
    let host_port = rest
        .rsplit('@')
        .next()
        .unwrap_or(rest)
        .trim_end_matches('/');
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host_port, None),
    };
    if host.is_empty() || host.contains('/') {
        return Some(format!("{url:?} has no host; write nats://host:port"));
    }
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return Some(format!("{url:?}: {p:?} is not a port"));
    }
    None
}

/// The value behind `secret-name/key` in namespace `ns`.
fn resolve_secret(reference: &str, ns: &str, config: &Config) -> Result<String, String> {
    let Some((name, key)) = reference
        .split_once('/')
        .filter(|(n, k)| !n.is_empty() && !k.is_empty())
    else {
        return Err(format!("{reference:?} is not <secret-name>/<key>"));
    };
    let Some(secret) = config.secret(ns, name) else {
        return Err(format!(
            "Secret {ns}/{name} is not defined in the configuration"
        ));
    };
    let Some(value) = secret.object.value(key) else {
        return Err(format!("Secret {ns}/{name} has no key {key:?}"));
    };
    String::from_utf8(value)
        .map_err(|_| format!("Secret {ns}/{name} key {key:?} is not UTF-8 text"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::load::load_str;
    use std::path::Path;

    /// A user NKey seed (the example of async-nats's documentation).
    pub(crate) const SEED: &str = "SUAIO3FHUX5PNV2LQIIP7TZ3N4L7TX3W53MQGEIVYFIGA635OZCKEYHFLM";
    pub(crate) const CREDS: &str = "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.c2ln\n\
         ------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n\
         SUAIO3FHUX5PNV2LQIIP7TZ3N4L7TX3W53MQGEIVYFIGA635OZCKEYHFLM\n\
         ------END USER NKEY SEED------\n";
    pub(crate) const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    pub(crate) const KEY: &str =
        "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n";

    /// Secret `default/nats` with every kind of value the keys refer to.
    fn config() -> Config {
        let yaml = |s: &str| serde_json::to_string(s).unwrap();
        let text = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: nats}}\nstringData:\n  \
             token: s3cret\n  password: pw\n  seed: {}\n  creds: {}\n  cert: {}\n  key: {}\n  \
             junk: hello\n  bad-seed: SAXYZ\n",
            yaml(&format!("{SEED}\n")),
            yaml(CREDS),
            yaml(CERT),
            yaml(KEY),
        );
        Config::from_objects(load_str(Path::new("s.yaml"), &text).unwrap())
    }

    /// ConfigMap keys and values of a case.
    type Data = &'static [(&'static str, &'static str)];

    /// Parses a ConfigMap with `url: nats://h:4222` and `data` added.
    fn parse(data: &[(&str, &str)]) -> Result<NatsBrokerConfig, Vec<(String, String)>> {
        let mut cm = ConfigMap::default();
        cm.data.insert("url".into(), "nats://h:4222".into());
        for (k, v) in data {
            cm.data.insert((*k).into(), (*v).into());
        }
        parse_nats_config(&cm, "default", &config()).map_err(|errors| {
            errors
                .into_iter()
                .map(|(field, message)| (field.as_str().to_owned(), message))
                .collect()
        })
    }

    #[test]
    fn each_kind_of_authentication_parses() {
        let cases: &[(Data, NatsCredentials)] = &[
            (&[], NatsCredentials::None),
            (&[("token", "t")], NatsCredentials::Token("t".into())),
            (
                &[("tokenSecret", "nats/token")],
                NatsCredentials::Token("s3cret".into()),
            ),
            (
                &[("user", "u"), ("passwordSecret", "nats/password")],
                NatsCredentials::UserPassword {
                    user: "u".into(),
                    password: "pw".into(),
                },
            ),
            (
                &[("nkeySeedSecret", "nats/seed")],
                // The Secret's trailing newline is not part of the seed.
                NatsCredentials::NKey(SEED.into()),
            ),
            (
                &[("credentialsSecret", "nats/creds")],
                NatsCredentials::Creds(CREDS.into()),
            ),
            (
                &[("credentialsFile", "/etc/nats/cebus.creds")],
                NatsCredentials::CredsFile("/etc/nats/cebus.creds".into()),
            ),
        ];
        for (data, want) in cases {
            let got = parse(data).unwrap_or_else(|e| panic!("{data:?}: {e:?}"));
            assert_eq!(&got.credentials, want, "{data:?}");
            assert_eq!(got.tls, NatsTls::default(), "{data:?}");
        }
    }

    #[test]
    fn tls_settings_parse() {
        let cases: &[(Data, NatsTls)] = &[
            (
                &[("tlsRequired", "true")],
                NatsTls {
                    required: true,
                    ..NatsTls::default()
                },
            ),
            (&[("tlsRequired", "false")], NatsTls::default()),
            (
                &[("caSecret", "nats/cert")],
                NatsTls {
                    ca: Some(CERT.into()),
                    ..NatsTls::default()
                },
            ),
            (
                &[
                    ("caSecret", "nats/cert"),
                    ("certSecret", "nats/cert"),
                    ("keySecret", "nats/key"),
                    ("tlsRequired", "true"),
                ],
                NatsTls {
                    required: true,
                    ca: Some(CERT.into()),
                    client: Some(NatsClientCert {
                        cert: CERT.into(),
                        key: KEY.into(),
                    }),
                },
            ),
        ];
        for (data, want) in cases {
            let got = parse(data).unwrap_or_else(|e| panic!("{data:?}: {e:?}"));
            assert_eq!(&got.tls, want, "{data:?}");
        }
        // tls:// URLs are TLS without tlsRequired.
        let mut cm = ConfigMap::default();
        cm.data
            .insert("url".into(), "tls://a:4222, nats://b:4222".into());
        let got = parse_nats_config(&cm, "default", &config()).unwrap();
        assert_eq!(got.servers, ["tls://a:4222", "nats://b:4222"]);
    }

    #[test]
    fn every_error_names_its_key() {
        let cases: &[(Data, &str, &str)] = &[
            (
                &[("token", "t"), ("tokenSecret", "nats/token")],
                "data.tokenSecret",
                "set token or tokenSecret, not both",
            ),
            (
                &[("tokenSecret", "nats")],
                "data.tokenSecret",
                "\"nats\" is not <secret-name>/<key>",
            ),
            (
                &[("tokenSecret", "missing/token")],
                "data.tokenSecret",
                "Secret default/missing is not defined in the configuration",
            ),
            (
                &[("tokenSecret", "nats/nope")],
                "data.tokenSecret",
                "Secret default/nats has no key \"nope\"",
            ),
            (
                &[("user", "u")],
                "data.password",
                "user is set: password (or passwordSecret) is required",
            ),
            (
                &[("password", "p")],
                "data.user",
                "password is set: user is required",
            ),
            (
                &[
                    ("user", "u"),
                    ("password", "p"),
                    ("passwordSecret", "nats/password"),
                ],
                "data.passwordSecret",
                "set password or passwordSecret, not both",
            ),
            (
                &[("token", "t"), ("user", "u")],
                "data.user",
                "user and token are two kinds of NATS authentication; set one: a token, user and \
                 password, nkeySeedSecret, or credentialsSecret/credentialsFile",
            ),
            (
                &[("token", "t"), ("nkeySeedSecret", "nats/seed")],
                "data.nkeySeedSecret",
                "nkeySeedSecret and token are two kinds",
            ),
            (
                &[
                    ("passwordSecret", "nats/password"),
                    ("credentialsFile", "/c"),
                ],
                "data.credentialsFile",
                "credentialsFile and passwordSecret are two kinds",
            ),
            (
                &[
                    ("nkeySeedSecret", "nats/seed"),
                    ("credentialsSecret", "nats/creds"),
                ],
                "data.credentialsSecret",
                "credentialsSecret and nkeySeedSecret are two kinds",
            ),
            (
                &[("nkeySeedSecret", "nats/bad-seed")],
                "data.nkeySeedSecret",
                "Secret default/nats key \"bad-seed\" is not a user NKey seed: one is 58 \
                 characters of A-Z and 2-7 starting with SU",
            ),
            (
                &[("nkeySeedSecret", "nats/gone")],
                "data.nkeySeedSecret",
                "Secret default/nats has no key \"gone\"",
            ),
            (
                &[("credentialsSecret", "nats/junk")],
                "data.credentialsSecret",
                "Secret default/nats key \"junk\" is not a NATS credentials file: it needs a \
                 -----BEGIN NATS USER JWT----- block and a -----BEGIN USER NKEY SEED----- block",
            ),
            (
                &[
                    ("credentialsSecret", "nats/creds"),
                    ("credentialsFile", "/c"),
                ],
                "data.credentialsFile",
                "set credentialsSecret or credentialsFile, not both",
            ),
            (
                &[("credentialsFile", "cebus.creds")],
                "data.credentialsFile",
                "\"cebus.creds\" is not an absolute path",
            ),
            (
                &[("caSecret", "nats/key")],
                "data.caSecret",
                "Secret default/nats key \"key\" holds no PEM certificate",
            ),
            (
                &[("certSecret", "nats/junk"), ("keySecret", "nats/key")],
                "data.certSecret",
                "Secret default/nats key \"junk\" holds no PEM certificate",
            ),
            (
                &[("certSecret", "nats/cert"), ("keySecret", "nats/cert")],
                "data.keySecret",
                "Secret default/nats key \"cert\" holds no PEM private key",
            ),
            (
                &[("certSecret", "nats/cert")],
                "data.keySecret",
                "certSecret is set: keySecret (the client certificate's private key) is required",
            ),
            (
                &[("keySecret", "nats/key")],
                "data.certSecret",
                "keySecret is set: certSecret (the client certificate) is required",
            ),
            (
                &[("caSecret", "other/ca")],
                "data.caSecret",
                "Secret default/other is not defined",
            ),
            (
                &[("tlsRequired", "yes")],
                "data.tlsRequired",
                "\"yes\" is not a boolean; write \"true\" or \"false\"",
            ),
            (
                &[("url", "tls://h:4222"), ("tlsRequired", "false")],
                "data.tlsRequired",
                "\"false\", but tls://h:4222 asks for TLS",
            ),
            (
                &[("tls", "true")],
                "data.tls",
                "unknown key \"tls\" for a NatsJetStreamBroker",
            ),
        ];
        for (data, field, message) in cases {
            let errors = parse(data).expect_err(&format!("{data:?} must be refused"));
            assert_eq!(errors.len(), 1, "{data:?}: {errors:?}");
            let (got_field, got_message) = &errors[0];
            assert_eq!(got_field, field, "{data:?}: {got_message}");
            assert!(
                got_message.starts_with(message),
                "{data:?}: {got_message:?} does not start with {message:?}"
            );
            // No message repeats a secret.
            for secret in ["s3cret", "pw", SEED, "MHcC"] {
                assert!(!got_message.contains(secret), "{got_message}");
            }
        }
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let shown = [
            format!("{:?}", NatsCredentials::Token("s3cret".into())),
            format!(
                "{:?}",
                NatsCredentials::UserPassword {
                    user: "u".into(),
                    password: "s3cret".into()
                }
            ),
            format!("{:?}", NatsCredentials::NKey("s3cret".into())),
            format!("{:?}", NatsCredentials::Creds("s3cret".into())),
            format!(
                "{:?}",
                NatsTls {
                    required: true,
                    ca: Some("ca".into()),
                    client: Some(NatsClientCert {
                        cert: "cert".into(),
                        key: "s3cret".into()
                    }),
                }
            ),
        ];
        for s in &shown {
            assert!(!s.contains("s3cret"), "{s}");
        }
        assert_eq!(shown[2], "NKey(<redacted>)");
        assert_eq!(
            format!("{:?}", NatsCredentials::CredsFile("/c".into())),
            "CredsFile(/c)"
        );
    }
}
