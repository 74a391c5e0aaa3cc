//! Services: defaults, every field rule, the `url` shorthand.

use super::{expect_errors, invalid, valid};
use serde_json::{json, Value};
use tollgate_shared::EntityKind::Services;
use tollgate_shared::Service;

#[test]
fn minimal_service_gets_kong_defaults_and_deserializes() {
    let out = valid(Services, json!({"host": "example.com"}));
    let expected_defaults = [
        ("retries", json!(5)),
        ("protocol", json!("http")),
        ("port", json!(80)),
        ("path", Value::Null),
        ("name", Value::Null),
        ("connect_timeout", json!(60000)),
        ("write_timeout", json!(60000)),
        ("read_timeout", json!(60000)),
        ("tags", Value::Null),
        ("client_certificate", Value::Null),
        ("tls_verify", Value::Null),
        ("tls_verify_depth", Value::Null),
        ("ca_certificates", Value::Null),
        ("enabled", json!(true)),
    ];
    for (field, value) in expected_defaults {
        assert_eq!(out[field], value, "default of {field}");
    }
    let service: Service = serde_json::from_value(out.clone()).unwrap();
    assert_eq!(service.host, "example.com");
    assert!(out["id"]
        .as_str()
        .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok()));
    let created = out["created_at"].as_i64().unwrap();
    assert!(created > 1_600_000_000, "unix seconds, got {created}");
    assert_eq!(out["updated_at"], out["created_at"]);
    assert_eq!(
        out.as_object().unwrap().len(),
        18,
        "every field present: {out}"
    );
}

#[test]
fn given_id_and_timestamps_are_kept() {
    let out = valid(
        Services,
        json!({"id": super::SERVICE_ID, "created_at": 1700000000, "updated_at": 1700000001, "host": "a"}),
    );
    assert_eq!(out["id"], json!(super::SERVICE_ID));
    assert_eq!(out["created_at"], json!(1700000000));
    assert_eq!(out["updated_at"], json!(1700000001));
}

#[test]
fn field_rules_with_kong_messages() {
    let long_timeout = 2_147_483_647_i64;
    expect_errors(
        Services,
        vec![
            (json!({}), json!({"host": "required field missing"})),
            (
                json!({"host": null}),
                json!({"host": "required field missing"}),
            ),
            (
                json!({"host": "a", "foo": 1}),
                json!({"foo": "unknown field"}),
            ),
            (
                json!({"host": "a", "protocol": "ftp"}),
                json!({"protocol": "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp"}),
            ),
            (
                json!({"host": "a", "port": "80"}),
                json!({"port": "expected an integer"}),
            ),
            (
                json!({"host": "a", "port": 80.5}),
                json!({"port": "expected an integer"}),
            ),
            (
                json!({"host": "a", "port": 65536}),
                json!({"port": "value should be between 0 and 65535"}),
            ),
            (
                json!({"host": "a", "port": -1}),
                json!({"port": "value should be between 0 and 65535"}),
            ),
            (
                json!({"host": "a", "retries": 32768}),
                json!({"retries": "value should be between 0 and 32767"}),
            ),
            (
                json!({"host": "a", "connect_timeout": 0}),
                json!({"connect_timeout": "value should be between 1 and 2147483646"}),
            ),
            (
                json!({"host": "a", "read_timeout": long_timeout}),
                json!({"read_timeout": "value should be between 1 and 2147483646"}),
            ),
            (
                json!({"host": "a", "write_timeout": "1"}),
                json!({"write_timeout": "expected an integer"}),
            ),
            (
                json!({"host": "a", "path": "api"}),
                json!({"path": "should start with: /"}),
            ),
            (
                json!({"host": "a", "path": "/a//b"}),
                json!({"path": "must not have empty segments"}),
            ),
            (
                json!({"host": "a", "path": "/a b"}),
                json!({"path": "invalid path: '/a b' (characters outside of the reserved list of RFC 3986 found)"}),
            ),
            (
                json!({"host": "a", "path": "/a%zz"}),
                json!({"path": "invalid url-encoded value: '%zz'"}),
            ),
            (
                json!({"host": "a", "path": ""}),
                json!({"path": "length must be at least 1"}),
            ),
            (
                json!({"host": "a", "name": "my api"}),
                json!({"name": "invalid value 'my api': the only accepted ascii characters are alphanumerics or ., -, _, and ~"}),
            ),
            (
                json!({"host": "a", "name": 5}),
                json!({"name": "expected a string"}),
            ),
            (
                json!({"host": "a", "enabled": "yes"}),
                json!({"enabled": "expected a boolean"}),
            ),
            (
                json!({"host": "a", "tags": "x"}),
                json!({"tags": "expected a set"}),
            ),
            (
                json!({"host": "a", "tags": ["ok", "a,b"]}),
                json!({"tags": [null, "invalid tag 'a,b': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"]}),
            ),
            (
                json!({"host": "a", "id": "nope"}),
                json!({"id": "expected a valid UUID"}),
            ),
            (
                json!({"host": "a", "created_at": "now"}),
                json!({"created_at": "expected an integer"}),
            ),
            (
                json!({"host": "exa mple"}),
                json!({"host": "invalid value: exa mple"}),
            ),
            (
                json!({"host": "example.com:8080"}),
                json!({"host": "must not have a port"}),
            ),
            (
                json!({"host": "10.0.0.1:80"}),
                json!({"host": "must not have a port"}),
            ),
            (
                json!({"host": "[::1]:80"}),
                json!({"host": "must not have a port"}),
            ),
            (
                json!({"host": "300.1.1.1"}),
                json!({"host": "invalid value: 300.1.1.1"}),
            ),
            (
                json!({"host": "a", "tls_verify_depth": 65, "protocol": "https"}),
                json!({"tls_verify_depth": "value should be between 0 and 64"}),
            ),
            (
                json!({"host": "a", "ca_certificates": ["x"], "protocol": "https"}),
                json!({"ca_certificates": ["expected a valid UUID"]}),
            ),
            (
                json!({"host": "a", "client_certificate": {"id": "x"}, "protocol": "https"}),
                json!({"client_certificate": {"id": "expected a valid UUID"}}),
            ),
            (
                json!({"host": "a", "client_certificate": {}, "protocol": "https"}),
                json!({"client_certificate": {"id": "missing primary key"}}),
            ),
        ],
    );
}

#[test]
fn valid_hosts_and_paths() {
    for host in [
        "example.com",
        "my_host.internal",
        "10.0.0.1",
        "::1",
        "[::1]",
        "localhost",
        "a-b.c",
    ] {
        valid(Services, json!({"host": host}));
    }
    for path in ["/", "/api", "/a/b.c~d", "/%2F", "/a:b@c!$&'()*+,;="] {
        valid(Services, json!({"host": "a", "path": path}));
    }
}

#[test]
fn protocol_specific_rules() {
    let conditional = json!(["failed conditional validation given value of field 'protocol'"]);
    for protocol in ["tcp", "tls", "udp", "grpc", "grpcs"] {
        let (fields, _) = invalid(
            Services,
            json!({"host": "a", "protocol": protocol, "path": "/x"}),
        );
        assert_eq!(
            fields,
            json!({"@entity": conditional, "path": "value must be null"}),
            "{protocol}"
        );
    }
    for field in [
        "tls_verify",
        "tls_verify_depth",
        "client_certificate",
        "ca_certificates",
    ] {
        let value = match field {
            "tls_verify" => json!(true),
            "tls_verify_depth" => json!(2),
            "client_certificate" => json!({"id": super::SERVICE_ID}),
            _ => json!([super::SERVICE_ID]),
        };
        let mut input = json!({"host": "a", "protocol": "http"});
        input[field] = value.clone();
        let (fields, _) = invalid(Services, input.clone());
        assert_eq!(
            fields,
            json!({"@entity": conditional, field: "value must be null"}),
            "{field}"
        );
        input["protocol"] = json!("https");
        let out = valid(Services, input.clone());
        assert_eq!(out[field], value);
        input["protocol"] = json!("tls");
        input["path"] = Value::Null;
        valid(Services, input);
    }
}

#[test]
fn error_body_message_lists_every_violation_sorted() {
    let (_, message) = invalid(Services, json!({"path": "x", "port": "80"}));
    assert_eq!(
        message,
        "3 schema violations (host: required field missing; path: should start with: /; port: expected an integer)"
    );
    let (_, message) = invalid(Services, json!({"host": "a", "foo": true}));
    assert_eq!(message, "schema violation (foo: unknown field)");
}

#[test]
fn url_shorthand_cases() {
    // (url, protocol, host, port, path)
    let cases = vec![
        (
            "http://127.0.0.1:3000",
            "http",
            "127.0.0.1",
            json!(3000),
            Value::Null,
        ),
        (
            "http://example.com",
            "http",
            "example.com",
            json!(80),
            Value::Null,
        ),
        (
            "https://example.com",
            "https",
            "example.com",
            json!(443),
            Value::Null,
        ),
        (
            "https://example.com/api/v1",
            "https",
            "example.com",
            json!(443),
            json!("/api/v1"),
        ),
        (
            "http://example.com:8080/x?q=1#frag",
            "http",
            "example.com",
            json!(8080),
            json!("/x"),
        ),
        (
            "//example.com:443/p",
            "https",
            "example.com",
            json!(443),
            json!("/p"),
        ),
        (
            "//example.com:80",
            "http",
            "example.com",
            json!(80),
            Value::Null,
        ),
        (
            "grpc://grpc.internal:9000",
            "grpc",
            "grpc.internal",
            json!(9000),
            Value::Null,
        ),
        (
            "http://user:pw@example.com/",
            "http",
            "example.com",
            json!(80),
            json!("/"),
        ),
        ("http://[::1]:8080/", "http", "::1", json!(8080), json!("/")),
    ];
    for (url, protocol, host, port, path) in cases {
        let out = valid(Services, json!({"name": "s", "url": url}));
        assert_eq!(out["protocol"], json!(protocol), "{url}");
        assert_eq!(out["host"], json!(host), "{url}");
        assert_eq!(out["port"], port, "{url}");
        assert_eq!(out["path"], path, "{url}");
        assert!(out.get("url").is_none(), "url is input only");
    }
}

#[test]
fn url_shorthand_overrides_explicit_fields() {
    let out = valid(
        Services,
        json!({"url": "https://b.example", "host": "a", "protocol": "http"}),
    );
    assert_eq!(out["host"], json!("b.example"));
    assert_eq!(out["protocol"], json!("https"));
    assert_eq!(out["port"], json!(443));
}

#[test]
fn invalid_urls_fail_on_the_derived_fields() {
    let cases = vec![
        (json!({"url": "foo"}), json!({"host": "required field missing", "path": "should start with: /"}),
         "2 schema violations (host: required field missing; path: should start with: /)"),
        (json!({"url": "ftp://x"}), json!({"protocol": "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp"}),
         "schema violation (protocol: expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp)"),
        (json!({"url": "http://x:abc/"}), json!({"port": "expected an integer"}),
         "schema violation (port: expected an integer)"),
        (json!({"url": 5}), json!({"url": "expected a string"}),
         "schema violation (url: expected a string)"),
        (json!({"url": "tcp://x:9000/p"}), json!({"@entity": ["failed conditional validation given value of field 'protocol'"], "path": "value must be null"}),
         "2 schema violations (failed conditional validation given value of field 'protocol'; path: value must be null)"),
    ];
    for (input, fields, message) in cases {
        let (got_fields, got_message) = invalid(Services, input.clone());
        assert_eq!(got_fields, fields, "{input}");
        assert_eq!(got_message, message, "{input}");
    }
}
