//! End-to-end: the `http-log` plugin against a local collector (a real HTTP
//! server in the test): Kong's record keys and request headers, batching
//! into JSON arrays, a collector that is down and comes back (entries
//! retried and delivered, across a config swap), one that answers 500
//! (retried, then dropped and counted), a black hole with a full queue (the
//! oldest dropped and counted while proxied requests keep completing),
//! userinfo turned into Basic authorization, HTTPS, the queue flushed by a
//! graceful shutdown, and the seed guide's
//! step 8 through a real control plane and data plane process.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use tollgate_data_plane::{DataPlane, Settings};
use tollgate_tests::collector::{Collector, Mode};
use tollgate_tests::dataplane::{self, get, get_with, send, ConfigBuilder, Scope};
use tollgate_tests::echo;

const ROUTE_OK: u128 = 10;
/// How long a test waits for entries to reach the collector.
const PATIENCE: Duration = Duration::from_secs(10);

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// The top-level keys of the record of a proxied request without a consumer
/// (the same as file-log's, kong-compat §7.1).
fn proxied_record_keys() -> BTreeSet<&'static str> {
    [
        "client_ip",
        "latencies",
        "request",
        "response",
        "route",
        "service",
        "source",
        "started_at",
        "tries",
        "upstream_status",
        "upstream_uri",
        "workspace",
        "workspace_name",
    ]
    .into_iter()
    .collect()
}

/// Service 1 at `upstream`, route `/ok`, and a global http-log with `config`.
async fn logged_data_plane(upstream: SocketAddr, config: Value) -> DataPlane {
    ConfigBuilder::routed(upstream, ROUTE_OK, &["/ok"])
        .plugin(20, "http-log", config, Scope::default())
        .start()
        .await
        .unwrap()
}

async fn http_log_status(dp: &DataPlane) -> Value {
    dataplane::status(dp).await.unwrap()["plugins"]["http_log"].clone()
}

/// Reads `/status` until `plugins.http_log.<counter>` reaches `at_least`.
async fn wait_for_counter(dp: &DataPlane, counter: &str, at_least: u64) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status = http_log_status(dp).await;
        if status[counter].as_u64().unwrap() >= at_least {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{counter} never reached {at_least}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn entries_arrive_with_kongs_record_keys_and_request_headers() {
    let collector = Collector::start().await.unwrap();
    let upstream = echo::spawn().await.unwrap();
    let dp = logged_data_plane(
        upstream,
        json!({"http_endpoint": collector.url("/kong-logs?index=gw"), "headers": {"X-Api-Key": "k-1"}}),
    )
    .await;
    let proxy = dp.proxy_addrs()[0];

    let reply = send(
        proxy,
        get_with("/ok/items?a=1", &[("authorization", "Bearer secret-token")]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let entries = collector.wait_for_entries(1, PATIENCE).await.unwrap();
    let record = &entries[0];
    assert_eq!(keys(record), proxied_record_keys());
    assert_eq!(
        record["request"]["id"],
        reply.header("x-tollgate-request-id")
    );
    assert_eq!(record["request"]["headers"]["authorization"], "REDACTED");
    assert_eq!(record["upstream_uri"], "/items?a=1");
    assert_eq!(record["response"]["status"], 200);
    assert_eq!(record["service"]["name"], "service-1");

    let request = &collector.received()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.uri, "/kong-logs?index=gw");
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(
        request.headers["content-length"],
        request.body.len().to_string()
    );
    assert_eq!(request.headers["x-api-key"], "k-1");
    assert!(
        request.body.starts_with(b"{"),
        "max_batch_size 1 sends the bare object"
    );
    assert!(request.headers.get("authorization").is_none());
    let counters = wait_for_counter(&dp, "sent", 1).await;
    assert_eq!(
        counters,
        json!({"sent": 1, "retried": 0, "dropped": 0, "queued": 0, "sending": 0, "queues": 1})
    );
    dp.shutdown().await;
}

/// Kong's deprecation warnings for `retry_count`, `queue_size` and
/// `flush_timeout`: once per instance and field for each config applied,
/// none per request, none for a field at its old default.
#[tokio::test]
async fn deprecated_fields_are_warned_about_once_per_config() {
    let logs = tollgate_tests::logs::capture(tracing::Level::WARN);
    let collector = Collector::start().await.unwrap();
    let upstream = echo::spawn().await.unwrap();
    let deprecated = json!({
        "http_endpoint": collector.url("/logs"),
        "retry_count": 3, "queue_size": 2, "flush_timeout": 2
    });
    let config = ConfigBuilder::routed(upstream, ROUTE_OK, &["/ok"])
        .plugin(20, "http-log", deprecated, Scope::default())
        .plugin(
            21,
            "http-log",
            json!({"http_endpoint": collector.url("/other")}),
            Scope::route(ROUTE_OK),
        )
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let warned = |field: &str| logs.lines_with(&format!("http-log: config.{field} "));
    let plugin_id = dataplane::uuid(20);
    assert_eq!(warned("retry_count").len(), 1, "{}", logs.text());
    assert!(
        warned("retry_count")[0].contains(&plugin_id),
        "{}",
        logs.text()
    );
    assert!(
        warned("retry_count")[0].contains("please use config.queue.max_retry_time instead"),
        "{}",
        logs.text()
    );
    assert_eq!(warned("queue_size").len(), 1, "{}", logs.text());
    // flush_timeout 2 is its old default: not a use.
    assert!(warned("flush_timeout").is_empty(), "{}", logs.text());

    for _ in 0..5 {
        assert_eq!(get(dp.proxy_addrs()[0], "/ok").await.unwrap().status, 200);
    }
    // The route's own instance applies there (Kong's precedence), one entry a request.
    collector.wait_for_entries(5, PATIENCE).await.unwrap();
    assert_eq!(
        warned("queue_size").len(),
        1,
        "not per request: {}",
        logs.text()
    );

    dp.gateway().apply_local(&config).unwrap();
    assert_eq!(
        warned("queue_size").len(),
        2,
        "once per config: {}",
        logs.text()
    );
    assert_eq!(warned("retry_count").len(), 2, "{}", logs.text());
    dp.shutdown().await;
}

#[tokio::test]
async fn requests_are_batched_into_fewer_posts_carrying_arrays() {
    const REQUESTS: usize = 12;
    let collector = Collector::start().await.unwrap();
    let upstream = echo::spawn().await.unwrap();
    let dp = logged_data_plane(
        upstream,
        json!({
            "http_endpoint": collector.url("/batch"),
            "method": "PUT",
            "content_type": "application/json; charset=utf-8",
            "queue": {"max_batch_size": 5, "max_coalescing_delay": 0.5}
        }),
    )
    .await;
    let proxy = dp.proxy_addrs()[0];
    let mut ids = BTreeSet::new();
    for _ in 0..REQUESTS {
        let reply = get(proxy, "/ok/x").await.unwrap();
        assert_eq!(reply.status, 200);
        ids.insert(reply.header("x-tollgate-request-id").to_string());
    }
    let entries = collector
        .wait_for_entries(REQUESTS, PATIENCE)
        .await
        .unwrap();
    let logged: BTreeSet<String> = entries
        .iter()
        .map(|entry| entry["request"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logged, ids, "every request logged once");
    assert_eq!(entries.len(), REQUESTS);
    let posts = collector.received();
    assert!(
        posts.len() < REQUESTS && posts.len() >= REQUESTS.div_ceil(5),
        "{} requests to the collector",
        posts.len()
    );
    for post in &posts {
        assert_eq!(post.method, "PUT");
        assert_eq!(
            post.headers["content-type"],
            "application/json; charset=utf-8"
        );
        assert!(post.body.starts_with(b"["), "a batch is a JSON array");
        assert!(post.entries().unwrap().len() <= 5);
    }
    dp.shutdown().await;
}

#[tokio::test]
async fn entries_for_a_collector_that_is_down_are_retried_and_delivered_after_a_swap() {
    let collector = Collector::start().await.unwrap();
    let upstream = echo::spawn().await.unwrap();
    let plugin = json!({
        "http_endpoint": collector.url("/logs"),
        "queue": {"initial_retry_delay": 0.05, "max_retry_delay": 0.2, "max_retry_time": 60}
    });
    let dp = logged_data_plane(upstream, plugin.clone()).await;
    let proxy = dp.proxy_addrs()[0];
    collector.stop_and_wait().await.unwrap();

    let mut ids = BTreeSet::new();
    for _ in 0..3 {
        let reply = get(proxy, "/ok/x").await.unwrap();
        assert_eq!(
            reply.status, 200,
            "the proxy serves while the collector is down"
        );
        ids.insert(reply.header("x-tollgate-request-id").to_string());
    }
    wait_for_counter(&dp, "retried", 1).await;
    // A config swap that keeps the same http-log settings keeps the queue
    // and what it holds.
    let swapped = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(ROUTE_OK, Some(1), &["/ok"], json!({}))
        .route(11, Some(1), &["/other"], json!({}))
        .plugin(20, "http-log", plugin, Scope::default())
        .build()
        .unwrap();
    dp.gateway().apply_local(&swapped).unwrap();
    assert_eq!(get(proxy, "/other/x").await.unwrap().status, 200);
    assert_eq!(http_log_status(&dp).await["queues"], 1);

    collector.restart().await.unwrap();
    let entries = collector.wait_for_entries(4, PATIENCE).await.unwrap();
    let logged: BTreeSet<String> = entries
        .iter()
        .map(|entry| entry["request"]["id"].as_str().unwrap().to_string())
        .collect();
    assert!(logged.is_superset(&ids), "{logged:?} lacks some of {ids:?}");
    let counters = wait_for_counter(&dp, "sent", 4).await;
    assert_eq!(counters["dropped"], 0, "{counters}");
    assert!(counters["retried"].as_u64().unwrap() >= 1, "{counters}");
    dp.shutdown().await;
}

#[tokio::test]
async fn a_collector_answering_500_is_retried_then_the_entries_are_dropped_and_counted() {
    let collector = Collector::start().await.unwrap();
    collector.set_mode(Mode::Status(500));
    let upstream = echo::spawn().await.unwrap();
    let dp = logged_data_plane(
        upstream,
        json!({
            "http_endpoint": collector.url("/logs"),
            "queue": {"initial_retry_delay": 0.01, "max_retry_delay": 0.1, "max_retry_time": 0.5}
        }),
    )
    .await;
    let proxy = dp.proxy_addrs()[0];
    for _ in 0..2 {
        assert_eq!(get(proxy, "/ok/x").await.unwrap().status, 200);
    }
    let counters = wait_for_counter(&dp, "dropped", 2).await;
    assert_eq!(counters["sent"], 0, "{counters}");
    assert_eq!(counters["queued"], 0, "{counters}");
    assert!(counters["retried"].as_u64().unwrap() >= 2, "{counters}");
    let attempts = collector.received().len();
    assert!(
        attempts > 2,
        "each entry was tried more than once: {attempts}"
    );
    dp.shutdown().await;
}

#[tokio::test]
async fn a_black_hole_collector_and_a_full_queue_never_hold_up_proxied_requests() {
    const REQUESTS: u64 = 60;
    const MAX_ENTRIES: u64 = 5;
    let collector = Collector::start().await.unwrap();
    collector.set_mode(Mode::BlackHole);
    let upstream = echo::spawn().await.unwrap();
    let dp = logged_data_plane(
        upstream,
        json!({
            "http_endpoint": collector.url("/logs"),
            "timeout": 600000,
            "queue": {"max_entries": MAX_ENTRIES}
        }),
    )
    .await;
    let proxy = dp.proxy_addrs()[0];
    for n in 0..REQUESTS {
        // The request completes while the collector holds the first batch
        // unanswered (the send's timeout is ten minutes).
        let reply = tokio::time::timeout(Duration::from_secs(5), get(proxy, "/ok/x"))
            .await
            .unwrap_or_else(|_| panic!("request {n} was held up by the log queue"))
            .unwrap();
        assert_eq!(reply.status, 200);
    }
    // One entry hangs at the collector, MAX_ENTRIES wait, the older rest
    // were dropped.
    let counters = wait_for_counter(&dp, "dropped", REQUESTS - MAX_ENTRIES - 1).await;
    assert_eq!(
        counters["dropped"],
        REQUESTS - MAX_ENTRIES - 1,
        "{counters}"
    );
    assert_eq!(counters["queued"], MAX_ENTRIES, "{counters}");
    assert_eq!(counters["sent"], 0, "{counters}");
    assert_eq!(counters["sending"], 1, "{counters}");
    assert_eq!(collector.received().len(), 1, "one request, never answered");
    // No graceful shutdown: its flush would wait the whole grace period for
    // the black hole.
    drop(dp);
}

#[tokio::test]
async fn a_graceful_shutdown_sends_what_the_queue_holds() {
    let collector = Collector::start().await.unwrap();
    let upstream = echo::spawn().await.unwrap();
    let dp = logged_data_plane(
        upstream,
        json!({
            "http_endpoint": collector.url("/logs"),
            "queue": {"max_batch_size": 100, "max_coalescing_delay": 3600}
        }),
    )
    .await;
    let proxy = dp.proxy_addrs()[0];
    for _ in 0..3 {
        assert_eq!(get(proxy, "/ok/x").await.unwrap().status, 200);
    }
    wait_for_counter(&dp, "queued", 3).await;
    assert!(collector.received().is_empty(), "the batch waits to fill");
    let started = std::time::Instant::now();
    dp.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let received = collector.received();
    assert_eq!(received.len(), 1, "one batch at shutdown");
    assert_eq!(received[0].entries().unwrap().len(), 3);
}

#[tokio::test]
async fn userinfo_becomes_basic_authorization_and_https_is_spoken() {
    let collector = Collector::start_tls().await.unwrap();
    let upstream = echo::spawn().await.unwrap();
    let endpoint = format!(
        "https://logger:pa%40ss-w0rd@localhost:{}/ingest",
        collector.addr().port()
    );
    let dp = logged_data_plane(upstream, json!({"http_endpoint": endpoint})).await;
    let reply = get(dp.proxy_addrs()[0], "/ok/x").await.unwrap();
    assert_eq!(reply.status, 200);
    let entries = collector.wait_for_entries(1, PATIENCE).await.unwrap();
    assert_eq!(
        entries[0]["request"]["id"],
        reply.header("x-tollgate-request-id")
    );
    let request = &collector.received()[0];
    // Kong encodes the userinfo exactly as written in the URL.
    let expected = format!("Basic {}", base64_encode(b"logger:pa%40ss-w0rd"));
    assert_eq!(request.headers["authorization"], expected.as_str());
    assert_eq!(request.uri, "/ingest");
    assert_eq!(
        request.headers["host"],
        format!("localhost:{}", collector.addr().port())
    );
    dp.shutdown().await;
}

/// Standard base64 with padding, written out so the test does not share the
/// plugin's encoder.
fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn the_test_encoder_is_base64() {
    assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
    assert_eq!(base64_encode(b"a"), "YQ==");
    assert_eq!(base64_encode(b"ab"), "YWI=");
}

/// The seed guide's step 8 with real processes: `http-log` added through the
/// Admin API of a control plane on PostgreSQL, with the guide's fields,
/// reaches a data plane, whose entries arrive at the collector with Kong's
/// keys; then credentials in the endpoint's userinfo reach the collector as
/// Basic authorization and never the data plane's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_guides_http_log_step_through_a_real_cluster() {
    use tollgate_tests::cluster::{admin_write, wait_in_sync, SeedCluster};
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start().await.unwrap();
    let upstream = echo::spawn().await.unwrap();
    let cluster = SeedCluster::start(dir.path(), upstream).await.unwrap();
    let (cp, dp) = (&cluster.cp, &cluster.dp);
    // The guide's fields, with the collector in place of log-aggregator:9200.
    let plugin = json!({
        "name": "http-log",
        "config": {
            "http_endpoint": collector.url("/kong-logs"),
            "method": "POST",
            "timeout": 10000,
            "keepalive": 60000
        }
    });
    let version = admin_write(cp.admin, "POST", "/plugins", plugin)
        .await
        .unwrap();
    wait_in_sync(cp.admin, &dp.node_id, version).await.unwrap();

    let reply = send(
        dp.proxy,
        get_with("/api/v1?x=1", &[("authorization", "Bearer t")]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let entries = collector.wait_for_entries(1, PATIENCE).await.unwrap();
    let record = &entries[0];
    assert_eq!(keys(record), proxied_record_keys());
    assert_eq!(record["request"]["headers"]["authorization"], "REDACTED");
    assert_eq!(record["upstream_uri"], "/v1?x=1");
    assert_eq!(record["service"]["name"], "my-api");
    assert_eq!(record["route"]["name"], "api");
    assert_eq!(collector.received()[0].uri, "/kong-logs");

    let secret = "s3cret-log-pw";
    let endpoint = format!(
        "http://logger:{secret}@127.0.0.1:{}/kong-logs",
        collector.addr().port()
    );
    let plugins = tollgate_tests::cluster::admin(cp.admin, "GET", "/plugins", None)
        .await
        .unwrap()
        .json();
    let id = plugins["data"][0]["id"].as_str().unwrap().to_string();
    let version = admin_write(
        cp.admin,
        "PATCH",
        &format!("/plugins/{id}"),
        json!({"config": {"http_endpoint": endpoint}}),
    )
    .await
    .unwrap();
    wait_in_sync(cp.admin, &dp.node_id, version).await.unwrap();
    assert_eq!(get(dp.proxy, "/api/again").await.unwrap().status, 200);
    let entries = collector.wait_for_entries(2, PATIENCE).await.unwrap();
    assert_eq!(entries.len(), 2);
    let last = collector.received().pop().unwrap();
    assert_eq!(
        last.headers["authorization"],
        format!(
            "Basic {}",
            base64_encode(format!("logger:{secret}").as_bytes())
        )
        .as_str()
    );
    let status = get(dp.status, "/status").await.unwrap().json();
    assert_eq!(status["plugins"]["http_log"]["sent"], 2, "{status}");
    assert!(
        !dp.process.log().contains(secret),
        "the password was logged"
    );
}
