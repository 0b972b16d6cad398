//! One HTTP/1.1 keep-alive connection (hyper's connection API, no pool): the
//! generator owns one per simulated client.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A keep-alive connection to one address.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Opens a connection (TCP_NODELAY on).
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the peer closes.
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }

    /// Sends `req`, reads the whole response body (so the connection can be
    /// reused) and returns the status.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> anyhow::Result<StatusCode> {
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        resp.into_body().collect().await?;
        Ok(status)
    }
}

/// `GET path` on a fresh connection; the status.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<StatusCode> {
    let mut conn = Conn::connect(addr).await?;
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.method_mut() = Method::GET;
    *req.uri_mut() = path.parse()?;
    req.headers_mut()
        .insert(http::header::HOST, host_header(addr));
    conn.send(req).await
}

/// The `Host` header value for `addr`.
pub fn host_header(addr: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&addr.to_string()).expect("a socket address is a valid header value")
}
