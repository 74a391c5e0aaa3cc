//! [`RequestContext`]: everything one request carries through the phases,
//! allocated once per request. The proxy fills what it parsed (route,
//! service, client address, the request head); plugins read that instead of
//! parsing again, and write what later steps need (consumer, credential,
//! upstream header edits, response headers, their own typed state).

mod consumer_headers;
mod response_headers;

pub use consumer_headers::ConsumerHeaders;
pub use response_headers::{Replaced, ResponseHeaders};

use super::{PluginInstance, Protocol};
use crate::{Consumer, Route, Service};
use http::request::Parts;
use http::{Extensions, HeaderMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// The consumer an authentication plugin identified.
pub type ConsumerRef = Arc<Consumer>;

/// The credential that identified the consumer, as Kong's log record and
/// `X-Credential-Identifier` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRef {
    pub id: uuid::Uuid,
    /// The credential's public identifier (a JWT `key`, a key-auth key's id,
    /// a basic-auth username), sent upstream as `X-Credential-Identifier`.
    pub identifier: Arc<str>,
    /// The credential's consumer.
    pub consumer: uuid::Uuid,
}

/// When each step of the request happened.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// The request head was received.
    pub received: Instant,
    /// An upstream connection was ready for this request.
    pub upstream_connected: Option<Instant>,
    /// The upstream request was sent (the proxy's own work ends here).
    pub upstream_sent: Option<Instant>,
    /// The first byte of the upstream response head arrived.
    pub upstream_first_byte: Option<Instant>,
    /// The response was finished, or the client went away.
    pub finished: Option<Instant>,
    /// The response head was ready to send (recorded only for the log phase:
    /// Kong's response latency when the gateway answered itself).
    pub responded: Option<Instant>,
}

impl Timings {
    pub fn new(received: Instant) -> Timings {
        Timings {
            received,
            upstream_connected: None,
            upstream_sent: None,
            upstream_first_byte: None,
            finished: None,
            responded: None,
        }
    }
}

/// An upstream try that failed and was retried (connection refused or
/// reset, timeout), for tracing; the try that answered, or failed last, is
/// the request's own upstream exchange.
#[derive(Debug, Clone, Copy)]
pub struct FailedTry {
    pub started: Instant,
    pub ended: Instant,
    /// The proxy's fixed label of the failure (`upstream_connect_refused`…).
    pub error: &'static str,
}

/// Bytes in each direction, heads included, for the log record and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteCounts {
    pub request: u64,
    pub response: u64,
}

/// What the proxy records for the log record (kong-compat §7.1) beyond what
/// the phases need. Present only when the route's chain has a log phase, so a
/// request without one allocates and copies nothing for it.
#[derive(Debug, Clone, Default)]
pub struct LogFacts {
    /// The port of the listener the request arrived on (`request.url`).
    pub server_port: u16,
    /// The URI sent upstream, query included (kept when `reads_record`).
    pub upstream_uri: Option<http::Uri>,
    /// The status the upstream answered, before `response` plugins.
    pub upstream_status: Option<http::StatusCode>,
    /// The upstream host and port the request was sent to (`tries`).
    pub upstream_target: Option<(Arc<str>, u16)>,
    /// The response head's headers as sent to the client, rendered as the
    /// log record's JSON object only when a log plugin reads the whole
    /// record (rendering is cheaper than copying the map and dropping it).
    pub response_headers_json: Option<Vec<u8>>,
    /// The request headers as the log record shows them, rendered when the
    /// map went upstream (no plugin reads it after that); `None`: the record
    /// renders `RequestContext::request`'s headers.
    pub request_headers_json: Option<Vec<u8>>,
    /// Some plugin of the chain reads the whole record
    /// ([`super::Phases::LOG_RECORD`]): keep what only it needs
    /// (`response_headers`, `upstream_uri`).
    pub reads_record: bool,
    /// The size of the response head as sent (`response.size` counts it).
    pub response_head_bytes: u64,
    /// The response came from the upstream (`source: "upstream"`), not the gateway.
    pub proxied: bool,
    /// TLS parameters of the client connection (`request.tls`), on TLS only.
    pub tls: Option<TlsFacts>,
    /// The bytes of a request body of unknown length streamed upstream,
    /// counted as they pass and added to the request size in the log phase.
    pub streamed_body: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// The client connection's TLS parameters, as Kong's `request.tls` names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    /// e.g. `TLSv1.3`.
    pub version: &'static str,
    /// e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher: &'static str,
    /// nginx `$ssl_client_verify`: `NONE` without client certificates.
    pub client_verify: &'static str,
}

/// One request's state across the phases.
#[derive(Debug)]
pub struct RequestContext {
    /// The client request head. Its headers are the upstream request's
    /// headers: a plugin adds, replaces or removes upstream headers here, and
    /// the proxy strips hop-by-hop headers and adds forwarding headers after
    /// the access phase.
    pub request: Parts,
    /// The host the request was routed by (absolute-form target, `:authority`
    /// or `Host`, decided once), without changes of case.
    pub host: Option<String>,
    /// The client address after `--trusted-ips` real-IP processing.
    pub client_ip: IpAddr,
    /// The address of the TCP peer.
    pub peer_ip: IpAddr,
    pub protocol: Protocol,
    /// The 32-hex-digit request id sent as `X-Kong-Request-Id`-style header.
    pub request_id: http::HeaderValue,
    /// The matched route and its service; `None` before routing (rewrite
    /// phase) or when nothing matched.
    pub route: Option<Arc<Route>>,
    pub service: Option<Arc<Service>>,
    /// `route` and `service` as JSON for the log record, rendered once per
    /// compiled route (set with them by the proxy when a plugin logs).
    pub entity_json: Option<Arc<super::EntityJson>>,
    /// Set by an authentication plugin.
    pub consumer: Option<ConsumerRef>,
    /// `consumer` as JSON for the log record, when the plugin had it
    /// rendered at compile time (a credential index entry); else the log
    /// renders it.
    pub consumer_json: Option<Arc<str>>,
    pub credential: Option<CredentialRef>,
    /// The upstream headers of `consumer` and `credential`, set with them by
    /// an authentication plugin; never in the request's header map.
    pub consumer_headers: Option<Arc<ConsumerHeaders>>,
    /// Groups an authentication plugin vouched for (Kong's
    /// `kong.ctx.shared.authenticated_groups`, which Kong OSS's session
    /// plugin sets); the acl plugin decides by them when there is no
    /// consumer, an anonymous one, or with `always_use_authenticated_groups`.
    /// No bundled plugin sets them yet.
    pub authenticated_groups: Option<Arc<[String]>>,
    /// The request body, read before the access phase when a plugin of the
    /// route reads bodies (and it fit in the client body buffer, as Kong's
    /// `kong.request.get_body` requires); `None` otherwise.
    pub body: Option<bytes::Bytes>,
    /// A plugin replaced [`RequestContext::body`] (key-auth's
    /// `hide_credentials`): the proxy sends the new body upstream.
    pub body_replaced: bool,
    /// The query string sent upstream instead of the client's, when a plugin
    /// removed arguments (key-auth's `hide_credentials`); `Some("")` sends none.
    pub upstream_query: Option<String>,
    /// Headers added to the response sent to the client, proxied or generated.
    pub response_headers: ResponseHeaders,
    /// The status finally sent to the client (set before the log phase).
    pub status: Option<http::StatusCode>,
    pub timings: Timings,
    /// Upstream tries that failed before the last one, in order; empty (and
    /// unallocated) unless the proxy retried.
    pub failed_tries: Vec<FailedTry>,
    pub bytes: ByteCounts,
    /// Facts for the log record; `Some` only when the route's chain logs.
    pub log_facts: Option<Box<LogFacts>>,
    /// The serialized log record, built by the first logging plugin that
    /// asks and shared by the others (see [`RequestContext::log_record`]).
    pub(crate) log_record: std::sync::OnceLock<Vec<u8>>,
    /// Typed per-plugin state, e.g. counts computed in `access` and turned
    /// into headers in `response`. Allocates only when a plugin stores something.
    pub state: Extensions,
    /// The instances selected for this request, in execution order: the
    /// `response` and `log` phases run these, including for a request a
    /// plugin answered itself.
    pub(crate) selected: Selection,
    /// The name of the plugin running now, so a panic can be attributed.
    pub(crate) running: Option<&'static str>,
}

impl RequestContext {
    /// A context for a request whose head the proxy has parsed.
    pub fn new(
        request: Parts,
        client_ip: IpAddr,
        peer_ip: IpAddr,
        protocol: Protocol,
        request_id: http::HeaderValue,
        received: Instant,
    ) -> RequestContext {
        RequestContext {
            request,
            host: None,
            client_ip,
            peer_ip,
            protocol,
            request_id,
            route: None,
            service: None,
            consumer: None,
            consumer_json: None,
            credential: None,
            consumer_headers: None,
            authenticated_groups: None,
            body: None,
            body_replaced: false,
            upstream_query: None,
            response_headers: ResponseHeaders::default(),
            status: None,
            timings: Timings::new(received),
            failed_tries: Vec::new(),
            bytes: ByteCounts::default(),
            log_facts: None,
            log_record: std::sync::OnceLock::new(),
            entity_json: None,
            state: Extensions::new(),
            selected: Selection::default(),
            running: None,
        }
    }

    /// The upstream request headers (the client's, as plugins edited them),
    /// without the consumer headers ([`RequestContext::consumer_headers`]).
    pub fn headers(&self) -> &HeaderMap {
        &self.request.headers
    }

    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.request.headers
    }

    /// A header of the upstream request as plugins left it: the consumer
    /// headers an authentication plugin set, else the header map's.
    pub fn upstream_header(&self, name: &str) -> Option<&http::HeaderValue> {
        self.consumer_headers
            .as_deref()
            .and_then(|consumer| consumer.get(name))
            .or_else(|| self.request.headers.get(name))
    }

    /// The plugin that was running when a phase failed or panicked.
    pub fn running_plugin(&self) -> Option<&'static str> {
        self.running
    }

    /// The names of the instances selected for this request, in order.
    pub fn selected_plugins(&self) -> impl Iterator<Item = &str> {
        self.selected.as_slice().iter().map(|i| i.name.as_str())
    }

    pub fn consumer_id(&self) -> Option<uuid::Uuid> {
        self.consumer.as_ref().map(|c| c.id)
    }
}

/// The instances a request's `response` and `log` phases run: the chain's
/// own list when it is the same for every request (one reference count),
/// else the list `access` built for this request.
#[derive(Debug, Clone)]
pub(crate) enum Selection {
    Fixed(Arc<[Arc<PluginInstance>]>),
    PerRequest(Vec<Arc<PluginInstance>>),
}

impl Default for Selection {
    fn default() -> Selection {
        Selection::PerRequest(Vec::new())
    }
}

impl Selection {
    pub(crate) fn as_slice(&self) -> &[Arc<PluginInstance>] {
        match self {
            Selection::Fixed(instances) => instances,
            Selection::PerRequest(instances) => instances,
        }
    }

    /// Adds an instance chosen for this request (the chain's list is then
    /// not fixed).
    pub(crate) fn push(&mut self, instance: Arc<PluginInstance>) {
        match self {
            Selection::PerRequest(instances) => instances.push(instance),
            Selection::Fixed(fixed) => {
                let mut instances = fixed.to_vec();
                instances.push(instance);
                *self = Selection::PerRequest(instances);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::plugin::{IpRestriction, Plugin};
    use crate::runtime::ProtocolSet;

    fn instance(name: &str) -> Arc<PluginInstance> {
        Arc::new(PluginInstance {
            id: uuid::Uuid::new_v4(),
            name: name.to_string(),
            priority: 1,
            protocols: ProtocolSet::from_names(&["http"]),
            route: None,
            service: None,
            consumer: None,
            plugin: Plugin::IpRestriction(
                IpRestriction::from_config(
                    &serde_json::from_value(serde_json::json!({"deny": ["1.1.1.1"]})).unwrap(),
                )
                .unwrap(),
            ),
        })
    }

    #[test]
    fn a_fixed_selection_becomes_the_requests_own_when_added_to() {
        let mut selection = Selection::Fixed(Arc::from(vec![instance("a")]));
        selection.push(instance("b"));
        assert!(matches!(selection, Selection::PerRequest(_)));
        let names: Vec<&str> = selection
            .as_slice()
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }
}
