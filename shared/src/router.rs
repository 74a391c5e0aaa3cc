//! The router: picks the route for a request with Kong's `traditional_compatible`
//! semantics (kong-compat §2.1–§2.2), precompiled so that matching cost does not
//! grow linearly with the number of routes; plus the request-path rules around it
//! (normalization §2.1, upstream path §2.3).
//!
//! How a table is compiled (see `index`): every route is split into "groups"
//! exactly as Kong splits it (one per distinct prefix length, one for all regex
//! paths), each group gets its Kong priority, and groups are filed by host
//! (exact map, `*.suffix` map, `prefix.*` map, or "any host") and, inside each
//! host bucket, by path (prefixes hashed per distinct length, plus a short
//! list of groups with regex paths or no paths). `find` probes only the buckets
//! the request's host and path select and keeps the highest-priority group
//! that fully matches; it allocates nothing unless a regex path wins (its
//! captures) or the Host is longer than 256 bytes and has uppercase letters.
//!
//! Protocols are not part of matching, as in Kong: an `https`-only route matched
//! by a plain-http request is still the match, and [`RouteMatch::protocol_mismatch`]
//! tells the proxy to answer 426 or redirect (kong-compat §2.7).

mod compile;
mod index;
mod path;
mod upstream;

#[cfg(test)]
mod tests;

use crate::{Route, Service};
use std::sync::Arc;

pub use path::{normalize_path, PathError};
pub use upstream::{append_query, upstream_path};

use compile::{Group, GroupPaths, RequestFacts};
pub(crate) use index::FastHash;
use index::{HostIndex, PathMatch};

/// What the router needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a str,
    /// The `Host` header (or HTTP/2 `:authority`) as received, possibly with `:port`.
    pub host: Option<&'a str>,
    /// The normalized request path (see [`normalize_path`]), without the query.
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
    /// `true` when the request arrived over TLS (this decides whether route
    /// `snis` are checked and whether an `https`-only route is a mismatch).
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

impl RouteEntry {
    /// `true` when the route accepts `https` but not `http`: a plain-http request
    /// that matches it must be answered with `https_redirect_status_code`.
    pub fn https_only(&self) -> bool {
        has_protocol(&self.route, "https") && !has_protocol(&self.route, "http")
    }

    /// `true` for a gRPC route (`grpc` or `grpcs`): Kong answers 415 to a non-gRPC
    /// request and 426 to gRPC over HTTP/1 (kong-compat §2.7).
    pub fn is_grpc(&self) -> bool {
        has_protocol(&self.route, "grpc") || has_protocol(&self.route, "grpcs")
    }

    /// `true` when the route accepts `grpcs` but not `grpc`.
    pub fn grpcs_only(&self) -> bool {
        has_protocol(&self.route, "grpcs") && !has_protocol(&self.route, "grpc")
    }

    /// What [`RouteMatch::protocol_mismatch`] would be for a request whose
    /// effective scheme is https or not; the proxy calls this itself when it
    /// trusts an `X-Forwarded-Proto` that differs from the connection.
    pub fn protocol_mismatch(&self, request_is_https: bool) -> Option<ProtocolMismatch> {
        if request_is_https || !self.https_only() {
            return None;
        }
        let code = u16::try_from(self.route.https_redirect_status_code).unwrap_or(426);
        Some(ProtocolMismatch::HttpsRequired {
            redirect_status_code: code,
        })
    }
}

fn has_protocol(route: &Route, protocol: &str) -> bool {
    route.protocols.iter().any(|p| p == protocol)
}

/// Why the matched route refuses the request's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolMismatch {
    /// Plain-http request on an `https`-only route. 426 ⇒ `Please use HTTPS protocol`
    /// with `Connection: Upgrade` / `Upgrade: TLS/1.2, HTTP/1.1`; 301/302/307/308 ⇒
    /// empty body and `Location: https://<host><request uri>`.
    HttpsRequired { redirect_status_code: u16 },
}

/// The capture groups of the regex path that matched (Kong's `uri_captures`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UriCaptures {
    /// Index 0 is the whole match; `None` for a group that did not participate.
    pub unnamed: Vec<Option<String>>,
    /// Named groups in the order they appear in the regex.
    pub named: Vec<(String, Option<String>)>,
}

impl UriCaptures {
    /// The text of the named group `name`, if it participated in the match.
    pub fn by_name(&self, name: &str) -> Option<&str> {
        self.named
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// The outcome of a successful match.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub entry: Arc<RouteEntry>,
    /// Index of the route in the slice given to [`Router::build`].
    pub route_index: usize,
    /// Where [`RouteMatch::matched_path`] finds its text; no allocation and no
    /// reference count touched for prefix routes.
    matched: MatchedPath,
    /// Capture groups when a regex path matched.
    pub captures: Option<Arc<UriCaptures>>,
    /// Set when the route does not accept the request's protocol; the proxy must
    /// answer as described instead of proxying.
    pub protocol_mismatch: Option<ProtocolMismatch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchedPath {
    /// The route has no paths.
    None,
    /// A prefix: this entry of the route's `paths`.
    RoutePath(usize),
    /// A regex: the whole match, `captures.unnamed[0]`.
    WholeCapture,
}

impl RouteMatch {
    /// The part of the path that matched: the prefix text, or the whole regex
    /// match; `None` when the route has no paths. `strip_path` removes this.
    pub fn matched_path(&self) -> Option<&str> {
        match self.matched {
            MatchedPath::None => None,
            MatchedPath::RoutePath(i) => {
                self.entry.route.paths.as_ref()?.get(i).map(String::as_str)
            }
            MatchedPath::WholeCapture => self.captures.as_ref()?.unnamed.first()?.as_deref(),
        }
    }

    /// What `strip_path` removes from the request path: the matched path, or `/`
    /// for a route without paths (Kong then forwards the path minus its leading
    /// `/`, which is the same thing); `None` when `strip_path` is off.
    /// `X-Forwarded-Prefix` is this value when it is not `/`.
    pub fn stripped_prefix(&self) -> Option<&str> {
        if !self.entry.route.strip_path {
            return None;
        }
        Some(self.matched_path().unwrap_or("/"))
    }

    /// The upstream path for this request per kong-compat §2.3 (without query).
    pub fn upstream_path(&self, request_path: &str) -> String {
        let service_path = self.entry.service.as_ref().and_then(|s| s.path.as_deref());
        upstream_path(service_path, request_path, self.stripped_prefix())
    }
}

/// A route that cannot be compiled; `Router::build` reports all of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    #[error("route {route_id}: invalid regex path '{path}': {reason}")]
    InvalidRegex {
        route_id: uuid::Uuid,
        path: String,
        reason: String,
    },
    #[error("route {route_id}: invalid regex '{value}' for header '{header}': {reason}")]
    InvalidHeaderRegex {
        route_id: uuid::Uuid,
        header: String,
        value: String,
        reason: String,
    },
    #[error("route {route_id}: invalid header name '{header}'")]
    InvalidHeaderName {
        route_id: uuid::Uuid,
        header: String,
    },
    #[error("route {route_id}: invalid host '{host}'")]
    InvalidHost { route_id: uuid::Uuid, host: String },
    #[error("route {route_id}: service {service_id} does not exist")]
    UnknownService {
        route_id: uuid::Uuid,
        service_id: uuid::Uuid,
    },
}

/// The compiled routing table of one config version; immutable and cheap to share.
#[derive(Debug, Default)]
pub struct Router {
    /// Indexed like the `routes` slice given to `build`; `None` for left-out routes.
    entries: Vec<Option<Arc<RouteEntry>>>,
    routable: usize,
    groups: Vec<Group>,
    index: HostIndex,
}

impl Router {
    /// Compiles the routes. Routes whose service has `enabled = false`, and
    /// stream routes (tcp/tls/udp only), are left out. Every problem is reported.
    pub fn build(routes: &[Route], services: &[Service]) -> Result<Router, Vec<RouterError>> {
        let services_by_id: std::collections::HashMap<uuid::Uuid, &Service> =
            services.iter().map(|s| (s.id, s)).collect();
        let mut errors = Vec::new();
        let mut entries = Vec::with_capacity(routes.len());
        let mut groups = Vec::new();
        for (route_index, route) in routes.iter().enumerate() {
            let service = match route.service {
                None => None,
                Some(fk) => match services_by_id.get(&fk.id) {
                    Some(service) => Some((*service).clone()),
                    None => {
                        errors.push(RouterError::UnknownService {
                            route_id: route.id,
                            service_id: fk.id,
                        });
                        entries.push(None);
                        continue;
                    }
                },
            };
            if service.as_ref().is_some_and(|s| !s.enabled) || !compile::is_http_route(route) {
                entries.push(None);
                continue;
            }
            let entry = Arc::new(RouteEntry {
                route: route.clone(),
                service,
            });
            match compile::compile_route(&entry, route_index) {
                Ok(route_groups) => groups.extend(route_groups),
                Err(route_errors) => errors.extend(route_errors),
            }
            entries.push(Some(entry));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let index = HostIndex::build(&groups);
        let routable = entries.iter().flatten().count();
        Ok(Router {
            entries,
            routable,
            groups,
            index,
        })
    }

    /// Number of routes in the table (left-out routes not counted).
    pub fn len(&self) -> usize {
        self.routable
    }

    pub fn is_empty(&self) -> bool {
        self.routable == 0
    }

    /// The compiled entry of `routes[route_index]`, if it was put in the table.
    pub fn entry(&self, route_index: usize) -> Option<&Arc<RouteEntry>> {
        self.entries.get(route_index).and_then(Option::as_ref)
    }

    /// The best route for the request, by Kong's priority rules.
    pub fn find(&self, req: &RequestInfo<'_>) -> Option<RouteMatch> {
        let mut host_buf = [0u8; compile::HOST_BUF_LEN];
        let facts = RequestFacts::new(req, &mut host_buf);
        let best = self.index.best(&self.groups, req, &facts)?;
        let group = self.groups.get(best.group)?;
        let (matched, captures) = match (&group.paths, best.path) {
            (GroupPaths::Prefixes(prefixes), PathMatch::Prefix(i)) => {
                let route_path = prefixes.get(i)?.route_path;
                (MatchedPath::RoutePath(route_path), None)
            }
            (GroupPaths::Regexes(regexes), PathMatch::Regex(i)) => {
                let captures = compile::captures(regexes.get(i)?, req.path)?;
                (MatchedPath::WholeCapture, Some(Arc::new(captures)))
            }
            _ => (MatchedPath::None, None),
        };
        Some(RouteMatch {
            entry: group.entry.clone(),
            route_index: group.route_index,
            matched,
            captures,
            protocol_mismatch: group.https_only_status.filter(|_| !req.https).map(
                |redirect_status_code| ProtocolMismatch::HttpsRequired {
                    redirect_status_code,
                },
            ),
        })
    }
}
