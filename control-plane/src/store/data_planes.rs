//! Rows of `clustering_data_planes`: what each data plane reported to the
//! control plane it is connected to. Written by the cluster persister, read by
//! `GET /clustering/data-planes` on every control plane sharing the database.
//! The store keeps the state as opaque JSON; the cluster registry owns its shape.

use super::{Store, StoreError};
use serde_json::Value;
use sqlx::Row;

/// One data plane's persisted state.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPlaneRow {
    pub id: String,
    /// The control plane process that wrote the row last.
    pub control_plane_id: String,
    pub last_seen_ms: i64,
    pub data: Value,
}

impl Store {
    /// Inserts or replaces `rows` in one transaction and purges rows not seen
    /// since `purge_before_ms`.
    pub async fn save_data_planes(
        &self,
        rows: &[DataPlaneRow],
        purge_before_ms: i64,
    ) -> Result<(), StoreError> {
        self.timed(async {
            let mut tx = self.inner.pool.begin().await?;
            // One statement for both backends: SQLite reads `EXCLUDED` case-insensitively.
            // A row a fresher control plane wrote (the node moved) is not overwritten.
            let upsert = "INSERT INTO clustering_data_planes (id, control_plane_id, last_seen_ms, updated_at, data) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET control_plane_id = EXCLUDED.control_plane_id, \
                 last_seen_ms = EXCLUDED.last_seen_ms, updated_at = EXCLUDED.updated_at, data = EXCLUDED.data \
                 WHERE clustering_data_planes.last_seen_ms <= EXCLUDED.last_seen_ms";
            let now = crate::cluster::registry::now_ms();
            for row in rows {
                sqlx::query(upsert)
                    .bind(&row.id)
                    .bind(&row.control_plane_id)
                    .bind(row.last_seen_ms)
                    .bind(now)
                    .bind(row.data.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("DELETE FROM clustering_data_planes WHERE last_seen_ms < $1")
                .bind(purge_before_ms)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Every persisted data plane, by id.
    pub async fn load_data_planes(&self) -> Result<Vec<DataPlaneRow>, StoreError> {
        self.timed(async {
            let mut conn = self.inner.pool.acquire().await?;
            let rows = sqlx::query(
                "SELECT id, control_plane_id, last_seen_ms, data FROM clustering_data_planes ORDER BY id",
            )
            .fetch_all(&mut *conn)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let id: String = row.try_get("id")?;
                let text: String = row.try_get("data")?;
                let data = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    kind: "clustering_data_planes",
                    id: id.clone(),
                    reason: e.to_string(),
                })?;
                out.push(DataPlaneRow {
                    id,
                    control_plane_id: row.try_get("control_plane_id")?,
                    last_seen_ms: row.try_get("last_seen_ms")?,
                    data,
                });
            }
            Ok(out)
        })
        .await
    }
}
