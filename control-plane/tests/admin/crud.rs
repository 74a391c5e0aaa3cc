//! Method semantics: PUT upserts, PATCH merges, DELETE, nested scoping,
//! parent-through-child endpoints, cascades, pagination and tags.

use crate::both_backends;
use crate::support::{expect_status, Admin, Backend};
use axum::http::Method;
use serde_json::{json, Value};

async fn put_and_patch(backend: Backend) {
    let admin = Admin::new(backend).await;
    // PUT by name creates, with the path written into the endpoint key
    let created = admin
        .json(
            Method::PUT,
            "/services/billing",
            json!({"name": "ignored", "host": "a.example", "retries": 3}),
        )
        .await;
    expect_status(&created, 200);
    assert_eq!(created.body["name"], "billing");
    assert_eq!(created.body["retries"], 3);
    let id = created.body["id"].as_str().unwrap().to_string();

    // PUT again replaces the whole entity: same id, omitted fields back to defaults
    let replaced = admin
        .form(Method::PUT, "/services/billing", &[("host", "b.example")])
        .await;
    expect_status(&replaced, 200);
    assert_eq!(replaced.body["id"], id.as_str());
    assert_eq!(replaced.body["host"], "b.example");
    assert_eq!(replaced.body["retries"], 5);

    // PUT by UUID creates with that id
    let uuid = "5b1c8b3e-9a1f-4f0e-8a5d-2c7e1f3b4a6d";
    let by_id = admin
        .json(
            Method::PUT,
            &format!("/consumers/{uuid}"),
            json!({"username": "carol"}),
        )
        .await;
    expect_status(&by_id, 200);
    assert_eq!(by_id.body["id"], uuid);
    expect_status(&admin.get("/consumers/carol").await, 200);

    // PATCH changes only what it names; records merge, arrays are replaced
    let plugin = admin
        .form(
            Method::POST,
            "/services/billing/plugins",
            &[
                ("name", "ip-restriction"),
                ("config.deny[]", "10.0.0.1"),
                ("config.deny[]", "10.0.0.2"),
                ("config.status", "451"),
                ("tags[]", "a"),
                ("tags[]", "b"),
            ],
        )
        .await;
    expect_status(&plugin, 201);
    let plugin_id = plugin.body["id"].as_str().unwrap().to_string();
    let patched = admin
        .form(
            Method::PATCH,
            &format!("/plugins/{plugin_id}"),
            &[("config.deny[]", "10.0.0.3"), ("tags[]", "c")],
        )
        .await;
    expect_status(&patched, 200);
    assert_eq!(patched.body["config"]["deny"], json!(["10.0.0.3"]));
    assert_eq!(patched.body["config"]["status"], 451);
    assert_eq!(patched.body["tags"], json!(["c"]));
    assert_eq!(patched.body["name"], "ip-restriction");
    assert!(
        patched.body["updated_at"].as_i64().unwrap() >= plugin.body["updated_at"].as_i64().unwrap()
    );
    assert_eq!(patched.body["created_at"], plugin.body["created_at"]);

    // PATCH re-validates the merged entity: without `deny` it has neither list
    let bad = admin
        .json(
            Method::PATCH,
            &format!("/plugins/{plugin_id}"),
            json!({"config": {"deny": null}}),
        )
        .await;
    expect_status(&bad, 400);
    assert_eq!(bad.body["code"], 2);
    assert_eq!(
        admin.get(&format!("/plugins/{plugin_id}")).await.body["config"]["deny"],
        json!(["10.0.0.3"]),
        "a refused PATCH changes nothing"
    );

    // rename by PATCH, then the old name is gone
    let renamed = admin
        .json(
            Method::PATCH,
            "/services/billing",
            json!({"name": "invoices"}),
        )
        .await;
    expect_status(&renamed, 200);
    expect_status(&admin.get("/services/billing").await, 404);
    expect_status(&admin.get(&format!("/services/{id}")).await, 200);

    // DELETE answers 204 whether or not the entity exists
    expect_status(&admin.delete("/consumers/carol").await, 204);
    expect_status(&admin.delete("/consumers/carol").await, 204);
    expect_status(&admin.get("/consumers/carol").await, 404);
}
both_backends!(put_patch_delete, put_and_patch);

async fn nested_and_parents(backend: Backend) {
    let admin = Admin::new(backend).await;
    for name in ["s1", "s2"] {
        let s = admin
            .form(
                Method::POST,
                "/services",
                &[("name", name), ("host", "h.example")],
            )
            .await;
        expect_status(&s, 201);
    }
    let route = admin
        .form(
            Method::POST,
            "/services/s1/routes",
            &[("name", "r1"), ("paths", "/one")],
        )
        .await;
    expect_status(&route, 201);
    assert_eq!(route.body["paths"], json!(["/one"]));

    // a child is visible only under its own parent
    expect_status(&admin.get("/services/s1/routes/r1").await, 200);
    expect_status(&admin.get("/services/s2/routes/r1").await, 404);
    assert_eq!(
        admin.get("/services/s2/routes").await.body["data"],
        json!([])
    );
    assert_eq!(
        admin.get("/services/s1/routes").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // the parent through the child
    let parent = admin.get("/routes/r1/service").await;
    expect_status(&parent, 200);
    assert_eq!(parent.body["name"], "s1");
    let patched = admin
        .form(Method::PATCH, "/routes/r1/service", &[("retries", "2")])
        .await;
    expect_status(&patched, 200);
    assert_eq!(admin.get("/services/s1").await.body["retries"], 2);

    // move the route by reference name
    let moved = admin
        .form(Method::PATCH, "/routes/r1", &[("service.name", "s2")])
        .await;
    expect_status(&moved, 200);
    assert_eq!(
        moved.body["service"]["id"],
        admin.get("/services/s2").await.body["id"]
    );
    expect_status(&admin.delete("/services/s1").await, 204);

    // trailing slash, HEAD and OPTIONS
    expect_status(&admin.get("/services/s2/routes/").await, 200);
    let head = admin.send(Method::HEAD, "/services", None, "").await;
    expect_status(&head, 200);
    let options = admin.send(Method::OPTIONS, "/services/s2", None, "").await;
    expect_status(&options, 204);
    assert_eq!(
        options.headers["allow"],
        "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"
    );

    // credentials under a consumer, and their consumer
    expect_status(
        &admin
            .form(Method::POST, "/consumers", &[("username", "dave")])
            .await,
        201,
    );
    let jwt = admin
        .form(
            Method::POST,
            "/consumers/dave/jwt",
            &[("key", "dave-key"), ("secret", "s3cr3t")],
        )
        .await;
    expect_status(&jwt, 201);
    assert_eq!(
        admin.get("/jwts/dave-key/consumer").await.body["username"],
        "dave"
    );
    assert_eq!(
        admin.get("/consumers/dave/jwt/dave-key").await.body["key"],
        "dave-key"
    );
    assert_eq!(
        admin.get("/jwts").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // custom_id search
    expect_status(
        &admin
            .form(Method::POST, "/consumers", &[("custom_id", "ext-9")])
            .await,
        201,
    );
    let found = admin.get("/consumers?custom_id=ext-9").await;
    expect_status(&found, 200);
    assert_eq!(found.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(found.body["next"], Value::Null);
    assert_eq!(
        admin.get("/consumers?custom_id=none").await.body["data"],
        json!([])
    );
}
both_backends!(nested_endpoints, nested_and_parents);

async fn cascades(backend: Backend) {
    let admin = Admin::new(backend).await;
    expect_status(
        &admin
            .form(
                Method::POST,
                "/services",
                &[("name", "svc"), ("host", "h.example")],
            )
            .await,
        201,
    );
    expect_status(
        &admin
            .form(
                Method::POST,
                "/services/svc/routes",
                &[("name", "r"), ("paths[]", "/r")],
            )
            .await,
        201,
    );
    expect_status(
        &admin
            .form(Method::POST, "/consumers", &[("username", "erin")])
            .await,
        201,
    );
    expect_status(
        &admin
            .send(Method::POST, "/consumers/erin/jwt", None, "")
            .await,
        201,
    );
    expect_status(
        &admin
            .send(Method::POST, "/consumers/erin/jwt", None, "")
            .await,
        201,
    );
    expect_status(
        &admin
            .form(
                Method::POST,
                "/consumers/erin/plugins",
                &[("name", "ip-restriction"), ("config.deny[]", "10.0.0.1")],
            )
            .await,
        201,
    );
    expect_status(
        &admin
            .form(
                Method::POST,
                "/routes/r/plugins",
                &[("name", "ip-restriction"), ("config.deny[]", "10.0.0.2")],
            )
            .await,
        201,
    );
    // the same plugin twice on one scope clashes
    let clash = admin
        .form(
            Method::POST,
            "/routes/r/plugins",
            &[("name", "ip-restriction"), ("config.deny[]", "10.0.0.3")],
        )
        .await;
    expect_status(&clash, 409);
    assert_eq!(clash.body["code"], 5);
    assert!(clash.body["message"].as_str().unwrap().starts_with(
        "UNIQUE violation detected on '{consumer=null,name=\"ip-restriction\",route={id="
    ));

    expect_status(&admin.delete("/consumers/erin").await, 204);
    assert_eq!(admin.get("/jwts").await.body["data"], json!([]));
    assert_eq!(
        admin.get("/plugins").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    expect_status(&admin.delete("/routes/r").await, 204);
    assert_eq!(admin.get("/plugins").await.body["data"], json!([]));
    expect_status(&admin.delete("/services/svc").await, 204);
}
both_backends!(delete_cascades, cascades);

async fn pages_and_tags(backend: Backend) {
    let admin = Admin::new(backend).await;
    for i in 0..7 {
        let tags: &[&str] = match i % 3 {
            0 => &["red", "big"],
            1 => &["red"],
            _ => &["blue"],
        };
        let mut pairs: Vec<(&str, &str)> = tags.iter().map(|t| ("tags[]", *t)).collect();
        let name = format!("user-{i}");
        pairs.push(("username", &name));
        expect_status(&admin.form(Method::POST, "/consumers", &pairs).await, 201);
    }
    let mut seen = Vec::new();
    let mut path = "/consumers?size=3".to_string();
    let mut pages = 0;
    loop {
        let page = admin.get(&path).await;
        expect_status(&page, 200);
        pages += 1;
        for item in page.body["data"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match page.body["next"].as_str() {
            Some(next) => {
                assert!(page.body["offset"].is_string());
                assert!(next.starts_with("/consumers?offset="));
                assert!(next.ends_with("&size=3"));
                path = next.to_string();
            }
            None => {
                assert!(page.body.get("offset").is_none(), "last page has no offset");
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "ordered by id");

    let count = |body: &Value| body["data"].as_array().unwrap().len();
    assert_eq!(count(&admin.get("/consumers?tags=red").await.body), 5);
    assert_eq!(count(&admin.get("/consumers?tags=red,big").await.body), 3);
    assert_eq!(count(&admin.get("/consumers?tags=big/blue").await.body), 5);
    assert_eq!(count(&admin.get("/consumers?tags=green").await.body), 0);
    let tagged = admin.get("/consumers?tags=red&size=2").await;
    assert!(tagged.body["next"]
        .as_str()
        .unwrap()
        .contains("&tags=red&size=2"));

    // /tags: one row per (tag, entity)
    let red = admin.get("/tags/red").await;
    expect_status(&red, 200);
    assert_eq!(count(&red.body), 5);
    assert_eq!(red.body["data"][0]["entity_name"], "consumers");
    let mut rows = 0;
    let mut path = "/tags?size=4".to_string();
    loop {
        let page = admin.get(&path).await;
        expect_status(&page, 200);
        rows += count(&page.body);
        match page.body["next"].as_str() {
            Some(next) => path = format!("{next}&size=4"),
            None => break,
        }
    }
    assert_eq!(rows, 10);
}
both_backends!(pagination_and_tags, pages_and_tags);

/// `curl -F cert=@cert.pem -F key=@key.pem`: a multipart body with file parts.
fn multipart(parts: &[(&str, &str)]) -> (String, String) {
    let boundary = "tollgate-test-boundary";
    let mut body = String::new();
    for (name, value) in parts {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.pem\"\r\nContent-Type: application/octet-stream\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn certificates_and_snis(backend: Backend) {
    let admin = Admin::new(backend).await;
    let generated =
        rcgen::generate_simple_self_signed(vec!["api.example.com".to_string()]).unwrap();
    let cert_pem = generated.cert.pem();
    let key_pem = generated.signing_key.serialize_pem();
    let (content_type, body) = multipart(&[("cert", &cert_pem), ("key", &key_pem)]);
    let cert = admin
        .send(Method::POST, "/certificates", Some(&content_type), body)
        .await;
    expect_status(&cert, 201);
    let cert_id = cert.body["id"].as_str().unwrap().to_string();
    assert_eq!(cert.body["cert"].as_str().unwrap().trim(), cert_pem.trim());

    let sni = admin
        .form(
            Method::POST,
            &format!("/certificates/{cert_id}/snis"),
            &[("name", "api.example.com")],
        )
        .await;
    expect_status(&sni, 201);
    assert_eq!(sni.body["certificate"], json!({"id": cert_id}));
    assert_eq!(
        admin.get("/snis/api.example.com/certificate").await.body["id"],
        cert_id.as_str()
    );
    assert_eq!(
        admin
            .get(&format!("/certificates/{cert_id}/snis"))
            .await
            .body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let clash = admin
        .form(
            Method::POST,
            "/snis",
            &[("name", "api.example.com"), ("certificate.id", &cert_id)],
        )
        .await;
    expect_status(&clash, 409);

    // a certificate has no name: only its id addresses it
    expect_status(&admin.get("/certificates/api.example.com").await, 404);
    expect_status(
        &admin.delete(&format!("/certificates/{cert_id}")).await,
        204,
    );
    assert_eq!(
        admin.get("/snis").await.body["data"],
        json!([]),
        "snis cascade"
    );
    let audit = admin.get("/audit").await;
    assert!(
        !audit.text.contains("PRIVATE KEY"),
        "private keys are redacted"
    );
}
both_backends!(certificates_with_snis, certificates_and_snis);
