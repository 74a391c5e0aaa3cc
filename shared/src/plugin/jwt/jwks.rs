//! JSON Web Key Sets (RFC 7517) as the jwt plugin's JWKS support will read
//! them: a document, bounded in size and key count, becomes verifiers keyed
//! by `kid`, each fixed to one algorithm by the key itself (its `alg`, or
//! for EC and OKP keys the curve), so a token never chooses how it is
//! checked. Keys this plugin cannot use for signatures (symmetric `oct`
//! keys, `use` other than `sig`, no `kid`, unknown curves, an `alg` that
//! contradicts the key) are skipped, not errors: real sets mix them in.
//! Parsing only: fetching and caching belong to the data plane.

use super::keys::Verifier;
use super::token::decode_base64url;
use crate::entity::JwtAlgorithm;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Bounds on one JWKS document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksLimits {
    pub max_bytes: usize,
    pub max_keys: usize,
}

impl Default for JwksLimits {
    fn default() -> Self {
        JwksLimits {
            max_bytes: 256 * 1024,
            max_keys: 100,
        }
    }
}

/// Why a JWKS document was refused as a whole (the last good set stays).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the JWKS document is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the JWKS document has more than {limit} keys")]
    TooManyKeys { limit: usize },
    #[error("the JWKS document is not a JSON object with a 'keys' array: {0}")]
    Malformed(String),
}

/// The usable keys of one document, by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<Verifier>>,
}

impl KeySet {
    pub fn get(&self, kid: &str) -> Option<&Arc<Verifier>> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parses `body` within `limits`; the first key of a repeated `kid` wins.
    pub fn parse(body: &[u8], limits: JwksLimits) -> Result<KeySet, JwksError> {
        if body.len() > limits.max_bytes {
            return Err(JwksError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_slice(body).map_err(|e| JwksError::Malformed(e.to_string()))?;
        if document.keys.len() > limits.max_keys {
            return Err(JwksError::TooManyKeys {
                limit: limits.max_keys,
            });
        }
        let mut keys = HashMap::new();
        for value in document.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            let Some(kid) = jwk.kid.clone() else {
                continue;
            };
            if keys.contains_key(&kid) {
                continue;
            }
            if let Some(verifier) = jwk.verifier() {
                keys.insert(kid, Arc::new(verifier));
            }
        }
        Ok(KeySet { keys })
    }
}

/// The members of a JWK this plugin reads.
#[derive(Debug, Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl Jwk {
    fn verifier(&self) -> Option<Verifier> {
        if self.usage.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let declared = match &self.alg {
            Some(alg) => Some(JwtAlgorithm::parse(alg)?),
            None => None,
        };
        let member = |value: &Option<String>| decode_base64url(value.as_deref()?.as_bytes());
        match self.kty.as_str() {
            "RSA" => {
                // RS* and PS* share keys: only a declared algorithm decides.
                let algorithm = declared?;
                Verifier::rsa_components(algorithm, &member(&self.n)?, &member(&self.e)?).ok()
            }
            "EC" => {
                let algorithm = match self.crv.as_deref()? {
                    "P-256" => JwtAlgorithm::ES256,
                    "P-384" => JwtAlgorithm::ES384,
                    "P-521" => JwtAlgorithm::ES512,
                    _ => return None,
                };
                if declared.is_some_and(|d| d != algorithm) {
                    return None;
                }
                let (x, y) = (member(&self.x)?, member(&self.y)?);
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Verifier::ec_point(algorithm, &point).ok()
            }
            "OKP" if self.crv.as_deref() == Some("Ed25519") => {
                if declared.is_some_and(|d| d != JwtAlgorithm::EdDSA) {
                    return None;
                }
                Verifier::ed25519(&member(&self.x)?).ok()
            }
            _ => None,
        }
    }
}
