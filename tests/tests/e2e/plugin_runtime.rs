//! End-to-end: the plugin runtime on an in-process data plane, with the
//! test-only plugins (`tollgate-test-*`, shared's `test-plugins` feature):
//! phase order for proxied and plugin-answered requests, consumer-scoped
//! instances selected after a consumer is identified, state and open files
//! that survive config swaps under load, and plugins that fail or panic.

use serde_json::json;
use std::path::Path;
use tollgate_data_plane::Settings;
use tollgate_tests::dataplane::{
    self, get, get_with, send, wait_for_json_lines, ConfigBuilder, Scope,
};
use tollgate_tests::echo;

const ROUTE_OK: u128 = 10;
const ROUTE_DENY: u128 = 11;

fn on_route(route: u128) -> Scope {
    Scope {
        route: Some(route),
        ..Scope::default()
    }
}

#[tokio::test]
async fn phases_run_in_order_and_log_runs_for_answered_requests() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("phases.log");
    let upstream = echo::spawn().await.unwrap();
    let recorder = json!({"path": log.to_str().unwrap(), "tag": "rec"});
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(ROUTE_OK, Some(1), &["/ok"], json!({}))
        .route(ROUTE_DENY, Some(1), &["/deny"], json!({}))
        .plugin(
            20,
            "tollgate-test-recorder",
            recorder.clone(),
            on_route(ROUTE_OK),
        )
        .plugin(21, "tollgate-test-recorder", recorder, on_route(ROUTE_DENY))
        .plugin(
            22,
            "ip-restriction",
            json!({"deny": ["127.0.0.1"]}),
            on_route(ROUTE_DENY),
        )
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    let ok = get(proxy, "/ok/x").await.unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.header("x-test-recorder"),
        "rec",
        "response phase on a proxied response"
    );
    let lines = wait_for_json_lines(&log, 1).await.unwrap();
    assert_eq!(lines[0]["phases"], json!(["access", "response"]));
    assert_eq!(lines[0]["status"], json!(200));

    // ip-restriction (priority 990) answers before the recorder (3) runs its
    // access handler; the recorder's response and log phases still run.
    let denied = get(proxy, "/deny/x").await.unwrap();
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.header("x-test-recorder"),
        "rec",
        "response phase on a 403"
    );
    let lines = wait_for_json_lines(&log, 2).await.unwrap();
    assert_eq!(lines[1]["phases"], json!(["response"]));
    assert_eq!(lines[1]["status"], json!(403));
    assert_eq!(lines[1]["plugins"], json!(["tollgate-test-recorder"]));
    dp.shutdown().await;
}

#[tokio::test]
async fn consumer_scoped_instances_apply_once_a_consumer_is_identified() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("consumers.log");
    let path = log.to_str().unwrap();
    let upstream = echo::spawn().await.unwrap();
    let alice = Scope {
        consumer: Some(300),
        ..Scope::default()
    };
    let alice_on_route = Scope {
        route: Some(ROUTE_OK),
        consumer: Some(300),
        ..Scope::default()
    };
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(ROUTE_OK, Some(1), &["/ok"], json!({}))
        .route(ROUTE_DENY, Some(1), &["/other"], json!({}))
        .consumer(300, "alice")
        .consumer(301, "bob")
        .plugin(30, "tollgate-test-fault", json!({}), Scope::default())
        .plugin(
            31,
            "tollgate-test-recorder",
            json!({"path": path, "tag": "global"}),
            Scope::default(),
        )
        .plugin(
            32,
            "tollgate-test-recorder",
            json!({"path": path, "tag": "alice"}),
            alice,
        )
        .plugin(
            33,
            "tollgate-test-recorder",
            json!({"path": path, "tag": "alice-route"}),
            alice_on_route,
        )
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let cases = [
        ("/ok/a", None, "global"),
        ("/ok/a", Some("bob"), "global"),
        ("/ok/a", Some("alice"), "alice-route"),
        ("/other/a", Some("alice"), "alice"),
        ("/other/a", None, "global"),
    ];
    for (path, consumer, expected) in cases {
        let headers: Vec<(&str, &str)> = consumer
            .map(|c| ("x-test-consumer", c))
            .into_iter()
            .collect();
        let reply = send(proxy, get_with(path, &headers).unwrap())
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("x-test-recorder"),
            expected,
            "{path} {consumer:?}"
        );
    }
    let lines = wait_for_json_lines(&log, cases.len()).await.unwrap();
    let alice_lines = lines
        .iter()
        .filter(|l| l["consumer"] == json!("alice"))
        .count();
    assert_eq!(alice_lines, 2, "the log phase sees the identified consumer");
    dp.shutdown().await;
}

/// Counts the descriptors of this process open on `path`.
fn open_descriptors(path: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target == path)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_and_an_open_log_file_survive_100_swaps_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("swaps.log");
    let upstream = echo::spawn().await.unwrap();
    let config = |generation: u32| {
        ConfigBuilder::new()
            .service(1, upstream, json!({}))
            // The route changes with every generation so each swap is a new config.
            .route(
                ROUTE_OK,
                Some(1),
                &["/ok"],
                json!({"name": format!("gen-{generation}")}),
            )
            .plugin(
                40,
                "tollgate-test-counter",
                json!({"key": "swaps"}),
                on_route(ROUTE_OK),
            )
            .plugin(
                41,
                "tollgate-test-recorder",
                json!({"path": log.to_str().unwrap(), "tag": "t"}),
                on_route(ROUTE_OK),
            )
            .build()
            .unwrap()
    };
    let dp = dataplane::start(Settings::loopback(), &config(0))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 100;
    let load: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let mut counts = Vec::with_capacity(PER_CLIENT);
                for _ in 0..PER_CLIENT {
                    let reply = get(proxy, "/ok/x").await.unwrap();
                    assert_eq!(reply.status, 200);
                    counts.push(reply.header("x-test-count").parse::<u64>().unwrap());
                }
                counts
            })
        })
        .collect();
    for generation in 1..=100 {
        dp.gateway().apply_local(&config(generation)).unwrap();
        tokio::task::yield_now().await;
    }
    let mut all = Vec::new();
    for client in load {
        let counts = client.await.unwrap();
        assert!(
            counts.windows(2).all(|w| w[0] < w[1]),
            "a swap reset the counter: {counts:?}"
        );
        all.extend(counts);
    }
    all.sort_unstable();
    let total = (CLIENTS * PER_CLIENT) as u64;
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "every request counted once"
    );

    let lines = wait_for_json_lines(&log, CLIENTS * PER_CLIENT)
        .await
        .unwrap();
    assert_eq!(
        lines.len(),
        CLIENTS * PER_CLIENT,
        "one whole line per request"
    );
    assert_eq!(
        open_descriptors(&log),
        1,
        "the file stayed open once across the swaps"
    );
    dp.shutdown().await;
}

#[tokio::test]
async fn a_failing_or_panicking_plugin_answers_500_and_the_worker_carries_on() {
    let upstream = echo::spawn().await.unwrap();
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(ROUTE_OK, Some(1), &["/ok"], json!({}))
        .plugin(50, "tollgate-test-fault", json!({}), on_route(ROUTE_OK))
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    for fault in ["panic", "error"] {
        let reply = send(
            proxy,
            get_with("/ok/x", &[("x-test-fault", fault)]).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 500, "{fault}");
        assert_eq!(
            reply.json()["message"],
            json!("An unexpected error occurred"),
            "{fault}"
        );
        let next = get(proxy, "/ok/x").await.unwrap();
        assert_eq!(next.status, 200, "after {fault}");
    }
    let status = get(dp.status_addr(), "/status").await.unwrap().json();
    assert_eq!(status["plugins"]["failures"], json!(2));
    dp.shutdown().await;
}

#[tokio::test]
async fn plugins_this_build_does_not_run_are_refused_with_their_name() {
    // A row without a runtime: a bundled plugin still to land, else the
    // test-only `tollgate-test-unsupported`.
    let unsupported = tollgate_shared::plugin::table()
        .iter()
        .find(|row| !row.supported)
        .map(|row| row.name)
        .expect("the test-plugins feature adds a row without a runtime");
    let upstream = echo::spawn().await.unwrap();
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(ROUTE_OK, Some(1), &["/ok"], json!({}))
        .plugin(60, unsupported, json!({"key": "x"}), Scope::default())
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &ConfigBuilder::new().build().unwrap())
        .await
        .unwrap();
    let errors = dp.gateway().apply_local(&config).unwrap_err();
    let text: String = errors.iter().map(ToString::to_string).collect();
    assert!(
        text.contains(&format!("plugin '{unsupported}' is not supported")),
        "{text}"
    );
    dp.shutdown().await;
}
