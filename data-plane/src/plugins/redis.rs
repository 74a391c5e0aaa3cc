//! The live Redis connector plugins compile against
//! (`tollgate_shared::runtime::RedisConnector`): one multiplexed connection
//! per server identity (host, port, database, credentials), shared by every
//! plugin instance naming it and kept across config swaps, made on first use
//! and remade after a failure. Each server has a circuit breaker: a failed
//! call opens it, calls then fail at once, and one probe per
//! [`RETRY_INTERVAL`] tries again, so a dead or stopped Redis costs one
//! timeout per interval rather than one per request. State changes are
//! logged once; errors are counted. `redis.ssl` connections are made here
//! too (TCP, then a rustls handshake naming `server_name`).
//!
//! The connection ([`connection`]) and the protocol ([`resp`]) are our own
//! rather than the redis crate's: on the rate-limiting hot path its
//! multiplexed connection (a `Cmd` of owned arguments, a channel to a
//! pipeline task, a parser-combinator decoder) cost about 23k instructions
//! per call, more than half of a whole proxied request.

mod connection;
mod resp;

use crate::tls::UpstreamTls;
use arc_swap::ArcSwapOption;
use connection::{Connection, Handshake, Script};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tollgate_shared::runtime::{
    RedisConnector, RedisFailure, RedisReply, RedisScript, RedisServer, ScriptCall, SharedSet,
};

/// How long an open circuit stays open before one request probes the server.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

const CLOSED: u8 = 0;
const OPEN: u8 = 1;

/// Opens script handles on shared per-server connections.
#[derive(Debug, Default)]
pub struct RedisServers {
    servers: SharedSet<RedisServer, ServerConnection>,
    tls: Option<RedisTlsConfigs>,
}

/// Client TLS configs for `redis.ssl`: verifying (system roots) or not
/// (Kong's default `ssl_verify: false`); no ALPN, Redis negotiates none.
#[derive(Debug, Clone)]
struct RedisTlsConfigs {
    verify: Arc<rustls::ClientConfig>,
    no_verify: Arc<rustls::ClientConfig>,
}

/// One server's state, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisHealth {
    /// `host:port/database`.
    pub server: String,
    /// Whether the circuit is open (calls fail at once).
    pub open: bool,
    /// Calls that failed since start.
    pub errors: u64,
}

impl RedisServers {
    /// A connector that can also reach servers over TLS, with the client
    /// settings (roots, verification) the upstream connections use.
    pub fn with_tls(upstream: &UpstreamTls) -> RedisServers {
        let without_alpn = |verify: bool| {
            let mut config = (*upstream.client_config(verify, false)).clone();
            config.alpn_protocols.clear();
            Arc::new(config)
        };
        RedisServers {
            servers: SharedSet::default(),
            tls: Some(RedisTlsConfigs {
                verify: without_alpn(true),
                no_verify: without_alpn(false),
            }),
        }
    }

    /// How many servers some config uses.
    pub fn servers(&self) -> usize {
        self.servers.live()
    }

    /// The state of every server some config uses.
    pub fn health(&self) -> Vec<RedisHealth> {
        self.servers
            .live_values()
            .iter()
            .map(|server| RedisHealth {
                server: server.label.clone(),
                open: server.is_open(),
                errors: server.errors.load(Ordering::Relaxed),
            })
            .collect()
    }
}

impl RedisConnector for RedisServers {
    fn script(
        &self,
        server: &RedisServer,
        source: &'static str,
    ) -> Result<Arc<dyn RedisScript>, String> {
        let connection = self.servers.get_or_try_insert(server, || {
            ServerConnection::new(server, self.tls.as_ref()).map(Arc::new)
        })?;
        Ok(Arc::new(ServerScript {
            connection,
            script: Script::new(source),
        }))
    }
}

/// One server: where it is, its current connection and its breaker.
pub struct ServerConnection {
    host: String,
    port: u16,
    handshake: Handshake,
    /// For `redis.ssl`: how to wrap the TCP connection; `None` for plain TCP.
    tls: Option<TlsTarget>,
    /// `host:port/db` for log lines (never the password).
    label: String,
    connection: ArcSwapOption<Connection>,
    /// Serialises connection attempts so a burst makes one.
    connecting: tokio::sync::Mutex<()>,
    state: AtomicU8,
    /// When the circuit opened (or was last probed), for the retry interval.
    opened: Mutex<Instant>,
    /// A probe is under way while the circuit is open.
    probing: AtomicBool,
    /// Calls that failed (connection, command or timeout).
    pub errors: AtomicU64,
}

impl std::fmt::Debug for ServerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConnection")
            .field("server", &self.label)
            .field("open", &self.is_open())
            .field("errors", &self.errors.load(Ordering::Relaxed))
            .finish()
    }
}

/// What a TLS connection verifies.
struct TlsTarget {
    name: rustls::pki_types::ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
}

impl ServerConnection {
    fn new(
        server: &RedisServer,
        tls_configs: Option<&RedisTlsConfigs>,
    ) -> Result<ServerConnection, String> {
        let tls = match &server.tls {
            None => None,
            Some(tls) => {
                let configs = tls_configs
                    .ok_or("TLS connections to Redis are not available in this process")?;
                let name = tls.server_name.as_deref().unwrap_or(&server.host);
                let name = rustls::pki_types::ServerName::try_from(name.to_owned())
                    .map_err(|_| format!("invalid redis TLS server name '{name}'"))?;
                Some(TlsTarget {
                    name,
                    config: Arc::clone(if tls.verify {
                        &configs.verify
                    } else {
                        &configs.no_verify
                    }),
                })
            }
        };
        Ok(ServerConnection {
            host: server.host.clone(),
            port: server.port,
            handshake: Handshake {
                username: server.username.clone(),
                password: server.password.clone(),
                database: server.database,
            },
            tls,
            label: format!("{}:{}/{}", server.host, server.port, server.database),
            connection: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            state: AtomicU8::new(CLOSED),
            opened: Mutex::new(Instant::now()),
            probing: AtomicBool::new(false),
            errors: AtomicU64::new(0),
        })
    }

    /// Whether calls currently fail at once.
    pub fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == OPEN
    }

    /// Whether this call may go to the server: always with the circuit
    /// closed; when open, only one probe per retry interval.
    fn admit(&self) -> Result<bool, RedisFailure> {
        if !self.is_open() {
            return Ok(false);
        }
        let mut opened = self.opened.lock().unwrap_or_else(PoisonError::into_inner);
        if opened.elapsed() >= RETRY_INTERVAL && !self.probing.swap(true, Ordering::AcqRel) {
            *opened = Instant::now();
            return Ok(true);
        }
        Err(RedisFailure::CircuitOpen(self.label.clone()))
    }

    fn succeeded(&self) {
        if self.state.swap(CLOSED, Ordering::AcqRel) == OPEN {
            tracing::info!(server = %self.label, "redis answers again; counting in redis");
        }
    }

    fn failed(&self, failure: &RedisFailure) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.connection.store(None);
        *self.opened.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        if self.state.swap(OPEN, Ordering::AcqRel) == CLOSED {
            tracing::warn!(
                server = %self.label,
                error = %failure,
                retry_ms = RETRY_INTERVAL.as_millis() as u64,
                "redis unavailable; rate limiting follows its failure mode until it answers"
            );
        }
    }

    /// The live connection, made (or remade, after the server closed it)
    /// on demand within `timeout`; concurrent callers wait for one attempt.
    async fn connection(&self, timeout: Duration) -> Result<Arc<Connection>, RedisFailure> {
        let live = |connection: &Option<Arc<Connection>>| {
            connection
                .as_ref()
                .filter(|c| !c.is_closed())
                .map(Arc::clone)
        };
        if let Some(connection) = live(&self.connection.load_full()) {
            return Ok(connection);
        }
        let _one_at_a_time = tokio::time::timeout(timeout, self.connecting.lock())
            .await
            .map_err(|_| RedisFailure::Timeout(timeout))?;
        if let Some(connection) = live(&self.connection.load_full()) {
            return Ok(connection);
        }
        let connection = tokio::time::timeout(timeout, self.connect())
            .await
            .map_err(|_| RedisFailure::Timeout(timeout))??;
        let connection = Arc::new(connection);
        self.connection.store(Some(Arc::clone(&connection)));
        Ok(connection)
    }

    /// A new connection: TCP, TLS if configured, then the handshake.
    async fn connect(&self) -> Result<Connection, RedisFailure> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            RedisFailure::Failed(format!("{what} {}:{}: {e}", self.host, self.port))
        };
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| failed("connecting to", &e))?;
        let _ = tcp.set_nodelay(true);
        let connection = match &self.tls {
            None => Connection::open(tcp, &self.handshake).await?,
            Some(target) => {
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(&target.config))
                    .connect(target.name.clone(), tcp)
                    .await
                    .map_err(|e| failed("TLS handshake with", &e))?;
                Connection::open(stream, &self.handshake).await?
            }
        };
        Ok(connection)
    }

    async fn eval(
        &self,
        script: &Script,
        call: &ScriptCall,
        timeout: Duration,
    ) -> Result<Vec<i64>, RedisFailure> {
        self.connection(timeout)
            .await?
            .eval(script, call, timeout)
            .await
    }
}

struct ProbeGuard<'a>(&'a ServerConnection);

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        self.0.probing.store(false, Ordering::Release);
    }
}

/// A script bound to a server.
#[derive(Debug)]
struct ServerScript {
    connection: Arc<ServerConnection>,
    script: Script,
}

impl RedisScript for ServerScript {
    fn eval<'a>(&'a self, call: &'a ScriptCall, timeout: Duration) -> RedisReply<'a> {
        Box::pin(async move {
            let server = &self.connection;
            let probe = server.admit()?;
            // A probe whose request goes away mid-call must not keep every
            // later probe out.
            let _probe_ends = probe.then(|| ProbeGuard(server));
            let outcome = server.eval(&self.script, call, timeout).await;
            match &outcome {
                Ok(_) => server.succeeded(),
                Err(failure) => server.failed(failure),
            }
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn server(port: u16, database: i64) -> RedisServer {
        RedisServer {
            host: "127.0.0.1".into(),
            port,
            database,
            username: None,
            password: None,
            tls: None,
        }
    }

    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[test]
    fn instances_naming_one_server_share_its_connection() {
        let servers = RedisServers::default();
        let a = servers.script(&server(6379, 0), "return {1}").unwrap();
        let b = servers.script(&server(6379, 0), "return {2}").unwrap();
        assert_eq!(servers.servers(), 1);
        let c = servers.script(&server(6379, 1), "return {1}").unwrap();
        assert_eq!(servers.servers(), 2);
        drop((a, b, c));
        assert_eq!(servers.servers(), 0);
    }

    #[tokio::test]
    async fn a_dead_server_costs_one_attempt_per_interval() {
        let servers = RedisServers::default();
        let script = servers
            .script(&server(closed_port(), 0), "return {1}")
            .unwrap();
        let timeout = Duration::from_millis(500);
        let first = script.eval(&ScriptCall::default(), timeout).await;
        assert!(matches!(first, Err(RedisFailure::Failed(_))), "{first:?}");
        for _ in 0..100 {
            let again = script.eval(&ScriptCall::default(), timeout).await;
            assert!(
                matches!(again, Err(RedisFailure::CircuitOpen(_))),
                "{again:?}"
            );
        }
        let health = servers.health();
        assert_eq!(health.len(), 1);
        assert!(health[0].open);
        assert_eq!(health[0].errors, 1);
    }

    fn live_server() -> RedisServer {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| {
                p.trim_end_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .ok()
            })
            .unwrap_or(6379);
        server(port, 0)
    }

    /// A script no server has seen: its first call meets `NOSCRIPT`.
    fn new_script(body: &str) -> &'static str {
        let nonce = uuid::Uuid::new_v4();
        Box::leak(format!("-- {nonce}\n{body}").into_boxed_str())
    }

    #[tokio::test]
    async fn a_live_server_answers_the_script_known_or_not() {
        let servers = RedisServers::default();
        let script = servers
            .script(
                &live_server(),
                new_script("return {tonumber(ARGV[1]) + 1, #KEYS}"),
            )
            .unwrap();
        let call = ScriptCall::of(&["a", "b"], &["41"]);
        for _ in 0..2 {
            let reply = script.eval(&call, Duration::from_secs(2)).await.unwrap();
            assert_eq!(reply, [42, 2]);
        }
        assert!(!servers.health()[0].open);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_on_one_connection_each_get_their_own_reply() {
        let servers = RedisServers::default();
        let script = servers
            .script(&live_server(), new_script("return {tonumber(ARGV[1])}"))
            .unwrap();
        let calls = (0..500).map(|n| {
            let script = Arc::clone(&script);
            tokio::spawn(async move {
                let call = ScriptCall::of::<&str, String>(&[], &[n.to_string()]);
                let reply = script.eval(&call, Duration::from_secs(5)).await.unwrap();
                assert_eq!(reply, [n]);
            })
        });
        for call in calls.collect::<Vec<_>>() {
            call.await.unwrap();
        }
        assert_eq!(servers.health()[0].errors, 0);
    }

    /// A server that accepts connections and reads, but never answers.
    async fn silent_server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut sink = [0u8; 4096];
                    while socket.read(&mut sink).await.is_ok_and(|n| n > 0) {}
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn a_call_behind_a_slower_one_still_times_out_at_its_own_deadline() {
        let servers = RedisServers::default();
        let port = silent_server().await;
        let script = servers.script(&server(port, 0), "return {1}").unwrap();
        let call = ScriptCall::default();
        let long = script.eval(&call, Duration::from_secs(60));
        let short = async {
            // Queued after the long call on the same connection.
            tokio::task::yield_now().await;
            script
                .eval(&ScriptCall::default(), Duration::from_millis(100))
                .await
        };
        let bounded = Duration::from_secs(30);
        tokio::select! {
            _ = long => panic!("the long call cannot finish first"),
            outcome = tokio::time::timeout(bounded, short) => {
                let outcome = outcome.expect("the short call ended before the long one's deadline");
                assert_eq!(outcome, Err(RedisFailure::Timeout(Duration::from_millis(100))));
            }
        }
    }

    #[tokio::test]
    async fn a_stalled_server_fails_the_oldest_call_and_opens_the_circuit() {
        let servers = RedisServers::default();
        let port = silent_server().await;
        let script = servers.script(&server(port, 0), "return {1}").unwrap();
        let timeout = Duration::from_millis(100);
        let outcome = script.eval(&ScriptCall::default(), timeout).await;
        assert_eq!(outcome, Err(RedisFailure::Timeout(timeout)));
        let again = script.eval(&ScriptCall::default(), timeout).await;
        assert!(
            matches!(again, Err(RedisFailure::CircuitOpen(_))),
            "{again:?}"
        );
        assert!(servers.health()[0].open);
    }

    #[tokio::test]
    async fn a_server_that_answers_garbage_is_a_failure_not_a_hang() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            socket.write_all(b"?what\r\n").await.unwrap();
            let _ = socket.read(&mut request).await;
        });
        let servers = RedisServers::default();
        let script = servers.script(&server(port, 0), "return {1}").unwrap();
        let reply = script
            .eval(&ScriptCall::default(), Duration::from_secs(5))
            .await;
        assert!(
            matches!(&reply, Err(RedisFailure::Failed(m)) if m.contains("malformed")),
            "{reply:?}"
        );
    }
}
