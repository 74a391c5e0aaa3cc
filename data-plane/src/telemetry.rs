//! The data plane's metrics: one registry per node, created at start and
//! rendered on the status listener's `GET /metrics`. It owns the node's
//! counters ([`StatusState`], which `/status` reports too) and the sync
//! client's ([`SyncStatus`]), and reads, at scrape time, those, the Redis
//! connector's per-server health, the plugins' background machinery
//! (opentelemetry exporters, http-log queues, JWKS sources, the
//! rate-limiting local table: [`PluginSources`]) and the `prometheus`
//! plugin's families ([`ProxyMetrics`]), which the plugin records into
//! through the compile resources. Nothing is global: tests run several data planes in one
//! process, each with its own registry.
//!
//! Names follow `--metrics-prefix` (`tollgate_*`, or Kong's exact names with
//! `kong`); the list is in README.md ("Metrics").

mod node;
mod plugins;
mod status_state;
mod sync_status;

pub use plugins::PluginSources;
pub use status_state::{Applied, StatusState};
pub use sync_status::{Link, LinkState, SyncStatus};

use crate::plugins::redis::RedisServers;
use crate::status::MetricsRenderer;
use prometheus_client::registry::Registry;
use std::sync::{Arc, OnceLock};
use tollgate_shared::exposition::{self, Families, FnCollector, Naming};
use tollgate_shared::plugin::ProxyMetrics;

/// The node's registry and what it reads from.
pub struct Telemetry {
    registry: Registry,
    node: Arc<node::NodeSources>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("naming", &self.node.naming)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// The registry of one data plane: node-level metrics, the plugins'
    /// machinery, then the `prometheus` plugin's families.
    pub fn new(
        naming: Naming,
        status: Arc<StatusState>,
        redis: Arc<RedisServers>,
        plugins: PluginSources,
        proxy: Arc<ProxyMetrics>,
    ) -> Telemetry {
        let node = Arc::new(node::NodeSources {
            naming,
            node_id: OnceLock::new(),
            status,
            redis,
        });
        let mut registry = Registry::default();
        let sources = Arc::clone(&node);
        registry.register_collector(Box::new(FnCollector(
            move |families: &mut Families<'_, '_>| sources.encode(families),
        )));
        let sources = Arc::clone(&node);
        registry.register_collector(Box::new(FnCollector(
            move |families: &mut Families<'_, '_>| plugins.encode(&sources.naming, families),
        )));
        let sources = Arc::clone(&node);
        registry.register_collector(Box::new(FnCollector(
            move |families: &mut Families<'_, '_>| proxy.encode(&sources.naming, families),
        )));
        Telemetry { registry, node }
    }

    /// The `node_id` label of node-level metrics, once known (the sync
    /// client settles it from `--node-id` or the cache directory).
    pub fn set_node_id(&self, node_id: &str) {
        let _ = self.node.node_id.set(node_id.to_string());
    }
}

impl MetricsRenderer for Telemetry {
    fn render(&self) -> String {
        exposition::render(&self.registry)
    }
}
