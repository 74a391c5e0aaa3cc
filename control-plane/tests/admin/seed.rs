//! The seed guide's Admin API sequence (sections 4–11), as its curl commands send it.

use crate::both_backends;
use crate::support::{expect_status, Admin, Backend};
use axum::http::Method;
use serde_json::json;

async fn guide_sequence(backend: Backend) {
    let admin = Admin::new(backend).await;

    // 3: "curl -s http://127.0.0.1:8001/ | grep version"
    let root = admin.get("/").await;
    expect_status(&root, 200);
    assert!(root.body["version"].is_string());

    // 4: service and route
    let service = admin
        .form(
            Method::POST,
            "/services",
            &[("name", "my-api"), ("url", "http://127.0.0.1:3000")],
        )
        .await;
    expect_status(&service, 201);
    assert_eq!(service.body["name"], "my-api");
    assert_eq!(service.body["host"], "127.0.0.1");
    assert_eq!(service.body["port"], 3000);
    assert_eq!(service.body["protocol"], "http");
    assert_eq!(service.body["path"], json!(null));
    assert_eq!(service.body["retries"], 5);
    assert!(service.body.get("url").is_none());
    assert_eq!(
        service.headers["content-type"],
        "application/json; charset=utf-8"
    );
    let service_id = service.body["id"].as_str().unwrap().to_string();

    let route = admin
        .form(
            Method::POST,
            "/services/my-api/routes",
            &[("paths[]", "/api"), ("strip_path", "false")],
        )
        .await;
    expect_status(&route, 201);
    assert_eq!(route.body["paths"], json!(["/api"]));
    assert_eq!(route.body["strip_path"], false);
    assert_eq!(route.body["service"], json!({"id": service_id}));
    assert_eq!(route.body["protocols"], json!(["http", "https"]));
    assert_eq!(route.body["methods"], json!(null));

    let services = admin.get("/services").await;
    expect_status(&services, 200);
    assert_eq!(services.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(services.body["next"], json!(null));

    // 5: rate limiting, global then per service with the redis shorthands
    let global_rl = admin
        .form(
            Method::POST,
            "/plugins",
            &[
                ("name", "rate-limiting"),
                ("config.minute", "100"),
                ("config.policy", "local"),
                ("config.hide_client_headers", "false"),
            ],
        )
        .await;
    expect_status(&global_rl, 201);
    assert_eq!(global_rl.body["config"]["minute"], 100);
    assert_eq!(global_rl.body["config"]["policy"], "local");
    assert_eq!(global_rl.body["config"]["hide_client_headers"], false);
    assert_eq!(global_rl.body["service"], json!(null));
    assert_eq!(global_rl.body["enabled"], true);

    let service_rl = admin
        .form(
            Method::POST,
            "/services/my-api/plugins",
            &[
                ("name", "rate-limiting"),
                ("config.minute", "30"),
                ("config.hour", "500"),
                ("config.policy", "redis"),
                ("config.redis_host", "127.0.0.1"),
                ("config.redis_port", "6379"),
            ],
        )
        .await;
    expect_status(&service_rl, 201);
    let config = &service_rl.body["config"];
    assert_eq!(config["minute"], 30);
    assert_eq!(config["hour"], 500);
    assert_eq!(config["policy"], "redis");
    assert_eq!(config["redis"]["host"], "127.0.0.1");
    assert_eq!(config["redis"]["port"], 6379);
    assert_eq!(config["redis_host"], "127.0.0.1");
    assert_eq!(config["redis_port"], 6379);
    assert_eq!(service_rl.body["service"], json!({"id": service_id}));

    // 6: jwt on the service, a consumer, a generated credential
    let jwt = admin
        .form(Method::POST, "/services/my-api/plugins", &[("name", "jwt")])
        .await;
    expect_status(&jwt, 201);
    assert_eq!(jwt.body["config"]["header_names"], json!(["authorization"]));
    assert_eq!(jwt.body["config"]["key_claim_name"], "iss");

    let consumer = admin
        .form(Method::POST, "/consumers", &[("username", "api-client-1")])
        .await;
    expect_status(&consumer, 201);
    let consumer_id = consumer.body["id"].as_str().unwrap().to_string();

    let credential = admin
        .send(Method::POST, "/consumers/api-client-1/jwt", None, "")
        .await;
    expect_status(&credential, 201);
    assert_eq!(credential.body["algorithm"], "HS256");
    assert_eq!(credential.body["key"].as_str().unwrap().len(), 32);
    assert_eq!(credential.body["secret"].as_str().unwrap().len(), 32);
    assert_eq!(credential.body["rsa_public_key"], json!(null));
    assert_eq!(credential.body["consumer"], json!({"id": consumer_id}));

    // 7: ip restriction allow (service) and deny (global)
    let allow = admin
        .form(
            Method::POST,
            "/services/my-api/plugins",
            &[
                ("name", "ip-restriction"),
                ("config.allow[]", "203.0.113.10"),
                ("config.allow[]", "10.0.0.0/8"),
            ],
        )
        .await;
    expect_status(&allow, 201);
    assert_eq!(
        allow.body["config"]["allow"],
        json!(["203.0.113.10", "10.0.0.0/8"])
    );
    let deny = admin
        .form(
            Method::POST,
            "/plugins",
            &[
                ("name", "ip-restriction"),
                ("config.deny[]", "198.51.100.0/24"),
            ],
        )
        .await;
    expect_status(&deny, 201);
    assert_eq!(deny.body["config"]["deny"], json!(["198.51.100.0/24"]));

    // 8: logging
    let file_log = admin
        .form(
            Method::POST,
            "/plugins",
            &[
                ("name", "file-log"),
                ("config.path", "/var/log/kong/access.log"),
                ("config.reopen", "true"),
            ],
        )
        .await;
    expect_status(&file_log, 201);
    assert_eq!(file_log.body["config"]["reopen"], true);
    let http_log = admin
        .form(
            Method::POST,
            "/plugins",
            &[
                ("name", "http-log"),
                (
                    "config.http_endpoint",
                    "http://log-aggregator:9200/kong-logs",
                ),
                ("config.method", "POST"),
                ("config.timeout", "10000"),
                ("config.keepalive", "60000"),
            ],
        )
        .await;
    expect_status(&http_log, 201);
    assert_eq!(http_log.body["config"]["timeout"], 10000);
    assert_eq!(http_log.body["config"]["keepalive"], 60000);

    // 11: prometheus
    let prometheus = admin
        .form(Method::POST, "/plugins", &[("name", "prometheus")])
        .await;
    expect_status(&prometheus, 201);

    let plugins = admin.get("/plugins").await;
    expect_status(&plugins, 200);
    assert_eq!(plugins.body["data"].as_array().unwrap().len(), 8);
    let root = admin.get("/").await;
    let enabled = root.body["plugins"]["enabled_in_cluster"]
        .as_array()
        .unwrap();
    assert_eq!(enabled.len(), 6);

    // every write was one version; the committed state builds a config
    assert_eq!(admin.version().await, 12);
    let (version, config) = admin.store.load_config().await.unwrap();
    assert_eq!(version, 12);
    assert_eq!(config.plugins.len(), 8);
    assert_eq!(config.jwt_secrets.len(), 1);
}
both_backends!(seed_guide_sequence, guide_sequence);
