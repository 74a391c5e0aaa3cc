#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use std::sync::Mutex;

#[derive(Debug, Default)]
struct Captured(Mutex<Vec<FinishedSpan>>);

impl SpanSink for Captured {
    fn submit(&self, spans: Vec<FinishedSpan>) {
        self.0.lock().unwrap().extend(spans);
    }
}

fn plugin(sampling_rate: f64) -> (Opentelemetry, Arc<Captured>) {
    let captured = Arc::new(Captured::default());
    let plugin = Opentelemetry {
        sink: Arc::clone(&captured) as Arc<dyn SpanSink>,
        sampling_rate,
        extract: true,
        inject: true,
        clear: Vec::new(),
        trace_id_header: Some(HeaderName::from_static("x-trace-id")),
    };
    (plugin, captured)
}

fn context(headers: &[(&str, &str)]) -> RequestContext {
    let mut builder = http::Request::get("/orders/7?page=2").header("host", "api.example:8000");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let (parts, ()) = builder.body(()).unwrap().into_parts();
    RequestContext::new(
        parts,
        "203.0.113.9".parse().unwrap(),
        "127.0.0.1".parse().unwrap(),
        Protocol::Http,
        HeaderValue::from_static("0123456789abcdef0123456789abcdef"),
        Instant::now(),
    )
}

fn run_access(plugin: &Opentelemetry, ctx: &mut RequestContext) {
    let decision = futures_ready(plugin.access(ctx));
    assert!(matches!(decision, Ok(Decision::Continue)));
}

/// Polls a future that is ready at once (the plugin's access never waits).
fn futures_ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("access waited"),
    }
}

fn proxied(ctx: &mut RequestContext) {
    let now = Instant::now();
    ctx.timings.upstream_sent = Some(now);
    ctx.timings.upstream_first_byte = Some(now);
    ctx.timings.finished = Some(now);
    ctx.status = Some(http::StatusCode::OK);
    ctx.log_facts = Some(Box::new(crate::runtime::LogFacts {
        server_port: 8000,
        upstream_uri: Some("/7?page=2".parse().unwrap()),
        upstream_status: Some(http::StatusCode::OK),
        upstream_target: Some((Arc::from("backend.internal"), 8080)),
        proxied: true,
        ..Default::default()
    }));
}

fn attribute<'a>(span: &'a FinishedSpan, key: &str) -> Option<&'a AttributeValue> {
    span.attributes
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_valid_traceparent_continues_the_trace_through_both_spans() {
    let (plugin, captured) = plugin(1.0);
    let mut ctx = context(&[("traceparent", INCOMING), ("tracestate", "vendor=abc")]);
    run_access(&plugin, &mut ctx);
    let outgoing = parse_traceparent(ctx.headers()[&TRACEPARENT].as_bytes()).unwrap();
    assert_eq!(
        outgoing.trace_id.to_hex(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(outgoing.flags, 1);
    assert_eq!(ctx.headers()[&TRACESTATE], "vendor=abc");
    proxied(&mut ctx);
    plugin.log(&ctx);

    let spans = captured.0.lock().unwrap();
    assert_eq!(spans.len(), 2);
    let (server, client) = (&spans[0], &spans[1]);
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(server.name, "kong");
    assert_eq!(server.parent_span_id.unwrap().to_hex(), "00f067aa0ba902b7");
    assert_eq!(client.kind, SpanKind::Client);
    assert_eq!(client.parent_span_id, Some(server.span_id));
    // The upstream was told the client span is its parent.
    assert_eq!(client.span_id, outgoing.parent_id);
    assert_eq!(client.trace_id, server.trace_id);
    assert_eq!(server.trace_state.as_deref(), Some("vendor=abc"));
    assert!(server.start_unix_nano <= client.start_unix_nano);
    assert!(client.start_unix_nano <= client.end_unix_nano);
    assert!(server.end_unix_nano >= client.end_unix_nano);

    for (key, value) in [
        ("http.request.method", text("GET")),
        ("url.scheme", text("http")),
        ("url.path", text("/orders/7")),
        ("url.query", text("page=2")),
        ("server.address", text("api.example")),
        ("server.port", AttributeValue::Int(8000)),
        ("client.address", text("203.0.113.9")),
        ("network.peer.address", text("127.0.0.1")),
        ("network.protocol.version", text("1.1")),
        ("http.response.status_code", AttributeValue::Int(200)),
        ("kong.request.id", text("0123456789abcdef0123456789abcdef")),
    ] {
        assert_eq!(attribute(server, key), Some(&value), "server {key}");
    }
    for (key, value) in [
        ("http.request.method", text("GET")),
        ("server.address", text("backend.internal")),
        ("server.port", AttributeValue::Int(8080)),
        ("url.full", text("http://backend.internal:8080/7?page=2")),
        ("http.response.status_code", AttributeValue::Int(200)),
    ] {
        assert_eq!(attribute(client, key), Some(&value), "client {key}");
    }
    assert!(!server.error && !client.error);
    let events: Vec<&str> = client.events.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        events,
        ["upstream first byte"],
        "no connection time recorded here"
    );
}

#[test]
fn an_invalid_traceparent_starts_a_new_trace_without_the_old_state() {
    let (plugin, captured) = plugin(1.0);
    let bad = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    let mut ctx = context(&[("traceparent", bad), ("tracestate", "vendor=abc")]);
    run_access(&plugin, &mut ctx);
    let outgoing = parse_traceparent(ctx.headers()[&TRACEPARENT].as_bytes()).unwrap();
    assert_ne!(
        outgoing.trace_id.to_hex(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert!(!ctx.headers().contains_key(&TRACESTATE));
    plugin.log(&ctx);
    let spans = captured.0.lock().unwrap();
    assert_eq!(spans.len(), 1, "no upstream exchange, no client span");
    assert_eq!(spans[0].parent_span_id, None);
    assert_eq!(spans[0].trace_id, outgoing.trace_id);
}

#[test]
fn unsampled_traces_propagate_but_export_nothing() {
    let (plugin, captured) = plugin(0.0);
    let mut ctx = context(&[]);
    run_access(&plugin, &mut ctx);
    let outgoing = parse_traceparent(ctx.headers()[&TRACEPARENT].as_bytes()).unwrap();
    assert_eq!(outgoing.flags, 0);
    proxied(&mut ctx);
    plugin.log(&ctx);
    assert!(captured.0.lock().unwrap().is_empty());

    // An unsampled caller is honoured whatever the rate.
    let (plugin, captured) = plugin_sampling_all();
    let mut ctx = context(&[("traceparent", &INCOMING.replace("-01", "-00"))]);
    run_access(&plugin, &mut ctx);
    assert!(ctx.headers()[&TRACEPARENT]
        .to_str()
        .unwrap()
        .ends_with("-00"));
    plugin.log(&ctx);
    assert!(captured.0.lock().unwrap().is_empty());
}

fn plugin_sampling_all() -> (Opentelemetry, Arc<Captured>) {
    plugin(1.0)
}

#[test]
fn the_trace_id_is_answered_in_the_configured_header() {
    let (plugin, _) = plugin(1.0);
    let mut ctx = context(&[("traceparent", INCOMING)]);
    run_access(&plugin, &mut ctx);
    let mut status = http::StatusCode::OK;
    let mut headers = HeaderMap::new();
    plugin.response(
        &mut ctx,
        ResponseHead {
            status: &mut status,
            headers: &mut headers,
        },
    );
    assert_eq!(headers["x-trace-id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

#[test]
fn a_request_answered_before_access_still_gets_its_server_span() {
    let (plugin, captured) = plugin(1.0);
    let mut ctx = context(&[]);
    ctx.status = Some(http::StatusCode::BAD_GATEWAY);
    let mut status = http::StatusCode::BAD_GATEWAY;
    let mut headers = HeaderMap::new();
    plugin.response(
        &mut ctx,
        ResponseHead {
            status: &mut status,
            headers: &mut headers,
        },
    );
    plugin.log(&ctx);
    let spans = captured.0.lock().unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(headers["x-trace-id"], spans[0].trace_id.to_hex().as_str());
    drop(spans);

    let (plugin, captured) = plugin_sampling_all();
    let mut ctx = context(&[("traceparent", INCOMING)]);
    ctx.status = Some(http::StatusCode::BAD_GATEWAY);
    plugin.log(&ctx);
    let spans = captured.0.lock().unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        spans[0].parent_span_id.unwrap().to_hex(),
        "00f067aa0ba902b7"
    );
    assert!(spans[0].error);
    assert_eq!(attribute(&spans[0], "error.type"), Some(&text("502")));
}

#[test]
fn propagation_settings_pick_w3c_or_refuse_what_is_not_supported() {
    let with = |patch: Value| {
        let mut config = serde_json::to_value(OpentelemetryConfig::default()).unwrap();
        merge(&mut config, patch);
        let config: OpentelemetryConfig = serde_json::from_value(config).unwrap();
        propagation_plan(&config).map(|(extract, inject, clear)| (extract, inject, clear.len()))
    };
    assert_eq!(with(json!({})), Ok((true, true, 0)));
    assert_eq!(with(json!({"header_type": "ignore"})), Ok((false, true, 0)));
    assert_eq!(
        with(
            json!({"propagation": {"extract": ["w3c"], "inject": ["preserve"], "clear": ["x-b3"]}})
        ),
        Ok((true, true, 1))
    );
    assert_eq!(
        with(json!({"propagation": {"extract": [], "inject": ["w3c"]}})),
        Ok((false, true, 0))
    );
    for patch in [
        json!({"header_type": "b3"}),
        json!({"propagation": {"extract": ["b3"]}}),
        json!({"propagation": {"inject": ["datadog"]}}),
        json!({"propagation": {"default_format": "jaeger"}}),
    ] {
        let error = with(patch.clone()).unwrap_err().to_string();
        assert!(error.contains("not supported"), "{patch}: {error}");
    }
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (slot, value) => *slot = value,
    }
}

#[test]
fn deprecated_batch_fields_apply_unless_at_their_old_defaults() {
    let mut config = OpentelemetryConfig::default();
    assert_eq!(config.effective_queue().max_batch_size, 200);
    config.batch_span_count = Some(200);
    config.batch_flush_delay = Some(3);
    assert_eq!(config.effective_queue().max_batch_size, 200);
    assert_eq!(config.effective_queue().max_coalescing_delay, 1.0);
    config.batch_span_count = Some(10);
    config.batch_flush_delay = Some(5);
    assert_eq!(config.effective_queue().max_batch_size, 10);
    assert_eq!(config.effective_queue().max_coalescing_delay, 5.0);
    let endpoint = endpoint_of(&config, "http://collector:4318/v1/traces");
    assert_eq!(endpoint.max_batch_size, 10);
    assert!(endpoint
        .resource_attributes
        .contains(&("service.name".into(), "kong".into())));
}

#[test]
fn queue_bytes_and_concurrency_reach_the_exporter_settings() {
    let mut config = OpentelemetryConfig::default();
    let endpoint = endpoint_of(&config, "http://collector:4318/v1/traces");
    assert_eq!((endpoint.max_bytes, endpoint.concurrency), (None, 1));
    config.queue.max_bytes = Some(4096);
    config.queue.concurrency_limit = -1;
    let endpoint = endpoint_of(&config, "http://collector:4318/v1/traces");
    assert_eq!(endpoint.max_bytes, Some(4096));
    assert_eq!(endpoint.concurrency, crate::runtime::UNBOUNDED_EXPORTS);
    config.queue.max_bytes = Some(-5);
    assert_eq!(endpoint_of(&config, "http://c/").max_bytes, Some(1));
}

#[test]
fn a_spans_approximate_size_grows_with_its_content() {
    let span = FinishedSpan {
        trace_id: TraceId([1; 16]),
        span_id: SpanId([2; 8]),
        parent_span_id: None,
        trace_state: None,
        name: "kong",
        kind: SpanKind::Server,
        start_unix_nano: 1,
        end_unix_nano: 2,
        attributes: vec![],
        events: vec![],
        error: false,
    };
    let bare = span.approximate_size();
    let mut bigger = span.clone();
    bigger
        .attributes
        .push(("url.path", AttributeValue::String("x".repeat(1000))));
    assert!(
        bigger.approximate_size() >= bare + 1008,
        "{bare} {}",
        bigger.approximate_size()
    );
}

#[test]
fn every_retried_try_gets_its_own_failed_client_span() {
    let (plugin, captured) = plugin(1.0);
    let mut ctx = context(&[]);
    run_access(&plugin, &mut ctx);
    let outgoing = parse_traceparent(ctx.headers()[&TRACEPARENT].as_bytes()).unwrap();
    proxied(&mut ctx);
    let sent = ctx.timings.upstream_sent.unwrap();
    ctx.failed_tries.push(crate::runtime::FailedTry {
        started: sent,
        ended: sent,
        error: "upstream_connect_refused",
    });
    plugin.log(&ctx);
    let spans = captured.0.lock().unwrap();
    assert_eq!(spans.len(), 3);
    let (server, retried, last) = (&spans[0], &spans[1], &spans[2]);
    for client in [retried, last] {
        assert_eq!(client.kind, SpanKind::Client);
        assert_eq!(client.parent_span_id, Some(server.span_id));
    }
    assert!(retried.error);
    assert_ne!(retried.span_id, last.span_id);
    assert_eq!(
        attribute(retried, "error.type"),
        Some(&text("upstream_connect_refused"))
    );
    assert_eq!(attribute(retried, "http.response.status_code"), None);
    assert_eq!(
        last.span_id, outgoing.parent_id,
        "the upstream's parent is the last try"
    );
    assert!(!last.error);
}
