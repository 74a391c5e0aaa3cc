//! The router: picks the route for a request with Kong's `traditional_compatible`
//! semantics (kong-compat §2.1–§2.2), precompiled so that matching cost does not
//! grow linearly with the number of routes.
//!
//! PLACEHOLDER API: being written (the linear scan below is temporary).

use std::sync::Arc;
use tollgate_shared::{Route, Service};

/// What the router needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a str,
    /// The `Host` header (or HTTP/2 `:authority`) as received, possibly with `:port`.
    pub host: Option<&'a str>,
    /// The normalized request path (see [`normalize_path`]), without the query.
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
    /// `true` when the request arrived over TLS.
    pub https: bool,
    /// TLS SNI, when the request arrived over TLS.
    pub sni: Option<&'a str>,
    /// The local port of the listener that accepted the connection.
    pub listener_port: u16,
}

/// A compiled route with its service, shared by the router and the plugin chains.
#[derive(Debug)]
pub struct RouteEntry {
    pub route: Route,
    pub service: Option<Service>,
}

/// The outcome of a successful match.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub entry: Arc<RouteEntry>,
    /// Index of the route in the slice given to [`Router::build`].
    pub route_index: usize,
    /// The part of the path that matched (prefix text, or the whole regex match);
    /// `strip_path` removes exactly this.
    pub matched_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    #[error("route {route_id}: invalid regex path '{path}': {reason}")]
    InvalidRegex {
        route_id: uuid::Uuid,
        path: String,
        reason: String,
    },
}

#[derive(Debug, Default)]
pub struct Router {
    entries: Vec<Arc<RouteEntry>>,
}

impl Router {
    /// Compiles the routes; routes whose service has `enabled = false` are left out.
    pub fn build(routes: &[Route], services: &[Service]) -> Result<Router, Vec<RouterError>> {
        let entries = routes
            .iter()
            .map(|route| {
                let service = route
                    .service
                    .and_then(|fk| services.iter().find(|s| s.id == fk.id).cloned());
                Arc::new(RouteEntry {
                    route: route.clone(),
                    service,
                })
            })
            .collect();
        Ok(Router { entries })
    }

    /// The best route for the request, by Kong's priority rules.
    pub fn find(&self, req: &RequestInfo<'_>) -> Option<RouteMatch> {
        for (route_index, entry) in self.entries.iter().enumerate() {
            if let Some(paths) = &entry.route.paths {
                if let Some(p) = paths.iter().find(|p| req.path.starts_with(p.as_str())) {
                    return Some(RouteMatch {
                        entry: entry.clone(),
                        route_index,
                        matched_path: Some(p.clone()),
                    });
                }
            }
        }
        None
    }
}

/// Kong's request path normalization: percent-encoded triplets uppercased,
/// unreserved characters decoded, dot-segments resolved, duplicate slashes merged.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    Ok(raw.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("invalid path")]
    Invalid,
}

/// The upstream path per Kong's `path_handling = v0` table (kong-compat §2.3).
/// `matched_path` is what `strip_path` removes (`None` when strip_path is off).
pub fn upstream_path(
    service_path: Option<&str>,
    request_path: &str,
    stripped: Option<&str>,
) -> String {
    let base = service_path.unwrap_or("/");
    let _ = stripped;
    format!("{}{}", base.trim_end_matches('/'), request_path)
}
