//! The key-auth, basic-auth and acl credentials, and the configs of their
//! plugins: Kong's fields, defaults, requirements and messages.

use super::{expect_errors, invalid, valid, CONSUMER_ID};
use serde_json::json;
use tollgate_shared::EntityKind::{Acls, BasicauthCredentials, KeyauthCredentials, Plugins};
use tollgate_shared::{Acl, BasicauthCredential, KeyauthCredential, PluginSpec};

#[test]
fn keyauth_key_is_generated_when_absent() {
    let out = valid(KeyauthCredentials, json!({"consumer": {"id": CONSUMER_ID}}));
    let key = out["key"].as_str().unwrap();
    assert!(key.len() >= 32, "{key}");
    assert!(out["id"].is_string() && out["created_at"].is_i64());
    assert!(out.get("updated_at").is_none());
    let typed: KeyauthCredential = serde_json::from_value(out).unwrap();
    assert_eq!(typed.consumer.id.to_string(), CONSUMER_ID);
    let given = valid(
        KeyauthCredentials,
        json!({"consumer": {"id": CONSUMER_ID}, "key": "mine", "tags": ["a"]}),
    );
    assert_eq!(given["key"], "mine");
}

#[test]
fn credential_field_rules() {
    expect_errors(
        KeyauthCredentials,
        vec![
            (json!({}), json!({"consumer": "required field missing"})),
            (
                json!({"consumer": {"id": CONSUMER_ID}, "key": 1}),
                json!({"key": "expected a string"}),
            ),
            (
                json!({"consumer": {"id": CONSUMER_ID}, "ttl": 5, "extra": 1}),
                json!({"ttl": "unknown field", "extra": "unknown field"}),
            ),
        ],
    );
    expect_errors(
        BasicauthCredentials,
        vec![(
            json!({}),
            json!({"consumer": "required field missing", "username": "required field missing", "password": "required field missing"}),
        )],
    );
    expect_errors(
        Acls,
        vec![
            (
                json!({"consumer": {"id": CONSUMER_ID}}),
                json!({"group": "required field missing"}),
            ),
            (
                json!({"consumer": {"id": CONSUMER_ID}, "group": "a\r\nb"}),
                json!({"group": "must not contain control characters"}),
            ),
        ],
    );
    let basic = valid(
        BasicauthCredentials,
        json!({"consumer": {"id": CONSUMER_ID}, "username": "u", "password": "h"}),
    );
    let _: BasicauthCredential = serde_json::from_value(basic).unwrap();
    let acl = valid(
        Acls,
        json!({"consumer": {"id": CONSUMER_ID}, "group": "gold"}),
    );
    let _: Acl = serde_json::from_value(acl).unwrap();
}

fn plugin(name: &str, config: serde_json::Value) -> serde_json::Value {
    valid(Plugins, json!({"name": name, "config": config}))
}

#[test]
fn auth_plugin_defaults_are_kongs() {
    assert_eq!(
        plugin("key-auth", json!({}))["config"],
        json!({
            "key_names": ["apikey"], "hide_credentials": false, "anonymous": null,
            "key_in_header": true, "key_in_query": true, "key_in_body": false,
            "run_on_preflight": true, "realm": null
        })
    );
    assert_eq!(
        plugin("basic-auth", json!({}))["config"],
        json!({"anonymous": null, "hide_credentials": false, "realm": "service"})
    );
    assert_eq!(
        plugin("acl", json!({"allow": ["a"]}))["config"],
        json!({
            "allow": ["a"], "deny": null, "hide_groups_header": false,
            "always_use_authenticated_groups": false, "include_consumer_groups": false
        })
    );
    let spec = PluginSpec::from_plugin(
        &serde_json::from_value(plugin("key-auth", json!({"key_names": ["x-key"]}))).unwrap(),
    )
    .unwrap();
    assert_eq!(spec.priority(), 1250);
}

#[test]
fn auth_plugin_rules() {
    let (fields, _) = invalid(Plugins, json!({"name": "acl", "config": {}}));
    assert_eq!(
        fields,
        json!({"@entity": ["at least one of these fields must be non-empty: 'config.allow', 'config.deny'"]})
    );
    let (fields, _) = invalid(
        Plugins,
        json!({"name": "acl", "config": {"allow": ["a"], "deny": ["b"]}}),
    );
    assert_eq!(
        fields,
        json!({"@entity": ["only one of these fields must be non-empty: 'config.allow', 'config.deny'"]})
    );
    let (fields, _) = invalid(
        Plugins,
        json!({"name": "key-auth", "config": {"key_names": ["bad name"]}}),
    );
    assert!(fields["config"]["key_names"].is_array(), "{fields}");
    for name in ["key-auth", "basic-auth", "acl"] {
        let (fields, _) = invalid(
            Plugins,
            json!({"name": name, "consumer": {"id": CONSUMER_ID}, "config": {"allow": ["a"]}}),
        );
        assert!(fields["consumer"].is_string(), "{name}: {fields}");
    }
}
