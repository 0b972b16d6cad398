//! How the NATS channel connects: the client options from the settings'
//! credentials and TLS (a rustls client config built from the PEMs in memory:
//! nothing is written to disk), a reason for a failed attempt that names
//! what was tried and never a secret, and the set-up of the stream and the
//! broker's consumer, retried with backoff (see [`crate::durable::link`]).

use std::sync::Arc;
use std::time::Duration;

use async_nats::ConnectOptions;
use async_nats::rustls::pki_types::pem::PemObject;
use async_nats::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use async_nats::rustls::{self, ClientConfig, RootCertStore};
use cebus_api::{NatsCredentials, NatsKeys, NatsTls};

use async_nats::jetstream;
use tokio::sync::watch;

use super::config::{CONSUMER_NAME, NatsSettings};
use crate::durable::link::{self, Link};

/// Longest wait for one connection attempt (TCP, TLS, CONNECT and PONG).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One attempt to connect to any of the settings' servers. Once connected, the
/// client reconnects by itself, for ever; the error is the reason ingress gives
/// with its 503s.
pub(super) async fn connect(settings: &NatsSettings) -> Result<async_nats::Client, String> {
    let tried = || {
        format!(
            "cannot connect to NATS at {} with {}",
            settings.config.servers.join(", "),
            attempt(settings)
        )
    };
    let opts = options(settings)
        .await
        .map_err(|e| format!("{}: {e}", tried()))?;
    let servers: Vec<async_nats::ServerAddr> = settings
        .config
        .servers
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    opts.connect(servers)
        .await
        .map_err(|e| format!("{}: {e}", tried()))
}

/// The client options: credentials, TLS, reconnecting for ever.
async fn options(settings: &NatsSettings) -> Result<ConnectOptions, String> {
    let opts = ConnectOptions::new()
        .connection_timeout(CONNECT_TIMEOUT)
        .max_reconnects(None);
    let mut opts = match &settings.config.credentials {
        NatsCredentials::None => opts,
        NatsCredentials::Token(t) => opts.token(t.clone()),
        NatsCredentials::UserPassword { user, password } => {
            opts.user_and_password(user.clone(), password.clone())
        }
        NatsCredentials::NKey(seed) => {
            nkeys::KeyPair::from_seed(seed).map_err(|e| format!("the seed is not valid: {e}"))?;
            opts.nkey(seed.clone())
        }
        NatsCredentials::Creds(creds) => opts
            .credentials(&ending_in_newline(creds))
            .map_err(|e| format!("they cannot be used: {e}"))?,
        NatsCredentials::CredsFile(path) => {
            // Read at each attempt: a renewed file is picked up.
            let creds = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("cannot read it: {e}"))?;
            opts.credentials(&ending_in_newline(&creds))
                .map_err(|e| format!("it cannot be used: {e}"))?
        }
    };
    if settings.config.tls.required {
        opts = opts.require_tls(true);
    }
    if settings.config.tls.has_material() {
        opts = opts.tls_client_config(tls_config(&settings.config.tls, settings.config.keys)?);
    }
    Ok(opts)
}

/// async-nats finds the blocks of a `.creds` file only when each end line is
/// followed by a newline; a Secret's value often lacks the last one.
fn ending_in_newline(creds: &str) -> String {
    let mut s = creds.to_owned();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// A rustls client config trusting the configured CA (`caSecret`, or the
/// system's CA certificates) and presenting the client certificate, if any.
/// The process's crypto provider, else ring (the only one cebus builds in).
/// Errors name the keys in `keys`.
fn tls_config(tls: &NatsTls, keys: &NatsKeys) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    if let Some(pem) = &tls.ca {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("{} is not valid PEM: {e}", keys.ca))?;
            roots
                .add(cert)
                .map_err(|e| format!("a certificate of {} cannot be trusted: {e}", keys.ca))?;
        }
    } else {
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            return Err(format!(
                "no {}, and no system CA certificates to trust instead",
                keys.ca
            ));
        }
    }
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots);
    let Some(client) = &tls.client else {
        return Ok(builder.with_no_client_auth());
    };
    let chain = CertificateDer::pem_slice_iter(client.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", keys.cert))?;
    let key = PrivateKeyDer::from_pem_slice(client.key.as_bytes())
        .map_err(|e| format!("{} is not a valid PEM private key: {e}", keys.key))?;
    builder.with_client_auth_cert(chain, key).map_err(|e| {
        format!(
            "the client certificate ({}) and key ({}) cannot be used: {e}",
            keys.cert, keys.key
        )
    })
}

/// What an attempt uses, for its error: the kind of authentication and the TLS
/// settings (never a secret).
fn attempt(settings: &NatsSettings) -> String {
    let tls = &settings.config.tls;
    let keys = settings.config.keys;
    let mut s = settings.config.credentials.describe(keys);
    if tls.required
        || tls.has_material()
        || settings
            .config
            .servers
            .iter()
            .any(|u| u.starts_with("tls://"))
    {
        match &tls.ca {
            Some(_) => s.push_str(&format!(", over TLS trusting {}", keys.ca)),
            None => s.push_str(", over TLS trusting the system's CA certificates"),
        }
        if tls.client.is_some() {
            s.push_str(&format!(" with the client certificate of {}", keys.cert));
        }
    }
    s
}

/// A connected client and its JetStream context.
pub(super) struct Ready {
    pub(super) client: async_nats::Client,
    pub(super) js: jetstream::Context,
}

/// Connects and creates or updates the stream and the consumer, retrying with
/// backoff until it works or the channel is closed.
pub(super) async fn setup(
    settings: &NatsSettings,
    link: &watch::Sender<Link<Ready>>,
    close: &mut watch::Receiver<bool>,
) -> Option<(Ready, jetstream::consumer::PullConsumer)> {
    // A failed connection attempt's error (refused, TLS, authorization) is the
    // reason ingress gives until one succeeds.
    let client = link::retry(
        &settings.stream,
        link,
        close,
        "NATS connection failed",
        || connect(settings),
    )
    .await?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(5));
    let consumer = link::retry(
        &settings.stream,
        link,
        close,
        "NATS JetStream setup failed",
        || create(settings, &js),
    )
    .await?;
    tracing::info!(stream = %settings.stream, subject = %settings.subject, "NATS JetStream stream and consumer ready");
    Some((Ready { client, js }, consumer))
}

async fn create(
    settings: &NatsSettings,
    js: &jetstream::Context,
) -> Result<jetstream::consumer::PullConsumer, String> {
    let stream = match js.create_or_update_stream(settings.stream_config()).await {
        Ok(_) => js
            .get_stream(&settings.stream)
            .await
            .map_err(|e| format!("NATS JetStream stream {}: {e}", settings.stream))?,
        Err(e) => {
            return Err(format!(
                "cannot create or update NATS JetStream stream {}: {e}",
                settings.stream
            ));
        }
    };
    js.create_consumer_on_stream(settings.consumer_config(), &settings.stream)
        .await
        .map_err(|e| {
            format!(
                "cannot create the consumer {CONSUMER_NAME} on stream {}: {e}",
                settings.stream
            )
        })?;
    stream.get_consumer(CONSUMER_NAME).await.map_err(|e| {
        format!(
            "consumer {CONSUMER_NAME} on stream {}: {e}",
            settings.stream
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cebus_api::NatsClientCert;

    use crate::nats::config::test_config;

    fn settings(auth: NatsCredentials, tls: NatsTls) -> NatsSettings {
        let mut s = NatsSettings::new(test_config(vec!["nats://127.0.0.1:1".into()]), "ns", "b");
        s.config.credentials = auth;
        s.config.tls = tls;
        s
    }

    /// TLS required, a CA and a client certificate (placeholders).
    fn all_tls() -> NatsTls {
        NatsTls {
            required: true,
            ca: Some("pem".into()),
            client: Some(NatsClientCert {
                cert: "c".into(),
                key: "k".into(),
            }),
        }
    }

    #[tokio::test]
    async fn unusable_credentials_and_tls_material_are_named_not_shown() {
        let pem = |label: &str, body: &str| {
            format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
        };
        let cases = [
            (
                settings(
                    NatsCredentials::NKey("SUSECRETSEED".into()),
                    NatsTls::default(),
                ),
                "with an NKey seed (nkeySeedSecret): the seed is not valid",
            ),
            (
                settings(
                    NatsCredentials::Creds("-----BEGIN NATS USER JWT-----\nSECRET".into()),
                    NatsTls::default(),
                ),
                "with the credentials of credentialsSecret: they cannot be used",
            ),
            (
                settings(
                    NatsCredentials::CredsFile("/nonexistent/cebus.creds".into()),
                    NatsTls::default(),
                ),
                "with the credentials file /nonexistent/cebus.creds (credentialsFile): cannot read \
                 it: No such file",
            ),
            (
                settings(
                    NatsCredentials::None,
                    NatsTls {
                        ca: Some(pem("CERTIFICATE", "!!SECRET!!")),
                        ..NatsTls::default()
                    },
                ),
                "caSecret is not valid PEM",
            ),
            (
                settings(
                    NatsCredentials::None,
                    NatsTls {
                        client: Some(NatsClientCert {
                            cert: pem("CERTIFICATE", "MIIB"),
                            key: pem("PRIVATE KEY", "!!SECRET!!"),
                        }),
                        ..NatsTls::default()
                    },
                ),
                "keySecret is not a valid PEM private key",
            ),
        ];
        for (s, want) in cases {
            let Err(reason) = connect(&s).await else {
                panic!("{s:?} connected")
            };
            assert!(
                reason.starts_with("cannot connect to NATS at nats://127.0.0.1:1 with "),
                "{reason}"
            );
            assert!(reason.contains(want), "{reason:?} lacks {want:?}");
            assert!(!reason.contains("SECRET"), "{reason}");
        }
    }

    #[test]
    fn an_attempt_is_described_by_its_settings() {
        let tls = all_tls();
        assert_eq!(
            attempt(&settings(NatsCredentials::NKey("s".into()), tls)),
            "an NKey seed (nkeySeedSecret), over TLS trusting caSecret with the client \
             certificate of certSecret"
        );
        let plain = settings(NatsCredentials::Token("t".into()), NatsTls::default());
        assert_eq!(attempt(&plain), "a token");
    }

    #[tokio::test]
    async fn from_config_nats_the_messages_name_its_fields() {
        // A NatsJetStreamChannel template's connection comes from config-nats,
        // whose fields are not the broker ConfigMap's keys.
        let tls = all_tls();
        let mut s = settings(NatsCredentials::Creds("jwt".into()), tls);
        s.config.keys = &NatsKeys::CONFIG_NATS;
        assert_eq!(
            attempt(&s),
            "the credentials of config-nats eventing-nats.auth.credentialFile, over TLS \
             trusting config-nats eventing-nats.tls with the client certificate of \
             config-nats eventing-nats.auth.tls (tls.crt)"
        );
        let mut bad_ca = settings(
            NatsCredentials::None,
            NatsTls {
                ca: Some("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n".into()),
                ..NatsTls::default()
            },
        );
        bad_ca.config.keys = &NatsKeys::CONFIG_NATS;
        let Err(reason) = connect(&bad_ca).await else {
            panic!("connected")
        };
        assert!(
            reason.contains("config-nats eventing-nats.tls is not valid PEM"),
            "{reason}"
        );
        assert!(!reason.contains("caSecret"), "{reason}");
    }
}
