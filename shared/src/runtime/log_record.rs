//! Kong's log record (`kong.log.serialize()`, kong-compat §7.1): what every
//! logging plugin writes for a request, built from the [`RequestContext`] in
//! the log phase. It is serialized once per request, straight from borrowed
//! context fields into one JSON string, and shared by every logging plugin of
//! that request through [`RequestContext::log_record`].

use super::{Protocol, RequestContext};
use crate::{Route, Service};
use http::HeaderMap;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
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
    /// The request's log record as one compact JSON object (no newline),
    /// built on first use and shared by every logging plugin of the request.
    pub fn log_record(&self) -> &str {
        self.log_record.get_or_init(|| {
            // Serializing borrowed strings, numbers and maps cannot fail.
            serde_json::to_string(&LogRecord::new(self)).unwrap_or_default()
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

impl Serialize for LogRecord<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ctx = self.ctx;
        let facts = ctx.log_facts.as_deref();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("request", &RequestPart { record: self })?;
        let upstream_uri = facts
            .and_then(|f| f.upstream_uri.as_ref())
            .and_then(|uri| uri.path_and_query())
            .map_or("", |pq| pq.as_str());
        map.serialize_entry("upstream_uri", upstream_uri)?;
        let upstream_status: Cow<'_, str> = match facts.and_then(|f| f.upstream_status) {
            Some(status) => Cow::Owned(status.as_u16().to_string()),
            None => Cow::Borrowed(""),
        };
        map.serialize_entry("upstream_status", &upstream_status)?;
        map.serialize_entry("response", &ResponsePart { record: self })?;
        map.serialize_entry("latencies", &self.latencies())?;
        if let Some((host, port)) = facts.and_then(|f| f.upstream_target.as_ref()) {
            let started = ctx.timings.upstream_sent.unwrap_or(ctx.timings.received);
            let start_ms = self.epoch_ms(started);
            let tries = [Try {
                balancer_start: start_ms,
                balancer_start_ns: u128::from(start_ms) * 1_000_000,
                balancer_latency: 0,
                balancer_latency_ns: 0,
                ip: host,
                port: *port,
            }];
            map.serialize_entry("tries", &tries)?;
        }
        if let Some(credential) = &ctx.credential {
            map.serialize_entry(
                "authenticated_entity",
                &AuthenticatedEntity {
                    id: credential.id,
                    consumer_id: credential.consumer,
                },
            )?;
        }
        let rendered = ctx.entity_json.as_deref();
        if let Some(route) = &ctx.route {
            match rendered.and_then(|json| json.route(route)) {
                Some(json) => map.serialize_entry("route", json)?,
                None => map.serialize_entry("route", route.as_ref())?,
            }
        }
        if let Some(service) = &ctx.service {
            match rendered.and_then(|json| json.service(service)) {
                Some(json) => map.serialize_entry("service", json)?,
                None => map.serialize_entry("service", service.as_ref())?,
            }
        }
        if let Some(consumer) = &ctx.consumer {
            map.serialize_entry("consumer", consumer.as_ref())?;
        }
        map.serialize_entry("client_ip", &ctx.client_ip)?;
        map.serialize_entry("started_at", &self.epoch_ms(ctx.timings.received))?;
        let source = if facts.is_some_and(|f| f.proxied) {
            "upstream"
        } else {
            "kong"
        };
        map.serialize_entry("source", source)?;
        map.serialize_entry("workspace", DEFAULT_WORKSPACE_ID)?;
        map.serialize_entry("workspace_name", "default")?;
        map.end()
    }
}

#[derive(Serialize)]
struct Try<'a> {
    balancer_start: u64,
    balancer_start_ns: u128,
    balancer_latency: u64,
    balancer_latency_ns: u64,
    ip: &'a str,
    port: u16,
}

#[derive(Serialize)]
struct AuthenticatedEntity {
    id: uuid::Uuid,
    consumer_id: uuid::Uuid,
}

struct RequestPart<'r, 'a> {
    record: &'r LogRecord<'a>,
}

impl Serialize for RequestPart<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ctx = self.record.ctx;
        let request = &ctx.request;
        let uri = request
            .uri
            .path_and_query()
            .map_or_else(|| request.uri.path(), |pq| pq.as_str());
        let scheme = match ctx.protocol {
            Protocol::Http | Protocol::Grpc => "http",
            Protocol::Https | Protocol::Grpcs => "https",
        };
        let host = ctx.host.as_deref().map_or("", host_without_port);
        let facts = ctx.log_facts.as_deref();
        let url = match facts.map(|f| f.server_port) {
            Some(port) if port != 0 => {
                format!("{scheme}://{}:{port}{uri}", host.to_ascii_lowercase())
            }
            _ => format!("{scheme}://{}{uri}", host.to_ascii_lowercase()),
        };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", ctx.request_id.to_str().unwrap_or(""))?;
        map.serialize_entry("uri", uri)?;
        map.serialize_entry("url", &url)?;
        map.serialize_entry("querystring", &Query(request.uri.query().unwrap_or("")))?;
        map.serialize_entry("method", request.method.as_str())?;
        map.serialize_entry(
            "headers",
            &Headers {
                map: &request.headers,
                redact: true,
            },
        )?;
        map.serialize_entry("size", &ctx.bytes.request)?;
        if let Some(tls) = facts.and_then(|f| f.tls.as_ref()) {
            map.serialize_entry(
                "tls",
                &TlsPart {
                    version: tls.version,
                    cipher: tls.cipher,
                    client_verify: tls.client_verify,
                },
            )?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct TlsPart {
    version: &'static str,
    cipher: &'static str,
    client_verify: &'static str,
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

struct ResponsePart<'r, 'a> {
    record: &'r LogRecord<'a>,
}

impl Serialize for ResponsePart<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ctx = self.record.ctx;
        let empty = HeaderMap::new();
        let headers = ctx
            .log_facts
            .as_deref()
            .map_or(&empty, |f| &f.response_headers);
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("status", &ctx.status.map_or(0, |s| s.as_u16()))?;
        map.serialize_entry(
            "headers",
            &Headers {
                map: headers,
                redact: false,
            },
        )?;
        map.serialize_entry("size", &ctx.bytes.response)?;
        map.end()
    }
}

/// Headers as Kong's `get_headers()` gives them: lowercase names, a string
/// for one value and an array for several.
struct Headers<'a> {
    map: &'a HeaderMap,
    /// Replace credentials (`authorization`, `proxy-authorization`) by `REDACTED`.
    redact: bool,
}

impl Serialize for Headers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.map.keys_len()))?;
        for name in self.map.keys() {
            let key = name.as_str();
            if self.redact && (key == "authorization" || key == "proxy-authorization") {
                map.serialize_entry(key, "REDACTED")?;
                continue;
            }
            let mut values = self.map.get_all(name).iter();
            match (values.next(), values.next()) {
                (Some(only), None) => {
                    map.serialize_entry(key, &String::from_utf8_lossy(only.as_bytes()))?
                }
                _ => map.serialize_entry(key, &AllValues(self.map.get_all(name)))?,
            }
        }
        map.end()
    }
}

struct AllValues<'a>(http::header::GetAll<'a, http::HeaderValue>);

impl Serialize for AllValues<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for value in self.0.iter() {
            seq.serialize_element(&String::from_utf8_lossy(value.as_bytes()))?;
        }
        seq.end()
    }
}

/// A query string as Kong's `get_query()` gives it: decoded names and values,
/// `true` for an argument without `=`, an array for a repeated name.
struct Query<'a>(&'a str);

enum QueryValue<'a> {
    Flag,
    Text(Cow<'a, str>),
}

impl Serialize for QueryValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            QueryValue::Flag => serializer.serialize_bool(true),
            QueryValue::Text(text) => serializer.serialize_str(text),
        }
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

impl Serialize for Query<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let args = parse_query(self.0);
        let mut map = serializer.serialize_map(Some(args.len()))?;
        for (name, values) in &args {
            match values.as_slice() {
                [only] => map.serialize_entry(name, only)?,
                many => map.serialize_entry(name, many)?,
            }
        }
        map.end()
    }
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
        serde_json::from_str(ctx.log_record()).unwrap()
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
            response_headers,
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
    fn the_record_is_built_once() {
        let ctx = context("/x", &[]);
        let first: *const str = ctx.log_record();
        let second: *const str = ctx.log_record();
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
