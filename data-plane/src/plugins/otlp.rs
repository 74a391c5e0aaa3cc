//! The live trace exporters the `opentelemetry` plugin compiles against
//! (`tollgate_shared::runtime::TraceExporters`): one [`Exporter`] per
//! distinct endpoint setting (URL, headers, resource attributes, timeouts,
//! queue), shared by every instance naming it and kept across config swaps
//! while some config uses it.
//!
//! An exporter is a bounded queue and one background task. `submit` never
//! blocks: a span that does not fit (`queue.max_entries` spans, and
//! `queue.max_bytes` bytes of spans by their approximate encoded size) is
//! dropped and counted, with a warning at most every 10 s. The task batches
//! spans (`queue.max_batch_size`, or whatever arrived within
//! `queue.max_coalescing_delay` of a batch's first span), encodes them once
//! as an OTLP `ExportTraceServiceRequest` (protobuf, `opentelemetry-proto`)
//! and POSTs them over kept-alive HTTP/1.1 connections, retrying a failed
//! batch with doubling delays for up to `queue.max_retry_time`, as Kong's
//! queue does. At most `concurrency` exports are in flight (one with Kong's
//! default `queue.concurrency_limit: 1`, [`UNBOUNDED_EXPORTS`] with `-1`);
//! the next batch is only gathered once an export slot is free, so while it
//! waits on a slow or dead receiver the queue fills and further spans are
//! dropped: the proxy never waits and memory stays bounded.
//! When the last config using an exporter is gone its queue closes; the task
//! sends what is left and ends.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tollgate_shared::runtime::{
    AttributeValue, FinishedSpan, OtlpEndpoint, SharedSet, SpanKind, SpanSink, TraceExporters,
    UNBOUNDED_EXPORTS,
};

/// Warnings about dropped spans or failed exports: at most one per this interval.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The data plane's exporters, by endpoint settings.
#[derive(Debug)]
pub struct OtlpExporters {
    exporters: SharedSet<OtlpEndpoint, Exporter>,
    runtime: tokio::runtime::Handle,
    tls: Arc<rustls::ClientConfig>,
}

/// What one exporter did since it started, for metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterStats {
    /// The endpoint URL without userinfo.
    pub endpoint: String,
    /// Spans the receiver accepted.
    pub exported: u64,
    /// Spans refused because the queue was full (`max_entries` or `max_bytes`).
    pub dropped: u64,
    /// Spans of batches given up after `max_retry_time`.
    pub failed: u64,
    /// Export requests that failed (each attempt, retried or not).
    pub failed_requests: u64,
    /// Spans waiting in the queue now.
    pub queued: u64,
    /// Export requests in flight now.
    pub in_flight: u64,
}

impl OtlpExporters {
    /// Exporters whose tasks run on `runtime`; `https` receivers are
    /// verified with `tls`.
    pub fn new(runtime: tokio::runtime::Handle, tls: Arc<rustls::ClientConfig>) -> OtlpExporters {
        OtlpExporters {
            exporters: SharedSet::default(),
            runtime,
            tls,
        }
    }

    /// Every exporter some config uses now.
    pub fn stats(&self) -> Vec<ExporterStats> {
        self.exporters
            .live_values()
            .iter()
            .map(|exporter| exporter.stats())
            .collect()
    }
}

impl TraceExporters for OtlpExporters {
    fn exporter(&self, endpoint: &OtlpEndpoint) -> Result<Arc<dyn SpanSink>, String> {
        let exporter = self.exporters.get_or_try_insert(endpoint, || {
            Exporter::start(endpoint, &self.runtime, &self.tls).map(Arc::new)
        })?;
        let sink: Arc<dyn SpanSink> = exporter;
        Ok(sink)
    }
}

#[derive(Debug, Default)]
struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    failed_requests: AtomicU64,
    /// Spans in the queue, and their approximate encoded bytes.
    queued: AtomicU64,
    queued_bytes: AtomicUsize,
    in_flight: AtomicU64,
    /// Milliseconds since `Counters::epoch` of the last drop warning.
    last_drop_warning: AtomicU64,
    /// When a failed export was last logged.
    last_failure_warning: Mutex<Option<Instant>>,
}

/// A span in the queue with the bytes it counts against `max_bytes`.
#[derive(Debug)]
struct Queued {
    span: FinishedSpan,
    bytes: usize,
}

/// One endpoint's queue; its task holds the receiving end.
#[derive(Debug)]
pub struct Exporter {
    queue: mpsc::Sender<Queued>,
    counters: Arc<Counters>,
    max_bytes: Option<usize>,
    endpoint: String,
    epoch: Instant,
}

impl Exporter {
    fn start(
        endpoint: &OtlpEndpoint,
        runtime: &tokio::runtime::Handle,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Exporter, String> {
        let client = Arc::new(OtlpClient::new(endpoint, tls)?);
        let (queue, spans) = mpsc::channel(endpoint.max_entries.max(1));
        let counters = Arc::new(Counters::default());
        let concurrency = endpoint.concurrency.clamp(1, UNBOUNDED_EXPORTS);
        let batcher = Batcher {
            spans,
            client,
            resource: resource(endpoint),
            counters: Arc::clone(&counters),
            max_batch_size: endpoint.max_batch_size.max(1),
            max_coalescing_delay: endpoint.max_coalescing_delay,
            retry: Arc::new(RetryPolicy {
                max_time: endpoint.max_retry_time,
                initial: endpoint.initial_retry_delay,
                max_delay: endpoint.max_retry_delay,
            }),
            slots: Arc::new(Semaphore::new(concurrency)),
        };
        runtime.spawn(batcher.run());
        Ok(Exporter {
            queue,
            counters,
            max_bytes: endpoint.max_bytes,
            endpoint: without_userinfo(&endpoint.url),
            epoch: Instant::now(),
        })
    }

    fn stats(&self) -> ExporterStats {
        let counters = &self.counters;
        ExporterStats {
            endpoint: self.endpoint.clone(),
            exported: counters.exported.load(Ordering::Relaxed),
            dropped: counters.dropped.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
            failed_requests: counters.failed_requests.load(Ordering::Relaxed),
            queued: counters.queued.load(Ordering::Relaxed),
            in_flight: counters.in_flight.load(Ordering::Relaxed),
        }
    }

    /// Counts `bytes` into the queue's byte budget, or refuses them.
    fn reserve_bytes(&self, bytes: usize) -> bool {
        let Some(max) = self.max_bytes else {
            return true;
        };
        let queued = &self.counters.queued_bytes;
        let mut current = queued.load(Ordering::Relaxed);
        loop {
            let Some(next) = current.checked_add(bytes).filter(|&next| next <= max) else {
                return false;
            };
            match queued.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    fn note_drop(&self) {
        let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.counters.last_drop_warning.load(Ordering::Relaxed);
        let due = dropped == 1 || now.saturating_sub(last) >= WARN_INTERVAL.as_millis() as u64;
        if due
            && self
                .counters
                .last_drop_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                endpoint = %self.endpoint,
                dropped_total = dropped,
                "opentelemetry: span queue full, dropping spans"
            );
        }
    }
}

impl SpanSink for Exporter {
    fn submit(&self, spans: Vec<FinishedSpan>) {
        for span in spans {
            // Measured only when a byte bound is set: the size is otherwise unused.
            let bytes = if self.max_bytes.is_some() {
                span.approximate_size()
            } else {
                0
            };
            if !self.reserve_bytes(bytes) {
                self.note_drop();
                continue;
            }
            // Counted before sending, so the batcher never sees it negative.
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
            if self.queue.try_send(Queued { span, bytes }).is_err() {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                self.counters
                    .queued_bytes
                    .fetch_sub(bytes, Ordering::AcqRel);
                self.note_drop();
            }
        }
    }
}

struct RetryPolicy {
    max_time: Duration,
    initial: Duration,
    max_delay: Duration,
}

/// The background half of an exporter.
struct Batcher {
    spans: mpsc::Receiver<Queued>,
    client: Arc<OtlpClient>,
    resource: Resource,
    counters: Arc<Counters>,
    max_batch_size: usize,
    max_coalescing_delay: Duration,
    retry: Arc<RetryPolicy>,
    /// Export slots: `concurrency` permits.
    slots: Arc<Semaphore>,
}

impl Batcher {
    async fn run(mut self) {
        loop {
            // A slot first: while every slot waits on the receiver, spans
            // stay in the bounded queue (and overflow is dropped there).
            let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else {
                return;
            };
            let Some(first) = self.spans.recv().await else {
                return;
            };
            let mut batch = Vec::with_capacity(self.max_batch_size.min(1024));
            self.take(&mut batch, first);
            let deadline = tokio::time::Instant::now() + self.max_coalescing_delay;
            while batch.len() < self.max_batch_size {
                match tokio::time::timeout_at(deadline, self.spans.recv()).await {
                    Ok(Some(queued)) => self.take(&mut batch, queued),
                    Ok(None) | Err(_) => break,
                }
            }
            let count = batch.len() as u64;
            let body = Bytes::from(encode(&self.resource, batch).encode_to_vec());
            let export = Export {
                client: Arc::clone(&self.client),
                counters: Arc::clone(&self.counters),
                retry: Arc::clone(&self.retry),
            };
            self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                export.run(body, count).await;
                export.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
                drop(slot);
            });
        }
    }

    /// Moves a span from the queue into `batch`, releasing what it counted.
    fn take(&self, batch: &mut Vec<FinishedSpan>, queued: Queued) {
        self.counters.queued.fetch_sub(1, Ordering::Relaxed);
        self.counters
            .queued_bytes
            .fetch_sub(queued.bytes, Ordering::AcqRel);
        batch.push(queued.span);
    }
}

/// One batch being exported (on a task of its own, holding an export slot).
struct Export {
    client: Arc<OtlpClient>,
    counters: Arc<Counters>,
    retry: Arc<RetryPolicy>,
}

impl Export {
    async fn run(&self, body: Bytes, count: u64) {
        match self.send_with_retries(body).await {
            Ok(()) => {
                self.counters.exported.fetch_add(count, Ordering::Relaxed);
            }
            Err(error) => {
                self.counters.failed.fetch_add(count, Ordering::Relaxed);
                let mut last = self
                    .counters
                    .last_failure_warning
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if last.is_none_or(|at| at.elapsed() >= WARN_INTERVAL) {
                    *last = Some(Instant::now());
                    tracing::warn!(
                        endpoint = %self.client.label,
                        spans = count,
                        %error,
                        "opentelemetry: export failed, batch dropped"
                    );
                }
            }
        }
    }

    /// Kong's queue retry: doubling delays from `initial_retry_delay` up to
    /// `max_retry_delay`, until `max_retry_time` would be exceeded.
    async fn send_with_retries(&self, body: Bytes) -> Result<(), ExportError> {
        let started = Instant::now();
        let mut delay = self.retry.initial;
        loop {
            match self.client.send(body.clone()).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    self.counters
                        .failed_requests
                        .fetch_add(1, Ordering::Relaxed);
                    if started.elapsed() + delay > self.retry.max_time {
                        return Err(error);
                    }
                    tracing::debug!(%error, ?delay, "opentelemetry: export failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.retry.max_delay.max(self.retry.initial));
                }
            }
        }
    }
}

fn string_value(value: String) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(value)),
    })
}

fn resource(endpoint: &OtlpEndpoint) -> Resource {
    Resource {
        attributes: endpoint
            .resource_attributes
            .iter()
            .map(|(key, value)| KeyValue {
                key: key.clone(),
                value: string_value(value.clone()),
            })
            .collect(),
        ..Resource::default()
    }
}

fn encode(resource: &Resource, batch: Vec<FinishedSpan>) -> ExportTraceServiceRequest {
    let spans = batch.into_iter().map(encode_span).collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "tollgate".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn encode_span(finished: FinishedSpan) -> Span {
    let kind = match finished.kind {
        SpanKind::Server => span::SpanKind::Server,
        SpanKind::Client => span::SpanKind::Client,
    };
    let attributes = finished
        .attributes
        .into_iter()
        .map(|(key, value)| KeyValue {
            key: key.to_string(),
            value: Some(AnyValue {
                value: Some(match value {
                    AttributeValue::String(text) => any_value::Value::StringValue(text),
                    AttributeValue::Int(number) => any_value::Value::IntValue(number),
                    AttributeValue::Bool(flag) => any_value::Value::BoolValue(flag),
                }),
            }),
        })
        .collect();
    Span {
        trace_id: finished.trace_id.0.to_vec(),
        span_id: finished.span_id.0.to_vec(),
        parent_span_id: finished
            .parent_span_id
            .map_or_else(Vec::new, |id| id.0.to_vec()),
        trace_state: finished.trace_state.unwrap_or_default(),
        name: finished.name.to_string(),
        kind: kind as i32,
        start_time_unix_nano: finished.start_unix_nano,
        end_time_unix_nano: finished.end_unix_nano,
        attributes,
        events: finished
            .events
            .into_iter()
            .map(|(name, at)| span::Event {
                time_unix_nano: at,
                name: name.to_string(),
                ..span::Event::default()
            })
            .collect(),
        status: finished.error.then(|| Status {
            code: status::StatusCode::Error as i32,
            ..Status::default()
        }),
        ..Span::default()
    }
}

/// Why an export request failed.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("connect to {0} failed: {1}")]
    Connect(String, std::io::Error),
    #[error("connect to {0} timed out")]
    ConnectTimeout(String),
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(String, std::io::Error),
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    #[error("no answer within the send and read timeouts")]
    Timeout,
    #[error("receiver answered {0}")]
    Status(http::StatusCode),
}

/// `url` without the `user:password@` of its authority, for logs and stats.
pub(crate) fn without_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if scheme.is_empty() {
        format!("{host}{tail}")
    } else {
        format!("{scheme}://{host}{tail}")
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// OTLP/HTTP over kept-alive HTTP/1.1 connections: one per export in
/// flight, made on first use and again after a failure; idle ones are
/// reused (at most the exporter's concurrency of them exist).
struct OtlpClient {
    uri: Uri,
    /// The URL for logs: userinfo (credentials) removed.
    label: String,
    authority: String,
    port: u16,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    )>,
    headers: HeaderMap,
    connect_timeout: Duration,
    exchange_timeout: Duration,
    read_timeout: Duration,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl OtlpClient {
    fn new(endpoint: &OtlpEndpoint, tls: &Arc<rustls::ClientConfig>) -> Result<OtlpClient, String> {
        let shown = without_userinfo(&endpoint.url);
        let uri: Uri = endpoint
            .url
            .parse()
            .map_err(|e| format!("opentelemetry: invalid endpoint '{}': {e}", shown))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "opentelemetry: endpoint '{}' is not http(s)",
                    shown
                ))
            }
        };
        let Some(host) = uri.host() else {
            return Err(format!("opentelemetry: endpoint '{}' has no host", shown));
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = if https {
            let name = rustls_pki_types::ServerName::try_from(bare_host.clone())
                .map_err(|e| format!("opentelemetry: endpoint host '{host}': {e}"))?;
            Some((tokio_rustls::TlsConnector::from(Arc::clone(tls)), name))
        } else {
            None
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &endpoint.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("opentelemetry: bad header name '{name}'"))?;
            // The value may be a credential: never echoed in the error.
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("opentelemetry: bad value for header '{name}'"))?;
            headers.append(name, value);
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        let authority = uri
            .authority()
            .map_or_else(|| host.to_string(), |a| a.as_str().to_string());
        if let Ok(value) = HeaderValue::from_str(&authority) {
            headers.insert(HOST, value);
        }
        Ok(OtlpClient {
            authority: bare_host,
            label: shown,
            port,
            tls,
            headers,
            connect_timeout: endpoint.connect_timeout,
            exchange_timeout: endpoint.send_timeout + endpoint.read_timeout,
            read_timeout: endpoint.read_timeout,
            idle: Mutex::new(Vec::new()),
            uri,
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ExportError> {
        let target = format!("{}:{}", self.authority, self.port);
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((self.authority.as_str(), self.port)),
        )
        .await
        .map_err(|_| ExportError::ConnectTimeout(target.clone()))?
        .map_err(|e| ExportError::Connect(target.clone(), e))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => {
                let stream = tokio::time::timeout(
                    self.connect_timeout,
                    connector.connect(name.clone(), tcp),
                )
                .await
                .map_err(|_| ExportError::ConnectTimeout(target.clone()))?
                .map_err(|e| ExportError::Tls(target.clone(), e))?;
                Box::new(stream)
            }
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "opentelemetry: receiver connection ended");
            }
        });
        Ok(sender)
    }

    /// POSTs one encoded batch; 2xx is success (the body is read and dropped).
    async fn send(&self, body: Bytes) -> Result<(), ExportError> {
        let idle = self.take_idle();
        let mut sender = match idle {
            Some(sender) => sender,
            None => self.connect().await?,
        };
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.path_and_query().map_or_else(
            || Uri::from_static("/"),
            |pq| Uri::try_from(pq.as_str()).unwrap_or_else(|_| Uri::from_static("/")),
        );
        *request.headers_mut() = self.headers.clone();
        let exchange = async {
            sender.ready().await?;
            sender.send_request(request).await
        };
        let response = tokio::time::timeout(self.exchange_timeout, exchange)
            .await
            .map_err(|_| ExportError::Timeout)??;
        let status = response.status();
        let drained = tokio::time::timeout(self.read_timeout, response.into_body().collect()).await;
        let body_read = matches!(drained, Ok(Ok(_)));
        if !status.is_success() {
            return Err(ExportError::Status(status));
        }
        if body_read {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(sender);
        }
        Ok(())
    }

    /// An idle connection the receiver has not closed, if any.
    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use tollgate_shared::runtime::{SpanId, TraceId};

    #[test]
    fn credentials_in_the_url_are_not_shown() {
        assert_eq!(
            without_userinfo("https://user:secret@otel.example:4318/v1/traces?x=a@b"),
            "https://otel.example:4318/v1/traces?x=a@b"
        );
        assert_eq!(
            without_userinfo("http://otel:4318/v1/traces"),
            "http://otel:4318/v1/traces"
        );
    }

    #[test]
    fn spans_encode_as_otlp_with_ids_kinds_and_status() {
        let finished = FinishedSpan {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            parent_span_id: None,
            trace_state: Some("a=b".into()),
            name: "kong",
            kind: SpanKind::Server,
            start_unix_nano: 10,
            end_unix_nano: 20,
            attributes: vec![("http.response.status_code", AttributeValue::Int(502))],
            events: vec![("upstream connected", 15)],
            error: true,
        };
        let resource = Resource::default();
        let request = encode(&resource, vec![finished]);
        let bytes = request.encode_to_vec();
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let span = &decoded.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id, vec![1; 16]);
        assert_eq!(span.span_id, vec![2; 8]);
        assert!(span.parent_span_id.is_empty());
        assert_eq!(span.kind, span::SpanKind::Server as i32);
        assert_eq!(span.trace_state, "a=b");
        assert_eq!(
            span.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
        assert_eq!(span.attributes[0].key, "http.response.status_code");
        assert_eq!(
            (span.events[0].name.as_str(), span.events[0].time_unix_nano),
            ("upstream connected", 15)
        );
    }
}
