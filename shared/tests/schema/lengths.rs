//! Length limits on values the store indexes (names, usernames, custom ids,
//! keys, SNIs) and on tags, with Kong's `len_max` message; limits count bytes.

use super::{expect_errors, valid, CONSUMER_ID};
use serde_json::json;
use tollgate_shared::EntityKind::{Consumers, JwtSecrets, Plugins, Routes, Services, Snis};

const CERTIFICATE_ID: &str = "5d3c1c0e-6b6a-4f7e-8a4c-9e1f0b2a3c4d";

#[test]
fn indexed_values_at_the_limit_are_valid() {
    let name = "n".repeat(512);
    // 256 two-byte characters: 512 bytes
    let wide = "é".repeat(256);
    valid(Services, json!({"host": "a", "name": name}));
    valid(Services, json!({"host": "a", "name": wide, "tags": [wide]}));
    valid(Consumers, json!({"username": name, "custom_id": name}));
    valid(
        JwtSecrets,
        json!({"consumer": {"id": CONSUMER_ID}, "key": name}),
    );
    let sni = format!("{}.example", "a".repeat(245));
    assert_eq!(sni.len(), 253);
    valid(
        Snis,
        json!({"name": sni, "certificate": {"id": CERTIFICATE_ID}}),
    );
}

#[test]
fn longer_values_get_kong_len_max_errors() {
    let long = "n".repeat(513);
    let wide = "é".repeat(257);
    let at_most_512 = json!("length must be at most 512");
    expect_errors(
        Services,
        vec![
            (
                json!({"host": "a", "name": "x".repeat(3000)}),
                json!({"name": at_most_512}),
            ),
            (
                json!({"host": "a", "name": wide}),
                json!({"name": at_most_512}),
            ),
            (
                json!({"host": "a", "tags": ["ok", long]}),
                json!({"tags": [null, at_most_512]}),
            ),
        ],
    );
    expect_errors(
        Routes,
        vec![(
            json!({"name": long, "paths": ["/"]}),
            json!({"name": at_most_512}),
        )],
    );
    expect_errors(
        Consumers,
        vec![(
            json!({"username": long, "custom_id": long}),
            json!({"username": at_most_512, "custom_id": at_most_512}),
        )],
    );
    expect_errors(
        JwtSecrets,
        vec![(
            json!({"consumer": {"id": CONSUMER_ID}, "key": long}),
            json!({"key": at_most_512}),
        )],
    );
    expect_errors(
        Plugins,
        vec![(
            json!({"name": "ip-restriction", "config": {"allow": ["10.0.0.0/8"]}, "instance_name": long}),
            json!({"instance_name": at_most_512}),
        )],
    );
    let sni = format!("{}.example", "a".repeat(246));
    expect_errors(
        Snis,
        vec![(
            json!({"name": sni, "certificate": {"id": CERTIFICATE_ID}}),
            json!({"name": "length must be at most 253"}),
        )],
    );
}

#[test]
fn schemas_describe_the_limits() {
    let schema = tollgate_shared::schema::entity_schema_json(Services);
    let name = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|f| f.get("name"))
        .unwrap();
    assert_eq!(name["len_max"], json!(512));
}
