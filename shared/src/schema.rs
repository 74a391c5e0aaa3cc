//! Entity schemas: Kong's field types, defaults and rules, applied to JSON input.
//!
//! Input arrives as JSON (from the Admin API, after form decoding, or from a
//! declarative file). [`validate_entity`] checks it against the entity's schema,
//! fills defaults, generates `id` and timestamps when absent, and returns the
//! complete entity JSON, or every problem at once as [`FieldErrors`] with
//! Kong's messages. [`coerce_form`] turns form strings into typed JSON first;
//! [`render_entity`] produces the Admin API's output form; [`entity_schema_json`]
//! and [`plugin_schema_json`] describe the schemas as Kong's `/schemas` does.

mod certificate;
mod consumer;
mod credentials;
pub(crate) mod engine;
mod jwt_secret;
mod plugin_entity;
mod route;
pub(crate) mod service;
pub(crate) mod typedefs;

pub use crate::plugin::public_key_parses;
pub use route::{compile_path_regex, normalize_path};
pub use typedefs::parse_ip_or_cidr;

use crate::entity::EntityKind;
use crate::validation::FieldErrors;
use engine::{Kind, Record};
use serde_json::{Map, Value};
use std::sync::LazyLock;

static SERVICES: LazyLock<Record> = LazyLock::new(service::schema);
static ROUTES: LazyLock<Record> = LazyLock::new(route::schema);
static CONSUMERS: LazyLock<Record> = LazyLock::new(consumer::schema);
static PLUGINS: LazyLock<Record> = LazyLock::new(plugin_entity::schema);
static JWT_SECRETS: LazyLock<Record> = LazyLock::new(jwt_secret::schema);
static CERTIFICATES: LazyLock<Record> = LazyLock::new(certificate::certificates);
static SNIS: LazyLock<Record> = LazyLock::new(certificate::snis);
static KEYAUTH_CREDENTIALS: LazyLock<Record> = LazyLock::new(credentials::keyauth_credentials);
static BASICAUTH_CREDENTIALS: LazyLock<Record> = LazyLock::new(credentials::basicauth_credentials);
static ACLS: LazyLock<Record> = LazyLock::new(credentials::acls);

fn record(kind: EntityKind) -> &'static Record {
    match kind {
        EntityKind::Services => &SERVICES,
        EntityKind::Routes => &ROUTES,
        EntityKind::Consumers => &CONSUMERS,
        EntityKind::Plugins => &PLUGINS,
        EntityKind::JwtSecrets => &JWT_SECRETS,
        EntityKind::Certificates => &CERTIFICATES,
        EntityKind::Snis => &SNIS,
        EntityKind::KeyauthCredentials => &KEYAUTH_CREDENTIALS,
        EntityKind::BasicauthCredentials => &BASICAUTH_CREDENTIALS,
        EntityKind::Acls => &ACLS,
    }
}

/// Validates `input` as an entity of `kind` and returns it complete: every
/// schema field present (unset ones `null`), defaults filled, `id`,
/// `created_at` and `updated_at` generated when absent. The result
/// deserializes into the entity struct of `kind`.
pub fn validate_entity(kind: EntityKind, input: &Value) -> Result<Value, FieldErrors> {
    let Value::Object(map) = input else {
        let mut errors = FieldErrors::new();
        errors.add_entity(engine::msg::RECORD);
        return Err(errors);
    };
    engine::validate_record(record(kind), map).map(Value::Object)
}

/// Converts the string values of a decoded form body into the JSON types the
/// schema expects: integers and numbers parsed, booleans from `true`/`false`,
/// a single value for an array or set field as a one-element array, `""` as
/// `null`. For plugins, `input["name"]` selects the config schema. Values that
/// cannot be converted are left for validation to report.
pub fn coerce_form(kind: EntityKind, input: Value) -> Value {
    match input {
        Value::Object(map) => Value::Object(engine::coerce_record(record(kind), map, None)),
        other => other,
    }
}

/// The Admin API's output form of a stored entity. Plugins whose config has
/// deprecated shorthand fields (rate-limiting's `redis_host`, …) get them back,
/// mirrored from where they are stored, as Kong echoes them.
pub fn render_entity(kind: EntityKind, stored: &Value) -> Value {
    let mut out = stored.clone();
    if kind == EntityKind::KeyauthCredentials {
        // Kong shows `ttl`, the seconds left, on a key that expires.
        if let Value::Object(map) = &mut out {
            if let Some(at) = map.remove("expires_at").and_then(|v| v.as_i64()) {
                let left = (at - crate::entity::now_seconds()).max(0);
                map.insert("ttl".into(), Value::from(left));
            }
        }
        return out;
    }
    if kind != EntityKind::Plugins {
        return out;
    }
    let Some(sub) = stored
        .get("name")
        .and_then(Value::as_str)
        .and_then(crate::plugin::subschema)
    else {
        return out;
    };
    let Some(Kind::Record(config_schema)) = sub
        .fields
        .iter()
        .find(|f| f.name == "config")
        .map(|f| &f.kind)
    else {
        return out;
    };
    if let Some(Value::Object(config)) = out.get_mut("config") {
        let mirrored: Vec<(String, Value)> = config_schema
            .shorthands
            .iter()
            .filter_map(|s| Some((s.field.name.to_string(), lookup(config, s.mirror?))))
            .collect();
        for (name, value) in mirrored {
            config.insert(name, value);
        }
    }
    out
}

fn lookup(map: &Map<String, Value>, path: &[&str]) -> Value {
    let mut current = map;
    for (i, step) in path.iter().enumerate() {
        match current.get(*step) {
            Some(Value::Object(next)) if i + 1 < path.len() => current = next,
            Some(value) if i + 1 == path.len() => return value.clone(),
            _ => return Value::Null,
        }
    }
    Value::Null
}

/// The schema of `kind` in the shape of Kong's `GET /schemas/{entity}`:
/// `{"fields":[{"<name>":{"type":…,"required":…,"default":…,…}},…]}`.
pub fn entity_schema_json(kind: EntityKind) -> Value {
    engine::record_json(record(kind), None)
}

/// A bundled plugin's schema in the shape of Kong's `GET /schemas/plugins/{name}`,
/// or `None` for a plugin this build does not bundle.
pub fn plugin_schema_json(name: &str) -> Option<Value> {
    let sub = crate::plugin::subschema(name)?;
    let fields: Vec<Value> = sub
        .fields
        .iter()
        .map(|f| {
            let mut entry = Map::new();
            entry.insert(f.name.to_string(), engine::field_json(f));
            Value::Object(entry)
        })
        .collect();
    let mut out = Map::new();
    out.insert("fields".into(), Value::Array(fields));
    let checks = engine::checks_json(&sub.checks);
    if !checks.is_empty() {
        out.insert("entity_checks".into(), Value::Array(checks));
    }
    Some(Value::Object(out))
}
