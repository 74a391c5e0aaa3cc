//! Racing writers: the database, not luck, decides who wins.

use crate::both_backends;
use crate::support::{Admin, Backend};
use axum::http::Method;
use std::sync::Arc;

async fn parallel_creates(backend: Backend) {
    let admin = Arc::new(Admin::new(backend).await);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let admin = admin.clone();
        tasks.push(tokio::spawn(async move {
            admin
                .form(Method::POST, "/consumers", &[("username", "racer")])
                .await
        }));
    }
    let mut created = 0;
    let mut conflicts = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status.as_u16() {
            201 => created += 1,
            409 => {
                assert_eq!(reply.body["code"], 5);
                assert_eq!(
                    reply.body["message"],
                    "UNIQUE violation detected on '{username=\"racer\"}'"
                );
                conflicts += 1
            }
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    assert_eq!((created, conflicts), (1, 49));
    assert_eq!(
        admin.version().await,
        1,
        "only the winner bumped the version"
    );
    assert_eq!(
        admin.get("/consumers").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
both_backends!(fifty_parallel_creates, parallel_creates);
