//! Node-level metrics of a data plane, read at scrape time: connections and
//! requests (Kong's `nginx_*` families under `--metrics-prefix kong`), the
//! config served (version, hash, age), the control plane link, the cluster
//! certificate's expiry, the cache writer, plugin failures and each Redis
//! server's state.

use crate::plugins::redis::RedisServers;
use crate::status::StatusState;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use tollgate_shared::exposition::{self, hash_as_number, ConnectionCounts, Families, Kind, Naming};

pub(super) struct NodeSources {
    pub naming: Naming,
    pub node_id: OnceLock<String>,
    pub status: Arc<StatusState>,
    pub redis: Arc<RedisServers>,
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl NodeSources {
    pub fn encode(&self, families: &mut Families<'_, '_>) -> fmt::Result {
        let naming = &self.naming;
        let kong = naming.is_kong();
        let status = &self.status;
        let node_id = self.node_id.get().map_or("", String::as_str);
        let version = env!("CARGO_PKG_VERSION");

        let name = naming.same("node_info");
        families
            .family(&name, "Node identity and version (always 1)", Kind::Gauge)?
            .sample(&[("node_id", node_id), ("version", version)], 1i64)?;

        let active = status.connections_active.load(Ordering::Relaxed);
        exposition::connections(
            families,
            naming,
            &ConnectionCounts {
                node_id,
                subject: "client",
                accepted: status.connections_accepted.load(Ordering::Relaxed),
                handled: Some(status.connections_handled.load(Ordering::Relaxed)),
                active,
                writing: status.requests_in_flight.load(Ordering::Relaxed),
                requests: status.total_requests.load(Ordering::Relaxed),
            },
        )?;
        if !kong {
            let name = naming.same("requests_in_flight");
            families.single(
                &name,
                "Requests being served",
                Kind::Gauge,
                status.requests_in_flight.load(Ordering::Relaxed),
            )?;
        }

        let applied = status.applied();
        // A data plane's datastore is the config it serves (Kong's database-less nodes).
        let name = naming.same("datastore_reachable");
        families.single(
            &name,
            "Whether the node has a configuration to serve (1) or not (0)",
            Kind::Gauge,
            i64::from(applied.is_some()),
        )?;
        if let Some(applied) = &applied {
            let name = naming.same("config_version");
            families.single(
                &name,
                "Version of the configuration served",
                Kind::Gauge,
                applied.version,
            )?;
            let name = naming.same("config_hash");
            families.single(
                &name,
                "Hash of the configuration served, its hex digits read as a number",
                Kind::Gauge,
                hash_as_number(&applied.hash),
            )?;
            let applied_at = applied.applied_at_ms as f64 / 1000.0;
            let name = naming.same("config_applied_timestamp_seconds");
            families.single(
                &name,
                "When the configuration served was applied (unix seconds)",
                Kind::Gauge,
                applied_at,
            )?;
            let name = naming.same("config_age_seconds");
            families.single(
                &name,
                "Seconds since the configuration served was applied",
                Kind::Gauge,
                (now_seconds() - applied_at).max(0.0),
            )?;
        }
        let name = naming.same("config_rejected_total");
        families.single(
            &name,
            "Configurations that failed to compile and were not applied",
            Kind::Counter,
            status.rejected(),
        )?;

        if let Some(sync) = status.sync() {
            let name = naming.same("control_plane_connected");
            families.single(
                &name,
                "Whether the node is connected to its control plane",
                Kind::Gauge,
                i64::from(sync.connected.load(Ordering::Relaxed)),
            )?;
            let expiry = sync.cert_expiry.load(Ordering::Relaxed);
            if expiry > 0 {
                let name = naming.name(
                    "data_plane_cluster_cert_expiry_timestamp_seconds",
                    "data_plane_cluster_cert_expiry_timestamp",
                );
                families.single(
                    &name,
                    "When the node's cluster certificate expires (unix seconds)",
                    Kind::Gauge,
                    expiry,
                )?;
            }
            let name = naming.same("sync_snapshots_applied_total");
            families.single(
                &name,
                "Snapshots from the control plane applied",
                Kind::Counter,
                sync.snapshots_applied.load(Ordering::Relaxed),
            )?;
            let name = naming.same("sync_snapshots_rejected_total");
            families.single(
                &name,
                "Snapshots from the control plane rejected (Nack)",
                Kind::Counter,
                sync.snapshots_rejected.load(Ordering::Relaxed),
            )?;
            let name = naming.same("cache_persist_failures_total");
            families.single(
                &name,
                "Applied snapshots that could not be written to the cache directory",
                Kind::Counter,
                sync.persist_failures.load(Ordering::Relaxed),
            )?;
        }

        for (base, help, value) in [
            (
                "requests_denied_total",
                "Requests a plugin answered itself (denied, rate-limited)",
                &status.requests_denied,
            ),
            (
                "gateway_errors_total",
                "5xx responses the gateway generated",
                &status.gateway_errors,
            ),
            (
                "plugin_failures_total",
                "Requests answered 500 because a plugin failed",
                &status.plugin_failures,
            ),
            (
                "connections_refused_per_ip_total",
                "Connections closed by the per-client-address cap",
                &status.connections_refused_per_ip,
            ),
        ] {
            let name = naming.same(base);
            families.single(&name, help, Kind::Counter, value.load(Ordering::Relaxed))?;
        }

        let mut redis = self.redis.health();
        if !redis.is_empty() {
            redis.sort_by(|a, b| a.server.cmp(&b.server));
            let name = naming.same("redis_up");
            let mut family = families.family(
                &name,
                "Whether calls to a Redis server are made (1) or its circuit is open (0)",
                Kind::Gauge,
            )?;
            for server in &redis {
                family.sample(&[("server", &server.server)], i64::from(!server.open))?;
            }
            let name = naming.same("redis_errors_total");
            let mut family =
                families.family(&name, "Failed calls to a Redis server", Kind::Counter)?;
            for server in &redis {
                family.sample(&[("server", &server.server)], server.errors)?;
            }
        }
        Ok(())
    }
}
