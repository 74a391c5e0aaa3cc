//! The cluster side of the control plane: the `Sync` gRPC server that streams
//! snapshots to data planes over mTLS, and the registry of what each data plane
//! runs.
//!
//! A new stream must open with `Hello`. The node is checked for compatibility
//! (same major version, minor not newer than ours, every configured plugin
//! present); an incompatible node gets a `Refusal` with the reason and nothing
//! else until that changes. Otherwise it gets the current snapshot at once and
//! every later one, plus heartbeats. Acks and Nacks land in the registry.
//!
//! The service is served by [`SyncServer`] rather than the generated tonic
//! server, so that every stream sends the same pre-encoded (and
//! pre-compressed) snapshot frame ([`wire`]); the messages on the wire are
//! the generated protocol's.

pub mod build;
pub mod persist;
pub mod publisher;
pub mod registry;
pub mod tls;
pub mod view;
pub mod wire;

use bytes::Bytes;
use registry::{DataPlaneRegistry, NodeHello};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tollgate_proto::v1::{
    control_plane_message, data_plane_message, ControlPlaneMessage, DataPlaneMessage, Heartbeat,
    Refusal, Snapshot,
};
use tonic::codec::{Codec as _, CompressionEncoding};
use tonic::{Status, Streaming};
use wire::{OutBody, SnapshotFrames};

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
    /// The encoded current snapshot, shared by every stream.
    frames: SnapshotFrames,
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
            frames: SnapshotFrames::default(),
        }
    }

    /// The HTTP service that serves `Sync`, with gzip in both directions.
    pub fn into_server(self) -> SyncServer {
        SyncServer { service: self }
    }
}

/// The largest message a data plane may send.
const MAX_INBOUND_MESSAGE: usize = 16 * 1024 * 1024;

/// The `tollgate.cluster.v1.Cluster` service at the HTTP level: it decodes the
/// data plane's messages with the generated codec and writes the response
/// frames itself (see [`wire`]).
#[derive(Clone)]
pub struct SyncServer {
    service: ClusterService,
}

impl tonic::server::NamedService for SyncServer {
    const NAME: &'static str = tollgate_proto::v1::cluster_server::SERVICE_NAME;
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for SyncServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> ResponseFuture {
        let service = self.service.clone();
        Box::pin(async move {
            Ok(service
                .sync(request)
                .await
                .unwrap_or_else(|status| status.into_http()))
        })
    }
}

/// Whether the client lists gzip in `grpc-accept-encoding`.
fn accepts_gzip(headers: &http::HeaderMap) -> bool {
    headers
        .get_all("grpc-accept-encoding")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| e.trim() == "gzip")
}

/// The compression of the client's messages (`grpc-encoding`).
fn request_encoding(headers: &http::HeaderMap) -> Result<Option<CompressionEncoding>, Status> {
    match headers.get("grpc-encoding").map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok("identity")) => Ok(None),
        Some(Ok("gzip")) => Ok(Some(CompressionEncoding::Gzip)),
        Some(other) => Err(Status::unimplemented(format!(
            "message compression {:?} is not supported; use gzip",
            other.unwrap_or("?")
        ))),
    }
}

fn remote_addr<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let extensions = request.extensions();
    extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.get_ref().remote_addr())
        .or_else(|| {
            extensions
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr)
        })
}

/// The `notAfter` (unix seconds) of the client certificate presented on the
/// connection `request` came in on.
fn presented_certificate_expiry<B>(request: &http::Request<B>) -> Option<i64> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    certificate_expiry(certs.first()?.as_ref())
}

/// The cluster listener's TLS material (PEM). Client certificates are always
/// required and must chain to `ca_pem`; there is no plaintext mode.
#[derive(Clone)]
pub struct ClusterTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClusterTls {
    /// The listener's rustls config; fails on unusable PEM, a key that is not
    /// the certificate's, or a CA that is not a certificate.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, tls::ClusterTlsError> {
        tls::server_config(&self.ca_pem, &self.cert_pem, &self.key_pem)
    }
}

/// Why the cluster listener could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] tls::ClusterTlsError),
    #[error("the cluster listener failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the cluster stream on `listener` over mTLS until `shutdown`
/// resolves. Handshakes happen in [`tls::accept`], which logs refused ones.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: ClusterTls,
    service: ClusterService,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let config = tls.server_config()?;
    let (streams, incoming) = mpsc::channel(64);
    let acceptor = tokio::spawn(tls::accept(
        listener,
        config,
        streams,
        Arc::new(tls::RefusalLog::default()),
    ));
    let served = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::ReceiverStream::new(incoming),
            shutdown,
        )
        .await;
    acceptor.abort();
    Ok(served?)
}

fn message(kind: control_plane_message::Kind) -> ControlPlaneMessage {
    ControlPlaneMessage { kind: Some(kind) }
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

impl ClusterService {
    /// One `Sync` call: waits for Hello, then answers with a stream fed by a
    /// [`StreamTask`].
    async fn sync(
        self,
        request: http::Request<tonic::body::Body>,
    ) -> Result<http::Response<tonic::body::Body>, Status> {
        let sync_path = format!("/{}/Sync", tollgate_proto::v1::cluster_server::SERVICE_NAME);
        if request.uri().path() != sync_path {
            return Err(Status::unimplemented(""));
        }
        let gzip = accepts_gzip(request.headers());
        let encoding = request_encoding(request.headers())?;
        let peer = remote_addr(&request);
        // The certificate the node actually presented, not what it says about it.
        let presented_expiry = presented_certificate_expiry(&request);
        let decoder =
            tonic_prost::ProstCodec::<ControlPlaneMessage, DataPlaneMessage>::default().decoder();
        let mut inbound = Streaming::new_request(
            decoder,
            request.into_body(),
            encoding,
            Some(MAX_INBOUND_MESSAGE),
        );
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
            gzip,
            frames: self.frames.clone(),
            snapshots: self.snapshots.clone(),
            registry: self.registry.clone(),
            timing: self.timing,
        };
        tokio::spawn(task.run());
        let mut response = http::Response::new(tonic::body::Body::new(OutBody::new(rx)));
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        headers.insert(
            "grpc-accept-encoding",
            http::HeaderValue::from_static("gzip"),
        );
        if gzip {
            headers.insert("grpc-encoding", http::HeaderValue::from_static("gzip"));
        }
        Ok(response)
    }
}

struct StreamTask {
    node: NodeHello,
    session: u64,
    inbound: Streaming<DataPlaneMessage>,
    /// Response frames, already encoded.
    tx: mpsc::Sender<Bytes>,
    /// Whether the data plane accepts gzip-compressed messages.
    gzip: bool,
    frames: SnapshotFrames,
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

    /// Sends a heartbeat naming the published version and the connected
    /// data planes (remembered in `announced_peers`); false when the stream
    /// is gone.
    async fn heartbeat(&self, announced_peers: &mut Option<u32>) -> bool {
        let (version, hash) = self
            .snapshots
            .borrow()
            .as_ref()
            .map(|p| (p.snapshot.version, p.snapshot.hash.clone()))
            .unwrap_or_default();
        let peers = self.registry.connected_count();
        *announced_peers = Some(peers);
        let beat = Heartbeat {
            sent_at_ms: registry::now_ms(),
            hash,
            version,
            connected_data_planes: peers,
        };
        self.send(control_plane_message::Kind::Heartbeat(beat))
            .await
    }

    /// Queues one small message; false when the stream is gone.
    async fn send(&self, kind: control_plane_message::Kind) -> bool {
        match wire::message_frame(&message(kind)) {
            Ok(frame) => self.tx.send(frame).await.is_ok(),
            Err(status) => {
                tracing::error!(node_id = %self.node.node_id, error = %status, "cannot encode a message");
                false
            }
        }
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
                    .send(control_plane_message::Kind::Refusal(Refusal { reason }))
                    .await;
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
        // The same frame for every stream: encoded (and compressed) once.
        match self.frames.frame(&published.snapshot, self.gzip).await {
            Ok(frame) => self.tx.send(frame).await.is_ok(),
            Err(status) => {
                tracing::error!(
                    node_id = %self.node.node_id,
                    version = published.snapshot.version,
                    error = %status,
                    "cannot encode the snapshot"
                );
                false
            }
        }
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
        // A change in the number of connected data planes is announced at
        // once (nodes enforcing their share of a limit follow it), not at the
        // next tick.
        let mut registry_changes = self.registry.subscribe();
        let mut announced_peers = None;
        loop {
            tokio::select! {
                changed = registry_changes.changed() => {
                    if changed.is_err() {
                        return "control plane shutting down";
                    }
                    if announced_peers != Some(self.registry.connected_count())
                        && !self.heartbeat(&mut announced_peers).await
                    {
                        return "stream closed";
                    }
                }
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        return "control plane shutting down";
                    }
                    if !self.offer(&mut last_sent).await {
                        return "stream closed";
                    }
                }
                _ = ticker.tick() => {
                    if !self.heartbeat(&mut announced_peers).await {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use tollgate_proto::v1::{cluster_client::ClusterClient, Hello};

    fn published(version: u64) -> Published {
        let config = tollgate_shared::declarative::parse(&format!(
            "_format_version: \"3.0\"\nservices:\n  - name: s{version}\n    url: http://127.0.0.1:3000\n"
        ))
        .unwrap();
        build::build(version, config).unwrap()
    }

    /// The service over plain HTTP/2 (TLS is exercised by the e2e tests).
    async fn start(snapshots: SnapshotWatch) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = ClusterService::new(
            snapshots,
            DataPlaneRegistry::default(),
            ClusterTiming {
                heartbeat: Duration::from_secs(60),
                hello_timeout: Duration::from_secs(5),
            },
        );
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service.into_server())
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }

    fn hello() -> DataPlaneMessage {
        DataPlaneMessage {
            kind: Some(data_plane_message::Kind::Hello(Hello {
                node_id: uuid::Uuid::new_v4().to_string(),
                version: tollgate_shared::VERSION.into(),
                ..Default::default()
            })),
        }
    }

    async fn next_snapshot(inbound: &mut Streaming<ControlPlaneMessage>) -> Snapshot {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), inbound.message())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Some(control_plane_message::Kind::Snapshot(snapshot)) = msg.kind {
                return snapshot;
            }
        }
    }

    #[tokio::test]
    async fn gzip_and_plain_clients_receive_every_published_snapshot() {
        let (publish, snapshots) = watch::channel(Some(published(1)));
        let endpoint = start(snapshots).await;
        let mut streams = Vec::new();
        for gzip in [true, false] {
            let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut client = ClusterClient::new(channel);
            if gzip {
                client = client
                    .accept_compressed(CompressionEncoding::Gzip)
                    .send_compressed(CompressionEncoding::Gzip);
            }
            let (tx, rx) = mpsc::channel(4);
            tx.send(hello()).await.unwrap();
            let response = client
                .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .unwrap();
            assert_eq!(
                response
                    .metadata()
                    .get("grpc-encoding")
                    .map(|v| v.to_str().unwrap()),
                gzip.then_some("gzip")
            );
            streams.push((tx, response.into_inner()));
        }
        for (_, inbound) in &mut streams {
            let first = next_snapshot(inbound).await;
            assert_eq!(first, *publish.borrow().as_ref().unwrap().snapshot.as_ref());
        }
        let second = published(2);
        let want = (*second.snapshot).clone();
        publish.send_replace(Some(second));
        for (_, inbound) in &mut streams {
            assert_eq!(next_snapshot(inbound).await, want);
        }
    }

    #[tokio::test]
    async fn a_stream_must_open_with_hello() {
        let (_publish, snapshots) = watch::channel(Some(published(1)));
        let endpoint = start(snapshots).await;
        let mut client = ClusterClient::connect(endpoint).await.unwrap();
        let heartbeat = DataPlaneMessage {
            kind: Some(data_plane_message::Kind::Heartbeat(Heartbeat::default())),
        };
        let status = client
            .sync(tokio_stream::iter(vec![heartbeat]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
}
