//! `GET /openapi.json`: an OpenAPI 3 document generated from the route table
//! and the entity schemas, so it covers exactly what the server answers.

use super::response::json;
use super::routes::{collection, Endpoint, Op};
use super::AdminRequest;
use crate::schema_bridge::entity_schema;
use axum::http::Method;
use axum::response::Response;
use serde_json::{json, Map, Value};
use tollgate_shared::EntityKind;

/// Converts one Kong field definition to a JSON Schema.
fn field_to_schema(def: &Value) -> Value {
    let kind = def.get("type").and_then(Value::as_str).unwrap_or_default();
    let mut schema = match kind {
        "string" => json!({ "type": "string" }),
        "integer" => json!({ "type": "integer" }),
        "number" => json!({ "type": "number" }),
        "boolean" => json!({ "type": "boolean" }),
        "array" | "set" => json!({
            "type": "array",
            "items": def.get("elements").map(field_to_schema).unwrap_or(json!({})),
        }),
        "map" => json!({
            "type": "object",
            "additionalProperties": def.get("values").map(field_to_schema).unwrap_or(json!({})),
        }),
        "record" => record_to_schema(def.get("fields")),
        "foreign" => json!({
            "type": "object",
            "properties": { "id": { "type": "string", "format": "uuid" } },
        }),
        _ => json!({}),
    };
    if let Value::Object(map) = &mut schema {
        if def.get("uuid").and_then(Value::as_bool) == Some(true) {
            map.insert("format".into(), json!("uuid"));
        }
        if let Some(one_of) = def.get("one_of") {
            map.insert("enum".into(), one_of.clone());
        }
        if let Some(default) = def.get("default") {
            map.insert("default".into(), default.clone());
        }
        if def.get("required").and_then(Value::as_bool) != Some(true) {
            map.insert("nullable".into(), json!(true));
        }
    }
    schema
}

/// Converts a Kong `fields` array to an object schema.
fn record_to_schema(fields: Option<&Value>) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for entry in fields.and_then(Value::as_array).into_iter().flatten() {
        let Some(map) = entry.as_object() else {
            continue;
        };
        for (name, def) in map {
            properties.insert(name.clone(), field_to_schema(def));
            let auto = def.get("auto").and_then(Value::as_bool) == Some(true);
            let has_default = def.get("default").is_some();
            if def.get("required").and_then(Value::as_bool) == Some(true) && !auto && !has_default {
                required.push(Value::String(name.clone()));
            }
        }
    }
    let mut schema = json!({ "type": "object", "properties": properties });
    if !required.is_empty() {
        schema["required"] = Value::Array(required);
    }
    if properties_empty(&schema) {
        schema["additionalProperties"] = json!(true);
    }
    schema
}

fn properties_empty(schema: &Value) -> bool {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
}

fn schema_name(kind: EntityKind) -> String {
    let mut name = String::new();
    for part in kind.table_name().split('_') {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}

fn entity_ref(kind: EntityKind) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", schema_name(kind)) })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// The JSON body an entity write accepts: the entity schema, less the fields
/// the request supplies otherwise. A nested path sets the parent reference, a
/// PUT by endpoint key sets that key (Kong writes the path's value over the
/// body's), and a PATCH is partial.
fn entity_body_schema(kind: EntityKind, method: &Method, parent_field: Option<&str>) -> Value {
    if *method == Method::PATCH {
        let mut schema = record_to_schema(entity_schema(kind).get("fields"));
        if let Value::Object(map) = &mut schema {
            map.remove("required");
        }
        return schema;
    }
    let mut supplied: Vec<&str> = parent_field.into_iter().collect();
    if *method == Method::PUT {
        supplied.extend(kind.endpoint_key());
    }
    if supplied.is_empty() {
        return entity_ref(kind);
    }
    let mut schema = record_to_schema(entity_schema(kind).get("fields"));
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|name| !supplied.iter().any(|s| name.as_str() == Some(s)));
        if required.is_empty() {
            if let Value::Object(map) = &mut schema {
                map.remove("required");
            }
        }
    }
    schema
}

fn request_body(kind: EntityKind, method: &Method, parent_field: Option<&str>) -> Value {
    json!({
        "required": false,
        "content": {
            "application/json": { "schema": entity_body_schema(kind, method, parent_field) },
            "application/x-www-form-urlencoded": { "schema": { "type": "object", "additionalProperties": true } },
            "multipart/form-data": { "schema": { "type": "object", "additionalProperties": true } },
        }
    })
}

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": { "type": "string" },
                "description": "UUID, or the entity's endpoint key (name, username, key…)",
            })
        })
        .collect()
}

fn list_parameters() -> Vec<Value> {
    vec![
        json!({"name": "size", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}),
        json!({"name": "offset", "in": "query", "schema": {"type": "string", "minLength": 1}, "description": "token from the previous page (an empty one is Kong's 400 code 7)"}),
        json!({"name": "tags", "in": "query", "schema": {"type": "string"}, "description": "a,b (all) or a/b (any), at most 5"}),
    ]
}

fn operation(endpoint: &Endpoint, method: &Method) -> Value {
    let op_id = format!(
        "{}{}",
        method.as_str().to_ascii_lowercase(),
        endpoint
            .path
            .replace(['{', '}'], "")
            .replace(['/', '-', '.'], "_")
    );
    let mut responses = Map::new();
    let mut operation = Map::new();
    let tag = match endpoint.op {
        Op::Collection { kind, .. } | Op::Entity { kind, .. } => collection(kind).to_string(),
        Op::ParentOf { relation } => collection(relation.child).to_string(),
        _ => "node".into(),
    };
    let summary;
    match (endpoint.op, method) {
        (Op::Collection { kind, .. }, &Method::GET) => {
            summary = format!("List {}", kind.table_name());
            operation.insert("parameters".into(), Value::Array(list_parameters()));
            responses.insert(
                "200".into(),
                json_response(
                    "a page",
                    json!({"type": "object", "properties": {
                        "data": {"type": "array", "items": entity_ref(kind)},
                        "next": {"type": "string", "nullable": true},
                        "offset": {"type": "string"},
                    }}),
                ),
            );
        }
        (Op::Collection { kind, parent }, m) => {
            summary = format!("Create one of {}", kind.table_name());
            operation.insert(
                "requestBody".into(),
                request_body(kind, m, parent.map(|r| r.field)),
            );
            responses.insert("201".into(), json_response("created", entity_ref(kind)));
            responses.insert(
                "409".into(),
                error_response("unique key already taken (code 5)"),
            );
        }
        (Op::Entity { kind, .. }, &Method::DELETE) => {
            summary = format!("Delete one of {}", kind.table_name());
            responses.insert("204".into(), json!({"description": "deleted, or absent"}));
        }
        (Op::Entity { kind, parent }, m) => {
            summary = match *m {
                Method::GET => format!("Read one of {}", kind.table_name()),
                Method::PUT => format!("Create or replace one of {}", kind.table_name()),
                _ => format!("Update one of {}", kind.table_name()),
            };
            if *m != Method::GET {
                operation.insert(
                    "requestBody".into(),
                    request_body(kind, m, parent.map(|r| r.field)),
                );
                responses.insert(
                    "409".into(),
                    error_response("unique key already taken (code 5)"),
                );
            }
            responses.insert("200".into(), json_response("the entity", entity_ref(kind)));
        }
        (
            Op::ParentOf {
                relation: super::routes::Relation { parent: kind, .. },
            },
            m,
        ) => {
            summary = match *m {
                Method::GET => format!("Read one of {}", kind.table_name()),
                Method::PUT => format!("Create or replace one of {}", kind.table_name()),
                _ => format!("Update one of {}", kind.table_name()),
            };
            if *m != Method::GET {
                operation.insert("requestBody".into(), request_body(kind, m, None));
                responses.insert(
                    "409".into(),
                    error_response("unique key already taken (code 5)"),
                );
            }
            responses.insert("200".into(), json_response("the entity", entity_ref(kind)));
        }
        (Op::Config, &Method::POST) => {
            summary = "Replace the whole configuration (declarative YAML or JSON)".into();
            operation.insert(
                "parameters".into(),
                json!([
                    {"name": "dry_run", "in": "query", "schema": {"type": "boolean"}, "description": "validate and return the diff without writing"},
                    {"name": "check_hash", "in": "query", "schema": {"type": "boolean"}, "description": "304 when the config is unchanged"},
                ]),
            );
            operation.insert(
                "requestBody".into(),
                json!({"required": true, "content": {
                    "application/yaml": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "object", "additionalProperties": true}},
                }}),
            );
            responses.insert(
                "201".into(),
                json_response("loaded", json!({"type": "object"})),
            );
            responses.insert(
                "200".into(),
                json_response("dry run diff", json!({"type": "object"})),
            );
        }
        (op, _) => {
            summary = match op {
                Op::Root => "Node information".into(),
                Op::Status => "Node and database status".into(),
                Op::Endpoints => "Every path template".into(),
                Op::PluginsEnabled => "Plugins this build can run".into(),
                Op::EntitySchema => "An entity's schema".into(),
                Op::PluginSchema => "A plugin's schema".into(),
                Op::ValidateEntity | Op::ValidatePlugin => "Validate without writing".into(),
                Op::Config => "The whole configuration as declarative YAML".into(),
                Op::Audit => "The audit log, oldest first".into(),
                Op::OpenApi => "This document".into(),
                Op::Tags => "Tagged entities: {tag, entity_name, entity_id}".into(),
                Op::ClusteringDataPlanes => {
                    "Every data plane: what it runs, sync status, last error, lag".into()
                }
                Op::ClusteringStatus => "Data planes by id (Kong's deprecated summary)".into(),
                Op::ClusteringWait => {
                    "Wait until connected data planes applied a config version (504 on timeout)"
                        .into()
                }
                _ => String::new(),
            };
            if op == Op::Audit || op == Op::Tags {
                operation.insert("parameters".into(), Value::Array(list_parameters()));
            }
            if op == Op::ClusteringWait {
                operation.insert("parameters".into(), super::clustering::wait_parameters());
                responses.insert(
                    "504".into(),
                    json_response("timed out; per-node state", json!({"type": "object"})),
                );
            }
            responses.insert("200".into(), json_response("OK", json!({"type": "object"})));
        }
    }
    responses.insert(
        "400".into(),
        error_response(
            "invalid request: Kong's error object (schema violation, invalid offset/size/options), \
             or {\"message\"} for a body, path or query that cannot be decoded",
        ),
    );
    if *method != Method::GET {
        responses.insert(
            "413".into(),
            error_response("request body too large (1 MiB; 16 MiB for /config)"),
        );
    }
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        responses.insert(
            "415".into(),
            json!({"description": "unsupported Content-Type (Kong answers with an empty body)"}),
        );
    }
    responses.insert(
        "403".into(),
        error_response("a cross-site request to an Admin API without a token"),
    );
    responses.insert(
        "401".into(),
        error_response("missing or wrong bearer token"),
    );
    responses.insert("404".into(), error_response("not found"));
    responses.insert("503".into(), error_response("database unavailable"));
    let mut params = path_parameters(&endpoint.path);
    if let Some(Value::Array(extra)) = operation.remove("parameters") {
        params.extend(extra);
    }
    operation.insert("operationId".into(), Value::String(op_id));
    operation.insert("summary".into(), Value::String(summary));
    operation.insert("tags".into(), json!([tag]));
    if !params.is_empty() {
        operation.insert("parameters".into(), Value::Array(params));
    }
    operation.insert("responses".into(), Value::Object(responses));
    Value::Object(operation)
}

/// Builds the document for a route table.
pub fn build(endpoints: &[Endpoint]) -> Value {
    let mut paths = Map::new();
    for endpoint in endpoints {
        let mut item = Map::new();
        for method in endpoint.methods {
            item.insert(
                method.as_str().to_ascii_lowercase(),
                operation(endpoint, method),
            );
        }
        paths.insert(endpoint.path.clone(), Value::Object(item));
    }
    // Served beside the table (see `crate::telemetry`).
    paths.insert(
        "/metrics".into(),
        json!({"get": {
            "operationId": "getMetrics",
            "summary": "This control plane's metrics (Prometheus text format 0.0.4)",
            "description": "Node, Admin API, publisher and per data plane metrics; names follow --metrics-prefix.",
            "responses": {
                "200": {
                    "description": "the exposition",
                    "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
                },
                "401": error_response("no valid token"),
            },
        }}),
    );
    let mut schemas = Map::new();
    for kind in EntityKind::ALL {
        let kong = entity_schema(kind);
        let mut schema = record_to_schema(kong.get("fields"));
        if kind == EntityKind::Certificates {
            schema["properties"]["snis"] = json!({
                "type": "array",
                "items": { "type": "string" },
                "nullable": true,
                "description": "on POST: server names to create as SNI entities with the certificate",
            });
        }
        if kind == EntityKind::KeyauthCredentials {
            schema["properties"]["ttl"] = json!({
                "type": "integer",
                "minimum": 0,
                "maximum": tollgate_shared::entity::MAX_TTL,
                "nullable": true,
                "description": "Kong's ttl: on a write, seconds until the key expires (0 or null: never); on output, the seconds left",
            });
        }
        schemas.insert(schema_name(kind), schema);
    }
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "properties": {
            "message": {"type": "string"},
            "code": {"type": "integer"},
            "name": {"type": "string"},
            "fields": {"type": "object", "additionalProperties": true},
        }}),
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Tollgate Admin API",
            "version": tollgate_shared::VERSION,
            "description": "Kong 3.x compatible Admin API of the Tollgate control plane.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
        },
        "security": [ {}, { "bearer": [] } ],
    })
}

/// `GET /openapi.json`.
pub fn document(request: &AdminRequest) -> Response {
    json(&build(&request.state.routes.endpoints))
}
