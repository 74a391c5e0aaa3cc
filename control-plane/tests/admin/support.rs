//! Test fixtures: a fresh database per test (PostgreSQL or SQLite), a store on
//! it, and the Admin API router driven in-process.
#![allow(dead_code)]

use sqlx::Connection;
use std::time::Duration;
use tollgate_control_plane::store::{Store, StoreOptions};

/// Where the test databases live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A database that exists for one test and is dropped afterwards.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    pg: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Postgres => {
                let admin = admin_database_url();
                let name = format!("tollgate_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connect to PostgreSQL (DATABASE_URL)");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                conn.close().await.ok();
                TestDb {
                    url: with_database(&admin, &name),
                    backend,
                    pg: Some((admin, name)),
                    _dir: None,
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("tollgate.db").display());
                TestDb {
                    url,
                    backend,
                    pg: None,
                    _dir: Some(dir),
                }
            }
        }
    }

    /// A migrated store on this database.
    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.url, test_store_options()).expect("store");
        store.migrate().await.expect("migrate");
        store
    }
}

pub fn test_store_options() -> StoreOptions {
    StoreOptions {
        max_connections: 8,
        acquire_timeout: Duration::from_secs(2),
        operation_timeout: Duration::from_secs(30),
        keyring: None,
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop runs outside any runtime we may block: use a private one.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// Runs one async test body against both backends.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body($crate::support::Backend::Postgres).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::support::Backend::Sqlite).await;
            }
        }
    };
}

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use tollgate_control_plane::settings::AdminToken;
use tollgate_control_plane::state::AppState;
use tower::ServiceExt;

/// The Admin API on a fresh database, driven in-process.
pub struct Admin {
    pub store: Store,
    pub state: Arc<AppState>,
    pub app: axum::Router,
    pub db: TestDb,
}

/// A response, its body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Admin {
    pub async fn new(backend: Backend) -> Admin {
        Admin::with_tokens(backend, &[]).await
    }

    pub async fn with_tokens(backend: Backend, tokens: &[&str]) -> Admin {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        Admin::on_store(db, store, tokens)
    }

    /// The Admin API on `store` (which must already be migrated).
    pub fn on_store(db: TestDb, store: Store, tokens: &[&str]) -> Admin {
        let tokens = tokens.iter().map(|t| AdminToken::new(t)).collect();
        let state = Arc::new(
            AppState::new(
                store.clone(),
                tokens,
                serde_json::json!({"database": "test"}),
            )
            .expect("route table"),
        );
        let app = tollgate_control_plane::admin::router(state.clone(), axum::Router::new());
        Admin {
            store,
            state,
            app,
            db,
        }
    }

    pub async fn request(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        self.request(builder.body(body.into()).expect("request"))
            .await
    }

    /// A form-urlencoded request, like `curl -d k=v`.
    pub async fn form(&self, method: Method, path: &str, pairs: &[(&str, &str)]) -> Reply {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.send(
            method,
            path,
            Some("application/x-www-form-urlencoded"),
            body,
        )
        .await
    }

    pub async fn json(&self, method: Method, path: &str, body: Value) -> Reply {
        self.send(method, path, Some("application/json"), body.to_string())
            .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, Body::empty()).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None, Body::empty()).await
    }

    pub async fn version(&self) -> i64 {
        self.store.version().await.expect("version")
    }
}

/// Whether the data planes of this build run the plugin `name`: the Admin API
/// accepts only those, as Kong accepts only the plugins its `plugins` setting
/// loads.
pub fn plugin_supported(name: &str) -> bool {
    tollgate_shared::plugin::row(name).is_some_and(|row| row.supported)
}

/// Asserts Kong's refusal of a plugin that is not enabled on the node.
#[track_caller]
pub fn expect_not_enabled(reply: &Reply, name: &str) {
    expect_status(reply, 400);
    let reason =
        format!("plugin '{name}' not enabled; add it to the 'plugins' configuration property");
    assert_eq!(reply.body["code"], 2, "{}", reply.text);
    assert_eq!(reply.body["name"], "schema violation", "{}", reply.text);
    assert_eq!(
        reply.body["message"],
        format!("schema violation (name: {reason})")
    );
    assert_eq!(reply.body["fields"], serde_json::json!({ "name": reason }));
}

impl Admin {
    /// Sends `write`, which adds or changes a plugin `name` listed by
    /// `collection`. When this build runs the plugin, the reply is returned
    /// for the caller to check; otherwise the write must be refused as Kong
    /// refuses a plugin it does not load, with nothing stored (the collection
    /// and the config version unchanged), and `None` is returned.
    pub async fn plugin_write(
        &self,
        name: &str,
        collection: &str,
        write: impl std::future::Future<Output = Reply>,
    ) -> Option<Reply> {
        if plugin_supported(name) {
            return Some(write.await);
        }
        let version = self.version().await;
        let before = self.get(collection).await;
        expect_status(&before, 200);
        let reply = write.await;
        expect_not_enabled(&reply, name);
        let after = self.get(collection).await;
        assert_eq!(
            after.body, before.body,
            "a refused {name} write changed {collection}"
        );
        assert_eq!(
            self.version().await,
            version,
            "a refused {name} write committed"
        );
        None
    }
}

/// Asserts the status, printing the body when it differs.
#[track_caller]
pub fn expect_status(reply: &Reply, status: u16) {
    assert_eq!(
        reply.status.as_u16(),
        status,
        "unexpected status; body: {}",
        reply.text
    );
}

/// A TCP relay to a database that a test can cut (connections reset, new
/// ones refused) or stall (connections stay open but nothing flows, like a
/// dead host or a partition), and restore.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    state: tokio::sync::watch::Sender<RelayState>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RelayState {
    Up,
    Cut,
    Stalled,
}

/// Copies one direction, pausing while the relay is stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut state: tokio::sync::watch::Receiver<RelayState>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if state.wait_for(|s| *s == RelayState::Up).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Relay {
    pub async fn start(target: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (state, _) = tokio::sync::watch::channel(RelayState::Up);
        let connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (state2, conns2) = (state.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if *state2.borrow() == RelayState::Cut {
                    drop(inbound);
                    continue;
                }
                let mut watch = state2.subscribe();
                let task = tokio::spawn(async move {
                    // a stalled relay holds new connections without answering
                    if watch.wait_for(|s| *s == RelayState::Up).await.is_err() {
                        return;
                    }
                    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::join!(
                        pump(in_read, out_write, watch.clone()),
                        pump(out_read, in_write, watch)
                    );
                });
                conns2.lock().expect("lock").push(task.abort_handle());
            }
        });
        Relay {
            addr,
            state,
            connections,
            accept,
        }
    }

    /// Refuses new connections and resets every open one.
    pub fn cut(&self) {
        self.state.send_replace(RelayState::Cut);
        for handle in self.connections.lock().expect("lock").drain(..) {
            handle.abort();
        }
    }

    /// Keeps every connection open but lets nothing through.
    pub fn stall(&self) {
        self.state.send_replace(RelayState::Stalled);
    }

    pub fn restore(&self) {
        self.state.send_replace(RelayState::Up);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
