//! Node endpoints: `/`, `/status`, `/plugins/enabled`, schemas, `/endpoints`
//! and the generated OpenAPI document.

use crate::both_backends;
use crate::support::{expect_status, Admin, Backend};
use axum::http::Method;
use serde_json::json;

async fn node_endpoints(backend: Backend) {
    let admin = Admin::new(backend).await;
    let root = admin.get("/").await;
    expect_status(&root, 200);
    for field in [
        "tagline",
        "version",
        "edition",
        "hostname",
        "node_id",
        "plugins",
        "configuration",
        "timers",
    ] {
        assert!(root.body.get(field).is_some(), "GET / lacks {field}");
    }
    // the plugins the data planes of this build run, each with its priority
    let supported: Vec<&tollgate_shared::plugin::PluginRow> = tollgate_shared::plugin::table()
        .iter()
        .filter(|row| row.supported)
        .collect();
    assert!(
        supported.iter().any(|row| row.name == "ip-restriction"),
        "ip-restriction runs"
    );
    let expected: serde_json::Map<String, serde_json::Value> = supported
        .iter()
        .map(|row| {
            (
                row.name.to_string(),
                json!({"version": root.body["version"], "priority": row.priority}),
            )
        })
        .collect();
    assert_eq!(
        root.body["plugins"]["available_on_server"],
        serde_json::Value::Object(expected)
    );
    assert_eq!(
        root.body["plugins"]["available_on_server"]["ip-restriction"]["priority"],
        990
    );
    assert_eq!(root.body["plugins"]["enabled_in_cluster"], json!([]));
    assert_eq!(
        root.headers["server"],
        concat!("tollgate/", env!("CARGO_PKG_VERSION"))
    );

    let status = admin.get("/status").await;
    expect_status(&status, 200);
    assert_eq!(status.body["database"]["reachable"], true);
    assert!(status.body["server"]["total_requests"].as_u64().unwrap() >= 2);

    let enabled = admin.get("/plugins/enabled").await;
    let mut names: Vec<&str> = supported.iter().map(|row| row.name).collect();
    names.sort_unstable();
    assert_eq!(enabled.body["enabled_plugins"], json!(names));

    let services = admin.get("/schemas/services").await;
    expect_status(&services, 200);
    assert!(services.body["fields"].as_array().unwrap().len() > 10);
    expect_status(&admin.get("/schemas/jwt_secrets").await, 200);
    let missing = admin.get("/schemas/widgets").await;
    expect_status(&missing, 404);
    assert_eq!(missing.body["message"], "No entity named 'widgets'");
    expect_status(&admin.get("/schemas/plugins/rate-limiting").await, 200);
    expect_status(&admin.get("/schemas/plugins/nope").await, 404);

    let ok = admin
        .form(
            Method::POST,
            "/schemas/services/validate",
            &[("host", "x.example")],
        )
        .await;
    expect_status(&ok, 200);
    let bad = admin
        .json(
            Method::POST,
            "/schemas/plugins/validate",
            json!({"name": "rate-limiting", "config": {}}),
        )
        .await;
    expect_status(&bad, 400);
    assert_eq!(bad.body["code"], 2);
    assert_eq!(admin.version().await, 0, "validation writes nothing");

    let endpoints = admin.get("/endpoints").await;
    let paths: Vec<&str> = endpoints.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for path in [
        "/services/{service}/routes/{route}",
        "/consumers/{consumer}/jwt/{jwt}",
        "/jwts/{jwt}/consumer",
        "/certificates/{certificate}/snis",
        "/routes/{route}/service",
        "/config",
        "/audit",
    ] {
        assert!(paths.contains(&path), "missing {path}");
    }
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);

    // the OpenAPI document covers every endpoint and method the table serves
    let openapi = admin.get("/openapi.json").await;
    expect_status(&openapi, 200);
    assert_eq!(openapi.body["openapi"], "3.0.3");
    let documented = openapi.body["paths"].as_object().unwrap();
    for endpoint in &admin.state.routes.endpoints {
        let item = documented
            .get(&endpoint.path)
            .unwrap_or_else(|| panic!("{} undocumented", endpoint.path));
        for method in endpoint.methods {
            let op = &item[method.as_str().to_ascii_lowercase()];
            assert!(
                op["responses"].is_object(),
                "{} {} undocumented",
                method,
                endpoint.path
            );
        }
    }
    let consumer = &openapi.body["components"]["schemas"]["Consumers"];
    assert!(consumer["properties"]["username"].is_object());
    let op_ids: Vec<&str> = documented
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    let mut unique = op_ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), op_ids.len(), "operationIds are unique");
}
both_backends!(node_information, node_endpoints);

/// Writes name the version they committed; `/clustering/*` needs a cluster listener.
async fn config_version_header_and_clustering_without_a_cluster(backend: Backend) {
    let admin = Admin::new(backend).await;
    let created = admin
        .form(
            Method::POST,
            "/services",
            &[("name", "s1"), ("host", "example.com")],
        )
        .await;
    expect_status(&created, 201);
    let first: i64 = created.headers["x-tollgate-config-version"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(first, admin.version().await);
    let patched = admin
        .json(Method::PATCH, "/services/s1", json!({"retries": 2}))
        .await;
    expect_status(&patched, 200);
    assert_eq!(
        patched.headers["x-tollgate-config-version"],
        (first + 1).to_string().as_str()
    );
    let deleted = admin.delete("/services/s1").await;
    expect_status(&deleted, 204);
    assert_eq!(
        deleted.headers["x-tollgate-config-version"],
        (first + 2).to_string().as_str()
    );
    // Deleting what is not there commits nothing and names no version.
    let nothing = admin.delete("/services/s1").await;
    expect_status(&nothing, 204);
    assert!(!nothing.headers.contains_key("x-tollgate-config-version"));
    // Reads carry no version either.
    assert!(!admin
        .get("/services")
        .await
        .headers
        .contains_key("x-tollgate-config-version"));

    for path in ["/clustering/data-planes", "/clustering/status"] {
        let reply = admin.get(path).await;
        expect_status(&reply, 400);
        assert_eq!(
            reply.body["message"],
            "this endpoint is only available when Kong is configured to run as Control Plane for the cluster"
        );
    }
}
both_backends!(
    writes_and_clustering,
    config_version_header_and_clustering_without_a_cluster
);

/// The jwt plugin's JWKS fields (beyond Kong) are validated by the Admin API
/// like Kong's own, with Kong's error format, and defaulted on write.
async fn jwt_jwks_fields_validate(backend: Backend) {
    let admin = Admin::new(backend).await;
    let bad = admin
        .json(
            Method::POST,
            "/plugins",
            json!({"name": "jwt", "config": {
                "jwks_uri": "http://idp.example/jwks", "jwks_refresh_interval": 0
            }}),
        )
        .await;
    expect_status(&bad, 400);
    assert_eq!(
        bad.body["fields"]["config"],
        json!({
            "jwks_uri": "must use https (http only to a loopback address)",
            "jwks_refresh_interval": "value should be between 1 and 86400",
        })
    );
    let good = admin
        .json(
            Method::POST,
            "/plugins",
            json!({"name": "jwt", "config": {"jwks_uri": "https://idp.example/jwks"}}),
        )
        .await;
    expect_status(&good, 201);
    assert_eq!(good.body["config"]["jwks_uri"], "https://idp.example/jwks");
    assert_eq!(good.body["config"]["jwks_refresh_interval"], 60);
}
both_backends!(jwt_jwks, jwt_jwks_fields_validate);
