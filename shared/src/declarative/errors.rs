//! The rejection of a declarative file in Kong's `/config` shape: a `fields`
//! tree that mirrors the file (`{"services":[null,{"routes":[{"paths":…}]}]}`),
//! the Lua-table rendering Kong puts in `message`, and the optional
//! `flattened_errors` list (one object per failing entity).

use serde::Serialize;
use serde_json::{json, Map, Value};

/// Kong's error code and name for an invalid declarative configuration.
pub const CODE: u16 = 14;
pub const NAME: &str = "invalid declarative configuration";

/// Every problem found in a declarative file.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidConfig {
    /// Kong's `fields`: errors placed where they occur in the file. Entries of
    /// entity arrays without errors are `null`; an entity whose only problem
    /// is a uniqueness violation is the message string itself (as in Kong).
    pub fields: Value,
    /// Kong's `flattened_errors`: one entry per entity with errors, in file order.
    pub flattened: Vec<FlattenedError>,
}

impl InvalidConfig {
    /// `declarative config is invalid: {…}` with `fields` as a Lua table.
    pub fn message(&self) -> String {
        format!("declarative config is invalid: {}", lua_table(&self.fields))
    }

    /// The 400 body of `POST /config`; `flatten_errors` adds `flattened_errors`.
    pub fn to_body(&self, flatten_errors: bool) -> Value {
        let mut body = json!({
            "code": CODE,
            "name": NAME,
            "message": self.message(),
            "fields": self.fields,
        });
        if flatten_errors {
            if let Value::Object(map) = &mut body {
                map.insert(
                    "flattened_errors".into(),
                    serde_json::to_value(&self.flattened).unwrap_or(Value::Array(vec![])),
                );
            }
        }
        body
    }
}

/// One failing entity, as in Kong's `flattened_errors`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlattenedError {
    /// Singular entity name: `service`, `route`, `plugin`, `jwt_secret`…
    pub entity_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_tags: Option<Vec<String>>,
    /// The entity as written (nested children removed, parent key added).
    pub entity: Value,
    pub errors: Vec<EntityError>,
}

/// One problem of a flattened entity: a field's (`type: "field"`, dotted path)
/// or the entity's as a whole (`type: "entity"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityError {
    #[serde(rename = "type")]
    pub kind: EntityErrorKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityErrorKind {
    Field,
    Entity,
}

/// One step of a location in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(&'static str),
    Index(usize),
}

/// Builds the `fields` tree.
#[derive(Debug, Default)]
pub(super) struct ErrorTree {
    root: Value,
    empty: bool,
}

impl ErrorTree {
    pub(super) fn new() -> Self {
        Self {
            root: Value::Object(Map::new()),
            empty: true,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.empty
    }

    /// Records `error` (a message, or an entity's error object) at `location`.
    pub(super) fn put(&mut self, location: &[Seg], error: Value) {
        self.empty = false;
        put(&mut self.root, location, error);
    }

    pub(super) fn into_value(self) -> Value {
        self.root
    }
}

fn put(node: &mut Value, location: &[Seg], error: Value) {
    match location.split_first() {
        None => merge(node, error),
        Some((Seg::Key(key), rest)) => {
            make_object(node);
            if let Value::Object(map) = node {
                let child = map.entry(key.to_string()).or_insert(Value::Null);
                put(child, rest, error);
            }
        }
        Some((Seg::Index(i), rest)) => {
            if !node.is_array() {
                *node = Value::Array(Vec::new());
            }
            if let Value::Array(items) = node {
                if items.len() <= *i {
                    items.resize(*i + 1, Value::Null);
                }
                put(&mut items[*i], rest, error);
            }
        }
    }
}

/// Makes `node` an object, keeping a message it held under `@entity`.
fn make_object(node: &mut Value) {
    match node {
        Value::Object(_) => {}
        Value::String(message) => {
            let message = std::mem::take(message);
            *node = json!({ "@entity": [message] });
        }
        _ => *node = Value::Object(Map::new()),
    }
}

fn merge(node: &mut Value, error: Value) {
    if node.is_null() {
        *node = error;
        return;
    }
    match error {
        Value::Object(incoming) => {
            make_object(node);
            let Value::Object(map) = node else { return };
            for (key, value) in incoming {
                match map.get_mut(&key) {
                    Some(Value::Array(existing)) if key == "@entity" => {
                        if let Value::Array(more) = value {
                            existing.extend(more);
                        }
                    }
                    Some(existing) => merge(existing, value),
                    None => {
                        map.insert(key, value);
                    }
                }
            }
        }
        Value::String(message) => {
            make_object(node);
            let Value::Object(map) = node else { return };
            let entity = map
                .entry("@entity".to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = entity {
                items.push(Value::String(message));
            }
        }
        other => *node = other,
    }
}

/// Renders a JSON error tree the way Kong's `pl.pretty.write(t, "")` renders
/// the Lua table: `{services={{name="…"}}}`, keys sorted, arrays with holes
/// written with explicit 1-based indexes.
pub(crate) fn lua_table(value: &Value) -> String {
    let mut out = String::new();
    write_lua(value, &mut out);
    out
}

fn write_lua(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("nil"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_lua_string(s, out),
        Value::Array(items) => {
            let sparse = items.iter().any(Value::is_null);
            out.push('{');
            let mut first = true;
            for (i, item) in items.iter().enumerate() {
                if item.is_null() {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                if sparse {
                    out.push_str(&format!("[{}]=", i + 1));
                }
                write_lua(item, out);
            }
            out.push('}');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if is_lua_identifier(key) {
                    out.push_str(key);
                } else {
                    out.push('[');
                    write_lua_string(key, out);
                    out.push(']');
                }
                out.push('=');
                write_lua(item, out);
            }
            out.push('}');
        }
    }
}

fn write_lua_string(s: &str, out: &mut String) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn is_lua_identifier(key: &str) -> bool {
    const KEYWORDS: [&str; 21] = [
        "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
        "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until",
    ];
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&key)
        && key != "while"
}
