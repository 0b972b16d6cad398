//! A config barrier for the reload tests: proof that every config change written
//! before it has been applied.

use std::time::{Duration, Instant};

use crate::{Cebus, Sink, post_binary};

/// A config barrier for reload tests: a trigger whose exact filter changes on every
/// `sync`, plus a sink it delivers to. Once a probe of the new generation arrives,
/// every config change written before the `sync` has been applied to that broker
/// (the runtime applies a whole reload before the next, removals before updates).
#[derive(Debug)]
pub struct Barrier {
    sink: Sink,
    generation: std::sync::atomic::AtomicU32,
}

/// The event type of barrier probes of `generation`.
pub fn barrier_type(generation: u32) -> String {
    format!("dev.cebus.e2e.barrier.{generation}")
}

impl Barrier {
    /// A barrier with its own sink.
    pub async fn start() -> Barrier {
        Barrier {
            sink: Sink::start().await,
            generation: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// The file the barrier trigger of `namespace/broker` lives in.
    pub fn file(namespace: &str, broker: &str) -> String {
        format!("zz-barrier-{namespace}-{broker}.yaml")
    }

    /// Rewrites the barrier trigger of `namespace/broker` in `cebus`'s config folder
    /// and posts probes until one of the new generation arrives (panics after `within`).
    pub async fn sync(&self, cebus: &Cebus, namespace: &str, broker: &str, within: Duration) {
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let ty = barrier_type(generation);
        cebus.write(
            &Barrier::file(namespace, broker),
            &format!(
                "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: zz-barrier\n  namespace: {namespace}\nspec:\n  broker: {broker}\n  filters:\n    - exact:\n        type: {ty}\n  subscriber:\n    uri: {}\n",
                self.sink.url()
            ),
        );
        let url = cebus.broker_url(namespace, broker);
        let deadline = Instant::now() + within;
        let mut probe = 0;
        loop {
            probe += 1;
            let (status, body) =
                post_binary(&url, &format!("barrier-{generation}-{probe}"), &ty, "{}").await;
            assert_eq!(status, 202, "barrier probe refused: {body}");
            let step = Instant::now() + Duration::from_millis(100);
            while Instant::now() < step {
                if self
                    .sink
                    .received()
                    .iter()
                    .any(|r| r.header("ce-type") == Some(ty.as_str()))
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(
                Instant::now() < deadline,
                "config change to {namespace}/{broker} not applied within {within:?}"
            );
        }
    }
}
