//! Canonical serialization and hashing of a whole config: the same config gives
//! the same bytes and the same SHA-256, whatever the order of its rows.

use crate::config::Config;
use sha2::{Digest, Sha256};

/// Canonical JSON bytes of `config`: collections sorted by id.
pub fn canonical_bytes(config: &Config) -> Vec<u8> {
    let mut sorted = config.clone();
    sorted.sort();
    serde_json::to_vec(&sorted).unwrap_or_default()
}

/// Lowercase hex SHA-256 of the canonical bytes.
pub fn config_hash(config: &Config) -> String {
    hex::encode(Sha256::digest(canonical_bytes(config)))
}
