//! End-to-end: the upstream side — 502 and 504 with Kong's bodies, retries
//! (connection failures; after sending only for idempotent bodyless requests),
//! gRPC over HTTP/2 upstreams, config swaps under load, graceful shutdown.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tollgate_data_plane::Settings;
use tollgate_tests::dataplane::{self, get, send, ConfigBuilder, Reply};
use tollgate_tests::echo;

async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// An upstream whose first `broken` connections read the request and close
/// without answering; later ones are the echo. Counts connections.
async fn flaky_upstream(broken: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (echo_listener, echo_addr) = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    };
    tokio::spawn(echo::serve(echo_listener));
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if n < broken {
                    let mut buf = [0u8; 1024];
                    let _ = stream.read(&mut buf).await;
                    return;
                }
                if let Ok(mut echo) = tokio::net::TcpStream::connect(echo_addr).await {
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut echo).await;
                }
            });
        }
    });
    (addr, connections)
}

fn post(path: &str, body: &'static str) -> http::Request<Full<Bytes>> {
    http::Request::post(path)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test]
async fn closed_port_is_502_with_kong_body() {
    let config = dataplane::one_route(closed_port().await, json!({"retries": 2})).unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let reply = get(dp.proxy_addrs()[0], "/x").await.unwrap();
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("content-type"), "text/plain; charset=utf-8");
    let request_id = reply.header("x-tollgate-request-id").to_string();
    assert_eq!(
        reply.text(),
        format!(
            "An invalid response was received from the upstream server\nrequest_id: {request_id}\n"
        )
    );
    let json_reply = send(
        dp.proxy_addrs()[0],
        dataplane::get_with("/x", &[("accept", "application/json")]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(json_reply.status, 502);
    assert_eq!(
        json_reply.json()["message"],
        "An invalid response was received from the upstream server"
    );
    dp.shutdown().await;
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let upstream = echo::spawn().await.unwrap();
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({"read_timeout": 200, "retries": 0}))
        .route(10, Some(1), &["/"], json!({"strip_path": false}))
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let started = Instant::now();
    let reply = get(dp.proxy_addrs()[0], "/__delay/5000").await.unwrap();
    let waited = started.elapsed();
    assert_eq!(reply.status, 504);
    assert!(
        reply
            .text()
            .starts_with("The upstream server is timing out\n"),
        "{}",
        reply.text()
    );
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // A fast request on the same service is unaffected.
    assert_eq!(
        get(dp.proxy_addrs()[0], "/__delay/0").await.unwrap().status,
        200
    );
    dp.shutdown().await;
}

#[tokio::test]
async fn retries_follow_kong_rules() {
    struct Case {
        retries: u32,
        broken: usize,
        post: bool,
        status: u16,
        connections: usize,
    }
    let cases = [
        // GET is retried after a failed try, up to `retries` extra tries.
        Case {
            retries: 2,
            broken: 2,
            post: false,
            status: 200,
            connections: 3,
        },
        Case {
            retries: 1,
            broken: 2,
            post: false,
            status: 502,
            connections: 2,
        },
        Case {
            retries: 0,
            broken: 1,
            post: false,
            status: 502,
            connections: 1,
        },
        // A POST that reached the upstream is not sent again.
        Case {
            retries: 5,
            broken: 1,
            post: true,
            status: 502,
            connections: 1,
        },
    ];
    for case in cases {
        let (upstream, connections) = flaky_upstream(case.broken).await;
        let config = dataplane::one_route(upstream, json!({"retries": case.retries})).unwrap();
        let dp = dataplane::start(Settings::loopback(), &config)
            .await
            .unwrap();
        let reply = if case.post {
            send(dp.proxy_addrs()[0], post("/r", "payload"))
                .await
                .unwrap()
        } else {
            get(dp.proxy_addrs()[0], "/r").await.unwrap()
        };
        assert_eq!(
            reply.status, case.status,
            "retries {} broken {} post {}",
            case.retries, case.broken, case.post
        );
        assert_eq!(
            connections.load(Ordering::SeqCst),
            case.connections,
            "retries {} broken {}",
            case.retries,
            case.broken
        );
        dp.shutdown().await;
    }

    // A POST body streams through to a healthy upstream.
    let (upstream, connections) = flaky_upstream(0).await;
    let config = dataplane::one_route(upstream, json!({"retries": 3})).unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let reply = send(dp.proxy_addrs()[0], post("/r", "kept body"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body"], "kept body");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    dp.shutdown().await;
}

#[tokio::test]
async fn keep_alive_connections_are_reused() {
    let (upstream, connections) = flaky_upstream(0).await;
    let config = dataplane::one_route(upstream, json!({})).unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    for i in 0..20 {
        let reply = if i % 2 == 0 {
            get(dp.proxy_addrs()[0], "/k").await.unwrap()
        } else {
            send(dp.proxy_addrs()[0], post("/k", "body")).await.unwrap()
        };
        assert_eq!(reply.status, 200);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    dp.shutdown().await;
}

#[tokio::test]
async fn grpc_services_are_reached_over_http2() {
    let upstream = echo::spawn().await.unwrap();
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({"protocol": "grpc"}))
        .route(
            10,
            Some(1),
            &["/pkg.Svc/"],
            json!({"protocols": ["grpc"], "strip_path": false}),
        )
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let stream = tokio::net::TcpStream::connect(dp.proxy_addrs()[0])
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{}/pkg.Svc/Call", dp.proxy_addrs()[0]))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["version"], "HTTP/2.0");
    assert_eq!(seen["uri"], format!("http://{upstream}/pkg.Svc/Call"));
    assert_eq!(seen["headers"]["te"], "trailers");

    // A gRPC route refuses plain HTTP requests.
    let plain = get(dp.proxy_addrs()[0], "/pkg.Svc/Call").await.unwrap();
    assert_eq!(plain.status, 415);
    assert_eq!(
        plain.json()["message"],
        "Non-gRPC request matched gRPC route"
    );
    dp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn config_swaps_under_load_fail_no_request() {
    let upstream = echo::spawn().await.unwrap();
    let config_for = |generation: usize| {
        let mut builder = ConfigBuilder::new()
            .service(
                1,
                upstream,
                json!({"path": format!("/gen{}", generation % 2)}),
            )
            .route(10, Some(1), &["/load"], json!({}));
        for extra in 0..(generation % 7) {
            builder = builder.route(
                100 + extra as u128,
                Some(1),
                &["/other"],
                json!({"hosts": [format!("h{extra}.test")]}),
            );
        }
        builder.build().unwrap()
    };
    let dp = dataplane::start(Settings::loopback(), &config_for(0))
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let stop = Arc::new(AtomicBool::new(false));
    let (failures_tx, mut failures_rx) = mpsc::unbounded_channel::<String>();
    let served = Arc::new(AtomicUsize::new(0));
    let first_responses = Arc::new(Notify::new());
    let mut loaders = Vec::new();
    for _ in 0..4 {
        let (stop, failures, served, first) = (
            Arc::clone(&stop),
            failures_tx.clone(),
            Arc::clone(&served),
            Arc::clone(&first_responses),
        );
        loaders.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            while !stop.load(Ordering::Relaxed) {
                let request = http::Request::get("/load/x")
                    .header("host", "load.test")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let outcome = async {
                    let response = sender
                        .send_request(request)
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = response.status();
                    let body = http_body_util::BodyExt::collect(response.into_body())
                        .await
                        .map_err(|e| e.to_string())?
                        .to_bytes();
                    let reply = Reply {
                        status,
                        headers: http::HeaderMap::new(),
                        body,
                    };
                    let uri = reply.json()["uri"].as_str().unwrap_or("").to_string();
                    if status != 200 || !(uri == "/gen0/x" || uri == "/gen1/x") {
                        return Err(format!("{status} {uri}"));
                    }
                    Ok(())
                }
                .await;
                if let Err(failure) = outcome {
                    let _ = failures.send(failure);
                    return;
                }
                served.fetch_add(1, Ordering::Relaxed);
                first.notify_waiters();
                first.notify_one();
            }
        }));
    }
    drop(failures_tx);
    first_responses.notified().await;
    let served_before = served.load(Ordering::Relaxed);
    for generation in 1..=100 {
        let config = config_for(generation);
        let gateway = Arc::clone(dp.gateway());
        tokio::task::spawn_blocking(move || gateway.apply_local(&config).map(drop))
            .await
            .unwrap()
            .unwrap();
        // Let traffic run on each generation before the next swap.
        let seen = served.load(Ordering::Relaxed);
        let progressed = tokio::time::timeout(Duration::from_secs(10), async {
            while served.load(Ordering::Relaxed) <= seen {
                let next = first_responses.notified();
                if served.load(Ordering::Relaxed) > seen {
                    break;
                }
                next.await;
            }
        })
        .await;
        assert!(
            progressed.is_ok(),
            "traffic stopped at generation {generation}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for loader in loaders {
        loader.await.unwrap();
    }
    let failures: Vec<String> = std::iter::from_fn(|| failures_rx.try_recv().ok()).collect();
    assert!(failures.is_empty(), "{failures:?}");
    let total = served.load(Ordering::Relaxed);
    assert!(total > served_before + 100, "{served_before} → {total}");
    let status = get(dp.status_addr(), "/status").await.unwrap().json();
    assert_eq!(status["config"]["version"], 101);
    dp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    // An upstream that holds /hold until released.
    let arrived = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    {
        let (arrived, release) = (Arc::clone(&arrived), Arc::clone(&release));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (arrived, release) = (Arc::clone(&arrived), Arc::clone(&release));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        let (arrived, release) = (Arc::clone(&arrived), Arc::clone(&release));
                        async move {
                            let released = release.notified();
                            arrived.notify_one();
                            released.await;
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from_static(b"done"),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    }
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(10, Some(1), &["/hold"], json!({}))
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    let in_flight = tokio::spawn(async move { get(proxy, "/hold").await });
    arrived.notified().await;

    let shutdown = tokio::spawn(dp.shutdown());
    // New connections are refused once the listener is gone.
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if tokio::net::TcpStream::connect(proxy).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(refused.is_ok(), "listener still accepting after shutdown");
    assert!(
        !shutdown.is_finished(),
        "shutdown must wait for the in-flight request"
    );

    release.notify_one();
    let reply = in_flight.await.unwrap().unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "done");
    assert!(shutdown.await.unwrap(), "drained within the grace period");
}
