//! Where a source's events go and how they get there: a bare Broker ref is the
//! in-process broker, reached through the broker's [`Port`] (stored when the
//! send returns), anything else is a URL that gets an HTTP POST in binary mode.
//! Bounded retries use the trigger delivery maths.

use std::time::{Duration, SystemTime};

use cebus_api::{Destination, EVENTING_V1};
use cebus_broker::deliver::Client;
use cebus_broker::port::{Incoming, IngestError, Port};
use cebus_broker::shared::Shared;
use cebus_channels::ChannelError;
use cebus_events::Event;
use cebus_triggers::{AttemptOutcome, DeliveryPolicy, RetryAfter};
use http::{HeaderMap, StatusCode};

/// A resolved sink.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SinkTarget {
    /// A broker of this process, `namespace/name`.
    Broker {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Any other destination, by URL.
    Url(String),
}

impl SinkTarget {
    /// Resolves `sink` of a source in `namespace`: a Broker `ref` without `uri` is
    /// the in-process broker; anything else goes through
    /// [`cebus_api::resolve_destination`].
    pub fn resolve(
        sink: &Destination,
        namespace: &str,
        ingress_base: &str,
    ) -> Result<SinkTarget, String> {
        if let Some(r) = &sink.reference
            && sink.uri.is_none()
            && r.kind == "Broker"
            && r.api_version.as_deref().is_none_or(|a| a == EVENTING_V1)
        {
            let ns = r
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(namespace);
            return Ok(SinkTarget::Broker {
                namespace: ns.to_owned(),
                name: r.name.clone(),
            });
        }
        cebus_api::resolve_destination(sink, namespace, ingress_base).map(SinkTarget::Url)
    }

    /// The URL a process would post to (`K_SINK`): a broker's ingress URL.
    pub fn url(&self, ingress_base: &str) -> String {
        match self {
            SinkTarget::Broker { namespace, name } => {
                format!("{}/{namespace}/{name}", ingress_base.trim_end_matches('/'))
            }
            SinkTarget::Url(u) => u.clone(),
        }
    }
}

impl std::fmt::Display for SinkTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkTarget::Broker { namespace, name } => write!(f, "Broker {namespace}/{name}"),
            SinkTarget::Url(u) => f.write_str(u),
        }
    }
}

/// Why a sink did not take an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// How the attempt ended (a broker's refusals are mapped to HTTP statuses).
    pub outcome: AttemptOutcome,
    /// The `Retry-After` the sink asked for.
    pub retry_after: Option<Duration>,
    /// What happened, for logs and error bodies.
    pub message: String,
}

impl Refusal {
    fn status(status: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            outcome: AttemptOutcome::Status(status),
            retry_after: None,
            message: message.into(),
        }
    }
}

/// What a webhook answers when the sink refused: 400 for an event the broker
/// rejects (hop count), 413 when too large, 503 when the sink is busy or not
/// running (the sender should retry), 502 for every other failure of the sink.
pub fn webhook_status(r: &Refusal) -> StatusCode {
    match r.outcome {
        AttemptOutcome::Status(400) => StatusCode::BAD_REQUEST,
        AttemptOutcome::Status(413) => StatusCode::PAYLOAD_TOO_LARGE,
        AttemptOutcome::Status(429 | 503) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// Sends events to sinks.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The brokers of this process.
    port: Port,
    /// For URL sinks.
    client: Client,
    /// Time limit of a POST to a URL sink.
    timeout: Duration,
}

impl Sender {
    /// A sender handing events to brokers through `port`, and posting to URLs
    /// with the pooled HTTP client and default timeout of `shared`.
    pub fn new(port: Port, shared: &Shared) -> Sender {
        Sender {
            port,
            client: shared.client.clone(),
            timeout: shared.limits.default_timeout,
        }
    }

    /// One attempt. `ttl` is the incoming `knativebrokerttl` (passed-through
    /// events); `headers` are forwarded to subscribers.
    pub async fn send_once(
        &self,
        target: &SinkTarget,
        event: Event,
        ttl: Option<String>,
        headers: Vec<(String, String)>,
    ) -> Result<(), Refusal> {
        match target {
            SinkTarget::Broker { namespace, name } => {
                let incoming = Incoming {
                    event,
                    ttl,
                    headers,
                };
                match self.port.send(namespace, name, vec![incoming]).await {
                    Ok(()) => Ok(()),
                    Err(e @ IngestError::NotRunning { .. }) => {
                        Err(Refusal::status(503, e.to_string()))
                    }
                    Err(IngestError::Ttl { message, .. }) => Err(Refusal::status(400, message)),
                    Err(IngestError::Channel(ChannelError::Full { retry_after, .. })) => {
                        Err(Refusal {
                            outcome: AttemptOutcome::Status(503),
                            retry_after: Some(retry_after),
                            message: format!("broker {namespace}/{name} is at capacity"),
                        })
                    }
                    Err(IngestError::Channel(e @ ChannelError::BatchTooLarge { .. })) => {
                        Err(Refusal::status(413, e.to_string()))
                    }
                    Err(IngestError::Channel(ChannelError::Unavailable { reason })) => {
                        Err(Refusal {
                            outcome: AttemptOutcome::Status(503),
                            retry_after: Some(std::time::Duration::from_secs(1)),
                            message: format!("broker {namespace}/{name}: {reason}"),
                        })
                    }
                    Err(IngestError::Channel(ChannelError::Closed)) => Err(Refusal::status(
                        503,
                        format!("broker {namespace}/{name} is shutting down"),
                    )),
                }
            }
            SinkTarget::Url(url) => {
                let mut event = event;
                if let Some(ttl) = ttl {
                    event.set(cebus_events::attr::KNATIVE_BROKER_TTL, ttl);
                }
                let mut h = HeaderMap::new();
                let body = cebus_events::http::encode_binary(&event, &mut h);
                for (k, v) in headers {
                    if let (Ok(k), Ok(v)) = (
                        http::HeaderName::from_bytes(k.as_bytes()),
                        http::HeaderValue::from_str(&v),
                    ) {
                        h.insert(k, v);
                    }
                }
                let sent = self
                    .client
                    .post(url)
                    .headers(h)
                    .body(body)
                    .timeout(self.timeout)
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status().is_success() => Ok(()),
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let retry_after = resp
                            .headers()
                            .get(http::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(cebus_triggers::parse_retry_after)
                            .map(|ra| match ra {
                                RetryAfter::Delay(d) => d,
                                RetryAfter::Date(at) => {
                                    at.duration_since(SystemTime::now()).unwrap_or_default()
                                }
                            });
                        Err(Refusal {
                            outcome: AttemptOutcome::Status(status),
                            retry_after,
                            message: format!("sink {url} answered {status}"),
                        })
                    }
                    Err(e) => Err(Refusal {
                        outcome: if e.is_timeout() {
                            AttemptOutcome::Timeout
                        } else {
                            AttemptOutcome::Transport
                        },
                        retry_after: None,
                        message: format!("sink {url}: {e}"),
                    }),
                }
            }
        }
    }

    /// Attempts until accepted or `policy` gives up (terminal answer or no
    /// retries left); the last refusal on give-up.
    pub async fn send(
        &self,
        target: &SinkTarget,
        event: Event,
        policy: &DeliveryPolicy,
    ) -> Result<(), Refusal> {
        let mut attempt = 1;
        loop {
            let refusal = match self
                .send_once(target, event.clone(), None, Vec::new())
                .await
            {
                Ok(()) => return Ok(()),
                Err(r) => r,
            };
            let retry_after = refusal.retry_after.map(RetryAfter::Delay);
            let Some(wait) = cebus_triggers::next_delay(
                policy,
                attempt,
                &refusal.outcome,
                retry_after.as_ref(),
                SystemTime::now(),
            ) else {
                return Err(refusal);
            };
            tracing::debug!(sink = %target, attempt, ?wait, reason = %refusal.message, "source delivery failed; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cebus_api::KReference;

    #[test]
    fn resolves_sinks() {
        let base = "http://127.0.0.1:8080";
        let broker = |ns: Option<&str>, uri: Option<&str>| Destination {
            reference: Some(KReference {
                kind: "Broker".into(),
                name: "default".into(),
                api_version: Some(EVENTING_V1.into()),
                namespace: ns.map(Into::into),
                ..Default::default()
            }),
            uri: uri.map(Into::into),
            ..Default::default()
        };
        assert_eq!(
            SinkTarget::resolve(&broker(None, None), "team", base),
            Ok(SinkTarget::Broker {
                namespace: "team".into(),
                name: "default".into()
            })
        );
        assert_eq!(
            SinkTarget::resolve(&broker(Some("ops"), None), "team", base)
                .unwrap()
                .url(base),
            "http://127.0.0.1:8080/ops/default"
        );
        // A path under a broker's address is a URL, not the broker itself.
        assert_eq!(
            SinkTarget::resolve(&broker(None, Some("/x")), "team", base),
            Ok(SinkTarget::Url("http://127.0.0.1:8080/x".into()))
        );
        let uri = Destination {
            uri: Some("https://hooks.example/in".into()),
            ..Default::default()
        };
        assert_eq!(
            SinkTarget::resolve(&uri, "team", base),
            Ok(SinkTarget::Url("https://hooks.example/in".into()))
        );
        assert!(SinkTarget::resolve(&Destination::default(), "team", base).is_err());
    }

    #[test]
    fn webhook_answers_for_refusals() {
        let r = |outcome| Refusal {
            outcome,
            retry_after: None,
            message: String::new(),
        };
        for (outcome, want) in [
            (AttemptOutcome::Status(400), 400),
            (AttemptOutcome::Status(413), 413),
            (AttemptOutcome::Status(429), 503),
            (AttemptOutcome::Status(503), 503),
            (AttemptOutcome::Status(500), 502),
            (AttemptOutcome::Status(404), 502),
            (AttemptOutcome::Status(401), 502),
            (AttemptOutcome::Transport, 502),
            (AttemptOutcome::Timeout, 502),
        ] {
            assert_eq!(webhook_status(&r(outcome)).as_u16(), want, "{outcome:?}");
        }
    }
}
