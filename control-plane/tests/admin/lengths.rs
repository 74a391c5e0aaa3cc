//! A value too long for the store's unique indexes is Kong's 400 field error,
//! never the database's refusal as a 500; the longest allowed value is stored.

use crate::both_backends;
use crate::support::{expect_status, Admin, Backend};
use axum::http::Method;
use serde_json::json;

async fn long_values(backend: Backend) {
    let admin = Admin::new(backend).await;
    let before = admin.version().await;
    let too_long = "x".repeat(3000);

    let reply = admin
        .form(
            Method::POST,
            "/services",
            &[("name", &too_long), ("url", "http://a.example")],
        )
        .await;
    expect_status(&reply, 400);
    assert_eq!(reply.body["code"], json!(2));
    assert_eq!(reply.body["name"], json!("schema violation"));
    assert_eq!(
        reply.body["fields"],
        json!({"name": "length must be at most 512"})
    );
    assert_eq!(
        reply.body["message"],
        json!("schema violation (name: length must be at most 512)")
    );

    let reply = admin
        .json(Method::PUT, &format!("/consumers/{too_long}"), json!({}))
        .await;
    expect_status(&reply, 400);
    assert_eq!(
        reply.body["fields"],
        json!({"username": "length must be at most 512"})
    );

    let reply = admin
        .json(
            Method::POST,
            "/consumers",
            json!({"username": "u", "tags": [too_long]}),
        )
        .await;
    expect_status(&reply, 400);
    assert_eq!(
        reply.body["fields"],
        json!({"tags": ["length must be at most 512"]})
    );

    let config = format!(
        "_format_version: \"3.0\"\nservices:\n- name: {too_long}\n  url: http://a.example\n"
    );
    let reply = admin
        .send(Method::POST, "/config", Some("application/x-yaml"), config)
        .await;
    expect_status(&reply, 400);
    assert_eq!(
        reply.body["fields"]["services"][0]["name"],
        json!("length must be at most 512")
    );
    assert_eq!(admin.version().await, before, "nothing was written");

    // The longest allowed values fit the indexes on both backends.
    let longest = "é".repeat(256);
    let reply = admin
        .json(
            Method::POST,
            "/consumers",
            json!({"username": longest, "custom_id": "c".repeat(512)}),
        )
        .await;
    expect_status(&reply, 201);
    let reply = admin
        .json(
            Method::POST,
            "/services",
            json!({"name": "s".repeat(512), "url": "http://a.example", "tags": ["t".repeat(512)]}),
        )
        .await;
    expect_status(&reply, 201);
    let reply = admin.get(&format!("/consumers/{longest}")).await;
    expect_status(&reply, 200);
}
both_backends!(too_long_values_are_field_errors, long_values);
