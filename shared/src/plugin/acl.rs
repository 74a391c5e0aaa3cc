//! The `acl` plugin (Kong priority 950; cannot be scoped to a consumer): its
//! config and schema (kong/plugins/acl/schema.lua) and its runtime
//! (kong/plugins/acl/handler.lua, kong/plugins/acl/groups.lua). It runs after
//! an authentication plugin identified a consumer and allows or denies by the
//! consumer's groups (the `acls` rows the compile step indexed), or by the
//! groups a plugin authenticated for the request
//! ([`RequestContext::authenticated_groups`]) when there is no consumer, the
//! consumer came without a credential (anonymous), or
//! `always_use_authenticated_groups` is set. The verdict and the
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
    /// Kong OSS: the groups a plugin authenticated for the request take
    /// precedence over the groups of a consumer identified with a
    /// credential (without it they only do for an anonymous consumer).
    pub always_use_authenticated_groups: bool,
    /// Kong Gateway (Enterprise): consumer groups count as groups too.
    /// Tollgate has no consumer groups, so every consumer's set of them is
    /// empty and the flag cannot change a verdict (see ARCHITECTURE.md).
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

/// Kong's `X-Authenticated-Groups`: sent instead of `X-Consumer-Groups` when
/// the verdict came from the request's authenticated groups.
pub const AUTHENTICATED_GROUPS: HeaderName = HeaderName::from_static("x-authenticated-groups");

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
    always_use_authenticated_groups: bool,
    /// `deny` for a deny list, else `allow`.
    listed: Vec<String>,
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

/// Kong's answer when no groups decide: 403 when a credential was
/// presented, else 401.
fn unidentified(ctx: &RequestContext) -> Decision {
    if ctx.credential.is_some() {
        reject(StatusCode::FORBIDDEN, CANNOT_CONSUME)
    } else {
        reject(StatusCode::UNAUTHORIZED, "Unauthorized")
    }
}

impl Acl {
    fn run(&self, ctx: &mut RequestContext) -> Decision {
        // Only the gateway may tell the upstream a consumer's groups: a
        // client's copies go, and so does a client's `X-Authenticated-Groups`
        // unless a plugin authenticated groups for this request.
        ctx.headers_mut().remove(CONSUMER_GROUPS);
        if ctx.authenticated_groups.is_none() {
            ctx.headers_mut().remove(AUTHENTICATED_GROUPS);
        }
        let consumer = ctx
            .consumer
            .as_ref()
            .map(|c| c.id)
            .or_else(|| ctx.credential.as_ref().map(|c| c.consumer));
        // Kong: authenticated groups decide when there is no consumer, when
        // the consumer has no credential (anonymous), or always with
        // `always_use_authenticated_groups`; a consumer's own groups
        // otherwise, and when no groups were authenticated.
        let use_authenticated =
            consumer.is_none() || ctx.credential.is_none() || self.always_use_authenticated_groups;
        if use_authenticated {
            if let Some(groups) = ctx.authenticated_groups.clone() {
                return self.by_authenticated_groups(ctx, &groups);
            }
        }
        let Some(consumer) = consumer else {
            return unidentified(ctx);
        };
        let verdict = match self.by_consumer.get(&consumer) {
            Some(verdict) => verdict.clone(),
            // Without groups a deny list lets the consumer through (with an
            // empty header, as Kong); an allow list does not.
            None if self.deny_list => {
                Verdict::Allowed((!self.hide_groups_header).then(|| HeaderValue::from_static("")))
            }
            None => return unidentified(ctx),
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

    /// Kong's verdict on the request's authenticated groups (an empty list
    /// counts: it is in no group), sent upstream as
    /// `X-Authenticated-Groups`.
    fn by_authenticated_groups(&self, ctx: &mut RequestContext, groups: &[String]) -> Decision {
        let in_group = self.listed.iter().any(|g| groups.contains(g));
        if in_group == self.deny_list {
            return reject(StatusCode::FORBIDDEN, CANNOT_CONSUME);
        }
        if !self.hide_groups_header {
            // A group that cannot be a header value leaves the header out
            // rather than failing the request.
            if let Ok(value) = HeaderValue::from_str(&groups.join(", ")) {
                ctx.headers_mut().insert(AUTHENTICATED_GROUPS, value);
            }
        }
        Decision::Continue
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
            always_use_authenticated_groups: config.always_use_authenticated_groups,
            listed: listed.to_vec(),
            by_consumer,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Kong's handler decision table, with and without authenticated groups.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::runtime::{CredentialRef, Protocol, Resources};
    use std::sync::Arc;

    const ALICE: u128 = 1;
    const BOB: u128 = 2;

    fn config() -> crate::Config {
        let consumer = |n: u128, name: &str| {
            serde_json::from_value(json!({
                "id": Uuid::from_u128(n), "created_at": 1, "updated_at": 1,
                "username": name, "custom_id": null, "tags": null
            }))
            .unwrap()
        };
        let acl = |n: u128, consumer: u128, group: &str| {
            serde_json::from_value(json!({
                "id": Uuid::from_u128(n), "created_at": n, "consumer": {"id": Uuid::from_u128(consumer)},
                "group": group, "tags": null
            }))
            .unwrap()
        };
        crate::Config {
            // Alice is in `gold`; Bob has no groups.
            consumers: vec![consumer(ALICE, "alice"), consumer(BOB, "bob")],
            acls: vec![acl(10, ALICE, "gold")],
            ..crate::Config::default()
        }
    }

    fn acl(plugin_config: Value) -> Acl {
        let config = config();
        let consumers = Arc::new(ConsumerIndex::for_config(&config));
        let instance: crate::Plugin = serde_json::from_value(json!({
            "id": Uuid::from_u128(99), "created_at": 1, "updated_at": 1, "name": "acl",
            "instance_name": null, "config": plugin_config, "route": null, "service": null,
            "consumer": null, "protocols": ["http", "https"], "enabled": true, "tags": null
        }))
        .unwrap();
        let crate::PluginSpec::Acl(acl_config) = crate::PluginSpec::from_plugin(&instance).unwrap()
        else {
            panic!("not an acl spec");
        };
        let resources = Resources::check_only();
        let cx = CompileContext {
            config: &config,
            instance: &instance,
            consumers: &consumers,
            resources: &resources,
        };
        Acl::compile(&acl_config, &cx).unwrap()
    }

    /// Who the request is: a consumer (with or without a credential) and
    /// the groups a plugin authenticated.
    struct Request {
        consumer: Option<u128>,
        credential: bool,
        groups: Option<&'static [&'static str]>,
    }

    fn run(
        acl: &Acl,
        who: Request,
        client_headers: &[(&str, &str)],
    ) -> (Decision, http::HeaderMap) {
        let mut builder = http::Request::builder().uri("/");
        for (name, value) in client_headers {
            builder = builder.header(*name, *value);
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        let ip = "127.0.0.1".parse().unwrap();
        let mut ctx = RequestContext::new(
            parts,
            ip,
            ip,
            Protocol::Http,
            HeaderValue::from_static("0"),
            std::time::Instant::now(),
        );
        let index = ConsumerIndex::for_config(&config());
        if let Some(n) = who.consumer {
            ctx.consumer = index.by_id(&Uuid::from_u128(n)).cloned();
            if who.credential {
                ctx.credential = Some(CredentialRef {
                    id: Uuid::from_u128(50),
                    identifier: "cred".into(),
                    consumer: Uuid::from_u128(n),
                });
            }
        }
        ctx.authenticated_groups = who
            .groups
            .map(|g| g.iter().map(|s| s.to_string()).collect::<Arc<[String]>>());
        let decision = acl.run(&mut ctx);
        (decision, ctx.request.headers)
    }

    fn status(decision: &Decision) -> Option<u16> {
        match decision {
            Decision::Continue => None,
            Decision::Respond(rejection) => Some(rejection.status.as_u16()),
        }
    }

    fn who(
        consumer: Option<u128>,
        credential: bool,
        groups: Option<&'static [&'static str]>,
    ) -> Request {
        Request {
            consumer,
            credential,
            groups,
        }
    }

    #[test]
    fn without_authenticated_groups_the_consumer_groups_decide() {
        let allow_gold = acl(json!({"allow": ["gold"]}));
        let (d, headers) = run(&allow_gold, who(Some(ALICE), true, None), &[]);
        assert_eq!(status(&d), None);
        assert_eq!(headers[CONSUMER_GROUPS], "gold");
        assert_eq!(
            status(&run(&allow_gold, who(Some(BOB), true, None), &[]).0),
            Some(403)
        );
        assert_eq!(
            status(&run(&allow_gold, who(Some(BOB), false, None), &[]).0),
            Some(401)
        );
        assert_eq!(
            status(&run(&allow_gold, who(None, false, None), &[]).0),
            Some(401)
        );
    }

    #[test]
    fn authenticated_groups_decide_without_a_consumer() {
        let allow_gold = acl(json!({"allow": ["gold"]}));
        let (d, headers) = run(
            &allow_gold,
            who(None, false, Some(&["silver", "gold"])),
            &[],
        );
        assert_eq!(status(&d), None);
        assert_eq!(headers[AUTHENTICATED_GROUPS], "silver, gold");
        assert!(headers.get(CONSUMER_GROUPS).is_none());
        let (d, _) = run(&allow_gold, who(None, false, Some(&["silver"])), &[]);
        assert_eq!(status(&d), Some(403));
        // An empty list is in no group: a deny list lets it through.
        let deny_gold = acl(json!({"deny": ["gold"]}));
        let (d, headers) = run(&deny_gold, who(None, false, Some(&[])), &[]);
        assert_eq!(status(&d), None);
        assert_eq!(headers[AUTHENTICATED_GROUPS], "");
    }

    #[test]
    fn authenticated_groups_override_an_anonymous_consumer() {
        // A consumer without a credential (anonymous): authenticated groups
        // win even without always_use_authenticated_groups.
        let allow_silver = acl(json!({"allow": ["silver"]}));
        let (d, headers) = run(
            &allow_silver,
            who(Some(ALICE), false, Some(&["silver"])),
            &[],
        );
        assert_eq!(status(&d), None);
        assert_eq!(headers[AUTHENTICATED_GROUPS], "silver");
        assert!(headers.get(CONSUMER_GROUPS).is_none());
    }

    #[test]
    fn a_credential_consumer_keeps_its_groups_unless_always_use_authenticated_groups() {
        let plain = acl(json!({"allow": ["silver"]}));
        // Alice (gold) with a credential: her groups decide, silver does not count.
        let (d, _) = run(&plain, who(Some(ALICE), true, Some(&["silver"])), &[]);
        assert_eq!(status(&d), Some(403));
        let always = acl(json!({"allow": ["silver"], "always_use_authenticated_groups": true}));
        let (d, headers) = run(&always, who(Some(ALICE), true, Some(&["silver"])), &[]);
        assert_eq!(status(&d), None);
        assert_eq!(headers[AUTHENTICATED_GROUPS], "silver");
        // Without authenticated groups the flag falls back to the consumer's.
        let always_gold = acl(json!({"allow": ["gold"], "always_use_authenticated_groups": true}));
        let (d, headers) = run(&always_gold, who(Some(ALICE), true, None), &[]);
        assert_eq!(status(&d), None);
        assert_eq!(headers[CONSUMER_GROUPS], "gold");
        // A deny list blocks by the authenticated groups too.
        let deny = acl(json!({"deny": ["silver"], "always_use_authenticated_groups": true}));
        let (d, _) = run(&deny, who(Some(ALICE), true, Some(&["silver"])), &[]);
        assert_eq!(status(&d), Some(403));
    }

    #[test]
    fn hidden_and_smuggled_group_headers() {
        let hidden = acl(json!({"allow": ["gold"], "hide_groups_header": true}));
        let smuggled = [
            ("x-consumer-groups", "admin"),
            ("x-authenticated-groups", "admin"),
        ];
        let (d, headers) = run(&hidden, who(None, false, Some(&["gold"])), &smuggled);
        assert_eq!(status(&d), None);
        assert!(headers.get(CONSUMER_GROUPS).is_none());
        // Groups were authenticated: the plugin that did so owns that header
        // (Kong's session plugin sets it), acl leaves it alone.
        assert_eq!(headers[AUTHENTICATED_GROUPS], "admin");
        let (d, headers) = run(&hidden, who(Some(ALICE), true, None), &smuggled);
        assert_eq!(status(&d), None);
        assert!(headers.get(CONSUMER_GROUPS).is_none());
        assert!(headers.get(AUTHENTICATED_GROUPS).is_none());
    }

    #[test]
    fn include_consumer_groups_changes_no_verdict() {
        for flag in [false, true] {
            let acl = acl(json!({"allow": ["gold"], "include_consumer_groups": flag}));
            assert_eq!(
                status(&run(&acl, who(Some(ALICE), true, None), &[]).0),
                None
            );
            assert_eq!(
                status(&run(&acl, who(Some(BOB), true, None), &[]).0),
                Some(403)
            );
        }
    }
}
