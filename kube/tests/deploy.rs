//! `deploy/` against a real kube-apiserver (`scripts/k8s.sh`): every manifest the
//! Kustomize base lists passes a server-side dry run (schema, RBAC, admission),
//! and the base lists every generated CRD.

mod support;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use serde_json::Value;
use support::{MANAGER, client, install_crds};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The files `deploy/kustomization.yaml` lists under `resources`.
fn kustomize_resources() -> Result<Vec<String>> {
    let text = std::fs::read_to_string(deploy_dir().join("kustomization.yaml"))?;
    let value: Value = serde_saphyr::from_str(&text)?;
    let resources = value["resources"]
        .as_array()
        .context("kustomization.yaml has no resources")?;
    Ok(resources
        .iter()
        .filter_map(|r| r.as_str().map(String::from))
        .collect())
}

#[test]
fn the_kustomize_base_lists_every_generated_crd() -> Result<()> {
    let listed = kustomize_resources()?;
    for file in cebus_kube::crd_files()? {
        let path = format!("crds/{}", file.name);
        ensure!(
            listed.contains(&path),
            "deploy/kustomization.yaml does not list {path}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn every_manifest_passes_a_server_side_dry_run() -> Result<()> {
    let client = client().await?;
    // A namespaced dry run needs its namespace to exist, and custom kinds their CRD.
    install_crds(&client).await?;
    let mut checked = 0;
    for file in kustomize_resources()? {
        let text = std::fs::read_to_string(deploy_dir().join(&file))
            .with_context(|| format!("reading deploy/{file}"))?;
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).with_context(|| format!("parsing deploy/{file}"))?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let object: DynamicObject = serde_json::from_value(doc)?;
            let types = object
                .types
                .clone()
                .with_context(|| format!("deploy/{file}: object without apiVersion/kind"))?;
            let gvk = GroupVersionKind::try_from(&types)?;
            let name = object
                .metadata
                .name
                .clone()
                .with_context(|| format!("deploy/{file}: {} without a name", types.kind))?;
            let (resource, caps) = pinned_kind(&client, &gvk)
                .await
                .with_context(|| format!("deploy/{file}: discovering {gvk:?}"))?;
            let (api, params): (Api<DynamicObject>, PatchParams) = match caps.scope {
                Scope::Cluster if types.kind == "Namespace" => {
                    // Created for real: the namespaced objects' dry runs need it.
                    (
                        Api::all_with(client.clone(), &resource),
                        PatchParams::apply(MANAGER).force(),
                    )
                }
                Scope::Cluster => (
                    Api::all_with(client.clone(), &resource),
                    PatchParams::apply(MANAGER).force().dry_run(),
                ),
                Scope::Namespaced => {
                    let ns = object.metadata.namespace.clone().with_context(|| {
                        format!("deploy/{file}: {} {name} has no namespace", types.kind)
                    })?;
                    (
                        Api::namespaced_with(client.clone(), &ns, &resource),
                        PatchParams::apply(MANAGER).force().dry_run(),
                    )
                }
            };
            api.patch(&name, &params, &Patch::Apply(&object))
                .await
                .with_context(|| {
                    format!(
                        "deploy/{file}: {} {name} failed the server-side dry run",
                        types.kind
                    )
                })?;
            checked += 1;
        }
    }
    ensure!(checked >= 10, "only {checked} objects in deploy/");
    Ok(())
}
