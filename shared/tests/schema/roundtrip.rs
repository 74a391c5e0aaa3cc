//! Validated output is a fixed point: validating it again changes nothing,
//! so stored rows can be re-validated (snapshots, declarative re-loads).

use super::{valid, CONSUMER_ID, SERVICE_ID};
use serde_json::json;
use tollgate_shared::schema::render_entity;
use tollgate_shared::EntityKind::{self, *};

#[test]
fn validating_output_again_is_identity() {
    let samples: Vec<(EntityKind, serde_json::Value)> = vec![
        (
            Services,
            json!({"name": "s", "url": "https://example.com/api", "tags": ["a", "a", "b"]}),
        ),
        (
            Routes,
            json!({"paths": ["/api"], "methods": ["GET"], "headers": {"x-a": ["1"]}, "service": {"id": SERVICE_ID}}),
        ),
        (
            Routes,
            json!({"protocols": ["tcp"], "sources": [{"ip": "10.0.0.1"}]}),
        ),
        (Consumers, json!({"username": "bob"})),
        (JwtSecrets, json!({"consumer": {"id": CONSUMER_ID}})),
        (
            Plugins,
            json!({"name": "rate-limiting", "config": {"minute": 5.0, "redis_host": "r"}}),
        ),
        (Plugins, json!({"name": "jwt", "route": {"id": SERVICE_ID}})),
        (
            Plugins,
            json!({"name": "http-log", "config": {"http_endpoint": "http://x/", "queue": {"max_batch_size": 5}}}),
        ),
        (
            Plugins,
            json!({"name": "ip-restriction", "config": {"deny": ["::1"]}}),
        ),
        (
            Plugins,
            json!({"name": "file-log", "config": {"path": "/tmp/x"}}),
        ),
        (Plugins, json!({"name": "prometheus"})),
    ];
    for (kind, input) in samples {
        let once = valid(kind, input);
        let twice = valid(kind, once.clone());
        assert_eq!(once, twice, "{kind:?}");
        assert_eq!(
            valid(kind, render_entity(kind, &once)),
            once,
            "{kind:?} rendered"
        );
        if kind != Plugins {
            assert_eq!(
                render_entity(kind, &once),
                once,
                "{kind:?} renders as stored"
            );
        }
    }
    let once = valid(Services, json!({"host": "a", "tags": ["a", "a", "b"]}));
    assert_eq!(once["tags"], json!(["a", "b"]));
    let once = valid(
        Plugins,
        json!({"name": "rate-limiting", "config": {"minute": 5.0}}),
    );
    assert_eq!(
        serde_json::to_string(&once["config"]["minute"]).unwrap(),
        "5",
        "whole numbers are stored as integers"
    );
}
