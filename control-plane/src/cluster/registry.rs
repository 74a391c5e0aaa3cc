//! What the control plane knows about each data plane: identity, what it was
//! sent, what it applied and when, why it rejected a config, whether it is
//! connected. Held in memory for the live view; every change is also sent on
//! an event channel so the store can persist it (per-node rows in the database).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What a data plane says about itself when it connects.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeHello {
    pub node_id: String,
    pub hostname: String,
    pub address: String,
    pub version: String,
    pub plugins: Vec<String>,
    pub applied_version: u64,
    pub applied_hash: String,
    pub cert_expiry: i64,
}

/// The recorded state of one data plane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataPlaneState {
    pub id: String,
    pub hostname: String,
    pub ip: String,
    pub version: String,
    pub plugins: Vec<String>,
    pub connected: bool,
    /// Version and hash of the last snapshot sent to it.
    pub sent_version: u64,
    pub sent_hash: String,
    pub sent_at_ms: i64,
    /// What it runs (from its Hello or its last Ack).
    pub config_version: u64,
    pub config_hash: String,
    pub applied_at_ms: i64,
    /// When the control plane received the Ack of `config_version` (unix ms).
    pub acked_at_ms: i64,
    /// Milliseconds from sending a snapshot to its Ack.
    pub last_apply_lag_ms: Option<i64>,
    pub rejected_version: Option<u64>,
    pub rejected_hash: Option<String>,
    pub last_errors: Vec<String>,
    /// Snapshots it rejected (Nack) since this control plane first saw it.
    pub nacks: u64,
    pub incompatible_reason: Option<String>,
    pub last_seen_ms: i64,
    pub connected_at_ms: i64,
    pub cert_expiry: i64,
    /// Which connection session owns the row (a reconnect starts a new one).
    #[serde(skip)]
    pub session: u64,
}

/// Kong-style sync status, extended with the states Tollgate can tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    InSync,
    Behind,
    Rejected,
    Disconnected,
    Incompatible,
}

impl DataPlaneState {
    /// Status relative to the currently published hash.
    pub fn sync_status(&self, published_hash: Option<&str>) -> SyncStatus {
        if self.incompatible_reason.is_some() {
            return SyncStatus::Incompatible;
        }
        if !self.connected {
            return SyncStatus::Disconnected;
        }
        if published_hash.is_some() && self.rejected_hash.as_deref() == published_hash {
            return SyncStatus::Rejected;
        }
        match published_hash {
            Some(hash) if hash != self.config_hash => SyncStatus::Behind,
            _ => SyncStatus::InSync,
        }
    }

    /// How long the node has been behind the published config, in ms (0 when in sync).
    pub fn lag_ms(&self, published_hash: Option<&str>, now: i64) -> i64 {
        match published_hash {
            Some(hash) if hash != self.config_hash && self.sent_hash == hash => {
                (now - self.sent_at_ms).max(0)
            }
            _ => 0,
        }
    }
}

/// A change to persist.
#[derive(Debug, Clone)]
pub enum RegistryEvent {
    Updated(Box<DataPlaneState>),
}

#[derive(Default)]
struct Inner {
    nodes: BTreeMap<String, DataPlaneState>,
    next_session: u64,
}

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct DataPlaneRegistry {
    inner: Arc<Mutex<Inner>>,
    changes: watch::Sender<u64>,
    events: Option<mpsc::UnboundedSender<RegistryEvent>>,
}

impl Default for DataPlaneRegistry {
    fn default() -> Self {
        Self::new(None)
    }
}

impl DataPlaneRegistry {
    /// `events`, when given, receives every change (for persistence).
    pub fn new(events: Option<mpsc::UnboundedSender<RegistryEvent>>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            changes: watch::channel(0).0,
            events,
        }
    }

    /// A receiver that ticks on every change (tests wait on it).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn list(&self) -> Vec<DataPlaneState> {
        self.inner
            .lock()
            .map(|g| g.nodes.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many data planes hold an open stream now.
    pub fn connected_count(&self) -> u32 {
        self.inner.lock().map_or(0, |g| {
            u32::try_from(g.nodes.values().filter(|n| n.connected).count()).unwrap_or(u32::MAX)
        })
    }

    pub fn get(&self, node_id: &str) -> Option<DataPlaneState> {
        self.inner.lock().ok()?.nodes.get(node_id).cloned()
    }

    fn update(&self, node_id: &str, session: Option<u64>, f: impl FnOnce(&mut DataPlaneState)) {
        let snapshot = {
            let Ok(mut guard) = self.inner.lock() else {
                return;
            };
            let Some(state) = guard.nodes.get_mut(node_id) else {
                return;
            };
            // A stale stream (replaced by a reconnect) must not overwrite the new one.
            if session.is_some_and(|s| s != state.session) {
                return;
            }
            f(state);
            state.clone()
        };
        self.notify(snapshot);
    }

    fn notify(&self, state: DataPlaneState) {
        if let Some(events) = &self.events {
            let _ = events.send(RegistryEvent::Updated(Box::new(state)));
        }
        self.changes.send_modify(|n| *n += 1);
    }

    /// Records a new connection and returns its session number.
    pub fn connected(&self, hello: NodeHello) -> u64 {
        let now = now_ms();
        let (session, state) = {
            let Ok(mut guard) = self.inner.lock() else {
                return 0;
            };
            guard.next_session += 1;
            let session = guard.next_session;
            let previous = guard.nodes.remove(&hello.node_id);
            let state = DataPlaneState {
                id: hello.node_id.clone(),
                hostname: hello.hostname,
                ip: hello.address,
                version: hello.version,
                plugins: hello.plugins,
                connected: true,
                sent_version: 0,
                sent_hash: String::new(),
                sent_at_ms: 0,
                config_version: hello.applied_version,
                config_hash: hello.applied_hash,
                applied_at_ms: previous.as_ref().map(|p| p.applied_at_ms).unwrap_or(0),
                acked_at_ms: previous.as_ref().map(|p| p.acked_at_ms).unwrap_or(0),
                last_apply_lag_ms: previous.as_ref().and_then(|p| p.last_apply_lag_ms),
                rejected_version: None,
                rejected_hash: None,
                last_errors: Vec::new(),
                nacks: previous.as_ref().map(|p| p.nacks).unwrap_or(0),
                incompatible_reason: None,
                last_seen_ms: now,
                connected_at_ms: now,
                cert_expiry: hello.cert_expiry,
                session,
            };
            guard.nodes.insert(hello.node_id, state.clone());
            (session, state)
        };
        self.notify(state);
        session
    }

    pub fn disconnected(&self, node_id: &str, session: u64) {
        self.update(node_id, Some(session), |s| s.connected = false);
    }

    pub fn seen(&self, node_id: &str) {
        self.update(node_id, None, |s| s.last_seen_ms = now_ms());
    }

    pub fn sent(&self, node_id: &str, version: u64, hash: &str) {
        self.update(node_id, None, |s| {
            s.sent_version = version;
            s.sent_hash = hash.to_string();
            s.sent_at_ms = now_ms();
            s.incompatible_reason = None;
        });
    }

    pub fn acked(&self, node_id: &str, version: u64, hash: &str, applied_at_ms: i64) {
        self.update(node_id, None, |s| {
            let now = now_ms();
            s.config_version = version;
            s.config_hash = hash.to_string();
            s.applied_at_ms = applied_at_ms;
            s.acked_at_ms = now;
            s.last_seen_ms = now;
            if s.sent_hash == hash {
                s.last_apply_lag_ms = Some((now - s.sent_at_ms).max(0));
            }
            if s.rejected_hash.as_deref() == Some(hash) {
                s.rejected_hash = None;
                s.rejected_version = None;
            }
        });
    }

    pub fn rejected(&self, node_id: &str, version: u64, hash: &str, errors: Vec<String>) {
        self.update(node_id, None, |s| {
            s.rejected_version = Some(version);
            s.rejected_hash = Some(hash.to_string());
            s.last_errors = errors;
            s.nacks += 1;
            s.last_seen_ms = now_ms();
        });
    }

    pub fn incompatible(&self, node_id: &str, reason: &str) {
        let reason = reason.to_string();
        self.update(node_id, None, |s| s.incompatible_reason = Some(reason));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn hello(id: &str) -> NodeHello {
        NodeHello {
            node_id: id.into(),
            hostname: "h".into(),
            address: "127.0.0.1".into(),
            version: tollgate_shared::VERSION.into(),
            plugins: vec![],
            applied_version: 0,
            applied_hash: String::new(),
            cert_expiry: 0,
        }
    }

    #[test]
    fn status_follows_send_ack_nack_and_disconnect() {
        let registry = DataPlaneRegistry::default();
        let session = registry.connected(hello("a"));
        registry.sent("a", 2, "h2");
        let state = registry.get("a").unwrap();
        assert_eq!(state.sync_status(Some("h2")), SyncStatus::Behind);
        registry.rejected("a", 2, "h2", vec!["bad".into()]);
        assert_eq!(
            registry.get("a").unwrap().sync_status(Some("h2")),
            SyncStatus::Rejected
        );
        registry.sent("a", 3, "h3");
        registry.acked("a", 3, "h3", 1);
        let state = registry.get("a").unwrap();
        assert_eq!(state.sync_status(Some("h3")), SyncStatus::InSync);
        assert_eq!(state.last_errors, vec!["bad".to_string()]);
        assert!(state.last_apply_lag_ms.is_some());
        // A stale session cannot mark a reconnected node as gone.
        let newer = registry.connected(hello("a"));
        registry.disconnected("a", session);
        assert!(registry.get("a").unwrap().connected);
        registry.disconnected("a", newer);
        assert_eq!(
            registry.get("a").unwrap().sync_status(Some("h3")),
            SyncStatus::Disconnected
        );
        registry.incompatible("a", "too new");
        assert_eq!(
            registry.get("a").unwrap().sync_status(Some("h3")),
            SyncStatus::Incompatible
        );
    }
}
