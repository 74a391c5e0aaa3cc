//! Snapshot fan-out over the real cluster listener (mTLS, gzip): N data plane
//! streams are connected, a large snapshot is published, and the time until
//! every stream has received and decoded it is measured. This is the control
//! plane's share of "write -> every data plane acked" after the build: the
//! per-stream encoding and compression, and the transfer.
//!
//! ```text
//! cargo bench -p tollgate-control-plane --bench cluster_fanout -- \
//!     --routes 10000 --consumers 10000 --streams 10 --iterations 5
//! ```
//!
//! The clients are plain `Cluster` clients (what the data plane's sync loop
//! uses, without compiling the config), in the same process and runtime.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tollgate_control_plane::cert::{ClusterCa, Role, Validity, CP_SERVER_NAME};
use tollgate_control_plane::cluster::{
    self, registry::DataPlaneRegistry, ClusterService, ClusterTiming, ClusterTls, Published,
};
use tollgate_proto::v1::{
    cluster_client::ClusterClient, control_plane_message, data_plane_message, DataPlaneMessage,
    Hello,
};
use tollgate_shared::Config;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

struct Args {
    routes: usize,
    consumers: usize,
    streams: usize,
    iterations: usize,
}

fn args() -> Args {
    let mut out = Args {
        routes: 10_000,
        consumers: 10_000,
        streams: 10,
        iterations: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--routes" => out.routes = value().parse().unwrap(),
            "--consumers" => out.consumers = value().parse().unwrap(),
            "--streams" => out.streams = value().parse().unwrap(),
            "--iterations" => out.iterations = value().parse().unwrap(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    out
}

/// The `tollgate-bench config-gen` shape, as declarative YAML.
fn generate(routes: usize, consumers: usize, variant: usize) -> Config {
    use std::fmt::Write as _;
    let mut out = String::from("_format_version: \"3.0\"\n");
    if routes > 0 {
        out.push_str("services:\n");
    }
    for i in 0..routes {
        let _ = write!(
            out,
            "  - name: \"svc-{i}\"\n    url: \"http://127.0.0.1:3000\"\n    tags: [\"variant-{variant}\"]\n    routes:\n      - name: \"route-{i}\"\n        paths: [\"/r{i}\"]\n"
        );
    }
    if consumers > 0 {
        out.push_str("consumers:\n");
    }
    for i in 0..consumers {
        let _ = write!(
            out,
            "  - username: \"consumer-{i}\"\n    jwt_secrets:\n      - key: \"consumer-{i}-iss\"\n        secret: \"bench-secret-{i:08}-0123456789abcdef\"\n        algorithm: \"HS256\"\n"
        );
    }
    tollgate_shared::declarative::parse(&out).unwrap()
}

/// Connects one stream and reports `(version, arrival)` of every snapshot.
async fn client(
    ca: &ClusterCa,
    port: u16,
    arrivals: mpsc::UnboundedSender<(u64, Instant)>,
) -> mpsc::Sender<DataPlaneMessage> {
    let dp = ca
        .issue("dp-bench", Role::DataPlane, Validity::leaf())
        .unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.cert_pem))
        .identity(Identity::from_pem(&dp.cert_pem, &dp.key_pem))
        .domain_name(CP_SERVER_NAME);
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap();
    // As the data plane's sync client is configured.
    let mut client = ClusterClient::new(channel)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(256 * 1024 * 1024);
    let (tx, rx) = mpsc::channel(16);
    tx.send(DataPlaneMessage {
        kind: Some(data_plane_message::Kind::Hello(Hello {
            node_id: uuid::Uuid::new_v4().to_string(),
            hostname: "bench".into(),
            version: tollgate_shared::VERSION.into(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut inbound = client
        .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tokio::spawn(async move {
        while let Ok(Some(msg)) = inbound.message().await {
            if let Some(control_plane_message::Kind::Snapshot(snapshot)) = msg.kind {
                let _ = arrivals.send((snapshot.version, Instant::now()));
            }
        }
    });
    // The request stream stays open while the sender lives.
    tx
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let configs = [
        generate(args.routes, args.consumers, 1),
        generate(args.routes, args.consumers, 2),
    ];
    let ca = ClusterCa::generate("bench CA").unwrap();
    let cp = ca
        .issue(CP_SERVER_NAME, Role::ControlPlane, Validity::leaf())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let first = cluster::build::build(1, Config::default()).unwrap();
    let (publish, snapshots) = watch::channel(Some(first));
    let timing = ClusterTiming {
        heartbeat: Duration::from_secs(600),
        hello_timeout: Duration::from_secs(10),
    };
    let service = ClusterService::new(snapshots, DataPlaneRegistry::default(), timing);
    let tls = ClusterTls {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: cp.cert_pem,
        key_pem: cp.key_pem,
    };
    tokio::spawn(cluster::serve(
        listener,
        tls,
        service,
        std::future::pending(),
    ));

    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel();
    let mut senders = Vec::new();
    for _ in 0..args.streams {
        senders.push(client(&ca, port, arrivals_tx.clone()).await);
    }
    for _ in 0..args.streams {
        let (version, _) = arrivals.recv().await.unwrap();
        assert_eq!(version, 1);
    }

    let mut samples = Vec::new();
    let mut encoded_len = 0;
    for i in 0..args.iterations {
        let version = 2 + i as u64;
        let published: Published = cluster::build::build(version, configs[i % 2].clone()).unwrap();
        if encoded_len == 0 {
            use prost::Message as _;
            encoded_len = published.snapshot.encoded_len();
        }
        let _keep: Arc<_> = published.snapshot.clone();
        let started = Instant::now();
        publish.send_replace(Some(published));
        let mut last = started;
        for _ in 0..args.streams {
            let (v, at) = arrivals.recv().await.unwrap();
            assert_eq!(v, version);
            last = last.max(at);
        }
        samples.push(last - started);
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "fan-out of a {encoded_len}-byte snapshot to {} streams: median {:.1} ms, min {:.1} ms, max {:.1} ms ({} iterations)",
        args.streams,
        ms(samples[samples.len() / 2]),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
        samples.len()
    );
    drop(senders);
}
