//! Helpers for data-plane end-to-end tests: complete Kong-shaped entities for
//! a [`Config`], an in-process data plane on `127.0.0.1:0`, and small HTTP/1.1,
//! h2c and raw-socket clients that report what came back.

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_data_plane::{DataPlane, Settings};
use tollgate_shared::Config;

/// The UUID used for test entity `n`.
pub fn uuid(n: u128) -> String {
    uuid::Uuid::from_u128(n).to_string()
}

/// Overwrites `base`'s fields with `patch`'s (objects merged recursively).
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                match base.get_mut(&key) {
                    Some(slot) if slot.is_object() && value.is_object() => merge(slot, value),
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, patch) => *base = patch,
    }
}

/// Builds a [`Config`] from complete entity JSON, as the control plane would ship it.
#[derive(Debug, Default, Clone)]
pub struct ConfigBuilder {
    services: Vec<Value>,
    routes: Vec<Value>,
    consumers: Vec<Value>,
    plugins: Vec<Value>,
    certificates: Vec<Value>,
    snis: Vec<Value>,
    keyauth_credentials: Vec<Value>,
    basicauth_credentials: Vec<Value>,
    acls: Vec<Value>,
}

/// Scope of a plugin instance: entity numbers of its route, service, consumer.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scope {
    pub route: Option<u128>,
    pub service: Option<u128>,
    pub consumer: Option<u128>,
}

impl Scope {
    /// A plugin on route `n` only.
    pub fn route(n: u128) -> Scope {
        Scope {
            route: Some(n),
            ..Scope::default()
        }
    }

    /// A plugin on service `n` only.
    pub fn service(n: u128) -> Scope {
        Scope {
            service: Some(n),
            ..Scope::default()
        }
    }
}

/// The smallest config: service 1 at `upstream` (patched with `service_patch`)
/// and route 10 on `/` to it.
pub fn one_route(upstream: SocketAddr, service_patch: Value) -> anyhow::Result<Config> {
    ConfigBuilder::new()
        .service(1, upstream, service_patch)
        .route(10, Some(1), &["/"], json!({}))
        .build()
}

fn fk(n: Option<u128>) -> Value {
    n.map_or(Value::Null, |n| json!({ "id": uuid(n) }))
}

impl ConfigBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Service 1 at `upstream` and route `route` on `paths` to it: where most
    /// plugin tests start.
    pub fn routed(upstream: SocketAddr, route: u128, paths: &[&str]) -> Self {
        Self::new()
            .service(1, upstream, json!({}))
            .route(route, Some(1), paths, json!({}))
    }

    /// Builds this config and starts a data plane with
    /// [`Settings::loopback`] serving it.
    pub async fn start(self) -> anyhow::Result<DataPlane> {
        start(Settings::loopback(), &self.build()?).await
    }

    /// An http service pointing at `upstream`, patched with `patch`.
    pub fn service(mut self, n: u128, upstream: SocketAddr, patch: Value) -> Self {
        let mut service = json!({
            "id": uuid(n), "created_at": 1, "updated_at": 1, "name": format!("service-{n}"),
            "retries": 5, "protocol": "http", "host": upstream.ip().to_string(),
            "port": upstream.port(), "path": null, "connect_timeout": 60000,
            "write_timeout": 60000, "read_timeout": 60000, "tags": null,
            "client_certificate": null, "tls_verify": null, "tls_verify_depth": null,
            "ca_certificates": null, "enabled": true
        });
        merge(&mut service, patch);
        self.services.push(service);
        self
    }

    /// A route on `paths` to `service`, patched with `patch`.
    pub fn route(mut self, n: u128, service: Option<u128>, paths: &[&str], patch: Value) -> Self {
        let mut route = json!({
            "id": uuid(n), "created_at": 1, "updated_at": 1, "name": format!("route-{n}"),
            "protocols": ["http", "https"], "methods": null, "hosts": null,
            "paths": paths, "headers": null, "snis": null, "sources": null,
            "destinations": null, "https_redirect_status_code": 426, "regex_priority": 0,
            "strip_path": true, "preserve_host": false, "request_buffering": true,
            "response_buffering": true, "path_handling": "v0", "service": fk(service),
            "tags": null
        });
        merge(&mut route, patch);
        self.routes.push(route);
        self
    }

    pub fn consumer(mut self, n: u128, username: &str) -> Self {
        self.consumers.push(json!({
            "id": uuid(n), "created_at": 1, "updated_at": 1, "username": username,
            "custom_id": null, "tags": null
        }));
        self
    }

    pub fn plugin(mut self, n: u128, name: &str, config: Value, scope: Scope) -> Self {
        self.plugins.push(json!({
            "id": uuid(n), "created_at": 1, "updated_at": 1, "name": name,
            "instance_name": null, "config": config, "route": fk(scope.route),
            "service": fk(scope.service), "consumer": fk(scope.consumer),
            "protocols": ["grpc", "grpcs", "http", "https"], "enabled": true, "tags": null
        }));
        self
    }

    pub fn certificate(
        mut self,
        n: u128,
        cert_pem: &str,
        key_pem: &str,
        snis: &[(u128, &str)],
    ) -> Self {
        self.certificates.push(json!({
            "id": uuid(n), "created_at": 1, "updated_at": 1, "cert": cert_pem, "key": key_pem,
            "cert_alt": null, "key_alt": null, "tags": null
        }));
        for (sni, name) in snis {
            self.snis.push(json!({
                "id": uuid(*sni), "created_at": 1, "updated_at": 1, "name": name,
                "certificate": { "id": uuid(n) }, "tags": null
            }));
        }
        self
    }

    /// A key-auth credential `n` of consumer `consumer`.
    pub fn key_auth(mut self, n: u128, consumer: u128, key: &str) -> Self {
        self.keyauth_credentials.push(json!({
            "id": uuid(n), "created_at": 1, "consumer": { "id": uuid(consumer) }, "key": key,
            "tags": null
        }));
        self
    }

    /// A basic-auth credential `n` of consumer `consumer`, its password
    /// stored as Kong's hash.
    pub fn basic_auth(mut self, n: u128, consumer: u128, username: &str, password: &str) -> Self {
        let hash = tollgate_shared::entity::basic_auth_password_hash(&uuid(consumer), password);
        self.basicauth_credentials.push(json!({
            "id": uuid(n), "created_at": 1, "consumer": { "id": uuid(consumer) },
            "username": username, "password": hash, "tags": null
        }));
        self
    }

    /// Acl group membership `n` of consumer `consumer`.
    pub fn acl(mut self, n: u128, consumer: u128, group: &str) -> Self {
        self.acls.push(json!({
            "id": uuid(n), "created_at": 1, "consumer": { "id": uuid(consumer) },
            "group": group, "tags": null
        }));
        self
    }

    pub fn build(self) -> anyhow::Result<Config> {
        let config = json!({
            "services": self.services, "routes": self.routes, "consumers": self.consumers,
            "plugins": self.plugins, "jwt_secrets": [], "certificates": self.certificates,
            "snis": self.snis, "keyauth_credentials": self.keyauth_credentials,
            "basicauth_credentials": self.basicauth_credentials, "acls": self.acls
        });
        serde_json::from_value(config).context("test config does not deserialize")
    }
}

/// Starts a data plane in the current runtime and applies `config`.
pub async fn start(settings: Settings, config: &Config) -> anyhow::Result<DataPlane> {
    let data_plane = tollgate_data_plane::start(&settings).await?;
    data_plane
        .gateway()
        .apply_local(config)
        .map_err(|errors| anyhow::anyhow!("config rejected: {errors:?}"))?;
    Ok(data_plane)
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// A header the echo upstream received ("" when absent).
    pub fn upstream_header(&self, name: &str) -> String {
        self.json()["headers"][name]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

async fn read_reply(response: http::Response<hyper::body::Incoming>) -> anyhow::Result<Reply> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Sends one request on a new HTTP/1.1 connection from the given local address.
pub async fn send_from(
    local: Option<std::net::IpAddr>,
    addr: SocketAddr,
    mut request: Request<Full<Bytes>>,
) -> anyhow::Result<Reply> {
    let stream = match local {
        None => TcpStream::connect(addr).await?,
        Some(ip) => connect_from(ip, addr).await?,
    };
    if !request.headers().contains_key(http::header::HOST) {
        request.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_str(&addr.to_string())?,
        );
    }
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    read_reply(sender.send_request(request).await?).await
}

/// A TCP connection to `addr` from the local address `ip`.
pub async fn connect_from(ip: std::net::IpAddr, addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = if ip.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    Ok(socket.connect(addr).await?)
}

pub async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
    send_from(None, addr, request).await
}

/// `GET path` on a new HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Reply> {
    send(addr, Request::get(path).body(Full::new(Bytes::new()))?).await
}

/// A request builder for `GET path` with extra headers.
pub fn get_with(path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut builder = Request::get(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    Ok(builder.body(Full::new(Bytes::new()))?)
}

/// Sends one request over cleartext HTTP/2 (prior knowledge).
pub async fn send_h2c(addr: SocketAddr, path: &str) -> anyhow::Result<Reply> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::get(format!("http://{addr}{path}")).body(Full::new(Bytes::new()))?;
    read_reply(sender.send_request(request).await?).await
}

/// Writes `bytes` on a raw connection and returns everything read until the
/// peer closes or `limit` passes (whichever first).
pub async fn raw_exchange(
    addr: SocketAddr,
    bytes: &[u8],
    limit: Duration,
) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(bytes).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A TLS connection to `addr` with `server_name` as SNI, trusting only `roots`,
/// offering `alpn`.
pub async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    roots: &[rustls_pki_types::CertificateDer<'static>],
    alpn: &[&[u8]],
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let stream = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from(server_name.to_string())?;
    Ok(connector.connect(name, stream).await?)
}

/// Sends `GET path` over an established TLS connection, with HTTP/2 when ALPN chose it.
pub async fn send_tls(
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    host: &str,
    path: &str,
) -> anyhow::Result<Reply> {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await?;
        tokio::spawn(connection);
        let request =
            Request::get(format!("https://{host}{path}")).body(Full::new(Bytes::new()))?;
        read_reply(sender.send_request(request).await?).await
    } else {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = Request::get(path)
            .header(http::header::HOST, host)
            .body(Full::new(Bytes::new()))?;
        read_reply(sender.send_request(request).await?).await
    }
}

/// The data plane's `/status` body.
pub async fn status(data_plane: &DataPlane) -> anyhow::Result<Value> {
    Ok(get(data_plane.status_addr(), "/status").await?.json())
}

/// Reads `/status` every 10 ms until `pointer` (a JSON pointer such as
/// `/server/connections_active`) equals `expected` or `limit` passes; returns
/// the last value read.
pub async fn wait_for_status(
    data_plane: &DataPlane,
    pointer: &str,
    expected: Value,
    limit: Duration,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let value = status(data_plane)
            .await?
            .pointer(pointer)
            .cloned()
            .unwrap_or(Value::Null);
        if value == expected || tokio::time::Instant::now() >= deadline {
            return Ok(value);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks `condition` every 10 ms until it holds or `limit` passes; returns
/// whether it held. For states that have no event to wait on (counters).
pub async fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads one response head (through the blank line) from a raw connection.
pub async fn read_head(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            anyhow::bail!(
                "closed before the head ended: {}",
                String::from_utf8_lossy(&head)
            );
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Reads `path` every 10 ms until it holds at least `count` JSON lines (the
/// log phase runs after the response, so a line may land a moment after the
/// client has its answer); fails after 5 s.
pub async fn wait_for_json_lines(
    path: &std::path::Path,
    count: usize,
) -> anyhow::Result<Vec<Value>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<Vec<Value>, _>>()
            .with_context(|| format!("{} holds a line that is not JSON", path.display()))?;
        if lines.len() >= count {
            return Ok(lines);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{} never reached {count} lines: {text}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
