//! Details schemathesis checks: `Allow` on 405, bytes that are not UTF-8 are a
//! 400 (never stored as U+FFFD), `PUT /consumers/{x}` lets the path win over
//! the body's `username` as Kong does, and an empty `offset=` is Kong's 400.

use crate::both_backends;
use crate::support::{expect_status, Admin, Backend};
use axum::body::Body;
use axum::http::{header, Method, Request};
use serde_json::json;

async fn method_not_allowed(backend: Backend) {
    let admin = Admin::new(backend).await;
    let cases = [
        (Method::DELETE, "/services", "GET, HEAD, OPTIONS, POST"),
        (Method::POST, "/status", "GET, HEAD, OPTIONS"),
        (
            Method::DELETE,
            "/routes/r/service",
            "GET, HEAD, OPTIONS, PATCH, PUT",
        ),
    ];
    for (method, path, allow) in cases {
        let reply = admin.send(method.clone(), path, None, "").await;
        expect_status(&reply, 405);
        assert_eq!(reply.body, json!({"message": "Method not allowed"}));
        assert_eq!(
            reply
                .headers
                .get(header::ALLOW)
                .map(|v| v.to_str().unwrap()),
            Some(allow),
            "{method} {path}"
        );
    }
}
both_backends!(
    method_not_allowed_names_the_allowed_methods,
    method_not_allowed
);

async fn invalid_utf8(backend: Backend) {
    let admin = Admin::new(backend).await;
    let before = admin.version().await;
    let form = |body: &'static [u8]| {
        Request::builder()
            .method(Method::POST)
            .uri("/consumers")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    };
    for body in [
        &b"username=%FF%FE"[..],
        &b"username=\xff\xfe"[..],
        &b"%FF=x"[..],
    ] {
        let reply = admin.request(form(body)).await;
        expect_status(&reply, 400);
        assert_eq!(
            reply.body,
            json!({"message": "Invalid UTF-8 in the request body"})
        );
    }
    let multipart = Request::builder()
        .method(Method::POST)
        .uri("/consumers")
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=XyZ")
        .body(Body::from(
            &b"--XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n\xff\r\n--XyZ--\r\n"[..],
        ))
        .unwrap();
    let reply = admin.request(multipart).await;
    expect_status(&reply, 400);
    assert_eq!(
        reply.body,
        json!({"message": "Invalid UTF-8 in the request body"})
    );

    let reply = admin
        .json(Method::PUT, "/consumers/%FF%FE", json!({}))
        .await;
    expect_status(&reply, 400);
    assert_eq!(
        reply.body,
        json!({"message": "Invalid UTF-8 in the request path"})
    );
    let reply = admin.get("/services?tags=%FF").await;
    expect_status(&reply, 400);
    assert_eq!(
        reply.body,
        json!({"message": "Invalid UTF-8 in the query string"})
    );
    assert_eq!(admin.version().await, before, "nothing was stored");

    // Well-formed UTF-8, percent-encoded or not, is kept as sent.
    let reply = admin
        .form(Method::POST, "/consumers", &[("username", "zoë\u{fffd}")])
        .await;
    expect_status(&reply, 201);
    assert_eq!(reply.body["username"], json!("zoë\u{fffd}"));
    let reply = admin.get("/consumers/zo%C3%AB%EF%BF%BD").await;
    expect_status(&reply, 200);
}
both_backends!(invalid_utf8_is_a_400, invalid_utf8);

async fn put_path_wins(backend: Backend) {
    let admin = Admin::new(backend).await;
    // Kong's upsert_by_username writes the path's value over the body's.
    let reply = admin
        .json(Method::PUT, "/consumers/alice", json!({"username": "bob"}))
        .await;
    expect_status(&reply, 200);
    assert_eq!(reply.body["username"], json!("alice"));
    let id = reply.body["id"].clone();
    expect_status(&admin.get("/consumers/bob").await, 404);

    // Even a body value of the wrong type is replaced, not validated.
    let reply = admin
        .json(
            Method::PUT,
            "/consumers/alice",
            json!({"username": {}, "custom_id": "c1"}),
        )
        .await;
    expect_status(&reply, 200);
    assert_eq!(reply.body["username"], json!("alice"));
    assert_eq!(reply.body["custom_id"], json!("c1"));
    assert_eq!(reply.body["id"], id, "replaced in place");

    // By id, the body's username renames; taking another's name is Kong's 409.
    expect_status(
        &admin
            .json(Method::POST, "/consumers", json!({"username": "carol"}))
            .await,
        201,
    );
    let by_id = format!("/consumers/{}", id.as_str().unwrap());
    let reply = admin
        .json(Method::PUT, &by_id, json!({"username": "carol"}))
        .await;
    expect_status(&reply, 409);
    assert_eq!(reply.body["code"], json!(5));
    let reply = admin
        .json(Method::PUT, &by_id, json!({"username": "dave"}))
        .await;
    expect_status(&reply, 200);
    assert_eq!(reply.body["username"], json!("dave"));
}
both_backends!(put_consumer_path_wins_over_body, put_path_wins);

async fn empty_offset(backend: Backend) {
    let admin = Admin::new(backend).await;
    for path in [
        "/services?offset=",
        "/consumers?size=10&offset=",
        "/tags?offset=",
        "/audit?offset=",
    ] {
        let reply = admin.get(path).await;
        expect_status(&reply, 400);
        assert_eq!(
            reply.body,
            json!({"code": 7, "name": "invalid offset",
                   "message": "'' is not a valid offset: bad json encoding"}),
            "{path}"
        );
    }
}
both_backends!(empty_offset_is_kong_invalid_offset, empty_offset);

/// The document lists the 400, 413 and 415 answers the API gives, and the
/// request bodies it really accepts.
async fn openapi_answers(backend: Backend) {
    let admin = Admin::new(backend).await;
    let doc = admin.get("/openapi.json").await.body;
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();

    let reply = admin
        .send(Method::POST, "/services", Some("text/plain"), "host=a")
        .await;
    expect_status(&reply, 415);
    assert_eq!(reply.text, "");
    for (path, method) in [
        ("/services", "post"),
        ("/services/{service}", "put"),
        ("/services/{service}", "patch"),
        ("/routes/{route}/service", "patch"),
        ("/config", "post"),
        ("/schemas/{entity}/validate", "post"),
    ] {
        let responses = &op(path, method)["responses"];
        for status in ["400", "413", "415"] {
            assert!(
                responses[status].is_object(),
                "{method} {path} lacks {status}"
            );
        }
    }
    assert!(op("/services", "get")["responses"]["415"].is_null());
    let reply = admin.get("/services?size=x").await;
    expect_status(&reply, 400);
    assert!(op("/services", "get")["responses"]["400"].is_object());

    let offset = op("/services", "get")["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "offset")
        .cloned()
        .unwrap();
    assert_eq!(offset["schema"]["minLength"], json!(1));

    let body_schema = |path: &str, method: &str| {
        op(path, method)["requestBody"]["content"]["application/json"]["schema"].clone()
    };
    // Nested: the path supplies the consumer.
    let nested = body_schema("/consumers/{consumer}/jwt", "post");
    assert!(nested["properties"]["key"].is_object());
    assert!(!nested["required"]
        .as_array()
        .is_some_and(|r| r.contains(&json!("consumer"))));
    assert_eq!(
        body_schema("/jwts", "post"),
        json!({"$ref": "#/components/schemas/JwtSecrets"})
    );
    // PATCH is partial; PUT by name takes the name from the path.
    assert!(body_schema("/services/{service}", "patch")["required"].is_null());
    assert_eq!(
        doc["components"]["schemas"]["Certificates"]["properties"]["snis"]["items"],
        json!({"type": "string"})
    );
    let put_sni = body_schema("/snis/{sni}", "put");
    assert!(!put_sni["required"]
        .as_array()
        .is_some_and(|r| r.contains(&json!("name"))));
}
both_backends!(openapi_documents_real_answers, openapi_answers);

/// `POST /certificates` with Kong's `snis` shorthand creates the SNIs with
/// the certificate, all or nothing.
async fn certificate_snis(backend: Backend) {
    let admin = Admin::new(backend).await;
    let generated = rcgen::generate_simple_self_signed(vec!["a.example".to_string()]).unwrap();
    let cert = generated.cert.pem();
    let key = generated.signing_key.serialize_pem();

    let reply = admin
        .json(
            Method::POST,
            "/certificates",
            json!({"cert": cert, "key": key, "snis": ["b.example", "a.example"]}),
        )
        .await;
    expect_status(&reply, 201);
    assert_eq!(reply.body["snis"], json!(["a.example", "b.example"]));
    let cert_id = reply.body["id"].as_str().unwrap().to_string();
    let snis = admin.get(&format!("/certificates/{cert_id}/snis")).await;
    let mut names: Vec<&str> = snis.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["a.example", "b.example"]);

    // A form's repeated or single `snis`, like curl -d.
    let reply = admin
        .form(
            Method::POST,
            "/certificates",
            &[("cert", &cert), ("key", &key), ("snis", "c.example")],
        )
        .await;
    expect_status(&reply, 201);
    assert_eq!(reply.body["snis"], json!(["c.example"]));
    // Without the shorthand the answer is unchanged.
    let reply = admin
        .form(
            Method::POST,
            "/certificates",
            &[("cert", &cert), ("key", &key)],
        )
        .await;
    expect_status(&reply, 201);
    assert!(reply.body.get("snis").is_none());

    let before = admin.version().await;
    let certificates = admin.get("/certificates").await.body["data"]
        .as_array()
        .unwrap()
        .len();
    let refused = [
        (
            json!(["d.example", "d.example"]),
            json!("d.example is duplicated"),
        ),
        (
            json!(["e.example", "a.example"]),
            json!(format!(
                "a.example already associated with existing certificate '{cert_id}'"
            )),
        ),
        (json!(42), json!("expected an array")),
    ];
    for (snis, message) in refused {
        let reply = admin
            .json(
                Method::POST,
                "/certificates",
                json!({"cert": cert, "key": key, "snis": snis}),
            )
            .await;
        expect_status(&reply, 400);
        assert_eq!(reply.body["fields"]["snis"], message, "{}", reply.text);
    }
    // An invalid name fails as the SNI entity would, and takes the certificate with it.
    let reply = admin
        .json(
            Method::POST,
            "/certificates",
            json!({"cert": cert, "key": key, "snis": ["f.example", "10.0.0.1"]}),
        )
        .await;
    expect_status(&reply, 400);
    assert_eq!(reply.body["code"], json!(2));
    assert_eq!(admin.version().await, before, "nothing was written");
    assert_eq!(
        admin.get("/certificates").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        certificates
    );
    expect_status(&admin.get("/snis/f.example").await, 404);
}
both_backends!(certificate_snis_shorthand, certificate_snis);

/// Found by schemathesis: an explicit `null` in a defaulted field was stored
/// as `null`, which the typed configuration cannot hold, so `GET /config`
/// (and every snapshot build) failed with a 500. It now takes the default.
async fn null_takes_the_default(backend: Backend) {
    let admin = Admin::new(backend).await;
    let reply = admin
        .form(
            Method::POST,
            "/services",
            &[("name", "s"), ("host", "a.example"), ("retries", "")],
        )
        .await;
    expect_status(&reply, 201);
    assert_eq!(reply.body["retries"], json!(5));
    let reply = admin
        .json(
            Method::PATCH,
            "/services/s",
            json!({"connect_timeout": null, "read_timeout": 5}),
        )
        .await;
    expect_status(&reply, 200);
    assert_eq!(reply.body["connect_timeout"], json!(60000));
    assert_eq!(reply.body["read_timeout"], json!(5));
    expect_status(
        &admin
            .json(Method::POST, "/consumers", json!({"username": "u"}))
            .await,
        201,
    );
    let reply = admin
        .json(
            Method::PUT,
            "/consumers/u/jwt/k1",
            json!({"algorithm": null}),
        )
        .await;
    expect_status(&reply, 200);
    assert_eq!(reply.body["algorithm"], json!("HS256"));
    let reply = admin
        .json(
            Method::POST,
            "/routes",
            json!({"paths": ["/a"], "regex_priority": null, "path_handling": null}),
        )
        .await;
    expect_status(&reply, 201);
    assert_eq!(reply.body["regex_priority"], json!(0));
    assert_eq!(reply.body["path_handling"], json!("v0"));
    expect_status(&admin.get("/config").await, 200);
}
both_backends!(
    null_in_a_defaulted_field_takes_the_default,
    null_takes_the_default
);
