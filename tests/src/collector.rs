//! A log collector for http-log tests: an HTTP/1.1 server on `127.0.0.1`
//! (plain, or TLS with a self-signed certificate) that records every request
//! it receives and answers as its [`Mode`] says: 200, a given status, or
//! never (a black hole that accepts and reads but does not answer). It can be
//! stopped (listener and open connections closed) and restarted on the same
//! port, to play a collector that went down and came back.

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// How the collector answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 with an empty body.
    Accept,
    /// This status, with a short body.
    Status(u16),
    /// Reads the request, then never answers.
    BlackHole,
}

/// One request as the collector saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Whether the collector accepted it (answered 200).
    pub accepted: bool,
}

impl Received {
    /// The log entries of the body: the object itself, or an array's elements.
    pub fn entries(&self) -> anyhow::Result<Vec<Value>> {
        let body: Value = serde_json::from_slice(&self.body)
            .with_context(|| format!("body is not JSON: {:?}", self.body))?;
        Ok(match body {
            Value::Array(entries) => entries,
            entry => vec![entry],
        })
    }
}

struct State {
    mode: Mutex<Mode>,
    received: Mutex<Vec<Received>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A running collector; dropping it stops it.
pub struct Collector {
    addr: SocketAddr,
    state: Arc<State>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Collector {
    /// A plain HTTP collector on `127.0.0.1:0`, accepting everything.
    pub async fn start() -> anyhow::Result<Collector> {
        Collector::launch(None).await
    }

    /// An HTTPS collector with a self-signed certificate for `localhost`.
    pub async fn start_tls() -> anyhow::Result<Collector> {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
        let cert = rustls_pki_types::CertificateDer::from(generated.cert.der().to_vec());
        let key = rustls_pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der())
            .map_err(|e| anyhow::anyhow!("test key: {e}"))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Collector::launch(Some(acceptor)).await
    }

    async fn launch(tls: Option<tokio_rustls::TlsAcceptor>) -> anyhow::Result<Collector> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let collector = Collector {
            addr: listener.local_addr()?,
            state: Arc::new(State {
                mode: Mutex::new(Mode::Accept),
                received: Mutex::new(Vec::new()),
                tls,
            }),
            tasks: Arc::default(),
        };
        collector.serve(listener);
        Ok(collector)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` (or `https://localhost:<port>`) + `path`.
    pub fn url(&self, path: &str) -> String {
        match self.state.tls {
            Some(_) => format!("https://localhost:{}{path}", self.addr.port()),
            None => format!("http://{}{path}", self.addr),
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.state.mode) = mode;
    }

    /// Closes the listener and every open connection: the port refuses.
    pub fn stop(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    /// [`Collector::stop`], then waits until a connection to the port is
    /// refused (the aborted listener is dropped on the runtime's next turn).
    pub async fn stop_and_wait(&self) -> anyhow::Result<()> {
        self.stop();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(self.addr).await.is_ok() {
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("{} still accepts connections", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Listens again on the same port.
    pub async fn restart(&self) -> anyhow::Result<()> {
        let listener = TcpListener::bind(self.addr)
            .await
            .with_context(|| format!("rebinding {}", self.addr))?;
        self.serve(listener);
        Ok(())
    }

    /// Every request received so far, answered or not.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// The entries of every accepted request, in arrival order.
    pub fn entries(&self) -> anyhow::Result<Vec<Value>> {
        let mut entries = Vec::new();
        for request in self.received().iter().filter(|r| r.accepted) {
            entries.extend(request.entries()?);
        }
        Ok(entries)
    }

    /// Waits until accepted requests carried at least `count` entries
    /// (checking every 10 ms); fails after `limit`.
    pub async fn wait_for_entries(
        &self,
        count: usize,
        limit: Duration,
    ) -> anyhow::Result<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let entries = self.entries()?;
            if entries.len() >= count {
                return Ok(entries);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "the collector got {} entries, not {count}, in {limit:?}",
                    entries.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn serve(&self, listener: TcpListener) {
        let state = Arc::clone(&self.state);
        let tasks = Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&state);
                let connection = tokio::spawn(async move {
                    let acceptor = state.tls.clone();
                    let service = hyper::service::service_fn(move |request| {
                        answer(Arc::clone(&state), request)
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
                lock(&tasks).push(connection.abort_handle());
            }
        });
        lock(&self.tasks).push(accept.abort_handle());
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn answer(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (head, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mode = *lock(&state.mode);
    lock(&state.received).push(Received {
        method: head.method.to_string(),
        uri: head.uri.to_string(),
        headers: head.headers,
        body,
        accepted: mode == Mode::Accept,
    });
    let status = match mode {
        Mode::Accept => StatusCode::OK,
        Mode::Status(code) => {
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
        Mode::BlackHole => std::future::pending().await,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"collector says no")));
    *response.status_mut() = status;
    Ok(response)
}
