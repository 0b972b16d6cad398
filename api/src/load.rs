//! Loading Knative YAML (files, directories, multi-document streams) into typed
//! objects, each error carrying file, document, object and field path.
//!
//! Each document is parsed to a `serde_json::Value` first, dispatched on
//! `apiVersion` + `kind`, then deserialized with `serde_path_to_error` so a type
//! error or an unknown `spec` field is reported at its path.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use crate::config::{Config, Located, Object};
use crate::error::{ConfigError, FieldPath, object_label};
use crate::types::{CEBUS_SOURCES_V1ALPHA1, EVENTING_V1, Resource, SOURCES_V1, SOURCES_V1BETA1};
use crate::yaml::{Node, NodeDeserializer};

/// Namespace of objects that do not set `metadata.namespace`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Knative kinds cebus knows but does not implement yet: `(apiVersion, kind)`.
const NOT_YET_SUPPORTED: &[(&str, &str)] = &[
    ("sources.knative.dev/v1", "ApiServerSource"),
    ("sources.knative.dev/v1", "SinkBinding"),
    ("messaging.knative.dev/v1", "Channel"),
    ("messaging.knative.dev/v1", "InMemoryChannel"),
    ("messaging.knative.dev/v1", "Subscription"),
    ("messaging.knative.dev/v1beta1", "KafkaChannel"),
    ("flows.knative.dev/v1", "Sequence"),
    ("flows.knative.dev/v1", "Parallel"),
];

/// Parses one file's text (any number of `---`-separated documents). Empty
/// documents are skipped. Returns every error found, not just the first.
pub fn load_str(file: &Path, text: &str) -> Result<Vec<Object>, Vec<ConfigError>> {
    // Fast path: generated configs take the fast YAML reader, and each document
    // is converted straight from its nodes, without tracking field paths. Only
    // when that fails for any reason is the file converted the thorough way
    // (through `serde_json::Value` and `serde_path_to_error`), which finds every
    // error with its path, as before.
    let docs: Vec<Value> = match crate::yaml::parse_plain(text) {
        Some(nodes) => {
            let objects: Option<Vec<Object>> = nodes
                .iter()
                .enumerate()
                .map(|(doc, node)| load_node(file, doc, node))
                .collect();
            if let Some(objects) = objects {
                return Ok(objects);
            }
            nodes.iter().map(Node::to_value).collect()
        }
        None => match serde_saphyr::from_multiple_with_options(text, crate::yaml::yaml_options()) {
            Ok(docs) => docs,
            Err(e) => return Err(vec![yaml_error(file, &e)]),
        },
    };
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (doc, value) in docs.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        match load_doc(file, doc, value) {
            Ok(object) => objects.push(object),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

/// Loads several files' contents, already read, in the given order. Pure; what
/// `load_path` does after reading.
pub fn load_sources(
    sources: impl IntoIterator<Item = (PathBuf, String)>,
) -> Result<Config, Vec<ConfigError>> {
    let mut config = Config::default();
    let mut errors = Vec::new();
    for (file, text) in sources {
        match load_str(&file, &text) {
            Ok(objects) => objects.into_iter().for_each(|o| config.push(o)),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

/// Loads a file, or every `*.yaml`/`*.yml` file of a directory (sorted by name, not
/// recursive). Does not validate; see [`load_and_validate`].
pub fn load_path(path: &Path) -> Result<Config, Vec<ConfigError>> {
    load_files(read_path(path))
}

/// Config files as read from disk, not yet parsed: the text of each file that
/// could be read, and an error for each that could not (or for the folder).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFiles {
    /// Each readable file and its text, sorted by file name.
    pub texts: Vec<(PathBuf, String)>,
    /// Why a file or the folder could not be read.
    pub errors: Vec<ConfigError>,
}

/// Reads the config files at `path` — the file itself, or every `*.yaml`/`*.yml`
/// regular file of a directory, sorted by name, not recursive — without parsing
/// them; [`load_files`] parses what this read. The only I/O of [`load_path`].
pub fn read_path(path: &Path) -> ConfigFiles {
    let read = |file: &Path| {
        std::fs::read_to_string(file)
            .map_err(|e| ConfigError::file(file, format!("cannot read: {e}")))
    };
    let failed = |e: ConfigError| ConfigFiles {
        texts: Vec::new(),
        errors: vec![e],
    };
    if !path.is_dir() {
        return match read(path) {
            Ok(text) => ConfigFiles {
                texts: vec![(path.to_path_buf(), text)],
                errors: Vec::new(),
            },
            Err(e) => failed(e),
        };
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) => {
            return failed(ConfigError::file(
                path,
                format!("cannot read directory: {e}"),
            ));
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return failed(ConfigError::file(
            path,
            "directory has no *.yaml or *.yml files",
        ));
    }
    let mut read_files = ConfigFiles::default();
    for file in files {
        match read(&file) {
            Ok(text) => read_files.texts.push((file, text)),
            Err(e) => read_files.errors.push(e),
        }
    }
    read_files
}

/// Parses files [`read_path`] read: a config, or every error (those of reading
/// first). Pure.
pub fn load_files(files: ConfigFiles) -> Result<Config, Vec<ConfigError>> {
    let ConfigFiles { texts, mut errors } = files;
    if texts.is_empty() && !errors.is_empty() {
        return Err(errors);
    }
    match load_sources(texts) {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.extend(e);
            Err(errors)
        }
    }
}

/// [`load_path`] then [`crate::validate::validate`]: a config that is safe to run.
pub fn load_and_validate(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let config = load_path(path)?;
    let errors = crate::validate::validate(&config);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

fn yaml_error(file: &Path, e: &serde_saphyr::Error) -> ConfigError {
    let plain = e.without_snippet().to_string();
    let message = match e.location() {
        // The plain rendering usually ends with the position already; say it first
        // and only once.
        Some(loc) if loc.line() > 0 => {
            let suffix = format!(" at line {}, column {}", loc.line(), loc.column());
            let text = plain.strip_suffix(&suffix).unwrap_or(&plain);
            format!("invalid YAML{suffix}: {text}")
        }
        _ => format!("invalid YAML: {plain}"),
    };
    ConfigError::file(file, message)
}

/// Decodes one document, already parsed to JSON, as document `doc` of `file`: what
/// [`load_str`] does per document, and what the Kubernetes config source does per
/// object (its `file` then names the object).
pub fn load_doc(file: &Path, doc: usize, value: Value) -> Result<Object, ConfigError> {
    let error = |field: &str, message: String| {
        ConfigError::file(file, message)
            .with_doc(doc)
            .with_field(field)
    };
    let Value::Object(map) = &value else {
        return Err(error(
            "",
            "document is not a mapping; expected a Kubernetes object with apiVersion and kind"
                .into(),
        ));
    };
    let text = |key: &str| -> Result<String, ConfigError> {
        match map.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) | None => Err(error(key, format!("{key} is required"))),
            Some(_) => Err(error(key, format!("{key} must be a string"))),
        }
    };
    let api_version = text("apiVersion")?;
    let kind = text("kind")?;

    let location = Location { file, doc };
    match (api_version.as_str(), kind.as_str()) {
        (api, kind) if kind_of(api, kind).is_some() => build(
            kind_of(api, kind).expect("checked"),
            Tracked(location, value),
        ),
        (api, kind) => {
            let label = raw_label(kind, &value);
            let error = |field, message| error(field, message).with_object(label.clone());
            if NOT_YET_SUPPORTED.contains(&(api, kind)) {
                return Err(error("kind", format!("kind {kind} is not supported yet")));
            }
            let expected = match kind {
                "Broker" | "Trigger" => Some(EVENTING_V1),
                "ConfigMap" | "Secret" => Some("v1"),
                "PingSource" | "ContainerSource" | "KafkaSource" => Some(SOURCES_V1),
                "WebhookSource" => Some(CEBUS_SOURCES_V1ALPHA1),
                _ => None,
            };
            Err(match expected {
                Some(expected) => error(
                    "apiVersion",
                    format!("apiVersion {api} is not supported for {kind}; use {expected}"),
                ),
                None => error(
                    "kind",
                    format!(
                        "unknown kind {kind} (apiVersion {api}); cebus loads \
                         {EVENTING_V1} Broker and Trigger, {SOURCES_V1} PingSource, \
                         ContainerSource and KafkaSource, {CEBUS_SOURCES_V1ALPHA1} \
                         WebhookSource, and v1 ConfigMap and Secret"
                    ),
                ),
            })
        }
    }
}

/// The kinds cebus loads.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Broker,
    Trigger,
    ConfigMap,
    Secret,
    PingSource,
    ContainerSource,
    WebhookSource,
    KafkaSource,
}

/// The kind a document's `apiVersion` and `kind` name, if cebus loads it.
fn kind_of(api_version: &str, kind: &str) -> Option<Kind> {
    Some(match (api_version, kind) {
        (EVENTING_V1, "Broker") => Kind::Broker,
        (EVENTING_V1, "Trigger") => Kind::Trigger,
        ("v1", "ConfigMap") => Kind::ConfigMap,
        ("v1", "Secret") => Kind::Secret,
        (SOURCES_V1, "PingSource") => Kind::PingSource,
        (SOURCES_V1, "ContainerSource") => Kind::ContainerSource,
        (CEBUS_SOURCES_V1ALPHA1, "WebhookSource") => Kind::WebhookSource,
        (SOURCES_V1 | SOURCES_V1BETA1, "KafkaSource") => Kind::KafkaSource,
        _ => return None,
    })
}

/// A document on its way to a typed object (either way of converting it).
trait Convert {
    /// The error when it is not a `T`.
    type Error;
    /// Converts to a `T` with its location.
    fn convert<T: Resource + DeserializeOwned>(self) -> Result<Located<T>, Self::Error>;
}

/// Converts a document of kind `kind`.
fn build<C: Convert>(kind: Kind, document: C) -> Result<Object, C::Error> {
    match kind {
        Kind::Broker => document.convert().map(Object::Broker),
        Kind::Trigger => document.convert().map(Object::Trigger),
        Kind::ConfigMap => document.convert().map(Object::ConfigMap),
        Kind::Secret => document.convert().map(Object::Secret),
        Kind::PingSource => document.convert().map(Object::PingSource),
        Kind::ContainerSource => document.convert().map(Object::ContainerSource),
        Kind::WebhookSource => document.convert().map(Object::WebhookSource),
        Kind::KafkaSource => document.convert().map(Object::KafkaSource),
    }
}

/// The fast conversion of a document the fast YAML reader read: `None` for
/// anything but a well-formed object of a kind cebus loads.
fn load_node(file: &Path, doc: usize, node: &Node<'_>) -> Option<Object> {
    let kind = kind_of(node.str_at("apiVersion")?, node.str_at("kind")?)?;
    build(kind, Untracked(Location { file, doc }, node)).ok()
}

/// Where a document came from, for typed deserialization.
#[derive(Debug, Clone, Copy)]
struct Location<'a> {
    file: &'a Path,
    doc: usize,
}

impl Location<'_> {
    /// `object` with its location, in the default namespace unless it names one.
    fn locate<T: Resource>(self, mut object: T) -> Located<T> {
        let meta = object.metadata_mut();
        if meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = Some(DEFAULT_NAMESPACE.to_owned());
        }
        Located {
            file: self.file.to_path_buf(),
            doc: self.doc,
            object,
        }
    }
}

/// A document converted from its nodes, without field paths.
struct Untracked<'l, 'n, 'a>(Location<'l>, &'n Node<'a>);

impl Convert for Untracked<'_, '_, '_> {
    type Error = serde::de::value::Error;

    fn convert<T: Resource + DeserializeOwned>(self) -> Result<Located<T>, Self::Error> {
        T::deserialize(NodeDeserializer(self.1)).map(|object| self.0.locate(object))
    }
}

/// A document converted from its value with `serde_path_to_error`, so an error
/// names its field.
struct Tracked<'l>(Location<'l>, Value);

impl Convert for Tracked<'_> {
    type Error = ConfigError;

    fn convert<T: Resource + DeserializeOwned>(self) -> Result<Located<T>, ConfigError> {
        let Tracked(location, value) = self;
        let label = raw_label(T::KIND, &value);
        serde_path_to_error::deserialize(value)
            .map(|object| location.locate(object))
            .map_err(|e| {
                let (field, message) = refine(e.path(), e.inner().to_string());
                let message = hint_quoting(message);
                ConfigError::file(location.file, message)
                    .with_doc(location.doc)
                    .with_object(label)
                    .with_field(field)
            })
    }
}

/// serde may report an unknown or missing field at its parent's path; put the
/// path on the field itself so the user sees e.g. `spec.delivery.retries`.
fn refine(path: &serde_path_to_error::Path, message: String) -> (FieldPath, String) {
    let field = FieldPath::from_serde(path);
    for prefix in ["unknown field `", "missing field `"] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((name, _)) = rest.split_once('`')
        {
            let last = path.iter().next_back();
            if !matches!(last, Some(serde_path_to_error::Segment::Map { key }) if key == name) {
                return (field.key(name), message);
            }
        }
    }
    (field, message)
}

/// YAML reads unquoted `y`, `no`, `on`, `true`, `10`, `1.5` as booleans or numbers
/// (as Kubernetes does); when a string was expected, say how to fix it.
fn hint_quoting(message: String) -> String {
    let scalar = [
        "invalid type: boolean",
        "invalid type: integer",
        "invalid type: floating",
    ];
    if scalar.iter().any(|p| message.starts_with(p)) && message.ends_with("expected a string") {
        format!("{message} (YAML reads this unquoted value as a boolean or number; quote it)")
    } else {
        message
    }
}

/// `Kind namespace/name` from an untyped document, when it has a name.
fn raw_label(kind: &str, value: &Value) -> Option<String> {
    let meta = value.get("metadata")?;
    let name = meta.get("name")?.as_str().filter(|n| !n.is_empty())?;
    let namespace = meta
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE);
    Some(object_label(kind, namespace, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_of_triggers_in_one_file() {
        let mut text = String::from(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: default\n",
        );
        for i in 0..20_000 {
            text.push_str(&format!(
                "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t{i}\nspec:\n  broker: default\n  filters:\n    - exact:\n        type: com.example.t{i}\n  subscriber:\n    uri: http://127.0.0.1:9/t{i}\n"
            ));
        }
        let objects = load_str(Path::new("many.yaml"), &text).expect("a big config loads");
        assert_eq!(objects.len(), 20_001);
    }
    use crate::types::{BackoffPolicy, KReference};

    fn path() -> PathBuf {
        PathBuf::from("cfg.yaml")
    }

    fn load_one_err(text: &str) -> ConfigError {
        let mut errors = load_str(&path(), text).expect_err("should fail");
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.remove(0)
    }

    /// A Knative user's YAML, as written for Knative, loads unchanged.
    const KNATIVE_YAML: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: config-br-default-channel
  namespace: shop
data:
  channel-template-spec: |
    apiVersion: messaging.knative.dev/v1
    kind: InMemoryChannel
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  namespace: shop
  annotations:
    eventing.knative.dev/broker.class: MTChannelBasedBroker
spec:
  config:
    apiVersion: v1
    kind: ConfigMap
    name: config-br-default-channel
  delivery:
    retry: 5
    backoffPolicy: exponential
    backoffDelay: PT0.2S
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: orders
  namespace: shop
  labels:
    app: shop
  uid: 1b0e4a8f
  creationTimestamp: "2024-01-01T00:00:00Z"
spec:
  broker: default
  filter:
    attributes:
      type: dev.knative.order.created
      source: ""
  filters:
    - exact:
        type: dev.knative.order.created
    - any:
        - prefix:
            source: /shop/
        - not:
            suffix:
              subject: .tmp
  subscriber:
    ref:
      apiVersion: serving.knative.dev/v1
      kind: Service
      name: order-handler
    uri: /events
  delivery:
    retry: 3
    timeout: PT10S
    deadLetterSink:
      ref:
        apiVersion: v1
        kind: Service
        name: dead-letters
        namespace: ops
status:
  conditions: []
"#;

    #[test]
    fn realistic_knative_yaml_loads_unchanged() {
        let objects = load_str(&path(), KNATIVE_YAML).unwrap();
        let config = Config::from_objects(objects);
        assert!(crate::validate::validate(&config).is_empty());
        assert_eq!(config.config_maps.len(), 1);
        let broker = &config.brokers[0];
        assert_eq!(broker.doc, 1);
        let delivery = broker.object.spec.delivery.as_ref().unwrap();
        assert_eq!(delivery.retry, Some(5));
        assert_eq!(delivery.backoff_policy, Some(BackoffPolicy::Exponential));
        let t = &config.triggers[0];
        assert_eq!((t.file.as_path(), t.doc), (path().as_path(), 2));
        assert_eq!(t.label(), "Trigger shop/orders");
        let attrs = &t.object.spec.filter.as_ref().unwrap().attributes;
        assert_eq!(attrs["source"], "");
        assert_eq!(t.object.spec.filters.len(), 2);
        assert_eq!(t.object.spec.filters[1].any.len(), 2);
        let dls = t
            .object
            .spec
            .delivery
            .as_ref()
            .unwrap()
            .dead_letter_sink
            .as_ref();
        assert_eq!(
            dls.unwrap().reference,
            Some(KReference {
                kind: "Service".into(),
                name: "dead-letters".into(),
                namespace: Some("ops".into()),
                api_version: Some("v1".into()),
                ..Default::default()
            })
        );
        assert_eq!(config.triggers_of("shop", "default").count(), 1);
    }

    /// Every kind, in the YAML subset the fast reader takes: its objects are the
    /// ones the thorough conversion makes.
    const PLAIN_YAML: &str = "\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  namespace: shop
  labels:
    app: shop
  annotations:
    eventing.knative.dev/broker.class: Kafka
    cebus.dev/broker-ttl: '10'
spec:
  config:
    apiVersion: v1
    kind: ConfigMap
    name: kafka
  delivery:
    retry: 5
    backoffPolicy: exponential
    backoffDelay: PT0.2S
    deadLetterSink:
      uri: http://dls.example/
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: kafka
  namespace: shop
data:
  bootstrap.servers: \"127.0.0.1:9092\"
  default.topic.partitions: \"3\"
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: orders
  namespace: shop
  uid: b10e4a8f
spec:
  broker: default
  filter:
    attributes:
      type: dev.knative.order.created
      source: ''
  filters:
  - exact:
      type: dev.knative.order.created
  - any:
    - prefix:
        source: /shop/
    - not:
        suffix:
          subject: .tmp
    - all:
      - cesql: \"type = 'x' AND subject LIKE 'vip-%'\"
  subscriber:
    ref:
      apiVersion: serving.knative.dev/v1
      kind: Service
      name: order-handler
    uri: /events
  delivery:
    retry: 3
    timeout: PT10S
---
apiVersion: v1
kind: Secret
metadata:
  name: token
stringData:
  token: s3cret
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata:
  name: ping
spec:
  schedule: '*/1 * * * *'
  contentType: application/json
  data: '{\"a\": 1}'
  sink:
    ref:
      apiVersion: eventing.knative.dev/v1
      kind: Broker
      name: default
  ceOverrides:
    extensions:
      team: shop
---
apiVersion: sources.knative.dev/v1beta1
kind: KafkaSource
metadata:
  name: orders
spec:
  consumerGroup: g
  bootstrapServers:
  - my-cluster-kafka-bootstrap.kafka:9092
  topics:
  - orders
  initialOffset: earliest
  sink:
    uri: http://x/
";

    #[test]
    fn fast_and_thorough_conversions_agree() {
        let nodes = crate::yaml::parse_plain(PLAIN_YAML).expect("the fast reader takes it");
        assert_eq!(nodes.len(), 6);
        for (doc, node) in nodes.iter().enumerate() {
            let fast = load_node(&path(), doc, node).expect("the fast conversion takes it");
            let thorough = load_doc(&path(), doc, node.to_value()).expect("valid");
            assert_eq!(fast, thorough, "document {doc}");
        }
        let config = Config::from_objects(load_str(&path(), PLAIN_YAML).unwrap());
        assert_eq!(config.triggers[0].object.spec.filters[1].any.len(), 3);
    }

    #[test]
    fn multi_document_with_empty_documents_and_default_namespace() {
        let text = "---\n---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: a\n---\n\
                    # only a comment\n---\napiVersion: eventing.knative.dev/v1\nkind: Broker\n\
                    metadata:\n  name: b\n  namespace: team\n";
        let config = Config::from_objects(load_str(&path(), text).unwrap());
        let names: Vec<_> = config
            .brokers
            .iter()
            .map(|b| {
                (
                    b.object.metadata.namespace.clone().unwrap(),
                    b.object.metadata.name.clone(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [("default".into(), "a".into()), ("team".into(), "b".into())]
        );
        assert!(config.broker("default", "a").is_some());
    }

    #[test]
    fn unknown_field_in_spec_is_named() {
        let e = load_one_err(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\n\
             spec:\n  broker: b\n  subscriber:\n    uri: http://x\n  delivery:\n    retries: 3\n",
        );
        assert_eq!(e.object.as_deref(), Some("Trigger default/t"));
        assert_eq!(e.field.as_deref(), Some("spec.delivery.retries"));
        assert!(e.message.contains("unknown field `retries`"), "{e}");
        assert_eq!(e.doc, Some(0));
    }

    #[test]
    fn type_and_missing_field_errors_carry_paths() {
        let e = load_one_err(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\n  \
             namespace: team\nspec:\n  broker: b\n  subscriber:\n    uri: http://x\n  \
             filters:\n    - exact:\n        type: [1]\n",
        );
        assert_eq!(
            e.field.as_deref(),
            Some("spec.filters[0].exact.type"),
            "{e}"
        );
        assert_eq!(e.object.as_deref(), Some("Trigger team/t"));

        let e = load_one_err(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  \
             annotations:\n    cebus.dev/broker-ttl: 10\n",
        );
        assert_eq!(
            e.field.as_deref(),
            Some("metadata.annotations[\"cebus.dev/broker-ttl\"]")
        );
        assert!(e.message.ends_with("quote it)"), "{e}");

        let e = load_one_err(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\nspec:\n  broker: b\n",
        );
        assert_eq!(e.field.as_deref(), Some("spec.subscriber"));
        assert!(e.message.contains("missing field"), "{e}");

        let e = load_one_err(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\nspec:\n  \
             delivery:\n    retry: many\n",
        );
        assert_eq!(e.field.as_deref(), Some("spec.delivery.retry"));
        assert_eq!(
            e.to_string(),
            format!(
                "cfg.yaml: Broker default/b: spec.delivery.retry: {}",
                e.message
            )
        );
    }

    #[test]
    fn empty_filter_dialects_are_rejected_at_their_path() {
        let trigger = |filters: &str| {
            format!(
                "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\n\
                 spec:\n  broker: b\n  subscriber:\n    uri: http://x\n  filters:\n{filters}"
            )
        };
        for (filters, field) in [
            ("    - all: []\n", "spec.filters[0].all"),
            ("    - any: []\n", "spec.filters[0].any"),
            ("    - exact: {}\n", "spec.filters[0].exact"),
            (
                "    - not:\n        suffix: {}\n",
                "spec.filters[0].not.suffix",
            ),
        ] {
            let e = load_one_err(&trigger(filters));
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
        }
    }

    #[test]
    fn bad_yaml_reports_line_and_column() {
        let e = load_one_err("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [a, b\n");
        assert_eq!(e.object, None);
        assert!(e.message.contains("line "), "{e}");
        assert!(e.message.starts_with("invalid YAML at line"), "{e}");
        let e = load_one_err("a: b\n  c: d\n");
        assert!(e.message.contains("line 2"), "{e}");
    }

    #[test]
    fn kinds_are_dispatched() {
        let doc = |api: &str, kind: &str| {
            format!("apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: x\nspec: {{}}\n")
        };
        let cases = [
            (
                "sources.knative.dev/v1alpha1",
                "KafkaSource",
                "apiVersion",
                "apiVersion sources.knative.dev/v1alpha1 is not supported for KafkaSource",
            ),
            (
                "sources.knative.dev/v1",
                "ApiServerSource",
                "kind",
                "kind ApiServerSource is not supported yet",
            ),
            (
                "sources.knative.dev/v1beta1",
                "PingSource",
                "apiVersion",
                "apiVersion sources.knative.dev/v1beta1 is not supported for PingSource",
            ),
            (
                "messaging.knative.dev/v1",
                "Subscription",
                "kind",
                "kind Subscription is not supported yet",
            ),
            (
                "messaging.knative.dev/v1",
                "InMemoryChannel",
                "kind",
                "kind InMemoryChannel is not supported yet",
            ),
            (
                "flows.knative.dev/v1",
                "Sequence",
                "kind",
                "kind Sequence is not supported yet",
            ),
            (
                "flows.knative.dev/v1",
                "Parallel",
                "kind",
                "kind Parallel is not supported yet",
            ),
            ("apps/v1", "Deployment", "kind", "unknown kind Deployment"),
            (
                "eventing.knative.dev/v1beta1",
                "Broker",
                "apiVersion",
                "apiVersion eventing.knative.dev/v1beta1 is not supported for Broker",
            ),
        ];
        for (api, kind, field, message) in cases {
            let e = load_one_err(&doc(api, kind));
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
            assert!(e.message.starts_with(message), "{e}");
            assert_eq!(e.object, Some(format!("{kind} default/x")));
        }
        let e = load_one_err("kind: Broker\n");
        assert_eq!(
            (e.field.as_deref(), e.message.as_str()),
            (Some("apiVersion"), "apiVersion is required")
        );
        let e = load_one_err("- a\n- b\n");
        assert!(e.message.starts_with("document is not a mapping"), "{e}");
    }

    #[test]
    fn every_document_error_is_reported() {
        let text = "kind: Broker\n---\napiVersion: v1\nkind: Pod\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n";
        let errors = load_str(&path(), text).unwrap_err();
        assert_eq!(
            errors.iter().map(|e| e.doc).collect::<Vec<_>>(),
            [Some(0), Some(1)]
        );
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("cebus-api-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn directory_loads_yaml_files_sorted() {
        let dir = TempDir::new("dir");
        let broker = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n";
        let trigger = "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\n\
                       spec:\n  broker: b\n  subscriber:\n    uri: http://x\n";
        std::fs::write(dir.0.join("b-triggers.yml"), trigger).unwrap();
        std::fs::write(
            dir.0.join("a-broker.yaml"),
            format!("{broker}---\n{}", broker.replace("name: b", "name: c")),
        )
        .unwrap();
        std::fs::write(dir.0.join("notes.txt"), "not: yaml: at: all:").unwrap();
        std::fs::create_dir(dir.0.join("sub.yaml")).unwrap();

        let config = load_and_validate(&dir.0).unwrap();
        assert_eq!(config.brokers.len(), 2);
        assert_eq!(config.brokers[1].doc, 1);
        assert_eq!(config.brokers[0].file, dir.0.join("a-broker.yaml"));
        assert_eq!(config.triggers[0].file, dir.0.join("b-triggers.yml"));

        // A single file loads too; errors name their file.
        let one = load_path(&dir.0.join("b-triggers.yml")).unwrap();
        assert_eq!(one.triggers.len(), 1);
        std::fs::write(dir.0.join("c-bad.yaml"), "kind: [\n").unwrap();
        let errors = load_path(&dir.0).unwrap_err();
        assert_eq!(errors[0].file, dir.0.join("c-bad.yaml"));
        assert!(load_path(&dir.0.join("missing.yaml")).is_err());
    }

    #[test]
    fn kafka_source_loads_as_v1_and_v1beta1() {
        use crate::types::{KafkaInitialOffset, KafkaOrdering};
        for api in ["sources.knative.dev/v1", "sources.knative.dev/v1beta1"] {
            let text = format!(
                "apiVersion: {api}\nkind: KafkaSource\nmetadata:\n  name: orders\nspec:\n  \
                 consumerGroup: g\n  bootstrapServers: [my-cluster-kafka-bootstrap.kafka:9092]\n  \
                 topics: [orders]\n  initialOffset: earliest\n  ordering: unordered\n  sink:\n    \
                 ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}\n"
            );
            let objects = load_str(&path(), &text).unwrap();
            let config = Config::from_objects(objects);
            let k = &config.kafka_sources[0];
            assert_eq!(k.label(), "KafkaSource default/orders");
            let spec = &k.object.spec;
            assert_eq!(spec.topics, ["orders"]);
            assert_eq!(spec.initial_offset, Some(KafkaInitialOffset::Earliest));
            assert_eq!(spec.ordering, Some(KafkaOrdering::Unordered));
        }
        // Knative's TLS/SASL settings are not read: rejected at their path, not ignored.
        let e = load_one_err(
            "apiVersion: sources.knative.dev/v1\nkind: KafkaSource\nmetadata:\n  name: k\n\
             spec:\n  bootstrapServers: [a:9092]\n  topics: [t]\n  net: {tls: {enable: true}}\n  \
             sink: {uri: http://x/}\n",
        );
        assert_eq!(e.field.as_deref(), Some("spec.net"), "{e}");
        let e = load_one_err(
            "apiVersion: sources.knative.dev/v1\nkind: KafkaSource\nmetadata:\n  name: k\n\
             spec:\n  bootstrapServers: [a:9092]\n  topics: [t]\n  initialOffset: newest\n  \
             sink: {uri: http://x/}\n",
        );
        assert_eq!(e.field.as_deref(), Some("spec.initialOffset"), "{e}");
    }

    #[test]
    fn empty_directory_is_an_error() {
        let dir = TempDir::new("empty");
        let errors = load_path(&dir.0).unwrap_err();
        assert!(errors[0].message.contains("no *.yaml"), "{errors:?}");
    }
}
