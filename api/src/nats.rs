//! The ConfigMap of a `NatsJetStreamBroker`: its keys, defaults and checks,
//! parsed once into [`NatsBrokerConfig`]. Pure: secrets come from the loaded
//! config, durations are ISO-8601 as everywhere in Knative.

use std::time::Duration;

use crate::duration::parse_iso8601;
use crate::error::FieldPath;
use crate::load::Config;
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

/// Credentials for NATS, resolved from the ConfigMap and Secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum NatsCredentials {
    /// None.
    None,
    /// A token.
    Token(String),
    /// A user and password.
    UserPassword {
        /// User.
        user: String,
        /// Password.
        password: String,
    },
}

impl std::fmt::Debug for NatsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsCredentials::None => f.write_str("None"),
            NatsCredentials::Token(_) => f.write_str("Token(<redacted>)"),
            NatsCredentials::UserPassword { user, .. } => {
                write!(f, "UserPassword({user}, <redacted>)")
            }
        }
    }
}

/// A `NatsJetStreamBroker`'s validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsBrokerConfig {
    /// Server URLs (`nats://` or `tls://`).
    pub servers: Vec<String>,
    /// Credentials.
    pub credentials: NatsCredentials,
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
    let mut secret = |key: &str, plain: &str| -> Option<String> {
        match (data(plain), data(key)) {
            (Some(_), Some(_)) => {
                errors.push((at(key), format!("set {plain} or {key}, not both")));
                None
            }
            (Some(v), None) => Some(v.to_owned()),
            (None, Some(r)) => match resolve_secret(r, ns, config) {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.push((at(key), e));
                    None
                }
            },
            (None, None) => None,
        }
    };
    let token = secret("tokenSecret", "token");
    let password = secret("passwordSecret", "password");
    let user = data("user").map(str::to_owned);
    let credentials = match (token, user, password) {
        (None, None, None) => NatsCredentials::None,
        (Some(t), None, None) => NatsCredentials::Token(t),
        (None, Some(user), Some(password)) => NatsCredentials::UserPassword { user, password },
        (Some(_), _, _) => {
            errors.push((at("token"), "a token excludes user and password".into()));
            NatsCredentials::None
        }
        (None, Some(_), None) => {
            errors.push((
                at("password"),
                "user is set: password (or passwordSecret) is required".into(),
            ));
            NatsCredentials::None
        }
        (None, None, Some(_)) => {
            errors.push((at("user"), "password is set: user is required".into()));
            NatsCredentials::None
        }
    };
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
        credentials,
        storage,
        replicas,
        max_age,
        max_bytes,
        max_messages,
        max_message_size,
        duplicate_window,
    })
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
