//! A versioned, hashed config: the unit the control plane publishes and the
//! data planes compile, acknowledge and cache. Conversions to and from the
//! cluster protocol's `Snapshot` message live here.

use crate::config::Config;
use crate::convert::ConvertError;
use crate::hash::config_hash;
use serde::{Deserialize, Serialize};
use tollgate_proto::v1 as pb;

/// One published config. `hash` is [`config_hash`] of `config`; a snapshot
/// whose hash does not match its config is never built by [`Snapshot::new`]
/// and is rejected when it arrives over the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u64,
    pub hash: String,
    pub config: Config,
}

/// A snapshot message that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {version}: {source}")]
    Convert {
        version: u64,
        #[source]
        source: ConvertError,
    },
    #[error("snapshot {version}: config missing")]
    MissingConfig { version: u64 },
    #[error("snapshot {version}: hash mismatch: announced {announced}, computed {computed}")]
    HashMismatch {
        version: u64,
        announced: String,
        computed: String,
    },
}

impl Snapshot {
    /// Builds a snapshot of `config`, sorting its rows by id (so the message
    /// bytes are deterministic too) and computing its hash.
    pub fn new(version: u64, mut config: Config) -> Self {
        config.sort();
        let hash = config_hash(&config);
        Self {
            version,
            hash,
            config,
        }
    }

    /// Checks that `hash` is the hash of `config` (for example after loading
    /// a cached snapshot from disk).
    pub fn verify(&self) -> Result<(), SnapshotError> {
        let computed = config_hash(&self.config);
        if computed == self.hash {
            Ok(())
        } else {
            Err(SnapshotError::HashMismatch {
                version: self.version,
                announced: self.hash.clone(),
                computed,
            })
        }
    }

    /// The protocol message, stamped with the build time the CP reports
    /// (unix milliseconds; `From<&Snapshot>` leaves it 0).
    pub fn to_proto(&self, built_at_ms: i64) -> pb::Snapshot {
        pb::Snapshot {
            version: self.version,
            hash: self.hash.clone(),
            config: Some(pb::Config::from(&self.config)),
            built_at_ms,
        }
    }
}

impl From<&Snapshot> for pb::Snapshot {
    fn from(snapshot: &Snapshot) -> Self {
        snapshot.to_proto(0)
    }
}

impl TryFrom<pb::Snapshot> for Snapshot {
    type Error = SnapshotError;

    /// Converts and verifies: the announced hash must match the config received.
    fn try_from(msg: pb::Snapshot) -> Result<Self, Self::Error> {
        let version = msg.version;
        let config = msg.config.ok_or(SnapshotError::MissingConfig { version })?;
        let config = Config::try_from(config)
            .map_err(|source| SnapshotError::Convert { version, source })?;
        let snapshot = Snapshot {
            version,
            hash: msg.hash,
            config,
        };
        snapshot.verify()?;
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests;
