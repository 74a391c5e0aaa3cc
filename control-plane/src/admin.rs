//! The Kong-compatible Admin API: the axum router, the bearer-token gate, and
//! dispatch from the generated route table to the handlers.
//!
//! One request = at most one store transaction. Errors become responses only
//! in `error.rs`.

pub mod audit;
pub mod body;
pub mod certificates;
pub mod clustering;
pub mod config;
pub mod entities;
pub mod error;
pub mod info;
pub mod openapi;
pub mod paging;
pub mod response;
pub mod routes;

use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use error::ApiError;
use routes::Op;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Largest body accepted on entity endpoints.
pub const MAX_BODY: usize = 1024 * 1024;
/// Largest body accepted by `POST /config` (a whole declarative file).
pub const MAX_CONFIG_BODY: usize = 16 * 1024 * 1024;

/// Longest an Admin API request may take before it answers 503.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// Longest a `/config` request may take (a whole configuration in one transaction).
pub const CONFIG_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Who made a request: a token id, or `local` when no token is configured.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// The Admin API. `extra` routes (e.g. `/metrics`, `/clustering/*`) are served
/// behind the same token gate and headers; everything else goes to the table.
pub fn router(state: Arc<AppState>, extra: Router) -> Router {
    let table_routes = Router::new().fallback(dispatch).with_state(state.clone());
    extra
        .merge(table_routes)
        .layer(axum::middleware::from_fn_with_state(state, gate))
}

/// Counts, authenticates, and stamps common headers on every request.
async fn gate(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    state
        .counters
        .total_requests
        .fetch_add(1, Ordering::Relaxed);
    let origin = request.headers().get(header::ORIGIN).cloned();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let refusal = if state.admin_tokens.is_empty() && state.browser_guard {
        cross_site_refusal(request.headers())
    } else {
        None
    };
    let authenticated = match refusal {
        Some(_) => None,
        None => authenticate(&state, request.headers(), &method),
    };
    let mut response = match (refusal, authenticated) {
        (Some(reason), _) => {
            tracing::warn!(%method, %path, reason, "admin request refused");
            response::json_with_status(
                StatusCode::FORBIDDEN,
                &serde_json::json!({ "message": reason }),
            )
        }
        (None, Some(actor)) => {
            request.extensions_mut().insert(actor);
            next.run(request).await
        }
        (None, None) => {
            tracing::warn!(%method, %path, "admin request without a valid token");
            let mut r = response::json_with_status(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"message": "Unauthorized"}),
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
    };
    state.counters.record_response(response.status().as_u16());
    let headers = response.headers_mut();
    headers.insert(
        header::SERVER,
        HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        origin.unwrap_or(HeaderValue::from_static("*")),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    tracing::info!(
        %method,
        %path,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_millis() as u64,
        "admin request"
    );
    response
}

fn is_local_host(host: &str) -> bool {
    let host = host.trim();
    // strip a port: `[::1]:8001`, `127.0.0.1:8001`, `localhost:8001`
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok()
}

/// Without a token, the Admin API trusts whoever can reach its local listener.
/// A browser on that host must not become such a client for a web page: a
/// request from a non-local origin (CSRF, or reading with our reflected CORS
/// headers) or addressed to a non-local host name (DNS rebinding) is refused.
fn cross_site_refusal(headers: &HeaderMap) -> Option<&'static str> {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if origin == "null" || !is_local_host(host) {
            return Some("Cross-origin requests to an Admin API without a token are refused");
        }
    }
    if let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) {
        if !is_local_host(host) {
            return Some("Requests for a non-local host name need an Admin API token");
        }
    }
    None
}

/// The actor when the request may proceed. Tokens are compared as SHA-256
/// digests in constant time so neither content nor length leaks; OPTIONS
/// (CORS preflight, no side effects) needs no token.
fn authenticate(state: &AppState, headers: &HeaderMap, method: &Method) -> Option<Actor> {
    if state.admin_tokens.is_empty() {
        return Some(Actor("local".into()));
    }
    if method == Method::OPTIONS {
        return Some(Actor("anonymous".into()));
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })?;
    let presented = Sha256::digest(presented.as_bytes());
    let mut found = None;
    for token in &state.admin_tokens {
        let expected = Sha256::digest(&token.secret);
        if bool::from(presented.ct_eq(&expected)) && found.is_none() {
            found = Some(Actor(token.id.clone()));
        }
    }
    found
}

/// One Admin API request, read and matched.
pub struct AdminRequest {
    pub state: Arc<AppState>,
    pub method: Method,
    /// The path as requested, without a trailing slash.
    pub path: String,
    pub query: HashMap<String, String>,
    pub params: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub actor: String,
}

impl AdminRequest {
    /// A path parameter of the matched template.
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }
}

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let too_large = std::error::Error::source(&err)
            .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest("Cannot read the request body".into())
        }
    })
}

fn allow_header(methods: &[Method]) -> HeaderValue {
    let mut names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    names.extend(["HEAD", "OPTIONS"]);
    names.sort_unstable();
    HeaderValue::from_str(&names.join(", ")).unwrap_or(HeaderValue::from_static("GET"))
}

/// Matches the path in the route table and runs the handler.
async fn dispatch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let Some(matched) = state.routes.find(&path) else {
        return ApiError::NotFound.into_response();
    };
    let endpoint = matched.endpoint.clone();
    let Some(params) = matched.params else {
        return ApiError::BadRequest("Invalid UTF-8 in the request path".into()).into_response();
    };
    if parts.method == Method::OPTIONS {
        let allow = allow_header(endpoint.methods);
        let mut r = response::no_content();
        let h = r.headers_mut();
        h.insert(header::ALLOW, allow.clone());
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, allow);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Content-Type"),
        );
        return r;
    }
    let effective = if parts.method == Method::HEAD {
        Method::GET
    } else {
        parts.method.clone()
    };
    if !endpoint.methods.contains(&effective) {
        let mut r = ApiError::MethodNotAllowed.into_response();
        r.headers_mut()
            .insert(header::ALLOW, allow_header(endpoint.methods));
        return r;
    }
    let limit = if endpoint.op == Op::Config {
        MAX_CONFIG_BODY
    } else {
        MAX_BODY
    };
    let body = match read_body(body, &parts.headers, limit).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let query = match paging::query_args(parts.uri.query()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let actor = parts
        .extensions
        .get::<Actor>()
        .map(|a| a.0.clone())
        .unwrap_or_else(|| "local".into());
    let trimmed = if path.len() > 1 {
        path.trim_end_matches('/').to_string()
    } else {
        path
    };
    let request = AdminRequest {
        state,
        method: effective,
        path: trimmed,
        query,
        params,
        headers: parts.headers,
        body,
        actor,
    };
    // Bounds a request whose database hangs mid-transaction: dropping the
    // handler rolls its transaction back and frees the writer slot.
    let deadline = if matches!(endpoint.op, Op::Config | Op::ClusteringWait) {
        CONFIG_REQUEST_TIMEOUT
    } else {
        REQUEST_TIMEOUT
    };
    match tokio::time::timeout(deadline, handle(&request, endpoint.op)).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => err.into_response(),
        Err(_) => ApiError::Store(crate::store::StoreError::Unavailable(
            "admin request timed out".into(),
        ))
        .into_response(),
    }
}

async fn handle(request: &AdminRequest, op: Op) -> Result<Response, ApiError> {
    use axum::http::Method as M;
    match (op, &request.method) {
        (Op::Root, _) => info::root(request).await,
        (Op::Status, _) => info::status(request).await,
        (Op::Endpoints, _) => Ok(info::endpoints(request)),
        (Op::PluginsEnabled, _) => Ok(info::plugins_enabled()),
        (Op::EntitySchema, _) => info::entity_schema(request),
        (Op::PluginSchema, _) => info::plugin_schema(request),
        (Op::ValidateEntity, _) => info::validate_entity_endpoint(request).await,
        (Op::ValidatePlugin, _) => info::validate_plugin(request).await,
        (Op::Config, &M::GET) => config::get(request).await,
        (Op::Config, _) => config::post(request).await,
        (Op::Audit, _) => audit::list(request).await,
        (Op::Tags, _) => info::tags(request).await,
        (Op::OpenApi, _) => Ok(openapi::document(request)),
        (Op::ClusteringDataPlanes, _) => clustering::data_planes(request).await,
        (Op::ClusteringStatus, _) => clustering::status(request).await,
        (Op::ClusteringWait, _) => clustering::wait(request).await,
        (Op::Collection { kind, parent }, &M::GET) => entities::list(request, kind, parent).await,
        (Op::Collection { kind, parent }, _) => entities::create(request, kind, parent).await,
        (Op::Entity { kind, parent }, &M::GET) => entities::get(request, kind, parent).await,
        (Op::Entity { kind, parent }, &M::PUT) => entities::put(request, kind, parent).await,
        (Op::Entity { kind, parent }, &M::PATCH) => entities::patch(request, kind, parent).await,
        (Op::Entity { kind, parent }, _) => entities::delete(request, kind, parent).await,
        (Op::ParentOf { relation }, &M::GET) => entities::get_parent(request, relation).await,
        (Op::ParentOf { relation }, _) => entities::write_parent(request, relation).await,
    }
}
