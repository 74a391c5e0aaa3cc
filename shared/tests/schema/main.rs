//! Schema validation against Kong's behaviour: defaults, rules, exact messages,
//! form coercion, the `url` shorthand, plugin configs and their typed specs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod consumers;
mod credentials;
mod forms;
mod lengths;
mod nulls;
mod opentelemetry;
mod plugins;
mod roundtrip;
mod routes;
mod schemas_json;
mod services;

use serde_json::Value;
use tollgate_shared::schema::validate_entity;
use tollgate_shared::EntityKind;

/// Validates and expects success.
pub fn valid(kind: EntityKind, input: Value) -> Value {
    match validate_entity(kind, &input) {
        Ok(v) => v,
        Err(e) => panic!("{kind:?} {input} rejected: {}", e.message()),
    }
}

/// Validates and expects failure; returns `(fields JSON, message)`.
pub fn invalid(kind: EntityKind, input: Value) -> (Value, String) {
    match validate_entity(kind, &input) {
        Ok(v) => panic!("{kind:?} {input} accepted: {v}"),
        Err(e) => (e.to_json(), e.message()),
    }
}

/// Runs a table of `(input, expected fields JSON)` rejections.
pub fn expect_errors(kind: EntityKind, cases: Vec<(Value, Value)>) {
    for (input, expected) in cases {
        let (fields, message) = invalid(kind, input.clone());
        assert_eq!(
            fields, expected,
            "{kind:?} input {input}, message: {message}"
        );
    }
}

pub const CONSUMER_ID: &str = "7b3e8d4a-5b39-4b8e-9b53-0e6f6a7d3c11";
pub const SERVICE_ID: &str = "0f3c3a7e-2a43-4c1d-9d8b-6b0b1c1f4a52";
