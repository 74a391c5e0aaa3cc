//! Plugin specs: one typed config per bundled plugin, with Kong's field names
//! and defaults, and the facts the runtime needs about each plugin (priority,
//! allowed scopes, default protocols). Each plugin module also owns the schema
//! its `config` is validated against.

mod file_log;
mod http_log;
mod ip_restriction;
mod jwt;
mod prometheus;
mod rate_limiting;

pub use file_log::FileLogConfig;
pub use http_log::{HttpLogConfig, HttpLogMethod, QueueConfig};
pub use ip_restriction::IpRestrictionConfig;
pub use jwt::{JwtClaim, JwtConfig};
pub use prometheus::PrometheusConfig;
pub use rate_limiting::{LimitBy, Period, RateLimitPolicy, RateLimitingConfig, RedisConfig};

use crate::entity::{EntityKind, Plugin};
use crate::schema::engine::Subschema;
use crate::validation::FieldErrors;
use serde::{Deserialize, Deserializer};
use std::sync::LazyLock;

/// A plugin instance's typed, validated config. A closed set: the data plane
/// compiles each variant into its runtime form.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginSpec {
    Jwt(JwtConfig),
    RateLimiting(RateLimitingConfig),
    IpRestriction(IpRestrictionConfig),
    FileLog(FileLogConfig),
    HttpLog(HttpLogConfig),
    Prometheus(PrometheusConfig),
}

/// The plugins this build bundles, by Kong name.
pub const BUNDLED: [&str; 6] = [
    "jwt",
    "rate-limiting",
    "ip-restriction",
    "file-log",
    "http-log",
    "prometheus",
];

/// Kong's execution priority of a plugin (higher runs first), for every
/// plugin Kong bundles; `None` for names Kong does not know.
pub fn priority(name: &str) -> Option<i32> {
    Some(match name {
        "pre-function" => 1_000_000,
        "correlation-id" => 100_001,
        "zipkin" => 100_000,
        "bot-detection" => 2500,
        "cors" => 2000,
        "session" => 1900,
        "acme" => 1705,
        "jwt" => 1450,
        "oauth2" => 1400,
        "key-auth" => 1250,
        "ldap-auth" => 1200,
        "basic-auth" => 1100,
        "hmac-auth" => 1030,
        "grpc-gateway" => 998,
        "ip-restriction" => 990,
        "request-size-limiting" => 951,
        "acl" => 950,
        "rate-limiting" => 910,
        "response-ratelimiting" => 900,
        "request-transformer" => 801,
        "response-transformer" => 800,
        "redirect" => 779,
        "standard-webhooks" => 760,
        "aws-lambda" => 750,
        "azure-functions" => 749,
        "proxy-cache" => 100,
        "opentelemetry" => 14,
        "prometheus" => 13,
        "http-log" => 12,
        "statsd" => 11,
        "datadog" => 10,
        "file-log" => 9,
        "udp-log" => 8,
        "tcp-log" => 7,
        "loggly" => 6,
        "syslog" => 4,
        "grpc-web" => 3,
        "request-termination" => 2,
        "post-function" => -1000,
        _ => return None,
    })
}

impl PluginSpec {
    /// Validates a plugin entity (its config against the plugin's schema,
    /// defaults filled) and returns the config in its typed form.
    pub fn from_plugin(plugin: &Plugin) -> Result<PluginSpec, FieldErrors> {
        let input = serde_json::to_value(plugin).map_err(|e| {
            let mut errors = FieldErrors::new();
            errors.add_entity(format!("cannot encode plugin: {e}"));
            errors
        })?;
        let valid = crate::schema::validate_entity(EntityKind::Plugins, &input)?;
        let config = valid
            .get("config")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        let typed = |e: serde_json::Error| {
            let mut errors = FieldErrors::new();
            errors.add("config", format!("invalid config: {e}"));
            errors
        };
        Ok(match plugin.name.as_str() {
            "jwt" => PluginSpec::Jwt(serde_json::from_value(config).map_err(typed)?),
            "rate-limiting" => {
                PluginSpec::RateLimiting(serde_json::from_value(config).map_err(typed)?)
            }
            "ip-restriction" => {
                PluginSpec::IpRestriction(serde_json::from_value(config).map_err(typed)?)
            }
            "file-log" => PluginSpec::FileLog(serde_json::from_value(config).map_err(typed)?),
            "http-log" => PluginSpec::HttpLog(serde_json::from_value(config).map_err(typed)?),
            "prometheus" => PluginSpec::Prometheus(serde_json::from_value(config).map_err(typed)?),
            other => {
                let mut errors = FieldErrors::new();
                errors.add(
                    "name",
                    format!("plugin '{other}' not enabled; add it to the 'plugins' configuration property"),
                );
                return Err(errors);
            }
        })
    }

    /// The plugin's Kong name.
    pub fn name(&self) -> &'static str {
        match self {
            PluginSpec::Jwt(_) => "jwt",
            PluginSpec::RateLimiting(_) => "rate-limiting",
            PluginSpec::IpRestriction(_) => "ip-restriction",
            PluginSpec::FileLog(_) => "file-log",
            PluginSpec::HttpLog(_) => "http-log",
            PluginSpec::Prometheus(_) => "prometheus",
        }
    }

    /// Kong's priority of this plugin (higher runs first).
    pub fn priority(&self) -> i32 {
        priority(self.name()).unwrap_or(0)
    }
}

static JWT: LazyLock<Subschema> = LazyLock::new(jwt::subschema);
static RATE_LIMITING: LazyLock<Subschema> = LazyLock::new(rate_limiting::subschema);
static IP_RESTRICTION: LazyLock<Subschema> = LazyLock::new(ip_restriction::subschema);
static FILE_LOG: LazyLock<Subschema> = LazyLock::new(file_log::subschema);
static HTTP_LOG: LazyLock<Subschema> = LazyLock::new(http_log::subschema);
static PROMETHEUS: LazyLock<Subschema> = LazyLock::new(prometheus::subschema);

/// The schema a bundled plugin adds to the plugin entity.
pub(crate) fn subschema(name: &str) -> Option<&'static Subschema> {
    Some(match name {
        "jwt" => &JWT,
        "rate-limiting" => &RATE_LIMITING,
        "ip-restriction" => &IP_RESTRICTION,
        "file-log" => &FILE_LOG,
        "http-log" => &HTTP_LOG,
        "prometheus" => &PROMETHEUS,
        _ => return None,
    })
}

/// Deserializes `null` as the type's default: Kong lets these fields be null,
/// the runtime wants a value.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
