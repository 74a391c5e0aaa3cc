//! The live JWKS provider the jwt plugin compiles against
//! (`tollgate_shared::plugin::JwksProvider`): one cache per JWKS source
//! (URI, refresh interval, limits), shared by every instance naming it and
//! kept across config swaps, holding the last good key set.
//!
//! Fetches run as tasks of their own on the data plane's runtime, never
//! inside a request: a request that meets an unknown `kid` starts one (or
//! joins the one under way) and waits for it at most [`FETCH_TIMEOUT`], and
//! the fetch finishes for later requests even if that request gave up. A
//! source is fetched at most once per refresh interval, whatever asks: an
//! unknown `kid`, a set older than the interval (refreshed in the
//! background on use, so removed keys stop verifying), or a new source
//! (fetched when first compiled, so the first tokens rarely wait). A failed
//! fetch (refused, timed out, not 200, too large, too many keys, not a
//! JWKS) keeps the set held; failures are logged at most once per interval
//! by construction and counted.

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tollgate_shared::plugin::{
    JwksEndpoint, JwksError, JwksKeys, JwksLookup, JwksProvider, JwksSource, KeySet, Verifier,
};
use tollgate_shared::runtime::SharedSet;

/// The most a fetch takes (connect, TLS, request, body), and so the most a
/// request waits for one.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Hands out the key set caches of JWKS sources.
#[derive(Debug)]
pub struct JwksFetcher {
    caches: SharedSet<JwksSource, KeySetCache>,
    runtime: Handle,
    tls: Arc<ClientConfig>,
    timeout: Duration,
}

/// One source's state, for metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksHealth {
    /// The URI without its query.
    pub uri: String,
    /// Keys held now.
    pub keys: usize,
    /// Fetches started since the source was first used.
    pub fetches: u64,
    /// Fetches that failed.
    pub failures: u64,
    /// Unix milliseconds of the last fetch that brought a key set; 0 before
    /// the first.
    pub last_success_ms: u64,
}

impl JwksFetcher {
    /// Fetches run on `runtime`; HTTPS endpoints are verified with `tls`
    /// (the upstream client's configuration with verification on).
    pub fn new(runtime: Handle, tls: Arc<ClientConfig>) -> JwksFetcher {
        JwksFetcher {
            caches: SharedSet::default(),
            runtime,
            tls,
            timeout: FETCH_TIMEOUT,
        }
    }

    /// These caches with another fetch timeout (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> JwksFetcher {
        self.timeout = timeout;
        self
    }

    /// The state of every source some config uses.
    pub fn health(&self) -> Vec<JwksHealth> {
        self.caches
            .live_values()
            .iter()
            .map(|cache| cache.shared.health())
            .collect()
    }
}

impl JwksProvider for JwksFetcher {
    fn keys(&self, source: &JwksSource) -> Result<Arc<dyn JwksKeys>, String> {
        let mut created = false;
        let cache = self.caches.get_or_try_insert(source, || {
            created = true;
            Ok::<_, String>(Arc::new(KeySetCache::new(
                source.clone(),
                self.runtime.clone(),
                Arc::clone(&self.tls),
                self.timeout,
            )))
        })?;
        if created {
            cache.start_fetch_if_due();
        }
        Ok(cache)
    }
}

/// The cache of one source; fetch tasks hold its shared part, so a fetch
/// under way outlives the last config using the source.
#[derive(Debug)]
pub struct KeySetCache {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    source: JwksSource,
    /// `source.endpoint` without its query, for log lines.
    label: String,
    keys: ArcSwap<KeySet>,
    schedule: Mutex<Schedule>,
    /// Milliseconds after `epoch` from which a fetch may start; read
    /// without the lock on every cached lookup.
    next_due_ms: AtomicU64,
    epoch: Instant,
    /// Bumped when a fetch ends, however it ends.
    fetch_ended: watch::Sender<u64>,
    runtime: Handle,
    tls: Arc<ClientConfig>,
    timeout: Duration,
    fetches: AtomicU64,
    failures: AtomicU64,
    /// Unix milliseconds of the last successful fetch (0: none yet).
    last_success_ms: AtomicU64,
}

#[derive(Debug, Default)]
struct Schedule {
    last_start: Option<Instant>,
    in_flight: bool,
    /// Whether the last fetch failed (to log recovery once).
    failing: bool,
}

impl KeySetCache {
    fn new(
        source: JwksSource,
        runtime: Handle,
        tls: Arc<ClientConfig>,
        timeout: Duration,
    ) -> KeySetCache {
        KeySetCache {
            shared: Arc::new(Shared {
                label: source.endpoint.display(),
                source,
                keys: ArcSwap::from_pointee(KeySet::default()),
                schedule: Mutex::new(Schedule::default()),
                next_due_ms: AtomicU64::new(0),
                epoch: Instant::now(),
                fetch_ended: watch::channel(0).0,
                runtime,
                tls,
                timeout,
                fetches: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                last_success_ms: AtomicU64::new(0),
            }),
        }
    }

    /// Starts a fetch unless one is under way or the last one started less
    /// than a refresh interval ago; `true` when a fetch is under way now.
    fn start_fetch_if_due(&self) -> bool {
        let shared = &self.shared;
        let mut schedule = shared.lock_schedule();
        if schedule.in_flight {
            return true;
        }
        let now = Instant::now();
        if schedule
            .last_start
            .is_some_and(|last| now.duration_since(last) < shared.source.refresh_interval)
        {
            return false;
        }
        schedule.in_flight = true;
        schedule.last_start = Some(now);
        let due = now + shared.source.refresh_interval;
        shared.next_due_ms.store(
            u64::try_from(due.duration_since(shared.epoch).as_millis()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        drop(schedule);
        shared.fetches.fetch_add(1, Ordering::Relaxed);
        // Dropped with the task however it ends (even unpolled, when the
        // runtime is shutting down), so `in_flight` can never stick.
        let ending = FetchEnding(Arc::clone(shared));
        shared.runtime.spawn(async move {
            let outcome = ending.0.fetch().await;
            ending.0.store(outcome);
            drop(ending);
        });
        true
    }

    fn is_due(&self) -> bool {
        let elapsed = u64::try_from(self.shared.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        elapsed >= self.shared.next_due_ms.load(Ordering::Acquire)
    }
}

impl JwksKeys for KeySetCache {
    fn cached(&self, kid: &str) -> Option<Arc<Verifier>> {
        if self.is_due() {
            self.start_fetch_if_due();
        }
        self.shared.keys.load().get(kid).cloned()
    }

    fn refreshed<'a>(&'a self, kid: &'a str) -> JwksLookup<'a> {
        Box::pin(async move {
            // Subscribed before looking at the schedule, so the end of a
            // fetch under way cannot be missed.
            let mut ended = self.shared.fetch_ended.subscribe();
            if self.start_fetch_if_due() {
                // A timeout leaves the fetch running for later requests.
                let _ = tokio::time::timeout(self.shared.timeout, ended.changed()).await;
            }
            self.shared.keys.load().get(kid).cloned()
        })
    }
}

/// Marks the fetch ended (schedule and watchers) when dropped.
struct FetchEnding(Arc<Shared>);

impl Drop for FetchEnding {
    fn drop(&mut self) {
        self.0.lock_schedule().in_flight = false;
        self.0.fetch_ended.send_modify(|ended| *ended += 1);
    }
}

/// Why a fetch brought no new key set.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("'{0}' is not a valid TLS server name")]
    ServerName(String),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build the request: {0}")]
    Request(#[from] http::Error),
    #[error("answered {0}, not 200")]
    Status(StatusCode),
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Document(#[from] JwksError),
}

impl Shared {
    fn lock_schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn health(&self) -> JwksHealth {
        JwksHealth {
            uri: self.label.clone(),
            keys: self.keys.load().len(),
            fetches: self.fetches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_success_ms: self.last_success_ms.load(Ordering::Relaxed),
        }
    }

    async fn fetch(&self) -> Result<KeySet, FetchError> {
        let limits = self.source.limits;
        let body = tokio::time::timeout(
            self.timeout,
            fetch_document(&self.source.endpoint, &self.tls, limits.max_bytes),
        )
        .await
        .map_err(|_| FetchError::Timeout(self.timeout))??;
        Ok(KeySet::parse(&body, limits)?)
    }

    /// Installs a fetched set, or keeps the held one and says why.
    fn store(&self, outcome: Result<KeySet, FetchError>) {
        let failing = match outcome {
            Ok(set) => {
                tracing::debug!(jwks_uri = %self.label, keys = set.len(), "JWKS fetched");
                self.keys.store(Arc::new(set));
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| {
                        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
                    });
                self.last_success_ms.store(now_ms, Ordering::Relaxed);
                false
            }
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    jwks_uri = %self.label,
                    %error,
                    keys_kept = self.keys.load().len(),
                    retry_s = self.source.refresh_interval.as_secs(),
                    "JWKS fetch failed; the keys held keep verifying"
                );
                true
            }
        };
        let mut schedule = self.lock_schedule();
        if schedule.failing && !failing {
            tracing::info!(jwks_uri = %self.label, "JWKS endpoint answers again");
        }
        schedule.failing = failing;
    }
}

/// One GET of the document over a connection of its own (fetches are rare,
/// so no pool), reading at most `max_bytes` of body.
async fn fetch_document(
    endpoint: &JwksEndpoint,
    tls: &Arc<ClientConfig>,
    max_bytes: usize,
) -> Result<Vec<u8>, FetchError> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(FetchError::Connect)?;
    let _ = tcp.set_nodelay(true);
    if endpoint.https {
        let name = ServerName::try_from(endpoint.host.clone())
            .map_err(|_| FetchError::ServerName(endpoint.host.clone()))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
            .connect(name, tcp)
            .await
            .map_err(FetchError::Tls)?;
        exchange(stream, endpoint, max_bytes).await
    } else {
        exchange(tcp, endpoint, max_bytes).await
    }
}

async fn exchange<S>(
    stream: S,
    endpoint: &JwksEndpoint,
    max_bytes: usize,
) -> Result<Vec<u8>, FetchError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection ends when the request and its body are done or dropped.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let default_port = if endpoint.https { 443 } else { 80 };
    let host = if endpoint.host.contains(':') {
        format!("[{}]", endpoint.host)
    } else {
        endpoint.host.clone()
    };
    let host = if endpoint.port == default_port {
        host
    } else {
        format!("{host}:{}", endpoint.port)
    };
    let request = Request::get(endpoint.path_and_query.as_str())
        .header(header::HOST, host)
        .header(header::ACCEPT, "application/jwk-set+json, application/json")
        .header(
            header::USER_AGENT,
            concat!("tollgate/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    if response.status() != StatusCode::OK {
        return Err(FetchError::Status(response.status()));
    }
    let too_large = || FetchError::Document(JwksError::TooLarge { limit: max_bytes });
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_bytes as u64) {
        return Err(too_large());
    }
    let mut body = response.into_body();
    let mut document = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if document.len() + data.len() > max_bytes {
                return Err(too_large());
            }
            document.extend_from_slice(&data);
        }
    }
    Ok(document)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::Notify;
    use tollgate_shared::plugin::JwksLimits;

    /// RFC 8037 A.2's Ed25519 public key, a valid point.
    const ED25519_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn document(kids: &[&str]) -> String {
        let keys: Vec<String> = kids
            .iter()
            .map(|kid| {
                format!(r#"{{"kty":"OKP","crv":"Ed25519","kid":"{kid}","x":"{ED25519_X}"}}"#)
            })
            .collect();
        format!(r#"{{"keys":[{}]}}"#, keys.join(","))
    }

    /// What the key server answers; `gate` holds answers back until notified.
    #[derive(Default)]
    struct Server {
        body: Mutex<String>,
        status: Mutex<u16>,
        requests: AtomicUsize,
        gate: Mutex<Option<Arc<Notify>>>,
        /// Sends the body chunked, without a length.
        chunked: std::sync::atomic::AtomicBool,
    }

    async fn key_server(kids: &[&str]) -> (Arc<Server>, std::net::SocketAddr) {
        let server = Arc::new(Server::default());
        *server.body.lock().unwrap() = document(kids);
        *server.status.lock().unwrap() = 200;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::clone(&server);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    state.requests.fetch_add(1, Ordering::SeqCst);
                    let gate = state.gate.lock().unwrap().clone();
                    if let Some(gate) = gate {
                        gate.notified().await;
                    }
                    let body = state.body.lock().unwrap().clone();
                    let status = *state.status.lock().unwrap();
                    let reply = if state.chunked.load(Ordering::SeqCst) {
                        let mut reply = format!(
                            "HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                        );
                        for chunk in body.as_bytes().chunks(1000) {
                            reply.push_str(&format!("{:x}\r\n", chunk.len()));
                            reply.push_str(std::str::from_utf8(chunk).unwrap());
                            reply.push_str("\r\n");
                        }
                        reply + "0\r\n\r\n"
                    } else {
                        format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        (server, addr)
    }

    fn source(addr: std::net::SocketAddr, interval: Duration) -> JwksSource {
        JwksSource {
            endpoint: JwksEndpoint::parse(&format!("http://{addr}/jwks?token=t")).unwrap(),
            refresh_interval: interval,
            limits: JwksLimits {
                max_bytes: 4096,
                max_keys: 3,
            },
        }
    }

    fn fetcher(timeout: Duration) -> JwksFetcher {
        let tls = crate::tls::UpstreamTls::new(rustls::RootCertStore::empty())
            .unwrap()
            .client_config(true, false);
        JwksFetcher::new(Handle::current(), tls).with_timeout(timeout)
    }

    /// Waits until the source's first fetch ended.
    async fn settled(keys: &Arc<dyn JwksKeys>) {
        // A kid no set holds: joins the compile-time fetch (or sees it done).
        keys.refreshed("never-a-kid").await;
    }

    #[tokio::test]
    async fn a_source_is_fetched_once_when_compiled_and_shared() {
        let (server, addr) = key_server(&["a"]).await;
        let fetcher = fetcher(Duration::from_secs(5));
        let keys = fetcher
            .keys(&source(addr, Duration::from_secs(60)))
            .unwrap();
        let again = fetcher
            .keys(&source(addr, Duration::from_secs(60)))
            .unwrap();
        settled(&keys).await;
        assert!(keys.cached("a").is_some());
        assert!(again.cached("a").is_some());
        assert_eq!(server.requests.load(Ordering::SeqCst), 1);
        assert_eq!(fetcher.health()[0].keys, 1);
        assert_eq!(fetcher.health()[0].uri, format!("http://{addr}/jwks"));
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let last_success = fetcher.health()[0].last_success_ms;
        assert!(
            last_success > now_ms - 60_000 && last_success <= now_ms,
            "{last_success}"
        );
        drop((keys, again));
        assert!(fetcher.health().is_empty());
    }

    #[tokio::test]
    async fn concurrent_unknown_kids_cause_one_fetch_and_then_wait_an_interval() {
        let (server, addr) = key_server(&["a"]).await;
        let fetcher = fetcher(Duration::from_secs(5));
        let interval = Duration::from_millis(400);
        let keys = fetcher.keys(&source(addr, interval)).unwrap();
        settled(&keys).await;
        assert_eq!(server.requests.load(Ordering::SeqCst), 1);
        // Rotation: the server now has "b"; within the interval nothing is
        // fetched, however many requests ask.
        *server.body.lock().unwrap() = document(&["b"]);
        for _ in 0..20 {
            assert!(keys.refreshed("b").await.is_none());
        }
        assert_eq!(server.requests.load(Ordering::SeqCst), 1);
        // Once the interval passed, 20 concurrent requests for "b" share one
        // fetch, held back until all of them wait for it.
        let gate = Arc::new(Notify::new());
        *server.gate.lock().unwrap() = Some(Arc::clone(&gate));
        // The interval counts from the last fetch's start, before this.
        tokio::time::sleep(interval).await;
        let waiting: Vec<_> = (0..20)
            .map(|_| {
                let keys = Arc::clone(&keys);
                tokio::spawn(async move { keys.refreshed("b").await.is_some() })
            })
            .collect();
        while server.requests.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for task in waiting {
            assert!(task.await.unwrap());
        }
        assert_eq!(server.requests.load(Ordering::SeqCst), 2);
        assert!(keys.cached("a").is_none(), "the rotated-out key is gone");
    }

    #[tokio::test]
    async fn failures_keep_the_keys_held() {
        let (server, addr) = key_server(&["a"]).await;
        let fetcher = fetcher(Duration::from_secs(5));
        let interval = Duration::from_millis(50);
        let keys = fetcher.keys(&source(addr, interval)).unwrap();
        settled(&keys).await;
        let bad_answers = [
            (500, document(&["b"])),
            (200, "x".repeat(5000)),
            (200, document(&["b", "c", "d", "e"])),
            (200, "not json".to_string()),
        ];
        for (round, (status, body)) in bad_answers.into_iter().enumerate() {
            *server.status.lock().unwrap() = status;
            *server.body.lock().unwrap() = body;
            let before = fetcher.health()[0].failures;
            // A fetch starts once the interval passed; `refreshed` waits for it.
            while fetcher.health()[0].failures == before {
                keys.refreshed("b").await;
                tokio::time::sleep(interval / 2).await;
            }
            assert!(keys.cached("a").is_some(), "round {round}");
            assert!(keys.cached("b").is_none(), "round {round}");
        }
        assert!(fetcher.health()[0].failures >= 4);
        assert_eq!(fetcher.health()[0].keys, 1);
    }

    #[tokio::test]
    async fn a_streamed_body_is_bounded_too() {
        let (server, addr) = key_server(&["a", "b"]).await;
        server.chunked.store(true, Ordering::SeqCst);
        let fetcher = fetcher(Duration::from_secs(5));
        let interval = Duration::from_millis(50);
        let keys = fetcher.keys(&source(addr, interval)).unwrap();
        settled(&keys).await;
        assert!(keys.cached("b").is_some(), "a chunked document is read");
        // Over the 4096-byte limit with no length announced: abandoned.
        let padded = document(&["c"]).replace(
            r#"{"keys""#,
            &format!(r#"{{"pad":"{}","keys""#, "x".repeat(5000)),
        );
        *server.body.lock().unwrap() = padded;
        while fetcher.health()[0].failures == 0 {
            tokio::time::sleep(interval).await;
            keys.refreshed("c").await;
        }
        assert!(keys.cached("c").is_none());
        assert!(keys.cached("b").is_some());
    }

    #[tokio::test]
    async fn a_request_waits_at_most_the_fetch_timeout() {
        let (server, addr) = key_server(&["a"]).await;
        let gate = Arc::new(Notify::new());
        *server.gate.lock().unwrap() = Some(Arc::clone(&gate));
        let timeout = Duration::from_millis(300);
        let fetcher = fetcher(timeout);
        let keys = fetcher
            .keys(&source(addr, Duration::from_secs(60)))
            .unwrap();
        let started = Instant::now();
        assert!(keys.refreshed("a").await.is_none());
        let waited = started.elapsed();
        assert!(waited >= timeout / 2 && waited < timeout * 4, "{waited:?}");
        // The fetch timed out too; the set stays empty and nothing hangs.
        while fetcher.health()[0].failures == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(keys.cached("a").is_none());
        gate.notify_waiters();
    }

    #[tokio::test]
    async fn a_closed_port_is_a_failure_not_a_hang() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let fetcher = fetcher(Duration::from_secs(5));
        let keys = fetcher
            .keys(&source(addr, Duration::from_secs(60)))
            .unwrap();
        assert!(keys.refreshed("a").await.is_none());
        while fetcher.health()[0].failures == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(fetcher.health()[0].fetches, 1);
    }
}
