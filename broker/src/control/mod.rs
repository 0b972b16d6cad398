//! The control side of the broker: where the config comes from, how it is
//! admitted, and how it reaches the running brokers and extensions.
//!
//! # The config-source interface
//!
//! A [`ConfigSource`] yields whole config snapshots ([`Snapshot`]: a loaded
//! `cebus_api::Config` whose objects each say where they came from, plus an
//! [`Admission`]) and hears back a [`Report`] for each. The server knows
//! nothing else about it:
//!
//! ```text
//!   source.first()  ──► admit ──► registry + extensions apply ──► source.report()
//!   loop: source.next() ──► admit ──► (apply if admitted) ──► source.report()
//! ```
//!
//! - **Admission** ([`admit`]) validates (`cebus_api::validate`), plans
//!   ([`crate::plan::plan`]) and runs each [`Extension::check`], off the async
//!   threads. With [`Admission::Whole`] one error rejects the snapshot and the
//!   config in force stays; with [`Admission::PerObject`] each invalid object —
//!   and, round by round, each object that then fails for want of it (a
//!   trigger of an invalid broker) — is left out and the rest applies. An
//!   object is never applied in part. An error that names no object (by its
//!   label or its file and document) rejects the snapshot in both modes.
//! - **Report**: whether the snapshot was applied, every error in order, and
//!   each object's [`ObjectState`] (`Ready`, `Invalid(errors)`, or `Held`:
//!   valid but not applied because the whole snapshot was rejected). File mode
//!   logs the errors; a Kubernetes source writes the states to `.status`.
//! - **Snapshots, not deltas**: a source that hears per-object changes (a
//!   Kubernetes watch) keeps its own store and yields the whole set when it
//!   changes (coalescing bursts); [`crate::registry::Registry::apply`] diffs it
//!   against what runs, so untouched brokers and triggers are not touched.
//! - **Reload requests** (SIGHUP) go to the source through
//!   [`ConfigSource::reloader`].
//!
//! [`FileSource`] is file mode: it polls, settles a change before handing it
//! over, and keeps the last good config when a file is momentarily empty or
//! does not parse (it hands over only configs that load; load errors are
//! logged, never applied). It uses [`Admission::Whole`], as cebus always has.

mod admit;
mod files;
mod source;

use std::sync::Arc;

use cebus_api::ConfigError;
use tokio_util::sync::CancellationToken;

pub use admit::{admit, check, load_plan};
pub use files::{FileSource, SETTLE};
pub use source::{Admission, ConfigSource, ObjectKey, ObjectState, Reload, Report, Snapshot};

use crate::plan::{Plan, PlanOptions};
use crate::registry::Registry;

/// Something that runs beside the brokers from the same config — sources, for
/// example. The server checks it with every config, applies it after the brokers,
/// serves its routes on the main listener and stops it on shutdown.
pub trait Extension: Send + Sync + 'static {
    /// Extra checks of a planned config; any error rejects the config (at start:
    /// the server does not start; on reload: the last good config stays). With
    /// [`Admission::PerObject`], an error should name its object.
    fn check(&self, plan: &Plan) -> Vec<ConfigError>;
    /// Routes served on the main listener, e.g. `/webhooks/{namespace}/{name}`.
    fn routes(&self, registry: Arc<Registry>) -> axum::Router;
    /// Applies a checked config; `registry` reaches the running brokers.
    fn apply(&self, plan: &Plan, registry: &Arc<Registry>);
    /// Stops whatever the extension runs (called before brokers drain).
    fn stop(&self);
}

/// Admits snapshots and applies them to the brokers and extensions.
#[derive(Clone)]
pub(crate) struct Applier {
    /// How configs are planned.
    pub(crate) opts: PlanOptions,
    /// The running brokers.
    pub(crate) registry: Arc<Registry>,
    /// Checked with every config, applied after the brokers.
    pub(crate) extensions: Vec<Arc<dyn Extension>>,
}

impl Applier {
    /// [`admit`] on the blocking pool (validating and planning thousands of
    /// triggers takes a while). `None` if it panicked.
    pub(crate) async fn admit(&self, snapshot: Snapshot) -> Option<(Option<Plan>, Report)> {
        let (opts, extensions) = (self.opts.clone(), self.extensions.clone());
        match tokio::task::spawn_blocking(move || admit(snapshot, &opts, &extensions)).await {
            Ok(admitted) => Some(admitted),
            Err(e) => {
                tracing::error!(error = %e, "config admission failed");
                None
            }
        }
    }

    /// Brings the brokers, then the extensions, in line with `plan`.
    pub(crate) fn apply(&self, plan: &Plan) {
        self.registry.apply(plan);
        for ext in &self.extensions {
            ext.apply(plan, &self.registry);
        }
    }
}

/// Applies each snapshot `source` yields until `stop` or the source ends.
pub(crate) async fn run<S: ConfigSource>(mut source: S, applier: Applier, stop: CancellationToken) {
    loop {
        let snapshot = tokio::select! {
            () = stop.cancelled() => return,
            snapshot = source.next() => snapshot,
        };
        let Some(snapshot) = snapshot else {
            tracing::info!("the config source ended; the config in force stays");
            return;
        };
        let report = match applier.admit(snapshot).await {
            Some((Some(plan), report)) => {
                applier.apply(&plan);
                report
            }
            Some((None, report)) => report,
            None => Report::default(),
        };
        source.report(report).await;
    }
}
