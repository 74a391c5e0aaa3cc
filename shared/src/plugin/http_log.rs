//! The `http-log` plugin: config (Kong priority 12), including the shared
//! `queue` record and the deprecated pre-queue fields.

use super::null_as_default;
use crate::schema::engine::{Field, Record, Rule, Subschema};
use crate::schema::service::parse_url;
use crate::schema::typedefs::{self, strings, HTTP_PROTOCOLS, PROTOCOLS};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

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
    /// The queue settings with the deprecated `queue_size`/`flush_timeout`
    /// applied where the queue record kept its default, as Kong does.
    pub fn effective_queue(&self) -> QueueConfig {
        let mut queue = self.queue.clone();
        let defaults = QueueConfig::default();
        if let Some(size) = self.queue_size {
            if size != 1 && queue.max_batch_size == defaults.max_batch_size {
                queue.max_batch_size = size;
            }
        }
        if let Some(delay) = self.flush_timeout {
            if delay != 2.0 && queue.max_coalescing_delay == defaults.max_coalescing_delay {
                queue.max_coalescing_delay = delay;
            }
        }
        queue
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
        typedefs::lua_code("custom_fields_by_lua"),
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
