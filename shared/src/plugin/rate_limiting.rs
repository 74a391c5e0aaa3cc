//! The `rate-limiting` plugin: config (Kong priority 910), the shared Redis
//! record, and the deprecated flat `redis_*` shorthands.

use super::null_as_default;
use crate::schema::engine::{Check, Field, Match, Record, Rule, Shorthand, Subschema};
use crate::schema::typedefs::{self, strings, HTTP_PROTOCOLS};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

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
    ])
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
            .rule(Rule::OneOf(strings(&["local", "redis"]))),
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
