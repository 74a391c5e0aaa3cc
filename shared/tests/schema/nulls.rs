//! Whatever validation accepts must become a typed entity: an explicit `null`
//! in any field is either refused with a field error or typed, never stored
//! as a row the snapshot builder cannot read (which would stop publishing).

use super::{CONSUMER_ID, SERVICE_ID};
use serde_json::{json, Value};
use tollgate_shared::schema::validate_entity;
use tollgate_shared::EntityKind::{self, *};
use tollgate_shared::{
    Acl, BasicauthCredential, Certificate, Consumer, JwtSecret, KeyauthCredential, Plugin, Route,
    Service, Sni,
};

fn typed(kind: EntityKind, value: &Value) -> Result<(), String> {
    let value = value.clone();
    let result = match kind {
        Services => serde_json::from_value::<Service>(value).map(drop),
        Routes => serde_json::from_value::<Route>(value).map(drop),
        Consumers => serde_json::from_value::<Consumer>(value).map(drop),
        Plugins => serde_json::from_value::<Plugin>(value).map(drop),
        JwtSecrets => serde_json::from_value::<JwtSecret>(value).map(drop),
        Certificates => serde_json::from_value::<Certificate>(value).map(drop),
        Snis => serde_json::from_value::<Sni>(value).map(drop),
        KeyauthCredentials => serde_json::from_value::<KeyauthCredential>(value).map(drop),
        BasicauthCredentials => serde_json::from_value::<BasicauthCredential>(value).map(drop),
        Acls => serde_json::from_value::<Acl>(value).map(drop),
    };
    result.map_err(|e| e.to_string())
}

#[test]
fn a_null_field_is_refused_or_typed() {
    // The schema checks PEM framing only.
    let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
    let samples: Vec<(EntityKind, Value)> = vec![
        (Services, json!({"name": "s", "host": "a.example"})),
        (
            Routes,
            json!({"name": "r", "paths": ["/a"], "service": {"id": SERVICE_ID}}),
        ),
        (Consumers, json!({"username": "u", "custom_id": "c"})),
        (
            JwtSecrets,
            json!({"consumer": {"id": CONSUMER_ID}, "key": "k", "secret": "s", "algorithm": "HS384"}),
        ),
        (
            Plugins,
            json!({"name": "ip-restriction", "config": {"allow": ["10.0.0.0/8"]}}),
        ),
        (Certificates, json!({"cert": cert, "key": key})),
        (
            Snis,
            json!({"name": "a.example", "certificate": {"id": SERVICE_ID}}),
        ),
        (
            KeyauthCredentials,
            json!({"consumer": {"id": CONSUMER_ID}, "key": "k", "tags": ["t"]}),
        ),
        (
            BasicauthCredentials,
            json!({"consumer": {"id": CONSUMER_ID}, "username": "u", "password": "p"}),
        ),
        (Acls, json!({"consumer": {"id": CONSUMER_ID}, "group": "g"})),
    ];
    let mut untyped = Vec::new();
    for (kind, sample) in samples {
        let full = validate_entity(kind, &sample).unwrap();
        typed(kind, &full).unwrap_or_else(|e| panic!("{kind:?} sample: {e}"));
        for field in full.as_object().unwrap().keys() {
            let mut input = sample.clone();
            input[field.as_str()] = Value::Null;
            if let Ok(validated) = validate_entity(kind, &input) {
                if let Err(e) = typed(kind, &validated) {
                    untyped.push(format!("{kind:?}.{field}: {e}"));
                }
            }
        }
    }
    assert!(
        untyped.is_empty(),
        "accepted but untyped:\n{}",
        untyped.join("\n")
    );
}

/// The same for every plugin's `config` fields, down to nested records:
/// accepted means the typed spec (what the data plane compiles) can be built.
#[test]
fn a_null_plugin_config_field_is_refused_or_typed() {
    use tollgate_shared::PluginSpec;
    let samples = [
        ("jwt", json!({})),
        ("ip-restriction", json!({"allow": ["10.0.0.0/8"]})),
        (
            "rate-limiting",
            json!({"minute": 5, "policy": "redis", "redis": {"host": "r"}}),
        ),
        ("file-log", json!({"path": "/tmp/x.log"})),
        ("http-log", json!({"http_endpoint": "http://x/"})),
        ("opentelemetry", json!({"traces_endpoint": "http://x/"})),
        ("prometheus", json!({})),
        ("key-auth", json!({"anonymous": "a", "realm": "r"})),
        ("basic-auth", json!({"anonymous": "a"})),
        ("acl", json!({"allow": ["a"]})),
        ("acl", json!({"deny": ["a"]})),
    ];
    let mut untyped = Vec::new();
    for (name, config) in samples {
        let full = validate_entity(Plugins, &json!({"name": name, "config": config})).unwrap();
        let mut paths: Vec<Vec<String>> = Vec::new();
        collect_paths(&full["config"], &mut Vec::new(), &mut paths);
        for path in paths {
            let mut input = json!({"name": name, "config": full["config"].clone()});
            let mut slot = &mut input["config"];
            for key in &path {
                slot = &mut slot[key.as_str()];
            }
            *slot = Value::Null;
            let Ok(validated) = validate_entity(Plugins, &input) else {
                continue;
            };
            let typed = serde_json::from_value::<Plugin>(validated)
                .map_err(|e| e.to_string())
                .and_then(|p| PluginSpec::from_plugin(&p).map_err(|e| e.message()));
            if let Err(e) = typed {
                untyped.push(format!("{name} config.{}: {e}", path.join(".")));
            }
        }
    }
    assert!(
        untyped.is_empty(),
        "accepted but untyped:\n{}",
        untyped.join("\n")
    );
}

fn collect_paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(map) = value {
        for (key, nested) in map {
            prefix.push(key.clone());
            out.push(prefix.clone());
            collect_paths(nested, prefix, out);
            prefix.pop();
        }
    }
}
