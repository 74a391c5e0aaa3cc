//! The `jwt_secrets` schema: a consumer's JWT credential.

use super::engine::{msg, Auto, Check, CheckFailure, Field, Match, Record, Rule};
use super::typedefs::{self, strings};
use crate::entity::JwtAlgorithm;
use crate::plugin::public_key_parses;
use serde_json::{json, Map, Value};

/// Algorithms whose tokens are verified with `rsa_public_key` rather than `secret`.
const PUBLIC_KEY_ALGORITHMS: [&str; 10] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
];

pub(crate) fn schema() -> Record {
    let algorithms: Vec<&str> = JwtAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
    Record::new(vec![
        typedefs::id(),
        typedefs::timestamp("created_at"),
        Field::foreign("consumer", "consumers").required(),
        typedefs::unique_string("key").auto(Auto::RandomString),
        Field::string("secret").auto(Auto::RandomString),
        Field::string("rsa_public_key"),
        Field::string("algorithm")
            .default_on_null(json!("HS256"))
            .rule(Rule::OneOf(strings(&algorithms))),
        typedefs::tags(),
    ])
    .checks(vec![
        Check::Conditional {
            if_field: "algorithm",
            if_match: Match::OneOf(PUBLIC_KEY_ALGORITHMS.to_vec()),
            then_field: "rsa_public_key",
            then_required: true,
            then_rules: vec![],
            then_err: None,
        },
        Check::Custom {
            sources: vec!["algorithm", "rsa_public_key"],
            run: check_public_key,
        },
    ])
}

/// The key must parse as a public key of the algorithm's family, so that a
/// data plane can always compile the credential.
fn check_public_key(entity: &Map<String, Value>) -> Result<(), CheckFailure> {
    let algorithm = entity
        .get("algorithm")
        .and_then(Value::as_str)
        .and_then(JwtAlgorithm::parse);
    let (Some(algorithm), Some(pem)) = (
        algorithm,
        entity.get("rsa_public_key").and_then(Value::as_str),
    ) else {
        return Ok(());
    };
    if algorithm.is_hmac() || public_key_parses(algorithm, pem) {
        return Ok(());
    }
    Err(CheckFailure {
        field: Some(("rsa_public_key".into(), "invalid key".into())),
        entity: Some(format!("{} 'algorithm'", msg::CONDITIONAL)),
    })
}
