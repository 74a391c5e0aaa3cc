//! The `prometheus` plugin (Kong priority 13, kong-compat §8): its config
//! (every switch off by default) and its runtime, which records each routed
//! request in the log phase into the node's [`ProxyMetrics`] (`series.rs`):
//! `http_requests_total` (`status_code_metrics`), the three latency
//! histograms (`latency_metrics`), `bandwidth` (`bandwidth_metrics`), with
//! the consumer's username as `consumer` when `per_consumer` is on.
//! `upstream_health_metrics` is accepted and exports nothing: Tollgate has no
//! upstream/target entities or health checks. `ai_metrics` and
//! `wasm_metrics` are accepted and ignored for the same reason.

mod series;

pub use series::{
    ProxyMetrics, RouteSeries, DEFAULT_MAX_SERIES, KONG_LATENCY_BUCKETS, UPSTREAM_LATENCY_BUCKETS,
};

use super::null_as_default;
use crate::router::FastHash;
use crate::runtime::{
    CompileContext, CompilePlugin, Phases, PluginCompileError, PluginRuntime, RequestContext,
};
use crate::schema::engine::{Field, Record, Subschema};
use crate::schema::typedefs::{self, HTTP_PROTOCOLS, PROTOCOLS};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrometheusConfig {
    #[serde(deserialize_with = "null_as_default")]
    pub per_consumer: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub status_code_metrics: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub ai_metrics: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub latency_metrics: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub bandwidth_metrics: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub upstream_health_metrics: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub wasm_metrics: bool,
}

pub(crate) fn subschema() -> Subschema {
    let switch = |name: &'static str| Field::boolean(name).default(json!(false));
    Subschema {
        fields: vec![
            typedefs::protocols(&PROTOCOLS, &HTTP_PROTOCOLS),
            Field::record(
                "config",
                Record::new(vec![
                    switch("per_consumer"),
                    switch("status_code_metrics"),
                    switch("ai_metrics"),
                    switch("latency_metrics"),
                    switch("bandwidth_metrics"),
                    switch("upstream_health_metrics"),
                    switch("wasm_metrics"),
                ]),
            ),
        ],
        checks: vec![],
    }
}

/// A compiled `prometheus` instance: the switches, and the series of every
/// route it can apply to, resolved once per config.
#[derive(Debug)]
pub struct Prometheus {
    metrics: Arc<ProxyMetrics>,
    /// By route id (config keys only: a fast hash, see [`FastHash`]).
    routes: HashMap<Uuid, Arc<RouteSeries>, FastHash>,
    per_consumer: bool,
    status_code_metrics: bool,
    latency_metrics: bool,
    bandwidth_metrics: bool,
}

impl PluginRuntime for Prometheus {
    const PHASES: Phases = Phases::LOG;

    fn log(&self, ctx: &RequestContext) {
        // Requests that matched no route are not recorded (as in Kong).
        let Some(series) = ctx
            .route
            .as_ref()
            .and_then(|route| self.routes.get(&route.id))
        else {
            return;
        };
        let consumer = if self.per_consumer {
            ctx.consumer
                .as_ref()
                .and_then(|consumer| consumer.username.as_deref())
                .unwrap_or("")
        } else {
            ""
        };
        if self.status_code_metrics {
            let code = ctx.status.map_or(0, |status| status.as_u16());
            let proxied = ctx.log_facts.as_ref().is_some_and(|facts| facts.proxied);
            series.count_request(&self.metrics, code, proxied, consumer);
        }
        if self.latency_metrics {
            let latencies = ctx.latencies();
            let upstream = u64::try_from(latencies.proxy).ok();
            series.observe_latency(&self.metrics, latencies.kong, upstream, latencies.request);
        }
        if self.bandwidth_metrics {
            series.add_bandwidth(
                &self.metrics,
                consumer,
                ctx.bytes.request,
                ctx.bytes.response,
            );
        }
    }
}

impl CompilePlugin<PrometheusConfig> for Prometheus {
    fn compile(
        config: &PrometheusConfig,
        cx: &CompileContext<'_>,
    ) -> Result<Self, PluginCompileError> {
        let metrics = Arc::clone(cx.resources.proxy_metrics());
        let any_switch =
            config.status_code_metrics || config.latency_metrics || config.bandwidth_metrics;
        let mut routes = HashMap::default();
        if !cx.resources.is_check_only() {
            metrics.mark_configured();
        }
        if any_switch && !cx.resources.is_check_only() {
            let services: HashMap<Uuid, &crate::Service> =
                cx.config.services.iter().map(|s| (s.id, s)).collect();
            let instance = cx.instance;
            let scope_route = instance.route.as_ref().map(|r| r.id);
            let scope_service = instance.service.as_ref().map(|s| s.id);
            for route in &cx.config.routes {
                let service_id = route.service.as_ref().map(|s| s.id);
                if scope_route.is_some_and(|id| id != route.id)
                    || scope_service.is_some_and(|id| Some(id) != service_id)
                {
                    continue;
                }
                let service = service_id.and_then(|id| services.get(&id));
                // Kong's label values: the service's name, else its host; the
                // route's name, else its id.
                let service_label = service
                    .map(|s| s.name.clone().unwrap_or_else(|| s.host.clone()))
                    .unwrap_or_default();
                let route_label = route.name.clone().unwrap_or_else(|| route.id.to_string());
                routes.insert(route.id, metrics.route(&service_label, &route_label));
            }
        }
        Ok(Prometheus {
            metrics,
            routes,
            per_consumer: config.per_consumer,
            status_code_metrics: config.status_code_metrics,
            latency_metrics: config.latency_metrics,
            bandwidth_metrics: config.bandwidth_metrics,
        })
    }
}
