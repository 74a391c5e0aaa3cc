//! Micro-benchmark of `Router::find`: the same request shapes against a 10-route
//! and a 10,000-route table (distinct prefixes / hosts), in ns per lookup, and
//! the ratio between the two (the router's cost must not grow with the table).
//!
//! "same targets" sends the large table requests for the same 10 routes as the
//! small one: the algorithmic cost. "all targets" spreads requests over all
//! 10,000 routes: that adds the CPU-cache misses of touching a different
//! route's memory each time, which no index avoids.
//!
//! Run: `cargo bench -p tollgate-data-plane --bench router` (optional argument:
//! measurement time per scenario in milliseconds, default 1500).

use std::hint::black_box;
use std::time::{Duration, Instant};
use tollgate_data_plane::router::{RequestInfo, Router};
use tollgate_shared::{ForeignKey, Route, Service};
use uuid::Uuid;

const SMALL: usize = 10;
const LARGE: usize = 10_000;
/// Distinct requests cycled through, so a large table is not measured hot in cache.
const REQUESTS: usize = 4096;

fn service() -> Service {
    Service {
        id: Uuid::from_u128(1),
        created_at: 0,
        updated_at: 0,
        name: Some("svc".into()),
        retries: 5,
        protocol: "http".into(),
        host: "upstream.test".into(),
        port: 80,
        path: None,
        connect_timeout: 60_000,
        write_timeout: 60_000,
        read_timeout: 60_000,
        tags: None,
        client_certificate: None,
        tls_verify: None,
        tls_verify_depth: None,
        ca_certificates: None,
        enabled: true,
    }
}

fn route(i: usize) -> Route {
    Route {
        id: Uuid::from_u128(0x1000 + i as u128),
        created_at: 0,
        updated_at: 0,
        name: None,
        protocols: vec!["http".into(), "https".into()],
        methods: None,
        hosts: None,
        paths: None,
        headers: None,
        snis: None,
        sources: None,
        destinations: None,
        https_redirect_status_code: 426,
        regex_priority: 0,
        strip_path: true,
        preserve_host: false,
        request_buffering: true,
        response_buffering: true,
        path_handling: "v0".into(),
        service: Some(ForeignKey::from(Uuid::from_u128(1))),
        tags: None,
    }
}

/// One table shape: how route `i` looks and what request targets route `i`.
struct Scenario {
    name: &'static str,
    route: fn(usize) -> Route,
    /// (host, path) of a request for route `i`.
    request: fn(usize) -> (String, String),
}

fn prefix_route(i: usize) -> Route {
    let mut r = route(i);
    r.paths = Some(vec![format!("/svc-{i:05}/")]);
    r
}

fn host_route(i: usize) -> Route {
    let mut r = route(i);
    r.hosts = Some(vec![format!("h{i:05}.example.com")]);
    r.paths = Some(vec!["/".into()]);
    r
}

/// Kong-guide style: host + method + prefix, every fourth with a header and a
/// wildcard host, plus the same handful of regex routes in every table size.
fn mixed_route(i: usize) -> Route {
    let mut r = route(i);
    if i < 4 {
        r.paths = Some(vec![format!(r"~/legacy-{i}/(?<id>\d+)$")]);
        return r;
    }
    r.methods = Some(vec!["GET".into(), "POST".into()]);
    r.paths = Some(vec![format!("/api/v{}/svc-{i:05}", i % 3)]);
    if i & 3 == 0 {
        r.hosts = Some(vec![format!("*.t{i:05}.example.net")]);
        let mut headers = std::collections::BTreeMap::new();
        headers.insert("accept".to_owned(), vec!["*/*".to_owned()]);
        r.headers = Some(headers);
    } else {
        r.hosts = Some(vec![format!("h{i:05}.example.com")]);
    }
    r
}

fn mixed_request(i: usize) -> (String, String) {
    let i = i.max(4);
    let host = if i & 3 == 0 {
        format!("api.t{i:05}.example.net")
    } else {
        format!("h{i:05}.example.com")
    };
    (host, format!("/api/v{}/svc-{i:05}/items/42", i % 3))
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "prefix",
        route: prefix_route,
        request: |i| ("example.com".into(), format!("/svc-{i:05}/users/42")),
    },
    Scenario {
        name: "host",
        route: host_route,
        request: |i| (format!("h{i:05}.example.com"), "/users/42".into()),
    },
    Scenario {
        name: "mixed",
        route: mixed_route,
        request: mixed_request,
    },
    Scenario {
        name: "miss",
        route: prefix_route,
        request: |i| ("example.com".into(), format!("/nope-{i:05}/users/42")),
    },
];

/// xorshift64*, to spread requests over the table without a dependency.
fn spread(seed: &mut u64, n: usize) -> usize {
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
}

/// A built table and a request set over its first `targets` routes.
struct Workload {
    router: Router,
    requests: Vec<(String, String)>,
}

impl Workload {
    fn new(scenario: &Scenario, size: usize, targets: usize) -> Result<Workload, String> {
        let routes: Vec<Route> = (0..size).map(scenario.route).collect();
        let router = Router::build(&routes, &[service()]).map_err(|e| format!("{e:?}"))?;
        let mut seed = 0x9E37_79B9_7F4A_7C15;
        let requests = (0..REQUESTS)
            .map(|_| (scenario.request)(spread(&mut seed, targets.min(size))))
            .collect();
        Ok(Workload { router, requests })
    }

    fn infos<'a>(&'a self, headers: &'a http::HeaderMap) -> Vec<RequestInfo<'a>> {
        self.requests
            .iter()
            .map(|(host, path)| RequestInfo {
                method: "GET",
                host: Some(host),
                path,
                headers,
                https: false,
                sni: None,
                listener_port: 8000,
            })
            .collect()
    }
}

/// ns per `find` over one pass of at least `slice` duration.
fn time_slice(router: &Router, infos: &[RequestInfo<'_>], slice: Duration) -> f64 {
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < slice {
        for info in infos {
            black_box(router.find(black_box(info)));
        }
        ops += infos.len() as u64;
    }
    start.elapsed().as_nanos() as f64 / ops as f64
}

fn main() -> Result<(), String> {
    let budget_ms = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<u64>().ok())
        .unwrap_or(1500);
    // Small slices, interleaved, best of each: the machine's other load hits
    // all three alike and the minimum is the least disturbed figure.
    let rounds = 30;
    let slice = Duration::from_millis(budget_ms) / (rounds * 3);
    let mut headers = http::HeaderMap::new();
    headers.insert("user-agent", http::HeaderValue::from_static("bench/1.0"));
    headers.insert("accept", http::HeaderValue::from_static("*/*"));

    let mut worst_hot: f64 = 0.0;
    for scenario in SCENARIOS {
        let small = Workload::new(scenario, SMALL, SMALL)?;
        let large_hot = Workload::new(scenario, LARGE, SMALL)?;
        let large_spread = Workload::new(scenario, LARGE, LARGE)?;
        let runs = [&small, &large_hot, &large_spread].map(|w| (w, w.infos(&headers)));
        let expect_match = scenario.name != "miss";
        for (workload, infos) in &runs {
            for info in infos {
                if workload.router.find(info).is_some() != expect_match {
                    return Err(format!(
                        "{}: wrong outcome for {:?}",
                        scenario.name, info.path
                    ));
                }
            }
        }
        let mut best = [f64::INFINITY; 3];
        for _ in 0..rounds {
            for (slot, (workload, infos)) in best.iter_mut().zip(&runs) {
                *slot = slot.min(time_slice(&workload.router, infos, slice));
            }
        }
        let [small_ns, hot_ns, spread_ns] = best;
        let hot_ratio = hot_ns / small_ns;
        worst_hot = worst_hot.max(hot_ratio);
        println!(
            "router/find/{:<7} {SMALL} routes {small_ns:>7.1} ns/op | {LARGE} routes, same {SMALL} targets {hot_ns:>7.1} ns/op (ratio {hot_ratio:.3}) | {LARGE} routes, all targets {spread_ns:>7.1} ns/op (ratio {:.3})",
            scenario.name,
            spread_ns / small_ns
        );
    }
    println!("router/find worst ratio {LARGE}/{SMALL} routes (same targets): {worst_hot:.3}");
    Ok(())
}
