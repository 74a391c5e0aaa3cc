//! Finished trace spans as plain data, and the resource traits through which
//! a plugin hands them to an exporter the data plane runs in the background
//! ([`TraceExporters`], [`SpanSink`]). Building a span is a few field writes;
//! encoding (OTLP protobuf) and sending happen off the request path, in the
//! data plane (`data-plane/src/plugins/otlp.rs`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A W3C trace id: 16 bytes, never all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// A W3C span (parent) id: 8 bytes, never all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// A random id (retried in the astronomically rare all-zero case).
    pub fn random() -> TraceId {
        loop {
            let bytes: [u8; 16] = rand::random();
            if bytes != [0; 16] {
                return TraceId(bytes);
            }
        }
    }

    /// 32 lowercase hex digits.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

impl SpanId {
    pub fn random() -> SpanId {
        loop {
            let bytes: [u8; 8] = rand::random();
            if bytes != [0; 8] {
                return SpanId(bytes);
            }
        }
    }

    /// 16 lowercase hex digits.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

/// OTLP's span kinds that a gateway produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// The request as the gateway received it.
    Server,
    /// The request the gateway sent upstream.
    Client,
}

/// An attribute value (OTLP `AnyValue`, the kinds we use).
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    String(String),
    Int(i64),
    Bool(bool),
}

/// One finished span, ready to be encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedSpan {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    /// The W3C `tracestate` the trace arrived with.
    pub trace_state: Option<String>,
    pub name: &'static str,
    pub kind: SpanKind,
    /// Nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Vec<(&'static str, AttributeValue)>,
    /// Named moments within the span (nanoseconds since the Unix epoch).
    pub events: Vec<(&'static str, u64)>,
    /// The span failed (OTLP status `ERROR`); unset otherwise.
    pub error: bool,
}

/// Where and how one exporter sends spans: every plugin instance with the
/// same settings shares one exporter (one queue, one connection).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OtlpEndpoint {
    /// `http://` or `https://` URL of an OTLP/HTTP traces receiver.
    pub url: String,
    /// Extra request headers (authentication tokens: never logged).
    pub headers: Vec<(String, String)>,
    /// OTLP resource attributes, `service.name` included.
    pub resource_attributes: Vec<(String, String)>,
    pub connect_timeout: Duration,
    pub send_timeout: Duration,
    pub read_timeout: Duration,
    /// Spans per export request.
    pub max_batch_size: usize,
    /// How long the first span of a batch waits for more.
    pub max_coalescing_delay: Duration,
    /// Spans held at most; beyond that new spans are dropped and counted.
    pub max_entries: usize,
    /// How long a failed batch is retried (zero: not retried).
    pub max_retry_time: Duration,
    pub initial_retry_delay: Duration,
    pub max_retry_delay: Duration,
    /// Bytes of spans held at most (`queue.max_bytes`, measured as each
    /// span's approximate encoded size); beyond that new spans are dropped.
    pub max_bytes: Option<usize>,
    /// Export requests in flight at once: 1 (`queue.concurrency_limit: 1`,
    /// Kong's default) or [`UNBOUNDED_EXPORTS`] for `-1`.
    pub concurrency: usize,
}

/// The most export requests one exporter has in flight with
/// `queue.concurrency_limit: -1` ("unbounded" in Kong): enough to keep a
/// slow receiver busy without one connection per span.
pub const UNBOUNDED_EXPORTS: usize = 16;

impl FinishedSpan {
    /// About the bytes this span takes encoded as OTLP protobuf (ids,
    /// times, names, attributes, events and their framing), what
    /// `queue.max_bytes` counts. Cheap: lengths only, nothing encoded.
    pub fn approximate_size(&self) -> usize {
        // Ids (16 + 8 + 8), two fixed64 times, kind, status and framing.
        const FIXED: usize = 64;
        let attributes: usize = self
            .attributes
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    AttributeValue::String(text) => text.len(),
                    AttributeValue::Int(_) => 10,
                    AttributeValue::Bool(_) => 1,
                };
                key.len() + value + 8
            })
            .sum();
        let events: usize = self.events.iter().map(|(name, _)| name.len() + 14).sum();
        FIXED
            + self.name.len()
            + self.trace_state.as_ref().map_or(0, String::len)
            + attributes
            + events
    }
}

impl fmt::Debug for OtlpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are credentials: only their names are shown.
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("OtlpEndpoint")
            .field("url", &self.url)
            .field("headers", &header_names)
            .field("resource_attributes", &self.resource_attributes)
            .field("max_batch_size", &self.max_batch_size)
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// Takes finished spans into a bounded background queue. Never blocks and
/// never fails the request: spans that do not fit are dropped and counted.
pub trait SpanSink: Send + Sync + fmt::Debug {
    fn submit(&self, spans: Vec<FinishedSpan>);
}

/// Opens exporters; one per distinct [`OtlpEndpoint`], kept across config
/// swaps while some compiled config uses it.
pub trait TraceExporters: Send + Sync + fmt::Debug {
    fn exporter(&self, endpoint: &OtlpEndpoint) -> Result<Arc<dyn SpanSink>, String>;
}

/// The check-only (and default) exporter set: spans go nowhere.
#[derive(Debug)]
pub(crate) struct NoTraces;

#[derive(Debug)]
struct DiscardSpans;

impl SpanSink for DiscardSpans {
    fn submit(&self, _spans: Vec<FinishedSpan>) {}
}

impl TraceExporters for NoTraces {
    fn exporter(&self, _endpoint: &OtlpEndpoint) -> Result<Arc<dyn SpanSink>, String> {
        Ok(Arc::new(DiscardSpans))
    }
}
