//! The `basic-auth` plugin (Kong priority 1100; cannot be scoped to a
//! consumer): its config and schema (kong/plugins/basic-auth/schema.lua) and
//! its runtime (kong/plugins/basic-auth/access.lua): `Proxy-Authorization`
//! is tried first, then `Authorization`; the username finds the credential
//! the compile step indexed ([`ConsumerIndex::basic_credential`]) and the
//! password must hash (Kong's salted SHA-1, compared in constant time) to the
//! stored hash. `hide_credentials` removes the headers it read.

use super::identity::{self, Anonymous, Presented, Unauthorized};
use crate::compile::{BasicCredential, ConsumerIndex};
use crate::entity::basic_auth_password_hash;
use crate::runtime::{
    CompileContext, CompilePlugin, CredentialRef, Decision, Phases, PluginCompileError,
    PluginError, PluginRuntime, RequestContext,
};
use crate::schema::engine::{Field, Record, Subschema};
use crate::schema::typedefs::{self, HTTP_PROTOCOLS};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, PROXY_AUTHORIZATION};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BasicAuthConfig {
    /// Consumer id or username to use when authentication fails.
    pub anonymous: Option<String>,
    pub hide_credentials: bool,
    pub realm: String,
}

impl Default for BasicAuthConfig {
    fn default() -> Self {
        Self {
            anonymous: None,
            hide_credentials: false,
            realm: "service".into(),
        }
    }
}

pub(crate) fn subschema() -> Subschema {
    let config = Record::new(vec![
        Field::string("anonymous"),
        Field::boolean("hide_credentials")
            .required()
            .default(json!(false)),
        Field::string("realm").required().default(json!("service")),
    ]);
    Subschema {
        fields: vec![
            typedefs::no_consumer(),
            typedefs::protocols(&HTTP_PROTOCOLS, &HTTP_PROTOCOLS),
            Field::record("config", config),
        ],
        checks: vec![],
    }
}

/// Kong answers every basic-auth failure with this message.
const UNAUTHORIZED: &str = "Unauthorized";

/// nginx's `ngx.decode_base64`: the standard alphabet, padding optional.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A compiled basic-auth instance.
#[derive(Debug)]
pub struct BasicAuth {
    hide_credentials: bool,
    anonymous: Option<Anonymous>,
    challenge: HeaderValue,
    consumers: Arc<ConsumerIndex>,
}

impl PluginRuntime for BasicAuth {
    const PHASES: Phases = Phases::ACCESS;

    async fn access(&self, ctx: &mut RequestContext) -> Result<Decision, PluginError> {
        Ok(self.run(ctx))
    }
}

impl BasicAuth {
    fn run(&self, ctx: &mut RequestContext) -> Decision {
        if self.anonymous.is_some() && ctx.credential.is_some() {
            // Logical OR with another authentication plugin that succeeded.
            return Decision::Continue;
        }
        identity::clear_consumer_headers(ctx);
        match self.authenticate(ctx) {
            Some(credential) => {
                identity::set_consumer_of(
                    ctx,
                    &credential.consumer,
                    Some(Presented {
                        credential: CredentialRef {
                            id: credential.id,
                            identifier: credential.username.as_str().into(),
                            consumer: credential.consumer.id,
                        },
                        identifier: HeaderValue::from_str(&credential.username).ok(),
                    }),
                );
                Decision::Continue
            }
            None => identity::fail(
                ctx,
                self.anonymous.as_ref(),
                &self.challenge,
                Unauthorized {
                    message: UNAUTHORIZED,
                },
            ),
        }
    }

    /// Kong's sequence: no header at all fails; `Proxy-Authorization` is
    /// tried first and `Authorization` when it names no credential.
    fn authenticate(&self, ctx: &mut RequestContext) -> Option<&BasicCredential> {
        let headers = ctx.headers();
        if !headers.contains_key(AUTHORIZATION) && !headers.contains_key(PROXY_AUTHORIZATION) {
            return None;
        }
        let (credential, given) = match self.read(ctx, PROXY_AUTHORIZATION) {
            Some((username, password)) => match self.consumers.basic_credential(&username) {
                Some(credential) => (credential, password),
                None => self.read_authorization(ctx)?,
            },
            None => self.read_authorization(ctx)?,
        };
        let expected = credential.password_hash.as_bytes();
        let actual = basic_auth_password_hash(&credential.consumer.id.to_string(), &given);
        bool::from(expected.ct_eq(actual.as_bytes())).then_some(credential)
    }

    fn read_authorization(&self, ctx: &mut RequestContext) -> Option<(&BasicCredential, String)> {
        let (username, password) = self.read(ctx, AUTHORIZATION)?;
        let credential = self.consumers.basic_credential(&username)?;
        Some((credential, password))
    }

    /// The username and password of one header (removed when hiding
    /// credentials, as Kong does whether or not it parsed).
    fn read(&self, ctx: &mut RequestContext, name: HeaderName) -> Option<(String, String)> {
        let parsed = ctx
            .headers()
            .get(&name)
            .and_then(|value| parse_basic(value.as_bytes()));
        if self.hide_credentials {
            ctx.headers_mut().remove(&name);
        }
        parsed
    }
}

/// Kong's parsing: the first `Basic`/`basic` anywhere in the value, optional
/// whitespace, then base64 of `username:password` (the username is the first
/// run of non-colon characters followed by a colon; the password may hold
/// colons and be empty).
fn parse_basic(value: &[u8]) -> Option<(String, String)> {
    let at = value
        .windows(5)
        .position(|w| (w[0] == b'B' || w[0] == b'b') && &w[1..] == b"asic")?;
    let rest = &value[at + 5..];
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let encoded = &rest[start..];
    let encoded = encoded
        .iter()
        .position(|&b| b == b'\n')
        .map_or(encoded, |end| &encoded[..end]);
    let decoded = BASE64.decode(encoded).ok()?;
    let decoded = String::from_utf8_lossy(&decoded);
    let line = decoded.split('\n').next().unwrap_or_default();
    let (username, password) = line.trim_start_matches(':').split_once(':')?;
    Some((username.to_owned(), password.to_owned()))
}

impl CompilePlugin<BasicAuthConfig> for BasicAuth {
    fn compile(
        config: &BasicAuthConfig,
        cx: &CompileContext<'_>,
    ) -> Result<Self, PluginCompileError> {
        let realm = &config.realm;
        let challenge =
            HeaderValue::from_str(&format!("Basic realm=\"{}\"", identity::quoted(realm)))
                .map_err(|_| {
                    PluginCompileError::Invalid(format!(
                        "config.realm: '{realm}' cannot be sent in a WWW-Authenticate header"
                    ))
                })?;
        Ok(BasicAuth {
            hide_credentials: config.hide_credentials,
            anonymous: Anonymous::resolve(config.anonymous.as_deref(), cx.consumers),
            challenge,
            consumers: Arc::clone(cx.consumers),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_basic;

    fn pair(u: &str, p: &str) -> Option<(String, String)> {
        Some((u.into(), p.into()))
    }

    #[test]
    fn parses_as_kong_does() {
        // "alice:s3cr:et"
        assert_eq!(
            parse_basic(b"Basic YWxpY2U6czNjcjpldA=="),
            pair("alice", "s3cr:et")
        );
        assert_eq!(
            parse_basic(b"basic   YWxpY2U6czNjcjpldA"),
            pair("alice", "s3cr:et")
        );
        // "alice:" has an empty password.
        assert_eq!(parse_basic(b"Basic YWxpY2U6"), pair("alice", ""));
        // "alice" has no colon.
        assert_eq!(parse_basic(b"Basic YWxpY2U="), None);
        assert_eq!(parse_basic(b"Bearer YWxpY2U6eA=="), None);
        assert_eq!(parse_basic(b"Basic !!!"), None);
        assert_eq!(parse_basic(b"Basic"), None);
    }
}
