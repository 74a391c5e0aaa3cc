//! The gateway: the single entry point that compiles and swaps a new config
//! into the one `ArcSwap` ([`LiveConfig`]) every request loads once
//! (`apply`), used by the config-file loader and by the cluster sync client.
//! It owns the config thread (`config_thread`) where configs are compiled and
//! old ones freed.

pub use crate::config_thread::{ConfigThread, JobAborted};
pub use crate::status::Applied;

use crate::compile::{compile, CompileError, Compiled, ConfigMeta, Deps};
use crate::proxy::LiveConfig;
use crate::status::StatusState;
use crate::sync::{Persist, SnapshotSink};
use crate::tls::CertificateSource;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tollgate_shared::runtime::ClusterPeers;
use tollgate_shared::snapshot::{Snapshot, SnapshotError};
use tollgate_shared::Config;

#[derive(Debug)]
pub struct Gateway {
    compiled: Arc<LiveConfig>,
    deps: Deps,
    status: Arc<StatusState>,
    local_version: AtomicU64,
    thread: ConfigThread,
    /// Held here so the control plane's count outlives configs that read it.
    peers: Arc<ClusterPeers>,
}

impl Gateway {
    /// Starts the gateway's config thread too.
    pub fn new(deps: Deps, status: Arc<StatusState>) -> Self {
        let peers = deps.resources.keyed::<ClusterPeers>(ClusterPeers::KEY);
        Self {
            compiled: Arc::default(),
            peers,
            deps,
            status,
            local_version: AtomicU64::new(0),
            thread: ConfigThread::spawn(),
        }
    }

    /// The thread to compile configs on (see [`ConfigThread`]).
    pub fn config_thread(&self) -> &ConfigThread {
        &self.thread
    }

    /// Runs `job` with this gateway on its config thread.
    pub async fn run_on_config_thread<T: Send + 'static>(
        self: &Arc<Self>,
        job: impl FnOnce(&Gateway) -> T + Send + 'static,
    ) -> Result<T, JobAborted> {
        let gateway = Arc::clone(self);
        self.thread.run(move || job(&gateway)).await
    }

    /// The config to use for one request (or one handshake).
    pub fn current(&self) -> Arc<Compiled> {
        self.compiled.current()
    }

    /// The running config's one `ArcSwap`, which the proxy reads.
    pub fn live_config(&self) -> &Arc<LiveConfig> {
        &self.compiled
    }

    pub fn status(&self) -> &Arc<StatusState> {
        &self.status
    }

    /// Compiles `config` and swaps it in, or keeps the current config and
    /// returns every error. CPU-bound on large configs: when the runtime serves
    /// traffic, call it on the config thread ([`Gateway::config_thread`]) or
    /// at least a blocking task.
    pub fn apply(&self, meta: ConfigMeta, config: &Config) -> Result<Applied, Vec<CompileError>> {
        let compiled = compile(meta.clone(), config, &self.deps);
        self.install(meta, config, compiled)
    }

    /// Swaps in a compiled config (or records why there is none). The
    /// replaced config goes to the config thread, which frees it once the
    /// last request using it is done, so no proxy worker pays for that.
    /// Deprecated settings of `config` are logged here, once per instance
    /// and config applied (Kong warns when it validates a config, never per
    /// request).
    fn install(
        &self,
        meta: ConfigMeta,
        config: &Config,
        compiled: Result<Compiled, Vec<CompileError>>,
    ) -> Result<Applied, Vec<CompileError>> {
        match compiled {
            Ok(compiled) => {
                let old = self.compiled.swap(Arc::new(compiled));
                self.thread.retire(old);
                let applied = Applied {
                    version: meta.version,
                    hash: meta.hash,
                    applied_at_ms: unix_ms(),
                };
                self.local_version.fetch_max(meta.version, Ordering::AcqRel);
                self.status.record_applied(&applied);
                tracing::info!(version = applied.version, hash = %applied.hash, "configuration applied");
                for deprecation in tollgate_shared::plugin::deprecations(config) {
                    tracing::warn!(
                        version = applied.version,
                        plugin = %deprecation.plugin,
                        plugin_id = %deprecation.plugin_id,
                        "{}",
                        deprecation.message
                    );
                }
                Ok(applied)
            }
            Err(errors) => {
                self.status.record_rejected(meta.version, &errors);
                for error in &errors {
                    tracing::warn!(version = meta.version, %error, "configuration rejected");
                }
                Err(errors)
            }
        }
    }

    /// [`Gateway::apply`] for a config without a control-plane version (file
    /// mode): the version counts up locally and the hash is computed here.
    pub fn apply_local(&self, config: &Config) -> Result<Applied, Vec<CompileError>> {
        self.apply_local_hashed(config, tollgate_shared::hash::config_hash(config))
    }

    /// [`Gateway::apply_local`] when the caller already has the config's hash
    /// (hashing a large config costs about as much as compiling it).
    pub fn apply_local_hashed(
        &self,
        config: &Config,
        hash: String,
    ) -> Result<Applied, Vec<CompileError>> {
        let meta = ConfigMeta {
            version: self.local_version.load(Ordering::Acquire) + 1,
            hash,
        };
        self.apply(meta, config)
    }

    /// Converts a snapshot message, verifies its hash, compiles and swaps it
    /// in; on success returns what to persist.
    ///
    /// The same checks, in the same order of precedence, as
    /// `Snapshot::try_from` followed by [`Gateway::apply`]: a message that does
    /// not convert, then one whose hash does not match, is refused with that
    /// one error; otherwise compile errors are returned. The hash is verified
    /// on a second thread while this one compiles: both read the converted
    /// config, and the result is only swapped in when both succeed.
    fn apply_message(&self, message: tollgate_proto::v1::Snapshot) -> Result<Persist, Vec<String>> {
        let tollgate_proto::v1::Snapshot {
            version,
            hash,
            config,
            built_at_ms,
        } = message;
        let refused = |error: SnapshotError| vec![error.to_string()];
        let config = config.ok_or_else(|| refused(SnapshotError::MissingConfig { version }))?;
        let config = Config::try_from(config)
            .map_err(|source| refused(SnapshotError::Convert { version, source }))?;
        let snapshot = Snapshot {
            version,
            hash,
            config,
        };
        let meta = ConfigMeta {
            version,
            hash: snapshot.hash.clone(),
        };
        let (verified, compiled) = std::thread::scope(|scope| {
            let verifier = std::thread::Builder::new()
                .name("tollgate-verify".into())
                .spawn_scoped(scope, || snapshot.verify());
            let compiled = compile(meta.clone(), &snapshot.config, &self.deps);
            let verified = match verifier {
                // A verification that panicked proves nothing: verify again here.
                Ok(verifier) => verifier.join().unwrap_or_else(|_| snapshot.verify()),
                // No second thread to be had: verify on this one.
                Err(_) => snapshot.verify(),
            };
            (verified, compiled)
        });
        verified.map_err(refused)?;
        self.install(meta, &snapshot.config, compiled)
            .map_err(|errors| {
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<String>>()
            })?;
        Ok(Persist::Config {
            snapshot,
            built_at_ms,
        })
    }
}

/// The cluster sync client hands every snapshot from the control plane here.
impl SnapshotSink for Gateway {
    fn apply(&self, snapshot: &tollgate_proto::v1::Snapshot) -> Result<(), Vec<String>> {
        self.apply_message(snapshot.clone()).map(drop)
    }

    /// Takes the message by value: converting it needs no copy, and the
    /// converted config is what gets persisted (re-encoded in the background).
    fn apply_owned(&self, snapshot: tollgate_proto::v1::Snapshot) -> Result<Persist, Vec<String>> {
        self.apply_message(snapshot)
    }

    fn applied(&self) -> Option<(u64, String)> {
        self.status.applied().map(|a| (a.version, a.hash))
    }

    fn config_thread(&self) -> Option<&ConfigThread> {
        Some(&self.thread)
    }

    fn cluster_size(&self, data_planes: u32) {
        self.peers.set(data_planes);
    }
}

impl CertificateSource for Gateway {
    fn find_certificate(
        &self,
        server_name: &str,
        offered: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.compiled
            .current()
            .certificates
            .find(server_name, offered)
    }
}

pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
