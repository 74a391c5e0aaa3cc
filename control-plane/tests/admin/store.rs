//! Store-level behaviour: versions, constraints, cascades, consistent reads.

use crate::both_backends;
use crate::support::{Backend, TestDb};
use serde_json::json;
use tollgate_control_plane::store::{AuditRecord, ListQuery, StoreError, TagFilter};
use tollgate_shared::EntityKind;

fn service(id: &str, name: &str, tags: &[&str]) -> serde_json::Value {
    json!({"id": id, "name": name, "host": "example.com", "created_at": 1, "updated_at": 1, "tags": tags})
}

async fn basics(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    assert_eq!(store.version().await.unwrap(), 0);
    let s1 = "00000000-0000-4000-8000-000000000001";
    let s2 = "00000000-0000-4000-8000-000000000002";
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.version(), 1);
    tx.insert(EntityKind::Services, &service(s1, "a", &["x", "y"]))
        .await
        .unwrap();
    tx.insert(EntityKind::Services, &service(s2, "b", &["y"]))
        .await
        .unwrap();
    tx.audit(AuditRecord {
        actor: "local".into(),
        method: "POST".into(),
        path: "/services".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(tx.commit().await.unwrap(), 1);
    assert_eq!(*store.subscribe().borrow(), 1);

    // unique clash: nothing written, version unchanged
    let mut tx = store.begin_write().await.unwrap();
    let err = tx
        .insert(
            EntityKind::Services,
            &service("00000000-0000-4000-8000-000000000003", "a", &[]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unique { .. }), "{err:?}");
    drop(tx);
    assert_eq!(store.version().await.unwrap(), 1);

    let found = store
        .find(EntityKind::Services, "b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found["id"], s2);
    let found = store
        .find(EntityKind::Services, &s1.to_uppercase())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found["name"], "a");

    let page = store
        .list(
            EntityKind::Services,
            &ListQuery {
                size: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.next_after.as_deref(), Some(s1));
    let page = store
        .list(
            EntityKind::Services,
            &ListQuery {
                size: 10,
                after: Some(s1.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.next_after.is_none());
    let tagged = |f: TagFilter| ListQuery {
        size: 10,
        tags: Some(f),
        ..Default::default()
    };
    let all = store
        .list(
            EntityKind::Services,
            &tagged(TagFilter::All(vec!["x".into(), "y".into()])),
        )
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);
    let any = store
        .list(
            EntityKind::Services,
            &tagged(TagFilter::Any(vec!["x".into(), "y".into()])),
        )
        .await
        .unwrap();
    assert_eq!(any.items.len(), 2);
    let none = store
        .list(
            EntityKind::Services,
            &tagged(TagFilter::All(vec!["X".into()])),
        )
        .await
        .unwrap();
    assert_eq!(none.items.len(), 0);

    // restrict: a route references s1
    let r1 = "00000000-0000-4000-8000-0000000000a1";
    let mut tx = store.begin_write().await.unwrap();
    tx.insert(
        EntityKind::Routes,
        &json!({"id": r1, "service": {"id": s1}, "paths": ["/a"], "created_at": 1}),
    )
    .await
    .unwrap();
    let err = tx
        .insert(EntityKind::Routes, &json!({"id": "00000000-0000-4000-8000-0000000000a2", "service": {"id": "00000000-0000-4000-8000-00000000ffff"}}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::MissingParent {
                parent: EntityKind::Services,
                ..
            }
        ),
        "{err:?}"
    );
    drop(tx);
    let mut tx = store.begin_write().await.unwrap();
    tx.insert(
        EntityKind::Routes,
        &json!({"id": r1, "service": {"id": s1}, "paths": ["/a"], "created_at": 1}),
    )
    .await
    .unwrap();
    let err = tx.delete(EntityKind::Services, s1).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "an existing 'routes' entity references this 'services' entity"
    );
    drop(tx);
    assert_eq!(store.version().await.unwrap(), 1);
    assert!(store.get(EntityKind::Routes, r1).await.unwrap().is_none());

    let audit = store.list_audit(None, 10).await.unwrap();
    assert_eq!(audit.0.len(), 1);
    assert_eq!(audit.0[0]["config_version"], 1);
}
both_backends!(store_basics, basics);

async fn cascade(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let c = "00000000-0000-4000-8000-0000000000c1";
    let mut tx = store.begin_write().await.unwrap();
    tx.insert(
        EntityKind::Consumers,
        &json!({"id": c, "username": "bob", "created_at": 1}),
    )
    .await
    .unwrap();
    tx.insert(EntityKind::JwtSecrets, &json!({"id": "00000000-0000-4000-8000-0000000000d1", "key": "k", "consumer": {"id": c}, "created_at": 1})).await.unwrap();
    tx.insert(EntityKind::Plugins, &json!({"id": "00000000-0000-4000-8000-0000000000e1", "name": "rate-limiting", "consumer": {"id": c}, "created_at": 1})).await.unwrap();
    let err = tx
        .insert(EntityKind::Plugins, &json!({"id": "00000000-0000-4000-8000-0000000000e2", "name": "rate-limiting", "consumer": {"id": c}, "route": null, "service": null}))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("UNIQUE violation detected on '{{consumer={{id=\"{c}\"}},name=\"rate-limiting\",route=null,service=null}}'")
    );
    tx.commit().await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx.delete(EntityKind::Consumers, c).await.unwrap());
    tx.commit().await.unwrap();
    let all = ListQuery {
        size: 10,
        ..Default::default()
    };
    assert!(store
        .list(EntityKind::JwtSecrets, &all)
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store
        .list(EntityKind::Plugins, &all)
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(store.version().await.unwrap(), 2);
}
both_backends!(store_cascade, cascade);

async fn concurrent_migrations(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            let store = tollgate_control_plane::store::Store::connect(
                &url,
                crate::support::test_store_options(),
            )
            .unwrap();
            store.migrate().await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(db.store().await.version().await.unwrap(), 0);
}
both_backends!(store_concurrent_migrations, concurrent_migrations);

/// A second control plane on the same PostgreSQL database learns of commits
/// through NOTIFY, without polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notifications_reach_other_control_planes() {
    let db = TestDb::new(Backend::Postgres).await;
    let writer = db.store().await;
    let follower = db.store().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut versions = follower.subscribe();
    let task = tokio::spawn({
        let follower = follower.clone();
        let shutdown = shutdown.clone();
        async move { follower.follow_notifications(shutdown).await }
    });
    for expected in 1..=3 {
        let mut tx = writer.begin_write().await.unwrap();
        tx.insert(
            EntityKind::Consumers,
            &json!({"id": uuid::Uuid::new_v4().to_string(), "username": format!("u{expected}"), "created_at": 1}),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            versions.wait_for(|v| *v >= expected),
        )
        .await
        .expect("notification within 10 s")
        .unwrap();
    }
    shutdown.cancel();
    task.await.unwrap();
}

async fn data_plane_rows(backend: Backend) {
    use tollgate_control_plane::store::DataPlaneRow;
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let row = |id: &str, cp: &str, seen: i64, version: u64| DataPlaneRow {
        id: id.into(),
        control_plane_id: cp.into(),
        last_seen_ms: seen,
        data: json!({"id": id, "config_version": version, "last_seen_ms": seen}),
    };
    store
        .save_data_planes(&[row("a", "cp1", 1_000, 1), row("b", "cp1", 1_000, 1)], 0)
        .await
        .unwrap();
    // A fresher report replaces the row; a staler one (a control plane the
    // node left behind) does not.
    store
        .save_data_planes(&[row("a", "cp2", 2_000, 2), row("b", "cp2", 500, 9)], 0)
        .await
        .unwrap();
    let rows = store.load_data_planes().await.unwrap();
    assert_eq!(
        rows,
        vec![row("a", "cp2", 2_000, 2), row("b", "cp1", 1_000, 1)]
    );
    // Rows not seen since the purge horizon go.
    store.save_data_planes(&[], 1_500).await.unwrap();
    let rows = store.load_data_planes().await.unwrap();
    assert_eq!(rows, vec![row("a", "cp2", 2_000, 2)]);
}
both_backends!(data_planes_persist, data_plane_rows);

/// A whole-config replacement checks its constraints against the config
/// itself (the tables are emptied first) and, failing, changes nothing.
async fn replace_all_constraints(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let valid = tollgate_shared::declarative::parse(
        r#"
_format_version: "3.0"
services:
  - name: a
    url: http://a.example
    routes: [{ name: ra, paths: [/a] }]
  - name: b
    url: http://b.example
consumers:
  - username: alice
    jwt_secrets: [{ key: k1, secret: s1 }]
"#,
    )
    .unwrap();
    let version = store
        .replace_all(&valid, AuditRecord::default())
        .await
        .unwrap();
    assert_eq!(store.load_config().await.unwrap().1.services.len(), 2);

    let mut same_name = valid.clone();
    same_name.services[1].name = same_name.services[0].name.clone();
    let mut orphan = valid.clone();
    orphan.consumers.clear();
    let mut same_id = valid.clone();
    same_id.services[1].id = same_id.services[0].id;
    let mut same_key = valid.clone();
    let mut second = same_key.jwt_secrets[0].clone();
    second.id = uuid::Uuid::new_v4();
    same_key.jwt_secrets.push(second);
    for (broken, expected) in [
        (same_name, "UNIQUE violation detected on '{name=\"a\"}'"),
        (same_key, "UNIQUE violation detected on '{key=\"k1\"}'"),
        (orphan, "the foreign key"),
        (same_id, "primary key violation"),
    ] {
        let err = store
            .replace_all(&broken, AuditRecord::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
    // Nothing of the failed replacements stuck.
    assert_eq!(store.version().await.unwrap(), version);
    let (_, config) = store.load_config().await.unwrap();
    assert_eq!(config.services.len(), 2);
    assert_eq!(config.jwt_secrets.len(), 1);
    assert_eq!(config.consumers.len(), 1);
}
both_backends!(replace_all_checks, replace_all_constraints);
