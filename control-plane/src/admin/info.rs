//! Node information endpoints: `GET /`, `/status`, `/endpoints`,
//! `/plugins/enabled`, the schema endpoints and their validators.

use super::body;
use super::error::ApiError;
use super::response::json;
use super::routes::kind_named;
use super::AdminRequest;
use crate::schema_bridge::{coerce_form, validate_entity};
use axum::response::Response;
use serde_json::{json, Map, Value};
use tollgate_shared::EntityKind;

/// `GET /`.
pub async fn root(request: &AdminRequest) -> Result<Response, ApiError> {
    let state = &request.state;
    let mut available = Map::new();
    // Kong lists the plugins its `plugins` setting loads; here, the plugins
    // the data planes of this build run.
    for row in tollgate_shared::plugin::table()
        .iter()
        .filter(|r| r.supported)
    {
        available.insert(
            row.name.to_string(),
            json!({ "version": tollgate_shared::VERSION, "priority": row.priority }),
        );
    }
    // The node answers even when the database is down; the list is then empty.
    let enabled = state.store.plugin_names().await.unwrap_or_default();
    Ok(json(&json!({
        "tagline": "Welcome to tollgate",
        "version": tollgate_shared::VERSION,
        "edition": "community",
        "hostname": state.hostname,
        "node_id": state.node_id.to_string(),
        "timers": { "running": 0, "pending": 0 },
        "plugins": {
            "available_on_server": available,
            "enabled_in_cluster": enabled,
        },
        "pids": { "master": std::process::id(), "workers": [std::process::id()] },
        "configuration": state.configuration,
    })))
}

/// `GET /status`.
pub async fn status(request: &AdminRequest) -> Result<Response, ApiError> {
    let state = &request.state;
    let reachable = state.store.ping().await.is_ok();
    Ok(json(&json!({
        "database": { "reachable": reachable },
        "server": state.counters.snapshot(),
        "config_version": *state.config_version.borrow(),
    })))
}

/// `GET /endpoints`: every path template, sorted.
pub fn endpoints(request: &AdminRequest) -> Response {
    let mut paths: Vec<&str> = request
        .state
        .routes
        .endpoints
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    paths.sort_unstable();
    paths.dedup();
    json(&json!({ "data": paths }))
}

/// `GET /plugins/enabled`.
pub fn plugins_enabled() -> Response {
    let mut names: Vec<&str> = tollgate_shared::plugin::supported().collect();
    names.sort_unstable();
    json(&json!({ "enabled_plugins": names }))
}

/// `GET /schemas/{entity}`.
pub fn entity_schema(request: &AdminRequest) -> Result<Response, ApiError> {
    let name = request.param("entity");
    let kind = kind_named(name)
        .ok_or_else(|| ApiError::NotFoundMessage(format!("No entity named '{name}'")))?;
    Ok(json(&crate::schema_bridge::entity_schema(kind)))
}

/// `GET /schemas/plugins/{name}`.
pub fn plugin_schema(request: &AdminRequest) -> Result<Response, ApiError> {
    let name = request.param("name");
    let schema = crate::schema_bridge::plugin_schema(name)
        .ok_or_else(|| ApiError::NotFoundMessage(format!("No plugin named '{name}'")))?;
    Ok(json(&schema))
}

async fn validated(request: &AdminRequest, kind: EntityKind) -> Result<Response, ApiError> {
    let encoding = body::encoding(&request.headers, &request.body, false)?;
    let (args, is_form) = body::arguments(&encoding, request.body.clone()).await?;
    let args = if is_form {
        coerce_form(kind, args)
    } else {
        args
    };
    validate_entity(kind, &args).map_err(ApiError::Schema)?;
    Ok(json(&json!({ "message": "schema validation successful" })))
}

/// `POST /schemas/{entity}/validate`.
pub async fn validate_entity_endpoint(request: &AdminRequest) -> Result<Response, ApiError> {
    let name = request.param("entity");
    let kind = kind_named(name)
        .ok_or_else(|| ApiError::NotFoundMessage(format!("No entity named '{name}'")))?;
    validated(request, kind).await
}

/// `POST /schemas/plugins/validate`.
pub async fn validate_plugin(request: &AdminRequest) -> Result<Response, ApiError> {
    validated(request, EntityKind::Plugins).await
}

/// `GET /tags`, `GET /tags/{tag}`: one row per (tag, entity), paginated.
pub async fn tags(request: &AdminRequest) -> Result<Response, ApiError> {
    let size = super::paging::size(&request.query)?;
    let only = request
        .params
        .iter()
        .find(|(k, _)| k == "tag")
        .map(|(_, v)| v.clone());
    if let Some(tag) = &only {
        if tag.is_empty() || tag.contains(',') || tag.contains('/') {
            return Err(ApiError::InvalidOption {
                option: "tags",
                message: "invalid filter syntax",
            });
        }
    }
    let after = match request.query.get("offset") {
        None => None,
        Some(token) => match super::paging::decode_offset(token)? {
            Value::Array(parts) if parts.len() == 2 => Some((
                parts[0].as_str().unwrap_or_default().to_string(),
                parts[1].as_str().unwrap_or_default().to_string(),
            )),
            _ => {
                return Err(ApiError::InvalidOffset {
                    token: token.clone(),
                    reason: "bad json encoding",
                })
            }
        },
    };
    let rows: Vec<(String, EntityKind, String)> = request
        .state
        .store
        .tag_rows()
        .await?
        .into_iter()
        .filter(|(tag, _, _)| only.as_ref().is_none_or(|o| o == tag))
        .filter(|(tag, _, id)| {
            after
                .as_ref()
                .is_none_or(|(t, i)| (tag.as_str(), id.as_str()) > (t.as_str(), i.as_str()))
        })
        .collect();
    let page: Vec<Value> = rows
        .iter()
        .take(size)
        .map(|(tag, kind, id)| json!({"tag": tag, "entity_name": kind.table_name(), "entity_id": id}))
        .collect();
    let mut body = Map::new();
    body.insert("data".into(), Value::Array(page));
    match rows
        .get(size.saturating_sub(1))
        .filter(|_| rows.len() > size)
    {
        Some((tag, _, id)) => {
            let token = super::paging::encode_offset(&json!([tag, id]));
            let base = match &only {
                Some(tag) => format!("/tags/{tag}"),
                None => "/tags".into(),
            };
            body.insert(
                "next".into(),
                Value::String(super::paging::next_link(&base, &token, &[])),
            );
            body.insert("offset".into(), Value::String(token));
        }
        None => {
            body.insert("next".into(), Value::Null);
        }
    }
    Ok(json(&Value::Object(body)))
}
