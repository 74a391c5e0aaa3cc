#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{canonical_bytes, canonical_json, config_hash};
use crate::config::Config;
use crate::convert::fixtures::{full_config, generated};
use serde_json::{json, Map, Value};

fn reversed_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map.iter().rev() {
                out.insert(k.clone(), reversed_keys(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(reversed_keys).collect()),
        other => other.clone(),
    }
}

#[test]
fn hash_is_lowercase_hex_sha256() {
    let hash = config_hash(&full_config());
    assert_eq!(hash.len(), 64);
    assert!(hash
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    assert_ne!(hash, config_hash(&Config::default()));
}

#[test]
fn row_order_does_not_matter() {
    let config = generated(50, 20);
    let mut shuffled = config.clone();
    shuffled.routes.reverse();
    shuffled.consumers.rotate_left(7);
    shuffled.plugins.swap(0, 3);
    shuffled.jwt_secrets.reverse();
    shuffled.services.rotate_right(2);
    assert_ne!(shuffled, config);
    assert_eq!(canonical_bytes(&shuffled), canonical_bytes(&config));
    assert_eq!(config_hash(&shuffled), config_hash(&config));
}

#[test]
fn config_key_order_does_not_matter() {
    let config = full_config();
    let mut shuffled = config.clone();
    shuffled.plugins[0].config = reversed_keys(&config.plugins[0].config);
    let before: Vec<_> = config.plugins[0]
        .config
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let after: Vec<_> = shuffled.plugins[0]
        .config
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_ne!(before, after, "the test must actually reorder keys");
    assert_eq!(config_hash(&shuffled), config_hash(&config));
}

#[test]
fn canonical_json_sorts_nested_keys_and_escapes() {
    let value = json!({"b": [ {"z": 1, "a": null} ], "a": "q\"\\\n\u{1}é", "é": true});
    assert_eq!(
        String::from_utf8(canonical_json(&value)).unwrap(),
        r#"{"a":"q\"\\\n\u0001é","b":[{"a":null,"z":1}],"é":true}"#
    );
    // Output parses back to the same value.
    let back: Value = serde_json::from_slice(&canonical_json(&value)).unwrap();
    assert_eq!(back, value);
}

#[test]
fn rows_with_the_same_id_sort_by_content() {
    let mut config = generated(2, 0);
    config.routes[1].id = config.routes[0].id;
    let mut swapped = config.clone();
    swapped.routes.swap(0, 1);
    assert_eq!(config_hash(&config), config_hash(&swapped));
}

/// Every leaf of every entity, changed in turn, changes the hash.
#[test]
fn any_field_change_changes_the_hash() {
    let config = full_config();
    let base_hash = config_hash(&config);
    let base = serde_json::to_value(&config).unwrap();
    let mut checked = 0;
    let mut paths = Vec::new();
    collect_leaves(&base, String::new(), &mut paths);
    for path in paths {
        let mut changed = base.clone();
        let slot = changed.pointer_mut(&path).unwrap();
        *slot = mutate(slot);
        let Ok(changed_config) = serde_json::from_value::<Config>(changed) else {
            continue;
        };
        assert_ne!(changed_config, config, "{path}");
        assert_ne!(config_hash(&changed_config), base_hash, "{path}");
        checked += 1;
    }
    assert!(checked > 100, "only {checked} fields checked");
}

fn collect_leaves(value: &Value, path: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                collect_leaves(v, format!("{path}/{k}"), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            out.push(path.clone());
            for (i, v) in items.iter().enumerate() {
                collect_leaves(v, format!("{path}/{i}"), out);
            }
        }
        _ => out.push(path),
    }
}

fn mutate(value: &Value) -> Value {
    match value {
        Value::Null => json!("x"),
        Value::Bool(b) => json!(!b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => json!(i + 1),
            None => json!(n.as_f64().unwrap_or(0.0) + 1.5),
        },
        Value::String(s) => match uuid::Uuid::parse_str(s) {
            Ok(id) => json!(uuid::Uuid::from_u128(id.as_u128() ^ 1).to_string()),
            Err(_) if s == "RS256" => json!("HS256"),
            Err(_) => json!(format!("{s}x")),
        },
        Value::Array(items) if items.is_empty() => json!(["x"]),
        Value::Array(items) => {
            let mut items = items.clone();
            items.pop();
            Value::Array(items)
        }
        Value::Object(_) => Value::Null,
    }
}
