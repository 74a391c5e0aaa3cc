//! The control plane's counters: the Admin API listener's (connections,
//! requests, responses by status) and the publisher's, and the node-level
//! families written from them.

use serde_json::{json, Value};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tollgate_shared::exposition::{self, ConnectionCounts, Families, Kind, Naming};

/// Status codes counted one by one; anything else is counted as 0.
const CODES: std::ops::Range<u16> = 100..600;

/// Connection and request counters for `GET /status` and `GET /metrics`.
#[derive(Debug)]
pub struct ServerCounters {
    pub connections_accepted: AtomicU64,
    pub connections_active: AtomicU64,
    pub total_requests: AtomicU64,
    /// Admin API responses by status code (index: code - 100); the last slot
    /// holds codes outside 100..600.
    responses: Box<[AtomicU64]>,
}

impl Default for ServerCounters {
    fn default() -> Self {
        ServerCounters {
            connections_accepted: AtomicU64::new(0),
            connections_active: AtomicU64::new(0),
            total_requests: AtomicU64::new(0),
            responses: (0..=CODES.len()).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl ServerCounters {
    pub fn snapshot(&self) -> Value {
        let accepted = self.connections_accepted.load(Ordering::Relaxed);
        let active = self.connections_active.load(Ordering::Relaxed);
        json!({
            "connections_accepted": accepted,
            "connections_handled": accepted,
            "connections_active": active,
            "connections_reading": 0,
            "connections_writing": active.min(1),
            "connections_waiting": active.saturating_sub(1),
            "total_requests": self.total_requests.load(Ordering::Relaxed),
        })
    }

    /// Counts one Admin API response.
    pub fn record_response(&self, status: u16) {
        let slot = if CODES.contains(&status) {
            usize::from(status - CODES.start)
        } else {
            CODES.len()
        };
        if let Some(counter) = self.responses.get(slot) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The status codes answered so far and how often, in code order.
    fn responses(&self) -> Vec<(u16, u64)> {
        self.responses
            .iter()
            .enumerate()
            .filter_map(|(slot, counter)| {
                let count = counter.load(Ordering::Relaxed);
                let code = if slot < CODES.len() {
                    CODES.start + slot as u16
                } else {
                    0
                };
                (count > 0).then_some((code, count))
            })
            .collect()
    }
}

/// The publisher's counters and last failure, for `/clustering/status` and
/// `/metrics` (written by `cluster::publisher`).
#[derive(Debug, Default)]
pub struct PublisherStatus {
    pub last_error: std::sync::Mutex<Option<String>>,
    pub builds: AtomicU64,
    pub failures: AtomicU64,
    pub last_build_ms: AtomicU64,
}

/// What the node-level families are written from, read at one scrape.
pub(super) struct NodeFacts {
    pub naming: Naming,
    pub node_id: String,
    pub datastore_reachable: bool,
    pub counters: Arc<ServerCounters>,
}

impl NodeFacts {
    pub fn encode(&self, families: &mut Families<'_, '_>) -> fmt::Result {
        let naming = &self.naming;
        let node_id = self.node_id.as_str();
        let counters = &self.counters;
        let name = naming.same("node_info");
        families
            .family(&name, "Node identity and version (always 1)", Kind::Gauge)?
            .sample(
                &[("node_id", node_id), ("version", env!("CARGO_PKG_VERSION"))],
                1i64,
            )?;
        let name = naming.same("datastore_reachable");
        families.single(
            &name,
            "Whether the database answers (1) or not (0)",
            Kind::Gauge,
            i64::from(self.datastore_reachable),
        )?;

        let active = counters.connections_active.load(Ordering::Relaxed);
        exposition::connections(
            families,
            naming,
            &ConnectionCounts {
                node_id,
                subject: "Admin API",
                accepted: counters.connections_accepted.load(Ordering::Relaxed),
                handled: None,
                active,
                // One request at a time per connection is the most the
                // listener tells apart (the same estimate `/status` gives).
                writing: active.min(1),
                requests: counters.total_requests.load(Ordering::Relaxed),
            },
        )?;
        let responses = counters.responses();
        if responses.is_empty() {
            return Ok(());
        }
        let name = naming.same("admin_requests_total");
        let mut family =
            families.family(&name, "Admin API responses by status code", Kind::Counter)?;
        for (code, count) in responses {
            let code = code.to_string();
            family.sample(&[("code", &code)], count)?;
        }
        Ok(())
    }
}
