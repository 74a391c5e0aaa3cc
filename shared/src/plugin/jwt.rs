//! The `jwt` plugin: config (Kong priority 1450; cannot be scoped to a consumer).

use super::null_as_default;
use crate::schema::engine::{Check, Field, Match, Record, Rule, Subschema};
use crate::schema::typedefs::{self, strings, HTTP_PROTOCOLS};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A claim the plugin can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JwtClaim {
    Exp,
    Nbf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JwtConfig {
    #[serde(deserialize_with = "null_as_default")]
    pub uri_param_names: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub cookie_names: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub key_claim_name: String,
    pub secret_is_base64: bool,
    pub claims_to_verify: Option<Vec<JwtClaim>>,
    /// Consumer id or username to use when authentication fails.
    pub anonymous: Option<String>,
    pub run_on_preflight: bool,
    /// Seconds; 0 disables the check.
    #[serde(deserialize_with = "null_as_default")]
    pub maximum_expiration: f64,
    #[serde(deserialize_with = "null_as_default")]
    pub header_names: Vec<String>,
    pub realm: Option<String>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            uri_param_names: vec!["jwt".into()],
            cookie_names: Vec::new(),
            key_claim_name: "iss".into(),
            secret_is_base64: false,
            claims_to_verify: None,
            anonymous: None,
            run_on_preflight: true,
            maximum_expiration: 0.0,
            header_names: vec!["authorization".into()],
            realm: None,
        }
    }
}

impl JwtConfig {
    /// Whether `claim` is listed in `claims_to_verify`.
    pub fn verifies(&self, claim: JwtClaim) -> bool {
        self.claims_to_verify
            .as_ref()
            .is_some_and(|c| c.contains(&claim))
    }
}

pub(crate) fn subschema() -> Subschema {
    let string_set =
        |name: &'static str, default| Field::set(name, Field::string("")).default(default);
    let config = Record::new(vec![
        string_set("uri_param_names", json!(["jwt"])),
        string_set("cookie_names", json!([])),
        Field::string("key_claim_name").default(json!("iss")),
        Field::boolean("secret_is_base64")
            .required()
            .default(json!(false)),
        Field::set(
            "claims_to_verify",
            Field::string("").rule(Rule::OneOf(strings(&["exp", "nbf"]))),
        ),
        Field::string("anonymous"),
        Field::boolean("run_on_preflight")
            .required()
            .default(json!(true)),
        Field::number("maximum_expiration")
            .default(json!(0))
            .rule(Rule::Between(0.0, 31_536_000.0)),
        string_set("header_names", json!(["authorization"])),
        Field::string("realm"),
    ]);
    Subschema {
        fields: vec![
            typedefs::no_consumer(),
            typedefs::protocols(&HTTP_PROTOCOLS, &HTTP_PROTOCOLS),
            Field::record("config", config),
        ],
        checks: vec![Check::Conditional {
            if_field: "config.maximum_expiration",
            if_match: Match::Gt(0.0),
            then_field: "config.claims_to_verify",
            then_required: false,
            then_rules: vec![Rule::Contains(json!("exp"))],
            then_err: None,
        }],
    }
}
