//! End-to-end: a real Prometheus (the Debian `prometheus` binary) scrapes a
//! `tollgate-cp` and four `tollgate-dp` processes: two with the default
//! names and two with `--metrics-prefix kong`. Its config is deploy/'s
//! `prometheus.yml` with the addresses of this cluster (the data planes
//! through the `file_sd` file it names), a 1 s scrape interval and deploy/'s
//! alert rules loaded. After two waves of traffic through routes under a
//! global `prometheus` plugin with every switch on (proxied, 5xx, denied
//! 401, per consumer, rate-limited through the real Redis), every PromQL
//! expression is evaluated through Prometheus's query API:
//!
//! - every query of deploy/grafana's dashboards must return data (a
//!   non-empty result with at least one number that is not NaN);
//! - every alert rule of deploy/prometheus/alerts.yml is evaluated as well,
//!   but an alert expression is a condition that is false on a healthy
//!   cluster, so its result may be empty: then each series selector in it
//!   (the metric with its matchers, as written) must return data instead.
//!   Prometheus must also report every loaded rule evaluated without error,
//!   and `promtool check rules` must pass;
//! - every query of Kong's official dashboard 7424 (tests/data/grafana,
//!   vendored from Kong's repository) must return data from the `kong`
//!   data planes, except those reading a metric listed in
//!   [`KONG_NOT_EXPORTED`] with the reason; those must return nothing (so
//!   the list stays true).
//!
//! In every expression of every dashboard the series selectors must select
//! data too, so an `or vector(0)` cannot hide a missing metric. Grafana's
//! template variables are filled in as Grafana would: each `label_values()`
//! query of the dashboard is run against Prometheus and the variable becomes
//! the regex of all its values ("All"); `$__rate_interval` and `$__interval`
//! become `1m`, `$__range` `1h`.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use tollgate_tests::cluster::{
    admin_write, wait_in_sync, wait_until, ControlPlaneProcess, DataPlaneOptions, DataPlaneProcess,
    Pki, TestDatabase,
};
use tollgate_tests::dataplane::{get, get_with, send};
use tollgate_tests::echo;
use tollgate_tests::prometheus::{self, Prometheus};

/// Kong dashboard expressions that cannot return data, by the metric that
/// makes them so, and why.
const KONG_NOT_EXPORTED: &[(&str, &str)] = &[
    (
        "kong_upstream_target_health",
        "Tollgate has no upstream/target entities or health checks yet; upstream_health_metrics exports nothing",
    ),
    (
        "kong_memory_lua_shared_dict_bytes",
        "Tollgate runs no Lua: there are no Lua shared dictionaries",
    ),
    (
        "kong_memory_lua_shared_dict_total_bytes",
        "Tollgate runs no Lua: there are no Lua shared dictionaries",
    ),
    (
        "kong_memory_workers_lua_vms_bytes",
        "Tollgate runs no Lua: there are no Lua VMs",
    ),
];

/// What Grafana's time macros become: a minute covers both waves of traffic
/// at a 1 s scrape interval.
const MACROS: &[(&str, &str)] = &[
    ("$__rate_interval", "1m"),
    ("$__interval", "1m"),
    ("$__range", "1h"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `(panel title, expr)` of a dashboard, rows' nested panels included.
fn panel_exprs(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("(untitled)").to_string();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.clone(), expr.to_string()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The `(name, label_values query)` template variables of a dashboard.
fn template_queries(dashboard: &Value) -> Vec<(String, String)> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|variable| variable["type"] == "query")
        .filter_map(|variable| {
            let name = variable["name"].as_str()?;
            let query = variable["query"]
                .as_str()
                .or_else(|| variable["query"]["query"].as_str())?;
            Some((name.to_string(), query.to_string()))
        })
        .collect()
}

/// `label_values(selector, label)` (or `label_values(label)`) as
/// `(selector, label)`.
fn parse_label_values(query: &str) -> Option<(String, String)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    match inner.rsplit_once(',') {
        Some((selector, label)) => Some((selector.trim().to_string(), label.trim().to_string())),
        None => Some((
            format!("{{{}!=\"\"}}", inner.trim()),
            inner.trim().to_string(),
        )),
    }
}

/// A regex matching exactly `values` ("All" in Grafana), escaped for a
/// PromQL string.
fn all_of(values: &[String]) -> String {
    let escaped: Vec<String> = values
        .iter()
        .map(|value| {
            let mut out = String::new();
            for c in value.chars() {
                if "\\.+*?()|[]{}^$".contains(c) {
                    out.push_str("\\\\");
                }
                out.push(c);
            }
            out
        })
        .collect();
    format!("({})", escaped.join("|"))
}

/// `expr` with Grafana's macros and `variables` filled in.
fn substitute(expr: &str, variables: &[(String, String)]) -> String {
    let mut out = expr.to_string();
    for (macro_name, value) in MACROS {
        out = out.replace(macro_name, value);
    }
    let mut variables: Vec<&(String, String)> = variables.iter().collect();
    // Longest first, so `$route` never eats the start of `$routes`.
    variables.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, value) in variables {
        out = out.replace(&format!("${{{name}}}"), value);
        out = out.replace(&format!("${name}"), value);
    }
    out
}

/// Resolves the template variables of `dashboard` against Prometheus, in
/// order (a later query may use an earlier variable). A variable whose query
/// reads an excluded metric may be empty; any other must have values.
async fn resolve_variables(prom: &Prometheus, dashboard: &Value) -> Vec<(String, String)> {
    let mut variables: Vec<(String, String)> = Vec::new();
    for (name, query) in template_queries(dashboard) {
        let query = substitute(&query, &variables);
        let (selector, label) = parse_label_values(&query)
            .unwrap_or_else(|| panic!("variable ${name}: not a label_values() query: {query}"));
        let values = prom.label_values(&selector, &label).await.unwrap();
        let excluded = KONG_NOT_EXPORTED
            .iter()
            .any(|(metric, _)| query.contains(metric));
        assert!(
            !values.is_empty() || excluded,
            "variable ${name} ({query}) has no values"
        );
        variables.push((name, all_of(&values)));
    }
    variables
}

/// Skips a quoted string starting at `at`; the index after it.
fn skip_string(chars: &[char], at: usize) -> usize {
    let quote = chars[at];
    let mut i = at + 1;
    while i < chars.len() {
        if chars[i] == '\\' && quote != '`' {
            i += 2;
            continue;
        }
        if chars[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

/// The series selectors of a PromQL expression whose metric names start
/// with `prefix`: each name with its `{…}` matchers as written (strings,
/// comments and other identifiers skipped).
fn selectors(expr: &str, prefix: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i);
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            if !name.starts_with(prefix) || c.is_ascii_digit() {
                continue;
            }
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let mut selector = name;
            if j < chars.len() && chars[j] == '{' {
                let open = j;
                j += 1;
                while j < chars.len() && chars[j] != '}' {
                    if matches!(chars[j], '"' | '\'' | '`') {
                        j = skip_string(&chars, j);
                    } else {
                        j += 1;
                    }
                }
                let close = j.min(chars.len() - 1);
                selector.extend(&chars[open..=close]);
                i = close + 1;
            }
            out.push(selector);
        } else {
            i += 1;
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether a query result holds a number that is not NaN.
fn has_number(result: &[Value]) -> bool {
    result.iter().any(|sample| {
        let value = sample.get("value").unwrap_or(sample);
        value[1]
            .as_str()
            .and_then(|text| text.parse::<f64>().ok())
            .is_some_and(|number| !number.is_nan())
    })
}

/// Evaluates every dashboard expression (and each of its selectors);
/// returns what failed. Expressions reading an excluded metric must return
/// nothing instead.
async fn check_dashboard(
    prom: &Prometheus,
    file: &Path,
    prefix: &str,
    excluded: &[(&str, &str)],
) -> Vec<String> {
    let dashboard = read_json(file);
    let variables = resolve_variables(prom, &dashboard).await;
    let exprs = panel_exprs(&dashboard);
    assert!(exprs.len() >= 10, "{}: only {exprs:?}", file.display());
    let mut failures = Vec::new();
    for (title, raw) in exprs {
        let expr = substitute(&raw, &variables);
        let result = match prom.query(&expr).await {
            Ok(result) => result,
            Err(error) => {
                failures.push(format!("{title}: {error}"));
                continue;
            }
        };
        if let Some((metric, reason)) = excluded.iter().find(|(metric, _)| raw.contains(metric)) {
            if !result.is_empty() {
                failures.push(format!(
                    "{title}: listed as empty ({metric}: {reason}) but returns data: {expr}"
                ));
            }
            continue;
        }
        if !has_number(&result) {
            failures.push(format!("{title}: no data: {expr} -> {result:?}"));
        }
        for selector in selectors(&expr, prefix) {
            match prom.query(&selector).await {
                Ok(result) if !result.is_empty() => {}
                Ok(_) => failures.push(format!("{title}: selector {selector} selects nothing")),
                Err(error) => failures.push(format!("{title}: {error}")),
            }
        }
    }
    failures
}

/// deploy/'s alert rules: every rule's expression evaluates; an empty one
/// (the condition is false on a healthy cluster) must have every selector
/// select data.
async fn check_alert_rules(prom: &Prometheus, rules: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    let mut count = 0;
    for group in rules["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            count += 1;
            let name = rule["alert"]
                .as_str()
                .or_else(|| rule["record"].as_str())
                .unwrap_or("(unnamed)");
            let expr = rule["expr"].as_str().unwrap_or_default();
            let result = match prom.query(expr).await {
                Ok(result) => result,
                Err(error) => {
                    failures.push(format!("rule {name}: {error}"));
                    continue;
                }
            };
            let found = selectors(expr, "tollgate_");
            if found.is_empty() {
                failures.push(format!("rule {name}: no tollgate_ metric in {expr}"));
            }
            if !result.is_empty() {
                continue;
            }
            for selector in found {
                match prom.query(&selector).await {
                    Ok(result) if !result.is_empty() => {}
                    Ok(_) => failures.push(format!(
                        "rule {name}: its selector {selector} selects nothing"
                    )),
                    Err(error) => failures.push(format!("rule {name}: {error}")),
                }
            }
        }
    }
    assert!(count >= 5, "{rules}");
    failures
}

/// deploy/'s Prometheus config pointed at this cluster: 1 s scrapes, the
/// control plane's static target, the default-named data planes in the
/// `file_sd` file the config names, a `kong-dp` job for the others, the
/// alert rules next to it. Returns the config's path.
fn write_scrape_config(
    dir: &Path,
    control_plane: SocketAddr,
    ours: &[SocketAddr],
    kong: &[SocketAddr],
) -> PathBuf {
    let deploy = root().join("deploy/prometheus");
    let mut config = read_yaml(&deploy.join("prometheus.yml"));
    config["global"]["scrape_interval"] = json!("1s");
    config["global"]["scrape_timeout"] = json!("1s");
    config["global"]["evaluation_interval"] = json!("1s");
    let token = dir.join("admin.token");
    std::fs::write(
        &token,
        "unused: this control plane has no Admin API token\n",
    )
    .unwrap();
    let mut jobs_seen = Vec::new();
    for job in config["scrape_configs"].as_array_mut().unwrap() {
        let name = job["job_name"].as_str().unwrap().to_string();
        match name.as_str() {
            "tollgate-cp" => {
                job["static_configs"] = json!([{"targets": [control_plane.to_string()]}]);
                job["authorization"]["credentials_file"] = json!(token.display().to_string());
            }
            "tollgate-dp" => {
                let files = job["file_sd_configs"][0]["files"][0].as_str().unwrap();
                let file = dir.join(files.replace('*', ""));
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                let targets: Vec<String> = ours.iter().map(ToString::to_string).collect();
                std::fs::write(&file, json!([{"targets": targets}]).to_string()).unwrap();
            }
            other => panic!("deploy/prometheus/prometheus.yml: unexpected job {other}"),
        }
        jobs_seen.push(name);
    }
    assert_eq!(jobs_seen, ["tollgate-cp", "tollgate-dp"]);
    let kong: Vec<String> = kong.iter().map(ToString::to_string).collect();
    config["scrape_configs"]
        .as_array_mut()
        .unwrap()
        .push(json!({"job_name": "kong-dp", "metrics_path": "/metrics", "static_configs": [{"targets": kong}]}));
    std::fs::copy(deploy.join("alerts.yml"), dir.join("alerts.yml")).unwrap();
    let path = dir.join("prometheus.yml");
    // JSON is YAML.
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// One wave of traffic through a data plane: proxied 200s, a 502 from a
/// dead upstream, a consumer's requests and a 401, rate-limited requests
/// (through Redis). Returns how many requests the plugin records.
async fn wave(proxy: SocketAddr) -> u64 {
    for _ in 0..3 {
        assert_eq!(get(proxy, "/ok").await.unwrap().status, 200);
    }
    assert_eq!(get(proxy, "/down").await.unwrap().status, 502);
    for _ in 0..2 {
        let as_alice = get_with("/auth", &[("apikey", "alice-key")]).unwrap();
        assert_eq!(send(proxy, as_alice).await.unwrap().status, 200);
    }
    assert_eq!(get(proxy, "/auth").await.unwrap().status, 401);
    for _ in 0..2 {
        assert_eq!(get(proxy, "/limited").await.unwrap().status, 200);
    }
    9
}

/// Waits until Prometheus holds `expected` recorded requests for each data
/// plane (the log phase, then a scrape, come after the responses).
async fn wait_scraped(prom: &Prometheus, metric: &str, planes: &[SocketAddr], expected: u64) {
    let query = format!("sum by (instance) ({metric})");
    let expected = expected.to_string();
    let waited = wait_until(&format!("{query} = {expected} on {planes:?}"), || async {
        let result = prom.query(&query).await?;
        let all = planes.iter().all(|plane| {
            result.iter().any(|sample| {
                sample["metric"]["instance"] == plane.to_string()
                    && sample["value"][1].as_str() == Some(expected.as_str())
            })
        });
        Ok(all.then_some(()))
    })
    .await;
    if let Err(error) = waited {
        panic!("{error}: {:?}", prom.query(&query).await);
    }
}

fn redis_address() -> (String, u16) {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rest = url.trim_start_matches("redis://");
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "6379"));
    (host.to_string(), port.parse().unwrap_or(6379))
}

/// `promtool check rules` on deploy's alert rules, with the promtool next to
/// the Prometheus binary when there is one.
fn promtool_check_rules(prometheus: &Path) {
    let beside = prometheus.with_file_name("promtool");
    let promtool = if beside.is_file() {
        beside
    } else {
        PathBuf::from("promtool")
    };
    let output = Command::new(&promtool)
        .args(["check", "rules", "alerts.yml"])
        .current_dir(root().join("deploy/prometheus"))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", promtool.display()));
    assert!(
        output.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_evaluates_every_dashboard_and_alert_expression() {
    let Some(binary) = prometheus::binary() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "prometheus is required under CI (Debian package prometheus; tests/scripts/ensure-services.sh installs it)"
        );
        eprintln!("skipping: no prometheus binary");
        return;
    };
    promtool_check_rules(&binary);

    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    let db = TestDatabase::create().await.unwrap();
    let upstream = echo::spawn().await.unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let cp = ControlPlaneProcess::start(&db.url, &pki, "127.0.0.1:0").unwrap();
    let admin = cp.admin;
    let write = |method: &'static str, path: &'static str, body: Value| async move {
        admin_write(admin, method, path, body).await.unwrap()
    };
    write(
        "POST",
        "/services",
        json!({"name": "echo-service", "url": format!("http://{upstream}")}),
    )
    .await;
    write(
        "POST",
        "/services",
        json!({"name": "down-service", "url": format!("http://{dead_addr}"), "retries": 0}),
    )
    .await;
    write(
        "POST",
        "/services/echo-service/routes",
        json!({"name": "ok-route", "paths": ["/ok"]}),
    )
    .await;
    write(
        "POST",
        "/services/down-service/routes",
        json!({"name": "down-route", "paths": ["/down"]}),
    )
    .await;
    write(
        "POST",
        "/services/echo-service/routes",
        json!({"name": "auth-route", "paths": ["/auth"]}),
    )
    .await;
    write(
        "POST",
        "/services/echo-service/routes",
        json!({"name": "limited-route", "paths": ["/limited"]}),
    )
    .await;
    write("POST", "/consumers", json!({"username": "alice"})).await;
    write(
        "POST",
        "/consumers/alice/key-auth",
        json!({"key": "alice-key"}),
    )
    .await;
    write(
        "POST",
        "/routes/auth-route/plugins",
        json!({"name": "key-auth"}),
    )
    .await;
    let (redis_host, redis_port) = redis_address();
    write(
        "POST",
        "/routes/limited-route/plugins",
        json!({"name": "rate-limiting", "config": {
            "minute": 100000, "policy": "redis",
            "redis": {"host": redis_host, "port": redis_port, "timeout": 1000}
        }}),
    )
    .await;
    let version = write(
        "POST",
        "/plugins",
        json!({"name": "prometheus", "config": {
            "per_consumer": true, "status_code_metrics": true, "latency_metrics": true,
            "bandwidth_metrics": true, "upstream_health_metrics": true
        }}),
    )
    .await;

    let start_plane = |name: &str, kong: bool| {
        let options = DataPlaneOptions {
            control_plane: cp.cluster,
            certificate: "dp".into(),
            cache_dir: dir.path().join(format!("{name}-cache")),
            node_id: uuid::Uuid::new_v4().to_string(),
        };
        let extra: &[&str] = if kong {
            &["--metrics-prefix", "kong"]
        } else {
            &[]
        };
        DataPlaneProcess::start_with_args(&pki, &options, extra).unwrap()
    };
    let planes = [
        start_plane("ours-1", false),
        start_plane("ours-2", false),
        start_plane("kong-1", true),
        start_plane("kong-2", true),
    ];
    for plane in &planes {
        wait_in_sync(admin, &plane.node_id, version).await.unwrap();
    }
    let ours: Vec<SocketAddr> = planes[..2].iter().map(|p| p.status).collect();
    let kong: Vec<SocketAddr> = planes[2..].iter().map(|p| p.status).collect();

    let config = write_scrape_config(dir.path(), admin, &ours, &kong);
    let prom = Prometheus::start(&binary, &config, &dir.path().join("tsdb"))
        .await
        .unwrap();
    prom.wait_for_targets_up(1 + planes.len()).await.unwrap();

    // Two waves, each waited for in Prometheus, so every counter has risen
    // between two scrapes and every rate() has something to show.
    let mut recorded = 0;
    for _ in 0..2 {
        let mut per_plane = 0;
        for plane in &planes {
            per_plane = wave(plane.proxy).await;
        }
        recorded += per_plane;
        wait_scraped(&prom, "tollgate_http_requests_total", &ours, recorded).await;
        wait_scraped(&prom, "kong_http_requests_total", &kong, recorded).await;
    }

    let mut failures = Vec::new();
    let dashboards = root().join("deploy/grafana");
    let mut found = 0;
    for entry in std::fs::read_dir(&dashboards).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            found += 1;
            failures.extend(check_dashboard(&prom, &path, "tollgate_", &[]).await);
        }
    }
    assert!(found >= 1, "no dashboards in {}", dashboards.display());
    let rules = read_yaml(&root().join("deploy/prometheus/alerts.yml"));
    failures.extend(check_alert_rules(&prom, &rules).await);
    failures.extend(
        check_dashboard(
            &prom,
            &root().join("tests/data/grafana/kong-official.json"),
            "kong_",
            KONG_NOT_EXPORTED,
        )
        .await,
    );

    // Prometheus itself evaluated every alert rule it loaded, without error.
    let rule_count = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| group["rules"].as_array().map_or(0, Vec::len))
        .sum::<usize>();
    let loaded = wait_until("every alert rule evaluated", || async {
        let loaded = prom.rules().await?;
        let evaluated = loaded.iter().all(|rule| {
            rule["lastEvaluation"]
                .as_str()
                .is_some_and(|at| !at.starts_with("0001-"))
        });
        Ok((loaded.len() == rule_count && evaluated).then_some(loaded))
    })
    .await
    .unwrap();
    for rule in loaded {
        if rule["health"] != "ok" {
            failures.push(format!(
                "Prometheus: rule {} is {}: {}",
                rule["name"], rule["health"], rule["lastError"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn selectors_are_found_outside_strings_and_comments() {
    let expr =
        "sum(rate(kong_http_requests_total{service=~\"kong_x\", route=~\"(a|b)\"}[1m])) by (le)\n\
                # kong_not_this\n / kong_nginx_requests_total or vector(0)";
    assert_eq!(
        selectors(expr, "kong_"),
        [
            "kong_http_requests_total{service=~\"kong_x\", route=~\"(a|b)\"}",
            "kong_nginx_requests_total"
        ]
    );
    assert_eq!(
        parse_label_values("label_values(kong_nginx_connections_total,instance)"),
        Some(("kong_nginx_connections_total".into(), "instance".into()))
    );
    assert_eq!(
        substitute(
            "x{instance=~\"$instance\"}[$__rate_interval]",
            &[("instance".into(), all_of(&["127.0.0.1:1".into()]))]
        ),
        "x{instance=~\"(127\\\\.0\\\\.0\\\\.1:1)\"}[1m]"
    );
}
