//! Form bodies: string values coerced by the schema before validation.

use super::valid;
use serde_json::{json, Value};
use tollgate_shared::schema::coerce_form;
use tollgate_shared::EntityKind::{self, Consumers, Plugins, Routes, Services};

#[test]
fn coercion_cases() {
    let cases: Vec<(EntityKind, Value, Value)> = vec![
        (
            Services,
            json!({"name": "my-api", "port": "8080", "retries": "3", "enabled": "false"}),
            json!({"name": "my-api", "port": 8080, "retries": 3, "enabled": false}),
        ),
        // Unconvertible values are left for validation to report.
        (
            Services,
            json!({"port": "eighty", "enabled": "yes", "tls_verify": "1"}),
            json!({"port": "eighty", "enabled": "yes", "tls_verify": "1"}),
        ),
        // Empty strings clear a field.
        (
            Services,
            json!({"name": "", "path": ""}),
            json!({"name": null, "path": null}),
        ),
        // Single values for arrays and sets become one-element arrays.
        (
            Routes,
            json!({"paths": "/api", "methods": "GET", "hosts": ["a.com", "b.com"], "strip_path": "false"}),
            json!({"paths": ["/api"], "methods": ["GET"], "hosts": ["a.com", "b.com"], "strip_path": false}),
        ),
        (
            Routes,
            json!({"headers": {"x-foo": "bar"}, "regex_priority": "-1", "service": {"id": "abc"}}),
            json!({"headers": {"x-foo": ["bar"]}, "regex_priority": -1, "service": {"id": "abc"}}),
        ),
        (
            Routes,
            json!({"protocols": "tcp", "sources": [{"ip": "10.0.0.1", "port": "80"}]}),
            json!({"protocols": ["tcp"], "sources": [{"ip": "10.0.0.1", "port": 80}]}),
        ),
        (
            Consumers,
            json!({"username": "bob", "tags": "a"}),
            json!({"username": "bob", "tags": ["a"]}),
        ),
        // Unknown fields pass through untouched.
        (
            Consumers,
            json!({"username": "bob", "x": "1"}),
            json!({"username": "bob", "x": "1"}),
        ),
        // The plugin name selects the config schema.
        (
            Plugins,
            json!({"name": "rate-limiting", "config": {"minute": "100", "policy": "local", "hide_client_headers": "false", "sync_rate": "0.5"}}),
            json!({"name": "rate-limiting", "config": {"minute": 100, "policy": "local", "hide_client_headers": false, "sync_rate": 0.5}}),
        ),
        (
            Plugins,
            json!({"name": "rate-limiting", "config": {"minute": "30", "redis_host": "127.0.0.1", "redis_port": "6379", "redis_ssl": "true"}}),
            json!({"name": "rate-limiting", "config": {"minute": 30, "redis_host": "127.0.0.1", "redis_port": 6379, "redis_ssl": true}}),
        ),
        (
            Plugins,
            json!({"name": "ip-restriction", "config": {"allow": "203.0.113.10", "status": "401"}, "enabled": "true"}),
            json!({"name": "ip-restriction", "config": {"allow": ["203.0.113.10"], "status": 401}, "enabled": true}),
        ),
        (
            Plugins,
            json!({"name": "http-log", "config": {"timeout": "10000", "keepalive": "60000", "queue": {"max_batch_size": "10"}, "headers": {"X-A": "1"}}}),
            json!({"name": "http-log", "config": {"timeout": 10000, "keepalive": 60000, "queue": {"max_batch_size": 10}, "headers": {"X-A": "1"}}}),
        ),
        (
            Plugins,
            json!({"name": "jwt", "config": {"claims_to_verify": "exp", "maximum_expiration": "60"}, "protocols": "https"}),
            json!({"name": "jwt", "config": {"claims_to_verify": ["exp"], "maximum_expiration": 60}, "protocols": ["https"]}),
        ),
        // Without a known plugin name the config is left alone.
        (
            Plugins,
            json!({"name": "nope", "config": {"minute": "1"}}),
            json!({"name": "nope", "config": {"minute": "1"}}),
        ),
    ];
    for (kind, input, expected) in cases {
        assert_eq!(
            coerce_form(kind, input.clone()),
            expected,
            "{kind:?} {input}"
        );
    }
}

#[test]
fn seed_guide_form_posts_validate() {
    let posts: Vec<(EntityKind, Value)> = vec![
        (
            Services,
            json!({"name": "my-api", "url": "http://127.0.0.1:3000"}),
        ),
        (Routes, json!({"paths": ["/api"], "strip_path": "false"})),
        (
            Plugins,
            json!({"name": "rate-limiting", "config": {"minute": "100", "policy": "local", "hide_client_headers": "false"}}),
        ),
        (
            Plugins,
            json!({"name": "rate-limiting", "config": {"minute": "30", "hour": "500", "policy": "redis", "redis_host": "127.0.0.1", "redis_port": "6379"}}),
        ),
        (Plugins, json!({"name": "jwt"})),
        (Consumers, json!({"username": "api-client-1"})),
        (
            Plugins,
            json!({"name": "ip-restriction", "config": {"allow": ["203.0.113.10", "10.0.0.0/8"]}}),
        ),
        (
            Plugins,
            json!({"name": "ip-restriction", "config": {"deny": "198.51.100.0/24"}}),
        ),
        (
            Plugins,
            json!({"name": "file-log", "config": {"path": "/var/log/kong/access.log", "reopen": "true"}}),
        ),
        (
            Plugins,
            json!({"name": "http-log", "config": {"http_endpoint": "http://log-aggregator:9200/kong-logs", "method": "POST", "timeout": "10000", "keepalive": "60000"}}),
        ),
        (Plugins, json!({"name": "prometheus"})),
    ];
    for (kind, form) in posts {
        let out = valid(kind, coerce_form(kind, form));
        if out["name"] == json!("rate-limiting") && out["config"]["policy"] == json!("redis") {
            assert_eq!(out["config"]["redis"]["host"], json!("127.0.0.1"));
            assert_eq!(out["config"]["redis"]["port"], json!(6379));
            assert_eq!(out["config"]["hour"], json!(500));
        }
    }
}

#[test]
fn json_bodies_are_not_coerced_by_validation() {
    let (fields, _) = super::invalid(Services, json!({"host": "a", "port": "80"}));
    assert_eq!(fields, json!({"port": "expected an integer"}));
}
