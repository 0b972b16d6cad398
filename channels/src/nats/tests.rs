//! The NATS channel against a real nats-server (`$NATS_URL`): the channel and
//! cursor contracts, stream limits, de-duplication, an unreachable server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cebus_events::Event;

use super::channel::NatsChannel;
use cebus_api::NatsStorageKind;

use super::config::{NatsSettings, test_config};
use crate::channel::{Channel, ChannelError, Envelope};
use crate::contract::{self, Bound, run_all};

/// `$NATS_URL`; `scripts/test` starts nats-server and sets it. Never skips.
fn nats_url() -> String {
    std::env::var("NATS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "NATS_URL is not set: run scripts/test, or by hand: scripts/nats.sh start && \
             eval \"$(scripts/nats.sh env)\""
            )
        })
}

/// Settings for a stream no other test (or test run) uses.
fn fresh(window: usize) -> NatsSettings {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!(
        "t{}x{}x{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut s = NatsSettings::new(test_config(vec![nats_url()]), "contract", &name);
    s.window = window;
    s.config.storage = NatsStorageKind::Memory;
    s
}

#[tokio::test]
async fn nats_channel_passes_the_contract() {
    run_all(
        |capacity| NatsChannel::connect(fresh(capacity)),
        Bound::Window,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cursors_pass_the_contract() {
    let mut s = fresh(100);
    // A held record comes back after ack_wait: keep the test short.
    s.ack_wait = Duration::from_secs(1);
    contract::cursors(NatsChannel::connect(s)).await;
}

#[tokio::test]
async fn a_stream_at_its_message_limit_refuses_appends_as_full() {
    let mut s = fresh(10);
    s.config.max_messages = Some(2);
    let c = NatsChannel::connect(s);
    c.append(vec![Envelope::new(Event::with_required("1", "/s", "t"))])
        .await
        .unwrap();
    c.append(vec![Envelope::new(Event::with_required("2", "/s", "t"))])
        .await
        .unwrap();
    let err = c
        .append(vec![Envelope::new(Event::with_required("3", "/s", "t"))])
        .await
        .unwrap_err();
    assert!(matches!(err, ChannelError::Full { .. }), "{err:?}");
    // An acknowledged event leaves the stream (interest retention): room again.
    let r = c.recv().await.unwrap();
    c.ack(r.offset);
    let mut accepted = false;
    for _ in 0..50 {
        if c.append(vec![Envelope::new(Event::with_required("3", "/s", "t"))])
            .await
            .is_ok()
        {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(accepted, "an ack frees room in the stream");
}

#[tokio::test]
async fn producer_retries_are_stored_once() {
    let c = NatsChannel::connect(fresh(10));
    let e = Envelope::new(Event::with_required("same", "/s", "t"));
    c.append(vec![e.clone()]).await.unwrap();
    c.append(vec![e.clone()]).await.unwrap();
    c.append(vec![Envelope::new(Event::with_required("next", "/s", "t"))])
        .await
        .unwrap();
    let a = c.recv().await.unwrap();
    let b = c.recv().await.unwrap();
    assert_eq!(a.envelope.event.id(), "same");
    assert_eq!(b.envelope.event.id(), "next", "the retry was de-duplicated");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_not_a_hang() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = fresh(10);
    s.config.servers = vec![format!("nats://127.0.0.1:{port}")];
    let c = NatsChannel::connect(s);
    let err = c
        .append(vec![Envelope::new(Event::with_required("1", "/s", "t"))])
        .await
        .unwrap_err();
    assert!(matches!(err, ChannelError::Unavailable { .. }), "{err:?}");
    c.close();
}
