//! What the authentication plugins (jwt, key-auth, basic-auth) share once
//! they decided who a request is: the upstream consumer headers
//! (kong-compat §5.5), Kong's `set_consumer` (those headers set or cleared,
//! the consumer and credential recorded in the context), the client's own
//! copies of them removed before authenticating, and the `anonymous`
//! fallback with Kong's logical OR between authentication plugins
//! (kong/plugins/jwt/handler.lua, kong/plugins/key-auth/handler.lua,
//! kong/plugins/basic-auth/access.lua). This is the only place those
//! headers are written.

use crate::compile::ConsumerIndex;
use crate::entity::Consumer;
use crate::runtime::{
    ConsumerHeaders, CredentialRef, Decision, Rejection, RejectionStyle, RequestContext,
};
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::StatusCode;
use std::borrow::Cow;
use std::sync::Arc;

/// The upstream headers an authentication plugin owns (kong-compat §5.5).
pub mod consumer_headers {
    use http::header::HeaderName;

    /// The names, once: the constants below and [`is_one`] read them.
    const NAMES: [&str; 5] = [
        "x-consumer-id",
        "x-consumer-custom-id",
        "x-consumer-username",
        "x-credential-identifier",
        "x-anonymous-consumer",
    ];

    pub const CONSUMER_ID: HeaderName = HeaderName::from_static(NAMES[0]);
    pub const CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static(NAMES[1]);
    pub const CONSUMER_USERNAME: HeaderName = HeaderName::from_static(NAMES[2]);
    pub const CREDENTIAL_IDENTIFIER: HeaderName = HeaderName::from_static(NAMES[3]);
    pub const ANONYMOUS: HeaderName = HeaderName::from_static(NAMES[4]);

    /// Every header above: cleared before authentication so a client can
    /// never send them upstream itself.
    pub const ALL: [HeaderName; 5] = [
        CONSUMER_ID,
        CONSUMER_CUSTOM_ID,
        CONSUMER_USERNAME,
        CREDENTIAL_IDENTIFIER,
        ANONYMOUS,
    ];

    /// Whether `name` is one of [`ALL`]. Compares text: a `HeaderName`
    /// constant is built and dropped at each use, which costs more than
    /// the comparison.
    pub fn is_one(name: &HeaderName) -> bool {
        let name = name.as_str();
        // Standard names (most of a request's) never start with `x-`.
        name.starts_with("x-") && NAMES.contains(&name)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn is_one_knows_every_consumer_header_and_nothing_else() {
            assert!(ALL.iter().all(is_one));
            for other in ["host", "x-consumer-groups", "x-consumer", "authorization"] {
                assert!(!is_one(&HeaderName::from_static(other)), "{other}");
            }
        }
    }
}

/// A consumer as one credential (or the anonymous fallback) identifies it,
/// with its upstream headers and its log record JSON, prepared once where
/// the plugin can (the jwt credential index, key-auth keys in
/// `ConsumerIndex`, an `anonymous` consumer) so that a request only takes
/// references to them.
#[derive(Debug)]
pub(crate) struct Identity {
    pub consumer: Arc<Consumer>,
    headers: Arc<ConsumerHeaders>,
    /// The consumer as the log record shows it; `None` for an identity made
    /// for one request, whose log renders the consumer itself if it logs.
    json: Option<Arc<str>>,
}

/// A consumer as the log record shows it.
pub(crate) fn consumer_json(consumer: &Consumer) -> Option<Arc<str>> {
    serde_json::to_string(consumer).ok().map(Arc::from)
}

/// How a consumer was identified, for its upstream headers.
#[derive(Clone, Copy)]
pub(crate) enum Presenting<'a> {
    /// By a credential with this `X-Credential-Identifier` value (`None`: a
    /// value that cannot be a header, so the header is left out).
    Credential(Option<&'a HeaderValue>),
    /// As the `anonymous` consumer: `X-Anonymous-Consumer: true`.
    Anonymous,
}

impl Identity {
    /// An identity kept in a compiled plugin: headers and JSON rendered now.
    pub(crate) fn new(consumer: &Arc<Consumer>, presenting: Presenting<'_>) -> Identity {
        Identity::with_json(consumer, presenting, consumer_json(consumer))
    }

    /// [`Identity::new`] with the consumer's JSON already rendered (one
    /// rendering shared by every key of a consumer).
    pub(crate) fn with_json(
        consumer: &Arc<Consumer>,
        presenting: Presenting<'_>,
        json: Option<Arc<str>>,
    ) -> Identity {
        let mut identity = Identity::for_one_request(consumer, presenting);
        identity.json = json;
        identity
    }

    fn for_one_request(consumer: &Arc<Consumer>, presenting: Presenting<'_>) -> Identity {
        let value = |text: Option<&str>| text.and_then(|t| HeaderValue::from_str(t).ok());
        let mut fields = Vec::with_capacity(4);
        for (name, value) in [
            (
                consumer_headers::CONSUMER_ID,
                value(Some(&consumer.id.to_string())),
            ),
            (
                consumer_headers::CONSUMER_CUSTOM_ID,
                value(consumer.custom_id.as_deref()),
            ),
            (
                consumer_headers::CONSUMER_USERNAME,
                value(consumer.username.as_deref()),
            ),
        ] {
            if let Some(value) = value {
                fields.push((name, value));
            }
        }
        match presenting {
            Presenting::Credential(Some(identifier)) => {
                fields.push((consumer_headers::CREDENTIAL_IDENTIFIER, identifier.clone()));
            }
            Presenting::Credential(None) => {}
            Presenting::Anonymous => fields.push((
                consumer_headers::ANONYMOUS,
                HeaderValue::from_static("true"),
            )),
        }
        Identity {
            consumer: Arc::clone(consumer),
            headers: Arc::new(ConsumerHeaders::new(fields)),
            json: None,
        }
    }
}

/// The credential that identified a consumer, with its header value.
pub(crate) struct Presented {
    pub credential: CredentialRef,
    /// `X-Credential-Identifier`: jwt sends the credential's `key`, key-auth
    /// the credential's id, basic-auth its username. `None` (a value that
    /// cannot be a header) leaves the header out.
    pub identifier: Option<HeaderValue>,
}

/// Kong's `set_consumer(consumer, credential)`: the consumer's headers set
/// (those without a value stay absent), `X-Credential-Identifier` for a
/// credential, `X-Anonymous-Consumer: true` without one (as `identity` was
/// prepared), and the consumer and credential recorded in the context.
/// Called after [`clear_consumer_headers`] in the same access phase, so the
/// header map holds none of those names.
pub(crate) fn set_consumer(
    ctx: &mut RequestContext,
    identity: &Identity,
    credential: Option<CredentialRef>,
) {
    debug_assert!(!ctx.headers().keys().any(consumer_headers::is_one));
    ctx.consumer_headers = Some(Arc::clone(&identity.headers));
    ctx.consumer = Some(Arc::clone(&identity.consumer));
    ctx.consumer_json = identity.json.clone();
    ctx.credential = credential;
}

/// [`set_consumer`] for a consumer whose headers were not prepared.
pub(crate) fn set_consumer_of(
    ctx: &mut RequestContext,
    consumer: &Arc<Consumer>,
    credential: Option<Presented>,
) {
    let presenting = match &credential {
        Some(presented) => Presenting::Credential(presented.identifier.as_ref()),
        None => Presenting::Anonymous,
    };
    let identity = Identity::for_one_request(consumer, presenting);
    set_consumer(ctx, &identity, credential.map(|c| c.credential));
}

/// An instance's `anonymous` consumer, resolved at compile time.
#[derive(Debug)]
pub(crate) enum Anonymous {
    Found(Identity),
    /// Named but not in the config: Kong's 500 with this message.
    Missing(String),
}

impl Anonymous {
    pub(crate) fn resolve(name: Option<&str>, consumers: &ConsumerIndex) -> Option<Anonymous> {
        name.map(|name| match consumers.by_id_or_username(name) {
            Some(consumer) => Anonymous::Found(Identity::new(consumer, Presenting::Anonymous)),
            None => Anonymous::Missing(format!(
                "anonymous consumer {name} is configured but doesn't exist"
            )),
        })
    }

    /// The request goes on as the anonymous consumer, or gets Kong's 500
    /// when that consumer does not exist.
    pub(crate) fn apply(&self, ctx: &mut RequestContext) -> Decision {
        match self {
            Anonymous::Found(identity) => {
                set_consumer(ctx, identity, None);
                Decision::Continue
            }
            Anonymous::Missing(message) => Decision::Respond(Rejection {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: Cow::Owned(message.clone()),
                style: RejectionStyle::Error,
            }),
        }
    }
}

/// A 401 with its `WWW-Authenticate` challenge, sent by `kong.response.error`.
pub(crate) struct Unauthorized {
    pub message: &'static str,
}

/// The end of an authentication plugin's access phase once authentication
/// failed: the anonymous consumer when configured (logical OR), else the 401.
pub(crate) fn fail(
    ctx: &mut RequestContext,
    anonymous: Option<&Anonymous>,
    challenge: &HeaderValue,
    failure: Unauthorized,
) -> Decision {
    match anonymous {
        Some(anonymous) => anonymous.apply(ctx),
        None => {
            ctx.response_headers
                .insert(WWW_AUTHENTICATE, challenge.clone());
            Decision::Respond(Rejection {
                status: StatusCode::UNAUTHORIZED,
                message: Cow::Borrowed(failure.message),
                style: RejectionStyle::Error,
            })
        }
    }
}

/// Removes the consumer headers a client sent, so that only what an
/// authentication plugin sets ever reaches the upstream.
pub(crate) fn clear_consumer_headers(ctx: &mut RequestContext) {
    // One pass over the names the client sent (a handful) is much cheaper
    // than five hashed removes of headers that are almost never there.
    let sent = ctx.headers().keys().any(consumer_headers::is_one);
    if sent {
        let headers = ctx.headers_mut();
        for name in consumer_headers::ALL {
            headers.remove(name);
        }
    }
    ctx.consumer_headers = None;
}

/// A realm as a quoted-string: backslashes and quotes escaped.
pub(crate) fn quoted(realm: &str) -> String {
    realm.replace('\\', "\\\\").replace('"', "\\\"")
}
