//! JSON Web Key Sets (RFC 7517) for the jwt plugin's `jwks_uri`: the URI's
//! rules ([`JwksEndpoint`]), the document ([`KeySet`]: bounded in size and
//! key count, verifiers keyed by `kid`, each fixed to one algorithm by the
//! key itself (its `alg`, or for EC and OKP keys the curve), so a token never
//! chooses how it is checked), and the resource through which a compiled
//! instance reaches the keys ([`JwksProvider`], [`JwksKeys`]). Keys this
//! plugin cannot use for signatures (symmetric `oct` keys, `use` other than
//! `sig`, no `kid`, unknown curves, an `alg` that contradicts the key) are
//! skipped, not errors: real sets mix them in. Fetching, caching and
//! refreshing are the data plane's (`data-plane/src/plugins/jwks.rs`); the
//! control plane's check compiles with [`NoJwks`], which fetches nothing.

use super::keys::Verifier;
use super::token::decode_base64url;
use crate::entity::JwtAlgorithm;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// `jwks_refresh_interval` when unset: the least time between two fetches
/// of one document, in seconds.
pub const DEFAULT_REFRESH_INTERVAL: u64 = 60;
/// The bounds of `jwks_refresh_interval` (seconds): at least one fetch a
/// second at most, at least one a day.
pub const REFRESH_INTERVAL_BOUNDS: (u64, u64) = (1, 86_400);

/// Where a JWKS document is fetched from: `https://`, or `http://` to a
/// loopback host (`localhost`, 127.0.0.0/8, `::1`) only, since a key set
/// fetched in clear over a network could be replaced by anyone on the path.
/// No user info (it would be a credential in logs), no fragment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwksEndpoint {
    pub https: bool,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// `/path?query`, as sent in the request line.
    pub path_and_query: String,
}

impl JwksEndpoint {
    /// Parses and checks a `jwks_uri`; the error is the schema's message.
    pub fn parse(uri: &str) -> Result<JwksEndpoint, String> {
        let invalid = || "expected an absolute http(s) URI".to_string();
        if uri.contains('#') {
            return Err("must not have a fragment".into());
        }
        let parsed: http::Uri = uri.parse().map_err(|_| invalid())?;
        let https = match parsed.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => true,
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => false,
            _ => return Err(invalid()),
        };
        let authority = parsed.authority().ok_or_else(invalid)?;
        if authority.as_str().contains('@') {
            return Err("must not carry user info (credentials)".into());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(invalid());
        }
        if !https && !is_loopback(&host) {
            return Err("must use https (http only to a loopback address)".into());
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path_and_query = parsed
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        let path_and_query = if path_and_query.is_empty() {
            "/".to_string()
        } else {
            path_and_query
        };
        Ok(JwksEndpoint {
            https,
            host,
            port,
            path_and_query,
        })
    }

    /// The URI without its query, for log lines (a query may carry a token).
    pub fn display(&self) -> String {
        let path = self
            .path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(path, _)| path);
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{host}:{}{path}", self.port)
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The schema's check of `config.jwks_uri`.
pub(crate) fn check_jwks_uri(value: &serde_json::Value) -> Result<(), String> {
    match value.as_str() {
        Some(uri) => JwksEndpoint::parse(uri).map(drop),
        None => Ok(()),
    }
}

/// One JWKS document as instances use it: where, how often it may be
/// fetched, and its bounds. Instances naming the same source share one cache
/// on a data plane, across config swaps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwksSource {
    pub endpoint: JwksEndpoint,
    /// The least time between two fetches, whatever triggers them.
    pub refresh_interval: Duration,
    pub limits: JwksLimits,
}

/// What [`JwksKeys::refreshed`] returns.
pub type JwksLookup<'a> = Pin<Box<dyn Future<Output = Option<Arc<Verifier>>> + Send + 'a>>;

/// The keys of one [`JwksSource`] as a compiled instance sees them.
pub trait JwksKeys: Send + Sync + fmt::Debug {
    /// The key `kid` of the set held now, without waiting. The holder may
    /// start a refresh in the background (a set older than the interval).
    fn cached(&self, kid: &str) -> Option<Arc<Verifier>>;

    /// The key `kid` after fetching the document again, if the last fetch
    /// started at least one refresh interval ago (else the set held now);
    /// joins a fetch already under way rather than starting another. Waits
    /// at most the holder's fetch timeout; a failed fetch keeps the set held.
    fn refreshed<'a>(&'a self, kid: &'a str) -> JwksLookup<'a>;
}

/// Hands out the key sets of JWKS sources (a resource that outlives swaps).
pub trait JwksProvider: Send + Sync + fmt::Debug {
    fn keys(&self, source: &JwksSource) -> Result<Arc<dyn JwksKeys>, String>;
}

/// The check-only (and default) provider: key sets that are always empty
/// and never fetched.
#[derive(Debug, Default)]
pub struct NoJwks;

#[derive(Debug)]
struct NoKeys;

impl JwksKeys for NoKeys {
    fn cached(&self, _kid: &str) -> Option<Arc<Verifier>> {
        None
    }

    fn refreshed<'a>(&'a self, _kid: &'a str) -> JwksLookup<'a> {
        Box::pin(std::future::ready(None))
    }
}

impl JwksProvider for NoJwks {
    fn keys(&self, _source: &JwksSource) -> Result<Arc<dyn JwksKeys>, String> {
        Ok(Arc::new(NoKeys))
    }
}

/// Bounds on one JWKS document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
