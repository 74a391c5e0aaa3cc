//! What key-auth and basic-auth share once they decided who a request is:
//! Kong's `set_consumer` (the upstream consumer headers set or cleared, the
//! consumer and credential recorded in the context) and the `anonymous`
//! fallback with Kong's logical OR/AND between authentication plugins
//! (kong/plugins/key-auth/handler.lua, kong/plugins/basic-auth/access.lua).

use super::jwt::consumer_headers;
use crate::compile::ConsumerIndex;
use crate::entity::Consumer;
use crate::runtime::{CredentialRef, Decision, Rejection, RejectionStyle, RequestContext};
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::StatusCode;
use std::borrow::Cow;
use std::sync::Arc;

/// The credential that identified a consumer, with its header value.
pub(crate) struct Presented<'a> {
    pub credential: CredentialRef,
    /// `X-Credential-Identifier`: key-auth sends the credential's id,
    /// basic-auth its username.
    pub identifier: &'a str,
}

/// Kong's `set_consumer(consumer, credential)`: the consumer's headers set or
/// removed, `X-Credential-Identifier` for a credential, `X-Anonymous-Consumer:
/// true` without one.
pub(crate) fn set_consumer(
    ctx: &mut RequestContext,
    consumer: &Arc<Consumer>,
    credential: Option<Presented<'_>>,
) {
    let header = |text: &str| HeaderValue::from_str(text).ok();
    let id = header(&consumer.id.to_string());
    let custom_id = consumer.custom_id.as_deref().and_then(header);
    let username = consumer.username.as_deref().and_then(header);
    let identifier = credential.as_ref().and_then(|c| header(c.identifier));
    let headers = ctx.headers_mut();
    for (name, value) in [
        (consumer_headers::CONSUMER_ID, id),
        (consumer_headers::CONSUMER_CUSTOM_ID, custom_id),
        (consumer_headers::CONSUMER_USERNAME, username),
        (consumer_headers::CREDENTIAL_IDENTIFIER, identifier),
    ] {
        match value {
            Some(value) => {
                headers.insert(name, value);
            }
            None => {
                headers.remove(name);
            }
        }
    }
    if credential.is_some() {
        headers.remove(consumer_headers::ANONYMOUS);
    } else {
        headers.insert(
            consumer_headers::ANONYMOUS,
            HeaderValue::from_static("true"),
        );
    }
    ctx.consumer = Some(Arc::clone(consumer));
    ctx.credential = credential.map(|c| c.credential);
}

/// An instance's `anonymous` consumer, resolved at compile time.
#[derive(Debug)]
pub(crate) enum Anonymous {
    Found(Arc<Consumer>),
    /// Named but not in the config: Kong's 500 with this message.
    Missing(String),
}

impl Anonymous {
    pub(crate) fn resolve(name: Option<&str>, consumers: &ConsumerIndex) -> Option<Anonymous> {
        name.map(|name| match consumers.by_id_or_username(name) {
            Some(consumer) => Anonymous::Found(Arc::clone(consumer)),
            None => Anonymous::Missing(format!(
                "anonymous consumer {name} is configured but doesn't exist"
            )),
        })
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
        Some(Anonymous::Found(consumer)) => {
            set_consumer(ctx, consumer, None);
            Decision::Continue
        }
        Some(Anonymous::Missing(message)) => Decision::Respond(Rejection {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: Cow::Owned(message.clone()),
            style: RejectionStyle::Error,
        }),
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
    for name in consumer_headers::ALL {
        ctx.headers_mut().remove(name);
    }
}

/// A realm as a quoted-string: backslashes and quotes escaped.
pub(crate) fn quoted(realm: &str) -> String {
    realm.replace('\\', "\\\\").replace('"', "\\\"")
}
