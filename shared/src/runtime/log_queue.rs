//! What the `http-log` plugin hands its entries to: a background queue that
//! the data plane runs (batching, retries, bounded memory, one per distinct
//! [`HttpLogTarget`], shared by every instance naming the same target and
//! outliving config swaps). This module owns the queue's identity and the
//! two traits; the data plane owns the tasks and the sockets
//! (`data-plane/src/plugins/http_log.rs`), so this crate stays free of I/O.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A queue accepting log entries; entries leave it in the background.
pub trait LogQueue: Send + Sync + fmt::Debug {
    /// Adds one entry (a JSON object) and returns at once: nothing here
    /// waits for the network, and a full queue drops its oldest entry.
    fn enqueue(&self, entry: &[u8]);
}

/// Hands out the queue of a target, creating it (and its sender) on first
/// use; the same queue for as long as some compiled config holds it.
pub trait LogQueues: Send + Sync + fmt::Debug {
    fn queue(&self, target: &HttpLogTarget) -> Result<Arc<dyn LogQueue>, String>;
}

/// Where and how batches are sent, and how the queue before them behaves.
/// Two plugin instances with equal targets share one queue.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HttpLogTarget {
    /// `https` (rustls, certificate not verified, as Kong) or plain `http`.
    pub tls: bool,
    /// The host to connect to (an IPv6 address without brackets).
    pub host: String,
    pub port: u16,
    /// The request target: path (at least `/`) and query.
    pub path_and_query: String,
    /// `POST`, `PUT` or `PATCH`.
    pub method: &'static str,
    pub content_type: String,
    /// `Basic base64(userinfo)` when the endpoint carried userinfo. Secret.
    pub authorization: Option<String>,
    /// The configured extra headers, in name order. Values may be secret.
    pub headers: Vec<(String, String)>,
    /// Bound on one send: connect, write and the whole answer.
    pub timeout: Duration,
    /// How long an idle connection to the collector is kept; zero closes it
    /// after each batch.
    pub keepalive: Duration,
    pub queue: QueueSettings,
}

impl HttpLogTarget {
    /// `scheme://host:port/path` without credentials, for log lines.
    pub fn display_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let path = self
            .path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(path, _)| path);
        format!("{scheme}://{host}:{}{path}", self.port)
    }
}

impl fmt::Debug for HttpLogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither the Basic credentials, the query (tokens live there) nor
        // header values ever reach a log line.
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("HttpLogTarget")
            .field("url", &self.display_url())
            .field("method", &self.method)
            .field("content_type", &self.content_type)
            .field("authorization", &self.authorization.as_ref().map(|_| "…"))
            .field("headers", &header_names)
            .field("timeout", &self.timeout)
            .field("keepalive", &self.keepalive)
            .field("queue", &self.queue)
            .finish()
    }
}

/// Kong's `queue` record in typed form (`kong/tools/queue.lua`), after the
/// deprecated fields were mapped onto it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueSettings {
    /// Entries per request to the collector (1 sends the bare object, more a
    /// JSON array).
    pub max_batch_size: usize,
    /// How long a batch waits for more entries after its first one.
    pub max_coalescing_delay: Duration,
    /// Entries waiting at most; beyond it the oldest are dropped.
    pub max_entries: usize,
    /// Bytes waiting at most, when set; beyond it the oldest are dropped,
    /// and a single larger entry is refused.
    pub max_bytes: Option<usize>,
    /// A failing batch is retried until this long after its first attempt,
    /// then dropped (zero: never retried).
    pub max_retry_time: Duration,
    /// First retry delay, doubled for every further retry…
    pub initial_retry_delay: Duration,
    /// …up to this.
    pub max_retry_delay: Duration,
    /// Kong's `concurrency_limit: -1`: every entry is sent on its own, in
    /// parallel, without batching.
    pub unbounded_concurrency: bool,
}

impl QueueSettings {
    /// The delay before retry number `retry` (0 for the first retry):
    /// `min(max_retry_delay, initial_retry_delay * 2^retry)`.
    pub fn retry_delay(&self, retry: u32) -> Duration {
        let factor = 2u32.checked_pow(retry.min(31)).unwrap_or(u32::MAX);
        self.initial_retry_delay
            .checked_mul(factor)
            .unwrap_or(self.max_retry_delay)
            .min(self.max_retry_delay)
    }
}

/// The check-only (and default) queues: accept and forget.
#[derive(Debug)]
pub(crate) struct NoQueues;

#[derive(Debug)]
struct NoQueue;

impl LogQueue for NoQueue {
    fn enqueue(&self, _entry: &[u8]) {}
}

impl LogQueues for NoQueues {
    fn queue(&self, _target: &HttpLogTarget) -> Result<Arc<dyn LogQueue>, String> {
        Ok(Arc::new(NoQueue))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn settings(initial: Duration, max: Duration) -> QueueSettings {
        QueueSettings {
            max_batch_size: 1,
            max_coalescing_delay: Duration::from_secs(1),
            max_entries: 10,
            max_bytes: None,
            max_retry_time: Duration::from_secs(60),
            initial_retry_delay: initial,
            max_retry_delay: max,
            unbounded_concurrency: false,
        }
    }

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let queue = settings(Duration::from_millis(10), Duration::from_millis(100));
        let delays: Vec<u128> = (0..6).map(|n| queue.retry_delay(n).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 100, 100]);
        assert_eq!(queue.retry_delay(u32::MAX), Duration::from_millis(100));
        let huge = settings(
            Duration::from_secs(1_000_000),
            Duration::from_secs(1_000_000),
        );
        assert_eq!(huge.retry_delay(40), Duration::from_secs(1_000_000));
    }

    #[test]
    fn the_debug_form_hides_credentials_query_and_header_values() {
        let target = HttpLogTarget {
            tls: true,
            host: "::1".into(),
            port: 8443,
            path_and_query: "/ingest?token=q-secret".into(),
            method: "POST",
            content_type: "application/json".into(),
            authorization: Some("Basic dXNlcjpwdy1zZWNyZXQ=".into()),
            headers: vec![("X-Api-Key".into(), "h-secret".into())],
            timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(60),
            queue: settings(Duration::from_millis(10), Duration::from_secs(60)),
        };
        let text = format!("{target:?}");
        assert!(text.contains("https://[::1]:8443/ingest"), "{text}");
        assert!(text.contains("X-Api-Key"), "{text}");
        for secret in ["q-secret", "dXNlcjpwdy1zZWNyZXQ", "h-secret"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
