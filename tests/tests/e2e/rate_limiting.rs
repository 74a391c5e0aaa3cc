//! End-to-end: the rate-limiting plugin through in-process data planes: the
//! `local` policy (limit N allows N, every header, the 429, hidden headers,
//! counters that survive a config swap, per-consumer limits, window
//! rollover) and the `redis` policy against the real Redis at `REDIS_URL`
//! (one limit shared exactly by three data planes, sliding windows,
//! `sync_rate` batching) and against private `redis-server` processes
//! (stopped, paused with SIGSTOP, credentials) for each failure setting.

use serde_json::{json, Value};
use std::net::SocketAddr;
use tollgate_data_plane::Settings;
use tollgate_tests::dataplane::{self, get_with, send, ConfigBuilder, Reply, Scope};
use tollgate_tests::echo;

const ROUTE: u128 = 10;
const SERVICE: u128 = 1;

/// A route `/rl` with one rate-limiting instance on it.
fn builder(upstream: SocketAddr, plugin_id: u128, plugin: Value) -> ConfigBuilder {
    ConfigBuilder::new()
        .service(SERVICE, upstream, json!({}))
        .route(ROUTE, Some(SERVICE), &["/rl"], json!({}))
        .plugin(
            plugin_id,
            "rate-limiting",
            plugin,
            Scope {
                route: Some(ROUTE),
                ..Scope::default()
            },
        )
}

fn config(upstream: SocketAddr, plugin_id: u128, plugin: Value) -> tollgate_shared::Config {
    builder(upstream, plugin_id, plugin).build().unwrap()
}

/// A client identity no earlier run used, so Redis keys never collide.
fn fresh_client() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn call(proxy: SocketAddr, client: &str) -> Reply {
    send(proxy, get_with("/rl", &[("x-client", client)]).unwrap())
        .await
        .unwrap()
}

fn number(reply: &Reply, name: &str) -> i64 {
    reply
        .header(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number: {:?}", reply.header(name)))
}

#[tokio::test]
async fn local_limit_allows_exactly_n_with_kong_headers() {
    let upstream = echo::spawn().await.unwrap();
    // An hour window, so the test does not straddle a boundary in practice.
    let plugin = json!({"hour": 3, "limit_by": "header", "header_name": "x-client"});
    let dp = dataplane::start(Settings::loopback(), &config(upstream, 100, plugin))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let client = fresh_client();
    for expected_remaining in [2, 1, 0] {
        let reply = call(proxy, &client).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-ratelimit-limit-hour"), "3");
        assert_eq!(
            number(&reply, "x-ratelimit-remaining-hour"),
            expected_remaining
        );
        assert_eq!(reply.header("ratelimit-limit"), "3");
        assert_eq!(number(&reply, "ratelimit-remaining"), expected_remaining);
        let reset = number(&reply, "ratelimit-reset");
        assert!((1..=3600).contains(&reset), "{reset}");
        assert_eq!(reply.header("retry-after"), "");
    }
    let rejected = call(proxy, &client).await;
    assert_eq!(rejected.status, 429);
    assert_eq!(rejected.json()["message"], "API rate limit exceeded");
    assert!(rejected.json()["request_id"].is_string());
    assert_eq!(rejected.header("x-ratelimit-limit-hour"), "3");
    assert_eq!(rejected.header("x-ratelimit-remaining-hour"), "0");
    assert_eq!(rejected.header("ratelimit-remaining"), "0");
    let reset = number(&rejected, "ratelimit-reset");
    assert!((1..=3600).contains(&reset));
    assert_eq!(number(&rejected, "retry-after"), reset);
    // Rejected requests are not counted, and another client has its own count.
    assert_eq!(call(proxy, &client).await.status, 429);
    let other = call(proxy, &fresh_client()).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("x-ratelimit-remaining-hour"), "2");
    dp.shutdown().await;
}

#[tokio::test]
async fn custom_rejection_and_hidden_headers() {
    let upstream = echo::spawn().await.unwrap();
    let plugin = json!({
        "day": 1, "limit_by": "header", "header_name": "x-client",
        "hide_client_headers": true, "error_code": 503, "error_message": "slow down",
    });
    let dp = dataplane::start(Settings::loopback(), &config(upstream, 100, plugin))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let client = fresh_client();
    let allowed = call(proxy, &client).await;
    assert_eq!(allowed.status, 200);
    let rejected = call(proxy, &client).await;
    assert_eq!(rejected.status, 503);
    assert_eq!(rejected.json()["message"], "slow down");
    for reply in [&allowed, &rejected] {
        for name in [
            "x-ratelimit-limit-day",
            "x-ratelimit-remaining-day",
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
            "retry-after",
        ] {
            assert_eq!(reply.header(name), "", "{name}");
        }
    }
    dp.shutdown().await;
}

#[tokio::test]
async fn local_counters_survive_a_config_swap() {
    let upstream = echo::spawn().await.unwrap();
    let plugin = json!({"hour": 3, "limit_by": "header", "header_name": "x-client"});
    let dp = dataplane::start(Settings::loopback(), &config(upstream, 100, plugin.clone()))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let client = fresh_client();
    assert_eq!(call(proxy, &client).await.status, 200);
    assert_eq!(call(proxy, &client).await.status, 200);
    // A new config: another plugin entity (same scope) and an extra route.
    let swapped = builder(upstream, 101, plugin)
        .route(11, Some(SERVICE), &["/other"], json!({}))
        .build()
        .unwrap();
    dp.gateway().apply_local(&swapped).unwrap();
    let third = call(proxy, &client).await;
    assert_eq!(third.status, 200);
    assert_eq!(third.header("x-ratelimit-remaining-hour"), "0");
    assert_eq!(call(proxy, &client).await.status, 429);
    dp.shutdown().await;
}

/// `(host, port)` of the Redis the suite runs against.
fn redis_address() -> (String, u16) {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rest = url.trim_start_matches("redis://");
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    match authority.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.parse().unwrap_or(6379)),
        None => (authority.to_string(), 6379),
    }
}

fn redis_plugin(limit: u32, host: &str, port: u16, extra: Value) -> Value {
    let mut plugin = json!({
        "hour": limit, "limit_by": "header", "header_name": "x-client",
        "policy": "redis", "redis": {"host": host, "port": port, "timeout": 500},
    });
    dataplane::merge(&mut plugin, extra);
    plugin
}

#[tokio::test]
async fn three_data_planes_share_one_redis_limit_exactly() {
    let upstream = echo::spawn().await.unwrap();
    let (host, port) = redis_address();
    // The seed guide's legacy flat fields name the server.
    let plugin = json!({
        "hour": 30, "limit_by": "header", "header_name": "x-client",
        "policy": "redis", "redis_host": host, "redis_port": port,
    });
    let shared = config(upstream, 100, plugin);
    let mut planes = Vec::new();
    for _ in 0..3 {
        planes.push(
            dataplane::start(Settings::loopback(), &shared)
                .await
                .unwrap(),
        );
    }
    let proxies: Vec<SocketAddr> = planes.iter().map(|dp| dp.proxy_addrs()[0]).collect();
    let client = fresh_client();
    // 40 requests spread over the three planes, 8 at a time.
    let mut statuses = Vec::new();
    for batch in 0..5 {
        let calls = (0..8).map(|i| {
            let proxy = proxies[(batch * 8 + i) % 3];
            let client = client.clone();
            tokio::spawn(async move { call(proxy, &client).await })
        });
        for reply in futures_join(calls).await {
            if reply.status == 200 {
                let remaining = number(&reply, "x-ratelimit-remaining-hour");
                assert!((0..30).contains(&remaining));
            }
            statuses.push(reply.status.as_u16());
        }
    }
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    let rejected = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((allowed, rejected), (30, 10), "{statuses:?}");
    for dp in planes {
        dp.shutdown().await;
    }
}

async fn futures_join(handles: impl Iterator<Item = tokio::task::JoinHandle<Reply>>) -> Vec<Reply> {
    let mut replies = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        replies.push(handle.await.unwrap());
    }
    replies
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn unreachable_redis_follows_the_failure_setting() {
    let upstream = echo::spawn().await.unwrap();
    let port = closed_port().await;
    let cases = [
        // Kong's default: proxy without limiting and without headers.
        (json!({}), [200, 200, 200]),
        (json!({"fault_tolerant": false}), [500, 500, 500]),
        (
            json!({"redis": {"failure_mode": "fail_closed"}}),
            [500, 500, 500],
        ),
        (
            json!({"fault_tolerant": false, "redis": {"failure_mode": "fail_open"}}),
            [200, 200, 200],
        ),
        // Counting on the node until Redis answers.
        (json!({"redis": {"failure_mode": "local"}}), [200, 200, 429]),
    ];
    for (extra, expected) in cases {
        let plugin = redis_plugin(2, "127.0.0.1", port, extra.clone());
        let dp = dataplane::start(Settings::loopback(), &config(upstream, 100, plugin))
            .await
            .unwrap();
        let proxy = dp.proxy_addrs()[0];
        let client = fresh_client();
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let reply = call(proxy, &client).await;
            match reply.status.as_u16() {
                200 if expected[0] == 200 && expected[2] == 200 => {
                    assert_eq!(reply.header("x-ratelimit-limit-hour"), "", "{extra}");
                    assert_eq!(reply.header("ratelimit-remaining"), "", "{extra}");
                }
                500 => assert_eq!(reply.json()["message"], "An unexpected error occurred"),
                _ => {}
            }
            statuses.push(reply.status.as_u16());
        }
        assert_eq!(statuses, expected, "{extra}");
        dp.shutdown().await;
    }
}

#[tokio::test]
async fn redis_policy_with_sliding_windows_and_a_database() {
    let upstream = echo::spawn().await.unwrap();
    let (host, port) = redis_address();
    let plugin = redis_plugin(
        3,
        &host,
        port,
        json!({"algorithm": "sliding", "redis": {"database": 3}}),
    );
    let dp = dataplane::start(Settings::loopback(), &config(upstream, 100, plugin))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let client = fresh_client();
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..5 {
            out.push(call(proxy, &client).await.status.as_u16());
        }
        out
    };
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    dp.shutdown().await;
}

/// The name the data plane gives a counter in Redis: the plugin entity's
/// scope (its route; no service: a nil uuid), then the header identifier as
/// a digest, never as sent.
fn redis_key(client: &str, window_start: i64, period: &str) -> String {
    use sha2::Digest;
    let digest = hex::encode(&sha2::Sha256::digest(client.as_bytes())[..16]);
    let (route, service) = (dataplane::uuid(ROUTE), dataplane::uuid(0));
    format!("ratelimit:{route}:{service}:{digest}:{window_start}:{period}")
}

#[tokio::test]
async fn redis_counts_every_period_in_one_call_and_not_rejected_requests() {
    let upstream = echo::spawn().await.unwrap();
    let (host, port) = redis_address();
    let plugin = redis_plugin(2, &host, port, json!({"day": 5}));
    let dp = dataplane::start(Settings::loopback(), &config(upstream, 100, plugin))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let client = fresh_client();
    for (hour, day) in [(1, 4), (0, 3)] {
        let reply = call(proxy, &client).await;
        assert_eq!(reply.status, 200);
        assert_eq!(number(&reply, "x-ratelimit-remaining-hour"), hour);
        assert_eq!(number(&reply, "x-ratelimit-remaining-day"), day);
    }
    for _ in 0..2 {
        let rejected = call(proxy, &client).await;
        assert_eq!(rejected.status, 429);
        assert_eq!(rejected.header("x-ratelimit-remaining-hour"), "0");
        // The hour refused it, so the day did not count it either.
        assert_eq!(number(&rejected, "x-ratelimit-remaining-day"), 3);
    }
    // What Redis holds, read by another client: both counters at 2, each
    // expiring at the end of its window.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut redis = redis::Client::open(format!("redis://{host}:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    for (period, seconds) in [("hour", 3600), ("day", 86_400)] {
        let start = now - now.rem_euclid(seconds);
        let key = redis_key(&client, start * 1000, period);
        let count: i64 = redis::cmd("GET").arg(&key).query(&mut redis).unwrap();
        assert_eq!(count, 2, "{key}");
        let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut redis).unwrap();
        assert!((1..=seconds).contains(&ttl), "{key}: ttl {ttl}");
    }
    dp.shutdown().await;
}

/// A `redis-server` of this test's own, on a port nothing else uses, so it
/// can be stopped, paused and restarted without disturbing the suite's Redis.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    async fn start(port: u16) -> PrivateRedis {
        PrivateRedis::start_with(port, &[]).await
    }

    async fn start_with(port: u16, extra: &[&str]) -> PrivateRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (make services)");
        let redis = PrivateRedis { child, port };
        redis.wait_ready().await;
        redis
    }

    /// Waits for `PONG` (or, with a password set, for the refusal asking for it).
    async fn wait_ready(&self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                let mut answer = [0u8; 7];
                if stream.write_all(b"PING\r\n").await.is_ok()
                    && stream.read_exact(&mut answer).await.is_ok()
                    && (&answer == b"+PONG\r\n" || &answer == b"-NOAUTH")
                {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends requests until one carries rate-limit headers again (Redis is
/// answering and the breaker closed), returning it.
async fn until_limited(proxy: SocketAddr, client: &str) -> Reply {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = call(proxy, client).await;
        if !reply.header("x-ratelimit-limit-hour").is_empty() {
            return reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "limiting did not resume"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_stopped_mid_run_then_started_again() {
    let upstream = echo::spawn().await.unwrap();
    let port = closed_port().await;
    let redis = PrivateRedis::start(port).await;
    let plugin = redis_plugin(5, "127.0.0.1", port, json!({}));
    let dp = dataplane::start(Settings::loopback(), &config(upstream, 100, plugin))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let client = fresh_client();
    for expected in ["4", "3"] {
        let reply = call(proxy, &client).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-ratelimit-remaining-hour"), expected);
    }
    redis.stop();
    // Fault tolerant: proxied, unlimited, without headers.
    for _ in 0..3 {
        let reply = call(proxy, &client).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-ratelimit-limit-hour"), "");
    }
    // A new (empty) server on the same port: the next probe finds it.
    let _redis = PrivateRedis::start(port).await;
    let resumed = until_limited(proxy, &client).await;
    assert_eq!(resumed.status, 200);
    assert_eq!(resumed.header("x-ratelimit-remaining-hour"), "4");
    dp.shutdown().await;
}

#[tokio::test]
async fn redis_paused_is_slow_not_dead() {
    let upstream = echo::spawn().await.unwrap();
    let port = closed_port().await;
    let redis = PrivateRedis::start(port).await;
    let plugin = redis_plugin(
        5,
        "127.0.0.1",
        port,
        json!({"fault_tolerant": false, "redis": {"timeout": 200}}),
    );
    let dp = dataplane::start(Settings::loopback(), &config(upstream, 100, plugin))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let client = fresh_client();
    assert_eq!(call(proxy, &client).await.status, 200);
    redis.signal("-STOP");
    // The first request waits for the timeout; the open circuit answers
    // the next ones at once. Not fault tolerant: Kong's 500.
    for _ in 0..3 {
        let reply = call(proxy, &client).await;
        assert_eq!(reply.status, 500);
        assert_eq!(reply.json()["message"], "An unexpected error occurred");
    }
    redis.signal("-CONT");
    let resumed = until_limited(proxy, &client).await;
    assert_eq!(resumed.status, 200);
    let remaining = number(&resumed, "x-ratelimit-remaining-hour");
    // The paused server kept its count; a request queued while it was
    // stopped may have been counted when it woke up.
    assert!((2..=3).contains(&remaining), "{remaining}");
    dp.shutdown().await;
}

#[tokio::test]
async fn limits_per_consumer_and_consumer_scoped_instances() {
    let upstream = echo::spawn().await.unwrap();
    let (alice, bob) = (500, 501);
    let global = Scope::default();
    let config = ConfigBuilder::new()
        .service(SERVICE, upstream, json!({}))
        .route(ROUTE, Some(SERVICE), &["/rl"], json!({}))
        .consumer(alice, "alice")
        .consumer(bob, "bob")
        // Identifies the consumer named by `x-test-consumer`, before rate limiting runs.
        .plugin(200, "tollgate-test-fault", json!({}), global)
        .plugin(201, "rate-limiting", json!({"hour": 2}), global)
        .plugin(
            202,
            "rate-limiting",
            json!({"hour": 5}),
            Scope {
                consumer: Some(bob),
                ..Scope::default()
            },
        )
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let as_consumer = |name: &'static str| async move {
        let headers: &[(&str, &str)] = if name.is_empty() {
            &[]
        } else {
            &[("x-test-consumer", name)]
        };
        send(proxy, get_with("/rl", headers).unwrap())
            .await
            .unwrap()
    };
    let mut seen = Vec::new();
    for name in ["alice", "alice", "alice", "", "", "", "bob", "bob", "bob"] {
        let reply = as_consumer(name).await;
        seen.push((
            reply.status.as_u16(),
            reply.header("x-ratelimit-remaining-hour").to_string(),
        ));
    }
    let expected = [
        // alice: the global instance, counted by her consumer id.
        (200, "1"),
        (200, "0"),
        (429, "0"),
        // No consumer: the global instance falls back to the client address.
        (200, "1"),
        (200, "0"),
        (429, "0"),
        // bob: his own instance and limit.
        (200, "4"),
        (200, "3"),
        (200, "2"),
    ];
    let expected: Vec<(u16, String)> = expected
        .iter()
        .map(|(status, remaining)| (*status, remaining.to_string()))
        .collect();
    assert_eq!(seen, expected);
    dp.shutdown().await;
}

#[tokio::test]
async fn a_new_second_starts_a_new_window() {
    let upstream = echo::spawn().await.unwrap();
    let plugin = json!({"second": 2, "limit_by": "header", "header_name": "x-client"});
    let dp = dataplane::start(Settings::loopback(), &config(upstream, 100, plugin))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let client = fresh_client();
    // Start right after a second boundary so three requests share a window.
    let until_next_second = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        std::time::Duration::from_millis(1000 - u64::from(now.subsec_millis()) + 5)
    };
    tokio::time::sleep(until_next_second()).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(call(proxy, &client).await.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    tokio::time::sleep(until_next_second()).await;
    let next = call(proxy, &client).await;
    assert_eq!(next.status, 200);
    assert_eq!(next.header("x-ratelimit-remaining-second"), "1");
    dp.shutdown().await;
}

#[tokio::test]
async fn an_oversized_header_identifier_is_refused_before_counting() {
    let upstream = echo::spawn().await.unwrap();
    let plugin = json!({"hour": 5, "limit_by": "header", "header_name": "x-client"});
    let dp = dataplane::start(Settings::loopback(), &config(upstream, 100, plugin))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let huge = "a".repeat(100 * 1024);
    let reply = call(proxy, &huge).await;
    assert_eq!(reply.status, 431);
    assert_eq!(reply.header("x-ratelimit-limit-hour"), "");
    dp.shutdown().await;
}

#[tokio::test]
async fn sync_rate_counts_locally_and_shares_through_redis() {
    let upstream = echo::spawn().await.unwrap();
    let (host, port) = redis_address();
    let plugin = redis_plugin(5, &host, port, json!({"sync_rate": 0.05}));
    let shared = config(upstream, 100, plugin);
    let a = dataplane::start(Settings::loopback(), &shared)
        .await
        .unwrap();
    let b = dataplane::start(Settings::loopback(), &shared)
        .await
        .unwrap();
    let (proxy_a, proxy_b) = (a.proxy_addrs()[0], b.proxy_addrs()[0]);
    let client = fresh_client();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(call(proxy_a, &client).await.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    // Past the sync interval, a request on A syncs before it is answered.
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    assert_eq!(call(proxy_a, &client).await.status, 429);
    // B reads the shared count on its first request.
    let from_b = call(proxy_b, &client).await;
    assert_eq!(from_b.status, 429);
    assert_eq!(from_b.header("x-ratelimit-remaining-hour"), "0");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn redis_credentials_are_honoured() {
    let upstream = echo::spawn().await.unwrap();
    let port = closed_port().await;
    let _redis = PrivateRedis::start_with(
        port,
        &[
            "--requirepass",
            "s3cret",
            "--user",
            "limiter",
            "on",
            ">l1m",
            "+@all",
            "~*",
        ],
    )
    .await;
    let cases = [
        (json!({"password": "s3cret"}), 200, "4"),
        (json!({"username": "limiter", "password": "l1m"}), 200, "4"),
        // Refused credentials: Kong's 500 when not fault tolerant.
        (json!({"password": "wrong"}), 500, ""),
        (json!({}), 500, ""),
    ];
    for (credentials, status, remaining) in cases {
        let plugin = redis_plugin(
            5,
            "127.0.0.1",
            port,
            json!({"fault_tolerant": false, "redis": credentials.clone()}),
        );
        let dp = dataplane::start(Settings::loopback(), &config(upstream, 100, plugin))
            .await
            .unwrap();
        let reply = call(dp.proxy_addrs()[0], &fresh_client()).await;
        assert_eq!(reply.status, status, "{credentials}");
        assert_eq!(
            reply.header("x-ratelimit-remaining-hour"),
            remaining,
            "{credentials}"
        );
        dp.shutdown().await;
    }
}

/// `redis.ssl` against a private `redis-server` speaking TLS on one port
/// (plain TCP on another, for the readiness check): Kong's default
/// `ssl_verify: false` connects to a self-signed server and counts; with
/// verification on, the same server is refused (its certificate chains to no
/// trusted root); plain TCP to the TLS port fails too.
#[tokio::test]
async fn redis_over_tls_with_and_without_verification() {
    let upstream = echo::spawn().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["redis.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let plain = closed_port().await;
    let tls = closed_port().await;
    let _redis = PrivateRedis::start_with(
        plain,
        &[
            "--tls-port",
            &tls.to_string(),
            "--tls-cert-file",
            cert_path.to_str().unwrap(),
            "--tls-key-file",
            key_path.to_str().unwrap(),
            "--tls-auth-clients",
            "no",
        ],
    )
    .await;
    let cases = [
        (json!({"ssl": true}), 200, "4"),
        (
            json!({"ssl": true, "ssl_verify": false, "server_name": "redis.test"}),
            200,
            "4",
        ),
        (
            json!({"ssl": true, "ssl_verify": true, "server_name": "redis.test"}),
            500,
            "",
        ),
        (json!({"ssl": false}), 500, ""),
    ];
    for (tls_settings, status, remaining) in cases {
        let plugin = redis_plugin(
            5,
            "127.0.0.1",
            tls,
            json!({"fault_tolerant": false, "redis": tls_settings.clone()}),
        );
        let dp = dataplane::start(Settings::loopback(), &config(upstream, 100, plugin))
            .await
            .unwrap();
        let reply = call(dp.proxy_addrs()[0], &fresh_client()).await;
        assert_eq!(reply.status, status, "{tls_settings}");
        assert_eq!(
            reply.header("x-ratelimit-remaining-hour"),
            remaining,
            "{tls_settings}"
        );
        dp.shutdown().await;
    }
}

/// `redis.failure_mode: local` in a real cluster: while Redis does not
/// answer, each data plane enforces the limit divided by the data planes
/// the control plane reports connected (its heartbeats), and takes the whole
/// limit back when the other node leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_mode_local_enforces_each_nodes_share_of_the_cluster() {
    use tollgate_tests::cluster::{
        admin_write, wait_in_sync, wait_until, ControlPlaneProcess, DataPlaneOptions,
        DataPlaneProcess, Pki, TestDatabase,
    };
    let upstream = echo::spawn().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    let db = TestDatabase::create().await.unwrap();
    let cp = ControlPlaneProcess::start(&db.url, &pki, "127.0.0.1:0").unwrap();
    let options = |name: &str| DataPlaneOptions {
        control_plane: cp.cluster,
        certificate: "dp".into(),
        cache_dir: dir.path().join(format!("{name}-cache")),
        node_id: uuid::Uuid::new_v4().to_string(),
    };
    let first = DataPlaneProcess::start(&pki, &options("first")).unwrap();
    let mut second = DataPlaneProcess::start(&pki, &options("second")).unwrap();
    admin_write(
        cp.admin,
        "POST",
        "/services",
        json!({"name": "rl", "url": format!("http://{upstream}")}),
    )
    .await
    .unwrap();
    admin_write(
        cp.admin,
        "POST",
        "/services/rl/routes",
        json!({"paths": ["/rl"]}),
    )
    .await
    .unwrap();
    let dead_redis = closed_port().await;
    let version = admin_write(
        cp.admin,
        "POST",
        "/plugins",
        json!({"name": "rate-limiting", "config": redis_plugin(
            6, "127.0.0.1", dead_redis, json!({"redis": {"failure_mode": "local", "timeout": 200}}),
        )}),
    )
    .await
    .unwrap();
    for dp in [&first, &second] {
        wait_in_sync(cp.admin, &dp.node_id, version).await.unwrap();
    }
    // The limit header shows what this node enforces: 6 / 2 connected.
    let share = |proxy: SocketAddr| async move {
        let reply = call(proxy, &fresh_client()).await;
        Ok::<_, anyhow::Error>(reply.header("x-ratelimit-limit-hour").to_string())
    };
    wait_until("the first node to enforce half the limit", || async {
        Ok((share(first.proxy).await? == "3").then_some(()))
    })
    .await
    .unwrap();
    let client = fresh_client();
    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(call(first.proxy, &client).await.status.as_u16());
        }
        statuses
    };
    assert_eq!(statuses, [200, 200, 200, 429]);
    // The second node leaves: the first takes the whole limit back.
    second.process.kill();
    wait_until("the first node to enforce the whole limit", || async {
        Ok((share(first.proxy).await? == "6").then_some(()))
    })
    .await
    .unwrap();
}
