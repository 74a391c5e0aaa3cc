//! Database-less mode: the Kong declarative file given by `--config-file`,
//! applied at start and re-applied on SIGHUP. A file that does not parse or
//! compile is reported and the running config stays.

use crate::compile::CompileError;
use crate::gateway::{Applied, Gateway};
use std::path::Path;
use tollgate_shared::declarative;

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("{path}: {}", join(.errors))]
    Compile {
        path: String,
        errors: Vec<CompileError>,
    },
}

fn join(errors: &[CompileError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads, parses and applies the file. An unchanged file (same hash as the
/// running config) is not compiled again.
pub fn apply_file(gateway: &Gateway, path: &Path) -> Result<Applied, ConfigFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let config = declarative::parse(&text).map_err(|e| ConfigFileError::Parse {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let hash = tollgate_shared::hash::config_hash(&config);
    if let Some(current) = gateway.status().applied() {
        if current.hash == hash {
            return Ok(current);
        }
    }
    gateway
        .apply_local_hashed(&config, hash)
        .map_err(|errors| ConfigFileError::Compile {
            path: shown,
            errors,
        })
}
