//! Admin listeners: TCP, or a Unix socket created with mode 0600 (a stale
//! socket from a crashed run is replaced; a live one is left alone), and the
//! connection loop that serves the Admin API on them. Both count connections
//! for `GET /status`.
//!
//! The loop bounds what a client can hold before the token is even checked
//! (authentication needs a complete request head): a request head must arrive
//! within `header_timeout` (counted from the connection's start or the end of
//! the previous response, so it also bounds keep-alive idling), a connection
//! that moves no byte for `idle_timeout` while no handler runs is closed (a
//! stalled body upload, a client that does not read its response), and at most
//! `max_connections` are served at once; one more is answered 503 and closed.

use crate::settings::ListenAddr;
use crate::state::ServerCounters;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

/// Default `--admin-header-timeout`: hyper's own default.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `--admin-idle-timeout`: nginx's `client_body_timeout` and `send_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `--admin-max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// What one Admin API client may hold on the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// Time to send a complete request head, from connection start or the end
    /// of the previous response.
    pub header_timeout: Duration,
    /// Time a connection may move no byte while no handler runs for it.
    pub idle_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("{0}: another process is serving on this socket")]
    InUse(String),
    #[error("{0}: exists and is not a socket; refusing to replace it")]
    NotASocket(String),
}

/// A bound admin listener.
pub enum AdminListener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

impl AdminListener {
    pub async fn bind(addr: &ListenAddr) -> Result<AdminListener, ListenError> {
        match addr {
            ListenAddr::Tcp(socket) => TcpListener::bind(socket)
                .await
                .map(AdminListener::Tcp)
                .map_err(|source| ListenError::Bind {
                    addr: addr.to_string(),
                    source,
                }),
            ListenAddr::Unix(path) => bind_unix(path).await,
        }
    }

    /// The bound address (`127.0.0.1:port` or `unix:/path`).
    pub fn local_addr(&self) -> String {
        match self {
            AdminListener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
            AdminListener::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }
}

async fn bind_unix(path: &Path) -> Result<AdminListener, ListenError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let shown = path.display().to_string();
    let bind_error = |source| ListenError::Bind {
        addr: format!("unix:{shown}"),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ListenError::NotASocket(shown));
        }
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(ListenError::InUse(shown));
        }
        std::fs::remove_file(path).map_err(bind_error)?;
    }
    // Bind inside a private directory, tighten the mode, then move the socket
    // into place: it is never reachable with looser permissions.
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".tollgate-admin-")
        .tempdir_in(parent)
        .map_err(bind_error)?;
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(bind_error)?;
    let staged = staging.path().join("admin.sock");
    let listener = UnixListener::bind(&staged).map_err(bind_error)?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
        .map_err(bind_error)?;
    std::fs::rename(&staged, path).map_err(bind_error)?;
    Ok(AdminListener::Unix {
        listener,
        path: path.to_path_buf(),
    })
}

/// When a connection last moved a byte, and whether a handler is running for it.
struct Activity {
    opened: Instant,
    /// Milliseconds after `opened`.
    last_io_ms: AtomicU64,
    handlers: AtomicUsize,
    /// A handler is waiting for request body bytes: that wait is the client's,
    /// so it counts as idleness.
    awaiting_body: AtomicBool,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            handlers: AtomicUsize::new(0),
            awaiting_body: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_io_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection counts as idle if nothing happens before.
    fn idle_at(&self, idle_timeout: Duration) -> Instant {
        self.opened + Duration::from_millis(self.last_io_ms.load(Ordering::Relaxed)) + idle_timeout
    }

    fn is_idle(&self, idle_timeout: Duration) -> bool {
        let waiting_on_client = self.handlers.load(Ordering::Relaxed) == 0
            || self.awaiting_body.load(Ordering::Relaxed);
        waiting_on_client && self.idle_at(idle_timeout) <= Instant::now()
    }
}

/// A request body that tells the connection's [`Activity`] while its handler
/// waits for the client.
struct WatchedBody {
    inner: hyper::body::Incoming,
    activity: Arc<Activity>,
}

impl http_body::Body for WatchedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.activity
            .awaiting_body
            .store(polled.is_pending(), Ordering::Relaxed);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Marks a handler as running; a slow handler (a large `/config`) is not idleness.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Busy {
        activity.handlers.fetch_add(1, Ordering::Relaxed);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.awaiting_body.store(false, Ordering::Relaxed);
        self.0.handlers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection that keeps `connections_active` right however it ends, and
/// records when it last moved a byte.
pub struct Counted<T> {
    inner: T,
    counters: Arc<ServerCounters>,
    activity: Arc<Activity>,
}

impl<T> Counted<T> {
    fn new(inner: T, counters: Arc<ServerCounters>, activity: Arc<Activity>) -> Self {
        counters
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        counters.connections_active.fetch_add(1, Ordering::Relaxed);
        Counted {
            inner,
            counters,
            activity,
        }
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        self.counters
            .connections_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the open
/// connections finish; removes a Unix socket afterwards.
pub async fn serve(
    listener: AdminListener,
    app: axum::Router,
    counters: Arc<ServerCounters>,
    limits: AdminLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    match listener {
        AdminListener::Tcp(l) => serve_on(l, app, counters, limits, shutdown).await,
        AdminListener::Unix { listener, path } => {
            let result = serve_on(listener, app, counters, limits, shutdown).await;
            let _ = std::fs::remove_file(&path);
            result
        }
    }
}

/// Answer to a connection over `max_connections`: written without waiting on
/// the client, then closed.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: application/json; charset=utf-8\r\n\
Retry-After: 1\r\n\
Connection: close\r\n\
Content-Length: 51\r\n\
\r\n\
{\"message\":\"Too many connections to the Admin API\"}";

/// How long a refused connection may take to receive its 503.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// At most one "connection cap reached" warning per this interval.
const CAP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

async fn serve_on<L>(
    mut listener: L,
    app: axum::Router,
    counters: Arc<ServerCounters>,
    limits: AdminLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    L: axum::serve::Listener,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut last_cap_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (mut io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if last_cap_warning.is_none_or(|at| at.elapsed() >= CAP_WARNING_INTERVAL) {
                last_cap_warning = Some(Instant::now());
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "Admin API connection cap reached; refusing new connections with 503"
                );
            }
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, io.write_all(OVER_CAPACITY)).await;
            });
            continue;
        };
        let activity = Activity::new();
        let io = Counted::new(io, counters.clone(), activity.clone());
        let service = hyper::service::service_fn({
            let activity = activity.clone();
            let app = app.clone();
            move |request: hyper::Request<hyper::body::Incoming>| {
                let busy = Busy::new(&activity);
                let app = app.clone();
                let request = request.map(|inner| WatchedBody {
                    inner,
                    activity: activity.clone(),
                });
                async move {
                    let response = app.oneshot(request).await;
                    drop(busy);
                    response
                }
            }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            tokio::pin!(connection);
            loop {
                let now = Instant::now();
                let idle_at = activity.idle_at(idle_timeout);
                // Past the idle point only while a handler runs: look again later.
                let wake = if idle_at > now {
                    idle_at
                } else {
                    now + idle_timeout
                };
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(%error, "admin connection ended");
                        }
                        break;
                    }
                    () = tokio::time::sleep_until(wake.into()) => {
                        if activity.is_idle(idle_timeout) {
                            tracing::debug!("admin connection idle; closed");
                            break;
                        }
                    }
                }
            }
            drop(slot);
        });
    }
    graceful.shutdown().await;
    Ok(())
}
