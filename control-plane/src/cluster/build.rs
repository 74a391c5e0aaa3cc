//! The snapshot builder: turns one consistent read of the configuration into a
//! publishable snapshot. It runs the data planes' own compile step first, so a
//! config that a data plane would refuse is never published.

use super::Published;
use std::collections::BTreeSet;
use std::sync::Arc;
use tollgate_shared::snapshot::Snapshot;
use tollgate_shared::Config;

/// Builds the snapshot of `config` at `version`, or says why it cannot be published.
pub fn build(version: u64, config: Config) -> Result<Published, Vec<String>> {
    tollgate_data_plane::compile::check(&config)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let plugins_used = plugins_used(&config);
    let snapshot = Snapshot::new(version, config);
    Ok(Published {
        snapshot: Arc::new(snapshot.to_proto(super::registry::now_ms())),
        plugins_used: Arc::new(plugins_used),
    })
}

/// The names of the enabled plugins: a data plane must have each of them.
pub fn plugins_used(config: &Config) -> BTreeSet<String> {
    config
        .plugins
        .iter()
        .filter(|p| p.enabled)
        .map(|p| p.name.clone())
        .collect()
}
