//! The gateway: the one `ArcSwap<Compiled>` every request loads once, and the
//! single entry point that compiles and swaps a new config in (`apply`), used
//! by the config-file loader today and by the cluster sync client.

use crate::compile::{compile, CompileError, Compiled, ConfigMeta, Deps};
use crate::status::StatusState;
use crate::sync::SnapshotSink;
use crate::tls::CertificateSource;
use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tollgate_shared::snapshot::Snapshot;
use tollgate_shared::Config;

/// A config that was compiled and swapped in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: u64,
    pub hash: String,
    /// Unix milliseconds of the swap.
    pub applied_at_ms: i64,
}

#[derive(Debug)]
pub struct Gateway {
    compiled: ArcSwap<Compiled>,
    deps: Deps,
    status: Arc<StatusState>,
    local_version: AtomicU64,
}

impl Gateway {
    pub fn new(deps: Deps, status: Arc<StatusState>) -> Self {
        Self {
            compiled: ArcSwap::from_pointee(Compiled::empty()),
            deps,
            status,
            local_version: AtomicU64::new(0),
        }
    }

    /// The config to use for one request (or one handshake).
    pub fn current(&self) -> Arc<Compiled> {
        self.compiled.load_full()
    }

    pub fn status(&self) -> &Arc<StatusState> {
        &self.status
    }

    /// Compiles `config` and swaps it in, or keeps the current config and
    /// returns every error. CPU-bound on large configs: call it from a blocking
    /// task (`tokio::task::spawn_blocking`) when the runtime serves traffic.
    pub fn apply(&self, meta: ConfigMeta, config: &Config) -> Result<Applied, Vec<CompileError>> {
        match compile(meta.clone(), config, &self.deps) {
            Ok(compiled) => {
                self.compiled.store(Arc::new(compiled));
                let applied = Applied {
                    version: meta.version,
                    hash: meta.hash,
                    applied_at_ms: unix_ms(),
                };
                self.local_version.fetch_max(meta.version, Ordering::AcqRel);
                self.status.record_applied(&applied);
                tracing::info!(version = applied.version, hash = %applied.hash, "configuration applied");
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
        let meta = ConfigMeta {
            version: self.local_version.load(Ordering::Acquire) + 1,
            hash: tollgate_shared::hash::config_hash(config),
        };
        self.apply(meta, config)
    }
}

/// The cluster sync client hands every snapshot from the control plane here.
impl SnapshotSink for Gateway {
    fn apply(&self, snapshot: &tollgate_proto::v1::Snapshot) -> Result<(), Vec<String>> {
        let snapshot = Snapshot::try_from(snapshot.clone()).map_err(|e| vec![e.to_string()])?;
        let meta = ConfigMeta {
            version: snapshot.version,
            hash: snapshot.hash,
        };
        Gateway::apply(self, meta, &snapshot.config)
            .map(drop)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    fn applied(&self) -> Option<(u64, String)> {
        self.status.applied().map(|a| (a.version, a.hash))
    }
}

impl CertificateSource for Gateway {
    fn find_certificate(
        &self,
        server_name: &str,
        offered: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.compiled.load().certificates.find(server_name, offered)
    }
}

pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
