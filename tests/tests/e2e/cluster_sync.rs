//! The cluster end to end: real `tollgate-cp` and `tollgate-dp` processes on
//! PostgreSQL, over mTLS. Changes made through the Admin API reach every data
//! plane and their Acks are recorded; a Nack is shown with its reason; data
//! planes outlive the control plane and restart from their cache; a corrupt
//! cache is never served; two control planes share one database.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tollgate_data_plane::sync::{self, SnapshotSink, SyncSettings, SyncStatus};
use tollgate_data_plane::Settings;
use tollgate_tests::cluster::{
    admin_write, data_planes, wait_for_node, wait_in_sync, wait_until, ControlPlaneProcess,
    DataPlaneOptions, DataPlaneProcess, Pki, TestDatabase,
};
use tollgate_tests::dataplane;

fn dp_options(cp: SocketAddr, dir: &std::path::Path, name: &str) -> DataPlaneOptions {
    DataPlaneOptions {
        control_plane: cp,
        certificate: "dp".into(),
        cache_dir: dir.join(format!("{name}-cache")),
        node_id: uuid::Uuid::new_v4().to_string(),
    }
}

/// Creates service `name` on `upstream` with a route on `/{name}`; returns the
/// version the route's write committed.
async fn add_route(admin: SocketAddr, name: &str, upstream: SocketAddr) -> u64 {
    admin_write(
        admin,
        "POST",
        "/services",
        json!({ "name": name, "url": format!("http://{upstream}") }),
    )
    .await
    .unwrap();
    admin_write(
        admin,
        "POST",
        &format!("/services/{name}/routes"),
        json!({ "name": name, "paths": [format!("/{name}")] }),
    )
    .await
    .unwrap()
}

/// Waits until `proxy` answers `path` with `status`.
async fn wait_status(proxy: SocketAddr, path: &str, status: u16) {
    wait_until(&format!("{proxy}{path} to answer {status}"), || async {
        let reply = dataplane::get(proxy, path).await?;
        Ok((reply.status.as_u16() == status).then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_change_reaches_two_data_planes_and_their_acks_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    let db = TestDatabase::create().await.unwrap();
    let upstream = tollgate_tests::echo::spawn().await.unwrap();
    let cp = ControlPlaneProcess::start(&db.url, &pki, "127.0.0.1:0").unwrap();
    let dp1 = DataPlaneProcess::start(&pki, &dp_options(cp.cluster, dir.path(), "dp1")).unwrap();
    let dp2 = DataPlaneProcess::start(&pki, &dp_options(cp.cluster, dir.path(), "dp2")).unwrap();

    let version = add_route(cp.admin, "orders", upstream).await;
    for dp in [&dp1, &dp2] {
        let node = wait_in_sync(cp.admin, &dp.node_id, version).await.unwrap();
        assert_eq!(node["connected"], true);
        assert!(node["acked_at_ms"].as_i64().unwrap() > 0, "{node}");
        assert_eq!(node["last_error"], Value::Null);
        assert_eq!(node["lag_ms"], 0);
        // The expiry of the client certificate the node presented (a year out).
        let expiry = node["cert_details"]["expiry_timestamp"].as_i64().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(expiry > now + 86_400, "{node}");
        let reply = dataplane::get(dp.proxy, "/orders/42").await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["uri"], "/42");
    }

    // The Acks are persisted per node in the database, not only held in memory.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let stored = wait_until("both nodes' rows to record the version", || {
        let conn = pool.clone();
        async move {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT id, data FROM clustering_data_planes ORDER BY id")
                    .fetch_all(&conn)
                    .await?;
            let acked = rows
                .iter()
                .filter(|(_, data)| {
                    serde_json::from_str::<Value>(data).unwrap()["config_version"].as_u64()
                        >= Some(version)
                })
                .count();
            Ok((acked == 2).then_some(rows))
        }
    })
    .await
    .unwrap();
    let mut ids: Vec<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![dp1.node_id.as_str(), dp2.node_id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    pool.close().await;

    // A deletion propagates too.
    let reply = tollgate_tests::cluster::admin(cp.admin, "DELETE", "/routes/orders", None)
        .await
        .unwrap();
    assert_eq!(reply.status, 204);
    let deleted: u64 = reply.header("x-tollgate-config-version").parse().unwrap();
    assert!(deleted > version);
    for dp in [&dp1, &dp2] {
        wait_in_sync(cp.admin, &dp.node_id, deleted).await.unwrap();
        assert_eq!(
            dataplane::get(dp.proxy, "/orders").await.unwrap().status,
            404
        );
    }
}

/// A data plane whose sink refuses any config holding a route named
/// `refused-by-dp`, standing in for a node that cannot compile what the
/// control plane accepted; everything else goes to the real gateway.
struct RefusingGateway {
    gateway: Arc<tollgate_data_plane::gateway::Gateway>,
}

impl SnapshotSink for RefusingGateway {
    fn apply(&self, snapshot: &tollgate_proto::v1::Snapshot) -> Result<(), Vec<String>> {
        let refused = snapshot.config.as_ref().is_some_and(|c| {
            c.routes
                .iter()
                .any(|r| r.name.as_ref().is_some_and(|n| n.value == "refused-by-dp"))
        });
        if refused {
            return Err(vec![
                "route refused-by-dp: this node cannot compile it".into()
            ]);
        }
        SnapshotSink::apply(self.gateway.as_ref(), snapshot)
    }

    fn applied(&self) -> Option<(u64, String)> {
        self.gateway.applied()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_snapshot_is_shown_with_its_reason_and_the_old_config_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    let db = TestDatabase::create().await.unwrap();
    let upstream = tollgate_tests::echo::spawn().await.unwrap();
    let cp = ControlPlaneProcess::start(&db.url, &pki, "127.0.0.1:0").unwrap();

    let data_plane = tollgate_data_plane::start(&Settings::loopback())
        .await
        .unwrap();
    let proxy = data_plane.proxy_addrs()[0];
    let node_id = uuid::Uuid::new_v4().to_string();
    let read = |name: &str| std::fs::read_to_string(pki.file(name)).unwrap();
    let settings = SyncSettings {
        endpoint: format!("https://{}", cp.cluster),
        server_name: "tollgate-cp".into(),
        ca_pem: read("ca.crt"),
        cert_pem: read("dp.crt"),
        key_pem: read("dp.key"),
        node_id: node_id.clone(),
        hostname: "refusing-node".into(),
        plugins: tollgate_data_plane::plugins::supported()
            .iter()
            .map(ToString::to_string)
            .collect(),
        heartbeat: Duration::from_secs(1),
        cert_expiry: 0,
    };
    let sink = Arc::new(RefusingGateway {
        gateway: data_plane.gateway().clone(),
    });
    let stop = CancellationToken::new();
    tokio::spawn(sync::run(
        settings,
        sink,
        None,
        Arc::new(SyncStatus::default()),
        stop.clone(),
    ));

    let good = add_route(cp.admin, "kept", upstream).await;
    wait_in_sync(cp.admin, &node_id, good).await.unwrap();
    wait_status(proxy, "/kept", 200).await;

    let refused = admin_write(
        cp.admin,
        "POST",
        "/services/kept/routes",
        json!({ "name": "refused-by-dp", "paths": ["/refused"] }),
    )
    .await
    .unwrap();
    let node = wait_for_node(cp.admin, &node_id, "the node to reject", |n| {
        n["sync_status"] == "rejected"
    })
    .await
    .unwrap();
    assert_eq!(node["rejected_version"], refused);
    assert_eq!(
        node["config_version"], good,
        "it still runs the old version"
    );
    let reason = node["last_error"].as_str().unwrap();
    assert!(reason.contains("cannot compile it"), "{reason}");
    assert_eq!(node["errors"][0], reason);
    // The old config keeps serving; the refused route was never applied.
    assert_eq!(dataplane::get(proxy, "/kept").await.unwrap().status, 200);
    assert_eq!(dataplane::get(proxy, "/refused").await.unwrap().status, 404);

    // Fixing the config (renaming the route) brings the node back in sync.
    let fixed = admin_write(
        cp.admin,
        "PATCH",
        "/routes/refused-by-dp",
        json!({ "name": "accepted" }),
    )
    .await
    .unwrap();
    wait_in_sync(cp.admin, &node_id, fixed).await.unwrap();
    wait_status(proxy, "/refused", 200).await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_planes_outlive_the_control_plane_and_restart_from_their_cache() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    let db = TestDatabase::create().await.unwrap();
    let upstream = tollgate_tests::echo::spawn().await.unwrap();
    let mut cp = ControlPlaneProcess::start(&db.url, &pki, "127.0.0.1:0").unwrap();
    let options = dp_options(cp.cluster, dir.path(), "dp");
    let mut dp = DataPlaneProcess::start(&pki, &options).unwrap();
    let version = add_route(cp.admin, "cached", upstream).await;
    wait_in_sync(cp.admin, &dp.node_id, version).await.unwrap();
    wait_status(dp.proxy, "/cached", 200).await;
    // The snapshot is persisted after the Ack: wait for the file to hold it.
    let cache = tollgate_data_plane::cache::SnapshotCache::new(&options.cache_dir);
    wait_until("the cache to hold the acked version", || async {
        Ok(cache
            .load()
            .ok()
            .flatten()
            .filter(|s| s.version >= version)
            .map(drop))
    })
    .await
    .unwrap();

    // The control plane crashes: the data plane notices and keeps serving.
    cp.process.kill();
    dp.process
        .wait_for_line("cannot sync with the control plane")
        .unwrap();
    for _ in 0..20 {
        assert_eq!(
            dataplane::get(dp.proxy, "/cached").await.unwrap().status,
            200
        );
    }

    // Restarted while the control plane is still down, it serves its cache.
    dp.process.kill();
    let mut restarted = DataPlaneProcess::start(&pki, &options).unwrap();
    // Listeners open first (readiness says 503 meanwhile), then the cache loads.
    restarted
        .process
        .wait_for_line("serving the cached configuration")
        .unwrap();
    let ready = dataplane::get(restarted.status, "/status/ready")
        .await
        .unwrap();
    assert_eq!(ready.status, 200, "{}", ready.text());
    let reply = dataplane::get(restarted.proxy, "/cached/x").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["uri"], "/x");
}

/// A TCP relay that holds every connection until opened, then forwards to `target`.
struct HeldRelay {
    addr: SocketAddr,
    open: watch::Sender<Option<SocketAddr>>,
}

async fn held_relay() -> HeldRelay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (open, target) = watch::channel(None::<SocketAddr>);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut target = target.clone();
            tokio::spawn(async move {
                let Ok(to) = target.wait_for(Option::is_some).await.map(|t| *t) else {
                    return;
                };
                let Some(to) = to else { return };
                if let Ok(mut outbound) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    HeldRelay { addr, open }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cache_is_never_served_and_the_node_waits_for_the_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    let db = TestDatabase::create().await.unwrap();
    let upstream = tollgate_tests::echo::spawn().await.unwrap();
    let cp = ControlPlaneProcess::start(&db.url, &pki, "127.0.0.1:0").unwrap();
    let relay = held_relay().await;
    let options = dp_options(relay.addr, dir.path(), "dp");

    // A valid cache written by an earlier run of the same node...
    let version = add_route(cp.admin, "fresh", upstream).await;
    {
        let direct = DataPlaneOptions {
            control_plane: cp.cluster,
            ..options.clone()
        };
        let dp = DataPlaneProcess::start(&pki, &direct).unwrap();
        wait_in_sync(cp.admin, &dp.node_id, version).await.unwrap();
        let cache = tollgate_data_plane::cache::SnapshotCache::new(&options.cache_dir);
        wait_until("the cache file", || async {
            Ok(cache.load().ok().flatten().map(drop))
        })
        .await
        .unwrap();
    }
    // ...then damaged on disk: one byte of the payload flipped.
    let path = tollgate_data_plane::cache::SnapshotCache::new(&options.cache_dir).path();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    // Restarted with the control plane unreachable (the relay holds the
    // connection), the node reports the corrupt cache and is not ready.
    let mut dp = DataPlaneProcess::start(&pki, &options).unwrap();
    dp.process
        .wait_for_line("ignoring the configuration cache")
        .unwrap();
    let ready = dataplane::get(dp.status, "/status/ready").await.unwrap();
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(
        dataplane::get(dp.proxy, "/fresh").await.unwrap().status,
        404
    );

    // Once the control plane answers, it is ready and serves the current config.
    relay.open.send_replace(Some(cp.cluster));
    wait_in_sync(cp.admin, &dp.node_id, version).await.unwrap();
    let ready = dataplane::get(dp.status, "/status/ready").await.unwrap();
    assert_eq!(ready.status, 200);
    wait_status(dp.proxy, "/fresh", 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_either_of_two_control_planes_reaches_every_data_plane() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(&dir.path().join("pki")).unwrap();
    let db = TestDatabase::create().await.unwrap();
    let upstream = tollgate_tests::echo::spawn().await.unwrap();
    let cp_a = ControlPlaneProcess::start(&db.url, &pki, "127.0.0.1:0").unwrap();
    let cp_b = ControlPlaneProcess::start(&db.url, &pki, "127.0.0.1:0").unwrap();
    let dp_a = DataPlaneProcess::start(&pki, &dp_options(cp_a.cluster, dir.path(), "a")).unwrap();
    let dp_b = DataPlaneProcess::start(&pki, &dp_options(cp_b.cluster, dir.path(), "b")).unwrap();

    // Written through A: B learns of it (NOTIFY) and pushes it to its node.
    let through_a = add_route(cp_a.admin, "via-a", upstream).await;
    wait_in_sync(cp_a.admin, &dp_a.node_id, through_a)
        .await
        .unwrap();
    wait_in_sync(cp_b.admin, &dp_b.node_id, through_a)
        .await
        .unwrap();
    wait_status(dp_b.proxy, "/via-a", 200).await;

    // Written through B: the same the other way.
    let through_b = add_route(cp_b.admin, "via-b", upstream).await;
    wait_in_sync(cp_b.admin, &dp_b.node_id, through_b)
        .await
        .unwrap();
    wait_in_sync(cp_a.admin, &dp_a.node_id, through_b)
        .await
        .unwrap();
    wait_status(dp_a.proxy, "/via-b", 200).await;

    // Each control plane lists both nodes (the other's from the database).
    for admin in [cp_a.admin, cp_b.admin] {
        let nodes = wait_until("both nodes listed at the latest version", || async {
            let nodes = data_planes(admin).await?;
            let current = nodes
                .iter()
                .filter(|n| n["config_version"].as_u64() >= Some(through_b))
                .count();
            Ok((current == 2).then_some(nodes))
        })
        .await
        .unwrap();
        for dp in [&dp_a, &dp_b] {
            let node = nodes
                .iter()
                .find(|n| n["id"] == dp.node_id.as_str())
                .unwrap();
            assert_eq!(node["sync_status"], "in_sync", "{node}");
            assert_eq!(node["connected"], true);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10000_route_snapshot_round_trips_from_builder_to_proxy_and_cache() {
    use tollgate_control_plane::cert::{ClusterCa, Role, Validity, CP_SERVER_NAME};
    use tollgate_control_plane::cluster::{
        self, registry::DataPlaneRegistry, ClusterService, ClusterTiming, ClusterTls,
    };
    const ROUTES: u128 = 10_000;
    let upstream = tollgate_tests::echo::spawn().await.unwrap();
    let mut builder = dataplane::ConfigBuilder::new();
    for i in 0..ROUTES {
        let path = format!("/r{i}");
        builder = builder.service(1_000_000 + i, upstream, json!({})).route(
            2_000_000 + i,
            Some(1_000_000 + i),
            &[path.as_str()],
            json!({}),
        );
    }
    let config = builder.build().unwrap();
    // The control plane's builder: compile check, canonical hash, proto.
    let published = cluster::build::build(7, config).unwrap();
    let hash = published.snapshot.hash.clone();
    assert_eq!(
        published.snapshot.config.as_ref().unwrap().routes.len(),
        10_000
    );

    let ca = ClusterCa::generate("round trip CA").unwrap();
    let cp_cert = ca
        .issue(CP_SERVER_NAME, Role::ControlPlane, Validity::leaf())
        .unwrap();
    let dp_cert = ca.issue("dp", Role::DataPlane, Validity::leaf()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cluster_addr = listener.local_addr().unwrap();
    let (_publish, snapshots) = watch::channel(Some(published));
    let registry = DataPlaneRegistry::default();
    let service = ClusterService::new(snapshots, registry.clone(), ClusterTiming::default());
    let stop = CancellationToken::new();
    let tls = ClusterTls {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: cp_cert.cert_pem,
        key_pem: cp_cert.key_pem,
    };
    tokio::spawn(cluster::serve(
        listener,
        tls,
        service,
        stop.clone().cancelled_owned(),
    ));

    let data_plane = tollgate_data_plane::start(&Settings::loopback())
        .await
        .unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = tollgate_data_plane::cache::SnapshotCache::new(cache_dir.path());
    let node_id = uuid::Uuid::new_v4().to_string();
    let settings = SyncSettings {
        endpoint: format!("https://{cluster_addr}"),
        server_name: CP_SERVER_NAME.into(),
        ca_pem: ca.cert_pem.clone(),
        cert_pem: dp_cert.cert_pem,
        key_pem: dp_cert.key_pem,
        node_id: node_id.clone(),
        hostname: "big".into(),
        plugins: vec![],
        heartbeat: Duration::from_secs(5),
        cert_expiry: 0,
    };
    tokio::spawn(sync::run(
        settings,
        data_plane.gateway().clone(),
        Some(cache.clone()),
        Arc::new(SyncStatus::default()),
        stop.clone(),
    ));

    // The Ack reaches the registry with the hash the builder computed.
    let mut changes = registry.subscribe();
    tokio::time::timeout(tollgate_tests::cluster::WAIT, async {
        while registry.get(&node_id).map(|n| n.config_hash) != Some(hash.clone()) {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the data plane never acked the 10,000-route snapshot");
    let proxy = data_plane.proxy_addrs()[0];
    for path in ["/r0", "/r4999", "/r9999"] {
        let reply = dataplane::get(proxy, path).await.unwrap();
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    // The cache holds the same snapshot (its checksum is verified on load).
    let cached = wait_until("the cache to hold the snapshot", || async {
        Ok(cache.load().ok().flatten().filter(|s| s.hash == hash))
    })
    .await
    .unwrap();
    assert_eq!(cached.version, 7);
    assert_eq!(cached.config.as_ref().unwrap().routes.len(), 10_000);
    stop.cancel();
}
