//! Reusable field definitions and value checks (Kong's `typedefs`): ids,
//! timestamps, names, tags, hosts, ports, paths, protocols, IPs and CIDRs.

use super::engine::{Auto, Field, Rule};
use ipnet::IpNet;
use serde_json::Value;
use std::net::{IpAddr, Ipv6Addr};

/// Every protocol Kong knows, sorted as its messages list them.
pub(crate) const PROTOCOLS: [&str; 8] = [
    "grpc",
    "grpcs",
    "http",
    "https",
    "tcp",
    "tls",
    "tls_passthrough",
    "udp",
];

/// The protocols of Kong's `http` subsystem, sorted.
pub(crate) const HTTP_PROTOCOLS: [&str; 4] = ["grpc", "grpcs", "http", "https"];

pub(crate) fn strings(values: &[&str]) -> Vec<Value> {
    values.iter().map(|v| Value::from(*v)).collect()
}

pub(crate) fn id() -> Field {
    Field::string("id").rule(Rule::Uuid).auto(Auto::Uuid)
}

/// An optional Unix timestamp in seconds, never generated.
pub(crate) fn timestamp_field(name: &'static str) -> Field {
    Field::integer(name).rule(Rule::Timestamp)
}

pub(crate) fn timestamp(name: &'static str) -> Field {
    Field::integer(name)
        .rule(Rule::Timestamp)
        .auto(Auto::Timestamp)
}

/// Longest name, username, custom id, instance name or credential key, in
/// bytes. These are unique columns: PostgreSQL refuses a btree index entry
/// over about 2,700 bytes, so an unbounded value would fail in the database
/// (as a 500) instead of in validation. Kong sets no limit.
pub(crate) const MAX_KEY_LEN: usize = 512;
/// Longest tag, in bytes (Kong sets no limit; tags are matched in the store).
pub(crate) const MAX_TAG_LEN: usize = 512;
/// Longest SNI or host name: a DNS name has at most 253 characters.
pub(crate) const MAX_HOST_LEN: usize = 253;

/// A unique string column of the store: a name, username, custom id or key.
pub(crate) fn unique_string(name: &'static str) -> Field {
    Field::string(name).rule(Rule::LenMax(MAX_KEY_LEN))
}

pub(crate) fn utf8_name(name: &'static str) -> Field {
    unique_string(name).rule(Rule::Custom(check_utf8_name))
}

pub(crate) fn tags() -> Field {
    Field::set(
        "tags",
        Field::string("")
            .rule(Rule::LenMax(MAX_TAG_LEN))
            .rule(Rule::Custom(check_tag)),
    )
}

pub(crate) fn protocol(name: &'static str) -> Field {
    Field::string(name).rule(Rule::OneOf(strings(&PROTOCOLS)))
}

/// A plugin's `protocols` set: elements from `allowed`, default `default`.
pub(crate) fn protocols(allowed: &[&str], default: &[&str]) -> Field {
    Field::set(
        "protocols",
        Field::string("").rule(Rule::OneOf(strings(allowed))),
    )
    .required()
    .default(Value::Array(strings(default)))
}

pub(crate) fn host(name: &'static str) -> Field {
    Field::string(name).rule(Rule::Custom(check_host))
}

pub(crate) fn port(name: &'static str) -> Field {
    Field::integer(name).rule(Rule::Between(0.0, 65535.0))
}

pub(crate) fn path(name: &'static str) -> Field {
    Field::string(name)
        .rule(Rule::StartsWith("/"))
        .rule(Rule::Pattern(check_no_empty_segments))
        .rule(Rule::Custom(check_path))
}

/// Kong's `timeout`: milliseconds, 0..2^31-2.
pub(crate) fn timeout(name: &'static str) -> Field {
    Field::integer(name).rule(Rule::Between(0.0, 2_147_483_646.0))
}

pub(crate) fn header_name(name: &'static str) -> Field {
    Field::string(name).rule(Rule::Custom(check_header_name))
}

pub(crate) fn sni(name: &'static str) -> Field {
    Field::string(name)
        .rule(Rule::LenMax(MAX_HOST_LEN))
        .rule(Rule::Custom(check_sni))
}

pub(crate) fn ip_or_cidr(name: &'static str) -> Field {
    Field::string(name).rule(Rule::Custom(check_ip_or_cidr))
}

/// Kong's `lua_code`: a map of field name → Lua expression. Tollgate stores
/// it but runs no Lua.
pub(crate) fn lua_code(name: &'static str) -> Field {
    Field::map(
        name,
        Field::string("").rule(Rule::LenMin(1)),
        Field::string("").rule(Rule::LenMin(1)),
    )
}

/// Kong's `no_consumer`: the plugin cannot be scoped to a consumer.
pub(crate) fn no_consumer() -> Field {
    Field::foreign("consumer", "consumers").rule(Rule::Eq(Value::Null))
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Checks

pub(crate) fn check_utf8_name(value: &Value) -> Result<(), String> {
    let name = text(value);
    let ok = name.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'.' | b'-' | b'_' | b'~')
            || (128..=244).contains(&b)
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid value '{name}': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
        ))
    }
}

pub(crate) fn check_tag(value: &Value) -> Result<(), String> {
    let tag = text(value);
    let ok = tag.bytes().all(|b| {
        b == b' ' || ((33..=126).contains(&b) && b != b',' && b != b'/') || (128..=244).contains(&b)
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid tag '{tag}': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
        ))
    }
}

pub(crate) fn check_header_name(value: &Value) -> Result<(), String> {
    let name = text(value);
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(format!(
            "bad header name '{name}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
        ))
    }
}

pub(crate) fn check_no_empty_segments(value: &Value) -> Result<(), String> {
    if text(value).contains("//") {
        Err("must not have empty segments".into())
    } else {
        Ok(())
    }
}

/// Why [`rfc3986_path`] rejected a path: Kong treats the two differently for routes.
pub(crate) enum PathProblem {
    Characters(String),
    Percent(String),
}

pub(crate) fn rfc3986_path(path: &str) -> Result<(), PathProblem> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_~/%:@!$&'()*+,;=".contains(c);
    if !path.starts_with('/') || !path.chars().all(allowed) {
        return Err(PathProblem::Characters(format!(
            "invalid path: '{path}' (characters outside of the reserved list of RFC 3986 found)"
        )));
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let valid = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !valid {
                let end = (i + 3).min(bytes.len());
                let bad = String::from_utf8_lossy(&bytes[i..end]);
                return Err(PathProblem::Percent(format!(
                    "invalid url-encoded value: '{bad}'"
                )));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

pub(crate) fn check_path(value: &Value) -> Result<(), String> {
    match rfc3986_path(text(value)) {
        Ok(()) => Ok(()),
        Err(PathProblem::Characters(m) | PathProblem::Percent(m)) => Err(m),
    }
}

/// What kind of address a host string is, after Kong's `normalize_ip`.
#[derive(Debug, PartialEq)]
pub(crate) enum HostKind {
    Ipv4,
    Ipv6,
    Name,
}

/// Kong's `normalize_ip`: classifies `address` and splits an optional port.
/// Errors carry Kong's texts (`invalid port number` is special to callers).
pub(crate) fn normalize_host(address: &str) -> Result<(HostKind, Option<u32>), String> {
    let colons = address.matches(':').count();
    let remainder: String = address.chars().filter(|c| *c != ':').collect();
    if colons > 1 {
        return normalize_ipv6(address);
    }
    if !remainder.is_empty() && remainder.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return normalize_ipv4(address);
    }
    normalize_name(address)
}

fn parse_port(port: &str) -> Result<u32, String> {
    match port.parse::<u32>() {
        Ok(p) if p <= 65535 => Ok(p),
        _ => Err("invalid port number".into()),
    }
}

fn normalize_ipv4(address: &str) -> Result<(HostKind, Option<u32>), String> {
    let invalid = || format!("invalid ipv4 address: {address}");
    let (ip, port) = match address.split_once(':') {
        Some((ip, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (ip, Some(port))
        }
        Some(_) => return Err(invalid()),
        None => (address, None),
    };
    let octets: Vec<&str> = ip.split('.').collect();
    let valid = octets.len() == 4
        && octets.iter().all(|o| {
            (1..=3).contains(&o.len())
                && o.bytes().all(|b| b.is_ascii_digit())
                && o.parse::<u32>().is_ok_and(|n| n <= 255)
        });
    if !valid {
        return Err(invalid());
    }
    let port = port.map(parse_port).transpose()?;
    Ok((HostKind::Ipv4, port))
}

fn normalize_ipv6(address: &str) -> Result<(HostKind, Option<u32>), String> {
    let (ip, port) = if let Some(rest) = address.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return Err(format!("invalid ipv6 address: {address}"));
        };
        if after.is_empty() {
            (ip, None)
        } else {
            match after.strip_prefix(':') {
                Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => (ip, Some(parse_port(p)?)),
                _ => return Err("invalid ipv6 address".into()),
            }
        }
    } else {
        (address, None)
    };
    if ip.parse::<Ipv6Addr>().is_err() {
        return Err(format!("invalid ipv6 address: {address}"));
    }
    Ok((HostKind::Ipv6, port))
}

fn normalize_name(address: &str) -> Result<(HostKind, Option<u32>), String> {
    let invalid = || format!("invalid hostname: {address}");
    let mut name = address;
    let mut port = None;
    if let Some((head, tail)) = address.rsplit_once(':') {
        if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
            name = head;
            port = Some(parse_port(tail)?);
        }
    }
    let chars_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !chars_ok {
        return Err(invalid());
    }
    let segments: Vec<&str> = name.split('.').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        if segment.ends_with('-') || (segment.is_empty() && i != last) {
            return Err(invalid());
        }
    }
    Ok((HostKind::Name, port))
}

/// Services' `host`: a name or IP without a port.
pub(crate) fn check_host(value: &Value) -> Result<(), String> {
    let host = text(value);
    match normalize_host(host) {
        Ok((_, None)) => Ok(()),
        Ok((_, Some(_))) => Err("must not have a port".into()),
        Err(e) if e == "invalid port number" => Err("must not have a port".into()),
        Err(_) => Err(format!("invalid value: {host}")),
    }
}

/// Kong's `sni`: a host name (not an IP) without a port.
pub(crate) fn check_sni(value: &Value) -> Result<(), String> {
    let host = text(value);
    match normalize_host(host) {
        Ok((HostKind::Name, None)) => Ok(()),
        Ok((HostKind::Name, Some(_))) => Err("must not have a port".into()),
        Ok(_) => Err("must not be an IP".into()),
        Err(e) if e == "invalid port number" => Err("must not have a port".into()),
        Err(_) => Err(format!("invalid value: {host}")),
    }
}

/// Kong's `wildcard_host` (SNI names): at most one `*`, first or last character.
pub(crate) fn check_wildcard_host(value: &Value) -> Result<(), String> {
    let host = text(value);
    let mut candidate = host.to_string();
    if let Some(idx) = host.find('*') {
        if idx != 0 && idx != host.len() - 1 {
            return Err("wildcard must be leftmost or rightmost character".into());
        }
        if host.matches('*').count() > 1 {
            return Err("only one wildcard must be specified".into());
        }
        candidate = host.replace('*', "wildcard");
    }
    match normalize_host(&candidate) {
        Ok((HostKind::Name, None)) => Ok(()),
        Ok((HostKind::Name, Some(_))) => Err("must not have a port".into()),
        Ok(_) => Err("must not be an IP".into()),
        Err(e) if e == "invalid port number" => Err("must not have a port".into()),
        Err(_) => Err(format!("invalid value: {candidate}")),
    }
}

/// Parses an IPv4/IPv6 address or CIDR range; a bare address is a /32 or /128.
pub fn parse_ip_or_cidr(text: &str) -> Option<IpNet> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net);
    }
    text.parse::<IpAddr>().ok().map(IpNet::from)
}

pub(crate) fn check_ip_or_cidr(value: &Value) -> Result<(), String> {
    let ip = text(value);
    match parse_ip_or_cidr(ip) {
        Some(_) => Ok(()),
        None => Err(format!("invalid ip or cidr range: '{ip}'")),
    }
}
