//! The cluster side of the control plane: the `Sync` gRPC server that streams
//! snapshots to data planes over mTLS, and the registry of what each data plane
//! runs.
//!
//! A new stream must open with `Hello`. The node is checked for compatibility
//! (same major version, minor not newer than ours, every configured plugin
//! present); an incompatible node gets a `Refusal` with the reason and nothing
//! else until that changes. Otherwise it gets the current snapshot at once and
//! every later one, plus heartbeats. Acks and Nacks land in the registry.

pub mod build;
pub mod persist;
pub mod publisher;
pub mod registry;
pub mod view;

use registry::{DataPlaneRegistry, NodeHello};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tollgate_proto::v1::{
    cluster_server::{Cluster, ClusterServer},
    control_plane_message, data_plane_message, ControlPlaneMessage, DataPlaneMessage, Heartbeat,
    Refusal, Snapshot,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status, Streaming};

/// A published snapshot together with the plugin names its config uses, so
/// compatibility checks need not walk the config per node.
#[derive(Debug, Clone)]
pub struct Published {
    pub snapshot: Arc<Snapshot>,
    pub plugins_used: Arc<BTreeSet<String>>,
}

/// The current snapshot; `None` until the first one is built.
pub type SnapshotWatch = watch::Receiver<Option<Published>>;

/// Timing of the cluster stream.
#[derive(Debug, Clone, Copy)]
pub struct ClusterTiming {
    pub heartbeat: Duration,
    /// How long a new stream may take to say Hello.
    pub hello_timeout: Duration,
}

impl Default for ClusterTiming {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(5),
            hello_timeout: Duration::from_secs(10),
        }
    }
}

/// The `Cluster` gRPC service.
#[derive(Clone)]
pub struct ClusterService {
    snapshots: SnapshotWatch,
    registry: DataPlaneRegistry,
    timing: ClusterTiming,
}

impl ClusterService {
    pub fn new(
        snapshots: SnapshotWatch,
        registry: DataPlaneRegistry,
        timing: ClusterTiming,
    ) -> Self {
        Self {
            snapshots,
            registry,
            timing,
        }
    }

    /// The tonic server wrapper with compression on both directions.
    pub fn into_server(self) -> ClusterServer<Self> {
        ClusterServer::new(self)
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(16 * 1024 * 1024)
            .max_encoding_message_size(256 * 1024 * 1024)
    }
}

/// The cluster listener's TLS material (PEM). Client certificates are always
/// required and must chain to `ca_pem`; there is no plaintext mode.
#[derive(Clone)]
pub struct ClusterTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Serves the cluster stream on `listener` over mTLS until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: ClusterTls,
    service: ClusterService,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(tls.cert_pem, tls.key_pem))
        .client_ca_root(Certificate::from_pem(tls.ca_pem))
        .client_auth_optional(false);
    Server::builder()
        .tls_config(tls)?
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
}

type OutStream = Pin<Box<dyn Stream<Item = Result<ControlPlaneMessage, Status>> + Send>>;

fn out(kind: control_plane_message::Kind) -> Result<ControlPlaneMessage, Status> {
    Ok(ControlPlaneMessage { kind: Some(kind) })
}

/// Why a data plane may not receive the current config, if it may not.
pub fn incompatibility(hello: &NodeHello, plugins_used: &BTreeSet<String>) -> Option<String> {
    let ours = parse_version(tollgate_shared::VERSION);
    match (parse_version(&hello.version), ours) {
        (Some((major, minor)), Some((our_major, our_minor))) => {
            if major != our_major || minor > our_minor {
                return Some(format!(
                    "data plane version {} is incompatible with control plane version {}",
                    hello.version,
                    tollgate_shared::VERSION
                ));
            }
        }
        _ => {
            return Some(format!(
                "data plane version '{}' is not a valid version",
                hello.version
            ))
        }
    }
    let missing: Vec<&str> = plugins_used
        .iter()
        .filter(|p| !hello.plugins.iter().any(|have| have == *p))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(format!(
            "configured plugins missing from data plane: {}",
            missing.join(", ")
        ))
    }
}

/// The `notAfter` of a DER certificate, in unix seconds.
fn certificate_expiry(der: &[u8]) -> Option<i64> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(certificate.validity().not_after.timestamp())
}

fn parse_version(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    type SyncStream = OutStream;

    async fn sync(
        &self,
        request: Request<Streaming<DataPlaneMessage>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let peer: Option<SocketAddr> = request.remote_addr();
        // The certificate the node actually presented, not what it says about it.
        let presented_expiry = request
            .peer_certs()
            .and_then(|certs| certs.first().and_then(|c| certificate_expiry(c.as_ref())));
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(self.timing.hello_timeout, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("expected Hello"))??;
        let hello = match first.and_then(|m| m.kind) {
            Some(data_plane_message::Kind::Hello(hello)) => hello,
            _ => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        if uuid::Uuid::parse_str(&hello.node_id).is_err() {
            return Err(Status::invalid_argument("node_id must be a UUID"));
        }
        let node = NodeHello {
            node_id: hello.node_id,
            hostname: hello.hostname,
            address: peer.map(|a| a.ip().to_string()).unwrap_or_default(),
            version: hello.version,
            plugins: hello.plugins,
            applied_version: hello.applied_version,
            applied_hash: hello.applied_hash,
            cert_expiry: presented_expiry.unwrap_or(hello.cert_expiry),
        };
        let session = self.registry.connected(node.clone());
        let (tx, rx) = mpsc::channel(8);
        let task = StreamTask {
            node,
            session,
            inbound,
            tx,
            snapshots: self.snapshots.clone(),
            registry: self.registry.clone(),
            timing: self.timing,
        };
        tokio::spawn(task.run());
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream) as OutStream))
    }
}

struct StreamTask {
    node: NodeHello,
    session: u64,
    inbound: Streaming<DataPlaneMessage>,
    tx: mpsc::Sender<Result<ControlPlaneMessage, Status>>,
    snapshots: SnapshotWatch,
    registry: DataPlaneRegistry,
    timing: ClusterTiming,
}

impl StreamTask {
    async fn run(mut self) {
        let reason = self.serve().await;
        tracing::info!(node_id = %self.node.node_id, reason, "data plane stream ended");
        self.registry.disconnected(&self.node.node_id, self.session);
    }

    /// Sends the current snapshot unless the node may not have it; returns
    /// false when the stream is gone.
    async fn offer(&mut self, last_sent: &mut Option<String>) -> bool {
        let current = self.snapshots.borrow_and_update().clone();
        let Some(published) = current else {
            return true;
        };
        if let Some(reason) = incompatibility(&self.node, &published.plugins_used) {
            self.registry.incompatible(&self.node.node_id, &reason);
            if last_sent.as_deref() != Some(reason.as_str()) {
                *last_sent = Some(reason.clone());
                return self
                    .tx
                    .send(out(control_plane_message::Kind::Refusal(Refusal {
                        reason,
                    })))
                    .await
                    .is_ok();
            }
            return true;
        }
        if last_sent.as_deref() == Some(published.snapshot.hash.as_str()) {
            return true;
        }
        *last_sent = Some(published.snapshot.hash.clone());
        self.registry.sent(
            &self.node.node_id,
            published.snapshot.version,
            &published.snapshot.hash,
        );
        let snapshot = (*published.snapshot).clone();
        self.tx
            .send(out(control_plane_message::Kind::Snapshot(snapshot)))
            .await
            .is_ok()
    }

    async fn serve(&mut self) -> &'static str {
        let mut last_sent: Option<String> = None;
        if !self.offer(&mut last_sent).await {
            return "stream closed";
        }
        let silence_limit = self.timing.heartbeat * 3;
        let mut deadline = tokio::time::Instant::now() + silence_limit;
        let mut ticker = tokio::time::interval(self.timing.heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        return "control plane shutting down";
                    }
                    if !self.offer(&mut last_sent).await {
                        return "stream closed";
                    }
                }
                _ = ticker.tick() => {
                    let (version, hash) = self
                        .snapshots
                        .borrow()
                        .as_ref()
                        .map(|p| (p.snapshot.version, p.snapshot.hash.clone()))
                        .unwrap_or_default();
                    let beat = Heartbeat { sent_at_ms: registry::now_ms(), hash, version };
                    if self.tx.send(out(control_plane_message::Kind::Heartbeat(beat))).await.is_err() {
                        return "stream closed";
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return "data plane silent",
                next = self.inbound.message() => {
                    let msg = match next {
                        Ok(Some(msg)) => msg,
                        Ok(None) => return "data plane closed the stream",
                        Err(_) => return "stream error",
                    };
                    deadline = tokio::time::Instant::now() + silence_limit;
                    match msg.kind {
                        Some(data_plane_message::Kind::Ack(ack)) => {
                            self.registry.acked(&self.node.node_id, ack.version, &ack.hash, ack.applied_at_ms);
                        }
                        Some(data_plane_message::Kind::Nack(nack)) => {
                            self.registry.rejected(&self.node.node_id, nack.version, &nack.hash, nack.errors);
                        }
                        Some(data_plane_message::Kind::Heartbeat(_)) => self.registry.seen(&self.node.node_id),
                        Some(data_plane_message::Kind::Hello(_)) | None => {}
                    }
                }
            }
        }
    }
}
