//! End-to-end: a data plane in process in front of the echo upstream — routing,
//! path handling, the headers added both ways, Kong's error bodies, limits,
//! status endpoints.

use serde_json::json;
use std::time::Duration;
use tollgate_data_plane::Settings;
use tollgate_tests::dataplane::{self, get, get_with, send, ConfigBuilder};
use tollgate_tests::echo;

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[tokio::test]
async fn proxies_to_the_service_with_kong_headers() {
    let upstream = echo::spawn().await.unwrap();
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({"path": "/api"}))
        .route(10, Some(1), &["/echo"], json!({}))
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    let reply = get(proxy, "/echo/things?x=1&y").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = reply.json();
    assert_eq!(seen["uri"], "/api/things?x=1&y");
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(reply.upstream_header("host"), upstream.to_string());
    assert_eq!(reply.upstream_header("x-forwarded-for"), "127.0.0.1");
    assert_eq!(reply.upstream_header("x-real-ip"), "127.0.0.1");
    assert_eq!(reply.upstream_header("x-forwarded-proto"), "http");
    assert_eq!(reply.upstream_header("x-forwarded-host"), "127.0.0.1");
    assert_eq!(
        reply.upstream_header("x-forwarded-port"),
        proxy.port().to_string()
    );
    assert_eq!(reply.upstream_header("x-forwarded-path"), "/echo/things");
    assert_eq!(reply.upstream_header("x-forwarded-prefix"), "/echo");
    assert_eq!(
        reply.upstream_header("via"),
        format!("1.1 tollgate/{VERSION}")
    );
    let request_id = reply.header("x-tollgate-request-id").to_string();
    assert_eq!(request_id.len(), 32);
    assert_eq!(reply.upstream_header("x-tollgate-request-id"), request_id);

    assert_eq!(reply.header("via"), format!("1.1 tollgate/{VERSION}"));
    assert_eq!(reply.header("server"), format!("tollgate/{VERSION}"));
    assert!(reply
        .header("x-tollgate-upstream-latency")
        .parse::<u64>()
        .is_ok());
    assert!(reply
        .header("x-tollgate-proxy-latency")
        .parse::<u64>()
        .is_ok());
    assert!(dp.shutdown().await);
}

#[tokio::test]
async fn path_handling_and_host_rules() {
    let upstream = echo::spawn().await.unwrap();
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .service(2, upstream, json!({"path": "/base/"}))
        .route(10, Some(1), &["/strip"], json!({}))
        .route(11, Some(1), &["/keep"], json!({"strip_path": false}))
        .route(12, Some(2), &["/slash"], json!({}))
        .route(13, Some(1), &["/preserve"], json!({"preserve_host": true}))
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let cases = [
        ("/strip", "/"),
        ("/strip/", "/"),
        ("/strip/a/b", "/a/b"),
        ("/stripped", "/ped"),
        ("/keep/a", "/keep/a"),
        ("/slash", "/base"),
        ("/slash/", "/base/"),
        ("/slash/x", "/base/x"),
        ("/strip//a/./b/../c", "/a/c"),
        ("/strip/%7Euser", "/~user"),
    ];
    for (path, expected) in cases {
        let reply = get(proxy, path).await.unwrap();
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(reply.json()["uri"], expected, "{path}");
    }
    let reply = send(
        proxy,
        get_with("/preserve", &[("host", "Client.Example:8080")]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.upstream_header("host"), "Client.Example:8080");
    assert_eq!(reply.upstream_header("x-forwarded-host"), "client.example");
    let reply = send(
        proxy,
        get_with("/keep", &[("host", "client.example")]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.upstream_header("host"), upstream.to_string());
    dp.shutdown().await;
}

#[tokio::test]
async fn kong_errors_for_no_route_and_no_service() {
    let upstream = echo::spawn().await.unwrap();
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(10, None, &["/orphan"], json!({}))
        .route(11, Some(1), &["/secure"], json!({"protocols": ["https"]}))
        .route(
            12,
            Some(1),
            &["/moved"],
            json!({"protocols": ["https"], "https_redirect_status_code": 301}),
        )
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    let reply = get(proxy, "/nothing").await.unwrap();
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.header("content-type"),
        "application/json; charset=utf-8"
    );
    let body = reply.json();
    assert_eq!(body["message"], "no Route matched with those values");
    assert_eq!(body["request_id"], reply.header("x-tollgate-request-id"));
    assert_eq!(reply.header("server"), format!("tollgate/{VERSION}"));

    let reply = get(proxy, "/orphan").await.unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.json()["message"],
        "no Service found with those values"
    );

    let reply = send(
        proxy,
        get_with("/nothing", &[("accept", "text/plain")]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 404);
    assert!(reply
        .text()
        .starts_with("no Route matched with those values\nrequest_id: "));

    let reply = get(proxy, "/secure").await.unwrap();
    assert_eq!(reply.status, 426);
    assert_eq!(reply.json()["message"], "Please use HTTPS protocol");
    assert_eq!(reply.header("upgrade"), "TLS/1.2, HTTP/1.1");

    let reply = send(
        proxy,
        get_with("/moved/x?q=1", &[("host", "api.test:8000")]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), "https://api.test/moved/x?q=1");
    dp.shutdown().await;
}

#[tokio::test]
async fn client_limits_answer_414_and_431() {
    let upstream = echo::spawn().await.unwrap();
    let config = dataplane::one_route(upstream, json!({})).unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let limit = Duration::from_secs(5);

    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let answer = dataplane::raw_exchange(proxy, long_uri.as_bytes(), limit)
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    assert!(answer.contains("URI too long"), "{answer}");

    let big_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..5)
            .map(|i| format!("X-Big-{i}: {}\r\n", "b".repeat(7000)))
            .collect::<String>()
    );
    let answer = dataplane::raw_exchange(proxy, big_headers.as_bytes(), limit)
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..150)
            .map(|i| format!("X-H-{i}: v\r\n"))
            .collect::<String>()
    );
    let answer = dataplane::raw_exchange(proxy, many_headers.as_bytes(), limit)
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let huge_head = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200_000));
    let answer = dataplane::raw_exchange(proxy, huge_head.as_bytes(), limit)
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 4"), "bounded: {answer}");

    let fine = dataplane::raw_exchange(
        proxy,
        b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        limit,
    )
    .await
    .unwrap();
    assert!(fine.starts_with("HTTP/1.1 200"), "{fine}");
    dp.shutdown().await;
}

#[tokio::test]
async fn slow_request_heads_are_cut_off() {
    let upstream = echo::spawn().await.unwrap();
    let config = dataplane::one_route(upstream, json!({})).unwrap();
    let mut settings = Settings::loopback();
    settings.limits.header_timeout = Duration::from_millis(300);
    let dp = dataplane::start(settings, &config).await.unwrap();
    let started = std::time::Instant::now();
    let answer = dataplane::raw_exchange(
        dp.proxy_addrs()[0],
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let waited = started.elapsed();
    assert!(answer.is_empty(), "{answer}");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    dp.shutdown().await;
}

#[tokio::test]
async fn status_and_readiness() {
    let dp = tollgate_data_plane::start(&Settings::loopback())
        .await
        .unwrap();
    let status = dp.status_addr();
    let ready = get(status, "/status/ready").await.unwrap();
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.json(),
        json!({"message": "no configuration available"})
    );
    assert_eq!(get(dp.proxy_addrs()[0], "/x").await.unwrap().status, 404);

    let upstream = echo::spawn().await.unwrap();
    let config = dataplane::one_route(upstream, json!({})).unwrap();
    let applied = dp.gateway().apply_local(&config).unwrap();
    let ready = get(status, "/status/ready").await.unwrap();
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json(), json!({"message": "ready"}));
    assert_eq!(get(dp.proxy_addrs()[0], "/x").await.unwrap().status, 200);

    let body = get(status, "/status").await.unwrap().json();
    assert_eq!(body["configuration_hash"], applied.hash.as_str());
    assert_eq!(body["config"]["version"], applied.version);
    assert!(body["server"]["total_requests"].as_u64().unwrap() >= 2);
    assert!(body["server"]["connections_accepted"].as_u64().unwrap() >= 2);
    assert!(body["uptime_seconds"].is_u64());
    assert_eq!(get(status, "/nope").await.unwrap().status, 404);
    dp.shutdown().await;
}

#[tokio::test]
async fn stalled_request_bodies_are_408() {
    let upstream = echo::spawn().await.unwrap();
    let config = dataplane::one_route(upstream, json!({})).unwrap();
    let mut settings = Settings::loopback();
    settings.limits.body_timeout = Duration::from_millis(300);
    let dp = dataplane::start(settings, &config).await.unwrap();
    let started = std::time::Instant::now();
    let answer = dataplane::raw_exchange(
        dp.proxy_addrs()[0],
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a part",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("Request timeout"), "{answer}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // A body that keeps arriving is not cut off.
    let reply = send(
        dp.proxy_addrs()[0],
        http::Request::post("/upload")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"complete",
            )))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body"], "complete");
    dp.shutdown().await;
}
