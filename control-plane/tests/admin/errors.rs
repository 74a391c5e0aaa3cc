//! Every error the Admin API answers, with Kong's status, code and body; and
//! the rule that a failed request changes nothing.

use crate::both_backends;
use crate::support::{expect_status, Admin, Backend, Reply};
use axum::http::Method;
use serde_json::{json, Value};

enum Body {
    None,
    Json(Value),
    Raw(&'static str, String),
    Form(Vec<(&'static str, &'static str)>),
}

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    body: Body,
    status: u16,
    /// Fields the response body must contain (or, for `Null`, an empty body).
    expect: Value,
}

async fn send(admin: &Admin, case: &Case) -> Reply {
    match &case.body {
        Body::None => admin.send(case.method.clone(), case.path, None, "").await,
        Body::Json(v) => admin.json(case.method.clone(), case.path, v.clone()).await,
        Body::Raw(ct, text) => {
            admin
                .send(case.method.clone(), case.path, Some(ct), text.clone())
                .await
        }
        Body::Form(pairs) => admin.form(case.method.clone(), case.path, pairs).await,
    }
}

fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        _ => actual == expected,
    }
}

async fn error_table(backend: Backend) {
    let admin = Admin::new(backend).await;
    expect_status(
        &admin
            .form(
                Method::POST,
                "/services",
                &[("name", "svc"), ("url", "http://a.example")],
            )
            .await,
        201,
    );
    expect_status(
        &admin
            .form(
                Method::POST,
                "/services/svc/routes",
                &[("name", "r1"), ("paths[]", "/a")],
            )
            .await,
        201,
    );
    expect_status(
        &admin
            .form(Method::POST, "/consumers", &[("username", "bob")])
            .await,
        201,
    );
    let version = admin.version().await;

    let cases = vec![
        Case {
            name: "schema violation lists every field",
            method: Method::POST,
            path: "/services",
            body: Body::Json(json!({"name": "x", "port": "80", "protocol": "gopher"})),
            status: 400,
            expect: json!({"code": 2, "name": "schema violation", "fields": {"host": "required field missing", "port": "expected an integer"}}),
        },
        Case {
            name: "unknown field",
            method: Method::POST,
            path: "/consumers",
            body: Body::Json(json!({"username": "x", "foo": 1})),
            status: 400,
            expect: json!({"code": 2, "message": "schema violation (foo: unknown field)"}),
        },
        Case {
            name: "consumer needs username or custom_id",
            method: Method::POST,
            path: "/consumers",
            body: Body::None,
            status: 400,
            expect: json!({"code": 2, "fields": {"@entity": ["at least one of these fields must be non-empty: 'custom_id', 'username'"]}}),
        },
        Case {
            name: "unknown plugin",
            method: Method::POST,
            path: "/plugins",
            body: Body::Form(vec![("name", "hmac-auth")]),
            status: 400,
            expect: json!({"code": 2, "fields": {"name": "plugin 'hmac-auth' not enabled; add it to the 'plugins' configuration property"}}),
        },
        Case {
            name: "unknown entity",
            method: Method::GET,
            path: "/services/nope",
            body: Body::None,
            status: 404,
            expect: json!({"message": "Not found"}),
        },
        Case {
            name: "unknown path",
            method: Method::GET,
            path: "/nothing/here",
            body: Body::None,
            status: 404,
            expect: json!({"message": "Not found"}),
        },
        Case {
            name: "nested parent missing",
            method: Method::POST,
            path: "/services/nope/routes",
            body: Body::Form(vec![("paths[]", "/x")]),
            status: 404,
            expect: json!({"message": "Not found"}),
        },
        Case {
            name: "method not allowed on a collection",
            method: Method::DELETE,
            path: "/services",
            body: Body::None,
            status: 405,
            expect: json!({"message": "Method not allowed"}),
        },
        Case {
            name: "delete a parent through its child",
            method: Method::DELETE,
            path: "/routes/r1/service",
            body: Body::None,
            status: 405,
            expect: json!({"message": "Method not allowed"}),
        },
        Case {
            name: "unique violation",
            method: Method::POST,
            path: "/consumers",
            body: Body::Form(vec![("username", "bob")]),
            status: 409,
            expect: json!({"code": 5, "name": "unique constraint violation", "message": "UNIQUE violation detected on '{username=\"bob\"}'", "fields": {"username": "bob"}}),
        },
        Case {
            name: "unsupported media type",
            method: Method::POST,
            path: "/services",
            body: Body::Raw("text/plain", "name=x".into()),
            status: 415,
            expect: Value::Null,
        },
        Case {
            name: "body over 1 MiB",
            method: Method::POST,
            path: "/consumers",
            body: Body::Raw(
                "application/json",
                format!("{{\"username\":\"{}\"}}", "a".repeat(1024 * 1024)),
            ),
            status: 413,
            expect: json!({"message": "Request body too large"}),
        },
        Case {
            name: "unparsable JSON",
            method: Method::POST,
            path: "/services",
            body: Body::Raw("application/json", "{\"name\": ".into()),
            status: 400,
            expect: json!({"message": "Cannot parse JSON body"}),
        },
        Case {
            name: "delete a service routes use",
            method: Method::DELETE,
            path: "/services/svc",
            body: Body::None,
            status: 400,
            expect: json!({"code": 4, "name": "foreign key violation", "message": "an existing 'routes' entity references this 'services' entity", "fields": {"@referenced_by": "routes"}}),
        },
        Case {
            name: "reference to a missing service",
            method: Method::POST,
            path: "/routes",
            body: Body::Json(
                json!({"paths": ["/b"], "service": {"id": "7c4e3b5a-1b0e-4d89-9a53-0d1e2f3a4b5c"}}),
            ),
            status: 400,
            expect: json!({"code": 4, "message": "the foreign key '{id=\"7c4e3b5a-1b0e-4d89-9a53-0d1e2f3a4b5c\"}' does not reference an existing 'services' entity.", "fields": {"service": {"id": "7c4e3b5a-1b0e-4d89-9a53-0d1e2f3a4b5c"}}}),
        },
        Case {
            name: "reference by name to a missing service",
            method: Method::POST,
            path: "/routes",
            body: Body::Form(vec![("paths[]", "/b"), ("service.name", "ghost")]),
            status: 400,
            expect: json!({"code": 4, "fields": {"service": {"name": "ghost"}}}),
        },
        Case {
            name: "size not a number",
            method: Method::GET,
            path: "/services?size=abc",
            body: Body::None,
            status: 400,
            expect: json!({"code": 9, "name": "invalid size", "message": "size must be a number"}),
        },
        Case {
            name: "size out of range",
            method: Method::GET,
            path: "/services?size=1001",
            body: Body::None,
            status: 400,
            expect: json!({"code": 9, "message": "size must be an integer between 1 and 1000"}),
        },
        Case {
            name: "offset not base64",
            method: Method::GET,
            path: "/consumers?offset=%25%25",
            body: Body::None,
            status: 400,
            expect: json!({"code": 7, "name": "invalid offset", "message": "'%%' is not a valid offset: bad base64 encoding"}),
        },
        Case {
            name: "too many tags",
            method: Method::GET,
            path: "/services?tags=a,b,c,d,e,f",
            body: Body::None,
            status: 400,
            expect: json!({"code": 11, "name": "invalid options", "options": {"tags": "cannot query more than 5 tags"}}),
        },
        Case {
            name: "mixed tag operators",
            method: Method::GET,
            path: "/services?tags=a,b/c",
            body: Body::None,
            status: 400,
            expect: json!({"code": 11, "options": {"tags": "invalid filter syntax"}}),
        },
        Case {
            name: "patch of a missing entity",
            method: Method::PATCH,
            path: "/consumers/ghost",
            body: Body::Form(vec![("custom_id", "x")]),
            status: 404,
            expect: json!({"code": 6, "name": "not found", "message": "could not find the entity with '{username=\"ghost\"}'"}),
        },
        Case {
            name: "patch of a missing id",
            method: Method::PATCH,
            path: "/services/3f1f8a4e-0c53-4bd4-9c4b-2f0d6f0f8c11",
            body: Body::Json(json!({"retries": 1})),
            status: 404,
            expect: json!({"code": 6, "message": "could not find the entity with primary key '{id=\"3f1f8a4e-0c53-4bd4-9c4b-2f0d6f0f8c11\"}'"}),
        },
        Case {
            name: "empty custom_id search",
            method: Method::GET,
            path: "/consumers?custom_id=",
            body: Body::None,
            status: 400,
            expect: json!({"message": "custom_id must be an unempty string"}),
        },
        Case {
            name: "jwt plugin on a consumer",
            method: Method::POST,
            path: "/consumers/bob/plugins",
            body: Body::Form(vec![("name", "jwt")]),
            status: 400,
            expect: json!({"code": 2, "fields": {"consumer": "value must be null"}}),
        },
        Case {
            name: "two content types",
            method: Method::POST,
            path: "/consumers",
            body: Body::None,
            status: 400,
            expect: json!({"message": "Multiple Content-Type headers not allowed"}),
        },
    ];

    for case in &cases {
        let reply = if case.name == "two content types" {
            let request = axum::http::Request::builder()
                .method(Method::POST)
                .uri("/consumers")
                .header("content-type", "application/json")
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{\"username\":\"z\"}"))
                .unwrap();
            admin.request(request).await
        } else {
            send(&admin, case).await
        };
        assert_eq!(
            reply.status.as_u16(),
            case.status,
            "{}: {}",
            case.name,
            reply.text
        );
        if case.expect.is_null() {
            assert!(reply.text.is_empty(), "{}: body {}", case.name, reply.text);
        } else {
            assert!(
                contains(&reply.body, &case.expect),
                "{}: got {}",
                case.name,
                reply.text
            );
            assert_eq!(
                reply.headers["content-type"], "application/json; charset=utf-8",
                "{}",
                case.name
            );
        }
        assert_eq!(
            admin.version().await,
            version,
            "{} changed the config",
            case.name
        );
    }
    let audit = admin.get("/audit").await;
    assert_eq!(
        audit.body["data"].as_array().unwrap().len(),
        3,
        "failed requests are not audited"
    );
}
both_backends!(every_error_code, error_table);
