//! The `routes` schema (traditional_compatible router), with Kong's
//! per-protocol subschemas and path rules.

use super::engine::{Check, Field, Match, Record, Rule, Subschema, Subschemas};
use super::typedefs::{self, rfc3986_path, strings, PathProblem, PROTOCOLS};
use serde_json::{json, Value};
use std::sync::LazyLock;

pub(crate) fn schema() -> Record {
    Record::new(vec![
        typedefs::id(),
        typedefs::timestamp("created_at"),
        typedefs::timestamp("updated_at"),
        typedefs::utf8_name("name"),
        protocols(),
        methods(),
        hosts(),
        paths(),
        headers(),
        Field::integer("https_redirect_status_code")
            .required()
            .default(json!(426))
            .rule(Rule::OneOf(vec![
                json!(426),
                json!(301),
                json!(302),
                json!(307),
                json!(308),
            ])),
        Field::integer("regex_priority").default_on_null(json!(0)),
        Field::boolean("strip_path").required().default(json!(true)),
        Field::string("path_handling")
            .default_on_null(json!("v0"))
            .rule(Rule::OneOf(strings(&["v0", "v1"]))),
        Field::boolean("preserve_host")
            .required()
            .default(json!(false)),
        Field::boolean("request_buffering")
            .required()
            .default(json!(true)),
        Field::boolean("response_buffering")
            .required()
            .default(json!(true)),
        Field::set("snis", typedefs::sni("")),
        endpoints("sources"),
        endpoints("destinations"),
        typedefs::tags(),
        Field::foreign("service", "services"),
    ])
    .checks(vec![Check::Conditional {
        if_field: "protocols",
        if_match: Match::ElementsNotOneOf(vec!["grpcs", "https", "tls", "tls_passthrough"]),
        then_field: "snis",
        then_required: false,
        then_rules: vec![Rule::LenEq(0)],
        then_err: Some(
            "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'",
        ),
    }])
    .subschemas(Subschemas {
        key: "protocols",
        select: subschema,
        unknown: |name| format!("unknown type: {name}"),
    })
}

fn protocols() -> Field {
    Field::set(
        "protocols",
        Field::string("").rule(Rule::OneOf(strings(&PROTOCOLS))),
    )
    .required()
    .default(json!(["http", "https"]))
    .rule(Rule::LenMin(1))
    .rule(Rule::MutuallyExclusiveSubsets(vec![
        vec!["http", "https"],
        vec!["tcp", "tls", "udp"],
        vec!["tls_passthrough"],
        vec!["grpc", "grpcs"],
    ]))
}

fn methods() -> Field {
    Field::set(
        "methods",
        Field::string("").rule(Rule::Pattern(|v| {
            let method = v.as_str().unwrap_or_default();
            if !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()) {
                Ok(())
            } else {
                Err(format!("invalid value: {method}"))
            }
        })),
    )
}

fn hosts() -> Field {
    Field::array(
        "hosts",
        Field::string("")
            .rule(Rule::Pattern(check_host_wildcards))
            .rule(Rule::Custom(check_host_with_wildcards)),
    )
}

fn check_host_wildcards(value: &Value) -> Result<(), String> {
    let host = value.as_str().unwrap_or_default();
    let stars = host.matches('*').count();
    if stars > 1 {
        return Err("invalid wildcard: must have at most one wildcard".into());
    }
    if stars == 1 && !host.starts_with("*.") && !host.ends_with(".*") {
        return Err("invalid wildcard: must be placed at leftmost or rightmost label".into());
    }
    Ok(())
}

fn check_host_with_wildcards(value: &Value) -> Result<(), String> {
    let host = value.as_str().unwrap_or_default().replace('*', "abc");
    typedefs::normalize_host(&host).map(|_| ())
}

fn paths() -> Field {
    Field::array(
        "paths",
        Field::string("")
            .rule(Rule::Pattern(typedefs::check_no_empty_segments))
            .rule(Rule::Pattern(|v| {
                let path = v.as_str().unwrap_or_default();
                if path.starts_with('/') || path.starts_with("~/") {
                    Ok(())
                } else {
                    Err("should start with: / (fixed path) or ~/ (regex path)".into())
                }
            }))
            .rule(Rule::Custom(check_router_path)),
    )
}

/// Prefix paths must be normalized; regex paths (`~/…`) must compile.
fn check_router_path(value: &Value) -> Result<(), String> {
    let path = value.as_str().unwrap_or_default();
    if let Err(PathProblem::Percent(message)) = rfc3986_path(path) {
        return Err(message);
    }
    match path.strip_prefix('~') {
        None => {
            let normalized = normalize_path(path);
            if normalized == path {
                Ok(())
            } else {
                Err(format!(
                    "non-normalized path, consider use '{normalized}' instead"
                ))
            }
        }
        Some(regex) => match compile_path_regex(regex) {
            Ok(_) => Ok(()),
            Err(reason) => Err(format!(
                "invalid regex: '{regex}' (PCRE returned: {reason})"
            )),
        },
    }
}

/// Compiles a route's regex path (without its `~`), accepting PCRE's
/// `(?<name>…)` named groups. Errors are one line.
pub fn compile_path_regex(regex: &str) -> Result<regex::Regex, String> {
    let rewritten = regex
        .replace("(?<", "(?P<")
        .replace("(?P<=", "(?<=")
        .replace("(?P<!", "(?<!");
    regex::Regex::new(&rewritten).map_err(|e| {
        let text = e.to_string();
        text.lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("error: ").map(str::to_string))
            .unwrap_or_else(|| text.lines().last().unwrap_or_default().trim().to_string())
    })
}

/// Kong's URI normalization (`kong.tools.uri.normalize` with merged slashes):
/// decodes percent-encoded unreserved and "other" bytes, upper-cases the rest,
/// removes dot segments and merges slashes.
pub fn normalize_path(uri: &str) -> String {
    if uri.is_empty() || uri == "/" {
        return uri.to_string();
    }
    let mut uri = if uri.contains('%') {
        percent_normalize(uri)
    } else {
        uri.to_string()
    };
    if !uri.contains('.') && !uri.contains("//") {
        return uri;
    }
    let mut output: Vec<String> = Vec::new();
    while !uri.is_empty() {
        let b = uri.as_bytes();
        let at = |i: usize| b.get(i).copied();
        if uri == "/." {
            uri = "/".into();
        } else if uri == "/.." {
            uri = "/".into();
            output.pop();
        } else if uri == "." || uri == ".." {
            uri.clear();
        } else if at(0) == Some(b'.') && at(1) == Some(b'.') && at(2) == Some(b'/') {
            uri = uri[3..].to_string();
        } else if (at(0) == Some(b'.') && at(1) == Some(b'/'))
            || (at(0) == Some(b'/') && at(1) == Some(b'.') && at(2) == Some(b'/'))
        {
            // `./x` → `x`, `/./x` → `/x`
            uri = uri[2..].to_string();
        } else if at(0) == Some(b'/')
            && at(1) == Some(b'.')
            && at(2) == Some(b'.')
            && at(3) == Some(b'/')
        {
            uri = uri[3..].to_string();
            output.pop();
        } else if at(0) == Some(b'/') && at(1) == Some(b'/') {
            uri = uri[1..].to_string();
        } else {
            match uri[1..].find('/') {
                Some(i) => {
                    output.push(uri[..i + 1].to_string());
                    uri = uri[i + 1..].to_string();
                }
                None => {
                    output.push(std::mem::take(&mut uri));
                }
            }
        }
    }
    output.concat()
}

fn percent_normalize(uri: &str) -> String {
    const RESERVED: &[u8] = b"!*'();:@&=+$,/?%#[]";
    let bytes = uri.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (bytes[i], hex) {
            (b'%', Some(decoded)) => {
                if RESERVED.contains(&decoded) {
                    out.push(b'%');
                    out.extend(bytes[i + 1..i + 3].iter().map(u8::to_ascii_uppercase));
                } else {
                    out.push(decoded);
                }
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn headers() -> Field {
    Field::map(
        "headers",
        Field::string("")
            .rule(Rule::Pattern(|v| {
                if v.as_str().unwrap_or_default().eq_ignore_ascii_case("host") {
                    Err("cannot contain 'host' header, which must be specified in the 'hosts' attribute".into())
                } else {
                    Ok(())
                }
            }))
            .rule(Rule::Custom(typedefs::check_header_name)),
        Field::array("", Field::string("")),
    )
}

fn endpoints(name: &'static str) -> Field {
    Field::set(
        name,
        Field::record(
            "",
            Record::new(vec![typedefs::ip_or_cidr("ip"), typedefs::port("port")])
                .checks(vec![Check::AtLeastOneOf(vec!["ip", "port"])]),
        ),
    )
}

static HTTP: LazyLock<Subschema> = LazyLock::new(|| Subschema {
    fields: vec![
        endpoints("sources")
            .rule(Rule::Eq(Value::Null))
            .err("cannot set 'sources' when 'protocols' is 'http' or 'https'"),
        endpoints("destinations")
            .rule(Rule::Eq(Value::Null))
            .err("cannot set 'destinations' when 'protocols' is 'http' or 'https'"),
    ],
    checks: vec![Check::ConditionalAtLeastOneOf {
        if_field: "protocols",
        if_match: Match::Contains("https"),
        then_fields: vec!["methods", "hosts", "headers", "paths", "snis"],
        then_err: Some("must set one of %s when 'protocols' is 'https'"),
        else_match: Some(Match::Contains("http")),
        else_fields: vec!["methods", "hosts", "headers", "paths"],
        else_err: Some("must set one of %s when 'protocols' is 'http'"),
    }],
});

static STREAM: LazyLock<Subschema> = LazyLock::new(|| Subschema {
    fields: vec![
        methods().rule(Rule::Eq(Value::Null)).err(
            "cannot set 'methods' when 'protocols' is 'tcp', 'tls', 'tls_passthrough' or 'udp'",
        ),
        hosts()
            .rule(Rule::Eq(Value::Null))
            .err("cannot set 'hosts' when 'protocols' is 'tcp', 'tls', 'tls_passthrough' or 'udp'"),
        paths()
            .rule(Rule::Eq(Value::Null))
            .err("cannot set 'paths' when 'protocols' is 'tcp', 'tls', 'tls_passthrough' or 'udp'"),
        headers().rule(Rule::Eq(Value::Null)).err(
            "cannot set 'headers' when 'protocols' is 'tcp', 'tls', 'tls_passthrough' or 'udp'",
        ),
    ],
    checks: vec![
        Check::ConditionalAtLeastOneOf {
            if_field: "protocols",
            if_match: Match::ElementsOneOf(vec!["tcp", "tls", "udp"]),
            then_fields: vec!["sources", "destinations", "snis"],
            then_err: Some("must set one of %s when 'protocols' is 'tcp', 'tls' or 'udp'"),
            else_match: None,
            else_fields: vec![],
            else_err: None,
        },
        Check::ConditionalAtLeastOneOf {
            if_field: "protocols",
            if_match: Match::ElementsOneOf(vec!["tls_passthrough"]),
            then_fields: vec!["snis"],
            then_err: Some("must set snis when 'protocols' is 'tls_passthrough'"),
            else_match: None,
            else_fields: vec![],
            else_err: None,
        },
    ],
});

static GRPC: LazyLock<Subschema> = LazyLock::new(|| Subschema {
    fields: vec![
        Field::boolean("strip_path")
            .required()
            .default(json!(false))
            .rule(Rule::Ne(json!(true)))
            .err("cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"),
        methods()
            .rule(Rule::Eq(Value::Null))
            .err("cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"),
        endpoints("sources")
            .rule(Rule::Eq(Value::Null))
            .err("cannot set 'sources' when 'protocols' is 'grpc' or 'grpcs'"),
        endpoints("destinations")
            .rule(Rule::Eq(Value::Null))
            .err("cannot set 'destinations' when 'protocols' is 'grpc' or 'grpcs'"),
    ],
    checks: vec![Check::ConditionalAtLeastOneOf {
        if_field: "protocols",
        if_match: Match::Contains("grpcs"),
        then_fields: vec!["hosts", "headers", "paths", "snis"],
        then_err: Some("must set one of %s when 'protocols' is 'grpcs'"),
        else_match: Some(Match::Contains("grpc")),
        else_fields: vec!["hosts", "headers", "paths"],
        else_err: Some("must set one of %s when 'protocols' is 'grpc'"),
    }],
});

fn subschema(protocol: &str) -> Option<&'static Subschema> {
    match protocol {
        "http" | "https" => Some(&HTTP),
        "tcp" | "tls" | "udp" | "tls_passthrough" => Some(&STREAM),
        "grpc" | "grpcs" => Some(&GRPC),
        _ => None,
    }
}
