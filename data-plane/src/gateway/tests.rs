#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use crate::proxy::upstream::PoolRegistry;
use tollgate_proto::v1 as pb;

fn gateway() -> Gateway {
    let tls = crate::tls::UpstreamTls::new(rustls::RootCertStore::empty()).unwrap();
    let pools = Arc::new(PoolRegistry::new(
        crate::settings::PoolSettings::default(),
        tls,
    ));
    Gateway::new(
        Deps {
            pools,
            resources: tollgate_shared::runtime::Resources::check_only(),
        },
        Arc::new(StatusState::new()),
    )
}

fn config(plugin: &str) -> Config {
    tollgate_shared::declarative::parse(&format!(
        r#"
_format_version: "3.0"
services:
  - name: svc
    url: http://127.0.0.1:3000
    routes:
      - name: r
        paths: ["/r"]
consumers:
  - username: alice
    jwt_secrets:
      - key: alice-iss
        secret: alice-secret
{plugin}"#
    ))
    .unwrap()
}

fn message(version: u64, config: Config) -> pb::Snapshot {
    Snapshot::new(version, config).to_proto(1234)
}

/// A config whose plugin cannot compile: a rate limit without any limit,
/// built past the Admin API's validation as a corrupt snapshot would be; the
/// compile step validates every plugin's config again.
fn uncompilable() -> Config {
    let mut config = config("plugins:\n  - name: rate-limiting\n    config:\n      minute: 5\n");
    config.plugins[0].config["minute"] = serde_json::Value::Null;
    config
}

#[test]
fn an_owned_message_is_applied_and_persisted_as_an_equivalent_message() {
    let gateway = gateway();
    let sent = message(3, config(""));
    let persist = gateway.apply_owned(sent.clone()).unwrap();
    assert_eq!(persist.version(), 3);
    assert_eq!(gateway.applied(), Some((3, sent.hash.clone())));
    assert_eq!(gateway.current().meta.hash, sent.hash);
    let Persist::Config {
        snapshot,
        built_at_ms,
    } = persist
    else {
        panic!("the gateway persists the converted config");
    };
    assert_eq!(built_at_ms, 1234);
    let stored = snapshot.to_proto(built_at_ms);
    assert_eq!(stored, sent, "re-encoding gives back the message");
    assert!(Snapshot::try_from(stored).is_ok());
}

#[test]
fn a_hash_mismatch_is_the_only_error_even_when_compiling_fails_too() {
    let gateway = gateway();
    gateway.apply_owned(message(1, config(""))).unwrap();
    let mut sent = message(2, uncompilable());
    sent.hash = "0".repeat(64);
    let errors = gateway.apply_owned(sent).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("hash mismatch"), "{errors:?}");
    assert_eq!(gateway.applied().map(|(v, _)| v), Some(1));
    assert_eq!(gateway.current().meta.version, 1);
}

#[test]
fn compile_errors_are_returned_and_the_old_config_keeps_serving() {
    let gateway = gateway();
    gateway.apply_owned(message(1, config(""))).unwrap();
    let errors = gateway.apply_owned(message(2, uncompilable())).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("at least one of these fields")),
        "{errors:?}"
    );
    assert_eq!(gateway.current().meta.version, 1);
}

#[test]
fn a_message_without_config_or_with_a_bad_id_is_refused() {
    let gateway = gateway();
    let mut sent = message(1, config(""));
    sent.config = None;
    let errors = gateway.apply_owned(sent).unwrap_err();
    assert!(errors[0].contains("config missing"), "{errors:?}");
    let mut sent = message(1, config(""));
    sent.config.as_mut().unwrap().services[0].id = "nope".into();
    let errors = gateway.apply_owned(sent).unwrap_err();
    assert!(errors[0].contains("services[0].id"), "{errors:?}");
    assert_eq!(gateway.applied(), None);
}

#[tokio::test]
async fn the_file_mode_hash_is_the_config_hash() {
    let gateway = Arc::new(gateway());
    let config = config("");
    let hash = tollgate_shared::hash::config_hash(&config);
    let applied = gateway
        .run_on_config_thread(move |gateway| gateway.apply_local(&config))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(applied.hash, hash);
    assert_eq!(applied.version, 1);
}

#[test]
fn the_control_plane_check_refuses_what_the_data_plane_refuses_with_the_same_message() {
    let gateway = gateway();
    let bad_regex = {
        let mut config = config("");
        config.routes[0].paths = Some(vec!["~/(unclosed".to_string()]);
        config
    };
    let missing_service = {
        let mut config = config("");
        config.routes[0].service = Some(tollgate_shared::ForeignKey::from(uuid::Uuid::nil()));
        config
    };
    for (name, config) in [
        ("plugin that cannot compile", uncompilable()),
        ("invalid regex", bad_regex),
        ("missing service", missing_service),
    ] {
        let on_data_plane: Vec<String> = gateway
            .apply_local(&config)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        let on_control_plane: Vec<String> = tollgate_shared::compile::check(&config)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(!on_data_plane.is_empty(), "{name}");
        assert_eq!(on_control_plane, on_data_plane, "{name}");
    }
}
