//! The seed guide's Admin API sequence (sections 4–11), as its curl commands send it.

use crate::both_backends;
use crate::support::{expect_not_enabled, expect_status, plugin_supported, Admin, Backend, Reply};
use axum::http::Method;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use tollgate_shared::hash::config_hash;

/// One write of the guide: a `curl -X POST` of a form to a collection.
struct Step {
    /// What the step does, to name it in assertions.
    what: &'static str,
    path: &'static str,
    form: &'static [(&'static str, &'static str)],
    /// The plugin the step adds, if it adds one.
    plugin: Option<&'static str>,
}

/// The guide's writes, in its order.
const GUIDE: &[Step] = &[
    // 4: service and route
    Step {
        what: "service",
        path: "/services",
        form: &[("name", "my-api"), ("url", "http://127.0.0.1:3000")],
        plugin: None,
    },
    Step {
        what: "route",
        path: "/services/my-api/routes",
        form: &[("paths[]", "/api"), ("strip_path", "false")],
        plugin: None,
    },
    // 5: rate limiting, global then per service with the redis shorthands
    Step {
        what: "global rate limiting",
        path: "/plugins",
        form: &[
            ("name", "rate-limiting"),
            ("config.minute", "100"),
            ("config.policy", "local"),
            ("config.hide_client_headers", "false"),
        ],
        plugin: Some("rate-limiting"),
    },
    Step {
        what: "service rate limiting",
        path: "/services/my-api/plugins",
        form: &[
            ("name", "rate-limiting"),
            ("config.minute", "30"),
            ("config.hour", "500"),
            ("config.policy", "redis"),
            ("config.redis_host", "127.0.0.1"),
            ("config.redis_port", "6379"),
        ],
        plugin: Some("rate-limiting"),
    },
    // 6: jwt on the service, a consumer, a generated credential
    Step {
        what: "jwt",
        path: "/services/my-api/plugins",
        form: &[("name", "jwt")],
        plugin: Some("jwt"),
    },
    Step {
        what: "consumer",
        path: "/consumers",
        form: &[("username", "api-client-1")],
        plugin: None,
    },
    Step {
        what: "jwt credential",
        path: "/consumers/api-client-1/jwt",
        form: &[],
        plugin: None,
    },
    // 7: ip restriction allow (service) and deny (global)
    Step {
        what: "ip allow",
        path: "/services/my-api/plugins",
        form: &[
            ("name", "ip-restriction"),
            ("config.allow[]", "203.0.113.10"),
            ("config.allow[]", "10.0.0.0/8"),
        ],
        plugin: Some("ip-restriction"),
    },
    Step {
        what: "ip deny",
        path: "/plugins",
        form: &[
            ("name", "ip-restriction"),
            ("config.deny[]", "198.51.100.0/24"),
        ],
        plugin: Some("ip-restriction"),
    },
    // 8: logging
    Step {
        what: "file log",
        path: "/plugins",
        form: &[
            ("name", "file-log"),
            ("config.path", "/var/log/kong/access.log"),
            ("config.reopen", "true"),
        ],
        plugin: Some("file-log"),
    },
    Step {
        what: "http log",
        path: "/plugins",
        form: &[
            ("name", "http-log"),
            (
                "config.http_endpoint",
                "http://log-aggregator:9200/kong-logs",
            ),
            ("config.method", "POST"),
            ("config.timeout", "10000"),
            ("config.keepalive", "60000"),
        ],
        plugin: Some("http-log"),
    },
    // 11: prometheus
    Step {
        what: "prometheus",
        path: "/plugins",
        form: &[("name", "prometheus")],
        plugin: Some("prometheus"),
    },
];

/// Sends the step as its curl command does (no body when it has no data).
async fn send(admin: &Admin, step: &Step) -> Reply {
    if step.form.is_empty() {
        admin.send(Method::POST, step.path, None, "").await
    } else {
        admin.form(Method::POST, step.path, step.form).await
    }
}

/// Whether this build accepts the step: it adds no plugin, or one the data
/// planes run.
fn accepted(step: &Step) -> bool {
    step.plugin.is_none_or(plugin_supported)
}

async fn guide_sequence(backend: Backend) {
    let admin = Admin::new(backend).await;

    // 3: "curl -s http://127.0.0.1:8001/ | grep version"
    let root = admin.get("/").await;
    expect_status(&root, 200);
    assert!(root.body["version"].is_string());

    // every step in order; a plugin the data planes do not run is refused
    // with nothing stored
    let mut replies: HashMap<&str, Reply> = HashMap::new();
    for step in GUIDE {
        let reply = match step.plugin {
            Some(name) => {
                admin
                    .plugin_write(name, step.path, send(&admin, step))
                    .await
            }
            None => Some(send(&admin, step).await),
        };
        if let Some(reply) = reply {
            expect_status(&reply, 201);
            replies.insert(step.what, reply);
        }
    }

    let service = &replies["service"];
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

    let route = &replies["route"];
    assert_eq!(route.body["paths"], json!(["/api"]));
    assert_eq!(route.body["strip_path"], false);
    assert_eq!(route.body["service"], json!({"id": service_id}));
    assert_eq!(route.body["protocols"], json!(["http", "https"]));
    assert_eq!(route.body["methods"], json!(null));

    let services = admin.get("/services").await;
    expect_status(&services, 200);
    assert_eq!(services.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(services.body["next"], json!(null));

    if let Some(global_rl) = replies.get("global rate limiting") {
        assert_eq!(global_rl.body["config"]["minute"], 100);
        assert_eq!(global_rl.body["config"]["policy"], "local");
        assert_eq!(global_rl.body["config"]["hide_client_headers"], false);
        assert_eq!(global_rl.body["service"], json!(null));
        assert_eq!(global_rl.body["enabled"], true);
    }
    if let Some(service_rl) = replies.get("service rate limiting") {
        let config = &service_rl.body["config"];
        assert_eq!(config["minute"], 30);
        assert_eq!(config["hour"], 500);
        assert_eq!(config["policy"], "redis");
        assert_eq!(config["redis"]["host"], "127.0.0.1");
        assert_eq!(config["redis"]["port"], 6379);
        assert_eq!(config["redis_host"], "127.0.0.1");
        assert_eq!(config["redis_port"], 6379);
        assert_eq!(service_rl.body["service"], json!({"id": service_id}));
    }
    if let Some(jwt) = replies.get("jwt") {
        assert_eq!(jwt.body["config"]["header_names"], json!(["authorization"]));
        assert_eq!(jwt.body["config"]["key_claim_name"], "iss");
    }

    let consumer_id = replies["consumer"].body["id"].as_str().unwrap();
    let credential = &replies["jwt credential"];
    assert_eq!(credential.body["algorithm"], "HS256");
    assert_eq!(credential.body["key"].as_str().unwrap().len(), 32);
    assert_eq!(credential.body["secret"].as_str().unwrap().len(), 32);
    assert_eq!(credential.body["rsa_public_key"], json!(null));
    assert_eq!(credential.body["consumer"], json!({"id": consumer_id}));

    let allow = &replies["ip allow"];
    assert_eq!(
        allow.body["config"]["allow"],
        json!(["203.0.113.10", "10.0.0.0/8"])
    );
    assert_eq!(allow.body["service"], json!({"id": service_id}));
    let deny = &replies["ip deny"];
    assert_eq!(deny.body["config"]["deny"], json!(["198.51.100.0/24"]));
    assert_eq!(deny.body["service"], json!(null));

    if let Some(file_log) = replies.get("file log") {
        assert_eq!(file_log.body["config"]["reopen"], true);
    }
    if let Some(http_log) = replies.get("http log") {
        assert_eq!(http_log.body["config"]["timeout"], 10000);
        assert_eq!(http_log.body["config"]["keepalive"], 60000);
    }

    // the stored plugins are exactly those the accepted steps added
    let plugin_steps: Vec<&Step> = GUIDE
        .iter()
        .filter(|step| step.plugin.is_some() && accepted(step))
        .collect();
    let plugins = admin.get("/plugins").await;
    expect_status(&plugins, 200);
    let mut stored_ids: Vec<&str> = plugins.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    stored_ids.sort_unstable();
    let mut added_ids: Vec<&str> = plugin_steps
        .iter()
        .map(|step| replies[step.what].body["id"].as_str().unwrap())
        .collect();
    added_ids.sort_unstable();
    assert_eq!(stored_ids, added_ids);
    let root = admin.get("/").await;
    let enabled: BTreeSet<&str> = root.body["plugins"]["enabled_in_cluster"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    let added_names: BTreeSet<&str> = plugin_steps.iter().filter_map(|s| s.plugin).collect();
    assert_eq!(enabled, added_names);

    // every accepted write was one version; the committed state builds a config
    let writes = GUIDE.iter().filter(|step| accepted(step)).count() as i64;
    assert_eq!(admin.version().await, writes);
    let (version, config) = admin.store.load_config().await.unwrap();
    assert_eq!(version, writes);
    assert_eq!(config.plugins.len(), plugin_steps.len());
    assert_eq!(config.jwt_secrets.len(), 1);
}
both_backends!(seed_guide_sequence, guide_sequence);

/// Following the guide never commits a change the data planes could not
/// compile, which would leave it (and every later change) unpublished: after
/// each write that answered 2xx the whole stored config passes the data
/// planes' compile check, and a refused write changes nothing.
async fn guide_stays_publishable(backend: Backend) {
    let admin = Admin::new(backend).await;
    for step in GUIDE {
        let (version, before) = admin.store.load_config().await.unwrap();
        let reply = send(&admin, step).await;
        let (after_version, after) = admin.store.load_config().await.unwrap();
        assert_eq!(
            reply.status.is_success(),
            accepted(step),
            "{}: accepted exactly when it adds no plugin or one this build runs; body: {}",
            step.what,
            reply.text
        );
        if reply.status.is_success() {
            assert_eq!(after_version, version + 1, "{}: one version", step.what);
            if let Err(errors) = tollgate_shared::compile::check(&after) {
                panic!(
                    "{}: committed a config the data planes refuse: {errors:?}",
                    step.what
                );
            }
        } else {
            if let Some(name) = step.plugin {
                expect_not_enabled(&reply, name);
            }
            assert_eq!(
                after_version, version,
                "{}: refused, yet committed",
                step.what
            );
            assert_eq!(
                config_hash(&after),
                config_hash(&before),
                "{}: refused, yet changed the config",
                step.what
            );
        }
    }
    // the guide's own end state is published as a whole too
    let exported = admin.get("/config").await;
    expect_status(&exported, 200);
    let dry_run = admin
        .json(
            Method::POST,
            "/config?dry_run=true",
            json!({ "config": exported.body["config"] }),
        )
        .await;
    expect_status(&dry_run, 200);
}
both_backends!(seed_guide_stays_publishable, guide_stays_publishable);
