//! Routes: defaults, protocol subsets and subschemas, methods, hosts, paths,
//! headers, snis, sources/destinations.

use super::{expect_errors, invalid, valid};
use serde_json::{json, Value};
use tollgate_shared::EntityKind::Routes;
use tollgate_shared::Route;

#[test]
fn route_defaults_and_deserializes() {
    let out = valid(Routes, json!({"paths": ["/api"]}));
    let defaults = [
        ("protocols", json!(["http", "https"])),
        ("https_redirect_status_code", json!(426)),
        ("regex_priority", json!(0)),
        ("strip_path", json!(true)),
        ("preserve_host", json!(false)),
        ("request_buffering", json!(true)),
        ("response_buffering", json!(true)),
        ("path_handling", json!("v0")),
        ("name", Value::Null),
        ("methods", Value::Null),
        ("hosts", Value::Null),
        ("headers", Value::Null),
        ("snis", Value::Null),
        ("sources", Value::Null),
        ("destinations", Value::Null),
        ("service", Value::Null),
        ("tags", Value::Null),
    ];
    for (field, value) in defaults {
        assert_eq!(out[field], value, "default of {field}");
    }
    let route: Route = serde_json::from_value(out).unwrap();
    assert_eq!(route.paths, Some(vec!["/api".to_string()]));
}

#[test]
fn http_route_needs_a_matching_attribute() {
    let https = "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'";
    let http = "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'";
    expect_errors(
        Routes,
        vec![
            (json!({}), json!({"@entity": [https]})),
            (json!({"protocols": ["http"]}), json!({"@entity": [http]})),
            (
                json!({"protocols": ["https"], "paths": []}),
                json!({"@entity": [https]}),
            ),
        ],
    );
    let (_, message) = invalid(Routes, json!({"protocols": ["http"]}));
    assert_eq!(message, format!("schema violation ({http})"));
    for attribute in [
        json!({"methods": ["GET"]}),
        json!({"hosts": ["example.com"]}),
        json!({"headers": {"x-foo": ["bar"]}}),
        json!({"paths": ["/"]}),
        json!({"snis": ["example.com"], "protocols": ["https"]}),
    ] {
        valid(Routes, attribute);
    }
}

#[test]
fn protocols_rules() {
    expect_errors(
        Routes,
        vec![
            (
                json!({"protocols": ["http", "tcp"], "paths": ["/"]}),
                json!({"protocols": "these sets are mutually exclusive: ('http', 'https'), ('tcp', 'tls', 'udp')"}),
            ),
            (
                json!({"protocols": ["grpc", "https"], "paths": ["/"], "strip_path": false}),
                json!({"protocols": "these sets are mutually exclusive: ('grpc', 'grpcs'), ('http', 'https')"}),
            ),
            (
                json!({"protocols": ["http", "ftp"], "paths": ["/"]}),
                json!({"protocols": [null, "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp"]}),
            ),
            (
                json!({"protocols": ["ftp"], "paths": ["/"]}),
                json!({"protocols": "unknown type: ftp"}),
            ),
            (
                json!({"protocols": "http", "paths": ["/"]}),
                json!({"protocols": "expected a set"}),
            ),
            (
                json!({"protocols": null, "paths": ["/"]}),
                json!({"protocols": "required field missing"}),
            ),
            (
                json!({"protocols": [], "paths": ["/"]}),
                json!({"protocols": "length must be at least 1"}),
            ),
        ],
    );
    let out = valid(
        Routes,
        json!({"protocols": ["https", "http", "https"], "paths": ["/"]}),
    );
    assert_eq!(
        out["protocols"],
        json!(["https", "http"]),
        "a set drops duplicates"
    );
}

#[test]
fn methods_hosts_headers_rules() {
    expect_errors(
        Routes,
        vec![
            (
                json!({"methods": ["get"]}),
                json!({"methods": ["invalid value: get"]}),
            ),
            (
                json!({"methods": ["GET", "P0ST"]}),
                json!({"methods": [null, "invalid value: P0ST"]}),
            ),
            (
                json!({"methods": "GET"}),
                json!({"methods": "expected a set"}),
            ),
            (
                json!({"hosts": ["*.a.*"]}),
                json!({"hosts": ["invalid wildcard: must have at most one wildcard"]}),
            ),
            (
                json!({"hosts": ["a.*b.com"]}),
                json!({"hosts": ["invalid wildcard: must be placed at leftmost or rightmost label"]}),
            ),
            (
                json!({"hosts": ["exa mple.com"]}),
                json!({"hosts": ["invalid hostname: exa mple.com"]}),
            ),
            (
                json!({"hosts": ["a.com:99999"]}),
                json!({"hosts": ["invalid port number"]}),
            ),
            (
                json!({"hosts": [""]}),
                json!({"hosts": ["length must be at least 1"]}),
            ),
            (
                json!({"headers": {"Host": ["a"]}}),
                json!({"headers": "cannot contain 'host' header, which must be specified in the 'hosts' attribute"}),
            ),
            (
                json!({"headers": {"x foo": ["a"]}}),
                json!({"headers": "bad header name 'x foo', allowed characters are A-Z, a-z, 0-9, '_', and '-'"}),
            ),
            (
                json!({"headers": {"x-foo": "a"}}),
                json!({"headers": "expected an array"}),
            ),
            (
                json!({"headers": ["x-foo"]}),
                json!({"headers": "expected a map"}),
            ),
        ],
    );
    for hosts in [
        json!(["*.example.com"]),
        json!(["example.*"]),
        json!(["a.com:8080"]),
        json!(["10.0.0.1"]),
    ] {
        valid(Routes, json!({"hosts": hosts}));
    }
}

#[test]
fn paths_rules() {
    expect_errors(
        Routes,
        vec![
            (
                json!({"paths": ["api"]}),
                json!({"paths": ["should start with: / (fixed path) or ~/ (regex path)"]}),
            ),
            (
                json!({"paths": ["/a//b"]}),
                json!({"paths": ["must not have empty segments"]}),
            ),
            (
                json!({"paths": ["~/a//b"]}),
                json!({"paths": ["must not have empty segments"]}),
            ),
            (
                json!({"paths": ["/a/../b"]}),
                json!({"paths": ["non-normalized path, consider use '/b' instead"]}),
            ),
            (
                json!({"paths": ["/a/./b"]}),
                json!({"paths": ["non-normalized path, consider use '/a/b' instead"]}),
            ),
            (
                json!({"paths": ["/%61pi"]}),
                json!({"paths": ["non-normalized path, consider use '/api' instead"]}),
            ),
            (
                json!({"paths": ["/a%2fb"]}),
                json!({"paths": ["non-normalized path, consider use '/a%2Fb' instead"]}),
            ),
            (
                json!({"paths": ["/a%zz"]}),
                json!({"paths": ["invalid url-encoded value: '%zz'"]}),
            ),
            (
                json!({"paths": ["/ok", "~/(unclosed"]}),
                json!({"paths": [null, "invalid regex: '/(unclosed' (PCRE returned: unclosed group)"]}),
            ),
            (
                json!({"paths": "/a"}),
                json!({"paths": "expected an array"}),
            ),
        ],
    );
    for path in [
        "/",
        "/api",
        "/api/v1/",
        "/a%2Fb",
        "~/users/\\d+$",
        "~/(?<id>[0-9]+)",
        "~/v(?P<n>\\d)/x",
    ] {
        valid(Routes, json!({"paths": [path]}));
    }
}

#[test]
fn scalar_field_rules() {
    expect_errors(
        Routes,
        vec![
            (
                json!({"paths": ["/"], "https_redirect_status_code": 300}),
                json!({"https_redirect_status_code": "expected one of: 426, 301, 302, 307, 308"}),
            ),
            (
                json!({"paths": ["/"], "https_redirect_status_code": null}),
                json!({"https_redirect_status_code": "required field missing"}),
            ),
            (
                json!({"paths": ["/"], "regex_priority": 1.5}),
                json!({"regex_priority": "expected an integer"}),
            ),
            (
                json!({"paths": ["/"], "strip_path": "true"}),
                json!({"strip_path": "expected a boolean"}),
            ),
            (
                json!({"paths": ["/"], "preserve_host": null}),
                json!({"preserve_host": "required field missing"}),
            ),
            (
                json!({"paths": ["/"], "path_handling": "v2"}),
                json!({"path_handling": "expected one of: v0, v1"}),
            ),
            (
                json!({"paths": ["/"], "service": {"id": "x"}}),
                json!({"service": {"id": "expected a valid UUID"}}),
            ),
            (
                json!({"paths": ["/"], "service": "svc"}),
                json!({"service": {"id": "missing primary key"}}),
            ),
            (
                json!({"paths": ["/"], "name": "a/b"}),
                json!({"name": "invalid value 'a/b': the only accepted ascii characters are alphanumerics or ., -, _, and ~"}),
            ),
        ],
    );
    for code in [426, 301, 302, 307, 308] {
        valid(
            Routes,
            json!({"paths": ["/"], "https_redirect_status_code": code}),
        );
    }
    let out = valid(
        Routes,
        json!({"paths": ["/"], "service": {"id": super::SERVICE_ID}, "name": "r-1.x~ü"}),
    );
    assert_eq!(out["service"], json!({"id": super::SERVICE_ID}));
}

#[test]
fn snis_only_for_tls_protocols() {
    let err =
        "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'";
    expect_errors(
        Routes,
        vec![
            (
                json!({"protocols": ["http"], "paths": ["/"], "snis": ["a.com"]}),
                json!({"@entity": [err], "snis": "length must be 0"}),
            ),
            (
                json!({"protocols": ["https"], "snis": ["10.0.0.1"]}),
                json!({"snis": ["must not be an IP"]}),
            ),
            (
                json!({"protocols": ["https"], "snis": ["a.com:443"]}),
                json!({"snis": ["must not have a port"]}),
            ),
        ],
    );
    valid(Routes, json!({"snis": ["a.com"], "paths": ["/"]}));
    valid(Routes, json!({"protocols": ["tls"], "snis": ["a.com"]}));
}

#[test]
fn grpc_routes() {
    let out = valid(
        Routes,
        json!({"protocols": ["grpc", "grpcs"], "paths": ["/svc.Greeter"]}),
    );
    assert_eq!(
        out["strip_path"],
        json!(false),
        "grpc routes default strip_path to false"
    );
    expect_errors(
        Routes,
        vec![
            (
                json!({"protocols": ["grpc"], "paths": ["/x"], "strip_path": true}),
                json!({"strip_path": "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"}),
            ),
            (
                json!({"protocols": ["grpc"], "paths": ["/x"], "methods": ["POST"]}),
                json!({"methods": "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"}),
            ),
            (
                json!({"protocols": ["grpc"]}),
                json!({"@entity": ["must set one of 'hosts', 'headers', 'paths' when 'protocols' is 'grpc'"]}),
            ),
            (
                json!({"protocols": ["grpcs"]}),
                json!({"@entity": ["must set one of 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'grpcs'"]}),
            ),
        ],
    );
}

#[test]
fn stream_routes_and_sources() {
    let stream_err = |f: &str| {
        format!("cannot set '{f}' when 'protocols' is 'tcp', 'tls', 'tls_passthrough' or 'udp'")
    };
    expect_errors(
        Routes,
        vec![
            (
                json!({"protocols": ["tcp"], "paths": ["/"], "sources": [{"ip": "10.0.0.1"}]}),
                json!({"paths": stream_err("paths")}),
            ),
            (
                json!({"protocols": ["tcp"]}),
                json!({"@entity": ["must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', 'tls' or 'udp'"]}),
            ),
            (
                json!({"protocols": ["tls_passthrough"]}),
                json!({"@entity": ["must set snis when 'protocols' is 'tls_passthrough'"]}),
            ),
            (
                json!({"protocols": ["tcp"], "sources": [{"ip": "nope"}]}),
                json!({"sources": [{"ip": "invalid ip or cidr range: 'nope'"}]}),
            ),
            (
                json!({"protocols": ["tcp"], "destinations": [{}]}),
                json!({"destinations": [{"@entity": ["at least one of these fields must be non-empty: 'ip', 'port'"]}]}),
            ),
            (
                json!({"paths": ["/"], "sources": [{"ip": "10.0.0.1"}]}),
                json!({"sources": "cannot set 'sources' when 'protocols' is 'http' or 'https'"}),
            ),
        ],
    );
    let out = valid(
        Routes,
        json!({"protocols": ["tcp"], "sources": [{"ip": "10.0.0.0/8", "port": 5000}]}),
    );
    assert_eq!(out["sources"], json!([{"ip": "10.0.0.0/8", "port": 5000}]));
}
