//! The `opentelemetry` plugin (Kong priority 14): config and schema with
//! Kong's field names (`kong/plugins/opentelemetry/schema.lua`), and its
//! runtime: W3C `traceparent`/`tracestate` read in `access` (an invalid one
//! is ignored and a new trace started), the upstream request given a
//! `traceparent` naming the client span as its parent, the trace id answered
//! in `http_response_header_for_traceid`, and in `log` a server span for the
//! request and a client span per upstream try (on the last one, events when
//! the connection was ready and the first response byte arrived), with the HTTP
//! semantic-convention attribute names, handed to the data plane's exporter
//! (`data-plane/src/plugins/otlp.rs`), which batches and sends them in the
//! background. No export work happens on the request path.

mod w3c;

pub use w3c::{format_traceparent, parse_traceparent, sample_by_trace_id, Traceparent};

use super::http_log::{queue_record, QueueConfig};
use crate::runtime::{
    AttributeValue, CompileContext, CompilePlugin, Decision, FinishedSpan, OtlpEndpoint, Phases,
    PluginCompileError, PluginError, PluginRuntime, Protocol, RequestContext, ResponseHead, SpanId,
    SpanKind, SpanSink, TraceId, UNBOUNDED_EXPORTS,
};
use crate::schema::engine::{Check, Field, Record, Rule, Shorthand, Subschema};
use crate::schema::typedefs::{self, strings, HTTP_PROTOCOLS};
use http::header::{HeaderName, HeaderValue, USER_AGENT};
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `traceparent`, W3C Trace Context.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`, W3C Trace Context.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Kong's propagation formats (`kong/observability/tracing/propagation/utils.lua`).
const FORMATS: [&str; 9] = [
    "w3c",
    "b3",
    "b3-single",
    "jaeger",
    "ot",
    "aws",
    "gcp",
    "datadog",
    "instana",
];
const HEADER_TYPES: [&str; 11] = [
    "preserve",
    "ignore",
    "b3",
    "b3-single",
    "w3c",
    "jaeger",
    "ot",
    "aws",
    "gcp",
    "datadog",
    "instana",
];

/// Kong's `propagation` record (`typedefs.propagation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PropagationConfig {
    pub extract: Option<Vec<String>>,
    pub clear: Option<Vec<String>>,
    pub inject: Option<Vec<String>>,
    pub default_format: String,
}

impl Default for PropagationConfig {
    fn default() -> Self {
        Self {
            extract: None,
            clear: None,
            inject: None,
            default_format: "w3c".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OpentelemetryConfig {
    /// OTLP/HTTP traces receiver (`endpoint` is the deprecated shorthand).
    pub traces_endpoint: Option<String>,
    /// OTLP logs receiver; refused at compile (this build exports traces only).
    pub logs_endpoint: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub resource_attributes: Option<BTreeMap<String, String>>,
    pub queue: QueueConfig,
    /// Deprecated: `queue.max_batch_size` (applied when not 200).
    pub batch_span_count: Option<i64>,
    /// Deprecated: `queue.max_coalescing_delay` in seconds (applied when not 3).
    pub batch_flush_delay: Option<i64>,
    /// Milliseconds.
    pub connect_timeout: i64,
    pub send_timeout: i64,
    pub read_timeout: i64,
    pub http_response_header_for_traceid: Option<String>,
    /// Deprecated: `propagation`.
    pub header_type: Option<String>,
    /// Probability of sampling a trace (0..1). Unset: 1 (see ARCHITECTURE.md).
    pub sampling_rate: Option<f64>,
    pub propagation: PropagationConfig,
}

impl Default for OpentelemetryConfig {
    fn default() -> Self {
        Self {
            traces_endpoint: None,
            logs_endpoint: None,
            headers: None,
            resource_attributes: None,
            queue: QueueConfig {
                max_batch_size: 200,
                ..QueueConfig::default()
            },
            batch_span_count: None,
            batch_flush_delay: None,
            connect_timeout: 1000,
            send_timeout: 5000,
            read_timeout: 5000,
            http_response_header_for_traceid: None,
            header_type: Some("preserve".into()),
            sampling_rate: None,
            propagation: PropagationConfig::default(),
        }
    }
}

impl OpentelemetryConfig {
    /// The queue settings with the deprecated `batch_span_count` and
    /// `batch_flush_delay` applied when they differ from their old defaults
    /// (200 and 3), as Kong's `Queue.get_plugin_params` does.
    pub fn effective_queue(&self) -> QueueConfig {
        let mut queue = self.queue.clone();
        if let Some(count) = self.batch_span_count.filter(|&c| c != 200) {
            queue.max_batch_size = count;
        }
        if let Some(delay) = self.batch_flush_delay.filter(|&d| d != 3) {
            queue.max_coalescing_delay = delay as f64;
        }
        queue
    }
}

fn check_endpoint(value: &Value) -> Result<(), String> {
    let text = value.as_str().unwrap_or_default();
    match url::Url::parse(text) {
        Ok(url) if !url.has_host() => Err("missing host in url".into()),
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(()),
        Ok(url) => Err(format!(
            "unsupported scheme in url: '{}' (expected http or https)",
            url.scheme()
        )),
        Err(url::ParseError::RelativeUrlWithoutBase) => Err("missing scheme in url".into()),
        Err(error) => Err(format!("invalid url: {error}")),
    }
}

/// Kong's `custom_validator` on `resource_attributes`.
fn check_resource_attributes(value: &Value) -> Result<(), String> {
    let Some(map) = value.as_object() else {
        return Ok(());
    };
    if map.values().any(|v| v.as_str() == Some("")) {
        return Err("required field missing".into());
    }
    Ok(())
}

fn endpoint_shorthand(value: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("traces_endpoint".into(), value.clone());
    out
}

fn propagation_record() -> Record {
    let mut extractors: Vec<&str> = FORMATS.to_vec();
    extractors.retain(|f| *f != "b3-single");
    let mut injectors = vec!["preserve"];
    injectors.extend(FORMATS);
    Record::new(vec![
        Field::array(
            "extract",
            Field::string("").rule(Rule::OneOf(strings(&extractors))),
        ),
        Field::array(
            "clear",
            Field::string("").rule(Rule::Custom(typedefs::check_header_name)),
        ),
        Field::array(
            "inject",
            Field::string("").rule(Rule::OneOf(strings(&injectors))),
        ),
        Field::string("default_format")
            .required()
            .default(json!("w3c"))
            .rule(Rule::OneOf(strings(&FORMATS))),
    ])
}

pub(crate) fn subschema() -> Subschema {
    let mut queue = queue_record();
    for field in &mut queue.fields {
        if field.name == "max_batch_size" {
            field.default = Some(json!(200));
        }
    }
    let config = Record::new(vec![
        Field::string("traces_endpoint").rule(Rule::Custom(check_endpoint)),
        Field::string("logs_endpoint").rule(Rule::Custom(check_endpoint)),
        Field::map(
            "headers",
            Field::string("").rule(Rule::Custom(typedefs::check_header_name)),
            Field::string(""),
        ),
        Field::map(
            "resource_attributes",
            Field::string("").required(),
            Field::string("").required(),
        )
        .rule(Rule::Custom(check_resource_attributes)),
        Field::record("queue", queue),
        Field::integer("batch_span_count"),
        Field::integer("batch_flush_delay"),
        typedefs::timeout("connect_timeout").default_on_null(json!(1000)),
        typedefs::timeout("send_timeout").default_on_null(json!(5000)),
        typedefs::timeout("read_timeout").default_on_null(json!(5000)),
        Field::string("http_response_header_for_traceid"),
        Field::string("header_type")
            .default(json!("preserve"))
            .rule(Rule::OneOf(strings(&HEADER_TYPES))),
        Field::number("sampling_rate").rule(Rule::Between(0.0, 1.0)),
        Field::record("propagation", propagation_record()),
    ])
    .checks(vec![Check::AtLeastOneOf(vec![
        "traces_endpoint",
        "logs_endpoint",
    ])])
    .shorthands(vec![Shorthand {
        field: Field::string("endpoint").rule(Rule::Custom(check_endpoint)),
        expand: endpoint_shorthand,
        deprecated: true,
        mirror: None,
    }]);
    Subschema {
        fields: vec![
            typedefs::protocols(&HTTP_PROTOCOLS, &HTTP_PROTOCOLS),
            Field::record("config", config),
        ],
        checks: vec![],
    }
}

/// The trace a request belongs to, decided once (in `access`, or in `log`
/// for a request answered before `access` reached this plugin).
#[derive(Debug, Clone)]
struct RequestTrace {
    trace_id: TraceId,
    /// The gateway's server span.
    server_span: SpanId,
    /// The client span of the upstream exchange, named in the upstream's `traceparent`.
    client_span: SpanId,
    /// The caller's span, from a valid incoming `traceparent`.
    parent: Option<SpanId>,
    trace_state: Option<String>,
    flags: u8,
    sampled: bool,
}

/// A compiled `opentelemetry` instance.
#[derive(Debug)]
pub struct Opentelemetry {
    sink: Arc<dyn SpanSink>,
    sampling_rate: f64,
    extract: bool,
    inject: bool,
    clear: Vec<HeaderName>,
    trace_id_header: Option<HeaderName>,
}

impl Opentelemetry {
    /// Reads the incoming trace context and takes the sampling decision.
    fn begin(&self, headers: &HeaderMap) -> RequestTrace {
        let incoming = if self.extract {
            single_value(headers, &TRACEPARENT).and_then(|v| parse_traceparent(v.as_bytes()))
        } else {
            None
        };
        let trace_id = incoming.map_or_else(TraceId::random, |p| p.trace_id);
        // Kong's `get_sampling_decision`: an unsampled parent is never
        // sampled; otherwise the trace-id-based probability decides.
        let sampled = match incoming {
            Some(parent) if !parent.sampled() => false,
            _ => sample_by_trace_id(trace_id, self.sampling_rate),
        };
        // Kong ORs the decision into the incoming flags.
        let flags = incoming.map_or(0, |p| p.flags) | u8::from(sampled);
        let trace_state = incoming.and_then(|_| joined_trace_state(headers));
        RequestTrace {
            trace_id,
            server_span: SpanId::random(),
            client_span: SpanId::random(),
            parent: incoming.map(|p| p.parent_id),
            trace_state,
            flags,
            sampled,
        }
    }

    fn spans(&self, ctx: &RequestContext, trace: &RequestTrace) -> Vec<FinishedSpan> {
        let clock = WallClock::now();
        let finished = ctx.timings.finished.unwrap_or(clock.instant);
        let status = ctx.status.map(|s| s.as_u16());
        let mut spans = Vec::with_capacity(2 + ctx.failed_tries.len());
        spans.push(FinishedSpan {
            trace_id: trace.trace_id,
            span_id: trace.server_span,
            parent_span_id: trace.parent,
            trace_state: trace.trace_state.clone(),
            name: "kong",
            kind: SpanKind::Server,
            start_unix_nano: clock.unix_nanos(ctx.timings.received),
            end_unix_nano: clock.unix_nanos(finished),
            attributes: server_attributes(ctx),
            events: Vec::new(),
            error: status.is_some_and(|s| s >= 500),
        });
        if let Some(sent) = ctx.timings.upstream_sent {
            let (attributes, error) = client_attributes(ctx);
            // One client span per try: the retried ones, then the last try,
            // the one the upstream's `traceparent` names.
            for failed in &ctx.failed_tries {
                let mut attributes = attributes_of_failed_try(&attributes);
                attributes.push(("error.type", text(failed.error)));
                spans.push(FinishedSpan {
                    trace_id: trace.trace_id,
                    span_id: SpanId::random(),
                    parent_span_id: Some(trace.server_span),
                    trace_state: trace.trace_state.clone(),
                    name: "kong.balancer",
                    kind: SpanKind::Client,
                    start_unix_nano: clock.unix_nanos(failed.started),
                    end_unix_nano: clock.unix_nanos(failed.ended),
                    attributes,
                    events: Vec::new(),
                    error: true,
                });
            }
            // Retries follow at once, so the last try starts where the one
            // before it ended.
            let last_started = ctx.failed_tries.last().map_or(sent, |f| f.ended);
            let timings = &ctx.timings;
            let events = [
                ("upstream connected", timings.upstream_connected),
                ("upstream first byte", timings.upstream_first_byte),
            ]
            .into_iter()
            .filter_map(|(name, at)| at.map(|at| (name, clock.unix_nanos(at))))
            .collect();
            spans.push(FinishedSpan {
                trace_id: trace.trace_id,
                span_id: trace.client_span,
                parent_span_id: Some(trace.server_span),
                trace_state: trace.trace_state.clone(),
                name: "kong.balancer",
                kind: SpanKind::Client,
                start_unix_nano: clock.unix_nanos(last_started),
                end_unix_nano: clock.unix_nanos(finished),
                attributes,
                events,
                error,
            });
        }
        spans
    }
}

/// The one value of a header that must not repeat (W3C: several
/// `traceparent` headers make the context invalid).
fn single_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// Every `tracestate` field joined as one list (W3C allows splitting it).
fn joined_trace_state(headers: &HeaderMap) -> Option<String> {
    let mut joined = String::new();
    for value in headers.get_all(&TRACESTATE) {
        let text = value.to_str().ok()?.trim();
        if text.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
    }
    // Recorded on the spans only up to a bound (W3C lets a vendor drop an
    // oversized tracestate); the header itself is passed upstream unchanged.
    const MAX_RECORDED: usize = 2048;
    (!joined.is_empty() && joined.len() <= MAX_RECORDED).then_some(joined)
}

/// Converts the monotonic instants of the request's timings to Unix time.
struct WallClock {
    instant: Instant,
    unix_nanos: u64,
}

impl WallClock {
    fn now() -> WallClock {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        WallClock {
            instant: Instant::now(),
            unix_nanos: u64::try_from(unix.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    fn unix_nanos(&self, at: Instant) -> u64 {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        match self.instant.checked_duration_since(at) {
            Some(ago) => self.unix_nanos.saturating_sub(nanos(ago)),
            None => self
                .unix_nanos
                .saturating_add(nanos(at.duration_since(self.instant))),
        }
    }
}

fn text(value: impl Into<String>) -> AttributeValue {
    AttributeValue::String(value.into())
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn protocol_version(version: http::Version) -> &'static str {
    if version == http::Version::HTTP_2 {
        "2"
    } else if version == http::Version::HTTP_3 {
        "3"
    } else if version == http::Version::HTTP_10 {
        "1.0"
    } else if version == http::Version::HTTP_09 {
        "0.9"
    } else {
        "1.1"
    }
}

/// Stable HTTP server semantic conventions (v1.26): `http.request.method`,
/// `url.*`, `server.*`, `client.address`, `network.*`, `user_agent.original`,
/// `http.route`, `http.response.status_code`, `error.type`; plus Kong's
/// `kong.request.id`.
fn server_attributes(ctx: &RequestContext) -> Vec<(&'static str, AttributeValue)> {
    let request = &ctx.request;
    let mut attributes = Vec::with_capacity(14);
    attributes.push(("http.request.method", text(request.method.as_str())));
    let scheme = match ctx.protocol {
        Protocol::Http | Protocol::Grpc => "http",
        Protocol::Https | Protocol::Grpcs => "https",
    };
    attributes.push(("url.scheme", text(scheme)));
    attributes.push(("url.path", text(request.uri.path())));
    if let Some(query) = request.uri.query() {
        attributes.push(("url.query", text(query)));
    }
    let host = ctx.host.as_deref().or_else(|| {
        request
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
    });
    if let Some(host) = host {
        attributes.push(("server.address", text(host_without_port(host))));
    }
    if let Some(facts) = ctx.log_facts.as_ref() {
        attributes.push((
            "server.port",
            AttributeValue::Int(i64::from(facts.server_port)),
        ));
    }
    attributes.push((
        "network.protocol.version",
        text(protocol_version(request.version)),
    ));
    attributes.push(("client.address", text(ctx.client_ip.to_string())));
    attributes.push(("network.peer.address", text(ctx.peer_ip.to_string())));
    if let Some(agent) = request
        .headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        attributes.push(("user_agent.original", text(agent)));
    }
    if let Some(path) = ctx
        .route
        .as_ref()
        .and_then(|r| r.paths.as_ref())
        .and_then(|p| p.first())
    {
        attributes.push(("http.route", text(path.as_str())));
    }
    if let Some(status) = ctx.status {
        attributes.push((
            "http.response.status_code",
            AttributeValue::Int(i64::from(status.as_u16())),
        ));
        if status.is_server_error() {
            attributes.push(("error.type", text(status.as_str())));
        }
    }
    if let Ok(id) = ctx.request_id.to_str() {
        attributes.push(("kong.request.id", text(id)));
    }
    attributes
}

/// A retried try's attributes: the request's, without the outcome of the
/// last try (its status, its error).
fn attributes_of_failed_try(
    last: &[(&'static str, AttributeValue)],
) -> Vec<(&'static str, AttributeValue)> {
    last.iter()
        .filter(|(key, _)| !matches!(*key, "http.response.status_code" | "error.type"))
        .cloned()
        .collect()
}

/// Stable HTTP client semantic conventions: the upstream request. A failed
/// exchange (no upstream status) is an error typed by the status the
/// gateway answered instead (502, 504).
fn client_attributes(ctx: &RequestContext) -> (Vec<(&'static str, AttributeValue)>, bool) {
    let mut attributes = Vec::with_capacity(7);
    attributes.push(("http.request.method", text(ctx.request.method.as_str())));
    let facts = ctx.log_facts.as_deref();
    let target = facts.and_then(|f| f.upstream_target.as_ref());
    if let Some((host, port)) = target {
        attributes.push(("server.address", text(host.to_string())));
        attributes.push(("server.port", AttributeValue::Int(i64::from(*port))));
    }
    if let (Some(uri), Some((host, port))) = (facts.and_then(|f| f.upstream_uri.as_ref()), target) {
        let full = if uri.scheme().is_some() {
            uri.to_string()
        } else {
            let scheme = ctx
                .service
                .as_ref()
                .map_or("http", |s| match s.protocol.as_str() {
                    "https" | "grpcs" | "tls" => "https",
                    _ => "http",
                });
            format!("{scheme}://{host}:{port}{uri}")
        };
        attributes.push(("url.full", text(full)));
    }
    let upstream_status = facts.and_then(|f| f.upstream_status);
    let error = match upstream_status {
        Some(status) => {
            attributes.push((
                "http.response.status_code",
                AttributeValue::Int(i64::from(status.as_u16())),
            ));
            if status.as_u16() >= 400 {
                attributes.push(("error.type", text(status.as_str())));
            }
            status.as_u16() >= 400
        }
        None => {
            let answered = ctx.status.as_ref().map_or("_OTHER", |s| s.as_str());
            attributes.push(("error.type", text(answered)));
            true
        }
    };
    (attributes, error)
}

impl PluginRuntime for Opentelemetry {
    const PHASES: Phases = Phases::ACCESS
        .with(Phases::RESPONSE)
        .with(Phases::LOG_RECORD)
        .with(Phases::REQUEST_HEADERS_AFTER_UPSTREAM);

    fn access(
        &self,
        ctx: &mut RequestContext,
    ) -> impl Future<Output = Result<Decision, PluginError>> + Send {
        let trace = self.begin(&ctx.request.headers);
        let headers = &mut ctx.request.headers;
        for name in &self.clear {
            headers.remove(name);
        }
        if self.inject {
            headers.insert(
                TRACEPARENT.clone(),
                format_traceparent(trace.trace_id, trace.client_span, trace.flags),
            );
            if trace.parent.is_none() {
                // A new trace: another trace's vendor state does not belong to it.
                headers.remove(&TRACESTATE);
            }
        }
        ctx.state.insert(trace);
        std::future::ready(Ok(Decision::Continue))
    }

    fn response(&self, ctx: &mut RequestContext, head: ResponseHead<'_>) {
        let Some(name) = self.trace_id_header.as_ref() else {
            return;
        };
        if ctx.state.get::<RequestTrace>().is_none() {
            // Answered before `access` reached this plugin: decide the trace
            // now, so the header and the exported spans agree.
            let trace = self.begin(&ctx.request.headers);
            ctx.state.insert(trace);
        }
        if let Some(trace) = ctx.state.get::<RequestTrace>() {
            if let Ok(value) = HeaderValue::from_str(&trace.trace_id.to_hex()) {
                head.headers.append(name.clone(), value);
            }
        }
    }

    fn log(&self, ctx: &RequestContext) {
        let begun;
        let trace = match ctx.state.get::<RequestTrace>() {
            Some(trace) => trace,
            None => {
                // Answered before `access` reached this plugin (a plugin of
                // higher priority, routing): the server span still counts.
                begun = self.begin(&ctx.request.headers);
                &begun
            }
        };
        if trace.sampled {
            self.sink.submit(self.spans(ctx, trace));
        }
    }
}

fn unsupported(field: &str, value: &str) -> PluginCompileError {
    PluginCompileError::Invalid(format!(
        "config.{field}: '{value}' is not supported by this data plane (w3c propagation only)"
    ))
}

/// Which directions of W3C propagation the config asks for (Kong's
/// `propagation.get_plugin_params`: the `propagation` lists when any is set,
/// else the deprecated `header_type`). Formats other than w3c are refused
/// rather than silently not propagated.
fn propagation_plan(
    config: &OpentelemetryConfig,
) -> Result<(bool, bool, Vec<HeaderName>), PluginCompileError> {
    let propagation = &config.propagation;
    if propagation.default_format != "w3c" {
        return Err(unsupported(
            "propagation.default_format",
            &propagation.default_format,
        ));
    }
    let mut clear = Vec::new();
    for name in propagation.clear.iter().flatten() {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            PluginCompileError::Invalid(format!("config.propagation.clear: bad header '{name}'"))
        })?;
        clear.push(name);
    }
    let configured = propagation.extract.is_some()
        || propagation.inject.is_some()
        || propagation.clear.is_some();
    if configured {
        let mut extract = false;
        for format in propagation.extract.iter().flatten() {
            match format.as_str() {
                "w3c" => extract = true,
                other => return Err(unsupported("propagation.extract", other)),
            }
        }
        let mut inject = false;
        for format in propagation.inject.iter().flatten() {
            match format.as_str() {
                "w3c" | "preserve" => inject = true,
                other => return Err(unsupported("propagation.inject", other)),
            }
        }
        return Ok((extract, inject, clear));
    }
    match config.header_type.as_deref().unwrap_or("preserve") {
        // Kong extracts every format it knows and injects the one found;
        // here w3c is the one format read and written.
        "preserve" | "w3c" => Ok((true, true, clear)),
        "ignore" => Ok((false, true, clear)),
        other => Err(unsupported("header_type", other)),
    }
}

fn millis(value: i64) -> Duration {
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}

fn seconds(value: f64) -> Duration {
    if value.is_finite() && value > 0.0 {
        Duration::from_secs_f64(value.min(1e9))
    } else {
        Duration::ZERO
    }
}

/// The exporter settings of a config; `service.name` defaults to Kong's
/// `kong` and `service.version` to this build's version.
fn endpoint_of(config: &OpentelemetryConfig, url: &str) -> OtlpEndpoint {
    let queue = config.effective_queue();
    let mut resource: BTreeMap<String, String> = BTreeMap::new();
    resource.insert("service.name".into(), "kong".into());
    resource.insert("service.version".into(), env!("CARGO_PKG_VERSION").into());
    for (key, value) in config.resource_attributes.iter().flatten() {
        resource.insert(key.clone(), value.clone());
    }
    let size = |v: i64| usize::try_from(v).unwrap_or(1).max(1);
    OtlpEndpoint {
        url: url.to_string(),
        headers: config
            .headers
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        resource_attributes: resource.into_iter().collect(),
        connect_timeout: millis(config.connect_timeout),
        send_timeout: millis(config.send_timeout),
        read_timeout: millis(config.read_timeout),
        max_batch_size: size(queue.max_batch_size),
        max_coalescing_delay: seconds(queue.max_coalescing_delay),
        max_entries: size(queue.max_entries),
        max_retry_time: seconds(queue.max_retry_time),
        initial_retry_delay: seconds(queue.initial_retry_delay),
        max_retry_delay: seconds(queue.max_retry_delay),
        max_bytes: queue
            .max_bytes
            .map(|bytes| usize::try_from(bytes.max(1)).unwrap_or(usize::MAX)),
        concurrency: if queue.concurrency_limit == -1 {
            UNBOUNDED_EXPORTS
        } else {
            1
        },
    }
}

impl CompilePlugin<OpentelemetryConfig> for Opentelemetry {
    fn compile(
        config: &OpentelemetryConfig,
        cx: &CompileContext<'_>,
    ) -> Result<Self, PluginCompileError> {
        if config.logs_endpoint.is_some() {
            return Err(PluginCompileError::Invalid(
                "config.logs_endpoint is not supported by this data plane (traces only)".into(),
            ));
        }
        let Some(url) = config.traces_endpoint.as_deref() else {
            return Err(PluginCompileError::Invalid(
                "config.traces_endpoint is required".into(),
            ));
        };
        let (extract, inject, clear) = propagation_plan(config)?;
        let trace_id_header = match config.http_response_header_for_traceid.as_deref() {
            None => None,
            Some(name) => Some(HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                PluginCompileError::Invalid(format!(
                    "config.http_response_header_for_traceid: '{name}' is not a header name"
                ))
            })?),
        };
        let sink = cx
            .resources
            .trace_exporter(&endpoint_of(config, url))
            .map_err(PluginCompileError::Resource)?;
        Ok(Opentelemetry {
            sink,
            sampling_rate: config.sampling_rate.unwrap_or(1.0),
            extract,
            inject,
            clear,
            trace_id_header,
        })
    }
}

#[cfg(test)]
mod tests;
