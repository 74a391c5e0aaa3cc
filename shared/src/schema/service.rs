//! The `services` schema, with the `url` input shorthand.

use super::engine::{Check, Field, Match, Record, Rule, Shorthand};
use super::typedefs;
use serde_json::{json, Map, Value};

pub(crate) fn schema() -> Record {
    let https_only = |field: &'static str| Check::Conditional {
        if_field: "protocol",
        if_match: Match::NotOneOf(vec!["https", "tls"]),
        then_field: field,
        then_required: false,
        then_rules: vec![Rule::Eq(Value::Null)],
        then_err: None,
    };
    Record::new(vec![
        typedefs::id(),
        typedefs::timestamp("created_at"),
        typedefs::timestamp("updated_at"),
        typedefs::utf8_name("name"),
        Field::integer("retries")
            .default_on_null(json!(5))
            .rule(Rule::Between(0.0, 32767.0)),
        typedefs::protocol("protocol")
            .required()
            .default(json!("http")),
        typedefs::host("host").required(),
        typedefs::port("port").required().default(json!(80)),
        typedefs::path("path"),
        nonzero_timeout("connect_timeout"),
        nonzero_timeout("write_timeout"),
        nonzero_timeout("read_timeout"),
        typedefs::tags(),
        Field::foreign("client_certificate", "certificates"),
        Field::boolean("tls_verify"),
        Field::integer("tls_verify_depth").rule(Rule::Between(0.0, 64.0)),
        Field::array("ca_certificates", Field::string("").rule(Rule::Uuid)),
        Field::boolean("enabled").required().default(json!(true)),
    ])
    .checks(vec![
        Check::Conditional {
            if_field: "protocol",
            if_match: Match::OneOf(vec!["tcp", "tls", "udp", "grpc", "grpcs"]),
            then_field: "path",
            then_required: false,
            then_rules: vec![Rule::Eq(Value::Null)],
            then_err: None,
        },
        https_only("client_certificate"),
        https_only("tls_verify"),
        https_only("tls_verify_depth"),
        https_only("ca_certificates"),
    ])
    .shorthands(vec![Shorthand {
        field: Field::string("url"),
        expand: expand_url,
        deprecated: false,
        mirror: None,
    }])
}

fn nonzero_timeout(name: &'static str) -> Field {
    Field::integer(name)
        .default_on_null(json!(60000))
        .rule(Rule::Between(1.0, 2_147_483_646.0))
}

/// The pieces of a URL as LuaSocket's `url.parse` splits them.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct UrlParts {
    pub scheme: Option<String>,
    pub userinfo: Option<String>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub path: Option<String>,
}

/// Splits a URL the way LuaSocket does (Kong relies on its quirks: no
/// validation, the query and fragment are dropped, `host:port` without a
/// scheme reads `host` as the scheme).
pub(crate) fn parse_url(url: &str) -> UrlParts {
    let mut parts = UrlParts::default();
    let mut rest = url;
    if let Some((before, _)) = rest.split_once('#') {
        rest = before;
    }
    let scheme_end = rest.find(':').filter(|&i| {
        let candidate = &rest[..i];
        candidate
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && candidate
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if let Some(i) = scheme_end {
        parts.scheme = Some(rest[..i].to_string());
        rest = &rest[i + 1..];
    }
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find('/').unwrap_or(after.len());
        let mut authority = &after[..end];
        rest = &after[end..];
        if let Some((user, host)) = authority.split_once('@') {
            parts.userinfo = Some(user.to_string());
            authority = host;
        }
        let mut host = authority;
        if let Some(i) = authority.rfind(':') {
            let port = &authority[i + 1..];
            if !port.contains(']') {
                if !port.is_empty() {
                    parts.port = Some(port.to_string());
                }
                host = &authority[..i];
            }
        }
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if !host.is_empty() {
            parts.host = Some(host.to_string());
        }
    }
    if let Some((before, _)) = rest.split_once('?') {
        rest = before;
    }
    if let Some((before, _)) = rest.split_once(';') {
        rest = before;
    }
    if !rest.is_empty() {
        parts.path = Some(rest.to_string());
    }
    parts
}

fn expand_url(value: &Value) -> Map<String, Value> {
    let parts = parse_url(value.as_str().unwrap_or_default());
    let numeric_port = parts.port.as_deref().and_then(|p| p.parse::<i64>().ok());
    let implied = match numeric_port {
        Some(80) => Some("http"),
        Some(443) => Some("https"),
        _ => None,
    };
    let protocol = parts
        .scheme
        .clone()
        .or_else(|| implied.map(str::to_string))
        .unwrap_or_else(|| "http".to_string());
    let port = match (numeric_port, &parts.port) {
        (Some(p), _) => json!(p),
        (None, Some(raw)) => json!(raw),
        (None, None) if protocol == "https" => json!(443),
        (None, None) => json!(80),
    };
    let mut out = Map::new();
    out.insert("protocol".into(), Value::String(protocol));
    out.insert(
        "host".into(),
        parts.host.map(Value::String).unwrap_or(Value::Null),
    );
    out.insert("port".into(), port);
    out.insert(
        "path".into(),
        parts.path.map(Value::String).unwrap_or(Value::Null),
    );
    out
}
