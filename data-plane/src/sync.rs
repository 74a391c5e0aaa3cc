//! The cluster sync client: one long-lived mTLS gRPC stream to the control
//! plane. It says Hello, applies each snapshot through a [`SnapshotSink`]
//! (compile and swap, all or nothing), answers Ack or Nack as soon as the swap
//! is done, and persists what it applied in the background (`persist`). It
//! reconnects with jittered exponential backoff and drops a silent control
//! plane after three heartbeat intervals.
//!
//! Why it is not connected is kept in [`SyncStatus`] (owned by `telemetry`;
//! the data plane's `/status` shows it as `control_plane`) and logged once per
//! change, not once per attempt: a control plane that stays down for an hour
//! is one warning.

mod connect;
mod persist;
pub use tollgate_shared::certificates::validity;

pub use connect::{ConnectProblem, Connector, ConnectorError, TlsSetupError, CONNECT_TIMEOUT};

use crate::cache::SnapshotCache;
use crate::config_thread::ConfigThread;
use persist::{PersistQueue, Persister};
use rand::Rng;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tollgate_proto::v1::{
    cluster_client::ClusterClient, control_plane_message, data_plane_message, Ack,
    ControlPlaneMessage, DataPlaneMessage, Heartbeat, Hello, Nack, Snapshot,
};
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, Endpoint};

/// Where the config goes once received: compile it and swap it in, or say why not.
pub trait SnapshotSink: Send + Sync + 'static {
    /// Compiles and swaps in `snapshot`; on failure the old config stays and the
    /// errors are sent back to the control plane.
    fn apply(&self, snapshot: &Snapshot) -> Result<(), Vec<String>>;
    /// The version and hash currently served, if any.
    fn applied(&self) -> Option<(u64, String)>;
    /// [`SnapshotSink::apply`] with the message by value, so that an
    /// implementation can convert it without copying; on success, what to
    /// persist. By default: `apply`, then persist the message as received.
    fn apply_owned(&self, snapshot: Snapshot) -> Result<Persist, Vec<String>> {
        self.apply(&snapshot).map(|()| Persist::Message(snapshot))
    }
    /// The control plane's count of connected data planes (from its
    /// heartbeats); by default ignored.
    fn cluster_size(&self, _data_planes: u32) {}
    /// The thread to apply snapshots on; `None`: tokio's blocking pool.
    fn config_thread(&self) -> Option<&ConfigThread> {
        None
    }
}

/// An applied snapshot, as handed to the cache writer.
#[derive(Debug)]
pub enum Persist {
    /// The message as received.
    Message(Snapshot),
    /// The converted config; the writer encodes it back into a message (the
    /// same config and hash: conversion is lossless), off the apply path.
    Config {
        snapshot: tollgate_shared::snapshot::Snapshot,
        built_at_ms: i64,
    },
}

impl Persist {
    pub fn version(&self) -> u64 {
        match self {
            Persist::Message(message) => message.version,
            Persist::Config { snapshot, .. } => snapshot.version,
        }
    }

    /// Calls `write` with the message form.
    fn with_message<T>(&self, write: impl FnOnce(&Snapshot) -> T) -> T {
        match self {
            Persist::Message(message) => write(message),
            Persist::Config {
                snapshot,
                built_at_ms,
            } => write(&snapshot.to_proto(*built_at_ms)),
        }
    }
}

/// Settings of the sync client.
#[derive(Clone)]
pub struct SyncSettings {
    /// `https://host:port` of the control plane's cluster listener.
    pub endpoint: String,
    /// The name the control plane's certificate must carry.
    pub server_name: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub node_id: String,
    pub hostname: String,
    pub plugins: Vec<String>,
    pub heartbeat: Duration,
    pub cert_expiry: i64,
}

pub use crate::telemetry::{Link, LinkState, SyncStatus};

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Settings(#[from] ConnectorError),
    #[error(transparent)]
    Connect(ConnectProblem),
    #[error("the connection to {addr} failed: {reason}")]
    Transport { addr: String, reason: String },
    #[error("the control plane at {addr} ended the stream: {reason}")]
    Rpc { addr: String, reason: String },
    #[error("the control plane was silent for {0:?}; reconnecting")]
    Silent(Duration),
    #[error("the control plane closed the stream")]
    Closed,
}

impl SessionError {
    /// A transport error from tonic: the connect problem inside it, or a TLS
    /// failure that surfaced after the handshake, or the error's own words.
    fn transport(addr: &str, error: &(dyn std::error::Error + 'static)) -> SessionError {
        if let Some(problem) =
            connect::find_problem(error).or_else(|| connect::explain_tls(addr, error))
        {
            return SessionError::Connect(problem);
        }
        SessionError::Transport {
            addr: addr.to_string(),
            reason: error_chain(error),
        }
    }

    fn rpc(addr: &str, status: &tonic::Status) -> SessionError {
        if let Some(problem) = std::error::Error::source(status).and_then(|source| {
            connect::find_problem(source).or_else(|| connect::explain_tls(addr, source))
        }) {
            return SessionError::Connect(problem);
        }
        match status.code() {
            // Not a gRPC server, or one without the cluster service.
            tonic::Code::Unimplemented | tonic::Code::Unknown
                if status.message().contains("HTTP status code")
                    || status.code() == tonic::Code::Unimplemented =>
            {
                SessionError::Connect(ConnectProblem::NotClusterProtocol {
                    addr: addr.to_string(),
                    detail: "an HTTP/2 server without the cluster service".into(),
                })
            }
            _ => SessionError::Rpc {
                addr: addr.to_string(),
                reason: if status.message().is_empty() {
                    format!("{:?}", status.code())
                } else {
                    status.message().to_string()
                },
            },
        }
    }
}

/// `error: cause: cause`, on one line.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Runs until `shutdown` is cancelled, reconnecting as needed.
pub async fn run(
    settings: SyncSettings,
    sink: Arc<dyn SnapshotSink>,
    cache: Option<SnapshotCache>,
    status: Arc<SyncStatus>,
    shutdown: CancellationToken,
) {
    let persister = cache.map(|cache| Persister::spawn(Arc::new(cache), Arc::clone(&status)));
    let queue = persister.as_ref().map(Persister::queue);
    sessions(settings, sink, queue, &status, shutdown).await;
    // Write the newest applied snapshot if it is still pending.
    if let Some(persister) = persister {
        persister.finish().await;
    }
}

async fn sessions(
    settings: SyncSettings,
    sink: Arc<dyn SnapshotSink>,
    queue: Option<PersistQueue>,
    status: &SyncStatus,
    shutdown: CancellationToken,
) {
    let mut backoff = BACKOFF_START;
    let connector = Connector::new(
        &settings.endpoint,
        &settings.server_name,
        &settings.ca_pem,
        &settings.cert_pem,
        &settings.key_pem,
    );
    loop {
        let started = tokio::time::Instant::now();
        let outcome = match &connector {
            Ok(connector) => tokio::select! {
                _ = shutdown.cancelled() => return,
                r = session(&settings, connector, &sink, queue.as_ref(), status) => r,
            },
            Err(error) => Err(SessionError::Settings(error.clone())),
        };
        status.connected.store(false, Ordering::Relaxed);
        // A session that lived a while resets the backoff: the control plane was fine.
        if started.elapsed() > settings.heartbeat * 3 {
            backoff = BACKOFF_START;
        }
        let delay = rand::rng().random_range(backoff / 2..=backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
        let reason = match outcome {
            Ok(()) => SessionError::Closed.to_string(),
            Err(error) => error.to_string(),
        };
        let next_attempt_ms = now_ms() + delay.as_millis() as i64;
        if status.transition(
            LinkState::Disconnected,
            Some(reason.clone()),
            Some(next_attempt_ms),
        ) {
            tracing::warn!(
                control_plane = %settings.endpoint,
                retry_in = ?delay,
                "cannot sync with the control plane: {reason} (retrying with backoff up to {BACKOFF_MAX:?}; logged again only when the reason changes)"
            );
        } else {
            tracing::debug!(control_plane = %settings.endpoint, retry_in = ?delay, "still cannot sync: {reason}");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// A channel over the [`Connector`]'s mTLS connection. The URI given to
/// tonic only names the authority: the connector does TCP and TLS itself.
async fn connect(connector: &Connector) -> Result<Channel, SessionError> {
    let addr = connector.addr();
    let connector = connector.clone();
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| SessionError::transport(&addr, &e))?
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let connector = connector.clone();
            async move { connector.connect().await }
        }))
        .await
        .map_err(|e| SessionError::transport(&addr, &e))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn message(kind: data_plane_message::Kind) -> DataPlaneMessage {
    DataPlaneMessage { kind: Some(kind) }
}

async fn session(
    settings: &SyncSettings,
    connector: &Connector,
    sink: &Arc<dyn SnapshotSink>,
    queue: Option<&PersistQueue>,
    status: &SyncStatus,
) -> Result<(), SessionError> {
    let channel = connect(connector).await?;
    let addr = connector.addr();
    let mut client = ClusterClient::new(channel)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(256 * 1024 * 1024);
    let (tx, rx) = mpsc::channel::<DataPlaneMessage>(16);
    let (applied_version, applied_hash) = sink.applied().unwrap_or_default();
    let hello = Hello {
        node_id: settings.node_id.clone(),
        hostname: settings.hostname.clone(),
        version: tollgate_shared::VERSION.to_string(),
        plugins: settings.plugins.clone(),
        applied_version,
        applied_hash,
        cert_expiry: settings.cert_expiry,
    };
    // The channel has room: these sends cannot fail before the stream starts.
    let _ = tx
        .send(message(data_plane_message::Kind::Hello(hello)))
        .await;
    let mut inbound = client
        .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|status| SessionError::rpc(&addr, &status))?
        .into_inner();
    status.connected.store(true, Ordering::Relaxed);
    status.transition(LinkState::Connected, None, None);
    tracing::info!(endpoint = %settings.endpoint, "connected to the control plane");

    let silence_limit = settings.heartbeat * 3;
    let mut ticker = tokio::time::interval(settings.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut deadline = tokio::time::Instant::now() + silence_limit;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let (version, hash) = sink.applied().unwrap_or_default();
                let beat = Heartbeat { sent_at_ms: now_ms(), hash, version, connected_data_planes: 0 };
                if tx.send(message(data_plane_message::Kind::Heartbeat(beat))).await.is_err() {
                    return Err(SessionError::Closed);
                }
            }
            _ = tokio::time::sleep_until(deadline) => return Err(SessionError::Silent(silence_limit)),
            next = inbound.message() => {
                let msg = match next {
                    Ok(Some(msg)) => msg,
                    Ok(None) => return Err(SessionError::Closed),
                    Err(status) => return Err(SessionError::rpc(&addr, &status)),
                };
                deadline = tokio::time::Instant::now() + silence_limit;
                if let Some(reply) = handle(msg, sink, queue, status).await {
                    if tx.send(reply).await.is_err() {
                        return Err(SessionError::Closed);
                    }
                }
            }
        }
    }
}

async fn handle(
    msg: ControlPlaneMessage,
    sink: &Arc<dyn SnapshotSink>,
    queue: Option<&PersistQueue>,
    status: &SyncStatus,
) -> Option<DataPlaneMessage> {
    match msg.kind? {
        control_plane_message::Kind::Heartbeat(beat) => {
            sink.cluster_size(beat.connected_data_planes);
            None
        }
        control_plane_message::Kind::Refusal(refusal) => {
            if status.transition(LinkState::Refused, Some(refusal.reason.clone()), None) {
                tracing::warn!(reason = %refusal.reason, "the control plane refuses to send configs to this node");
            }
            None
        }
        control_plane_message::Kind::Snapshot(snapshot) => {
            status.transition(LinkState::Connected, None, None);
            Some(apply(snapshot, sink, queue, status).await)
        }
    }
}

/// Compiles and swaps `snapshot` in, queues it for persistence, and answers:
/// the Ack does not wait for the cache write.
async fn apply(
    snapshot: Snapshot,
    sink: &Arc<dyn SnapshotSink>,
    queue: Option<&PersistQueue>,
    status: &SyncStatus,
) -> DataPlaneMessage {
    let (version, hash) = (snapshot.version, snapshot.hash.clone());
    let already = sink
        .applied()
        .is_some_and(|(_, current)| current == snapshot.hash);
    if !already {
        // Compiling a large config takes a while: keep it off the async workers,
        // on the sink's config thread when it has one. The message never comes
        // back here: it goes to the persistence queue (or is dropped) there.
        let worker_sink = Arc::clone(sink);
        let queue = queue.cloned();
        let job = move || match worker_sink.apply_owned(snapshot) {
            Ok(persist) => {
                if let Some(queue) = queue {
                    queue.push(persist);
                }
                Ok(())
            }
            Err(errors) => Err(errors),
        };
        let aborted =
            |e: &dyn std::fmt::Display| Err(vec![format!("config compilation aborted: {e}")]);
        let result = match sink.config_thread() {
            Some(thread) => match thread.run(job).await {
                Ok(result) => result,
                Err(e) => aborted(&e),
            },
            None => match tokio::task::spawn_blocking(job).await {
                Ok(result) => result,
                Err(e) => aborted(&e),
            },
        };
        if let Err(errors) = result {
            status.snapshots_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(version, errors = ?errors, "rejected a config snapshot");
            return message(data_plane_message::Kind::Nack(Nack {
                version,
                hash,
                errors,
            }));
        }
        status.snapshots_applied.fetch_add(1, Ordering::Relaxed);
        tracing::info!(version, "applied config snapshot");
    }
    message(data_plane_message::Kind::Ack(Ack {
        version,
        hash,
        applied_at_ms: now_ms(),
    }))
}
