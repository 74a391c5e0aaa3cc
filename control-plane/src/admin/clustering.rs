//! `GET /clustering/data-planes` and `GET /clustering/status`: Kong's fields
//! for each data plane, plus what Tollgate knows beyond Kong (the version it
//! runs, whether it is in sync, why it rejected or cannot take a config, how
//! far behind it is), and `GET /clustering/wait`, which answers once the
//! connected data planes have applied a given config version.

use super::error::ApiError;
use super::response::json;
use super::response::json_with_status;
use super::AdminRequest;
use crate::cluster::persist::PURGE_AFTER;
use crate::cluster::registry::now_ms;
use crate::cluster::view::{ClusterView, DataPlaneEntry, PublishedSummary};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::Duration;

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

/// The longest `timeout` a `/clustering/wait` may ask for (the request's own
/// deadline is longer).
const MAX_WAIT: Duration = Duration::from_secs(60);
const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// The query parameters of `/clustering/wait`, for the OpenAPI document.
pub fn wait_parameters() -> Value {
    json!([
        {"name": "version", "in": "query", "required": true, "schema": {"type": "integer", "minimum": 0},
         "description": "the X-Tollgate-Config-Version of a write"},
        {"name": "timeout", "in": "query", "schema": {"type": "string", "default": "5s"},
         "description": "how long to wait: 500ms, 5s, 1m or plain seconds; at most 60s"},
        {"name": "quorum", "in": "query", "schema": {"type": "string", "default": "all"},
         "description": "all (every connected data plane, at least one) or N"},
    ])
}

/// How many connected data planes must have applied the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quorum {
    All,
    AtLeast(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WaitParams {
    version: u64,
    timeout: Duration,
    quorum: Quorum,
}

/// `500ms`, `5s`, `1m` or plain seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

impl WaitParams {
    fn parse(query: &HashMap<String, String>) -> Result<WaitParams, ApiError> {
        let bad = |m: String| ApiError::BadRequest(m);
        let version = query.get("version").ok_or_else(|| {
            bad("version: required (the X-Tollgate-Config-Version of a write)".into())
        })?;
        let version = version.trim().parse().map_err(|_| {
            bad(format!(
                "version: expected a non-negative integer, got '{version}'"
            ))
        })?;
        let timeout = match query.get("timeout") {
            None => DEFAULT_WAIT,
            Some(text) => parse_duration(text)
                .filter(|t| *t <= MAX_WAIT)
                .ok_or_else(|| bad(format!("timeout: expected a duration such as 500ms, 5s or 1m, at most 60s; got '{text}'")))?,
        };
        let quorum = match query.get("quorum").map(|q| q.trim()) {
            None | Some("all") => Quorum::All,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if n >= 1 => Quorum::AtLeast(n),
                _ => {
                    return Err(bad(format!(
                    "quorum: expected 'all' or a number of data planes (1 or more); got '{text}'"
                )))
                }
            },
        };
        Ok(WaitParams {
            version,
            timeout,
            quorum,
        })
    }
}

/// `GET /clustering/wait?version=V[&timeout=5s][&quorum=all|N]`: answers 200
/// once the data planes connected to this control plane (all of them, at
/// least one, or N) have applied version V or newer, and 504 with every
/// node's state when the timeout passes first. It wakes on the registry's
/// change notifications, never on a timer of its own.
pub async fn wait(request: &AdminRequest) -> Result<Response, ApiError> {
    let view = view(request)?;
    let params = WaitParams::parse(&request.query)?;
    let mut changes = view.registry.subscribe();
    let deadline = tokio::time::Instant::now() + params.timeout;
    loop {
        // Mark the current registry state seen before reading it, so that a
        // change made while we judge it wakes the next round.
        changes.borrow_and_update();
        let published = view.published();
        let now = now_ms();
        let nodes: Vec<DataPlaneEntry> = view
            .registry
            .list()
            .into_iter()
            .filter(|state| state.connected)
            .map(|state| DataPlaneEntry {
                sync_status: state.sync_status(published.hash.as_deref()),
                lag_ms: state.lag_ms(published.hash.as_deref(), now),
                unpublished_reason: None,
                state,
            })
            .collect();
        let reached = nodes
            .iter()
            .filter(|n| n.state.config_version >= params.version)
            .count();
        let (needed, done) = match params.quorum {
            Quorum::All => (nodes.len(), !nodes.is_empty() && reached == nodes.len()),
            Quorum::AtLeast(n) => (n, reached >= n),
        };
        let body = |message: String| {
            json!({
                "message": message,
                "version": params.version,
                "quorum": match params.quorum {
                    Quorum::All => json!("all"),
                    Quorum::AtLeast(n) => json!(n),
                },
                "reached": reached,
                "connected": nodes.len(),
                "published": render_published(&published),
                "data": nodes.iter().map(|n| render(n, now)).collect::<Vec<_>>(),
            })
        };
        if done {
            return Ok(json(&body(format!(
                "{reached} of {} connected data plane(s) applied version {} or newer",
                nodes.len(),
                params.version
            ))));
        }
        let woke = tokio::select! {
            changed = changes.changed() => changed.is_ok(),
            () = tokio::time::sleep_until(deadline) => false,
        };
        if !woke {
            let message = if nodes.is_empty() {
                format!(
                    "timed out after {:?}: no data plane is connected",
                    params.timeout
                )
            } else {
                format!(
                    "timed out after {:?}: {reached} of {} connected data plane(s) applied version {} (needed {})",
                    params.timeout,
                    nodes.len(),
                    params.version,
                    needed.max(1)
                )
            };
            return Ok(json_with_status(
                StatusCode::GATEWAY_TIMEOUT,
                &body(message),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn wait_parameters_parse_and_refuse_nonsense() {
        let p = WaitParams::parse(&query(&[("version", "7")])).unwrap();
        assert_eq!(p.version, 7);
        assert_eq!(p.timeout, DEFAULT_WAIT);
        assert_eq!(p.quorum, Quorum::All);
        let p = WaitParams::parse(&query(&[
            ("version", "7"),
            ("timeout", "250ms"),
            ("quorum", "2"),
        ]))
        .unwrap();
        assert_eq!(p.timeout, Duration::from_millis(250));
        assert_eq!(p.quorum, Quorum::AtLeast(2));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        for bad in [
            vec![],
            vec![("version", "x")],
            vec![("version", "-1")],
            vec![("version", "1"), ("timeout", "5h")],
            vec![("version", "1"), ("timeout", "61s")],
            vec![("version", "1"), ("quorum", "0")],
            vec![("version", "1"), ("quorum", "most")],
        ] {
            let err = WaitParams::parse(&query(&bad)).unwrap_err();
            assert!(matches!(err, ApiError::BadRequest(_)), "{bad:?}");
        }
    }
}
