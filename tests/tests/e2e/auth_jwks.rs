//! End-to-end: the jwt plugin's `jwks_uri` through a real data plane and a
//! key server run by the test (HTTP on 127.0.0.1, which the schema allows
//! for loopback only). RS256, ES256 and EdDSA tokens signed here with keys
//! made here; the server rotates keys, goes down, serves a document over the
//! size limit and one with too many keys, and counts the requests it gets,
//! so the refresh rules are checked where they matter: at the key server.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tollgate_data_plane::Settings;
use tollgate_shared::Config;
use tollgate_tests::cluster::wait_until;
use tollgate_tests::dataplane::{self, get_with, send, uuid, ConfigBuilder, Reply, Scope};
use tollgate_tests::echo;

const ISSUER: &str = "https://idp.test";
const MAPPED: u128 = 20;
const REFRESH_INTERVAL: u64 = 1;

/// A signing key and its public JWK (without `kid`).
struct SigningKey {
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    fn rsa() -> SigningKey {
        let private = openssl_rsa_key();
        let encoding = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256).unwrap();
        SigningKey {
            algorithm: Algorithm::RS256,
            encoding,
            jwk: serde_json::to_value(jwk).unwrap(),
        }
    }

    fn p256() -> SigningKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let encoding = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
        SigningKey {
            algorithm: Algorithm::ES256,
            encoding,
            jwk: serde_json::to_value(jwk).unwrap(),
        }
    }

    fn ed25519() -> SigningKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let encoding = EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap();
        SigningKey {
            algorithm: Algorithm::EdDSA,
            encoding,
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw()),
            }),
        }
    }

    /// The JWK as published under `kid`.
    fn published(&self, kid: &str) -> Value {
        let mut jwk = self.jwk.clone();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk
    }

    /// A token with `kid` in its header, valid for an hour.
    fn token(&self, kid: &str, issuer: &str) -> String {
        let header = Header {
            kid: Some(kid.into()),
            ..Header::new(self.algorithm)
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({ "iss": issuer, "sub": "user-7", "exp": now + 3600 });
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

fn openssl_rsa_key() -> String {
    let output = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("the RSA keys of this test need the openssl command");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

fn document(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// What the key server does with a request.
#[derive(Debug, Clone)]
enum Answer {
    Document(String),
    /// Closes the connection without answering.
    Down,
}

/// A JWKS endpoint on 127.0.0.1 that counts what it is asked.
struct KeyServer {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    /// Requests (complete heads) received, answered or not.
    requests: Arc<AtomicUsize>,
    /// When the last request arrived.
    last_request: Arc<Mutex<Option<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl KeyServer {
    async fn start(document: String) -> KeyServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(Answer::Document(document)));
        let requests = Arc::new(AtomicUsize::new(0));
        let last_request = Arc::new(Mutex::new(None));
        let (served, counted, stamped) = (
            Arc::clone(&answer),
            Arc::clone(&requests),
            Arc::clone(&last_request),
        );
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (answer, requests, last_request) = (
                    Arc::clone(&served),
                    Arc::clone(&counted),
                    Arc::clone(&stamped),
                );
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    *last_request.lock().unwrap() = Some(Instant::now());
                    requests.fetch_add(1, Ordering::SeqCst);
                    let answer = answer.lock().unwrap().clone();
                    if let Answer::Document(body) = answer {
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(reply.as_bytes()).await;
                        let _ = stream.write_all(body.as_bytes()).await;
                    }
                });
            }
        });
        KeyServer {
            addr,
            answer,
            requests,
            last_request,
            task,
        }
    }

    fn serve(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Waits until no request came for one refresh interval, so the next
    /// one is due.
    async fn quiet_for_an_interval(&self) {
        let interval = std::time::Duration::from_secs(REFRESH_INTERVAL);
        wait_until("a quiet refresh interval", || async {
            let last = *self.last_request.lock().unwrap();
            Ok(last.is_none_or(|at| at.elapsed() >= interval).then_some(()))
        })
        .await
        .unwrap();
    }
}

/// `/idp` verifies tokens with the server's keys; issuer `ISSUER` maps to
/// consumer `idp-users` through an HS256 credential with that key.
async fn config(server: &KeyServer) -> Config {
    let upstream = echo::spawn().await.unwrap();
    let mut config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(10, Some(1), &["/idp"], json!({}))
        .consumer(MAPPED, "idp-users")
        .plugin(
            30,
            "jwt",
            json!({
                "jwks_uri": format!("http://{}/.well-known/jwks.json", server.addr),
                "jwks_refresh_interval": REFRESH_INTERVAL,
                "claims_to_verify": ["exp"],
            }),
            Scope::route(10),
        )
        .build()
        .unwrap();
    config.jwt_secrets = vec![serde_json::from_value(json!({
        "id": uuid(40), "created_at": 1, "consumer": {"id": uuid(MAPPED)}, "key": ISSUER,
        "secret": "only-a-mapping", "rsa_public_key": null, "algorithm": "HS256", "tags": null
    }))
    .unwrap()];
    config
}

async fn call(proxy: SocketAddr, token: &str) -> Reply {
    let authorization = format!("Bearer {token}");
    send(
        proxy,
        get_with("/idp", &[("authorization", &authorization)]).unwrap(),
    )
    .await
    .unwrap()
}

#[track_caller]
fn assert_unknown_kid(reply: &Reply) {
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"message": "No credentials found for given 'kid'"})
    );
    assert_eq!(
        reply.header("www-authenticate"),
        "Bearer error=\"invalid_token\""
    );
}

/// Sends `token` until it gets `status` (the next allowed refresh may be up
/// to one interval away).
async fn until_status(proxy: SocketAddr, token: &str, status: u16) -> Reply {
    wait_until(&format!("a {status} for the token"), || async {
        let reply = call(proxy, token).await;
        Ok((reply.status == status).then_some(reply))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_with_the_key_set() {
    let (rsa, ec, ed) = (SigningKey::rsa(), SigningKey::p256(), SigningKey::ed25519());
    let server = KeyServer::start(document(&[
        rsa.published("rsa-1"),
        ec.published("ec-1"),
        ed.published("ed-1"),
    ]))
    .await;
    let dp = dataplane::start(Settings::loopback(), &config(&server).await)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    // The data plane fetched the set when the config was compiled.
    wait_until("the compile-time fetch", || async {
        Ok((server.requests() >= 1).then_some(()))
    })
    .await
    .unwrap();

    for (key, kid) in [(&rsa, "rsa-1"), (&ec, "ec-1"), (&ed, "ed-1")] {
        // The issuer maps to the credential's consumer.
        let reply = until_status(proxy, &key.token(kid, ISSUER), 200).await;
        assert_eq!(reply.upstream_header("x-consumer-username"), "idp-users");
        assert_eq!(reply.upstream_header("x-consumer-id"), uuid(MAPPED));
        assert_eq!(reply.upstream_header("x-credential-identifier"), ISSUER);
        // Another issuer: verified, but no consumer.
        let reply = call(proxy, &key.token(kid, "https://other.test")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.upstream_header("x-consumer-username"), "");
        assert_eq!(reply.upstream_header("x-consumer-id"), "");
    }
    // The right kid with a key of the wrong family, and another key's
    // signature under a known kid.
    let reply = call(proxy, &rsa.token("ec-1", ISSUER)).await;
    assert_eq!(reply.json(), json!({"message": "Invalid algorithm"}));
    let stranger = SigningKey::p256();
    let reply = call(proxy, &stranger.token("ec-1", ISSUER)).await;
    assert_eq!(reply.json(), json!({"message": "Invalid signature"}));
    // HS256 under a key set kid is refused without asking the server.
    let before = server.requests();
    let hs = jsonwebtoken::encode(
        &Header {
            kid: Some("rsa-1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &json!({"iss": "https://other.test"}),
        &EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    let reply = call(proxy, &hs).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json(), json!({"message": "Invalid algorithm"}));
    assert!(
        server.requests() <= before + 1,
        "at most a background refresh"
    );

    // The source's health on /metrics: the keys held, a success, no failure.
    let metrics = dataplane::get(dp.status_addr(), "/metrics")
        .await
        .unwrap()
        .text();
    let source = format!(
        r#"{{jwks_uri="http://{}/.well-known/jwks.json"}}"#,
        server.addr
    );
    for line in [
        format!("tollgate_jwks_keys{source} 3\n"),
        format!("tollgate_jwks_fetch_failures_total{source} 0\n"),
    ] {
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last_success: f64 = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(&format!(
                "tollgate_jwks_last_success_timestamp_seconds{source} "
            ))
        })
        .unwrap_or_else(|| panic!("no last success in {metrics}"))
        .parse()
        .unwrap();
    assert!(
        last_success <= now && last_success > now - 120.0,
        "{last_success} {now}"
    );
    dp.shutdown().await;
    server.task.abort();
}

#[tokio::test]
async fn rotation_outages_and_oversized_documents() {
    let (old, new, third) = (SigningKey::rsa(), SigningKey::p256(), SigningKey::ed25519());
    let server = KeyServer::start(document(&[old.published("old")])).await;
    let dp = dataplane::start(Settings::loopback(), &config(&server).await)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    until_status(proxy, &old.token("old", ISSUER), 200).await;

    // Unknown kids do not hammer the server: at most one fetch per interval.
    let garbage = old.token("no-such-kid", ISSUER);
    let before = server.requests();
    let started = Instant::now();
    let mut answered = Vec::new();
    for _ in 0..30 {
        answered.push(call(proxy, &garbage).await);
    }
    let intervals = started.elapsed().as_secs() / REFRESH_INTERVAL + 1;
    for reply in &answered {
        assert_unknown_kid(reply);
    }
    let fetched = server.requests() - before;
    assert!(
        fetched as u64 <= intervals,
        "{fetched} fetches for 30 unknown kids in {intervals} interval(s)"
    );

    // Rotation, with a fetch due: 20 concurrent requests for the new kid
    // share one fetch (those arriving while it runs wait for it) and all
    // pass; the retired kid stops verifying.
    server.quiet_for_an_interval().await;
    server.serve(Answer::Document(document(&[new.published("new")])));
    let before = server.requests();
    let started = Instant::now();
    let burst: Vec<_> = (0..20)
        .map(|_| {
            let token = new.token("new", ISSUER);
            tokio::spawn(async move { call(proxy, &token).await })
        })
        .collect();
    for request in burst {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.upstream_header("x-consumer-username"), "idp-users");
    }
    let intervals = started.elapsed().as_secs() / REFRESH_INTERVAL + 1;
    let fetched = server.requests() - before;
    assert!(
        (1..=intervals as usize).contains(&fetched),
        "{fetched} fetches for a burst of 20 in {intervals} interval(s)"
    );
    assert_unknown_kid(&call(proxy, &old.token("old", ISSUER)).await);

    // The server goes down: once a refresh has failed, the held key still
    // verifies.
    server.serve(Answer::Down);
    let down_since = server.requests();
    let unknown = new.token("unknown-during-outage", ISSUER);
    wait_until("a refresh attempt during the outage", || async {
        call(proxy, &unknown).await;
        Ok((server.requests() > down_since).then_some(()))
    })
    .await
    .unwrap();
    let reply = call(proxy, &new.token("new", ISSUER)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // A document over the size limit (256 KiB) is refused as a whole, even
    // with a valid new key in it; the held key keeps verifying.
    let mut padded = new.published("new");
    padded["padding"] = json!("x".repeat(300 * 1024));
    let huge = document(&[third.published("third"), padded]);
    server.serve(Answer::Document(huge));
    refused_document_keeps_the_held_key(&server, proxy, &new, &third).await;

    // So is a document with more keys than the limit (100).
    let mut many: Vec<Value> = (0..100)
        .map(|i| new.published(&format!("filler-{i}")))
        .collect();
    many.push(third.published("third"));
    server.serve(Answer::Document(document(&many)));
    refused_document_keeps_the_held_key(&server, proxy, &new, &third).await;

    // Back to a good document: the third key is picked up.
    server.serve(Answer::Document(document(&[third.published("third")])));
    until_status(proxy, &third.token("third", ISSUER), 200).await;

    // The server is gone for good: the held key still verifies.
    server.task.abort();
    let reply = call(proxy, &third.token("third", ISSUER)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    dp.shutdown().await;
}

/// Waits until the server answered its current (refused) document at least
/// once more, then checks that its new key is not used and the held one is.
async fn refused_document_keeps_the_held_key(
    server: &KeyServer,
    proxy: SocketAddr,
    held: &SigningKey,
    refused: &SigningKey,
) {
    let since = server.requests();
    let token = refused.token("third", ISSUER);
    wait_until("a fetch of the refused document", || async {
        let reply = call(proxy, &token).await;
        assert_ne!(reply.status, 200, "a key of a refused document was used");
        Ok((server.requests() > since).then_some(()))
    })
    .await
    .unwrap();
    // The fetch that was just counted has ended once a request that
    // joins or follows it answers.
    assert_unknown_kid(&call(proxy, &token).await);
    let reply = call(proxy, &held.token("new", ISSUER)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}
