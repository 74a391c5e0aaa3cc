//! Long-lived objects that plugins share and that outlive a config swap:
//! open log files, keyed state such as counters, the `prometheus` plugin's
//! metric families ([`ProxyMetrics`]), and (through handles the data plane
//! provides) backends like Redis ([`RedisConnector`]), the jwt plugin's JWKS
//! caches ([`JwksProvider`]), trace exporters ([`TraceExporters`]) and the
//! http-log queues ([`LogQueues`]). A compiled plugin holds an `Arc`
//! to what it uses; the registry keeps only `Weak`s, so a resource stays the
//! same object across every swap that still uses it and is closed by the swap
//! that drops its last user.
//!
//! The control plane compiles with [`Resources::check_only`]: the same compile
//! code runs, but no file is opened and no socket is made.

use super::log_queue::{HttpLogTarget, LogQueue, LogQueues, NoQueues};
use super::script_call::ScriptCall;
use super::traces::{NoTraces, OtlpEndpoint, SpanSink, TraceExporters};
use crate::plugin::{JwksKeys, JwksProvider, JwksSource, NoJwks, ProxyMetrics};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

/// A destination for log lines (one JSON object per line).
pub trait LineSink: Send + Sync + fmt::Debug {
    /// Appends one line; `line` has no trailing newline. Failures are the
    /// sink's to count and report: logging never fails a request.
    fn write_line(&self, line: &[u8]);
}

/// Opens log files by path; one open file per path however many plugin
/// instances name it.
pub trait LogFiles: Send + Sync + fmt::Debug {
    /// The sink appending to `path` (created `0644` if missing). `reopen`
    /// asks for Kong's `reopen: true` (close and reopen for every write).
    fn open(&self, path: &str, reopen: bool) -> Result<Arc<dyn LineSink>, String>;
}

/// The identity of a Redis server connection: every plugin instance naming
/// the same server, database and credentials shares one connection.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedisServer {
    pub host: String,
    pub port: u16,
    pub database: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS towards the server (`redis.ssl`), or plain TCP.
    pub tls: Option<RedisTls>,
}

/// How a Redis connection uses TLS (Kong's `redis.ssl_verify`,
/// `redis.server_name`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisTls {
    /// Whether the server's certificate must chain to a trusted root and
    /// name the server. Kong's default is off.
    pub verify: bool,
    /// The name sent in SNI and verified; the host when unset.
    pub server_name: Option<String>,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password never reaches a log line.
        f.debug_struct("RedisServer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// How many data planes the control plane reports connected (in its
/// heartbeats), for a limit each node enforces as its share of a
/// cluster-wide one. A keyed resource under [`ClusterPeers::KEY`]: the sync
/// client writes it, plugins read it.
#[derive(Debug, Default)]
pub struct ClusterPeers {
    data_planes: AtomicU32,
}

impl ClusterPeers {
    /// The key of the node's one instance in [`Resources::keyed`].
    pub const KEY: &'static str = "cluster/data-planes";

    /// Records the control plane's latest count.
    pub fn set(&self, data_planes: u32) {
        self.data_planes.store(data_planes, Ordering::Relaxed);
    }

    /// The connected data planes, this one included: at least 1 (a node
    /// with no control plane, or before its first heartbeat, stands alone).
    pub fn data_planes(&self) -> u32 {
        self.data_planes.load(Ordering::Relaxed).max(1)
    }
}

/// Why a Redis call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisFailure {
    /// The server did not answer within the caller's timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// A recent failure opened the circuit: no call is made until the next probe.
    #[error("redis unavailable (circuit open after: {0})")]
    CircuitOpen(String),
    /// Connecting or the command failed.
    #[error("redis error: {0}")]
    Failed(String),
}

/// What a Redis script call returns.
pub type RedisReply<'a> = Pin<Box<dyn Future<Output = Result<Vec<i64>, RedisFailure>> + Send + 'a>>;

/// One Lua script on one server, prepared at compile time (its hash computed
/// once); each call is a single `EVALSHA` round trip, loading the script
/// only when the server does not know it yet.
pub trait RedisScript: Send + Sync + fmt::Debug {
    /// Runs the script with the call's keys and arguments; its reply must be
    /// an array of integers. Fails with [`RedisFailure::Timeout`] after
    /// `timeout`.
    fn eval<'a>(&'a self, call: &'a ScriptCall, timeout: Duration) -> RedisReply<'a>;
}

/// Opens Redis script handles; connections are made lazily, on the first
/// call, and shared per [`RedisServer`].
pub trait RedisConnector: Send + Sync + fmt::Debug {
    fn script(
        &self,
        server: &RedisServer,
        source: &'static str,
    ) -> Result<Arc<dyn RedisScript>, String>;
}

/// Get-or-create by key, holding values weakly.
pub struct SharedSet<K, V: ?Sized> {
    entries: Mutex<HashMap<K, Weak<V>>>,
}

impl<K, V: ?Sized> fmt::Debug for SharedSet<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("SharedSet").field("entries", &len).finish()
    }
}

impl<K, V: ?Sized> Default for SharedSet<K, V> {
    fn default() -> Self {
        SharedSet {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: ?Sized> SharedSet<K, V> {
    /// The live value for `key`, or a new one from `create`.
    pub fn get_or_try_insert<E>(
        &self,
        key: &K,
        create: impl FnOnce() -> Result<Arc<V>, E>,
    ) -> Result<Arc<V>, E> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(live) = entries.get(key).and_then(Weak::upgrade) {
            return Ok(live);
        }
        let value = create()?;
        entries.insert(key.clone(), Arc::downgrade(&value));
        // Dropped values leave dead entries; sweep them while the lock is held
        // anyway, once they could make up half the map.
        if entries.len() >= 16 && entries.len().is_power_of_two() {
            entries.retain(|_, weak| weak.strong_count() > 0);
        }
        Ok(value)
    }

    /// The live value for `key`, if some config holds one (never creates).
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .and_then(Weak::upgrade)
    }

    /// The values alive now (used by some config), e.g. for metrics.
    pub fn live_values(&self) -> Vec<Arc<V>> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// How many values are alive (used by some config).
    pub fn live(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|weak| weak.strong_count() > 0)
            .count()
    }
}

type AnyShared = dyn Any + Send + Sync;

/// Everything compile hands to plugins that must outlive a config swap.
#[derive(Clone)]
pub struct Resources {
    check_only: bool,
    log_files: Arc<dyn LogFiles>,
    redis: Arc<dyn RedisConnector>,
    jwks: Arc<dyn JwksProvider>,
    traces: Arc<dyn TraceExporters>,
    log_queues: Arc<dyn LogQueues>,
    keyed: Arc<SharedSet<(TypeId, String), AnyShared>>,
    proxy_metrics: Arc<ProxyMetrics>,
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resources")
            .field("check_only", &self.check_only)
            .field("log_files", &self.log_files)
            .field("redis", &self.redis)
            .field("jwks", &self.jwks)
            .field("traces", &self.traces)
            .field("log_queues", &self.log_queues)
            .field("keyed", &self.keyed)
            .field("proxy_metrics", &self.proxy_metrics)
            .finish()
    }
}

impl Resources {
    /// Resources for a running data plane.
    pub fn live(log_files: Arc<dyn LogFiles>) -> Resources {
        Resources {
            check_only: false,
            log_files,
            redis: Arc::new(NoRedis),
            jwks: Arc::new(NoJwks),
            traces: Arc::new(NoTraces),
            log_queues: Arc::new(NoQueues),
            keyed: Arc::default(),
            proxy_metrics: Arc::default(),
        }
    }

    /// These resources with `metrics` as the `prometheus` plugin's families
    /// (the node's telemetry renders the same object).
    pub fn with_proxy_metrics(mut self, metrics: Arc<ProxyMetrics>) -> Resources {
        self.proxy_metrics = metrics;
        self
    }

    /// The `prometheus` plugin's families: one object for the node's lifetime.
    pub fn proxy_metrics(&self) -> &Arc<ProxyMetrics> {
        &self.proxy_metrics
    }

    /// These resources with `redis` as the Redis connector.
    pub fn with_redis(mut self, redis: Arc<dyn RedisConnector>) -> Resources {
        self.redis = redis;
        self
    }

    /// These resources with `jwks` as the JWKS provider.
    pub fn with_jwks(mut self, jwks: Arc<dyn JwksProvider>) -> Resources {
        self.jwks = jwks;
        self
    }

    /// These resources with `traces` as the span exporters (opentelemetry).
    pub fn with_traces(mut self, traces: Arc<dyn TraceExporters>) -> Resources {
        self.traces = traces;
        self
    }

    /// These resources with `queues` as the http-log queues.
    pub fn with_log_queues(mut self, queues: Arc<dyn LogQueues>) -> Resources {
        self.log_queues = queues;
        self
    }

    /// Resources for checking that a config compiles: nothing is opened.
    pub fn check_only() -> Resources {
        Resources {
            check_only: true,
            log_files: Arc::new(NoFiles),
            redis: Arc::new(NoRedis),
            jwks: Arc::new(NoJwks),
            traces: Arc::new(NoTraces),
            log_queues: Arc::new(NoQueues),
            keyed: Arc::default(),
            proxy_metrics: Arc::default(),
        }
    }

    /// `true` on the control plane's check: a plugin may skip preparing what
    /// only serving needs.
    pub fn is_check_only(&self) -> bool {
        self.check_only
    }

    /// The log file sink for `path`, shared by every instance naming it.
    pub fn log_file(&self, path: &str, reopen: bool) -> Result<Arc<dyn LineSink>, String> {
        self.log_files.open(path, reopen)
    }

    /// A handle running `source` on `server` (no connection is made here).
    pub fn redis_script(
        &self,
        server: &RedisServer,
        source: &'static str,
    ) -> Result<Arc<dyn RedisScript>, String> {
        self.redis.script(server, source)
    }

    /// The key set of a JWKS source, shared by every instance naming it
    /// (nothing is fetched on the control plane's check).
    pub fn jwks_keys(&self, source: &JwksSource) -> Result<Arc<dyn JwksKeys>, String> {
        self.jwks.keys(source)
    }

    /// The span exporter for `endpoint`, shared by every instance with the
    /// same settings (nothing is connected here).
    pub fn trace_exporter(&self, endpoint: &OtlpEndpoint) -> Result<Arc<dyn SpanSink>, String> {
        self.traces.exporter(endpoint)
    }

    /// The http-log queue of `target`, shared by every instance naming an
    /// equal target (no connection is made here).
    pub fn log_queue(&self, target: &HttpLogTarget) -> Result<Arc<dyn LogQueue>, String> {
        self.log_queues.queue(target)
    }

    /// The shared state of type `T` under `key` if some compiled config
    /// holds it now (metrics read it without creating it).
    pub fn keyed_live<T: Any + Send + Sync>(&self, key: &str) -> Option<Arc<T>> {
        let id = (TypeId::of::<T>(), key.to_string());
        self.keyed.get(&id)?.downcast::<T>().ok()
    }

    /// Shared state of type `T` under `key` (e.g. counters of one limit),
    /// created with `T::default()` on first use and the same object for as
    /// long as some compiled config holds it.
    pub fn keyed<T: Any + Send + Sync + Default>(&self, key: &str) -> Arc<T> {
        let id = (TypeId::of::<T>(), key.to_string());
        let created = self.keyed.get_or_try_insert(&id, || {
            Ok::<_, std::convert::Infallible>(Arc::new(T::default()) as Arc<AnyShared>)
        });
        let value = match created {
            Ok(value) => value,
            Err(never) => match never {},
        };
        // The key includes the TypeId, so the downcast cannot fail; a fresh
        // value is the safe answer if it ever did.
        value.downcast::<T>().unwrap_or_default()
    }
}

/// The check-only file opener: accepts any path, writes nowhere.
#[derive(Debug)]
struct NoFiles;

#[derive(Debug)]
struct NoSink;

impl LineSink for NoSink {
    fn write_line(&self, _line: &[u8]) {}
}

impl LogFiles for NoFiles {
    fn open(&self, _path: &str, _reopen: bool) -> Result<Arc<dyn LineSink>, String> {
        Ok(Arc::new(NoSink))
    }
}

/// The check-only (and default) Redis connector: hands out scripts that
/// never connect and fail if ever called.
#[derive(Debug)]
struct NoRedis;

#[derive(Debug)]
struct NoScript;

impl RedisScript for NoScript {
    fn eval<'a>(&'a self, _call: &'a ScriptCall, _timeout: Duration) -> RedisReply<'a> {
        Box::pin(std::future::ready(Err(RedisFailure::Failed(
            "no redis connector on this node".into(),
        ))))
    }
}

impl RedisConnector for NoRedis {
    fn script(
        &self,
        _server: &RedisServer,
        _source: &'static str,
    ) -> Result<Arc<dyn RedisScript>, String> {
        Ok(Arc::new(NoScript))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn keyed_state_is_shared_while_held_and_dropped_after() {
        let resources = Resources::check_only();
        let a = resources.keyed::<AtomicU64>("limit");
        a.fetch_add(3, Ordering::Relaxed);
        let b = resources.keyed::<AtomicU64>("limit");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(
            resources
                .keyed::<AtomicU64>("other")
                .load(Ordering::Relaxed),
            0
        );
        drop((a, b));
        assert_eq!(
            resources
                .keyed::<AtomicU64>("limit")
                .load(Ordering::Relaxed),
            0
        );
    }

    #[test]
    fn shared_set_sweeps_dead_entries() {
        let set: SharedSet<u32, u32> = SharedSet::default();
        let mut held = Vec::new();
        for i in 0..100 {
            let value = set
                .get_or_try_insert(&i, || Ok::<_, ()>(Arc::new(i)))
                .unwrap();
            if i % 10 == 0 {
                held.push(value);
            }
        }
        assert_eq!(set.live(), 10);
        assert!(set.entries.lock().unwrap().len() < 100);
    }
}
