//! The jwt plugin against kong-compat §5.4 row by row, every algorithm family
//! with keys made here (rcgen for P-256, P-384 and Ed25519; `openssl` for RSA
//! and P-521), and the attacks of reliability.md §5.3. Tokens are encoded by
//! jsonwebtoken (an independent implementation), or by hand where it cannot
//! (ES512, malformed tokens).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::entity::Consumer;
use crate::runtime::Resources;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::process::Command;
use std::sync::OnceLock;

const NOW: i64 = 1_800_000_000;
const CONSUMER: u128 = 1;
const SECRET: &str = "a-shared-secret-of-some-length";

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// A credential row for consumer `consumer`.
fn credential(n: u128, consumer: u128, key: &str, algorithm: &str, material: &str) -> JwtSecret {
    let hmac = algorithm.starts_with("HS");
    serde_json::from_value(json!({
        "id": uuid(n), "created_at": 1, "consumer": {"id": uuid(consumer)}, "key": key,
        "secret": if hmac { json!(material) } else { json!("unused-secret") },
        "rsa_public_key": if hmac { Value::Null } else { json!(material) },
        "algorithm": algorithm, "tags": null
    }))
    .unwrap()
}

fn consumer(n: u128, username: &str, custom_id: Option<&str>) -> Consumer {
    serde_json::from_value(json!({
        "id": uuid(n), "created_at": 1, "updated_at": 1, "username": username,
        "custom_id": custom_id, "tags": null
    }))
    .unwrap()
}

fn base_config(secrets: Vec<JwtSecret>) -> crate::Config {
    crate::Config {
        consumers: vec![
            consumer(CONSUMER, "alice", None),
            consumer(2, "guest", Some("guest-custom")),
        ],
        jwt_secrets: secrets,
        ..crate::Config::default()
    }
}

fn compile_in(config: &crate::Config, plugin_config: Value) -> Jwt {
    let consumers = Arc::new(ConsumerIndex::new(&config.consumers));
    compile_with(config, &consumers, &Resources::check_only(), plugin_config)
}

/// Compiles an instance against a given compile's consumer index and resources.
fn compile_with(
    config: &crate::Config,
    consumers: &Arc<ConsumerIndex>,
    resources: &Resources,
    plugin_config: Value,
) -> Jwt {
    let instance: crate::Plugin = serde_json::from_value(json!({
        "id": uuid(99), "created_at": 1, "updated_at": 1, "name": "jwt",
        "instance_name": null, "config": plugin_config, "route": null, "service": null,
        "consumer": null, "protocols": ["http", "https"], "enabled": true, "tags": null
    }))
    .unwrap();
    let spec = crate::PluginSpec::from_plugin(&instance).unwrap();
    let crate::PluginSpec::Jwt(jwt_config) = spec else {
        panic!("not a jwt spec");
    };
    let cx = CompileContext {
        config,
        instance: &instance,
        consumers,
        resources,
    };
    Jwt::compile(&jwt_config, &cx).unwrap()
}

/// A jwt instance over one HS256 credential `key` of consumer alice.
fn hs256_plugin(plugin_config: Value) -> Jwt {
    let config = base_config(vec![credential(10, CONSUMER, "key-1", "HS256", SECRET)]);
    compile_in(&config, plugin_config)
}

fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> RequestContext {
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let (parts, ()) = builder.body(()).unwrap().into_parts();
    let ip = "127.0.0.1".parse().unwrap();
    RequestContext::new(
        parts,
        ip,
        ip,
        crate::runtime::Protocol::Http,
        HeaderValue::from_static("0"),
        std::time::Instant::now(),
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn hs256(claims: Value) -> String {
    sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

fn sign_with(algorithm: Algorithm, key: &EncodingKey, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), &claims, key).unwrap()
}

/// A token from raw header and claims JSON and a raw signature.
fn raw_token(header: &str, claims: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// The output of a future that must not wait (every key source in these
/// tests answers at once).
fn ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the jwt plugin waited"),
    }
}

/// Runs the plugin; returns the outcome and the context.
fn run(plugin: &Jwt, mut ctx: RequestContext) -> (Decision, RequestContext) {
    let decision = ready(plugin.0.access_at(&mut ctx, NOW));
    (decision, ctx)
}

fn run_with_token(plugin: &Jwt, token: &str) -> (Decision, RequestContext) {
    run(
        plugin,
        request("GET", "/", &[("authorization", &bearer(token))]),
    )
}

/// Asserts a 401 with `body` (JSON) and `challenge`.
#[track_caller]
fn assert_401(outcome: &(Decision, RequestContext), body: Value, challenge: &str) {
    let (decision, ctx) = outcome;
    let Decision::Respond(rejection) = decision else {
        panic!("expected a 401 with {body}, got {decision:?}");
    };
    assert_eq!(rejection.status, StatusCode::UNAUTHORIZED);
    let sent: Value = match rejection.style {
        RejectionStyle::Exit => json!({ "message": rejection.message }),
        RejectionStyle::ExitJson => serde_json::from_str(&rejection.message).unwrap(),
        RejectionStyle::Error => panic!("401s are kong.response.exit"),
    };
    assert_eq!(sent, body);
    assert_eq!(
        *ctx.response_headers.get(&WWW_AUTHENTICATE).unwrap(),
        challenge
    );
    assert!(ctx.consumer.is_none() && ctx.credential.is_none());
}

#[track_caller]
fn assert_invalid(outcome: &(Decision, RequestContext), message: &str) {
    assert_401(
        outcome,
        json!({ "message": message }),
        "Bearer error=\"invalid_token\"",
    );
}

/// The headers the upstream gets: the map and the consumer headers.
fn upstream_headers(ctx: &RequestContext) -> http::HeaderMap {
    let mut headers = ctx.headers().clone();
    if let Some(consumer) = ctx.consumer_headers.as_deref() {
        consumer.merge_into(&mut headers);
    }
    headers
}

#[track_caller]
fn assert_authenticated(outcome: &(Decision, RequestContext), username: &str) {
    let (decision, ctx) = outcome;
    assert!(matches!(decision, Decision::Continue), "{decision:?}");
    let consumer = ctx.consumer.as_ref().expect("a consumer");
    assert_eq!(consumer.username.as_deref(), Some(username));
    let credential = ctx.credential.as_ref().expect("a credential");
    assert_eq!(credential.consumer, consumer.id);
    let headers = upstream_headers(ctx);
    assert_eq!(
        headers[consumer_headers::CONSUMER_ID],
        consumer.id.to_string().as_str()
    );
    assert_eq!(headers[consumer_headers::CONSUMER_USERNAME], username);
    assert_eq!(
        headers[consumer_headers::CREDENTIAL_IDENTIFIER],
        &*credential.identifier
    );
    assert!(headers.get(consumer_headers::ANONYMOUS).is_none());
}

fn valid_claims() -> Value {
    json!({ "iss": "key-1", "exp": NOW + 60 })
}

// --- §5.3 token lookup -----------------------------------------------------

#[test]
fn no_token_is_unauthorized_with_a_bare_challenge() {
    let plugin = hs256_plugin(json!({}));
    assert_401(
        &run(&plugin, request("GET", "/", &[])),
        json!({"message": "Unauthorized"}),
        "Bearer",
    );
    // A header without the Bearer scheme yields no token.
    let basic = request("GET", "/", &[("authorization", "Basic dXNlcjpwYXNz")]);
    assert_401(
        &run(&plugin, basic),
        json!({"message": "Unauthorized"}),
        "Bearer",
    );
    // Empty query parameters are ignored.
    assert_401(
        &run(&plugin, request("GET", "/?jwt=", &[])),
        json!({"message": "Unauthorized"}),
        "Bearer",
    );
}

#[test]
fn realm_goes_into_both_challenges() {
    let plugin = hs256_plugin(json!({ "realm": "api" }));
    assert_401(
        &run(&plugin, request("GET", "/", &[])),
        json!({"message": "Unauthorized"}),
        "Bearer realm=\"api\"",
    );
    assert_401(
        &run_with_token(&plugin, "garbage"),
        json!({"message": "Bad token; invalid JSON"}),
        "Bearer realm=\"api\", error=\"invalid_token\"",
    );
}

#[test]
fn tokens_are_found_in_query_cookie_and_headers() {
    let token = hs256(valid_claims());
    let plugin = hs256_plugin(json!({
        "cookie_names": ["session"], "header_names": ["authorization", "x-token"]
    }));
    let sources: [(&str, Vec<(&str, String)>); 5] = [
        (&*format!("/?a=1&jwt={token}"), vec![]),
        ("/", vec![("cookie", format!("other=1; session={token}"))]),
        ("/", vec![("authorization", format!("bearer   {token}"))]),
        ("/", vec![("x-token", format!("Bearer {token}"))]),
        // The same token from several places is one token.
        (
            &*format!("/?jwt={token}&jwt={token}"),
            vec![("authorization", bearer(&token))],
        ),
    ];
    for (uri, headers) in sources {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_authenticated(&run(&plugin, request("GET", uri, &headers)), "alice");
    }
}

#[test]
fn several_distinct_tokens_are_refused() {
    let plugin = hs256_plugin(json!({ "cookie_names": ["session"] }));
    let good = hs256(valid_claims());
    let other = hs256(json!({ "iss": "key-1", "exp": NOW + 61 }));
    let cases = [
        request(
            "GET",
            &format!("/?jwt={other}"),
            &[("authorization", &bearer(&good))],
        ),
        request("GET", &format!("/?jwt={good}&jwt={other}"), &[]),
        request(
            "GET",
            "/",
            &[
                ("cookie", &format!("session={other}")),
                ("authorization", &bearer(&good)),
            ],
        ),
    ];
    for ctx in cases {
        assert_invalid(&run(&plugin, ctx), "Multiple tokens provided");
    }
}

// --- §5.4 the verification sequence ----------------------------------------

#[test]
fn undecodable_tokens_are_bad_tokens() {
    let plugin = hs256_plugin(json!({}));
    let claims = r#"{"iss":"key-1"}"#;
    let cases = [
        ("not-a-token".to_string(), "Bad token; invalid JSON"),
        ("a.b".to_string(), "Bad token; invalid JSON"),
        (
            raw_token("{not json", claims, b"sig"),
            "Bad token; invalid JSON",
        ),
        (
            raw_token(r#"{"alg":"HS256"}"#, "[1,", b"sig"),
            "Bad token; invalid JSON",
        ),
        (
            raw_token(r#"{"typ":"JWT"}"#, claims, b"sig"),
            "Bad token; invalid alg",
        ),
        (
            raw_token(r#"{"alg":"HS1"}"#, claims, b"sig"),
            "Bad token; invalid alg",
        ),
        (
            raw_token(r#"{"alg":256}"#, claims, b"sig"),
            "Bad token; invalid alg",
        ),
        (
            raw_token(r#"["HS256"]"#, claims, b"sig"),
            "Bad token; invalid alg",
        ),
        (
            format!("{}.!!", &raw_token(r#"{"alg":"HS256"}"#, claims, b"")[..]),
            "Bad token; invalid signature",
        ),
    ];
    for (token, message) in cases {
        assert_invalid(&run_with_token(&plugin, &token), message);
    }
}

#[test]
fn alg_none_is_refused() {
    let plugin = hs256_plugin(json!({}));
    let claims = r#"{"iss":"key-1","exp":9999999999}"#;
    for header in [r#"{"alg":"none"}"#, r#"{"alg":"None","typ":"JWT"}"#] {
        let token = raw_token(header, claims, b"");
        assert_invalid(&run_with_token(&plugin, &token), "Bad token; invalid alg");
    }
}

#[test]
fn the_key_claim_must_name_a_credential() {
    let plugin = hs256_plugin(json!({}));
    assert_invalid(
        &run_with_token(&plugin, &hs256(json!({"sub": "x"}))),
        "No mandatory 'iss' in claims",
    );
    assert_invalid(
        &run_with_token(&plugin, &hs256(json!({"iss": null}))),
        "No mandatory 'iss' in claims",
    );
    assert_invalid(
        &run_with_token(&plugin, &hs256(json!({"iss": ""}))),
        "Invalid 'iss' in claims",
    );
    assert_invalid(
        &run_with_token(&plugin, &hs256(json!({"iss": "nobody"}))),
        "No credentials found for given 'iss'",
    );
    assert_invalid(
        &run_with_token(&plugin, &hs256(json!({"iss": 42}))),
        "No credentials found for given 'iss'",
    );
}

#[test]
fn the_key_claim_name_is_configurable_and_read_from_the_header_too() {
    let plugin = hs256_plugin(json!({ "key_claim_name": "kid" }));
    assert_invalid(
        &run_with_token(&plugin, &hs256(valid_claims())),
        "No mandatory 'kid' in claims",
    );
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("key-1".into());
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let token = jsonwebtoken::encode(&header, &json!({"exp": NOW + 60}), &key).unwrap();
    assert_authenticated(&run_with_token(&plugin, &token), "alice");
}

#[test]
fn kid_with_path_or_sql_text_is_only_a_map_key() {
    let plugin = hs256_plugin(json!({ "key_claim_name": "kid" }));
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    for kid in [
        "../../../../etc/passwd",
        "' OR '1'='1' --",
        "file:///dev/zero",
        "key-1\u{0}",
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.into());
        let token = jsonwebtoken::encode(&header, &json!({}), &key).unwrap();
        assert_invalid(
            &run_with_token(&plugin, &token),
            "No credentials found for given 'kid'",
        );
    }
    // With the default key claim a kid is not looked at.
    let plugin = hs256_plugin(json!({}));
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("../../etc/passwd".into());
    let token = jsonwebtoken::encode(&header, &valid_claims(), &key).unwrap();
    assert_authenticated(&run_with_token(&plugin, &token), "alice");
}

#[test]
fn the_algorithm_is_pinned_to_the_credential() {
    // RS256 credential; the attacker signs HS256 with the public key as the
    // HMAC secret (and tries HS384/HS512, and RS512).
    let rsa = rsa_keys();
    let config = base_config(vec![credential(
        10,
        CONSUMER,
        "rsa-key",
        "RS256",
        &rsa.public,
    )]);
    let plugin = compile_in(&config, json!({}));
    let claims = json!({ "iss": "rsa-key", "exp": NOW + 60 });
    for algorithm in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let forged = sign_with(
            algorithm,
            &EncodingKey::from_secret(rsa.public.as_bytes()),
            claims.clone(),
        );
        assert_invalid(&run_with_token(&plugin, &forged), "Invalid algorithm");
    }
    let rs512 = sign_with(Algorithm::RS512, &rsa.encoding(), claims.clone());
    assert_invalid(&run_with_token(&plugin, &rs512), "Invalid algorithm");
    let genuine = sign_with(Algorithm::RS256, &rsa.encoding(), claims);
    assert_authenticated(&run_with_token(&plugin, &genuine), "alice");
}

#[test]
fn a_credential_without_usable_key_material_is_invalid_key_secret() {
    let token = hs256(valid_claims());
    // secret_is_base64 with a secret that is not base64.
    let config = base_config(vec![credential(
        10,
        CONSUMER,
        "key-1",
        "HS256",
        "not base64!",
    )]);
    let plugin = compile_in(&config, json!({ "secret_is_base64": true }));
    assert_invalid(&run_with_token(&plugin, &token), "Invalid key/secret");
    // No secret at all.
    let mut no_secret = credential(10, CONSUMER, "key-1", "HS256", SECRET);
    no_secret.secret = None;
    let plugin = compile_in(&base_config(vec![no_secret]), json!({}));
    assert_invalid(&run_with_token(&plugin, &token), "Invalid key/secret");
}

#[test]
fn a_base64_secret_is_decoded_first() {
    let raw_secret = [0u8, 1, 2, 250, 251, 252, 253, 254, 255];
    let encoded = URL_SAFE_NO_PAD.encode(raw_secret);
    let config = base_config(vec![credential(10, CONSUMER, "key-1", "HS256", &encoded)]);
    let plugin = compile_in(&config, json!({ "secret_is_base64": true }));
    let token = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(&raw_secret),
        valid_claims(),
    );
    assert_authenticated(&run_with_token(&plugin, &token), "alice");
    // Signed with the text of the secret instead: a bad signature.
    let wrong = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(encoded.as_bytes()),
        valid_claims(),
    );
    assert_invalid(&run_with_token(&plugin, &wrong), "Invalid signature");
}

#[test]
fn a_wrong_signature_is_invalid() {
    let plugin = hs256_plugin(json!({}));
    let forged = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"guess"),
        valid_claims(),
    );
    assert_invalid(&run_with_token(&plugin, &forged), "Invalid signature");
    // A valid token with its payload swapped for another one.
    let genuine = hs256(valid_claims());
    let parts: Vec<&str> = genuine.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(r#"{"iss":"key-1","admin":true}"#);
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    assert_invalid(&run_with_token(&plugin, &tampered), "Invalid signature");
    // An empty signature.
    let stripped = format!("{}.{}.", parts[0], parts[1]);
    assert_invalid(&run_with_token(&plugin, &stripped), "Invalid signature");
}

#[test]
fn claims_are_checked_only_when_configured() {
    let plugin = hs256_plugin(json!({}));
    let expired = hs256(json!({ "iss": "key-1", "exp": NOW - 10, "nbf": "soon" }));
    assert_authenticated(&run_with_token(&plugin, &expired), "alice");
}

#[test]
fn exp_and_nbf_failures_are_reported_per_claim() {
    let plugin = hs256_plugin(json!({ "claims_to_verify": ["exp", "nbf"] }));
    let challenge = "Bearer error=\"invalid_token\"";
    let cases = [
        (
            json!({"iss": "key-1", "nbf": NOW}),
            json!({"exp": "must be a number"}),
        ),
        (
            json!({"iss": "key-1", "exp": NOW, "nbf": NOW}),
            json!({"exp": "token expired"}),
        ),
        (
            json!({"iss": "key-1", "exp": NOW + 60, "nbf": NOW + 1}),
            json!({"nbf": "token not valid yet"}),
        ),
        (
            json!({"iss": "key-1", "exp": NOW - 1, "nbf": NOW + 1}),
            json!({"exp": "token expired", "nbf": "token not valid yet"}),
        ),
        // Strings, booleans and null are not numbers (CVE-2026-25537 pattern).
        (
            json!({"iss": "key-1", "exp": (NOW + 60).to_string(), "nbf": NOW}),
            json!({"exp": "must be a number"}),
        ),
        (
            json!({"iss": "key-1", "exp": NOW + 60, "nbf": null}),
            json!({"nbf": "must be a number"}),
        ),
        (
            json!({"iss": "key-1", "exp": true, "nbf": "0"}),
            json!({"exp": "must be a number", "nbf": "must be a number"}),
        ),
        // Floats are numbers, as in Kong, and compared as such.
        (
            json!({"iss": "key-1", "exp": NOW as f64 - 0.5, "nbf": NOW}),
            json!({"exp": "token expired"}),
        ),
        (
            json!({"iss": "key-1", "exp": NOW + 60, "nbf": NOW as f64 + 0.5}),
            json!({"nbf": "token not valid yet"}),
        ),
    ];
    for (claims, body) in cases {
        assert_401(&run_with_token(&plugin, &hs256(claims)), body, challenge);
    }
    let fine = hs256(json!({"iss": "key-1", "exp": NOW as f64 + 0.5, "nbf": NOW}));
    assert_authenticated(&run_with_token(&plugin, &fine), "alice");
}

#[test]
fn maximum_expiration_bounds_the_token_lifetime() {
    let plugin = hs256_plugin(json!({ "claims_to_verify": ["exp"], "maximum_expiration": 600 }));
    let too_long = hs256(json!({"iss": "key-1", "exp": NOW + 601}));
    assert_401(
        &run_with_token(&plugin, &too_long),
        json!({"exp": "exceeds maximum allowed expiration"}),
        "Bearer error=\"invalid_token\"",
    );
    let within = hs256(json!({"iss": "key-1", "exp": NOW + 600}));
    assert_authenticated(&run_with_token(&plugin, &within), "alice");
    // The claim checks come first.
    let missing = hs256(json!({"iss": "key-1"}));
    assert_401(
        &run_with_token(&plugin, &missing),
        json!({"exp": "must be a number"}),
        "Bearer error=\"invalid_token\"",
    );
}

#[test]
fn leeway_tolerates_clock_skew_on_exp_and_nbf_only() {
    let plugin = hs256_plugin(json!({ "claims_to_verify": ["exp", "nbf"], "leeway": 30 }));
    // Within the leeway on both sides.
    let skewed = hs256(json!({"iss": "key-1", "exp": NOW - 29, "nbf": NOW + 30}));
    assert_authenticated(&run_with_token(&plugin, &skewed), "alice");
    let challenge = "Bearer error=\"invalid_token\"";
    let expired = hs256(json!({"iss": "key-1", "exp": NOW - 30, "nbf": NOW}));
    assert_401(
        &run_with_token(&plugin, &expired),
        json!({"exp": "token expired"}),
        challenge,
    );
    let early = hs256(json!({"iss": "key-1", "exp": NOW + 60, "nbf": NOW + 31}));
    assert_401(
        &run_with_token(&plugin, &early),
        json!({"nbf": "token not valid yet"}),
        challenge,
    );
    // Leeway never makes a non-number acceptable, nor stretches maximum_expiration.
    let text = hs256(json!({"iss": "key-1", "exp": "0", "nbf": NOW}));
    assert_401(
        &run_with_token(&plugin, &text),
        json!({"exp": "must be a number"}),
        challenge,
    );
    let bounded = hs256_plugin(json!({
        "claims_to_verify": ["exp"], "maximum_expiration": 60, "leeway": 30
    }));
    let long = hs256(json!({"iss": "key-1", "exp": NOW + 61}));
    assert_401(
        &run_with_token(&bounded, &long),
        json!({"exp": "exceeds maximum allowed expiration"}),
        challenge,
    );
    // The default is Kong's: none.
    let strict = hs256_plugin(json!({ "claims_to_verify": ["exp"] }));
    let just_expired = hs256(json!({"iss": "key-1", "exp": NOW}));
    assert_401(
        &run_with_token(&strict, &just_expired),
        json!({"exp": "token expired"}),
        challenge,
    );
}

#[test]
fn a_credential_whose_consumer_is_gone_cannot_authenticate() {
    let config = base_config(vec![credential(10, 777, "orphan", "HS256", SECRET)]);
    let plugin = compile_in(&config, json!({}));
    let token = hs256(json!({"iss": "orphan"}));
    assert_invalid(
        &run_with_token(&plugin, &token),
        "Could not find consumer for 'iss=orphan'",
    );
}

// --- §5.5 success, headers, anonymous, preflight ---------------------------

#[test]
fn success_sets_the_consumer_and_replaces_smuggled_headers() {
    let plugin = hs256_plugin(json!({}));
    let token = hs256(valid_claims());
    let smuggled = [
        ("authorization", bearer(&token)),
        (
            "x-consumer-id",
            "00000000-0000-0000-0000-000000000002".into(),
        ),
        ("x-consumer-username", "admin".into()),
        ("x-consumer-custom-id", "admin-custom".into()),
        ("x-credential-identifier", "admin-key".into()),
        ("x-anonymous-consumer", "false".into()),
    ];
    let headers: Vec<(&str, &str)> = smuggled.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let outcome = run(&plugin, request("GET", "/", &headers));
    assert_authenticated(&outcome, "alice");
    let ctx = &outcome.1;
    assert_eq!(
        upstream_headers(ctx)[consumer_headers::CREDENTIAL_IDENTIFIER],
        "key-1"
    );
    // alice has no custom_id: the client's value is removed, not forwarded.
    assert!(upstream_headers(ctx)
        .get(consumer_headers::CONSUMER_CUSTOM_ID)
        .is_none());
    assert_eq!(ctx.credential.as_ref().unwrap().id, uuid(10));
    // The Authorization header goes upstream unchanged.
    assert_eq!(
        upstream_headers(ctx)["authorization"],
        bearer(&token).as_str()
    );
}

#[test]
fn anonymous_replaces_the_rejection() {
    for reference in ["guest", &uuid(2).to_string()] {
        let plugin = hs256_plugin(json!({ "anonymous": reference }));
        let outcome = run(
            &plugin,
            request("GET", "/", &[("x-credential-identifier", "smuggled")]),
        );
        let (decision, ctx) = &outcome;
        assert!(matches!(decision, Decision::Continue));
        assert_eq!(
            ctx.consumer.as_ref().unwrap().username.as_deref(),
            Some("guest")
        );
        assert!(ctx.credential.is_none());
        let headers = upstream_headers(ctx);
        assert_eq!(headers[consumer_headers::ANONYMOUS], "true");
        assert_eq!(
            headers[consumer_headers::CONSUMER_CUSTOM_ID],
            "guest-custom"
        );
        assert_eq!(
            headers[consumer_headers::CONSUMER_ID],
            uuid(2).to_string().as_str()
        );
        assert!(headers
            .get(consumer_headers::CREDENTIAL_IDENTIFIER)
            .is_none());
        assert!(ctx.response_headers.get(&WWW_AUTHENTICATE).is_none());
        // A valid token still identifies its own consumer.
        assert_authenticated(&run_with_token(&plugin, &hs256(valid_claims())), "alice");
    }
}

#[test]
fn a_missing_anonymous_consumer_is_kongs_500() {
    let plugin = hs256_plugin(json!({ "anonymous": "ghost" }));
    let (decision, _) = run(&plugin, request("GET", "/", &[]));
    let Decision::Respond(rejection) = decision else {
        panic!("expected a 500");
    };
    assert_eq!(rejection.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(rejection.style, RejectionStyle::Error);
    assert_eq!(
        rejection.message,
        "anonymous consumer ghost is configured but doesn't exist"
    );
}

#[test]
fn with_anonymous_an_earlier_credential_is_kept() {
    let plugin = hs256_plugin(json!({ "anonymous": "guest" }));
    let mut ctx = request(
        "GET",
        "/",
        &[("x-consumer-username", "set-by-earlier-plugin")],
    );
    ctx.credential = Some(CredentialRef {
        id: uuid(50),
        identifier: "other".into(),
        consumer: uuid(CONSUMER),
    });
    let (decision, ctx) = run(&plugin, ctx);
    assert!(matches!(decision, Decision::Continue));
    assert_eq!(
        upstream_headers(&ctx)["x-consumer-username"],
        "set-by-earlier-plugin"
    );
    assert_eq!(&*ctx.credential.unwrap().identifier, "other");
}

#[test]
fn preflight_requests_pass_only_when_configured() {
    let strict = hs256_plugin(json!({}));
    assert_401(
        &run(&strict, request("OPTIONS", "/", &[])),
        json!({"message": "Unauthorized"}),
        "Bearer",
    );
    let lenient = hs256_plugin(json!({ "run_on_preflight": false }));
    let (decision, ctx) = run(
        &lenient,
        request("OPTIONS", "/", &[("x-consumer-username", "smuggled")]),
    );
    assert!(matches!(decision, Decision::Continue));
    assert!(ctx.consumer.is_none());
    assert!(upstream_headers(&ctx).get("x-consumer-username").is_none());
    // Only OPTIONS is let through.
    assert_401(
        &run(&lenient, request("GET", "/", &[])),
        json!({"message": "Unauthorized"}),
        "Bearer",
    );
}

// --- algorithm families ----------------------------------------------------

struct KeyPair {
    /// PKCS#8 private key PEM.
    private: String,
    /// SubjectPublicKeyInfo PEM.
    public: String,
}

impl KeyPair {
    fn encoding(&self) -> EncodingKey {
        EncodingKey::from_rsa_pem(self.private.as_bytes()).unwrap()
    }
}

fn openssl(args: &[&str], input: Option<&str>) -> String {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the RSA and P-521 tests need the openssl command");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.unwrap_or("").as_bytes()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn openssl_pair(genpkey: &[&str]) -> KeyPair {
    let private = openssl(genpkey, None);
    let public = openssl(&["pkey", "-pubout"], Some(&private));
    KeyPair { private, public }
}

fn rsa_keys() -> &'static KeyPair {
    static KEYS: OnceLock<KeyPair> = OnceLock::new();
    KEYS.get_or_init(|| {
        openssl_pair(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
    })
}

fn p521_keys() -> KeyPair {
    openssl_pair(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-521",
    ])
}

fn rcgen_pair(algorithm: &'static rcgen::SignatureAlgorithm) -> KeyPair {
    let pair = rcgen::KeyPair::generate_for(algorithm).unwrap();
    KeyPair {
        private: pair.serialize_pem(),
        public: pair.public_key_pem(),
    }
}

/// Signs ES512 by hand (jsonwebtoken has no P-521): raw `r || s`.
fn es512(private_pem: &str, claims: &Value) -> String {
    use p521::ecdsa::signature::Signer as _;
    use p521::elliptic_curve::pkcs8::DecodePrivateKey as _;
    let secret = p521::SecretKey::from_pkcs8_pem(private_pem).unwrap();
    let signing = p521::ecdsa::SigningKey::from_bytes(&secret.to_bytes()).unwrap();
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"ES512","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature: p521::ecdsa::Signature = signing.sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// Checks one credential algorithm: a token signed with the credential's key
/// passes, one signed with another key of the same kind fails.
fn check_family(name: &str, public: &str, good: &str, other: &str) {
    let config = base_config(vec![credential(10, CONSUMER, "k", name, public)]);
    let plugin = compile_in(&config, json!({ "claims_to_verify": ["exp"] }));
    assert_authenticated(&run_with_token(&plugin, good), "alice");
    assert_invalid(&run_with_token(&plugin, other), "Invalid signature");
}

fn family_claims() -> Value {
    json!({ "iss": "k", "exp": NOW + 60 })
}

#[test]
fn hmac_algorithms_verify() {
    for (name, algorithm) in [
        ("HS256", Algorithm::HS256),
        ("HS384", Algorithm::HS384),
        ("HS512", Algorithm::HS512),
    ] {
        let good = sign_with(
            algorithm,
            &EncodingKey::from_secret(SECRET.as_bytes()),
            family_claims(),
        );
        let other = sign_with(
            algorithm,
            &EncodingKey::from_secret(b"other"),
            family_claims(),
        );
        check_family(name, SECRET, &good, &other);
    }
}

#[test]
fn rsa_algorithms_verify() {
    let keys = rsa_keys();
    let other = openssl_pair(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
    ]);
    for (name, algorithm) in [
        ("RS256", Algorithm::RS256),
        ("RS384", Algorithm::RS384),
        ("RS512", Algorithm::RS512),
        ("PS256", Algorithm::PS256),
        ("PS384", Algorithm::PS384),
        ("PS512", Algorithm::PS512),
    ] {
        let good = sign_with(algorithm, &keys.encoding(), family_claims());
        let forged = sign_with(algorithm, &other.encoding(), family_claims());
        check_family(name, &keys.public, &good, &forged);
    }
    // A PKCS#1 `RSA PUBLIC KEY` works as well.
    let pkcs1 = openssl(&["rsa", "-pubin", "-RSAPublicKey_out"], Some(&keys.public));
    assert!(pkcs1.contains("BEGIN RSA PUBLIC KEY"));
    let good = sign_with(Algorithm::RS256, &keys.encoding(), family_claims());
    let forged = sign_with(Algorithm::RS256, &other.encoding(), family_claims());
    check_family("RS256", &pkcs1, &good, &forged);
}

/// Which code checks a signature: `ring` for RSA keys of 2048 bits and more
/// and for P-256/P-384, RustCrypto for a smaller RSA key (which `ring`
/// refuses), whose tokens still verify; a compressed JWK point works too.
#[test]
fn keys_go_to_ring_where_it_takes_them() {
    let algorithm_of = |name: &str| serde_json::from_value::<JwtAlgorithm>(json!(name)).unwrap();
    let verifier = |name: &str, pem: &str| Verifier::public_key(algorithm_of(name), pem).unwrap();
    let big = rsa_keys();
    for name in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        assert!(verifier(name, &big.public).on_ring(), "{name}");
    }
    let small = openssl_pair(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
    ]);
    for (name, algorithm) in [("RS256", Algorithm::RS256), ("PS256", Algorithm::PS256)] {
        let legacy = verifier(name, &small.public);
        assert!(!legacy.on_ring(), "{name}");
        let token = sign_with(algorithm, &small.encoding(), family_claims());
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        assert!(legacy.verify(signed.as_bytes(), &signature), "{name}");
        assert!(!legacy.verify(b"other", &signature), "{name}");
    }
    for (name, curve) in [
        ("ES256", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("ES384", &rcgen::PKCS_ECDSA_P384_SHA384),
    ] {
        assert!(
            verifier(name, &rcgen_pair(curve).public).on_ring(),
            "{name}"
        );
    }
    assert!(!verifier("ES512", &p521_keys().public).on_ring());
    assert!(!verifier("EdDSA", &rcgen_pair(&rcgen::PKCS_ED25519).public).on_ring());

    // A compressed SEC1 point (a JWK may not, but `ec_point` takes any SEC1
    // form) is expanded for `ring` and verifies the same tokens.
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    use p256::pkcs8::DecodePublicKey as _;
    let keys = rcgen_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let public = p256::PublicKey::from_public_key_pem(&keys.public).unwrap();
    let compressed = public.to_encoded_point(true);
    let from_point = Verifier::ec_point(JwtAlgorithm::ES256, compressed.as_bytes()).unwrap();
    assert!(from_point.on_ring());
    let token = sign_with(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(keys.private.as_bytes()).unwrap(),
        family_claims(),
    );
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    assert!(from_point.verify(signed.as_bytes(), &signature));
    // A DER signature (what OpenSSL emits) is not JOSE's raw r || s.
    assert!(!from_point.verify(signed.as_bytes(), &[0x30; 70]));
}

#[test]
fn ecdsa_algorithms_verify() {
    for (name, algorithm, curve) in [
        ("ES256", Algorithm::ES256, &rcgen::PKCS_ECDSA_P256_SHA256),
        ("ES384", Algorithm::ES384, &rcgen::PKCS_ECDSA_P384_SHA384),
    ] {
        let keys = rcgen_pair(curve);
        let other = rcgen_pair(curve);
        let key = |pair: &KeyPair| EncodingKey::from_ec_pem(pair.private.as_bytes()).unwrap();
        let good = sign_with(algorithm, &key(&keys), family_claims());
        let forged = sign_with(algorithm, &key(&other), family_claims());
        check_family(name, &keys.public, &good, &forged);
    }
    let keys = p521_keys();
    let other = p521_keys();
    let good = es512(&keys.private, &family_claims());
    let forged = es512(&other.private, &family_claims());
    check_family("ES512", &keys.public, &good, &forged);
    // A signature of the wrong length is a bad signature, not a crash.
    let parts: Vec<&str> = good.split('.').collect();
    let short = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode([1u8; 64])
    );
    let config = base_config(vec![credential(10, CONSUMER, "k", "ES512", &keys.public)]);
    let plugin = compile_in(&config, json!({}));
    assert_invalid(&run_with_token(&plugin, &short), "Invalid signature");
}

#[test]
fn eddsa_verifies() {
    let keys = rcgen_pair(&rcgen::PKCS_ED25519);
    let other = rcgen_pair(&rcgen::PKCS_ED25519);
    let key = |pair: &KeyPair| EncodingKey::from_ed_pem(pair.private.as_bytes()).unwrap();
    let good = sign_with(Algorithm::EdDSA, &key(&keys), family_claims());
    let forged = sign_with(Algorithm::EdDSA, &key(&other), family_claims());
    check_family("EdDSA", &keys.public, &good, &forged);
}

#[test]
fn public_keys_must_match_the_algorithm_family_and_curve() {
    let p256 = rcgen_pair(&rcgen::PKCS_ECDSA_P256_SHA256).public;
    let ed = rcgen_pair(&rcgen::PKCS_ED25519).public;
    let rsa = &rsa_keys().public;
    assert!(public_key_parses(JwtAlgorithm::ES256, &p256));
    assert!(!public_key_parses(JwtAlgorithm::ES384, &p256));
    assert!(!public_key_parses(JwtAlgorithm::ES512, &p256));
    assert!(!public_key_parses(JwtAlgorithm::RS256, &p256));
    assert!(!public_key_parses(JwtAlgorithm::EdDSA, rsa));
    assert!(!public_key_parses(JwtAlgorithm::ES256, rsa));
    assert!(public_key_parses(JwtAlgorithm::PS512, rsa));
    assert!(public_key_parses(JwtAlgorithm::EdDSA, &ed));
    assert!(!public_key_parses(
        JwtAlgorithm::RS256,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
    ));
}

#[test]
fn lenient_base64url_matches_kong() {
    assert_eq!(token::decode_base64url(b"_-8").unwrap(), [0xff, 0xef]);
    assert_eq!(token::decode_base64url(b"/+8=").unwrap(), [0xff, 0xef]);
    assert_eq!(token::decode_base64url(b"").unwrap(), Vec::<u8>::new());
    assert!(token::decode_base64url(b"a").is_none());
    assert!(token::decode_base64url(b"ab.c").is_none());
}

// --- JWKS documents (the parsing half of JWKS support) -----------------------

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_jwk(kid: &str, alg: Option<&str>) -> Value {
    use rsa::traits::PublicKeyParts as _;
    let key = rsa::RsaPublicKey::from_public_key_pem(&rsa_keys().public).unwrap();
    json!({"kty": "RSA", "kid": kid, "alg": alg, "use": "sig",
           "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())})
}

fn p256_jwk(kid: &str, public_pem: &str) -> Value {
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    let point = p256::PublicKey::from_public_key_pem(public_pem)
        .unwrap()
        .to_encoded_point(false);
    json!({"kty": "EC", "kid": kid, "crv": "P-256",
           "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
}

fn ed_jwk(kid: &str, public_pem: &str) -> Value {
    let key = ed25519_dalek::VerifyingKey::from_public_key_pem(public_pem).unwrap();
    json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(key.as_bytes())})
}

/// Whether the set's key `kid` verifies `token`.
fn jwks_verifies(set: &KeySet, kid: &str, token: &str) -> bool {
    let decoded = Token::decode(token.as_bytes()).unwrap();
    let verifier = set.get(kid).expect("the kid is in the set");
    decoded.algorithm == verifier.algorithm() && verifier.verify(decoded.signed, &decoded.signature)
}

use rsa::pkcs8::DecodePublicKey as _;

#[test]
fn jwks_keys_verify_with_the_algorithm_the_key_fixes() {
    let ec = rcgen_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let ed = rcgen_pair(&rcgen::PKCS_ED25519);
    let document = json!({"keys": [
        rsa_jwk("rsa-ps", Some("PS256")),
        rsa_jwk("rsa-rs", Some("RS384")),
        p256_jwk("ec", &ec.public),
        ed_jwk("ed", &ed.public),
    ]});
    let set = KeySet::parse(document.to_string().as_bytes(), JwksLimits::default()).unwrap();
    assert_eq!(set.len(), 4);
    let claims = json!({"sub": "x"});
    let ps = sign_with(Algorithm::PS256, &rsa_keys().encoding(), claims.clone());
    assert!(jwks_verifies(&set, "rsa-ps", &ps));
    // The same RSA key under an RS384 kid does not accept a PS256 token.
    assert!(!jwks_verifies(&set, "rsa-rs", &ps));
    let rs = sign_with(Algorithm::RS384, &rsa_keys().encoding(), claims.clone());
    assert!(jwks_verifies(&set, "rsa-rs", &rs));
    let es = sign_with(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(ec.private.as_bytes()).unwrap(),
        claims.clone(),
    );
    assert!(jwks_verifies(&set, "ec", &es));
    assert!(!jwks_verifies(&set, "ed", &es));
    let eddsa = sign_with(
        Algorithm::EdDSA,
        &EncodingKey::from_ed_pem(ed.private.as_bytes()).unwrap(),
        claims,
    );
    assert!(jwks_verifies(&set, "ed", &eddsa));
}

#[test]
fn jwks_skips_keys_it_cannot_use_safely() {
    let ec = rcgen_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let mut wrong_alg = p256_jwk("ec-as-es384", &ec.public);
    wrong_alg["alg"] = json!("ES384");
    let mut encryption = p256_jwk("enc", &ec.public);
    encryption["use"] = json!("enc");
    let mut first = p256_jwk("dup", &ec.public);
    first["alg"] = json!("ES256");
    let document = json!({"keys": [
        {"kty": "oct", "kid": "hmac", "k": b64(b"secret"), "alg": "HS256"},
        rsa_jwk("rsa-without-alg", None),
        rsa_jwk("rsa-none", Some("none")),
        wrong_alg,
        encryption,
        p256_jwk("", &ec.public),
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "EC", "kid": "bad-point", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "EC", "kid": "secp256k1", "crv": "secp256k1", "x": "AA", "y": "AA"},
        "not an object",
        first,
        {"kty": "OKP", "kid": "dup", "crv": "Ed25519", "x": b64(&[0; 32])},
    ]});
    let set = KeySet::parse(document.to_string().as_bytes(), JwksLimits::default()).unwrap();
    // Only the P-256 key with an empty kid and the first "dup" remain.
    assert_eq!(set.len(), 2, "{set:?}");
    assert_eq!(set.get("dup").unwrap().algorithm(), JwtAlgorithm::ES256);
    assert!(set.get("").is_some());
    assert!(set.get("hmac").is_none());
}

#[test]
fn jwks_documents_are_bounded() {
    let limits = JwksLimits {
        max_bytes: 1024,
        max_keys: 2,
    };
    let huge = format!(r#"{{"keys": [], "pad": "{}"}}"#, "x".repeat(2000));
    assert_eq!(
        KeySet::parse(huge.as_bytes(), limits).unwrap_err(),
        JwksError::TooLarge { limit: 1024 }
    );
    let many = json!({"keys": [{}, {}, {}]}).to_string();
    assert_eq!(
        KeySet::parse(many.as_bytes(), limits).unwrap_err(),
        JwksError::TooManyKeys { limit: 2 }
    );
    for malformed in [
        "",
        "[]",
        r#"{"keys": {}}"#,
        "{\"keys\": [",
        r#"{"nokeys": []}"#,
    ] {
        assert!(matches!(
            KeySet::parse(malformed.as_bytes(), limits),
            Err(JwksError::Malformed(_))
        ));
    }
    assert!(KeySet::parse(br#"{"keys": []}"#, limits)
        .unwrap()
        .is_empty());
}

// --- jwks_uri: tokens verified by a key set ---------------------------------

/// A key set the tests control: `serve` sets what the next fetch returns,
/// `refreshed` "fetches" it (counted), `cached` reads what was fetched.
#[derive(Debug, Default)]
struct FakeKeySet {
    served: std::sync::Mutex<String>,
    held: std::sync::Mutex<Arc<KeySet>>,
    fetches: std::sync::atomic::AtomicUsize,
    sources: std::sync::Mutex<Vec<JwksSource>>,
}

impl FakeKeySet {
    fn serving(keys: Vec<Value>) -> Arc<FakeKeySet> {
        let fake = Arc::new(FakeKeySet::default());
        fake.serve(keys);
        fake
    }

    fn serve(&self, keys: Vec<Value>) {
        *self.served.lock().unwrap() = json!({ "keys": keys }).to_string();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl JwksKeys for FakeKeySet {
    fn cached(&self, kid: &str) -> Option<Arc<Verifier>> {
        self.held.lock().unwrap().get(kid).cloned()
    }

    fn refreshed<'a>(&'a self, kid: &'a str) -> JwksLookup<'a> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let served = self.served.lock().unwrap().clone();
        if let Ok(set) = KeySet::parse(served.as_bytes(), JwksLimits::default()) {
            *self.held.lock().unwrap() = Arc::new(set);
        }
        Box::pin(std::future::ready(self.cached(kid)))
    }
}

#[derive(Debug)]
struct FakeProvider(Arc<FakeKeySet>);

impl JwksProvider for FakeProvider {
    fn keys(&self, source: &JwksSource) -> Result<Arc<dyn JwksKeys>, String> {
        self.0.sources.lock().unwrap().push(source.clone());
        Ok(Arc::clone(&self.0) as Arc<dyn JwksKeys>)
    }
}

const JWKS_URI: &str = "https://idp.example/.well-known/jwks.json";

/// A jwt instance with `jwks_uri` over `keys`, in `config`.
fn jwks_plugin_in(config: &crate::Config, keys: &Arc<FakeKeySet>, plugin_config: Value) -> Jwt {
    let mut plugin_config = plugin_config;
    plugin_config["jwks_uri"] = json!(JWKS_URI);
    let resources = Resources::check_only().with_jwks(Arc::new(FakeProvider(Arc::clone(keys))));
    let consumers = Arc::new(ConsumerIndex::new(&config.consumers));
    compile_with(config, &consumers, &resources, plugin_config)
}

fn sign_kid(algorithm: Algorithm, kid: &str, key: &EncodingKey, claims: Value) -> String {
    let header = Header {
        kid: Some(kid.into()),
        ..Header::new(algorithm)
    };
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

/// Asserts a token passed with no consumer and no consumer headers.
#[track_caller]
fn assert_passed_without_consumer(outcome: &(Decision, RequestContext)) {
    let (decision, ctx) = outcome;
    assert!(matches!(decision, Decision::Continue), "{decision:?}");
    assert!(ctx.consumer.is_none() && ctx.credential.is_none());
    for name in consumer_headers::ALL {
        assert!(upstream_headers(ctx).get(&name).is_none(), "{name}");
    }
}

fn idp_claims() -> Value {
    json!({ "iss": "https://idp.example", "sub": "user-7", "exp": NOW + 60 })
}

#[test]
fn key_set_tokens_verify_with_rsa_ec_and_eddsa_keys() {
    let ec = rcgen_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let ed = rcgen_pair(&rcgen::PKCS_ED25519);
    let keys = FakeKeySet::serving(vec![
        rsa_jwk("rsa", Some("RS256")),
        p256_jwk("ec", &ec.public),
        ed_jwk("ed", &ed.public),
    ]);
    let config = base_config(vec![credential(10, CONSUMER, "key-1", "HS256", SECRET)]);
    let plugin = jwks_plugin_in(&config, &keys, json!({ "claims_to_verify": ["exp"] }));
    let tokens = [
        sign_kid(
            Algorithm::RS256,
            "rsa",
            &rsa_keys().encoding(),
            idp_claims(),
        ),
        sign_kid(
            Algorithm::ES256,
            "ec",
            &EncodingKey::from_ec_pem(ec.private.as_bytes()).unwrap(),
            idp_claims(),
        ),
        sign_kid(
            Algorithm::EdDSA,
            "ed",
            &EncodingKey::from_ed_pem(ed.private.as_bytes()).unwrap(),
            idp_claims(),
        ),
    ];
    for token in &tokens {
        assert_passed_without_consumer(&run_with_token(&plugin, token));
    }
    // The first unknown kid fetched the set once; the others were cached.
    assert_eq!(keys.fetches(), 1);
    // Claims are checked as for credentials' tokens.
    let expired = sign_kid(
        Algorithm::RS256,
        "rsa",
        &rsa_keys().encoding(),
        json!({ "iss": "https://idp.example", "exp": NOW - 1 }),
    );
    assert_401(
        &run_with_token(&plugin, &expired),
        json!({ "exp": "token expired" }),
        "Bearer error=\"invalid_token\"",
    );
    // Without claims_to_verify a token needs no claim at all, not even iss.
    let lenient = jwks_plugin_in(&config, &keys, json!({}));
    let bare = sign_kid(Algorithm::RS256, "rsa", &rsa_keys().encoding(), json!({}));
    assert_passed_without_consumer(&run_with_token(&lenient, &bare));
}

#[test]
fn the_key_fixes_the_algorithm_and_hmac_is_refused() {
    let ec = rcgen_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let keys = FakeKeySet::serving(vec![
        rsa_jwk("rsa", Some("RS256")),
        p256_jwk("ec", &ec.public),
    ]);
    let config = base_config(vec![]);
    let plugin = jwks_plugin_in(&config, &keys, json!({}));
    // An RSA signature under the EC key's kid, and PS256 under an RS256 key.
    let wrong_family = sign_kid(Algorithm::RS256, "ec", &rsa_keys().encoding(), idp_claims());
    assert_invalid(&run_with_token(&plugin, &wrong_family), "Invalid algorithm");
    let pss = sign_kid(
        Algorithm::PS256,
        "rsa",
        &rsa_keys().encoding(),
        idp_claims(),
    );
    assert_invalid(&run_with_token(&plugin, &pss), "Invalid algorithm");
    // HS256 "signed" with the public key text: refused before any fetch.
    let fetches = keys.fetches();
    let confused = sign_kid(
        Algorithm::HS256,
        "unknown-kid",
        &EncodingKey::from_secret(rsa_keys().public.as_bytes()),
        idp_claims(),
    );
    assert_invalid(&run_with_token(&plugin, &confused), "Invalid algorithm");
    assert_eq!(keys.fetches(), fetches);
    // Another key's signature under the right kid.
    let other = rcgen_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let forged = sign_kid(
        Algorithm::ES256,
        "ec",
        &EncodingKey::from_ec_pem(other.private.as_bytes()).unwrap(),
        idp_claims(),
    );
    assert_invalid(&run_with_token(&plugin, &forged), "Invalid signature");
}

#[test]
fn an_unknown_kid_refreshes_the_set_and_a_rotated_key_is_picked_up() {
    let ec = rcgen_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let keys = FakeKeySet::serving(vec![p256_jwk("old", &ec.public)]);
    let plugin = jwks_plugin_in(&base_config(vec![]), &keys, json!({}));
    let signing = EncodingKey::from_ec_pem(ec.private.as_bytes()).unwrap();
    let old = sign_kid(Algorithm::ES256, "old", &signing, idp_claims());
    assert_passed_without_consumer(&run_with_token(&plugin, &old));
    let new = sign_kid(Algorithm::ES256, "new", &signing, idp_claims());
    assert_invalid(&run_with_token(&plugin, &new), UNKNOWN_KID);
    assert_eq!(keys.fetches(), 2);
    keys.serve(vec![p256_jwk("new", &ec.public)]);
    assert_passed_without_consumer(&run_with_token(&plugin, &new));
    assert_eq!(keys.fetches(), 3);
    // The rotated-out key is gone with the set that held it.
    assert_invalid(&run_with_token(&plugin, &old), UNKNOWN_KID);
}

#[test]
fn the_key_claim_maps_a_key_set_token_to_a_credentials_consumer() {
    let keys = FakeKeySet::serving(vec![rsa_jwk("rsa", Some("RS256"))]);
    // An HS256 credential whose key is the issuer: only a mapping to alice.
    let config = base_config(vec![
        credential(10, CONSUMER, "https://idp.example", "HS256", SECRET),
        credential(11, 77, "https://orphan.example", "HS256", SECRET),
    ]);
    let plugin = jwks_plugin_in(&config, &keys, json!({}));
    let token = sign_kid(
        Algorithm::RS256,
        "rsa",
        &rsa_keys().encoding(),
        idp_claims(),
    );
    let outcome = run_with_token(&plugin, &token);
    assert_authenticated(&outcome, "alice");
    assert_eq!(
        upstream_headers(&outcome.1)[consumer_headers::CREDENTIAL_IDENTIFIER],
        "https://idp.example"
    );
    // The credential's consumer is not in the config: Kong's message.
    let orphan = sign_kid(
        Algorithm::RS256,
        "rsa",
        &rsa_keys().encoding(),
        json!({ "iss": "https://orphan.example" }),
    );
    assert_invalid(
        &run_with_token(&plugin, &orphan),
        "Could not find consumer for 'iss=https://orphan.example'",
    );
    // A token the mapping credential itself signed (its algorithm, with a
    // kid) still follows Kong's path: HS256 tokens with a kid keep working.
    let hs = sign_kid(
        Algorithm::HS256,
        "any",
        &EncodingKey::from_secret(SECRET.as_bytes()),
        json!({ "iss": "https://idp.example" }),
    );
    assert_authenticated(&run_with_token(&plugin, &hs), "alice");
}

#[test]
fn a_key_set_token_without_a_consumer_gets_the_anonymous_one() {
    let keys = FakeKeySet::serving(vec![rsa_jwk("rsa", Some("RS256"))]);
    let config = base_config(vec![]);
    let plugin = jwks_plugin_in(&config, &keys, json!({ "anonymous": "guest" }));
    let token = sign_kid(
        Algorithm::RS256,
        "rsa",
        &rsa_keys().encoding(),
        idp_claims(),
    );
    let (decision, ctx) = run(
        &plugin,
        request(
            "GET",
            "/",
            &[
                ("authorization", &bearer(&token)),
                ("x-consumer-username", "admin"),
            ],
        ),
    );
    assert!(matches!(decision, Decision::Continue));
    assert_eq!(
        ctx.consumer.as_ref().unwrap().username.as_deref(),
        Some("guest")
    );
    assert!(ctx.credential.is_none());
    assert_eq!(
        upstream_headers(&ctx)[consumer_headers::CONSUMER_USERNAME],
        "guest"
    );
    assert_eq!(upstream_headers(&ctx)[consumer_headers::ANONYMOUS], "true");
}

#[test]
fn without_jwks_uri_a_kid_changes_nothing() {
    let plugin = hs256_plugin(json!({}));
    let rsa = sign_kid(
        Algorithm::RS256,
        "rsa",
        &rsa_keys().encoding(),
        idp_claims(),
    );
    assert_invalid(
        &run_with_token(&plugin, &rsa),
        "No credentials found for given 'iss'",
    );
    // With jwks_uri, a token without a kid follows Kong's path too.
    let keys = FakeKeySet::serving(vec![rsa_jwk("rsa", Some("RS256"))]);
    let with_jwks = jwks_plugin_in(&base_config(vec![]), &keys, json!({}));
    let no_kid = sign_with(Algorithm::RS256, &rsa_keys().encoding(), idp_claims());
    assert_invalid(
        &run_with_token(&with_jwks, &no_kid),
        "No credentials found for given 'iss'",
    );
    assert_eq!(keys.fetches(), 0);
}

#[test]
fn compile_names_the_source_with_its_interval_and_bounds() {
    let keys = Arc::new(FakeKeySet::default());
    let config = base_config(vec![]);
    jwks_plugin_in(&config, &keys, json!({ "jwks_refresh_interval": 5 }));
    jwks_plugin_in(&config, &keys, json!({}));
    let sources = keys.sources.lock().unwrap();
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0].endpoint.host, "idp.example");
    assert_eq!(sources[0].endpoint.port, 443);
    assert_eq!(sources[0].endpoint.path_and_query, "/.well-known/jwks.json");
    assert_eq!(
        sources[0].refresh_interval,
        std::time::Duration::from_secs(5)
    );
    assert_eq!(
        sources[1].refresh_interval,
        std::time::Duration::from_secs(jwks::DEFAULT_REFRESH_INTERVAL)
    );
    assert_eq!(sources[0].limits, JwksLimits::default());
}

#[test]
fn jwks_uris_must_be_https_or_loopback_http() {
    for good in [
        "https://idp.example/jwks",
        "https://idp.example:8443/keys?tenant=a",
        "http://127.0.0.1:8080/jwks",
        "http://localhost/jwks",
        "http://[::1]:9000/",
    ] {
        assert!(JwksEndpoint::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "http://idp.example/jwks",
        "http://10.0.0.1/jwks",
        "ftp://idp.example/jwks",
        "https://user:pass@idp.example/jwks",
        "https://idp.example/jwks#frag",
        "/relative",
        "idp.example/jwks",
        "",
    ] {
        assert!(JwksEndpoint::parse(bad).is_err(), "{bad}");
    }
    let endpoint = JwksEndpoint::parse("http://[::1]:9000/k?token=secret").unwrap();
    assert_eq!(endpoint.host, "::1");
    assert_eq!(endpoint.display(), "http://[::1]:9000/k");
    assert_eq!(
        JwksEndpoint::parse("https://idp.example")
            .unwrap()
            .path_and_query,
        "/"
    );
}

#[test]
fn jwt_instances_of_one_compile_share_one_credential_index() {
    let config = base_config(vec![credential(10, CONSUMER, "key-1", "HS256", SECRET)]);
    let consumers = Arc::new(ConsumerIndex::new(&config.consumers));
    let resources = Resources::check_only();
    let a = compile_with(&config, &consumers, &resources, json!({}));
    let b = compile_with(&config, &consumers, &resources, json!({ "realm": "b" }));
    assert!(Arc::ptr_eq(&a.0.credentials, &b.0.credentials));
    // Keys read as base64 are another index, shared in turn.
    let c = compile_with(
        &config,
        &consumers,
        &resources,
        json!({ "secret_is_base64": true }),
    );
    let d = compile_with(
        &config,
        &consumers,
        &resources,
        json!({ "secret_is_base64": true }),
    );
    assert!(!Arc::ptr_eq(&a.0.credentials, &c.0.credentials));
    assert!(Arc::ptr_eq(&c.0.credentials, &d.0.credentials));
    // Another compile builds its own.
    let other = compile_in(&config, json!({}));
    assert!(!Arc::ptr_eq(&a.0.credentials, &other.0.credentials));
    assert_authenticated(&run_with_token(&b, &hs256(valid_claims())), "alice");
}

// --- the verified-token cache (verified.rs) --------------------------------

#[test]
fn a_remembered_token_is_judged_against_the_clock_again() {
    let plugin = hs256_plugin(json!({ "claims_to_verify": ["exp", "nbf"] }));
    let token = hs256(json!({"iss": "key-1", "exp": NOW + 60, "nbf": NOW - 5}));
    let at = |now: i64| {
        let mut ctx = request("GET", "/", &[("authorization", &bearer(&token))]);
        let decision = ready(plugin.0.access_at(&mut ctx, now));
        (decision, ctx)
    };
    assert_authenticated(&at(NOW), "alice");
    assert_eq!(plugin.0.verified.len(), 1, "a verified token is remembered");
    // Served from the cache: the same consumer and headers.
    assert_authenticated(&at(NOW + 1), "alice");
    assert_401(
        &at(NOW + 60),
        json!({"exp": "token expired"}),
        "Bearer error=\"invalid_token\"",
    );
    assert_401(
        &at(NOW - 10),
        json!({"nbf": "token not valid yet"}),
        "Bearer error=\"invalid_token\"",
    );
    assert_authenticated(&at(NOW + 2), "alice");
}

#[test]
fn failures_are_not_remembered_and_a_tampered_token_is_not_a_hit() {
    let plugin = hs256_plugin(json!({ "claims_to_verify": ["exp"] }));
    let token = hs256(valid_claims());
    assert_authenticated(&run_with_token(&plugin, &token), "alice");
    // The same header and claims with another signature: a different key.
    let (signed, _) = token.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([0u8; 32]));
    assert_invalid(&run_with_token(&plugin, &forged), "Invalid signature");
    assert_invalid(&run_with_token(&plugin, &forged), "Invalid signature");
    assert_eq!(plugin.0.verified.len(), 1);
    assert_authenticated(&run_with_token(&plugin, &token), "alice");
}
