//! The `rate-limiting` plugin (Kong priority 910, kong-compat §4): config,
//! schema (with the shared Redis record and the deprecated flat `redis_*`
//! shorthands) and runtime: identifiers by `limit_by`, fixed or sliding
//! windows, Kong's decision rule and headers, counted per node (`local`,
//! [`local`]) or in Redis with one script call per request (`redis`).

mod batch;
mod identifier;
mod local;
mod window;

pub use local::LocalCounters;
pub use window::{decide, window_start, PeriodUsage, RenderedLimits, Verdict};

use super::null_as_default;
use crate::runtime::{
    ClusterPeers, CompileContext, CompilePlugin, Decision, Phases, PluginCompileError, PluginError,
    PluginRuntime, RedisFailure, RedisScript, RedisServer, RedisTls, Rejection, RejectionStyle,
    RequestContext, Resources, ScriptCall,
};
use crate::schema::engine::{Check, Field, Match, Record, Rule, Shorthand, Subschema};
use crate::schema::typedefs::{self, strings, HTTP_PROTOCOLS};
use http::{HeaderName, StatusCode};
use identifier::Identifier;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

/// What a request is counted against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitBy {
    #[default]
    Consumer,
    Credential,
    Ip,
    Service,
    Header,
    Path,
}

/// Where counters live. Kong's `cluster` policy needs a database on the data
/// plane, which Tollgate (like Kong's hybrid mode) does not offer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitPolicy {
    #[default]
    Local,
    Redis,
}

/// How a window's count is judged. `fixed` is Kong's; `sliding` (Tollgate,
/// as Kong Enterprise) adds the previous window's count weighted by how much
/// of it a window-long span ending now still covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitAlgorithm {
    #[default]
    Fixed,
    Sliding,
}

/// What the `redis` policy does while Redis does not answer. Unset, Kong's
/// `fault_tolerant` decides (`true`: fail open, `false`: fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisFailureMode {
    /// Proxy without limiting and without rate-limit headers.
    FailOpen,
    /// Answer Kong's 500.
    FailClosed,
    /// Count on this node until Redis answers again.
    Local,
}

/// A rate-limiting window, shortest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Year,
}

impl Period {
    pub const ALL: [Period; 6] = [
        Period::Second,
        Period::Minute,
        Period::Hour,
        Period::Day,
        Period::Month,
        Period::Year,
    ];

    /// Kong's name of the period (`minute`), as in config keys and counter keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Second => "second",
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
            Period::Year => "year",
        }
    }

    /// The window length Kong uses for counter expiry (a month is 30 days,
    /// a year 365).
    pub fn seconds(self) -> u64 {
        match self {
            Period::Second => 1,
            Period::Minute => 60,
            Period::Hour => 3600,
            Period::Day => 86_400,
            Period::Month => 2_592_000,
            Period::Year => 31_536_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitingConfig {
    pub second: Option<f64>,
    pub minute: Option<f64>,
    pub hour: Option<f64>,
    pub day: Option<f64>,
    pub month: Option<f64>,
    pub year: Option<f64>,
    #[serde(deserialize_with = "null_as_default")]
    pub limit_by: LimitBy,
    pub header_name: Option<String>,
    pub path: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub policy: RateLimitPolicy,
    #[serde(deserialize_with = "null_as_default")]
    pub algorithm: RateLimitAlgorithm,
    pub fault_tolerant: bool,
    pub redis: RedisConfig,
    pub hide_client_headers: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub error_code: f64,
    #[serde(deserialize_with = "null_as_default")]
    pub error_message: String,
    /// −1: count synchronously in the store; otherwise seconds between syncs.
    pub sync_rate: f64,
}

impl Default for RateLimitingConfig {
    fn default() -> Self {
        Self {
            second: None,
            minute: None,
            hour: None,
            day: None,
            month: None,
            year: None,
            limit_by: LimitBy::Consumer,
            header_name: None,
            path: None,
            policy: RateLimitPolicy::Local,
            algorithm: RateLimitAlgorithm::Fixed,
            fault_tolerant: true,
            redis: RedisConfig::default(),
            hide_client_headers: false,
            error_code: 429.0,
            error_message: "API rate limit exceeded".into(),
            sync_rate: -1.0,
        }
    }
}

impl RateLimitingConfig {
    /// The configured limit of `period`, if any.
    pub fn limit(&self, period: Period) -> Option<f64> {
        match period {
            Period::Second => self.second,
            Period::Minute => self.minute,
            Period::Hour => self.hour,
            Period::Day => self.day,
            Period::Month => self.month,
            Period::Year => self.year,
        }
    }

    /// Every configured `(period, limit)`, shortest period first.
    pub fn limits(&self) -> Vec<(Period, f64)> {
        Period::ALL
            .into_iter()
            .filter_map(|p| self.limit(p).map(|l| (p, l)))
            .collect()
    }
}

/// Kong's shared Redis connection record (`kong/tools/redis/schema.lua`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    pub host: Option<String>,
    pub port: Option<i64>,
    /// Milliseconds.
    pub timeout: Option<i64>,
    pub username: Option<String>,
    pub password: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub database: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub ssl: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub ssl_verify: bool,
    pub server_name: Option<String>,
    /// Tollgate: what to do while Redis does not answer.
    pub failure_mode: Option<RedisFailureMode>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: Some(6379),
            timeout: Some(2000),
            username: None,
            password: None,
            database: 0,
            ssl: false,
            ssl_verify: false,
            server_name: None,
            failure_mode: None,
        }
    }
}

pub(crate) fn redis_record() -> Record {
    Record::new(vec![
        typedefs::host("host"),
        typedefs::port("port").default(json!(6379)),
        typedefs::timeout("timeout").default(json!(2000)),
        Field::string("username"),
        Field::string("password").rule(Rule::LenMin(0)),
        Field::integer("database").default(json!(0)),
        Field::boolean("ssl").default(json!(false)),
        Field::boolean("ssl_verify").default(json!(false)),
        typedefs::sni("server_name"),
        Field::string("failure_mode").rule(Rule::OneOf(strings(&[
            "fail_open",
            "fail_closed",
            "local",
        ]))),
    ])
}

/// Kong's hybrid control plane offers `local` and `redis` only; `cluster`
/// gets a message saying why.
fn check_policy(value: &Value) -> Result<(), String> {
    match value.as_str() {
        Some("local" | "redis") | None => Ok(()),
        Some("cluster") => Err(
            "expected one of: local, redis (the cluster policy counts in a \
             database, which data planes do not have; use redis to share limits between them)"
                .into(),
        ),
        Some(_) => Err("expected one of: local, redis".into()),
    }
}

/// A `redis.<key>` partial record, for the legacy flat shorthands.
fn redis_partial(key: &str, value: &Value) -> Map<String, Value> {
    let mut redis = Map::new();
    redis.insert(key.to_string(), value.clone());
    let mut out = Map::new();
    out.insert("redis".into(), Value::Object(redis));
    out
}

macro_rules! redis_shorthands {
    ($($key:literal : $field:expr),* $(,)?) => {
        vec![$(Shorthand {
            field: $field,
            expand: |value| redis_partial($key, value),
            deprecated: true,
            mirror: Some(&["redis", $key]),
        }),*]
    };
}

fn legacy_redis_shorthands() -> Vec<Shorthand> {
    redis_shorthands![
        "host": Field::string("redis_host"),
        "port": Field::integer("redis_port"),
        "password": Field::string("redis_password").rule(Rule::LenMin(0)),
        "username": Field::string("redis_username"),
        "ssl": Field::boolean("redis_ssl"),
        "ssl_verify": Field::boolean("redis_ssl_verify"),
        "server_name": Field::string("redis_server_name"),
        "timeout": Field::integer("redis_timeout"),
        "database": Field::integer("redis_database"),
    ]
}

/// A longer window may not allow fewer requests than a shorter one; the
/// sync rate only makes sense with Redis.
fn check_config(config: &Value) -> Result<(), String> {
    let limit = |p: Period| config.get(p.as_str()).and_then(Value::as_f64);
    for (i, shorter) in Period::ALL.iter().enumerate() {
        let Some(low) = limit(*shorter) else {
            continue;
        };
        for longer in &Period::ALL[i + 1..] {
            if let Some(high) = limit(*longer) {
                if high < low {
                    return Err(format!(
                        "The limit for {}({high:.1}) cannot be lower than the limit for {}({low:.1})",
                        longer.as_str(),
                        shorter.as_str()
                    ));
                }
            }
        }
    }
    let redis = config.get("policy").and_then(Value::as_str) == Some("redis");
    let sync_rate = config
        .get("sync_rate")
        .and_then(Value::as_f64)
        .unwrap_or(-1.0);
    if !redis && sync_rate != -1.0 {
        return Err("sync_rate can only be used with the redis policy".into());
    }
    if redis && sync_rate != -1.0 && sync_rate < 0.02 {
        return Err("sync_rate must be greater than 0.02, or -1 to disable".into());
    }
    Ok(())
}

pub(crate) fn subschema() -> Subschema {
    let limit = |name: &'static str| Field::number(name).rule(Rule::Gt(0.0));
    let config = Record::new(vec![
        limit("second"),
        limit("minute"),
        limit("hour"),
        limit("day"),
        limit("month"),
        limit("year"),
        Field::string("limit_by")
            .default(json!("consumer"))
            .rule(Rule::OneOf(strings(&[
                "consumer",
                "credential",
                "ip",
                "service",
                "header",
                "path",
            ]))),
        typedefs::header_name("header_name"),
        typedefs::path("path"),
        Field::string("policy")
            .default(json!("local"))
            .rule(Rule::LenMin(0))
            .rule(Rule::Custom(check_policy)),
        Field::string("algorithm")
            .default(json!("fixed"))
            .rule(Rule::OneOf(strings(&["fixed", "sliding"]))),
        Field::boolean("fault_tolerant")
            .required()
            .default(json!(true)),
        Field::record("redis", redis_record()),
        Field::boolean("hide_client_headers")
            .required()
            .default(json!(false)),
        Field::number("error_code")
            .default(json!(429))
            .rule(Rule::Gt(0.0)),
        Field::string("error_message").default(json!("API rate limit exceeded")),
        Field::number("sync_rate").required().default(json!(-1)),
    ])
    .shorthands(legacy_redis_shorthands())
    .custom(check_config);

    let when = |if_field: &'static str, value: &'static str, then_field: &'static str| {
        Check::Conditional {
            if_field,
            if_match: Match::Eq(json!(value)),
            then_field,
            then_required: true,
            then_rules: vec![],
            then_err: None,
        }
    };
    Subschema {
        fields: vec![
            typedefs::protocols(&HTTP_PROTOCOLS, &HTTP_PROTOCOLS),
            Field::record("config", config),
        ],
        checks: vec![
            Check::AtLeastOneOf(vec![
                "config.second",
                "config.minute",
                "config.hour",
                "config.day",
                "config.month",
                "config.year",
            ]),
            when("config.policy", "redis", "config.redis.host"),
            when("config.policy", "redis", "config.redis.port"),
            when("config.policy", "redis", "config.redis.timeout"),
            when("config.limit_by", "header", "config.header_name"),
            when("config.limit_by", "path", "config.path"),
        ],
    }
}

/// The counting script of the `redis` policy with fixed windows: one call
/// per request for every configured period. KEYS: per period the current
/// window's counter. ARGV: per period its limit, then per period the Unix
/// second its counter may expire at. Each counter is incremented (expiry set
/// on creation); when any period has no request left, every increment is
/// taken back, so rejected requests are not counted (as the `local` policy,
/// unlike Kong's Redis policy). Returns per period the count including this
/// request. Redis runs it in about 3 µs, a quarter less than
/// [`REDIS_SLIDING_SCRIPT`] with a weight of 0 (no GET, no weight to parse),
/// time a Redis sharing the proxy's machine takes from it.
const REDIS_FIXED_SCRIPT: &str = r"
local n = #KEYS
local out = {}
local over = false
for i = 1, n do
  local count = redis.call('INCR', KEYS[i])
  if count == 1 then
    redis.call('EXPIREAT', KEYS[i], ARGV[n + i])
  end
  out[i] = count
  if count > tonumber(ARGV[i]) then
    over = true
  end
end
if over then
  for i = 1, n do
    redis.call('DECR', KEYS[i])
  end
end
return out
";

/// The counting script of the `redis` policy with sliding windows. KEYS:
/// per period the current window's counter, then the previous window's.
/// ARGV: per period its limit, the Unix second its counter may expire at,
/// and the previous window's weight. As [`REDIS_FIXED_SCRIPT`], except that
/// a period's usage adds the previous window's count times its weight;
/// returns per period the count including this request and the previous
/// window's count.
const REDIS_SLIDING_SCRIPT: &str = r"
local out = {}
local over = false
for i = 1, #KEYS / 2 do
  local key = KEYS[2 * i - 1]
  local count = redis.call('INCR', key)
  if count == 1 then
    redis.call('EXPIREAT', key, ARGV[3 * i - 1])
  end
  local previous = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  out[2 * i - 1] = count
  out[2 * i] = previous
  local usage = count - 1 + math.floor(previous * tonumber(ARGV[3 * i]))
  if usage >= tonumber(ARGV[3 * i - 2]) then
    over = true
  end
end
if over then
  for i = 1, #KEYS / 2 do
    redis.call('DECR', KEYS[2 * i - 1])
  end
end
return out
";

/// The key of the node-wide table of the `local` policy.
const LOCAL_TABLE: &str = "rate-limiting/local";

/// The node's `local` policy table (also the Redis policies' fallback), if
/// some compiled config uses it now: its eviction counts are node metrics.
pub fn local_table(resources: &Resources) -> Option<Arc<LocalCounters>> {
    resources.keyed_live::<LocalCounters>(LOCAL_TABLE)
}

/// Where the counts live.
#[derive(Debug)]
enum Store {
    Local(Arc<LocalCounters>),
    Redis {
        script: Arc<dyn RedisScript>,
        timeout: Duration,
        on_failure: RedisFailureMode,
        /// Counts while Redis is down, with failure mode `local`.
        fallback: Arc<LocalCounters>,
        /// The cluster's size, to enforce this node's share while Redis is down.
        peers: Arc<ClusterPeers>,
        /// `sync_rate > 0`: counts cached here, synced periodically.
        batched: Option<Batched>,
    },
}

/// The `sync_rate` machinery of one instance.
#[derive(Debug)]
struct Batched {
    batch: Arc<batch::Batch>,
    sync: Arc<dyn RedisScript>,
    every_ms: i64,
}

/// What a Redis key usually takes: prefix, scope (two uuids), identifier,
/// window start and period.
const REDIS_KEY_CAPACITY: usize = 160;

/// One period's counters in Redis for this request.
struct RedisWindow {
    period: Period,
    limit: f64,
    /// Where the current window starts (its counter's name ends with it).
    start: i64,
    /// Sliding: where the previous window starts.
    previous_start: Option<i64>,
    weight: f64,
    expires_s: i64,
}

/// A request's identifier as it names Redis counters. A uuid or an address
/// (written by us, in a fixed alphabet) is used as it is, as in Kong's keys;
/// a header value or a path is replaced by a digest, so no client value can
/// shape another key (or make one long). The two forms never look alike: a
/// digest is 32 hex digits, a uuid has hyphens, an address dots or colons.
enum RedisIdentifier<'i> {
    Ours(&'i [u8]),
    Digest([u8; 32]),
}

impl RedisIdentifier<'_> {
    fn of<'i>(id: &'i Identifier<'_>) -> RedisIdentifier<'i> {
        match id {
            Identifier::Inline { .. } => RedisIdentifier::Ours(id),
            Identifier::Borrowed(bytes) => {
                let mut digest = [0u8; 32];
                // Cannot fail: 16 bytes fill exactly 32 hex digits.
                let _ = hex::encode_to_slice(&Sha256::digest(bytes)[..16], &mut digest);
                RedisIdentifier::Digest(digest)
            }
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            RedisIdentifier::Ours(bytes) => bytes,
            RedisIdentifier::Digest(digest) => digest,
        }
    }
}

/// Adds a number argument: whole numbers (limits in practice) by itoa, a
/// fraction (a limit or a sliding weight) as Rust prints it, which Lua's
/// `tonumber` reads.
fn number_arg(call: &mut ScriptCall, value: f64) {
    match window::as_whole(value) {
        Some(whole) => call.arg(&[itoa::Buffer::new().format(whole).as_bytes()]),
        None => call.arg(&[window::format_number(value).as_bytes()]),
    };
}

/// A compiled rate-limiting instance.
#[derive(Debug)]
pub struct RateLimiting {
    limits: Vec<(Period, f64)>,
    rendered_limits: RenderedLimits,
    limit_by: LimitBy,
    header_name: Option<HeaderName>,
    path: Option<String>,
    /// `<route id>:<service id>` of the plugin entity (nil UUIDs when unset).
    scope: String,
    /// The node table's identity hasher with `scope` already fed, cloned
    /// per request of the `local` policy (and Redis's `local` fallback).
    local_scope: DefaultHasher,
    sliding: bool,
    hide_client_headers: bool,
    rejection: Rejection,
    store: Store,
}

/// Why a rate-limiting config cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitingError {
    #[error("config.error_code: {0} is not an HTTP status code")]
    InvalidStatus(String),
    #[error("config.header_name: '{0}' is not a valid header name")]
    InvalidHeaderName(String),
    #[error("config.redis.port: {0} is not a TCP port")]
    InvalidPort(i64),
    #[error("config: at least one limit must be set")]
    NoLimit,
    #[error("config.redis: {0}")]
    Redis(String),
}

/// What a request is counted as: Kong's identifier, before hashing.
fn identifier<'a>(plugin: &'a RateLimiting, ctx: &'a RequestContext) -> Identifier<'a> {
    let id = Identifier::uuid;
    let chosen = match plugin.limit_by {
        LimitBy::Consumer => ctx
            .consumer
            .as_ref()
            .map(|c| c.id)
            .or(ctx.credential.as_ref().map(|c| c.id))
            .map(id),
        LimitBy::Credential => ctx.credential.as_ref().map(|c| id(c.id)),
        LimitBy::Ip => None,
        LimitBy::Service => ctx.service.as_ref().map(|s| id(s.id)),
        LimitBy::Header => plugin
            .header_name
            .as_ref()
            .and_then(|name| ctx.upstream_header(name.as_str()))
            .map(|value| Identifier::Borrowed(value.as_bytes())),
        // Kong's quirk: only a request for exactly `path` counts by path; every
        // other request counts by client address.
        LimitBy::Path => plugin
            .path
            .as_deref()
            .filter(|wanted| request_path_is(ctx, wanted))
            .map(|wanted| Identifier::Borrowed(wanted.as_bytes())),
    };
    chosen.unwrap_or_else(|| Identifier::address(ctx.client_ip))
}

/// Whether the request's normalized path is `wanted` (Kong's `get_path`).
fn request_path_is(ctx: &RequestContext, wanted: &str) -> bool {
    let raw = ctx.request.uri.path();
    raw == wanted || crate::router::normalize_path(raw).is_ok_and(|normalized| normalized == wanted)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// When a window's counter may be forgotten: at its end, or (sliding) one
/// window later, when it stops being the previous window.
fn expiry_ms(period: Period, now_ms: i64, sliding: bool) -> i64 {
    let end = window::next_window_start(period, now_ms);
    if sliding {
        window::next_window_start(period, end)
    } else {
        end
    }
}

impl RateLimiting {
    /// Counts the request in the node's table and judges it.
    fn count_locally(
        &self,
        table: &LocalCounters,
        id: &[u8],
        limits: &[(Period, f64)],
        now: i64,
    ) -> Verdict {
        let mut hasher = self.local_scope.clone();
        hasher.write(id);
        let identity = hasher.finish();
        let limits = &limits[..limits.len().min(window::MAX_PERIODS)];
        let unset = PeriodUsage {
            period: Period::Second,
            limit: 0.0,
            usage: 0.0,
        };
        let mut usages = [unset; window::MAX_PERIODS];
        let mut counted = [None; window::MAX_PERIODS];
        for (index, &(period, limit)) in limits.iter().enumerate() {
            let tag = period as u8;
            let key = table.window_key(identity, tag, window_start(period, now));
            let count = table.increment(key, expiry_ms(period, now, self.sliding), now);
            counted[index] = Some(key);
            let (previous, weight) = if self.sliding {
                let previous_start = window::previous_window_start(period, now);
                let previous = table.get(table.window_key(identity, tag, previous_start));
                (previous, window::previous_weight(period, now))
            } else {
                (0, 0.0)
            };
            usages[index] = PeriodUsage {
                period,
                limit,
                usage: window::usage(count.saturating_sub(1), previous, weight),
            };
        }
        let verdict = decide(&usages[..limits.len()], now);
        if verdict.rejected {
            for key in counted.into_iter().flatten() {
                table.decrement(key);
            }
        }
        verdict
    }

    /// The Redis counters of every configured period for this request.
    fn redis_windows(&self, now: i64) -> Vec<RedisWindow> {
        self.limits
            .iter()
            .map(|&(period, limit)| {
                let (previous_start, weight) = if self.sliding {
                    (
                        Some(window::previous_window_start(period, now)),
                        window::previous_weight(period, now),
                    )
                } else {
                    (None, 0.0)
                };
                RedisWindow {
                    period,
                    limit,
                    start: window_start(period, now),
                    previous_start,
                    weight,
                    expires_s: (expiry_ms(period, now, self.sliding) + 999).div_euclid(1000),
                }
            })
            .collect()
    }

    /// Calls `with` with the parts of the name of a counter in Redis:
    /// `ratelimit:<route>:<service>:<identifier>:<window start>:<period>`.
    fn with_redis_key<T>(
        &self,
        id: &RedisIdentifier,
        start: i64,
        period: Period,
        with: impl FnOnce(&[&[u8]]) -> T,
    ) -> T {
        let mut digits = itoa::Buffer::new();
        with(&[
            b"ratelimit:",
            self.scope.as_bytes(),
            b":",
            id.as_bytes(),
            b":",
            digits.format(start).as_bytes(),
            b":",
            period.as_str().as_bytes(),
        ])
    }

    /// The name of a counter in Redis, as text (the `sync_rate` cache's key).
    fn redis_key(&self, id: &RedisIdentifier, start: i64, period: Period) -> String {
        self.with_redis_key(id, start, period, |parts| {
            String::from_utf8_lossy(&parts.concat()).into_owned()
        })
    }

    /// Counts the request in Redis (one script call) and judges it.
    async fn count_in_redis(
        &self,
        script: &dyn RedisScript,
        timeout: Duration,
        id: &Identifier<'_>,
        now: i64,
    ) -> Result<Verdict, RedisFailure> {
        let id = RedisIdentifier::of(id);
        let windows = self.redis_windows(now);
        let mut call = ScriptCall::with_capacity(windows.len() * 2 * REDIS_KEY_CAPACITY);
        for window in &windows {
            self.with_redis_key(&id, window.start, window.period, |key| call.key(key));
            if let Some(previous) = window.previous_start {
                self.with_redis_key(&id, previous, window.period, |key| call.key(key));
            }
        }
        let expiry = |call: &mut ScriptCall, window: &RedisWindow| {
            call.arg(&[itoa::Buffer::new().format(window.expires_s).as_bytes()]);
        };
        if self.sliding {
            for window in &windows {
                number_arg(&mut call, window.limit);
                expiry(&mut call, window);
                number_arg(&mut call, window.weight);
            }
        } else {
            for window in &windows {
                number_arg(&mut call, window.limit);
            }
            for window in &windows {
                expiry(&mut call, window);
            }
        }
        let reply = script.eval(&call, timeout).await?;
        // Per period: the count, and (sliding) the previous window's.
        let per_period = if self.sliding { 2 } else { 1 };
        if reply.len() != windows.len() * per_period {
            return Err(RedisFailure::Failed(format!(
                "unexpected script reply of {} values",
                reply.len()
            )));
        }
        let usages: Vec<PeriodUsage> = windows
            .iter()
            .zip(reply.chunks(per_period))
            .map(|(window, values)| {
                let count = u64::try_from(values[0]).unwrap_or(0);
                let previous = values.get(1).map_or(0, |&v| u64::try_from(v).unwrap_or(0));
                PeriodUsage {
                    period: window.period,
                    limit: window.limit,
                    usage: window::usage(count.saturating_sub(1), previous, window.weight),
                }
            })
            .collect();
        Ok(decide(&usages, now))
    }

    /// `sync_rate > 0`: judges the request by the counts cached here, reading
    /// unknown counters from Redis first and syncing when due.
    async fn count_batched(
        &self,
        batched: &Batched,
        script: &dyn RedisScript,
        timeout: Duration,
        id: &Identifier<'_>,
        now: i64,
    ) -> Result<Verdict, RedisFailure> {
        let redis_id = RedisIdentifier::of(id);
        let windows = self.redis_windows(now);
        let mut keys = Vec::with_capacity(windows.len() * 2);
        let mut counted = Vec::with_capacity(windows.len());
        for window in &windows {
            counted.push(keys.len());
            let key = self.redis_key(&redis_id, window.start, window.period);
            keys.push((key, window.expires_s));
            if let Some(previous) = window.previous_start {
                let key = self.redis_key(&redis_id, previous, window.period);
                keys.push((key, window.expires_s));
            }
        }
        let batch = &batched.batch;
        let Some(missing) = batch.missing(&keys) else {
            return self.count_in_redis(script, timeout, id, now).await;
        };
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|(key, _)| key.clone()).collect();
            let args: Vec<String> = missing
                .iter()
                .flat_map(|(_, expires_s)| ["0".to_string(), expires_s.to_string()])
                .collect();
            let totals = batched
                .sync
                .eval(&ScriptCall::of(&names, &args), timeout)
                .await?;
            batch.seed(&missing, &totals);
        }
        let verdict = batch.judge(&keys, &counted, |values| {
            let usages: Vec<PeriodUsage> = windows
                .iter()
                .zip(&counted)
                .map(|(window, &index)| {
                    let current = values.get(index).copied().unwrap_or(0);
                    let previous = match window.previous_start {
                        Some(_) => values.get(index + 1).copied().unwrap_or(0),
                        None => 0,
                    };
                    PeriodUsage {
                        period: window.period,
                        limit: window.limit,
                        usage: window::usage(current, previous, window.weight),
                    }
                })
                .collect();
            let verdict = decide(&usages, now);
            let accepted = !verdict.rejected;
            (verdict, accepted)
        });
        if let Some(pending) = batch.take_due(now, batched.every_ms) {
            // A failed sync keeps its increments for the next one; this
            // request was judged already.
            let sync = batch::SyncGuard::new(batch, pending);
            let call = sync.call();
            let outcome = batched.sync.eval(&call, timeout).await;
            sync.finish(outcome.as_deref().ok());
        }
        Ok(verdict)
    }

    fn answer(&self, ctx: &mut RequestContext, verdict: &Verdict) -> Decision {
        if !self.hide_client_headers {
            window::set_headers(verdict, &self.rendered_limits, &mut ctx.response_headers);
        }
        if verdict.rejected {
            Decision::Respond(self.rejection.clone())
        } else {
            Decision::Continue
        }
    }
}

/// Kong's answer when a backend a plugin needs failed.
fn unexpected_error() -> Rejection {
    Rejection {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: Cow::Borrowed("An unexpected error occurred"),
        style: RejectionStyle::Error,
    }
}

impl PluginRuntime for RateLimiting {
    const PHASES: Phases = Phases::ACCESS;

    async fn access(&self, ctx: &mut RequestContext) -> Result<Decision, PluginError> {
        let now = now_ms();
        let id = identifier(self, ctx);
        let verdict = match &self.store {
            Store::Local(table) => self.count_locally(table, &id, &self.limits, now),
            Store::Redis {
                script,
                timeout,
                on_failure,
                fallback,
                peers,
                batched,
            } => match match batched {
                None => {
                    self.count_in_redis(script.as_ref(), *timeout, &id, now)
                        .await
                }
                Some(batched) => {
                    self.count_batched(batched, script.as_ref(), *timeout, &id, now)
                        .await
                }
            } {
                Ok(verdict) => verdict,
                // The connector logs state changes and counts errors; a
                // request never logs on its own.
                Err(_) => match on_failure {
                    RedisFailureMode::FailOpen => return Ok(Decision::Continue),
                    RedisFailureMode::FailClosed => {
                        return Ok(Decision::Respond(unexpected_error()))
                    }
                    RedisFailureMode::Local => {
                        let share = node_share(&self.limits, peers.data_planes());
                        self.count_locally(fallback, &id, &share, now)
                    }
                },
            },
        };
        Ok(self.answer(ctx, &verdict))
    }
}

/// This node's share of each limit while Redis is down (failure mode
/// `local`): the limit divided by the connected data planes, rounded down so
/// the nodes together never admit more than the limit, but at least 1 so a
/// small limit on a large cluster does not become a block.
fn node_share(limits: &[(Period, f64)], data_planes: u32) -> Vec<(Period, f64)> {
    let nodes = f64::from(data_planes.max(1));
    limits
        .iter()
        .map(|&(period, limit)| (period, (limit / nodes).floor().max(1.0)))
        .collect()
}

impl CompilePlugin<RateLimitingConfig> for RateLimiting {
    fn compile(
        config: &RateLimitingConfig,
        cx: &CompileContext<'_>,
    ) -> Result<Self, PluginCompileError> {
        RateLimiting::build(config, cx).map_err(|e| PluginCompileError::Invalid(e.to_string()))
    }
}

impl RateLimiting {
    fn build(
        config: &RateLimitingConfig,
        cx: &CompileContext<'_>,
    ) -> Result<Self, RateLimitingError> {
        let limits = config.limits();
        if limits.is_empty() {
            return Err(RateLimitingError::NoLimit);
        }
        let code = config.error_code;
        let status = Some(code)
            .filter(|c| c.fract() == 0.0 && (100.0..=999.0).contains(c))
            .and_then(|c| StatusCode::from_u16(c as u16).ok())
            .ok_or_else(|| RateLimitingError::InvalidStatus(window::format_number(code)))?;
        let header_name = match (&config.limit_by, &config.header_name) {
            (LimitBy::Header, Some(name)) => Some(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| RateLimitingError::InvalidHeaderName(name.clone()))?,
            ),
            _ => None,
        };
        let id_of = |fk: &Option<crate::entity::ForeignKey>| {
            fk.as_ref().map_or(uuid::Uuid::nil(), |f| f.id)
        };
        let scope = format!(
            "{}:{}",
            id_of(&cx.instance.route),
            id_of(&cx.instance.service)
        );
        let local = || {
            if cx.resources.is_check_only() {
                // A check never counts: skip the node table's 2 MiB.
                Arc::new(LocalCounters::with_slots(0))
            } else {
                cx.resources.keyed::<LocalCounters>(LOCAL_TABLE)
            }
        };
        let table = local();
        let mut local_scope = table.identity_hasher();
        local_scope.write(scope.as_bytes());
        let store = match config.policy {
            RateLimitPolicy::Local => Store::Local(Arc::clone(&table)),
            RateLimitPolicy::Redis => {
                let redis = &config.redis;
                let port = redis.port.unwrap_or(6379);
                let server = RedisServer {
                    host: redis.host.clone().unwrap_or_default(),
                    port: u16::try_from(port).map_err(|_| RateLimitingError::InvalidPort(port))?,
                    database: redis.database,
                    username: redis.username.clone().filter(|u| !u.is_empty()),
                    password: redis.password.clone().filter(|p| !p.is_empty()),
                    tls: redis.ssl.then(|| RedisTls {
                        verify: redis.ssl_verify,
                        server_name: redis.server_name.clone().filter(|n| !n.is_empty()),
                    }),
                };
                let script = cx
                    .resources
                    .redis_script(
                        &server,
                        if config.algorithm == RateLimitAlgorithm::Sliding {
                            REDIS_SLIDING_SCRIPT
                        } else {
                            REDIS_FIXED_SCRIPT
                        },
                    )
                    .map_err(RateLimitingError::Redis)?;
                let on_failure = redis.failure_mode.unwrap_or(if config.fault_tolerant {
                    RedisFailureMode::FailOpen
                } else {
                    RedisFailureMode::FailClosed
                });
                let batched = if config.sync_rate > 0.0 {
                    let sync = cx
                        .resources
                        .redis_script(&server, batch::SYNC_SCRIPT)
                        .map_err(RateLimitingError::Redis)?;
                    let key = format!(
                        "rate-limiting/batch/{}:{}/{}/{scope}",
                        server.host, server.port, server.database
                    );
                    Some(Batched {
                        batch: cx.resources.keyed::<batch::Batch>(&key),
                        sync,
                        every_ms: ((config.sync_rate * 1000.0).round() as i64).max(20),
                    })
                } else {
                    None
                };
                Store::Redis {
                    batched,
                    script,
                    timeout: Duration::from_millis(
                        u64::try_from(redis.timeout.unwrap_or(2000)).unwrap_or(2000),
                    ),
                    on_failure,
                    fallback: Arc::clone(&table),
                    peers: cx.resources.keyed::<ClusterPeers>(ClusterPeers::KEY),
                }
            }
        };
        Ok(RateLimiting {
            rendered_limits: RenderedLimits::new(&limits),
            limits,
            limit_by: config.limit_by,
            header_name,
            path: config.path.clone(),
            scope,
            local_scope,
            sliding: config.algorithm == RateLimitAlgorithm::Sliding,
            hide_client_headers: config.hide_client_headers,
            rejection: Rejection {
                status,
                message: Cow::Owned(config.error_message.clone()),
                style: RejectionStyle::Error,
            },
            store,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::runtime::{CredentialRef, Protocol};

    #[test]
    fn the_local_table_is_found_only_while_a_config_holds_it() {
        let resources = Resources::check_only();
        assert!(
            local_table(&resources).is_none(),
            "never created by a lookup"
        );
        let held = resources.keyed::<LocalCounters>(LOCAL_TABLE);
        let key = held.window_key(1, 1, 0);
        held.increment(key, 60_000, 10);
        let found = local_table(&resources).unwrap();
        assert!(Arc::ptr_eq(&found, &held));
        assert_eq!(found.get(key), 1);
        drop((found, held));
        assert!(local_table(&resources).is_none());
    }

    fn plugin(limit_by: LimitBy) -> RateLimiting {
        let table = Arc::new(LocalCounters::with_slots(64));
        let mut local_scope = table.identity_hasher();
        local_scope.write(b"s");
        RateLimiting {
            limits: vec![(Period::Minute, 2.0)],
            rendered_limits: RenderedLimits::new(&[(Period::Minute, 2.0)]),
            limit_by,
            header_name: Some(HeaderName::from_static("x-api-key")),
            path: Some("/exact".into()),
            scope: "s".into(),
            local_scope,
            sliding: false,
            hide_client_headers: false,
            rejection: unexpected_error(),
            store: Store::Local(table),
        }
    }

    fn context(uri: &str, headers: &[(&str, &str)]) -> RequestContext {
        let mut builder = http::Request::get(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        let ip = "::ffff:10.0.0.7".parse().unwrap();
        RequestContext::new(
            parts,
            ip,
            ip,
            Protocol::Http,
            http::HeaderValue::from_static("0"),
            std::time::Instant::now(),
        )
    }

    fn id_of(limit_by: LimitBy, ctx: &RequestContext) -> String {
        String::from_utf8(identifier(&plugin(limit_by), ctx).to_vec()).unwrap()
    }

    #[test]
    fn a_node_share_divides_each_limit_rounding_down_to_at_least_one() {
        let limits = [(Period::Second, 10.0), (Period::Hour, 2.0)];
        assert_eq!(node_share(&limits, 1), limits.to_vec());
        assert_eq!(
            node_share(&limits, 3),
            vec![(Period::Second, 3.0), (Period::Hour, 1.0)]
        );
        // 0 (unknown) counts as a node on its own.
        assert_eq!(node_share(&limits, 0), limits.to_vec());
    }

    #[test]
    fn identifiers_follow_limit_by_with_kong_fallbacks() {
        let consumer = uuid::Uuid::from_u128(7);
        let credential = uuid::Uuid::from_u128(8);
        let service = uuid::Uuid::from_u128(9);
        let bare = context("/x", &[]);
        for limit_by in [
            LimitBy::Consumer,
            LimitBy::Credential,
            LimitBy::Ip,
            LimitBy::Service,
            LimitBy::Header,
            LimitBy::Path,
        ] {
            assert_eq!(id_of(limit_by, &bare), "10.0.0.7", "{limit_by:?}");
        }

        let mut known = context("/exact", &[("x-api-key", "k1")]);
        known.credential = Some(CredentialRef {
            id: credential,
            identifier: "key".into(),
            consumer,
        });
        assert_eq!(id_of(LimitBy::Consumer, &known), credential.to_string());
        known.consumer = Some(Arc::new(crate::Consumer {
            id: consumer,
            created_at: 1,
            updated_at: 1,
            username: Some("u".into()),
            custom_id: None,
            tags: None,
        }));
        known.service = Some(Arc::new(
            serde_json::from_value(serde_json::json!({
                "id": service.to_string(), "created_at": 1, "updated_at": 1, "name": null,
                "retries": 5, "protocol": "http", "host": "h", "port": 80, "path": null,
                "connect_timeout": 1, "write_timeout": 1, "read_timeout": 1, "tags": null,
                "client_certificate": null, "tls_verify": null, "tls_verify_depth": null,
                "ca_certificates": null, "enabled": true
            }))
            .unwrap(),
        ));
        assert_eq!(id_of(LimitBy::Consumer, &known), consumer.to_string());
        assert_eq!(id_of(LimitBy::Credential, &known), credential.to_string());
        assert_eq!(id_of(LimitBy::Ip, &known), "10.0.0.7");
        assert_eq!(id_of(LimitBy::Service, &known), service.to_string());
        assert_eq!(id_of(LimitBy::Header, &known), "k1");
        assert_eq!(id_of(LimitBy::Path, &known), "/exact");

        // The path quirk: only the exact (normalized) path counts by path.
        assert_eq!(
            id_of(LimitBy::Path, &context("/exact/more", &[])),
            "10.0.0.7"
        );
        assert_eq!(id_of(LimitBy::Path, &context("/exact?q=1", &[])), "/exact");
        assert_eq!(id_of(LimitBy::Path, &context("/a/../exact", &[])), "/exact");
    }

    #[test]
    fn local_policy_allows_the_limit_then_rejects_with_headers() {
        let plugin = plugin(LimitBy::Ip);
        let Store::Local(table) = &plugin.store else {
            panic!("local store")
        };
        let now = 1_709_214_330_250;
        let mut answers = Vec::new();
        for _ in 0..4 {
            let verdict = plugin.count_locally(table, b"a", &plugin.limits, now);
            answers.push((verdict.rejected, verdict.remaining));
        }
        assert_eq!(
            answers,
            [(false, 1.0), (false, 0.0), (true, 0.0), (true, 0.0)]
        );
        // Another identifier and the next window start afresh.
        assert!(
            !plugin
                .count_locally(table, b"b", &plugin.limits, now)
                .rejected
        );
        assert!(
            !plugin
                .count_locally(table, b"a", &plugin.limits, now + 60_000)
                .rejected
        );
    }

    #[test]
    fn sliding_windows_carry_the_previous_count() {
        let mut plugin = plugin(LimitBy::Ip);
        plugin.sliding = true;
        plugin.limits = vec![(Period::Minute, 4.0)];
        let Store::Local(table) = &plugin.store else {
            panic!("local store")
        };
        let start = 1_709_214_300_000; // a minute boundary
        for _ in 0..4 {
            assert!(
                !plugin
                    .count_locally(table, b"a", &plugin.limits, start + 50_000)
                    .rejected
            );
        }
        // 15 s into the next minute, 75% of 4 = 3 still count: one more fits.
        let next = start + 60_000 + 15_000;
        assert!(
            !plugin
                .count_locally(table, b"a", &plugin.limits, next)
                .rejected
        );
        assert!(
            plugin
                .count_locally(table, b"a", &plugin.limits, next)
                .rejected
        );
        // A fixed window would have allowed four.
        plugin.sliding = false;
        let fresh = LocalCounters::with_slots(64);
        let allowed = (0..6)
            .filter(|_| {
                !plugin
                    .count_locally(&fresh, b"a", &plugin.limits, next)
                    .rejected
            })
            .count();
        assert_eq!(allowed, 4);
    }
}
