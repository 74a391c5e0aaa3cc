//! End-to-end: metrics. The `prometheus` plugin on an in-process data plane
//! (Kong's labels and values per route, status code, source and consumer;
//! counts that survive a config swap; the series cap), Kong's exact names
//! under `--metrics-prefix kong`, and the seed guide's step 10 on real
//! `tollgate-cp` and `tollgate-dp` processes: the plugin enabled through the
//! Admin API, traffic, both planes scraped. Every exposition goes through
//! `promtool check metrics` (the Debian `prometheus` package; a missing
//! promtool fails the test under `CI=true`), and deploy/prometheus's scrape
//! config and alert rules through `promtool check config`, `check rules`
//! and `test rules`.

use http::Request;
use http_body_util::Full;
use serde_json::json;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use tollgate_data_plane::Settings;
use tollgate_shared::exposition::Naming;
use tollgate_tests::cluster::{
    admin_write, wait_in_sync, wait_until, DataPlaneOptions, DataPlaneProcess, Pki, SeedCluster,
    TestDatabase,
};
use tollgate_tests::dataplane::{self, get, get_with, send, ConfigBuilder, Scope};
use tollgate_tests::echo;

const ROUTE_OK: u128 = 10;
const ROUTE_DENY: u128 = 11;

fn every_switch() -> serde_json::Value {
    json!({
        "per_consumer": true, "status_code_metrics": true, "latency_metrics": true,
        "bandwidth_metrics": true, "upstream_health_metrics": true,
        "ai_metrics": false, "wasm_metrics": false
    })
}

/// Service 1 (`service-1`) with route `route-10` on `/ok` and `route-11` on
/// `/deny` (denied by ip-restriction), consumer `alice` (identified by the
/// test-fault plugin from `x-test-consumer`), and a global `prometheus`.
fn metered(upstream: SocketAddr) -> ConfigBuilder {
    ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(ROUTE_OK, Some(1), &["/ok"], json!({}))
        .route(ROUTE_DENY, Some(1), &["/deny"], json!({}))
        .consumer(30, "alice")
        .plugin(20, "prometheus", every_switch(), Scope::default())
        .plugin(
            21,
            "ip-restriction",
            json!({"deny": ["127.0.0.1"]}),
            Scope::route(ROUTE_DENY),
        )
        .plugin(22, "tollgate-test-fault", json!({}), Scope::default())
}

/// `GET /metrics` at `addr`: the content type and the text.
async fn scrape(addr: SocketAddr, path: &str) -> (String, String) {
    let reply = get(addr, path).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    (reply.header("content-type").to_string(), reply.text())
}

/// The value of the sample written exactly as `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Scrapes `addr` until `series` has `expected` (the log phase runs after the
/// response reached the client), and returns that exposition.
async fn wait_for_sample(addr: SocketAddr, path: &str, series: &str, expected: f64) -> String {
    let waited = wait_until(&format!("{series} = {expected}"), || async {
        let text = get(addr, path).await?.text();
        Ok((sample(&text, series) == Some(expected)).then_some(text))
    })
    .await;
    match waited {
        Ok(text) => text,
        Err(error) => {
            let (_, text) = scrape(addr, path).await;
            panic!("{error}\n{text}")
        }
    }
}

/// Runs `promtool check metrics` on `text`; the problems it reports must all
/// concern the metrics named in `kong_inherent` (Kong's own names break
/// promtool's naming rules, e.g. a counter without `_total`).
fn promtool_check(text: &str, kong_inherent: &[&str]) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is required under CI (Debian package prometheus; tests/scripts/ensure-services.sh installs it): {error}"
            );
            eprintln!("skipping promtool check: {error}");
            return;
        }
    };
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        return;
    }
    let unexpected: Vec<&str> = report
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter(|line| {
            !kong_inherent
                .iter()
                .any(|name| line.starts_with(&format!("{name} ")))
        })
        .collect();
    assert!(
        unexpected.is_empty() && !kong_inherent.is_empty(),
        "promtool check metrics failed:\n{report}\n--- exposition ---\n{text}"
    );
}

#[tokio::test]
async fn the_plugin_records_kongs_labels_and_counts_survive_a_config_swap() {
    let upstream = echo::spawn().await.unwrap();
    let dp = dataplane::start(Settings::loopback(), &metered(upstream).build().unwrap())
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let status = dp.status_addr();
    for _ in 0..3 {
        assert_eq!(get(proxy, "/ok").await.unwrap().status, 200);
    }
    let as_alice = get_with("/ok", &[("x-test-consumer", "alice")]).unwrap();
    assert_eq!(send(proxy, as_alice).await.unwrap().status, 200);
    assert_eq!(get(proxy, "/deny").await.unwrap().status, 403);
    // No route matched: not recorded.
    assert_eq!(get(proxy, "/nowhere").await.unwrap().status, 404);

    let ok = r#"service="service-1",route="route-10""#;
    let text = wait_for_sample(
        status,
        "/metrics",
        &format!(r#"tollgate_http_requests_total{{{ok},code="200",source="service",workspace="default",consumer=""}}"#),
        3.0,
    )
    .await;
    let (content_type, _) = scrape(status, "/metrics").await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        text.contains("# TYPE tollgate_http_requests_total counter\n"),
        "{text}"
    );
    let series = |s: &str| sample(&text, s);
    assert_eq!(
        series(&format!(
            r#"tollgate_http_requests_total{{{ok},code="200",source="service",workspace="default",consumer="alice"}}"#
        )),
        Some(1.0),
        "{text}"
    );
    let deny = r#"service="service-1",route="route-11""#;
    let text = wait_for_sample(
        status,
        "/metrics",
        &format!(r#"tollgate_http_requests_total{{{deny},code="403",source="kong",workspace="default",consumer=""}}"#),
        1.0,
    )
    .await;
    let series = |s: &str| sample(&text, s);
    assert!(
        !text.contains("code=\"404\""),
        "unrouted requests are not recorded:\n{text}"
    );
    // Latency histograms: every proxied request in the request histogram and
    // the upstream one; the denied request only in the request histogram.
    assert_eq!(
        series(&format!(
            r#"tollgate_request_latency_seconds_count{{{ok},workspace="default"}}"#
        )),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        series(&format!(
            r#"tollgate_upstream_latency_seconds_count{{{ok},workspace="default"}}"#
        )),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        series(&format!(
            r#"tollgate_gateway_latency_seconds_count{{{deny},workspace="default"}}"#
        )),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(&format!(
            r#"tollgate_upstream_latency_seconds_count{{{deny},workspace="default"}}"#
        )),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        series(&format!(
            r#"tollgate_request_latency_seconds_bucket{{le="+Inf",{ok},workspace="default"}}"#
        )),
        Some(4.0),
        "{text}"
    );
    assert!(
        text.contains(r#"{le="0.025",service="#),
        "buckets in seconds: {text}"
    );
    // Bandwidth per direction and consumer, heads included.
    let egress = series(&format!(r#"tollgate_bandwidth_bytes_total{{{ok},direction="egress",workspace="default",consumer=""}}"#)).unwrap_or(0.0);
    let ingress = series(&format!(r#"tollgate_bandwidth_bytes_total{{{ok},direction="ingress",workspace="default",consumer="alice"}}"#)).unwrap_or(0.0);
    assert!(egress > 3.0 * 17.0 && ingress > 20.0, "{text}");
    // Node-level metrics read the counters /status reports.
    let requests = series(r#"tollgate_requests_total{node_id=""}"#).unwrap();
    assert!(requests >= 6.0, "{text}");
    assert_eq!(series("tollgate_datastore_reachable"), Some(1.0), "{text}");
    assert_eq!(
        series(r#"tollgate_metrics_series_refused_total{metric="http_requests"}"#),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        series("tollgate_requests_denied_total"),
        Some(1.0),
        "{text}"
    );
    promtool_check(&text, &[]);

    // A new config (one more route) keeps the counts.
    let swapped = metered(upstream)
        .route(12, Some(1), &["/more"], json!({}))
        .build()
        .unwrap();
    dp.gateway().apply_local(&swapped).unwrap();
    assert_eq!(get(proxy, "/ok").await.unwrap().status, 200);
    wait_for_sample(
        status,
        "/metrics",
        &format!(r#"tollgate_http_requests_total{{{ok},code="200",source="service",workspace="default",consumer=""}}"#),
        4.0,
    )
    .await;
    dp.shutdown().await;
}

/// A route whose chain only counts (prometheus) keeps no copy of the request
/// for the log; its bandwidth must still be the request's size as the log
/// record (file-log, on a twin route) reports it: head and body, counted once.
#[tokio::test]
async fn bandwidth_is_the_logged_request_size_with_or_without_a_log_record() {
    const ROUTE_COUNTED: u128 = 12;
    const ROUTE_LOGGED: u128 = 13;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let upstream = echo::spawn().await.unwrap();
    let dp = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(ROUTE_COUNTED, Some(1), &["/a"], json!({}))
        .route(ROUTE_LOGGED, Some(1), &["/b"], json!({}))
        .plugin(20, "prometheus", every_switch(), Scope::default())
        .plugin(
            21,
            "file-log",
            json!({"path": log.to_str().unwrap(), "reopen": false, "custom_fields_by_lua": null}),
            Scope::route(ROUTE_LOGGED),
        )
        .start()
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    for route in ["/a", "/b"] {
        let body = bytes::Bytes::from(vec![b'x'; 1000]);
        let post = Request::post(format!("{route}/x"))
            .body(Full::new(body))
            .unwrap();
        assert_eq!(send(proxy, post).await.unwrap().status, 200);
        assert_eq!(get(proxy, &format!("{route}/x")).await.unwrap().status, 200);
    }
    let records = dataplane::wait_for_json_lines(&log, 2).await.unwrap();
    let logged: f64 = records
        .iter()
        .map(|record| record["request"]["size"].as_f64().unwrap())
        .sum();
    assert!(logged > 1000.0, "{records:?}");
    let ingress = |route: u128| {
        format!(
            r#"tollgate_bandwidth_bytes_total{{service="service-1",route="route-{route}",direction="ingress",workspace="default",consumer=""}}"#
        )
    };
    let text = wait_for_sample(dp.status_addr(), "/metrics", &ingress(ROUTE_LOGGED), logged).await;
    assert_eq!(
        sample(&text, &ingress(ROUTE_COUNTED)),
        Some(logged),
        "{text}"
    );
    dp.shutdown().await;
}

#[tokio::test]
async fn kong_prefix_gives_kongs_names_and_types() {
    let upstream = echo::spawn().await.unwrap();
    let settings = Settings {
        metrics_naming: Naming::new("kong").unwrap(),
        ..Settings::loopback()
    };
    let dp = dataplane::start(settings, &metered(upstream).build().unwrap())
        .await
        .unwrap();
    assert_eq!(get(dp.proxy_addrs()[0], "/ok").await.unwrap().status, 200);
    let ok = r#"service="service-1",route="route-10""#;
    let text = wait_for_sample(
        dp.status_addr(),
        "/metrics",
        &format!(r#"kong_http_requests_total{{{ok},code="200",source="service",workspace="default",consumer=""}}"#),
        1.0,
    )
    .await;
    for line in [
        "# TYPE kong_http_requests_total counter\n",
        "# TYPE kong_kong_latency_ms histogram\n",
        "# TYPE kong_upstream_latency_ms histogram\n",
        "# TYPE kong_request_latency_ms histogram\n",
        "# TYPE kong_bandwidth_bytes counter\n",
        "# TYPE kong_nginx_connections_total gauge\n",
        "# TYPE kong_nginx_requests_total gauge\n",
        "# TYPE kong_datastore_reachable gauge\n",
        "# TYPE kong_node_info gauge\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // Kong's counter without `_total`, and Kong's millisecond buckets.
    assert!(
        text.contains(&format!(
            r#"kong_bandwidth_bytes{{{ok},direction="egress",workspace="default",consumer=""}} "#
        )),
        "{text}"
    );
    assert!(!text.contains("kong_bandwidth_bytes_total"), "{text}");
    assert_eq!(
        sample(
            &text,
            &format!(r#"kong_kong_latency_ms_bucket{{le="+Inf",{ok},workspace="default"}}"#)
        ),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains(r#"kong_kong_latency_ms_bucket{le="6000.0",service="service-1",route="route-10",workspace="default"}"#), "{text}");
    assert!(text.contains(r#"kong_upstream_latency_ms_bucket{le="60000.0",service="service-1",route="route-10",workspace="default"}"#), "{text}");
    assert!(
        sample(
            &text,
            r#"kong_nginx_requests_total{node_id="",subsystem="http"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        text.contains(
            r#"kong_nginx_connections_total{node_id="",subsystem="http",state="accepted"}"#
        ),
        "{text}"
    );
    assert!(!text.contains("tollgate_"), "{text}");
    // The exposition parses; promtool's only objections are to Kong's own names.
    promtool_check(
        &text,
        &[
            "kong_bandwidth_bytes",
            "kong_kong_latency_ms",
            "kong_upstream_latency_ms",
            "kong_request_latency_ms",
            "kong_nginx_connections_total",
            "kong_nginx_requests_total",
        ],
    );
    dp.shutdown().await;
}

#[tokio::test]
async fn series_beyond_the_cap_are_refused_and_counted() {
    let upstream = echo::spawn().await.unwrap();
    let settings = Settings {
        metrics_max_series: 2,
        ..Settings::loopback()
    };
    let mut config = ConfigBuilder::new().service(1, upstream, json!({})).plugin(
        20,
        "prometheus",
        json!({"status_code_metrics": true}),
        Scope::default(),
    );
    for n in 0..4u128 {
        config = config.route(10 + n, Some(1), &[&format!("/r{n}")], json!({}));
    }
    let dp = dataplane::start(settings, &config.build().unwrap())
        .await
        .unwrap();
    for n in 0..4 {
        assert_eq!(
            get(dp.proxy_addrs()[0], &format!("/r{n}"))
                .await
                .unwrap()
                .status,
            200
        );
    }
    let text = wait_for_sample(
        dp.status_addr(),
        "/metrics",
        r#"tollgate_metrics_series_refused_total{metric="http_requests"}"#,
        2.0,
    )
    .await;
    let recorded = text
        .lines()
        .filter(|line| line.starts_with("tollgate_http_requests_total{"))
        .count();
    assert_eq!(recorded, 2, "{text}");
    promtool_check(&text, &[]);
    dp.shutdown().await;
}

/// A form-encoded Admin API write, as the seed guide's `curl -d` sends it;
/// returns the config version it committed.
async fn admin_form(admin: SocketAddr, method: &str, path: &str, form: &str) -> u64 {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(bytes::Bytes::from(form.to_string())))
        .unwrap();
    let reply = send(admin, request).await.unwrap();
    assert!(
        reply.status.is_success(),
        "{method} {path}: {} {}",
        reply.status,
        reply.text()
    );
    reply.header("x-tollgate-config-version").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_step_10_prometheus_on_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = echo::spawn().await.unwrap();
    let cluster = SeedCluster::empty(dir.path()).await.unwrap();
    let (cp, dp) = (&cluster.cp, &cluster.dp);
    admin_write(
        cp.admin,
        "POST",
        "/services",
        json!({"name": "example-service", "url": format!("http://{upstream}")}),
    )
    .await
    .unwrap();
    admin_form(
        cp.admin,
        "POST",
        "/services/example-service/routes",
        "name=example-route&paths[]=/api",
    )
    .await;
    // Step 10: `curl -X POST $ADMIN/plugins -d name=prometheus`.
    let enabled = admin_form(cp.admin, "POST", "/plugins", "name=prometheus").await;
    wait_in_sync(cp.admin, &dp.node_id, enabled).await.unwrap();
    assert_eq!(get(dp.proxy, "/api/x").await.unwrap().status, 200);

    // Every switch is off by default (as in Kong): node metrics only.
    let (content_type, text) = scrape(dp.status, "/metrics").await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(
        sample(&text, "tollgate_control_plane_connected"),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"tollgate_node_info{{node_id="{}",version=""#,
            dp.node_id
        )),
        "{text}"
    );
    assert!(
        sample(&text, "tollgate_config_version").is_some_and(|v| v >= enabled as f64),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "tollgate_data_plane_cluster_cert_expiry_timestamp_seconds"
        )
        .is_some_and(|t| t > 1.7e9),
        "{text}"
    );
    assert!(!text.contains("tollgate_http_requests_total{"), "{text}");
    promtool_check(&text, &[]);

    let switched = admin_form(
        cp.admin,
        "PATCH",
        &format!("/plugins/{}", plugin_id(cp.admin).await),
        "config.status_code_metrics=true&config.latency_metrics=true&config.bandwidth_metrics=true",
    )
    .await;
    wait_in_sync(cp.admin, &dp.node_id, switched).await.unwrap();
    for _ in 0..2 {
        assert_eq!(get(dp.proxy, "/api/x").await.unwrap().status, 200);
    }
    let labels = r#"service="example-service",route="example-route""#;
    let text = wait_for_sample(
        dp.status,
        "/metrics",
        &format!(r#"tollgate_http_requests_total{{{labels},code="200",source="service",workspace="default",consumer=""}}"#),
        2.0,
    )
    .await;
    assert_eq!(
        sample(
            &text,
            &format!(r#"tollgate_request_latency_seconds_count{{{labels},workspace="default"}}"#)
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "tollgate_config_hash"),
        sample(&text, "tollgate_config_hash")
    );
    promtool_check(&text, &[]);

    // The control plane's Admin API serves its own metrics, per data plane.
    let (content_type, cp_text) = scrape(cp.admin, "/metrics").await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let node = format!(r#"node_id="{}""#, dp.node_id);
    assert_eq!(
        sample(&cp_text, "tollgate_datastore_reachable"),
        Some(1.0),
        "{cp_text}"
    );
    assert_eq!(
        sample(&cp_text, r#"tollgate_data_planes{status="in_sync"}"#),
        Some(1.0),
        "{cp_text}"
    );
    let dp_hash = sample(&text, "tollgate_config_hash").unwrap();
    let cp_line = cp_text
        .lines()
        .find(|line| line.starts_with("tollgate_data_plane_config_hash{") && line.contains(&node))
        .unwrap_or_else(|| panic!("no config hash of the data plane:\n{cp_text}"));
    let cp_hash: f64 = cp_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(cp_hash, dp_hash, "{cp_text}");
    assert_eq!(
        sample(&cp_text, "tollgate_config_published_hash"),
        Some(dp_hash),
        "{cp_text}"
    );
    assert!(
        cp_text.contains(&format!(r#"tollgate_data_plane_sync_status{{{node},"#)),
        "{cp_text}"
    );
    assert!(
        sample(&cp_text, r#"tollgate_admin_requests_total{code="201"}"#).is_some_and(|n| n >= 3.0),
        "{cp_text}"
    );
    assert!(
        sample(&cp_text, "tollgate_config_builds_total").is_some_and(|n| n >= 1.0),
        "{cp_text}"
    );
    promtool_check(&cp_text, &[]);
}

/// The id of the only plugin.
async fn plugin_id(admin: SocketAddr) -> String {
    let reply = tollgate_tests::cluster::admin(admin, "GET", "/plugins", None)
        .await
        .unwrap();
    reply.json()["data"][0]["id"].as_str().unwrap().to_string()
}

/// Runs promtool with `args` in `dir`; `None` when promtool is missing
/// outside CI (under `CI=true` a missing promtool fails the test).
fn promtool(dir: &std::path::Path, args: &[&str]) -> Option<std::process::Output> {
    match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(output) => Some(output),
        Err(error) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is required under CI: {error}"
            );
            eprintln!("skipping promtool {args:?}: {error}");
            None
        }
    }
}

#[test]
fn deploy_prometheus_config_and_alert_rules_pass_promtool() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    let check = |output: Option<std::process::Output>, what: &str| {
        if let Some(output) = output {
            assert!(
                output.status.success(),
                "{what}:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    };
    check(
        promtool(&deploy, &["check", "rules", "alerts.yml"]),
        "check rules",
    );
    // Each alert fires on a synthetic cluster in trouble (alerts.test.yml).
    check(
        promtool(&deploy, &["test", "rules", "alerts.test.yml"]),
        "test rules",
    );
    // The scrape config, with its token file pointed at one that exists.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin.token");
    std::fs::write(&token, "token\n").unwrap();
    let config = std::fs::read_to_string(deploy.join("prometheus.yml"))
        .unwrap()
        .replace("/etc/tollgate/admin.token", token.to_str().unwrap());
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(deploy.join("alerts.yml"), dir.path().join("alerts.yml")).unwrap();
    check(
        promtool(dir.path(), &["check", "config", "prometheus.yml"]),
        "check config",
    );
}

#[test]
fn deploy_grafana_dashboard_queries_parse_and_name_documented_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/tollgate.json")).unwrap(),
    )
    .unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 20, "{exprs:?}");
    for expr in &exprs {
        for (at, _) in expr.match_indices("tollgate_") {
            let rest = &expr[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            let name = rest[..end].trim_end_matches("_bucket");
            assert!(
                readme.contains(name),
                "{name} (in {expr}) is not in README.md's metric list"
            );
        }
    }
    // Every query is valid PromQL once Grafana's variables are filled in:
    // promtool checks them as recording rules.
    let rules: Vec<serde_json::Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, expr)| {
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace("$instance", ".*")
                .replace("$service", ".*")
                .replace("$route", ".*");
            json!({"record": format!("dashboard:query_{i}"), "expr": expr})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(dir.path().join("queries.yml"), file.to_string()).unwrap();
    if let Some(output) = promtool(dir.path(), &["check", "rules", "queries.yml"]) {
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kong_prefix_on_the_control_plane_gives_kongs_data_plane_families() {
    use clap::Parser as _;
    use tollgate_control_plane::settings::{Cli, Command as CpCommand};
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    let db = TestDatabase::create().await.unwrap();
    let argv = [
        "tollgate-cp",
        "serve",
        "--database-url",
        &db.url,
        "--admin-listen",
        "127.0.0.1:0",
        "--cluster-listen",
        "127.0.0.1:0",
        "--cluster-ca",
        &pki.file("ca.crt"),
        "--cluster-cert",
        &pki.file("cp.crt"),
        "--cluster-key",
        &pki.file("cp.key"),
        "--metrics-prefix",
        "kong",
    ];
    let CpCommand::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("not serve");
    };
    let settings = args.resolve().unwrap();
    let cp = tollgate_control_plane::start(&settings).await.unwrap();
    let admin: SocketAddr = cp.admin_addr().parse().unwrap();
    let dp = DataPlaneProcess::start(
        &pki,
        &DataPlaneOptions::new(cp.cluster_addr().unwrap(), dir.path()),
    )
    .unwrap();
    let version = admin_write(
        admin,
        "POST",
        "/services",
        json!({"name": "s", "url": "http://127.0.0.1:9"}),
    )
    .await
    .unwrap();
    wait_in_sync(admin, &dp.node_id, version).await.unwrap();
    let identity = format!(r#"node_id="{}",hostname="#, dp.node_id);
    let (_, text) = scrape(admin, "/metrics").await;
    for family in [
        "# TYPE kong_data_plane_last_seen gauge\n",
        "# TYPE kong_data_plane_config_hash gauge\n",
        "# TYPE kong_data_plane_version_compatible gauge\n",
        "# TYPE kong_nginx_requests_total gauge\n",
        "# TYPE kong_datastore_reachable gauge\n",
    ] {
        assert!(text.contains(family), "missing {family:?} in\n{text}");
    }
    for series in [
        "kong_data_plane_last_seen{",
        "kong_data_plane_config_hash{",
        "kong_data_plane_version_compatible{",
    ] {
        assert!(
            text.lines()
                .any(|line| line.starts_with(series) && line.contains(&identity)),
            "no {series} for the data plane in\n{text}"
        );
    }
    assert!(text.contains(r#",kong_version=""#), "{text}");
    assert_eq!(
        sample(&text, "kong_datastore_reachable"),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains("tollgate_"), "{text}");
    promtool_check(
        &text,
        &["kong_nginx_connections_total", "kong_nginx_requests_total"],
    );
    drop(dp);
    cp.shutdown().await.unwrap();
}

/// The plugins' background machinery on `/metrics`: http-log entries sent
/// and queue depth, a JWKS source's fetches and failures (a collector
/// answering 200 with no key set), the rate-limiting local table's
/// evictions; opentelemetry's exporter families are in the opentelemetry
/// tests. The exposition still passes promtool.
#[tokio::test]
async fn plugin_machinery_counters_are_exported() {
    use tollgate_tests::collector::Collector;
    let upstream = echo::spawn().await.unwrap();
    let collector = Collector::start().await.unwrap();
    let jwks_uri = collector.url("/jwks.json");
    let dp = ConfigBuilder::routed(upstream, 10, &["/logged"])
        .route(11, Some(1), &["/jwt"], json!({}))
        .route(12, Some(1), &["/limited"], json!({}))
        .plugin(
            20,
            "http-log",
            json!({"http_endpoint": collector.url("/logs")}),
            Scope::route(10),
        )
        .plugin(
            21,
            "jwt",
            json!({"jwks_uri": format!("{jwks_uri}?token=secret")}),
            Scope::route(11),
        )
        .plugin(
            22,
            "rate-limiting",
            json!({"minute": 1000, "policy": "local"}),
            Scope::route(12),
        )
        .start()
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    for path in ["/logged", "/logged", "/limited"] {
        assert_eq!(get(proxy, path).await.unwrap().status, 200);
    }
    let text = wait_for_sample(
        dp.status_addr(),
        "/metrics",
        "tollgate_http_log_entries_sent_total",
        2.0,
    )
    .await;
    let series = |s: &str| sample(&text, s);
    assert_eq!(
        series("tollgate_http_log_entries_dropped_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        series("tollgate_http_log_queued_entries"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(series("tollgate_http_log_queues"), Some(1.0), "{text}");
    assert_eq!(
        series("tollgate_rate_limiting_local_evictions_total"),
        Some(0.0),
        "{text}"
    );
    // The compile-time fetch got a 200 without a key set: a failure, no
    // keys, no success time. The label has no query (it may hold a token).
    let source = format!(r#"{{jwks_uri="{jwks_uri}"}}"#);
    let text = wait_for_sample(
        dp.status_addr(),
        "/metrics",
        &format!("tollgate_jwks_fetch_failures_total{source}"),
        1.0,
    )
    .await;
    assert_eq!(
        sample(&text, &format!("tollgate_jwks_fetches_total{source}")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("tollgate_jwks_keys{source}")),
        Some(0.0),
        "{text}"
    );
    assert!(
        !text.contains("tollgate_jwks_last_success_timestamp_seconds{"),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
    promtool_check(&text, &[]);
    dp.shutdown().await;
}
