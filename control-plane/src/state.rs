//! What every Admin API request (and, later, the cluster server) shares: the
//! store, the config version watch, node identity, accepted tokens and the
//! listener counters (owned by `telemetry`).

use crate::admin::routes::RouteTable;
use crate::settings::{AdminToken, ServeSettings};
use crate::store::{redact_url, Store};
pub use crate::telemetry::ServerCounters;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::watch;
use tollgate_shared::exposition::Naming;

/// Shared state of the control plane process.
pub struct AppState {
    pub store: Store,
    /// The latest committed config version (fed by local commits and, on
    /// PostgreSQL, by other control planes' notifications).
    pub config_version: watch::Receiver<i64>,
    pub node_id: uuid::Uuid,
    pub hostname: String,
    /// Empty: the Admin API is open to whoever reaches its (local) listener.
    pub admin_tokens: Vec<AdminToken>,
    /// Refuse browser-driven requests (foreign `Origin`, non-local `Host`) when
    /// there is no token. Off for a Unix socket, which browsers cannot reach.
    pub browser_guard: bool,
    /// The effective settings for `GET /`, secrets already masked.
    pub configuration: Value,
    pub counters: Arc<ServerCounters>,
    pub routes: RouteTable,
    /// The cluster's view for `/clustering/*`; `None` without a cluster listener.
    pub cluster: Option<crate::cluster::view::ClusterView>,
    /// Metric naming of `GET /metrics` (`--metrics-prefix`).
    pub metrics_naming: Naming,
}

/// Kong masks secret settings with this.
pub const MASK: &str = "******";

/// This host's name, as Kong reports it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

impl AppState {
    /// State for an Admin API on `store`, with `tokens` (none: open).
    pub fn new(
        store: Store,
        admin_tokens: Vec<AdminToken>,
        configuration: Value,
    ) -> Result<AppState, matchit::InsertError> {
        Ok(AppState {
            config_version: store.subscribe(),
            store,
            node_id: uuid::Uuid::new_v4(),
            hostname: hostname(),
            admin_tokens,
            browser_guard: true,
            configuration,
            counters: Arc::new(ServerCounters::default()),
            routes: RouteTable::new()?,
            cluster: None,
            metrics_naming: Naming::default(),
        })
    }

    /// The `configuration` object of `GET /` for these settings.
    pub fn configuration_of(settings: &ServeSettings) -> Value {
        let path = |p: &Option<std::path::PathBuf>| match p {
            Some(p) => Value::String(p.display().to_string()),
            None => Value::Null,
        };
        let tls = settings.cluster_tls.as_ref();
        json!({
            "database_url": redact_url(&settings.database_url),
            "database": if settings.database_url.starts_with("sqlite") { "sqlite" } else { "postgres" },
            "admin_listen": [settings.admin_listen.to_string()],
            "admin_token_file": path(&settings.admin_token_file),
            "admin_token": if settings.admin_tokens.is_empty() { Value::Null } else { Value::String(MASK.into()) },
            "cluster_listen": [settings.cluster_listen.to_string()],
            "cluster_ca_cert": path(&tls.map(|t| t.ca.clone())),
            "cluster_cert": path(&tls.map(|t| t.cert.clone())),
            "cluster_cert_key": tls.map(|_| Value::String(MASK.into())).unwrap_or(Value::Null),
            "secrets_key_file": path(&settings.secrets_key_file),
            "secrets_key_id": settings.keyring.as_ref().map(|k| Value::String(k.active_key_id().into())).unwrap_or(Value::Null),
            "role": "control_plane",
            "migrate_on_start": settings.migrate,
            "log_level": settings.log_level,
        })
    }
}
