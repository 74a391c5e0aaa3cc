//! The control plane's metrics, served on the Admin API's `GET /metrics`
//! (behind the same token gate): the listener's connection and request
//! counters ([`ServerCounters`], which `GET /status` reads too), Admin API
//! responses by status, the publisher's builds and failures
//! ([`PublisherStatus`], also shown by `/clustering/status`), whether the
//! database answers, and per data plane its last contact, applied version
//! and hash, lag, sync status, Nack count and certificate expiry.
//!
//! The registry is assembled per scrape from one consistent read of those
//! sources (the database ping and the stored data plane rows are async, the
//! encoder is not); nothing is global. Names follow `--metrics-prefix`
//! (`tollgate_*`, or Kong's exact names with `kong`); the list is in
//! README.md ("Metrics").

mod cluster;
mod counters;

pub use counters::{PublisherStatus, ServerCounters};

use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tollgate_shared::exposition::{self, Families, FnCollector};

/// Longest the database check of a scrape may take; a slower database is
/// reported unreachable rather than stalling the scrape.
const DATASTORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The routes this module adds to the Admin API.
pub fn routes(state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
}

/// `GET /metrics`.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let body = render(&state).await;
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(exposition::CONTENT_TYPE),
    );
    response
}

/// The exposition of this control plane now.
pub async fn render(state: &AppState) -> String {
    let reachable = matches!(
        tokio::time::timeout(DATASTORE_TIMEOUT, state.store.ping()).await,
        Ok(Ok(()))
    );
    let cluster = match &state.cluster {
        Some(view) => Some(cluster::ClusterFacts::read(view).await),
        None => None,
    };
    let node = counters::NodeFacts {
        naming: state.metrics_naming.clone(),
        node_id: state.node_id.to_string(),
        datastore_reachable: reachable,
        counters: Arc::clone(&state.counters),
    };
    let naming = state.metrics_naming.clone();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(FnCollector(
        move |families: &mut Families<'_, '_>| {
            node.encode(families)?;
            match &cluster {
                Some(cluster) => cluster.encode(&naming, families),
                None => Ok(()),
            }
        },
    )));
    exposition::render(&registry)
}
