//! The `jwt` plugin (Kong priority 1450, kong-compat §5; cannot be scoped to
//! a consumer): its config and schema, and its runtime. Compile indexes the
//! config's `jwt_secrets` by `key` with every secret or public key parsed once
//! for the credential's own algorithm; a request's token is found
//! (`token.rs`), decoded, matched to its credential by the key claim, checked
//! against that credential's algorithm and key (`keys.rs`), then its `exp`,
//! `nbf` and maximum lifetime, and the consumer is attached with Kong's
//! upstream headers (or the anonymous consumer, or a 401 with Kong's body and
//! `WWW-Authenticate`).
//!
//! Beyond Kong: `leeway`, and `jwks_uri` (`jwks.rs`): a token whose header
//! carries a `kid` and whose key claim names no credential of its `alg` is
//! verified with that key of the JWKS document instead (the algorithm fixed
//! by the key, HMAC refused); its key claim still maps it to a credential's
//! consumer when one has that key, else it has no consumer (or `anonymous`).
//!
//! The credential index (every `jwt_secrets` row with its key parsed) is
//! built once per compile and shared by every jwt instance
//! ([`ConsumerIndex::derived`]), once for each `secret_is_base64` value used.

mod jwks;
mod keys;
#[cfg(test)]
mod tests;
mod token;
mod verified;

pub use jwks::{
    JwksEndpoint, JwksError, JwksKeys, JwksLimits, JwksLookup, JwksProvider, JwksSource, KeySet,
    NoJwks,
};
pub use keys::{public_key_parses, KeyError, Verifier};

use super::identity::{self, Anonymous, Identity, Presenting};
use super::null_as_default;
use crate::compile::ConsumerIndex;
use crate::entity::{JwtAlgorithm, JwtSecret};
use crate::router::FastHash;
use crate::runtime::{
    CompileContext, CompilePlugin, CredentialRef, Decision, Phases, PluginCompileError,
    PluginError, PluginRuntime, Rejection, RejectionStyle, RequestContext,
};
use crate::schema::engine::{Check, Field, Match, Record, Rule, Subschema};
use crate::schema::typedefs::{self, strings, HTTP_PROTOCOLS};
use http::header::{HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use token::{BadToken, Found, Token, TokenSources};
use uuid::Uuid;
use verified::{TimeClaims, VerifiedTokens};

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
    /// Seconds of clock skew tolerated by the `exp` and `nbf` checks (not in
    /// Kong OSS, whose checks have none: the default 0 keeps its behaviour).
    #[serde(deserialize_with = "null_as_default")]
    pub leeway: f64,
    /// A JWKS document whose keys verify tokens that carry a `kid` (not in
    /// Kong OSS; unset keeps Kong's behaviour). `https://`, or `http://` to
    /// a loopback address.
    pub jwks_uri: Option<String>,
    /// Seconds: the least time between two fetches of `jwks_uri`, whether an
    /// unknown `kid` or the set's age triggers them.
    #[serde(deserialize_with = "refresh_interval_or_default")]
    pub jwks_refresh_interval: u64,
}

fn refresh_interval_or_default<'de, D>(deserializer: D) -> Result<u64, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<u64>::deserialize(deserializer)?.unwrap_or(jwks::DEFAULT_REFRESH_INTERVAL))
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
            leeway: 0.0,
            jwks_uri: None,
            jwks_refresh_interval: jwks::DEFAULT_REFRESH_INTERVAL,
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
        Field::number("leeway")
            .default(json!(0))
            .rule(Rule::Between(0.0, 31_536_000.0)),
        Field::string("jwks_uri").rule(Rule::Custom(jwks::check_jwks_uri)),
        Field::integer("jwks_refresh_interval")
            .default_on_null(json!(jwks::DEFAULT_REFRESH_INTERVAL))
            .rule(Rule::Between(
                jwks::REFRESH_INTERVAL_BOUNDS.0 as f64,
                jwks::REFRESH_INTERVAL_BOUNDS.1 as f64,
            )),
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

/// The upstream headers authentication plugins own, re-exported from where
/// they are written ([`super::identity`]).
pub use super::identity::consumer_headers;

/// One `jwt_secrets` row, ready to verify tokens.
#[derive(Debug)]
struct Credential {
    id: Uuid,
    key: Arc<str>,
    algorithm: JwtAlgorithm,
    /// `None`: no usable secret or key ("Invalid key/secret").
    verifier: Option<Verifier>,
    consumer_id: Uuid,
    /// `None` when the consumer is not in the config.
    identity: Option<Identity>,
}

impl Credential {
    /// Kong's choice of key material: the secret for HS*, else the public
    /// key; with `secret_is_base64` that text is base64url-decoded first (so a
    /// PEM key, which does not decode, is unusable, as in Kong).
    fn new(secret: &JwtSecret, secret_is_base64: bool, consumers: &ConsumerIndex) -> Credential {
        let material = if secret.algorithm.is_hmac() {
            secret.secret.as_deref()
        } else {
            secret.rsa_public_key.as_deref()
        };
        let verifier = material.and_then(|text| {
            if secret_is_base64 {
                let bytes = token::decode_base64url(text.as_bytes())?;
                if secret.algorithm.is_hmac() {
                    Verifier::hmac(secret.algorithm, &bytes).ok()
                } else {
                    let pem = String::from_utf8(bytes).ok()?;
                    Verifier::public_key(secret.algorithm, &pem).ok()
                }
            } else if secret.algorithm.is_hmac() {
                Verifier::hmac(secret.algorithm, text.as_bytes()).ok()
            } else {
                Verifier::public_key(secret.algorithm, text).ok()
            }
        });
        let key_header = HeaderValue::from_str(&secret.key).ok();
        Credential {
            id: secret.id,
            key: Arc::from(secret.key.as_str()),
            algorithm: secret.algorithm,
            verifier,
            consumer_id: secret.consumer.id,
            identity: consumers.by_id(&secret.consumer.id).map(|consumer| {
                Identity::new(consumer, Presenting::Credential(key_header.as_ref()))
            }),
        }
    }
}

/// Every `jwt_secrets` row by `key`, ready to verify. Keys come from the
/// config and a request only looks them up: the fast hash is enough.
type Credentials = HashMap<String, Credential, FastHash>;

/// The credential indexes of one compile, built on first use by the first
/// instance that needs each and shared by all: keys are read differently
/// with `secret_is_base64`, so there is one index per value of it.
#[derive(Debug, Default)]
struct CredentialIndexes {
    plain: OnceLock<Arc<Credentials>>,
    base64: OnceLock<Arc<Credentials>>,
}

impl CredentialIndexes {
    fn get(&self, secret_is_base64: bool, cx: &CompileContext<'_>) -> Arc<Credentials> {
        let slot = if secret_is_base64 {
            &self.base64
        } else {
            &self.plain
        };
        let index = slot.get_or_init(|| {
            Arc::new(
                cx.config
                    .jwt_secrets
                    .iter()
                    .map(|secret| {
                        let credential = Credential::new(secret, secret_is_base64, cx.consumers);
                        (credential.key.to_string(), credential)
                    })
                    .collect(),
            )
        });
        Arc::clone(index)
    }
}

/// A compiled jwt instance (boxed: it is larger than most plugins).
#[derive(Debug)]
pub struct Jwt(Box<JwtState>);

#[derive(Debug)]
struct JwtState {
    sources: TokenSources,
    key_claim_name: String,
    no_key_claim: String,
    empty_key_claim: String,
    no_credentials: String,
    verify_exp: bool,
    verify_nbf: bool,
    maximum_expiration: f64,
    leeway: f64,
    run_on_preflight: bool,
    anonymous: Option<Anonymous>,
    /// `WWW-Authenticate` when no token was sent, and for every other failure.
    challenge: HeaderValue,
    challenge_invalid_token: HeaderValue,
    /// Shared with every jwt instance of the same compile.
    credentials: Arc<Credentials>,
    /// `jwks_uri`'s keys, shared with every instance naming the same source.
    jwks: Option<Arc<dyn JwksKeys>>,
    /// Tokens this instance verified against a credential (`verified.rs`).
    verified: VerifiedTokens,
}

/// The 401 for a `kid` the key set does not hold (in the style of Kong's
/// "No credentials found for given 'iss'").
const UNKNOWN_KID: &str = "No credentials found for given 'kid'";

/// What verified a token.
#[derive(Debug)]
enum Verified<'s> {
    /// The credential its key claim names (Kong's way).
    Credential(&'s Credential),
    /// A key of the JWKS document; the credential its key claim names, if
    /// any, gives the consumer.
    KeySet(Option<&'s Credential>),
}

/// Why a request did not authenticate.
#[derive(Debug, Clone, PartialEq)]
enum Failure {
    NoToken,
    /// `{"message": …}`.
    Message(Cow<'static, str>),
    /// Per-claim errors, sent as the body object itself.
    Claims(Map<String, Value>),
}

impl Failure {
    fn message(text: impl Into<Cow<'static, str>>) -> Failure {
        Failure::Message(text.into())
    }
}

impl PluginRuntime for Jwt {
    const PHASES: Phases = Phases::ACCESS;

    async fn access(&self, ctx: &mut RequestContext) -> Result<Decision, PluginError> {
        Ok(self.0.access_at(ctx, unix_now()).await)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl JwtState {
    /// The access phase at Unix time `now` (seconds). It waits only when a
    /// token names a `kid` the JWKS set does not hold (bounded by the
    /// provider's fetch timeout).
    async fn access_at(&self, ctx: &mut RequestContext, now: i64) -> Decision {
        if self.anonymous.is_some() && ctx.credential.is_some() {
            // Another authentication plugin already succeeded; with
            // `anonymous` the plugins are alternatives (Kong's logical OR).
            return Decision::Continue;
        }
        identity::clear_consumer_headers(ctx);
        if !self.run_on_preflight && ctx.request.method == Method::OPTIONS {
            return Decision::Continue;
        }
        let failure = match self.authenticate(ctx, now).await {
            Ok(Verified::Credential(credential) | Verified::KeySet(Some(credential))) => {
                self.attach(ctx, credential);
                return Decision::Continue;
            }
            // A valid token from the key set's issuer that maps to no
            // consumer: authenticated, with the anonymous consumer when one
            // is configured, else none.
            Ok(Verified::KeySet(None)) => return self.anonymous_or(ctx, None),
            Err(failure) => failure,
        };
        self.anonymous_or(ctx, Some(failure))
    }

    /// The anonymous consumer (or Kong's 500 when it does not exist); without
    /// `anonymous`, the 401 for `failure`, or nothing to add when the token
    /// was valid.
    fn anonymous_or(&self, ctx: &mut RequestContext, failure: Option<Failure>) -> Decision {
        match (&self.anonymous, failure) {
            (Some(anonymous), _) => anonymous.apply(ctx),
            (None, Some(failure)) => self.reject(ctx, failure),
            (None, None) => Decision::Continue,
        }
    }

    fn attach(&self, ctx: &mut RequestContext, credential: &Credential) {
        let Some(identity) = &credential.identity else {
            return;
        };
        identity::set_consumer(
            ctx,
            identity,
            Some(CredentialRef {
                id: credential.id,
                identifier: Arc::clone(&credential.key),
                consumer: credential.consumer_id,
            }),
        );
    }

    fn reject(&self, ctx: &mut RequestContext, failure: Failure) -> Decision {
        let challenge = match failure {
            Failure::NoToken => &self.challenge,
            _ => &self.challenge_invalid_token,
        };
        ctx.response_headers
            .insert(WWW_AUTHENTICATE, challenge.clone());
        let (message, style) = match failure {
            Failure::NoToken => (Cow::Borrowed("Unauthorized"), RejectionStyle::Exit),
            Failure::Message(message) => (message, RejectionStyle::Exit),
            Failure::Claims(errors) => (
                Cow::Owned(Value::Object(errors).to_string()),
                RejectionStyle::ExitJson,
            ),
        };
        Decision::Respond(Rejection {
            status: StatusCode::UNAUTHORIZED,
            message,
            style,
        })
    }

    /// Kong's verification sequence (kong-compat §5.4), first failure wins;
    /// with `jwks_uri`, a token with a `kid` whose key claim names no
    /// credential of the token's `alg` is verified by the key set instead.
    async fn authenticate(&self, ctx: &RequestContext, now: i64) -> Result<Verified<'_>, Failure> {
        let raw = match self.sources.find(ctx.request.uri.query(), ctx.headers()) {
            Found::None => return Err(Failure::NoToken),
            Found::Several => return Err(Failure::message("Multiple tokens provided")),
            Found::One(raw) => raw,
        };
        // A token verified before (so its credential has a consumer): only
        // its time claims are judged again.
        let remembered = self
            .verified
            .lookup(&raw, |key, claims| (self.credentials.get(key), claims));
        if let Some((Some(credential), claims)) = remembered {
            self.check_claims(claims, now)?;
            return Ok(Verified::Credential(credential));
        }
        let token = Token::decode(&raw).map_err(|bad: BadToken| Failure::message(bad.message()))?;
        let key = self.key_claim(&token);
        if let (Some(jwks), Some(Value::String(kid))) = (&self.jwks, token.header.get("kid")) {
            let named = key.as_ref().ok().and_then(|key| self.credentials.get(*key));
            if named.is_none_or(|credential| credential.algorithm != token.algorithm) {
                self.verify_with_key_set(jwks.as_ref(), kid, &token, now)
                    .await?;
                return match named {
                    Some(credential) if credential.identity.is_none() => {
                        Err(self.consumer_not_found(&credential.key))
                    }
                    named => Ok(Verified::KeySet(named)),
                };
            }
        }
        let key = key?;
        let credential = self
            .credentials
            .get(key)
            .ok_or_else(|| Failure::message(self.no_credentials.clone()))?;
        if token.algorithm != credential.algorithm {
            return Err(Failure::message("Invalid algorithm"));
        }
        let verifier = credential
            .verifier
            .as_ref()
            .ok_or_else(|| Failure::message("Invalid key/secret"))?;
        if !verifier.verify(token.signed, &token.signature) {
            return Err(Failure::message("Invalid signature"));
        }
        let claims = TimeClaims::of(&token.claims);
        self.check_claims(claims, now)?;
        if credential.identity.is_none() {
            return Err(self.consumer_not_found(key));
        }
        self.verified.remember(&raw, key, claims);
        Ok(Verified::Credential(credential))
    }

    /// The key claim's value: from the claims, else the JOSE header.
    fn key_claim<'t>(&self, token: &'t Token<'_>) -> Result<&'t str, Failure> {
        match token
            .claims
            .get(&self.key_claim_name)
            .filter(|v| !matches!(v, Value::Null | Value::Bool(false)))
            .or_else(|| token.header.get(&self.key_claim_name))
        {
            None | Some(Value::Null | Value::Bool(false)) => {
                Err(Failure::message(self.no_key_claim.clone()))
            }
            Some(Value::String(key)) if key.is_empty() => {
                Err(Failure::message(self.empty_key_claim.clone()))
            }
            Some(Value::String(key)) => Ok(key.as_str()),
            // No credential key is anything but a string.
            Some(_) => Err(Failure::message(self.no_credentials.clone())),
        }
    }

    fn consumer_not_found(&self, key: &str) -> Failure {
        Failure::message(format!(
            "Could not find consumer for '{}={key}'",
            self.key_claim_name
        ))
    }

    /// Verifies `token` with the key set's key `kid`: never an HMAC
    /// algorithm (checked before any fetch, so such tokens cost nothing),
    /// the token's `alg` must be the one the key fixes, then the signature
    /// and the same claim checks as a credential's token.
    async fn verify_with_key_set(
        &self,
        jwks: &dyn JwksKeys,
        kid: &str,
        token: &Token<'_>,
        now: i64,
    ) -> Result<(), Failure> {
        if token.algorithm.is_hmac() {
            return Err(Failure::message("Invalid algorithm"));
        }
        let verifier = match jwks.cached(kid) {
            Some(verifier) => verifier,
            None => jwks
                .refreshed(kid)
                .await
                .ok_or_else(|| Failure::message(UNKNOWN_KID))?,
        };
        if verifier.algorithm() != token.algorithm {
            return Err(Failure::message("Invalid algorithm"));
        }
        if !verifier.verify(token.signed, &token.signature) {
            return Err(Failure::message("Invalid signature"));
        }
        self.check_claims(TimeClaims::of(&token.claims), now)
    }

    /// `claims_to_verify` (every failure reported, by claim name) with
    /// `leeway` seconds of tolerance, then `maximum_expiration` (without it:
    /// it bounds what the issuer granted, not clock skew).
    fn check_claims(&self, claims: TimeClaims, now: i64) -> Result<(), Failure> {
        let now = now as f64;
        let mut errors = Map::new();
        if self.verify_exp {
            match claims.exp {
                None => errors.insert("exp".into(), "must be a number".into()),
                Some(exp) if exp <= now - self.leeway => {
                    errors.insert("exp".into(), "token expired".into())
                }
                Some(_) => None,
            };
        }
        if self.verify_nbf {
            match claims.nbf {
                None => errors.insert("nbf".into(), "must be a number".into()),
                Some(nbf) if nbf > now + self.leeway => {
                    errors.insert("nbf".into(), "token not valid yet".into())
                }
                Some(_) => None,
            };
        }
        if !errors.is_empty() {
            return Err(Failure::Claims(errors));
        }
        if self.maximum_expiration > 0.0 {
            let too_long = claims
                .exp
                .is_none_or(|exp| exp - now > self.maximum_expiration);
            if too_long {
                let mut errors = Map::new();
                errors.insert("exp".into(), "exceeds maximum allowed expiration".into());
                return Err(Failure::Claims(errors));
            }
        }
        Ok(())
    }
}

impl CompilePlugin<JwtConfig> for Jwt {
    fn compile(config: &JwtConfig, cx: &CompileContext<'_>) -> Result<Self, PluginCompileError> {
        let (challenge, challenge_invalid_token) = match &config.realm {
            None => (
                HeaderValue::from_static("Bearer"),
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            ),
            Some(realm) => {
                // A quote would end the quoted-string early: escape it.
                let quoted = realm.replace('\\', "\\\\").replace('"', "\\\"");
                let base = format!("Bearer realm=\"{quoted}\"");
                let with_error = format!("{base}, error=\"invalid_token\"");
                match (
                    HeaderValue::from_str(&base),
                    HeaderValue::from_str(&with_error),
                ) {
                    (Ok(base), Ok(with_error)) => (base, with_error),
                    _ => {
                        return Err(PluginCompileError::Invalid(format!(
                            "config.realm: '{realm}' cannot be sent in a WWW-Authenticate header"
                        )))
                    }
                }
            }
        };
        let credentials = cx
            .consumers
            .derived::<CredentialIndexes>()
            .get(config.secret_is_base64, cx);
        let jwks = match &config.jwks_uri {
            None => None,
            Some(uri) => {
                let endpoint = JwksEndpoint::parse(uri).map_err(|reason| {
                    PluginCompileError::Invalid(format!("config.jwks_uri: {reason}"))
                })?;
                let (low, high) = jwks::REFRESH_INTERVAL_BOUNDS;
                let source = JwksSource {
                    endpoint,
                    refresh_interval: Duration::from_secs(
                        config.jwks_refresh_interval.clamp(low, high),
                    ),
                    limits: JwksLimits::default(),
                };
                Some(
                    cx.resources
                        .jwks_keys(&source)
                        .map_err(PluginCompileError::Resource)?,
                )
            }
        };
        let anonymous = Anonymous::resolve(config.anonymous.as_deref(), cx.consumers);
        let claim = &config.key_claim_name;
        Ok(Jwt(Box::new(JwtState {
            sources: TokenSources {
                uri_param_names: config.uri_param_names.clone(),
                cookie_names: config.cookie_names.clone(),
                // A name that is not a valid header name can match no header.
                header_names: config
                    .header_names
                    .iter()
                    .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
                    .collect(),
            },
            key_claim_name: claim.clone(),
            no_key_claim: format!("No mandatory '{claim}' in claims"),
            empty_key_claim: format!("Invalid '{claim}' in claims"),
            no_credentials: format!("No credentials found for given '{claim}'"),
            verify_exp: config.verifies(JwtClaim::Exp),
            verify_nbf: config.verifies(JwtClaim::Nbf),
            maximum_expiration: config.maximum_expiration,
            leeway: config.leeway,
            run_on_preflight: config.run_on_preflight,
            anonymous,
            challenge,
            challenge_invalid_token,
            credentials,
            jwks,
            verified: VerifiedTokens::default(),
        })))
    }
}
