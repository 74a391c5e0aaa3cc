//! The `opentelemetry` plugin's schema: Kong's fields and defaults
//! (`kong/plugins/opentelemetry/schema.lua`), the deprecated `endpoint`
//! shorthand, the `at_least_one_of` check and the typed spec.

use super::{expect_errors, valid};
use serde_json::{json, Value};
use tollgate_shared::EntityKind::Plugins;
use tollgate_shared::{Plugin, PluginSpec};

fn spec(input: Value) -> PluginSpec {
    let out = valid(Plugins, input);
    let plugin: Plugin = serde_json::from_value(out).unwrap();
    PluginSpec::from_plugin(&plugin).unwrap()
}

#[test]
fn defaults_are_kongs() {
    let out = valid(
        Plugins,
        json!({"name": "opentelemetry", "config": {"traces_endpoint": "http://otel:4318/v1/traces"}}),
    );
    assert_eq!(out["protocols"], json!(["grpc", "grpcs", "http", "https"]));
    assert_eq!(
        out["config"],
        json!({
            "traces_endpoint": "http://otel:4318/v1/traces",
            "logs_endpoint": null,
            "headers": null,
            "resource_attributes": null,
            "queue": {
                "max_batch_size": 200,
                "max_coalescing_delay": 1,
                "max_entries": 10000,
                "max_bytes": null,
                "max_retry_time": 60,
                "initial_retry_delay": 0.01,
                "max_retry_delay": 60,
                "concurrency_limit": 1,
            },
            "batch_span_count": null,
            "batch_flush_delay": null,
            "connect_timeout": 1000,
            "send_timeout": 5000,
            "read_timeout": 5000,
            "http_response_header_for_traceid": null,
            "header_type": "preserve",
            "sampling_rate": null,
            "propagation": {"extract": null, "clear": null, "inject": null, "default_format": "w3c"},
        })
    );
    assert_eq!(tollgate_shared::plugin::priority("opentelemetry"), Some(14));
}

#[test]
fn the_deprecated_endpoint_becomes_traces_endpoint() {
    let PluginSpec::Opentelemetry(config) = spec(json!({"name": "opentelemetry", "config": {
        "endpoint": "https://collector.example/v1/traces", "sampling_rate": 0.25,
        "headers": {"Authorization": "Bearer t"}, "batch_span_count": 50
    }})) else {
        panic!("opentelemetry spec")
    };
    assert_eq!(
        config.traces_endpoint.as_deref(),
        Some("https://collector.example/v1/traces")
    );
    assert_eq!(config.sampling_rate, Some(0.25));
    assert_eq!(config.effective_queue().max_batch_size, 50);
}

#[test]
fn rules_and_messages() {
    expect_errors(
        Plugins,
        vec![
            (
                json!({"name": "opentelemetry", "config": {}}),
                json!({"config": {"@entity": [
                    "at least one of these fields must be non-empty: 'traces_endpoint', 'logs_endpoint'"
                ]}}),
            ),
            (
                json!({"name": "opentelemetry", "config": {"traces_endpoint": "otel:4318"}}),
                json!({"config": {"traces_endpoint": "missing host in url"}}),
            ),
            (
                json!({"name": "opentelemetry", "config": {"endpoint": "grpc://otel:4317"}}),
                json!({"config": {"endpoint": "unsupported scheme in url: 'grpc' (expected http or https)"}}),
            ),
            (
                json!({"name": "opentelemetry", "config": {"traces_endpoint": "http://o/", "sampling_rate": 2}}),
                json!({"config": {"sampling_rate": "value should be between 0 and 1"}}),
            ),
            (
                json!({"name": "opentelemetry", "config": {"traces_endpoint": "http://o/", "header_type": "zipkin"}}),
                json!({"config": {"header_type": "expected one of: preserve, ignore, b3, b3-single, w3c, jaeger, ot, aws, gcp, datadog, instana"}}),
            ),
        ],
    );
}
