//! Beyond Kong: bearer tokens on the Admin API, and the audit log with secrets
//! redacted.

use crate::both_backends;
use crate::support::{expect_status, Admin, Backend};
use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;

const TOKEN: &str = "s3cr3t-token-0123456789";
const OTHER: &str = "another-token-abcdefghij";

fn authed(method: Method, path: &str, token: Option<&str>, body: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        builder = builder.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        builder = builder.header("content-type", "application/x-www-form-urlencoded");
    }
    builder
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
        .unwrap()
}

async fn tokens(backend: Backend) {
    let admin = Admin::with_tokens(backend, &[TOKEN, OTHER]).await;
    let cases: Vec<(Request<Body>, u16)> = vec![
        (authed(Method::GET, "/", None, None), 401),
        (
            authed(
                Method::GET,
                "/services",
                Some("wrong-token-0000000000"),
                None,
            ),
            401,
        ),
        (authed(Method::GET, "/nonexistent", None, None), 401),
        (
            authed(Method::POST, "/consumers", None, Some("username=mallory")),
            401,
        ),
        (
            Request::builder()
                .uri("/services")
                .header("authorization", format!("Basic {TOKEN}"))
                .body(Body::empty())
                .unwrap(),
            401,
        ),
        (authed(Method::GET, "/services", Some(TOKEN), None), 200),
        (authed(Method::GET, "/services", Some(OTHER), None), 200),
        (
            authed(
                Method::POST,
                "/consumers",
                Some(TOKEN),
                Some("username=alice"),
            ),
            201,
        ),
    ];
    for (request, status) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let reply = admin.request(request).await;
        assert_eq!(reply.status.as_u16(), status, "{what}: {}", reply.text);
        if status == 401 {
            assert_eq!(reply.body, json!({"message": "Unauthorized"}), "{what}");
        }
    }
    // nothing but alice was created; the actor is the token's id, never the token
    assert_eq!(admin.version().await, 1);
    let audit = admin
        .request(authed(Method::GET, "/audit", Some(TOKEN), None))
        .await;
    expect_status(&audit, 200);
    let entry = &audit.body["data"][0];
    assert!(entry["actor"].as_str().unwrap().starts_with("token-"));
    assert!(!audit.text.contains(TOKEN));
}
both_backends!(bearer_tokens, tokens);

async fn audit_log(backend: Backend) {
    let admin = Admin::new(backend).await;
    // the changes the audit log must record, in order: method, entity type
    let mut expected: Vec<(&str, &str)> = Vec::new();
    expect_status(
        &admin
            .form(Method::POST, "/consumers", &[("username", "frank")])
            .await,
        201,
    );
    expected.push(("POST", "consumers"));
    let jwt = admin
        .form(
            Method::POST,
            "/consumers/frank/jwt",
            &[("key", "frank-key"), ("secret", "very-secret-value")],
        )
        .await;
    expect_status(&jwt, 201);
    expected.push(("POST", "jwt_secrets"));
    let generated = rcgen::generate_simple_self_signed(vec!["audit.example".to_string()]).unwrap();
    let key_pem = generated.signing_key.serialize_pem();
    let cert = admin
        .json(
            Method::POST,
            "/certificates",
            json!({"cert": generated.cert.pem(), "key": key_pem}),
        )
        .await;
    expect_status(&cert, 201);
    expected.push(("POST", "certificates"));

    // plugins with secrets in their config, recorded when this build runs them
    let rate_limiting = admin
        .plugin_write(
            "rate-limiting",
            "/plugins",
            admin.form(
                Method::POST,
                "/plugins",
                &[
                    ("name", "rate-limiting"),
                    ("config.minute", "10"),
                    ("config.policy", "redis"),
                    ("config.redis.host", "redis.internal"),
                    ("config.redis.password", "redis-pass-123"),
                ],
            ),
        )
        .await;
    if let Some(reply) = &rate_limiting {
        expect_status(reply, 201);
        expected.push(("POST", "plugins"));
    }
    let endpoint_log = admin
        .plugin_write(
            "http-log",
            "/plugins",
            admin.json(
                Method::POST,
                "/plugins",
                json!({"name": "http-log", "config": {"http_endpoint": "https://logger:hunter2@logs.example/ingest"}}),
            ),
        )
        .await;
    if let Some(reply) = &endpoint_log {
        expect_status(reply, 201);
        expected.push(("POST", "plugins"));
    }
    let header_log = admin
        .plugin_write(
            "http-log",
            "/consumers/frank/plugins",
            admin.json(
                Method::POST,
                "/consumers/frank/plugins",
                json!({"name": "http-log", "config": {
                    "http_endpoint": "https://logs.example/ingest",
                    "headers": {"Authorization": "Bearer log-token-xyz"}
                }}),
            ),
        )
        .await;
    if let Some(reply) = &header_log {
        expect_status(reply, 201);
        expected.push(("POST", "plugins"));
    }

    let patched = admin
        .form(
            Method::PATCH,
            "/jwts/frank-key",
            &[("secret", "rotated-secret-value")],
        )
        .await;
    expect_status(&patched, 200);
    expected.push(("PATCH", "jwt_secrets"));
    expect_status(&admin.delete("/consumers/frank").await, 204);
    expected.push(("DELETE", "consumers"));

    let audit = admin.get("/audit").await;
    expect_status(&audit, 200);
    let entries = audit.body["data"].as_array().unwrap();
    // refused writes are not recorded
    let recorded: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap(),
                e["entity_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(recorded, expected);
    for secret in [
        "very-secret-value",
        "PRIVATE KEY",
        "redis-pass-123",
        "hunter2",
        "log-token-xyz",
        "rotated-secret-value",
    ] {
        assert!(!audit.text.contains(secret), "audit leaks {secret}");
    }
    let by_id = |id: &serde_json::Value| {
        entries
            .iter()
            .find(|e| e["after"]["id"] == *id)
            .unwrap_or_else(|| panic!("no audit entry creates {id}"))
    };
    assert_eq!(by_id(&jwt.body["id"])["after"]["secret"], "******");
    let cert_entry = by_id(&cert.body["id"]);
    assert_eq!(cert_entry["after"]["key"], "******");
    assert!(cert_entry["after"]["cert"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    if let Some(reply) = &rate_limiting {
        let config = &by_id(&reply.body["id"])["after"]["config"];
        assert_eq!(config["redis"]["password"], "******");
        assert_eq!(config["redis"]["host"], "redis.internal");
    }
    if let Some(reply) = &endpoint_log {
        assert_eq!(
            by_id(&reply.body["id"])["after"]["config"]["http_endpoint"],
            "https://logger:******@logs.example/ingest"
        );
    }
    if let Some(reply) = &header_log {
        assert_eq!(
            by_id(&reply.body["id"])["after"]["config"]["headers"]["Authorization"],
            "******"
        );
    }
    let patch = &entries[expected.len() - 2];
    assert_eq!(patch["entity_type"], "jwt_secrets");
    assert_eq!(patch["path"], "/jwts/frank-key");
    assert_eq!(patch["actor"], "local");
    assert_eq!(patch["before"]["secret"], "******");
    assert_eq!(patch["after"]["secret"], "******");
    assert_eq!(patch["after"]["key"], "frank-key");
    let delete = &entries[expected.len() - 1];
    assert_eq!(delete["before"]["username"], "frank");
    assert_eq!(delete["after"], serde_json::Value::Null);
    let versions: Vec<i64> = entries
        .iter()
        .map(|e| e["config_version"].as_i64().unwrap())
        .collect();
    let consecutive: Vec<i64> = (1..=expected.len() as i64).collect();
    assert_eq!(versions, consecutive, "one version per recorded change");

    // paginated like the collections
    let first = admin.get("/audit?size=4").await;
    assert_eq!(first.body["data"].as_array().unwrap().len(), 4);
    let next = first.body["next"].as_str().unwrap().to_string();
    let second = admin.get(&next).await;
    let rest = second.body["data"].as_array().unwrap();
    assert_eq!(rest.len(), expected.len() - 4);
    let paged: Vec<&serde_json::Value> = first.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest)
        .collect();
    assert_eq!(paged, entries.iter().collect::<Vec<_>>());
    assert!(second.body.get("offset").is_none());
}
both_backends!(audit_records_redacted, audit_log);

/// Without a token, a web page in a browser on the admin host must not be able
/// to drive the Admin API (CSRF, CORS reads, DNS rebinding); curl still can.
async fn browser_guard(backend: Backend) {
    let admin = Admin::new(backend).await;
    let request = |headers: &[(&str, &str)], method: Method| {
        let mut builder = Request::builder().method(method.clone()).uri("/consumers");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        if method == Method::POST {
            builder = builder.header("content-type", "application/x-www-form-urlencoded");
            builder.body(Body::from("username=victim")).unwrap()
        } else {
            builder.body(Body::empty()).unwrap()
        }
    };
    type Case<'a> = (&'a [(&'a str, &'a str)], Method, u16);
    let cases: Vec<Case> = vec![
        (&[("origin", "https://evil.example")], Method::POST, 403),
        (&[("origin", "https://evil.example")], Method::GET, 403),
        (&[("origin", "null")], Method::POST, 403),
        (&[("host", "evil.example:8001")], Method::GET, 403),
        (&[("host", "127.0.0.1:8001")], Method::GET, 200),
        (
            &[
                ("host", "localhost:8001"),
                ("origin", "http://localhost:8002"),
            ],
            Method::GET,
            200,
        ),
        (&[("host", "[::1]:8001")], Method::GET, 200),
        (&[], Method::GET, 200),
    ];
    for (headers, method, status) in cases {
        let reply = admin.request(request(headers, method.clone())).await;
        assert_eq!(
            reply.status.as_u16(),
            status,
            "{method} {headers:?}: {}",
            reply.text
        );
    }
    assert_eq!(admin.version().await, 0);
    // with a token, CORS is Kong's (the token is not an ambient credential)
    let tokened = Admin::with_tokens(backend, &[TOKEN]).await;
    let reply = tokened
        .request(
            Request::builder()
                .uri("/consumers")
                .header("origin", "https://ui.example")
                .header("host", "admin.example")
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    expect_status(&reply, 200);
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://ui.example"
    );
}
both_backends!(tokenless_admin_refuses_browsers, browser_guard);

/// With `--secrets-key-file`, secrets are sealed in the database and open
/// only with the key; the Admin API and the config see plaintext.
async fn sealed_secrets(backend: Backend) {
    use std::sync::Arc;
    use tollgate_control_plane::store::{Keyring, Store};
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let db = crate::support::TestDb::new(backend).await;
    let options = tollgate_control_plane::store::StoreOptions {
        keyring: Some(Arc::new(Keyring::parse(key).unwrap())),
        ..crate::support::test_store_options()
    };
    let store = Store::connect(&db.url, options).unwrap();
    store.migrate().await.unwrap();
    let url = db.url.clone();
    let admin = Admin::on_store(db, store, &[]);
    expect_status(
        &admin
            .form(Method::POST, "/consumers", &[("username", "gina")])
            .await,
        201,
    );
    let jwt = admin
        .form(
            Method::POST,
            "/consumers/gina/jwt",
            &[("key", "gina-key"), ("secret", "plain-secret-42")],
        )
        .await;
    expect_status(&jwt, 201);
    assert_eq!(jwt.body["secret"], "plain-secret-42");
    let patched = admin
        .form(Method::PATCH, "/jwts/gina-key", &[("algorithm", "HS512")])
        .await;
    expect_status(&patched, 200);
    assert_eq!(patched.body["secret"], "plain-secret-42");
    assert_eq!(
        admin.get("/jwts/gina-key").await.body["secret"],
        "plain-secret-42"
    );
    let (_, config) = admin.store.load_config().await.unwrap();
    assert_eq!(
        config.jwt_secrets[0].secret.as_deref(),
        Some("plain-secret-42")
    );

    // the database holds only the sealed form
    let raw = Store::connect(&url, crate::support::test_store_options()).unwrap();
    let mut tx = raw.begin_write().await.unwrap();
    let err = tx
        .find(tollgate_shared::EntityKind::JwtSecrets, "gina-key")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no --secrets-key-file"), "{err}");
    drop(tx);
    let dump = raw_data(&url, backend).await;
    assert!(dump.contains("$tg1$"), "{dump}");
    assert!(!dump.contains("plain-secret-42"));
}
both_backends!(secrets_sealed_at_rest, sealed_secrets);

async fn raw_data(url: &str, backend: Backend) -> String {
    use sqlx::Connection;
    let rows: Vec<(String,)> = match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_as("SELECT data FROM jwt_secrets")
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_as("SELECT data FROM jwt_secrets")
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
    };
    rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n")
}
