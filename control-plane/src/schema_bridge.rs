//! The one place the Admin API calls tollgate-shared's schema functions.

use serde_json::Value;
use tollgate_shared::schema;
use tollgate_shared::EntityKind;

/// Validates input, fills defaults, ids and timestamps; every error at once.
pub fn validate_entity(
    kind: EntityKind,
    input: &Value,
) -> Result<Value, tollgate_shared::FieldErrors> {
    schema::validate_entity(kind, input)
}

/// Converts form strings into the JSON types the schema expects.
pub fn coerce_form(kind: EntityKind, input: Value) -> Value {
    schema::coerce_form(kind, input)
}

/// The output form of a stored entity (adds the shorthand fields Kong mirrors).
pub fn render_entity(kind: EntityKind, entity: &Value) -> Value {
    schema::render_entity(kind, entity)
}

/// Kong's `/schemas/{entity}` body for `kind`.
pub fn entity_schema(kind: EntityKind) -> Value {
    schema::entity_schema_json(kind)
}

/// Kong's `/schemas/plugins/{name}` body, or `None` for a plugin this build lacks.
pub fn plugin_schema(name: &str) -> Option<Value> {
    schema::plugin_schema_json(name)
}
