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

/// Plugin config and route sources with every JSON shape the canonical form
/// must render: floats, big integers, escapes, non-ASCII keys, nesting.
fn tricky_config() -> Config {
    let mut config = full_config();
    config.plugins[0].config = json!({
        "z": [1.0, -0.0, 1e21, 1.5e-7, 0.1, 123456789.125, -2.5],
        "big": u64::MAX,
        "neg": i64::MIN,
        "é": {"b": "tab\tquote\"back\\slash\u{7f}\u{1f}", "a": [{"y": null, "x": true}]},
        "A": "\u{2028}\u{10ffff}",
        "": {},
        "empty_list": [],
    });
    config.routes[0].sources = Some(vec![json!({"port": 1.25, "ip": "::1"}), json!(null)]);
    config
}

/// The hashes are part of the protocol (data planes verify them and report
/// them back): an implementation change must not move them.
#[test]
fn hashes_are_pinned() {
    let cases = [
        ("empty", Config::default()),
        ("full", full_config()),
        ("null", crate::convert::fixtures::null_config()),
        ("generated", generated(300, 200)),
        ("tricky", tricky_config()),
    ];
    let got: Vec<(&str, String)> = cases
        .iter()
        .map(|(name, config)| (*name, config_hash(config)))
        .collect();
    let want = [
        (
            "empty",
            "7f7f88e0c68478071c248480ed9ccf250faf853fd4feed8ed5e6cf66c760e597",
        ),
        (
            "full",
            "f2cb13e343d903a7618827f124772c17d96c328b99bc8b04be8b86b6ab8625dd",
        ),
        (
            "null",
            "8931fc9e3ee7b6fa6efe6d6ec32ee7ea5f5f167f06e48306fd5fd13adcda943a",
        ),
        (
            "generated",
            "470045692770e631cb85fd41c7d7379aab508edd5465e2427ec6001bb877540f",
        ),
        (
            "tricky",
            "6267ffd2f2fc012f2d5666b8accc3a43aca16c69b515bd060ffb0cc7cef0f2d8",
        ),
    ];
    for ((name, hash), (_, pinned)) in got.iter().zip(want) {
        assert_eq!(hash, pinned, "{name}");
    }
}

/// What `canonical_json(&serde_json::to_value(x))` gives: the reference the
/// direct writer must match byte for byte.
fn via_value<T: serde::Serialize>(value: &T) -> Vec<u8> {
    canonical_json(&serde_json::to_value(value).unwrap())
}

fn direct<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    super::canonical::write(value, &mut out).unwrap();
    out
}

#[test]
fn direct_writer_matches_the_value_path_on_every_entity() {
    for config in [
        full_config(),
        crate::convert::fixtures::null_config(),
        generated(40, 30),
        tricky_config(),
    ] {
        for service in &config.services {
            assert_eq!(direct(service), via_value(service));
        }
        for route in &config.routes {
            assert_eq!(direct(route), via_value(route));
        }
        for consumer in &config.consumers {
            assert_eq!(direct(consumer), via_value(consumer));
        }
        for plugin in &config.plugins {
            assert_eq!(direct(plugin), via_value(plugin));
        }
        for jwt in &config.jwt_secrets {
            assert_eq!(direct(jwt), via_value(jwt));
        }
        for certificate in &config.certificates {
            assert_eq!(direct(certificate), via_value(certificate));
        }
        for sni in &config.snis {
            assert_eq!(direct(sni), via_value(sni));
        }
        assert_eq!(direct(&config), via_value(&config));
    }
}

#[test]
fn direct_writer_matches_the_value_path_on_every_serde_shape() {
    use std::collections::BTreeMap;
    #[derive(serde::Serialize)]
    enum Shape {
        Unit,
        Newtype(Option<u8>),
        Tuple(i8, char, f32),
        Struct { z: u16, a: (), m: i128 },
    }
    #[derive(serde::Serialize)]
    struct Unit;
    #[derive(serde::Serialize)]
    struct Wrapper(Vec<Shape>);
    #[derive(serde::Serialize)]
    struct Pair(u32, &'static str);
    #[derive(serde::Serialize)]
    struct Everything {
        shapes: Wrapper,
        pair: Pair,
        unit: Unit,
        #[serde(with = "serde_bytes_as_slice")]
        bytes: Vec<u8>,
        int_keys: BTreeMap<i32, bool>,
        floats: Vec<f64>,
        f32s: Vec<f32>,
        big: u128,
        small: i128,
        #[serde(skip)]
        _skipped: u8,
        #[serde(rename = "B")]
        upper: (),
    }
    mod serde_bytes_as_slice {
        pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
    }
    let value = Everything {
        shapes: Wrapper(vec![
            Shape::Unit,
            Shape::Newtype(Some(7)),
            Shape::Newtype(None),
            Shape::Tuple(-3, 'é', 0.1),
            Shape::Struct { z: 1, a: (), m: -5 },
        ]),
        pair: Pair(9, "x\u{0}y"),
        unit: Unit,
        bytes: vec![0, 255, 10],
        int_keys: [(-1, true), (10, false), (2, true)].into_iter().collect(),
        floats: vec![
            f64::NAN,
            f64::INFINITY,
            -0.0,
            1e300,
            5e-324,
            2.0,
            0.30000000000000004,
        ],
        f32s: vec![0.1, f32::MAX, f32::NAN, 16777217.0],
        big: u128::from(u64::MAX),
        small: i128::from(i64::MIN),
        _skipped: 1,
        upper: (),
    };
    assert_eq!(direct(&value), via_value(&value));
}

#[test]
fn direct_writer_refuses_what_it_cannot_mirror_and_the_hash_falls_back() {
    use std::collections::BTreeMap;
    let mut out = Vec::new();
    assert!(super::canonical::write(&u128::MAX, &mut out).is_err());
    let bool_keys: BTreeMap<bool, u8> = [(true, 1)].into_iter().collect();
    assert!(super::canonical::write(&bool_keys, &mut Vec::new()).is_err());
}

#[test]
fn duplicate_map_keys_keep_the_last_value_like_serde_json() {
    struct Dup;
    impl serde::Serialize for Dup {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = s.serialize_map(None)?;
            map.serialize_entry("b", &1)?;
            map.serialize_entry("a", &2)?;
            map.serialize_entry("b", &3)?;
            map.end()
        }
    }
    assert_eq!(direct(&Dup), via_value(&Dup));
    assert_eq!(String::from_utf8(direct(&Dup)).unwrap(), r#"{"a":2,"b":3}"#);
}

#[test]
fn integers_render_like_serde_json() {
    for value in [
        0i64,
        1,
        -1,
        9,
        10,
        -10,
        99,
        100,
        i64::MAX,
        i64::MIN,
        1_700_000_000,
    ] {
        assert_eq!(direct(&value), via_value(&value), "{value}");
    }
    for value in [0u64, 7, 10, u64::MAX, u64::from(u32::MAX) + 1] {
        assert_eq!(direct(&value), via_value(&value), "{value}");
    }
}

#[test]
fn credentials_enter_the_hash_only_when_present() {
    let plain = full_config();
    let with = crate::convert::fixtures::with_credentials();
    assert_ne!(config_hash(&with), config_hash(&plain));
    // Each credential collection counts, and appears in name order.
    let mut without_acls = with.clone();
    without_acls.acls.clear();
    assert_ne!(config_hash(&without_acls), config_hash(&with));
    let text = String::from_utf8(canonical_bytes(&with)).unwrap();
    let acls = text.find("\"acls\"").unwrap();
    let basic = text.find("\"basicauth_credentials\"").unwrap();
    let certificates = text.find("\"certificates\"").unwrap();
    let keys = text.find("\"keyauth_credentials\"").unwrap();
    let plugins = text.find("\"plugins\"").unwrap();
    assert!(acls < basic && basic < certificates && keys < plugins);
    assert!(!String::from_utf8(canonical_bytes(&plain))
        .unwrap()
        .contains("acls"));
}
