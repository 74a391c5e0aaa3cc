#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{Snapshot, SnapshotError};
use crate::convert::fixtures::{full_config, generated};
use crate::convert::ConvertError;
use crate::hash::config_hash;
use tollgate_proto::v1 as pb;

#[test]
fn new_computes_the_hash_and_sorts_rows() {
    let mut config = generated(30, 5);
    config.routes.reverse();
    let snapshot = Snapshot::new(7, config.clone());
    assert_eq!(snapshot.version, 7);
    assert_eq!(snapshot.hash, config_hash(&config));
    assert!(snapshot
        .config
        .routes
        .windows(2)
        .all(|w| w[0].id <= w[1].id));
    snapshot.verify().unwrap();
}

#[test]
fn proto_round_trip_keeps_everything() {
    let snapshot = Snapshot::new(42, full_config());
    let msg = snapshot.to_proto(1_700_000_000_123);
    assert_eq!(msg.built_at_ms, 1_700_000_000_123);
    assert_eq!(msg.hash, snapshot.hash);
    let back = Snapshot::try_from(msg).unwrap();
    assert_eq!(back, snapshot);
    assert_eq!(pb::Snapshot::from(&snapshot).built_at_ms, 0);
}

#[test]
fn tampered_hash_is_rejected() {
    let snapshot = Snapshot::new(3, full_config());
    let mut msg = pb::Snapshot::from(&snapshot);
    msg.config.as_mut().unwrap().routes[0].regex_priority += 1;
    match Snapshot::try_from(msg).unwrap_err() {
        SnapshotError::HashMismatch {
            version,
            announced,
            computed,
        } => {
            assert_eq!(version, 3);
            assert_eq!(announced, snapshot.hash);
            assert_ne!(computed, snapshot.hash);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn missing_config_and_bad_rows_are_rejected() {
    let msg = pb::Snapshot {
        version: 9,
        hash: String::new(),
        config: None,
        built_at_ms: 0,
    };
    assert_eq!(
        Snapshot::try_from(msg).unwrap_err(),
        SnapshotError::MissingConfig { version: 9 }
    );

    let mut msg = pb::Snapshot::from(&Snapshot::new(4, full_config()));
    msg.config.as_mut().unwrap().services[0].id = "bad".into();
    let err = Snapshot::try_from(msg).unwrap_err();
    assert_eq!(
        err,
        SnapshotError::Convert {
            version: 4,
            source: ConvertError::InvalidUuid {
                path: "services[0].id".into(),
                value: "bad".into()
            }
        }
    );
    assert_eq!(
        err.to_string(),
        "snapshot 4: services[0].id: expected a valid UUID, got 'bad'"
    );
}

#[test]
fn verify_catches_a_stale_hash() {
    let mut snapshot = Snapshot::new(1, full_config());
    snapshot.config.consumers.clear();
    assert!(matches!(
        snapshot.verify(),
        Err(SnapshotError::HashMismatch { .. })
    ));
}
