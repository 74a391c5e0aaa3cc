//! One proxied request, as the list of its phases: refuse what the head
//! alone condemns (limits, framing, the host), load the compiled config once,
//! run the global `rewrite` plugins, route, run the route's `access` plugins,
//! forward upstream (the body streamed or buffered), run the `response`
//! plugins on the response head, and hand the `log` phase to the response
//! body, which runs it once the response is finished or the client left.
//! Every early exit goes through `respond`, and the response and log phases
//! run for those too, as Kong runs them for a request a plugin answered.
//! Denials and gateway 5xx are counted and logged (rate-limited) on the way.

use super::body::{
    buffer_request_body, BufferError, BufferLimits, Buffered, ClientBodyError, ClientIncoming,
    RequestBody, ResponseBody,
};
use super::error::ProxyError;
use super::headers::{
    append_forwarded_for, has_unsupported_transfer_coding, header_bytes, host_without_port,
    is_upgrade_request, is_websocket, strip_hop_by_hop, Keep, X_FORWARDED_FOR, X_FORWARDED_HOST,
    X_FORWARDED_PATH, X_FORWARDED_PORT, X_FORWARDED_PREFIX, X_FORWARDED_PROTO, X_PROXY_LATENCY,
    X_REAL_IP, X_REQUEST_ID, X_UPSTREAM_LATENCY,
};
use super::host::{canonical_host, RequestHost};
use super::respond::{respond, FormatHints, Reply, Style};
use super::server::{ActiveRequest, ClientConn};
use super::upstream::{self, UpstreamResponse};
use super::{Compiled, CompiledRoute, CompiledService};
use crate::plugins::{Decision, PluginChain, PluginFailure, Protocol, Rejection, RequestContext};
use crate::router::{self, RequestInfo};
use futures_util::FutureExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use std::borrow::Cow;
use std::convert::Infallible;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;
use tollgate_shared::runtime::{
    request_headers_json, response_headers_json, LogFacts, Phase, ResponseHeaders,
};

/// An early end of a request: what to answer, how to format it, and for a
/// failure, its fixed label.
struct Exit {
    reply: Reply,
    hints: FormatHints,
    cause: Option<&'static str>,
}

impl Exit {
    fn new(reply: Reply, headers: &HeaderMap) -> Exit {
        Exit {
            reply,
            hints: FormatHints::of(headers),
            cause: None,
        }
    }

    fn failed(error: &ProxyError, hints: FormatHints, version: Version) -> Exit {
        let mut reply = Reply::from_error(error);
        // A client whose body was refused or broken may still be sending it.
        if error.side() == super::error::Side::Client {
            reply = closing(reply, version);
        }
        Exit {
            reply,
            hints,
            cause: Some(error.label()),
        }
    }
}

/// `reply` with `Connection: close` on HTTP/1: like nginx, stop reading from
/// a client whose request could not be framed or was refused mid-body.
fn closing(mut reply: Reply, version: Version) -> Reply {
    if version < Version::HTTP_2 {
        reply
            .headers
            .get_or_insert_with(HeaderMap::new)
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    reply
}

/// Entry point for every request of a client connection.
pub async fn handle(
    conn: Arc<ClientConn>,
    mut request: Request<ClientIncoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let started = Instant::now();
    let active = ActiveRequest::begin(&conn);
    let request_id = new_request_id();
    let (mut response, log) = match head_checks(&conn, &mut request) {
        Ok(host) => proxy(&conn, request, host, request_id, started).await,
        Err(exit) => (render_exit(&conn, exit, &request_id, started), None),
    };
    response.body_mut().set_active(active);
    if let Some(log) = log {
        response.body_mut().set_log(log);
    }
    Ok(response)
}

/// What the head alone condemns (limits, framing), then the request's one
/// host; a disagreeing `Host` header is rewritten to it, so that routing,
/// plugins, logs and the upstream all see the same host.
// `Exit` is large but built only when a request ends early; boxing it
// would allocate for every rejection.
#[allow(clippy::result_large_err)]
fn head_checks(
    conn: &ClientConn,
    request: &mut Request<ClientIncoming>,
) -> Result<RequestHost, Exit> {
    if let Some(reply) = head_rejection(conn, request) {
        return Err(Exit::new(reply, request.headers()));
    }
    match canonical_host(request.version(), request.uri(), request.headers()) {
        Ok(host) => {
            host.apply_to(request.headers_mut());
            Ok(host)
        }
        Err(_) => {
            let reply = closing(
                Reply::error_page(StatusCode::BAD_REQUEST),
                request.version(),
            );
            Err(Exit::new(reply, request.headers()))
        }
    }
}

/// 32 lowercase hex digits of randomness, like nginx's `$request_id`.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let random: u128 = rand::random();
    let mut text = [0u8; 32];
    for (i, byte) in random.to_be_bytes().iter().enumerate() {
        text[2 * i] = HEX[usize::from(byte >> 4)];
        text[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
    }
    // A frozen `BytesMut` is reference-counted from the start, so the clones sent
    // upstream and downstream share it without promoting a buffer.
    HeaderValue::from_maybe_shared(bytes::BytesMut::from(&text[..]).freeze())
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// `true` when Kong's normalization would leave `path` unchanged: no
/// percent-encoding, no duplicate slash, no dot segment.
fn is_normalized(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    for (i, &byte) in bytes.iter().enumerate() {
        match byte {
            b'%' => return false,
            b'/' => {
                let rest = &bytes[i + 1..];
                if rest.first() == Some(&b'/')
                    || rest == b"."
                    || rest == b".."
                    || rest.starts_with(b"./")
                    || rest.starts_with(b"../")
                {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// Counts a 5xx the gateway answered itself and logs it, rate-limited.
fn note_gateway_error(conn: &ClientConn, exit: &Exit, request_id: &HeaderValue) {
    let shared = &conn.shared;
    shared.status.gateway_errors.fetch_add(1, Ordering::Relaxed);
    if let Some(suppressed) = shared.log_limits.gateway_errors.admit() {
        tracing::warn!(
            status = exit.reply.status.as_u16(),
            cause = exit.cause.unwrap_or("gateway"),
            client_ip = %conn.peer_ip,
            request_id = request_id.to_str().unwrap_or(""),
            suppressed,
            "request failed"
        );
    }
}

/// Counts a request a plugin answered itself and logs it, rate-limited.
fn note_denial(
    conn: &ClientConn,
    route: &CompiledRoute,
    rejection: &Rejection,
    client_ip: IpAddr,
    host: Option<&str>,
) {
    let shared = &conn.shared;
    shared
        .status
        .requests_denied
        .fetch_add(1, Ordering::Relaxed);
    if let Some(suppressed) = shared.log_limits.denials.admit() {
        tracing::warn!(
            status = rejection.status.as_u16(),
            %client_ip,
            host = host.unwrap_or(""),
            route = %route.id,
            message = %rejection.message,
            suppressed,
            "request denied by a plugin"
        );
    }
}

/// What is refused from the request head alone: a target or header block
/// over the limits (414, 431) and a transfer coding other than `chunked`
/// (501, as nginx). The connection is closed after the answer.
fn head_rejection(conn: &ClientConn, request: &Request<ClientIncoming>) -> Option<Reply> {
    let limits = &conn.shared.limits;
    let target_len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    let status = if target_len > limits.max_request_target {
        StatusCode::URI_TOO_LONG
    } else if header_bytes(request.headers()) > limits.max_header_bytes {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    } else if !request.body().is_end_stream() && has_unsupported_transfer_coding(request.headers())
    {
        StatusCode::NOT_IMPLEMENTED
    } else {
        return None;
    };
    Some(closing(Reply::error_page(status), request.version()))
}

fn is_grpc_request(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// The log phase's work, handed to the response body: it runs once the
/// response is finished or the client went away, off the latency path.
pub struct LogJob {
    ctx: RequestContext,
}

impl std::fmt::Debug for LogJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogJob").finish_non_exhaustive()
    }
}

impl LogJob {
    /// Runs the log phase; `response_bytes` is what the body delivered.
    /// Boxed `self`: the context is read where it lies, not moved out.
    pub fn finish(mut self: Box<Self>, response_bytes: u64) {
        self.ctx.timings.finished = Some(std::time::Instant::now());
        let head = self
            .ctx
            .log_facts
            .as_ref()
            .map_or(0, |facts| facts.response_head_bytes);
        self.ctx.bytes.response = head + response_bytes;
        if let Some(streamed) = self
            .ctx
            .log_facts
            .as_ref()
            .and_then(|f| f.streamed_body.as_ref())
        {
            self.ctx.bytes.request += streamed.load(Ordering::Relaxed);
        }
        let ctx = &self.ctx;
        if std::panic::catch_unwind(AssertUnwindSafe(|| PluginChain::log(ctx))).is_err() {
            tracing::error!(
                plugin = ctx.running_plugin().unwrap_or("unknown"),
                "a plugin panicked in the log phase"
            );
        }
    }
}

// Inlined so that the context is copied once, into the job's box, and not
// at all for a chain that does not log (it is a few hundred bytes).
#[inline(always)]
fn log_job(ctx: RequestContext) -> Option<Box<LogJob>> {
    PluginChain::wants_log(&ctx).then(|| Box::new(LogJob { ctx }))
}

/// The length of `HTTP/1.1 200 OK\r\n`, the usual status line.
const STATUS_LINE: u64 = 17;

/// What the log needs of a head, read in one pass over its fields (cheaper
/// than a hashed lookup per header it looks for).
struct HeadFacts<'h> {
    /// Bytes of the head as HTTP/1.1 sends it (`name: value\r\n` per field
    /// and the blank line) after its first line, for the log record's sizes
    /// (nginx `$request_length`, `$bytes_sent`).
    size: u64,
    content_length: Option<&'h HeaderValue>,
    transfer_encoding: bool,
}

fn head_facts<'h>(
    fields_of_head: impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)>,
    first_line: u64,
) -> HeadFacts<'h> {
    let mut fields = 0;
    let mut content_length = None;
    let mut transfer_encoding = false;
    for (name, value) in fields_of_head {
        fields += name.as_str().len() + value.len() + 4;
        if name == header::CONTENT_LENGTH {
            content_length = content_length.or(Some(value));
        }
        transfer_encoding |= name == header::TRANSFER_ENCODING;
    }
    HeadFacts {
        size: first_line + fields as u64 + 2,
        content_length,
        transfer_encoding,
    }
}

/// Starts the log record's facts once the route is known, only for a route
/// whose chain logs: the listener port, and the request's size as far as the
/// head tells it (the body's own length is added once it is read); for a
/// chain that reads the whole record, the route's rendered JSON too.
fn start_log_facts(
    conn: &ClientConn,
    route: &CompiledRoute,
    ctx: &mut RequestContext,
    host: Option<&str>,
) {
    if !route.chain.runs(Phase::Log) {
        return;
    }
    let reads_record = route.chain.phases.reads_log_record();
    // Only the record's `request.url` (and a trace) read the host.
    if ctx.host.is_none() && reads_record {
        ctx.host = host.map(str::to_owned);
    }
    let request = &ctx.request;
    let target = request
        .uri
        .path_and_query()
        .map_or(1, |pq| pq.as_str().len());
    // `GET /x HTTP/1.1\r\n`
    let first_line = (request.method.as_str().len() + target + 11) as u64;
    let head = head_facts(request.headers.iter(), first_line);
    let declared_body = head
        .content_length
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    ctx.bytes.request = head.size + declared_body;
    if reads_record {
        ctx.entity_json = Some(Arc::clone(&route.entity_json));
    }
    ctx.log_facts = Some(Box::new(LogFacts {
        server_port: conn.listener_port,
        tls: conn.tls.clone(),
        reads_record,
        ..LogFacts::default()
    }));
}

/// Renders an early exit; 5xx the gateway produced are counted and logged.
fn render_exit(
    conn: &ClientConn,
    exit: Exit,
    request_id: &HeaderValue,
    started: Instant,
) -> Response<ResponseBody> {
    if exit.reply.status.is_server_error() {
        note_gateway_error(conn, &exit, request_id);
    }
    respond(
        exit.reply,
        &exit.hints,
        request_id,
        &conn.shared.values,
        started.elapsed(),
    )
}

/// Renders an exit of a request with a context: the response phase runs on
/// it and the log phase is prepared, as for a proxied response.
fn finish_exit(
    conn: &ClientConn,
    exit: Exit,
    mut ctx: RequestContext,
    started: Instant,
) -> (Response<ResponseBody>, Option<Box<LogJob>>) {
    let mut response = render_exit(conn, exit, &ctx.request_id, started);
    response_phase(&mut ctx, &mut response);
    (response, log_job(ctx))
}

/// Adds the headers plugins asked for and runs the response phase, in place:
/// the response is edited through its head, never taken apart and rebuilt.
///
/// When no response-phase plugin reads the head's map, the plugins' headers
/// ride with the body instead of going into the map: the writer of the head
/// adds them, replacing fields of the same names, which is what inserting
/// them does, without hashing five names into the map per request (a third
/// of what rate-limiting cost); the log facts read the head as it will be
/// written (`ResponseHeaders::over`).
fn response_phase(ctx: &mut RequestContext, response: &mut Response<ResponseBody>) {
    if !ctx.response_headers.is_empty() {
        let extra = std::mem::take(&mut ctx.response_headers);
        if !PluginChain::runs_response(ctx) {
            response.body_mut().set_plugin_headers(extra);
        } else {
            merge_plugin_headers(response.headers_mut(), extra);
        }
    }
    let mut status = response.status();
    let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
        PluginChain::response(ctx, &mut status, response.headers_mut());
    }));
    if ran.is_err() {
        tracing::error!(
            plugin = ctx.running_plugin().unwrap_or("unknown"),
            "a plugin panicked in the response phase"
        );
    }
    *response.status_mut() = status;
    ctx.status = Some(status);
    if let Some(facts) = ctx.log_facts.as_mut() {
        let headers = response.headers();
        let plugin_headers = response.body().plugin_headers();
        // hyper writes the length of a sized body itself; the log shows it as sent.
        let bodiless = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        // Without plugin headers, the map alone (the common case, and a
        // cheaper loop than the overlay's).
        let head = if plugin_headers.is_empty() {
            head_facts(headers.iter(), STATUS_LINE)
        } else {
            head_facts(plugin_headers.over(headers), STATUS_LINE)
        };
        let framed = head.transfer_encoding || head.content_length.is_some();
        let written_length = response
            .body()
            .size_hint()
            .exact()
            .filter(|_| !bodiless && !framed);
        facts.response_head_bytes = head.size
            + written_length.map_or(0, |length| {
                let digits = itoa::Buffer::new().format(length).len();
                (header::CONTENT_LENGTH.as_str().len() + digits + 4) as u64
            });
        if facts.reads_record {
            facts.response_headers_json = Some(if plugin_headers.is_empty() {
                response_headers_json(headers.iter(), written_length)
            } else {
                response_headers_json(plugin_headers.over(headers), written_length)
            });
        }
        ctx.timings.responded = Some(std::time::Instant::now());
    }
}

/// Sets plugin headers in a head's map, replacing fields of the same names.
pub(crate) fn merge_plugin_headers(headers: &mut HeaderMap, extra: ResponseHeaders) {
    headers.reserve(extra.len());
    for (name, value) in extra {
        headers.insert(name, value);
    }
}

/// The whole request after the head checks, phase by phase.
async fn proxy(
    conn: &ClientConn,
    mut request: Request<ClientIncoming>,
    host: RequestHost,
    request_id: HeaderValue,
    started: Instant,
) -> (Response<ResponseBody>, Option<Box<LogJob>>) {
    let compiled = conn.shared.config.current();
    let upgrade = is_upgrade_request(request.headers(), request.version());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();
    let protocol = match (conn.https, is_grpc_request(&parts.headers)) {
        (false, false) => Protocol::Http,
        (true, false) => Protocol::Https,
        (false, true) => Protocol::Grpc,
        (true, true) => Protocol::Grpcs,
    };
    let (client_ip, resolved_ip) = conn.client_address(&parts.headers);
    let mut ctx = RequestContext::new(
        parts,
        client_ip,
        conn.peer_ip,
        protocol,
        request_id,
        started.into_std(),
    );

    if let Err(exit) = rewrite_phase(&compiled, &mut ctx) {
        return finish_exit(conn, exit, ctx, started);
    }
    let routed = match route(conn, &compiled, &ctx, &host) {
        Ok(routed) => routed,
        Err(exit) => return finish_exit(conn, exit, ctx, started),
    };
    let route = routed.route;
    ctx.route = Some(Arc::clone(&route.entity));
    ctx.service = route.service.as_ref().map(|s| Arc::clone(&s.entity));
    start_log_facts(conn, route, &mut ctx, host.as_str());
    let body = if route.chain.reads_body {
        match read_body_for_plugins(conn, route, client_upgrade.is_some(), body, &mut ctx).await {
            Ok(body) => body,
            Err(error) => {
                let hints = FormatHints::of(&ctx.request.headers);
                let exit = Exit::failed(&error, hints, ctx.request.version);
                return finish_exit(conn, exit, ctx, started);
            }
        }
    } else {
        ClientBody::Unread(body)
    };
    if let Err(exit) = access_phase(conn, route, &mut ctx, host.as_str()).await {
        return finish_exit(conn, exit, ctx, started);
    }
    let Some(service) = route.service.as_ref() else {
        let reply = Reply::from_error(&ProxyError::Internal("route without service"));
        let exit = Exit::new(reply, ctx.headers());
        return finish_exit(conn, exit, ctx, started);
    };
    match forward(
        conn,
        route,
        service,
        routed.plan,
        resolved_ip,
        &mut ctx,
        body,
        client_upgrade,
        started,
    )
    .await
    {
        Ok(mut response) => {
            response_phase(&mut ctx, &mut response);
            (response, log_job(ctx))
        }
        Err(exit) => finish_exit(conn, exit, ctx, started),
    }
}

/// The rewrite phase: global plugins, before routing.
// `Exit` is large but built only when a request ends early; boxing it
// would allocate for every rejection.
#[allow(clippy::result_large_err)]
fn rewrite_phase(compiled: &Compiled, ctx: &mut RequestContext) -> Result<(), Exit> {
    let chain = &compiled.global_chain;
    if !chain.runs(Phase::Rewrite) {
        return Ok(());
    }
    match chain.rewrite(ctx) {
        Decision::Continue => Ok(()),
        Decision::Respond(rejection) => {
            Err(Exit::new(Reply::from_rejection(rejection), ctx.headers()))
        }
    }
}

/// The backstop for the whole access phase. Plugins bound their own waits
/// (`redis.timeout`, key fetches); this only keeps a bug from parking a
/// request forever.
const ACCESS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// The access phase of the route's chain. A plugin that fails, panics or
/// passes the deadline answers Kong's 500; the worker and every other request
/// carry on.
async fn access_phase(
    conn: &ClientConn,
    route: &CompiledRoute,
    ctx: &mut RequestContext,
    host: Option<&str>,
) -> Result<(), Exit> {
    if route.chain.is_empty() {
        return Ok(());
    }
    let outcome = {
        let access = AssertUnwindSafe(route.chain.access(ctx)).catch_unwind();
        let mut access = std::pin::pin!(access);
        // Most access handlers finish without waiting: only a request whose
        // plugin really waits (a backend, a key fetch) arms the deadline timer.
        match futures_util::poll!(access.as_mut()) {
            std::task::Poll::Ready(outcome) => Some(outcome),
            std::task::Poll::Pending => tokio::time::timeout(ACCESS_DEADLINE, access).await.ok(),
        }
    };
    let (plugin, reason) = {
        match outcome {
            Some(Ok(Ok(Decision::Continue))) => return Ok(()),
            Some(Ok(Ok(Decision::Respond(rejection)))) => {
                note_denial(conn, route, &rejection, ctx.client_ip, host);
                return Err(Exit::new(Reply::from_rejection(rejection), ctx.headers()));
            }
            Some(Ok(Err(PluginFailure { plugin, error }))) => (plugin, error.to_string()),
            Some(Err(_panic)) => (
                ctx.running_plugin().unwrap_or("unknown"),
                "panicked".to_string(),
            ),
            None => (
                ctx.running_plugin().unwrap_or("unknown"),
                format!("did not finish within {ACCESS_DEADLINE:?}"),
            ),
        }
    };
    conn.shared.status.record_plugin_failure(plugin);
    if let Some(suppressed) = conn.shared.log_limits.gateway_errors.admit() {
        tracing::error!(plugin, %reason, suppressed, "plugin failed in the access phase");
    }
    let mut exit = Exit::new(
        Reply::kong(
            StatusCode::INTERNAL_SERVER_ERROR,
            "An unexpected error occurred",
        ),
        ctx.headers(),
    );
    exit.cause = Some("plugin_failure");
    Err(exit)
}

/// What routing decided, and what the upstream request needs from the
/// original request line (computed before plugins may edit headers).
struct Routed<'c> {
    route: &'c CompiledRoute,
    plan: UpstreamPlan,
}

struct UpstreamPlan {
    uri: Uri,
    forwarded_path: Option<HeaderValue>,
    forwarded_host: Option<HeaderValue>,
    preserved_host: Option<HeaderValue>,
    forwarded_prefix: Option<HeaderValue>,
}

/// Path normalization, the router, and the checks after it (kong-compat §2.7).
// `Exit` is large but built only when a request ends early; boxing it
// would allocate for every rejection.
#[allow(clippy::result_large_err)]
fn route<'c>(
    conn: &ClientConn,
    compiled: &'c Compiled,
    ctx: &RequestContext,
    request_host: &RequestHost,
) -> Result<Routed<'c>, Exit> {
    let request = &ctx.request;
    let raw_path = request.uri.path();
    let path: Cow<'_, str> = if is_normalized(raw_path) {
        Cow::Borrowed(raw_path)
    } else {
        match router::normalize_path(raw_path) {
            Ok(normalized) => Cow::Owned(normalized),
            Err(_) => {
                let reply = Reply::from_error(&ProxyError::InvalidPath);
                return Err(Exit::new(reply, &request.headers));
            }
        }
    };
    let host = request_host.as_str();
    let found = compiled.router.find(&RequestInfo {
        method: request.method.as_str(),
        host,
        path: &path,
        headers: &request.headers,
        https: conn.https,
        sni: conn.sni.as_deref(),
        listener_port: conn.listener_port,
    });
    let Some(found) = found else {
        let reply = Reply::kong(StatusCode::NOT_FOUND, "no Route matched with those values");
        return Err(Exit::new(reply, &request.headers));
    };
    let Some(route) = compiled.routes.get(found.route_index) else {
        let reply = Reply::from_error(&ProxyError::Internal("route index out of range"));
        return Err(Exit::new(reply, &request.headers));
    };
    if let Some(reply) = protocol_mismatch(route, ctx.protocol, request, host) {
        return Err(Exit::new(reply, &request.headers));
    }
    let Some(service) = route.service.as_ref() else {
        let reply = Reply::kong(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Service found with those values",
        );
        return Err(Exit::new(reply, &request.headers));
    };
    let stripped = found.stripped_prefix();
    let Some(uri) = upstream_uri(service, &path, stripped, request.uri.query()) else {
        let reply = Reply::from_error(&ProxyError::InvalidPath);
        return Err(Exit::new(reply, &request.headers));
    };
    let preserved_host = if route.preserve_host {
        request_host.header_value()
    } else {
        None
    };
    let plan = UpstreamPlan {
        uri,
        forwarded_path: HeaderValue::from_str(request.uri.path()).ok(),
        forwarded_host: host.map(forwarded_host_value),
        preserved_host,
        forwarded_prefix: stripped
            .filter(|p| !p.is_empty() && *p != "/")
            .and_then(|p| HeaderValue::from_str(p).ok()),
    };
    Ok(Routed { route, plan })
}

/// Builds the upstream request from the context (headers as plugins left
/// them), sends it, and decorates the response head.
#[allow(clippy::too_many_arguments)]
async fn forward(
    conn: &ClientConn,
    route: &CompiledRoute,
    service: &CompiledService,
    mut plan: UpstreamPlan,
    resolved_ip: Option<HeaderValue>,
    ctx: &mut RequestContext,
    body: ClientBody,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    started: Instant,
) -> Result<Response<ResponseBody>, Exit> {
    let shared = &conn.shared;
    if let Some(query) = ctx.upstream_query.take() {
        if let Some(uri) = with_query(&plan.uri, &query) {
            plan.uri = uri;
        }
    }
    let client_version = ctx.request.version;
    let hints = FormatHints::of(&ctx.request.headers);
    let upgrade = client_upgrade.is_some();
    // Whether the client framed its body with a length (counted in the
    // request's size when the log facts started), read before the headers go.
    let client_sent_length =
        ctx.log_facts.is_some() && ctx.request.headers.contains_key(header::CONTENT_LENGTH);
    // A plugin may read the request headers after the upstream took them; a
    // chain that only logs the record gets them rendered now instead.
    let phases = route.chain.phases;
    let mut headers = if phases.reads_request_headers_after_upstream() {
        ctx.request.headers.clone()
    } else {
        if phases.reads_log_record() {
            if let Some(facts) = ctx.log_facts.as_mut() {
                facts.request_headers_json = Some(request_headers_json(
                    &ctx.request.headers,
                    ctx.consumer_headers.as_deref(),
                ));
            }
        }
        std::mem::take(&mut ctx.request.headers)
    };
    // A message framed by Transfer-Encoding ignores its Content-Length, and a
    // proxy must not forward that stale length (RFC 9112 §6.3).
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    let keep = if upgrade {
        Keep::Upgrade
    } else if service.protocol.is_http2() {
        Keep::TeTrailers
    } else {
        Keep::Nothing
    };
    strip_hop_by_hop(&mut headers, keep);
    headers.remove(header::EXPECT);
    add_upstream_headers(
        &mut headers,
        UpstreamHeaderFacts {
            conn,
            service,
            resolved_ip,
            forwarded_path: plan.forwarded_path,
            forwarded_host: plan.forwarded_host,
            preserved_host: plan.preserved_host,
            forwarded_prefix: plan.forwarded_prefix,
            client_version,
            request_id: &ctx.request_id,
        },
    );

    let body = match body {
        ClientBody::Unread(body) => match upstream_body(
            conn,
            route,
            service,
            upgrade,
            &ctx.request.method,
            body,
            &mut headers,
        )
        .await
        {
            Ok(body) => body,
            Err(error) => return Err(Exit::failed(&error, hints, client_version)),
        },
        ClientBody::Read(read) => {
            let read = match ctx.body.take().filter(|_| ctx.body_replaced) {
                Some(replaced) => RequestBody::Buffered {
                    data: Buffered::Memory(Some(replaced)),
                    control: None,
                },
                None => read,
            };
            if !read.is_empty() {
                let length = read.size_hint().lower();
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            }
            read
        }
    };
    let mut body = body;
    if let Some(facts) = ctx.log_facts.as_mut() {
        if !client_sent_length {
            match body.size_hint().exact() {
                // A chunked body the route buffered: its length is known now.
                Some(length) => ctx.bytes.request += length,
                None => {
                    let counter = Arc::default();
                    body.count_into(Arc::clone(&counter));
                    facts.streamed_body = Some(counter);
                }
            }
        }
        let key = service.target.pool.key();
        if facts.reads_record {
            facts.upstream_uri = Some(plan.uri.clone());
        }
        facts.upstream_target = Some((Arc::clone(&key.host), key.port));
    }
    let mut upstream_request = Request::new(body);
    *upstream_request.method_mut() = ctx.request.method.clone();
    *upstream_request.uri_mut() = plan.uri;
    *upstream_request.version_mut() = if service.protocol.is_http2() {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    *upstream_request.headers_mut() = headers;

    let sent_at = Instant::now();
    ctx.timings.upstream_sent = Some(sent_at.into_std());
    let proxy_latency = sent_at - started;
    let result = if let Some(client_upgrade) = client_upgrade {
        if let Some(consumer) = ctx.consumer_headers.as_deref() {
            consumer.merge_into(upstream_request.headers_mut());
        }
        // Boxed: a rare path whose future would otherwise size every request's.
        Box::pin(upgrade_exchange(
            &service.target,
            upstream_request,
            client_upgrade,
        ))
        .await
    } else {
        upstream::forward(
            &service.target,
            upstream_request,
            ctx.consumer_headers.as_deref(),
            &mut ctx.failed_tries,
        )
        .await
    };
    let UpstreamResponse {
        response,
        lease,
        connected_at,
    } = match result {
        Ok(exchange)
            if exchange.response.status() == StatusCode::SWITCHING_PROTOCOLS && !upgrade =>
        {
            // A tunnel the client never asked for would bypass every route control.
            return Err(Exit::failed(
                &ProxyError::UnexpectedUpgrade,
                hints,
                client_version,
            ));
        }
        Ok(exchange) => exchange,
        Err(error) => {
            tracing::debug!(error = error.label(), service = %service.id, "upstream failed");
            return Err(Exit::failed(&error, hints, client_version));
        }
    };
    ctx.timings.upstream_connected = connected_at.map(Instant::into_std);
    let first_byte = Instant::now();
    ctx.timings.upstream_first_byte = Some(first_byte.into_std());
    let upstream_latency = first_byte - sent_at;

    let (mut parts, body) = response.into_parts();
    if let Some(facts) = ctx.log_facts.as_mut() {
        facts.upstream_status = Some(parts.status);
        facts.proxied = true;
    }
    let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    strip_hop_by_hop(
        &mut parts.headers,
        if switching {
            Keep::Upgrade
        } else {
            Keep::Nothing
        },
    );
    let values = &shared.values;
    values.append_via(&mut parts.headers, parts.version);
    if !parts.headers.contains_key(header::SERVER) {
        parts.headers.insert(header::SERVER, values.server.clone());
    }
    parts
        .headers
        .insert(X_UPSTREAM_LATENCY, values.latency(upstream_latency));
    parts
        .headers
        .insert(X_PROXY_LATENCY, values.latency(proxy_latency));
    parts.headers.insert(X_REQUEST_ID, ctx.request_id.clone());
    parts.version = client_version;
    Ok(Response::from_parts(
        parts,
        ResponseBody::upstream(body, lease),
    ))
}

/// The client's request body: still unread, or read before the access phase
/// for a plugin (see [`read_body_for_plugins`]).
enum ClientBody {
    Unread(ClientIncoming),
    Read(RequestBody),
}

/// When a plugin of the route reads the request body (key-auth's
/// `key_in_body`), the body is read completely before the access phase, as a
/// buffering route reads it (in memory up to `--client-body-buffer-size`,
/// spilled to a temporary file beyond), whatever the route's
/// `request_buffering`. A body that stayed in memory is handed to the plugins
/// in `ctx.body`; a larger one is not (Kong's `get_body` gives up on a body
/// past the client body buffer too). Not for WebSocket upgrades or HTTP/2
/// upstreams, whose bodies stream.
async fn read_body_for_plugins(
    conn: &ClientConn,
    route: &CompiledRoute,
    upgrade: bool,
    body: ClientIncoming,
    ctx: &mut RequestContext,
) -> Result<ClientBody, ProxyError> {
    let streams = route
        .service
        .as_ref()
        .is_none_or(|service| service.protocol.is_http2());
    if upgrade || streams || body.is_end_stream() {
        return Ok(ClientBody::Unread(body));
    }
    let read = buffer_body(conn, body).await?;
    if let RequestBody::Buffered {
        data: Buffered::Memory(Some(bytes)),
        ..
    } = &read
    {
        ctx.body = Some(bytes.clone());
    }
    Ok(ClientBody::Read(read))
}

/// Reads the whole body with the buffering limits (size, memory, spool
/// directory, stall timeout).
async fn buffer_body(conn: &ClientConn, body: ClientIncoming) -> Result<RequestBody, ProxyError> {
    let limits = &conn.shared.limits;
    let buffer_limits = BufferLimits {
        max: limits.max_body_size,
        memory: limits.body_buffer_size,
        temp_dir: &limits.body_temp_dir,
        stall_timeout: limits.body_timeout,
    };
    // Boxed so that the request future stays small for bodyless requests.
    Box::pin(buffer_request_body(body, &buffer_limits))
        .await
        .map_err(|error| match error {
            BufferError::Client(client) => ProxyError::from(&client),
            BufferError::Spool(io) => {
                // The one failure whose cause an operator must see (a full disk…).
                if conn.shared.log_limits.gateway_errors.admit().is_some() {
                    tracing::error!(
                        error = %io,
                        dir = %limits.body_temp_dir.display(),
                        "cannot spool a request body"
                    );
                }
                ProxyError::BodyBuffer(io)
            }
        })
}

/// The body sent upstream. When the route buffers requests it is read
/// completely first, before any upstream connection is taken (not for a
/// WebSocket or an HTTP/2 upstream, whose streams cannot wait for their end);
/// otherwise it streams through. Either way the size limit applies.
async fn upstream_body(
    conn: &ClientConn,
    route: &CompiledRoute,
    service: &CompiledService,
    upgrade: bool,
    method: &Method,
    body: ClientIncoming,
    headers: &mut HeaderMap,
) -> Result<RequestBody, ProxyError> {
    if body.is_end_stream() {
        return Ok(RequestBody::Empty);
    }
    let limits = &conn.shared.limits;
    if route.request_buffering && !upgrade && !service.protocol.is_http2() {
        let buffered = buffer_body(conn, body).await?;
        // The length is known now, whatever framing the client used.
        let length = buffered.size_hint().lower();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        return Ok(buffered);
    }
    if limits.max_body_size > 0 && body.size_hint().lower() > limits.max_body_size {
        return Err(ProxyError::from(&ClientBodyError::TooLarge));
    }
    if body.size_hint().exact().is_none()
        && matches!(*method, Method::GET | Method::HEAD)
        && !service.protocol.is_http2()
    {
        // hyper would send a GET or HEAD body of unknown length as no body at all.
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    Ok(RequestBody::from_incoming(
        body,
        limits.body_timeout,
        limits.max_body_size,
    ))
}

/// Protocol checks after routing (kong-compat §2.7 table).
fn protocol_mismatch(
    route: &CompiledRoute,
    protocol: Protocol,
    request: &http::request::Parts,
    host: Option<&str>,
) -> Option<Reply> {
    if route.grpc_only && matches!(protocol, Protocol::Http | Protocol::Https) {
        return Some(Reply::kong(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Non-gRPC request matched gRPC route",
        ));
    }
    if route.grpc_only && request.version != Version::HTTP_2 {
        return Some(Reply::kong(
            StatusCode::UPGRADE_REQUIRED,
            "Please use HTTP2 protocol",
        ));
    }
    if route.protocols.contains(protocol) {
        return None;
    }
    let secure = match protocol {
        Protocol::Http => Protocol::Https,
        Protocol::Grpc => Protocol::Grpcs,
        _ => return None,
    };
    if !route.protocols.contains(secure) {
        return None;
    }
    let status = route.https_redirect_status_code;
    if status == StatusCode::UPGRADE_REQUIRED {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(
            header::UPGRADE,
            HeaderValue::from_static("TLS/1.2, HTTP/1.1"),
        );
        return Some(Reply {
            headers: Some(headers),
            ..Reply::kong(status, "Please use HTTPS protocol")
        });
    }
    let target = request.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!(
        "https://{}{target}",
        host.map(host_without_port).unwrap_or("")
    );
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    Some(Reply {
        status,
        message: Cow::Borrowed(""),
        style: Style::KongError,
        headers: Some(headers),
        empty: true,
    })
}

fn upstream_uri(
    service: &CompiledService,
    path: &str,
    stripped: Option<&str>,
    query: Option<&str>,
) -> Option<Uri> {
    let mut target = router::upstream_path(service.path.as_deref(), path, stripped);
    if let Some(query) = query {
        target.push('?');
        target.push_str(query);
    }
    if service.protocol.is_http2() {
        target.insert_str(0, &service.origin);
    }
    Uri::try_from(target).ok()
}

/// `uri` with its query replaced by `query` (none when empty): a plugin
/// removed arguments (key-auth's `hide_credentials`).
fn with_query(uri: &Uri, query: &str) -> Option<Uri> {
    let text = uri.to_string();
    let base = text.split_once('?').map_or(text.as_str(), |(base, _)| base);
    if query.is_empty() {
        Uri::try_from(base).ok()
    } else {
        Uri::try_from(format!("{base}?{query}")).ok()
    }
}

/// nginx `$host`: the Host without its port, lowercased.
fn forwarded_host_value(host: &str) -> HeaderValue {
    let bare = host_without_port(host);
    let value = if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        HeaderValue::from_str(&bare.to_ascii_lowercase())
    } else {
        HeaderValue::from_str(bare)
    };
    value.unwrap_or_else(|_| HeaderValue::from_static(""))
}

struct UpstreamHeaderFacts<'a> {
    conn: &'a ClientConn,
    service: &'a CompiledService,
    /// The client address when real-IP processing changed it.
    resolved_ip: Option<HeaderValue>,
    forwarded_path: Option<HeaderValue>,
    forwarded_host: Option<HeaderValue>,
    /// The request's host when the route preserves it (none: the service's).
    preserved_host: Option<HeaderValue>,
    forwarded_prefix: Option<HeaderValue>,
    client_version: Version,
    request_id: &'a HeaderValue,
}

/// Host, X-Forwarded-*, X-Real-IP, Via and the request id (kong-compat §2.4–§2.5).
/// Forwarding headers from a trusted peer are kept; from anyone else they are replaced.
fn add_upstream_headers(headers: &mut HeaderMap, facts: UpstreamHeaderFacts<'_>) {
    let conn = facts.conn;
    let values = &conn.shared.values;
    let client_ip = facts
        .resolved_ip
        .unwrap_or_else(|| conn.peer_ip_value.clone());

    let forwarded_for = append_forwarded_for(headers, &conn.peer_ip_value);
    headers.insert(
        X_FORWARDED_FOR,
        forwarded_for.unwrap_or_else(|| client_ip.clone()),
    );

    let trusted = conn.trusted;
    let mut set = |name: http::HeaderName, value: Option<HeaderValue>| {
        if trusted && headers.contains_key(&name) {
            return;
        }
        match value {
            Some(value) => {
                headers.insert(name, value);
            }
            None => {
                headers.remove(name);
            }
        }
    };
    let scheme = if conn.https {
        &values.https
    } else {
        &values.http
    };
    set(X_FORWARDED_PROTO, Some(scheme.clone()));
    set(X_FORWARDED_HOST, facts.forwarded_host);
    set(X_FORWARDED_PORT, Some(conn.listener_port_value.clone()));
    set(X_FORWARDED_PATH, facts.forwarded_path);
    set(X_FORWARDED_PREFIX, facts.forwarded_prefix);

    headers.insert(X_REAL_IP, client_ip);
    let host = facts
        .preserved_host
        .unwrap_or_else(|| facts.service.host_header.clone());
    headers.insert(header::HOST, host);
    values.append_via(headers, facts.client_version);
    headers.insert(X_REQUEST_ID, facts.request_id.clone());
}

/// Forwards an upgrade request; on `101` joins both upgraded connections.
async fn upgrade_exchange(
    target: &upstream::UpstreamTarget,
    request: Request<RequestBody>,
    client_upgrade: hyper::upgrade::OnUpgrade,
) -> Result<UpstreamResponse, ProxyError> {
    let mut response = upstream::forward_upgrade(target, request).await?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if !is_websocket(response.headers()) {
            return Err(ProxyError::UnexpectedUpgrade);
        }
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let (client, upstream) = match tokio::join!(client_upgrade, upstream_upgrade) {
                (Ok(client), Ok(upstream)) => (client, upstream),
                _ => return,
            };
            let mut client = hyper_util::rt::TokioIo::new(client);
            let mut upstream = hyper_util::rt::TokioIo::new(upstream);
            if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(%error, "upgraded connection ended");
            }
        });
    }
    Ok(UpstreamResponse {
        response: response.map(upstream::UpstreamBody::Hyper),
        lease: None,
        connected_at: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn normalized_paths_are_recognized() {
        for (path, normal) in [
            ("/", true),
            ("/foo/bar", true),
            ("/foo.bar/baz.", true),
            ("/a/..b", true),
            ("//foo", false),
            ("/foo//bar", false),
            ("/foo/./bar", false),
            ("/foo/../bar", false),
            ("/foo/.", false),
            ("/foo/..", false),
            ("/foo%2Fbar", false),
            ("", false),
        ] {
            assert_eq!(is_normalized(path), normal, "{path}");
        }
    }

    #[test]
    fn request_ids_are_32_lowercase_hex() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        let text = a.to_str().unwrap();
        assert_eq!(text.len(), 32);
        assert!(text
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    }
}
