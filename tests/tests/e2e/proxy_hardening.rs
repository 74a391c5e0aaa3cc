//! End-to-end: the edge under hostile input (issue 13, data-plane half). Each
//! case writes raw bytes on a TCP socket and checks both what the client gets
//! and what reached the upstream: one host per request, WebSocket-only
//! upgrades, request buffering and body limits, framing the proxy refuses,
//! no retry of an invalid upstream answer, counters and rate-limited
//! warnings, and the per-address connection cap.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tollgate_data_plane::{DataPlane, Settings};
use tollgate_tests::dataplane::{
    self, get, raw_exchange, read_head, send_from, wait_for_status, wait_until, ConfigBuilder,
    Scope,
};
use tollgate_tests::echo;

const LIMIT: Duration = Duration::from_secs(10);

/// A raw answer: its status code and its body.
struct RawReply {
    status: u16,
    head: String,
    body: String,
}

impl RawReply {
    fn upstream(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn upstream_header(&self, name: &str) -> Option<String> {
        self.upstream()["headers"][name]
            .as_str()
            .map(ToString::to_string)
    }
}

/// Writes `bytes` and reads everything until the proxy closes (send
/// `Connection: close`, or a request it refuses).
async fn exchange(proxy: SocketAddr, bytes: &[u8]) -> RawReply {
    let text = raw_exchange(proxy, bytes, LIMIT).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    // A chunked echo body would need de-chunking; the echo sends Content-Length.
    RawReply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

async fn status_of(dp: &DataPlane) -> Value {
    dataplane::status(dp).await.unwrap()
}

#[tokio::test]
async fn the_host_is_decided_once_and_used_everywhere() {
    let (upstream, stats) = echo::spawn_counted().await.unwrap();
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(
            10,
            Some(1),
            &["/h"],
            json!({"hosts": ["public.example"], "preserve_host": true}),
        )
        .route(11, Some(1), &["/h"], json!({"hosts": ["internal.example"]}))
        .route(12, Some(1), &["/open"], json!({}))
        .plugin(
            100,
            "ip-restriction",
            json!({"deny": ["127.0.0.1"]}),
            Scope::route(11),
        )
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    // Two Host headers: today they routed by the first and reached a
    // preserve_host upstream joined as "public.example, internal.example".
    let twice = exchange(
        proxy,
        b"GET /h HTTP/1.1\r\nHost: public.example\r\nHost: internal.example\r\n\r\n",
    )
    .await;
    assert_eq!(twice.status, 400, "{}", twice.head);
    assert!(twice.body.starts_with("Bad request"), "{}", twice.body);
    let missing = exchange(proxy, b"GET /open HTTP/1.1\r\nX-No-Host: 1\r\n\r\n").await;
    assert_eq!(missing.status, 400, "{}", missing.head);
    let invalid = exchange(proxy, b"GET /open HTTP/1.1\r\nHost: a/b\r\n\r\n").await;
    assert_eq!(invalid.status, 400, "{}", invalid.head);
    assert_eq!(stats.requests(), 0, "refused requests reached the upstream");

    // The absolute-form target decides the host, for routing (internal's
    // restriction applies) and for everything after it.
    let restricted = exchange(
        proxy,
        b"GET http://internal.example/h HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(restricted.status, 403, "{}", restricted.head);
    let public = exchange(
        proxy,
        b"GET http://public.example/h HTTP/1.1\r\nHost: internal.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(public.status, 200, "{}", public.head);
    assert_eq!(
        public.upstream_header("host").as_deref(),
        Some("public.example")
    );
    assert_eq!(
        public.upstream_header("x-forwarded-host").as_deref(),
        Some("public.example")
    );
    let with_port = exchange(
        proxy,
        b"GET /h HTTP/1.1\r\nHost: Public.Example:8000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(with_port.status, 200, "{}", with_port.head);
    assert_eq!(
        with_port.upstream_header("host").as_deref(),
        Some("Public.Example:8000")
    );
    assert_eq!(
        with_port.upstream_header("x-forwarded-host").as_deref(),
        Some("public.example")
    );
    // HTTP/1.0 may omit Host; the service's host is sent upstream.
    let old = exchange(proxy, b"GET /open HTTP/1.0\r\n\r\n").await;
    assert_eq!(old.status, 200, "{}", old.head);
    assert_eq!(old.upstream_header("host"), Some(upstream.to_string()));
    assert_eq!(stats.requests(), 3);

    // HTTP/2: `:authority` wins over a `host` header the same way.
    for (authority, host, status, upstream_host) in [
        (
            "public.example",
            "internal.example",
            200,
            Some("public.example"),
        ),
        ("internal.example", "public.example", 403, None),
    ] {
        let stream = TcpStream::connect(proxy).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = http::Request::get(format!("http://{authority}/h"))
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), status, ":authority {authority}");
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        if let Some(expected) = upstream_host {
            let echoed: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(echoed["headers"]["host"], expected);
        }
    }
    dp.shutdown().await;
}

/// An upstream that answers every request head with `answer` and counts
/// its connections.
async fn scripted_upstream(answer: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(answer).await;
                // Hold the connection until the proxy drops it.
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn only_websocket_is_forwarded_as_an_upgrade() {
    let (upstream, stats) = echo::spawn_counted().await.unwrap();
    let (switching, _) = scripted_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    )
    .await;
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .service(2, switching, json!({"retries": 0}))
        .route(10, Some(1), &["/echo"], json!({}))
        .route(11, Some(2), &["/switch"], json!({}))
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    // The echo switches whatever it is asked to: an h2c upgrade reaching it
    // would come back as a 101 and a tunnel past the route's controls.
    for upgrade in ["h2c", "websocket, h2c", "TLS/1.2"] {
        let request = format!(
            "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
             Upgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
        );
        let reply = exchange(proxy, request.as_bytes()).await;
        assert_eq!(reply.status, 200, "{upgrade}: {}", reply.head);
        let headers = &reply.upstream()["headers"];
        for name in ["upgrade", "http2-settings", "connection"] {
            assert!(
                headers[name].is_null(),
                "{upgrade}: {name} reached the upstream"
            );
        }
    }
    assert_eq!(stats.requests(), 3);

    // An upstream switching protocols on a request that asked for none.
    let unasked = exchange(
        proxy,
        b"GET /switch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(unasked.status, 502, "{}", unasked.head);
    // Nor is an h2c answer to a WebSocket request a tunnel.
    let mismatched = exchange(
        proxy,
        b"GET /switch HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n",
    )
    .await;
    assert_eq!(mismatched.status, 502, "{}", mismatched.head);
    assert_eq!(status_of(&dp).await["proxy"]["gateway_errors"], 2);
    dp.shutdown().await;
}

/// A route on `/up` that buffers request bodies (Kong's default) and one on
/// `/stream` that does not.
fn buffering_config(upstream: SocketAddr) -> tollgate_shared::Config {
    ConfigBuilder::new()
        .service(1, upstream, json!({"retries": 0}))
        .route(10, Some(1), &["/up"], json!({"strip_path": false}))
        .route(
            11,
            Some(1),
            &["/stream"],
            json!({"strip_path": false, "request_buffering": false}),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn slow_bodies_hold_no_upstream_connection_until_complete() {
    const CLIENTS: usize = 2_000;
    let (upstream, stats) = echo::spawn_counted().await.unwrap();
    let dp = dataplane::start(Settings::loopback(), &buffering_config(upstream))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        stream
            .write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello")
            .await
            .unwrap();
        clients.push(stream);
    }
    let in_flight = wait_for_status(
        &dp,
        "/server/connections_writing",
        json!(CLIENTS),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(in_flight, CLIENTS, "requests in progress");
    assert_eq!(
        stats.connections(),
        0,
        "a partial body took an upstream connection"
    );

    let mut finished = tokio::task::JoinSet::new();
    for mut stream in clients {
        finished.spawn(async move {
            stream.write_all(b"world").await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        });
    }
    while let Some(answer) = finished.join_next().await {
        let answer = answer.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"body\":\"helloworld\""), "{answer}");
    }
    assert_eq!(stats.requests(), CLIENTS);

    // Without buffering the body streams: the upstream is reached first.
    let mut streaming = TcpStream::connect(proxy).await.unwrap();
    streaming
        .write_all(b"POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello")
        .await
        .unwrap();
    assert!(
        wait_until(LIMIT, || stats.requests() == CLIENTS + 1).await,
        "the streamed request did not reach the upstream before its body ended"
    );
    streaming.write_all(b"world").await.unwrap();
    let mut answer = String::new();
    streaming.read_to_string(&mut answer).await.unwrap();
    assert!(answer.contains("\"body\":\"helloworld\""), "{answer}");
    dp.shutdown().await;
}

fn chunked(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test]
async fn body_limits_and_spooling() {
    let (upstream, stats) = echo::spawn_counted().await.unwrap();
    let temp = tempfile::tempdir().unwrap();
    let mut settings = Settings::loopback();
    settings.limits.max_body_size = 1024;
    settings.limits.body_buffer_size = 256;
    settings.limits.body_temp_dir = temp.path().to_path_buf();
    let dp = dataplane::start(settings, &buffering_config(upstream))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    for path in ["/up", "/stream"] {
        // Refused on the declared length, before any byte of the body.
        let declared = exchange(
            proxy,
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(declared.status, 413, "{path}: {}", declared.head);
        assert!(
            declared.body.starts_with("Payload too large"),
            "{}",
            declared.body
        );
    }
    let block = [b'x'; 500];
    let mut over = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    over.extend(chunked(&[&block, &block, &block]));
    let counted = exchange(proxy, &over).await;
    assert_eq!(counted.status, 413, "{}", counted.head);
    assert_eq!(
        stats.requests(),
        0,
        "an oversized body reached the upstream"
    );
    // Streamed, the limit cuts the body off on its way.
    let mut streamed_over =
        b"POST /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    streamed_over.extend(chunked(&[&block, &block, &block]));
    let cut = exchange(proxy, &streamed_over).await;
    assert_eq!(cut.status, 413, "{}", cut.head);

    // Past the memory threshold the body goes to a temporary file, and arrives whole.
    let body: String = (0..1000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut spilled =
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    spilled.extend(chunked(&[&body.as_bytes()[..300], &body.as_bytes()[300..]]));
    let whole = exchange(proxy, &spilled).await;
    assert_eq!(whole.status, 200, "{}", whole.head);
    assert_eq!(whole.upstream()["body"], body.as_str());
    assert_eq!(
        whole.upstream_header("content-length").as_deref(),
        Some("1000")
    );
    assert!(whole.upstream_header("transfer-encoding").is_none());
    dp.shutdown().await;

    // A body that cannot be spooled is the gateway's failure, and goes nowhere.
    let mut settings = Settings::loopback();
    settings.limits.body_buffer_size = 16;
    settings.limits.body_temp_dir = temp.path().join("missing");
    let dp = dataplane::start(settings, &buffering_config(upstream))
        .await
        .unwrap();
    let requests_before = stats.requests();
    let mut unspoolable =
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
            .to_vec();
    unspoolable.extend_from_slice(&[b'y'; 100]);
    let failed = exchange(dp.proxy_addrs()[0], &unspoolable).await;
    assert_eq!(failed.status, 500, "{}", failed.head);
    assert!(
        failed.body.starts_with("An unexpected error occurred"),
        "{}",
        failed.body
    );
    assert_eq!(stats.requests(), requests_before);
    assert_eq!(status_of(&dp).await["proxy"]["gateway_errors"], 1);
    dp.shutdown().await;

    // With the default limits, a large body spans several spool reads.
    let dp = dataplane::start(Settings::loopback(), &buffering_config(upstream))
        .await
        .unwrap();
    let large = "0123456789abcdef".repeat(20_000);
    let reply = dataplane::send(
        dp.proxy_addrs()[0],
        http::Request::post("/up")
            .body(Full::new(Bytes::from(large.clone())))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["body"].as_str().map(str::len),
        Some(large.len())
    );
    assert_eq!(reply.json()["body"], large.as_str());
    dp.shutdown().await;
}

#[tokio::test]
async fn a_slow_reader_does_not_hold_the_upstream_connection() {
    const SIZE: usize = 128 * 1024;
    let (upstream, stats) = echo::spawn_counted().await.unwrap();
    // Both values of response_buffering read ahead the same way (ARCHITECTURE.md).
    for (route, response_buffering) in [(10u128, true), (11, false)] {
        let config = ConfigBuilder::new()
            .service(1, upstream, json!({}))
            .route(
                route,
                Some(1),
                &["/"],
                json!({"strip_path": false, "response_buffering": response_buffering}),
            )
            .build()
            .unwrap();
        let dp = dataplane::start(Settings::loopback(), &config)
            .await
            .unwrap();
        let mut reader = TcpStream::connect(dp.proxy_addrs()[0]).await.unwrap();
        reader
            .write_all(format!("GET /__bytes/{SIZE} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let head = read_head(&mut reader).await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let compiled = dp.gateway().current();
        let service = compiled.routes[0].service.as_ref().unwrap();
        assert!(
            wait_until(LIMIT, || service.target.pool.idle_count() == 1).await,
            "response_buffering {response_buffering}: the upstream connection waits for the reader"
        );
        let mut body = vec![0u8; SIZE];
        reader.read_exact(&mut body).await.unwrap();
        assert!(body.iter().all(|&b| b == b'x'));
        dp.shutdown().await;
    }
    assert_eq!(stats.requests(), 2);
}

#[tokio::test]
async fn a_stalled_buffered_body_is_408_and_never_reaches_the_upstream() {
    let (upstream, stats) = echo::spawn_counted().await.unwrap();
    let mut settings = Settings::loopback();
    settings.limits.body_timeout = Duration::from_millis(300);
    let dp = dataplane::start(settings, &buffering_config(upstream))
        .await
        .unwrap();
    let reply = exchange(
        dp.proxy_addrs()[0],
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a part",
    )
    .await;
    assert_eq!(reply.status, 408, "{}", reply.head);
    assert!(reply.body.starts_with("Request timeout"), "{}", reply.body);
    assert_eq!(stats.connections(), 0);
    dp.shutdown().await;
}

#[tokio::test]
async fn request_framing_defects_are_client_errors() {
    let (upstream, stats) = echo::spawn_counted().await.unwrap();
    let dp = dataplane::start(Settings::loopback(), &buffering_config(upstream))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    // A coding the proxy would have to drop: refused as nginx does.
    let gzip = exchange(
        proxy,
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(gzip.status, 501, "{}", gzip.head);
    assert!(
        gzip.head.to_ascii_lowercase().contains("connection: close"),
        "{}",
        gzip.head
    );
    assert_eq!(stats.requests(), 0);

    for path in ["/up", "/stream"] {
        for (what, body) in [
            ("invalid chunk size", &b"zz\r\nhello\r\n0\r\n\r\n"[..]),
            ("bare LF chunk line", b"5\nhello\r\n0\r\n\r\n"),
        ] {
            let mut request =
                format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .into_bytes();
            request.extend_from_slice(body);
            let reply = exchange(proxy, &request).await;
            assert_eq!(reply.status, 400, "{path} {what}: {}", reply.head);
        }
    }
    // Buffered, nothing of a malformed body reached the upstream.
    assert_eq!(stats.requests(), 0);

    // A GET with a body of unknown length is forwarded with its body.
    for path in ["/up", "/stream"] {
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        request.extend(chunked(&[b"hel", b"lo"]));
        let reply = exchange(proxy, &request).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.head);
        assert_eq!(reply.upstream()["method"], "GET");
        assert_eq!(reply.upstream()["body"], "hello", "{path}");
    }
    dp.shutdown().await;
}

#[tokio::test]
async fn an_invalid_upstream_answer_is_not_retried() {
    let (upstream, connections) =
        scripted_upstream(b"HTTP/1.1 200 OK\r\nthis is no header\r\n\r\n").await;
    let config = dataplane::one_route(upstream, json!({"retries": 5})).unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let reply = exchange(
        dp.proxy_addrs()[0],
        b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 502, "{}", reply.head);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the upstream was hit again"
    );
    dp.shutdown().await;
}

#[tokio::test]
async fn denials_and_gateway_errors_are_counted_and_logged_at_a_bounded_rate() {
    let captured = tollgate_tests::logs::capture(tracing::Level::WARN);

    let upstream = echo::spawn().await.unwrap();
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .service(2, closed, json!({"retries": 0}))
        .route(10, Some(1), &["/deny"], json!({}))
        .route(11, Some(2), &["/down"], json!({}))
        .plugin(
            100,
            "ip-restriction",
            json!({"deny": ["127.0.0.0/8"]}),
            Scope::route(10),
        )
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    const DENIED: usize = 300;
    const FAILED: usize = 30;
    for _ in 0..DENIED {
        assert_eq!(get(proxy, "/deny").await.unwrap().status, 403);
    }
    for _ in 0..FAILED {
        assert_eq!(get(proxy, "/down").await.unwrap().status, 502);
    }
    let counters = &status_of(&dp).await["proxy"];
    assert_eq!(counters["requests_denied"], DENIED);
    assert_eq!(counters["gateway_errors"], FAILED);

    let denial_lines = captured.lines_with("request denied by a plugin");
    assert!(!denial_lines.is_empty());
    assert!(
        denial_lines.len() <= DENIED / 5,
        "{} denial lines for {DENIED} denials",
        denial_lines.len()
    );
    let failure_lines = captured.lines_with("request failed");
    assert!(
        failure_lines
            .iter()
            .any(|l| l.contains("upstream_connect") && l.contains("502")),
        "{failure_lines:?} {}",
        captured.text()
    );
    dp.shutdown().await;
}

#[tokio::test]
async fn connections_per_client_address_are_capped() {
    let upstream = echo::spawn().await.unwrap();
    let config = dataplane::one_route(upstream, json!({})).unwrap();
    let mut settings = Settings::loopback();
    settings.limits.max_connections_per_ip = 2;
    settings.trusted_ips = vec!["127.0.0.3/32".parse().unwrap()];
    let dp = dataplane::start(settings, &config).await.unwrap();
    let proxy = dp.proxy_addrs()[0];

    let first = TcpStream::connect(proxy).await.unwrap();
    let mut second = TcpStream::connect(proxy).await.unwrap();
    let active = wait_for_status(&dp, "/server/connections_active", json!(2), LIMIT)
        .await
        .unwrap();
    assert_eq!(active, 2);

    // The third is closed at once, without an answer.
    let mut third = TcpStream::connect(proxy).await.unwrap();
    let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(LIMIT, third.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(
        status_of(&dp).await["proxy"]["connections_refused_per_ip"],
        1
    );

    // Another address has its own allowance; the capped ones still work.
    let other = send_from(
        Some(ip("127.0.0.2")),
        proxy,
        dataplane::get_with("/", &[]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(other.status, 200);
    second
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_head(&mut second)
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));

    // A trusted peer (a proxy in front, carrying many clients) is not capped.
    let mut trusted = Vec::new();
    for _ in 0..4 {
        trusted.push(
            dataplane::connect_from(ip("127.0.0.3"), proxy)
                .await
                .unwrap(),
        );
    }
    for stream in &mut trusted {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(read_head(stream).await.unwrap().starts_with("HTTP/1.1 200"));
    }
    drop(trusted);

    // A slot comes back when its connection ends.
    drop(first);
    drop(second);
    let active = wait_for_status(&dp, "/server/connections_active", json!(0), LIMIT)
        .await
        .unwrap();
    assert_eq!(active, 0);
    assert_eq!(get(proxy, "/").await.unwrap().status, 200);
    dp.shutdown().await;
}
