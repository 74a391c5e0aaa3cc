//! Entity schemas: Kong's field types, defaults and rules, applied to JSON input.
//!
//! Input arrives as JSON (from the Admin API, after form decoding, or from a
//! declarative file). [`validate_entity`] checks it against the entity's schema,
//! fills defaults, generates `id` and timestamps when absent, and returns the
//! complete entity JSON, or every problem at once as [`FieldErrors`].
//!
//! PLACEHOLDER: the real engine is being written; this stub only fills ids.

use crate::entity::{now_seconds, EntityKind};
use crate::validation::FieldErrors;
use serde_json::Value;

/// Validates `input` as an entity of `kind` and returns it complete: every
/// schema field present (unset ones `null`), defaults filled, `id`,
/// `created_at` and `updated_at` generated when absent.
pub fn validate_entity(kind: EntityKind, input: &Value) -> Result<Value, FieldErrors> {
    let _ = kind;
    let mut out = input.clone();
    if let Value::Object(map) = &mut out {
        map.entry("id")
            .or_insert_with(|| Value::String(uuid::Uuid::new_v4().to_string()));
        map.entry("created_at")
            .or_insert(Value::from(now_seconds()));
        map.entry("updated_at")
            .or_insert(Value::from(now_seconds()));
    }
    Ok(out)
}

/// Converts the string values of a decoded form body into the JSON types the
/// schema expects (integers, numbers, booleans, one-element arrays, `""` → null).
pub fn coerce_form(kind: EntityKind, input: Value) -> Value {
    let _ = kind;
    input
}
