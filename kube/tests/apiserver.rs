//! Against a real kube-apiserver (`scripts/k8s.sh`, which `scripts/test` starts and
//! whose `env` sets `KUBECONFIG`): the generated CRDs install, the Knative docs'
//! Broker and Trigger YAML is accepted as written and read back unchanged (nothing
//! pruned), the status subresource takes a status, and `kubectl get brokers` shows
//! URL and READY. Never skips: without `KUBECONFIG` every test fails, naming the
//! script to run.

mod support;

use anyhow::{Context, Result, ensure};
use cebus_api::types::{BrokerSpec, TriggerSpec};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use support::{MANAGER, client, fresh_namespace, install_crds};

/// Knative's docs, "Brokers" (a Broker with the class annotation, a config and a
/// delivery spec); only the dead-letter sink's namespace is left to the referrer
/// and the backoff delay is an ISO-8601 duration cebus accepts.
const DOCS_BROKER: &str = r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  annotations:
    eventing.knative.dev/broker.class: MTChannelBasedBroker
  name: default
spec:
  config:
    apiVersion: v1
    kind: ConfigMap
    name: config-br-default-channel
    namespace: knative-eventing
  delivery:
    deadLetterSink:
      ref:
        kind: Service
        name: example-service
        apiVersion: v1
      uri: example-uri
    retry: 5
    backoffPolicy: exponential
    backoffDelay: PT0.5S
"#;

/// Knative's docs, "Triggers" (a legacy attribute filter, a Knative Service
/// subscriber) …
const DOCS_TRIGGER: &str = r#"
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: my-service-trigger
spec:
  broker: default
  filter:
    attributes:
      type: dev.knative.foo.bar
      myextension: my-extension-value
  subscriber:
    ref:
      apiVersion: serving.knative.dev/v1
      kind: Service
      name: my-service
"#;

/// … and "Filters" (the SubscriptionsAPI dialects, nested: the CRD keeps what is
/// inside `any` as written).
const DOCS_TRIGGER_FILTERS: &str = r#"
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: my-filters-trigger
spec:
  broker: default
  filters:
    - cesql: "source LIKE '%commerce%' AND type IN ('order.created', 'order.updated', 'order.canceled')"
    - any:
        - exact:
            type: com.github.push
        - exact:
            type: com.gitlab.push
    - not:
        prefix:
          source: /test
  subscriber:
    uri: http://127.0.0.1:9/orders
"#;

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("eventing.knative.dev", "v1", kind),
        plural,
    )
}

/// Parses one YAML document into an object for the kube client.
fn object(yaml: &str) -> Result<DynamicObject> {
    let value: Value = serde_saphyr::from_str(yaml).context("parsing the test YAML")?;
    Ok(serde_json::from_value(value)?)
}

/// The object's `spec` as the api type cebus loads it with.
fn spec<T: serde::de::DeserializeOwned>(object: &DynamicObject) -> Result<T> {
    let spec = object
        .data
        .get("spec")
        .cloned()
        .context("object without spec")?;
    serde_json::from_value(spec).context("spec does not parse as the api type")
}

#[tokio::test]
async fn knative_docs_broker_and_triggers_are_stored_as_written() -> Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let ns = fresh_namespace(&client, "cebus-docs").await?;
    let brokers: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &resource("Broker", "brokers"));
    let triggers: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &resource("Trigger", "triggers"));

    let broker = object(DOCS_BROKER)?;
    let created = brokers
        .create(&PostParams::default(), &broker)
        .await
        .context("creating the Broker")?;
    let read = brokers.get("default").await?;
    assert_eq!(spec::<BrokerSpec>(&read)?, spec::<BrokerSpec>(&broker)?);
    assert_eq!(
        read.data["spec"], broker.data["spec"],
        "the API server changed the Broker's spec"
    );
    assert_eq!(
        read.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("eventing.knative.dev/broker.class"))
            .map(String::as_str),
        Some("MTChannelBasedBroker")
    );
    assert_eq!(created.metadata.generation, Some(1));

    for yaml in [DOCS_TRIGGER, DOCS_TRIGGER_FILTERS] {
        let trigger = object(yaml)?;
        let name = trigger.metadata.name.clone().unwrap_or_default();
        triggers
            .create(&PostParams::default(), &trigger)
            .await
            .with_context(|| format!("creating Trigger {name}"))?;
        let read = triggers.get(&name).await?;
        assert_eq!(
            spec::<TriggerSpec>(&read)?,
            spec::<TriggerSpec>(&trigger)?,
            "Trigger {name}"
        );
        assert_eq!(
            read.data["spec"], trigger.data["spec"],
            "the API server changed Trigger {name}'s spec"
        );
    }
    let listed = triggers.list(&Default::default()).await?;
    let mut names: Vec<String> = listed
        .items
        .iter()
        .filter_map(|t| t.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["my-filters-trigger", "my-service-trigger"]);

    Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_trigger_without_a_subscriber_is_rejected_by_the_schema() -> Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let ns = fresh_namespace(&client, "cebus-invalid").await?;
    let triggers: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &resource("Trigger", "triggers"));
    let trigger = object(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\nspec:\n  broker: default\n",
    )?;
    let err = triggers
        .create(&PostParams::default(), &trigger)
        .await
        .expect_err("a Trigger without spec.subscriber was accepted");
    let message = err.to_string();
    ensure!(
        message.contains("spec.subscriber"),
        "unexpected error: {message}"
    );

    Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await?;
    Ok(())
}

#[tokio::test]
async fn broker_status_goes_through_the_subresource_and_kubectl_shows_url_and_ready() -> Result<()>
{
    let client = client().await?;
    install_crds(&client).await?;
    let ns = fresh_namespace(&client, "cebus-status").await?;
    let brokers: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &resource("Broker", "brokers"));
    brokers
        .create(&PostParams::default(), &object(DOCS_BROKER)?)
        .await?;

    let url = format!("http://cebus-ingress.cebus.svc.cluster.local/{ns}/default");
    let status = json!({
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "status": {
            "observedGeneration": 1,
            "address": {"url": url},
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-04T00:00:00Z"},
                {"type": "Addressable", "status": "True"}
            ]
        }
    });
    brokers
        .patch_status(
            "default",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await
        .context("writing the Broker's status")?;
    let read = brokers.get("default").await?;
    assert_eq!(read.data["status"]["address"]["url"], json!(url));
    assert_eq!(
        read.metadata.generation,
        Some(1),
        "a status write must not bump the generation"
    );

    // What `kubectl get brokers` prints: the server-side Table of the CRD's columns.
    let request = http::Request::get(format!(
        "/apis/eventing.knative.dev/v1/namespaces/{ns}/brokers"
    ))
    .header(
        http::header::ACCEPT,
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    .body(Vec::new())?;
    let table: Value = client
        .request(request)
        .await
        .context("listing brokers as a Table")?;
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .context("no columnDefinitions")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let cells = table["rows"][0]["cells"].as_array().context("no row")?;
    let cell = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .map(|i| cells[i].clone())
    };
    assert_eq!(
        cell("URL"),
        Some(json!(url)),
        "columns {columns:?}, cells {cells:?}"
    );
    assert_eq!(
        cell("Ready"),
        Some(json!("True")),
        "columns {columns:?}, cells {cells:?}"
    );

    Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await?;
    Ok(())
}
