//! Delivery of one event to one trigger's subscriber: attempts, backoff,
//! Retry-After, per-attempt timeout, replies and the dead-letter sink. The
//! decisions come from `cebus_triggers` (pure); this file only sends and waits,
//! through the pooled [`Client`].

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use cebus_api::DeliveryFormat;
use cebus_channels::Envelope;
use cebus_events::Event;
use cebus_events::http::{Decoded, decode, encode_binary, encode_structured};
use cebus_triggers::{AttemptOutcome, DeliveryPolicy, ReplyDecision};
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Semaphore;

mod client;

pub use client::{Client, use_pool_shard};
use client::{Response, Target};

use crate::limits::BrokerSettings;
use crate::metrics::{DeliveryOutcome, TriggerCounters};
use crate::plan::TriggerPlan;
use crate::port::{Incoming, IngestError, Port};

/// `Prefer: reply`, which Knative sends to subscribers.
const PREFER: HeaderName = HeaderName::from_static("prefer");
/// Namespace of the trigger, which Knative sends as `Kn-Namespace`.
const KN_NAMESPACE: HeaderName = HeaderName::from_static("kn-namespace");

/// What a delivery needs besides the event and the plan.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Pooled HTTP client.
    pub client: Client,
    /// The settings of the trigger's broker (a reply's size limit).
    pub settings: Arc<ArcSwap<BrokerSettings>>,
    /// Where replies re-enter the broker.
    pub port: Port,
    /// The name of the trigger's broker (in the trigger's namespace), which
    /// replies re-enter.
    pub broker: String,
    /// The trigger's counters.
    pub counters: TriggerCounters,
    /// Attempt time limit when the policy sets none.
    pub default_timeout: Duration,
    /// Outbound request permits per destination host.
    pub outbound: Arc<HostLimits>,
    /// The last URL this trigger sent to, resolved (its subscriber, nearly
    /// always).
    pub resolved: Arc<ResolvedCache>,
}

/// A URL turned into a request target, with its host's permits.
#[derive(Debug)]
pub struct Resolved {
    url: reqwest::Url,
    /// `None` when the URL has no host or port (every attempt fails).
    target: Option<(Target, Arc<Semaphore>)>,
}

/// One trigger's last [`Resolved`] URL: resolving parses the URL, formats the
/// host key and `Host` header and looks the host's permits up, which cost more
/// per delivery than keeping the result.
#[derive(Debug, Default)]
pub struct ResolvedCache(arc_swap::ArcSwapOption<Resolved>);

impl ResolvedCache {
    /// `url` resolved, from the cache when it is the last one.
    fn get(&self, url: &reqwest::Url, client: &Client, outbound: &HostLimits) -> Arc<Resolved> {
        if let Some(r) = self.0.load_full()
            && r.url == *url
        {
            return r;
        }
        let target = client.target(url).map(|t| {
            let permits = outbound.permits(&t.host_key);
            (t, permits)
        });
        let r = Arc::new(Resolved {
            url: url.clone(),
            target,
        });
        self.0.store(Some(r.clone()));
        r
    }
}

/// A bound on requests in flight to each destination (`host:port`), so the
/// connections to one subscriber stay within the keep-alive pool and are reused,
/// and a stuck host can only use up its own permits, never another host's.
#[derive(Debug)]
pub struct HostLimits {
    per_host: usize,
    hosts: RwLock<HashMap<String, Arc<Semaphore>>>,
}

impl HostLimits {
    /// At most `per_host` requests in flight to any one host.
    pub fn new(per_host: usize) -> HostLimits {
        HostLimits {
            per_host: per_host.max(1),
            hosts: RwLock::new(HashMap::new()),
        }
    }

    /// The permits of the host `key` (`host:port`).
    fn permits(&self, key: &str) -> Arc<Semaphore> {
        if let Some(s) = self
            .hosts
            .read()
            .expect("host limits lock poisoned")
            .get(key)
        {
            return s.clone();
        }
        self.hosts
            .write()
            .expect("host limits lock poisoned")
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone()
    }
}

/// The last failed attempt, kept for the dead-letter extensions.
#[derive(Debug, Default)]
struct Failure {
    status: Option<u16>,
    body: Bytes,
}

/// The encoded forms of one stored event, built at most once per content mode
/// and shared by every trigger that delivers it (all triggers of a broker share
/// its namespace, so the headers are the same).
#[derive(Debug, Default)]
pub struct Encoded {
    binary: OnceLock<Request>,
    json: OnceLock<Request>,
}

impl Encoded {
    fn get(&self, envelope: &Envelope, plan: &TriggerPlan) -> &Request {
        let cell = match plan.policy.format {
            DeliveryFormat::Json => &self.json,
            DeliveryFormat::Binary => &self.binary,
        };
        cell.get_or_init(|| Request::build(&envelope.event, envelope, plan))
    }
}

/// Delivers `envelope` for the trigger `plan`; on give-up, dead-letters it.
pub async fn deliver(
    envelope: &Envelope,
    encoded: &Encoded,
    plan: &TriggerPlan,
    ctx: &Ctx,
) -> DeliveryOutcome {
    let request = encoded.get(envelope, plan);
    let failure = match send(
        request,
        &plan.subscriber_url,
        &plan.policy,
        ctx,
        Some((envelope, plan)),
    )
    .await
    {
        Ok(()) => return DeliveryOutcome::Delivered,
        Err(f) => f,
    };
    let (Some(dls), Some(dls_url)) = (
        plan.dead_letter_sink.as_deref(),
        plan.dead_letter_url.as_ref(),
    ) else {
        tracing::warn!(
            trigger = %plan.name, namespace = %plan.namespace, id = %envelope.event.id(),
            subscriber = %plan.subscriber, status = ?failure.status,
            "delivery failed and the trigger has no dead-letter sink; event dropped"
        );
        return DeliveryOutcome::DroppedNoDls;
    };
    let dead = cebus_triggers::dead_letter_event(
        &envelope.event,
        &plan.subscriber,
        failure.status,
        // `dead_letter_event` keeps the first 1024 bytes itself.
        &failure.body,
    );
    let request = Request::build(&dead, envelope, plan);
    // Boxed: the dead-letter path is rare (see `handle_reply`).
    match Box::pin(send(&request, dls_url, &plan.policy, ctx, None)).await {
        Ok(()) => {
            tracing::info!(trigger = %plan.name, id = %envelope.event.id(), dls, "event dead-lettered");
            DeliveryOutcome::DeadLettered
        }
        Err(f) => {
            tracing::error!(
                trigger = %plan.name, namespace = %plan.namespace, id = %envelope.event.id(),
                dls, status = ?f.status, "dead-letter sink failed too; event dropped"
            );
            DeliveryOutcome::DroppedDlsFailed
        }
    }
}

/// An encoded request, reused by every attempt.
#[derive(Debug)]
struct Request {
    headers: HeaderMap,
    body: Bytes,
}

impl Request {
    fn build(event: &Event, envelope: &Envelope, plan: &TriggerPlan) -> Request {
        let mut headers = HeaderMap::new();
        let body = match plan.policy.format {
            DeliveryFormat::Json => encode_structured(event, &mut headers),
            DeliveryFormat::Binary => encode_binary(event, &mut headers),
        };
        headers.insert(PREFER, HeaderValue::from_static("reply"));
        if let Some(ns) = &plan.namespace_header {
            headers.insert(KN_NAMESPACE, ns.clone());
        }
        client::reserve_host(&mut headers);
        for (name, value) in &envelope.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(n, v);
            }
        }
        Request { headers, body }
    }
}

/// Sends with retries. With `reply` set, a reply event in the response re-enters
/// the broker (and a body that is not a CloudEvent fails the attempt).
async fn send(
    request: &Request,
    url: &reqwest::Url,
    policy: &DeliveryPolicy,
    ctx: &Ctx,
    reply: Option<(&Envelope, &TriggerPlan)>,
) -> Result<(), Failure> {
    let timeout = policy.timeout.unwrap_or(ctx.default_timeout);
    let resolved = ctx.resolved.get(url, &ctx.client, &ctx.outbound);
    let target = resolved.target.as_ref();
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        ctx.counters.attempts.inc();
        let (outcome, failure, retry_after) =
            match attempt_once(ctx, request, target, timeout).await {
                Ok(resp) if (200..300).contains(&resp.status) => {
                    let Some((envelope, plan)) = reply else {
                        return Ok(());
                    };
                    match handle_reply(resp, envelope, plan, ctx).await {
                        Ok(()) => return Ok(()),
                        // A failed reply counts as a failed attempt; it is retried like
                        // a transport error and reported with the subscriber's status.
                        Err(f) => (AttemptOutcome::Transport, f, None),
                    }
                }
                Ok(resp) => {
                    let retry_after = resp
                        .headers
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(cebus_triggers::parse_retry_after);
                    (
                        AttemptOutcome::Status(resp.status),
                        Failure {
                            status: Some(resp.status),
                            body: resp.body,
                        },
                        retry_after,
                    )
                }
                Err(outcome) => (outcome, Failure::default(), None),
            };
        tracing::debug!(%url, attempt, ?outcome, "delivery attempt failed");
        match cebus_triggers::next_delay(
            policy,
            attempt,
            &outcome,
            retry_after.as_ref(),
            SystemTime::now(),
        ) {
            Some(delay) => tokio::time::sleep(delay).await,
            None => return Err(failure),
        }
    }
}

async fn attempt_once(
    ctx: &Ctx,
    request: &Request,
    target: Option<&(Target, Arc<Semaphore>)>,
    timeout: Duration,
) -> Result<Response, AttemptOutcome> {
    let work = async {
        let (target, permits) = target.ok_or(AttemptOutcome::Transport)?;
        // Held for the request and its body, not for backoff waits. The permit
        // wait counts against the attempt's timeout, so a saturated host shows up
        // as timeouts, never as an unbounded wait.
        let _permit = permits
            .acquire()
            .await
            .map_err(|_| AttemptOutcome::Transport)?;
        // Read at most what a reply may hold; the rest is not needed.
        let limit = || ctx.settings.load().max_event_size;
        ctx.client
            .exchange(target, &request.headers, &request.body, limit)
            .await
    };
    // The outer timeout bounds the whole attempt, body included.
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(AttemptOutcome::Timeout))
}

async fn handle_reply(
    resp: Response,
    envelope: &Envelope,
    plan: &TriggerPlan,
    ctx: &Ctx,
) -> Result<(), Failure> {
    let has_ce = resp.headers.contains_key("ce-specversion")
        || resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.to_ascii_lowercase()
                    .starts_with("application/cloudevents")
            });
    let failure = |resp: &Response| Failure {
        status: Some(resp.status),
        body: resp.body.clone(),
    };
    match cebus_triggers::classify_reply(resp.status, !resp.body.is_empty() || has_ce, has_ce) {
        ReplyDecision::Done => Ok(()),
        ReplyDecision::Invalid if plan.ignore_invalid_reply => Ok(()),
        ReplyDecision::Invalid => {
            tracing::warn!(trigger = %plan.name, status = resp.status, "subscriber replied with a body that is not a CloudEvent");
            Err(failure(&resp))
        }
        ReplyDecision::Reply => {
            let event = match decode(&resp.headers, resp.body.clone()) {
                Ok(Decoded::Single(e)) => e,
                Ok(Decoded::Batch(_)) | Err(_) => {
                    if plan.ignore_invalid_reply {
                        return Ok(());
                    }
                    tracing::warn!(trigger = %plan.name, "subscriber replied with an invalid CloudEvent");
                    return Err(failure(&resp));
                }
            };
            if let Err(e) = cebus_events::validate(&event) {
                if plan.ignore_invalid_reply {
                    return Ok(());
                }
                tracing::warn!(trigger = %plan.name, error = %e, "subscriber replied with an invalid CloudEvent");
                return Err(failure(&resp));
            }
            let ttl = Some(envelope.ttl.to_string());
            let reply = Incoming {
                event,
                ttl,
                headers: envelope.headers.clone(),
            };
            // The port boxes the broker's ingest: a reply is rare, and its
            // ingest inline would grow every delivery's future (and the copies
            // of it a spawn makes).
            match ctx
                .port
                .send(&plan.namespace, &ctx.broker, vec![reply])
                .await
            {
                Ok(()) => {
                    ctx.counters.replies.inc();
                    Ok(())
                }
                Err(IngestError::Ttl { message, .. }) => {
                    // Knative drops a reply whose hop budget is spent: this ends loops.
                    tracing::warn!(trigger = %plan.name, %message, "reply dropped: knativebrokerttl exhausted");
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(trigger = %plan.name, error = %e, "reply could not re-enter the broker");
                    Err(Failure {
                        status: Some(resp.status),
                        body: resp.body,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_url_is_resolved_once_and_a_new_one_again() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (client, limits) = (Client::new(4), HostLimits::new(4));
        let cache = ResolvedCache::default();
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let a = cache.get(&url("http://sink:8080/a"), &client, &limits);
        let again = cache.get(&url("http://sink:8080/a"), &client, &limits);
        assert!(Arc::ptr_eq(&a, &again), "the same URL comes from the cache");
        let b = cache.get(&url("http://sink:8080/b"), &client, &limits);
        assert!(!Arc::ptr_eq(&a, &b), "another URL is resolved anew");
        let (ta, pa) = a.target.as_ref().expect("a host and port");
        let (tb, pb) = b.target.as_ref().expect("a host and port");
        assert_eq!(ta.host_key, "sink:8080");
        assert_eq!(tb.host_key, "sink:8080");
        assert!(Arc::ptr_eq(pa, pb), "one host, one set of permits");
        let other = cache.get(&url("http://other/"), &client, &limits);
        let (to, po) = other.target.as_ref().expect("a host and port");
        assert_eq!(to.host_key, "other:80");
        assert!(!Arc::ptr_eq(pa, po), "another host has its own permits");
    }
}
