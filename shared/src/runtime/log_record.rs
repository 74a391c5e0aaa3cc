//! Kong's log record (`kong.log.serialize()`, kong-compat §7.1): what every
//! logging plugin writes for a request, built from the [`RequestContext`] in
//! the log phase. It is written once per request, straight from borrowed
//! context fields into one JSON string by the record's own writer (`json`:
//! fixed keys copied, values escaped only where they need it), and shared by
//! every logging plugin of that request through [`RequestContext::log_record`].

mod json;

use super::{ConsumerHeaders, Protocol, RequestContext};
use crate::{Route, Service};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use json::{key, JsonWriter, Piece};
use serde::Serialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The `workspace` of every record. Tollgate has no workspaces; Kong's
/// default workspace id is random per installation, so a fixed id stands in
/// for it and `workspace_name` is Kong's `default`.
pub const DEFAULT_WORKSPACE_ID: &str = "00000000-0000-0000-0000-000000000000";

/// Kong reads at most this many query arguments (`kong.request.get_query()`).
const MAX_QUERY_ARGS: usize = 100;

impl RequestContext {
    /// The request's log record as one compact JSON object in UTF-8 (no
    /// newline), built on first use and shared by every logging plugin of
    /// the request.
    pub fn log_record(&self) -> &[u8] {
        self.log_record.get_or_init(|| {
            // Serializing borrowed strings, numbers and maps cannot fail.
            LogRecord::new(self).render()
        })
    }

    /// The record's `latencies` (milliseconds), e.g. for metrics; without
    /// building the record.
    pub fn latencies(&self) -> Latencies {
        // The log phase runs once the response finished: no clock read then.
        let now = self.timings.finished.unwrap_or_else(Instant::now);
        latencies_at(self, now)
    }
}

/// A compiled route's `route` and `service` objects of the log record,
/// rendered on the first request that logs them and copied as they are
/// after that: they are the same for every request of the route and were
/// most of the record's serializing.
#[derive(Debug, Default)]
pub struct EntityJson {
    route: OnceLock<Option<Box<RawValue>>>,
    service: OnceLock<Option<Box<RawValue>>>,
}

impl EntityJson {
    /// `route` as JSON (`None` only if it cannot be rendered, never in practice).
    pub fn route(&self, route: &Route) -> Option<&RawValue> {
        self.route
            .get_or_init(|| serde_json::value::to_raw_value(route).ok())
            .as_deref()
    }

    pub fn service(&self, service: &Service) -> Option<&RawValue> {
        self.service
            .get_or_init(|| serde_json::value::to_raw_value(service).ok())
            .as_deref()
    }
}

/// The log record of one request, serialized from its context on demand.
#[derive(Debug, Clone, Copy)]
pub struct LogRecord<'a> {
    ctx: &'a RequestContext,
    /// Wall-clock and monotonic time read together, to turn the context's
    /// `Instant`s into epoch milliseconds.
    now: (SystemTime, Instant),
}

impl<'a> LogRecord<'a> {
    pub fn new(ctx: &'a RequestContext) -> LogRecord<'a> {
        LogRecord {
            ctx,
            now: (SystemTime::now(), Instant::now()),
        }
    }

    /// Milliseconds since the Unix epoch at `at`.
    fn epoch_ms(&self, at: Instant) -> u64 {
        let (wall, mono) = self.now;
        let wall_at = match mono.checked_duration_since(at) {
            Some(ago) => wall.checked_sub(ago).unwrap_or(UNIX_EPOCH),
            None => wall + at.duration_since(mono),
        };
        let since = wall_at.duration_since(UNIX_EPOCH).unwrap_or_default();
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    fn latencies(&self) -> Latencies {
        latencies_at(self.ctx, self.now.1)
    }
}

/// Kong's `latencies` of `ctx`, with `now` standing in for an unfinished response.
fn latencies_at(ctx: &RequestContext, now: Instant) -> Latencies {
    let timings = &ctx.timings;
    let received = timings.received;
    let finished = timings.finished.unwrap_or(now);
    let since = |from: Instant, to: Instant| millis(to.saturating_duration_since(from));
    let proxied = ctx.log_facts.as_ref().is_some_and(|f| f.proxied);
    let kong = match (timings.upstream_sent, timings.responded) {
        (Some(sent), _) => since(received, sent),
        (None, Some(responded)) => since(received, responded),
        (None, None) => 0,
    };
    let proxy = match (timings.upstream_sent, timings.upstream_first_byte) {
        (Some(sent), Some(first)) if proxied => since(sent, first) as i64,
        _ => -1,
    };
    let receive = match timings.upstream_first_byte {
        Some(first) if proxied => since(first, finished),
        _ => 0,
    };
    Latencies {
        kong,
        proxy,
        request: since(received, finished),
        receive,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Kong's `latencies` of a request, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Latencies {
    /// The gateway's own time: until the request went upstream, or until
    /// the gateway answered itself.
    pub kong: u64,
    /// Upstream time to the first response byte; -1 when not proxied.
    pub proxy: i64,
    /// From receiving the request to finishing the response.
    pub request: u64,
    /// From the first response byte to the end of the response.
    pub receive: u64,
}

impl LogRecord<'_> {
    /// The record as one compact JSON object, written field by field in
    /// Kong's order.
    pub fn render(&self) -> Vec<u8> {
        let mut json = JsonWriter::with_capacity(self.capacity());
        json.open_object();
        self.write(&mut json);
        json.close_object();
        json.finish()
    }

    fn write(&self, json: &mut JsonWriter) {
        let ctx = self.ctx;
        let facts = ctx.log_facts.as_deref();
        json.key(key!("request"));
        self.write_request(json);
        json.key(key!("upstream_uri"));
        let upstream_uri = facts
            .and_then(|f| f.upstream_uri.as_ref())
            .and_then(|uri| uri.path_and_query())
            .map_or("", |pq| pq.as_str());
        json.string(upstream_uri);
        json.key(key!("upstream_status"));
        match facts.and_then(|f| f.upstream_status) {
            Some(status) => json.clean_string(status.as_str()),
            None => json.clean_string(""),
        }
        json.key(key!("response"));
        self.write_response(json);
        json.key(key!("latencies"));
        let latencies = self.latencies();
        json.open_object();
        json.unsigned_field(key!("kong"), latencies.kong);
        json.signed_field(key!("proxy"), latencies.proxy);
        json.unsigned_field(key!("request"), latencies.request);
        json.unsigned_field(key!("receive"), latencies.receive);
        json.close_object();
        if let Some((host, port)) = facts.and_then(|f| f.upstream_target.as_ref()) {
            let started = ctx.timings.upstream_sent.unwrap_or(ctx.timings.received);
            let start_ms = self.epoch_ms(started);
            json.key(key!("tries"));
            json.open_array();
            json.open_object();
            json.unsigned_field(key!("balancer_start"), start_ms);
            json.unsigned_field(key!("balancer_start_ns"), u128::from(start_ms) * 1_000_000);
            json.unsigned_field(key!("balancer_latency"), 0u64);
            json.unsigned_field(key!("balancer_latency_ns"), 0u64);
            json.string_field(key!("ip"), host);
            json.unsigned_field(key!("port"), *port);
            json.close_object();
            json.close_array();
        }
        if let Some(credential) = &ctx.credential {
            json.key(key!("authenticated_entity"));
            json.open_object();
            json.key(key!("id"));
            json.clean_string(
                credential
                    .id
                    .hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            );
            json.key(key!("consumer_id"));
            json.clean_string(
                credential
                    .consumer
                    .hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            );
            json.close_object();
        }
        let rendered = ctx.entity_json.as_deref();
        if let Some(route) = &ctx.route {
            json.key(key!("route"));
            match rendered.and_then(|entities| entities.route(route)) {
                Some(rendered) => json.raw(rendered.get()),
                None => json.raw(&serialized(route.as_ref())),
            }
        }
        if let Some(service) = &ctx.service {
            json.key(key!("service"));
            match rendered.and_then(|entities| entities.service(service)) {
                Some(rendered) => json.raw(rendered.get()),
                None => json.raw(&serialized(service.as_ref())),
            }
        }
        if let Some(consumer) = &ctx.consumer {
            json.key(key!("consumer"));
            match &ctx.consumer_json {
                Some(rendered) => json.raw(rendered),
                None => json.raw(&serialized(consumer.as_ref())),
            }
        }
        json.key(key!("client_ip"));
        write_address(json, ctx.client_ip);
        json.unsigned_field(key!("started_at"), self.epoch_ms(ctx.timings.received));
        json.key(key!("source"));
        json.clean_string(if facts.is_some_and(|f| f.proxied) {
            "upstream"
        } else {
            "kong"
        });
        json.clean_string_field(key!("workspace"), DEFAULT_WORKSPACE_ID);
        json.clean_string_field(key!("workspace_name"), "default");
    }

    fn write_request(&self, json: &mut JsonWriter) {
        let ctx = self.ctx;
        let request = &ctx.request;
        let uri = request
            .uri
            .path_and_query()
            .map_or_else(|| request.uri.path(), |pq| pq.as_str());
        let scheme = match ctx.protocol {
            Protocol::Http | Protocol::Grpc => "http://",
            Protocol::Https | Protocol::Grpcs => "https://",
        };
        let host = ctx.host.as_deref().map_or("", host_without_port);
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        let facts = ctx.log_facts.as_deref();
        json.open_object();
        json.string_field(key!("id"), ctx.request_id.to_str().unwrap_or(""));
        json.string_field(key!("uri"), uri);
        json.key(key!("url"));
        match facts.map(|f| f.server_port) {
            Some(port) if port != 0 => {
                let mut digits = itoa::Buffer::new();
                let port = digits.format(port);
                json.string_of_parts(&[
                    Piece::Clean(scheme),
                    Piece::Text(&host),
                    Piece::Clean(":"),
                    Piece::Clean(port),
                    Piece::Text(uri),
                ]);
            }
            _ => {
                json.string_of_parts(&[Piece::Clean(scheme), Piece::Text(&host), Piece::Text(uri)])
            }
        }
        json.key(key!("querystring"));
        write_query(json, request.uri.query().unwrap_or(""));
        // A method is an HTTP token: nothing to escape.
        json.clean_string_field(key!("method"), request.method.as_str());
        json.key(key!("headers"));
        match facts.and_then(|f| f.request_headers_json.as_deref()) {
            Some(rendered) => json.raw_bytes(rendered),
            None => write_request_headers(json, &request.headers, ctx.consumer_headers.as_deref()),
        }
        json.unsigned_field(key!("size"), ctx.bytes.request);
        if let Some(tls) = facts.and_then(|f| f.tls.as_ref()) {
            json.key(key!("tls"));
            json.open_object();
            json.string_field(key!("version"), tls.version);
            json.string_field(key!("cipher"), tls.cipher);
            json.string_field(key!("client_verify"), tls.client_verify);
            json.close_object();
        }
        json.close_object();
    }

    fn write_response(&self, json: &mut JsonWriter) {
        let ctx = self.ctx;
        json.open_object();
        json.unsigned_field(key!("status"), ctx.status.map_or(0, |s| s.as_u16()));
        json.key(key!("headers"));
        match ctx
            .log_facts
            .as_deref()
            .and_then(|facts| facts.response_headers_json.as_deref())
        {
            Some(rendered) => json.raw_bytes(rendered),
            None => {
                json.open_object();
                json.close_object();
            }
        }
        json.unsigned_field(key!("size"), ctx.bytes.response);
        json.close_object();
    }
}

/// What a record takes besides its pre-rendered parts and its URI (twice:
/// `uri` and `url`), so that it is written without regrowing.
const RECORD_CAPACITY: usize = 1024;

impl LogRecord<'_> {
    /// The buffer to write the record into: the pre-rendered parts' sizes
    /// (route, service, consumer, header objects) plus the rest.
    fn capacity(&self) -> usize {
        let ctx = self.ctx;
        let facts = ctx.log_facts.as_deref();
        let headers = facts.map_or(0, |f| {
            f.request_headers_json.as_ref().map_or(0, Vec::len)
                + f.response_headers_json.as_ref().map_or(0, Vec::len)
        });
        let entities = ctx.entity_json.as_deref().map_or(0, |rendered| {
            ctx.route
                .as_ref()
                .and_then(|route| rendered.route(route))
                .map_or(0, |json| json.get().len())
                + ctx
                    .service
                    .as_ref()
                    .and_then(|service| rendered.service(service))
                    .map_or(0, |json| json.get().len())
        });
        let consumer = ctx.consumer_json.as_ref().map_or(0, |json| json.len());
        let uri = ctx
            .request
            .uri
            .path_and_query()
            .map_or(0, |pq| pq.as_str().len());
        RECORD_CAPACITY + headers + entities + consumer + 2 * uri
    }
}

/// An entity rendered by its serde form (when no cached JSON is at hand).
fn serialized(entity: &impl Serialize) -> String {
    // Serializing an entity (strings, numbers, maps) cannot fail.
    serde_json::to_string(entity).unwrap_or_else(|_| "null".to_string())
}

/// An address in its text form; IPv4, by far the most common, without the
/// formatting machinery.
fn write_address(json: &mut JsonWriter, address: std::net::IpAddr) {
    match address {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            let mut digits = [
                itoa::Buffer::new(),
                itoa::Buffer::new(),
                itoa::Buffer::new(),
            ];
            let [first, second, third] = &mut digits;
            let mut last = itoa::Buffer::new();
            json.string_of_parts(&[
                Piece::Clean(first.format(a)),
                Piece::Clean("."),
                Piece::Clean(second.format(b)),
                Piece::Clean("."),
                Piece::Clean(third.format(c)),
                Piece::Clean("."),
                Piece::Clean(last.format(d)),
            ]);
        }
        std::net::IpAddr::V6(_) => json.formatted_string(format_args!("{address}")),
    }
}

/// The host of a `Host` value: IPv6 literals keep their brackets.
fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The request headers as the record shows them (credentials `REDACTED`,
/// the consumer headers an authentication plugin set included), rendered
/// before the map goes upstream.
pub fn request_headers_json(headers: &HeaderMap, consumer: Option<&ConsumerHeaders>) -> Vec<u8> {
    let mut json = JsonWriter::with_capacity(HEADERS_CAPACITY);
    write_request_headers(&mut json, headers, consumer);
    json.finish()
}

fn write_request_headers(
    json: &mut JsonWriter,
    headers: &HeaderMap,
    consumer: Option<&ConsumerHeaders>,
) {
    json.open_object();
    write_header_entries(json, headers.iter(), true);
    // Never in the map as well: authentication removed the client's copies.
    for (name, value) in consumer.map_or(&[][..], ConsumerHeaders::fields) {
        json.header_field(name.as_str(), value.as_bytes());
    }
    json.close_object();
}

/// The response headers as sent, plus the `Content-Length` the server
/// writes itself for a sized body (appended, as a map insert would be).
pub fn response_headers_json<'h>(
    fields: impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)>,
    written_length: Option<u64>,
) -> Vec<u8> {
    let mut json = JsonWriter::with_capacity(HEADERS_CAPACITY);
    json.open_object();
    write_header_entries(&mut json, fields, false);
    if let Some(length) = written_length {
        let mut digits = itoa::Buffer::new();
        let length = digits.format(length);
        json.header_field(http::header::CONTENT_LENGTH.as_str(), length.as_bytes());
    }
    json.close_object();
    json.finish()
}

/// What a rendered header object usually takes.
const HEADERS_CAPACITY: usize = 512;

/// Headers as Kong's `get_headers()` gives them: lowercase names, a string
/// for one value and an array for several. With `redact`, credentials
/// (`authorization`, `proxy-authorization`) are replaced by `REDACTED`.
fn write_header_entries<'h>(
    json: &mut JsonWriter,
    fields: impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)>,
    redact: bool,
) {
    // A map yields every value of a name one after the other.
    let mut values = fields.peekable();
    while let Some((name, value)) = values.next() {
        let key = name.as_str();
        let several = values.peek().is_some_and(|(next, _)| *next == name);
        if redact && (key == "authorization" || key == "proxy-authorization") {
            json.token_key(key);
            json.clean_string("REDACTED");
            while values.next_if(|(next, _)| *next == name).is_some() {}
            continue;
        }
        if !several {
            json.header_field(key, value.as_bytes());
            continue;
        }
        json.token_key(key);
        json.open_array();
        json.lossy_string(value.as_bytes());
        while let Some((_, more)) = values.next_if(|(next, _)| *next == name) {
            json.lossy_string(more.as_bytes());
        }
        json.close_array();
    }
}

/// A query string as Kong's `get_query()` gives it: decoded names and values,
/// `true` for an argument without `=`, an array for a repeated name.
fn write_query(json: &mut JsonWriter, query: &str) {
    json.open_object();
    for (name, values) in &parse_query(query) {
        json.escaped_key(name);
        match values.as_slice() {
            [only] => write_query_value(json, only),
            many => {
                json.open_array();
                for value in many {
                    write_query_value(json, value);
                }
                json.close_array();
            }
        }
    }
    json.close_object();
}

enum QueryValue<'a> {
    Flag,
    Text(Cow<'a, str>),
}

fn write_query_value(json: &mut JsonWriter, value: &QueryValue<'_>) {
    match value {
        QueryValue::Flag => json.boolean(true),
        QueryValue::Text(text) => json.string(text),
    }
}

fn parse_query(query: &str) -> Vec<(Cow<'_, str>, Vec<QueryValue<'_>>)> {
    let mut args: Vec<(Cow<'_, str>, Vec<QueryValue<'_>>)> = Vec::new();
    for piece in query
        .split('&')
        .filter(|p| !p.is_empty())
        .take(MAX_QUERY_ARGS)
    {
        let Some((name, value)) = url::form_urlencoded::parse(piece.as_bytes()).next() else {
            continue;
        };
        let value = if piece.contains('=') {
            QueryValue::Text(value)
        } else {
            QueryValue::Flag
        };
        match args.iter_mut().find(|(existing, _)| *existing == name) {
            Some((_, values)) => values.push(value),
            None => args.push((name, vec![value])),
        }
    }
    args
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::runtime::{CredentialRef, LogFacts, TlsFacts};
    use crate::Consumer;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn context(target: &str, headers: &[(&str, &str)]) -> RequestContext {
        let mut builder = http::Request::builder().method("POST").uri(target);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        let mut ctx = RequestContext::new(
            parts,
            "203.0.113.7".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
            Protocol::Https,
            http::HeaderValue::from_static("0123456789abcdef0123456789abcdef"),
            Instant::now(),
        );
        ctx.host = Some("API.Example.com:8443".into());
        ctx
    }

    fn record(ctx: &RequestContext) -> Value {
        serde_json::from_slice(ctx.log_record()).unwrap()
    }

    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn a_proxied_request_has_every_key_of_kongs_record() {
        let mut ctx = context(
            "/orders/7?a=1&b&a=x%20y&c=",
            &[
                ("authorization", "Bearer secret"),
                ("proxy-authorization", "Basic c2VjcmV0"),
                ("x-multi", "one"),
                ("x-multi", "two"),
            ],
        );
        let received = ctx.timings.received;
        ctx.timings.upstream_sent = Some(received + Duration::from_millis(3));
        ctx.timings.upstream_first_byte = Some(received + Duration::from_millis(10));
        ctx.timings.finished = Some(received + Duration::from_millis(15));
        ctx.status = Some(http::StatusCode::CREATED);
        ctx.bytes.request = 120;
        ctx.bytes.response = 300;
        let mut response_headers = HeaderMap::new();
        response_headers.insert("content-type", "application/json".parse().unwrap());
        ctx.log_facts = Some(Box::new(LogFacts {
            server_port: 8443,
            upstream_uri: Some("/v1/orders/7?a=1&b&a=x%20y&c=".parse().unwrap()),
            upstream_status: Some(http::StatusCode::CREATED),
            upstream_target: Some((Arc::from("10.0.0.5"), 8080)),
            response_headers_json: Some(response_headers_json(response_headers.iter(), None)),
            request_headers_json: None,
            proxied: true,
            tls: Some(TlsFacts {
                version: "TLSv1.3",
                cipher: "TLS_AES_128_GCM_SHA256",
                client_verify: "NONE",
            }),
            streamed_body: None,
            reads_record: true,
            response_head_bytes: 0,
        }));
        let consumer = Consumer {
            id: uuid::Uuid::from_u128(5),
            created_at: 1,
            updated_at: 1,
            username: Some("alice".into()),
            custom_id: None,
            tags: None,
        };
        ctx.consumer = Some(Arc::new(consumer));
        ctx.credential = Some(CredentialRef {
            id: uuid::Uuid::from_u128(6),
            identifier: "key".into(),
            consumer: uuid::Uuid::from_u128(5),
        });

        let record = record(&ctx);
        assert_eq!(
            keys(&record),
            [
                "authenticated_entity",
                "client_ip",
                "consumer",
                "latencies",
                "request",
                "response",
                "source",
                "started_at",
                "tries",
                "upstream_status",
                "upstream_uri",
                "workspace",
                "workspace_name",
            ]
        );
        let request = &record["request"];
        assert_eq!(
            keys(request),
            [
                "headers",
                "id",
                "method",
                "querystring",
                "size",
                "tls",
                "uri",
                "url"
            ]
        );
        assert_eq!(
            request["tls"],
            json!({"version": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256", "client_verify": "NONE"})
        );
        assert_eq!(request["id"], "0123456789abcdef0123456789abcdef");
        assert_eq!(request["uri"], "/orders/7?a=1&b&a=x%20y&c=");
        assert_eq!(
            request["url"],
            "https://api.example.com:8443/orders/7?a=1&b&a=x%20y&c="
        );
        assert_eq!(
            request["querystring"],
            json!({"a": ["1", "x y"], "b": true, "c": ""})
        );
        assert_eq!(request["method"], "POST");
        assert_eq!(request["size"], 120);
        assert_eq!(request["headers"]["authorization"], "REDACTED");
        assert_eq!(request["headers"]["proxy-authorization"], "REDACTED");
        assert_eq!(request["headers"]["x-multi"], json!(["one", "two"]));
        assert_eq!(record["upstream_uri"], "/v1/orders/7?a=1&b&a=x%20y&c=");
        assert_eq!(record["upstream_status"], "201");
        assert_eq!(
            record["response"],
            json!({"status": 201, "headers": {"content-type": "application/json"}, "size": 300})
        );
        assert_eq!(
            record["latencies"],
            json!({"kong": 3, "proxy": 7, "request": 15, "receive": 5})
        );
        let tries = record["tries"].as_array().unwrap();
        assert_eq!(tries.len(), 1);
        assert_eq!(tries[0]["ip"], "10.0.0.5");
        assert_eq!(tries[0]["port"], 8080);
        assert_eq!(
            record["authenticated_entity"],
            json!({"id": uuid::Uuid::from_u128(6), "consumer_id": uuid::Uuid::from_u128(5)})
        );
        assert_eq!(record["consumer"]["username"], "alice");
        assert_eq!(record["client_ip"], "203.0.113.7");
        assert_eq!(record["source"], "upstream");
        assert_eq!(record["workspace_name"], "default");
        let started = record["started_at"].as_u64().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            started <= now && now - started < 10_000,
            "{started} vs {now}"
        );
    }

    #[test]
    fn a_gateway_answer_has_no_upstream_facts() {
        let mut ctx = context("/denied", &[]);
        let received = ctx.timings.received;
        ctx.timings.responded = Some(received + Duration::from_millis(2));
        ctx.timings.finished = Some(received + Duration::from_millis(4));
        ctx.status = Some(http::StatusCode::FORBIDDEN);
        ctx.log_facts = Some(Box::default());
        let record = record(&ctx);
        assert_eq!(record["source"], "kong");
        assert_eq!(record["upstream_uri"], "");
        assert_eq!(record["upstream_status"], "");
        assert_eq!(record["response"]["status"], 403);
        assert_eq!(
            record["latencies"],
            json!({"kong": 2, "proxy": -1, "request": 4, "receive": 0})
        );
        for absent in [
            "tries",
            "authenticated_entity",
            "consumer",
            "route",
            "service",
        ] {
            assert!(record.get(absent).is_none(), "{absent} present");
        }
        assert_eq!(record["request"]["querystring"], json!({}));
    }

    #[test]
    fn a_consumer_rendered_at_compile_time_is_copied_as_it_is() {
        let mut ctx = context("/x", &[]);
        let consumer = Consumer {
            id: uuid::Uuid::from_u128(9),
            created_at: 1,
            updated_at: 2,
            username: Some("bob \"the\" builder".into()),
            custom_id: None,
            tags: None,
        };
        let rendered = serde_json::to_string(&consumer).unwrap();
        ctx.consumer = Some(Arc::new(consumer));
        ctx.consumer_json = Some(Arc::from(rendered.as_str()));
        assert!(String::from_utf8_lossy(ctx.log_record())
            .contains(&format!("\"consumer\":{rendered},")));
        assert_eq!(record(&ctx)["consumer"]["username"], "bob \"the\" builder");
    }

    #[test]
    fn the_consumer_headers_show_among_the_request_headers() {
        let mut ctx = context("/x", &[("accept", "*/*")]);
        ctx.consumer_headers = Some(Arc::new(crate::runtime::ConsumerHeaders::new(vec![(
            http::HeaderName::from_static("x-consumer-username"),
            http::HeaderValue::from_static("bob"),
        )])));
        let headers = &record(&ctx)["request"]["headers"];
        assert_eq!(headers["x-consumer-username"], "bob");
        assert_eq!(headers["accept"], "*/*");
        // Rendered before the map goes upstream, as the proxy does.
        let rendered = request_headers_json(ctx.headers(), ctx.consumer_headers.as_deref());
        let value: Value = serde_json::from_slice(&rendered).unwrap();
        assert_eq!(&value, headers);
    }

    #[test]
    fn the_record_is_built_once() {
        let ctx = context("/x", &[]);
        let first: *const [u8] = ctx.log_record();
        let second: *const [u8] = ctx.log_record();
        assert!(std::ptr::eq(first, second));
    }

    #[test]
    fn hosts_lose_their_port_but_ipv6_keeps_brackets() {
        assert_eq!(host_without_port("a.example:80"), "a.example");
        assert_eq!(host_without_port("a.example"), "a.example");
        assert_eq!(host_without_port("[::1]:8000"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
    }
}
