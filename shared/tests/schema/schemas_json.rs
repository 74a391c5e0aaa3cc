//! The `/schemas` descriptions.

use serde_json::{json, Value};
use tollgate_shared::schema::{entity_schema_json, plugin_schema_json};
use tollgate_shared::EntityKind;

fn field<'a>(schema: &'a Value, name: &str) -> &'a Value {
    schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|f| f.get(name))
        .unwrap_or_else(|| panic!("no field {name} in {schema}"))
}

#[test]
fn entity_schemas_have_kong_shape() {
    let services = entity_schema_json(EntityKind::Services);
    assert_eq!(
        field(&services, "protocol"),
        &json!({"type": "string", "required": true, "default": "http", "one_of": ["grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp"]})
    );
    assert_eq!(
        field(&services, "port"),
        &json!({"type": "integer", "required": true, "default": 80, "between": [0, 65535]})
    );
    assert_eq!(
        field(&services, "id"),
        &json!({"type": "string", "auto": true, "uuid": true})
    );
    assert_eq!(
        field(&services, "client_certificate")["reference"],
        json!("certificates")
    );
    let names: Vec<&str> = services["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| {
            f.as_object()
                .and_then(|o| o.keys().next())
                .map(String::as_str)
        })
        .collect();
    assert_eq!(names[..4], ["id", "created_at", "updated_at", "name"]);
    assert!(!names.contains(&"url"), "shorthands are not fields");

    let routes = entity_schema_json(EntityKind::Routes);
    assert_eq!(
        field(&routes, "protocols")["default"],
        json!(["http", "https"])
    );
    assert_eq!(field(&routes, "paths")["type"], json!("array"));
    assert_eq!(field(&routes, "headers")["values"]["type"], json!("array"));

    let consumers = entity_schema_json(EntityKind::Consumers);
    assert_eq!(
        consumers["entity_checks"],
        json!([{"at_least_one_of": ["custom_id", "username"]}])
    );
    for kind in EntityKind::ALL {
        assert!(
            entity_schema_json(kind)["fields"]
                .as_array()
                .is_some_and(|f| !f.is_empty()),
            "{kind:?}"
        );
    }
}

#[test]
fn plugin_schemas_for_bundled_plugins_only() {
    for name in tollgate_shared::plugin::bundled() {
        let schema = plugin_schema_json(name).unwrap();
        assert_eq!(field(&schema, "config")["type"], json!("record"), "{name}");
        assert!(field(&schema, "protocols")["default"].is_array(), "{name}");
    }
    assert!(plugin_schema_json("cors").is_none());
    let jwt = plugin_schema_json("jwt").unwrap();
    assert_eq!(field(&jwt, "consumer")["eq"], Value::Null);
    assert!(field(&jwt, "consumer")
        .as_object()
        .unwrap()
        .contains_key("eq"));
    // Tollgate's JWKS fields are described like Kong's own.
    let jwt_config = field(&jwt, "config");
    assert_eq!(field(jwt_config, "jwks_uri"), &json!({"type": "string"}));
    assert_eq!(
        field(jwt_config, "jwks_refresh_interval"),
        &json!({"type": "integer", "default": 60, "between": [1, 86400]})
    );
    let rl = plugin_schema_json("rate-limiting").unwrap();
    let config = field(&rl, "config");
    let minute = config["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|f| f.get("minute"))
        .unwrap();
    assert_eq!(minute, &json!({"type": "number", "gt": 0}));
    assert!(rl["entity_checks"].as_array().unwrap().len() >= 4);
}
