//! `GET /config` (the whole state as Kong declarative YAML) and `POST /config`
//! (replace the whole state in one transaction, or `?dry_run=true` to see the
//! diff without writing; `?check_hash=1` answers 304 when nothing would change).

use super::body::{self, Encoding};
use super::error::ApiError;
use super::response::{committed, json, json_with_status};
use super::AdminRequest;
use crate::schema_bridge::render_entity;
use crate::store::{config_entities, AuditRecord, StoreError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use tollgate_shared::declarative::{self, DeclarativeError};
use tollgate_shared::hash::config_hash;
use tollgate_shared::{Config, EntityKind};

/// `GET /config`.
pub async fn get(request: &AdminRequest) -> Result<Response, ApiError> {
    let (_, config) = request.state.store.load_config().await?;
    Ok(json(
        &json!({ "config": declarative::render_yaml(&config) }),
    ))
}

fn flag(request: &AdminRequest, name: &str) -> bool {
    request
        .query
        .get(name)
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes" | "on"))
}

fn expected_config() -> ApiError {
    ApiError::BadRequest("expected a declarative configuration".into())
}

/// The declarative text carried by the request, whatever its encoding.
async fn declarative_text(request: &AdminRequest) -> Result<String, ApiError> {
    let encoding = body::encoding(&request.headers, &request.body, true)?;
    let utf8 = |bytes: &[u8]| {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::BadRequest("declarative configuration is not UTF-8".into()))
    };
    match encoding {
        Encoding::Empty => Err(expected_config()),
        Encoding::Yaml => {
            let text = utf8(&request.body)?;
            if text.trim().is_empty() {
                Err(expected_config())
            } else {
                Ok(text)
            }
        }
        Encoding::Json => {
            let value: Value =
                serde_json::from_slice(&request.body).map_err(|_| ApiError::BadJson)?;
            match value.get("config") {
                Some(Value::String(text)) => Ok(text.clone()),
                Some(inner @ Value::Object(_)) => Ok(inner.to_string()),
                _ if value.get("_format_version").is_some() => utf8(&request.body),
                _ => Err(expected_config()),
            }
        }
        Encoding::Form | Encoding::Multipart { .. } => {
            let (args, _) = body::arguments(&encoding, request.body.clone()).await?;
            match args.get("config") {
                Some(Value::String(text)) => Ok(text.clone()),
                _ => Err(expected_config()),
            }
        }
    }
}

/// Kong's code 14 body (with `flattened_errors` when `?flatten_errors=1`).
fn invalid(err: DeclarativeError, flatten_errors: bool) -> ApiError {
    ApiError::DeclarativeBody(err.to_body(flatten_errors))
}

/// A store refusal while loading a config is the config's fault: code 14.
fn store_refusal(err: StoreError) -> ApiError {
    match err {
        StoreError::Unique { .. }
        | StoreError::PrimaryKey { .. }
        | StoreError::MissingParent { .. }
        | StoreError::Referenced { .. } => {
            let message = err.to_string();
            ApiError::Declarative {
                message: format!("declarative config is invalid: {message}"),
                fields: json!({ "@entity": [message] }),
            }
        }
        other => ApiError::Store(other),
    }
}

fn summary(kind: EntityKind, entity: &Value) -> Value {
    let mut out = Map::new();
    out.insert(
        "id".into(),
        entity.get("id").cloned().unwrap_or(Value::Null),
    );
    // A key-auth key is its endpoint key and a secret: the diff (also kept
    // in the audit log) names such credentials by id only.
    let secret_key = kind == EntityKind::KeyauthCredentials;
    if let Some(key) = kind.endpoint_key().filter(|_| !secret_key) {
        out.insert(key.into(), entity.get(key).cloned().unwrap_or(Value::Null));
    }
    Value::Object(out)
}

/// Whether two stored entities differ in anything but their timestamps.
fn changed(old: &Value, new: &Value) -> bool {
    const STAMPS: [&str; 2] = ["created_at", "updated_at"];
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let fields = |map: &'_ Map<String, Value>| {
                map.iter()
                    .filter(|(key, _)| !STAMPS.contains(&key.as_str()))
                    .count()
            };
            fields(old) != fields(new)
                || old
                    .iter()
                    .filter(|(key, _)| !STAMPS.contains(&key.as_str()))
                    .any(|(key, value)| new.get(key) != Some(value))
        }
        _ => old != new,
    }
}

fn by_id(entities: Vec<Value>) -> BTreeMap<String, Value> {
    entities
        .into_iter()
        .map(|e| {
            let id = e
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            (id, e)
        })
        .collect()
}

/// Per entity type: what `new` creates, updates and deletes relative to `old`.
pub fn diff(old: &Config, new: &Config) -> Result<Value, StoreError> {
    let mut out = Map::new();
    for kind in EntityKind::ALL {
        let before = by_id(config_entities(old, kind)?);
        let after = by_id(config_entities(new, kind)?);
        let created: Vec<Value> = after
            .iter()
            .filter(|(id, _)| !before.contains_key(*id))
            .map(|(_, e)| summary(kind, e))
            .collect();
        let updated: Vec<Value> = after
            .iter()
            .filter(|(id, e)| before.get(*id).is_some_and(|old| changed(old, e)))
            .map(|(_, e)| summary(kind, e))
            .collect();
        let deleted: Vec<Value> = before
            .iter()
            .filter(|(id, _)| !after.contains_key(*id))
            .map(|(_, e)| summary(kind, e))
            .collect();
        out.insert(
            kind.table_name().into(),
            json!({ "created": created, "updated": updated, "deleted": deleted }),
        );
    }
    Ok(Value::Object(out))
}

/// `POST /config`.
/// The data planes' compile step over the whole file: what they could not
/// serve is refused before anything is stored.
fn check_compiles(config: &tollgate_shared::Config) -> Result<(), ApiError> {
    tollgate_shared::compile::check(config).map_err(|errors| {
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        ApiError::Declarative {
            message: format!("declarative config is invalid: {}", messages.join("; ")),
            fields: json!({ "@entity": messages }),
        }
    })
}

pub async fn post(request: &AdminRequest) -> Result<Response, ApiError> {
    let mut timer = StageTimer::new();
    let text = declarative_text(request).await?;
    let config =
        declarative::parse(&text).map_err(|e| invalid(e, flag(request, "flatten_errors")))?;
    check_compiles(&config)?;
    timer.stage("parse, compile check");
    let new_hash = config_hash(&config);
    let store = &request.state.store;
    if flag(request, "dry_run") {
        let (_, current) = store.load_config().await?;
        return Ok(json(&json!({
            "dry_run": true,
            "config_hash": new_hash,
            "diff": diff(&current, &config)?,
        })));
    }
    let mut txn = store.begin_write().await?;
    timer.stage("hash, lock");
    let current = txn.load_config().await?;
    timer.stage("load current");
    let old_hash = config_hash(&current);
    if flag(request, "check_hash") && old_hash == new_hash {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let changes = diff(&current, &config)?;
    timer.stage("hash current, diff");
    txn.replace_all(&config).await.map_err(store_refusal)?;
    timer.stage("replace");
    txn.audit(AuditRecord {
        actor: request.actor.clone(),
        method: request.method.to_string(),
        path: request.path.clone(),
        entity_type: None,
        entity_id: None,
        before: Some(json!({ "config_hash": old_hash })),
        after: Some(json!({ "config_hash": new_hash, "diff": changes })),
    })
    .await?;
    let version = txn.commit().await?;
    timer.stage("audit, commit");
    let mut loaded = Map::new();
    for kind in EntityKind::ALL {
        let entities: Map<String, Value> = config_entities(&config, kind)?
            .into_iter()
            .map(|e| {
                let id = e
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                (id, render_entity(kind, &e))
            })
            .collect();
        loaded.insert(kind.table_name().into(), Value::Object(entities));
    }
    let response = json_with_status(StatusCode::CREATED, &Value::Object(loaded));
    timer.stage("render");
    tracing::debug!(stages = %timer, "POST /config");
    Ok(committed(response, version))
}

/// Wall time per stage of a long request, for the debug log.
struct StageTimer {
    last: std::time::Instant,
    stages: Vec<(&'static str, std::time::Duration)>,
}

impl StageTimer {
    fn new() -> Self {
        Self {
            last: std::time::Instant::now(),
            stages: Vec::new(),
        }
    }

    fn stage(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.stages.push((name, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for StageTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, took)) in self.stages.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name} {} ms", took.as_millis())?;
        }
        Ok(())
    }
}
