//! The CustomResourceDefinitions of the kinds cebus serves, built from the `api`
//! types: Knative's groups, versions, kinds, names, categories, duck-type labels
//! and printer columns (as in Knative's own `config/core/resources/*.yaml`), the
//! status subresource, and schemas generated from the spec and status types.
//!
//! `deploy/crds/` holds the output, one file per CRD; the `cebus-crds` binary
//! writes it and `tests/crds.rs` fails when it is out of date.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cebus_api::types::{
    BrokerSpec, CEBUS_SOURCES_V1ALPHA1, ContainerSourceSpec, EVENTING_V1, KafkaSourceSpec,
    PingSourceSpec, SOURCES_V1, SOURCES_V1BETA1, TriggerSpec, WebhookSourceSpec,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresources,
    CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use crate::error::KubeError;
use crate::schema::{Unknown, structural};
use crate::status::{BrokerStatus, SourceStatus, TriggerStatus};

/// The first line of every generated file.
pub const GENERATED_HEADER: &str =
    "# Generated from the api types by `cargo run -p cebus-kube --bin cebus-crds`; do not edit.\n";

type SchemaFn = fn(Unknown) -> Result<JSONSchemaProps, KubeError>;

/// A printer column of `kubectl get`.
struct Column {
    name: &'static str,
    kind: &'static str,
    json_path: &'static str,
    /// 0 shows it always, 1 only with `-o wide` (Knative's Broker `Class`).
    priority: i32,
}

const fn column(name: &'static str, json_path: &'static str) -> Column {
    Column {
        name,
        kind: "string",
        json_path,
        priority: 0,
    }
}

const READY: Column = column("Ready", r#".status.conditions[?(@.type=="Ready")].status"#);
const REASON: Column = column("Reason", r#".status.conditions[?(@.type=="Ready")].reason"#);
const AGE: Column = Column {
    name: "Age",
    kind: "date",
    json_path: ".metadata.creationTimestamp",
    priority: 0,
};
const SINK: Column = column("Sink", ".status.sinkUri");

/// Labels on every CRD (Knative's install label, and ours).
const COMMON_LABELS: &[(&str, &str)] = &[
    ("app.kubernetes.io/name", "cebus"),
    ("knative.dev/crd-install", "true"),
];
/// Labels of Knative's source CRDs: tools such as `kn source list` find sources by them.
const SOURCE_LABELS: &[(&str, &str)] = &[
    ("duck.knative.dev/source", "true"),
    ("eventing.knative.dev/source", "true"),
];

/// Everything a CRD says about one kind.
struct Kind {
    /// `group/version` strings; the first is the storage version. Every version
    /// has the same schema, so no conversion is needed between them.
    api_versions: &'static [&'static str],
    kind: &'static str,
    plural: &'static str,
    categories: &'static [&'static str],
    labels: &'static [(&'static str, &'static str)],
    description: &'static str,
    spec: SchemaFn,
    status: SchemaFn,
    columns: Vec<Column>,
}

/// The kinds cebus serves: those the `api` crate has types for.
fn kinds() -> [Kind; 6] {
    [
        Kind {
            api_versions: &[EVENTING_V1],
            kind: "Broker",
            plural: "brokers",
            categories: &["all", "knative", "eventing"],
            labels: &[("duck.knative.dev/addressable", "true")],
            description: "Broker collects a pool of events that are consumable using Triggers: \
                          a well-known endpoint that senders post events to.",
            spec: structural::<BrokerSpec>,
            status: structural::<BrokerStatus>,
            columns: vec![
                column("URL", ".status.address.url"),
                AGE,
                READY,
                REASON,
                Column {
                    priority: 1,
                    ..column(
                        "Class",
                        r".metadata.annotations.eventing\.knative\.dev/broker\.class",
                    )
                },
            ],
        },
        Kind {
            api_versions: &[EVENTING_V1],
            kind: "Trigger",
            plural: "triggers",
            categories: &["all", "knative", "eventing"],
            labels: &[],
            description: "Trigger delivers the events of a Broker that match its filters to a subscriber.",
            spec: structural::<TriggerSpec>,
            status: structural::<TriggerStatus>,
            columns: vec![
                column("Broker", ".spec.broker"),
                column("Subscriber_URI", ".status.subscriberUri"),
                AGE,
                READY,
                REASON,
            ],
        },
        Kind {
            api_versions: &[SOURCES_V1],
            kind: "PingSource",
            plural: "pingsources",
            categories: &["all", "knative", "sources"],
            labels: SOURCE_LABELS,
            description: "PingSource sends an event with a fixed payload on a cron schedule.",
            spec: structural::<PingSourceSpec>,
            status: structural::<SourceStatus>,
            columns: vec![
                SINK,
                column("Schedule", ".spec.schedule"),
                AGE,
                READY,
                REASON,
            ],
        },
        Kind {
            api_versions: &[SOURCES_V1],
            kind: "ContainerSource",
            plural: "containersources",
            categories: &["all", "knative", "sources"],
            labels: SOURCE_LABELS,
            description: "ContainerSource runs a container that sends events to the sink in K_SINK.",
            spec: structural::<ContainerSourceSpec>,
            status: structural::<SourceStatus>,
            columns: vec![SINK, AGE, READY, REASON],
        },
        Kind {
            // v1beta1 is what Knative's KafkaSource CRD stores and what its users
            // write; cebus reads v1 the same way.
            api_versions: &[SOURCES_V1BETA1, SOURCES_V1],
            kind: "KafkaSource",
            plural: "kafkasources",
            categories: &["all", "knative", "sources"],
            labels: SOURCE_LABELS,
            description: "KafkaSource sends the records of Kafka topics as CloudEvents.",
            spec: structural::<KafkaSourceSpec>,
            status: structural::<SourceStatus>,
            columns: vec![
                column("Topics", ".spec.topics"),
                column("BootstrapServers", ".spec.bootstrapServers"),
                SINK,
                AGE,
                READY,
                REASON,
            ],
        },
        Kind {
            api_versions: &[CEBUS_SOURCES_V1ALPHA1],
            kind: "WebhookSource",
            plural: "webhooksources",
            categories: &["all", "cebus", "sources"],
            labels: SOURCE_LABELS,
            description: "WebhookSource turns HTTP POSTs to /webhooks/<namespace>/<name> into CloudEvents.",
            spec: structural::<WebhookSourceSpec>,
            status: structural::<SourceStatus>,
            columns: vec![SINK, AGE, READY, REASON],
        },
    ]
}

/// The CRDs of every kind cebus serves, in a fixed order.
pub fn crds() -> Result<Vec<CustomResourceDefinition>, KubeError> {
    kinds().iter().map(crd).collect()
}

fn crd(kind: &Kind) -> Result<CustomResourceDefinition, KubeError> {
    let group = kind.api_versions[0]
        .split_once('/')
        .map_or("", |(group, _)| group);
    let mut schema = JSONSchemaProps {
        description: Some(kind.description.into()),
        type_: Some("object".into()),
        properties: Some(BTreeMap::from([
            ("spec".to_string(), (kind.spec)(Unknown::Preserve)?),
            ("status".to_string(), (kind.status)(Unknown::Prune)?),
        ])),
        ..JSONSchemaProps::default()
    };
    if let Some(spec) = schema.properties.as_mut().and_then(|p| p.get_mut("spec")) {
        spec.description = Some(format!("The desired state of the {}.", kind.kind));
    }
    let versions = kind
        .api_versions
        .iter()
        .enumerate()
        .map(|(i, api_version)| CustomResourceDefinitionVersion {
            name: api_version
                .split_once('/')
                .map_or(*api_version, |(_, v)| v)
                .into(),
            served: true,
            storage: i == 0,
            schema: Some(CustomResourceValidation {
                open_api_v3_schema: Some(schema.clone()),
            }),
            subresources: Some(CustomResourceSubresources {
                status: Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceSubresourceStatus(json!({}))),
                scale: None,
            }),
            additional_printer_columns: Some(kind.columns.iter().map(printer_column).collect()),
            ..CustomResourceDefinitionVersion::default()
        })
        .collect();
    let labels = COMMON_LABELS
        .iter()
        .chain(kind.labels)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(format!("{}.{group}", kind.plural)),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: group.into(),
            names: CustomResourceDefinitionNames {
                kind: kind.kind.into(),
                list_kind: None,
                plural: kind.plural.into(),
                singular: Some(kind.kind.to_lowercase()),
                categories: Some(kind.categories.iter().map(|c| c.to_string()).collect()),
                short_names: None,
            },
            scope: "Namespaced".into(),
            versions,
            conversion: None,
            preserve_unknown_fields: None,
        },
        status: None,
    })
}

fn printer_column(c: &Column) -> CustomResourceColumnDefinition {
    CustomResourceColumnDefinition {
        name: c.name.into(),
        type_: c.kind.into(),
        json_path: c.json_path.into(),
        priority: (c.priority != 0).then_some(c.priority),
        ..CustomResourceColumnDefinition::default()
    }
}

/// One generated file of `deploy/crds/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdFile {
    /// File name, `<plural>.<group>.yaml` (the CRD's name).
    pub name: String,
    /// The YAML, starting with [`GENERATED_HEADER`].
    pub text: String,
}

/// Every CRD as the file it is committed as.
pub fn crd_files() -> Result<Vec<CrdFile>, KubeError> {
    crds()?
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let yaml = serde_saphyr::to_string(&crd).map_err(|e| KubeError::Yaml {
                name: name.clone(),
                message: e.to_string(),
            })?;
            Ok(CrdFile {
                name: format!("{name}.yaml"),
                text: format!("{GENERATED_HEADER}{yaml}"),
            })
        })
        .collect()
}

/// Writes every CRD file into `dir` and removes the `*.yaml` files there that are
/// no longer generated; returns the paths written.
pub fn write_files(dir: &Path) -> Result<Vec<PathBuf>, KubeError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KubeError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let files = crd_files()?;
    for stale in yaml_names(dir)? {
        if !files.iter().any(|f| f.name == stale) {
            let path = dir.join(&stale);
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    let mut written = Vec::new();
    for file in files {
        let path = dir.join(&file.name);
        std::fs::write(&path, &file.text).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// The names of the files in `dir` that differ from what would be generated:
/// changed, missing, or `*.yaml` files no longer generated. Empty when up to date.
pub fn stale_files(dir: &Path) -> Result<Vec<String>, KubeError> {
    let files = crd_files()?;
    let mut stale = Vec::new();
    for file in &files {
        let path = dir.join(&file.name);
        match std::fs::read_to_string(&path) {
            Ok(text) if text == file.text => {}
            Ok(_) => stale.push(format!("{} (changed)", file.name)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                stale.push(format!("{} (missing)", file.name));
            }
            Err(source) => return Err(KubeError::Io { path, source }),
        }
    }
    for name in yaml_names(dir)? {
        if !files.iter().any(|f| f.name == name) {
            stale.push(format!("{name} (no longer generated)"));
        }
    }
    Ok(stale)
}

fn yaml_names(dir: &Path) -> Result<Vec<String>, KubeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(KubeError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| KubeError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(name: &str) -> CustomResourceDefinition {
        crds()
            .unwrap()
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no CRD {name}"))
    }

    fn columns(crd: &CustomResourceDefinition) -> Vec<(String, String)> {
        crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.clone(), c.json_path.clone()))
            .collect()
    }

    #[test]
    fn every_kind_has_knatives_group_version_and_names() {
        let names: Vec<(String, String, Vec<String>)> = crds()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c.metadata.name.clone().unwrap(),
                    c.spec.names.kind.clone(),
                    c.spec.versions.iter().map(|v| v.name.clone()).collect(),
                )
            })
            .collect();
        let expected = [
            ("brokers.eventing.knative.dev", "Broker", vec!["v1"]),
            ("triggers.eventing.knative.dev", "Trigger", vec!["v1"]),
            ("pingsources.sources.knative.dev", "PingSource", vec!["v1"]),
            (
                "containersources.sources.knative.dev",
                "ContainerSource",
                vec!["v1"],
            ),
            (
                "kafkasources.sources.knative.dev",
                "KafkaSource",
                vec!["v1beta1", "v1"],
            ),
            (
                "webhooksources.sources.cebus.dev",
                "WebhookSource",
                vec!["v1alpha1"],
            ),
        ]
        .map(|(n, k, v)| {
            (
                n.to_string(),
                k.to_string(),
                v.iter().map(|s| s.to_string()).collect(),
            )
        });
        assert_eq!(names, expected);
    }

    #[test]
    fn exactly_one_storage_version_and_every_version_has_the_status_subresource() {
        for crd in crds().unwrap() {
            let storage = crd.spec.versions.iter().filter(|v| v.storage).count();
            assert_eq!(storage, 1, "{:?}", crd.metadata.name);
            for v in &crd.spec.versions {
                assert!(v.served);
                let sub = v.subresources.as_ref().and_then(|s| s.status.as_ref());
                assert!(
                    sub.is_some(),
                    "{:?} {} has no status subresource",
                    crd.metadata.name,
                    v.name
                );
            }
        }
    }

    #[test]
    fn broker_shows_url_and_ready_like_knative() {
        let crd = find("brokers.eventing.knative.dev");
        let cols = columns(&crd);
        assert_eq!(cols[0], ("URL".into(), ".status.address.url".into()));
        assert!(cols.contains(&(
            "Ready".into(),
            r#".status.conditions[?(@.type=="Ready")].status"#.into()
        )));
        assert_eq!(
            crd.metadata
                .labels
                .unwrap()
                .get("duck.knative.dev/addressable")
                .map(String::as_str),
            Some("true")
        );
    }

    #[test]
    fn trigger_spec_requires_broker_and_subscriber_and_keeps_unknown_fields() {
        let crd = find("triggers.eventing.knative.dev");
        let root = crd.spec.versions[0]
            .schema
            .clone()
            .unwrap()
            .open_api_v3_schema
            .unwrap();
        let spec = &root.properties.as_ref().unwrap()["spec"];
        assert_eq!(spec.required.clone().unwrap(), vec!["broker", "subscriber"]);
        assert_eq!(spec.x_kubernetes_preserve_unknown_fields, Some(true));
        let filters = &spec.properties.as_ref().unwrap()["filters"];
        let item = match filters.items.as_ref().unwrap() {
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(s) => s,
            other => panic!("filters.items is {other:?}"),
        };
        let props = item.properties.as_ref().unwrap();
        for key in ["all", "any", "not", "exact", "prefix", "suffix", "cesql"] {
            assert!(props.contains_key(key), "filters[] has no {key}");
        }
        let status = &root.properties.as_ref().unwrap()["status"];
        assert!(
            status
                .properties
                .as_ref()
                .unwrap()
                .contains_key("subscriberUri")
        );
        assert_eq!(status.x_kubernetes_preserve_unknown_fields, None);
    }

    #[test]
    fn no_schema_has_a_reference_or_a_default() {
        for file in crd_files().unwrap() {
            for needle in ["$ref", "default:", "nullable", "anyOf", "oneOf"] {
                assert!(
                    !file.text.contains(needle),
                    "{} contains {needle}",
                    file.name
                );
            }
        }
    }
}
