//! Turns declarative text (YAML, or JSON) into a JSON value, keeping the
//! document's key order.

use serde_json::{Map, Number, Value};

/// Parses `text` as JSON when it looks like a JSON object, else as YAML (with
/// merge keys applied). The error is the parser's message, with its position.
pub(super) fn read(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| e.to_string());
    }
    let mut yaml: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    yaml.apply_merge().map_err(|e| e.to_string())?;
    yaml_to_json(yaml)
}

fn yaml_to_json(value: serde_norway::Value) -> Result<Value, String> {
    use serde_norway::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => Value::Number(yaml_number(&n)?),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut map = Map::with_capacity(mapping.len());
            for (key, item) in mapping {
                map.insert(yaml_key(key)?, yaml_to_json(item)?);
            }
            Value::Object(map)
        }
        Y::Tagged(tagged) => return Err(format!("unsupported YAML tag {}", tagged.tag)),
    })
}

fn yaml_number(n: &serde_norway::Number) -> Result<Number, String> {
    if let Some(u) = n.as_u64() {
        Ok(Number::from(u))
    } else if let Some(i) = n.as_i64() {
        Ok(Number::from(i))
    } else {
        n.as_f64()
            .and_then(Number::from_f64)
            .ok_or_else(|| format!("unsupported number {n}"))
    }
}

/// Mapping keys become strings; scalar keys (`1:`, `true:`) are spelled out as
/// YAML spells them, anything else is refused.
fn yaml_key(key: serde_norway::Value) -> Result<String, String> {
    use serde_norway::Value as Y;
    match key {
        Y::String(s) => Ok(s),
        Y::Bool(b) => Ok(b.to_string()),
        Y::Number(n) => Ok(n.to_string()),
        Y::Null => Ok("null".to_string()),
        _ => Err("mapping keys must be scalars".to_string()),
    }
}
