//! The `acl` plugin (Kong priority 950; cannot be scoped to a consumer): its
//! config and schema (kong/plugins/acl/schema.lua) and its runtime
//! (kong/plugins/acl/handler.lua). It runs after an authentication plugin
//! identified a consumer and allows or denies by the consumer's groups (the
//! `acls` rows the compile step indexed). The verdict and the
//! `X-Consumer-Groups` value of every consumer with groups are computed once
//! per compile, so a request does one map lookup.

use crate::compile::ConsumerIndex;
use crate::runtime::{
    CompileContext, CompilePlugin, Decision, Phases, PluginCompileError, PluginError,
    PluginRuntime, Rejection, RejectionStyle, RequestContext,
};
use crate::schema::engine::{Check, CheckFailure, Field, Record, Subschema};
use crate::schema::typedefs::{self, HTTP_PROTOCOLS};
use http::header::{HeaderName, HeaderValue};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AclConfig {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub hide_groups_header: bool,
    /// Kong OSS: use groups another plugin authenticated even when a
    /// consumer is known. Tollgate has no plugin that authenticates groups,
    /// so this changes nothing yet.
    pub always_use_authenticated_groups: bool,
    /// Kong Gateway: also match the consumer's consumer groups. Tollgate has
    /// no consumer groups, so this changes nothing yet.
    pub include_consumer_groups: bool,
}

pub(crate) fn subschema() -> Subschema {
    let groups = |name: &'static str| Field::array(name, Field::string(""));
    let config = Record::new(vec![
        groups("allow"),
        groups("deny"),
        Field::boolean("hide_groups_header")
            .required()
            .default(json!(false)),
        Field::boolean("always_use_authenticated_groups")
            .required()
            .default(json!(false)),
        Field::boolean("include_consumer_groups")
            .required()
            .default(json!(false)),
    ]);
    Subschema {
        fields: vec![
            typedefs::no_consumer(),
            typedefs::protocols(&HTTP_PROTOCOLS, &HTTP_PROTOCOLS),
            Field::record("config", config),
        ],
        checks: vec![
            Check::Custom {
                sources: vec!["config.allow", "config.deny"],
                run: only_one_of,
            },
            Check::AtLeastOneOf(vec!["config.allow", "config.deny"]),
        ],
    }
}

/// Kong's `only_one_of = { "config.allow", "config.deny" }`.
fn only_one_of(entity: &Map<String, Value>) -> Result<(), CheckFailure> {
    let set = |name: &str| {
        entity
            .get("config")
            .and_then(|c| c.get(name))
            .is_some_and(|v| !v.is_null())
    };
    if set("allow") && set("deny") {
        return Err(CheckFailure {
            field: None,
            entity: Some(
                "only one of these fields must be non-empty: 'config.allow', 'config.deny'".into(),
            ),
        });
    }
    Ok(())
}

/// Kong's `X-Consumer-Groups`.
pub const CONSUMER_GROUPS: HeaderName = HeaderName::from_static("x-consumer-groups");

const CANNOT_CONSUME: &str = "You cannot consume this service";

/// What the plugin does for one consumer.
#[derive(Debug, Clone)]
enum Verdict {
    Blocked,
    /// Allowed; the `X-Consumer-Groups` value unless the header is hidden.
    Allowed(Option<HeaderValue>),
}

/// A compiled acl instance.
#[derive(Debug)]
pub struct Acl {
    deny_list: bool,
    hide_groups_header: bool,
    /// Consumers with at least one group.
    by_consumer: HashMap<Uuid, Verdict>,
}

impl PluginRuntime for Acl {
    const PHASES: Phases = Phases::ACCESS;

    async fn access(&self, ctx: &mut RequestContext) -> Result<Decision, PluginError> {
        Ok(self.run(ctx))
    }
}

fn reject(status: StatusCode, message: &'static str) -> Decision {
    Decision::Respond(Rejection {
        status,
        message: Cow::Borrowed(message),
        style: RejectionStyle::Error,
    })
}

impl Acl {
    fn run(&self, ctx: &mut RequestContext) -> Decision {
        // Only this plugin may tell the upstream a consumer's groups.
        ctx.headers_mut().remove(CONSUMER_GROUPS);
        let consumer = ctx
            .consumer
            .as_ref()
            .map(|c| c.id)
            .or_else(|| ctx.credential.as_ref().map(|c| c.consumer));
        let Some(consumer) = consumer else {
            return if ctx.credential.is_some() {
                reject(StatusCode::FORBIDDEN, CANNOT_CONSUME)
            } else {
                reject(StatusCode::UNAUTHORIZED, "Unauthorized")
            };
        };
        let verdict = match self.by_consumer.get(&consumer) {
            Some(verdict) => verdict.clone(),
            // Without groups a deny list lets the consumer through (with an
            // empty header, as Kong); an allow list does not.
            None if self.deny_list => {
                Verdict::Allowed((!self.hide_groups_header).then(|| HeaderValue::from_static("")))
            }
            None if ctx.credential.is_some() => {
                return reject(StatusCode::FORBIDDEN, CANNOT_CONSUME)
            }
            None => return reject(StatusCode::UNAUTHORIZED, "Unauthorized"),
        };
        match verdict {
            Verdict::Blocked => reject(StatusCode::FORBIDDEN, CANNOT_CONSUME),
            Verdict::Allowed(header) => {
                if let Some(value) = header {
                    ctx.headers_mut().insert(CONSUMER_GROUPS, value);
                }
                Decision::Continue
            }
        }
    }
}

impl CompilePlugin<AclConfig> for Acl {
    fn compile(config: &AclConfig, cx: &CompileContext<'_>) -> Result<Self, PluginCompileError> {
        // Kong: a deny list with at least one entry makes it a deny list.
        let deny_list = config.deny.as_ref().is_some_and(|d| !d.is_empty());
        let listed: &[String] = if deny_list {
            config.deny.as_deref().unwrap_or_default()
        } else {
            config.allow.as_deref().unwrap_or_default()
        };
        let consumers: &ConsumerIndex = cx.consumers;
        let mut by_consumer = HashMap::new();
        for consumer in consumers.iter() {
            let Some(groups) = consumers.groups(&consumer.id) else {
                continue;
            };
            let in_group = listed.iter().any(|g| groups.contains(g));
            let verdict = if in_group == deny_list {
                Verdict::Blocked
            } else if config.hide_groups_header {
                Verdict::Allowed(None)
            } else {
                // The acls schema refuses control characters, so this holds;
                // should it not, the header is left out rather than the
                // whole config refused.
                let joined = groups.join(", ");
                Verdict::Allowed(HeaderValue::from_bytes(joined.as_bytes()).ok())
            };
            by_consumer.insert(consumer.id, verdict);
        }
        Ok(Acl {
            deny_list,
            hide_groups_header: config.hide_groups_header,
            by_consumer,
        })
    }
}
