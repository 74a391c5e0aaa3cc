//! Writes the registry's changes to `clustering_data_planes`, so that every
//! control plane on the same database can list every data plane and a restart
//! keeps the history. Changes are batched (latest state per node wins) and a
//! failed write is retried with the next batch; the live view never waits on it.

use super::registry::{now_ms, DataPlaneState, RegistryEvent};
use crate::store::{DataPlaneRow, Store};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Kong's `cluster_data_plane_purge_delay` default: rows unseen for 14 days go.
pub const PURGE_AFTER: Duration = Duration::from_secs(14 * 24 * 3600);

/// How long to gather changes before writing them.
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Wait after a failed write before trying again.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// The row for `state`, written by control plane `control_plane_id`.
pub fn row_of(state: &DataPlaneState, control_plane_id: &str) -> Option<DataPlaneRow> {
    Some(DataPlaneRow {
        id: state.id.clone(),
        control_plane_id: control_plane_id.to_string(),
        last_seen_ms: state.last_seen_ms,
        data: serde_json::to_value(state).ok()?,
    })
}

/// Runs until `shutdown`, then writes what is pending once more.
pub async fn run(
    store: Store,
    mut events: mpsc::UnboundedReceiver<RegistryEvent>,
    control_plane_id: String,
    shutdown: CancellationToken,
) {
    let mut pending: BTreeMap<String, DataPlaneState> = BTreeMap::new();
    loop {
        let closed = tokio::select! {
            _ = shutdown.cancelled() => true,
            event = events.recv() => match event {
                Some(RegistryEvent::Updated(state)) => {
                    pending.insert(state.id.clone(), *state);
                    false
                }
                None => true,
            },
        };
        if !closed {
            // Gather the rest of a burst (a push acked by many nodes) into one write.
            let window = tokio::time::sleep(BATCH_WINDOW);
            tokio::pin!(window);
            loop {
                tokio::select! {
                    _ = &mut window => break,
                    event = events.recv() => match event {
                        Some(RegistryEvent::Updated(state)) => {
                            pending.insert(state.id.clone(), *state);
                        }
                        None => break,
                    },
                }
            }
        }
        while let Ok(RegistryEvent::Updated(state)) = events.try_recv() {
            pending.insert(state.id.clone(), *state);
        }
        if !pending.is_empty() {
            let rows: Vec<DataPlaneRow> = pending
                .values()
                .filter_map(|s| row_of(s, &control_plane_id))
                .collect();
            let purge_before = now_ms() - PURGE_AFTER.as_millis() as i64;
            match store.save_data_planes(&rows, purge_before).await {
                Ok(()) => pending.clear(),
                Err(error) => {
                    tracing::warn!(%error, nodes = rows.len(), "cannot record data plane state; will retry");
                    if !closed {
                        tokio::select! {
                            _ = shutdown.cancelled() => {}
                            _ = tokio::time::sleep(RETRY_DELAY) => {}
                        }
                    }
                }
            }
        }
        if closed {
            return;
        }
    }
}
