//! The config-source interface: what a source of configuration hands the
//! server ([`Snapshot`]) and what the server tells it back ([`Report`]).

use std::future::Future;

use cebus_api::{Config, ConfigError};

/// Asks a running server's config source to look at its config now rather than
/// at its next poll (what `cebus run` does on SIGHUP). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Reload(std::sync::Arc<tokio::sync::Notify>);

impl Reload {
    /// Reads the config again now, changed or not. A request made while a
    /// reload runs gives one more reload after it.
    pub fn now(&self) {
        self.0.notify_one();
    }

    /// Waits for the next request.
    pub async fn requested(&self) {
        self.0.notified().await;
    }
}

/// Where the running config comes from: files (`cebus run -f`, [`super::FileSource`])
/// or, later, the Kubernetes API. The server takes one snapshot to start with,
/// then applies each next one, and reports what became of every snapshot.
///
/// The futures are `Send`: the server runs the source in a task of its own.
/// `next` is dropped at shutdown, so it must leave the source usable (or at
/// least droppable) when cancelled at an `.await`.
pub trait ConfigSource: Send + 'static {
    /// The config to start with. An error stops the start (the errors are what
    /// `cebus run` prints).
    fn first(&mut self) -> impl Future<Output = Result<Snapshot, Vec<ConfigError>>> + Send;

    /// Waits for the next config to apply; `None` when the source has ended
    /// (the server then keeps the config it runs).
    fn next(&mut self) -> impl Future<Output = Option<Snapshot>> + Send;

    /// What became of the last snapshot `first` or `next` gave: applied (all
    /// of it or the valid part), or rejected, and each object's state. Called
    /// once per snapshot, before the next `next`.
    fn report(&mut self, report: Report) -> impl Future<Output = ()> + Send;

    /// A handle that asks this source to look now. Sources that are always
    /// current (a watch) may return one nobody listens to (the default).
    fn reloader(&self) -> Reload {
        Reload::default()
    }
}

/// One whole config as a source sees it at one moment: every object, each with
/// where it came from ([`cebus_api::Located`]: file and document in file mode;
/// a Kubernetes source puts a name for the object there), and how errors in it
/// are to be handled.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Every object, loaded (decoded) but not yet validated: the server
    /// validates, plans and checks it.
    pub config: Config,
    /// What an invalid object does to the rest.
    pub admission: Admission,
}

/// What an invalid object does to the rest of its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// All or nothing: any error rejects the whole snapshot and the config in
    /// force stays (file mode: a bad edit keeps the last good config).
    Whole,
    /// Object by object: an invalid object — and any object that then fails
    /// because it needs it, such as the triggers of an invalid broker — is left
    /// out and reported; the rest applies. An object is never applied in part.
    /// An invalid object is left out, not kept at an older version: a source
    /// that wants the older version hands it over instead.
    PerObject,
}

/// What became of a snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Whether it was applied (with [`Admission::PerObject`], its valid part).
    /// When false, the config in force before it still runs.
    pub applied: bool,
    /// Every error found, in the order found: what file mode logs.
    pub errors: Vec<ConfigError>,
    /// Each object of the snapshot and its state, in the snapshot's order.
    pub objects: Vec<(ObjectKey, ObjectState)>,
}

/// Names one object: `kind`, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The object's `kind`, e.g. `Trigger`.
    pub kind: &'static str,
    /// Its namespace (defaulted).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ObjectKey {
    /// `Kind namespace/name`, as [`ConfigError::object`] names it.
    pub fn label(&self) -> String {
        cebus_api::error::object_label(self.kind, &self.namespace, &self.name)
    }
}

/// The state of one object after a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectState {
    /// Valid and running as given.
    Ready,
    /// Invalid: these errors keep it out (it is not running as given).
    Invalid(Vec<ConfigError>),
    /// Valid, but not applied: another object of an [`Admission::Whole`]
    /// snapshot was invalid, so the config in force before stays.
    Held,
}
