//! A small stand-in for `schema::validate_entity` with Kong's defaults and a
//! few of its rules and messages, so the declarative engine's own behaviour
//! (nesting, references, ids, error placement, round trips) is tested
//! independently of the real schema engine.

use crate::entity::EntityKind;
use crate::validation::FieldErrors;
use serde_json::{json, Map, Value};

fn defaults(kind: EntityKind) -> Value {
    match kind {
        EntityKind::Services => json!({
            "id": null, "created_at": null, "updated_at": null, "name": null, "retries": 5,
            "protocol": "http", "host": null, "port": 80, "path": null,
            "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
            "tags": null, "client_certificate": null, "tls_verify": null,
            "tls_verify_depth": null, "ca_certificates": null, "enabled": true,
        }),
        EntityKind::Routes => json!({
            "id": null, "created_at": null, "updated_at": null, "name": null,
            "protocols": ["http", "https"], "methods": null, "hosts": null, "paths": null,
            "headers": null, "snis": null, "sources": null, "destinations": null,
            "https_redirect_status_code": 426, "regex_priority": 0, "strip_path": true,
            "preserve_host": false, "request_buffering": true, "response_buffering": true,
            "path_handling": "v0", "service": null, "tags": null,
        }),
        EntityKind::Consumers => json!({
            "id": null, "created_at": null, "updated_at": null, "username": null,
            "custom_id": null, "tags": null,
        }),
        EntityKind::Plugins => json!({
            "id": null, "created_at": null, "updated_at": null, "name": null,
            "instance_name": null, "config": {}, "route": null, "service": null,
            "consumer": null, "protocols": ["grpc", "grpcs", "http", "https"],
            "enabled": true, "tags": null,
        }),
        EntityKind::JwtSecrets => json!({
            "id": null, "created_at": null, "consumer": null, "key": null, "secret": null,
            "rsa_public_key": null, "algorithm": "HS256", "tags": null,
        }),
        EntityKind::Certificates => json!({
            "id": null, "created_at": null, "updated_at": null, "cert": null, "key": null,
            "cert_alt": null, "key_alt": null, "tags": null,
        }),
        EntityKind::Snis => json!({
            "id": null, "created_at": null, "updated_at": null, "name": null,
            "certificate": null, "tags": null,
        }),
        EntityKind::KeyauthCredentials => json!({
            "id": null, "created_at": null, "consumer": null, "key": null, "tags": null,
        }),
        EntityKind::BasicauthCredentials => json!({
            "id": null, "created_at": null, "consumer": null, "username": null,
            "password": null, "tags": null,
        }),
        EntityKind::Acls => json!({
            "id": null, "created_at": null, "consumer": null, "group": null, "tags": null,
        }),
    }
}

const REQUIRED: [(EntityKind, &str); 8] = [
    (EntityKind::Services, "host"),
    (EntityKind::Plugins, "name"),
    (EntityKind::JwtSecrets, "key"),
    (EntityKind::JwtSecrets, "consumer"),
    (EntityKind::Certificates, "cert"),
    (EntityKind::Certificates, "key"),
    (EntityKind::Snis, "name"),
    (EntityKind::Snis, "certificate"),
];

pub(super) fn validate(kind: EntityKind, input: &Value) -> Result<Value, FieldErrors> {
    let mut errors = FieldErrors::new();
    let Value::Object(input) = input else {
        errors.add_entity("expected a record");
        return Err(errors);
    };
    let mut input = input.clone();
    if kind == EntityKind::Services {
        if let Some(url) = input.remove("url") {
            apply_url(&url, &mut input, &mut errors);
        }
    }
    let Value::Object(mut entity) = defaults(kind) else {
        return Err(errors);
    };
    for (key, value) in input {
        if entity.contains_key(&key) {
            entity.insert(key, value);
        } else {
            errors.add(&key, "unknown field");
        }
    }
    for (required_kind, field) in REQUIRED {
        if required_kind == kind && entity.get(field).is_none_or(Value::is_null) {
            errors.add(field, "required field missing");
        }
    }
    for field in ["name", "username", "custom_id", "host", "key"] {
        if entity
            .get(field)
            .is_some_and(|v| !v.is_null() && !v.is_string())
        {
            errors.add(field, "expected a string");
        }
    }
    if let Some(port) = entity.get("port").and_then(Value::as_i64) {
        if !(0..=65535).contains(&port) {
            errors.add("port", "value should be between 0 and 65535");
        }
    }
    if kind == EntityKind::Consumers
        && entity.get("username").is_none_or(Value::is_null)
        && entity.get("custom_id").is_none_or(Value::is_null)
    {
        errors
            .add_entity("at least one of these fields must be non-empty: 'custom_id', 'username'");
    }
    if kind == EntityKind::Plugins && !entity.get("config").is_some_and(Value::is_object) {
        errors.add("config", "expected a record");
    }
    if errors.is_empty() {
        Ok(Value::Object(entity))
    } else {
        Err(errors)
    }
}

fn apply_url(url: &Value, input: &mut Map<String, Value>, errors: &mut FieldErrors) {
    let Some(parsed) = url.as_str().and_then(|u| url::Url::parse(u).ok()) else {
        errors.add("host", "required field missing");
        return;
    };
    input.insert("protocol".into(), json!(parsed.scheme()));
    input.insert("host".into(), json!(parsed.host_str()));
    let port = parsed
        .port()
        .unwrap_or(if parsed.scheme() == "https" { 443 } else { 80 });
    input.insert("port".into(), json!(port));
    let path = parsed.path();
    let explicit_path = url.as_str().is_some_and(|u| {
        u.split_once("://")
            .is_some_and(|(_, rest)| rest.contains('/'))
    });
    if explicit_path {
        input.insert("path".into(), json!(path));
    }
}
