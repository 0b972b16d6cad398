//! `KubeSource`: the Kubernetes API as cebus' config source (`cebus run
//! --kubernetes`). It watches Brokers, Triggers and ConfigMaps, hands the server
//! a whole snapshot whenever something changed (settled, so a burst of edits is
//! one snapshot), admitted object by object, and writes each object's status
//! back from the server's report.

use std::sync::Arc;
use std::time::Duration;

use cebus_api::ConfigError;
use cebus_broker::control::{Admission, ConfigSource, Report, Snapshot};
use kube::Client;
use kube::api::{ApiResource, GroupVersionKind};
use tokio::sync::Notify;

use crate::address::Ingress;
use crate::report;
use crate::snapshot::{self, Built, Listed};
use crate::watch::{Referents, Tasks, Watched};

/// How `cebus run --kubernetes` watches and reports.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// The namespaces to watch; all when empty.
    pub namespaces: Vec<String>,
    /// Where the ingress is reachable in the cluster (the brokers' URLs).
    pub ingress: Ingress,
    /// How long the objects must stay unchanged before a snapshot is taken.
    pub settle: Duration,
    /// The longest a snapshot waits for changes to settle.
    pub settle_max: Duration,
}

/// Default [`KubeOptions::settle`]: long enough to take a `kubectl apply` of
/// many objects as one snapshot, short enough to apply an edit at once.
pub const SETTLE: Duration = Duration::from_millis(150);
/// Default [`KubeOptions::settle_max`].
pub const SETTLE_MAX: Duration = Duration::from_secs(1);

/// The Kubernetes API as a config source.
pub struct KubeSource {
    client: Client,
    opts: KubeOptions,
    brokers: Watched,
    triggers: Watched,
    config_maps: Watched,
    referents: Referents,
    changed: Arc<Notify>,
    /// The last snapshot handed over, which the next report is about.
    last: Option<Built>,
    /// Set when status writes failed: the next change is handed over even if
    /// the objects look the same, so the writes are tried again.
    retry_status: bool,
    tasks: Tasks,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn eventing(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("eventing.knative.dev", "v1", kind),
        plural,
    )
}

impl KubeSource {
    /// Starts the watches (they connect in the background, retrying with
    /// backoff); [`ConfigSource::first`] waits for their first lists.
    pub fn new(client: Client, opts: KubeOptions) -> KubeSource {
        let changed = Arc::new(Notify::new());
        let mut tasks = Tasks::default();
        let ns = &opts.namespaces;
        let brokers = Watched::start(
            &client,
            &eventing("Broker", "brokers"),
            ns,
            &changed,
            &mut tasks,
        );
        let triggers = Watched::start(
            &client,
            &eventing("Trigger", "triggers"),
            ns,
            &changed,
            &mut tasks,
        );
        // The channel configs of `knative-eventing` are read wherever brokers are.
        let mut cm_namespaces = opts.namespaces.clone();
        let system = cebus_api::channel_template::KNATIVE_SYSTEM_NAMESPACE;
        if !cm_namespaces.is_empty() && !cm_namespaces.iter().any(|n| n == system) {
            cm_namespaces.push(system.to_owned());
        }
        let config_maps = Watched::start(
            &client,
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("", "v1", "ConfigMap"),
                "configmaps",
            ),
            &cm_namespaces,
            &changed,
            &mut tasks,
        );
        KubeSource {
            client,
            opts,
            brokers,
            triggers,
            config_maps,
            referents: Referents::default(),
            changed,
            last: None,
            retry_status: false,
            tasks,
        }
    }

    /// Reads the stores into a snapshot (watching any new referent kind first).
    async fn build(&mut self) -> Built {
        let listed = Listed {
            brokers: self.brokers.objects(),
            triggers: self.triggers.objects(),
            config_maps: self.config_maps.objects(),
        };
        let needed = snapshot::referents(&listed);
        self.referents
            .ensure(&self.client, &needed, &self.changed, &mut self.tasks)
            .await;
        let objects = self.referents.objects();
        let referents = &self.referents;
        snapshot::build(&listed, &self.opts.ingress, |r| {
            referents.lookup(&objects, r)
        })
    }

    /// Waits until the objects changed and then stayed unchanged for `settle`
    /// (at most `settle_max`).
    async fn settled_change(&self) {
        self.changed.notified().await;
        let deadline = tokio::time::Instant::now() + self.opts.settle_max;
        loop {
            let quiet = tokio::time::sleep(self.opts.settle);
            tokio::select! {
                () = self.changed.notified() => {
                    if tokio::time::Instant::now() >= deadline {
                        return;
                    }
                }
                () = quiet => return,
            }
        }
    }

    fn snapshot(&mut self, built: Built) -> Snapshot {
        let config = built.config.clone();
        self.last = Some(built);
        Snapshot {
            config,
            admission: Admission::PerObject,
        }
    }
}

impl ConfigSource for KubeSource {
    async fn first(&mut self) -> Result<Snapshot, Vec<ConfigError>> {
        tracing::info!(namespaces = ?self.opts.namespaces, "waiting for the first lists of Brokers, Triggers and ConfigMaps");
        self.brokers.ready().await;
        self.triggers.ready().await;
        self.config_maps.ready().await;
        let built = self.build().await;
        tracing::info!(
            brokers = built.config.brokers.len(),
            triggers = built.config.triggers.len(),
            "Kubernetes config listed"
        );
        Ok(self.snapshot(built))
    }

    async fn next(&mut self) -> Option<Snapshot> {
        loop {
            self.settled_change().await;
            let built = self.build().await;
            // A status write of ours changes the objects too; the snapshot is
            // handed over anyway (its report then writes nothing), so a status
            // someone else overwrote is put right.
            if !self.retry_status && self.last.as_ref() == Some(&built) {
                continue;
            }
            self.retry_status = false;
            return Some(self.snapshot(built));
        }
    }

    async fn report(&mut self, report: Report) {
        let Some(built) = &self.last else { return };
        for e in &report.errors {
            tracing::warn!(error = %e, "object left out of the config");
        }
        let outcomes = report::outcomes(built, &report);
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string());
        let writes = report::writes(&outcomes, &self.opts.ingress, &now);
        if writes.is_empty() {
            return;
        }
        let count = writes.len();
        let failed = report::write(&self.client, writes).await;
        tracing::debug!(count, failed, "statuses written");
        if failed > 0 {
            tracing::warn!(failed, "status writes failed; retrying at the next change");
            self.retry_status = true;
            // Come back soon even if nothing else changes.
            let changed = self.changed.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                changed.notify_one();
            });
        }
    }
}
