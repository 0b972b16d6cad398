//! The watches: one kube-runtime reflector per kind and namespace (or all
//! namespaces), each waking the config source when anything changed, and the
//! referents of `ref` destinations watched on demand, kind by kind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::address::{Lookup, Referent};

/// A watched kind: its resource and one store per watched scope.
pub struct Watched {
    /// `apiVersion` of the kind.
    api_version: String,
    /// The kind.
    kind: String,
    /// One store per namespace watched (or one for all).
    stores: Vec<Store<DynamicObject>>,
}

/// Aborts the watch tasks when the source is dropped (at shutdown).
#[derive(Default)]
pub struct Tasks(Vec<AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl Watched {
    /// Starts watching `resource` in `namespaces` (all when empty); `changed` is
    /// notified on every change.
    pub fn start(
        client: &Client,
        resource: &ApiResource,
        namespaces: &[String],
        changed: &Arc<Notify>,
        tasks: &mut Tasks,
    ) -> Watched {
        let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().map(|n| Some(n.as_str())).collect()
        };
        let stores = scopes
            .into_iter()
            .map(|ns| {
                let api: Api<DynamicObject> = match ns {
                    Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
                    None => Api::all_with(client.clone(), resource),
                };
                let (store, handle) = watch(api, resource, changed.clone());
                tasks.0.push(handle);
                store
            })
            .collect();
        Watched {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
            stores,
        }
    }

    /// Waits until every store has its first full list.
    pub async fn ready(&self) {
        for store in &self.stores {
            // Only fails when the writer is gone, i.e. the task was aborted.
            let _ = store.wait_until_ready().await;
        }
    }

    /// Every object, as JSON with `apiVersion` and `kind` set (watch events may
    /// omit them).
    pub fn objects(&self) -> Vec<Value> {
        self.stores
            .iter()
            .flat_map(Store::state)
            .filter_map(|o| {
                let mut value = serde_json::to_value(&*o).ok()?;
                let map = value.as_object_mut()?;
                map.insert("apiVersion".into(), self.api_version.clone().into());
                map.insert("kind".into(), self.kind.clone().into());
                Some(value)
            })
            .collect()
    }
}

/// A reflector over `api`: the store, and the task that feeds it. A failed watch
/// is logged and retried with kube-runtime's backoff, never fatal.
fn watch(
    api: Api<DynamicObject>,
    resource: &ApiResource,
    changed: Arc<Notify>,
) -> (Store<DynamicObject>, AbortHandle) {
    let writer = reflector::store::Writer::new(resource.clone());
    let store = writer.as_reader();
    let kind = resource.kind.clone();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                Err(e) => {
                    tracing::warn!(kind = %kind, error = %e, "watch failed; retrying with backoff");
                }
            }
        }
    });
    (store, task.abort_handle())
}

/// How long a kind the API server did not serve is remembered before it is
/// looked up again (a CRD may be installed later).
const NOT_SERVED_FOR: Duration = Duration::from_secs(10);

/// How long a new referent watch may take to list before resolution goes ahead
/// without it (its objects then resolve at its first change).
const FIRST_LIST: Duration = Duration::from_secs(5);

/// A referent kind: watched, or not served (and why, since when).
enum Kind {
    Served(Watched),
    NotServed(String, tokio::time::Instant),
}

/// Watches the kinds `ref` destinations point at, cluster-wide, as they are
/// first needed, so a referent's `status.address.url` is re-read when it changes.
#[derive(Default)]
pub struct Referents {
    kinds: BTreeMap<(String, String), Kind>,
}

impl Referents {
    /// Makes sure every kind of `needed` is watched (or known not to be served).
    pub async fn ensure<'a>(
        &mut self,
        client: &Client,
        needed: impl IntoIterator<Item = &'a Referent>,
        changed: &Arc<Notify>,
        tasks: &mut Tasks,
    ) {
        for r in needed {
            let key = (r.api_version.clone(), r.kind.clone());
            match self.kinds.get(&key) {
                Some(Kind::Served(_)) => continue,
                Some(Kind::NotServed(_, at)) if at.elapsed() < NOT_SERVED_FOR => continue,
                _ => {}
            }
            let (group, version) = match r.api_version.rsplit_once('/') {
                Some((g, v)) => (g, v),
                None => ("", r.api_version.as_str()),
            };
            let gvk = GroupVersionKind::gvk(group, version, &r.kind);
            let kind = match kube::discovery::pinned_kind(client, &gvk).await {
                Ok((resource, _)) => {
                    let watched = Watched::start(client, &resource, &[], changed, tasks);
                    if tokio::time::timeout(FIRST_LIST, watched.ready())
                        .await
                        .is_err()
                    {
                        tracing::warn!(kind = %r.kind, "referent watch not listed yet");
                    }
                    Kind::Served(watched)
                }
                Err(e) => {
                    tracing::warn!(api_version = %r.api_version, kind = %r.kind, error = %e, "ref kind not served");
                    let why = format!(
                        "{} {} is not served by the API server ({e})",
                        r.api_version, r.kind
                    );
                    Kind::NotServed(why, tokio::time::Instant::now())
                }
            };
            self.kinds.insert(key, kind);
        }
    }

    /// The objects of every watched referent kind, keyed for [`Self::lookup`].
    pub fn objects(&self) -> BTreeMap<Referent, Value> {
        let mut out = BTreeMap::new();
        for ((api_version, kind), k) in &self.kinds {
            let Kind::Served(watched) = k else { continue };
            for store in &watched.stores {
                for o in store.state() {
                    let Ok(value) = serde_json::to_value(&*o) else {
                        continue;
                    };
                    let key = Referent {
                        api_version: api_version.clone(),
                        kind: kind.clone(),
                        namespace: o.namespace().unwrap_or_default(),
                        name: o.name_any(),
                    };
                    out.insert(key, value);
                }
            }
        }
        out
    }

    /// What is known of `r`, given [`Self::objects`].
    pub fn lookup<'a>(
        &'a self,
        objects: &'a BTreeMap<Referent, Value>,
        r: &Referent,
    ) -> Lookup<'a> {
        match self.kinds.get(&(r.api_version.clone(), r.kind.clone())) {
            Some(Kind::NotServed(why, _)) => Lookup::NotServed(why),
            None => Lookup::NotServed("its kind was not looked up yet"),
            Some(Kind::Served(_)) => match objects.get(r) {
                Some(o) => Lookup::Found(o),
                None => Lookup::NotFound,
            },
        }
    }
}
