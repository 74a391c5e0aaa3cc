//! The live Redis connector plugins compile against
//! (`tollgate_shared::runtime::RedisConnector`): one multiplexed connection
//! per server identity (host, port, database, credentials), shared by every
//! plugin instance naming it and kept across config swaps, made on first use
//! and remade after a failure. Each server has a circuit breaker: a failed
//! call opens it, calls then fail at once, and one probe per
//! [`RETRY_INTERVAL`] tries again, so a dead or stopped Redis costs one
//! timeout per interval rather than one per request. State changes are
//! logged once; errors are counted. `redis.ssl` connections are made here
//! (TCP, then a rustls handshake naming `server_name`) and handed to the
//! redis crate, which then speaks RESP over them as over plain TCP.

use crate::tls::UpstreamTls;
use arc_swap::ArcSwapOption;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tollgate_shared::runtime::{
    RedisConnector, RedisFailure, RedisReply, RedisScript, RedisServer, SharedSet,
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
            script: redis::Script::new(source),
        }))
    }
}

/// One server: its client, its current connection and its breaker.
pub struct ServerConnection {
    client: redis::Client,
    /// For `redis.ssl`: how to wrap the TCP connection; `None` for plain TCP.
    tls: Option<TlsTarget>,
    /// `host:port/db` for log lines (never the password).
    label: String,
    connection: ArcSwapOption<redis::aio::MultiplexedConnection>,
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

/// Where a TLS connection goes and what it verifies.
struct TlsTarget {
    host: String,
    port: u16,
    name: rustls::pki_types::ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
    settings: redis::RedisConnectionInfo,
}

impl ServerConnection {
    fn new(
        server: &RedisServer,
        tls_configs: Option<&RedisTlsConfigs>,
    ) -> Result<ServerConnection, String> {
        let mut settings = redis::RedisConnectionInfo::default().set_db(server.database);
        if let Some(username) = &server.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &server.password {
            settings = settings.set_password(password);
        }
        let info = redis::IntoConnectionInfo::into_connection_info(redis::ConnectionAddr::Tcp(
            server.host.clone(),
            server.port,
        ))
        .map_err(|e| format!("invalid redis address: {e}"))?
        .set_redis_settings(settings.clone());
        let client = redis::Client::open(info).map_err(|e| format!("invalid redis server: {e}"))?;
        let tls = match &server.tls {
            None => None,
            Some(tls) => {
                let configs = tls_configs
                    .ok_or("TLS connections to Redis are not available in this process")?;
                let name = tls.server_name.as_deref().unwrap_or(&server.host);
                let name = rustls::pki_types::ServerName::try_from(name.to_owned())
                    .map_err(|_| format!("invalid redis TLS server name '{name}'"))?;
                Some(TlsTarget {
                    host: server.host.clone(),
                    port: server.port,
                    name,
                    config: Arc::clone(if tls.verify {
                        &configs.verify
                    } else {
                        &configs.no_verify
                    }),
                    settings,
                })
            }
        };
        Ok(ServerConnection {
            client,
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

    async fn connection(
        &self,
        timeout: Duration,
    ) -> Result<redis::aio::MultiplexedConnection, RedisFailure> {
        if let Some(connection) = self.connection.load_full() {
            return Ok((*connection).clone());
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(connection) = self.connection.load_full() {
            return Ok((*connection).clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let connection = match &self.tls {
            None => self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|e| RedisFailure::Failed(e.to_string()))?,
            Some(target) => tokio::time::timeout(timeout, target.connect(config))
                .await
                .map_err(|_| RedisFailure::Timeout(timeout))??,
        };
        self.connection.store(Some(Arc::new(connection.clone())));
        Ok(connection)
    }

    async fn eval(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
        timeout: Duration,
    ) -> Result<Vec<i64>, RedisFailure> {
        let mut connection = self.connection(timeout).await?;
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        invocation
            .invoke_async::<Vec<i64>>(&mut connection)
            .await
            .map_err(|e| RedisFailure::Failed(e.to_string()))
    }
}

impl TlsTarget {
    /// TCP, the TLS handshake, then the redis crate's own connection set-up
    /// (AUTH, SELECT) over the encrypted stream; its I/O driver runs as a task
    /// that ends when the connection does.
    async fn connect(
        &self,
        config: redis::AsyncConnectionConfig,
    ) -> Result<redis::aio::MultiplexedConnection, RedisFailure> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            RedisFailure::Failed(format!("{what} {}:{}: {e}", self.host, self.port))
        };
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| failed("connecting to", &e))?;
        let _ = tcp.set_nodelay(true);
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(&self.config))
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| failed("TLS handshake with", &e))?;
        let (connection, driver) =
            redis::aio::MultiplexedConnection::new_with_config(&self.settings, stream, config)
                .await
                .map_err(|e| failed("setting up", &e))?;
        tokio::spawn(driver);
        Ok(connection)
    }
}

/// Clears the probing flag however a probe ends.
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
    script: redis::Script,
}

impl RedisScript for ServerScript {
    fn eval<'a>(
        &'a self,
        keys: &'a [String],
        args: &'a [String],
        timeout: Duration,
    ) -> RedisReply<'a> {
        Box::pin(async move {
            let server = &self.connection;
            let probe = server.admit()?;
            // A probe whose request goes away mid-call must not keep every
            // later probe out.
            let _probe_ends = probe.then(|| ProbeGuard(server));
            let outcome =
                match tokio::time::timeout(timeout, server.eval(&self.script, keys, args, timeout))
                    .await
                {
                    Ok(outcome) => outcome,
                    Err(_) => Err(RedisFailure::Timeout(timeout)),
                };
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
        let first = script.eval(&[], &[], timeout).await;
        assert!(matches!(first, Err(RedisFailure::Failed(_))), "{first:?}");
        for _ in 0..100 {
            let again = script.eval(&[], &[], timeout).await;
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

    #[tokio::test]
    async fn a_live_server_answers_the_script() {
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
        let servers = RedisServers::default();
        let script = servers
            .script(&server(port, 0), "return {tonumber(ARGV[1]) + 1, #KEYS}")
            .unwrap();
        let keys = ["a".to_string(), "b".to_string()];
        let reply = script
            .eval(&keys, &["41".to_string()], Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(reply, [42, 2]);
        assert!(!servers.health()[0].open);
    }
}
