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

#[cfg(test)]
impl Ctx {
    /// A context for unit tests: trigger `t` of `team/default`, counted in
    /// `counters`, replies to `port`, a 60 s attempt limit.
    pub(crate) fn for_tests(client: Client, counters: TriggerCounters, port: Port) -> Ctx {
        Ctx {
            client,
            settings: Arc::new(ArcSwap::from_pointee(BrokerSettings {
                max_ttl: 255,
                max_event_size: 1 << 20,
            })),
            port,
            broker: "default".into(),
            counters,
            default_timeout: Duration::from_secs(60),
            outbound: Arc::new(HostLimits::new(4)),
            resolved: Arc::default(),
        }
    }
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
    use crate::metrics::Metrics;
    use crate::port::testing::Recorder;
    use crate::testkit::{self, NOWHERE, linear, settle, trigger, trigger_plan};
    use cebus_api::BackoffPolicy;
    use cebus_channels::ChannelError;
    use cebus_triggers::Filter;

    /// A delivery context for trigger `t` of `team/default`, replies to `port`.
    fn ctx(port: Port) -> Ctx {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let counters = testkit::counters(&Metrics::default(), "t");
        Ctx::for_tests(Client::new(4), counters, port)
    }

    fn envelope() -> Envelope {
        let mut e = Envelope::new(Event::with_required("e1", "/src", "t.type"));
        e.ttl = 7;
        e.headers = vec![("traceparent".into(), "00-abc-def-01".into())];
        e
    }

    /// Attempts made by the delivery of one event to [`NOWHERE`] with `policy`,
    /// sampled right after each of `at` (offsets from the start, ascending);
    /// and the final outcome if the delivery has ended by the last of them.
    async fn attempts_at(
        policy: DeliveryPolicy,
        at: &[Duration],
    ) -> (Vec<u64>, Option<DeliveryOutcome>) {
        let (_recorder, port) = Recorder::port(|| Ok(()));
        let ctx = Arc::new(ctx(port));
        let plan = trigger("t", policy, false);
        let task = tokio::spawn({
            let ctx = ctx.clone();
            async move { deliver(&envelope(), &Encoded::default(), &plan, &ctx).await }
        });
        let start = tokio::time::Instant::now();
        let mut seen = Vec::new();
        for &t in at {
            tokio::time::advance((start + t) - tokio::time::Instant::now()).await;
            settle().await;
            seen.push(ctx.counters.attempts.get());
        }
        let outcome = match task.is_finished() {
            true => Some(task.await.expect("no panic")),
            false => None,
        };
        (seen, outcome)
    }

    #[tokio::test(start_paused = true)]
    async fn retries_wait_the_linear_backoff_before_each_attempt() {
        // retry 3, linear 1 s: attempts at 0, 1, 3 and 6 s, then given up.
        let ms = Duration::from_millis;
        let (seen, outcome) = attempts_at(
            linear(3, ms(1000)),
            &[
                ms(0),
                ms(999),
                ms(1000),
                ms(2999),
                ms(3000),
                ms(5999),
                ms(6000),
            ],
        )
        .await;
        assert_eq!(seen, [1, 1, 2, 2, 3, 3, 4]);
        assert_eq!(outcome, Some(DeliveryOutcome::DroppedNoDls));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_wait_the_exponential_backoff_before_each_attempt() {
        // retry 3, exponential 1 s: attempts at 0, 1, 3 and 7 s.
        let policy = DeliveryPolicy {
            backoff: BackoffPolicy::Exponential,
            ..linear(3, Duration::from_secs(1))
        };
        let s = Duration::from_secs;
        let (seen, outcome) = attempts_at(policy, &[s(0), s(1), s(2), s(3), s(6), s(7)]).await;
        assert_eq!(seen, [1, 2, 2, 3, 3, 4]);
        assert_eq!(outcome, Some(DeliveryOutcome::DroppedNoDls));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_dead_letter_sink_gets_the_same_retries_then_the_event_is_dropped() {
        let (_recorder, port) = Recorder::port(|| Ok(()));
        let ctx = ctx(port);
        let mut plan = trigger_plan(
            "t",
            linear(1, Duration::from_secs(1)),
            false,
            Filter::All(Vec::new()),
        );
        plan.dead_letter_sink = Some(NOWHERE.into());
        plan.dead_letter_url = Some(reqwest::Url::parse(NOWHERE).unwrap());
        // Under the paused clock the backoffs pass as soon as nothing else runs.
        let outcome = deliver(&envelope(), &Encoded::default(), &plan, &ctx).await;
        assert_eq!(outcome, DeliveryOutcome::DroppedDlsFailed);
        assert_eq!(
            ctx.counters.attempts.get(),
            4,
            "two to the subscriber, two to the sink"
        );
    }

    /// A subscriber's 200 answer carrying `body` as a structured CloudEvent.
    fn structured(body: &str) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents+json"),
        );
        Response {
            status: 200,
            headers,
            body: Bytes::from(body.to_owned()),
        }
    }

    const REPLY: &str = r#"{"specversion":"1.0","id":"r1","source":"/sub","type":"reply"}"#;

    #[tokio::test]
    async fn a_reply_enters_the_triggers_broker_through_the_port() {
        let (recorder, port) = Recorder::port(|| Ok(()));
        let ctx = ctx(port);
        let plan = trigger("t", DeliveryPolicy::default(), false);
        handle_reply(structured(REPLY), &envelope(), &plan, &ctx)
            .await
            .expect("reply stored");
        let sent = recorder.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, "team/default");
        let reply = &sent[0].events[0];
        assert_eq!(reply.event.id(), "r1");
        assert_eq!(reply.ttl.as_deref(), Some("7"), "the hop budget is carried");
        assert_eq!(reply.headers, envelope().headers, "headers are forwarded");
        assert_eq!(ctx.counters.replies.get(), 1);
    }

    #[tokio::test]
    async fn a_reply_whose_hop_budget_is_spent_is_dropped_not_retried() {
        let (recorder, port) = Recorder::port(|| {
            Err(IngestError::Ttl {
                index: 0,
                message: "exhausted".into(),
            })
        });
        let ctx = ctx(port);
        let plan = trigger("t", DeliveryPolicy::default(), false);
        let r = handle_reply(structured(REPLY), &envelope(), &plan, &ctx).await;
        assert!(r.is_ok(), "the delivery is done");
        assert_eq!(recorder.sent.lock().unwrap().len(), 1);
        assert_eq!(ctx.counters.replies.get(), 0, "not counted as a reply");
    }

    #[tokio::test]
    async fn a_reply_the_broker_refuses_fails_the_attempt_with_the_subscribers_status() {
        for answer in [
            (|| Err(ChannelError::Closed.into())) as fn() -> Result<(), IngestError>,
            || {
                Err(IngestError::NotRunning {
                    namespace: "team".into(),
                    name: "default".into(),
                })
            },
        ] {
            let (_recorder, port) = Recorder::port(answer);
            let ctx = ctx(port);
            let plan = trigger("t", DeliveryPolicy::default(), false);
            let failure = handle_reply(structured(REPLY), &envelope(), &plan, &ctx)
                .await
                .expect_err("the attempt fails");
            assert_eq!(failure.status, Some(200));
            assert_eq!(failure.body, REPLY.as_bytes());
        }
    }

    #[tokio::test]
    async fn a_body_that_is_not_a_cloudevent_fails_unless_the_trigger_opts_out() {
        let (recorder, port) = Recorder::port(|| Ok(()));
        let ctx = ctx(port);
        let not_ce = || Response {
            status: 200,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"hello"),
        };
        let mut plan = trigger_plan(
            "t",
            DeliveryPolicy::default(),
            false,
            Filter::All(Vec::new()),
        );
        assert!(
            handle_reply(not_ce(), &envelope(), &plan, &ctx)
                .await
                .is_err()
        );
        plan.ignore_invalid_reply = true;
        assert!(
            handle_reply(not_ce(), &envelope(), &plan, &ctx)
                .await
                .is_ok()
        );
        assert!(
            recorder.sent.lock().unwrap().is_empty(),
            "nothing re-entered"
        );
    }

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
