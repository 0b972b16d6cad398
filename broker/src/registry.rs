//! Every running broker by `namespace/name`, and how a config plan is
//! applied to them: brokers are added, replaced (new channel) or removed, and
//! each applies its own triggers. The table by namespace backs the ingress
//! lookup and the [`Port`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;

use crate::broker::BrokerRuntime;
use crate::fanout::fan_out;
use crate::plan::{BrokerPlan, Plan};
use crate::port::{Incoming, IngestError, Ingesting, Inlet, Port};
use crate::shared::Shared;

// === impl Registry ===

/// Every running broker, by `namespace/name`.
#[derive(Debug)]
pub struct Registry {
    brokers: ArcSwap<HashMap<String, Arc<BrokerRuntime>>>,
    /// The same brokers by namespace then name, for the ingress lookup and the
    /// port.
    by_namespace: Arc<ByNamespace>,
    /// Hands events in through `by_namespace`.
    port: Port,
    ready: AtomicBool,
    shared: Arc<Shared>,
    // Serialises config applications (reload vs shutdown).
    apply_lock: Mutex<()>,
}

impl Registry {
    /// An empty registry.
    pub fn new(shared: Arc<Shared>) -> Registry {
        let by_namespace = Arc::new(ByNamespace::default());
        // Unsized here: the port knows the table only as an `Inlet`.
        let inlet: Weak<dyn Inlet> = Arc::<ByNamespace>::downgrade(&by_namespace);
        Registry {
            brokers: ArcSwap::from_pointee(HashMap::new()),
            by_namespace,
            port: Port::new(inlet),
            ready: AtomicBool::new(false),
            shared,
            apply_lock: Mutex::new(()),
        }
    }

    /// The broker at `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<BrokerRuntime>> {
        self.by_namespace.get(namespace, name)
    }

    /// The port through which sources hand events to these brokers.
    pub fn port(&self) -> Port {
        self.port.clone()
    }

    /// Keys of every running broker.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.brokers.load().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Whether a config has been applied.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Makes the running brokers and triggers match `plan`, one change at a time.
    pub fn apply(&self, plan: &Plan) {
        let _guard = self.apply_lock.lock().expect("apply lock poisoned");
        let current = self.brokers.load_full();
        let mut next: HashMap<String, Arc<BrokerRuntime>> = HashMap::new();
        for (key, bp) in &plan.brokers {
            let broker = match current.get(key) {
                Some(b) if b.channel_plan == bp.channel => b.clone(),
                Some(b) => {
                    // A new class or new channel settings: a new channel. The old
                    // broker drains what it holds; a durable backlog stays in the
                    // stream for the new one.
                    tracing::info!(broker = %key, "broker channel changed; replacing the broker");
                    b.stop();
                    self.start(bp)
                }
                None => {
                    tracing::info!(broker = %key, "broker added");
                    self.start(bp)
                }
            };
            broker.apply(bp);
            next.insert(key.clone(), broker);
        }
        for (key, broker) in current.iter() {
            if !plan.brokers.contains_key(key) {
                tracing::info!(broker = %key, "broker removed; draining its channel");
                broker.stop();
            }
        }
        let mut by_namespace: HashMap<String, HashMap<String, Arc<BrokerRuntime>>> = HashMap::new();
        for (key, b) in &plan.brokers {
            by_namespace
                .entry(b.namespace.clone())
                .or_default()
                .insert(b.name.clone(), next[key].clone());
        }
        self.by_namespace.0.store(Arc::new(by_namespace));
        self.brokers.store(Arc::new(next));
        self.ready.store(true, Ordering::Release);
    }

    /// Starts the broker `plan` asks for, with its fan-out loop.
    fn start(&self, plan: &BrokerPlan) -> Arc<BrokerRuntime> {
        let broker = BrokerRuntime::new(plan, self.shared.clone(), self.port.clone());
        self.shared.tasks.spawn(fan_out(broker.clone()));
        broker
    }

    /// Stops every broker: channels refuse new events and drain.
    pub fn close_all(&self) {
        let _guard = self.apply_lock.lock().expect("apply lock poisoned");
        for broker in self.brokers.load().values() {
            broker.stop();
        }
    }
}

// === impl ByNamespace ===

/// The running brokers by namespace, then name: replaced whole on every
/// config change, read without locks.
#[derive(Debug, Default)]
struct ByNamespace(ArcSwap<HashMap<String, HashMap<String, Arc<BrokerRuntime>>>>);

impl ByNamespace {
    /// The broker at `namespace/name`.
    fn get(&self, namespace: &str, name: &str) -> Option<Arc<BrokerRuntime>> {
        // Read without locks or allocation: namespace, then name.
        self.0.load().get(namespace)?.get(name).cloned()
    }
}

impl Inlet for ByNamespace {
    fn ingest<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        events: Vec<Incoming>,
    ) -> Ingesting<'a> {
        let broker = self.get(namespace, name);
        Box::pin(async move {
            let Some(broker) = broker else {
                return Err(IngestError::NotRunning {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                });
            };
            broker.ingest(events).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testkit::{self, BROKER, NS, broker_plan, incoming, linear, settle, trigger};

    fn plan_of(brokers: &[BrokerPlan]) -> Plan {
        Plan {
            brokers: brokers.iter().map(|b| (b.key(), b.clone())).collect(),
            ..Plan::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn brokers_are_added_kept_and_removed_and_the_port_finds_them_by_name() {
        let registry = Registry::new(Shared::for_tests(testkit::limits(100)));
        assert!(!registry.is_ready());
        let port = registry.port();
        let missing = port.send(NS, BROKER, vec![incoming("a")]).await;
        assert!(matches!(missing, Err(IngestError::NotRunning { .. })));

        // One trigger that holds its event for a second.
        let slow = broker_plan(&[trigger("t", linear(1, Duration::from_secs(1)), false)]);
        registry.apply(&plan_of(std::slice::from_ref(&slow)));
        assert!(registry.is_ready());
        assert_eq!(registry.keys(), ["team/default"]);
        let broker = registry.get(NS, BROKER).expect("running");
        assert!(registry.get(NS, "other").is_none());
        assert!(registry.get("elsewhere", BROKER).is_none());
        port.send(NS, BROKER, vec![incoming("a")])
            .await
            .expect("stored through the port");
        settle().await;
        assert_eq!(broker.pending(), 1, "the port handed it to this broker");

        // The same channel: the same broker.
        registry.apply(&plan_of(&[slow]));
        let again = registry.get(NS, BROKER).expect("running");
        assert!(Arc::ptr_eq(&broker, &again));

        registry.apply(&plan_of(&[]));
        assert!(registry.get(NS, BROKER).is_none());
        assert!(registry.keys().is_empty());
        assert!(
            matches!(
                broker.ingest(vec![incoming("b")]).await,
                Err(IngestError::Channel(cebus_channels::ChannelError::Closed))
            ),
            "a removed broker refuses events"
        );
        let gone = port.send(NS, BROKER, vec![incoming("c")]).await;
        assert!(matches!(gone, Err(IngestError::NotRunning { .. })));
    }

    #[tokio::test]
    async fn close_all_stops_every_broker_but_keeps_them_for_lookups() {
        let registry = Registry::new(Shared::for_tests(testkit::limits(100)));
        registry.apply(&plan_of(&[broker_plan(&[])]));
        registry.close_all();
        let broker = registry.get(NS, BROKER).expect("still listed");
        assert!(matches!(
            broker.ingest(vec![incoming("a")]).await,
            Err(IngestError::Channel(cebus_channels::ChannelError::Closed))
        ));
    }
}
