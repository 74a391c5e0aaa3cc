//! The per-client-address connection cap of the proxy listeners (nginx
//! `limit_conn` by address): a connection over the cap is closed as soon as it
//! is accepted, before TLS or any read, so a single address cannot hold
//! thousands of slow connections. Off (no map, no lock) when the cap is 0.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Open connections per client address, shared by every proxy listener.
#[derive(Debug)]
pub struct PerIpConnections {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; its slot is given back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    owner: Arc<PerIpConnections>,
    ip: IpAddr,
}

impl PerIpConnections {
    /// `None` when `cap` is 0 (unlimited).
    pub fn new(cap: usize) -> Option<Arc<PerIpConnections>> {
        (cap > 0).then(|| {
            Arc::new(PerIpConnections {
                cap,
                open: Mutex::new(HashMap::new()),
            })
        })
    }

    /// A slot for a new connection from `ip`, or `None` when it has `cap` open.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let ip = ip.to_canonical();
        let mut open = self.lock();
        let count = open.entry(ip).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            owner: Arc::clone(self),
            ip,
        })
    }

    /// Open connections from `ip` (for tests and status).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.lock().get(&ip.to_canonical()).copied().unwrap_or(0)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.owner.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_cap_is_per_address_and_slots_come_back() {
        assert!(PerIpConnections::new(0).is_none());
        let limit = PerIpConnections::new(2).unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limit.admit(a).unwrap();
        let _second = limit.admit(mapped).unwrap();
        assert!(
            limit.admit(a).is_none(),
            "IPv4-mapped counts as the same address"
        );
        let _other = limit.admit(b).unwrap();
        drop(first);
        assert_eq!(limit.open_from(a), 1);
        assert!(limit.admit(a).is_some());
    }
}
