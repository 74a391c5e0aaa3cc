//! Validation errors in the shape of Kong's schema-violation body.
//!
//! [`FieldErrors`] is a tree that mirrors the entity: a message per field, a
//! nested tree for records (`config.minute`), and entity-level messages under
//! `@entity`. The Admin API renders it directly as Kong's
//! `{"code":2,"name":"schema violation","message":…,"fields":…}`.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One field's problem: a message, or the errors inside a record/array field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldError {
    Message(String),
    Nested(FieldErrors),
}

/// Every problem found in one entity, keyed by field name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldErrors {
    /// Entity-level errors (Kong's `@entity` array).
    pub entity: Vec<String>,
    pub fields: BTreeMap<String, FieldError>,
}

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.entity.is_empty() && self.fields.is_empty()
    }

    /// Records `message` at a dotted `path` (`config.redis.host`). A path that
    /// already has a message keeps its first one, as Kong reports one per field.
    pub fn add(&mut self, path: &str, message: impl Into<String>) {
        let message = message.into();
        match path.split_once('.') {
            None => {
                self.fields
                    .entry(path.to_string())
                    .or_insert(FieldError::Message(message));
            }
            Some((head, rest)) => {
                let entry = self
                    .fields
                    .entry(head.to_string())
                    .or_insert_with(|| FieldError::Nested(FieldErrors::new()));
                if let FieldError::Nested(inner) = entry {
                    inner.add(rest, message);
                }
            }
        }
    }

    /// Records an entity-level message (`@entity`).
    pub fn add_entity(&mut self, message: impl Into<String>) {
        self.entity.push(message.into());
    }

    /// Adds every error of `other` under the field `prefix` (or at this level when empty).
    pub fn merge_at(&mut self, prefix: &str, other: FieldErrors) {
        if other.is_empty() {
            return;
        }
        if prefix.is_empty() {
            self.entity.extend(other.entity);
            for (k, v) in other.fields {
                self.fields.entry(k).or_insert(v);
            }
            return;
        }
        self.fields
            .entry(prefix.to_string())
            .or_insert(FieldError::Nested(other));
    }

    /// The `fields` object of Kong's error body.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        if !self.entity.is_empty() {
            map.insert(
                "@entity".into(),
                Value::Array(self.entity.iter().cloned().map(Value::String).collect()),
            );
        }
        for (k, v) in &self.fields {
            let value = match v {
                FieldError::Message(m) => Value::String(m.clone()),
                FieldError::Nested(inner) => inner.to_json(),
            };
            map.insert(k.clone(), value);
        }
        Value::Object(map)
    }

    /// Flattened `(path, message)` pairs: entity-level first, then fields sorted by path.
    pub fn flatten(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .entity
            .iter()
            .map(|m| ("@entity".to_string(), m.clone()))
            .collect();
        let mut fields = Vec::new();
        self.collect("", &mut fields);
        fields.sort();
        out.extend(fields);
        out
    }

    fn collect(&self, prefix: &str, out: &mut Vec<(String, String)>) {
        for m in &self.entity {
            if !prefix.is_empty() {
                out.push((prefix.trim_end_matches('.').to_string(), m.clone()));
            }
        }
        for (k, v) in &self.fields {
            let path = format!("{prefix}{k}");
            match v {
                FieldError::Message(m) => out.push((path, m.clone())),
                FieldError::Nested(inner) => inner.collect(&format!("{path}."), out),
            }
        }
    }

    /// Kong's `message`: `schema violation (a: x)` or `N schema violations (a: x; b: y)`.
    pub fn message(&self) -> String {
        let parts: Vec<String> = self
            .flatten()
            .into_iter()
            .map(|(path, msg)| {
                if path == "@entity" {
                    msg
                } else {
                    format!("{path}: {msg}")
                }
            })
            .collect();
        match parts.len() {
            1 => format!("schema violation ({})", parts[0]),
            n => format!("{n} schema violations ({})", parts.join("; ")),
        }
    }
}

/// A rejected entity or config.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    #[error("{}", .0.message())]
    SchemaViolation(FieldErrors),
}

impl From<FieldErrors> for ValidationError {
    fn from(e: FieldErrors) -> Self {
        ValidationError::SchemaViolation(e)
    }
}
