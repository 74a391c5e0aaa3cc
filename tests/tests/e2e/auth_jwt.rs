//! End-to-end: the jwt plugin through a real data plane. Step 6 of the seed
//! guide with a token made by PyJWT exactly as the guide writes it, Kong's
//! 401s as a client sees them (body, content type, `WWW-Authenticate`), the
//! consumer headers the upstream receives, and consumer-scoped plugin
//! instances selected by the consumer jwt identified.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::Command;
use tollgate_data_plane::Settings;
use tollgate_shared::{Config, JwtSecret};
use tollgate_tests::dataplane::{self, get, get_with, send, uuid, ConfigBuilder, Reply, Scope};
use tollgate_tests::echo;

/// What `POST /consumers/api-client-1/jwt` answered in the guide's example.
const KEY: &str = "a36c3049b36249a3c9f8891cb127243c";
const SECRET: &str = "e71829c351aa4242c2719cbfbe671c09";

const CLIENT: u128 = 20;
const BLOCKED: u128 = 21;

/// The guide's token code, run by Python with PyJWT (`make test` installs it).
fn pyjwt_token(key: &str, secret: &str, lifetime: i64) -> String {
    let script = format!(
        r#"
import jwt, time

payload = {{
    "iss": "{key}",   # must match the 'key' field from Kong
    "sub": "api-client-1",
    "iat": int(time.time()),
    "exp": int(time.time()) + {lifetime},
}}
token = jwt.encode(payload, "{secret}", algorithm="HS256")
print(token)
"#
    );
    let output = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "PyJWT failed (pip install 'pyjwt[crypto]'): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn jwt_secret(n: u128, consumer: u128, key: &str, secret: &str) -> JwtSecret {
    serde_json::from_value(json!({
        "id": uuid(n), "created_at": 1, "consumer": {"id": uuid(consumer)}, "key": key,
        "secret": secret, "rsa_public_key": null, "algorithm": "HS256", "tags": null
    }))
    .unwrap()
}

/// The guide's step 6: jwt on the service, consumer `api-client-1` with one
/// HS256 credential. Route `/api` uses the defaults, `/strict` verifies `exp`
/// and names a realm (a route instance wins over the service's).
async fn guide_config() -> Config {
    let upstream = echo::spawn().await.unwrap();
    guide_builder(upstream).build().unwrap()
}

fn guide_builder(upstream: SocketAddr) -> ConfigBuilder {
    ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(10, Some(1), &["/api"], json!({}))
        .route(11, Some(1), &["/strict"], json!({}))
        .consumer(CLIENT, "api-client-1")
        .consumer(BLOCKED, "blocked-client")
        .plugin(
            30,
            "jwt",
            json!({}),
            Scope {
                service: Some(1),
                ..Scope::default()
            },
        )
        .plugin(
            31,
            "jwt",
            json!({"claims_to_verify": ["exp"], "realm": "tollgate"}),
            Scope {
                route: Some(11),
                ..Scope::default()
            },
        )
}

fn with_secrets(mut config: Config) -> Config {
    config.jwt_secrets = vec![
        jwt_secret(40, CLIENT, KEY, SECRET),
        jwt_secret(41, BLOCKED, "blocked-key", "blocked-secret"),
    ];
    config
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[track_caller]
fn assert_kong_401(reply: &Reply, body: Value, challenge: &str) {
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.json(), body);
    assert_eq!(
        reply.header("content-type"),
        "application/json; charset=utf-8"
    );
    assert_eq!(reply.header("www-authenticate"), challenge);
}

#[tokio::test]
async fn seed_guide_step_6_with_a_pyjwt_token() {
    let config = with_secrets(guide_config().await);
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    let anonymous = get(proxy, "/api/orders").await.unwrap();
    assert_kong_401(&anonymous, json!({"message": "Unauthorized"}), "Bearer");

    let token = pyjwt_token(KEY, SECRET, 3600);
    let smuggling = [
        ("authorization", bearer(&token)),
        ("x-consumer-username", "admin".to_string()),
        ("x-consumer-custom-id", "admin".to_string()),
        ("x-anonymous-consumer", "false".to_string()),
    ];
    let headers: Vec<(&str, &str)> = smuggling.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = send(proxy, get_with("/api/orders", &headers).unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.upstream_header("x-consumer-username"), "api-client-1");
    assert_eq!(reply.upstream_header("x-consumer-id"), uuid(CLIENT));
    assert_eq!(reply.upstream_header("x-credential-identifier"), KEY);
    assert_eq!(reply.upstream_header("x-consumer-custom-id"), "");
    assert_eq!(reply.upstream_header("x-anonymous-consumer"), "");
    assert_eq!(reply.upstream_header("authorization"), bearer(&token));

    // The same token as the `jwt` query parameter.
    let by_query = get(proxy, &format!("/api/orders?jwt={token}"))
        .await
        .unwrap();
    assert_eq!(by_query.status, 200);

    // Signed with another secret.
    let forged = pyjwt_token(KEY, "guessed", 3600);
    let reply = send(
        proxy,
        get_with("/api", &[("authorization", &bearer(&forged))]).unwrap(),
    )
    .await
    .unwrap();
    assert_kong_401(
        &reply,
        json!({"message": "Invalid signature"}),
        "Bearer error=\"invalid_token\"",
    );
    dp.shutdown().await;
}

#[tokio::test]
async fn rejections_have_kongs_bodies_and_challenges() {
    let config = with_secrets(guide_config().await);
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let invalid = "Bearer error=\"invalid_token\"";
    let realm_invalid = "Bearer realm=\"tollgate\", error=\"invalid_token\"";

    let token = pyjwt_token(KEY, SECRET, 3600);
    let other = pyjwt_token(KEY, SECRET, 3599);
    // (path, request headers, expected body, expected WWW-Authenticate)
    type Case<'a> = (String, Vec<(&'a str, String)>, Value, &'a str);
    let cases: Vec<Case> = vec![
        (
            format!("/api?jwt={other}"),
            vec![("authorization", bearer(&token))],
            json!({"message": "Multiple tokens provided"}),
            invalid,
        ),
        (
            "/api".into(),
            vec![("authorization", "Bearer e30.e30.".into())],
            json!({"message": "Bad token; invalid alg"}),
            invalid,
        ),
        (
            "/strict".into(),
            vec![],
            json!({"message": "Unauthorized"}),
            "Bearer realm=\"tollgate\"",
        ),
        // An expired token on the route that verifies exp: a per-claim body.
        (
            "/strict".into(),
            vec![("authorization", bearer(&pyjwt_token(KEY, SECRET, -10)))],
            json!({"exp": "token expired"}),
            realm_invalid,
        ),
    ];
    for (path, headers, body, challenge) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = send(proxy, get_with(&path, &headers).unwrap())
            .await
            .unwrap();
        assert_kong_401(&reply, body, challenge);
    }
    // A 100 KB token is stopped by the header limits before any decoding.
    let huge = format!("Bearer {}", "a".repeat(100 * 1024));
    let reply = send(
        proxy,
        get_with("/api", &[("authorization", &huge)]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 431);
    dp.shutdown().await;
}

/// kong-compat §3.1 after authentication: ip-restriction (priority 990) runs
/// after jwt (1450), so the instance scoped to the consumer jwt identified
/// wins over the service's; other consumers keep the service's instance.
#[tokio::test]
async fn consumer_scoped_instances_follow_the_jwt_consumer() {
    let upstream = echo::spawn().await.unwrap();
    let config = guide_builder(upstream)
        .plugin(
            50,
            "ip-restriction",
            json!({"allow": ["127.0.0.1"]}),
            Scope {
                service: Some(1),
                ..Scope::default()
            },
        )
        .plugin(
            51,
            "ip-restriction",
            json!({"deny": ["127.0.0.1"], "message": "not for you"}),
            Scope {
                consumer: Some(BLOCKED),
                ..Scope::default()
            },
        )
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &with_secrets(config))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    let client = pyjwt_token(KEY, SECRET, 3600);
    let reply = send(
        proxy,
        get_with("/api", &[("authorization", &bearer(&client))]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());

    let blocked = pyjwt_token("blocked-key", "blocked-secret", 3600);
    let reply = send(
        proxy,
        get_with("/api", &[("authorization", &bearer(&blocked))]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(reply.json()["message"], "not for you");

    // Without a token jwt rejects before any consumer-scoped instance runs.
    let reply = get(proxy, "/api").await.unwrap();
    assert_eq!(reply.status, 401);
    dp.shutdown().await;
}
