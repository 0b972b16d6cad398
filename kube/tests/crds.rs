//! The committed `deploy/crds/` is what the api types generate: a change to a
//! resource type that is not followed by `cargo run -p cebus-kube --bin cebus-crds`
//! fails here (and so in CI).

use std::path::Path;

#[test]
fn committed_crds_match_the_api_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    let stale = cebus_kube::stale_files(&dir).expect("reading deploy/crds");
    assert!(
        stale.is_empty(),
        "deploy/crds is out of date: {}; regenerate it with \
         `cargo run -p cebus-kube --bin cebus-crds` and commit the result",
        stale.join(", ")
    );
}

#[test]
fn every_committed_crd_parses_back_into_a_custom_resource_definition() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    for file in cebus_kube::crd_files().expect("generating the CRDs") {
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&file.text)
            .unwrap_or_else(|e| panic!("{} does not parse back: {e}", file.name));
        assert_eq!(
            format!("{}.yaml", crd.metadata.name.unwrap_or_default()),
            file.name
        );
    }
}
