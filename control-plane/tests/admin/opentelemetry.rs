//! The Admin API and the opentelemetry plugin: Kong's config is accepted
//! (the deprecated `endpoint` stored as `traces_endpoint`, defaults filled),
//! and what the data planes cannot do (a propagation format other than w3c,
//! OTLP logs) is refused with a 400 naming the field, nothing committed.

use crate::both_backends;
use crate::support::{expect_status, Admin, Backend};
use axum::http::Method;
use serde_json::json;

async fn plugin_config(backend: Backend) {
    let admin = Admin::new(backend).await;
    let created = admin
        .json(
            Method::POST,
            "/plugins",
            json!({"name": "opentelemetry", "config": {
                "endpoint": "http://otel-collector:4318/v1/traces",
                "resource_attributes": {"service.name": "edge"}
            }}),
        )
        .await;
    expect_status(&created, 201);
    let config = &created.body["config"];
    assert_eq!(
        config["traces_endpoint"],
        "http://otel-collector:4318/v1/traces"
    );
    assert_eq!(config["queue"]["max_batch_size"], 200);
    assert_eq!(config["propagation"]["default_format"], "w3c");
    let id = created.body["id"].as_str().unwrap().to_string();

    let version = admin.version().await;
    for (patch, field) in [
        (
            json!({"config": {"propagation": {"extract": ["b3"]}}}),
            "config.propagation.extract",
        ),
        (
            json!({"config": {"header_type": "jaeger"}}),
            "config.header_type",
        ),
        (
            json!({"config": {"logs_endpoint": "http://otel-collector:4318/v1/logs"}}),
            "config.logs_endpoint",
        ),
    ] {
        let refused = admin
            .json(Method::PATCH, &format!("/plugins/{id}"), patch.clone())
            .await;
        expect_status(&refused, 400);
        assert!(
            refused.text.contains(field) && refused.text.contains("not supported"),
            "{patch}: {}",
            refused.text
        );
    }
    assert_eq!(admin.version().await, version, "a refused write committed");
}

both_backends!(opentelemetry_plugin_config, plugin_config);
