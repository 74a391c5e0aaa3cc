//! What `GET /clustering/*` shows: every data plane known to this control
//! plane's live registry merged with the rows other control planes on the same
//! database wrote, each judged against the snapshot published here.

use super::publisher::PublisherStatus;
use super::registry::{now_ms, DataPlaneRegistry, DataPlaneState, SyncStatus};
use super::SnapshotWatch;
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The cluster's state as the Admin API reads it; cheap to clone.
#[derive(Clone)]
pub struct ClusterView {
    pub registry: DataPlaneRegistry,
    pub snapshots: SnapshotWatch,
    pub publisher: Arc<PublisherStatus>,
    pub store: Store,
    /// A row written by another control plane that was not refreshed for this
    /// long belongs to a node (or a control plane) that is gone.
    pub stale_after: Duration,
}

/// One data plane as listed, with its status against the published snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPlaneEntry {
    pub state: DataPlaneState,
    pub sync_status: SyncStatus,
    pub lag_ms: i64,
    /// Why the newest committed change has not reached this node although
    /// it runs the published snapshot: the publisher's last build error.
    pub unpublished_reason: Option<String>,
}

/// The currently published snapshot, in brief.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishedSummary {
    pub version: Option<u64>,
    pub hash: Option<String>,
    pub built_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub builds: u64,
    pub failures: u64,
    pub last_build_ms: u64,
}

impl ClusterView {
    pub fn published(&self) -> PublishedSummary {
        let current = self.snapshots.borrow();
        let snapshot = current.as_ref().map(|p| &p.snapshot);
        PublishedSummary {
            version: snapshot.map(|s| s.version),
            hash: snapshot.map(|s| s.hash.clone()),
            built_at_ms: snapshot.map(|s| s.built_at_ms),
            last_error: self
                .publisher
                .last_error
                .lock()
                .ok()
                .and_then(|slot| slot.clone()),
            builds: self.publisher.builds.load(Ordering::Relaxed),
            failures: self.publisher.failures.load(Ordering::Relaxed),
            last_build_ms: self.publisher.last_build_ms.load(Ordering::Relaxed),
        }
    }

    /// Every known data plane, by id, judged against `published_hash` (see
    /// [`ClusterView::published`]). The live registry wins over a stored row
    /// unless the row is fresher (the node moved to another control plane).
    pub async fn data_planes(
        &self,
        published_hash: Option<&str>,
    ) -> Result<Vec<DataPlaneEntry>, StoreError> {
        let now = now_ms();
        let mut nodes: BTreeMap<String, DataPlaneState> = BTreeMap::new();
        for row in self.store.load_data_planes().await? {
            let Ok(mut state) = serde_json::from_value::<DataPlaneState>(row.data) else {
                tracing::warn!(id = %row.id, "skipping an unreadable data plane row");
                continue;
            };
            if now - state.last_seen_ms > self.stale_after.as_millis() as i64 {
                state.connected = false;
            }
            nodes.insert(row.id, state);
        }
        for live in self.registry.list() {
            let fresher_elsewhere = nodes
                .get(&live.id)
                .is_some_and(|stored| !live.connected && stored.last_seen_ms > live.last_seen_ms);
            if !fresher_elsewhere {
                nodes.insert(live.id.clone(), live);
            }
        }
        // A node is judged against the newest committed version: when that
        // version has not been published (a build failed, or is under way), a
        // node running the published snapshot is behind, never in sync.
        let committed = *self.store.subscribe().borrow();
        let published = self.published();
        let unpublished = published_hash.is_some()
            && published
                .version
                .is_some_and(|v| i64::try_from(v).is_ok_and(|v| v < committed));
        Ok(nodes
            .into_values()
            .map(|state| {
                let mut sync_status = state.sync_status(published_hash);
                let mut unpublished_reason = None;
                if unpublished && sync_status == SyncStatus::InSync {
                    sync_status = SyncStatus::Behind;
                    unpublished_reason = Some(published.last_error.clone().unwrap_or_else(|| {
                        format!("version {committed} is committed but not yet published")
                    }));
                }
                DataPlaneEntry {
                    sync_status,
                    lag_ms: state.lag_ms(published_hash, now),
                    unpublished_reason,
                    state,
                }
            })
            .collect())
    }
}
