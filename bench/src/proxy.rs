//! `proxy`: the least any broker has to do per event — take an HTTP request,
//! answer 202, and send the same event on to the subscriber over a keep-alive
//! connection — in a process of its own, with no store, matcher or retries. Its
//! rate, measured in the same run as `direct` and the broker, is the ceiling of
//! a two-hop path on this machine: four socket writes per event instead of
//! `direct`'s two.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;

/// The sink path the proxy forwards to (counted apart from `direct`'s).
pub const PROXY_PATH: &str = "/proxy";

/// Forwards in flight at once, like cebus's per-trigger in-flight bound.
const MAX_IN_FLIGHT: usize = 100;

/// Idle keep-alive connections to the sink, a free list.
type Pool = Mutex<Vec<SendRequest<Full<Bytes>>>>;

struct State {
    to: SocketAddr,
    uri: Uri,
    host: HeaderValue,
    pool: Pool,
    slots: Arc<Semaphore>,
}

/// Serves on `listener` until the process ends, forwarding every request's
/// headers and body to `to` at [`PROXY_PATH`].
pub async fn serve(listener: TcpListener, to: SocketAddr) -> anyhow::Result<()> {
    let state = Arc::new(State {
        to,
        uri: format!("http://{to}{PROXY_PATH}").parse()?,
        host: crate::client::host_header(to),
        pool: Mutex::new(Vec::new()),
        slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
    });
    crate::sink::serve_http1(listener, move |_| {
        let st = state.clone();
        service_fn(move |req| accept(st.clone(), req))
    })
    .await;
    Ok(())
}

/// Reads the event, answers 202 once it holds it, and forwards it in a task of
/// its own (as cebus acknowledges at ingress and delivers afterwards). Waits for
/// a slot first, so a slow sink slows the sender instead of piling up tasks.
async fn accept(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let Ok(permit) = state.slots.clone().acquire_owned().await else {
        return Ok(status(StatusCode::SERVICE_UNAVAILABLE));
    };
    let mut out = Request::new(Full::new(body));
    *out.method_mut() = parts.method;
    *out.uri_mut() = state.uri.clone();
    *out.headers_mut() = parts.headers;
    out.headers_mut()
        .insert(http::header::HOST, state.host.clone());
    tokio::spawn(async move {
        // A failed forward is visible as an undelivered event in the report.
        let _ = forward(&state, out).await;
        drop(permit);
    });
    Ok(status(StatusCode::ACCEPTED))
}

async fn forward(state: &State, req: Request<Full<Bytes>>) -> anyhow::Result<()> {
    let pooled = state.pool.lock().expect("pool lock poisoned").pop();
    let mut sender = match pooled {
        Some(s) => s,
        None => {
            let stream = TcpStream::connect(state.to).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender
        }
    };
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    resp.into_body().collect().await?;
    state.pool.lock().expect("pool lock poisoned").push(sender);
    Ok(())
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = code;
    resp
}

/// A running `cebus-bench proxy` child process; killed when dropped.
pub struct Proxy {
    child: Child,
    pid: u32,
    addr: SocketAddr,
}

impl Proxy {
    /// Starts this executable as `proxy --to <sink>` and waits for its address.
    pub async fn start(sink: SocketAddr) -> anyhow::Result<Proxy> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("proxy")
            .arg("--to")
            .arg(sink.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting cebus-bench proxy")?;
        let pid = child.id().context("proxy exited at once")?;
        let stdout = child.stdout.take().context("proxy stdout")?;
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .context("proxy did not print its address within 10 s")??;
        let addr = line
            .trim()
            .parse()
            .with_context(|| format!("proxy printed {line:?}, not an address"))?;
        Ok(Proxy { child, pid, addr })
    }

    /// Where the generator sends.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's user + system CPU seconds so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        crate::cebus::cpu_seconds_of_pid(self.pid)
    }

    /// Kills the process and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Conn, host_header};
    use crate::event::EventShape;
    use crate::sink::{Sink, SinkReply};

    #[tokio::test]
    async fn answers_202_and_forwards_headers_and_body_to_the_sink() {
        let sink = Sink::start(SinkReply::default(), ["proxy".to_owned()])
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, sink.addr()));
        let mut conn = Conn::connect(addr).await.unwrap();
        let shape = EventShape::try_new(&["a".into()], 64).unwrap();
        let now = crate::event::nanos_since_epoch(std::time::Instant::now());
        sink.set_window(
            std::time::Instant::now() - Duration::from_secs(1),
            std::time::Instant::now() + Duration::from_secs(60),
        );
        for i in 0..3 {
            let status = conn
                .send(shape.request(&host_header(addr), "/anything", i, now))
                .await
                .unwrap();
            assert_eq!(status, StatusCode::ACCEPTED);
        }
        for _ in 0..200 {
            if sink.count("proxy") == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sink.count("proxy"), 3);
        assert_eq!(sink.unknown(), 0);
        // The send timestamp travelled with the event.
        assert_eq!(sink.take_e2e().len(), 3);
    }
}
