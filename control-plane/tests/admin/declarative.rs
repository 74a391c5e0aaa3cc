//! `GET /config` and `POST /config`: the whole state as Kong declarative
//! YAML, replaced in one transaction, with dry runs and hash checks.

use crate::both_backends;
use crate::support::{expect_status, plugin_supported, Admin, Backend};
use axum::http::Method;
use serde_json::json;
use tollgate_shared::hash::config_hash;

async fn build_state(admin: &Admin) {
    let steps: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "/services",
            vec![("name", "my-api"), ("url", "http://127.0.0.1:3000")],
        ),
        (
            "/services/my-api/routes",
            vec![
                ("name", "api"),
                ("paths[]", "/api"),
                ("strip_path", "false"),
            ],
        ),
        (
            "/routes/api/plugins",
            vec![
                ("name", "ip-restriction"),
                ("config.allow[]", "10.0.0.0/8"),
                ("config.status", "451"),
            ],
        ),
        (
            "/services/my-api/plugins",
            vec![("name", "ip-restriction"), ("config.deny[]", "10.0.0.1")],
        ),
        (
            "/consumers",
            vec![("username", "api-client-1"), ("tags[]", "team-a")],
        ),
        (
            "/consumers/api-client-1/jwt",
            vec![("key", "issuer-1"), ("secret", "shared-secret-1")],
        ),
        (
            "/plugins",
            vec![
                ("name", "ip-restriction"),
                ("config.deny[]", "198.51.100.0/24"),
            ],
        ),
    ];
    for (path, pairs) in steps {
        expect_status(&admin.form(Method::POST, path, &pairs).await, 201);
    }
}

async fn round_trip(backend: Backend) {
    let admin = Admin::new(backend).await;
    build_state(&admin).await;
    let (version, before) = admin.store.load_config().await.unwrap();
    let exported = admin.get("/config").await;
    expect_status(&exported, 200);
    let yaml = exported.body["config"].as_str().unwrap().to_string();
    assert!(yaml.contains("_format_version"));
    assert!(yaml.contains("my-api"));

    // unchanged config with check_hash: 304, nothing written
    let same = admin
        .json(
            Method::POST,
            "/config?check_hash=1",
            json!({ "config": yaml }),
        )
        .await;
    expect_status(&same, 304);
    assert_eq!(admin.version().await, version);

    // dry run of an empty config: the diff deletes everything, writes nothing
    let dry = admin
        .send(
            Method::POST,
            "/config?dry_run=true",
            Some("application/yaml"),
            "_format_version: \"3.0\"\n",
        )
        .await;
    expect_status(&dry, 200);
    assert_eq!(dry.body["diff"]["services"]["deleted"][0]["name"], "my-api");
    assert_eq!(
        dry.body["diff"]["plugins"]["deleted"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(admin.version().await, version);

    // load the export back: same config, same hash, one new version
    let loaded = admin
        .json(Method::POST, "/config", json!({ "config": yaml }))
        .await;
    expect_status(&loaded, 201);
    assert_eq!(loaded.body["services"].as_object().unwrap().len(), 1);
    let (after_version, after) = admin.store.load_config().await.unwrap();
    assert_eq!(after_version, version + 1);
    assert_eq!(config_hash(&after), config_hash(&before));

    // replace with a different YAML body
    let replacement = "_format_version: \"3.0\"\nservices:\n  - name: other\n    url: http://10.0.0.1:8080/v1\n    routes:\n      - name: other-route\n        paths: [\"/other\"]\nconsumers:\n  - username: alice\n";
    let replaced = admin
        .send(
            Method::POST,
            "/config",
            Some("application/yaml"),
            replacement,
        )
        .await;
    expect_status(&replaced, 201);
    let services = admin.get("/services").await;
    assert_eq!(services.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(services.body["data"][0]["name"], "other");
    assert_eq!(admin.get("/plugins").await.body["data"], json!([]));
    assert_eq!(admin.get("/jwts").await.body["data"], json!([]));
    let audit = admin.get("/audit?size=1000").await;
    let last = audit.body["data"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["path"], "/config");
    assert!(!audit.text.contains("shared-secret-1"));
}
both_backends!(config_round_trip, round_trip);

async fn refusals(backend: Backend) {
    let admin = Admin::new(backend).await;
    build_state(&admin).await;
    let version = admin.version().await;
    let empty = admin.send(Method::POST, "/config", None, "").await;
    expect_status(&empty, 400);
    assert_eq!(
        empty.body["message"],
        "expected a declarative configuration"
    );

    let invalid = admin
        .send(
            Method::POST,
            "/config",
            Some("application/yaml"),
            "_format_version: \"3.0\"\nservices:\n  - name: broken\n    port: 99999\n",
        )
        .await;
    expect_status(&invalid, 400);
    assert_eq!(invalid.body["code"], 14);
    assert_eq!(invalid.body["name"], "invalid declarative configuration");
    assert_eq!(
        invalid.body["fields"]["services"][0]["port"],
        "value should be between 0 and 65535"
    );
    let flattened = admin
        .send(
            Method::POST,
            "/config?flatten_errors=1",
            Some("application/yaml"),
            "_format_version: \"3.0\"\nservices:\n  - name: broken\n    port: 99999\n",
        )
        .await;
    expect_status(&flattened, 400);
    assert!(
        flattened.body["flattened_errors"].is_array(),
        "{}",
        flattened.text
    );

    let garbage = admin
        .send(
            Method::POST,
            "/config",
            Some("application/yaml"),
            "services: [unclosed\n",
        )
        .await;
    expect_status(&garbage, 400);
    assert_eq!(garbage.body["code"], 14);

    // a file holding a plugin the data planes of this build do not run is
    // refused whole, naming it (with every sample plugin supported, none is left to try)
    let unsupported = [
        ("jwt", json!({})),
        ("rate-limiting", json!({"minute": 10})),
        ("prometheus", json!({})),
        (
            "http-log",
            json!({"http_endpoint": "http://logs.example/ingest"}),
        ),
        ("file-log", json!({"path": "/tmp/tollgate-test.log"})),
    ]
    .into_iter()
    .find(|(name, _)| !plugin_supported(name));
    if let Some((name, config)) = unsupported {
        let file = format!(
            "_format_version: \"3.0\"\nservices:\n  - name: other\n    url: http://10.0.0.1:8080\nplugins:\n  - name: {name}\n    config: {config}\n"
        );
        let refused = admin
            .send(Method::POST, "/config", Some("application/yaml"), file)
            .await;
        expect_status(&refused, 400);
        assert_eq!(refused.body["code"], 14, "{}", refused.text);
        assert_eq!(refused.body["name"], "invalid declarative configuration");
        assert!(
            refused.body["message"]
                .as_str()
                .unwrap()
                .contains(&format!("'{name}'")),
            "{}",
            refused.text
        );
    }

    let text = admin
        .send(Method::POST, "/config", Some("text/plain"), "x")
        .await;
    expect_status(&text, 415);
    assert_eq!(
        admin.version().await,
        version,
        "refused configs change nothing"
    );
    assert_eq!(
        admin.get("/services").await.body["data"][0]["name"],
        "my-api"
    );
}
both_backends!(config_refusals, refusals);
