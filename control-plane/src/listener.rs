//! Admin listeners: TCP, or a Unix socket created with mode 0600 (a stale
//! socket from a crashed run is replaced; a live one is left alone). Both count
//! connections for `GET /status`.

use crate::settings::ListenAddr;
use crate::state::ServerCounters;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};

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

/// A connection that keeps `connections_active` right, however it ends.
pub struct Counted<T> {
    inner: T,
    counters: Arc<ServerCounters>,
}

impl<T> Counted<T> {
    fn new(inner: T, counters: Arc<ServerCounters>) -> Self {
        counters
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        counters.connections_active.fetch_add(1, Ordering::Relaxed);
        Counted { inner, counters }
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
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// An axum listener that counts its connections.
pub struct CountingListener<L> {
    inner: L,
    counters: Arc<ServerCounters>,
}

impl<L> CountingListener<L> {
    pub fn new(inner: L, counters: Arc<ServerCounters>) -> Self {
        CountingListener { inner, counters }
    }
}

impl<L: axum::serve::Listener> axum::serve::Listener for CountingListener<L> {
    type Io = Counted<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        (Counted::new(io, self.counters.clone()), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; removes a Unix socket afterwards.
pub async fn serve(
    listener: AdminListener,
    app: axum::Router,
    counters: Arc<ServerCounters>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    match listener {
        AdminListener::Tcp(l) => {
            axum::serve(CountingListener::new(l, counters), app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        AdminListener::Unix { listener, path } => {
            let result = axum::serve(CountingListener::new(listener, counters), app)
                .with_graceful_shutdown(shutdown)
                .await;
            let _ = std::fs::remove_file(&path);
            result
        }
    }
}
