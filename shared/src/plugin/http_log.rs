//! The `http-log` plugin (Kong priority 12, kong-compat §7.3): its config,
//! including the shared `queue` record and the deprecated pre-queue fields,
//! its schema, and its runtime: the log phase only puts the request's log
//! record on the queue of its [`HttpLogTarget`]; batching, retries and the
//! bounded memory are the queue's business (the data plane's
//! `plugins/http_log.rs`), so nothing here is on the request's latency path
//! beyond one copy of the record into the queue.
//!
//! Compile turns the config into the target: the endpoint split as Kong's
//! LuaSocket parser splits it (userinfo becomes `Authorization: Basic
//! base64(userinfo)`, sent exactly as written, as Kong does), the deprecated
//! `queue_size`/`flush_timeout` mapped onto the queue as Kong's
//! `Queue.get_plugin_params` does (a value other than the old default wins
//! over `queue.*`), times turned into durations.

use super::null_as_default;
use crate::runtime::{
    CompileContext, CompilePlugin, HttpLogTarget, LogQueue, Phases, PluginCompileError,
    PluginRuntime, QueueSettings, RequestContext,
};
use crate::schema::engine::{Field, Record, Rule, Subschema};
use crate::schema::service::parse_url;
use crate::schema::typedefs::{self, strings, HTTP_PROTOCOLS, PROTOCOLS};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpLogMethod {
    #[default]
    Post,
    Put,
    Patch,
}

impl HttpLogMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpLogMethod::Post => "POST",
            HttpLogMethod::Put => "PUT",
            HttpLogMethod::Patch => "PATCH",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpLogConfig {
    /// Where batches are sent; userinfo becomes `Authorization: Basic …`.
    pub http_endpoint: String,
    #[serde(deserialize_with = "null_as_default")]
    pub method: HttpLogMethod,
    #[serde(deserialize_with = "null_as_default")]
    pub content_type: String,
    /// Milliseconds.
    #[serde(deserialize_with = "null_as_default")]
    pub timeout: f64,
    /// Milliseconds a pooled connection may stay idle.
    #[serde(deserialize_with = "null_as_default")]
    pub keepalive: f64,
    /// Deprecated: has no effect.
    pub retry_count: Option<i64>,
    /// Deprecated: `queue.max_batch_size`.
    pub queue_size: Option<i64>,
    /// Deprecated: `queue.max_coalescing_delay` (seconds).
    pub flush_timeout: Option<f64>,
    pub headers: Option<BTreeMap<String, String>>,
    pub queue: QueueConfig,
    /// Accepted for compatibility; Tollgate runs no Lua.
    pub custom_fields_by_lua: Option<BTreeMap<String, String>>,
}

impl Default for HttpLogConfig {
    fn default() -> Self {
        Self {
            http_endpoint: String::new(),
            method: HttpLogMethod::Post,
            content_type: "application/json".into(),
            timeout: 10000.0,
            keepalive: 60000.0,
            retry_count: None,
            queue_size: None,
            flush_timeout: None,
            headers: None,
            queue: QueueConfig::default(),
            custom_fields_by_lua: None,
        }
    }
}

impl HttpLogConfig {
    /// The queue settings with the deprecated fields mapped as Kong's
    /// `Queue.get_plugin_params` does: `queue_size` other than its old default
    /// 1 replaces `queue.max_batch_size`, `flush_timeout` other than its old
    /// default 2 replaces `queue.max_coalescing_delay` (the deprecated value
    /// wins even over an explicit `queue.*`); `retry_count` has no effect.
    pub fn effective_queue(&self) -> QueueConfig {
        let mut queue = self.queue.clone();
        if let Some(size) = self.queue_size.filter(|&size| size != 1) {
            queue.max_batch_size = size;
        }
        if let Some(delay) = self.flush_timeout.filter(|&delay| delay != 2.0) {
            queue.max_coalescing_delay = delay;
        }
        queue
    }

    /// The queue identity this config sends to (see the module docs).
    pub fn target(&self) -> Result<HttpLogTarget, String> {
        let parts = parse_url(&self.http_endpoint);
        let tls = match parts.scheme.as_deref() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            _ => return Err("http_endpoint: expected an http or https URL".into()),
        };
        let host = parts
            .host
            .ok_or_else(|| "http_endpoint: missing host in url".to_string())?;
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        http::uri::Authority::try_from(bracketed.as_str())
            .map_err(|_| format!("http_endpoint: invalid host '{host}'"))?;
        let port = match parts.port.as_deref() {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&port| port > 0)
                .ok_or_else(|| format!("http_endpoint: invalid port '{port}'"))?,
        };
        let path_and_query = request_target(&self.http_endpoint);
        http::uri::PathAndQuery::try_from(path_and_query.as_str())
            .map_err(|e| format!("http_endpoint: invalid path: {e}"))?;
        let authorization = parts.userinfo.map(|userinfo| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(userinfo)
            )
        });
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .flatten()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        for (name, value) in &headers {
            http::HeaderName::try_from(name.as_str())
                .map_err(|_| format!("headers: invalid header name '{name}'"))?;
            http::HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("headers: invalid value for header '{name}'"))?;
        }
        let queue = self.effective_queue();
        let count = |value: i64| usize::try_from(value.max(1)).unwrap_or(usize::MAX);
        Ok(HttpLogTarget {
            tls,
            host,
            port,
            path_and_query,
            method: self.method.as_str(),
            content_type: self.content_type.clone(),
            authorization,
            headers,
            timeout: milliseconds(self.timeout).unwrap_or(NO_TIMEOUT_SET),
            keepalive: milliseconds(self.keepalive).unwrap_or(Duration::ZERO),
            queue: QueueSettings {
                max_batch_size: count(queue.max_batch_size),
                max_coalescing_delay: seconds(queue.max_coalescing_delay),
                max_entries: count(queue.max_entries),
                max_bytes: queue.max_bytes.map(count),
                max_retry_time: seconds(queue.max_retry_time),
                initial_retry_delay: seconds(queue.initial_retry_delay),
                max_retry_delay: seconds(queue.max_retry_delay),
                unbounded_concurrency: queue.concurrency_limit == -1,
            },
        })
    }
}

/// The pre-queue fields Kong's schema marks deprecated, with each one's old
/// default (a value equal to it is not a use) and Kong's message.
const DEPRECATED_FIELDS: [(&str, f64, &str); 3] = [
    (
        "retry_count",
        10.0,
        "http-log: config.retry_count no longer works, please use config.queue.max_retry_time instead",
    ),
    (
        "queue_size",
        1.0,
        "http-log: config.queue_size is deprecated, please use config.queue.max_batch_size instead",
    ),
    (
        "flush_timeout",
        2.0,
        "http-log: config.flush_timeout is deprecated, please use config.queue.max_coalescing_delay instead",
    ),
];

/// Kong's deprecation messages for the deprecated fields a raw http-log
/// config uses: set (not null) to something other than the field's old
/// default, the rule of Kong's schema validator.
pub fn deprecations(config: &Value) -> Vec<&'static str> {
    DEPRECATED_FIELDS
        .iter()
        .filter(|(field, old_default, _)| match config.get(field) {
            None | Some(Value::Null) => false,
            Some(value) => value.as_f64() != Some(*old_default),
        })
        .map(|(_, _, message)| *message)
        .collect()
}

/// The longest wait a setting turns into (a year: "forever" for a log
/// queue, and far from any arithmetic overflow).
const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// A `timeout` of zero or less: nginx's cosocket default (60 s), which is
/// what Kong's `set_timeout(0)` falls back to.
const NO_TIMEOUT_SET: Duration = Duration::from_secs(60);

/// Seconds as a duration: negative (Kong's `-1`) or NaN is zero, huge values
/// are capped.
fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0))
        .unwrap_or(LONGEST_WAIT)
        .min(LONGEST_WAIT)
}

/// Positive milliseconds as a duration; `None` for zero or less.
fn milliseconds(value: f64) -> Option<Duration> {
    (value > 0.0).then(|| seconds(value / 1000.0))
}

/// The endpoint's path and query as sent (at least `/`; the fragment never
/// leaves). Kong's sender drops the query; keeping it is deliberate (see
/// ARCHITECTURE.md): collectors take tokens and index names there.
fn request_target(endpoint: &str) -> String {
    let without_fragment = endpoint.split_once('#').map_or(endpoint, |(url, _)| url);
    let after_scheme = without_fragment
        .split_once("//")
        .map_or(without_fragment, |(_, rest)| rest);
    // The authority ends at the first `/`, as in `parse_url`.
    match after_scheme.find('/') {
        Some(start) => after_scheme[start..].to_string(),
        None => "/".to_string(),
    }
}

/// A compiled `http-log` instance: the queue of its target.
#[derive(Debug)]
pub struct HttpLog {
    queue: Arc<dyn LogQueue>,
}

impl PluginRuntime for HttpLog {
    const PHASES: Phases = Phases::LOG_RECORD;

    fn log(&self, ctx: &RequestContext) {
        self.queue.enqueue(ctx.log_record());
    }
}

impl CompilePlugin<HttpLogConfig> for HttpLog {
    fn compile(
        config: &HttpLogConfig,
        cx: &CompileContext<'_>,
    ) -> Result<Self, PluginCompileError> {
        let target = config.target().map_err(PluginCompileError::Invalid)?;
        let queue = cx
            .resources
            .log_queue(&target)
            .map_err(PluginCompileError::Resource)?;
        Ok(HttpLog { queue })
    }
}

/// Tollgate runs no Lua, so a non-empty `custom_fields_by_lua` would be
/// silently ignored; it is refused instead.
fn refuse_lua(value: &Value) -> Result<(), String> {
    match value.as_object() {
        Some(fields) if !fields.is_empty() => Err(
            "not supported: Tollgate runs no Lua; remove custom_fields_by_lua (the log record has Kong's standard fields)"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// Kong's plugin queue settings (`kong/tools/queue_schema.lua`). Times are seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    #[serde(deserialize_with = "null_as_default")]
    pub max_batch_size: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub max_coalescing_delay: f64,
    #[serde(deserialize_with = "null_as_default")]
    pub max_entries: i64,
    pub max_bytes: Option<i64>,
    /// −1 disables retries.
    #[serde(deserialize_with = "null_as_default")]
    pub max_retry_time: f64,
    #[serde(deserialize_with = "null_as_default")]
    pub initial_retry_delay: f64,
    #[serde(deserialize_with = "null_as_default")]
    pub max_retry_delay: f64,
    /// 1 (one batch in flight) or −1 (unbounded).
    #[serde(deserialize_with = "null_as_default")]
    pub concurrency_limit: i64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 1,
            max_coalescing_delay: 1.0,
            max_entries: 10000,
            max_bytes: None,
            max_retry_time: 60.0,
            initial_retry_delay: 0.01,
            max_retry_delay: 60.0,
            concurrency_limit: 1,
        }
    }
}

pub(crate) fn queue_record() -> Record {
    Record::new(vec![
        Field::integer("max_batch_size")
            .default(json!(1))
            .rule(Rule::Between(1.0, 1_000_000.0)),
        Field::number("max_coalescing_delay")
            .default(json!(1))
            .rule(Rule::Between(0.0, 3600.0)),
        Field::integer("max_entries")
            .default(json!(10000))
            .rule(Rule::Between(1.0, 1_000_000.0)),
        Field::integer("max_bytes"),
        Field::number("max_retry_time").default(json!(60)),
        Field::number("initial_retry_delay")
            .default(json!(0.01))
            .rule(Rule::Between(0.001, 1_000_000.0)),
        Field::number("max_retry_delay")
            .default(json!(60))
            .rule(Rule::Between(0.001, 1_000_000.0)),
        Field::integer("concurrency_limit")
            .default(json!(1))
            .rule(Rule::OneOf(vec![json!(-1), json!(1)])),
    ])
}

/// Kong's `url` typedef, narrowed to what the log sender can reach.
fn check_endpoint(value: &Value) -> Result<(), String> {
    let parts = parse_url(value.as_str().unwrap_or_default());
    if parts.host.is_none() {
        return Err("missing host in url".into());
    }
    match parts.scheme.as_deref() {
        None => Err("missing scheme in url".into()),
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => Ok(()),
        Some(s) => Err(format!(
            "unsupported scheme in url: '{s}' (expected http or https)"
        )),
    }
}

fn check_header_not_reserved(value: &Value) -> Result<(), String> {
    let name = value.as_str().unwrap_or_default();
    for reserved in ["Host", "Content-Length", "Content-Type"] {
        if name.eq_ignore_ascii_case(reserved) {
            return Err(format!("cannot contain '{reserved}' header"));
        }
    }
    Ok(())
}

/// Credentials may come from the URL's userinfo or a header, not both.
fn check_authorization(config: &Value) -> Result<(), String> {
    let endpoint = config
        .get("http_endpoint")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let has_userinfo = parse_url(endpoint).userinfo.is_some();
    let has_authorization = config
        .get("headers")
        .and_then(Value::as_object)
        .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("authorization")));
    if has_userinfo && has_authorization {
        Err("specifying both an 'Authorization' header and user info in 'http_endpoint' is not allowed".into())
    } else {
        Ok(())
    }
}

pub(crate) fn subschema() -> Subschema {
    let config = Record::new(vec![
        Field::string("http_endpoint")
            .required()
            .rule(Rule::Custom(check_endpoint)),
        Field::string("method")
            .default(json!("POST"))
            .rule(Rule::OneOf(strings(&["POST", "PUT", "PATCH"]))),
        Field::string("content_type")
            .default(json!("application/json"))
            .rule(Rule::OneOf(strings(&[
                "application/json",
                "application/json; charset=utf-8",
            ]))),
        Field::number("timeout").default(json!(10000)),
        Field::number("keepalive").default(json!(60000)),
        Field::integer("retry_count"),
        Field::integer("queue_size"),
        Field::number("flush_timeout"),
        Field::map(
            "headers",
            Field::string("")
                .rule(Rule::Pattern(check_header_not_reserved))
                .rule(Rule::Custom(typedefs::check_header_name)),
            Field::string(""),
        ),
        Field::record("queue", queue_record()),
        typedefs::lua_code("custom_fields_by_lua").rule(Rule::Custom(refuse_lua)),
    ])
    .custom(check_authorization);
    Subschema {
        fields: vec![
            typedefs::protocols(&PROTOCOLS, &HTTP_PROTOCOLS),
            Field::record("config", config),
        ],
        checks: vec![],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn deprecated_fields_are_reported_unless_null_or_at_their_old_default() {
        assert!(deprecations(&json!({"http_endpoint": "http://c/"})).is_empty());
        assert!(
            deprecations(&json!({"retry_count": null, "queue_size": 1, "flush_timeout": 2.0}))
                .is_empty()
        );
        assert_eq!(
            deprecations(&json!({"retry_count": 10, "queue_size": 5, "flush_timeout": 2})),
            vec![
                "http-log: config.queue_size is deprecated, please use config.queue.max_batch_size instead"
            ]
        );
        let all = deprecations(&json!({"retry_count": 3, "queue_size": 5, "flush_timeout": 0.5}));
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all[0].contains("config.retry_count no longer works"));
        assert!(all[2].contains("config.queue.max_coalescing_delay"));
    }
}
