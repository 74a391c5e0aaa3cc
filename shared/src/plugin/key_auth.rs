//! The `key-auth` plugin (Kong priority 1250; cannot be scoped to a
//! consumer): its config and schema (kong/plugins/key-auth/schema.lua) and
//! its runtime (kong/plugins/key-auth/handler.lua). For each of `key_names`
//! in order the key is looked for in a header, then the query string; the
//! first string value wins, a name sent twice is "Duplicate API key found".
//! With `key_in_body` the body (form-urlencoded, JSON or multipart form
//! data, read by the proxy before the access phase, see
//! [`RequestContext::body`]) is searched last.
//! The key is matched against the keys the compile step indexed
//! ([`ConsumerIndex::key_credential`]), then Kong's `set_consumer` runs
//! ([`super::identity`]). `hide_credentials` removes the key's header, query
//! argument and body field from the upstream request.

mod multipart;

use super::identity::{self, Anonymous, Unauthorized};
use crate::compile::ConsumerIndex;
use crate::runtime::{
    CompileContext, CompilePlugin, CredentialRef, Decision, Phases, PluginCompileError,
    PluginError, PluginRuntime, RequestContext,
};
use crate::schema::engine::{Field, Record, Subschema};
use crate::schema::typedefs::{self, HTTP_PROTOCOLS};
use http::header::{HeaderName, HeaderValue};
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyAuthConfig {
    pub key_names: Vec<String>,
    pub hide_credentials: bool,
    /// Consumer id or username to use when authentication fails.
    pub anonymous: Option<String>,
    pub key_in_header: bool,
    pub key_in_query: bool,
    pub key_in_body: bool,
    pub run_on_preflight: bool,
    pub realm: Option<String>,
}

impl Default for KeyAuthConfig {
    fn default() -> Self {
        Self {
            key_names: vec!["apikey".into()],
            hide_credentials: false,
            anonymous: None,
            key_in_header: true,
            key_in_query: true,
            key_in_body: false,
            run_on_preflight: true,
            realm: None,
        }
    }
}

pub(crate) fn subschema() -> Subschema {
    let flag =
        |name: &'static str, default: bool| Field::boolean(name).required().default(json!(default));
    let config = Record::new(vec![
        Field::array("key_names", typedefs::header_name(""))
            .required()
            .default(json!(["apikey"])),
        flag("hide_credentials", false),
        Field::string("anonymous"),
        flag("key_in_header", true),
        flag("key_in_query", true),
        flag("key_in_body", false),
        flag("run_on_preflight", true),
        Field::string("realm"),
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

const NO_API_KEY: &str = "No API key found in request";
const DUPLICATE_API_KEY: &str = "Duplicate API key found";
const INVALID_CREDENTIALS: &str = "Unauthorized";

/// One of `key_names`, as a header name and as a query argument name.
#[derive(Debug)]
struct KeyName {
    /// `None` when the name cannot be a header name.
    header: Option<HeaderName>,
    query: String,
}

/// A compiled key-auth instance.
#[derive(Debug)]
pub struct KeyAuth {
    names: Vec<KeyName>,
    in_header: bool,
    in_query: bool,
    in_body: bool,
    hide_credentials: bool,
    run_on_preflight: bool,
    anonymous: Option<Anonymous>,
    challenge: HeaderValue,
    consumers: Arc<ConsumerIndex>,
}

impl PluginRuntime for KeyAuth {
    const PHASES: Phases = Phases::ACCESS;

    async fn access(&self, ctx: &mut RequestContext) -> Result<Decision, PluginError> {
        Ok(self.run(ctx))
    }

    fn reads_body(&self) -> bool {
        self.in_body
    }
}

/// The request body's arguments, as Kong's `kong.request.get_body` reads
/// them for the content types key-auth searches.
enum BodyArgs {
    /// `application/x-www-form-urlencoded` text.
    Form(String),
    /// `application/json` whose top level is an object.
    Json(serde_json::Map<String, serde_json::Value>),
    /// `multipart/form-data`: the body and its named parts.
    Multipart(bytes::Bytes, Vec<multipart::Part>),
    /// No body, another content type, or one that does not parse: no key
    /// can come from it (Kong logs and goes on with an empty table).
    None,
}

impl BodyArgs {
    fn read(ctx: &RequestContext) -> BodyArgs {
        let Some(body) = ctx.body.as_ref() else {
            return BodyArgs::None;
        };
        let content_type = ctx
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        // Kong's test: the media type (before any `;`), lowercased, starts
        // with the type's name.
        let media_type = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if media_type.starts_with("application/x-www-form-urlencoded") {
            match std::str::from_utf8(body) {
                Ok(text) => BodyArgs::Form(text.to_owned()),
                Err(_) => BodyArgs::None,
            }
        } else if media_type.starts_with("application/json") {
            match serde_json::from_slice(body) {
                Ok(serde_json::Value::Object(map)) => BodyArgs::Json(map),
                _ => BodyArgs::None,
            }
        } else if media_type.starts_with("multipart/form-data") {
            multipart::boundary(content_type)
                .and_then(|boundary| multipart::parse(body, boundary))
                .map_or(BodyArgs::None, |parts| {
                    BodyArgs::Multipart(body.clone(), parts)
                })
        } else {
            BodyArgs::None
        }
    }

    /// Kong's `body[name]`: a string is a key, an array or object (or a
    /// repeated form field or part) a duplicate, anything else no key.
    fn value(&self, name: &str) -> QueryValue {
        match self {
            BodyArgs::Form(text) => query_value(Some(text), name),
            BodyArgs::Json(map) => match map.get(name) {
                None => QueryValue::Absent,
                Some(serde_json::Value::String(key)) => QueryValue::One(key.clone()),
                Some(serde_json::Value::Array(_) | serde_json::Value::Object(_)) => {
                    QueryValue::Several
                }
                Some(_) => QueryValue::Flag,
            },
            BodyArgs::Multipart(body, parts) => {
                let mut named = parts.iter().filter(|p| p.name == name);
                match (named.next(), named.next()) {
                    (None, _) => QueryValue::Absent,
                    (Some(_), Some(_)) => QueryValue::Several,
                    // A key that is not UTF-8 matches no stored key.
                    (Some(part), None) => QueryValue::One(
                        String::from_utf8_lossy(&body[part.value.clone()]).into_owned(),
                    ),
                }
            }
            BodyArgs::None => QueryValue::Absent,
        }
    }

    /// The body without the field `name`, re-encoded (Kong's `set_body`);
    /// `None` when there is nothing to change.
    fn without(&self, name: &str) -> Option<bytes::Bytes> {
        match self {
            BodyArgs::Form(text) => {
                let kept = without_argument(text, name);
                (kept.len() != text.len()).then(|| bytes::Bytes::from(kept))
            }
            BodyArgs::Json(map) => {
                let mut map = map.clone();
                map.remove(name)?;
                serde_json::to_vec(&map).ok().map(bytes::Bytes::from)
            }
            BodyArgs::Multipart(body, parts) => parts
                .iter()
                .any(|p| p.name == name)
                .then(|| bytes::Bytes::from(multipart::without(body, parts, name))),
            BodyArgs::None => None,
        }
    }
}

impl KeyAuth {
    fn run(&self, ctx: &mut RequestContext) -> Decision {
        if self.anonymous.is_some() && ctx.credential.is_some() {
            // Another authentication plugin already succeeded; with
            // `anonymous` the plugins are alternatives (Kong's logical OR).
            return Decision::Continue;
        }
        // Before the preflight exemption, so that an OPTIONS request cannot
        // carry consumer headers of its own upstream either.
        identity::clear_consumer_headers(ctx);
        if !self.run_on_preflight && ctx.request.method == Method::OPTIONS {
            return Decision::Continue;
        }
        match self.authenticate(ctx) {
            Ok(()) => Decision::Continue,
            Err(message) => identity::fail(
                ctx,
                self.anonymous.as_ref(),
                &self.challenge,
                Unauthorized { message },
            ),
        }
    }

    fn authenticate(&self, ctx: &mut RequestContext) -> Result<(), &'static str> {
        let body = if self.in_body {
            BodyArgs::read(ctx)
        } else {
            BodyArgs::None
        };
        let (key, name) = self.find_key(ctx, &body)?;
        if self.hide_credentials {
            // Kong clears the argument, the header and the body field of
            // that name, wherever the key was found.
            if let Some(header) = &name.header {
                ctx.headers_mut().remove(header);
            }
            if ctx.request.uri.query().is_some() {
                remove_query_argument(ctx, &name.query);
            }
            if let Some(replaced) = body.without(&name.query) {
                ctx.body = Some(replaced);
                ctx.body_replaced = true;
            }
        }
        if key.is_empty() {
            return Err(NO_API_KEY);
        }
        let credential = self
            .consumers
            .key_credential(&key)
            .ok_or(INVALID_CREDENTIALS)?;
        if credential
            .expires_at
            .is_some_and(|at| crate::entity::now_seconds() >= at)
        {
            // Kong: an expired key is as good as none.
            return Err(INVALID_CREDENTIALS);
        }
        identity::set_consumer(
            ctx,
            &credential.identity,
            Some(CredentialRef {
                id: credential.id,
                identifier: Arc::clone(&credential.identifier),
                consumer: credential.consumer.id,
            }),
        );
        Ok(())
    }

    /// Kong's search: per name, the header, then the query string; the
    /// first string value wins. A value sent more than once is a duplicate;
    /// a query flag without `=` is not a string and is passed over.
    fn find_key(
        &self,
        ctx: &RequestContext,
        body: &BodyArgs,
    ) -> Result<(String, &KeyName), &'static str> {
        let query = ctx.request.uri.query();
        for name in &self.names {
            if self.in_header {
                if let Some(header) = &name.header {
                    let mut values = ctx.headers().get_all(header).iter();
                    if let Some(value) = values.next() {
                        if values.next().is_some() {
                            return Err(DUPLICATE_API_KEY);
                        }
                        // A key that is not UTF-8 matches no stored key.
                        let key = String::from_utf8_lossy(value.as_bytes()).into_owned();
                        return Ok((key, name));
                    }
                }
            }
            if self.in_query {
                match query_value(query, &name.query) {
                    QueryValue::Absent | QueryValue::Flag => {}
                    QueryValue::Several => return Err(DUPLICATE_API_KEY),
                    QueryValue::One(key) => return Ok((key, name)),
                }
            }
            if self.in_body {
                match body.value(&name.query) {
                    QueryValue::Absent | QueryValue::Flag => {}
                    QueryValue::Several => return Err(DUPLICATE_API_KEY),
                    QueryValue::One(key) => return Ok((key, name)),
                }
            }
        }
        Err(NO_API_KEY)
    }
}

/// What the query string holds under one argument name.
#[derive(Debug, PartialEq)]
enum QueryValue {
    Absent,
    /// `?name` without `=`: Kong sees `true`, not a key.
    Flag,
    Several,
    One(String),
}

/// Splits a query string into (decoded name, decoded value, had `=`).
fn query_pairs(query: &str) -> impl Iterator<Item = (String, String, bool)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|piece| {
        let has_value = piece.contains('=');
        let (name, value) = url::form_urlencoded::parse(piece.as_bytes())
            .next()
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .unwrap_or_default();
        (name, value, has_value)
    })
}

fn query_value(query: Option<&str>, name: &str) -> QueryValue {
    let Some(query) = query else {
        return QueryValue::Absent;
    };
    let mut found = QueryValue::Absent;
    for (arg, value, has_value) in query_pairs(query) {
        if arg != name {
            continue;
        }
        if found != QueryValue::Absent {
            return QueryValue::Several;
        }
        found = if has_value {
            QueryValue::One(value)
        } else {
            QueryValue::Flag
        };
    }
    found
}

/// Kong's `clear_query_arg`: the upstream query without `name`.
fn remove_query_argument(ctx: &mut RequestContext, name: &str) {
    let current = ctx
        .upstream_query
        .clone()
        .or_else(|| ctx.request.uri.query().map(str::to_owned))
        .unwrap_or_default();
    ctx.upstream_query = Some(without_argument(&current, name));
}

/// Form-encoded `text` without the arguments named `name`.
fn without_argument(text: &str, name: &str) -> String {
    let kept: Vec<&str> = text
        .split('&')
        .filter(|piece| {
            !piece.is_empty()
                && url::form_urlencoded::parse(piece.as_bytes())
                    .next()
                    .is_none_or(|(arg, _)| arg != name)
        })
        .collect();
    kept.join("&")
}

impl CompilePlugin<KeyAuthConfig> for KeyAuth {
    fn compile(
        config: &KeyAuthConfig,
        cx: &CompileContext<'_>,
    ) -> Result<Self, PluginCompileError> {
        let challenge = match &config.realm {
            None => HeaderValue::from_static("Key"),
            Some(realm) => {
                HeaderValue::from_str(&format!("Key realm=\"{}\"", identity::quoted(realm)))
                    .map_err(|_| {
                        PluginCompileError::Invalid(format!(
                            "config.realm: '{realm}' cannot be sent in a WWW-Authenticate header"
                        ))
                    })?
            }
        };
        Ok(KeyAuth {
            names: config
                .key_names
                .iter()
                .map(|name| KeyName {
                    header: HeaderName::from_bytes(name.as_bytes()).ok(),
                    query: name.clone(),
                })
                .collect(),
            in_header: config.key_in_header,
            in_query: config.key_in_query,
            in_body: config.key_in_body,
            hide_credentials: config.hide_credentials,
            run_on_preflight: config.run_on_preflight,
            anonymous: Anonymous::resolve(config.anonymous.as_deref(), cx.consumers),
            challenge,
            consumers: Arc::clone(cx.consumers),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{query_value, QueryValue};

    #[test]
    fn query_values_as_kong_reads_them() {
        let one = |q: &str| query_value(Some(q), "apikey");
        assert_eq!(one("apikey=abc"), QueryValue::One("abc".into()));
        assert_eq!(one("a=1&apikey=a%2Bb+c"), QueryValue::One("a+b c".into()));
        assert_eq!(one("apikey="), QueryValue::One(String::new()));
        assert_eq!(one("apikey"), QueryValue::Flag);
        assert_eq!(one("apikey=a&apikey=b"), QueryValue::Several);
        assert_eq!(one("apikey&apikey=b"), QueryValue::Several);
        assert_eq!(one("other=1"), QueryValue::Absent);
        assert_eq!(query_value(None, "apikey"), QueryValue::Absent);
    }
}
