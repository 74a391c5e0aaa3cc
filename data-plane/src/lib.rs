//! Tollgate's data plane: it proxies HTTP traffic according to one immutable
//! compiled config held in an `ArcSwap`, runs the plugin chain, syncs the
//! config from the control plane and keeps the last good one on disk.
//!
//! It must not link sqlx or talk to the database.
//!
//! Embedding (tests, the cluster harness): [`start`] binds every listener of
//! the [`Settings`] on the current tokio runtime and returns a [`DataPlane`];
//! configs go in through [`Gateway::apply`]. The binary calls [`run`].

pub mod cache;
pub mod compile;
pub mod config_file;
pub mod config_thread;
pub mod gateway;
pub mod plugins;
pub mod proxy;
pub use tollgate_shared::router;
pub mod settings;
pub mod shutdown;
pub use tollgate_shared::startup;
pub mod status;
pub mod sync;
pub mod telemetry;
pub mod tls;

pub use compile::{compile, CompileError, Compiled, ConfigMeta, Deps};
pub use gateway::{Applied, Gateway};
pub use settings::Settings;
pub use status::StatusState;

use proxy::server::{self, ProxyShared};
use proxy::upstream::PoolRegistry;
use rustls::sign::CertifiedKey;
use shutdown::{Drain, ShutdownTrigger};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tls::{SniResolver, TlsError, UpstreamTls};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The io error is part of the message, not a source, so that it is
    /// printed once.
    #[error("{listener} {addr}: {}", bind_problem(.error))]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

/// A running data plane: its listeners, its gateway, and the handle to stop it.
pub struct DataPlane {
    gateway: Arc<Gateway>,
    status: Arc<StatusState>,
    telemetry: Arc<telemetry::Telemetry>,
    resolver: Arc<SniResolver>,
    proxy_addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    status_addr: SocketAddr,
    trigger: ShutdownTrigger,
    drain: Arc<Drain>,
    tasks: Vec<JoinHandle<()>>,
    grace: Duration,
    trace_exporters: Arc<plugins::otlp::OtlpExporters>,
    log_queues: Arc<plugins::http_log::HttpLogQueues>,
    file_sinks: Arc<plugins::resources::FileSinks>,
}

fn bind_problem(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "address already in use: another process listens there; stop it or choose another address".into()
        }
        std::io::ErrorKind::PermissionDenied => {
            "permission denied: ports below 1024 need privileges".into()
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "address not available: no interface of this host has that IP".into()
        }
        _ => format!("cannot listen: {error}"),
    }
}

async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| StartError::Bind {
            listener,
            addr,
            error,
        })
}

fn local_addr(
    listener: &'static str,
    bound: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, StartError> {
    bound.local_addr().map_err(|error| StartError::Bind {
        listener,
        addr,
        error,
    })
}

/// Binds every listener and starts serving with an empty config (every
/// request 404, `/status/ready` 503) until one is applied.
pub async fn start(settings: &Settings) -> Result<DataPlane, StartError> {
    let status = Arc::new(StatusState::new());
    let upstream_tls = UpstreamTls::new(UpstreamTls::system_roots())?;
    // JWKS endpoints are always verified against the system roots.
    let jwks = Arc::new(plugins::jwks::JwksFetcher::new(
        tokio::runtime::Handle::current(),
        upstream_tls.client_config(true, false),
    ));
    let otlp_tls = upstream_tls.client_config(true, false);
    // http-log sends over its own connections, with Kong's `ssl_verify = false`.
    let log_tls = upstream_tls.client_config(false, false);
    let redis = Arc::new(plugins::redis::RedisServers::with_tls(&upstream_tls));
    let pools = Arc::new(PoolRegistry::new(settings.pool.clone(), upstream_tls));
    let file_sinks = Arc::new(plugins::resources::FileSinks::default());
    let proxy_metrics = Arc::new(tollgate_shared::plugin::ProxyMetrics::new(
        settings.metrics_max_series,
    ));
    let trace_exporters = Arc::new(plugins::otlp::OtlpExporters::new(
        tokio::runtime::Handle::current(),
        otlp_tls,
    ));
    let log_queues = Arc::new(plugins::http_log::HttpLogQueues::new(
        tokio::runtime::Handle::current(),
        log_tls,
        Arc::clone(&status.http_log),
    ));
    let resources = tollgate_shared::runtime::Resources::live(Arc::clone(&file_sinks) as _)
        .with_redis(Arc::clone(&redis) as _)
        .with_proxy_metrics(Arc::clone(&proxy_metrics))
        .with_jwks(Arc::clone(&jwks) as _)
        .with_traces(Arc::clone(&trace_exporters) as _)
        .with_log_queues(Arc::clone(&log_queues) as _);
    let telemetry = Arc::new(telemetry::Telemetry::new(
        settings.metrics_naming.clone(),
        Arc::clone(&status),
        redis,
        telemetry::PluginSources {
            otlp: Arc::clone(&trace_exporters),
            jwks,
            http_log: Arc::clone(&status.http_log),
            resources: resources.clone(),
        },
        proxy_metrics,
    ));
    if let Some(node_id) = &settings.node_id {
        telemetry.set_node_id(node_id);
    }
    let gateway = Arc::new(Gateway::new(Deps { pools, resources }, Arc::clone(&status)));
    let (trigger, signal) = shutdown::channel();
    let drain = Arc::new(Drain::default());
    let shared = Arc::new(ProxyShared::new(
        Arc::clone(gateway.live_config()),
        Arc::clone(&status),
        settings.trusted_ips.clone(),
        settings.real_ip_header.clone(),
        settings.limits.clone(),
        Arc::clone(&drain),
        signal.clone(),
    ));

    let default_certificate = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(tls::load_certified_key(cert, key)?),
        _ => None,
    };
    let resolver = Arc::new(SniResolver::new(
        Arc::clone(&gateway) as Arc<dyn tls::CertificateSource>,
        default_certificate,
    ));

    let mut tasks = Vec::new();
    let mut proxy_addrs = Vec::new();
    for addr in &settings.proxy_listen {
        let listener = bind("--proxy-listen", *addr).await?;
        proxy_addrs.push(local_addr("--proxy-listen", &listener, *addr)?);
        tasks.push(tokio::spawn(server::accept_plain(
            listener,
            Arc::clone(&shared),
        )));
    }
    let mut tls_addrs = Vec::new();
    if !settings.proxy_tls_listen.is_empty() {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(Arc::clone(&resolver))?);
        for addr in &settings.proxy_tls_listen {
            let listener = bind("--proxy-tls-listen", *addr).await?;
            tls_addrs.push(local_addr("--proxy-tls-listen", &listener, *addr)?);
            tasks.push(tokio::spawn(server::accept_tls(
                listener,
                Arc::clone(&shared),
                acceptor.clone(),
            )));
        }
    }
    let status_listener = bind("--status-listen", settings.status_listen).await?;
    let status_addr = local_addr("--status-listen", &status_listener, settings.status_listen)?;
    tasks.push(tokio::spawn(status::serve(
        status_listener,
        Arc::clone(&status),
        Some(Arc::clone(&telemetry) as Arc<dyn status::MetricsRenderer>),
        signal,
    )));
    tracing::info!(?proxy_addrs, ?tls_addrs, %status_addr, "data plane listening");

    Ok(DataPlane {
        gateway,
        status,
        telemetry,
        resolver,
        proxy_addrs,
        tls_addrs,
        status_addr,
        trigger,
        drain,
        tasks,
        grace: settings.shutdown_grace,
        trace_exporters,
        log_queues,
        file_sinks,
    })
}

impl DataPlane {
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The opentelemetry plugin's exporters (spans exported, dropped, failed).
    pub fn trace_exporters(&self) -> &Arc<plugins::otlp::OtlpExporters> {
        &self.trace_exporters
    }

    /// The counters and facts the status listener reports.
    pub fn status(&self) -> &Arc<StatusState> {
        &self.status
    }

    /// The node's metrics registry (`GET /metrics` on the status listener).
    pub fn telemetry(&self) -> &Arc<telemetry::Telemetry> {
        &self.telemetry
    }

    pub fn proxy_addrs(&self) -> &[SocketAddr] {
        &self.proxy_addrs
    }

    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    pub fn status_addr(&self) -> SocketAddr {
        self.status_addr
    }

    /// Replaces the certificate served when no configured SNI matches.
    pub fn set_default_certificate(&self, certificate: Option<Arc<CertifiedKey>>) {
        self.resolver.set_default(certificate);
    }

    /// Stops accepting, lets in-flight requests finish for the grace period,
    /// writes the log files' buffered lines, sends what the http-log queues
    /// hold within what is left of it, then stops. Returns `true` when every
    /// connection finished in time.
    pub async fn shutdown(self) -> bool {
        let started = tokio::time::Instant::now();
        self.trigger.trigger();
        let drained = tokio::time::timeout(self.grace, self.drain.wait_idle())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                connections = self.drain.live(),
                "grace period over; closing remaining connections"
            );
        }
        // Every finished request has run its log phase by now.
        self.file_sinks.flush_all();
        self.log_queues
            .flush(self.grace.saturating_sub(started.elapsed()))
            .await;
        for task in self.tasks {
            task.abort();
        }
        drained
    }
}

/// The `tollgate-dp serve` process: builds the runtime (`--workers` threads),
/// starts the data plane, loads `--config-file`, reloads on SIGHUP, and shuts
/// down gracefully on SIGTERM/SIGINT.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    let runtime = if settings.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.workers)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(settings))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;

    // Local mistakes stop start-up before any listener opens.
    let cluster_pem = match &settings.control_plane {
        Some(endpoint) => Some(check_cluster_pem(&settings, endpoint)?),
        None => None,
    };
    let data_plane = start(&settings).await?;
    if let Some(path) = &settings.config_file {
        let applied = config_file::apply_file(data_plane.gateway(), path)?;
        tracing::info!(version = applied.version, hash = %applied.hash, "loaded {}", path.display());
    }
    let sync_stop = tokio_util::sync::CancellationToken::new();
    if let (Some(endpoint), Some(pem)) = (&settings.control_plane, cluster_pem) {
        start_sync(&settings, endpoint, pem, &data_plane, sync_stop.clone()).await?;
    }
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => reload(&settings, &data_plane).await,
        }
    }
    tracing::info!("shutting down");
    sync_stop.cancel();
    data_plane.shutdown().await;
    Ok(())
}

/// The cluster TLS files, read and checked.
struct ClusterPem {
    ca: String,
    cert: String,
    key: String,
}

/// Reads the cluster certificates and refuses what cannot work: unreadable
/// files, a key that is not the certificate's, an expired certificate (one
/// expiring within 30 days is a warning), a bad URL or server name.
fn check_cluster_pem(settings: &Settings, endpoint: &str) -> anyhow::Result<ClusterPem> {
    let read = |setting: &str, path: &Option<std::path::PathBuf>| -> anyhow::Result<String> {
        let path = path.as_ref().ok_or_else(|| {
            anyhow::anyhow!("invalid setting {setting}: required with --control-plane")
        })?;
        std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "invalid setting {setting}: cannot read {}: {e}",
                path.display()
            )
        })
    };
    let pem = ClusterPem {
        ca: read("--cluster-ca", &settings.cluster_ca)?,
        cert: read("--cluster-cert", &settings.cluster_cert)?,
        key: read("--cluster-key", &settings.cluster_key)?,
    };
    let now = sync::validity::now();
    for (setting, text) in [("--cluster-ca", &pem.ca), ("--cluster-cert", &pem.cert)] {
        for warning in
            sync::validity::check_validity(setting, text, now).map_err(anyhow::Error::msg)?
        {
            tracing::warn!("{warning}");
        }
    }
    sync::Connector::new(
        endpoint,
        &settings.cluster_server_name,
        &pem.ca,
        &pem.cert,
        &pem.key,
    )?;
    Ok(pem)
}

/// Serves the cached snapshot (if any) before the control plane answers, then
/// runs the sync client in the background.
async fn start_sync(
    settings: &Settings,
    endpoint: &str,
    pem: ClusterPem,
    data_plane: &DataPlane,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let ClusterPem {
        ca: ca_pem,
        cert: cert_pem,
        key: key_pem,
    } = pem;
    let node_id = match &settings.node_id {
        Some(id) => id.clone(),
        None => cache::node_id(&settings.cache_dir)
            .context("invalid setting --cache-dir: cannot keep the node id there")?,
    };
    data_plane.telemetry().set_node_id(&node_id);
    let gateway = Arc::clone(data_plane.gateway());
    let snapshot_cache = cache::SnapshotCache::new(&settings.cache_dir);
    match snapshot_cache.load() {
        Ok(Some(snapshot)) => {
            let version = snapshot.version;
            let applied = gateway
                .run_on_config_thread(move |gateway| {
                    sync::SnapshotSink::apply_owned(gateway, snapshot).map(drop)
                })
                .await?;
            match applied {
                Ok(()) => tracing::info!(version, "serving the cached configuration"),
                Err(errors) => tracing::warn!(version, ?errors, "cached configuration rejected"),
            }
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "ignoring the configuration cache"),
    }
    let hostname = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    let cert_expiry = sync::validity::not_after(&cert_pem).unwrap_or(0);
    let sync_settings = sync::SyncSettings {
        endpoint: endpoint.to_string(),
        server_name: settings.cluster_server_name.clone(),
        ca_pem,
        cert_pem,
        key_pem,
        node_id,
        hostname,
        plugins: plugins::supported(),
        heartbeat: Duration::from_secs(10),
        cert_expiry,
    };
    // The sync client gets a thread and runtime of its own: receiving a large
    // snapshot means tens of milliseconds of TLS, gunzip and protobuf decoding,
    // which on a proxy worker would hold up every request queued behind it.
    let sync_status = Arc::new(sync::SyncStatus::default());
    sync_status
        .cert_expiry
        .store(cert_expiry, std::sync::atomic::Ordering::Relaxed);
    data_plane.status().follow_sync(Arc::clone(&sync_status));
    let sync_client = sync::run(
        sync_settings,
        gateway as Arc<dyn sync::SnapshotSink>,
        Some(snapshot_cache),
        sync_status,
        stop,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the cluster sync runtime")?;
    std::thread::Builder::new()
        .name("tollgate-sync".into())
        .spawn(move || runtime.block_on(sync_client))
        .context("cannot start the cluster sync thread")?;
    Ok(())
}

/// SIGHUP: re-reads the config file and the default certificate; failures are
/// logged and the running ones kept.
async fn reload(settings: &Settings, data_plane: &DataPlane) {
    if let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) {
        match tls::load_certified_key(cert, key) {
            Ok(certificate) => data_plane.set_default_certificate(Some(certificate)),
            Err(error) => tracing::error!(%error, "keeping the previous default certificate"),
        }
    }
    let Some(path) = settings.config_file.clone() else {
        return;
    };
    let outcome = data_plane
        .gateway()
        .run_on_config_thread(move |gateway| config_file::apply_file(gateway, &path))
        .await;
    match outcome {
        Ok(Ok(applied)) => {
            tracing::info!(version = applied.version, hash = %applied.hash, "configuration reloaded")
        }
        Ok(Err(error)) => tracing::error!(%error, "keeping the previous configuration"),
        Err(error) => tracing::error!(%error, "configuration reload failed"),
    }
}
