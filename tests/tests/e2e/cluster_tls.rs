//! The cluster stream over mTLS: a data plane's sync client against the
//! control plane's Sync server, and the refusals mTLS must produce.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tollgate_control_plane::cert::{ClusterCa, Role, Validity, CP_SERVER_NAME};
use tollgate_control_plane::cluster::{
    self, registry::DataPlaneRegistry, ClusterService, ClusterTiming, ClusterTls, Published,
};
use tollgate_data_plane::sync::{self, SnapshotSink, SyncSettings, SyncStatus};
use tollgate_proto::v1::{
    cluster_client::ClusterClient, data_plane_message, DataPlaneMessage, Hello, Snapshot,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A sink that records what it applied and can be told to refuse.
#[derive(Default)]
struct RecordingSink {
    applied: Mutex<Option<(u64, String)>>,
    refuse: Mutex<Option<String>>,
}

impl SnapshotSink for RecordingSink {
    fn apply(&self, snapshot: &Snapshot) -> Result<(), Vec<String>> {
        if let Some(reason) = self.refuse.lock().unwrap().clone() {
            return Err(vec![reason]);
        }
        *self.applied.lock().unwrap() = Some((snapshot.version, snapshot.hash.clone()));
        Ok(())
    }
    fn applied(&self) -> Option<(u64, String)> {
        self.applied.lock().unwrap().clone()
    }
}

struct ClusterUnderTest {
    ca: ClusterCa,
    addr: std::net::SocketAddr,
    publish: watch::Sender<Option<Published>>,
    registry: DataPlaneRegistry,
    stop: CancellationToken,
}

fn published(version: u64, plugins: &[&str]) -> Option<Published> {
    Some(Published {
        snapshot: Arc::new(Snapshot {
            version,
            hash: format!("{version:064x}"),
            config: Some(Default::default()),
            built_at_ms: 0,
        }),
        plugins_used: Arc::new(
            plugins
                .iter()
                .map(|p| p.to_string())
                .collect::<BTreeSet<_>>(),
        ),
    })
}

async fn start_cluster() -> ClusterUnderTest {
    start_cluster_with(Duration::from_millis(200)).await
}

/// A cluster server whose heartbeat (and so silence limit, 3 beats) is `heartbeat`.
async fn start_cluster_with(heartbeat: Duration) -> ClusterUnderTest {
    let ca = ClusterCa::generate("test CA").unwrap();
    let cp = ca
        .issue(CP_SERVER_NAME, Role::ControlPlane, Validity::leaf())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (publish, snapshots) = watch::channel(published(1, &[]));
    let registry = DataPlaneRegistry::default();
    let timing = ClusterTiming {
        heartbeat,
        hello_timeout: Duration::from_secs(5),
    };
    let service = ClusterService::new(snapshots, registry.clone(), timing);
    let tls = ClusterTls {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: cp.cert_pem,
        key_pem: cp.key_pem,
    };
    let stop = CancellationToken::new();
    let shutdown = stop.clone();
    tokio::spawn(async move {
        cluster::serve(
            listener,
            tls,
            service,
            async move { shutdown.cancelled().await },
        )
        .await
        .unwrap();
    });
    ClusterUnderTest {
        ca,
        addr,
        publish,
        registry,
        stop,
    }
}

fn settings(cluster: &ClusterUnderTest, node_id: &str) -> SyncSettings {
    let dp = cluster
        .ca
        .issue("dp-test", Role::DataPlane, Validity::leaf())
        .unwrap();
    SyncSettings {
        endpoint: format!("https://127.0.0.1:{}", cluster.addr.port()),
        server_name: CP_SERVER_NAME.into(),
        ca_pem: cluster.ca.cert_pem.clone(),
        cert_pem: dp.cert_pem,
        key_pem: dp.key_pem,
        node_id: node_id.into(),
        hostname: "test-host".into(),
        plugins: vec!["jwt".into()],
        heartbeat: Duration::from_millis(200),
        cert_expiry: 0,
    }
}

/// Waits until the registry satisfies `check` (each registry change wakes it).
async fn wait_registry(
    registry: &DataPlaneRegistry,
    mut check: impl FnMut(&DataPlaneRegistry) -> bool,
) {
    let mut changes = registry.subscribe();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !check(registry) {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("registry never reached the expected state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_plane_applies_acks_and_rejects_over_mtls() {
    let cluster = start_cluster().await;
    let node = uuid::Uuid::new_v4().to_string();
    let sink = Arc::new(RecordingSink::default());
    let status = Arc::new(SyncStatus::default());
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = tollgate_data_plane::cache::SnapshotCache::new(cache_dir.path());
    let stop = CancellationToken::new();
    tokio::spawn(sync::run(
        settings(&cluster, &node),
        sink.clone(),
        Some(cache.clone()),
        status.clone(),
        stop.clone(),
    ));

    wait_registry(&cluster.registry, |r| {
        r.get(&node).is_some_and(|s| s.config_version == 1)
    })
    .await;
    assert_eq!(sink.applied().unwrap().0, 1);
    // Persisted after the Ack, in the background: wait for the file.
    tollgate_tests::cluster::wait_until("the applied snapshot to be persisted", || async {
        Ok(cache
            .load()
            .ok()
            .flatten()
            .filter(|s| s.version == 1)
            .map(drop))
    })
    .await
    .unwrap();

    cluster.publish.send_replace(published(2, &[]));
    wait_registry(&cluster.registry, |r| {
        r.get(&node).is_some_and(|s| s.config_version == 2)
    })
    .await;

    *sink.refuse.lock().unwrap() = Some("route x: invalid regex".into());
    cluster.publish.send_replace(published(3, &[]));
    wait_registry(&cluster.registry, |r| {
        r.get(&node).is_some_and(|s| s.rejected_version == Some(3))
    })
    .await;
    let state = cluster.registry.get(&node).unwrap();
    assert_eq!(
        state.config_version, 2,
        "the rejected config is not recorded as applied"
    );
    assert_eq!(
        state.last_errors,
        vec!["route x: invalid regex".to_string()]
    );
    assert_eq!(sink.applied().unwrap().0, 2, "the old config keeps serving");

    // A config using a plugin the node lacks is refused by the CP, not sent.
    *sink.refuse.lock().unwrap() = None;
    cluster
        .publish
        .send_replace(published(4, &["rate-limiting"]));
    wait_registry(&cluster.registry, |r| {
        r.get(&node)
            .is_some_and(|s| s.incompatible_reason.is_some())
    })
    .await;
    assert_eq!(sink.applied().unwrap().0, 2);
    // The data plane shows why it gets no configs (its `/status` control_plane).
    tollgate_tests::cluster::wait_until("the refusal to reach the data plane", || async {
        let link = status.link();
        Ok((link.state == sync::LinkState::Refused).then_some(link))
    })
    .await
    .map(|link| {
        let reason = link.last_error.unwrap_or_default();
        assert!(reason.contains("rate-limiting"), "{reason}");
    })
    .unwrap();

    stop.cancel();
    cluster.stop.cancel();
}

async fn try_sync(endpoint: String, tls: ClientTlsConfig) -> Result<(), String> {
    let channel = Endpoint::from_shared(endpoint)
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let hello = DataPlaneMessage {
        kind: Some(data_plane_message::Kind::Hello(Hello {
            node_id: uuid::Uuid::new_v4().to_string(),
            version: tollgate_shared::VERSION.into(),
            ..Default::default()
        })),
    };
    let mut stream = ClusterClient::new(channel)
        .sync(tokio_stream::iter(vec![hello]))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    stream.message().await.map_err(|e| e.to_string())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_listener_refuses_missing_foreign_and_expired_client_certificates() {
    let cluster = start_cluster().await;
    let endpoint = format!("https://127.0.0.1:{}", cluster.addr.port());
    let base = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&cluster.ca.cert_pem))
            .domain_name(CP_SERVER_NAME)
    };

    let good = cluster
        .ca
        .issue("dp", Role::DataPlane, Validity::leaf())
        .unwrap();
    try_sync(
        endpoint.clone(),
        base().identity(Identity::from_pem(&good.cert_pem, &good.key_pem)),
    )
    .await
    .expect("a certificate from the cluster CA is accepted");

    assert!(
        try_sync(endpoint.clone(), base()).await.is_err(),
        "no client certificate"
    );

    let other_ca = ClusterCa::generate("other CA").unwrap();
    let foreign = other_ca
        .issue("dp", Role::DataPlane, Validity::leaf())
        .unwrap();
    assert!(
        try_sync(
            endpoint.clone(),
            base().identity(Identity::from_pem(&foreign.cert_pem, &foreign.key_pem))
        )
        .await
        .is_err(),
        "a certificate from another CA"
    );

    let expired = cluster
        .ca
        .issue(
            "dp",
            Role::DataPlane,
            Validity {
                not_before_days: -30,
                not_after_days: -1,
            },
        )
        .unwrap();
    assert!(
        try_sync(
            endpoint.clone(),
            base().identity(Identity::from_pem(&expired.cert_pem, &expired.key_pem))
        )
        .await
        .is_err(),
        "an expired certificate"
    );

    // The data plane checks the server name too.
    let wrong_name = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cluster.ca.cert_pem))
        .domain_name("not-the-cp")
        .identity(Identity::from_pem(&good.cert_pem, &good.key_pem));
    assert!(
        try_sync(endpoint, wrong_name).await.is_err(),
        "wrong server name"
    );
    cluster.stop.cancel();
}

/// A raw data plane stream: sends `hello`, then nothing (the sender is kept
/// open so the stream does not end), and returns the inbound side.
async fn raw_stream(
    cluster: &ClusterUnderTest,
    hello: Hello,
) -> (
    tonic::Streaming<tollgate_proto::v1::ControlPlaneMessage>,
    tokio::sync::mpsc::Sender<DataPlaneMessage>,
) {
    let dp = cluster
        .ca
        .issue("dp", Role::DataPlane, Validity::leaf())
        .unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cluster.ca.cert_pem))
        .domain_name(CP_SERVER_NAME)
        .identity(Identity::from_pem(&dp.cert_pem, &dp.key_pem));
    let channel = Endpoint::from_shared(format!("https://{}", cluster.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DataPlaneMessage {
        kind: Some(data_plane_message::Kind::Hello(hello)),
    })
    .await
    .unwrap();
    let inbound = ClusterClient::new(channel)
        .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (inbound, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_data_plane_is_dropped_within_three_heartbeats() {
    let cluster = start_cluster().await;
    let node = uuid::Uuid::new_v4().to_string();
    let hello = Hello {
        node_id: node.clone(),
        version: tollgate_shared::VERSION.into(),
        ..Default::default()
    };
    let (mut inbound, _keep_open) = raw_stream(&cluster, hello).await;
    let started = std::time::Instant::now();
    // The snapshot and heartbeats arrive; then the control plane gives up on
    // a node that never answers and ends the stream.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = inbound.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the control plane kept a silent node");
    let state = cluster.registry.get(&node).unwrap();
    assert!(!state.connected);
    // 3 x 200 ms, with slack for a loaded machine; far below the 10 s cap.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    cluster.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_drops_a_silent_control_plane_and_reconnects() {
    // The control plane beats once a minute; the data plane expects one every
    // 200 ms and gives up after three missed, then reconnects.
    let cluster = start_cluster_with(Duration::from_secs(60)).await;
    let node = uuid::Uuid::new_v4().to_string();
    let sink = Arc::new(RecordingSink::default());
    let stop = CancellationToken::new();
    tokio::spawn(sync::run(
        settings(&cluster, &node),
        sink,
        None,
        Arc::new(SyncStatus::default()),
        stop.clone(),
    ));
    wait_registry(&cluster.registry, |r| r.get(&node).is_some()).await;
    let first = cluster.registry.get(&node).unwrap().connected_at_ms;
    wait_registry(&cluster.registry, |r| {
        r.get(&node).is_some_and(|s| s.connected_at_ms > first)
    })
    .await;
    stop.cancel();
    cluster.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_of_another_major_version_is_refused_with_the_reason() {
    let cluster = start_cluster().await;
    let node = uuid::Uuid::new_v4().to_string();
    let hello = Hello {
        node_id: node.clone(),
        version: "99.0.0".into(),
        ..Default::default()
    };
    let (mut inbound, _keep_open) = raw_stream(&cluster, hello).await;
    let first = inbound.message().await.unwrap().unwrap();
    match first.kind {
        Some(tollgate_proto::v1::control_plane_message::Kind::Refusal(refusal)) => {
            assert!(refusal.reason.contains("99.0.0"), "{}", refusal.reason);
        }
        other => panic!("expected a Refusal, got {other:?}"),
    }
    let state = cluster.registry.get(&node).unwrap();
    let reason = state.incompatible_reason.unwrap();
    assert!(reason.contains("incompatible"), "{reason}");
    assert_eq!(state.sent_version, 0, "nothing was sent");
    cluster.stop.cancel();
}
