//! Tollgate's control plane: it owns the configuration (PostgreSQL or SQLite
//! through sqlx), serves the Kong-compatible Admin API, builds versioned config
//! snapshots and streams them to data planes over mTLS gRPC.
//!
//! It must not proxy traffic.

pub mod cert;
pub mod cluster;
pub mod settings;
pub mod store;

use anyhow::Context;
use settings::{MigrateSettings, ServeSettings};
use store::{redact_url, Store, StoreOptions};

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

/// `tollgate-cp serve`.
pub async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    let store = Store::connect(&settings.database_url, StoreOptions::default())?;
    if settings.migrate {
        store
            .migrate()
            .await
            .with_context(|| format!("migrating {}", redact_url(&settings.database_url)))?;
    }
    store.close().await;
    Ok(())
}
