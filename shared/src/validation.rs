//! Validation errors in the shape of Kong's schema-violation body.
//!
//! [`FieldErrors`] is a tree that mirrors the entity: a message per field, a
//! nested tree for records (`config.minute`), per-element errors for arrays
//! (`paths.2`), and entity-level messages under `@entity`. The Admin API
//! renders it directly as Kong's
//! `{"code":2,"name":"schema violation","message":…,"fields":…}`.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One field's problem: a message, the errors inside a record, or the errors
/// of individual array elements (keyed by 1-based position, as Kong does).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldError {
    Message(String),
    Nested(FieldErrors),
    Elements(BTreeMap<usize, FieldError>),
}

impl FieldError {
    /// The JSON Kong renders for this error: a string, an object, or an array
    /// with `null` in the positions that were valid.
    pub fn to_json(&self) -> Value {
        match self {
            FieldError::Message(m) => Value::String(m.clone()),
            FieldError::Nested(inner) => inner.to_json(),
            FieldError::Elements(items) => {
                let len = items.keys().next_back().copied().unwrap_or(0);
                let mut out = vec![Value::Null; len];
                for (index, err) in items {
                    if let Some(slot) = index.checked_sub(1).and_then(|i| out.get_mut(i)) {
                        *slot = err.to_json();
                    }
                }
                Value::Array(out)
            }
        }
    }

    /// Penlight's `pretty.write` of this error, which Kong uses in `message`
    /// for errors nested deeper than `field.sub`.
    fn pretty(&self, indent: &str) -> String {
        let entries: Vec<(Option<String>, String)> = match self {
            FieldError::Message(m) => return lua_quote(m),
            FieldError::Elements(items) => {
                let dense = items.keys().copied().eq(1..=items.len());
                let inner = format!("{indent}  ");
                items
                    .iter()
                    .map(|(i, e)| {
                        let key = (!dense).then(|| format!("[{i}]"));
                        (key, e.pretty(&inner))
                    })
                    .collect()
            }
            FieldError::Nested(tree) => {
                let inner = format!("{indent}  ");
                let mut entries = Vec::new();
                if !tree.entity.is_empty() {
                    let list = FieldError::Elements(
                        tree.entity
                            .iter()
                            .enumerate()
                            .map(|(i, m)| (i + 1, FieldError::Message(m.clone())))
                            .collect(),
                    );
                    entries.push((Some(lua_key("@entity")), list.pretty(&inner)));
                }
                for (k, v) in &tree.fields {
                    entries.push((Some(lua_key(k)), v.pretty(&inner)));
                }
                entries
            }
        };
        let body: Vec<String> = entries
            .into_iter()
            .map(|(key, value)| match key {
                Some(k) => format!("{indent}  {k} = {value}"),
                None => format!("{indent}  {value}"),
            })
            .collect();
        format!("{{\n{}\n{indent}}}", body.join(",\n"))
    }
}

fn lua_quote(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

fn lua_key(k: &str) -> String {
    let identifier = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier {
        k.to_string()
    } else {
        format!("[{}]", lua_quote(k))
    }
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

    /// Records `message` at a dotted `path`, replacing a message that was
    /// there (Kong's entity checks overwrite a field's earlier error). A record
    /// that already failed as a whole keeps that message.
    pub fn set(&mut self, path: &str, message: impl Into<String>) {
        let message = message.into();
        match path.split_once('.') {
            None => {
                self.fields
                    .insert(path.to_string(), FieldError::Message(message));
            }
            Some((head, rest)) => {
                let entry = self
                    .fields
                    .entry(head.to_string())
                    .or_insert_with(|| FieldError::Nested(FieldErrors::new()));
                if let FieldError::Nested(inner) = entry {
                    inner.set(rest, message);
                }
            }
        }
    }

    /// Records a whole error (message, nested tree or element errors) for `field`.
    pub fn insert(&mut self, field: &str, error: FieldError) {
        self.fields.insert(field.to_string(), error);
    }

    /// Whether `field` (a top-level name) already has an error.
    pub fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
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
            map.insert(k.clone(), v.to_json());
        }
        Value::Object(map)
    }

    /// Flattened `(path, message)` pairs with full dotted paths (`config.redis.host`,
    /// `paths.2`): entity-level first, then fields sorted by path.
    pub fn flatten(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .entity
            .iter()
            .map(|m| ("@entity".to_string(), m.clone()))
            .collect();
        let mut fields = Vec::new();
        for (k, v) in &self.fields {
            collect(k, v, &mut fields);
        }
        out.extend(fields);
        out
    }

    /// Kong's `message`: `schema violation (a: x)` or `N schema violations (a: x; b: y)`.
    ///
    /// Like Kong, entity-level errors come first, then fields sorted by name;
    /// a record's or array's errors are listed as `field.sub: msg`, and anything
    /// nested deeper is printed the way Kong prints a Lua table.
    pub fn message(&self) -> String {
        let parts = self.message_parts();
        match parts.len() {
            1 => format!("schema violation ({})", parts[0]),
            n => format!("{n} schema violations ({})", parts.join("; ")),
        }
    }

    /// The entries of [`FieldErrors::message`], in order.
    pub fn message_parts(&self) -> Vec<String> {
        let mut parts: Vec<String> = self.entity.clone();
        for (name, err) in &self.fields {
            match err {
                FieldError::Message(m) => parts.push(format!("{name}: {m}")),
                FieldError::Nested(inner) => {
                    if !inner.entity.is_empty() {
                        let list = FieldError::Elements(
                            inner
                                .entity
                                .iter()
                                .enumerate()
                                .map(|(i, m)| (i + 1, FieldError::Message(m.clone())))
                                .collect(),
                        );
                        parts.push(format!("{name}.@entity: {}", list.pretty("")));
                    }
                    for (sub, v) in &inner.fields {
                        parts.push(format!("{name}.{sub}: {}", second_level(v)));
                    }
                }
                FieldError::Elements(items) => {
                    for (index, v) in items {
                        parts.push(format!("{name}.{index}: {}", second_level(v)));
                    }
                }
            }
        }
        parts
    }
}

fn second_level(err: &FieldError) -> String {
    match err {
        FieldError::Message(m) => m.clone(),
        other => other.pretty(""),
    }
}

fn collect(path: &str, err: &FieldError, out: &mut Vec<(String, String)>) {
    match err {
        FieldError::Message(m) => out.push((path.to_string(), m.clone())),
        FieldError::Nested(inner) => {
            for m in &inner.entity {
                out.push((path.to_string(), m.clone()));
            }
            for (k, v) in &inner.fields {
                collect(&format!("{path}.{k}"), v, out);
            }
        }
        FieldError::Elements(items) => {
            for (i, v) in items {
                collect(&format!("{path}.{i}"), v, out);
            }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn message_lists_entity_errors_first_then_fields_sorted() {
        let mut e = FieldErrors::new();
        e.add("path", "should start with: /");
        e.add("host", "required field missing");
        e.add_entity("at least one of these fields must be non-empty: 'custom_id', 'username'");
        assert_eq!(
            e.message(),
            "3 schema violations (at least one of these fields must be non-empty: 'custom_id', 'username'; host: required field missing; path: should start with: /)"
        );
    }

    #[test]
    fn single_error_message() {
        let mut e = FieldErrors::new();
        e.add("name", "required field missing");
        assert_eq!(
            e.message(),
            "schema violation (name: required field missing)"
        );
        assert_eq!(e.to_json(), json!({"name": "required field missing"}));
    }

    #[test]
    fn nested_record_errors_render_as_field_dot_sub() {
        let mut e = FieldErrors::new();
        e.add("config.second", "expected a number");
        e.add("config.minute", "value must be greater than 0");
        assert_eq!(
            e.message(),
            "2 schema violations (config.minute: value must be greater than 0; config.second: expected a number)"
        );
        assert_eq!(
            e.to_json(),
            json!({"config": {"minute": "value must be greater than 0", "second": "expected a number"}})
        );
    }

    #[test]
    fn array_element_errors_render_as_array_with_nulls() {
        let mut e = FieldErrors::new();
        let mut items = BTreeMap::new();
        items.insert(2, FieldError::Message("should start with: /".into()));
        e.insert("paths", FieldError::Elements(items));
        assert_eq!(
            e.to_json(),
            json!({"paths": [null, "should start with: /"]})
        );
        assert_eq!(
            e.message(),
            "schema violation (paths.2: should start with: /)"
        );
        assert_eq!(
            e.flatten(),
            vec![("paths.2".to_string(), "should start with: /".to_string())]
        );
    }

    #[test]
    fn deeper_errors_are_pretty_printed_like_kong() {
        let mut e = FieldErrors::new();
        e.add("config.redis.host", "required field missing");
        e.add_entity("failed conditional validation given value of field 'config.policy'");
        assert_eq!(
            e.message(),
            "2 schema violations (failed conditional validation given value of field 'config.policy'; config.redis: {\n  host = \"required field missing\"\n})"
        );
        assert_eq!(
            e.flatten()[1],
            (
                "config.redis.host".to_string(),
                "required field missing".to_string()
            )
        );
    }

    #[test]
    fn set_overwrites_and_add_keeps_first() {
        let mut e = FieldErrors::new();
        e.add("a", "first");
        e.add("a", "second");
        assert_eq!(e.to_json(), json!({"a": "first"}));
        e.set("a", "third");
        assert_eq!(e.to_json(), json!({"a": "third"}));
        e.set("a.b", "nested");
        assert_eq!(
            e.to_json(),
            json!({"a": "third"}),
            "a failed record keeps its message"
        );
        e.set("c.d", "nested");
        e.set("c.d", "replaced");
        assert_eq!(e.to_json(), json!({"a": "third", "c": {"d": "replaced"}}));
    }
}
