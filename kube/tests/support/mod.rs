//! Shared by the tests that run against the test API server (`scripts/k8s.sh`):
//! the client from `$KUBECONFIG`, CRD installation, fresh namespaces, polling.

// Each test binary that includes this module uses only some of it.
#![allow(dead_code)]

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

/// The field manager of everything these tests write.
pub const MANAGER: &str = "cebus-kube-tests";

/// A client for the test API server in `$KUBECONFIG`. Panics when it is unset, or
/// when it points anywhere but loopback (these tests create CRDs and namespaces).
pub async fn client() -> Result<Client> {
    let path = match std::env::var("KUBECONFIG") {
        Ok(path) if !path.is_empty() => path,
        _ => panic!(
            "KUBECONFIG is not set: run scripts/test, which starts the test API server, or \
             by hand: scripts/k8s.sh start && eval \"$(scripts/k8s.sh env)\""
        ),
    };
    let kubeconfig = Kubeconfig::read_from(&path).with_context(|| format!("reading {path}"))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {path}"))?;
    let host = config.cluster_url.host().unwrap_or_default().to_string();
    assert!(
        host == "127.0.0.1" || host == "localhost" || host == "[::1]",
        "KUBECONFIG {path} points at {host}, not at a loopback test API server; \
         these tests write CRDs and namespaces"
    );
    Ok(Client::try_from(config)?)
}

/// Applies every generated CRD (server-side, so concurrent tests agree) and waits
/// until the API server serves them.
pub async fn install_crds(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(MANAGER).force();
    let crds = cebus_kube::crds()?;
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(crd))
            .await
            .with_context(|| format!("applying the CRD {name}"))?;
    }
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        await_true(
            Duration::from_secs(30),
            &format!("CRD {name} Established"),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await?;
                    Ok(crd
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True"))
                }
            },
        )
        .await?;
    }
    Ok(())
}

/// Polls `check` every 100 ms until it returns true, failing after `limit`: the API
/// server reports the state change only by a later read.
pub async fn await_true<F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: not true within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh namespace: without a controller-manager a deleted one stays Terminating,
/// so no two tests (or runs) share one.
pub async fn fresh_namespace(client: &Client, prefix: &str) -> Result<String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .subsec_nanos();
    let name = format!("{prefix}-{}-{nanos}", std::process::id());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(name)
}
