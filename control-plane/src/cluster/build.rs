//! The snapshot builder: turns one consistent read of the configuration into a
//! publishable snapshot. It runs the data planes' own compile step first, so a
//! config that a data plane would refuse is never published.
//!
//! The compile check and the snapshot itself (canonical hash, protocol
//! message) only read the config, so they run side by side on two threads:
//! for a large config each takes tens of milliseconds.

use super::Published;
use std::collections::BTreeSet;
use std::sync::Arc;
use tollgate_proto::v1 as pb;
use tollgate_shared::hash::config_hash;
use tollgate_shared::Config;

/// Builds the snapshot of `config` at `version`, or says why it cannot be published.
pub fn build(version: u64, mut config: Config) -> Result<Published, Vec<String>> {
    // What `Snapshot::new` does before hashing: rows in id order, so the
    // message bytes are deterministic too.
    config.sort();
    let config = &config;
    let (checked, hash, message) = std::thread::scope(|scope| {
        let check = scope.spawn(|| tollgate_shared::compile::check(config));
        let hash = config_hash(config);
        let message = pb::Config::from(config);
        (check.join(), hash, message)
    });
    match checked {
        Ok(Ok(())) => {}
        Ok(Err(errors)) => return Err(errors.iter().map(ToString::to_string).collect()),
        Err(_) => return Err(vec!["the compile check panicked".into()]),
    }
    Ok(Published {
        snapshot: Arc::new(pb::Snapshot {
            version,
            hash,
            config: Some(message),
            built_at_ms: super::registry::now_ms(),
        }),
        plugins_used: Arc::new(plugins_used(config)),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use tollgate_shared::snapshot::Snapshot;

    fn config(text: &str) -> Config {
        tollgate_shared::declarative::parse(text).unwrap()
    }

    #[test]
    fn builds_what_snapshot_new_and_to_proto_give() {
        let mut config = config(
            "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: http://127.0.0.1:3000\n    routes:\n      - paths: [\"/a\"]\n  - name: b\n    url: http://127.0.0.1:3001\n    routes:\n      - paths: [\"/b\"]\nconsumers:\n  - username: c\n",
        );
        config.services.reverse();
        let published = build(9, config.clone()).unwrap();
        let mut want = Snapshot::new(9, config).to_proto(published.snapshot.built_at_ms);
        assert_eq!(*published.snapshot, want);
        // and the received message verifies on a data plane
        want.built_at_ms = 0;
        assert!(Snapshot::try_from(want).is_ok());
    }

    #[test]
    fn a_config_that_does_not_compile_is_refused() {
        let mut config = config(
            "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: http://127.0.0.1:3000\n    routes:\n      - paths: [\"/a\"]\n",
        );
        config.services.clear();
        let errors = build(1, config).unwrap_err();
        assert!(errors[0].contains("does not exist"), "{errors:?}");
    }
}
