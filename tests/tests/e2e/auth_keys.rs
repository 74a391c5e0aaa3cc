//! End-to-end: key-auth, basic-auth and acl through a real data plane, as a
//! client and the upstream see them: Kong's 401/403 bodies and challenges,
//! the consumer headers (never from the client), `hide_credentials`,
//! `anonymous` (Kong's logical OR), acl groups with `X-Consumer-Groups` (and
//! authenticated groups with `X-Authenticated-Groups`), a key-auth `ttl`
//! key purged by a real control plane and dropped by its data plane, and
//! a rate limit scoped to the consumer key-auth identified.

use serde_json::{json, Value};
use std::net::SocketAddr;
use tollgate_data_plane::Settings;
use tollgate_shared::Config;
use tollgate_tests::dataplane::{self, get, get_with, send, uuid, ConfigBuilder, Reply, Scope};
use tollgate_tests::echo;

const ALICE: u128 = 20;
const BOB: u128 = 21;
const CAROL: u128 = 22;
const DAVE: u128 = 23;
const GUEST: u128 = 24;

const ALICE_KEY_ID: u128 = 40;

/// `bob-login:bob-pass`, `bob-login:wrong`, `nobody:bob-pass` in base64.
const BOB_BASIC: &str = "Basic Ym9iLWxvZ2luOmJvYi1wYXNz";
const BOB_WRONG: &str = "Basic Ym9iLWxvZ2luOndyb25n";
const NOBODY_BASIC: &str = "Basic bm9ib2R5OmJvYi1wYXNz";

fn on_route(n: u128) -> Scope {
    Scope::route(n)
}

/// Consumers with their credentials: alice (key, groups gold and silver),
/// bob (basic-auth), carol (key, no group), dave (key, group bronze), guest.
fn people(upstream: SocketAddr) -> ConfigBuilder {
    ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .consumer(ALICE, "alice")
        .consumer(BOB, "bob")
        .consumer(CAROL, "carol")
        .consumer(DAVE, "dave")
        .consumer(GUEST, "guest")
        .key_auth(ALICE_KEY_ID, ALICE, "alice-key")
        .key_auth(41, CAROL, "carol-key")
        .key_auth(42, DAVE, "dave-key")
        .basic_auth(43, BOB, "bob-login", "bob-pass")
        .acl(44, ALICE, "gold")
        .acl(45, ALICE, "silver")
        .acl(46, DAVE, "bronze")
}

async fn start(config: &Config) -> (tollgate_data_plane::DataPlane, SocketAddr) {
    let dp = dataplane::start(Settings::loopback(), config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    (dp, proxy)
}

async fn request(proxy: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(proxy, get_with(path, headers).unwrap()).await.unwrap()
}

#[track_caller]
fn assert_error(reply: &Reply, status: u16, message: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.json()["message"], message, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        "application/json; charset=utf-8"
    );
}

fn upstream_uri(reply: &Reply) -> String {
    reply.json()["uri"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn key_auth_in_header_and_query_with_hide_credentials() {
    let upstream = echo::spawn().await.unwrap();
    let config = people(upstream)
        .route(10, Some(1), &["/hidden"], json!({}))
        .route(11, Some(1), &["/visible"], json!({}))
        .route(12, Some(1), &["/named"], json!({}))
        .route(13, Some(1), &["/preflight"], json!({}))
        .plugin(30, "key-auth", json!({"hide_credentials": true}), on_route(10))
        .plugin(33, "key-auth", json!({"run_on_preflight": false}), on_route(13))
        .plugin(31, "key-auth", json!({}), on_route(11))
        .plugin(
            32,
            "key-auth",
            json!({"key_names": ["x-api-key", "apikey"], "realm": "tollgate", "key_in_query": false}),
            on_route(12),
        )
        .key_auth(47, ALICE, "expired-key")
        .key_auth(48, ALICE, "fresh-key")
        .build()
        .unwrap();
    let mut config = config;
    let now = tollgate_shared::entity::now_seconds();
    for credential in &mut config.keyauth_credentials {
        match credential.key.as_str() {
            "expired-key" => credential.expires_at = Some(now - 1),
            "fresh-key" => credential.expires_at = Some(now + 3600),
            _ => {}
        }
    }
    let (dp, proxy) = start(&config).await;

    let none = get(proxy, "/hidden").await.unwrap();
    assert_error(&none, 401, "No API key found in request");
    assert_eq!(none.header("www-authenticate"), "Key");

    // In a header, with consumer headers a client tried to set overwritten.
    let reply = request(
        proxy,
        "/hidden/orders",
        &[
            ("apikey", "alice-key"),
            ("x-consumer-username", "admin"),
            ("x-anonymous-consumer", "true"),
            ("x-credential-identifier", "forged"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.upstream_header("x-consumer-username"), "alice");
    assert_eq!(reply.upstream_header("x-consumer-id"), uuid(ALICE));
    assert_eq!(
        reply.upstream_header("x-credential-identifier"),
        uuid(ALICE_KEY_ID)
    );
    assert_eq!(reply.upstream_header("x-anonymous-consumer"), "");
    assert_eq!(
        reply.upstream_header("apikey"),
        "",
        "hidden from the upstream"
    );

    // In the query string: the argument is removed, the others stay.
    let reply = get(proxy, "/hidden/orders?a=1&apikey=alice-key&b=x%20y")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(upstream_uri(&reply), "/orders?a=1&b=x%20y");
    let reply = get(proxy, "/hidden?apikey=alice-key").await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(upstream_uri(&reply), "/");

    // Without hide_credentials the key goes upstream where it came.
    let reply = get(proxy, "/visible?apikey=carol-key").await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.upstream_header("x-consumer-username"), "carol");
    assert_eq!(upstream_uri(&reply), "/?apikey=carol-key");
    let reply = request(proxy, "/visible", &[("apikey", "carol-key")]).await;
    assert_eq!(reply.upstream_header("apikey"), "carol-key");

    // Kong's other answers.
    let wrong = request(proxy, "/visible", &[("apikey", "guessed")]).await;
    assert_error(&wrong, 401, "Unauthorized");
    assert_eq!(wrong.header("www-authenticate"), "Key");
    let twice = request(proxy, "/visible", &[("apikey", "a"), ("apikey", "b")]).await;
    assert_error(&twice, 401, "Duplicate API key found");
    let twice = get(proxy, "/visible?apikey=a&apikey=b").await.unwrap();
    assert_error(&twice, 401, "Duplicate API key found");
    let empty = get(proxy, "/visible?apikey=").await.unwrap();
    assert_error(&empty, 401, "No API key found in request");
    // A key whose ttl ran out is as good as none (Kong's key-auth).
    let expired = request(proxy, "/visible", &[("apikey", "expired-key")]).await;
    assert_error(&expired, 401, "Unauthorized");
    let fresh = request(proxy, "/visible", &[("apikey", "fresh-key")]).await;
    assert_eq!(fresh.status, 200);

    // Several key names in order; the query is off; the realm is named.
    let reply = request(proxy, "/named", &[("x-api-key", "dave-key")]).await;
    assert_eq!(reply.upstream_header("x-consumer-username"), "dave");
    let reply = get(proxy, "/named?apikey=dave-key").await.unwrap();
    assert_error(&reply, 401, "No API key found in request");
    assert_eq!(reply.header("www-authenticate"), "Key realm=\"tollgate\"");

    // run_on_preflight false: OPTIONS passes without a key, and without
    // consumer headers of the client's own; other methods still need one.
    let preflight = http::Request::options("/preflight")
        .header("x-consumer-username", "admin")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let reply = send(proxy, preflight).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.upstream_header("x-consumer-username"), "");
    let reply = get(proxy, "/preflight").await.unwrap();
    assert_error(&reply, 401, "No API key found in request");
    let preflight = http::Request::options("/visible")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(send(proxy, preflight).await.unwrap().status, 401);
    dp.shutdown().await;
}

async fn post(
    proxy: SocketAddr,
    path: &str,
    content_type: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = http::Request::post(path).header("content-type", content_type);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    send(proxy, request).await.unwrap()
}

fn upstream_body(reply: &Reply) -> String {
    reply.json()["body"].as_str().unwrap_or("").to_string()
}

/// `key_in_body`: form-urlencoded and JSON bodies, read before the access
/// phase; `hide_credentials` re-encodes the body without the key.
#[tokio::test]
async fn key_auth_in_the_body() {
    let upstream = echo::spawn().await.unwrap();
    let config = people(upstream)
        .route(10, Some(1), &["/hidden"], json!({}))
        .route(
            11,
            Some(1),
            &["/visible"],
            json!({"request_buffering": false}),
        )
        .plugin(
            30,
            "key-auth",
            json!({"key_in_body": true, "hide_credentials": true}),
            on_route(10),
        )
        .plugin(31, "key-auth", json!({"key_in_body": true}), on_route(11))
        .build()
        .unwrap();
    let (dp, proxy) = start(&config).await;
    const FORM: &str = "application/x-www-form-urlencoded";

    let reply = post(proxy, "/hidden", FORM, "a=1&apikey=alice-key&b=2", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.upstream_header("x-consumer-username"), "alice");
    assert_eq!(upstream_body(&reply), "a=1&b=2");
    assert_eq!(reply.upstream_header("content-length"), "7");

    let reply = post(
        proxy,
        "/hidden",
        "application/json; charset=utf-8",
        r#"{"n":1,"apikey":"dave-key"}"#,
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.upstream_header("x-consumer-username"), "dave");
    assert_eq!(upstream_body(&reply), r#"{"n":1}"#);

    // Kong's body[name]: a table is a duplicate, a number is no key.
    let reply = post(
        proxy,
        "/hidden",
        "application/json",
        r#"{"apikey":["a","b"]}"#,
        &[],
    )
    .await;
    assert_error(&reply, 401, "Duplicate API key found");
    let reply = post(proxy, "/hidden", "application/json", r#"{"apikey":5}"#, &[]).await;
    assert_error(&reply, 401, "No API key found in request");
    let reply = post(proxy, "/hidden", FORM, "apikey=a&apikey=b", &[]).await;
    assert_error(&reply, 401, "Duplicate API key found");
    // Other content types are not searched.
    let reply = post(proxy, "/hidden", "text/plain", "apikey=alice-key", &[]).await;
    assert_error(&reply, 401, "No API key found in request");

    // The header comes before the body; without hide_credentials the body
    // goes upstream as sent, on a route that streams bodies too.
    let reply = post(
        proxy,
        "/visible",
        FORM,
        "apikey=alice-key&x=1",
        &[("apikey", "carol-key")],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.upstream_header("x-consumer-username"), "carol");
    assert_eq!(upstream_body(&reply), "apikey=alice-key&x=1");

    // multipart/form-data: the part named like the key; hide_credentials
    // cuts that part and sends the others byte for byte.
    const MULTIPART: &str = "multipart/form-data; boundary=XyZ";
    let part = |headers: &str, value: &str| format!("--XyZ\r\n{headers}\r\n\r\n{value}\r\n");
    let field = |name: &str| format!("Content-Disposition: form-data; name=\"{name}\"");
    let file = format!(
        "{}; filename=\"f.txt\"\r\nContent-Type: text/plain",
        field("file")
    );
    let kept = format!(
        "{}{}--XyZ--\r\n",
        part(&field("a"), "1"),
        part(&file, "file body\r\nline 2, --XyZ mid-line is content")
    );
    let body = format!(
        "{}{}{}--XyZ--\r\n",
        part(&field("a"), "1"),
        part(&field("apikey"), "alice-key"),
        part(&file, "file body\r\nline 2, --XyZ mid-line is content")
    );
    let reply = post(proxy, "/hidden", MULTIPART, &body, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.upstream_header("x-consumer-username"), "alice");
    assert_eq!(upstream_body(&reply), kept);
    assert_eq!(
        reply.upstream_header("content-length"),
        kept.len().to_string()
    );
    let reply = post(proxy, "/visible", MULTIPART, &body, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(upstream_body(&reply), body);
    let twice = format!(
        "{}{}--XyZ--\r\n",
        part(&field("apikey"), "alice-key"),
        part(&field("apikey"), "dave-key")
    );
    let reply = post(proxy, "/hidden", MULTIPART, &twice, &[]).await;
    assert_error(&reply, 401, "Duplicate API key found");
    // A body that is not well formed (no closing delimiter) yields no key.
    let unclosed = part(&field("apikey"), "alice-key");
    let reply = post(proxy, "/hidden", MULTIPART, &unclosed, &[]).await;
    assert_error(&reply, 401, "No API key found in request");
    dp.shutdown().await;
}

#[tokio::test]
async fn basic_auth_checks_kongs_password_hash() {
    let upstream = echo::spawn().await.unwrap();
    let config = people(upstream)
        .route(10, Some(1), &["/hidden"], json!({}))
        .route(11, Some(1), &["/visible"], json!({}))
        .plugin(
            30,
            "basic-auth",
            json!({"hide_credentials": true}),
            on_route(10),
        )
        .plugin(31, "basic-auth", json!({"realm": "ops"}), on_route(11))
        .build()
        .unwrap();
    let (dp, proxy) = start(&config).await;

    let none = get(proxy, "/hidden").await.unwrap();
    assert_error(&none, 401, "Unauthorized");
    assert_eq!(none.header("www-authenticate"), "Basic realm=\"service\"");

    let reply = request(proxy, "/hidden", &[("authorization", BOB_BASIC)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.upstream_header("x-consumer-username"), "bob");
    assert_eq!(
        reply.upstream_header("x-credential-identifier"),
        "bob-login"
    );
    assert_eq!(reply.upstream_header("authorization"), "");

    let reply = request(proxy, "/visible", &[("authorization", BOB_BASIC)]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.upstream_header("authorization"), BOB_BASIC);
    // Proxy-Authorization is read first.
    let reply = request(
        proxy,
        "/visible",
        &[
            ("proxy-authorization", BOB_BASIC),
            ("authorization", "Bearer x"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.upstream_header("x-consumer-username"), "bob");

    for bad in [BOB_WRONG, NOBODY_BASIC, "Basic !!", "Bearer abc"] {
        let reply = request(proxy, "/visible", &[("authorization", bad)]).await;
        assert_error(&reply, 401, "Unauthorized");
        assert_eq!(reply.header("www-authenticate"), "Basic realm=\"ops\"");
    }
    dp.shutdown().await;
}

#[tokio::test]
async fn acl_allows_and_denies_by_the_consumers_groups() {
    let upstream = echo::spawn().await.unwrap();
    let mut builder = people(upstream)
        .route(10, Some(1), &["/gold"], json!({}))
        .route(11, Some(1), &["/not-gold"], json!({}))
        .route(12, Some(1), &["/quiet"], json!({}))
        .route(13, Some(1), &["/open"], json!({}));
    for (n, route) in [(30, 10), (31, 11), (32, 12)] {
        builder = builder.plugin(n, "key-auth", json!({}), on_route(route));
    }
    let config = builder
        .plugin(33, "acl", json!({"allow": ["gold"]}), on_route(10))
        .plugin(34, "acl", json!({"deny": ["gold"]}), on_route(11))
        .plugin(
            35,
            "acl",
            json!({"allow": ["gold"], "hide_groups_header": true}),
            on_route(12),
        )
        .plugin(36, "acl", json!({"allow": ["gold"]}), on_route(13))
        .build()
        .unwrap();
    let (dp, proxy) = start(&config).await;
    let with_key = |key: &'static str| [("apikey", key), ("x-consumer-groups", "admins")];

    let reply = request(proxy, "/gold", &with_key("alice-key")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.upstream_header("x-consumer-groups"), "gold, silver");
    for key in ["dave-key", "carol-key"] {
        let reply = request(proxy, "/gold", &with_key(key)).await;
        assert_error(&reply, 403, "You cannot consume this service");
    }

    let reply = request(proxy, "/not-gold", &with_key("alice-key")).await;
    assert_error(&reply, 403, "You cannot consume this service");
    let reply = request(proxy, "/not-gold", &with_key("dave-key")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.upstream_header("x-consumer-groups"), "bronze");
    // No group at all passes a deny list.
    let reply = request(proxy, "/not-gold", &with_key("carol-key")).await;
    assert_eq!(reply.status, 200);

    // Hidden groups: not even the client's own header goes through.
    let reply = request(proxy, "/quiet", &with_key("alice-key")).await;
    assert_eq!(reply.status, 200);
    let headers: &Value = &reply.json()["headers"];
    assert!(headers.get("x-consumer-groups").is_none(), "{headers}");

    // Without an authenticated consumer acl answers 401.
    let reply = get(proxy, "/open").await.unwrap();
    assert_error(&reply, 401, "Unauthorized");
    dp.shutdown().await;
}

/// Groups another plugin authenticated (the test-fault plugin from
/// `x-test-groups`, standing in for Kong OSS's session plugin) decide, as in
/// Kong's acl handler, for an anonymous consumer, and for a consumer with a
/// credential only with `always_use_authenticated_groups`; they are sent
/// upstream as `X-Authenticated-Groups`.
#[tokio::test]
async fn acl_uses_authenticated_groups_as_kong_does() {
    let upstream = echo::spawn().await.unwrap();
    let config = people(upstream)
        .route(10, Some(1), &["/plain"], json!({}))
        .route(11, Some(1), &["/always"], json!({}))
        .plugin(30, "tollgate-test-fault", json!({}), Scope::default())
        .plugin(31, "key-auth", json!({"anonymous": "guest"}), on_route(10))
        .plugin(32, "key-auth", json!({}), on_route(11))
        .plugin(33, "acl", json!({"allow": ["sso"]}), on_route(10))
        .plugin(
            34,
            "acl",
            json!({"allow": ["sso"], "always_use_authenticated_groups": true}),
            on_route(11),
        )
        .build()
        .unwrap();
    let (dp, proxy) = start(&config).await;

    // Anonymous (guest, no credential): the authenticated groups decide.
    let reply = request(proxy, "/plain", &[("x-test-groups", "sso, other")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.upstream_header("x-consumer-username"), "guest");
    assert_eq!(
        reply.upstream_header("x-authenticated-groups"),
        "sso, other"
    );
    let headers: &Value = &reply.json()["headers"];
    assert!(headers.get("x-consumer-groups").is_none(), "{headers}");
    let reply = request(proxy, "/plain", &[]).await;
    assert_error(&reply, 401, "Unauthorized");
    // A credential's consumer keeps its own groups (alice: gold, silver).
    let reply = request(
        proxy,
        "/plain",
        &[("apikey", "alice-key"), ("x-test-groups", "sso")],
    )
    .await;
    assert_error(&reply, 403, "You cannot consume this service");

    // always_use_authenticated_groups: they win over alice's own groups.
    let reply = request(
        proxy,
        "/always",
        &[("apikey", "alice-key"), ("x-test-groups", "sso")],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.upstream_header("x-authenticated-groups"), "sso");
    // Without any, alice's groups decide; a client's own header counts for nothing.
    let reply = request(
        proxy,
        "/always",
        &[("apikey", "alice-key"), ("x-authenticated-groups", "sso")],
    )
    .await;
    assert_error(&reply, 403, "You cannot consume this service");
    dp.shutdown().await;
}

#[tokio::test]
async fn anonymous_makes_authentication_plugins_alternatives() {
    let upstream = echo::spawn().await.unwrap();
    let config = people(upstream)
        .route(10, Some(1), &["/either"], json!({}))
        .route(11, Some(1), &["/ghost"], json!({}))
        .plugin(30, "key-auth", json!({"anonymous": "guest"}), on_route(10))
        .plugin(
            31,
            "basic-auth",
            json!({"anonymous": uuid(GUEST)}),
            on_route(10),
        )
        .plugin(32, "key-auth", json!({"anonymous": "ghost"}), on_route(11))
        .build()
        .unwrap();
    let (dp, proxy) = start(&config).await;

    let reply = get(proxy, "/either").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.upstream_header("x-consumer-username"), "guest");
    assert_eq!(reply.upstream_header("x-anonymous-consumer"), "true");
    assert_eq!(reply.upstream_header("x-credential-identifier"), "");

    let reply = request(proxy, "/either", &[("apikey", "alice-key")]).await;
    assert_eq!(reply.upstream_header("x-consumer-username"), "alice");
    assert_eq!(reply.upstream_header("x-anonymous-consumer"), "");

    // key-auth fails over to the anonymous consumer, then basic-auth succeeds.
    let reply = request(proxy, "/either", &[("authorization", BOB_BASIC)]).await;
    assert_eq!(reply.upstream_header("x-consumer-username"), "bob");
    assert_eq!(reply.upstream_header("x-anonymous-consumer"), "");

    let reply = get(proxy, "/ghost").await.unwrap();
    assert_error(
        &reply,
        500,
        "anonymous consumer ghost is configured but doesn't exist",
    );
    dp.shutdown().await;
}

/// kong-compat §3.1 after key-auth: the rate limit scoped to alice applies
/// to her requests only (rate-limiting, priority 910, runs after key-auth).
#[tokio::test]
async fn consumer_scoped_rate_limit_follows_the_key_auth_consumer() {
    let upstream = echo::spawn().await.unwrap();
    let config = people(upstream)
        .route(10, Some(1), &["/"], json!({}))
        .plugin(30, "key-auth", json!({}), on_route(10))
        .plugin(
            31,
            "rate-limiting",
            json!({"hour": 2, "policy": "local"}),
            Scope {
                consumer: Some(ALICE),
                ..Scope::default()
            },
        )
        .build()
        .unwrap();
    let (dp, proxy) = start(&config).await;
    for _ in 0..2 {
        let reply = request(proxy, "/", &[("apikey", "alice-key")]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("x-ratelimit-limit-hour"), "2");
    }
    let limited = request(proxy, "/", &[("apikey", "alice-key")]).await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    for _ in 0..4 {
        let reply = request(proxy, "/", &[("apikey", "carol-key")]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.header("x-ratelimit-limit-hour"), "");
    }
    dp.shutdown().await;
}

/// Kong's `ttl` through real processes: a key created with a ttl works on
/// the data plane until it runs out; then the control plane purges it in a
/// write of its own, which the data plane applies, and the Admin API no
/// longer has the row (its key can be created again).
#[tokio::test]
async fn a_ttl_key_is_purged_and_data_planes_get_a_config_without_it() {
    use tollgate_tests::cluster::{admin, admin_write, wait_in_sync, wait_until, SeedCluster};
    let dir = tempfile::tempdir().unwrap();
    let upstream = echo::spawn().await.unwrap();
    let cluster = SeedCluster::empty(dir.path()).await.unwrap();
    let (cp, dp) = (&cluster.cp, &cluster.dp);
    let write = |method: &'static str, path: &'static str, body: Value| {
        admin_write(cp.admin, method, path, body)
    };
    write(
        "POST",
        "/services",
        json!({"name": "s", "url": format!("http://{upstream}")}),
    )
    .await
    .unwrap();
    write("POST", "/services/s/routes", json!({"paths": ["/s"]}))
        .await
        .unwrap();
    write("POST", "/services/s/plugins", json!({"name": "key-auth"}))
        .await
        .unwrap();
    write("POST", "/consumers", json!({"username": "temp"}))
        .await
        .unwrap();
    let created = write(
        "POST",
        "/consumers/temp/key-auth",
        json!({"key": "short-lived", "ttl": 3}),
    )
    .await
    .unwrap();
    wait_in_sync(cp.admin, &dp.node_id, created).await.unwrap();
    let reply = request(dp.proxy, "/s", &[("apikey", "short-lived")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.upstream_header("x-consumer-username"), "temp");

    // The purge is a new version past the key's own write, applied by the
    // data plane; the key then authenticates nobody.
    let purged = wait_until("the purge's write", || async {
        let audit = admin(cp.admin, "GET", "/audit", None).await?;
        Ok(audit.text().contains("expired by ttl").then_some(()))
    })
    .await;
    purged.unwrap();
    wait_in_sync(cp.admin, &dp.node_id, created + 1)
        .await
        .unwrap();
    let reply = request(dp.proxy, "/s", &[("apikey", "short-lived")]).await;
    assert_error(&reply, 401, "Unauthorized");
    let again = admin(
        cp.admin,
        "POST",
        "/consumers/temp/key-auth",
        Some(json!({"key": "short-lived"})),
    )
    .await
    .unwrap();
    assert_eq!(again.status, 201, "{}", again.text());
}
