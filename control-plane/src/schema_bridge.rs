//! The one place that calls tollgate-shared's schema functions, with local
//! stand-ins for those not merged yet, so that swapping them in is one edit.

use serde_json::Value;
use tollgate_shared::EntityKind;

/// Validates input, fills defaults, ids and timestamps; every error at once.
pub fn validate_entity(
    kind: EntityKind,
    input: &Value,
) -> Result<Value, tollgate_shared::FieldErrors> {
    tollgate_shared::schema::validate_entity(kind, input)
}

/// Converts form strings into the JSON types the schema expects.
pub fn coerce_form(kind: EntityKind, input: Value) -> Value {
    tollgate_shared::schema::coerce_form(kind, input)
}

/// rate-limiting's deprecated top-level `redis_*` fields, mirrored from `config.redis`.
const REDIS_SHORTHANDS: [&str; 9] = [
    "host",
    "port",
    "password",
    "username",
    "ssl",
    "ssl_verify",
    "server_name",
    "timeout",
    "database",
];

/// The output form of a stored entity (adds the shorthand fields Kong mirrors).
pub fn render_entity(kind: EntityKind, entity: &Value) -> Value {
    let mut out = entity.clone();
    if kind != EntityKind::Plugins {
        return out;
    }
    let is_rate_limiting = out.get("name").and_then(Value::as_str) == Some("rate-limiting");
    if !is_rate_limiting {
        return out;
    }
    if let Some(config) = out.get_mut("config").and_then(Value::as_object_mut) {
        if let Some(redis) = config.get("redis").and_then(Value::as_object).cloned() {
            for field in REDIS_SHORTHANDS {
                let value = redis.get(field).cloned().unwrap_or(Value::Null);
                config.entry(format!("redis_{field}")).or_insert(value);
            }
        }
    }
    out
}

/// Kong's `/schemas/{entity}` body for `kind`.
pub fn entity_schema(kind: EntityKind) -> Value {
    let _ = kind;
    serde_json::json!({ "fields": [] })
}

/// Kong's `/schemas/plugins/{name}` body, or `None` for a plugin this build lacks.
pub fn plugin_schema(name: &str) -> Option<Value> {
    if tollgate_shared::plugin::BUNDLED.contains(&name) {
        Some(serde_json::json!({ "fields": [{ "config": { "type": "record", "fields": [] } }] }))
    } else {
        None
    }
}
