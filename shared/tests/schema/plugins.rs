//! The plugin entity and the six bundled plugins: defaults, rules, exact
//! messages, the legacy redis shorthands, typed specs.

use super::{expect_errors, invalid, valid, CONSUMER_ID, SERVICE_ID};
use serde_json::{json, Value};
use tollgate_shared::plugin::{
    self, HttpLogMethod, JwtClaim, LimitBy, Period, RateLimitAlgorithm, RateLimitPolicy,
    RedisFailureMode,
};
use tollgate_shared::schema::render_entity;
use tollgate_shared::EntityKind::Plugins;
use tollgate_shared::{Plugin, PluginSpec};

fn spec(input: Value) -> PluginSpec {
    let out = valid(Plugins, input);
    let plugin: Plugin = serde_json::from_value(out).unwrap();
    PluginSpec::from_plugin(&plugin).unwrap()
}

#[test]
fn plugin_entity_defaults_and_unknown_plugin() {
    let out = valid(Plugins, json!({"name": "prometheus"}));
    for (field, value) in [
        ("enabled", json!(true)),
        ("route", Value::Null),
        ("service", Value::Null),
        ("consumer", Value::Null),
        ("instance_name", Value::Null),
        ("tags", Value::Null),
        ("protocols", json!(["grpc", "grpcs", "http", "https"])),
    ] {
        assert_eq!(out[field], value, "{field}");
    }
    assert!(out["id"].is_string() && out["created_at"].is_i64() && out["updated_at"].is_i64());

    let (fields, message) = invalid(Plugins, json!({"name": "hmac-auth"}));
    assert_eq!(
        fields,
        json!({"name": "plugin 'hmac-auth' not enabled; add it to the 'plugins' configuration property"})
    );
    assert_eq!(
        message,
        "schema violation (name: plugin 'hmac-auth' not enabled; add it to the 'plugins' configuration property)"
    );
    expect_errors(
        Plugins,
        vec![
            (json!({}), json!({"name": "required field missing"})),
            (
                json!({"name": "prometheus", "enabled": 1}),
                json!({"enabled": "expected a boolean"}),
            ),
            (
                json!({"name": "prometheus", "service": {"id": "x"}}),
                json!({"service": {"id": "expected a valid UUID"}}),
            ),
            (
                json!({"name": "prometheus", "config": "x"}),
                json!({"config": "expected a record"}),
            ),
            (
                json!({"name": "prometheus", "config": {"nope": true}}),
                json!({"config": {"nope": "unknown field"}}),
            ),
            (
                json!({"name": "prometheus", "protocols": ["http", "ftp"]}),
                json!({"protocols": [null, "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp"]}),
            ),
            (
                json!({"name": "prometheus", "instance_name": "a b"}),
                json!({"instance_name": "invalid value 'a b': the only accepted ascii characters are alphanumerics or ., -, _, and ~"}),
            ),
        ],
    );
}

#[test]
fn default_protocols_per_plugin() {
    let http = json!(["grpc", "grpcs", "http", "https"]);
    let cases = [
        ("jwt", json!({}), http.clone()),
        ("rate-limiting", json!({"minute": 1}), http.clone()),
        (
            "ip-restriction",
            json!({"allow": ["1.2.3.4"]}),
            json!(["http", "https", "tcp", "tls", "grpc", "grpcs"]),
        ),
        ("file-log", json!({"path": "/tmp/x.log"}), http.clone()),
        (
            "http-log",
            json!({"http_endpoint": "http://x/"}),
            http.clone(),
        ),
        ("prometheus", json!({}), http.clone()),
    ];
    for (name, config, protocols) in cases {
        let out = valid(Plugins, json!({"name": name, "config": config}));
        assert_eq!(out["protocols"], protocols, "{name}");
    }
    expect_errors(
        Plugins,
        vec![(
            json!({"name": "jwt", "protocols": ["tcp"]}),
            json!({"protocols": ["expected one of: grpc, grpcs, http, https"]}),
        )],
    );
}

#[test]
fn bundled_names_and_priorities() {
    let mut bundled: Vec<&str> = plugin::bundled()
        .filter(|n| !n.starts_with("tollgate-test"))
        .collect();
    bundled.sort_unstable();
    assert_eq!(
        bundled,
        [
            "acl",
            "basic-auth",
            "file-log",
            "http-log",
            "ip-restriction",
            "jwt",
            "key-auth",
            "opentelemetry",
            "prometheus",
            "rate-limiting",
        ]
    );
    let expected = [
        ("jwt", 1450),
        ("key-auth", 1250),
        ("basic-auth", 1100),
        ("acl", 950),
        ("ip-restriction", 990),
        ("rate-limiting", 910),
        ("opentelemetry", 14),
        ("prometheus", 13),
        ("http-log", 12),
        ("file-log", 9),
    ];
    for (name, priority) in expected {
        assert_eq!(plugin::priority(name), Some(priority), "{name}");
    }
    assert_eq!(plugin::priority("nope"), None);
    assert_eq!(plugin::priority("cors"), None, "not in the plugin table");
    let s = spec(json!({"name": "jwt"}));
    assert_eq!((s.name(), s.priority()), ("jwt", 1450));
    let s = spec(json!({"name": "file-log", "config": {"path": "/tmp/a.log"}}));
    assert_eq!((s.name(), s.priority()), ("file-log", 9));
}

#[test]
fn jwt_defaults_and_rules() {
    let out = valid(
        Plugins,
        json!({"name": "jwt", "service": {"id": SERVICE_ID}}),
    );
    assert_eq!(
        out["config"],
        json!({
            "uri_param_names": ["jwt"],
            "cookie_names": [],
            "key_claim_name": "iss",
            "secret_is_base64": false,
            "claims_to_verify": null,
            "anonymous": null,
            "run_on_preflight": true,
            "maximum_expiration": 0,
            "header_names": ["authorization"],
            "realm": null,
            "leeway": 0,
            "jwks_uri": null,
            "jwks_refresh_interval": 60,
        })
    );
    expect_errors(
        Plugins,
        vec![
            (
                json!({"name": "jwt", "consumer": {"id": CONSUMER_ID}}),
                json!({"consumer": "value must be null"}),
            ),
            (
                json!({"name": "jwt", "config": {"claims_to_verify": ["exp", "iat"]}}),
                json!({"config": {"claims_to_verify": [null, "expected one of: exp, nbf"]}}),
            ),
            (
                json!({"name": "jwt", "config": {"maximum_expiration": 31536001}}),
                json!({"config": {"maximum_expiration": "value should be between 0 and 31536000"}}),
            ),
            (
                json!({"name": "jwt", "config": {"maximum_expiration": 60, "claims_to_verify": ["nbf"]}}),
                json!({
                    "@entity": ["failed conditional validation given value of field 'config.maximum_expiration'"],
                    "config": {"claims_to_verify": "expected to contain: exp"},
                }),
            ),
            (
                json!({"name": "jwt", "config": {"leeway": -1}}),
                json!({"config": {"leeway": "value should be between 0 and 31536000"}}),
            ),
            (
                json!({"name": "jwt", "config": {"secret_is_base64": null}}),
                json!({"config": {"secret_is_base64": "required field missing"}}),
            ),
            (
                json!({"name": "jwt", "config": {"jwks_uri": "http://idp.example/jwks"}}),
                json!({"config": {"jwks_uri": "must use https (http only to a loopback address)"}}),
            ),
            (
                json!({"name": "jwt", "config": {"jwks_uri": "https://u:p@idp.example/jwks"}}),
                json!({"config": {"jwks_uri": "must not carry user info (credentials)"}}),
            ),
            (
                json!({"name": "jwt", "config": {"jwks_uri": "jwks.json"}}),
                json!({"config": {"jwks_uri": "expected an absolute http(s) URI"}}),
            ),
            (
                json!({"name": "jwt", "config": {"jwks_uri": 7}}),
                json!({"config": {"jwks_uri": "expected a string"}}),
            ),
            (
                json!({"name": "jwt", "config": {"jwks_refresh_interval": 0}}),
                json!({"config": {"jwks_refresh_interval": "value should be between 1 and 86400"}}),
            ),
            (
                json!({"name": "jwt", "config": {"jwks_refresh_interval": 1.5}}),
                json!({"config": {"jwks_refresh_interval": "expected an integer"}}),
            ),
        ],
    );
    let (_, message) = invalid(
        Plugins,
        json!({"name": "jwt", "consumer": {"id": CONSUMER_ID}}),
    );
    assert_eq!(message, "schema violation (consumer: value must be null)");

    let PluginSpec::Jwt(config) = spec(json!({"name": "jwt", "config": {
        "maximum_expiration": 60, "claims_to_verify": ["exp", "nbf", "exp"], "key_claim_name": "kid", "realm": "r"
    }})) else {
        panic!("jwt spec")
    };
    assert_eq!(
        config.claims_to_verify,
        Some(vec![JwtClaim::Exp, JwtClaim::Nbf])
    );
    assert!(config.verifies(JwtClaim::Exp));
    assert_eq!(config.maximum_expiration, 60.0);
    assert_eq!(config.key_claim_name, "kid");
    assert_eq!(config.header_names, vec!["authorization"]);
    assert_eq!(config.realm.as_deref(), Some("r"));
    assert_eq!(config.leeway, 0.0);
    assert_eq!(config.jwks_uri, None);
    assert_eq!(config.jwks_refresh_interval, 60);

    let PluginSpec::Jwt(config) = spec(json!({"name": "jwt", "config": {
        "jwks_uri": "https://idp.example/.well-known/jwks.json", "jwks_refresh_interval": null
    }})) else {
        panic!("jwt spec")
    };
    assert_eq!(
        config.jwks_uri.as_deref(),
        Some("https://idp.example/.well-known/jwks.json")
    );
    assert_eq!(config.jwks_refresh_interval, 60);
}

#[test]
fn rate_limiting_defaults() {
    let out = valid(
        Plugins,
        json!({"name": "rate-limiting", "config": {"minute": 100}}),
    );
    assert_eq!(
        out["config"],
        json!({
            "second": null, "minute": 100, "hour": null, "day": null, "month": null, "year": null,
            "limit_by": "consumer",
            "header_name": null,
            "path": null,
            "policy": "local",
            "algorithm": "fixed",
            "fault_tolerant": true,
            "redis": {
                "host": null, "port": 6379, "timeout": 2000, "username": null, "password": null,
                "database": 0, "ssl": false, "ssl_verify": false, "server_name": null,
                "failure_mode": null,
            },
            "hide_client_headers": false,
            "error_code": 429,
            "error_message": "API rate limit exceeded",
            "sync_rate": -1,
        })
    );
    let PluginSpec::RateLimiting(config) =
        spec(json!({"name": "rate-limiting", "config": {"minute": 30, "hour": 500}}))
    else {
        panic!("rate-limiting spec")
    };
    assert_eq!(
        config.limits(),
        vec![(Period::Minute, 30.0), (Period::Hour, 500.0)]
    );
    assert_eq!(config.policy, RateLimitPolicy::Local);
    assert_eq!(config.limit_by, LimitBy::Consumer);
    assert_eq!(config.redis.port, Some(6379));
    assert_eq!(config.error_code, 429.0);
    assert_eq!(config.algorithm, RateLimitAlgorithm::Fixed);
    assert_eq!(config.redis.failure_mode, None);
    assert_eq!(Period::Month.seconds(), 2_592_000);

    let PluginSpec::RateLimiting(config) = spec(json!({"name": "rate-limiting", "config": {
        "minute": 3, "algorithm": "sliding", "policy": "redis",
        "redis": {"host": "r", "failure_mode": "fail_closed"},
    }})) else {
        panic!("rate-limiting spec")
    };
    assert_eq!(config.algorithm, RateLimitAlgorithm::Sliding);
    assert_eq!(
        config.redis.failure_mode,
        Some(RedisFailureMode::FailClosed)
    );
}

#[test]
fn rate_limiting_rules() {
    let at_least_one = "at least one of these fields must be non-empty: 'config.second', 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'";
    let policy_conditional = "failed conditional validation given value of field 'config.policy'";
    expect_errors(
        Plugins,
        vec![
            (
                json!({"name": "rate-limiting"}),
                json!({"@entity": [at_least_one]}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 0}}),
                json!({"config": {"minute": "value must be greater than 0"}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"second": "5"}}),
                json!({"config": {"second": "expected a number"}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"second": 20, "hour": 10}}),
                json!({"config": "The limit for hour(10.0) cannot be lower than the limit for second(20.0)"}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5.5, "day": 2.25}}),
                json!({"config": "The limit for day(2.2) cannot be lower than the limit for minute(5.5)"}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5, "policy": "cluster"}}),
                json!({"config": {"policy": "expected one of: local, redis (the cluster policy counts in a database, which data planes do not have; use redis to share limits between them)"}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5, "policy": "db"}}),
                json!({"config": {"policy": "expected one of: local, redis"}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5, "algorithm": "leaky"}}),
                json!({"config": {"algorithm": "expected one of: fixed, sliding"}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5, "redis": {"failure_mode": "retry"}}}),
                json!({"config": {"redis": {"failure_mode": "expected one of: fail_open, fail_closed, local"}}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5, "policy": "redis"}}),
                json!({"@entity": [policy_conditional], "config": {"redis": {"host": "required field missing"}}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5, "policy": "redis", "redis": {"host": "r", "port": null, "timeout": null}}}),
                json!({"@entity": [policy_conditional, policy_conditional], "config": {"redis": {"port": "required field missing", "timeout": "required field missing"}}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5, "limit_by": "header"}}),
                json!({"@entity": ["failed conditional validation given value of field 'config.limit_by'"], "config": {"header_name": "required field missing"}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5, "limit_by": "path"}}),
                json!({"@entity": ["failed conditional validation given value of field 'config.limit_by'"], "config": {"path": "required field missing"}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5, "limit_by": "path", "path": "x"}}),
                json!({"config": {"path": "should start with: /"}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5, "limit_by": "route"}}),
                json!({"config": {"limit_by": "expected one of: consumer, credential, ip, service, header, path"}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5, "sync_rate": 10}}),
                json!({"config": "sync_rate can only be used with the redis policy"}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5, "sync_rate": 0.01, "policy": "redis", "redis": {"host": "r"}}}),
                json!({"config": "sync_rate must be greater than 0.02, or -1 to disable"}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5, "redis": {"port": 70000}}}),
                json!({"config": {"redis": {"port": "value should be between 0 and 65535"}}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5, "error_code": 0}}),
                json!({"config": {"error_code": "value must be greater than 0"}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 5, "header_name": "a b"}}),
                json!({"config": {"header_name": "bad header name 'a b', allowed characters are A-Z, a-z, 0-9, '_', and '-'"}}),
            ),
        ],
    );
    let (_, message) = invalid(
        Plugins,
        json!({"name": "rate-limiting", "config": {"second": 20, "hour": 10}}),
    );
    assert_eq!(
        message,
        "schema violation (config: The limit for hour(10.0) cannot be lower than the limit for second(20.0))"
    );
    let (_, message) = invalid(
        Plugins,
        json!({"name": "rate-limiting", "config": {"minute": 5, "policy": "redis"}}),
    );
    assert_eq!(
        message,
        "2 schema violations (failed conditional validation given value of field 'config.policy'; config.redis: {\n  host = \"required field missing\"\n})"
    );
    valid(
        Plugins,
        json!({"name": "rate-limiting", "config": {"minute": 5, "limit_by": "header", "header_name": "x-api-key"}}),
    );
    valid(
        Plugins,
        json!({"name": "rate-limiting", "config": {"minute": 5, "sync_rate": 0.5, "policy": "redis", "redis": {"host": "r"}}}),
    );
    valid(
        Plugins,
        json!({"name": "rate-limiting", "config": {"second": 5, "minute": 5, "year": 5}}),
    );
}

#[test]
fn rate_limiting_legacy_redis_fields() {
    let out = valid(
        Plugins,
        json!({"name": "rate-limiting", "config": {
            "minute": 30, "hour": 500, "policy": "redis",
            "redis_host": "127.0.0.1", "redis_port": 6380, "redis_password": "pw", "redis_username": "u",
            "redis_ssl": true, "redis_ssl_verify": true, "redis_server_name": "redis.internal",
            "redis_timeout": 1500, "redis_database": 2,
        }}),
    );
    assert_eq!(
        out["config"]["redis"],
        json!({
            "host": "127.0.0.1", "port": 6380, "timeout": 1500, "username": "u", "password": "pw",
            "database": 2, "ssl": true, "ssl_verify": true, "server_name": "redis.internal",
            "failure_mode": null,
        })
    );
    assert!(
        out["config"].get("redis_host").is_none(),
        "shorthands are not stored"
    );

    // The new field wins when both are given.
    let out = valid(
        Plugins,
        json!({"name": "rate-limiting", "config": {"minute": 1, "redis_host": "old", "redis": {"host": "new"}, "redis_port": 1}}),
    );
    assert_eq!(out["config"]["redis"]["host"], json!("new"));
    assert_eq!(
        out["config"]["redis"]["port"],
        json!(1),
        "a shorthand fills what the record leaves unset"
    );

    // The legacy fields satisfy the redis policy's requirements.
    let PluginSpec::RateLimiting(config) = spec(json!({"name": "rate-limiting", "config": {
        "minute": 30, "policy": "redis", "redis_host": "10.0.0.5", "redis_port": 6379
    }})) else {
        panic!("rate-limiting spec")
    };
    assert_eq!(config.policy, RateLimitPolicy::Redis);
    assert_eq!(config.redis.host.as_deref(), Some("10.0.0.5"));

    expect_errors(
        Plugins,
        vec![
            (
                json!({"name": "rate-limiting", "config": {"minute": 1, "redis_port": "x"}}),
                json!({"config": {"redis_port": "expected an integer"}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 1, "redis_ssl": "yes"}}),
                json!({"config": {"redis_ssl": "expected a boolean"}}),
            ),
            (
                json!({"name": "rate-limiting", "config": {"minute": 1, "policy": "redis", "redis_port": 6379}}),
                json!({"@entity": ["failed conditional validation given value of field 'config.policy'"], "config": {"redis": {"host": "required field missing"}}}),
            ),
        ],
    );
}

#[test]
fn rate_limiting_output_echoes_legacy_fields() {
    let stored = valid(
        Plugins,
        json!({"name": "rate-limiting", "config": {"minute": 1, "policy": "redis", "redis": {"host": "r", "password": "p"}}}),
    );
    let rendered = render_entity(Plugins, &stored);
    let config = &rendered["config"];
    for (legacy, value) in [
        ("redis_host", json!("r")),
        ("redis_port", json!(6379)),
        ("redis_password", json!("p")),
        ("redis_username", Value::Null),
        ("redis_ssl", json!(false)),
        ("redis_ssl_verify", json!(false)),
        ("redis_server_name", Value::Null),
        ("redis_timeout", json!(2000)),
        ("redis_database", json!(0)),
    ] {
        assert_eq!(config[legacy], value, "{legacy}");
    }
    assert_eq!(config["redis"], stored["config"]["redis"]);
    let jwt = valid(Plugins, json!({"name": "jwt"}));
    assert_eq!(render_entity(Plugins, &jwt), jwt);
    // The rendered form validates again (the echoed shorthands agree with the record).
    valid(Plugins, rendered);
}

#[test]
fn ip_restriction_rules() {
    let out = valid(
        Plugins,
        json!({"name": "ip-restriction", "config": {"allow": ["203.0.113.10", "10.0.0.0/8"]}}),
    );
    assert_eq!(
        out["config"],
        json!({"allow": ["203.0.113.10", "10.0.0.0/8"], "deny": null, "status": null, "message": null})
    );
    let both = "at least one of these fields must be non-empty: 'config.allow', 'config.deny'";
    expect_errors(
        Plugins,
        vec![
            (
                json!({"name": "ip-restriction"}),
                json!({"@entity": [both]}),
            ),
            (
                json!({"name": "ip-restriction", "config": {"allow": [], "deny": []}}),
                json!({"@entity": [both]}),
            ),
            (
                json!({"name": "ip-restriction", "config": {"deny": ["1.2.3.4", "300.0.0.1", "10.0.0.0/33"]}}),
                json!({"config": {"deny": [null, "invalid ip or cidr range: '300.0.0.1'", "invalid ip or cidr range: '10.0.0.0/33'"]}}),
            ),
            (
                json!({"name": "ip-restriction", "config": {"allow": "1.2.3.4"}}),
                json!({"config": {"allow": "expected an array"}}),
            ),
            (
                json!({"name": "ip-restriction", "config": {"allow": ["1.2.3.4"], "status": "403"}}),
                json!({"config": {"status": "expected a number"}}),
            ),
        ],
    );
    let (_, message) = invalid(Plugins, json!({"name": "ip-restriction"}));
    assert_eq!(message, format!("schema violation ({both})"));
    let (_, message) = invalid(
        Plugins,
        json!({"name": "ip-restriction", "config": {"deny": ["nope"]}}),
    );
    assert_eq!(
        message,
        "schema violation (config.deny: {\n  \"invalid ip or cidr range: 'nope'\"\n})"
    );

    let PluginSpec::IpRestriction(config) = spec(json!({"name": "ip-restriction", "config": {
        "allow": ["203.0.113.10", "10.0.0.0/8", "2001:db8::/32", "::1"], "status": 401, "message": "go away"
    }})) else {
        panic!("ip-restriction spec")
    };
    let nets: Vec<String> = config
        .allow_nets()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        nets,
        ["203.0.113.10/32", "10.0.0.0/8", "2001:db8::/32", "::1/128"]
    );
    assert!(config.deny_nets().is_empty());
    assert_eq!(config.status, Some(401.0));
}

#[test]
fn file_log_rules() {
    let out = valid(
        Plugins,
        json!({"name": "file-log", "config": {"path": "/var/log/kong/access.log", "reopen": true}}),
    );
    assert_eq!(
        out["config"],
        json!({"path": "/var/log/kong/access.log", "reopen": true, "custom_fields_by_lua": null})
    );
    let defaults = valid(
        Plugins,
        json!({"name": "file-log", "config": {"path": "/tmp/a.log"}}),
    );
    assert_eq!(defaults["config"]["reopen"], json!(false));
    expect_errors(
        Plugins,
        vec![
            (
                json!({"name": "file-log"}),
                json!({"config": {"path": "required field missing"}}),
            ),
            (
                json!({"name": "file-log", "config": {"path": "/tmp/a*.log"}}),
                json!({"config": {"path": "not a valid filename"}}),
            ),
            (
                json!({"name": "file-log", "config": {"path": "/tmp/a&b"}}),
                json!({"config": {"path": "not a valid filename"}}),
            ),
            (
                json!({"name": "file-log", "config": {"path": "/tmp/%s"}}),
                json!({"config": {"path": "not a valid filename"}}),
            ),
            (
                json!({"name": "file-log", "config": {"path": "/tmp/`x`"}}),
                json!({"config": {"path": "not a valid filename"}}),
            ),
            (
                json!({"name": "file-log", "config": {"path": ""}}),
                json!({"config": {"path": "not a valid filename"}}),
            ),
            (
                json!({"name": "file-log", "config": {"path": "/tmp/a", "reopen": "yes"}}),
                json!({"config": {"reopen": "expected a boolean"}}),
            ),
        ],
    );
    let (_, message) = invalid(
        Plugins,
        json!({"name": "file-log", "config": {"path": "/a*"}}),
    );
    assert_eq!(
        message,
        "schema violation (config.path: not a valid filename)"
    );
    let PluginSpec::FileLog(config) =
        spec(json!({"name": "file-log", "config": {"path": "/tmp/x.log", "reopen": true}}))
    else {
        panic!("file-log spec")
    };
    assert_eq!((config.path.as_str(), config.reopen), ("/tmp/x.log", true));
}

#[test]
fn http_log_defaults_and_queue() {
    let out = valid(
        Plugins,
        json!({"name": "http-log", "config": {"http_endpoint": "http://log-aggregator:9200/kong-logs"}}),
    );
    assert_eq!(
        out["config"],
        json!({
            "http_endpoint": "http://log-aggregator:9200/kong-logs",
            "method": "POST",
            "content_type": "application/json",
            "timeout": 10000,
            "keepalive": 60000,
            "retry_count": null,
            "queue_size": null,
            "flush_timeout": null,
            "headers": null,
            "queue": {
                "max_batch_size": 1,
                "max_coalescing_delay": 1,
                "max_entries": 10000,
                "max_bytes": null,
                "max_retry_time": 60,
                "initial_retry_delay": 0.01,
                "max_retry_delay": 60,
                "concurrency_limit": 1,
            },
            "custom_fields_by_lua": null,
        })
    );
    let PluginSpec::HttpLog(config) = spec(json!({"name": "http-log", "config": {
        "http_endpoint": "https://logs.example/ingest", "method": "PUT", "queue_size": 50, "flush_timeout": 5,
        "headers": {"X-Api-Key": "k"}
    }})) else {
        panic!("http-log spec")
    };
    assert_eq!(config.method, HttpLogMethod::Put);
    assert_eq!(config.queue.max_batch_size, 1);
    let queue = config.effective_queue();
    assert_eq!(
        (queue.max_batch_size, queue.max_coalescing_delay),
        (50, 5.0),
        "deprecated fields map onto the queue"
    );
    assert_eq!(config.headers.unwrap()["X-Api-Key"], "k");

    // As Kong's `Queue.get_plugin_params`: a deprecated value other than its
    // old default wins even over an explicit `queue.*`; the old defaults
    // (queue_size 1, flush_timeout 2) change nothing.
    let PluginSpec::HttpLog(config) = spec(json!({"name": "http-log", "config": {
        "http_endpoint": "http://logs.example/", "queue_size": 50, "flush_timeout": 2,
        "retry_count": 3, "queue": {"max_batch_size": 10, "max_coalescing_delay": 7}
    }})) else {
        panic!("http-log spec")
    };
    let queue = config.effective_queue();
    assert_eq!(
        (queue.max_batch_size, queue.max_coalescing_delay),
        (50, 7.0)
    );
    let PluginSpec::HttpLog(config) = spec(json!({"name": "http-log", "config": {
        "http_endpoint": "http://logs.example/", "queue_size": 1,
        "queue": {"max_batch_size": 10}
    }})) else {
        panic!("http-log spec")
    };
    assert_eq!(config.effective_queue().max_batch_size, 10);
}

#[test]
fn http_log_targets() {
    let PluginSpec::HttpLog(config) = spec(json!({"name": "http-log", "config": {
        "http_endpoint": "https://user:p%40ss@[::1]:8443/in/gest?index=kong#frag",
        "method": "PATCH", "timeout": 1500, "keepalive": 0, "headers": {"X-B": "2", "X-A": "1"},
        "queue": {"max_retry_time": -1, "concurrency_limit": -1, "max_bytes": 4096}
    }})) else {
        panic!("http-log spec")
    };
    let target = config.target().unwrap();
    assert!(target.tls);
    assert_eq!((target.host.as_str(), target.port), ("::1", 8443));
    assert_eq!(target.path_and_query, "/in/gest?index=kong");
    assert_eq!(target.method, "PATCH");
    // Kong encodes the userinfo as written (LuaSocket does not unescape it).
    assert_eq!(
        target.authorization.as_deref(),
        Some("Basic dXNlcjpwJTQwc3M=")
    );
    assert_eq!(
        target.headers,
        vec![
            ("X-A".to_string(), "1".to_string()),
            ("X-B".to_string(), "2".to_string())
        ]
    );
    assert_eq!(target.timeout, std::time::Duration::from_millis(1500));
    assert_eq!(target.keepalive, std::time::Duration::ZERO);
    assert_eq!(target.queue.max_retry_time, std::time::Duration::ZERO);
    assert!(target.queue.unbounded_concurrency);
    assert_eq!(target.queue.max_bytes, Some(4096));
    assert!(!format!("{target:?}").contains("dXNlcjpwJTQwc3M"));

    let PluginSpec::HttpLog(config) = spec(json!({"name": "http-log", "config": {
        "http_endpoint": "http://log-aggregator:9200"
    }})) else {
        panic!("http-log spec")
    };
    let target = config.target().unwrap();
    assert_eq!((target.tls, target.port), (false, 9200));
    assert_eq!(target.path_and_query, "/");
    assert_eq!(target.authorization, None);
    assert_eq!(target.queue.max_entries, 10000);
    assert_eq!(
        target.queue.max_coalescing_delay,
        std::time::Duration::from_secs(1)
    );
    assert_eq!(
        target.queue.initial_retry_delay,
        std::time::Duration::from_millis(10)
    );
    assert_eq!(
        target.queue.max_retry_time,
        std::time::Duration::from_secs(60)
    );
    assert_eq!(target.timeout, std::time::Duration::from_secs(10));

    let PluginSpec::HttpLog(config) = spec(json!({"name": "http-log", "config": {
        "http_endpoint": "http://logs.example:99999/"
    }})) else {
        panic!("http-log spec")
    };
    assert_eq!(
        config.target().unwrap_err(),
        "http_endpoint: invalid port '99999'"
    );
}

#[test]
fn http_log_rules() {
    let endpoint = "http://x.example/";
    expect_errors(
        Plugins,
        vec![
            (
                json!({"name": "http-log"}),
                json!({"config": {"http_endpoint": "required field missing"}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": "x.example"}}),
                json!({"config": {"http_endpoint": "missing host in url"}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": "//x.example/"}}),
                json!({"config": {"http_endpoint": "missing scheme in url"}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": "ftp://x.example/"}}),
                json!({"config": {"http_endpoint": "unsupported scheme in url: 'ftp' (expected http or https)"}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": endpoint, "method": "GET"}}),
                json!({"config": {"method": "expected one of: POST, PUT, PATCH"}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": endpoint, "content_type": "text/plain"}}),
                json!({"config": {"content_type": "expected one of: application/json, application/json; charset=utf-8"}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": endpoint, "headers": {"Host": "h"}}}),
                json!({"config": {"headers": "cannot contain 'Host' header"}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": endpoint, "headers": {"coNTEnt-Length": "1"}}}),
                json!({"config": {"headers": "cannot contain 'Content-Length' header"}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": endpoint, "headers": {"content-type": "x"}}}),
                json!({"config": {"headers": "cannot contain 'Content-Type' header"}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": endpoint, "headers": {"X-A": ""}}}),
                json!({"config": {"headers": "length must be at least 1"}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": endpoint, "headers": {"X-A": ["a"]}}}),
                json!({"config": {"headers": "expected a string"}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": "http://hi:there@x.example/path", "headers": {"AuthoRIZATion": "bad"}}}),
                json!({"config": "specifying both an 'Authorization' header and user info in 'http_endpoint' is not allowed"}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": endpoint, "queue": {"max_batch_size": 0}}}),
                json!({"config": {"queue": {"max_batch_size": "value should be between 1 and 1000000"}}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": endpoint, "queue": {"max_coalescing_delay": 3601}}}),
                json!({"config": {"queue": {"max_coalescing_delay": "value should be between 0 and 3600"}}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": endpoint, "queue": {"initial_retry_delay": 0}}}),
                json!({"config": {"queue": {"initial_retry_delay": "value should be between 0 and 1000000"}}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": endpoint, "queue": {"concurrency_limit": 2}}}),
                json!({"config": {"queue": {"concurrency_limit": "expected one of: -1, 1"}}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": endpoint, "retry_count": 1.5}}),
                json!({"config": {"retry_count": "expected an integer"}}),
            ),
            (
                json!({"name": "http-log", "config": {"http_endpoint": endpoint, "custom_fields_by_lua": {"x": "return 1"}}}),
                json!({"config": {"custom_fields_by_lua": "not supported: Tollgate runs no Lua; remove custom_fields_by_lua (the log record has Kong's standard fields)"}}),
            ),
        ],
    );
    valid(
        Plugins,
        json!({"name": "http-log", "config": {"http_endpoint": "http://hi:there@x.example/", "headers": {"X-Other": "ok"}}}),
    );
    valid(
        Plugins,
        json!({"name": "http-log", "config": {"http_endpoint": endpoint, "headers": {"Authorization": "Bearer t"}}}),
    );
    let (_, message) = invalid(
        Plugins,
        json!({"name": "http-log", "config": {"http_endpoint": endpoint, "headers": {"Host": "h"}}}),
    );
    assert_eq!(
        message,
        "schema violation (config.headers: cannot contain 'Host' header)"
    );
}

#[test]
fn prometheus_defaults_all_false() {
    let out = valid(Plugins, json!({"name": "prometheus"}));
    let switches = [
        "per_consumer",
        "status_code_metrics",
        "ai_metrics",
        "latency_metrics",
        "bandwidth_metrics",
        "upstream_health_metrics",
        "wasm_metrics",
    ];
    assert_eq!(out["config"].as_object().unwrap().len(), switches.len());
    for switch in switches {
        assert_eq!(out["config"][switch], json!(false), "{switch}");
    }
    expect_errors(
        Plugins,
        vec![(
            json!({"name": "prometheus", "config": {"per_consumer": "true"}}),
            json!({"config": {"per_consumer": "expected a boolean"}}),
        )],
    );
    let PluginSpec::Prometheus(config) = spec(
        json!({"name": "prometheus", "config": {"per_consumer": true, "latency_metrics": true}}),
    ) else {
        panic!("prometheus spec")
    };
    assert!(config.per_consumer && config.latency_metrics && !config.status_code_metrics);
}

#[test]
fn from_plugin_validates_and_fills_defaults() {
    let plugin: Plugin = serde_json::from_value(valid(
        Plugins,
        json!({"name": "rate-limiting", "config": {"minute": 5}}),
    ))
    .unwrap();
    let mut sparse = plugin.clone();
    sparse.config = json!({"minute": 5});
    let PluginSpec::RateLimiting(config) = PluginSpec::from_plugin(&sparse).unwrap() else {
        panic!("rate-limiting spec")
    };
    assert_eq!(
        config.redis.timeout,
        Some(2000),
        "defaults filled from the schema"
    );

    let mut broken = plugin.clone();
    broken.config = json!({"minute": -1});
    let errors = PluginSpec::from_plugin(&broken).unwrap_err();
    assert_eq!(
        errors.to_json(),
        json!({"config": {"minute": "value must be greater than 0"}})
    );

    let mut unknown = plugin;
    unknown.name = "cors".into();
    let errors = PluginSpec::from_plugin(&unknown).unwrap_err();
    assert_eq!(
        errors.to_json(),
        json!({"name": "plugin 'cors' not enabled; add it to the 'plugins' configuration property"})
    );
}

#[test]
fn record_error_and_conditional_error_together() {
    let (fields, _) = invalid(
        Plugins,
        json!({"name": "rate-limiting", "config": {"second": 20, "hour": 10, "policy": "redis"}}),
    );
    assert_eq!(
        fields,
        json!({
            "@entity": ["failed conditional validation given value of field 'config.policy'"],
            "config": "The limit for hour(10.0) cannot be lower than the limit for second(20.0)",
        })
    );
    let (fields, _) = invalid(Plugins, json!({"name": "prometheus", "config": {"a.b": 1}}));
    assert_eq!(fields, json!({"config": {"a.b": "unknown field"}}));
}
