//! [`StatusState`]: the data plane's own counters (connections, requests,
//! denials, gateway errors, plugin failures) and config facts (what is
//! served, rejections), updated by the proxy and the gateway, reported by
//! `/status` and, read at scrape time, by `/metrics`.

use super::SyncStatus;
use crate::plugins::http_log::HttpLogCounters;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;
use tollgate_shared::compile::CompileError;

/// A config that was compiled and swapped in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: u64,
    pub hash: String,
    /// Unix milliseconds of the swap.
    pub applied_at_ms: i64,
}

#[derive(Debug, Clone, Default)]
struct ConfigFacts {
    applied: Option<Applied>,
    rejected: u64,
    last_error: Option<String>,
}

/// Counters and config facts of one data plane.
#[derive(Debug)]
pub struct StatusState {
    started: Instant,
    pub connections_accepted: AtomicU64,
    pub connections_handled: AtomicU64,
    pub connections_active: AtomicU64,
    pub total_requests: AtomicU64,
    pub requests_in_flight: AtomicU64,
    /// Requests answered 500 because a plugin failed or panicked.
    pub plugin_failures: AtomicU64,
    /// Requests a plugin answered itself (denied, rate-limited…).
    pub requests_denied: AtomicU64,
    /// 5xx responses the gateway generated (not passed through from an upstream).
    pub gateway_errors: AtomicU64,
    /// Connections closed at accept by the per-client-address cap.
    pub connections_refused_per_ip: AtomicU64,
    /// The http-log queues' counters (entries sent, retried, dropped…).
    pub http_log: Arc<HttpLogCounters>,
    config: Mutex<ConfigFacts>,
    /// The sync client's state, when this data plane follows a control plane.
    sync: OnceLock<Arc<SyncStatus>>,
}

impl Default for StatusState {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusState {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            connections_accepted: AtomicU64::new(0),
            connections_handled: AtomicU64::new(0),
            connections_active: AtomicU64::new(0),
            total_requests: AtomicU64::new(0),
            requests_in_flight: AtomicU64::new(0),
            plugin_failures: AtomicU64::new(0),
            requests_denied: AtomicU64::new(0),
            gateway_errors: AtomicU64::new(0),
            connections_refused_per_ip: AtomicU64::new(0),
            http_log: Arc::default(),
            config: Mutex::new(ConfigFacts::default()),
            sync: OnceLock::new(),
        }
    }

    /// A plugin failed or panicked on a request (its name is in the log).
    pub(crate) fn record_plugin_failure(&self, _plugin: &'static str) {
        self.plugin_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Reports `sync`'s connection state as `control_plane` in `/status`.
    pub fn follow_sync(&self, sync: Arc<SyncStatus>) {
        let _ = self.sync.set(sync);
    }

    pub(crate) fn record_applied(&self, applied: &Applied) {
        let mut facts = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        facts.applied = Some(applied.clone());
        facts.last_error = None;
    }

    pub(crate) fn record_rejected(&self, version: u64, errors: &[CompileError]) {
        let mut facts = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        facts.rejected += 1;
        facts.last_error = Some(format!(
            "version {version}: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }

    /// Configs rejected since start.
    pub fn rejected(&self) -> u64 {
        self.config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .rejected
    }

    /// The sync client's state, when this data plane follows a control plane.
    pub fn sync(&self) -> Option<&Arc<SyncStatus>> {
        self.sync.get()
    }

    /// How long the node has run.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The config currently served, if any was applied.
    pub fn applied(&self) -> Option<Applied> {
        self.config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .applied
            .clone()
    }

    pub fn is_ready(&self) -> bool {
        self.applied().is_some()
    }

    /// The `/status` body: Kong's `server` object and `configuration_hash`,
    /// plus Tollgate's `proxy` counters, config version, rejection count, the
    /// control plane connection (`null` without one) and uptime.
    pub fn to_json(&self) -> serde_json::Value {
        let facts = self
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let active = self.connections_active.load(Ordering::Relaxed);
        let writing = self.requests_in_flight.load(Ordering::Relaxed).min(active);
        let hash = facts
            .applied
            .as_ref()
            .map(|a| a.hash.clone())
            .unwrap_or_else(|| "0".repeat(32));
        serde_json::json!({
            "server": {
                "connections_active": active,
                "connections_reading": 0,
                "connections_writing": writing,
                "connections_waiting": active - writing,
                "connections_accepted": self.connections_accepted.load(Ordering::Relaxed),
                "connections_handled": self.connections_handled.load(Ordering::Relaxed),
                "total_requests": self.total_requests.load(Ordering::Relaxed),
            },
            "proxy": {
                "requests_denied": self.requests_denied.load(Ordering::Relaxed),
                "gateway_errors": self.gateway_errors.load(Ordering::Relaxed),
                "connections_refused_per_ip": self.connections_refused_per_ip.load(Ordering::Relaxed),
            },
            "configuration_hash": hash,
            "plugins": {
                "failures": self.plugin_failures.load(Ordering::Relaxed),
                "http_log": self.http_log.to_json(),
            },
            "config": {
                "version": facts.applied.as_ref().map(|a| a.version),
                "hash": facts.applied.as_ref().map(|a| a.hash.clone()),
                "applied_at_ms": facts.applied.as_ref().map(|a| a.applied_at_ms),
                "rejected": facts.rejected,
                "last_error": facts.last_error,
            },
            "control_plane": self.sync.get().map(|sync| sync.link().to_json()),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "version": env!("CARGO_PKG_VERSION"),
        })
    }
}
