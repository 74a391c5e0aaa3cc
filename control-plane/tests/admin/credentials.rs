//! The credentials of key-auth, basic-auth and acl on the Admin API: Kong's
//! endpoints (`/consumers/{c}/key-auth`, `/key-auths`, `/basic-auths`,
//! `/acls`, `/{x}/consumer`), generated keys, basic-auth passwords stored as
//! Kong's hash and never returned in clear, uniqueness, Kong's 400s, secrets
//! kept out of the audit log and sealed at rest, and declarative round trips.

use crate::both_backends;
use crate::support::{expect_status, Admin, Backend};
use axum::http::Method;
use serde_json::json;
use tollgate_shared::entity::basic_auth_password_hash;
use tollgate_shared::hash::config_hash;

async fn consumer(admin: &Admin, username: &str) -> String {
    let created = admin
        .form(Method::POST, "/consumers", &[("username", username)])
        .await;
    expect_status(&created, 201);
    created.body["id"].as_str().unwrap().to_string()
}

async fn key_auth_crud(backend: Backend) {
    let admin = Admin::new(backend).await;
    let alice = consumer(&admin, "alice").await;
    consumer(&admin, "bob").await;

    let created = admin
        .form(
            Method::POST,
            "/consumers/alice/key-auth",
            &[("key", "alice-key-1"), ("tags[]", "web")],
        )
        .await;
    expect_status(&created, 201);
    assert_eq!(created.body["key"], "alice-key-1");
    assert_eq!(created.body["consumer"], json!({"id": alice}));
    assert_eq!(created.body["tags"], json!(["web"]));
    let id = created.body["id"].as_str().unwrap().to_string();

    // Without a key, one is generated.
    let generated = admin
        .json(Method::POST, "/consumers/alice/key-auth", json!({}))
        .await;
    expect_status(&generated, 201);
    assert!(generated.body["key"].as_str().unwrap().len() >= 32);

    // Lookups: by key and id, nested and flat, and the consumer of a key.
    for path in [
        "/key-auths/alice-key-1".to_string(),
        format!("/key-auths/{id}"),
        "/consumers/alice/key-auth/alice-key-1".to_string(),
    ] {
        let found = admin.get(&path).await;
        expect_status(&found, 200);
        assert_eq!(found.body["id"], id.as_str(), "{path}");
    }
    expect_status(&admin.get("/consumers/bob/key-auth/alice-key-1").await, 404);
    let owner = admin.get("/key-auths/alice-key-1/consumer").await;
    expect_status(&owner, 200);
    assert_eq!(owner.body["username"], "alice");
    let listed = admin.get("/consumers/alice/key-auth").await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        admin.get("/consumers/bob/key-auth").await.body["data"],
        json!([])
    );
    assert_eq!(
        admin.get("/key-auths").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A key is unique across consumers; the 409 does not repeat it.
    let clash = admin
        .form(
            Method::POST,
            "/consumers/bob/key-auth",
            &[("key", "alice-key-1")],
        )
        .await;
    expect_status(&clash, 409);
    assert_eq!(clash.body["name"], "unique constraint violation");
    assert!(!clash.text.contains("alice-key-1"), "{}", clash.text);

    // Kong's 400s with field errors.
    let no_consumer = admin
        .json(Method::POST, "/key-auths", json!({"key": "x"}))
        .await;
    expect_status(&no_consumer, 400);
    assert_eq!(
        no_consumer.body["fields"]["consumer"],
        "required field missing"
    );
    let not_a_string = admin
        .json(Method::POST, "/consumers/alice/key-auth", json!({"key": 5}))
        .await;
    expect_status(&not_a_string, 400);
    assert_eq!(not_a_string.body["fields"]["key"], "expected a string");
    let unknown = admin
        .json(
            Method::POST,
            "/consumers/alice/key-auth",
            json!({"color": 1}),
        )
        .await;
    expect_status(&unknown, 400);
    assert_eq!(unknown.body["fields"]["color"], "unknown field");
    expect_status(
        &admin
            .form(Method::POST, "/consumers/nobody/key-auth", &[("key", "k")])
            .await,
        404,
    );

    // Kong's `ttl`: seconds left on output, bounded on input; an expired
    // key is no longer shown.
    let expiring = admin
        .form(
            Method::POST,
            "/consumers/bob/key-auth",
            &[("key", "bob-temp"), ("ttl", "100")],
        )
        .await;
    expect_status(&expiring, 201);
    let ttl = expiring.body["ttl"].as_i64().unwrap();
    assert!((95..=100).contains(&ttl), "{}", expiring.text);
    assert!(
        expiring.body.get("expires_at").is_none(),
        "{}",
        expiring.text
    );
    let ttl = admin.get("/key-auths/bob-temp").await.body["ttl"]
        .as_i64()
        .unwrap();
    assert!((95..=100).contains(&ttl));
    assert!(admin
        .get("/key-auths/alice-key-1")
        .await
        .body
        .get("ttl")
        .is_none());
    for bad in [json!("soon"), json!(-1), json!(100_000_001), json!(1.5)] {
        let refused = admin
            .json(Method::POST, "/consumers/bob/key-auth", json!({"ttl": bad}))
            .await;
        expect_status(&refused, 400);
        assert_eq!(
            refused.body["fields"]["ttl"],
            "must be an integer between 0 and 100000000"
        );
    }
    let expired = admin
        .json(
            Method::POST,
            "/consumers/bob/key-auth",
            json!({"key": "bob-old", "expires_at": 1000}),
        )
        .await;
    expect_status(&expired, 201);
    assert_eq!(expired.body["ttl"], 0);
    expect_status(&admin.get("/key-auths/bob-old").await, 404);
    let bobs = admin.get("/consumers/bob/key-auth").await;
    assert_eq!(
        bobs.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        bobs.text
    );
    expect_status(&admin.delete("/key-auths/bob-old").await, 204);
    expect_status(&admin.delete("/key-auths/bob-temp").await, 204);

    // PATCH re-keys; the old key no longer finds it.
    let patched = admin
        .form(
            Method::PATCH,
            &format!("/key-auths/{id}"),
            &[("key", "alice-key-2")],
        )
        .await;
    expect_status(&patched, 200);
    assert_eq!(patched.body["key"], "alice-key-2");
    expect_status(&admin.get("/key-auths/alice-key-1").await, 404);
    expect_status(&admin.get("/key-auths/alice-key-2").await, 200);

    // Deleting the consumer takes its credentials along.
    expect_status(&admin.delete("/consumers/alice").await, 204);
    assert_eq!(admin.get("/key-auths").await.body["data"], json!([]));

    // The audit log never holds a key.
    let audit = admin.get("/audit").await;
    expect_status(&audit, 200);
    for key in [
        "alice-key-1",
        "alice-key-2",
        generated.body["key"].as_str().unwrap(),
    ] {
        assert!(!audit.text.contains(key), "audit leaks {key}");
    }
}
both_backends!(key_auth_credentials, key_auth_crud);

/// Expired keys (Kong's `ttl` ran out) take no place in a page, are not in
/// the configuration data planes get, and the purge deletes them in a write
/// of their own (a new version), which it skips when nothing expired.
async fn expired_keys_leave_pages_and_the_store(backend: Backend) {
    let admin = Admin::new(backend).await;
    consumer(&admin, "carol").await;
    // Ids interleave live and expired keys, so a short page would show.
    for n in 0..6 {
        let expires_at = if n % 2 == 0 { json!(1000) } else { json!(null) };
        let created = admin
            .json(
                Method::POST,
                "/consumers/carol/key-auth",
                json!({"id": format!("00000000-0000-4000-8000-00000000000{n}"),
                       "key": format!("carol-{n}"), "expires_at": expires_at}),
            )
            .await;
        expect_status(&created, 201);
    }
    let live = admin
        .json(
            Method::POST,
            "/consumers/carol/key-auth",
            json!({"key": "carol-ttl", "ttl": 3600}),
        )
        .await;
    expect_status(&live, 201);
    for path in ["/key-auths?size=2", "/consumers/carol/key-auth?size=2"] {
        let page = admin.get(path).await;
        expect_status(&page, 200);
        let keys: Vec<&str> = page.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["carol-1", "carol-3"], "{path}: {}", page.text);
        assert!(page.body["next"].is_string(), "{}", page.text);
    }
    let (_, config) = admin.store.load_config().await.unwrap();
    let mut shipped: Vec<&str> = config
        .keyauth_credentials
        .iter()
        .map(|k| k.key.as_str())
        .collect();
    shipped.sort_unstable();
    assert_eq!(shipped, ["carol-1", "carol-3", "carol-5", "carol-ttl"]);

    let before = admin.store.version().await.unwrap();
    assert_eq!(admin.store.purge_expired().await.unwrap(), 3);
    assert_eq!(admin.store.version().await.unwrap(), before + 1);
    // Nothing left to purge: no write, no new version.
    assert_eq!(admin.store.purge_expired().await.unwrap(), 0);
    assert_eq!(admin.store.version().await.unwrap(), before + 1);
    // The rows are gone: even their ids answer 404 and can be reused.
    expect_status(
        &admin
            .get("/key-auths/00000000-0000-4000-8000-000000000000")
            .await,
        404,
    );
    let again = admin
        .json(
            Method::POST,
            "/consumers/carol/key-auth",
            json!({"key": "carol-0"}),
        )
        .await;
    expect_status(&again, 201);

    // The control plane's purge task deletes a key when it runs out: the
    // write that adds it wakes the task, which sleeps until that second.
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn({
        let store = admin.store.clone();
        let stop = stop.clone();
        async move { store.purge_expired_keys(stop).await }
    });
    let mut versions = admin.store.subscribe();
    let soon = tollgate_shared::entity::now_seconds() + 1;
    let created = admin
        .json(
            Method::POST,
            "/consumers/carol/key-auth",
            json!({"key": "carol-soon", "expires_at": soon}),
        )
        .await;
    expect_status(&created, 201);
    let written = admin.store.version().await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while *versions.borrow_and_update() <= written {
            versions.changed().await.unwrap();
        }
    })
    .await
    .expect("the purge task wrote a new version");
    // The key is free again: its row went.
    let reused = admin
        .json(
            Method::POST,
            "/consumers/carol/key-auth",
            json!({"key": "carol-soon"}),
        )
        .await;
    expect_status(&reused, 201);
    stop.cancel();
    task.await.unwrap();
}
both_backends!(expired_keys, expired_keys_leave_pages_and_the_store);

async fn basic_auth_crud(backend: Backend) {
    let admin = Admin::new(backend).await;
    let carol = consumer(&admin, "carol").await;
    let created = admin
        .form(
            Method::POST,
            "/consumers/carol/basic-auth",
            &[("username", "carol-login"), ("password", "open sesame")],
        )
        .await;
    expect_status(&created, 201);
    let hash = basic_auth_password_hash(&carol, "open sesame");
    assert_eq!(created.body["password"], hash.as_str());
    assert_eq!(created.body["username"], "carol-login");
    assert!(!created.text.contains("open sesame"));
    let id = created.body["id"].as_str().unwrap().to_string();

    for path in [
        "/basic-auths/carol-login".to_string(),
        format!("/basic-auths/{id}"),
        "/consumers/carol/basic-auth/carol-login".to_string(),
    ] {
        let found = admin.get(&path).await;
        expect_status(&found, 200);
        assert_eq!(found.body["password"], hash.as_str(), "{path}");
    }
    assert_eq!(
        admin.get("/basic-auths/carol-login/consumer").await.body["id"],
        carol.as_str()
    );

    // PATCH without a password keeps the hash; with one, hashes it.
    let tagged = admin
        .form(
            Method::PATCH,
            "/basic-auths/carol-login",
            &[("tags[]", "ops")],
        )
        .await;
    expect_status(&tagged, 200);
    assert_eq!(tagged.body["password"], hash.as_str());
    let changed = admin
        .json(
            Method::PATCH,
            "/consumers/carol/basic-auth/carol-login",
            json!({"password": "new secret"}),
        )
        .await;
    expect_status(&changed, 200);
    assert_eq!(
        changed.body["password"],
        basic_auth_password_hash(&carol, "new secret").as_str()
    );

    // PUT by username creates with the username from the path.
    let put = admin
        .json(
            Method::PUT,
            "/consumers/carol/basic-auth/carol-2",
            json!({"password": "pw2"}),
        )
        .await;
    expect_status(&put, 200);
    assert_eq!(put.body["username"], "carol-2");
    assert_eq!(
        put.body["password"],
        basic_auth_password_hash(&carol, "pw2").as_str()
    );

    let missing = admin
        .json(
            Method::POST,
            "/consumers/carol/basic-auth",
            json!({"username": "x"}),
        )
        .await;
    expect_status(&missing, 400);
    assert_eq!(missing.body["fields"]["password"], "required field missing");
    let clash = admin
        .json(
            Method::POST,
            "/consumers/carol/basic-auth",
            json!({"username": "carol-login", "password": "x"}),
        )
        .await;
    expect_status(&clash, 409);
    assert_eq!(
        clash.body["message"],
        "UNIQUE violation detected on '{username=\"carol-login\"}'"
    );

    let audit = admin.get("/audit").await;
    for secret in ["open sesame", "new secret", hash.as_str()] {
        assert!(!audit.text.contains(secret), "audit leaks {secret}");
    }
}
both_backends!(basic_auth_credentials, basic_auth_crud);

async fn acl_crud(backend: Backend) {
    let admin = Admin::new(backend).await;
    let dave = consumer(&admin, "dave").await;
    consumer(&admin, "erin").await;
    let gold = admin
        .form(Method::POST, "/consumers/dave/acls", &[("group", "gold")])
        .await;
    expect_status(&gold, 201);
    assert_eq!(gold.body["group"], "gold");
    assert_eq!(gold.body["consumer"], json!({"id": dave}));
    let id = gold.body["id"].as_str().unwrap().to_string();

    // Under its consumer an acl is found by its group too (Kong's acl api).
    let by_group = admin.get("/consumers/dave/acls/gold").await;
    expect_status(&by_group, 200);
    assert_eq!(by_group.body["id"], id.as_str());
    expect_status(&admin.get("/consumers/erin/acls/gold").await, 404);
    expect_status(&admin.get(&format!("/acls/{id}")).await, 200);
    assert_eq!(
        admin.get(&format!("/acls/{id}/consumer")).await.body["username"],
        "dave"
    );

    // A consumer is in a group once; another consumer may join it.
    let twice = admin
        .form(Method::POST, "/consumers/dave/acls", &[("group", "gold")])
        .await;
    expect_status(&twice, 409);
    expect_status(
        &admin
            .form(Method::POST, "/consumers/erin/acls", &[("group", "gold")])
            .await,
        201,
    );
    // PUT by group creates it.
    let put = admin
        .json(Method::PUT, "/consumers/dave/acls/silver", json!({}))
        .await;
    expect_status(&put, 200);
    assert_eq!(put.body["group"], "silver");
    assert_eq!(
        admin.get("/consumers/dave/acls").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let missing = admin
        .json(Method::POST, "/consumers/dave/acls", json!({}))
        .await;
    expect_status(&missing, 400);
    assert_eq!(missing.body["fields"]["group"], "required field missing");
    let control = admin
        .json(
            Method::POST,
            "/consumers/dave/acls",
            json!({"group": "a\nb"}),
        )
        .await;
    expect_status(&control, 400);

    expect_status(&admin.delete("/consumers/dave/acls/gold").await, 204);
    expect_status(&admin.get("/consumers/dave/acls/gold").await, 404);
    assert_eq!(
        admin.get("/acls").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
both_backends!(acl_credentials, acl_crud);

/// A declarative file with credentials nested in their consumer and at the
/// top level: basic-auth passwords are hashed on load (`_transform` true),
/// the export carries the hashes with `_transform: false`, and loading the
/// export back is the same config.
async fn declarative_round_trip(backend: Backend) {
    let admin = Admin::new(backend).await;
    let file = r#"
_format_version: "3.0"
consumers:
  - username: frank
    keyauth_credentials:
      - key: frank-key
    basicauth_credentials:
      - username: frank-login
        password: frank-pass
    acls:
      - group: gold
  - username: grace
keyauth_credentials:
  - key: grace-key
    consumer: grace
acls:
  - group: silver
    consumer: grace
"#;
    let loaded = admin
        .send(Method::POST, "/config", Some("application/yaml"), file)
        .await;
    expect_status(&loaded, 201);
    let (_, config) = admin.store.load_config().await.unwrap();
    assert_eq!(config.keyauth_credentials.len(), 2);
    assert_eq!(config.acls.len(), 2);
    let frank = config
        .consumers
        .iter()
        .find(|c| c.username.as_deref() == Some("frank"))
        .unwrap()
        .id;
    let hash = basic_auth_password_hash(&frank.to_string(), "frank-pass");
    assert_eq!(config.basicauth_credentials[0].password, hash);
    let listed = admin.get("/consumers/frank/basic-auth").await;
    assert_eq!(listed.body["data"][0]["password"], hash.as_str());
    expect_status(&admin.get("/key-auths/grace-key").await, 200);
    expect_status(&admin.get("/consumers/grace/acls/silver").await, 200);
    // The /config answer and the audit diff never name a key.
    assert!(!loaded.text.contains("frank-pass"));
    let audit = admin.get("/audit").await;
    assert!(!audit.text.contains("frank-key"), "{}", audit.text);
    assert!(!audit.text.contains("frank-pass"));

    let exported = admin.get("/config").await;
    expect_status(&exported, 200);
    let yaml = exported.body["config"].as_str().unwrap().to_string();
    assert!(yaml.contains("_transform: false"), "{yaml}");
    assert!(yaml.contains(&hash));
    assert!(!yaml.contains("frank-pass"));
    let same = admin
        .json(
            Method::POST,
            "/config?check_hash=1",
            json!({ "config": yaml }),
        )
        .await;
    expect_status(&same, 304);
    let reloaded = admin
        .json(Method::POST, "/config", json!({ "config": yaml }))
        .await;
    expect_status(&reloaded, 201);
    let (_, after) = admin.store.load_config().await.unwrap();
    assert_eq!(config_hash(&after), config_hash(&config));

    // A duplicate key in one file is refused with the entity named.
    let twice = "_format_version: \"3.0\"\nconsumers:\n  - username: h\n    keyauth_credentials:\n      - key: same\n      - key: same\n";
    let refused = admin
        .send(Method::POST, "/config", Some("application/yaml"), twice)
        .await;
    expect_status(&refused, 400);
    assert!(
        refused.text.contains("keyauth_credentials"),
        "{}",
        refused.text
    );
}
both_backends!(credentials_in_declarative_config, declarative_round_trip);

/// With `--secrets-key-file`, key-auth keys and basic-auth hashes are sealed
/// in the database (the unique key column holds a digest) and still found.
async fn sealed_credentials(backend: Backend) {
    use sqlx::Connection;
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
    let henry = consumer(&admin, "henry").await;
    let created = admin
        .form(
            Method::POST,
            "/consumers/henry/key-auth",
            &[("key", "henry-plain-key")],
        )
        .await;
    expect_status(&created, 201);
    let basic = admin
        .form(
            Method::POST,
            "/consumers/henry/basic-auth",
            &[("username", "henry"), ("password", "pw")],
        )
        .await;
    expect_status(&basic, 201);
    expect_status(&admin.get("/key-auths/henry-plain-key").await, 200);
    let (_, config) = admin.store.load_config().await.unwrap();
    assert_eq!(config.keyauth_credentials[0].key, "henry-plain-key");
    let hash = basic_auth_password_hash(&henry, "pw");
    assert_eq!(config.basicauth_credentials[0].password, hash);

    let query = "SELECT key || ' ' || data FROM keyauth_credentials \
                 UNION ALL SELECT data FROM basicauth_credentials";
    let rows: Vec<(String,)> = match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_as(query).fetch_all(&mut conn).await.unwrap()
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query_as(query).fetch_all(&mut conn).await.unwrap()
        }
    };
    let dump = rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n");
    assert!(dump.contains("$tg1$"), "{dump}");
    assert!(!dump.contains("henry-plain-key"), "{dump}");
    assert!(!dump.contains(&hash), "{dump}");
}
both_backends!(credentials_sealed_at_rest, sealed_credentials);
