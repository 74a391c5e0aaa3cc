//! The on-disk copy of the last applied snapshot, so a data plane can start and
//! serve while the control plane is away.
//!
//! File format: the 8-byte magic `TGSNAP01`, the 32-byte SHA-256 of the
//! payload, then the payload (the protobuf-encoded `Snapshot`). Written to a
//! temporary file in the same directory, fsynced, renamed over the old one,
//! then the directory is fsynced; mode 0600 because a config holds secrets.

use prost::Message;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tollgate_proto::v1::Snapshot;

const MAGIC: &[u8; 8] = b"TGSNAP01";
const FILE_NAME: &str = "snapshot.bin";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot write the config cache {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the config cache {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config cache {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: &'static str },
}

/// The snapshot cache in one directory.
#[derive(Debug, Clone)]
pub struct SnapshotCache {
    dir: PathBuf,
}

impl SnapshotCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Atomically replaces the cached snapshot.
    pub fn store(&self, snapshot: &Snapshot) -> Result<(), CacheError> {
        let path = self.path();
        let write_err = |source| CacheError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(write_err)?;
        let payload = snapshot.encode_to_vec();
        let digest = Sha256::digest(&payload);
        let tmp = self
            .dir
            .join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(&digest)?;
            file.write_all(&payload)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(write_err)
    }

    /// The cached snapshot, `None` when there is none. A file that fails its
    /// checksum or does not decode is an error: it is never served.
    pub fn load(&self) -> Result<Option<Snapshot>, CacheError> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CacheError::Read { path, source }),
        };
        decode(&bytes)
            .map(Some)
            .map_err(|reason| CacheError::Corrupt { path, reason })
    }
}

fn decode(bytes: &[u8]) -> Result<Snapshot, &'static str> {
    let rest = bytes.strip_prefix(MAGIC).ok_or("bad header")?;
    if rest.len() < 32 {
        return Err("truncated");
    }
    let (digest, payload) = rest.split_at(32);
    if Sha256::digest(payload)[..] != *digest {
        return Err("checksum mismatch");
    }
    Snapshot::decode(payload).map_err(|_| "undecodable payload")
}

/// Reads or creates the persistent node id (`node_id` file in the cache dir).
pub fn node_id(dir: &Path) -> Result<String, CacheError> {
    let path = dir.join("node_id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if uuid::Uuid::parse_str(id).is_ok() {
                return Ok(id.to_string());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(CacheError::Read { path, source }),
    }
    let id = uuid::Uuid::new_v4().to_string();
    let write_err = |source| CacheError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(write_err)?;
    std::fs::write(&path, format!("{id}\n")).map_err(write_err)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn snapshot(version: u64) -> Snapshot {
        Snapshot {
            version,
            hash: format!("{version:064x}"),
            config: Some(Default::default()),
            built_at_ms: 7,
        }
    }

    #[test]
    fn round_trip_replaces_atomically_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SnapshotCache::new(dir.path().join("sub"));
        assert!(cache.load().unwrap().is_none());
        cache.store(&snapshot(1)).unwrap();
        cache.store(&snapshot(2)).unwrap();
        assert_eq!(cache.load().unwrap(), Some(snapshot(2)));
        let mode = std::fs::metadata(cache.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn corrupt_or_truncated_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SnapshotCache::new(dir.path());
        cache.store(&snapshot(3)).unwrap();
        let good = std::fs::read(cache.path()).unwrap();
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        for bad in [flipped, good[..20].to_vec(), b"garbage".to_vec()] {
            std::fs::write(cache.path(), bad).unwrap();
            assert!(matches!(cache.load(), Err(CacheError::Corrupt { .. })));
        }
    }

    #[test]
    fn node_id_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = node_id(dir.path()).unwrap();
        assert_eq!(node_id(dir.path()).unwrap(), first);
        assert!(uuid::Uuid::parse_str(&first).is_ok());
    }
}
