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
pub mod store;

use anyhow::Context;
use listener::AdminListener;
use settings::{MigrateSettings, ServeSettings};
use state::AppState;
use std::sync::Arc;
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

/// `tollgate-cp serve`: migrations (unless disabled), then the Admin API until a signal.
pub async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
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
        AppState::configuration_of(&settings),
    )?;
    state.browser_guard = matches!(settings.admin_listen, settings::ListenAddr::Tcp(_));
    let state = Arc::new(state);
    let app = admin::router(state.clone(), axum::Router::new());
    let listener = AdminListener::bind(&settings.admin_listen).await?;
    tracing::info!(
        admin = %listener.local_addr(),
        database = %redact_url(&settings.database_url),
        auth = if settings.admin_tokens.is_empty() { "none (local listener)" } else { "bearer token" },
        "tollgate-cp serving the Admin API"
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let follower = tokio::spawn({
        let store = store.clone();
        let stop = stop.clone();
        async move { store.follow_notifications(stop).await }
    });
    let served = listener::serve(listener, app, state.counters.clone(), shutdown_signal()).await;
    stop.cancel();
    let _ = follower.await;
    served?;
    store.close().await;
    Ok(())
}
