//! Semantic checks on a loaded [`Config`]: names, references between objects,
//! filters, delivery and broker annotations. Every error is collected.

use std::collections::HashMap;
use std::path::Path;

use crate::channel_template::{is_channel_based_broker, parse_channel_template};
use crate::config::{Config, Located};
use crate::duration::parse_iso8601;
use crate::error::{ConfigError, FieldPath, object_label};
use crate::kafka::{
    DELIVERY_ORDER_ANNOTATION, KAFKA_BROKER_CLASS, parse_delivery_order, parse_kafka_config,
};
use crate::nats::{NATS_BROKER_CLASS, parse_nats_config};
use crate::resolve::{has_scheme, is_absolute_http};
use crate::types::{
    BROKER_CLASS_ANNOTATION, BROKER_TTL_ANNOTATION, Broker, CloudEventOverrides, ContainerSource,
    DEFAULT_BROKER_CLASS, DeliverySpec, Destination, EVENTING_V1, IGNORE_INVALID_REPLY_ANNOTATION,
    MAX_EVENT_SIZE_ANNOTATION, ObjectMeta, PING_CATCH_UP_ANNOTATION, PingSource, Resource, Secret,
    SecretKeySelector, SubscriptionsApiFilter, Trigger, WebhookSource,
};

#[path = "validate_kafka_source.rs"]
mod kafka_source;

/// The message for an empty `cesql` filter. Its syntax is checked when the
/// trigger's filter is compiled (`cebus_triggers::cesql`), with the position.
pub const CESQL_EMPTY: &str =
    "cesql must not be empty; write an expression such as \"type = 'com.example.created'\"";

/// Checks the whole config; returns every problem found (empty when valid).
pub fn validate(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let objects = config.brokers.len()
        + config.triggers.len()
        + config.config_maps.len()
        + config.secrets.len()
        + config.ping_sources.len()
        + config.container_sources.len()
        + config.webhook_sources.len()
        + config.kafka_sources.len();
    let mut seen = HashMap::with_capacity(objects);
    let nats_maps = nats_config_maps(config);
    let kafka_maps = config_maps_of(config, is_kafka_broker);
    for b in &config.brokers {
        let mut cx = Cx::new(b, &mut errors);
        cx.metadata(b.object.metadata(), false);
        cx.duplicate(&mut seen, b);
        cx.broker(&b.object, config);
    }
    for t in &config.triggers {
        let mut cx = Cx::new(t, &mut errors);
        cx.metadata(t.object.metadata(), false);
        cx.duplicate(&mut seen, t);
        cx.trigger(&t.object, config);
    }
    for c in &config.config_maps {
        let mut cx = Cx::new(c, &mut errors);
        cx.metadata(c.object.metadata(), true);
        cx.duplicate(&mut seen, c);
        let ns = c.object.metadata.namespace();
        if nats_maps.contains(&(ns, c.object.metadata.name.as_str()))
            && let Err(problems) = parse_nats_config(&c.object, ns, config)
        {
            for (field, message) in problems {
                cx.err(field, message);
            }
        }
        if kafka_maps.contains(&(ns, c.object.metadata.name.as_str()))
            && let Err(problems) = parse_kafka_config(&c.object)
        {
            for (field, message) in problems {
                cx.err(field, message);
            }
        }
    }
    channel_templates(config, &mut errors);
    for s in &config.secrets {
        let mut cx = Cx::new(s, &mut errors);
        cx.metadata(s.object.metadata(), true);
        cx.duplicate(&mut seen, s);
        cx.secret(&s.object);
    }
    for p in &config.ping_sources {
        let mut cx = Cx::new(p, &mut errors);
        cx.metadata(p.object.metadata(), false);
        cx.duplicate(&mut seen, p);
        cx.ping_source(&p.object, config);
    }
    for c in &config.container_sources {
        let mut cx = Cx::new(c, &mut errors);
        cx.metadata(c.object.metadata(), false);
        cx.duplicate(&mut seen, c);
        cx.container_source(&c.object, config);
    }
    for w in &config.webhook_sources {
        let mut cx = Cx::new(w, &mut errors);
        cx.metadata(w.object.metadata(), false);
        cx.duplicate(&mut seen, w);
        cx.webhook_source(&w.object, config);
    }
    kafka_source::validate(config, &mut seen, &mut errors);
    errors
}

/// Checks the channel template of every ConfigMap an `MTChannelBasedBroker`
/// names, once per ConfigMap; a problem in a ConfigMap of `knative-eventing`
/// that several templates share is reported once.
fn channel_templates(config: &Config, errors: &mut Vec<ConfigError>) {
    let mut maps = config_maps_of(config, is_channel_based_broker);
    maps.sort_unstable();
    maps.dedup();
    for (ns, name) in maps {
        let Some(cm) = config.config_map(ns, name) else {
            continue; // reported at the broker's spec.config
        };
        if let Err(problems) = parse_channel_template(cm, config) {
            for e in problems {
                if !errors.contains(&e) {
                    errors.push(e);
                }
            }
        }
    }
}

/// The ConfigMaps (namespace, name) that configure a `NatsJetStreamBroker`.
fn nats_config_maps(config: &Config) -> Vec<(&str, &str)> {
    config_maps_of(config, is_nats_broker)
}

/// The ConfigMaps (namespace, name) named by `spec.config` of brokers of a class.
fn config_maps_of(config: &Config, class: fn(&Broker) -> bool) -> Vec<(&str, &str)> {
    config
        .brokers
        .iter()
        .filter(|b| class(&b.object))
        .filter_map(|b| {
            let r = b.object.spec.config.as_ref()?;
            let ns = r
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(b.object.metadata.namespace());
            Some((ns, r.name.as_str()))
        })
        .collect()
}

/// Whether `b` is of class `Kafka`.
pub fn is_kafka_broker(b: &Broker) -> bool {
    b.metadata
        .annotations
        .get(BROKER_CLASS_ANNOTATION)
        .is_some_and(|c| c == KAFKA_BROKER_CLASS)
}

/// Whether `b` is of class `NatsJetStreamBroker`.
pub fn is_nats_broker(b: &Broker) -> bool {
    b.metadata
        .annotations
        .get(BROKER_CLASS_ANNOTATION)
        .is_some_and(|c| c == NATS_BROKER_CLASS)
}

/// Context attributes a source's `ceOverrides` may not replace.
const CORE_ATTRIBUTES: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];

/// Whether `content_type` is JSON (`application/json` or `*/*+json`), by its
/// media type without parameters.
pub fn is_json_media_type(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || media.ends_with("+json")
}

/// An HTTP header name: a non-empty RFC 9110 token.
fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Where errors about the current object go.
struct Cx<'a> {
    file: &'a Path,
    doc: usize,
    /// Kind, namespace and name, for the `Kind ns/name` label (built only for an
    /// error: most objects have none); `None` while the name is empty (the
    /// document number locates it).
    object: Option<(&'static str, &'a str, &'a str)>,
    errors: &'a mut Vec<ConfigError>,
}

/// First definition of each `(kind, namespace, name)`: file and document.
type Seen<'a> = HashMap<(&'static str, &'a str, &'a str), (&'a Path, usize)>;

fn root() -> FieldPath {
    FieldPath::root()
}

impl<'a> Cx<'a> {
    fn new<T: Resource>(o: &'a Located<T>, errors: &'a mut Vec<ConfigError>) -> Self {
        let meta = o.object.metadata();
        let object = (!meta.name.is_empty()).then(|| (T::KIND, meta.namespace(), &*meta.name));
        Cx {
            file: &o.file,
            doc: o.doc,
            object,
            errors,
        }
    }

    fn err(&mut self, field: FieldPath, message: impl Into<String>) {
        let label = self
            .object
            .map(|(kind, namespace, name)| object_label(kind, namespace, name));
        self.errors.push(
            ConfigError::file(self.file, message)
                .with_doc(self.doc)
                .with_object(label)
                .with_field(field),
        );
    }

    fn metadata(&mut self, meta: &ObjectMeta, subdomain: bool) {
        let path = root().key("metadata");
        if meta.name.is_empty() {
            self.err(path.key("name"), "name is required");
        } else if subdomain && !is_dns1123_subdomain(&meta.name) {
            self.err(
                path.key("name"),
                format!(
                    "name {:?} is not a DNS-1123 subdomain (lowercase letters, digits, '-' \
                     and '.', each part starting and ending with a letter or digit)",
                    meta.name
                ),
            );
        } else if !subdomain && !is_dns1123_label(&meta.name) {
            self.err(
                path.key("name"),
                format!(
                    "name {:?} is not a DNS-1123 label (at most 63 lowercase letters, digits \
                     and '-', starting and ending with a letter or digit)",
                    meta.name
                ),
            );
        }
        if let Some(ns) = &meta.namespace
            && !is_dns1123_label(ns)
        {
            self.err(
                path.key("namespace"),
                format!("namespace {ns:?} is not a DNS-1123 label"),
            );
        }
    }

    fn duplicate<'s, T: Resource>(&mut self, seen: &mut Seen<'s>, o: &'s Located<T>) {
        let meta = o.object.metadata();
        if meta.name.is_empty() {
            return;
        }
        let key = (T::KIND, meta.namespace(), meta.name.as_str());
        if let Some((file, doc)) = seen.get(&key) {
            self.err(
                root().key("metadata").key("name"),
                format!(
                    "duplicate {}: first defined in {} (document {}), again in {} (document {})",
                    o.label(),
                    file.display(),
                    doc + 1,
                    o.file.display(),
                    o.doc + 1
                ),
            );
        } else {
            seen.insert(key, (&o.file, o.doc));
        }
    }

    fn broker(&mut self, b: &Broker, config: &Config) {
        let annotations = root().key("metadata").key("annotations");
        let ann = &b.metadata.annotations;
        if let Some(class) = ann.get(BROKER_CLASS_ANNOTATION)
            && class != DEFAULT_BROKER_CLASS
            && class != NATS_BROKER_CLASS
            && class != KAFKA_BROKER_CLASS
        {
            self.err(
                annotations.key(BROKER_CLASS_ANNOTATION),
                format!(
                    "broker class {class} is not supported yet; use {DEFAULT_BROKER_CLASS} \
                     (in memory), {NATS_BROKER_CLASS}, {KAFKA_BROKER_CLASS}, or remove the \
                     annotation"
                ),
            );
        }
        if is_kafka_broker(b) && b.spec.config.is_none() {
            self.err(
                root().key("spec").key("config"),
                format!(
                    "a {KAFKA_BROKER_CLASS} broker needs spec.config naming a v1 ConfigMap with \
                     at least the key bootstrap.servers (e.g. 127.0.0.1:9092)"
                ),
            );
        }
        if is_nats_broker(b) && b.spec.config.is_none() {
            self.err(
                root().key("spec").key("config"),
                format!(
                    "a {NATS_BROKER_CLASS} needs spec.config naming a v1 ConfigMap with at \
                     least the key url (e.g. nats://127.0.0.1:4222)"
                ),
            );
        }
        if let Some(ttl) = ann.get(BROKER_TTL_ANNOTATION)
            && !ttl.parse::<i32>().is_ok_and(|t| t >= 1)
        {
            self.err(
                annotations.key(BROKER_TTL_ANNOTATION),
                format!("{ttl:?} is not an integer from 1 to {}", i32::MAX),
            );
        }
        if let Some(size) = ann.get(MAX_EVENT_SIZE_ANNOTATION)
            && !size.parse::<usize>().is_ok_and(|s| s > 0)
        {
            self.err(
                annotations.key(MAX_EVENT_SIZE_ANNOTATION),
                format!("{size:?} is not a positive integer (bytes)"),
            );
        }
        let spec = root().key("spec");
        if let Some(r) = &b.spec.config {
            let path = spec.key("config");
            let mut ok = true;
            if r.kind != "ConfigMap" {
                ok = false;
                self.err(
                    path.key("kind"),
                    format!("spec.config must reference a ConfigMap, not {:?}", r.kind),
                );
            }
            if let Some(api) = r
                .api_version
                .as_deref()
                .filter(|a| !a.is_empty() && *a != "v1")
            {
                ok = false;
                self.err(
                    path.key("apiVersion"),
                    format!("a ConfigMap's apiVersion is v1, not {api:?}"),
                );
            }
            if r.name.is_empty() {
                ok = false;
                self.err(path.key("name"), "name is required");
            }
            let ns = r
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(b.metadata.namespace());
            if ok && config.config_map(ns, &r.name).is_none() {
                self.err(
                    path,
                    format!(
                        "ConfigMap {ns}/{} is not defined in the configuration",
                        r.name
                    ),
                );
            }
        }
        if let Some(d) = &b.spec.delivery {
            self.delivery(d, spec.key("delivery"));
        }
    }

    fn trigger(&mut self, t: &Trigger, config: &Config) {
        if let Some(v) = t.metadata.annotations.get(DELIVERY_ORDER_ANNOTATION)
            && let Err(e) = parse_delivery_order(Some(v))
        {
            self.err(
                root()
                    .key("metadata")
                    .key("annotations")
                    .key(DELIVERY_ORDER_ANNOTATION),
                e,
            );
        }
        if let Some(v) = t.metadata.annotations.get(IGNORE_INVALID_REPLY_ANNOTATION)
            && !(v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"))
        {
            self.err(
                root()
                    .key("metadata")
                    .key("annotations")
                    .key(IGNORE_INVALID_REPLY_ANNOTATION),
                format!("{v:?} must be \"true\" or \"false\""),
            );
        }
        let spec = root().key("spec");
        let ns = t.metadata.namespace();
        if t.spec.broker_ref.is_some() {
            self.err(
                spec.key("brokerRef"),
                "brokerRef (cross-namespace triggers) is not supported yet; use spec.broker",
            );
        }
        if t.spec.broker.is_empty() {
            self.err(spec.key("broker"), "broker is required");
        } else if config.broker(ns, &t.spec.broker).is_none() {
            self.err(
                spec.key("broker"),
                format!(
                    "Broker {ns}/{} is not defined in the configuration",
                    t.spec.broker
                ),
            );
        }
        self.destination(&t.spec.subscriber, spec.key("subscriber"));
        if let Some(filter) = &t.spec.filter {
            for name in filter.attributes.keys() {
                // Values may be "": the attribute must then exist and be non-empty.
                self.attribute_name(name, || spec.key("filter").key("attributes").key(name));
            }
        }
        let path = spec.key("filters");
        for (i, f) in t.spec.filters.iter().enumerate() {
            self.filter(f, path.index(i));
        }
        if let Some(d) = &t.spec.delivery {
            self.delivery(d, spec.key("delivery"));
        }
    }

    fn filter(&mut self, f: &SubscriptionsApiFilter, path: FieldPath) {
        let dialects: Vec<&str> = [
            ("all", !f.all.is_empty()),
            ("any", !f.any.is_empty()),
            ("not", f.not.is_some()),
            ("exact", !f.exact.is_empty()),
            ("prefix", !f.prefix.is_empty()),
            ("suffix", !f.suffix.is_empty()),
            ("cesql", f.cesql.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        match dialects.len() {
            1 => {}
            0 => self.err(
                path.clone(),
                "a filter must set exactly one of all, any, not, exact, prefix, suffix, cesql",
            ),
            _ => self.err(
                path.clone(),
                format!(
                    "a filter must set exactly one dialect, this one sets {}; combine several \
                     with all",
                    dialects.join(", ")
                ),
            ),
        }
        for (name, list) in [("all", &f.all), ("any", &f.any)] {
            for (i, nested) in list.iter().enumerate() {
                self.filter(nested, path.key(name).index(i));
            }
        }
        if let Some(nested) = &f.not {
            self.filter(nested, path.key("not"));
        }
        for (dialect, map) in [
            ("exact", &f.exact),
            ("prefix", &f.prefix),
            ("suffix", &f.suffix),
        ] {
            if map.is_empty() {
                continue;
            }
            let path = path.key(dialect);
            if map.len() > 1 {
                self.err(
                    path.clone(),
                    format!(
                        "{dialect} must have exactly one attribute, found {}; combine several \
                         with all",
                        map.len()
                    ),
                );
            }
            for (name, value) in map {
                self.attribute_name(name, || path.key(name));
                if value.is_empty() {
                    self.err(
                        path.key(name),
                        format!("{dialect} value for {name:?} must not be empty"),
                    );
                }
            }
        }
        if f.cesql.as_deref().is_some_and(|s| s.trim().is_empty()) {
            self.err(path.key("cesql"), CESQL_EMPTY);
        }
    }

    /// Checks an attribute name; `at` builds its path, only for an error.
    fn attribute_name(&mut self, name: &str, at: impl FnOnce() -> FieldPath) {
        if name.is_empty() {
            self.err(at(), "attribute name must not be empty");
        } else if !is_attribute_name(name) {
            self.err(
                at(),
                format!(
                    "{name:?} is not a CloudEvents attribute name (lowercase letters and \
                     digits only)"
                ),
            );
        }
    }

    fn delivery(&mut self, d: &DeliverySpec, path: FieldPath) {
        if let Some(retry) = d.retry
            && retry < 0
        {
            self.err(
                path.key("retry"),
                format!("retry must be 0 or more, not {retry}"),
            );
        }
        let durations = [
            ("backoffDelay", &d.backoff_delay),
            ("timeout", &d.timeout),
            ("retryAfterMax", &d.retry_after_max),
        ];
        for (field, value) in durations {
            let Some(value) = value else { continue };
            match parse_iso8601(value) {
                Err(e) => self.err(path.key(field), e.to_string()),
                Ok(d) if field == "timeout" && d.is_zero() => {
                    self.err(path.key(field), "timeout must be greater than zero")
                }
                Ok(_) => {}
            }
        }
        if let Some(dls) = &d.dead_letter_sink {
            self.destination(dls, path.key("deadLetterSink"));
        }
    }

    fn destination(&mut self, d: &Destination, path: FieldPath) {
        match (&d.reference, d.uri.as_deref()) {
            (None, None) => self.err(path, "set ref or uri (or both)"),
            (None, Some(uri)) => {
                if !is_absolute_http(uri) {
                    self.err(
                        path.key("uri"),
                        format!(
                            "{uri:?} is not an absolute http or https URL (required when \
                             there is no ref)"
                        ),
                    );
                }
            }
            (Some(r), uri) => {
                let at = path.key("ref");
                if r.kind.is_empty() {
                    self.err(at.key("kind"), "kind is required");
                }
                if r.name.is_empty() {
                    self.err(at.key("name"), "name is required");
                }
                if let Some(uri) = uri
                    && has_scheme(uri)
                {
                    self.err(
                        path.key("uri"),
                        format!(
                            "{uri:?} must be a relative path when ref is set (it is resolved \
                             against the ref's address)"
                        ),
                    );
                }
            }
        }
    }
}

impl Cx<'_> {
    fn secret(&mut self, s: &Secret) {
        use base64::Engine as _;
        for (key, value) in &s.data {
            let at = root().key("data").key(key);
            if !is_secret_key(key) {
                self.err(
                    at.clone(),
                    format!("{key:?} is not a valid Secret key (letters, digits, '-', '_', '.')"),
                );
            }
            if base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .is_err()
            {
                self.err(
                    at,
                    "is not standard base64 (put plain text under stringData instead)",
                );
            }
        }
        for key in s.string_data.keys() {
            if !is_secret_key(key) {
                self.err(
                    root().key("stringData").key(key),
                    format!("{key:?} is not a valid Secret key (letters, digits, '-', '_', '.')"),
                );
            }
        }
    }

    /// A source's `sink`: a valid destination, and a Broker ref must name a Broker
    /// of this config (it resolves to the in-process broker).
    fn sink(&mut self, d: &Destination, path: FieldPath, namespace: &str, config: &Config) {
        self.destination(d, path.clone());
        if let Some(r) = &d.reference
            && r.kind == "Broker"
            && r.api_version.as_deref().is_none_or(|a| a == EVENTING_V1)
            && !r.name.is_empty()
        {
            let ns = r
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(namespace);
            if config.broker(ns, &r.name).is_none() {
                self.err(
                    path.key("ref"),
                    format!("Broker {ns}/{} is not defined in the configuration", r.name),
                );
            }
        }
    }

    fn overrides(&mut self, o: Option<&CloudEventOverrides>, path: FieldPath) {
        let Some(o) = o else { return };
        for name in o.extensions.keys() {
            self.extension_name(name, path.key("extensions").key(name));
        }
    }

    fn extension_name(&mut self, name: &str, at: FieldPath) {
        if CORE_ATTRIBUTES.contains(&name) {
            self.err(
                at,
                format!("{name:?} is a core CloudEvents attribute; only extensions can be set"),
            );
        } else {
            self.attribute_name(name, || at);
        }
    }

    fn secret_ref(&mut self, r: &SecretKeySelector, path: FieldPath, ns: &str, config: &Config) {
        if r.name.is_empty() {
            self.err(path.key("name"), "name is required");
            return;
        }
        if r.key.is_empty() {
            self.err(path.key("key"), "key is required");
            return;
        }
        match config.secret(ns, &r.name) {
            None => self.err(
                path.key("name"),
                format!("Secret {ns}/{} is not defined in the configuration", r.name),
            ),
            Some(s) if !s.object.has_key(&r.key) => self.err(
                path.key("key"),
                format!("Secret {ns}/{} has no key {:?}", r.name, r.key),
            ),
            Some(_) => {}
        }
    }

    fn header_name(&mut self, name: &str, at: FieldPath) {
        if !is_header_name(name) {
            self.err(at, format!("{name:?} is not an HTTP header name"));
        }
    }

    fn ping_source(&mut self, p: &PingSource, config: &Config) {
        use base64::Engine as _;
        let ns = p.metadata.namespace();
        let spec = root().key("spec");
        if let Some(v) = p.metadata.annotations.get(PING_CATCH_UP_ANNOTATION)
            && !v.parse::<u32>().is_ok_and(|n| (1..=1000).contains(&n))
        {
            self.err(
                root()
                    .key("metadata")
                    .key("annotations")
                    .key(PING_CATCH_UP_ANNOTATION),
                format!("{v:?} is not a number of ticks from 1 to 1000"),
            );
        }
        let s = &p.spec;
        if let Some(ct) = &s.content_type
            && !ct.contains('/')
        {
            self.err(
                spec.key("contentType"),
                format!("{ct:?} is not a media type such as application/json"),
            );
        }
        let data = match (&s.data, &s.data_base64) {
            (Some(_), Some(_)) => {
                self.err(spec.clone(), "set data or dataBase64, not both");
                None
            }
            (Some(d), None) => Some((d.as_bytes().to_vec(), "data")),
            (None, Some(b)) => match base64::engine::general_purpose::STANDARD.decode(b.trim()) {
                Ok(bytes) => Some((bytes, "dataBase64")),
                Err(e) => {
                    self.err(
                        spec.key("dataBase64"),
                        format!("is not standard base64: {e}"),
                    );
                    None
                }
            },
            (None, None) => None,
        };
        if let (Some((bytes, field)), Some(ct)) = (data, &s.content_type)
            && is_json_media_type(ct)
            && !matches!(
                serde_json::from_slice::<serde_json::Value>(&bytes),
                Ok(serde_json::Value::Object(_))
            )
        {
            self.err(
                spec.key(field),
                format!("contentType is {ct}, so the data must be a JSON object"),
            );
        }
        self.sink(&s.sink, spec.key("sink"), ns, config);
        self.overrides(s.ce_overrides.as_ref(), spec.key("ceOverrides"));
    }

    fn container_source(&mut self, c: &ContainerSource, config: &Config) {
        let ns = c.metadata.namespace();
        let spec = root().key("spec");
        let containers = spec.key("template").key("spec").key("containers");
        match c.spec.template.spec.containers.len() {
            0 => self.err(containers.clone(), "one container is required"),
            1 => {}
            n => self.err(
                containers.clone(),
                format!("cebus runs one container as a local process; found {n}"),
            ),
        }
        if let Some(first) = c.spec.template.spec.containers.first() {
            let path = containers.index(0);
            for (i, env) in first.env.iter().enumerate() {
                let at = path.key("env").index(i);
                if env.name.is_empty() || env.name.contains('=') {
                    self.err(at.key("name"), "a variable name is required (without '=')");
                }
                match (&env.value, &env.value_from) {
                    (Some(_), Some(_)) => self.err(at, "set value or valueFrom, not both"),
                    (_, Some(from)) => match &from.secret_key_ref {
                        Some(r) => {
                            self.secret_ref(r, at.key("valueFrom").key("secretKeyRef"), ns, config)
                        }
                        None => self.err(
                            at.key("valueFrom"),
                            "only valueFrom.secretKeyRef is supported",
                        ),
                    },
                    _ => {}
                }
            }
        }
        self.sink(&c.spec.sink, spec.key("sink"), ns, config);
        self.overrides(c.spec.ce_overrides.as_ref(), spec.key("ceOverrides"));
    }

    fn webhook_source(&mut self, w: &WebhookSource, config: &Config) {
        let ns = w.metadata.namespace();
        let spec = root().key("spec");
        let s = &w.spec;
        match (&s.event_type, &s.event_type_from_header) {
            (Some(_), Some(_)) => self.err(
                spec.clone(),
                "set eventType or eventTypeFromHeader, not both",
            ),
            (None, None) => self.err(
                spec.key("eventType"),
                "eventType (or eventTypeFromHeader) is required",
            ),
            (Some(t), None) if t.is_empty() => {
                self.err(spec.key("eventType"), "eventType must not be empty")
            }
            (None, Some(from)) => {
                self.header_name(&from.header, spec.key("eventTypeFromHeader").key("header"))
            }
            _ => {}
        }
        if s.event_source.as_deref() == Some("") {
            self.err(spec.key("eventSource"), "eventSource must not be empty");
        }
        if let Some(h) = &s.id_from_header {
            self.header_name(h, spec.key("idFromHeader"));
        }
        for (ext, header) in &s.extensions_from_headers {
            let at = spec.key("extensionsFromHeaders").key(ext);
            self.extension_name(ext, at.clone());
            self.header_name(header, at);
        }
        if let Some(auth) = &s.auth {
            let path = spec.key("auth");
            if let Some(h) = &auth.hmac {
                let at = path.key("hmac");
                if let Some(header) = &h.header {
                    self.header_name(header, at.key("header"));
                }
                self.secret_ref(&h.secret_key_ref, at.key("secretKeyRef"), ns, config);
            }
            if let Some(b) = &auth.basic {
                let at = path.key("basic");
                if b.username.is_empty() || b.username.contains(':') {
                    self.err(at.key("username"), "a user name is required (without ':')");
                }
                self.secret_ref(
                    &b.password_secret_key_ref,
                    at.key("passwordSecretKeyRef"),
                    ns,
                    config,
                );
            }
            if let Some(b) = &auth.bearer {
                self.secret_ref(
                    &b.token_secret_key_ref,
                    path.key("bearer").key("tokenSecretKeyRef"),
                    ns,
                    config,
                );
            }
            for (field, t) in [("stripe", &auth.stripe), ("slack", &auth.slack)] {
                let Some(t) = t else { continue };
                let at = path.key(field);
                self.secret_ref(&t.secret_key_ref, at.key("secretKeyRef"), ns, config);
                if let Some(tolerance) = &t.tolerance {
                    match parse_iso8601(tolerance) {
                        Err(e) => self.err(at.key("tolerance"), e.to_string()),
                        Ok(d) if d.as_secs() == 0 => self.err(
                            at.key("tolerance"),
                            "tolerance must be at least one second (PT1S)",
                        ),
                        Ok(_) => {}
                    }
                }
            }
        }
        if let Some(d) = &s.dedup {
            let at = spec.key("dedup");
            if let Some(h) = &d.header {
                self.header_name(h, at.key("header"));
            }
            if let Some(window) = &d.window
                && let Err(e) = parse_iso8601(window)
            {
                self.err(at.key("window"), e.to_string());
            }
            if let Some(n) = d.max_entries
                && !(1..=MAX_DEDUP_ENTRIES).contains(&n)
            {
                self.err(
                    at.key("maxEntries"),
                    format!("maxEntries must be 1 to {MAX_DEDUP_ENTRIES}, not {n}"),
                );
            }
        }
        self.sink(&s.sink, spec.key("sink"), ns, config);
        self.overrides(s.ce_overrides.as_ref(), spec.key("ceOverrides"));
    }
}

/// Most delivery ids a WebhookSource's `dedup.maxEntries` may ask to remember
/// (bounds its memory to some hundred MiB at the longest ids).
pub const MAX_DEDUP_ENTRIES: u32 = 1_000_000;

/// A Secret key: `[-._a-zA-Z0-9]+`, as Kubernetes checks it.
fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `[a-z0-9]+`, the CloudEvents attribute name syntax.
fn is_attribute_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// RFC 1123 label as Kubernetes checks it: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, ≤ 63.
fn is_dns1123_label(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && bytes.iter().all(|&b| alnum(b) || b == b'-')
}

/// RFC 1123 subdomain: dot-separated labels, ≤ 253 (Kubernetes' object names).
fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::load::{load_sources, load_str};

    /// A broker `default/default` with ConfigMap `default/cm`; every case adds to it.
    const BASE: &str = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n\
                        spec: {config: {apiVersion: v1, kind: ConfigMap, name: cm}}\n---\n\
                        apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {a: b}\n";
    const SUB: &str = "subscriber: {uri: 'http://sink.example/x'}";

    fn trigger(spec: &str) -> String {
        trigger_meta("{name: t}", spec)
    }

    fn trigger_meta(meta: &str, spec: &str) -> String {
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {meta}\nspec: {spec}\n"
        )
    }

    fn broker(meta: &str, spec: &str) -> String {
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {meta}\nspec: {spec}\n"
        )
    }

    fn errors_of(extra: &str) -> Vec<ConfigError> {
        let text = format!("{BASE}---\n{extra}");
        let objects = load_str(Path::new("cfg.yaml"), &text)
            .unwrap_or_else(|e| panic!("load failed: {e:?}\n{text}"));
        validate(&Config::from_objects(objects))
    }

    /// Each case: extra documents, then the one error expected as
    /// (object, field, start of message).
    fn check(cases: &[(String, Option<&str>, &str, &str)]) {
        for (extra, object, field, message) in cases {
            let errors = errors_of(extra);
            assert_eq!(errors.len(), 1, "{extra}\n{errors:#?}");
            let e = &errors[0];
            assert_eq!(e.object.as_deref(), *object, "{extra}\n{e}");
            assert_eq!(e.field.as_deref(), Some(*field), "{extra}\n{e}");
            assert!(e.message.starts_with(message), "{extra}\n{e}");
            assert_eq!(e.file, Path::new("cfg.yaml"));
            assert!(e.doc.is_some());
        }
    }

    fn valid(extra: &str) {
        let errors = errors_of(extra);
        assert!(errors.is_empty(), "{extra}\n{errors:#?}");
    }

    const T: Option<&str> = Some("Trigger default/t");
    const B: Option<&str> = Some("Broker default/b");

    #[test]
    fn trigger_broker_and_subscriber() {
        let s = |spec: &str| trigger(spec);
        check(&[
            (
                s(&format!("{{broker: '', {SUB}}}")),
                T,
                "spec.broker",
                "broker is required",
            ),
            (
                s(&format!("{{broker: nope, {SUB}}}")),
                T,
                "spec.broker",
                "Broker default/nope is not defined",
            ),
            (
                trigger_meta(
                    "{name: t, namespace: team}",
                    &format!("{{broker: default, {SUB}}}"),
                ),
                Some("Trigger team/t"),
                "spec.broker",
                "Broker team/default is not defined",
            ),
            (
                s("{broker: default, subscriber: {}}"),
                T,
                "spec.subscriber",
                "set ref or uri",
            ),
            (
                s("{broker: default, subscriber: {uri: /relative}}"),
                T,
                "spec.subscriber.uri",
                "\"/relative\" is not an absolute http or https URL",
            ),
            (
                s("{broker: default, subscriber: {uri: 'ftp://x/y'}}"),
                T,
                "spec.subscriber.uri",
                "\"ftp://x/y\" is not an absolute",
            ),
            (
                s("{broker: default, subscriber: {ref: {kind: '', name: svc}}}"),
                T,
                "spec.subscriber.ref.kind",
                "kind is required",
            ),
            (
                s("{broker: default, subscriber: {ref: {kind: Service, name: ''}}}"),
                T,
                "spec.subscriber.ref.name",
                "name is required",
            ),
            (
                s(
                    "{broker: default, subscriber: {ref: {kind: Service, name: s}, uri: 'http://a/b'}}",
                ),
                T,
                "spec.subscriber.uri",
                "\"http://a/b\" must be a relative path when ref is set",
            ),
            (
                s(&format!(
                    "{{broker: default, brokerRef: {{kind: Broker, name: x}}, {SUB}}}"
                )),
                T,
                "spec.brokerRef",
                "brokerRef (cross-namespace triggers) is not supported yet",
            ),
            (
                trigger_meta(
                    "{name: t, annotations: {cebus.dev/ignore-invalid-reply: maybe}}",
                    &format!("{{broker: default, {SUB}}}"),
                ),
                T,
                "metadata.annotations[\"cebus.dev/ignore-invalid-reply\"]",
                "\"maybe\" must be \"true\" or \"false\"",
            ),
        ]);
        valid(&s(
            "{broker: default, subscriber: {ref: {apiVersion: v1, kind: Service, name: s}, uri: /x}}",
        ));
        valid(&s(
            "{broker: default, subscriber: {ref: {kind: Service, name: s}}}",
        ));
    }

    #[test]
    fn filters() {
        let f = |filters: &str| trigger(&format!("{{broker: default, {SUB}, filters: {filters}}}"));
        check(&[
            (
                f("[{exact: {type: a}, prefix: {source: b}}]"),
                T,
                "spec.filters[0]",
                "a filter must set exactly one dialect, this one sets exact, prefix",
            ),
            (
                f("[{}]"),
                T,
                "spec.filters[0]",
                "a filter must set exactly one of all, any",
            ),
            (
                f("[{exact: {type: a}}, {exact: {type: a, source: b}}]"),
                T,
                "spec.filters[1].exact",
                "exact must have exactly one attribute, found 2",
            ),
            (
                f("[{exact: {'': a}}]"),
                T,
                "spec.filters[0].exact[\"\"]",
                "attribute name must not be empty",
            ),
            (
                f("[{exact: {type: ''}}]"),
                T,
                "spec.filters[0].exact.type",
                "exact value for \"type\" must not be empty",
            ),
            (
                f("[{prefix: {source: ''}}]"),
                T,
                "spec.filters[0].prefix.source",
                "prefix value for \"source\" must not be empty",
            ),
            (
                f("[{suffix: {Type: a}}]"),
                T,
                "spec.filters[0].suffix.Type",
                "\"Type\" is not a CloudEvents attribute name",
            ),
            (
                f("[{prefix: {my-ext: a}}]"),
                T,
                "spec.filters[0].prefix.my-ext",
                "\"my-ext\" is not a CloudEvents attribute name",
            ),
            (
                f("[{all: [{exact: {type: a}}, {suffix: {type: ''}}]}]"),
                T,
                "spec.filters[0].all[1].suffix.type",
                "suffix value for \"type\" must not be empty",
            ),
            (
                f("[{any: [{exact: {type: a}}, {not: {cesql: ''}}]}]"),
                T,
                "spec.filters[0].any[1].not.cesql",
                CESQL_EMPTY,
            ),
            (
                f("[{cesql: '  '}]"),
                T,
                "spec.filters[0].cesql",
                CESQL_EMPTY,
            ),
            (
                f("[{not: {all: [{}]}}]"),
                T,
                "spec.filters[0].not.all[0]",
                "a filter must set exactly one of",
            ),
        ]);
        valid(&f(
            "[{all: [{exact: {type: a}}, {any: [{prefix: {source: x}}, {not: {suffix: {subject: z}}}]}]}]",
        ));
        valid(&f(
            "[{any: [{exact: {type: a}}, {not: {cesql: \"type = 'a'\"}}]}]",
        ));
    }

    #[test]
    fn legacy_filter_attributes() {
        let f = |attrs: &str| {
            trigger(&format!(
                "{{broker: default, {SUB}, filter: {{attributes: {attrs}}}}}"
            ))
        };
        check(&[
            (
                f("{'': x}"),
                T,
                "spec.filter.attributes[\"\"]",
                "attribute name must not be empty",
            ),
            (
                f("{Type: x}"),
                T,
                "spec.filter.attributes.Type",
                "\"Type\" is not a CloudEvents attribute name",
            ),
        ]);
        // "" means "must exist and be non-empty"; an empty map matches everything.
        valid(&f("{type: '', source: x}"));
        valid(&f("{}"));
    }

    #[test]
    fn delivery() {
        let t = |d: &str| trigger(&format!("{{broker: default, {SUB}, delivery: {d}}}"));
        check(&[
            (
                t("{retry: -1}"),
                T,
                "spec.delivery.retry",
                "retry must be 0 or more, not -1",
            ),
            (
                t("{backoffDelay: P1M}"),
                T,
                "spec.delivery.backoffDelay",
                "\"P1M\": years and months",
            ),
            (
                t("{backoffDelay: 1s}"),
                T,
                "spec.delivery.backoffDelay",
                "\"1s\" is not an ISO-8601",
            ),
            (
                t("{timeout: PT0S}"),
                T,
                "spec.delivery.timeout",
                "timeout must be greater than zero",
            ),
            (
                t("{timeout: PT}"),
                T,
                "spec.delivery.timeout",
                "\"PT\": duration has no components",
            ),
            (
                t("{retryAfterMax: -PT1S}"),
                T,
                "spec.delivery.retryAfterMax",
                "\"-PT1S\": negative",
            ),
            (
                t("{deadLetterSink: {}}"),
                T,
                "spec.delivery.deadLetterSink",
                "set ref or uri",
            ),
            (
                t("{deadLetterSink: {uri: /dead}}"),
                T,
                "spec.delivery.deadLetterSink.uri",
                "\"/dead\" is not an absolute",
            ),
            (
                t("{deadLetterSink: {ref: {kind: Service, name: ''}}}"),
                T,
                "spec.delivery.deadLetterSink.ref.name",
                "name is required",
            ),
            (
                broker("{name: b}", "{delivery: {retry: -2}}"),
                B,
                "spec.delivery.retry",
                "retry must be 0 or more",
            ),
            (
                broker("{name: b}", "{delivery: {deadLetterSink: {uri: 'x'}}}"),
                B,
                "spec.delivery.deadLetterSink.uri",
                "\"x\" is not an absolute",
            ),
        ]);
        valid(&t(
            "{retry: 0, backoffPolicy: linear, backoffDelay: PT0S, timeout: PT0.5S, retryAfterMax: PT1M, \
             deadLetterSink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}, uri: /dls}}",
        ));
    }

    #[test]
    fn kafka_broker_class_its_config_map_and_the_delivery_order() {
        let kafka = |data: &str| {
            format!(
                "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: kcm}}\ndata: {data}\n",
                broker(
                    "{name: b, annotations: {eventing.knative.dev/broker.class: Kafka}}",
                    "{config: {apiVersion: v1, kind: ConfigMap, name: kcm}}"
                )
            )
        };
        const CM: Option<&str> = Some("ConfigMap default/kcm");
        valid(&kafka("{bootstrap.servers: '127.0.0.1:9092'}"));
        valid(&kafka(
            "{bootstrap.servers: 'a:9092,b:9092', default.topic.partitions: '3', \
             default.topic.replication.factor: '2', default.topic: orders}",
        ));
        valid(&trigger_meta(
            "{name: t, annotations: {kafka.eventing.knative.dev/delivery.order: ordered}}",
            &format!("{{broker: default, {SUB}}}"),
        ));
        check(&[
            (
                broker(
                    "{name: b, annotations: {eventing.knative.dev/broker.class: Kafka}}",
                    "{}",
                ),
                B,
                "spec.config",
                "a Kafka broker needs spec.config",
            ),
            (
                kafka("{default.topic.partitions: '2'}"),
                CM,
                "data[\"bootstrap.servers\"]",
                "required",
            ),
            (
                kafka("{bootstrap.servers: 'h:1', default.topic.partitions: '0'}"),
                CM,
                "data[\"default.topic.partitions\"]",
                "\"0\" is not an integer from 1",
            ),
            (
                trigger_meta(
                    "{name: t, annotations: {kafka.eventing.knative.dev/delivery.order: fifo}}",
                    &format!("{{broker: default, {SUB}}}"),
                ),
                T,
                "metadata.annotations[\"kafka.eventing.knative.dev/delivery.order\"]",
                "\"fifo\" is not a delivery order",
            ),
        ]);
    }

    #[test]
    fn nats_broker_class_and_its_config_map() {
        // A NATS broker `b` with ConfigMap `nats` holding `data`.
        let nats = |data: &str| {
            format!(
                "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: nats}}\ndata: {data}\n",
                broker(
                    "{name: b, annotations: {eventing.knative.dev/broker.class: NatsJetStreamBroker}}",
                    "{config: {apiVersion: v1, kind: ConfigMap, name: nats}}"
                )
            )
        };
        const CM: Option<&str> = Some("ConfigMap default/nats");
        valid(&nats("{url: 'nats://127.0.0.1:4222'}"));
        valid(&nats(
            "{url: 'nats://a:4222, nats://b:4222', storage: memory, replicas: '3', maxAge: PT1H, \
             maxBytes: '1000000', maxMessages: '5000', maxMessageSize: '65536', duplicateWindow: PT30S, \
             tokenSecret: natscreds/token}\n---\napiVersion: v1\nkind: Secret\n\
             metadata: {name: natscreds}\nstringData: {token: s3cret}",
        ));
        valid(&nats("{url: 'nats://h:1', user: u, password: p}"));
        check(&[
            (
                broker(
                    "{name: b, annotations: {eventing.knative.dev/broker.class: NatsJetStreamBroker}}",
                    "{}",
                ),
                B,
                "spec.config",
                "a NatsJetStreamBroker needs spec.config",
            ),
            (nats("{storage: file}"), CM, "data.url", "required"),
            (
                nats("{url: 'http://h:4222'}"),
                CM,
                "data.url",
                "\"http://h:4222\": the scheme must be nats://",
            ),
            (
                nats("{url: 'nats://h', storage: disk}"),
                CM,
                "data.storage",
                "\"disk\" is not a storage; use file or memory",
            ),
            (
                nats("{url: 'nats://h', maxAge: 1h}"),
                CM,
                "data.maxAge",
                "\"1h\"",
            ),
            (
                nats("{url: 'nats://h', replicas: '0'}"),
                CM,
                "data.replicas",
                "\"0\" is not an integer from 1 to 5",
            ),
            (
                nats("{url: 'nats://h', maxBytes: lots}"),
                CM,
                "data.maxBytes",
                "\"lots\" is not an integer",
            ),
            (
                nats("{url: 'nats://h', tokenSecret: missing/token}"),
                CM,
                "data.tokenSecret",
                "Secret default/missing is not defined",
            ),
            (
                nats("{url: 'nats://h', token: a, tokenSecret: x/y}"),
                CM,
                "data.tokenSecret",
                "set token or tokenSecret, not both",
            ),
            (
                nats("{url: 'nats://h', user: u}"),
                CM,
                "data.password",
                "user is set",
            ),
            (
                nats("{url: 'nats://h', token: t, nkeySeedSecret: natscreds/seed}"),
                CM,
                "data.nkeySeedSecret",
                "nkeySeedSecret and token are two kinds of NATS authentication",
            ),
            (
                nats("{url: 'tls://h', caSecret: natscreds/ca}"),
                CM,
                "data.caSecret",
                "Secret default/natscreds is not defined",
            ),
            (
                nats("{url: 'nats://h', stream: mine}"),
                CM,
                "data.stream",
                "unknown key \"stream\"",
            ),
        ]);
    }

    #[test]
    fn broker_annotations_and_config() {
        let ann =
            |k: &str, v: &str| broker(&format!("{{name: b, annotations: {{{k}: '{v}'}}}}"), "{}");
        let class = "metadata.annotations[\"eventing.knative.dev/broker.class\"]";
        let ttl = "metadata.annotations[\"cebus.dev/broker-ttl\"]";
        let size = "metadata.annotations[\"cebus.dev/max-event-size\"]";
        check(&[
            (
                ann(BROKER_CLASS_ANNOTATION, "KafkaBroker"),
                B,
                class,
                "broker class KafkaBroker is not supported yet",
            ),
            (
                ann(BROKER_TTL_ANNOTATION, "0"),
                B,
                ttl,
                "\"0\" is not an integer from 1 to 2147483647",
            ),
            (
                ann(BROKER_TTL_ANNOTATION, "-3"),
                B,
                ttl,
                "\"-3\" is not an integer",
            ),
            (
                ann(BROKER_TTL_ANNOTATION, "ten"),
                B,
                ttl,
                "\"ten\" is not an integer",
            ),
            (
                ann(BROKER_TTL_ANNOTATION, "2147483648"),
                B,
                ttl,
                "\"2147483648\" is not an integer",
            ),
            (
                ann(MAX_EVENT_SIZE_ANNOTATION, "0"),
                B,
                size,
                "\"0\" is not a positive integer",
            ),
            (
                ann(MAX_EVENT_SIZE_ANNOTATION, "1MiB"),
                B,
                size,
                "\"1MiB\" is not a positive integer",
            ),
            (
                broker("{name: b}", "{config: {kind: Secret, name: cm}}"),
                B,
                "spec.config.kind",
                "spec.config must reference a ConfigMap, not \"Secret\"",
            ),
            (
                broker(
                    "{name: b}",
                    "{config: {apiVersion: v2, kind: ConfigMap, name: cm}}",
                ),
                B,
                "spec.config.apiVersion",
                "a ConfigMap's apiVersion is v1",
            ),
            (
                broker("{name: b}", "{config: {kind: ConfigMap, name: ''}}"),
                B,
                "spec.config.name",
                "name is required",
            ),
            (
                broker("{name: b}", "{config: {kind: ConfigMap, name: nope}}"),
                B,
                "spec.config",
                "ConfigMap default/nope is not defined",
            ),
            (
                broker(
                    "{name: b}",
                    "{config: {kind: ConfigMap, name: cm, namespace: other}}",
                ),
                B,
                "spec.config",
                "ConfigMap other/cm is not defined",
            ),
        ]);
        valid(&ann(BROKER_CLASS_ANNOTATION, DEFAULT_BROKER_CLASS));
        valid(&ann(BROKER_TTL_ANNOTATION, "2147483647"));
        valid(&ann(MAX_EVENT_SIZE_ANNOTATION, "1048576"));
        // The ConfigMap's namespace defaults to the broker's.
        valid(&format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: kcfg, namespace: team}}\n",
            broker(
                "{name: b, namespace: team}",
                "{config: {kind: ConfigMap, name: kcfg}}"
            )
        ));
    }

    #[test]
    fn names() {
        let spec = format!("{{broker: default, {SUB}}}");
        check(&[
            (
                trigger_meta("{name: Bad_Name}", &spec),
                Some("Trigger default/Bad_Name"),
                "metadata.name",
                "name \"Bad_Name\" is not a DNS-1123 label",
            ),
            (
                trigger_meta(&format!("{{name: {}}}", "a".repeat(64)), &spec),
                Some(&*format!("Trigger default/{}", "a".repeat(64))),
                "metadata.name",
                "name \"aaaa",
            ),
            (
                trigger_meta("{labels: {a: b}}", &spec),
                None,
                "metadata.name",
                "name is required",
            ),
            (
                broker("{name: -b}", "{}"),
                Some("Broker default/-b"),
                "metadata.name",
                "name \"-b\" is not a DNS-1123 label",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: My.Config}\n".into(),
                Some("ConfigMap default/My.Config"),
                "metadata.name",
                "name \"My.Config\" is not a DNS-1123 subdomain",
            ),
        ]);
        valid("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config.kafka-broker}\n");
        // (The trigger's broker is then missing too: two errors.)
        let errors = errors_of(&trigger_meta("{name: t, namespace: Team}", &spec));
        assert!(
            errors
                .iter()
                .any(|e| e.object.as_deref() == Some("Trigger Team/t")
                    && e.field.as_deref() == Some("metadata.namespace")
                    && e.message == "namespace \"Team\" is not a DNS-1123 label"),
            "{errors:#?}"
        );
        // Same name, different kinds or namespaces: no clash.
        valid(&format!(
            "{}---\n{}---\n{}",
            broker("{name: t}", "{}"),
            trigger(&spec),
            trigger_meta(
                "{name: t, namespace: other}",
                "{broker: default, subscriber: {uri: 'http://a'}}"
            )
            .replace("broker: default", "broker: b2")
                + "---\n"
                + &broker("{name: b2, namespace: other}", "{}")
        ));
    }

    #[test]
    fn duplicates_name_both_files() {
        let t = trigger(&format!("{{broker: default, {SUB}}}"));
        let config = load_sources([
            (PathBuf::from("a.yaml"), format!("{BASE}---\n{t}")),
            (
                PathBuf::from("b.yaml"),
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: other}}\n---\n{t}"),
            ),
        ])
        .unwrap();
        let errors = validate(&config);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let e = &errors[0];
        assert_eq!(
            e.to_string(),
            "b.yaml: Trigger default/t: metadata.name: duplicate Trigger default/t: \
             first defined in a.yaml (document 3), again in b.yaml (document 2)"
        );
    }

    #[test]
    fn every_error_is_collected() {
        let errors = errors_of(&trigger(
            "{broker: nope, subscriber: {}, filters: [{cesql: ''}, {exact: {type: ''}}], delivery: {retry: -1}}",
        ));
        let fields: Vec<_> = errors.iter().filter_map(|e| e.field.as_deref()).collect();
        assert_eq!(
            fields,
            [
                "spec.broker",
                "spec.subscriber",
                "spec.filters[0].cesql",
                "spec.filters[1].exact.type",
                "spec.delivery.retry"
            ]
        );
    }

    #[test]
    fn trigger_spec_schema_builds() {
        let schema = schemars::schema_for!(crate::types::TriggerSpec);
        let json = serde_json::to_value(&schema).unwrap();
        let props = &json["properties"];
        for field in ["broker", "filter", "filters", "subscriber", "delivery"] {
            assert!(props.get(field).is_some(), "{field} missing in {json}");
        }
        assert_eq!(
            json["required"],
            serde_json::json!(["broker", "subscriber"])
        );
        let _ = schemars::schema_for!(crate::types::BrokerSpec);
    }

    const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: hook}\n\
                          data: {token: dG9r}\nstringData: {hmac: s3cret}\n---\n";

    fn ping(spec: &str) -> String {
        format!(
            "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: p}}\nspec: {spec}\n"
        )
    }

    fn webhook(spec: &str) -> String {
        format!(
            "{SECRET}apiVersion: sources.cebus.dev/v1alpha1\nkind: WebhookSource\n\
             metadata: {{name: w}}\nspec: {spec}\n"
        )
    }

    fn container(spec: &str) -> String {
        format!(
            "{SECRET}apiVersion: sources.knative.dev/v1\nkind: ContainerSource\n\
             metadata: {{name: c}}\nspec: {spec}\n"
        )
    }

    const SINK: &str =
        "sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}";

    #[test]
    fn valid_sources() {
        valid(&ping(&format!("{{{SINK}}}")));
        valid(&ping(&format!(
            "{{schedule: '*/5 * * * *', timezone: Europe/Berlin, contentType: application/json, \
             data: '{{\"a\": 1}}', ceOverrides: {{extensions: {{team: infra}}}}, {SINK}}}"
        )));
        valid(&ping(
            "{contentType: text/plain, dataBase64: aGk=, sink: {uri: 'https://x.example/in'}}",
        ));
        valid(&webhook(&format!(
            "{{eventTypeFromHeader: {{header: X-GitHub-Event, prefix: com.github.}}, \
             idFromHeader: X-GitHub-Delivery, extensionsFromHeaders: {{hookid: X-GitHub-Hook-ID}}, \
             auth: {{hmac: {{secretKeyRef: {{name: hook, key: hmac}}}}, \
             bearer: {{tokenSecretKeyRef: {{name: hook, key: token}}}}}}, {SINK}}}"
        )));
        valid(&container(&format!(
            "{{template: {{spec: {{containers: [{{image: x, command: [sh], \
             env: [{{name: A, value: b}}, {{name: T, valueFrom: {{secretKeyRef: {{name: hook, key: token}}}}}}]}}]}}}}, {SINK}}}"
        )));
    }

    #[test]
    fn invalid_sources() {
        const P: Option<&str> = Some("PingSource default/p");
        const W: Option<&str> = Some("WebhookSource default/w");
        const C: Option<&str> = Some("ContainerSource default/c");
        check(&[
            (ping("{sink: {}}"), P, "spec.sink", "set ref or uri"),
            (
                ping("{sink: {uri: /relative}}"),
                P,
                "spec.sink.uri",
                "\"/relative\" is not an absolute",
            ),
            (
                ping("{sink: {ref: {kind: Broker, name: nope}}}"),
                P,
                "spec.sink.ref",
                "Broker default/nope is not defined",
            ),
            (
                ping(&format!("{{data: a, dataBase64: YQ==, {SINK}}}")),
                P,
                "spec",
                "set data or dataBase64, not both",
            ),
            (
                ping(&format!("{{dataBase64: '***', {SINK}}}")),
                P,
                "spec.dataBase64",
                "is not standard base64",
            ),
            (
                ping(&format!(
                    "{{contentType: application/json, data: '[1]', {SINK}}}"
                )),
                P,
                "spec.data",
                "contentType is application/json, so the data must be a JSON object",
            ),
            (
                ping(&format!(
                    "{{contentType: application/cloudevents+json; charset=utf-8, dataBase64: bm9wZQ==, {SINK}}}"
                )),
                P,
                "spec.dataBase64",
                "contentType is",
            ),
            (
                ping(&format!(
                    "{{ceOverrides: {{extensions: {{type: x}}}}, {SINK}}}"
                )),
                P,
                "spec.ceOverrides.extensions.type",
                "\"type\" is a core CloudEvents attribute",
            ),
            (
                ping(&format!(
                    "{{ceOverrides: {{extensions: {{Team: x}}}}, {SINK}}}"
                )),
                P,
                "spec.ceOverrides.extensions.Team",
                "\"Team\" is not a CloudEvents attribute name",
            ),
            (
                format!(
                    "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: \
                     {{name: p, annotations: {{cebus.dev/catch-up: '0'}}}}\nspec: {{{SINK}}}\n"
                ),
                P,
                "metadata.annotations[\"cebus.dev/catch-up\"]",
                "\"0\" is not a number of ticks",
            ),
            (
                webhook(&format!("{{{SINK}}}")),
                W,
                "spec.eventType",
                "eventType (or",
            ),
            (
                webhook(&format!(
                    "{{eventType: a, eventTypeFromHeader: {{header: X}}, {SINK}}}"
                )),
                W,
                "spec",
                "set eventType or eventTypeFromHeader",
            ),
            (
                webhook(&format!(
                    "{{eventType: a, idFromHeader: 'bad header', {SINK}}}"
                )),
                W,
                "spec.idFromHeader",
                "\"bad header\" is not an HTTP header name",
            ),
            (
                webhook(&format!(
                    "{{eventType: a, auth: {{hmac: {{secretKeyRef: {{name: other, key: k}}}}}}, {SINK}}}"
                )),
                W,
                "spec.auth.hmac.secretKeyRef.name",
                "Secret default/other is not defined",
            ),
            (
                webhook(&format!(
                    "{{eventType: a, auth: {{basic: {{username: ci, passwordSecretKeyRef: {{name: hook, key: pw}}}}}}, {SINK}}}"
                )),
                W,
                "spec.auth.basic.passwordSecretKeyRef.key",
                "Secret default/hook has no key \"pw\"",
            ),
            (
                container(&format!(
                    "{{template: {{spec: {{containers: []}}}}, {SINK}}}"
                )),
                C,
                "spec.template.spec.containers",
                "one container is required",
            ),
            (
                container(&format!(
                    "{{template: {{spec: {{containers: [{{command: [a], env: [{{name: A, value: b, valueFrom: {{secretKeyRef: {{name: hook, key: token}}}}}}]}}]}}}}, {SINK}}}"
                )),
                C,
                "spec.template.spec.containers[0].env[0]",
                "set value or valueFrom",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: '%%'}\n".into(),
                Some("Secret default/s"),
                "data.k",
                "is not standard base64",
            ),
        ]);
    }

    #[test]
    fn webhook_timestamped_signatures_and_dedup() {
        const W: Option<&str> = Some("WebhookSource default/w");
        valid(&webhook(&format!(
            "{{eventType: a, auth: {{stripe: {{secretKeyRef: {{name: hook, key: hmac}}, tolerance: PT10M}}, \
             slack: {{secretKeyRef: {{name: hook, key: token}}}}}}, \
             dedup: {{header: Idempotency-Key, window: PT1H, maxEntries: 500}}, {SINK}}}"
        )));
        valid(&webhook(&format!(
            "{{eventType: a, dedup: {{window: PT0S}}, {SINK}}}"
        )));
        check(&[
            (
                webhook(&format!(
                    "{{eventType: a, auth: {{stripe: {{secretKeyRef: {{name: hook, key: hmac}}, tolerance: 5m}}}}, {SINK}}}"
                )),
                W,
                "spec.auth.stripe.tolerance",
                "\"5m\" is not an ISO-8601 duration",
            ),
            (
                webhook(&format!(
                    "{{eventType: a, auth: {{slack: {{secretKeyRef: {{name: hook, key: hmac}}, tolerance: PT0.5S}}}}, {SINK}}}"
                )),
                W,
                "spec.auth.slack.tolerance",
                "tolerance must be at least one second",
            ),
            (
                webhook(&format!(
                    "{{eventType: a, auth: {{slack: {{secretKeyRef: {{name: hook, key: nope}}}}}}, {SINK}}}"
                )),
                W,
                "spec.auth.slack.secretKeyRef.key",
                "Secret default/hook has no key \"nope\"",
            ),
            (
                webhook(&format!(
                    "{{eventType: a, dedup: {{header: 'x y'}}, {SINK}}}"
                )),
                W,
                "spec.dedup.header",
                "\"x y\" is not an HTTP header name",
            ),
            (
                webhook(&format!("{{eventType: a, dedup: {{window: P1M}}, {SINK}}}")),
                W,
                "spec.dedup.window",
                "\"P1M\": years and months are not allowed",
            ),
            (
                webhook(&format!(
                    "{{eventType: a, dedup: {{maxEntries: 0}}, {SINK}}}"
                )),
                W,
                "spec.dedup.maxEntries",
                "maxEntries must be 1 to 1000000, not 0",
            ),
        ]);
    }

    #[test]
    fn secrets_decode_and_hide_values() {
        let objects = load_str(Path::new("s.yaml"), SECRET.trim_end_matches("---\n")).unwrap();
        let config = Config::from_objects(objects);
        let s = &config.secret("default", "hook").unwrap().object;
        assert_eq!(s.value("token").as_deref(), Some(&b"tok"[..]));
        assert_eq!(s.value("hmac").as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(s.value("nope"), None);
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("dG9r"),
            "{shown}"
        );
    }
}
