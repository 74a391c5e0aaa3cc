//! The benchmark HTTP client: one keep-alive HTTP/1.1 pool shared by every
//! task, whole-body replies, and the errors a benchmark can meet.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, HOST};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// The header carrying the config version an Admin API write committed.
pub const CONFIG_VERSION_HEADER: &str = "x-tollgate-config-version";

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid URL {url}: {reason}")]
    Url { url: String, reason: String },
    /// `reason` is the whole cause chain, flattened so one line tells it all.
    #[error("{method} {url} failed: {reason}")]
    Request {
        method: Method,
        url: String,
        reason: String,
    },
    #[error("{method} {url}: reading the response failed: {reason}")]
    Body {
        method: Method,
        url: String,
        reason: String,
    },
    #[error("{method} {url} timed out after {after:?}")]
    Timeout {
        method: Method,
        url: String,
        after: Duration,
    },
    #[error("{what}: expected status {expected}, got {status}: {body}")]
    Status {
        what: String,
        expected: u16,
        status: u16,
        body: String,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("waiting for {0} timed out")]
    Wait(String),
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid header value for {0}")]
    Header(String),
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The config version from `X-Tollgate-Config-Version`, when present and numeric.
    pub fn config_version(&self) -> Option<u64> {
        self.headers
            .get(CONFIG_VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    }

    /// Fails unless the status is `expected`; `what` names the operation.
    pub fn expect(self, expected: u16, what: &str) -> Result<Self, BenchError> {
        if self.status.as_u16() == expected {
            Ok(self)
        } else {
            Err(BenchError::Status {
                what: what.to_string(),
                expected,
                status: self.status.as_u16(),
                body: self.body_excerpt(),
            })
        }
    }

    /// The body as JSON.
    pub fn json(&self, what: &str) -> Result<serde_json::Value, BenchError> {
        serde_json::from_slice(&self.body).map_err(|err| {
            BenchError::Protocol(format!("{what}: the response is not JSON ({err})"))
        })
    }

    fn body_excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(300).collect()
    }
}

/// A request body with its content type.
#[derive(Debug, Clone)]
pub struct Payload {
    pub content_type: &'static str,
    pub bytes: Bytes,
}

impl Payload {
    pub fn json(value: &serde_json::Value) -> Self {
        Self {
            content_type: "application/json",
            bytes: Bytes::from(value.to_string()),
        }
    }

    pub fn yaml(bytes: Bytes) -> Self {
        Self {
            content_type: "application/yaml",
            bytes,
        }
    }
}

/// A keep-alive client bound to one base URL (`http://host:port`). Cheap to
/// clone; clones share the connection pool.
#[derive(Clone)]
pub struct HttpClient {
    base: String,
    host_header: Option<HeaderValue>,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    /// A client for `base`, e.g. `http://127.0.0.1:8001` (a trailing `/` is ignored).
    pub fn new(base: &str) -> Result<Self, BenchError> {
        let base = base.trim_end_matches('/').to_string();
        let uri: Uri = base.parse().map_err(|err| BenchError::Url {
            url: base.clone(),
            reason: format!("{err}"),
        })?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(BenchError::Url {
                url: base,
                reason: "expected http://host:port".into(),
            });
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Self {
            base,
            host_header: None,
            timeout: Duration::from_secs(600),
            client,
        })
    }

    /// Sends `Host: host` instead of the base URL's authority.
    pub fn with_host(mut self, host: &str) -> Result<Self, BenchError> {
        self.host_header =
            Some(HeaderValue::from_str(host).map_err(|_| BenchError::Header("Host".into()))?);
        Ok(self)
    }

    /// Fails a request that has no complete response after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get(&self, path: &str) -> Result<Reply, BenchError> {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, payload: Payload) -> Result<Reply, BenchError> {
        self.send(Method::POST, path, Some(payload)).await
    }

    /// Sends one request and reads the whole response.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        payload: Option<Payload>,
    ) -> Result<Reply, BenchError> {
        let url = format!("{}{}", self.base, path);
        let mut builder = Request::builder().method(method.clone()).uri(url.as_str());
        if let Some(host) = &self.host_header {
            builder = builder.header(HOST, host.clone());
        }
        let body = match payload {
            Some(payload) => {
                builder = builder.header(CONTENT_TYPE, payload.content_type);
                Full::new(payload.bytes)
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder.body(body).map_err(|err| BenchError::Url {
            url: url.clone(),
            reason: err.to_string(),
        })?;
        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|err| BenchError::Request {
                        method: method.clone(),
                        url: url.clone(),
                        reason: cause_chain(&err),
                    })?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|err| BenchError::Body {
                    method: method.clone(),
                    url: url.clone(),
                    reason: cause_chain(&err),
                })?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(BenchError::Timeout {
                method,
                url,
                after: self.timeout,
            }),
        }
    }
}

/// `err` and its sources as one line, repeated messages dropped.
fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}
