//! The upstream connection pool, owned here rather than by a generic client:
//! one [`HostPool`] per (protocol, host, port, verification), shared by every
//! service pointing there and kept across config swaps through the
//! [`PoolRegistry`]. HTTP/1.1 connections are leased one request at a time
//! (LIFO idle list with a cap and an idle timeout) and have no task of their
//! own: the request that leases one drives it, so an exchange costs no
//! wake-ups of a separate connection task. They park as bare sockets, which
//! the lean client ([`LeanLease`]) or hyper's client ([`Http1Lease`], for a
//! request with a body) takes up, so both kinds of request reuse the same
//! keep-alive connections. HTTP/2 (gRPC)
//! connections are shared by concurrent requests and run as tasks.

use super::io::{ConnControl, Stream, UpstreamIo};
use super::lean::LeanConn;
use super::RequestBody;
use crate::proxy::error::ProxyError;
use crate::settings::PoolSettings;
use crate::tls::UpstreamTls;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

pub use tollgate_shared::compile::{Timeouts, UpstreamProtocol};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub protocol: UpstreamProtocol,
    pub host: Arc<str>,
    pub port: u16,
    pub verify_tls: bool,
}

/// Finds or creates the pool of an upstream at compile time, so that the
/// request path reaches its pool through the compiled service, without a lookup.
#[derive(Debug)]
pub struct PoolRegistry {
    pools: Mutex<Pools>,
    settings: PoolSettings,
    tls: UpstreamTls,
}

/// The registry's map, and the size at which dead entries are next pruned.
#[derive(Debug, Default)]
struct Pools {
    by_key: HashMap<PoolKey, Weak<HostPool>>,
    prune_at: usize,
}

/// Dead entries are first pruned when the map reaches this size.
const PRUNE_MIN: usize = 64;

impl PoolRegistry {
    pub fn new(settings: PoolSettings, tls: UpstreamTls) -> Self {
        Self {
            pools: Mutex::new(Pools::default()),
            settings,
            tls,
        }
    }

    pub fn pool(&self, key: PoolKey) -> Result<Arc<HostPool>, String> {
        let mut guard = lock(&self.pools);
        let pools = &mut *guard;
        if let Some(pool) = pools.by_key.get(&key).and_then(Weak::upgrade) {
            return Ok(pool);
        }
        // Pruning walks the whole map: doing it on every new pool made a
        // config with N distinct upstreams cost O(N²). Pruning when the map
        // has doubled since the last prune keeps it linear overall while dead
        // entries never outnumber the live ones by more than that.
        if pools.by_key.len() >= pools.prune_at {
            pools.by_key.retain(|_, pool| pool.strong_count() > 0);
            pools.prune_at = (pools.by_key.len() * 2).max(PRUNE_MIN);
        }
        let tls = if key.protocol.is_tls() {
            let server_name = ServerName::try_from(key.host.to_string())
                .map_err(|_| format!("'{}' is not a valid TLS server name", key.host))?;
            let config = self
                .tls
                .client_config(key.verify_tls, key.protocol.is_http2());
            Some((TlsConnector::from(config), server_name))
        } else {
            None
        };
        let pool = Arc::new(HostPool {
            literal_ip: key.host.parse::<IpAddr>().ok(),
            key: key.clone(),
            tls,
            idle: Mutex::new(Vec::new()),
            shared_h2: Mutex::new(None),
            settings: self.settings.clone(),
            reaper_running: AtomicBool::new(false),
        });
        pools.by_key.insert(key, Arc::downgrade(&pool));
        Ok(pool)
    }
}

/// Idle time after which a pooled connection may be racing the upstream's own
/// keep-alive timeout. A connection used more recently failing after a send is
/// an upstream failure, not a stale socket, and not worth copying every request
/// head in advance for.
const STALE_AFTER: Duration = Duration::from_secs(1);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// hyper's HTTP/1.1 client connection state machine over our socket.
pub type Http1Connection = http1::Connection<TokioIo<UpstreamIo>, RequestBody>;

/// A parked HTTP/1.1 connection: the bare socket, which either client (the
/// lean one, or hyper's for a request with a body) takes up for one request.
struct IdleConn {
    conn: LeanConn,
    since: Instant,
}

/// A connection leased to the lean client for one request.
pub struct LeanLease {
    pub conn: LeanConn,
    /// As [`Http1Lease::may_fail_after_send`].
    pub may_fail_after_send: bool,
}

pub struct HostPool {
    key: PoolKey,
    literal_ip: Option<IpAddr>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Idle HTTP/1.1 sockets, most recently used last.
    idle: Mutex<Vec<IdleConn>>,
    shared_h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
    settings: PoolSettings,
    reaper_running: AtomicBool,
}

impl std::fmt::Debug for HostPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostPool").field("key", &self.key).finish()
    }
}

/// An HTTP/1.1 connection leased to hyper's client for one request (one with
/// a body). Whoever holds it drives it ([`Http1Lease::poll_connection`])
/// while waiting for the response and while streaming its body;
/// [`Http1Lease::release`] gives the socket back once the response ended;
/// dropping it closes the connection.
pub struct Http1Lease {
    pub sender: http1::SendRequest<RequestBody>,
    connection: Pin<Box<Http1Connection>>,
    pub control: Arc<ConnControl>,
    /// `true` when the connection is new, or sat idle long enough that the
    /// upstream may be closing it right now: a failure after sending is then
    /// worth a retry (for requests that can be replayed).
    pub may_fail_after_send: bool,
    pool: Arc<HostPool>,
}

impl Http1Lease {
    /// Lets hyper read and write on the socket. `Ready` means the connection
    /// ended (closed, or failed: the pending exchange then fails too).
    pub fn poll_connection(&mut self, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        self.connection.as_mut().poll(cx)
    }

    /// Takes the socket back from hyper and parks it, unless hyper holds
    /// bytes it read beyond the response or will not keep the connection.
    pub fn release(mut self) {
        if self.sender.is_closed() {
            return;
        }
        // One poll lets hyper finish the exchange: a response that ends the
        // connection (`Connection: close`, HTTP/1.0) makes it complete here.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if self.connection.as_mut().poll(&mut cx).is_ready() {
            return;
        }
        drop(self.sender);
        let parts = Pin::into_inner(self.connection).into_parts();
        if !parts.read_buf.is_empty() {
            return;
        }
        self.control.set_awaiting_response(false);
        let conn = LeanConn::new(parts.io.into_inner(), self.control);
        self.pool.put(conn);
    }
}

impl HostPool {
    pub fn key(&self) -> &PoolKey {
        &self.key
    }

    /// A parked socket that is still usable, if any.
    async fn pop_usable(&self) -> Option<(LeanConn, Duration)> {
        loop {
            let mut idle = lock(&self.idle).pop()?;
            let idle_for = idle.since.elapsed();
            if idle_for >= self.settings.idle_timeout {
                continue;
            }
            // Nobody read the socket while it was parked: it must be silent
            // and open (an upstream closing it is the usual exception).
            let open = std::future::poll_fn(|cx| Poll::Ready(idle.conn.poll_still_open(cx))).await;
            if open {
                return Some((idle.conn, idle_for));
            }
        }
    }

    /// A connection for hyper's client: an idle socket taken up by a new
    /// hyper connection state (no I/O for HTTP/1), else a new connection.
    pub async fn checkout_http1(
        self: &Arc<Self>,
        timeouts: &Timeouts,
    ) -> Result<Http1Lease, ProxyError> {
        let (conn, may_fail_after_send) = match self.pop_usable().await {
            Some((conn, idle_for)) => (conn, idle_for >= STALE_AFTER),
            None => (self.connect_lean(timeouts).await?, true),
        };
        conn.control().configure(timeouts.read, timeouts.write);
        let (io, control) = conn.into_io();
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(128 * 1024)
            .handshake(TokioIo::new(io))
            .await
            .map_err(ProxyError::Upstream)?;
        Ok(Http1Lease {
            sender,
            connection: Box::pin(connection),
            control,
            may_fail_after_send,
            pool: Arc::clone(self),
        })
    }

    /// A connection for the lean client: an idle socket, else a new one.
    pub async fn checkout_lean(&self, timeouts: &Timeouts) -> Result<LeanLease, ProxyError> {
        if let Some((conn, idle_for)) = self.pop_usable().await {
            conn.control().configure(timeouts.read, timeouts.write);
            return Ok(LeanLease {
                conn,
                may_fail_after_send: idle_for >= STALE_AFTER,
            });
        }
        Ok(LeanLease {
            conn: self.connect_lean(timeouts).await?,
            may_fail_after_send: true,
        })
    }

    async fn connect_lean(&self, timeouts: &Timeouts) -> Result<LeanConn, ProxyError> {
        let stream = self.connect_stream(timeouts).await?;
        let control = Arc::new(ConnControl::new(timeouts.read, timeouts.write));
        let io = UpstreamIo::new(stream, Arc::clone(&control));
        Ok(LeanConn::new(io, control))
    }

    /// Parks a socket whose last response ended cleanly.
    pub fn put(self: &Arc<Self>, conn: LeanConn) {
        let now_idle = {
            let mut idle = lock(&self.idle);
            if idle.len() >= self.settings.max_idle_per_upstream {
                return;
            }
            idle.push(IdleConn {
                conn,
                since: Instant::now(),
            });
            idle.len()
        };
        if now_idle == 1 {
            self.ensure_reaper();
        }
    }

    /// A connection of its own for a protocol upgrade (WebSocket): never
    /// pooled, driven by a task so that it can hand over the upgraded socket.
    pub async fn connect_for_upgrade(
        &self,
        timeouts: &Timeouts,
    ) -> Result<(http1::SendRequest<RequestBody>, Arc<ConnControl>), ProxyError> {
        let (sender, connection, control) = self.connect_http1(timeouts).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        Ok((sender, control))
    }

    /// Closes idle connections past the idle timeout. The reaper task exists
    /// only while the pool holds idle connections.
    fn ensure_reaper(self: &Arc<Self>) {
        if self.reaper_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.reaper_running.store(false, Ordering::Release);
            return;
        };
        let pool = Arc::downgrade(self);
        let period = self.settings.idle_timeout;
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                if pool.reap() > 0 {
                    continue;
                }
                pool.reaper_running.store(false, Ordering::Release);
                // A connection parked between the reap and the store would have
                // seen the flag still set; take the job back if so.
                let parked = !lock(&pool.idle).is_empty();
                if !parked || pool.reaper_running.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        });
    }

    /// Drops expired or closed idle connections; returns how many remain.
    fn reap(&self) -> usize {
        let timeout = self.settings.idle_timeout;
        let mut idle = lock(&self.idle);
        idle.retain(|c| c.since.elapsed() < timeout);
        idle.len()
    }

    /// Number of idle HTTP/1.1 connections (for status and tests).
    pub fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }

    /// The shared HTTP/2 connection, (re)established when missing or closed.
    pub async fn checkout_http2(
        &self,
        timeouts: &Timeouts,
    ) -> Result<http2::SendRequest<RequestBody>, ProxyError> {
        if let Some(sender) = lock(&self.shared_h2).as_ref() {
            if !sender.is_closed() {
                return Ok(sender.clone());
            }
        }
        let stream = self.connect_stream(timeouts).await?;
        // HTTP/2 multiplexes requests with different timeouts on one socket, so
        // its socket is never timed; requests are (see `upstream::send_http2`).
        let control = Arc::new(ConnControl::new(timeouts.read, timeouts.write));
        let io = TokioIo::new(UpstreamIo::new(stream, control));
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(ProxyError::Upstream)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream h2 connection ended");
            }
        });
        *lock(&self.shared_h2) = Some(sender.clone());
        Ok(sender)
    }

    async fn connect_http1(
        &self,
        timeouts: &Timeouts,
    ) -> Result<
        (
            http1::SendRequest<RequestBody>,
            Http1Connection,
            Arc<ConnControl>,
        ),
        ProxyError,
    > {
        let stream = self.connect_stream(timeouts).await?;
        let control = Arc::new(ConnControl::new(timeouts.read, timeouts.write));
        let io = TokioIo::new(UpstreamIo::new(stream, Arc::clone(&control)));
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(128 * 1024)
            .handshake(io)
            .await
            .map_err(ProxyError::Upstream)?;
        Ok((sender, connection, control))
    }

    async fn connect_stream(&self, timeouts: &Timeouts) -> Result<Stream, ProxyError> {
        let deadline = Instant::now() + timeouts.connect;
        let addrs: Vec<SocketAddr> = match self.literal_ip {
            Some(ip) => vec![SocketAddr::new(ip, self.key.port)],
            None => {
                let lookup = tokio::net::lookup_host((self.key.host.as_ref(), self.key.port));
                match tokio::time::timeout_at(deadline, lookup).await {
                    Ok(Ok(addrs)) => addrs.collect(),
                    Ok(Err(error)) => return Err(ProxyError::NameResolution(error)),
                    Err(_) => return Err(ProxyError::ConnectTimeout),
                }
            }
        };
        let tcp = match tokio::time::timeout_at(deadline, connect_any(&addrs)).await {
            Ok(result) => result.map_err(ProxyError::Connect)?,
            Err(_) => return Err(ProxyError::ConnectTimeout),
        };
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some((connector, server_name)) => {
                let handshake = connector.connect(server_name.clone(), tcp);
                match tokio::time::timeout_at(deadline, handshake).await {
                    Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls))),
                    Ok(Err(error)) => Err(ProxyError::Tls(error)),
                    Err(_) => Err(ProxyError::ConnectTimeout),
                }
            }
        }
    }
}

async fn connect_any(addrs: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "name resolved to no address")
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn registry() -> PoolRegistry {
        let tls = UpstreamTls::new(rustls::RootCertStore::empty()).unwrap();
        PoolRegistry::new(PoolSettings::default(), tls)
    }

    fn key(i: usize) -> PoolKey {
        PoolKey {
            protocol: UpstreamProtocol::Http,
            host: Arc::from(format!("u{i}.test")),
            port: 80,
            verify_tls: false,
        }
    }

    #[test]
    fn a_key_has_one_pool_and_dead_pools_are_pruned() {
        let registry = registry();
        let live = registry.pool(key(0)).unwrap();
        assert!(Arc::ptr_eq(&live, &registry.pool(key(0)).unwrap()));
        for i in 1..5_000 {
            // Each pool dies at once: its entry is dead from then on.
            drop(registry.pool(key(i)).unwrap());
            assert!(lock(&registry.pools).by_key.len() <= PRUNE_MIN, "at {i}");
        }
        assert!(Arc::ptr_eq(&live, &registry.pool(key(0)).unwrap()));
        let kept: Vec<Arc<HostPool>> = (1..1_000).map(|i| registry.pool(key(i)).unwrap()).collect();
        assert_eq!(lock(&registry.pools).by_key.len(), kept.len() + 1);
        for (i, pool) in kept.iter().enumerate() {
            assert!(Arc::ptr_eq(pool, &registry.pool(key(i + 1)).unwrap()));
        }
    }
}
