//! Turns one route into its match groups: the predicates of each group
//! precompiled (lowercased hosts, header names, regexes) and Kong's priority.
//!
//! Kong (`kong/router/transform.lua`) splits a route with several paths into one
//! "virtual route" per distinct prefix length plus one for all its regex paths,
//! each with its own priority and a UUIDv5 id; a group here is one such virtual
//! route (a route with zero or one path is a single group keeping its own id).

use super::{RequestInfo, RouteEntry, RouterError, UriCaptures};
use crate::Route;
use http::HeaderName;
use regex::{Regex, RegexBuilder};
use std::borrow::Cow;
use std::sync::Arc;
use uuid::Uuid;

/// Kong's namespace for the ids of split routes (`uuid.factory_v5` in
/// `kong/router/transform.lua`); they only matter as the final tie-breaker.
const SPLIT_ROUTE_NAMESPACE: Uuid = Uuid::from_u128(0x7f145bf9_0dce_4f91_98eb_debbce4b9f6b);

/// Hosts up to this length are lowercased on the stack; longer ones allocate.
pub(super) const HOST_BUF_LEN: usize = 256;

const MAX_HEADER_COUNT: usize = 255;

/// `true` for routes the HTTP router serves; stream-only routes
/// (tcp/tls/udp/tls_passthrough) belong to a stream proxy.
pub(super) fn is_http_route(route: &Route) -> bool {
    route.protocols.is_empty()
        || route
            .protocols
            .iter()
            .any(|p| matches!(p.as_str(), "http" | "https" | "grpc" | "grpcs"))
}

/// One virtual route: everything a request must satisfy, and its rank.
#[derive(Debug)]
pub(super) struct Group {
    pub entry: Arc<RouteEntry>,
    pub route_index: usize,
    pub priority: Priority,
    methods: Option<Vec<Box<str>>>,
    pub hosts: Option<Vec<HostPattern>>,
    snis: Option<Vec<NamePattern>>,
    headers: Vec<HeaderRule>,
    pub paths: GroupPaths,
    /// `RouteEntry::https_only` and its redirect code, read once at build time
    /// so that `find` does not walk the route's protocol strings.
    pub https_only_status: Option<u16>,
}

#[derive(Debug)]
pub(super) enum GroupPaths {
    Any,
    /// All of the same length (that is what made them one group).
    Prefixes(Vec<PrefixPath>),
    Regexes(Vec<Regex>),
}

#[derive(Debug)]
pub(super) struct PrefixPath {
    pub text: Box<str>,
    /// Its index in the route's `paths`.
    pub route_path: usize,
}

/// Kong's priority as a total order: higher wins. `rank` holds, from the most
/// significant bits: match weight, plain-host bit, header count, regex bit,
/// regex_priority (regex groups only), prefix length; `id` breaks ties (larger
/// UUID wins, as the ATC router iterates `(priority, uuid)` descending).
///
/// Kong packs all of it into one u64 where a negative or > 2^32 regex_priority
/// spills into the higher fields; here regex_priority keeps its full signed
/// range in its own 64 bits, which orders every realistic value like Kong does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Priority {
    rank: u128,
    id: u128,
}

impl Priority {
    #[cfg(test)]
    pub(super) const MIN: Priority = Priority { rank: 0, id: 0 };
}

/// A request name pattern, stored lowercased (hosts and SNIs compare
/// case-insensitively, see [`RequestFacts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NamePattern {
    Exact(Box<str>),
    /// `*.example.com` stored as `.example.com`: the name must end with it.
    Suffix(Box<str>),
    /// `example.*` stored as `example.`: the name must start with it.
    Prefix(Box<str>),
}

impl NamePattern {
    fn parse(raw: &str) -> NamePattern {
        let lower = raw.to_ascii_lowercase();
        if let Some(suffix) = lower.strip_prefix('*') {
            NamePattern::Suffix(suffix.into())
        } else if let Some(prefix) = lower.strip_suffix('*') {
            NamePattern::Prefix(prefix.into())
        } else {
            NamePattern::Exact(lower.into())
        }
    }

    pub(super) fn matches(&self, name: &str) -> bool {
        let name = name.as_bytes();
        match self {
            NamePattern::Exact(exact) => name.eq_ignore_ascii_case(exact.as_bytes()),
            NamePattern::Suffix(suffix) => name
                .len()
                .checked_sub(suffix.len())
                .and_then(|start| name.get(start..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes())),
            NamePattern::Prefix(prefix) => name
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes())),
        }
    }
}

/// A `hosts` entry; with a port it also requires the request's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HostPattern {
    pub name: NamePattern,
    port: Option<u16>,
}

impl HostPattern {
    pub(super) fn has_port(&self) -> bool {
        self.port.is_some()
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        self.port.is_none_or(|wanted| wanted == port) && self.name.matches(host)
    }
}

/// One `headers` entry. An empty value list (which Kong's schema does not
/// admit) matches no request.
#[derive(Debug, Clone)]
struct HeaderRule {
    name: HeaderName,
    values: Vec<HeaderValueRule>,
}

#[derive(Debug, Clone)]
enum HeaderValueRule {
    /// Lowercased; compared ASCII-case-insensitively.
    Exact(Box<str>),
    /// From `~*re`: case-insensitive and unanchored, like the ATC `~` operator.
    /// Kong gets case-insensitivity by lowercasing both the value and the
    /// pattern text, which also turns `\D`, `\W`, `\S` into `\d`, `\w`, `\s`;
    /// Tollgate compiles the pattern as written with the case-insensitive flag.
    Regex(Regex),
}

impl HeaderRule {
    /// AND across names is the caller's; here: any occurrence of the header,
    /// any configured value.
    fn matches(&self, headers: &http::HeaderMap) -> bool {
        headers.get_all(&self.name).iter().any(|value| {
            let value = value.as_bytes();
            self.values.iter().any(|rule| match rule {
                HeaderValueRule::Exact(wanted) => value.eq_ignore_ascii_case(wanted.as_bytes()),
                HeaderValueRule::Regex(re) => {
                    std::str::from_utf8(value).is_ok_and(|value| re.is_match(value))
                }
            })
        })
    }
}

/// The request facts that every group needs, computed once per request.
///
/// Host case: Kong's `traditional_compatible` router hands the Host header to
/// the ATC router as received (kong-compat §12 leaves its case sensitivity
/// undetermined). DNS names are case-insensitive and nginx's `$host` is
/// lowercased, so Tollgate matches hosts and SNIs case-insensitively.
pub(super) struct RequestFacts<'a> {
    /// The Host without its port, lowercased.
    pub host: Option<Cow<'a, str>>,
    /// The Host header's port, else the listener's.
    pub port: u16,
}

impl<'a> RequestFacts<'a> {
    pub(super) fn new(req: &RequestInfo<'a>, buf: &'a mut [u8; HOST_BUF_LEN]) -> RequestFacts<'a> {
        let (host, port) = match req.host {
            Some(raw) => {
                let (name, port) = split_host_port(raw);
                (Some(lowercase_into(name, buf)), port)
            }
            None => (None, None),
        };
        RequestFacts {
            host,
            port: port.unwrap_or(req.listener_port),
        }
    }
}

fn lowercase_into<'a>(name: &'a str, buf: &'a mut [u8; HOST_BUF_LEN]) -> Cow<'a, str> {
    if !name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Borrowed(name);
    }
    if let Some(dst) = buf.get_mut(..name.len()) {
        dst.copy_from_slice(name.as_bytes());
        dst.make_ascii_lowercase();
        // ASCII-only edits keep UTF-8 valid, so this cannot fail.
        if let Ok(lower) = std::str::from_utf8(dst) {
            return Cow::Borrowed(lower);
        }
    }
    Cow::Owned(name.to_ascii_lowercase())
}

/// `example.com:8000` → (`example.com`, 8000); `[::1]:8000` → (`[::1]`, 8000).
/// A suffix that is not a port leaves the whole value as the host, as Kong's
/// `split_host_port` does.
pub(super) fn split_host_port(raw: &str) -> (&str, Option<u16>) {
    let colon = if raw.starts_with('[') {
        raw.find(']')
            .map(|end| end + 1)
            .filter(|&i| raw[i..].starts_with(':'))
    } else {
        raw.find(':')
    };
    let Some(colon) = colon else {
        return (raw, None);
    };
    let digits = &raw[colon + 1..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return (raw, None);
    }
    match digits.parse::<u16>() {
        Ok(port) => (&raw[..colon], Some(port)),
        Err(_) => (raw, None),
    }
}

impl Group {
    /// Every predicate except the path, which the index has already settled
    /// (and the host, when `host_checked`: the index bucket proved it).
    pub(super) fn matches_request(
        &self,
        req: &RequestInfo<'_>,
        facts: &RequestFacts<'_>,
        host_checked: bool,
    ) -> bool {
        if let Some(methods) = &self.methods {
            if !methods.iter().any(|m| &**m == req.method) {
                return false;
            }
        }
        if let Some(hosts) = self.hosts.as_ref().filter(|_| !host_checked) {
            let Some(host) = facts.host.as_deref() else {
                return false;
            };
            if !hosts.iter().any(|p| p.matches(host, facts.port)) {
                return false;
            }
        }
        // SNIs are ignored for plain-http requests (Kong #6425).
        if req.https {
            if let Some(snis) = &self.snis {
                let Some(sni) = req.sni else {
                    return false;
                };
                if !snis.iter().any(|p| p.matches(sni)) {
                    return false;
                }
            }
        }
        self.headers.iter().all(|rule| rule.matches(req.headers))
    }
}

fn non_empty<T>(field: &Option<Vec<T>>) -> Option<&[T]> {
    field.as_deref().filter(|v| !v.is_empty())
}

/// Compiles one route into its groups, reporting every invalid part.
pub(super) fn compile_route(
    entry: &Arc<RouteEntry>,
    route_index: usize,
) -> Result<Vec<Group>, Vec<RouterError>> {
    let route = &entry.route;
    let mut errors = Vec::new();

    let methods = non_empty(&route.methods).map(|m| m.iter().map(|m| m.as_str().into()).collect());

    let hosts: Option<Vec<HostPattern>> = non_empty(&route.hosts).map(|hosts| {
        hosts
            .iter()
            .filter_map(|raw| {
                let (name, port) = split_host_port(raw);
                if name.is_empty() || name == "*" {
                    errors.push(RouterError::InvalidHost {
                        route_id: route.id,
                        host: raw.clone(),
                    });
                    return None;
                }
                Some(HostPattern {
                    name: NamePattern::parse(name),
                    port,
                })
            })
            .collect()
    });

    let snis: Option<Vec<NamePattern>> = non_empty(&route.snis).map(|snis| {
        snis.iter()
            .map(|sni| {
                // A trailing dot of an FQDN is not used for routing.
                let sni = if sni.len() > 1 {
                    sni.strip_suffix('.').unwrap_or(sni)
                } else {
                    sni
                };
                NamePattern::parse(sni)
            })
            .collect()
    });

    let mut headers = Vec::new();
    let header_map = route.headers.as_ref().filter(|h| !h.is_empty());
    for (name, values) in header_map.into_iter().flatten() {
        let Ok(header_name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) else {
            errors.push(RouterError::InvalidHeaderName {
                route_id: route.id,
                header: name.clone(),
            });
            continue;
        };
        let mut rules = Vec::with_capacity(values.len());
        for value in values {
            match value.strip_prefix("~*") {
                Some(pattern) => match RegexBuilder::new(pattern).case_insensitive(true).build() {
                    Ok(re) => rules.push(HeaderValueRule::Regex(re)),
                    Err(e) => errors.push(RouterError::InvalidHeaderRegex {
                        route_id: route.id,
                        header: name.clone(),
                        value: value.clone(),
                        reason: e.to_string(),
                    }),
                },
                None => rules.push(HeaderValueRule::Exact(value.to_ascii_lowercase().into())),
            }
        }
        headers.push(HeaderRule {
            name: header_name,
            values: rules,
        });
    }

    let paths = non_empty(&route.paths).unwrap_or(&[]);
    let mut regexes = Vec::new();
    // (length, prefixes) in order of first appearance.
    let mut prefix_groups: Vec<(usize, Vec<PrefixPath>)> = Vec::new();
    for (route_path, path) in paths.iter().enumerate() {
        if let Some(pattern) = path.strip_prefix('~') {
            match Regex::new(&kong_path_regex(pattern)) {
                Ok(re) => regexes.push(re),
                Err(e) => errors.push(RouterError::InvalidRegex {
                    route_id: route.id,
                    path: path.clone(),
                    reason: e.to_string(),
                }),
            }
        } else {
            let prefix = PrefixPath {
                text: path.as_str().into(),
                route_path,
            };
            match prefix_groups.iter_mut().find(|(len, _)| *len == path.len()) {
                Some((_, group)) => group.push(prefix),
                None => prefix_groups.push((path.len(), vec![prefix])),
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let https_only_status = entry.protocol_mismatch(false).map(
        |super::ProtocolMismatch::HttpsRequired {
             redirect_status_code,
         }| redirect_status_code,
    );

    let split = paths.len() > 1;
    let base = RankParts::of(route, hosts.as_deref(), header_map.map_or(0, |h| h.len()));
    let group_id = |key: &dyn std::fmt::Display| {
        if split {
            Uuid::new_v5(
                &SPLIT_ROUTE_NAMESPACE,
                format!("{}#{}", route.id, key).as_bytes(),
            )
        } else {
            route.id
        }
    };

    let mut path_groups: Vec<(GroupPaths, Priority)> = Vec::new();
    if paths.is_empty() {
        path_groups.push((GroupPaths::Any, base.priority(false, 0, route.id)));
    }
    for (len, prefixes) in prefix_groups {
        let priority = base.priority(true, len, group_id(&len));
        path_groups.push((GroupPaths::Prefixes(prefixes), priority));
    }
    if !regexes.is_empty() {
        let priority = base.priority_regex(route.regex_priority, group_id(&true));
        path_groups.push((GroupPaths::Regexes(regexes), priority));
    }

    Ok(path_groups
        .into_iter()
        .map(|(paths, priority)| Group {
            entry: entry.clone(),
            route_index,
            priority,
            methods: methods.clone(),
            hosts: hosts.clone(),
            snis: snis.clone(),
            headers: headers.clone(),
            paths,
            https_only_status,
        })
        .collect())
}

/// Kong's translation of a `~` path: anchored at the start by prepending `^`
/// (textually, so a top-level `a|b` leaves `b` unanchored, as in Kong), PCRE
/// named groups `(?<n>` spelled `(?P<n>`.
fn kong_path_regex(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    out.push('^');
    let mut rest = pattern;
    while let Some(at) = rest.find("(?<") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        if after.starts_with('=') || after.starts_with('!') {
            out.push_str("(?<");
        } else {
            out.push_str("(?P<");
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The fields of the priority shared by all groups of a route.
struct RankParts {
    weight_without_paths: u128,
    plain_host: bool,
    header_count: u128,
}

impl RankParts {
    fn of(route: &Route, hosts: Option<&[HostPattern]>, header_count: usize) -> RankParts {
        let mut weight = 0u128;
        for set in [
            route.sources.as_ref().is_some_and(|v| !v.is_empty()),
            route.destinations.as_ref().is_some_and(|v| !v.is_empty()),
            non_empty(&route.methods).is_some(),
            hosts.is_some_and(|h| !h.is_empty()),
            header_count > 0,
            non_empty(&route.snis).is_some(),
        ] {
            weight += u128::from(set);
        }
        let plain_host = hosts.is_some_and(|hosts| {
            !hosts.is_empty()
                && hosts
                    .iter()
                    .all(|h| matches!(h.name, NamePattern::Exact(_)))
        });
        RankParts {
            weight_without_paths: weight,
            plain_host,
            header_count: header_count.min(MAX_HEADER_COUNT) as u128,
        }
    }

    fn rank(&self, has_paths: bool, regex: bool, regex_priority: i64, path_len: usize) -> u128 {
        let weight = self.weight_without_paths + u128::from(has_paths);
        // Flip the sign bit so that i64 order becomes u64 order.
        let regex_priority = u128::from((regex_priority as u64) ^ (1 << 63));
        let path_len = u128::from(u32::try_from(path_len).unwrap_or(u32::MAX));
        (weight << 120)
            | (u128::from(self.plain_host) << 119)
            | (self.header_count << 104)
            | (u128::from(regex) << 100)
            | (regex_priority << 32)
            | path_len
    }

    fn priority(&self, has_paths: bool, path_len: usize, id: Uuid) -> Priority {
        Priority {
            rank: self.rank(has_paths, false, 0, path_len),
            id: id.as_u128(),
        }
    }

    fn priority_regex(&self, regex_priority: i64, id: Uuid) -> Priority {
        Priority {
            rank: self.rank(true, true, regex_priority, 0),
            id: id.as_u128(),
        }
    }
}

/// The capture groups of `re` on `path` (Kong's `uri_captures`).
pub(super) fn captures(re: &Regex, path: &str) -> Option<UriCaptures> {
    let caps = re.captures(path)?;
    let unnamed = caps
        .iter()
        .map(|m| m.map(|m| m.as_str().to_owned()))
        .collect();
    let named = re
        .capture_names()
        .enumerate()
        .filter_map(|(i, name)| {
            name.map(|name| (name.to_owned(), caps.get(i).map(|m| m.as_str().to_owned())))
        })
        .collect();
    Some(UriCaptures { unnamed, named })
}
