//! A config as a Kong 3.0 declarative document: flat top-level collections,
//! foreign keys as plain ids, every field written (nulls included, so nothing
//! is re-defaulted on the way back), rows sorted by id.

use crate::config::Config;
use serde::Serialize;
use serde_json::{Map, Value};

/// The config as a declarative document (`_format_version: "3.0"`).
pub fn render_value(config: &Config) -> Value {
    let mut sorted = config.clone();
    sorted.sort();
    let mut document = Map::new();
    document.insert("_format_version".into(), Value::String("3.0".into()));
    document.insert("_transform".into(), Value::Bool(false));
    push(
        &mut document,
        "services",
        &sorted.services,
        &["client_certificate"],
    );
    push(&mut document, "routes", &sorted.routes, &["service"]);
    push(&mut document, "consumers", &sorted.consumers, &[]);
    push(
        &mut document,
        "jwt_secrets",
        &sorted.jwt_secrets,
        &["consumer"],
    );
    push(
        &mut document,
        "keyauth_credentials",
        &sorted.keyauth_credentials,
        &["consumer"],
    );
    // Hashes, not passwords: `_transform: false` keeps them from being hashed again.
    push(
        &mut document,
        "basicauth_credentials",
        &sorted.basicauth_credentials,
        &["consumer"],
    );
    push(&mut document, "acls", &sorted.acls, &["consumer"]);
    push(
        &mut document,
        "plugins",
        &sorted.plugins,
        &["route", "service", "consumer"],
    );
    push(&mut document, "certificates", &sorted.certificates, &[]);
    push(&mut document, "snis", &sorted.snis, &["certificate"]);
    Value::Object(document)
}

/// The config as declarative YAML. Falls back to JSON text (also valid YAML)
/// if the YAML emitter ever refuses the document.
pub fn render_yaml(config: &Config) -> String {
    let document = render_value(config);
    serde_norway::to_string(&document)
        .or_else(|_| serde_json::to_string_pretty(&document))
        .unwrap_or_default()
}

fn push<T: Serialize>(
    document: &mut Map<String, Value>,
    table: &str,
    rows: &[T],
    foreign_keys: &[&str],
) {
    if rows.is_empty() {
        return;
    }
    let rows = rows
        .iter()
        .map(|row| {
            // Entities are plain structs with string-keyed maps: serializing cannot fail.
            let mut value = serde_json::to_value(row).unwrap_or(Value::Null);
            if let Value::Object(fields) = &mut value {
                for key in foreign_keys {
                    if let Some(reference) = fields.get_mut(*key) {
                        if let Some(id) = reference.get("id").cloned() {
                            *reference = id;
                        }
                    }
                }
            }
            value
        })
        .collect();
    document.insert(table.to_string(), Value::Array(rows));
}
