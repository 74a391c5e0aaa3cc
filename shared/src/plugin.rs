//! The plugin table: every plugin this build knows, in one place. A row gives
//! the Kong name, Kong's priority, the typed config (validated by the schema
//! the plugin's module owns) and the runtime form its compile step produces
//! (`Unsupported` for a plugin whose runtime has not landed: its configs are
//! refused rather than served without it). From the rows come [`PluginSpec`]
//! (typed configs), [`Plugin`] (the closed enum of compiled plugins, dispatched
//! by `match`), the schema lookup and the lists announced to peers. Adding a
//! plugin is its module under `plugin/` and one row here.

mod acl;
mod basic_auth;
mod file_log;
mod http_log;
pub(crate) mod identity;
mod ip_restriction;
mod jwt;
mod key_auth;
mod opentelemetry;
mod prometheus;
mod rate_limiting;
#[cfg(feature = "test-plugins")]
pub mod testing;

pub use acl::{Acl, AclConfig, AUTHENTICATED_GROUPS, CONSUMER_GROUPS};
pub use basic_auth::{BasicAuth, BasicAuthConfig};
pub use file_log::{FileLog, FileLogConfig};
pub use http_log::{HttpLog, HttpLogConfig, HttpLogMethod, QueueConfig};
pub use ip_restriction::{IpRestriction, IpRestrictionConfig, IpRestrictionError};
pub use jwt::{
    consumer_headers, public_key_parses, JwksEndpoint, JwksError, JwksKeys, JwksLimits, JwksLookup,
    JwksProvider, JwksSource, Jwt, JwtClaim, JwtConfig, KeyError, KeySet, NoJwks, Verifier,
};
pub use key_auth::{KeyAuth, KeyAuthConfig};
pub use opentelemetry::{
    format_traceparent, parse_traceparent, sample_by_trace_id, Opentelemetry, OpentelemetryConfig,
    PropagationConfig, Traceparent,
};
pub use prometheus::{
    Prometheus, PrometheusConfig, ProxyMetrics, RouteSeries, DEFAULT_MAX_SERIES,
    KONG_LATENCY_BUCKETS, UPSTREAM_LATENCY_BUCKETS,
};
pub use rate_limiting::{
    local_table as rate_limiting_local_table, LimitBy, LocalCounters, Period, RateLimitAlgorithm,
    RateLimitPolicy, RateLimiting, RateLimitingConfig, RateLimitingError, RedisConfig,
    RedisFailureMode,
};

use crate::entity::EntityKind;
use crate::runtime::{
    CompileContext, CompilePlugin, Decision, Phases, PluginCompileError, PluginError,
    PluginRuntime, RequestContext, ResponseHead, Unsupported,
};
use crate::schema::engine::Subschema;
use crate::validation::FieldErrors;
use serde::{Deserialize, Deserializer};
use std::sync::LazyLock;

/// What the table says about one plugin.
#[derive(Debug, Clone, Copy)]
pub struct PluginRow {
    /// Kong's name.
    pub name: &'static str,
    /// Kong's execution priority (higher runs first, kong-compat §3.2).
    pub priority: i32,
    /// The phases its runtime implements.
    pub phases: Phases,
    /// Whether this build runs it (its runtime is not `Unsupported`).
    pub supported: bool,
    schema: fn() -> Subschema,
}

macro_rules! plugin_table {
    ($(
        $(#[$meta:meta])*
        $variant:ident {
            name: $name:literal,
            priority: $priority:literal,
            config: $config:ty,
            runtime: $runtime:ty,
            schema: $schema:path $(,)?
        }
    )*) => {
        /// A plugin instance's typed, validated config, one variant per row.
        #[derive(Debug, Clone, PartialEq)]
        pub enum PluginSpec {
            $( $(#[$meta])* $variant($config), )*
        }

        /// A compiled plugin instance, ready to run on requests.
        // Built once per compile and kept behind an `Arc` (`PluginInstance`):
        // never moved per request, so a large variant (rate-limiting's) costs
        // a few hundred bytes per instance, where boxing it would cost every
        // request a pointer chase.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug)]
        pub enum Plugin {
            $( $(#[$meta])* $variant($runtime), )*
        }

        // Pushed one by one so that `cfg` can gate a row (test-only plugins).
        #[allow(clippy::vec_init_then_push)]
        fn rows() -> Vec<PluginRow> {
            let mut rows = Vec::new();
            $(
                $(#[$meta])*
                rows.push(PluginRow {
                    name: $name,
                    priority: $priority,
                    phases: <$runtime as PluginRuntime>::PHASES,
                    supported: !is_unsupported::<$runtime>(),
                    schema: $schema,
                });
            )*
            rows
        }

        impl PluginSpec {
            fn typed(name: &str, config: serde_json::Value) -> Option<Result<PluginSpec, serde_json::Error>> {
                Some(match name {
                    $( $(#[$meta])* $name => serde_json::from_value(config).map(PluginSpec::$variant), )*
                    _ => return None,
                })
            }

            /// The plugin's Kong name.
            pub fn name(&self) -> &'static str {
                match self {
                    $( $(#[$meta])* PluginSpec::$variant(_) => $name, )*
                }
            }

            /// Compiles the spec into its runtime form. No I/O happens here;
            /// resources come from `cx`.
            pub fn compile(&self, cx: &CompileContext<'_>) -> Result<Plugin, PluginCompileError> {
                match self {
                    $( $(#[$meta])* PluginSpec::$variant(config) => {
                        <$runtime as CompilePlugin<$config>>::compile(config, cx).map(Plugin::$variant)
                    } )*
                }
            }
        }

        impl Plugin {
            /// The plugin's Kong name.
            pub fn name(&self) -> &'static str {
                match self {
                    $( $(#[$meta])* Plugin::$variant(_) => $name, )*
                }
            }

            pub fn phases(&self) -> Phases {
                match self {
                    $( $(#[$meta])* Plugin::$variant(_) => <$runtime as PluginRuntime>::PHASES, )*
                }
            }

            pub fn rewrite(&self, ctx: &mut RequestContext) -> Decision {
                match self {
                    $( $(#[$meta])* Plugin::$variant(plugin) => plugin.rewrite(ctx), )*
                }
            }

            pub async fn access(&self, ctx: &mut RequestContext) -> Result<Decision, PluginError> {
                match self {
                    $( $(#[$meta])* Plugin::$variant(plugin) => plugin.access(ctx).await, )*
                }
            }

            pub fn response(&self, ctx: &mut RequestContext, head: ResponseHead<'_>) {
                match self {
                    $( $(#[$meta])* Plugin::$variant(plugin) => plugin.response(ctx, head), )*
                }
            }

            pub fn log(&self, ctx: &RequestContext) {
                match self {
                    $( $(#[$meta])* Plugin::$variant(plugin) => plugin.log(ctx), )*
                }
            }

            pub fn reads_body(&self) -> bool {
                match self {
                    $( $(#[$meta])* Plugin::$variant(plugin) => plugin.reads_body(), )*
                }
            }
        }
    };
}

fn is_unsupported<T: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<Unsupported>()
}

plugin_table! {
    Jwt {
        name: "jwt",
        priority: 1450,
        config: JwtConfig,
        runtime: Jwt,
        schema: jwt::subschema,
    }
    KeyAuth {
        name: "key-auth",
        priority: 1250,
        config: KeyAuthConfig,
        runtime: KeyAuth,
        schema: key_auth::subschema,
    }
    BasicAuth {
        name: "basic-auth",
        priority: 1100,
        config: BasicAuthConfig,
        runtime: BasicAuth,
        schema: basic_auth::subschema,
    }
    Acl {
        name: "acl",
        priority: 950,
        config: AclConfig,
        runtime: Acl,
        schema: acl::subschema,
    }
    IpRestriction {
        name: "ip-restriction",
        priority: 990,
        config: IpRestrictionConfig,
        runtime: IpRestriction,
        schema: ip_restriction::subschema,
    }
    RateLimiting {
        name: "rate-limiting",
        priority: 910,
        config: RateLimitingConfig,
        runtime: RateLimiting,
        schema: rate_limiting::subschema,
    }
    Opentelemetry {
        name: "opentelemetry",
        priority: 14,
        config: OpentelemetryConfig,
        runtime: Opentelemetry,
        schema: opentelemetry::subschema,
    }
    Prometheus {
        name: "prometheus",
        priority: 13,
        config: PrometheusConfig,
        runtime: Prometheus,
        schema: prometheus::subschema,
    }
    HttpLog {
        name: "http-log",
        priority: 12,
        config: HttpLogConfig,
        runtime: HttpLog,
        schema: http_log::subschema,
    }
    FileLog {
        name: "file-log",
        priority: 9,
        config: FileLogConfig,
        runtime: FileLog,
        schema: file_log::subschema,
    }
    // Test-only: counts requests in a keyed resource (`X-Test-Count`).
    #[cfg(feature = "test-plugins")]
    TestCounter {
        name: "tollgate-test-counter",
        priority: 5,
        config: testing::CounterConfig,
        runtime: testing::Counter,
        schema: testing::counter_subschema,
    }
    // Test-only: appends every phase it sees to a log file.
    #[cfg(feature = "test-plugins")]
    TestRecorder {
        name: "tollgate-test-recorder",
        priority: 3,
        config: testing::RecorderConfig,
        runtime: testing::Recorder,
        schema: testing::recorder_subschema,
    }
    // Test-only: fails or panics in `access` when asked by a request header, or
    // identifies a consumer (it runs where authentication plugins do).
    #[cfg(feature = "test-plugins")]
    TestFault {
        name: "tollgate-test-fault",
        priority: 1500,
        config: testing::FaultConfig,
        runtime: testing::Fault,
        schema: testing::fault_subschema,
    }
    // Test-only: a row without a runtime, so that refusing a plugin this build
    // does not run stays tested once every bundled plugin has its runtime.
    #[cfg(feature = "test-plugins")]
    TestUnsupported {
        name: "tollgate-test-unsupported",
        priority: 1,
        config: testing::CounterConfig,
        runtime: Unsupported,
        schema: testing::counter_subschema,
    }
}

static TABLE: LazyLock<Vec<PluginRow>> = LazyLock::new(rows);
static SCHEMAS: LazyLock<Vec<(&'static str, Subschema)>> =
    LazyLock::new(|| TABLE.iter().map(|row| (row.name, (row.schema)())).collect());

/// Every plugin this build knows, in the table's order.
pub fn table() -> &'static [PluginRow] {
    &TABLE
}

/// The table's row for `name`.
pub fn row(name: &str) -> Option<&'static PluginRow> {
    TABLE.iter().find(|row| row.name == name)
}

/// The plugins this build bundles, by Kong name.
pub fn bundled() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|row| row.name)
}

/// The plugins this build runs, announced by a data plane to its control plane.
pub fn supported() -> impl Iterator<Item = &'static str> {
    TABLE.iter().filter(|row| row.supported).map(|row| row.name)
}

/// The message Kong gives for a plugin it does not run.
/// A deprecated setting one plugin instance of a config uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    pub plugin_id: uuid::Uuid,
    pub plugin: String,
    /// Kong's message for it.
    pub message: &'static str,
}

/// The deprecated settings the enabled plugin instances of `config` use
/// (http-log's pre-queue fields), one entry per instance and field, for the
/// data plane to log once per config it applies rather than per request.
pub fn deprecations(config: &crate::Config) -> Vec<Deprecation> {
    config
        .plugins
        .iter()
        .filter(|plugin| plugin.enabled && plugin.name == "http-log")
        .flat_map(|plugin| {
            http_log::deprecations(&plugin.config)
                .into_iter()
                .map(|message| Deprecation {
                    plugin_id: plugin.id,
                    plugin: plugin.name.clone(),
                    message,
                })
        })
        .collect()
}

pub fn not_enabled_message(name: &str) -> String {
    format!("plugin '{name}' not enabled; add it to the 'plugins' configuration property")
}

/// Kong's execution priority of a plugin in the table (higher runs first).
pub fn priority(name: &str) -> Option<i32> {
    row(name).map(|row| row.priority)
}

impl PluginSpec {
    /// Validates a plugin entity (its config against the plugin's schema,
    /// defaults filled) and returns the config in its typed form.
    pub fn from_plugin(plugin: &crate::Plugin) -> Result<PluginSpec, FieldErrors> {
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
        match PluginSpec::typed(&plugin.name, config) {
            Some(Ok(spec)) => Ok(spec),
            Some(Err(e)) => {
                let mut errors = FieldErrors::new();
                errors.add("config", format!("invalid config: {e}"));
                Err(errors)
            }
            None => {
                let mut errors = FieldErrors::new();
                errors.add("name", not_enabled_message(&plugin.name));
                Err(errors)
            }
        }
    }

    /// Kong's priority of this plugin (higher runs first).
    pub fn priority(&self) -> i32 {
        priority(self.name()).unwrap_or(0)
    }
}

/// The schema a plugin in the table adds to the plugin entity.
pub(crate) fn subschema(name: &str) -> Option<&'static Subschema> {
    SCHEMAS
        .iter()
        .find(|(row, _)| *row == name)
        .map(|(_, schema)| schema)
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
