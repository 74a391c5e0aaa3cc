//! What an operator sees when the cluster is misconfigured: the data plane's
//! sync client names the cause of each connection failure (in its log once
//! per change and in `/status`), and the control plane logs each refused
//! handshake, including a client certificate signed by an intermediate the
//! `pathlen:0` cluster CA does not allow.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tollgate_control_plane::cert::{ClusterCa, Role, Validity, CP_SERVER_NAME};
use tollgate_data_plane::sync::{self, SnapshotSink, SyncSettings, SyncStatus};
use tollgate_proto::v1::Snapshot;
use tollgate_tests::cluster::{
    self, wait_until, ControlPlaneProcess, DataPlaneOptions, DataPlaneProcess, Pki,
};

#[derive(Default)]
struct NullSink {
    applied: Mutex<Option<(u64, String)>>,
}

impl SnapshotSink for NullSink {
    fn apply(&self, snapshot: &Snapshot) -> Result<(), Vec<String>> {
        *self.applied.lock().unwrap() = Some((snapshot.version, snapshot.hash.clone()));
        Ok(())
    }
    fn applied(&self) -> Option<(u64, String)> {
        self.applied.lock().unwrap().clone()
    }
}

fn read(pki: &Pki, name: &str) -> String {
    std::fs::read_to_string(pki.dir.join(name)).unwrap()
}

fn settings(pki: &Pki, endpoint: String) -> SyncSettings {
    SyncSettings {
        endpoint,
        server_name: CP_SERVER_NAME.into(),
        ca_pem: read(pki, "ca.crt"),
        cert_pem: read(pki, "dp.crt"),
        key_pem: read(pki, "dp.key"),
        node_id: uuid::Uuid::new_v4().to_string(),
        hostname: "operator-test".into(),
        plugins: Vec::new(),
        heartbeat: std::time::Duration::from_millis(500),
        cert_expiry: 0,
    }
}

/// Runs a sync client with `settings` until its first failure and returns
/// the state it reports (as `/status` would show it).
async fn first_failure(settings: SyncSettings) -> sync::Link {
    let status = Arc::new(SyncStatus::default());
    let stop = CancellationToken::new();
    tokio::spawn(sync::run(
        settings,
        Arc::new(NullSink::default()),
        None,
        Arc::clone(&status),
        stop.clone(),
    ));
    let link = wait_until("the sync client to report a failure", || async {
        let link = status.link();
        Ok(link.last_error.is_some().then_some(link))
    })
    .await
    .unwrap();
    stop.cancel();
    link
}

/// A control plane process on SQLite with a fresh PKI.
fn control_plane(dir: &std::path::Path) -> (Pki, ControlPlaneProcess) {
    let pki = Pki::init(&dir.join("pki")).unwrap();
    let database = format!("sqlite://{}/cp.db", dir.display());
    let cp = ControlPlaneProcess::start(&database, &pki, "127.0.0.1:0").unwrap();
    (pki, cp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_failures_name_the_cause_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, mut cp) = control_plane(dir.path());
    let cluster_url = format!("https://{}", cp.cluster);

    // Nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let link = first_failure(settings(&pki, format!("https://{closed_addr}"))).await;
    assert_eq!(link.state, sync::LinkState::Disconnected);
    let error = link.last_error.unwrap();
    assert!(
        error.contains(&format!("connection refused by {closed_addr}")),
        "{error}"
    );

    // A listener whose accept queue is full drops new SYNs: the connect times out.
    let full = tokio::net::TcpSocket::new_v4().unwrap();
    full.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = full.listen(0).unwrap();
    let full_addr = full.local_addr().unwrap();
    let mut queued = Vec::new();
    while let Ok(stream) =
        std::net::TcpStream::connect_timeout(&full_addr, std::time::Duration::from_millis(500))
    {
        queued.push(stream);
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    let error = first_failure(settings(&pki, format!("https://{full_addr}")))
        .await
        .last_error
        .unwrap();
    assert!(
        error.contains(&format!("no answer from {full_addr} within 5 s")),
        "{error}"
    );
    drop((queued, full));

    // The CA given to the data plane did not issue the control plane's certificate.
    let other = ClusterCa::generate("another CA").unwrap();
    let mut wrong_ca = settings(&pki, cluster_url.clone());
    wrong_ca.ca_pem = other.cert_pem.clone();
    let error = first_failure(wrong_ca).await.last_error.unwrap();
    assert!(error.contains("is not issued by --cluster-ca"), "{error}");

    // The name the data plane expects is not on the certificate.
    let mut wrong_name = settings(&pki, cluster_url.clone());
    wrong_name.server_name = "cp.example".into();
    let error = first_failure(wrong_name).await.last_error.unwrap();
    assert!(
        error.contains("not valid for 'cp.example'")
            && error.contains("'tollgate-cp'")
            && error.contains("--cluster-server-name"),
        "{error}"
    );

    // Our certificate comes from another CA: the control plane rejects it.
    let foreign = other
        .issue("dp", Role::DataPlane, Validity::leaf())
        .unwrap();
    let mut rejected = settings(&pki, cluster_url.clone());
    rejected.cert_pem = foreign.cert_pem;
    rejected.key_pem = foreign.key_pem;
    let error = first_failure(rejected).await.last_error.unwrap();
    assert!(
        error.contains("rejected this data plane's certificate"),
        "{error}"
    );
    // Earlier cases logged refusals too (the data plane distrusted us).
    let refused = cp
        .process
        .wait_for_line("not issued by the cluster CA")
        .unwrap();
    assert!(refused.contains("refused a cluster handshake"), "{refused}");
    assert!(refused.contains("peer=127.0.0.1:"), "{refused}");

    // A port that accepts and says nothing: bounded by the handshake timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let error = first_failure(settings(&pki, format!("https://{silent_addr}")))
        .await
        .last_error
        .unwrap();
    assert!(
        error.contains(&format!(
            "{silent_addr} does not speak the cluster protocol (no TLS handshake)"
        )),
        "{error}"
    );
    held.abort();

    // The Admin API's port is not the cluster port.
    let error = first_failure(settings(&pki, format!("https://{}", cp.admin)))
        .await
        .last_error
        .unwrap();
    assert!(
        error.contains("does not speak the cluster protocol") && error.contains("8005"),
        "{error}"
    );
}

/// A leaf signed by an intermediate CA that the cluster CA signed.
fn leaf_under_intermediate(pki: &Pki) -> (String, String) {
    let ca_key = KeyPair::from_pem(&read(pki, "ca.key")).unwrap();
    let ca = Issuer::from_ca_cert_pem(&read(pki, "ca.crt"), &ca_key).unwrap();
    let intermediate_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "rogue intermediate");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let intermediate = params.signed_by(&intermediate_key, &ca).unwrap();
    let intermediate_issuer = Issuer::new(params, &intermediate_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["dp-rogue".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "dp-rogue");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let leaf = leaf.signed_by(&leaf_key, &intermediate_issuer).unwrap();
    (
        format!("{}{}", leaf.pem(), intermediate.pem()),
        leaf_key.serialize_pem(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_under_an_intermediate_is_refused_by_the_pathlen_0_cluster_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, mut cp) = control_plane(dir.path());
    let (cert_pem, key_pem) = leaf_under_intermediate(&pki);
    let mut rogue = settings(&pki, format!("https://{}", cp.cluster));
    rogue.cert_pem = cert_pem;
    rogue.key_pem = key_pem;
    let error = first_failure(rogue).await.last_error.unwrap();
    assert!(
        error.contains("rejected this data plane's certificate"),
        "{error}"
    );
    let refused = cp
        .process
        .wait_for_line("refused a cluster handshake")
        .unwrap();
    assert!(refused.contains("path length constraint"), "{refused}");
    assert!(refused.contains("peer=127.0.0.1:"), "{refused}");
    let nodes = cluster::data_planes(cp.admin).await.unwrap();
    assert!(nodes.is_empty(), "{nodes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_pointed_at_the_admin_port_says_so_once_and_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, cp) = control_plane(dir.path());
    let dp = DataPlaneProcess::start(&pki, &DataPlaneOptions::new(cp.admin, dir.path())).unwrap();
    // Watch several attempts go by: each one moves the next attempt time.
    let attempts = Arc::new(Mutex::new(BTreeSet::new()));
    let status = wait_until("three failed attempts", || {
        let addr = dp.status;
        let attempts = Arc::clone(&attempts);
        async move {
            let reply = cluster::admin(addr, "GET", "/status", None).await?;
            let status = reply.json();
            let mut attempts = attempts.lock().unwrap();
            if let Some(next) = status["control_plane"]["next_attempt_ms"].as_i64() {
                attempts.insert(next);
            }
            Ok((attempts.len() >= 3).then_some(status))
        }
    })
    .await
    .unwrap();
    let control_plane = &status["control_plane"];
    assert_eq!(control_plane["state"], "disconnected", "{status}");
    let error = control_plane["last_error"].as_str().unwrap();
    assert!(
        error.contains("does not speak the cluster protocol"),
        "{error}"
    );
    assert!(control_plane["since"].as_i64().unwrap() > 0, "{status}");
    let log = dp.process.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("cannot sync with the control plane"))
        .count();
    assert_eq!(warnings, 1, "one warning for one unchanged reason:\n{log}");
    assert!(log.contains("retry_in="), "{log}");
    assert_ne!(status["control_plane"], Value::Null);
}

async fn wait_call(admin: std::net::SocketAddr, query: &str) -> (u16, Value) {
    let reply = cluster::admin(admin, "GET", &format!("/clustering/wait?{query}"), None)
        .await
        .unwrap();
    (reply.status.as_u16(), reply.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clustering_wait_reaches_times_out_and_counts_a_quorum_and_status_prints_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, cp) = control_plane(dir.path());
    pki.issue("dp2").unwrap();
    let start = |certificate: &str, n: u32| {
        DataPlaneProcess::start(
            &pki,
            &DataPlaneOptions {
                control_plane: cp.cluster,
                certificate: certificate.into(),
                cache_dir: dir.path().join(format!("cache-{n}")),
                node_id: uuid::Uuid::new_v4().to_string(),
            },
        )
        .unwrap()
    };
    let dp1 = start("dp", 1);
    let mut dp2 = start("dp2", 2);
    for dp in [&dp1, &dp2] {
        cluster::wait_for_node(cp.admin, &dp.node_id, "the node to connect", |n| {
            n["connected"] == true
        })
        .await
        .unwrap();
    }

    // The data plane marks itself connected once the stream's response arrives.
    let status = wait_until("the data plane to report connected", || async {
        let status = cluster::admin(dp1.status, "GET", "/status", None)
            .await?
            .json();
        Ok((status["control_plane"]["state"] == "connected").then_some(status))
    })
    .await
    .unwrap();
    assert_eq!(status["control_plane"]["state"], "connected", "{status}");
    assert_eq!(
        status["control_plane"]["last_error"],
        Value::Null,
        "{status}"
    );

    let version = cluster::admin_write(
        cp.admin,
        "POST",
        "/services",
        serde_json::json!({"name": "waited", "url": "http://127.0.0.1:9"}),
    )
    .await
    .unwrap();
    // Reached: both connected data planes applied it.
    let (status, body) = wait_call(cp.admin, &format!("version={version}&timeout=30s")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reached"], 2, "{body}");
    assert_eq!(body["connected"], 2, "{body}");
    for node in body["data"].as_array().unwrap() {
        assert!(
            node["config_version"].as_u64().unwrap() >= version,
            "{body}"
        );
    }

    // Timeout: a version nobody has, answered with each node's state.
    let (status, body) = wait_call(
        cp.admin,
        &format!("version={}&timeout=300ms", version + 100),
    )
    .await;
    assert_eq!(status, 504, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("timed out"),
        "{body}"
    );
    assert_eq!(body["data"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(body["reached"], 0, "{body}");

    // Quorum: more than are connected cannot be reached; exactly as many can.
    let (status, body) = wait_call(
        cp.admin,
        &format!("version={version}&quorum=3&timeout=200ms"),
    )
    .await;
    assert_eq!(status, 504, "{body}");
    let (status, body) =
        wait_call(cp.admin, &format!("version={version}&quorum=2&timeout=5s")).await;
    assert_eq!(status, 200, "{body}");

    // One data plane goes away: "all" means the connected one; quorum=2 is short.
    dp2.process.kill();
    cluster::wait_for_node(cp.admin, &dp2.node_id, "the node to drop", |n| {
        n["connected"] == false
    })
    .await
    .unwrap();
    let next = cluster::admin_write(
        cp.admin,
        "PATCH",
        "/services/waited",
        serde_json::json!({"retries": 3}),
    )
    .await
    .unwrap();
    let (status, body) = wait_call(cp.admin, &format!("version={next}&timeout=30s")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connected"], 1, "{body}");
    let (status, body) =
        wait_call(cp.admin, &format!("version={next}&quorum=2&timeout=200ms")).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["reached"], 1, "{body}");

    // Bad parameters are Kong-style 400s.
    for query in [
        "",
        "version=x",
        "version=1&timeout=forever",
        "version=1&quorum=0",
    ] {
        let (status, body) = wait_call(cp.admin, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["message"].is_string(), "{query}: {body}");
    }

    // The same cluster as a table.
    let output = std::process::Command::new(cluster::binary("tollgate-cp").unwrap())
        .args(["status", "--admin-url", &format!("http://{}", cp.admin)])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}");
    assert!(
        table.contains(&format!("published config version {next}")),
        "{table}"
    );
    let header = table.lines().nth(1).unwrap();
    assert!(
        header.starts_with("NODE") && header.contains("LAST ERROR"),
        "{table}"
    );
    let row = table.lines().find(|l| l.starts_with(&dp1.node_id)).unwrap();
    assert!(
        row.contains("in_sync") && row.contains(&next.to_string()),
        "{table}"
    );
    assert!(table.contains(&dp2.node_id), "{table}");

    // Unreachable: one line, non-zero.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let output = std::process::Command::new(cluster::binary("tollgate-cp").unwrap())
        .args(["status", "--admin-url", &format!("http://{closed_addr}")])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
}
