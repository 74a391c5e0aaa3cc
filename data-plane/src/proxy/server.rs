//! Client connections: the accept loops (plain TCP with HTTP/1.1 and h2c by
//! prior knowledge; TLS with ALPN), per-connection facts computed once
//! (peer address, trust, listener port), the connection watchdog that closes
//! idle or slow-header connections with one lazily re-armed timer, the
//! per-client-address connection cap, and graceful shutdown.

use super::body::ClientIncoming;
use super::conn_limit::PerIpConnections;
use super::headers::StaticValues;
use super::http1;
use super::log_limit::ProxyLogLimits;
use super::service;
use super::LiveConfig;
use crate::settings::ClientLimits;
use crate::shutdown::{Drain, ShutdownSignal};
use crate::status::StatusState;
use http::{HeaderName, HeaderValue};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use ipnet::IpNet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tollgate_shared::runtime::TlsFacts;

/// State shared by every client connection of the proxy.
pub struct ProxyShared {
    /// The running config, swapped by the gateway.
    pub config: Arc<LiveConfig>,
    pub status: Arc<StatusState>,
    pub trusted_ips: Vec<IpNet>,
    pub real_ip_header: HeaderName,
    pub limits: ClientLimits,
    pub values: StaticValues,
    pub drain: Arc<Drain>,
    pub shutdown: ShutdownSignal,
    pub log_limits: ProxyLogLimits,
    per_ip: Option<Arc<PerIpConnections>>,
    auto: auto::Builder<TokioExecutor>,
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

/// Largest request head hyper buffers; the finer limits (request target,
/// header bytes) are checked per request in `service`.
const MAX_HEAD_BUFFER: usize = 96 * 1024;
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

impl ProxyShared {
    pub fn new(
        config: Arc<LiveConfig>,
        status: Arc<StatusState>,
        trusted_ips: Vec<IpNet>,
        real_ip_header: HeaderName,
        limits: ClientLimits,
        drain: Arc<Drain>,
        shutdown: ShutdownSignal,
    ) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .max_buf_size(MAX_HEAD_BUFFER)
            .header_read_timeout(None);
        // hyper parses into a stack buffer of 100 headers by default; an explicit
        // limit, even 100, makes it initialize a buffer per request.
        if limits.max_headers != HYPER_DEFAULT_MAX_HEADERS {
            http1.max_headers(limits.max_headers);
        }
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2.max_concurrent_streams(128).max_header_list_size(
            u32::try_from(limits.max_header_bytes + 4096).unwrap_or(u32::MAX),
        );
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .max_buf_size(MAX_HEAD_BUFFER)
            .header_read_timeout(None);
        if limits.max_headers != HYPER_DEFAULT_MAX_HEADERS {
            auto.http1().max_headers(limits.max_headers);
        }
        auto.http2()
            .max_concurrent_streams(128)
            .max_header_list_size(
                u32::try_from(limits.max_header_bytes + 4096).unwrap_or(u32::MAX),
            );
        Self {
            status,
            config,
            trusted_ips,
            real_ip_header,
            per_ip: PerIpConnections::new(limits.max_connections_per_ip),
            limits,
            values: StaticValues::default(),
            drain,
            shutdown,
            log_limits: ProxyLogLimits::default(),
            auto,
            http1,
            http2,
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_ips.iter().any(|net| net.contains(&ip))
    }
}

/// Whether a connection has a request in progress, and since when it has not;
/// read by the connection watchdog.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    active: AtomicU64,
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            active: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    /// When the connection may be closed for idleness, if it is idle now.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle_since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.epoch + idle_since + timeout)
    }
}

/// One client connection: the facts every request on it shares.
pub struct ClientConn {
    pub shared: Arc<ProxyShared>,
    pub peer_ip: IpAddr,
    /// `peer_ip` as a header value (X-Real-IP / X-Forwarded-For).
    pub peer_ip_value: HeaderValue,
    /// The peer is in `--trusted-ips`: its forwarding headers are believed.
    pub trusted: bool,
    pub https: bool,
    pub sni: Option<Box<str>>,
    pub listener_port: u16,
    pub listener_port_value: HeaderValue,
    /// The TLS parameters for the log record (`request.tls`); `None` on cleartext.
    pub tls: Option<TlsFacts>,
    activity: Activity,
    /// Graceful shutdown reached this connection: finish the request in
    /// progress, then close (read by the lean HTTP/1.1 loop).
    closing: AtomicBool,
}

impl ClientConn {
    fn new(
        shared: Arc<ProxyShared>,
        peer: SocketAddr,
        listener_port: u16,
        https: bool,
        sni: Option<Box<str>>,
    ) -> Self {
        let peer_ip = peer.ip().to_canonical();
        let peer_ip_value = HeaderValue::from_str(&peer_ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("0.0.0.0"));
        Self {
            trusted: shared.is_trusted(peer_ip),
            shared,
            peer_ip,
            peer_ip_value,
            https,
            sni,
            listener_port,
            listener_port_value: HeaderValue::from(listener_port),
            tls: None,
            activity: Activity::new(),
            closing: AtomicBool::new(false),
        }
    }

    /// Whether graceful shutdown asked this connection to close.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn begin_closing(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// The client address after real-IP processing, and its header value when
    /// it differs from the peer's.
    pub fn client_address(&self, headers: &http::HeaderMap) -> (IpAddr, Option<HeaderValue>) {
        if !self.trusted {
            return (self.peer_ip, None);
        }
        let name = &self.shared.real_ip_header;
        let found = if name == super::headers::X_FORWARDED_FOR {
            self.rightmost_untrusted(headers)
        } else {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
        };
        match found.map(|ip| ip.to_canonical()) {
            Some(ip) if ip != self.peer_ip => {
                let value = HeaderValue::from_str(&ip.to_string()).ok();
                (ip, value)
            }
            _ => (self.peer_ip, None),
        }
    }

    /// `X-Forwarded-For` walked right to left past trusted proxies.
    fn rightmost_untrusted(&self, headers: &http::HeaderMap) -> Option<IpAddr> {
        let mut addresses: Vec<IpAddr> = Vec::new();
        for value in headers.get_all(super::headers::X_FORWARDED_FOR) {
            let Ok(text) = value.to_str() else {
                return None;
            };
            for part in text.split(',') {
                addresses.push(part.trim().parse::<IpAddr>().ok()?.to_canonical());
            }
        }
        let leftmost = addresses.first().copied();
        addresses
            .into_iter()
            .rev()
            .find(|ip| !self.shared.is_trusted(*ip))
            .or(leftmost)
    }
}

/// A request in progress on a connection; dropped with its response body.
pub struct ActiveRequest(Arc<ClientConn>);

impl ActiveRequest {
    pub fn begin(conn: &Arc<ClientConn>) -> ActiveRequest {
        conn.activity.active.fetch_add(1, Ordering::AcqRel);
        conn.shared
            .status
            .total_requests
            .fetch_add(1, Ordering::Relaxed);
        conn.shared
            .status
            .requests_in_flight
            .fetch_add(1, Ordering::Relaxed);
        ActiveRequest(Arc::clone(conn))
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let activity = &self.0.activity;
        let idle_since = u64::try_from(activity.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.idle_since_ms.store(idle_since, Ordering::Release);
        activity.active.fetch_sub(1, Ordering::AcqRel);
        self.0
            .shared
            .status
            .requests_in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts plain-TCP connections until shutdown.
pub async fn accept_plain(listener: TcpListener, shared: Arc<ProxyShared>) {
    accept_loop(listener, shared, None).await
}

/// Accepts TLS connections until shutdown.
pub async fn accept_tls(listener: TcpListener, shared: Arc<ProxyShared>, acceptor: TlsAcceptor) {
    accept_loop(listener, shared, Some(acceptor)).await
}

async fn accept_loop(listener: TcpListener, shared: Arc<ProxyShared>, tls: Option<TlsAcceptor>) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.wait() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or similar: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let status = &shared.status;
        status.connections_accepted.fetch_add(1, Ordering::Relaxed);
        let slot = match &shared.per_ip {
            // A trusted peer is a proxy in front, carrying many clients.
            Some(per_ip) if !shared.is_trusted(peer.ip().to_canonical()) => {
                match per_ip.admit(peer.ip()) {
                    Some(slot) => Some(slot),
                    None => {
                        refuse_over_cap(&shared, peer);
                        continue;
                    }
                }
            }
            _ => None,
        };
        let _ = stream.set_nodelay(true);
        status.connections_handled.fetch_add(1, Ordering::Relaxed);
        status.connections_active.fetch_add(1, Ordering::Relaxed);
        let guard = shared.drain.enter();
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_plain(stream, peer, port, &shared).await,
                Some(acceptor) => serve_tls(stream, peer, port, &shared, acceptor).await,
            }
            shared
                .status
                .connections_active
                .fetch_sub(1, Ordering::Relaxed);
            drop(slot);
            drop(guard);
        });
    }
}

/// Counts and (rate-limited) logs a connection closed by the per-address cap;
/// dropping the stream closes it.
fn refuse_over_cap(shared: &ProxyShared, peer: SocketAddr) {
    shared
        .status
        .connections_refused_per_ip
        .fetch_add(1, Ordering::Relaxed);
    if let Some(suppressed) = shared.log_limits.refused_connections.admit() {
        tracing::warn!(
            client_ip = %peer.ip().to_canonical(),
            cap = shared.limits.max_connections_per_ip,
            suppressed,
            "connection refused: too many connections from this address"
        );
    }
}

/// The service hyper calls for each request of a connection it serves.
fn hyper_service(
    conn: &Arc<ClientConn>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<super::body::ResponseBody>,
    Error = std::convert::Infallible,
    Future = impl Future<
        Output = Result<http::Response<super::body::ResponseBody>, std::convert::Infallible>,
    > + Send,
> + Clone {
    let conn = Arc::clone(conn);
    hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let handled = service::handle(Arc::clone(&conn), request.map(ClientIncoming::Hyper));
        async move {
            let Ok(mut response) = handled.await;
            // hyper writes the head from the map alone.
            let extra = response.body_mut().take_plugin_headers();
            if !extra.is_empty() {
                service::merge_plugin_headers(response.headers_mut(), extra);
            }
            Ok(response)
        }
    })
}

/// Runs the lean HTTP/1.1 loop on `io`; when a request needs hyper, returns
/// the socket with the bytes already read in front, for hyper to serve.
async fn serve_lean<S>(io: S, conn: &Arc<ClientConn>) -> Option<TokioIo<http1::Prefixed<S>>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let lean = http1::serve(io, Arc::clone(conn));
    match drive(lean, |_| conn.begin_closing(), conn).await? {
        http1::Ended::Handover { io, buffered } => {
            Some(TokioIo::new(http1::Prefixed::new(buffered, io)))
        }
        http1::Ended::Closed => None,
    }
}

/// Serves a cleartext connection: the lean HTTP/1.1 loop first; hyper (HTTP/1
/// or h2c by prior knowledge) from the first request the lean loop leaves.
async fn serve_plain(stream: TcpStream, peer: SocketAddr, port: u16, shared: &Arc<ProxyShared>) {
    let conn = Arc::new(ClientConn::new(Arc::clone(shared), peer, port, false, None));
    let Some(io) = serve_lean(stream, &conn).await else {
        return;
    };
    // Boxed: the connection's task stays small while the lean loop serves it.
    let connection = Box::pin(
        shared
            .auto
            .serve_connection_with_upgrades(io, hyper_service(&conn)),
    );
    drive(
        connection,
        |c| c.get_mut().as_mut().graceful_shutdown(),
        &conn,
    )
    .await;
}

async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    port: u16,
    shared: &Arc<ProxyShared>,
    acceptor: TlsAcceptor,
) {
    let handshake = tokio::time::timeout(shared.limits.header_timeout, acceptor.accept(stream));
    let tls = match handshake.await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%error, %peer, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let (sni, h2, facts) = {
        let session = tls.get_ref().1;
        (
            session.server_name().map(Box::from),
            session.alpn_protocol() == Some(b"h2"),
            tls_facts(session),
        )
    };
    let mut conn = ClientConn::new(Arc::clone(shared), peer, port, true, sni);
    conn.tls = facts;
    let conn = Arc::new(conn);
    if h2 {
        let connection = Box::pin(
            shared
                .http2
                .serve_connection(TokioIo::new(tls), hyper_service(&conn)),
        );
        drive(
            connection,
            |c| c.get_mut().as_mut().graceful_shutdown(),
            &conn,
        )
        .await;
        return;
    }
    let Some(io) = serve_lean(tls, &conn).await else {
        return;
    };
    let connection = Box::pin(
        shared
            .http1
            .serve_connection(io, hyper_service(&conn))
            .with_upgrades(),
    );
    drive(
        connection,
        |c| c.get_mut().as_mut().graceful_shutdown(),
        &conn,
    )
    .await;
}

/// Runs a connection to its end: finishes it gracefully on shutdown, and
/// drops it when it stayed without a request in progress for the header
/// timeout (idle keep-alive, or a request head that is too slow to arrive).
/// The connection's own result, or `None` when the watchdog closed it.
async fn drive<C: Future>(
    connection: C,
    mut graceful: impl FnMut(Pin<&mut C>),
    conn: &ClientConn,
) -> Option<C::Output> {
    let timeout = conn.shared.limits.header_timeout;
    let observer = conn.shared.shutdown.clone();
    let mut shutdown = conn.shared.shutdown.clone();
    let shutdown_requested = shutdown.wait();
    let watchdog = tokio::time::sleep(timeout);
    tokio::pin!(connection, shutdown_requested, watchdog);
    let mut draining = false;
    // The connection wakes this task for every request; the shutdown signal and
    // the watchdog only need polling once registered, until they may have fired.
    let mut shutdown_registered = false;
    let mut watchdog_registered = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = connection.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if !draining
            && (!shutdown_registered || observer.is_triggered())
            && shutdown_requested.as_mut().poll(cx).is_ready()
        {
            draining = true;
            graceful(connection.as_mut());
            if let Poll::Ready(output) = connection.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
        }
        shutdown_registered = true;
        while !watchdog_registered || watchdog.is_elapsed() {
            if watchdog.is_elapsed() {
                match conn.activity.idle_deadline(timeout) {
                    Some(deadline) if deadline <= Instant::now() => return Poll::Ready(None),
                    Some(deadline) => watchdog.as_mut().reset(deadline),
                    None => watchdog.as_mut().reset(Instant::now() + timeout),
                }
            }
            watchdog_registered = watchdog.as_mut().poll(cx).is_pending();
        }
        Poll::Pending
    })
    .await
}

/// The session's version and cipher as nginx names them (`$ssl_protocol`,
/// OpenSSL's `$ssl_cipher`), for Kong's `request.tls`. The proxy asks for no
/// client certificate, so `client_verify` is always `NONE`.
fn tls_facts(session: &rustls::ServerConnection) -> Option<TlsFacts> {
    use rustls::{CipherSuite, ProtocolVersion};
    let version = match session.protocol_version()? {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => return None,
    };
    let suite = session.negotiated_cipher_suite()?.suite();
    let cipher = match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "ECDHE-ECDSA-CHACHA20-POLY1305"
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        other => other.as_str().unwrap_or("UNKNOWN"),
    };
    Some(TlsFacts {
        version,
        cipher,
        client_verify: "NONE",
    })
}
