//! Event sources that run beside the brokers from the same YAML: PingSource
//! (cron), WebhookSource (HTTP POST → CloudEvent), ContainerSource (a local
//! process with `K_SINK`) and KafkaSource (a consumer group, records → events). [`Sources`] plugs into the server as a
//! [`cebus_broker::Extension`]: it checks each config, serves the webhook routes
//! on the main listener, and applies changes source by source.

pub mod auth;
pub mod clock;
pub mod container;
pub mod kafka;
pub mod ping;
pub mod replay;
pub mod schedule;
pub mod sink;
pub mod webhook;

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use cebus_api::{
    ConfigError, ContainerSource, KafkaSource, Located, MAX_EVENT_SIZE_ANNOTATION,
    PING_CATCH_UP_ANNOTATION, PingSource, Resource, SecretKeySelector, WebhookSource,
};
use cebus_broker::registry::Registry;
use cebus_broker::{Extension, Plan};
use http::HeaderName;
use tokio_util::sync::CancellationToken;

pub use clock::Clock;
pub use container::ContainerPlan;
pub use kafka::KafkaPlan;
pub use ping::PingPlan;
pub use schedule::{Schedule, ScheduleError};
pub use sink::SinkTarget;
pub use webhook::WebhookPlan;

use crate::auth::{AuthPlan, GITHUB_SIGNATURE_HEADER, HmacCheck, TimestampedCheck};
use crate::container::ProcessHandle;
use crate::sink::Sender;
use crate::webhook::{EventType, WebhookTable};

/// Ingress base used when a plan carries no options (`cebus validate`).
const DEFAULT_INGRESS_BASE: &str = "http://127.0.0.1:8080";

/// How sources run.
#[derive(Debug, Clone, Default)]
pub struct SourcesOptions {
    /// Where PingSources with catch-up keep their last tick; catch-up is a config
    /// error without it.
    pub state_dir: Option<PathBuf>,
    /// Wall time for schedules.
    pub clock: Clock,
}

/// One source of the config, ready to run.
#[derive(Debug, Clone)]
pub enum SourcePlan {
    /// A PingSource.
    Ping(Arc<PingPlan>),
    /// A ContainerSource.
    Container(Arc<ContainerPlan>),
    /// A WebhookSource.
    Webhook(Arc<WebhookPlan>),
    /// A KafkaSource.
    Kafka(Arc<KafkaPlan>),
}

/// A planned source with what identifies its behaviour.
#[derive(Debug, Clone)]
pub struct Planned {
    /// `Kind namespace/name`.
    pub label: String,
    /// Hash of everything the running source derives from (spec, annotations,
    /// resolved sink and secret values): equal means "leave it running".
    pub fingerprint: u64,
    /// Where its events go.
    pub sink: SinkTarget,
    /// The plan.
    pub plan: SourcePlan,
}

fn object_error<T: Resource>(
    loc: &Located<T>,
    field: &str,
    message: impl Into<String>,
) -> ConfigError {
    ConfigError::file(&loc.file, message)
        .with_doc(loc.doc)
        .with_object(Some(loc.label()))
        .with_field(field)
}

fn fingerprint<T: Resource + serde::Serialize>(loc: &Located<T>, extra: &[&[u8]]) -> u64 {
    let mut h = DefaultHasher::new();
    T::KIND.hash(&mut h);
    serde_json::to_string(&loc.object)
        .unwrap_or_default()
        .hash(&mut h);
    for e in extra {
        e.hash(&mut h);
    }
    h.finish()
}

/// Secret bytes of `r` in `namespace`, or an error at `field`.
fn secret_value<T: Resource>(
    plan: &Plan,
    loc: &Located<T>,
    r: &SecretKeySelector,
    field: &str,
) -> Result<Vec<u8>, ConfigError> {
    let ns = loc.object.metadata().namespace();
    plan.config
        .secret(ns, &r.name)
        .and_then(|s| s.object.value(&r.key))
        .ok_or_else(|| {
            object_error(
                loc,
                field,
                format!("Secret {ns}/{} has no usable key {:?}", r.name, r.key),
            )
        })
}

fn resolve_sink<T: Resource>(
    loc: &Located<T>,
    sink: &cebus_api::Destination,
    base: &str,
) -> Result<SinkTarget, ConfigError> {
    SinkTarget::resolve(sink, loc.object.metadata().namespace(), base)
        .map_err(|e| object_error(loc, "spec.sink", e))
}

/// The value of `r`, or `None` with its error recorded.
fn keep<T>(errors: &mut Vec<ConfigError>, r: Result<T, ConfigError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

fn header_name<T: Resource>(
    loc: &Located<T>,
    field: &str,
    name: &str,
) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| object_error(loc, field, format!("{name:?} is not an HTTP header name")))
}

/// Turns every source of a checked plan into what runs; every problem found.
pub fn plan_sources(plan: &Plan, opts: &SourcesOptions) -> Result<Vec<Planned>, Vec<ConfigError>> {
    let base = plan
        .options
        .as_ref()
        .map_or(DEFAULT_INGRESS_BASE, |o| o.ingress_base.as_str());
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for loc in &plan.config.ping_sources {
        match plan_ping(loc, base, opts) {
            Ok(p) => out.push(p),
            Err(e) => errors.extend(e),
        }
    }
    for loc in &plan.config.container_sources {
        match plan_container(plan, loc, base) {
            Ok(p) => out.push(p),
            Err(e) => errors.extend(e),
        }
    }
    for loc in &plan.config.webhook_sources {
        match plan_webhook(plan, loc, base) {
            Ok(p) => out.push(p),
            Err(e) => errors.extend(e),
        }
    }
    for loc in &plan.config.kafka_sources {
        match plan_kafka(loc, base) {
            Ok(p) => out.push(p),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn plan_ping(
    loc: &Located<PingSource>,
    base: &str,
    opts: &SourcesOptions,
) -> Result<Planned, Vec<ConfigError>> {
    let p = &loc.object;
    let spec = &p.spec;
    let mut errors = Vec::new();
    let schedule = Schedule::parse(spec.schedule.as_deref(), spec.timezone.as_deref())
        .map_err(|e| errors.push(object_error(loc, e.field(), e.to_string())))
        .ok();
    let catch_up = p
        .metadata
        .annotations
        .get(PING_CATCH_UP_ANNOTATION)
        .and_then(|v| v.parse::<u32>().ok());
    if catch_up.is_some() && opts.state_dir.is_none() {
        errors.push(object_error(
            loc,
            &format!("metadata.annotations[\"{PING_CATCH_UP_ANNOTATION}\"]"),
            "catch-up needs a state directory to remember the last tick; start cebus with --state-dir",
        ));
    }
    let data = match (&spec.data, &spec.data_base64) {
        (Some(d), _) => Some(Bytes::from(d.clone().into_bytes())),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .ok()
            .map(Bytes::from),
        (None, None) => None,
    };
    let sink = resolve_sink(loc, &spec.sink, base)
        .map_err(|e| errors.push(e))
        .ok();
    let (Some(schedule), Some(sink)) = (schedule, sink) else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let sink_text = sink.url(base);
    Ok(Planned {
        label: loc.label(),
        fingerprint: fingerprint(loc, &[sink_text.as_bytes()]),
        sink: sink.clone(),
        plan: SourcePlan::Ping(Arc::new(PingPlan {
            namespace: p.metadata.namespace().to_owned(),
            name: p.metadata.name.clone(),
            schedule,
            content_type: spec.content_type.clone(),
            data,
            extensions: spec.ce_overrides.clone().unwrap_or_default().extensions,
            catch_up,
            sink,
        })),
    })
}

fn plan_container(
    plan: &Plan,
    loc: &Located<ContainerSource>,
    base: &str,
) -> Result<Planned, Vec<ConfigError>> {
    let c = &loc.object;
    let mut errors = Vec::new();
    let field = "spec.template.spec.containers[0]";
    let Some(container) = c.spec.template.spec.containers.first() else {
        return Err(vec![object_error(
            loc,
            "spec.template.spec.containers",
            "one container is required",
        )]);
    };
    let Some((program, first_args)) = container.command.split_first() else {
        return Err(vec![object_error(
            loc,
            &format!("{field}.command"),
            "command is required: cebus runs the container's command as a local process \
             (the image is not pulled)",
        )]);
    };
    let mut env = Vec::new();
    for (i, var) in container.env.iter().enumerate() {
        let value = match (
            &var.value,
            var.value_from
                .as_ref()
                .and_then(|f| f.secret_key_ref.as_ref()),
        ) {
            (Some(v), _) => v.clone(),
            (None, Some(r)) => {
                let at = format!("{field}.env[{i}].valueFrom.secretKeyRef");
                match secret_value(plan, loc, r, &at).and_then(|v| {
                    String::from_utf8(v)
                        .map_err(|_| object_error(loc, &at, "the secret value is not UTF-8"))
                }) {
                    Ok(v) => v,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                }
            }
            (None, None) => String::new(),
        };
        env.push((var.name.clone(), value));
    }
    let sink = resolve_sink(loc, &c.spec.sink, base).map_err(|e| vec![e])?;
    if !errors.is_empty() {
        return Err(errors);
    }
    let env = ContainerPlan::environment(
        env,
        &sink.url(base),
        c.spec.ce_overrides.as_ref().map(|o| &o.extensions),
    );
    let env_text = serde_json::to_string(&env).unwrap_or_default();
    let mut args: Vec<String> = first_args.to_vec();
    args.extend(container.args.iter().cloned());
    Ok(Planned {
        label: loc.label(),
        fingerprint: fingerprint(loc, &[env_text.as_bytes()]),
        sink,
        plan: SourcePlan::Container(Arc::new(ContainerPlan {
            namespace: c.metadata.namespace().to_owned(),
            name: c.metadata.name.clone(),
            program: program.clone(),
            args,
            env,
            working_dir: container.working_dir.clone(),
        })),
    })
}

fn plan_webhook(
    plan: &Plan,
    loc: &Located<WebhookSource>,
    base: &str,
) -> Result<Planned, Vec<ConfigError>> {
    let w = &loc.object;
    let spec = &w.spec;
    let ns = w.metadata.namespace();
    let mut errors = Vec::new();
    let event_type = match (&spec.event_type, &spec.event_type_from_header) {
        (Some(t), _) => Some(EventType::Fixed(t.clone())),
        (None, Some(from)) => keep(
            &mut errors,
            header_name(loc, "spec.eventTypeFromHeader.header", &from.header),
        )
        .map(|header| EventType::FromHeader {
            header,
            prefix: from.prefix.clone().unwrap_or_default(),
        }),
        (None, None) => keep(
            &mut errors,
            Err(object_error(loc, "spec.eventType", "eventType is required")),
        ),
    };
    let id_header = spec
        .id_from_header
        .as_ref()
        .and_then(|h| keep(&mut errors, header_name(loc, "spec.idFromHeader", h)));
    let mut extension_headers = Vec::new();
    for (ext, h) in &spec.extensions_from_headers {
        let field = format!("spec.extensionsFromHeaders.{ext}");
        if let Some(h) = keep(&mut errors, header_name(loc, &field, h)) {
            extension_headers.push((ext.clone(), h));
        }
    }
    let mut auth = AuthPlan::default();
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    if let Some(a) = &spec.auth {
        if let Some(h) = &a.hmac {
            let algorithm = h.algorithm.unwrap_or_default();
            let header = keep(
                &mut errors,
                header_name(
                    loc,
                    "spec.auth.hmac.header",
                    h.header.as_deref().unwrap_or(GITHUB_SIGNATURE_HEADER),
                ),
            );
            let key = keep(
                &mut errors,
                secret_value(plan, loc, &h.secret_key_ref, "spec.auth.hmac.secretKeyRef"),
            );
            if let (Some(header), Some(key)) = (header, key) {
                secrets.push(key.clone());
                auth.hmac = Some(HmacCheck {
                    header,
                    algorithm,
                    prefix: h
                        .prefix
                        .clone()
                        .unwrap_or_else(|| format!("{}=", algorithm.as_str())),
                    encoding: h.encoding.unwrap_or_default(),
                    key,
                });
            }
        }
        if let Some(b) = &a.basic
            && let Some(pw) = keep(
                &mut errors,
                secret_value(
                    plan,
                    loc,
                    &b.password_secret_key_ref,
                    "spec.auth.basic.passwordSecretKeyRef",
                ),
            )
        {
            secrets.push(pw.clone());
            auth.basic = Some((b.username.clone(), pw));
        }
        for (field, t, check) in [
            ("stripe", &a.stripe, &mut auth.stripe),
            ("slack", &a.slack, &mut auth.slack),
        ] {
            let Some(t) = t else { continue };
            let at = format!("spec.auth.{field}");
            let key = secret_value(plan, loc, &t.secret_key_ref, &format!("{at}.secretKeyRef"));
            if let Some(key) = keep(&mut errors, key) {
                secrets.push(key.clone());
                *check = keep(
                    &mut errors,
                    TimestampedCheck::try_new(key, t.tolerance.as_deref())
                        .map_err(|m| object_error(loc, &format!("{at}.tolerance"), m)),
                );
            }
        }
        if let Some(b) = &a.bearer
            && let Some(token) = keep(
                &mut errors,
                secret_value(
                    plan,
                    loc,
                    &b.token_secret_key_ref,
                    "spec.auth.bearer.tokenSecretKeyRef",
                ),
            )
        {
            secrets.push(token.clone());
            auth.bearer = Some(token);
        }
    }
    let dedup = keep(
        &mut errors,
        replay::DedupPlan::from_spec(spec.dedup.as_ref())
            .map_err(|(field, m)| object_error(loc, &field, m)),
    )
    .flatten();
    let sink = keep(&mut errors, resolve_sink(loc, &spec.sink, base));
    let max_body = match w.metadata.annotations.get(MAX_EVENT_SIZE_ANNOTATION) {
        Some(v) => keep(
            &mut errors,
            v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                object_error(
                    loc,
                    &format!("metadata.annotations[\"{MAX_EVENT_SIZE_ANNOTATION}\"]"),
                    format!("{v:?} is not a positive integer (bytes)"),
                )
            }),
        ),
        None => Some(
            match &sink {
                Some(SinkTarget::Broker { namespace, name }) => plan
                    .brokers
                    .get(&format!("{namespace}/{name}"))
                    .map(|b| b.max_event_size),
                _ => None,
            }
            .or(plan.options.as_ref().map(|o| o.max_event_size))
            .unwrap_or(cebus_api::resolve::DEFAULT_MAX_EVENT_SIZE),
        ),
    };
    let (Some(event_type), Some(sink), Some(max_body)) = (event_type, sink, max_body) else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut extra: Vec<&[u8]> = secrets.iter().map(Vec::as_slice).collect();
    let sink_text = sink.url(base);
    extra.push(sink_text.as_bytes());
    Ok(Planned {
        label: loc.label(),
        fingerprint: fingerprint(loc, &extra),
        sink: sink.clone(),
        plan: SourcePlan::Webhook(Arc::new(WebhookPlan {
            namespace: ns.to_owned(),
            name: w.metadata.name.clone(),
            event_type,
            event_source: spec
                .event_source
                .clone()
                .unwrap_or_else(|| webhook::webhook_source_attr(ns, &w.metadata.name)),
            id_header,
            extension_headers,
            extensions: spec.ce_overrides.clone().unwrap_or_default().extensions,
            auth,
            dedup,
            max_body,
            sink,
        })),
    })
}

fn plan_kafka(loc: &Located<KafkaSource>, base: &str) -> Result<Planned, ConfigError> {
    let k = &loc.object;
    let spec = &k.spec;
    let ns = k.metadata.namespace();
    let sink = resolve_sink(loc, &spec.sink, base)?;
    let sink_text = sink.url(base);
    Ok(Planned {
        label: loc.label(),
        fingerprint: fingerprint(loc, &[sink_text.as_bytes()]),
        sink: sink.clone(),
        plan: SourcePlan::Kafka(Arc::new(KafkaPlan {
            namespace: ns.to_owned(),
            name: k.metadata.name.clone(),
            bootstrap_servers: spec
                .bootstrap_servers
                .iter()
                .map(|s| s.trim())
                .collect::<Vec<_>>()
                .join(","),
            topics: spec.topics.clone(),
            group: spec
                .consumer_group
                .clone()
                .unwrap_or_else(|| kafka::default_consumer_group(ns, &k.metadata.name)),
            initial_offset: spec.initial_offset.unwrap_or_default(),
            ordering: spec.ordering.unwrap_or_default(),
            extensions: spec.ce_overrides.clone().unwrap_or_default().extensions,
            sink,
        })),
    })
}

/// One line per source for `cebus validate`: kind, name, resolved sink, and for a
/// PingSource its next `fires` fire times after `now`.
pub fn describe(
    plan: &Plan,
    opts: &SourcesOptions,
    now: jiff::Timestamp,
    fires: usize,
) -> Result<Vec<String>, Vec<ConfigError>> {
    let base = plan
        .options
        .as_ref()
        .map_or(DEFAULT_INGRESS_BASE, |o| o.ingress_base.as_str());
    Ok(plan_sources(plan, opts)?
        .into_iter()
        .map(|p| {
            let sink = match &p.sink {
                SinkTarget::Broker { .. } => format!("{} ({})", p.sink, p.sink.url(base)),
                SinkTarget::Url(u) => u.clone(),
            };
            let mut line = format!("{} -> {sink}", p.label);
            match &p.plan {
                SourcePlan::Ping(ping) => {
                    let next: Vec<String> = ping
                        .schedule
                        .upcoming(now, fires)
                        .iter()
                        .map(|z| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
                        .collect();
                    line.push_str(&format!(
                        "\n    schedule {:?} in {}; next: {}",
                        ping.schedule.text(),
                        ping.schedule.zone_name(),
                        next.join(", ")
                    ));
                }
                SourcePlan::Webhook(w) => {
                    line.push_str(&format!(
                        "\n    POST {base}/webhooks/{}/{}",
                        w.namespace, w.name
                    ));
                }
                SourcePlan::Container(c) => {
                    let mut argv = vec![c.program.as_str()];
                    argv.extend(c.args.iter().map(String::as_str));
                    line.push_str(&format!("\n    runs {argv:?}"));
                }
                SourcePlan::Kafka(k) => {
                    line.push_str(&format!(
                        "\n    topics {:?} from {} as group {} (initialOffset {}, {})",
                        k.topics,
                        k.bootstrap_servers,
                        k.group,
                        kafka::offset_name(k.initial_offset),
                        kafka::ordering_name(k.ordering)
                    ));
                }
            }
            line
        })
        .collect())
}

/// A running ping or container source.
struct Running {
    fingerprint: u64,
    cancel: CancellationToken,
    process: Option<Arc<ProcessHandle>>,
}

impl Running {
    fn stop(&self) {
        self.cancel.cancel();
        if let Some(p) = &self.process {
            p.kill();
        }
    }
}

/// The sources extension: give it to [`cebus_broker::ServerOptions::extensions`].
pub struct Sources {
    options: SourcesOptions,
    webhooks: Arc<WebhookTable>,
    running: Mutex<BTreeMap<String, Running>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("options", &self.options)
            .field("webhooks", &self.webhooks.load().len())
            .finish_non_exhaustive()
    }
}

impl Sources {
    /// Sources with `options`; nothing runs until the first [`Extension::apply`].
    pub fn new(options: SourcesOptions) -> Sources {
        Sources {
            options,
            webhooks: Arc::default(),
            running: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Extension for Sources {
    fn check(&self, plan: &Plan) -> Vec<ConfigError> {
        plan_sources(plan, &self.options).err().unwrap_or_default()
    }

    fn routes(&self, registry: Arc<Registry>) -> axum::Router {
        webhook::router(
            self.webhooks.clone(),
            Sender::new(registry.port(), registry.shared()),
        )
    }

    fn apply(&self, plan: &Plan, registry: &Arc<Registry>) {
        let planned = match plan_sources(plan, &self.options) {
            Ok(p) => p,
            Err(errors) => {
                // `check` ran on this plan first, so this is not expected.
                for e in &errors {
                    tracing::error!(error = %e, "sources not applied");
                }
                return;
            }
        };
        let mut hooks = BTreeMap::new();
        let mut running = self.running.lock().expect("sources lock poisoned");
        let wanted: BTreeMap<&str, &Planned> =
            planned.iter().map(|p| (p.label.as_str(), p)).collect();
        running.retain(|label, r| {
            let keep = wanted
                .get(label.as_str())
                .is_some_and(|p| p.fingerprint == r.fingerprint);
            if !keep {
                r.stop();
                if !wanted.contains_key(label.as_str()) {
                    tracing::info!(source = %label, "source removed");
                }
            }
            keep
        });
        let sender = Sender::new(registry.port(), registry.shared());
        for p in &planned {
            let start = |cancel: &CancellationToken| -> Option<Arc<ProcessHandle>> {
                match &p.plan {
                    SourcePlan::Ping(ping) => {
                        let cx = ping::PingContext {
                            output: ping::Output::Sink(sender.clone()),
                            clock: self.options.clock.clone(),
                            state_dir: self.options.state_dir.clone(),
                        };
                        tokio::spawn(ping::run(ping.clone(), cx, cancel.clone()));
                        None
                    }
                    SourcePlan::Container(c) => {
                        let handle = Arc::new(ProcessHandle::default());
                        tokio::spawn(container::supervise(
                            c.clone(),
                            handle.clone(),
                            cancel.clone(),
                        ));
                        Some(handle)
                    }
                    SourcePlan::Kafka(k) => {
                        tokio::spawn(kafka::run(
                            k.clone(),
                            sender.clone(),
                            Arc::new(kafka::KafkaCounters::new(
                                &registry.shared().metrics,
                                &p.label,
                            )),
                            cancel.clone(),
                        ));
                        None
                    }
                    SourcePlan::Webhook(_) => None,
                }
            };
            match &p.plan {
                SourcePlan::Webhook(w) => {
                    hooks.insert(format!("{}/{}", w.namespace, w.name), w.clone());
                }
                _ if running.contains_key(&p.label) => {}
                _ => {
                    let cancel = CancellationToken::new();
                    let process = start(&cancel);
                    tracing::info!(source = %p.label, sink = %p.sink, "source started");
                    running.insert(
                        p.label.clone(),
                        Running {
                            fingerprint: p.fingerprint,
                            cancel,
                            process,
                        },
                    );
                }
            }
        }
        self.webhooks.store(Arc::new(hooks));
    }

    fn stop(&self) {
        self.webhooks.store(Arc::default());
        let mut running = self.running.lock().expect("sources lock poisoned");
        for r in running.values() {
            r.stop();
        }
        running.clear();
    }
}
