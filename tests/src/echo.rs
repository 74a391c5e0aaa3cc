//! The echo upstream: answers every request with what it received, as JSON
//! (method, uri, version, headers, body, peer). Special paths make it slow
//! (`/__delay/<ms>`), answer a given status (`/__status/<code>`) or a body of
//! `n` bytes (`/__bytes/<n>`, at most 64 MiB); an
//! `Upgrade` request is switched and its bytes echoed back (WebSocket tests).
//! [`spawn_counted`] also reports how many connections and requests reached it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What reached an echo upstream.
#[derive(Debug, Default)]
pub struct EchoStats {
    /// Connections accepted so far.
    pub connections: AtomicUsize,
    /// Connections open now.
    pub open: AtomicUsize,
    /// Requests whose head arrived.
    pub requests: AtomicUsize,
}

impl EchoStats {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Keeps `EchoStats::open` right however the connection task ends.
struct OpenConnection(Arc<EchoStats>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn echo(
    peer: SocketAddr,
    stats: Arc<EchoStats>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    if let Some(ms) = path
        .strip_prefix("/__delay/")
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(size) = path
        .strip_prefix("/__bytes/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        return Ok(Response::new(Full::new(Bytes::from(vec![
            b'x';
            size.min(
                64 << 20
            )
        ]))));
    }
    if req.headers().contains_key(hyper::header::UPGRADE) {
        let protocol = req.headers()[hyper::header::UPGRADE].clone();
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 4096];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert(hyper::header::UPGRADE, protocol);
        response.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("upgrade"),
        );
        return Ok(response);
    }
    let status = path
        .strip_prefix("/__status/")
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .keys()
        .map(|k| {
            let values: Vec<String> = parts
                .headers
                .get_all(k)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            (
                k.as_str().to_string(),
                serde_json::Value::String(values.join(", ")),
            )
        })
        .collect();
    let reply = serde_json::json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "peer": peer.to_string(),
    });
    let mut response = Response::new(Full::new(Bytes::from(reply.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Serves the echo on `listener` forever (HTTP/1.1 with upgrades, and h2c).
pub async fn serve(listener: TcpListener) {
    serve_counted(listener, Arc::default()).await
}

/// [`serve`], counting connections and requests in `stats`.
pub async fn serve_counted(listener: TcpListener, stats: Arc<EchoStats>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        stats.connections.fetch_add(1, Ordering::SeqCst);
        stats.open.fetch_add(1, Ordering::SeqCst);
        let open = OpenConnection(Arc::clone(&stats));
        tokio::spawn(async move {
            let stats = Arc::clone(&open.0);
            let service =
                hyper::service::service_fn(move |req| echo(peer, Arc::clone(&stats), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
            drop(open);
        });
    }
}

/// Starts an echo upstream on `127.0.0.1:0` in the current runtime.
pub async fn spawn() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener));
    Ok(addr)
}

/// Starts an echo upstream that counts what reaches it.
pub async fn spawn_counted() -> std::io::Result<(SocketAddr, Arc<EchoStats>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(EchoStats::default());
    tokio::spawn(serve_counted(listener, Arc::clone(&stats)));
    Ok((addr, stats))
}
