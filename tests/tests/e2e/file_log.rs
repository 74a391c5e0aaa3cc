//! End-to-end: the `file-log` plugin on an in-process data plane: Kong's log
//! record with exactly its keys for a proxied request and for one a plugin
//! answered, one line per request, rotation by renaming the file (with and
//! without `reopen`), and a path that cannot be opened refused at compile time.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use tollgate_data_plane::Settings;
use tollgate_tests::dataplane::{
    self, get, get_with, send, send_tls, tls_connect, uuid, wait_for_json_lines, ConfigBuilder,
    Scope,
};
use tollgate_tests::echo;

const ROUTE_OK: u128 = 10;
const ROUTE_DENY: u128 = 11;

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

/// The top-level keys of a record of a routed request without a consumer,
/// plus `extra`.
fn record_keys<'a>(extra: &[&'a str]) -> BTreeSet<&'a str> {
    let mut keys = set(&[
        "client_ip",
        "latencies",
        "request",
        "response",
        "route",
        "service",
        "source",
        "started_at",
        "upstream_status",
        "upstream_uri",
        "workspace",
        "workspace_name",
    ]);
    keys.extend(extra.iter().copied());
    keys
}

fn file_log(path: &Path, reopen: bool) -> Value {
    json!({"path": path.to_str().unwrap(), "reopen": reopen, "custom_fields_by_lua": null})
}

/// Service 1 at `upstream`, route `/ok` to it, and a global `file-log` to `log`.
fn logged_route(upstream: SocketAddr, log: &Path) -> ConfigBuilder {
    ConfigBuilder::routed(upstream, ROUTE_OK, &["/ok"]).plugin(
        20,
        "file-log",
        file_log(log, false),
        Scope::default(),
    )
}

#[tokio::test]
async fn records_have_kongs_keys_for_proxied_and_denied_requests() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let upstream = echo::spawn().await.unwrap();
    let config = logged_route(upstream, &log)
        .route(ROUTE_DENY, Some(1), &["/deny"], json!({}))
        .plugin(
            21,
            "ip-restriction",
            json!({"deny": ["127.0.0.1"]}),
            Scope::route(ROUTE_DENY),
        )
        // Its headers are written with the head, not set in the head's map
        // (no plugin reads the map after `access`): the record shows them.
        .plugin(
            22,
            "rate-limiting",
            json!({"minute": 5, "policy": "local"}),
            Scope::route(ROUTE_OK),
        )
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    let ok = send(
        proxy,
        get_with(
            "/ok/items?a=1&flag&a=two",
            &[
                ("authorization", "Bearer secret-token"),
                ("proxy-authorization", "Basic c2VjcmV0"),
                ("x-trace", "t1"),
            ],
        )
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
    let lines = wait_for_json_lines(&log, 1).await.unwrap();
    let record = &lines[0];
    assert_eq!(keys(record), record_keys(&["tries"]));
    let request = &record["request"];
    assert_eq!(
        keys(request),
        set(&[
            "headers",
            "id",
            "method",
            "querystring",
            "size",
            "uri",
            "url"
        ])
    );
    assert_eq!(request["id"], ok.header("x-tollgate-request-id"));
    assert_eq!(request["method"], "GET");
    assert_eq!(request["uri"], "/ok/items?a=1&flag&a=two");
    assert_eq!(
        request["url"],
        format!("http://127.0.0.1:{}/ok/items?a=1&flag&a=two", proxy.port())
    );
    assert_eq!(
        request["querystring"],
        json!({"a": ["1", "two"], "flag": true})
    );
    assert_eq!(request["headers"]["authorization"], "REDACTED");
    assert_eq!(request["headers"]["proxy-authorization"], "REDACTED");
    assert_eq!(request["headers"]["x-trace"], "t1");
    assert!(request["size"].as_u64().unwrap() > 40, "{request}");
    assert_eq!(record["upstream_uri"], "/items?a=1&flag&a=two");
    assert_eq!(record["upstream_status"], "200");
    let response = &record["response"];
    assert_eq!(keys(response), set(&["headers", "size", "status"]));
    assert_eq!(response["status"], 200);
    assert_eq!(
        response["headers"]["x-tollgate-request-id"],
        ok.header("x-tollgate-request-id")
    );
    let mut plugin_lines = 0;
    for name in [
        "x-ratelimit-limit-minute",
        "x-ratelimit-remaining-minute",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
    ] {
        assert_eq!(response["headers"][name], ok.header(name), "{name}");
        plugin_lines += name.len() + ok.header(name).len() + 4;
    }
    assert_eq!(ok.header("x-ratelimit-remaining-minute"), "4");
    assert!(
        response["size"].as_u64().unwrap() > (plugin_lines + ok.body.len()) as u64,
        "the size counts the head, the plugin's lines too: {response}"
    );
    assert_eq!(
        keys(&record["latencies"]),
        set(&["kong", "proxy", "receive", "request"])
    );
    assert!(record["latencies"]["proxy"].as_i64().unwrap() >= 0);
    let tries = record["tries"].as_array().unwrap();
    assert_eq!(tries.len(), 1);
    assert_eq!(tries[0]["ip"], upstream.ip().to_string());
    assert_eq!(tries[0]["port"], upstream.port());
    assert_eq!(record["route"]["id"], uuid(ROUTE_OK));
    assert_eq!(record["route"]["paths"], json!(["/ok"]));
    assert_eq!(record["service"]["name"], "service-1");
    assert_eq!(record["client_ip"], "127.0.0.1");
    assert_eq!(record["source"], "upstream");
    assert_eq!(record["workspace_name"], "default");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let started = record["started_at"].as_u64().unwrap();
    assert!(started <= now_ms && now_ms - started < 60_000, "{started}");

    let denied = get(proxy, "/deny/x").await.unwrap();
    assert_eq!(denied.status, 403);
    let lines = wait_for_json_lines(&log, 2).await.unwrap();
    let record = &lines[1];
    assert_eq!(
        keys(record),
        record_keys(&[]),
        "no tries without an upstream: {record}"
    );
    assert_eq!(record["source"], "kong");
    assert_eq!(record["upstream_uri"], "");
    assert_eq!(record["upstream_status"], "");
    assert_eq!(record["response"]["status"], 403);
    assert_eq!(
        record["response"]["headers"]["content-length"],
        denied.body.len().to_string()
    );
    assert_eq!(record["latencies"]["proxy"], -1);
    assert_eq!(record["route"]["id"], uuid(ROUTE_DENY));
    assert_eq!(
        record["request"]["id"],
        denied.header("x-tollgate-request-id")
    );

    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o644, 0o644, "created 0644 (umask aside): {mode:o}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 2, "one line per request");
    assert!(text.ends_with('\n'));
    dp.shutdown().await;
}

/// Sends requests until `path` exists with a line, as a rotation check runs
/// at most once per second; returns how many requests were sent.
async fn send_until_written(proxy: SocketAddr, path: &Path) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut sent = 0;
    loop {
        let reply = get(proxy, "/ok/x").await.unwrap();
        assert_eq!(reply.status, 200);
        sent += 1;
        let written = || std::fs::read_to_string(path).is_ok_and(|text| text.ends_with('\n'));
        if dataplane::wait_until(Duration::from_millis(50), written).await {
            return sent;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never reopened",
            path.display()
        );
    }
}

#[tokio::test]
async fn a_renamed_log_file_is_followed_to_a_new_file_at_the_path() {
    const ROUTE_REOPEN: u128 = 12;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let log_reopen = dir.path().join("reopen.log");
    let rotated_reopen = dir.path().join("reopen.log.1");
    let upstream = echo::spawn().await.unwrap();
    let dp = ConfigBuilder::routed(upstream, ROUTE_OK, &["/ok"])
        .route(ROUTE_REOPEN, Some(1), &["/re"], json!({}))
        .plugin(
            20,
            "file-log",
            file_log(&log, false),
            Scope::route(ROUTE_OK),
        )
        .plugin(
            21,
            "file-log",
            file_log(&log_reopen, true),
            Scope::route(ROUTE_REOPEN),
        )
        .start()
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    assert_eq!(get(proxy, "/ok/x").await.unwrap().status, 200);
    assert_eq!(get(proxy, "/re/x").await.unwrap().status, 200);
    wait_for_json_lines(&log, 1).await.unwrap();
    wait_for_json_lines(&log_reopen, 1).await.unwrap();
    std::fs::rename(&log, &rotated).unwrap();
    std::fs::rename(&log_reopen, &rotated_reopen).unwrap();

    // With `reopen`, the very next line goes to a new file at the path.
    let reply = get(proxy, "/re/x").await.unwrap();
    assert_eq!(reply.status, 200);
    let fresh = wait_for_json_lines(&log_reopen, 1).await.unwrap();
    assert_eq!(
        fresh[0]["request"]["id"],
        reply.header("x-tollgate-request-id")
    );
    assert_eq!(
        std::fs::read_to_string(&rotated_reopen)
            .unwrap()
            .lines()
            .count(),
        1
    );

    // Without it, the rename is noticed within a second and later lines
    // reach a new file at the path; none is lost or written twice.
    let sent = send_until_written(proxy, &log).await;
    // Lines go out in batches: wait until every request's line is written.
    let lines = |path: &Path| std::fs::read_to_string(path).map_or(0, |text| text.lines().count());
    assert!(
        dataplane::wait_until(Duration::from_secs(5), || lines(&rotated) + lines(&log)
            > sent)
        .await,
        "some lines were never written"
    );
    let before = wait_for_json_lines(&rotated, 1).await.unwrap();
    let after = wait_for_json_lines(&log, 1).await.unwrap();
    assert_eq!(before.len() + after.len(), 1 + sent);
    let mut ids: Vec<&Value> = before
        .iter()
        .chain(after.iter())
        .map(|line| &line["request"]["id"])
        .collect();
    ids.sort_by_key(|id| id.to_string());
    ids.dedup();
    assert_eq!(ids.len(), 1 + sent);
    dp.shutdown().await;
}

#[tokio::test]
async fn a_log_path_that_cannot_be_opened_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("access.log");
    let upstream = echo::spawn().await.unwrap();
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(ROUTE_OK, Some(1), &["/ok"], json!({}))
        .plugin(20, "file-log", file_log(&missing, false), Scope::default())
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &ConfigBuilder::new().build().unwrap())
        .await
        .unwrap();
    let errors = dp.gateway().apply_local(&config).unwrap_err();
    let text: String = errors.iter().map(ToString::to_string).collect();
    assert!(text.contains(missing.to_str().unwrap()), "{text}");
    // The data plane keeps serving its previous config.
    assert_eq!(get(dp.proxy_addrs()[0], "/ok").await.unwrap().status, 404);
    dp.shutdown().await;
}

#[tokio::test]
async fn a_tls_request_records_its_protocol_and_cipher() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tls.log");
    let generated = rcgen::generate_simple_self_signed(vec!["api.test".to_string()]).unwrap();
    let cert_pem = generated.cert.pem();
    let key_pem = generated.signing_key.serialize_pem();
    let trust = rustls_pki_types::CertificateDer::from(generated.cert.der().to_vec());
    let upstream = echo::spawn().await.unwrap();
    let config = logged_route(upstream, &log)
        .certificate(50, &cert_pem, &key_pem, &[(60, "api.test")])
        .build()
        .unwrap();
    let mut settings = Settings::loopback();
    settings.proxy_tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
    let dp = dataplane::start(settings, &config).await.unwrap();
    let tls = dp.tls_addrs()[0];

    let stream = tls_connect(tls, "api.test", &[trust], &[b"http/1.1"])
        .await
        .unwrap();
    let reply = send_tls(stream, "api.test", "/ok/x").await.unwrap();
    assert_eq!(reply.status, 200);
    let record = &wait_for_json_lines(&log, 1).await.unwrap()[0];
    assert_eq!(
        record["request"]["tls"],
        json!({"version": "TLSv1.3", "cipher": record["request"]["tls"]["cipher"], "client_verify": "NONE"})
    );
    let cipher = record["request"]["tls"]["cipher"].as_str().unwrap();
    assert!(
        cipher.starts_with("TLS_") && cipher.contains("_SHA"),
        "{cipher}"
    );
    assert_eq!(
        record["request"]["url"],
        format!("https://api.test:{}/ok/x", tls.port())
    );
    dp.shutdown().await;
}

/// The seed guide's step 8 with real processes: `file-log` (with `reopen`)
/// added through the Admin API of a control plane on PostgreSQL reaches a
/// data plane, which writes one record per request; a path the data plane
/// cannot open is Nacked naming it while the old config keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_guides_file_log_step_through_a_real_cluster() {
    use tollgate_tests::cluster::{admin_write, wait_for_node, wait_in_sync, SeedCluster};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let upstream = echo::spawn().await.unwrap();
    let cluster = SeedCluster::start(dir.path(), upstream).await.unwrap();
    let (cp, dp) = (&cluster.cp, &cluster.dp);
    let plugin = json!({
        "name": "file-log",
        "config": { "path": log.to_str().unwrap(), "reopen": true }
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
    let record = &wait_for_json_lines(&log, 1).await.unwrap()[0];
    assert_eq!(keys(record), record_keys(&["tries"]));
    assert_eq!(record["request"]["headers"]["authorization"], "REDACTED");
    assert_eq!(record["upstream_uri"], "/v1?x=1");
    assert_eq!(record["service"]["name"], "my-api");
    assert_eq!(record["route"]["name"], "api");

    let missing = dir.path().join("no-such-dir").join("access.log");
    let unopenable = json!({
        "name": "file-log",
        "route": { "name": "api" },
        "config": { "path": missing.to_str().unwrap() }
    });
    let refused = admin_write(cp.admin, "POST", "/plugins", unopenable)
        .await
        .unwrap();
    let node = wait_for_node(cp.admin, &dp.node_id, "the node to reject", |n| {
        n["sync_status"] == "rejected"
    })
    .await
    .unwrap();
    assert_eq!(node["rejected_version"], refused);
    let reason = node["last_error"].as_str().unwrap();
    assert!(reason.contains(missing.to_str().unwrap()), "{reason}");
    let reply = get(dp.proxy, "/api/again").await.unwrap();
    assert_eq!(reply.status, 200, "the old config keeps serving");
    wait_for_json_lines(&log, 2).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_write_whole_lines() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("busy.log");
    let upstream = echo::spawn().await.unwrap();
    let config = logged_route(upstream, &log).build().unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    // Long headers make each line several kilobytes, so a torn write would show.
    let padding = "p".repeat(4000);
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let padding = padding.clone();
        clients.push(tokio::spawn(async move {
            for n in 0..PER_CLIENT {
                let tag = format!("{client}-{n}");
                let request =
                    get_with("/ok/x", &[("x-tag", tag.as_str()), ("x-pad", &padding)]).unwrap();
                assert_eq!(send(proxy, request).await.unwrap().status, 200);
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let lines = wait_for_json_lines(&log, CLIENTS * PER_CLIENT)
        .await
        .unwrap();
    assert_eq!(lines.len(), CLIENTS * PER_CLIENT);
    let tags: BTreeSet<&str> = lines
        .iter()
        .map(|line| line["request"]["headers"]["x-tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags.len(), CLIENTS * PER_CLIENT, "every request once");
    dp.shutdown().await;
}

#[tokio::test]
async fn a_streamed_chunked_body_counts_in_the_request_size() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sizes.log");
    let upstream = echo::spawn().await.unwrap();
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(
            ROUTE_OK,
            Some(1),
            &["/ok"],
            json!({"request_buffering": false}),
        )
        .plugin(20, "file-log", file_log(&log, false), Scope::default())
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let body = "x".repeat(3000);
    let request = format!(
        "POST /ok/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let answer = dataplane::raw_exchange(
        dp.proxy_addrs()[0],
        request.as_bytes(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let record = &wait_for_json_lines(&log, 1).await.unwrap()[0];
    let size = record["request"]["size"].as_u64().unwrap();
    assert!((3060..3400).contains(&size), "{size}");
    dp.shutdown().await;
}
