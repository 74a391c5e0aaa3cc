//! Expired key-auth credentials (Kong's `ttl`) leave the database: Kong's
//! own TTL cleanup deletes such rows, and until it does its queries skip
//! them. Here lists and the snapshot read skip them in SQL (see `list_in`
//! and `config_read`), and the purge below deletes them at the instant the
//! first one runs out, as one write with its own config version, so data
//! planes get a snapshot without them and a stale snapshot never outlives
//! an expiry for long.

use super::{AuditRecord, Store, StoreError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tollgate_shared::EntityKind;

/// The longest the purge sleeps without looking again (a backstop for an
/// expiry another control plane wrote, whose notification may be missed).
const POLL: Duration = Duration::from_secs(60);

/// After a failed purge (database away), the wait before the next attempt.
const RETRY: Duration = Duration::from_secs(5);

impl Store {
    /// Deletes the key-auth credentials whose `expires_at` has passed, in one
    /// write (a new config version, audited as the control plane's own
    /// change); with nothing expired nothing is written. Returns how many
    /// rows went.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = tollgate_shared::entity::now_seconds();
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(expires_at) FROM keyauth_credentials WHERE expires_at <= $1",
        )
        .bind(now)
        .fetch_one(&self.inner.pool)
        .await?;
        if due.is_none() {
            return Ok(0);
        }
        let mut txn = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM keyauth_credentials WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *txn.tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            // Another control plane purged meanwhile; dropping the
            // transaction leaves the version where it was.
            return Ok(0);
        }
        txn.audit(AuditRecord {
            actor: "tollgate-cp".into(),
            method: "DELETE".into(),
            path: format!("/key-auths ({deleted} expired by ttl)"),
            entity_type: Some(EntityKind::KeyauthCredentials.table_name().into()),
            entity_id: None,
            before: None,
            after: None,
        })
        .await?;
        txn.commit().await?;
        Ok(deleted)
    }

    /// The earliest `expires_at` of a key-auth credential, if any.
    async fn next_expiry(&self) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT MIN(expires_at) FROM keyauth_credentials")
                .fetch_one(&self.inner.pool)
                .await?,
        )
    }

    /// Purges expired keys until `stop`: when the earliest expiry passes,
    /// after every committed change (which may add an earlier one), and at
    /// least every minute.
    pub async fn purge_expired_keys(&self, stop: CancellationToken) {
        let mut versions = self.subscribe();
        loop {
            let wait = match self.purge_expired().await {
                Ok(deleted) => {
                    if deleted > 0 {
                        tracing::info!(deleted, "purged key-auth credentials whose ttl ran out");
                    }
                    match self.next_expiry().await {
                        Ok(Some(at)) => {
                            let now = tollgate_shared::entity::now_seconds();
                            // `expires_at` is whole seconds and a key is
                            // expired from that second on.
                            let left = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
                            POLL.min(Duration::from_secs(left))
                        }
                        Ok(None) => POLL,
                        Err(_) => RETRY,
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "purging expired key-auth credentials failed");
                    RETRY
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                changed = versions.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
