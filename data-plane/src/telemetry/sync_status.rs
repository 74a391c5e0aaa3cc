//! [`SyncStatus`]: the sync client's counters (snapshots applied and
//! rejected, cache writes that failed), its link to the control plane
//! ([`Link`], `/status`'s `control_plane`), the cache writer's progress, and
//! the cluster certificate's expiry; written by `crate::sync`, read by
//! `/status` and `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Connection state, read by the status listener and metrics.
#[derive(Debug, Default)]
pub struct SyncStatus {
    pub connected: AtomicBool,
    pub snapshots_applied: AtomicU64,
    pub snapshots_rejected: AtomicU64,
    /// Applied snapshots that could not be written to the cache.
    pub persist_failures: AtomicU64,
    /// When this node's cluster certificate expires (unix seconds; 0: unknown).
    pub cert_expiry: std::sync::atomic::AtomicI64,
    link: Mutex<Link>,
    /// Version of the snapshot last written to the cache (0: none yet).
    persisted: watch::Sender<u64>,
}

impl SyncStatus {
    /// Version of the snapshot last written to the cache, 0 before the first.
    pub fn persisted_version(&self) -> u64 {
        *self.persisted.borrow()
    }

    /// Waits until a snapshot of `version` or newer is on disk. The Ack does
    /// not wait for the write, so whoever needs the file waits here.
    pub async fn wait_persisted(&self, version: u64) {
        let mut persisted = self.persisted.subscribe();
        // `self` owns the sender, so the channel stays open while we wait.
        let _ = persisted.wait_for(|v| *v >= version).await;
    }

    pub(crate) fn record_persisted(&self, version: u64) {
        self.persisted.send_replace(version);
    }

    /// The connection to the control plane as `/status` shows it.
    pub fn link(&self) -> Link {
        self.link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The reason the last attempt failed, or why the control plane refuses
    /// to send configs; `None` while connected and served.
    pub fn last_error(&self) -> Option<String> {
        self.link().last_error
    }

    /// Moves to `state` with `error`; returns whether that is a change (the
    /// caller logs only changes).
    pub(crate) fn transition(
        &self,
        state: LinkState,
        error: Option<String>,
        next_attempt_ms: Option<i64>,
    ) -> bool {
        let mut link = self
            .link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        link.next_attempt_ms = next_attempt_ms;
        if link.state == state && link.last_error == error {
            return false;
        }
        link.state = state;
        link.last_error = error;
        link.since_ms = now_ms();
        true
    }
}

/// Where the sync client stands with the control plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LinkState {
    /// Before the first attempt ended.
    #[default]
    Connecting,
    Connected,
    /// The last attempt failed or the stream ended; retrying.
    Disconnected,
    /// Connected, but the control plane refuses to send configs (incompatible node).
    Refused,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Disconnected => "disconnected",
            LinkState::Refused => "refused",
        }
    }
}

/// The connection state, its reason, and when it began.
#[derive(Debug, Clone)]
pub struct Link {
    pub state: LinkState,
    pub last_error: Option<String>,
    /// Unix milliseconds when `state` or `last_error` last changed.
    pub since_ms: i64,
    /// Unix milliseconds of the next connection attempt, while disconnected.
    pub next_attempt_ms: Option<i64>,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            state: LinkState::Connecting,
            last_error: None,
            since_ms: now_ms(),
            next_attempt_ms: None,
        }
    }
}

impl Link {
    /// The `control_plane` object of `/status`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "state": self.state.as_str(),
            "last_error": self.last_error,
            "since": self.since_ms.div_euclid(1000),
            "since_ms": self.since_ms,
            "next_attempt_ms": self.next_attempt_ms,
        })
    }
}
