//! End-to-end: the `opentelemetry` plugin on an in-process data plane with a
//! real echo upstream and a local OTLP/HTTP receiver (protobuf decoded with
//! `opentelemetry-proto`): the caller's `traceparent` is the server span's
//! parent, the upstream's `traceparent` names the client span, the client
//! span's parent is the server span; an invalid `traceparent` starts a new
//! trace; a retried upstream try gets its own failed client span and the
//! upstream's parent is the try that answered; `sampling_rate: 0` exports nothing and still propagates
//! `sampled=0`; a receiver that never answers neither slows nor fails
//! proxying, and the bounded queue drops and counts.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::{span, Span};
use prost::Message;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tollgate_data_plane::{DataPlane, Settings};
use tollgate_tests::dataplane::{self, get_with, send, ConfigBuilder, Scope};
use tollgate_tests::echo;

/// A resource's attributes, as text.
type ResourceAttributes = Vec<(String, String)>;

/// What the receiver got: every span with its resource's attributes.
#[derive(Default)]
struct Received {
    spans: Mutex<Vec<(Span, ResourceAttributes)>>,
    content_types: Mutex<Vec<String>>,
    arrived: Notify,
}

impl Received {
    /// Waits (on the receiver's arrivals) until `done` holds for the spans
    /// received so far; fails after 10 s.
    async fn wait_for(&self, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let arrived = self.arrived.notified();
            let spans: Vec<Span> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .map(|(span, _)| span.clone())
                .collect();
            if done(&spans) {
                return spans;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("the receiver never got the expected spans: {spans:#?}");
            }
        }
    }
}

async fn export(received: Arc<Received>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let decoded = ExportTraceServiceRequest::decode(body).unwrap();
    {
        let mut spans = received.spans.lock().unwrap();
        for resource_spans in decoded.resource_spans {
            let resource: ResourceAttributes = resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default()
                .into_iter()
                .map(|kv| {
                    let value = match kv.value.and_then(|v| v.value) {
                        Some(any_value::Value::StringValue(text)) => text,
                        other => format!("{other:?}"),
                    };
                    (kv.key, value)
                })
                .collect();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push((span, resource.clone()));
                }
            }
        }
    }
    received.content_types.lock().unwrap().push(content_type);
    received.arrived.notify_waiters();
    Response::new(Full::new(Bytes::new()))
}

/// An OTLP/HTTP traces receiver on a free loopback port.
async fn spawn_receiver() -> (SocketAddr, Arc<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Received::default());
    let shared = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let received = Arc::clone(&shared);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let received = Arc::clone(&received);
                    async move { Ok::<_, Infallible>(export(received, request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

/// An upstream whose first connection reads the request and closes (a
/// retried try), and whose later connections reach an echo upstream.
async fn upstream_failing_first() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = echo::spawn().await.unwrap();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut stream, _)) = listener.accept().await {
            let broken = std::mem::take(&mut first);
            tokio::spawn(async move {
                if broken {
                    let mut buf = [0u8; 1024];
                    let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
                    return;
                }
                if let Ok(mut upstream) = tokio::net::TcpStream::connect(echo).await {
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
                }
            });
        }
    });
    addr
}

/// A receiver that accepts connections and never reads or answers.
async fn spawn_black_hole() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<any_value::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|v| v.value)
}

fn text(value: &str) -> Option<any_value::Value> {
    Some(any_value::Value::StringValue(value.into()))
}

/// `(trace id, parent id, flags)` of a `traceparent` value.
fn parts(traceparent: &str) -> (String, String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    (fields[1].into(), fields[2].into(), fields[3].into())
}

fn otel(receiver: SocketAddr, extra: Value) -> Value {
    let mut config = json!({
        "traces_endpoint": format!("http://{receiver}/v1/traces"),
        "resource_attributes": {"deployment.environment": "e2e"},
        "queue": {"max_batch_size": 10, "max_coalescing_delay": 0.05},
    });
    tollgate_tests::dataplane::merge(&mut config, extra);
    config
}

/// An opentelemetry config exporting to `url` one span per batch without
/// coalescing, waiting up to two minutes on an export (a receiver that never
/// answers holds it that long); `queue` adds queue settings.
fn one_span_per_export(url: String, queue: Value) -> Value {
    let mut config = json!({
        "traces_endpoint": url,
        "send_timeout": 60000,
        "read_timeout": 60000,
        "queue": {"max_batch_size": 1, "max_coalescing_delay": 0},
    });
    dataplane::merge(&mut config, json!({ "queue": queue }));
    config
}

/// A data plane (route `/`) whose global opentelemetry exports to a receiver
/// that accepts connections and never answers, one span per export; `queue`
/// adds queue settings. Returns it and the receiver's address.
async fn exporting_to_a_black_hole(queue: Value) -> (DataPlane, SocketAddr) {
    let upstream = echo::spawn().await.unwrap();
    let black_hole = spawn_black_hole().await;
    let url = format!("http://{black_hole}/v1/traces");
    let dp = ConfigBuilder::routed(upstream, 10, &["/"])
        .plugin(
            20,
            "opentelemetry",
            one_span_per_export(url, queue),
            Scope::default(),
        )
        .start()
        .await
        .unwrap();
    (dp, black_hole)
}

const INCOMING_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const INCOMING_PARENT: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn spans_link_caller_gateway_and_upstream() {
    let upstream = echo::spawn().await.unwrap();
    let (receiver, received) = spawn_receiver().await;
    let dp = ConfigBuilder::routed(upstream, 10, &["/traced"])
        .plugin(
            20,
            "opentelemetry",
            otel(
                receiver,
                json!({"http_response_header_for_traceid": "x-trace-id"}),
            ),
            Scope::route(10),
        )
        .start()
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    let incoming = format!("00-{INCOMING_TRACE}-{INCOMING_PARENT}-01");
    let reply = send(
        proxy,
        get_with(
            "/traced/items?x=1",
            &[
                ("traceparent", incoming.as_str()),
                ("tracestate", "vendor=opaque"),
                ("user-agent", "otel-e2e"),
            ],
        )
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-trace-id"), INCOMING_TRACE);
    let (trace, upstream_parent, flags) = parts(&reply.upstream_header("traceparent"));
    assert_eq!(trace, INCOMING_TRACE);
    assert_eq!(flags, "01");
    assert_ne!(upstream_parent, INCOMING_PARENT);
    assert_eq!(reply.upstream_header("tracestate"), "vendor=opaque");

    let spans = received
        .wait_for(|spans| {
            spans
                .iter()
                .filter(|s| hex(&s.trace_id) == INCOMING_TRACE)
                .count()
                >= 2
        })
        .await;
    let server = spans
        .iter()
        .find(|s| s.kind == span::SpanKind::Server as i32)
        .unwrap();
    let client = spans
        .iter()
        .find(|s| s.kind == span::SpanKind::Client as i32)
        .unwrap();
    assert_eq!(hex(&server.parent_span_id), INCOMING_PARENT);
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(hex(&client.span_id), upstream_parent);
    assert_eq!(hex(&client.trace_id), INCOMING_TRACE);
    assert_eq!(server.name, "kong");
    assert_eq!(client.name, "kong.balancer");
    assert_eq!(server.trace_state, "vendor=opaque");
    assert!(server.start_time_unix_nano <= client.start_time_unix_nano);
    assert!(client.end_time_unix_nano <= server.end_time_unix_nano);
    let events: Vec<&str> = client.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(events, ["upstream connected", "upstream first byte"]);
    assert!(client.events.iter().all(|e| (client.start_time_unix_nano
        ..=client.end_time_unix_nano)
        .contains(&e.time_unix_nano)));
    assert_eq!(attribute(server, "http.request.method"), text("GET"));
    assert_eq!(attribute(server, "url.path"), text("/traced/items"));
    assert_eq!(attribute(server, "url.query"), text("x=1"));
    assert_eq!(attribute(server, "user_agent.original"), text("otel-e2e"));
    assert_eq!(attribute(server, "http.route"), text("/traced"));
    assert_eq!(
        attribute(server, "http.response.status_code"),
        Some(any_value::Value::IntValue(200))
    );
    assert_eq!(
        attribute(server, "kong.request.id"),
        text(reply.header("x-tollgate-request-id"))
    );
    assert_eq!(
        attribute(client, "server.port"),
        Some(any_value::Value::IntValue(i64::from(upstream.port())))
    );
    assert_eq!(
        attribute(client, "url.full"),
        text(&format!("http://{upstream}/items?x=1"))
    );
    let resource = received.spans.lock().unwrap()[0].1.clone();
    for (key, value) in [("service.name", "kong"), ("deployment.environment", "e2e")] {
        assert!(
            resource.iter().any(|(k, v)| k == key && v == value),
            "{key} in {resource:?}"
        );
    }
    assert_eq!(
        received.content_types.lock().unwrap()[0],
        "application/x-protobuf"
    );

    // An invalid traceparent (uppercase hex) starts a new trace; the old
    // trace's tracestate is not passed on.
    let bad = format!("00-{}-{INCOMING_PARENT}-01", INCOMING_TRACE.to_uppercase());
    let reply = send(
        proxy,
        get_with(
            "/traced/again",
            &[
                ("traceparent", bad.as_str()),
                ("tracestate", "vendor=opaque"),
            ],
        )
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let (new_trace, new_parent, _) = parts(&reply.upstream_header("traceparent"));
    assert_ne!(new_trace, INCOMING_TRACE.to_lowercase());
    assert_eq!(reply.header("x-trace-id"), new_trace);
    assert_eq!(reply.upstream_header("tracestate"), "");
    let spans = received
        .wait_for(|spans| {
            spans
                .iter()
                .filter(|s| hex(&s.trace_id) == new_trace)
                .count()
                >= 2
        })
        .await;
    let server = spans
        .iter()
        .find(|s| hex(&s.trace_id) == new_trace && s.kind == span::SpanKind::Server as i32)
        .unwrap();
    assert!(
        server.parent_span_id.is_empty(),
        "a new trace has no parent"
    );
    let client = spans
        .iter()
        .find(|s| hex(&s.trace_id) == new_trace && s.kind == span::SpanKind::Client as i32)
        .unwrap();
    assert_eq!(hex(&client.span_id), new_parent);
}

#[tokio::test]
async fn a_retried_try_has_its_own_client_span() {
    let upstream = upstream_failing_first().await;
    let (receiver, received) = spawn_receiver().await;
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({"retries": 2}))
        .route(10, Some(1), &["/"], json!({}))
        .plugin(
            20,
            "opentelemetry",
            otel(receiver, json!({})),
            Scope::default(),
        )
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let reply = send(dp.proxy_addrs()[0], get_with("/retried", &[]).unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let (trace, parent, _) = parts(&reply.upstream_header("traceparent"));
    let spans = received
        .wait_for(|spans| spans.iter().filter(|s| hex(&s.trace_id) == trace).count() >= 3)
        .await;
    let server = spans
        .iter()
        .find(|s| s.kind == span::SpanKind::Server as i32)
        .unwrap();
    let clients: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == span::SpanKind::Client as i32)
        .collect();
    assert_eq!(clients.len(), 2, "{clients:#?}");
    assert!(clients.iter().all(|c| c.parent_span_id == server.span_id));
    let (failed, answered) = (clients[0], clients[1]);
    assert_eq!(
        failed.status.as_ref().map(|s| s.code),
        Some(opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32)
    );
    assert!(attribute(failed, "error.type").is_some());
    assert!(failed.end_time_unix_nano <= answered.start_time_unix_nano);
    assert_eq!(hex(&answered.span_id), parent);
    assert_eq!(
        attribute(answered, "http.response.status_code"),
        Some(any_value::Value::IntValue(200))
    );
}

#[tokio::test]
async fn sampling_rate_zero_exports_nothing_and_propagates_unsampled() {
    let upstream = echo::spawn().await.unwrap();
    let (receiver, received) = spawn_receiver().await;
    // Same endpoint and queue, so both routes share one exporter and its
    // queue is first in, first out: once the sampled request's spans have
    // arrived, any span of the unsampled one would have arrived before.
    let dp = ConfigBuilder::routed(upstream, 10, &["/never"])
        .route(11, Some(1), &["/always"], json!({}))
        .plugin(
            20,
            "opentelemetry",
            otel(receiver, json!({"sampling_rate": 0})),
            Scope::route(10),
        )
        .plugin(
            21,
            "opentelemetry",
            otel(receiver, json!({"sampling_rate": 1})),
            Scope::route(11),
        )
        .start()
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];

    let unsampled = send(proxy, get_with("/never", &[]).unwrap()).await.unwrap();
    assert_eq!(unsampled.status, 200);
    let (unsampled_trace, _, flags) = parts(&unsampled.upstream_header("traceparent"));
    assert_eq!(flags, "00", "propagated as not sampled");

    let sampled = send(proxy, get_with("/always", &[]).unwrap())
        .await
        .unwrap();
    let (sampled_trace, _, flags) = parts(&sampled.upstream_header("traceparent"));
    assert_eq!(flags, "01");
    let spans = received
        .wait_for(|spans| {
            spans
                .iter()
                .filter(|s| hex(&s.trace_id) == sampled_trace)
                .count()
                >= 2
        })
        .await;
    assert!(
        spans.iter().all(|s| hex(&s.trace_id) != unsampled_trace),
        "an unsampled trace was exported"
    );
    assert_eq!(spans.len(), 2);
    assert_eq!(dp.trace_exporters().stats().len(), 1, "one shared exporter");

    // An unsampled caller stays unsampled even at rate 1.
    let caller = format!("00-{INCOMING_TRACE}-{INCOMING_PARENT}-00");
    let reply = send(
        proxy,
        get_with("/always", &[("traceparent", caller.as_str())]).unwrap(),
    )
    .await
    .unwrap();
    let (trace, _, flags) = parts(&reply.upstream_header("traceparent"));
    assert_eq!((trace.as_str(), flags.as_str()), (INCOMING_TRACE, "00"));
    let marker = send(proxy, get_with("/always", &[]).unwrap())
        .await
        .unwrap();
    let (marker_trace, _, _) = parts(&marker.upstream_header("traceparent"));
    let spans = received
        .wait_for(|spans| spans.iter().any(|s| hex(&s.trace_id) == marker_trace))
        .await;
    assert!(spans.iter().all(|s| hex(&s.trace_id) != INCOMING_TRACE));
}

#[tokio::test]
async fn a_receiver_that_never_answers_neither_slows_nor_fails_proxying() {
    let (dp, _) = exporting_to_a_black_hole(json!({"max_entries": 4})).await;
    let proxy = dp.proxy_addrs()[0];

    const REQUESTS: u64 = 20;
    let started = Instant::now();
    for i in 0..REQUESTS {
        let reply = send(proxy, get_with(&format!("/r{i}"), &[]).unwrap())
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(20),
        "{REQUESTS} requests took {elapsed:?} while the receiver hung"
    );
    // Two spans a request; the queue holds 4 and the stuck batch 1.
    let exporters = dp.trace_exporters();
    let counted = dataplane::wait_until(Duration::from_secs(5), || {
        exporters
            .stats()
            .first()
            .is_some_and(|s| s.dropped >= 2 * REQUESTS - 5)
    })
    .await;
    let stats = exporters.stats();
    assert!(counted, "{stats:?}");
    assert_eq!(stats[0].exported, 0, "{stats:?}");
    assert!(stats[0].dropped <= 2 * REQUESTS, "{stats:?}");
}

/// The stats of the exporter whose endpoint ends with `path`.
fn exporter_stats(
    dp: &tollgate_data_plane::DataPlane,
    path: &str,
) -> tollgate_data_plane::plugins::otlp::ExporterStats {
    dp.trace_exporters()
        .stats()
        .into_iter()
        .find(|stats| stats.endpoint.ends_with(path))
        .unwrap_or_else(|| panic!("no exporter for {path}: {:?}", dp.trace_exporters().stats()))
}

/// `queue.concurrency_limit: -1` sends batches in parallel (here: every span
/// its own export to a receiver that never answers), `1` one at a time; the
/// exporters' counters are on `/metrics`.
#[tokio::test]
async fn concurrency_limit_caps_the_exports_in_flight() {
    use tollgate_tests::collector::{Collector, Mode};
    let upstream = echo::spawn().await.unwrap();
    let receiver = Collector::start().await.unwrap();
    receiver.set_mode(Mode::BlackHole);
    let endpoint = |path: &str, concurrency: i64| {
        one_span_per_export(
            receiver.url(path),
            json!({"concurrency_limit": concurrency}),
        )
    };
    let dp = ConfigBuilder::routed(upstream, 10, &["/parallel"])
        .route(11, Some(1), &["/serial"], json!({}))
        .plugin(
            20,
            "opentelemetry",
            endpoint("/parallel", -1),
            Scope::route(10),
        )
        .plugin(
            21,
            "opentelemetry",
            endpoint("/serial", 1),
            Scope::route(11),
        )
        .start()
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    for path in ["/parallel", "/serial"] {
        for _ in 0..3 {
            let reply = send(proxy, get_with(path, &[]).unwrap()).await.unwrap();
            assert_eq!(reply.status, 200);
        }
    }
    // Two spans a request, each its own batch.
    let arrived = |path: &str| {
        receiver
            .received()
            .iter()
            .filter(|request| request.uri == path)
            .count()
    };
    let parallel =
        dataplane::wait_until(Duration::from_secs(10), || arrived("/parallel") == 6).await;
    assert!(parallel, "{} exports in flight", arrived("/parallel"));
    // The serial exporter had its six spans queued before the parallel one
    // sent its sixth, and still has one export in flight.
    let serial = dataplane::wait_until(Duration::from_secs(10), || {
        exporter_stats(&dp, "/serial").queued == 5
    })
    .await;
    assert!(serial, "{:?}", exporter_stats(&dp, "/serial"));
    assert_eq!(arrived("/serial"), 1);
    assert_eq!(exporter_stats(&dp, "/serial").in_flight, 1);
    assert_eq!(exporter_stats(&dp, "/parallel").in_flight, 6);

    let metrics = dataplane::get(dp.status_addr(), "/metrics")
        .await
        .unwrap()
        .text();
    let serial_url = receiver.url("/serial");
    assert!(
        metrics.contains(&format!(
            "tollgate_opentelemetry_queued_spans{{endpoint=\"{serial_url}\"}} 5\n"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "tollgate_opentelemetry_spans_exported_total{{endpoint=\"{serial_url}\"}} 0\n"
        )),
        "{metrics}"
    );
    receiver.stop();
}

/// `queue.max_bytes` bounds the spans an exporter holds by their size:
/// with a receiver that never answers, spans beyond it are dropped and
/// counted, although `max_entries` would hold them all.
#[tokio::test]
async fn max_bytes_bounds_the_queue_by_size() {
    const MAX_BYTES: u64 = 2048;
    let (dp, black_hole) =
        exporting_to_a_black_hole(json!({"max_entries": 1000, "max_bytes": MAX_BYTES})).await;
    const REQUESTS: u64 = 20;
    for i in 0..REQUESTS {
        let reply = send(
            dp.proxy_addrs()[0],
            get_with(&format!("/r{i}"), &[]).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 200);
    }
    // Every span is accounted for: one in the stuck export, some queued
    // within the byte bound, the rest dropped.
    let settled = dataplane::wait_until(Duration::from_secs(10), || {
        let stats = exporter_stats(&dp, "/v1/traces");
        stats.in_flight == 1 && 1 + stats.queued + stats.dropped == 2 * REQUESTS
    })
    .await;
    let stats = exporter_stats(&dp, "/v1/traces");
    assert!(settled, "{stats:?}");
    // A span is well over 64 bytes, so the bound holds fewer than 32.
    assert!(
        stats.queued >= 1 && stats.queued < MAX_BYTES / 64,
        "{stats:?}"
    );
    assert!(stats.dropped > REQUESTS, "{stats:?}");
    let metrics = dataplane::get(dp.status_addr(), "/metrics")
        .await
        .unwrap()
        .text();
    let dropped = format!(
        "tollgate_opentelemetry_spans_dropped_total{{endpoint=\"http://{black_hole}/v1/traces\"}} {}\n",
        stats.dropped
    );
    assert!(metrics.contains(&dropped), "{dropped} in {metrics}");
}
