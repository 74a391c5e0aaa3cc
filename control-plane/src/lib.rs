//! Tollgate's control plane: it owns the configuration (PostgreSQL or SQLite
//! through sqlx), serves the Kong-compatible Admin API, builds versioned config
//! snapshots and streams them to data planes over mTLS gRPC.
//!
//! It must not proxy traffic.

pub mod admin;
pub mod cert;
pub mod cluster;
pub mod listener;
pub mod schema_bridge;
pub mod settings;
pub mod state;
pub mod status_command;
pub mod store;
pub mod telemetry;

use anyhow::Context;
use cluster::publisher::{self, PublisherStatus, PublisherTiming};
use cluster::registry::DataPlaneRegistry;
use cluster::view::ClusterView;
use cluster::{ClusterService, ClusterTiming};
use listener::AdminListener;
use settings::{MigrateSettings, ServeSettings};
use state::AppState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use store::{redact_url, Store, StoreOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `tollgate-cp migrate`: apply pending migrations and return.
pub async fn migrate(settings: MigrateSettings) -> anyhow::Result<()> {
    let store = Store::connect(&settings.database_url, StoreOptions::default())?;
    store
        .migrate()
        .await
        .with_context(|| format!("migrating {}", redact_url(&settings.database_url)))?;
    tracing::info!(database = %redact_url(&settings.database_url), "migrations applied");
    store.close().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// A running control plane: the Admin API and, when cluster TLS is set, the
/// cluster listener with its publisher and persister.
pub struct ControlPlane {
    admin_addr: String,
    cluster_addr: Option<SocketAddr>,
    store: Store,
    stop: CancellationToken,
    admin: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
}

impl ControlPlane {
    /// The Admin API address (`127.0.0.1:port` or `unix:/path`).
    pub fn admin_addr(&self) -> &str {
        &self.admin_addr
    }

    /// The cluster listener's address, if it runs.
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.cluster_addr
    }

    /// Stops accepting, lets in-flight admin requests finish, writes pending
    /// data plane state, closes the database pool.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        let served = self.admin.await;
        for task in self.background {
            let _ = task.await;
        }
        self.store.close().await;
        served.context("the Admin API task failed")??;
        Ok(())
    }
}

/// Reads the cluster listener's PEM files and refuses what cannot work: an
/// unreadable file, a key that is not the certificate's, an expired
/// certificate (one expiring within 30 days is a warning). Each refusal
/// names its setting.
fn read_cluster_tls(tls: &settings::ClusterTls) -> anyhow::Result<cluster::ClusterTls> {
    use tollgate_shared::certificates::validity;
    let read = |setting: &str, path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "invalid setting {setting}: cannot read {}: {e}",
                path.display()
            )
        })
    };
    let pem = cluster::ClusterTls {
        ca_pem: read("--cluster-ca", &tls.ca)?,
        cert_pem: read("--cluster-cert", &tls.cert)?,
        key_pem: read("--cluster-key", &tls.key)?,
    };
    let now = validity::now();
    for (setting, text) in [
        ("--cluster-ca", &pem.ca_pem),
        ("--cluster-cert", &pem.cert_pem),
    ] {
        for warning in validity::check_validity(setting, text, now).map_err(anyhow::Error::msg)? {
            tracing::warn!("{warning}");
        }
    }
    pem.server_config()?;
    Ok(pem)
}

/// How long a data plane row written by another control plane stays
/// "connected" without a refresh: three data plane heartbeats and a half.
const STALE_AFTER: Duration = Duration::from_secs(45);

/// Connects the store (migrating unless disabled), binds the listeners and
/// starts every task. Returns once the listeners accept.
pub async fn start(settings: &ServeSettings) -> anyhow::Result<ControlPlane> {
    // Local mistakes first: they must not wait for the database.
    let cluster_tls = settings
        .cluster_tls
        .as_ref()
        .map(read_cluster_tls)
        .transpose()?;
    let options = StoreOptions {
        keyring: settings.keyring.clone(),
        ..StoreOptions::default()
    };
    let store = Store::connect(&settings.database_url, options)?;
    if settings.migrate {
        store
            .migrate()
            .await
            .with_context(|| format!("migrating {}", redact_url(&settings.database_url)))?;
    } else if let Ok(version) = store.version().await {
        store.publish_version(version);
    }
    let mut state = AppState::new(
        store.clone(),
        settings.admin_tokens.clone(),
        AppState::configuration_of(settings),
    )?;
    state.browser_guard = matches!(settings.admin_listen, settings::ListenAddr::Tcp(_));
    state.metrics_naming = settings.metrics_naming.clone();
    let stop = CancellationToken::new();
    let mut background = Vec::new();
    background.push(tokio::spawn({
        let store = store.clone();
        let stop = stop.clone();
        async move { store.follow_notifications(stop).await }
    }));
    background.push(tokio::spawn({
        let store = store.clone();
        let stop = stop.clone();
        async move { store.purge_expired_keys(stop).await }
    }));

    let mut cluster_addr = None;
    match cluster_tls {
        Some(tls) => {
            let listener = tokio::net::TcpListener::bind(settings.cluster_listen)
                .await
                .with_context(|| {
                    format!(
                        "invalid setting --cluster-listen: cannot listen on {}",
                        settings.cluster_listen
                    )
                })?;
            cluster_addr = Some(listener.local_addr()?);
            let cluster = start_cluster(&store, state.node_id, tls, listener, &stop);
            state.cluster = Some(cluster.view);
            background.extend(cluster.tasks);
        }
        None => tracing::warn!(
            "cluster listener off: --cluster-ca, --cluster-cert and --cluster-key are not set \
             (the cluster stream has no plaintext mode)"
        ),
    }

    let state = Arc::new(state);
    let app = admin::router(state.clone(), telemetry::routes(state.clone()));
    // The bind error already says the address and the cause: no chain, so
    // "Address already in use" is printed once.
    let listener = AdminListener::bind(&settings.admin_listen)
        .await
        .map_err(|e| anyhow::anyhow!("invalid setting --admin-listen: {e}"))?;
    let admin_addr = listener.local_addr();
    tracing::info!(
        admin = %admin_addr,
        cluster = %cluster_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        database = %redact_url(&settings.database_url),
        auth = if settings.admin_tokens.is_empty() { "none (local listener)" } else { "bearer token" },
        "tollgate-cp serving the Admin API"
    );
    let admin = tokio::spawn(listener::serve(
        listener,
        app,
        state.counters.clone(),
        settings.admin_limits,
        stop.clone().cancelled_owned(),
    ));
    Ok(ControlPlane {
        admin_addr,
        cluster_addr,
        store,
        stop,
        admin,
        background,
    })
}

struct ClusterParts {
    view: ClusterView,
    tasks: Vec<JoinHandle<()>>,
}

/// The publisher (fed by the store's version watch, which local commits and
/// other control planes' notifications both advance), the registry and its
/// persister, and the mTLS Sync server.
fn start_cluster(
    store: &Store,
    control_plane_id: uuid::Uuid,
    tls: cluster::ClusterTls,
    listener: tokio::net::TcpListener,
    stop: &CancellationToken,
) -> ClusterParts {
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let registry = DataPlaneRegistry::new(Some(events_tx));
    let (publish, snapshots) = tokio::sync::watch::channel(None);
    let publisher_status = Arc::new(PublisherStatus::default());
    let mut tasks = Vec::new();

    tasks.push(tokio::spawn(publisher::run(
        Arc::new(store.clone()),
        Arc::new(cluster::build::build),
        store.subscribe(),
        publish,
        publisher_status.clone(),
        PublisherTiming::default(),
        stop.clone(),
    )));
    tasks.push(tokio::spawn(cluster::persist::run(
        store.clone(),
        events_rx,
        control_plane_id.to_string(),
        stop.clone(),
    )));
    let service = ClusterService::new(
        snapshots.clone(),
        registry.clone(),
        ClusterTiming::default(),
    );
    tasks.push(tokio::spawn({
        let stop = stop.clone();
        async move {
            if let Err(error) = cluster::serve(listener, tls, service, stop.cancelled_owned()).await
            {
                tracing::error!(%error, "the cluster listener stopped");
            }
        }
    }));
    ClusterParts {
        view: ClusterView {
            registry,
            snapshots,
            publisher: publisher_status,
            store: store.clone(),
            stale_after: STALE_AFTER,
        },
        tasks,
    }
}

/// `tollgate-cp serve`: [`start`], then run until SIGINT or SIGTERM.
pub async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    let control_plane = start(&settings).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    control_plane.shutdown().await
}
