//! Sends one batch to an http-log collector: HTTP/1.1 over TCP or rustls
//! (the certificate is not verified, as Kong's sender sets `ssl_verify =
//! false`), with Kong's request headers, the whole exchange bounded by
//! `timeout`, and idle connections kept for `keepalive`.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tollgate_shared::runtime::HttpLogTarget;

/// Why a batch was not accepted by the collector.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("failed request to {address}: {reason}")]
    Failed { address: String, reason: String },
    #[error("failed request to {address}: no answer within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    #[error("request to {address} returned status code {status} and body {body}")]
    Status {
        address: String,
        status: u16,
        body: String,
    },
}

/// The most of a refusing collector's body quoted in the log.
const QUOTED_BODY: usize = 256;
/// A response body larger than this is not read to its end (the connection
/// is closed instead), so a misbehaving collector cannot make us buffer it.
const MAX_READ_BODY: usize = 64 * 1024;
/// Idle connections kept per target (more only with `concurrency_limit: -1`).
const MAX_IDLE: usize = 8;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Idle {
    sender: http1::SendRequest<Full<Bytes>>,
    since: Instant,
}

/// The sending half of one queue: request template, TLS and idle connections.
pub struct Sender {
    address: String,
    connect_to: (String, u16),
    tls: Option<(TlsConnector, ServerName<'static>)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    timeout: Duration,
    keepalive: Duration,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Headers may hold credentials: never printed.
        f.debug_struct("Sender")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// Prepares the request template; `tls` is the client config used for
    /// `https` endpoints.
    pub fn new(target: &HttpLogTarget, tls: &Arc<rustls::ClientConfig>) -> Result<Sender, String> {
        let address = format!("{}:{}", target.host, target.port);
        let tls = if target.tls {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| format!("http_endpoint: invalid TLS server name: {e}"))?;
            Some((TlsConnector::from(Arc::clone(tls)), name))
        } else {
            None
        };
        let method =
            Method::from_bytes(target.method.as_bytes()).map_err(|e| format!("method: {e}"))?;
        let uri = Uri::try_from(target.path_and_query.as_str())
            .map_err(|e| format!("http_endpoint: invalid path: {e}"))?;
        let mut headers = HeaderMap::new();
        let host = if target.host.contains(':') {
            format!("[{}]", target.host)
        } else {
            target.host.clone()
        };
        let default_port = if target.tls { 443 } else { 80 };
        let host = if target.port == default_port {
            host
        } else {
            format!("{host}:{}", target.port)
        };
        let value = |text: &str, what: &str| {
            HeaderValue::try_from(text).map_err(|_| format!("{what}: not a valid header value"))
        };
        headers.insert(HOST, value(&host, "http_endpoint")?);
        headers.insert(CONTENT_TYPE, value(&target.content_type, "content_type")?);
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(authorization) = &target.authorization {
            let mut credentials = value(authorization, "http_endpoint userinfo")?;
            credentials.set_sensitive(true);
            headers.insert(AUTHORIZATION, credentials);
        }
        for (name, text) in &target.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| format!("headers: invalid header name '{name}'"))?;
            // As Kong: a configured header never replaces one set above.
            if !headers.contains_key(&name) {
                let mut header = value(text, "headers")?;
                header.set_sensitive(true);
                headers.insert(name, header);
            }
        }
        Ok(Sender {
            address,
            connect_to: (target.host.clone(), target.port),
            tls,
            method,
            uri,
            headers,
            timeout: target.timeout,
            keepalive: target.keepalive,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// `host:port` of the collector, for log lines.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `body`; `Ok` when the collector answered below 300.
    pub async fn send(&self, body: Bytes) -> Result<(), SendError> {
        match tokio::time::timeout(self.timeout, self.exchange(body)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout {
                address: self.address.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn exchange(&self, body: Bytes) -> Result<(), SendError> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        let (mut sender, request) = match self.take_idle() {
            Some(mut reused) => match reused.try_send_request(request).await {
                Ok(response) => (reused, Ok(response)),
                // The collector closed the idle connection before the request
                // went out: a fresh connection is no retry.
                Err(mut error) => match error.take_message() {
                    Some(request) => (self.connect().await?, Err(request)),
                    None => return Err(self.failed(error.into_error())),
                },
            },
            None => {
                let fresh = self.connect().await?;
                (fresh, Err(request))
            }
        };
        let response = match request {
            Ok(response) => response,
            Err(request) => sender
                .send_request(request)
                .await
                .map_err(|e| self.failed(e))?,
        };
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut read = Vec::new();
        let mut complete = true;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.failed(e))?;
            if let Ok(data) = frame.into_data() {
                if read.len() + data.len() > MAX_READ_BODY {
                    complete = false;
                    break;
                }
                read.extend_from_slice(&data);
            }
        }
        if complete {
            self.put_idle(sender);
        }
        if status < 300 {
            Ok(())
        } else {
            let quoted = &read[..read.len().min(QUOTED_BODY)];
            Err(SendError::Status {
                address: self.address.clone(),
                status,
                body: String::from_utf8_lossy(quoted).into_owned(),
            })
        }
    }

    fn failed(&self, error: impl std::fmt::Display) -> SendError {
        SendError::Failed {
            address: self.address.clone(),
            reason: error.to_string(),
        }
    }

    async fn connect(&self) -> Result<http1::SendRequest<Full<Bytes>>, SendError> {
        let (host, port) = &self.connect_to;
        let tcp = TcpStream::connect((host.as_str(), *port))
            .await
            .map_err(|e| self.failed(e))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            Some((connector, name)) => Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| self.failed(format!("TLS handshake: {e}")))?,
            ),
            None => Box::new(tcp),
        };
        let (sender, connection) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.failed(e))?;
        tokio::spawn(async move {
            // Ends when the collector closes or the sender is dropped; an
            // error there shows up on the next request as a failed send.
            let _ = connection.await;
        });
        Ok(sender)
    }

    fn take_idle(&self) -> Option<http1::SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(candidate) = idle.pop() {
            if candidate.since.elapsed() < self.keepalive && !candidate.sender.is_closed() {
                return Some(candidate.sender);
            }
        }
        None
    }

    fn put_idle(&self, sender: http1::SendRequest<Full<Bytes>>) {
        if self.keepalive.is_zero() || sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|candidate| candidate.since.elapsed() < self.keepalive);
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}
