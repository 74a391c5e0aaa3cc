//! `GET /clustering/data-planes` and `GET /clustering/status`: Kong's fields
//! for each data plane, plus what Tollgate knows beyond Kong (the version it
//! runs, whether it is in sync, why it rejected or cannot take a config, how
//! far behind it is).

use super::error::ApiError;
use super::response::json;
use super::AdminRequest;
use crate::cluster::persist::PURGE_AFTER;
use crate::cluster::registry::now_ms;
use crate::cluster::view::{ClusterView, DataPlaneEntry, PublishedSummary};
use axum::http::HeaderValue;
use axum::response::Response;
use serde_json::{json, Map, Value};

fn view(request: &AdminRequest) -> Result<&ClusterView, ApiError> {
    request.state.cluster.as_ref().ok_or_else(|| {
        ApiError::BadRequest(
            "this endpoint is only available when Kong is configured to run as Control Plane for the cluster"
                .into(),
        )
    })
}

fn seconds(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

fn render(entry: &DataPlaneEntry, now: i64) -> Value {
    let s = &entry.state;
    let last_error = s
        .incompatible_reason
        .clone()
        .or_else(|| (!s.last_errors.is_empty()).then(|| s.last_errors.join("; ")))
        .or_else(|| entry.unpublished_reason.clone());
    let ttl = (PURGE_AFTER.as_millis() as i64 - (now - s.last_seen_ms)).max(0) / 1000;
    json!({
        "id": s.id,
        "ip": s.ip,
        "hostname": s.hostname,
        "version": s.version,
        "sync_status": entry.sync_status,
        "config_hash": s.config_hash,
        "config_version": s.config_version,
        "last_seen": seconds(s.last_seen_ms),
        "updated_at": seconds(s.last_seen_ms),
        "ttl": ttl,
        "labels": {},
        "cert_details": { "expiry_timestamp": s.cert_expiry },
        "rpc_capabilities": [],
        "connected": s.connected,
        "connected_at": seconds(s.connected_at_ms),
        "plugins": s.plugins,
        "applied_at_ms": s.applied_at_ms,
        "acked_at_ms": s.acked_at_ms,
        "sent_version": s.sent_version,
        "last_apply_lag_ms": s.last_apply_lag_ms,
        "lag_ms": entry.lag_ms,
        "last_error": last_error,
        "errors": s.last_errors,
        "rejected_version": s.rejected_version,
        "rejected_hash": s.rejected_hash,
    })
}

fn render_published(published: &PublishedSummary) -> Value {
    json!({
        "config_version": published.version,
        "config_hash": published.hash,
        "built_at_ms": published.built_at_ms,
        "last_build_ms": published.last_build_ms,
        "builds": published.builds,
        "failures": published.failures,
        "last_error": published.last_error,
    })
}

/// `GET /clustering/data-planes`: every node in one page (`next` is null).
pub async fn data_planes(request: &AdminRequest) -> Result<Response, ApiError> {
    let view = view(request)?;
    let now = now_ms();
    let published = view.published();
    let nodes = view.data_planes(published.hash.as_deref()).await?;
    let data: Vec<Value> = nodes.iter().map(|n| render(n, now)).collect();
    Ok(json(&json!({
        "data": data,
        "next": null,
        "published": render_published(&published),
    })))
}

/// `GET /clustering/status`: Kong's deprecated summary keyed by node id.
pub async fn status(request: &AdminRequest) -> Result<Response, ApiError> {
    let view = view(request)?;
    let mut out = Map::new();
    // Kong's summary carries no status, so the published hash does not matter.
    for node in view.data_planes(None).await? {
        let s = &node.state;
        out.insert(
            s.id.clone(),
            json!({
                "config_hash": s.config_hash,
                "hostname": s.hostname,
                "ip": s.ip,
                "last_seen": seconds(s.last_seen_ms),
            }),
        );
    }
    let mut response = json(&Value::Object(out));
    response
        .headers_mut()
        .insert("Deprecation", HeaderValue::from_static("true"));
    Ok(response)
}
