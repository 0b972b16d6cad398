//! End-to-end tests of channel templates: an `MTChannelBasedBroker` whose
//! ConfigMap's `channel-template-spec` is an InMemoryChannel, a KafkaChannel
//! (against the real Kafka, the topic checked with `kcat`) or a
//! NatsJetStreamChannel (against the real nats-server, the stream checked with
//! `nats-py`), with the servers in Knative's ConfigMaps of `knative-eventing`.
//! One NatsJetStreamChannel test runs its own nats-server in operator mode with
//! mutual TLS, its `.creds` file and certificates in `config-nats`' Secrets.
//!
//! `scripts/test` starts Kafka and nats-server and sets `KAFKA_BOOTSTRAP` and
//! `NATS_URL`; nats-server and openssl must be installed. Without them these
//! tests fail, they never skip.

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cebus_e2e::{
    Cebus, NatsOperator, PrivateNats, Sink, cloudevents_python, kafka_bootstrap, kcat,
    kcat_consume, make_certificates, nats_mutual_tls_config, nats_url, post_binary,
    post_until_accepted, run_tool, unique, wait_for_id,
};

const WAIT: Duration = Duration::from_secs(60);

/// Knative YAML: channel-based broker `broker` whose ConfigMap
/// `knative-eventing/<broker>-channel` holds `template` (lines indented by 4
/// here), the `system` documents, and one trigger delivering to `subscriber`.
fn channel_broker_yaml(broker: &str, template: &str, system: &str, subscriber: &str) -> String {
    let template: String = template.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {broker}-channel\n  \
         namespace: knative-eventing\ndata:\n  channel-template-spec: |\n{template}---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {broker}\n  \
         annotations:\n    eventing.knative.dev/broker.class: MTChannelBasedBroker\nspec:\n  \
         config:\n    apiVersion: v1\n    kind: ConfigMap\n    name: {broker}-channel\n    \
         namespace: knative-eventing\n---\n{system}---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: all\nspec:\n  \
         broker: {broker}\n  subscriber:\n    uri: {subscriber}\n"
    )
}

#[tokio::test]
async fn an_in_memory_channel_template_runs_in_memory() {
    let sink = Sink::start().await;
    let broker = unique("imc");
    let cebus = Cebus::start(&channel_broker_yaml(
        &broker,
        "apiVersion: messaging.knative.dev/v1\nkind: InMemoryChannel",
        "",
        &sink.url(),
    ))
    .await;
    let (status, body) = post_binary(
        &cebus.broker_url("default", &broker),
        "imc-1",
        "order.created",
        "{}",
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(got[0].event().id(), "imc-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_channel_template_runs_the_broker_on_knatives_channel_topic() {
    let sink = Sink::start().await;
    let broker = unique("kc");
    let bootstrap = kafka_bootstrap();
    // Knative's KafkaChannel reads its servers from this ConfigMap.
    let system = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kafka-channel-config\n  \
         namespace: knative-eventing\ndata:\n  bootstrap.servers: \"{bootstrap}\"\n"
    );
    let cebus = Cebus::start(&channel_broker_yaml(
        &broker,
        "apiVersion: messaging.knative.dev/v1beta1\nkind: KafkaChannel\nspec:\n  \
         numPartitions: 3\n  replicationFactor: 1",
        &system,
        &sink.url(),
    ))
    .await;
    post_until_accepted(
        &cebus.broker_url("default", &broker),
        "kc-1",
        "order.created",
    )
    .await;
    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(got[0].event().id(), "kc-1");

    // The topic Knative's KafkaChannel of this broker would have, with the
    // template's partitions, holding the event in binary mode.
    let topic = format!("knative-messaging-kafka.default.{broker}-kne-trigger");
    let (b, t) = (bootstrap.clone(), topic.clone());
    let metadata = tokio::task::spawn_blocking(move || {
        run_tool(kcat().args(["-L", "-b", &b, "-t", &t, "-J"]), b"", WAIT)
    })
    .await
    .unwrap();
    let metadata: serde_json::Value =
        serde_json::from_slice(&metadata.stdout).expect("kcat -L -J prints JSON");
    let topics = metadata["topics"].as_array().expect("topics");
    let ours = topics
        .iter()
        .find(|x| x["topic"] == topic.as_str())
        .unwrap_or_else(|| panic!("no topic {topic} in {metadata}"));
    assert!(ours["error"].is_null(), "{ours}");
    assert_eq!(
        ours["partitions"].as_array().map(Vec::len),
        Some(3),
        "{ours}"
    );

    let records = kcat_consume(&topic).await;
    let record = records.iter().find(|r| {
        // kcat -J lists headers as [name, value, name, value, ...].
        r["headers"]
            .as_array()
            .is_some_and(|h| h.chunks(2).any(|c| c[0] == "ce_id" && c[1] == "kc-1"))
    });
    assert!(record.is_some(), "no record of kc-1 in: {records:?}");
}

/// Prints the JetStream stream `argv[2]`'s info as JSON (nats-py).
const STREAM_INFO: &str = r#"
import asyncio, json, sys
import nats

async def main(url, name):
    nc = await nats.connect(url, connect_timeout=10)
    info = await nc.jetstream().stream_info(name)
    print(json.dumps(info.as_dict(), default=str))
    await nc.drain()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_jetstream_channel_template_runs_the_broker_on_a_stream() {
    let sink = Sink::start().await;
    let broker = unique("jsc");
    let url = nats_url();
    // Knative's NatsJetStreamChannel reads its URL from this ConfigMap; connOpts
    // are accepted as Knative's default ConfigMap has them.
    let system = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-nats\n  \
         namespace: knative-eventing\ndata:\n  eventing-nats: |\n    url: {url}\n    \
         connOpts:\n      retryOnFailedConnect: true\n      maxReconnects: 5\n"
    );
    let cebus = Cebus::start(&channel_broker_yaml(
        &broker,
        "apiVersion: messaging.knative.dev/v1alpha1\nkind: NatsJetStreamChannel\nspec:\n  \
         stream:\n    config:\n      storage: Memory\n      maxMsgs: 1000\n      maxAge: 1h\n      \
         duplicateWindow: 1m",
        &system,
        &sink.url(),
    ))
    .await;
    post_until_accepted(
        &cebus.broker_url("default", &broker),
        "js-1",
        "order.created",
    )
    .await;
    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(got[0].event().id(), "js-1");

    // The broker's stream carries the template's settings and stored the event.
    let stream = format!("cebus_default_{broker}");
    let info = tokio::task::spawn_blocking(move || {
        run_tool(
            Command::new(cloudevents_python()).args(["-c", STREAM_INFO, &url, &stream]),
            b"",
            WAIT,
        )
    })
    .await
    .unwrap();
    let info: serde_json::Value =
        serde_json::from_slice(&info.stdout).expect("stream info as JSON");
    let config = &info["config"];
    assert_eq!(config["storage"], "memory", "{info}");
    assert_eq!(config["max_msgs"], 1000, "{info}");
    assert_eq!(config["max_age"], 3_600_000_000_000u64, "{info}");
    assert_eq!(config["duplicate_window"], 60_000_000_000u64, "{info}");
    assert_eq!(config["retention"], "interest", "{info}");
    assert!(
        info["state"]["last_seq"].as_u64() >= Some(1),
        "the event went through the stream: {info}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_jetstream_channel_template_uses_config_nats_creds_and_mutual_tls() {
    // A server that wants both a client certificate its CA signed and a user
    // of its operator (the .creds file).
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let operator = NatsOperator::new();
    let nats = PrivateNats::start_with_config(Some(&format!(
        "{}{}",
        operator.config,
        nats_mutual_tls_config(dir.path())
    )));
    let url = format!("tls://127.0.0.1:{}", nats.port);
    // eventing-natss' layout: the CA inline as base64, the .creds file and the
    // client certificate in Secrets of knative-eventing (the latter as a
    // kubernetes.io/tls Secret, base64 under data, as Kubernetes stores it).
    let system = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-nats\n  \
         namespace: knative-eventing\ndata:\n  eventing-nats: |\n    url: {url}\n    \
         connOpts: {{retryOnFailedConnect: true, maxReconnects: 5}}\n    auth:\n      \
         credentialFile:\n        secret:\n          name: nats-creds\n      tls:\n        \
         secret:\n          name: nats-client-tls\n    tls:\n      caBundle: {ca}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: nats-creds\n  namespace: \
         knative-eventing\nstringData:\n  nats.creds: {creds}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: nats-client-tls\n  namespace: \
         knative-eventing\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {crt}\n  tls.key: {key}\n",
        ca = STANDARD.encode(read("ca.pem")),
        // A JSON string is a YAML double-quoted scalar: the file keeps its lines.
        creds = serde_json::to_string(&operator.creds).unwrap(),
        crt = STANDARD.encode(read("client.pem")),
        key = STANDARD.encode(read("client.key")),
    );
    let sink = Sink::start().await;
    let broker = unique("jsc-auth");
    let cebus = Cebus::start(&channel_broker_yaml(
        &broker,
        "apiVersion: messaging.knative.dev/v1alpha1\nkind: NatsJetStreamChannel\nspec:\n  \
         stream:\n    config:\n      storage: Memory",
        &system,
        &sink.url(),
    ))
    .await;
    post_until_accepted(
        &cebus.broker_url("default", &broker),
        "js-auth-1",
        "order.created",
    )
    .await;
    wait_for_id(&sink, "js-auth-1", WAIT).await;
    drop(nats);
}
