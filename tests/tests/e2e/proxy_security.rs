//! End-to-end: who the client is. Forwarding headers are believed only from
//! `--trusted-ips` peers, and ip-restriction judges the resolved address,
//! for IPv4, IPv6 and IPv4-mapped IPv6 peers.

use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use tollgate_data_plane::Settings;
use tollgate_tests::dataplane::{self, get, get_with, send, send_from, ConfigBuilder, Scope};
use tollgate_tests::echo;

const SPOOFED: &[(&str, &str)] = &[
    ("x-forwarded-for", "1.2.3.4"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-port", "1"),
    ("x-forwarded-path", "/evil"),
    ("x-forwarded-prefix", "/evil"),
    ("x-real-ip", "9.9.9.9"),
];

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

async fn echo_config() -> tollgate_shared::Config {
    let upstream = echo::spawn().await.unwrap();
    ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(10, Some(1), &["/fwd"], json!({}))
        .build()
        .unwrap()
}

#[tokio::test]
async fn forwarding_headers_from_untrusted_peers_are_replaced() {
    let dp = dataplane::start(Settings::loopback(), &echo_config().await)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let reply = send(proxy, get_with("/fwd/x", SPOOFED).unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let expected = [
        ("x-forwarded-for", "1.2.3.4, 127.0.0.1".to_string()),
        ("x-forwarded-proto", "http".to_string()),
        ("x-forwarded-host", "127.0.0.1".to_string()),
        ("x-forwarded-port", proxy.port().to_string()),
        ("x-forwarded-path", "/fwd/x".to_string()),
        ("x-forwarded-prefix", "/fwd".to_string()),
        ("x-real-ip", "127.0.0.1".to_string()),
    ];
    for (name, value) in expected {
        assert_eq!(reply.upstream_header(name), value, "{name}");
    }
    dp.shutdown().await;
}

#[tokio::test]
async fn forwarding_headers_from_trusted_peers_are_kept() {
    let mut settings = Settings::loopback();
    settings.trusted_ips = vec!["127.0.0.1/32".parse().unwrap()];
    let dp = dataplane::start(settings, &echo_config().await)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let reply = send(proxy, get_with("/fwd/x", SPOOFED).unwrap())
        .await
        .unwrap();
    let expected = [
        ("x-forwarded-for", "1.2.3.4, 127.0.0.1"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-port", "1"),
        ("x-forwarded-path", "/evil"),
        ("x-forwarded-prefix", "/evil"),
        ("x-real-ip", "9.9.9.9"),
    ];
    for (name, value) in expected {
        assert_eq!(reply.upstream_header(name), value, "{name}");
    }
    // Another loopback address is not in the trusted set.
    let untrusted = send_from(
        Some(ip("127.0.0.2")),
        proxy,
        get_with("/fwd/x", SPOOFED).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(untrusted.upstream_header("x-real-ip"), "127.0.0.2");
    assert_eq!(untrusted.upstream_header("x-forwarded-proto"), "http");
    dp.shutdown().await;
}

#[tokio::test]
async fn real_ip_from_forwarded_for_skips_trusted_proxies() {
    let mut settings = Settings::loopback();
    settings.trusted_ips = vec!["127.0.0.0/8".parse().unwrap()];
    settings.real_ip_header = http::HeaderName::from_static("x-forwarded-for");
    let dp = dataplane::start(settings, &echo_config().await)
        .await
        .unwrap();
    let reply = send(
        dp.proxy_addrs()[0],
        get_with(
            "/fwd",
            &[("x-forwarded-for", "6.6.6.6, 5.5.5.5, 127.0.0.9")],
        )
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.upstream_header("x-real-ip"), "5.5.5.5");
    dp.shutdown().await;
}

fn restricted_config(upstream: SocketAddr) -> tollgate_shared::Config {
    ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(10, Some(1), &["/allow10"], json!({}))
        .route(11, Some(1), &["/deny-local"], json!({}))
        .route(12, Some(1), &["/open"], json!({}))
        .route(13, Some(1), &["/custom"], json!({}))
        .route(14, Some(1), &["/v6"], json!({}))
        .plugin(
            100,
            "ip-restriction",
            json!({"allow": ["10.0.0.0/8"]}),
            Scope::route(10),
        )
        .plugin(
            101,
            "ip-restriction",
            json!({"deny": ["127.0.0.1", "::1"]}),
            Scope::route(11),
        )
        .plugin(
            102,
            "ip-restriction",
            json!({"deny": ["127.0.0.0/8"], "status": 401, "message": "go away"}),
            Scope::route(13),
        )
        .plugin(
            103,
            "ip-restriction",
            json!({"allow": ["::1/128"]}),
            Scope::route(14),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn ip_restriction_uses_the_resolved_client_address() {
    let upstream = echo::spawn().await.unwrap();
    let mut settings = Settings::loopback();
    settings.trusted_ips = vec!["127.0.0.1/32".parse().unwrap()];
    let dp = dataplane::start(settings, &restricted_config(upstream))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    // An untrusted peer cannot claim an allowed address.
    let spoofed = send_from(
        Some(ip("127.0.0.2")),
        proxy,
        get_with(
            "/allow10",
            &[("x-forwarded-for", "10.1.1.1"), ("x-real-ip", "10.1.1.1")],
        )
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(spoofed.status, 403);
    let body = spoofed.json();
    assert_eq!(body["message"], "IP address not allowed: 127.0.0.2");
    assert_eq!(body["request_id"], spoofed.header("x-tollgate-request-id"));
    assert_eq!(
        spoofed.header("content-type"),
        "application/json; charset=utf-8"
    );

    // A trusted proxy (nginx in front) vouches for the client.
    let vouched = send(
        proxy,
        get_with("/allow10", &[("x-real-ip", "10.1.1.1")]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(vouched.status, 200, "{}", vouched.text());
    assert_eq!(vouched.upstream_header("x-real-ip"), "10.1.1.1");
    let vouched_outside = send(
        proxy,
        get_with("/allow10", &[("x-real-ip", "11.1.1.1")]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(vouched_outside.status, 403);
    assert_eq!(
        vouched_outside.json()["message"],
        "IP address not allowed: 11.1.1.1"
    );

    assert_eq!(get(proxy, "/deny-local").await.unwrap().status, 403);
    let other_loopback = send_from(
        Some(ip("127.0.0.3")),
        proxy,
        get_with("/deny-local", &[]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(other_loopback.status, 200);
    assert_eq!(get(proxy, "/open").await.unwrap().status, 200);

    let custom = send(
        proxy,
        get_with("/custom", &[("accept", "text/plain")]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(custom.status, 401);
    assert!(
        custom.text().starts_with("go away\nrequest_id: "),
        "{}",
        custom.text()
    );
    dp.shutdown().await;
}

#[tokio::test]
async fn ip_restriction_on_ipv6_and_ipv4_mapped_peers() {
    let upstream = echo::spawn().await.unwrap();
    let config = restricted_config(upstream);

    let mut v6 = Settings::loopback();
    v6.proxy_listen = vec!["[::1]:0".parse().unwrap()];
    let dp = dataplane::start(v6, &config).await.unwrap();
    let proxy = dp.proxy_addrs()[0];
    assert!(proxy.is_ipv6());
    let denied = get(proxy, "/deny-local").await.unwrap();
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json()["message"], "IP address not allowed: ::1");
    let allowed = get(proxy, "/v6").await.unwrap();
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.upstream_header("x-real-ip"), "::1");
    dp.shutdown().await;

    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; they are matched as IPv4.
    let mut dual = Settings::loopback();
    dual.proxy_listen = vec!["[::]:0".parse().unwrap()];
    let dp = dataplane::start(dual, &config).await.unwrap();
    let port = dp.proxy_addrs()[0].port();
    let v4: SocketAddr = SocketAddr::new(ip("127.0.0.1"), port);
    let denied = get(v4, "/deny-local").await.unwrap();
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.json()["message"],
        "IP address not allowed: 127.0.0.1"
    );
    let open = get(v4, "/open").await.unwrap();
    assert_eq!(open.upstream_header("x-real-ip"), "127.0.0.1");
    assert_eq!(open.upstream_header("x-forwarded-for"), "127.0.0.1");
    assert_eq!(get(v4, "/v6").await.unwrap().status, 403);
    dp.shutdown().await;
}

#[tokio::test]
async fn global_and_service_plugins_apply_unless_a_route_overrides() {
    let upstream = echo::spawn().await.unwrap();
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .service(2, upstream, json!({}))
        .route(10, Some(1), &["/one"], json!({}))
        .route(11, Some(1), &["/one-open"], json!({}))
        .route(20, Some(2), &["/two"], json!({}))
        .plugin(
            100,
            "ip-restriction",
            json!({"deny": ["127.0.0.0/8"]}),
            Scope::default(),
        )
        .plugin(
            101,
            "ip-restriction",
            json!({"deny": ["10.0.0.0/8"]}),
            Scope::route(11),
        )
        .plugin(
            102,
            "ip-restriction",
            json!({"deny": ["127.0.0.0/8"], "status": 418}),
            Scope::service(2),
        )
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    assert_eq!(get(proxy, "/one").await.unwrap().status, 403);
    assert_eq!(get(proxy, "/one-open").await.unwrap().status, 200);
    assert_eq!(get(proxy, "/two").await.unwrap().status, 418);

    // Disabled instances are ignored.
    let mut disabled = config.clone();
    for plugin in &mut disabled.plugins {
        plugin.enabled = false;
    }
    dp.gateway().apply_local(&disabled).unwrap();
    assert_eq!(get(proxy, "/one").await.unwrap().status, 200);
    dp.shutdown().await;
}

#[tokio::test]
async fn a_plugin_that_cannot_compile_refuses_the_whole_config() {
    let upstream = echo::spawn().await.unwrap();
    let good = echo_config().await;
    let dp = dataplane::start(Settings::loopback(), &good).await.unwrap();
    let bad = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(10, Some(1), &["/fwd"], json!({}))
        .plugin(
            100,
            "file-log",
            json!({"path": "/nonexistent-tollgate-dir/x.log"}),
            Scope::default(),
        )
        .build()
        .unwrap();
    let errors = dp.gateway().apply_local(&bad).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("/nonexistent-tollgate-dir/x.log")),
        "{errors:?}"
    );
    // The previous config keeps serving.
    assert_eq!(get(dp.proxy_addrs()[0], "/fwd").await.unwrap().status, 200);
    let status = get(dp.status_addr(), "/status").await.unwrap().json();
    assert_eq!(status["config"]["rejected"], 1);
    dp.shutdown().await;
}
