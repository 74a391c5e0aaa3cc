//! Rate-limited warnings: under attack a gateway denies or fails thousands of
//! requests a second, and one log line each would turn the attack into a disk
//! and I/O problem. A [`LogLimiter`] admits a few lines per second and counts
//! the rest, reported with the next admitted line. Lock-free; approximate
//! under races, which is fine for logs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Admits at most `per_second` events in each one-second window.
#[derive(Debug)]
pub struct LogLimiter {
    epoch: Instant,
    per_second: u64,
    window: AtomicU64,
    admitted: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    pub fn new(per_second: u64) -> Self {
        Self {
            epoch: Instant::now(),
            per_second,
            window: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this event may be logged, `n` being how many were
    /// suppressed since the last admitted one; `None` when it must not be.
    pub fn admit(&self) -> Option<u64> {
        let window = self.epoch.elapsed().as_secs();
        let seen = self.window.load(Ordering::Relaxed);
        if seen != window
            && self
                .window
                .compare_exchange(seen, window, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.admitted.store(0, Ordering::Relaxed);
        }
        if self.admitted.fetch_add(1, Ordering::Relaxed) < self.per_second {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// The limiters of the proxy's warnings, one per kind of event.
#[derive(Debug)]
pub struct ProxyLogLimits {
    /// Requests a plugin answered itself (ip-restriction denials…).
    pub denials: LogLimiter,
    /// 5xx answers the gateway produced (upstream failures…).
    pub gateway_errors: LogLimiter,
    /// Connections closed by the per-address cap.
    pub refused_connections: LogLimiter,
}

/// Lines per second per kind: enough to see what is happening, far too few
/// to fill a disk.
const LINES_PER_SECOND: u64 = 10;

impl Default for ProxyLogLimits {
    fn default() -> Self {
        Self {
            denials: LogLimiter::new(LINES_PER_SECOND),
            gateway_errors: LogLimiter::new(LINES_PER_SECOND),
            refused_connections: LogLimiter::new(LINES_PER_SECOND),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_burst_is_cut_to_the_rate_and_the_rest_counted() {
        let limiter = LogLimiter::new(3);
        let admitted: Vec<Option<u64>> = (0..1000).map(|_| limiter.admit()).collect();
        let passed = admitted.iter().filter(|a| a.is_some()).count();
        // A window boundary may fall inside the burst: at most two windows' worth.
        assert!((3..=6).contains(&passed), "{passed}");
        assert_eq!(admitted[0], Some(0));
        assert!(limiter.suppressed.load(Ordering::Relaxed) >= 994 - 3);
    }
}
