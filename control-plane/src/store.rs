//! The configuration store: every entity in PostgreSQL or SQLite (through
//! sqlx's `Any` driver, one code path for both), the `config_version` counter,
//! and the audit log.
//!
//! Invariants:
//! - Every change is one [`WriteTxn`]: it bumps `config_version` first (which
//!   serialises writers, across control planes too), checks references and
//!   unique keys, writes, records the audit entry, `NOTIFY`s on PostgreSQL, and
//!   commits. A failed change leaves the version and every row untouched.
//! - [`Store::load_config`] reads the version and all tables in one consistent
//!   snapshot (REPEATABLE READ on PostgreSQL).
//! - The latest committed version this process knows is published in a
//!   `tokio::sync::watch` ([`Store::subscribe`]).

mod config_read;
mod data_planes;
mod error;
mod expiry;
mod sealing;
mod tables;

pub use data_planes::DataPlaneRow;
pub use error::{lua_literal, StoreError};
pub use sealing::{Keyring, SealError};
pub use tables::{children_of, table, Foreign, OnDelete, Table, INSERT_ORDER};

use serde_json::{Map, Value};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Row};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex, OwnedMutexGuard};
use tollgate_shared::{Config, EntityKind};

/// The PostgreSQL channel that carries committed config versions.
pub const NOTIFY_CHANNEL: &str = "tollgate_config";

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Key of the advisory lock that serialises `migrate` across hosts.
const MIGRATION_LOCK_KEY: i64 = 0x746f_6c6c_6761_7465; // "tollgate"

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Pool and timeout settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// How long a request waits for a connection (including connecting) before
    /// the store reports the database unavailable.
    pub acquire_timeout: Duration,
    /// Upper bound for one store operation, so a hung database never hangs a request.
    pub operation_timeout: Duration,
    /// Seals secret fields at rest when set (`--secrets-key-file`).
    pub keyring: Option<Arc<Keyring>>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(10),
            keyring: None,
        }
    }
}

/// One page of a collection.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<Value>,
    /// The id of the last item when more items follow.
    pub next_after: Option<String>,
}

/// Tag filter of a listing: `a,b` (all) or `a/b` (any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    All(Vec<String>),
    Any(Vec<String>),
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only ids strictly greater than this (the decoded offset token).
    pub after: Option<String>,
    pub size: usize,
    pub tags: Option<TagFilter>,
    /// `column = value` filters (a parent's id, or `custom_id`).
    pub equals: Vec<(&'static str, String)>,
}

/// One audit entry to record with a change.
#[derive(Debug, Clone, Default)]
pub struct AuditRecord {
    pub actor: String,
    pub method: String,
    pub path: String,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// Already redacted by the caller.
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: AnyPool,
    backend: Backend,
    /// Kept for the PostgreSQL LISTEN connection; never logged.
    url: String,
    /// Writers queue here rather than each holding a pooled connection while
    /// they wait on the version row lock.
    write_lock: Arc<Mutex<()>>,
    version: watch::Sender<i64>,
    options: StoreOptions,
}

/// Replaces the passwords of a database URL with `******` for logs and `GET /`:
/// the userinfo password and any query parameter whose name says it holds a
/// secret (libpq's `password`, `sslpassword`).
pub fn redact_url(url: &str) -> String {
    const MASK: &str = "******";
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:{MASK}@{host}{path}"),
                    None => base.to_string(),
                },
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    let Some(query) = query else {
        return base;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_url_parameter(name) => format!("{name}={MASK}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// The decoded, lower-cased name of a URL query parameter that holds a secret.
pub fn is_secret_url_parameter(name: &str) -> bool {
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    ["password", "secret", "token"]
        .iter()
        .any(|word| name.contains(word))
}

/// How long the start-up probe waits for a direct connection.
const CONNECT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `host:port` of a PostgreSQL URL (5432 when absent), or an SQLite path.
fn database_address(url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if !url.starts_with("postgres") {
        return rest.split('?').next().unwrap_or(rest).to_string();
    }
    if host.is_empty() {
        return "the local socket".into();
    }
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !host.ends_with(']');
    if has_port {
        host.to_string()
    } else {
        format!("{host}:5432")
    }
}

/// One line naming why a connection failed.
fn describe_connect_error(addr: &str, error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused at {addr}: is PostgreSQL running and listening there?")
        }
        sqlx::Error::Io(io) => format!("cannot reach {addr}: {io}"),
        sqlx::Error::Database(db) => format!("{addr}: {}", db.message()),
        sqlx::Error::Tls(tls) => format!("TLS with {addr} failed: {tls}"),
        other => format!("{addr}: {other}"),
    }
}

fn backend_of(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else {
        Err(StoreError::InvalidUrl(
            "expected sqlite://PATH or postgres://USER@HOST/DB".into(),
        ))
    }
}

/// SQLite files are created when missing unless the URL chooses a `mode`.
fn sqlite_url_with_create(url: &str) -> String {
    match url.split_once('?') {
        None => format!("{url}?mode=rwc"),
        Some((_, query)) if query.split('&').any(|p| p.starts_with("mode=")) => url.to_string(),
        Some(_) => format!("{url}&mode=rwc"),
    }
}

impl Store {
    /// Creates the pool without connecting: a database that is down at start
    /// makes requests answer 503 until it is back, instead of stopping the process.
    pub fn connect(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        let url = match backend {
            Backend::Sqlite => sqlite_url_with_create(url),
            Backend::Postgres => url.to_string(),
        };
        let listen_url = url.clone();
        let connect_options =
            AnyConnectOptions::from_str(&url).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(0)
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(true)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers (snapshot builds, GETs) run beside the writer.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(connect_options);
        let (version, _) = watch::channel(0);
        Ok(Store {
            inner: Arc::new(Inner {
                pool,
                backend,
                url: listen_url,
                write_lock: Arc::new(Mutex::new(())),
                version,
                options,
            }),
        })
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    fn keyring(&self) -> Option<&Keyring> {
        self.inner.options.keyring.as_deref()
    }

    /// Follows the latest committed config version known to this process.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.inner.version.subscribe()
    }

    /// Publishes `version` if it is newer than what subscribers have seen. Also
    /// for a listener that learns of another control plane's commit.
    pub fn publish_version(&self, version: i64) {
        self.inner.version.send_if_modified(|current| {
            if version > *current {
                *current = version;
                true
            } else {
                false
            }
        });
    }

    async fn timed<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.options.operation_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(
                "database operation timed out".into(),
            )),
        }
    }

    /// Applies pending migrations. On PostgreSQL an advisory lock makes
    /// concurrent runs from several hosts wait for each other.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = match self.inner.pool.acquire().await {
            Ok(conn) => conn,
            Err(sqlx::Error::PoolTimedOut) => return Err(self.why_unreachable().await),
            Err(error) => return Err(error.into()),
        };
        match self.inner.backend {
            Backend::Postgres => {
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(MIGRATION_LOCK_KEY)
                    .execute(&mut *conn)
                    .await?;
                let result = POSTGRES_MIGRATIONS.run_direct(&mut *conn).await;
                let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(MIGRATION_LOCK_KEY)
                    .execute(&mut *conn)
                    .await;
                result?;
                unlock?;
            }
            Backend::Sqlite => {
                // SQLite has no advisory lock: a concurrent migrator loses the
                // race inside its own transaction (nothing half-applied) and the
                // retry then finds that migration recorded as applied. Each
                // lost race means another migrator applied one migration, so
                // a migrator loses at most once per migration.
                let mut attempt = 0;
                loop {
                    match SQLITE_MIGRATIONS.run_direct(&mut *conn).await {
                        Ok(()) => break,
                        Err(_) if attempt < SQLITE_MIGRATIONS.migrations.len() => attempt += 1,
                        Err(err) => return Err(err.into()),
                    }
                }
            }
        }
        drop(conn);
        let version = self.version().await?;
        self.publish_version(version);
        Ok(())
    }

    /// The pool only says it timed out; one direct connection attempt says
    /// why ("connection refused at 127.0.0.1:5433", a failed password, a
    /// missing database).
    async fn why_unreachable(&self) -> StoreError {
        let addr = database_address(&self.inner.url);
        let attempt = async {
            let options = AnyConnectOptions::from_str(&self.inner.url)?;
            <AnyConnection as sqlx::Connection>::connect_with(&options)
                .await
                .map(drop)
        };
        let reason = match tokio::time::timeout(CONNECT_PROBE_TIMEOUT, attempt).await {
            Ok(Ok(())) => {
                format!("{addr} accepts connections now, but none came in time; try again")
            }
            Ok(Err(error)) => describe_connect_error(&addr, &error),
            Err(_) => format!(
                "no answer from {addr} within {} s: check the host, port and firewalls",
                CONNECT_PROBE_TIMEOUT.as_secs()
            ),
        };
        StoreError::Unavailable(reason)
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.timed(async {
            let mut conn = self.inner.pool.acquire().await?;
            sqlx::query("SELECT 1").execute(&mut *conn).await?;
            Ok(())
        })
        .await
    }

    /// The committed config version.
    pub async fn version(&self) -> Result<i64, StoreError> {
        self.timed(async {
            let mut conn = self.inner.pool.acquire().await?;
            read_version(&mut conn).await
        })
        .await
    }

    /// The entity with this id.
    pub async fn get(&self, kind: EntityKind, id: &str) -> Result<Option<Value>, StoreError> {
        self.timed(async {
            let mut conn = self.inner.pool.acquire().await?;
            select_one(&mut conn, self.keyring(), kind, "id", id).await
        })
        .await
    }

    /// The entity addressed by `key`: its UUID, or its endpoint key (`name`, `username`…).
    pub async fn find(&self, kind: EntityKind, key: &str) -> Result<Option<Value>, StoreError> {
        self.find_under(kind, key, None).await
    }

    /// [`Store::find`] for a path nested under the parent with id `parent`
    /// (an acl is found there by its group too).
    pub async fn find_under(
        &self,
        kind: EntityKind,
        key: &str,
        parent: Option<&str>,
    ) -> Result<Option<Value>, StoreError> {
        self.timed(async {
            let mut conn = self.inner.pool.acquire().await?;
            find_in(&mut conn, self.keyring(), kind, key, parent).await
        })
        .await
    }

    /// One page of a collection, ordered by id.
    pub async fn list(&self, kind: EntityKind, query: &ListQuery) -> Result<Page, StoreError> {
        self.timed(async {
            let mut conn = self.inner.pool.acquire().await?;
            list_in(&mut conn, self.keyring(), self.inner.backend, kind, query).await
        })
        .await
    }

    /// Every `(tag, entity kind, entity id)`, sorted by tag then id: Kong's `/tags`.
    pub async fn tag_rows(&self) -> Result<Vec<(String, EntityKind, String)>, StoreError> {
        self.timed(async {
            let mut conn = self.inner.pool.acquire().await?;
            let mut rows = Vec::new();
            for kind in EntityKind::ALL {
                let sql = format!(
                    "SELECT id, tags FROM {} WHERE tags IS NOT NULL",
                    kind.table_name()
                );
                for row in sqlx::query(&sql).fetch_all(&mut *conn).await? {
                    let id: String = row.try_get("id")?;
                    let tags: String = row.try_get("tags")?;
                    for tag in tags.split(',').filter(|t| !t.is_empty()) {
                        rows.push((tag.to_string(), kind, id.clone()));
                    }
                }
            }
            rows.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
            Ok(rows)
        })
        .await
    }

    /// Distinct names of the configured plugins, sorted.
    pub async fn plugin_names(&self) -> Result<Vec<String>, StoreError> {
        self.timed(async {
            let mut conn = self.inner.pool.acquire().await?;
            let rows = sqlx::query("SELECT DISTINCT name FROM plugins ORDER BY name")
                .fetch_all(&mut *conn)
                .await?;
            rows.iter()
                .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
                .collect()
        })
        .await
    }

    /// The version and every entity, read in one consistent snapshot.
    pub async fn load_config(&self) -> Result<(i64, Config), StoreError> {
        self.timed(async {
            let mut tx = match self.inner.backend {
                Backend::Postgres => {
                    self.inner
                        .pool
                        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                        .await?
                }
                Backend::Sqlite => self.inner.pool.begin().await?,
            };
            let version = read_version(&mut tx).await?;
            let config =
                config_read::read_config(&mut tx, self.inner.options.keyring.clone()).await?;
            tx.rollback().await?;
            Ok((version, config))
        })
        .await
    }

    /// Starts a change: waits for the writer slot, opens the transaction and
    /// takes the next config version (which locks the version row until commit).
    pub async fn begin_write(&self) -> Result<WriteTxn, StoreError> {
        self.timed(async {
            let guard = self.inner.write_lock.clone().lock_owned().await;
            let mut tx = match self.inner.backend {
                // IMMEDIATE takes SQLite's write lock now (waiting on busy_timeout
                // for another process) instead of failing at the first write.
                Backend::Sqlite => self.inner.pool.begin_with("BEGIN IMMEDIATE").await?,
                Backend::Postgres => self.inner.pool.begin().await?,
            };
            let version: i64 = sqlx::query_scalar(
                "UPDATE config_version SET version = version + 1 WHERE id = 1 RETURNING version",
            )
            .fetch_one(&mut *tx)
            .await?;
            Ok(WriteTxn {
                tx,
                version,
                store: self.clone(),
                _writer: guard,
            })
        })
        .await
    }

    /// Replaces every entity with `config` in one transaction; returns the new version.
    pub async fn replace_all(
        &self,
        config: &Config,
        audit: AuditRecord,
    ) -> Result<i64, StoreError> {
        let mut txn = self.begin_write().await?;
        txn.replace_all(config).await?;
        txn.audit(audit).await?;
        txn.commit().await
    }

    /// One page of the audit log, oldest first.
    pub async fn list_audit(
        &self,
        after_seq: Option<i64>,
        size: usize,
    ) -> Result<(Vec<Value>, Option<i64>), StoreError> {
        self.timed(async {
            let mut conn = self.inner.pool.acquire().await?;
            let rows = sqlx::query(
                "SELECT seq, id, at, actor, method, path, entity_type, entity_id, config_version, before, after \
                 FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after_seq.unwrap_or(0))
            .bind(i64::try_from(size + 1).unwrap_or(i64::MAX))
            .fetch_all(&mut *conn)
            .await?;
            let mut items = Vec::with_capacity(rows.len());
            let mut last_seq = None;
            for row in rows.iter().take(size) {
                let seq: i64 = row.try_get("seq")?;
                last_seq = Some(seq);
                let json_col = |name: &str| -> Result<Value, StoreError> {
                    let text: Option<String> = row.try_get(name)?;
                    Ok(text
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or(Value::Null))
                };
                let mut item = Map::new();
                item.insert("id".into(), Value::String(row.try_get("id")?));
                item.insert("seq".into(), Value::from(seq));
                item.insert("created_at".into(), Value::from(row.try_get::<i64, _>("at")?));
                item.insert("actor".into(), Value::String(row.try_get("actor")?));
                item.insert("method".into(), Value::String(row.try_get("method")?));
                item.insert("path".into(), Value::String(row.try_get("path")?));
                let opt = |name: &str| -> Result<Value, StoreError> {
                    Ok(row
                        .try_get::<Option<String>, _>(name)?
                        .map(Value::String)
                        .unwrap_or(Value::Null))
                };
                item.insert("entity_type".into(), opt("entity_type")?);
                item.insert("entity_id".into(), opt("entity_id")?);
                item.insert(
                    "config_version".into(),
                    Value::from(row.try_get::<i64, _>("config_version")?),
                );
                item.insert("before".into(), json_col("before")?);
                item.insert("after".into(), json_col("after")?);
                items.push(Value::Object(item));
            }
            let next = if rows.len() > size { last_seq } else { None };
            Ok((items, next))
        })
        .await
    }

    /// On PostgreSQL, follows commits by other control planes on the same
    /// database (`LISTEN tollgate_config`) and publishes their versions, until
    /// `shutdown`. Reconnects by itself and catches up after a gap by reading
    /// the version. Returns at once on SQLite.
    pub async fn follow_notifications(&self, shutdown: tokio_util::sync::CancellationToken) {
        if self.inner.backend != Backend::Postgres {
            return;
        }
        let retry = Duration::from_secs(1);
        loop {
            match sqlx::postgres::PgListener::connect(&self.inner.url).await {
                Ok(mut listener) => {
                    if let Err(err) = listener.listen(NOTIFY_CHANNEL).await {
                        tracing::warn!(error = %err, "LISTEN failed");
                    } else {
                        self.catch_up().await;
                        loop {
                            let next = tokio::select! {
                                _ = shutdown.cancelled() => return,
                                next = listener.try_recv() => next,
                            };
                            match next {
                                Ok(Some(notification)) => {
                                    if let Ok(version) = notification.payload().parse::<i64>() {
                                        self.publish_version(version);
                                    }
                                }
                                // Reconnected after a loss: notifications may be missing.
                                Ok(None) => self.catch_up().await,
                                Err(err) => {
                                    tracing::warn!(error = %err, "config notification stream lost");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "cannot LISTEN for config changes"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(retry) => {}
            }
        }
    }

    async fn catch_up(&self) {
        if let Ok(version) = self.version().await {
            self.publish_version(version);
        }
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }
}

/// One admin change in progress. Dropping it without [`WriteTxn::commit`] rolls
/// everything back, the version bump included.
pub struct WriteTxn {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    version: i64,
    store: Store,
    _writer: OwnedMutexGuard<()>,
}

impl WriteTxn {
    /// The version this change will have once committed.
    pub fn version(&self) -> i64 {
        self.version
    }

    pub async fn get(&mut self, kind: EntityKind, id: &str) -> Result<Option<Value>, StoreError> {
        select_one(&mut self.tx, self.store.keyring(), kind, "id", id).await
    }

    /// The entity addressed by its UUID or its endpoint key.
    pub async fn find(&mut self, kind: EntityKind, key: &str) -> Result<Option<Value>, StoreError> {
        find_in(&mut self.tx, self.store.keyring(), kind, key, None).await
    }

    /// [`WriteTxn::find`] for a path nested under the parent with id `parent`.
    pub async fn find_under(
        &mut self,
        kind: EntityKind,
        key: &str,
        parent: Option<&str>,
    ) -> Result<Option<Value>, StoreError> {
        find_in(&mut self.tx, self.store.keyring(), kind, key, parent).await
    }

    /// Looks up by an arbitrary unique column (`username`, `name`, …).
    pub async fn find_by(
        &mut self,
        kind: EntityKind,
        column: &'static str,
        value: &str,
    ) -> Result<Option<Value>, StoreError> {
        select_one(&mut self.tx, self.store.keyring(), kind, column, value).await
    }

    /// Inserts a new, validated entity. An existing id is a primary key violation.
    pub async fn insert(&mut self, kind: EntityKind, entity: &Value) -> Result<(), StoreError> {
        let row = RowValues::from_entity(self.store.keyring(), kind, entity)?;
        if row_exists(&mut self.tx, kind, &row.id).await? {
            return Err(StoreError::PrimaryKey { kind, id: row.id });
        }
        self.check_constraints(kind, entity, &row).await?;
        let (sql, values) = row.insert_sql(kind);
        bind_all(sqlx::query(&sql), &values)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Inserts or replaces (by id) a validated entity.
    pub async fn upsert(&mut self, kind: EntityKind, entity: &Value) -> Result<(), StoreError> {
        let row = RowValues::from_entity(self.store.keyring(), kind, entity)?;
        let exists = row_exists(&mut self.tx, kind, &row.id).await?;
        self.check_constraints(kind, entity, &row).await?;
        let (sql, values) = if exists {
            row.update_sql(kind)
        } else {
            row.insert_sql(kind)
        };
        bind_all(sqlx::query(&sql), &values)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Deletes by id; children with a cascading key go with it. Returns whether
    /// a row was deleted. A restricting child makes it fail with code 4.
    pub async fn delete(&mut self, kind: EntityKind, id: &str) -> Result<bool, StoreError> {
        for (child, foreign) in children_of(kind) {
            if foreign.on_delete != OnDelete::Restrict {
                continue;
            }
            let sql = format!(
                "SELECT 1 AS found FROM {} WHERE {} = $1 LIMIT 1",
                child.kind.table_name(),
                foreign.column
            );
            let referenced = sqlx::query(&sql)
                .bind(id.to_string())
                .fetch_optional(&mut *self.tx)
                .await?
                .is_some();
            if referenced {
                return Err(StoreError::Referenced {
                    parent: kind,
                    child: child.kind,
                });
            }
        }
        let sql = format!("DELETE FROM {} WHERE id = $1", kind.table_name());
        let result = sqlx::query(&sql)
            .bind(id.to_string())
            .execute(&mut *self.tx)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Deletes every entity and inserts `config` (already validated).
    pub async fn replace_all(&mut self, config: &Config) -> Result<(), StoreError> {
        match self.store.backend() {
            // One TRUNCATE instead of a foreign key check per deleted row. It
            // locks the tables until commit: readers wait for the new config.
            Backend::Postgres => {
                let tables: Vec<&str> = INSERT_ORDER.iter().map(|k| k.table_name()).collect();
                let sql = format!("TRUNCATE {}", tables.join(", "));
                sqlx::query(&sql).execute(&mut *self.tx).await?;
            }
            Backend::Sqlite => {
                for kind in INSERT_ORDER.iter().rev() {
                    let sql = format!("DELETE FROM {}", kind.table_name());
                    sqlx::query(&sql).execute(&mut *self.tx).await?;
                }
            }
        }
        // The tables are empty now, so every constraint is a question about
        // the config itself: answer it in memory (with the errors `insert`
        // would give), then write each table in a few multi-row INSERTs
        // instead of several round trips per row.
        let mut inserted: HashMap<&'static str, HashSet<String>> = HashMap::new();
        for kind in INSERT_ORDER {
            let mut rows = Vec::new();
            let mut ids = HashSet::new();
            let mut seen_unique: Vec<HashSet<String>> =
                vec![HashSet::new(); table(kind).unique.len()];
            let mut seen_cache_keys = HashSet::new();
            for entity in config_entities(config, kind)? {
                let row = RowValues::from_entity(self.store.keyring(), kind, &entity)?;
                if !ids.insert(row.id.clone()) {
                    return Err(StoreError::PrimaryKey { kind, id: row.id });
                }
                check_in_memory(
                    kind,
                    &entity,
                    &row,
                    &mut seen_unique,
                    &mut seen_cache_keys,
                    &inserted,
                )?;
                rows.push(row);
            }
            self.insert_rows(kind, &rows).await?;
            inserted.insert(kind.table_name(), ids);
        }
        Ok(())
    }

    /// Inserts `rows` (already checked) with as few statements as the bind
    /// parameter limits of both backends allow.
    async fn insert_rows(
        &mut self,
        kind: EntityKind,
        rows: &[RowValues],
    ) -> Result<(), StoreError> {
        /// Under SQLite's default 32,766 and PostgreSQL's 65,535 parameters.
        const MAX_PARAMETERS: usize = 30_000;
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let (names, _) = first.columns(kind);
        let per_statement = (MAX_PARAMETERS / names.len()).max(1);
        for chunk in rows.chunks(per_statement) {
            let mut sql = format!(
                "INSERT INTO {} ({}) VALUES ",
                kind.table_name(),
                names.join(", ")
            );
            let mut values = Vec::with_capacity(chunk.len() * names.len());
            for (n, row) in chunk.iter().enumerate() {
                let (_, row_values) = row.columns(kind);
                let first_param = n * names.len() + 1;
                let params: Vec<String> = (first_param..first_param + names.len())
                    .map(|i| format!("${i}"))
                    .collect();
                if n > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                sql.push_str(&params.join(", "));
                sql.push(')');
                values.extend(row_values);
            }
            bind_all(sqlx::query(&sql), &values)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Every entity as currently seen inside this transaction.
    pub async fn load_config(&mut self) -> Result<Config, StoreError> {
        config_read::read_config(&mut self.tx, self.store.inner.options.keyring.clone()).await
    }

    /// Records an audit entry stamped with this change's version.
    pub async fn audit(&mut self, record: AuditRecord) -> Result<(), StoreError> {
        let json = |v: Option<Value>| v.map(|v| v.to_string());
        sqlx::query(
            "INSERT INTO audit (id, at, actor, method, path, entity_type, entity_id, config_version, before, after) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(tollgate_shared::entity::now_seconds())
        .bind(record.actor)
        .bind(record.method)
        .bind(record.path)
        .bind(record.entity_type)
        .bind(record.entity_id)
        .bind(self.version)
        .bind(json(record.before))
        .bind(json(record.after))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Commits; on PostgreSQL the `NOTIFY` goes out with the commit.
    pub async fn commit(mut self) -> Result<i64, StoreError> {
        if self.store.inner.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(self.version.to_string())
                .execute(&mut *self.tx)
                .await?;
        }
        let version = self.version;
        let store = self.store.clone();
        store.timed(async { Ok(self.tx.commit().await?) }).await?;
        store.publish_version(version);
        Ok(version)
    }

    /// Unique keys and parent references, checked before writing so that the
    /// errors carry Kong's messages; writers are serialised, so no race.
    async fn check_constraints(
        &mut self,
        kind: EntityKind,
        entity: &Value,
        row: &RowValues,
    ) -> Result<(), StoreError> {
        let table = table(kind);
        for (field, value) in table.unique.iter().zip(&row.unique) {
            let Some(value) = value else { continue };
            let sql = format!(
                "SELECT id FROM {} WHERE {field} = $1 AND id <> $2 LIMIT 1",
                kind.table_name()
            );
            let clash = sqlx::query(&sql)
                .bind(value.clone())
                .bind(row.id.clone())
                .fetch_optional(&mut *self.tx)
                .await?;
            if clash.is_some() {
                return Err(unique_violation(kind, field, entity));
            }
        }
        if let Some(cache_key) = &row.cache_key {
            let sql = format!(
                "SELECT id FROM {} WHERE cache_key = $1 AND id <> $2 LIMIT 1",
                kind.table_name()
            );
            let clash = sqlx::query(&sql)
                .bind(cache_key.clone())
                .bind(row.id.clone())
                .fetch_optional(&mut *self.tx)
                .await?;
            if clash.is_some() {
                return Err(cache_key_violation(kind, entity));
            }
        }
        for (foreign, id) in table.foreign.iter().zip(&row.foreign) {
            let Some(id) = id else { continue };
            if !row_exists(&mut self.tx, foreign.parent, id).await? {
                return Err(StoreError::MissingParent {
                    field: foreign.field.to_string(),
                    parent: foreign.parent,
                    key: serde_json::json!({ "id": id }),
                });
            }
        }
        Ok(())
    }
}

/// The checks of `WriteTxn::check_constraints` for a row of a whole-config
/// replacement, against the rows of the same config seen so far: unique
/// columns and plugin scope within `kind`, parents among `inserted`.
fn check_in_memory(
    kind: EntityKind,
    entity: &Value,
    row: &RowValues,
    seen_unique: &mut [HashSet<String>],
    seen_cache_keys: &mut HashSet<String>,
    inserted: &HashMap<&'static str, HashSet<String>>,
) -> Result<(), StoreError> {
    let table = table(kind);
    for ((field, value), seen) in table.unique.iter().zip(&row.unique).zip(seen_unique) {
        let Some(value) = value else { continue };
        if !seen.insert(value.clone()) {
            return Err(unique_violation(kind, field, entity));
        }
    }
    if let Some(cache_key) = &row.cache_key {
        if !seen_cache_keys.insert(cache_key.clone()) {
            return Err(cache_key_violation(kind, entity));
        }
    }
    for (foreign, id) in table.foreign.iter().zip(&row.foreign) {
        let Some(id) = id else { continue };
        let exists = inserted
            .get(foreign.parent.table_name())
            .is_some_and(|ids| ids.contains(id));
        if !exists {
            return Err(StoreError::MissingParent {
                field: foreign.field.to_string(),
                parent: foreign.parent,
                key: serde_json::json!({ "id": id }),
            });
        }
    }
    Ok(())
}

/// Kong's unique violation on `field`, keyed by the entity's own value (a
/// secret one, such as a key-auth key, is not repeated back).
fn unique_violation(kind: EntityKind, field: &str, entity: &Value) -> StoreError {
    let shown = if table(kind).digested.contains(&field) {
        Value::String("<redacted>".into())
    } else {
        entity.get(field).cloned().unwrap_or(Value::Null)
    };
    let mut key = Map::new();
    key.insert(field.to_string(), shown);
    StoreError::Unique { kind, key }
}

/// Kong's unique violation on a composite key (its `cache_key` fields).
fn cache_key_violation(kind: EntityKind, entity: &Value) -> StoreError {
    let mut key = Map::new();
    for field in table(kind).cache_key {
        key.insert(
            (*field).into(),
            entity.get(*field).cloned().unwrap_or(Value::Null),
        );
    }
    StoreError::Unique { kind, key }
}

/// A value bound to a statement.
#[derive(Debug, Clone)]
enum SqlValue {
    Text(Option<String>),
    Int(i64),
    OptionalInt(Option<i64>),
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    values: &[SqlValue],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for value in values {
        query = match value {
            SqlValue::Text(t) => query.bind(t.clone()),
            SqlValue::Int(i) => query.bind(*i),
            SqlValue::OptionalInt(i) => query.bind(*i),
        };
    }
    query
}

/// The indexed columns of one entity, extracted from its JSON.
struct RowValues {
    id: String,
    created_at: i64,
    tags: Option<String>,
    unique: Vec<Option<String>>,
    foreign: Vec<Option<String>>,
    /// Plugins only: `name` and the scope key.
    plugin_name: Option<String>,
    cache_key: Option<String>,
    /// key-auth credentials only: the `expires_at` column (Kong's `ttl`).
    expires_at: Option<i64>,
    data: String,
}

/// Tags as stored: `,a,b,`, so that a tag matches by substring `,tag,`.
fn tags_column(entity: &Value) -> Option<String> {
    let tags = entity.get("tags")?.as_array()?;
    let names: Vec<&str> = tags.iter().filter_map(Value::as_str).collect();
    if names.is_empty() {
        return None;
    }
    Some(format!(",{},", names.join(",")))
}

fn foreign_id(entity: &Value, field: &str) -> Result<Option<String>, StoreError> {
    match entity.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => match map.get("id").and_then(Value::as_str) {
            Some(id) => Ok(Some(id.to_string())),
            None => Err(StoreError::MissingParent {
                field: field.to_string(),
                parent: EntityKind::Services,
                key: Value::Object(map.clone()),
            }),
        },
        Some(other) => Err(StoreError::MissingParent {
            field: field.to_string(),
            parent: EntityKind::Services,
            key: other.clone(),
        }),
    }
}

impl RowValues {
    fn from_entity(
        keyring: Option<&Keyring>,
        kind: EntityKind,
        entity: &Value,
    ) -> Result<RowValues, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            kind: kind.table_name(),
            id: entity
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
            reason: reason.to_string(),
        };
        let id = entity
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| corrupt("no id"))?
            .to_string();
        let table = table(kind);
        let unique = table
            .unique
            .iter()
            .map(|f| {
                entity
                    .get(*f)
                    .and_then(Value::as_str)
                    .map(|v| table.column_value(f, v))
            })
            .collect();
        let mut foreign = Vec::with_capacity(table.foreign.len());
        for f in table.foreign {
            let id = foreign_id(entity, f.field).map_err(|e| match e {
                StoreError::MissingParent { field, key, .. } => StoreError::MissingParent {
                    field,
                    parent: f.parent,
                    key,
                },
                other => other,
            })?;
            foreign.push(id);
        }
        let plugin_name = if kind == EntityKind::Plugins {
            let name = entity
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| corrupt("plugin without name"))?;
            Some(name.to_string())
        } else {
            None
        };
        // e.g. `rate-limiting|<route id>|<service id>|` for a plugin.
        let cache_key = (!table.cache_key.is_empty()).then(|| {
            let parts: Vec<String> = table
                .cache_key
                .iter()
                .map(|field| match entity.get(*field) {
                    Some(Value::String(text)) => text.clone(),
                    Some(Value::Object(reference)) => reference
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    _ => String::new(),
                })
                .collect();
            parts.join("|")
        });
        Ok(RowValues {
            id,
            created_at: entity
                .get("created_at")
                .and_then(Value::as_i64)
                .unwrap_or_else(tollgate_shared::entity::now_seconds),
            tags: tags_column(entity),
            unique,
            foreign,
            plugin_name,
            cache_key,
            expires_at: entity.get("expires_at").and_then(Value::as_i64),
            data: sealing::seal_entity(keyring, kind, entity)?.to_string(),
        })
    }

    /// Column names and values, `id` first.
    fn columns(&self, kind: EntityKind) -> (Vec<&'static str>, Vec<SqlValue>) {
        let table = table(kind);
        let mut names = vec!["id", "created_at", "tags", "data"];
        let mut values = vec![
            SqlValue::Text(Some(self.id.clone())),
            SqlValue::Int(self.created_at),
            SqlValue::Text(self.tags.clone()),
            SqlValue::Text(Some(self.data.clone())),
        ];
        for (name, value) in table.unique.iter().zip(&self.unique) {
            names.push(name);
            values.push(SqlValue::Text(value.clone()));
        }
        for (f, value) in table.foreign.iter().zip(&self.foreign) {
            names.push(f.column);
            values.push(SqlValue::Text(value.clone()));
        }
        if kind == EntityKind::Plugins {
            names.push("name");
            values.push(SqlValue::Text(self.plugin_name.clone()));
        }
        if self.cache_key.is_some() {
            names.push("cache_key");
            values.push(SqlValue::Text(self.cache_key.clone()));
        }
        if kind == EntityKind::KeyauthCredentials {
            names.push("expires_at");
            values.push(SqlValue::OptionalInt(self.expires_at));
        }
        (names, values)
    }

    fn insert_sql(&self, kind: EntityKind) -> (String, Vec<SqlValue>) {
        let (names, values) = self.columns(kind);
        let params: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        (
            format!(
                "INSERT INTO {} ({}) VALUES ({})",
                kind.table_name(),
                names.join(", "),
                params.join(", ")
            ),
            values,
        )
    }

    fn update_sql(&self, kind: EntityKind) -> (String, Vec<SqlValue>) {
        let (names, values) = self.columns(kind);
        let sets: Vec<String> = names
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, n)| format!("{n} = ${}", i + 1))
            .collect();
        (
            format!(
                "UPDATE {} SET {} WHERE id = $1",
                kind.table_name(),
                sets.join(", ")
            ),
            values,
        )
    }
}

/// A strict 8-4-4-4-12 UUID, normalised to lowercase.
pub fn parse_uuid(text: &str) -> Option<String> {
    if text.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse(text).ok().map(|u| u.to_string())
}

async fn read_version(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT version FROM config_version WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?,
    )
}

fn parse_data(
    keyring: Option<&Keyring>,
    kind: EntityKind,
    row: &sqlx::any::AnyRow,
) -> Result<Value, StoreError> {
    let text: String = row.try_get("data")?;
    let stored = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        kind: kind.table_name(),
        id: row.try_get::<String, _>("id").unwrap_or_default(),
        reason: e.to_string(),
    })?;
    Ok(sealing::open_entity(keyring, kind, stored)?)
}

async fn row_exists(
    conn: &mut AnyConnection,
    kind: EntityKind,
    id: &str,
) -> Result<bool, StoreError> {
    let sql = format!("SELECT 1 AS found FROM {} WHERE id = $1", kind.table_name());
    Ok(sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .is_some())
}

async fn select_one(
    conn: &mut AnyConnection,
    keyring: Option<&Keyring>,
    kind: EntityKind,
    column: &str,
    value: &str,
) -> Result<Option<Value>, StoreError> {
    let sql = format!(
        "SELECT id, data FROM {} WHERE {column} = $1",
        kind.table_name()
    );
    let row = sqlx::query(&sql)
        .bind(table(kind).column_value(column, value))
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| parse_data(keyring, kind, &r)).transpose()
}

/// The entity at `key` (a UUID or the endpoint key). Under a consumer, an
/// acl's key may be its group (Kong's `/consumers/{c}/acls/{group}`).
async fn find_in(
    conn: &mut AnyConnection,
    keyring: Option<&Keyring>,
    kind: EntityKind,
    key: &str,
    parent: Option<&str>,
) -> Result<Option<Value>, StoreError> {
    if let Some(id) = parse_uuid(key) {
        return select_one(conn, keyring, kind, "id", &id).await;
    }
    if let (EntityKind::Acls, Some(consumer)) = (kind, parent) {
        let cache_key = format!("{consumer}|{key}");
        return select_one(conn, keyring, kind, "cache_key", &cache_key).await;
    }
    match kind.endpoint_key() {
        Some(column) => select_one(conn, keyring, kind, column, key).await,
        None => Ok(None),
    }
}

async fn list_in(
    conn: &mut AnyConnection,
    keyring: Option<&Keyring>,
    backend: Backend,
    kind: EntityKind,
    query: &ListQuery,
) -> Result<Page, StoreError> {
    let mut sql = format!("SELECT id, data FROM {} WHERE 1 = 1", kind.table_name());
    let mut values: Vec<SqlValue> = Vec::new();
    let param = |values: &mut Vec<SqlValue>, v: String| {
        values.push(SqlValue::Text(Some(v)));
        format!("${}", values.len())
    };
    if let Some(after) = &query.after {
        let p = param(&mut values, after.clone());
        sql.push_str(&format!(" AND id > {p}"));
    }
    if kind == EntityKind::KeyauthCredentials {
        // Expired keys are gone for Kong (its TTL filter is in the query),
        // so they never take a place in a page.
        values.push(SqlValue::Int(tollgate_shared::entity::now_seconds()));
        sql.push_str(&format!(
            " AND (expires_at IS NULL OR expires_at > ${})",
            values.len()
        ));
    }
    for (column, value) in &query.equals {
        let p = param(&mut values, value.clone());
        sql.push_str(&format!(" AND {column} = {p}"));
    }
    let contains = match backend {
        Backend::Postgres => "strpos(tags, {}) > 0",
        Backend::Sqlite => "instr(tags, {}) > 0",
    };
    let tag_clause = |values: &mut Vec<SqlValue>, tags: &[String], joiner: &str| {
        let parts: Vec<String> = tags
            .iter()
            .map(|t| contains.replace("{}", &param(values, format!(",{t},"))))
            .collect();
        format!(" AND tags IS NOT NULL AND ({})", parts.join(joiner))
    };
    match &query.tags {
        Some(TagFilter::All(tags)) if !tags.is_empty() => {
            let clause = tag_clause(&mut values, tags, " AND ");
            sql.push_str(&clause);
        }
        Some(TagFilter::Any(tags)) if !tags.is_empty() => {
            let clause = tag_clause(&mut values, tags, " OR ");
            sql.push_str(&clause);
        }
        _ => {}
    }
    sql.push_str(" ORDER BY id");
    sql.push_str(&format!(" LIMIT {}", query.size.saturating_add(1)));
    let rows = bind_all(sqlx::query(&sql), &values)
        .fetch_all(&mut *conn)
        .await?;
    let mut items = Vec::with_capacity(rows.len().min(query.size));
    let mut last_id = None;
    for row in rows.iter().take(query.size) {
        last_id = Some(row.try_get::<String, _>("id")?);
        items.push(parse_data(keyring, kind, row)?);
    }
    Ok(Page {
        items,
        next_after: if rows.len() > query.size {
            last_id
        } else {
            None
        },
    })
}

/// The cluster snapshot publisher reads committed configuration from the store.
impl crate::cluster::publisher::ConfigSource for Store {
    async fn version(&self) -> Result<u64, String> {
        Store::version(self)
            .await
            .map(|v| u64::try_from(v).unwrap_or_default())
            .map_err(|e| e.to_string())
    }

    async fn load(&self) -> Result<(u64, Config), String> {
        let (version, config) = self.load_config().await.map_err(|e| e.to_string())?;
        Ok((u64::try_from(version).unwrap_or_default(), config))
    }
}

/// The entities of `kind` in `config`, as JSON.
pub fn config_entities(config: &Config, kind: EntityKind) -> Result<Vec<Value>, StoreError> {
    fn to_values<T: serde::Serialize>(
        kind: EntityKind,
        items: &[T],
    ) -> Result<Vec<Value>, StoreError> {
        items
            .iter()
            .map(|i| {
                serde_json::to_value(i).map_err(|e| StoreError::Corrupt {
                    kind: kind.table_name(),
                    id: "?".into(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }
    match kind {
        EntityKind::Services => to_values(kind, &config.services),
        EntityKind::Routes => to_values(kind, &config.routes),
        EntityKind::Consumers => to_values(kind, &config.consumers),
        EntityKind::Plugins => to_values(kind, &config.plugins),
        EntityKind::JwtSecrets => to_values(kind, &config.jwt_secrets),
        EntityKind::Certificates => to_values(kind, &config.certificates),
        EntityKind::Snis => to_values(kind, &config.snis),
        EntityKind::KeyauthCredentials => to_values(kind, &config.keyauth_credentials),
        EntityKind::BasicauthCredentials => to_values(kind, &config.basicauth_credentials),
        EntityKind::Acls => to_values(kind, &config.acls),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn database_addresses_for_messages() {
        assert_eq!(
            database_address("postgres://u:p@db.internal/x"),
            "db.internal:5432"
        );
        assert_eq!(
            database_address("postgres://127.0.0.1:5433/x?sslmode=disable"),
            "127.0.0.1:5433"
        );
        assert_eq!(database_address("postgresql://u@[::1]/x"), "[::1]:5432");
        assert_eq!(database_address("sqlite://data/t.db?mode=rwc"), "data/t.db");
    }

    #[test]
    fn urls() {
        assert_eq!(
            sqlite_url_with_create("sqlite://a.db"),
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url_with_create("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
        assert_eq!(
            sqlite_url_with_create("sqlite://a.db?cache=shared"),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            redact_url("postgres://kong:StrongPass@127.0.0.1/kong"),
            "postgres://kong:******@127.0.0.1/kong"
        );
        assert_eq!(redact_url("postgres://kong@h/k"), "postgres://kong@h/k");
        let cases = [
            (
                "postgres://kong@h/k?password=StrongPass&sslmode=disable",
                "postgres://kong@h/k?password=******&sslmode=disable",
            ),
            (
                "postgres://kong:a@h/k?sslmode=require&sslpassword=KeyPass&Pass%77ord=x",
                "postgres://kong:******@h/k?sslmode=require&sslpassword=******&Pass%77ord=******",
            ),
            // an `@` in the query is not userinfo
            (
                "postgres://h/k?PASSWORD=p@ss:word",
                "postgres://h/k?PASSWORD=******",
            ),
            ("sqlite://a.db?mode=rwc", "sqlite://a.db?mode=rwc"),
        ];
        for (url, redacted) in cases {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
    }

    #[test]
    fn uuids_are_strict() {
        assert!(parse_uuid("not-a-uuid").is_none());
        assert!(parse_uuid("0b8f7ea7bb0d4c1ba5cfed2b2eb1d4f3").is_none());
        assert_eq!(
            parse_uuid("0B8F7EA7-BB0D-4C1B-A5CF-ED2B2EB1D4F3").as_deref(),
            Some("0b8f7ea7-bb0d-4c1b-a5cf-ed2b2eb1d4f3")
        );
    }
}
