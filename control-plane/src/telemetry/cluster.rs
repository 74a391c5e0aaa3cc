//! Cluster families of the control plane: the publisher (version published,
//! builds, failures, last build time) and, per data plane, Kong's
//! `data_plane_last_seen`, `data_plane_config_hash` and
//! `data_plane_version_compatible`, plus the applied version, lag, sync
//! status, Nack count, connection and certificate expiry.

use crate::cluster::registry::{now_ms, SyncStatus};
use crate::cluster::view::{ClusterView, DataPlaneEntry, PublishedSummary};
use std::fmt;
use tollgate_shared::exposition::{hash_as_number, Families, Kind, Naming};

const STATUSES: [(SyncStatus, &str); 5] = [
    (SyncStatus::InSync, "in_sync"),
    (SyncStatus::Behind, "behind"),
    (SyncStatus::Rejected, "rejected"),
    (SyncStatus::Disconnected, "disconnected"),
    (SyncStatus::Incompatible, "incompatible"),
];

/// One consistent read of the cluster's state for a scrape.
pub(super) struct ClusterFacts {
    published: PublishedSummary,
    data_planes: Vec<DataPlaneEntry>,
}

impl ClusterFacts {
    /// Reads the view: every data plane known to this control plane or
    /// stored by another one; only the live ones if the database fails.
    pub async fn read(view: &ClusterView) -> ClusterFacts {
        let published = view.published();
        let data_planes = match view.data_planes(published.hash.as_deref()).await {
            Ok(entries) => entries,
            Err(_) => {
                let now = now_ms();
                view.registry
                    .list()
                    .into_iter()
                    .map(|state| DataPlaneEntry {
                        sync_status: state.sync_status(published.hash.as_deref()),
                        lag_ms: state.lag_ms(published.hash.as_deref(), now),
                        unpublished_reason: None,
                        state,
                    })
                    .collect()
            }
        };
        ClusterFacts {
            published,
            data_planes,
        }
    }

    pub fn encode(&self, naming: &Naming, families: &mut Families<'_, '_>) -> fmt::Result {
        let published = &self.published;
        if let Some(version) = published.version {
            let name = naming.same("config_published_version");
            families.single(
                &name,
                "Version of the snapshot published to data planes",
                Kind::Gauge,
                version,
            )?;
        }
        if let Some(hash) = &published.hash {
            let name = naming.same("config_published_hash");
            families.single(
                &name,
                "Hash of the snapshot published to data planes, its hex digits read as a number",
                Kind::Gauge,
                hash_as_number(hash),
            )?;
        }
        if let Some(built_at) = published.built_at_ms {
            let name = naming.same("config_published_timestamp_seconds");
            families.single(
                &name,
                "When the published snapshot was built (unix seconds)",
                Kind::Gauge,
                built_at as f64 / 1000.0,
            )?;
        }
        let name = naming.same("config_builds_total");
        families.single(&name, "Snapshots built", Kind::Counter, published.builds)?;
        let name = naming.same("config_build_failures_total");
        families.single(
            &name,
            "Snapshot builds that failed (the previous snapshot stays published)",
            Kind::Counter,
            published.failures,
        )?;
        let name = naming.same("config_last_build_duration_seconds");
        families.single(
            &name,
            "How long the last snapshot build took",
            Kind::Gauge,
            published.last_build_ms as f64 / 1000.0,
        )?;

        let name = naming.same("data_planes");
        let mut family = families.family(&name, "Data planes by sync status", Kind::Gauge)?;
        for (status, label) in STATUSES {
            let count = self
                .data_planes
                .iter()
                .filter(|dp| dp.sync_status == status)
                .count();
            family.sample(&[("status", label)], count as u64)?;
        }
        if self.data_planes.is_empty() {
            return Ok(());
        }

        let identity = |dp: &DataPlaneEntry| {
            [
                ("node_id", dp.state.id.clone()),
                ("hostname", dp.state.hostname.clone()),
                ("ip", dp.state.ip.clone()),
            ]
        };
        let write = |families: &mut Families<'_, '_>,
                     base: (&str, &str),
                     help: &str,
                     kind: Kind,
                     value: &dyn Fn(&DataPlaneEntry) -> f64|
         -> fmt::Result {
            let name = naming.name(base.0, base.1);
            let mut family = families.family(&name, help, kind)?;
            for dp in &self.data_planes {
                let labels = identity(dp);
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                family.sample(&labels, value(dp))?;
            }
            Ok(())
        };
        write(
            families,
            (
                "data_plane_last_seen_timestamp_seconds",
                "data_plane_last_seen",
            ),
            "When a data plane was last heard from (unix seconds)",
            Kind::Gauge,
            &|dp| (dp.state.last_seen_ms / 1000) as f64,
        )?;
        write(
            families,
            ("data_plane_config_hash", "data_plane_config_hash"),
            "Hash of the config a data plane runs, its hex digits read as a number",
            Kind::Gauge,
            &|dp| hash_as_number(&dp.state.config_hash),
        )?;
        write(
            families,
            ("data_plane_config_version", "data_plane_config_version"),
            "Version of the config a data plane runs",
            Kind::Gauge,
            &|dp| dp.state.config_version as f64,
        )?;
        write(
            families,
            ("data_plane_lag_seconds", "data_plane_lag_seconds"),
            "How long a data plane has been behind the published snapshot (0 in sync)",
            Kind::Gauge,
            &|dp| dp.lag_ms as f64 / 1000.0,
        )?;
        write(
            families,
            ("data_plane_connected", "data_plane_connected"),
            "Whether a data plane is connected",
            Kind::Gauge,
            &|dp| f64::from(u8::from(dp.state.connected)),
        )?;
        write(
            families,
            ("data_plane_nacks_total", "data_plane_nacks_total"),
            "Snapshots a data plane rejected",
            Kind::Counter,
            &|dp| dp.state.nacks as f64,
        )?;
        write(
            families,
            (
                "data_plane_cert_expiry_timestamp_seconds",
                "data_plane_cert_expiry_timestamp_seconds",
            ),
            "When a data plane's cluster certificate expires (unix seconds; 0 unknown)",
            Kind::Gauge,
            &|dp| dp.state.cert_expiry as f64,
        )?;

        let name = naming.same("data_plane_version_compatible");
        let mut family = families.family(
            &name,
            "Whether a data plane is compatible with this control plane",
            Kind::Gauge,
        )?;
        for dp in &self.data_planes {
            let compatible = i64::from(dp.sync_status != SyncStatus::Incompatible);
            family.sample(
                &[
                    ("node_id", &dp.state.id),
                    ("hostname", &dp.state.hostname),
                    ("ip", &dp.state.ip),
                    ("kong_version", &dp.state.version),
                ],
                compatible,
            )?;
        }

        let name = naming.same("data_plane_sync_status");
        let mut family = families.family(
            &name,
            "A data plane's sync status (1 for the current one)",
            Kind::Gauge,
        )?;
        for dp in &self.data_planes {
            for (status, label) in STATUSES {
                family.sample(
                    &[
                        ("node_id", &dp.state.id),
                        ("hostname", &dp.state.hostname),
                        ("status", label),
                    ],
                    i64::from(dp.sync_status == status),
                )?;
            }
        }
        Ok(())
    }
}
