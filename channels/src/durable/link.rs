//! How a durable channel connects: in a background task that retries with
//! backoff until the backend is set up (or the channel is closed), while a
//! [`Link`] tells `append` whether it is ready and, if not, why — the reason
//! ingress gives with its 503s.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::channel::ChannelError;

/// How long `append` waits for a channel that is still connecting.
pub(crate) const READY_WAIT: Duration = Duration::from_secs(2);
/// First wait between two attempts to set up the backend.
const SETUP_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two attempts to set up the backend.
const SETUP_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where the background task is: connecting, or ready with its clients `T`.
#[derive(Debug)]
pub(crate) enum Link<T> {
    /// Not ready; the reason is the last failure.
    Down(String),
    /// Set up: the clients to use.
    Ready(Arc<T>),
}

/// The backend is unavailable for `reason` (ingress answers 503).
pub(crate) fn unavailable(reason: impl Into<String>) -> ChannelError {
    ChannelError::Unavailable {
        reason: reason.into(),
    }
}

/// The clients once ready, waiting up to [`READY_WAIT`] while connecting.
pub(crate) async fn ready<T>(link: &watch::Receiver<Link<T>>) -> Result<Arc<T>, ChannelError> {
    let mut wait = link.clone();
    let _ = tokio::time::timeout(READY_WAIT, wait.wait_for(|l| matches!(l, Link::Ready(_)))).await;
    match &*link.borrow() {
        Link::Ready(clients) => Ok(clients.clone()),
        Link::Down(reason) => Err(unavailable(reason.clone())),
    }
}

/// Runs `attempt` until it succeeds, with backoff between attempts; each
/// failure is logged (`failed`, for the log `channel`) and becomes the link's
/// reason. `None` once the channel is closed.
pub(crate) async fn retry<L, T, F, Fut>(
    channel: &str,
    link: &watch::Sender<Link<L>>,
    close: &mut watch::Receiver<bool>,
    failed: &str,
    mut attempt: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut delay = SETUP_BACKOFF_MIN;
    loop {
        if *close.borrow() {
            return None;
        }
        let result = tokio::select! {
            r = attempt() => r,
            _ = close.changed() => return None,
        };
        match result {
            Ok(v) => return Some(v),
            Err(reason) => {
                tracing::warn!(%channel, %reason, "{failed}; retrying");
                let _ = link.send(Link::Down(reason));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = close.changed() => return None,
        }
        delay = (delay * 2).min(SETUP_BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn attempts_back_off_and_each_failure_is_the_reason() {
        let (tx, rx) = watch::channel(Link::<()>::Down("connecting".into()));
        let (_close_tx, mut close) = watch::channel(false);
        let started = tokio::time::Instant::now();
        let mut n = 0;
        let got = retry("c", &tx, &mut close, "set-up failed", || {
            n += 1;
            let k = n;
            async move {
                if k < 4 {
                    Err(format!("attempt {k}"))
                } else {
                    Ok(k)
                }
            }
        })
        .await;
        assert_eq!(got, Some(4));
        // 100 + 200 + 400 ms between the four attempts.
        assert_eq!(started.elapsed(), Duration::from_millis(700));
        assert!(matches!(&*rx.borrow(), Link::Down(r) if r == "attempt 3"));
        let err = ready(&rx).await.unwrap_err();
        assert_eq!(err, unavailable("attempt 3"));
    }

    #[tokio::test(start_paused = true)]
    async fn closing_stops_the_attempts() {
        let (tx, _rx) = watch::channel(Link::<()>::Down("connecting".into()));
        let (close_tx, mut close) = watch::channel(false);
        let stop = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            close_tx.send(true).unwrap();
        });
        let got: Option<()> = retry("c", &tx, &mut close, "failed", || async {
            Err("down".to_owned())
        })
        .await;
        assert_eq!(got, None);
        stop.await.unwrap();
    }

    #[tokio::test]
    async fn a_ready_link_gives_its_clients() {
        let (_tx, rx) = watch::channel(Link::Ready(Arc::new(7)));
        assert_eq!(*ready(&rx).await.unwrap(), 7);
    }
}
