//! The control plane's snapshot pipeline, stage by stage, on a large config:
//! `Store::load_config` (PostgreSQL and/or SQLite), the data planes' compile
//! check, `Snapshot::new` (sort + canonical hash), `to_proto`, protobuf
//! encoding, gzip (what tonic does per stream), the per-stream clone the
//! cluster stream used to make, and the data plane's side of the wire
//! (gunzip, decode, convert + verify the hash).
//!
//! Run (release):
//!
//! ```text
//! cargo bench -p tollgate-control-plane --bench snapshot_pipeline -- \
//!     --postgres postgres://postgres@127.0.0.1:5432/tollgate_cpperf \
//!     --sqlite /tmp/tollgate_cpperf.db --routes 10000 --consumers 10000 --iterations 5
//! ```
//!
//! The PostgreSQL database is created when missing and dropped at the end
//! unless `--keep` is given (`--load-only` skips the other stages); a database that already holds the same number of
//! entities is reused instead of importing again. The config is the shape of
//! `tollgate-bench config-gen` (one prefix route per service, one HS256 jwt
//! credential per consumer), or `--config FILE` (declarative YAML/JSON).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use prost::Message as _;
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};
use tollgate_control_plane::store::{AuditRecord, Store, StoreOptions};
use tollgate_proto::v1 as pb;
use tollgate_shared::snapshot::Snapshot;
use tollgate_shared::Config;

struct Args {
    postgres: Option<String>,
    sqlite: Option<String>,
    config: Option<String>,
    routes: usize,
    consumers: usize,
    iterations: usize,
    keep: bool,
    /// Only time `load_config`.
    load_only: bool,
}

fn args() -> Args {
    let mut out = Args {
        postgres: None,
        sqlite: None,
        config: None,
        routes: 10_000,
        consumers: 10_000,
        iterations: 5,
        keep: false,
        load_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--postgres" => out.postgres = Some(value()),
            "--sqlite" => out.sqlite = Some(value()),
            "--config" => out.config = Some(value()),
            "--routes" => out.routes = value().parse().unwrap(),
            "--consumers" => out.consumers = value().parse().unwrap(),
            "--iterations" => out.iterations = value().parse().unwrap(),
            "--keep" => out.keep = true,
            "--load-only" => out.load_only = true,
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    out
}

/// The `tollgate-bench config-gen` shape (see tests/src/bench/config_gen.rs).
fn generate(routes: usize, consumers: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("_format_version: \"3.0\"\n");
    if routes > 0 {
        out.push_str("services:\n");
    }
    for i in 0..routes {
        let _ = write!(
            out,
            "  - name: \"svc-{i}\"\n    url: \"http://127.0.0.1:3000\"\n    routes:\n      - name: \"route-{i}\"\n        paths: [\"/r{i}\"]\n"
        );
        let k = i % 5;
        if k != 0 {
            let _ = writeln!(out, "        hosts: [\"h{k}.bench.test\"]");
        }
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
    out
}

/// Timings of one stage over the iterations.
struct Stage {
    name: String,
    samples: Vec<Duration>,
}

impl Stage {
    fn median(&self) -> Duration {
        let mut s = self.samples.clone();
        s.sort();
        s.get(s.len() / 2).copied().unwrap_or_default()
    }
    fn min(&self) -> Duration {
        self.samples.iter().min().copied().unwrap_or_default()
    }
}

#[derive(Default)]
struct Report {
    stages: Vec<Stage>,
}

impl Report {
    fn record(&mut self, name: &str, took: Duration) {
        match self.stages.iter_mut().find(|s| s.name == name) {
            Some(stage) => stage.samples.push(took),
            None => self.stages.push(Stage {
                name: name.to_string(),
                samples: vec![took],
            }),
        }
    }

    fn time<T>(&mut self, name: &str, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = work();
        self.record(name, started.elapsed());
        out
    }

    fn print(&self) {
        println!("{:<44} {:>12} {:>12}", "stage", "median ms", "min ms");
        for stage in &self.stages {
            println!(
                "{:<44} {:>12.1} {:>12.1}",
                stage.name,
                stage.median().as_secs_f64() * 1e3,
                stage.min().as_secs_f64() * 1e3
            );
        }
    }
}

fn gzip(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::new(level),
    );
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 4);
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn counts(config: &Config) -> [usize; 7] {
    [
        config.services.len(),
        config.routes.len(),
        config.consumers.len(),
        config.plugins.len(),
        config.jwt_secrets.len(),
        config.certificates.len(),
        config.snis.len(),
    ]
}

/// Opens (creating on PostgreSQL) and fills the database unless it already
/// holds a config of the same size.
async fn prepare(url: &str, config: &Config) -> Store {
    if let Some((server, db)) = url.rsplit_once('/') {
        if url.starts_with("postgres") {
            sqlx::any::install_default_drivers();
            let mut conn =
                <sqlx::AnyConnection as sqlx::Connection>::connect(&format!("{server}/postgres"))
                    .await
                    .unwrap();
            let exists = sqlx::query("SELECT 1 AS found FROM pg_database WHERE datname = $1")
                .bind(db.to_string())
                .fetch_optional(&mut conn)
                .await
                .unwrap()
                .is_some();
            if !exists {
                sqlx::query(&format!("CREATE DATABASE {db}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }
    let options = StoreOptions {
        operation_timeout: Duration::from_secs(600),
        ..StoreOptions::default()
    };
    let store = Store::connect(url, options).unwrap();
    store.migrate().await.unwrap();
    let (_, current) = store.load_config().await.unwrap();
    if counts(&current) != counts(config) {
        let started = Instant::now();
        store
            .replace_all(
                config,
                AuditRecord {
                    actor: "bench".into(),
                    method: "POST".into(),
                    path: "/config".into(),
                    ..AuditRecord::default()
                },
            )
            .await
            .unwrap();
        println!(
            "imported {:?} into {} in {:.1} s",
            counts(config),
            tollgate_control_plane::store::redact_url(url),
            started.elapsed().as_secs_f64()
        );
    }
    store
}

async fn drop_postgres(url: &str) {
    let Some((server, db)) = url.rsplit_once('/') else {
        return;
    };
    let mut conn =
        <sqlx::AnyConnection as sqlx::Connection>::connect(&format!("{server}/postgres"))
            .await
            .unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// The stages after the read, on one loaded config.
fn build_stages(report: &mut Report, version: u64, config: Config) {
    let checked = config.clone();
    report.time("compile::check (data plane compile)", || {
        tollgate_shared::compile::check(&checked).unwrap()
    });
    let input = config.clone();
    let snapshot = report.time("Snapshot::new (sort + hash)", || {
        Snapshot::new(version, input)
    });
    report.time("  of which canonical_bytes", || {
        tollgate_shared::hash::canonical_bytes(&snapshot.config).len()
    });
    report.time("  of which config_hash", || {
        tollgate_shared::hash::config_hash(&snapshot.config)
    });
    let proto = report.time("to_proto", || snapshot.to_proto(0));
    let message = pb::ControlPlaneMessage {
        kind: Some(pb::control_plane_message::Kind::Snapshot(proto.clone())),
    };
    report.time("clone proto (old per-stream cost)", || {
        std::hint::black_box(proto.clone())
    });
    let encoded = report.time("prost encode", || message.encode_to_vec());
    // Level 6 is what tonic compresses each stream's messages with; level 1
    // what the shared snapshot frame uses (cluster/wire.rs).
    let compressed = report.time("gzip level 6", || gzip(&encoded, 6));
    let fast = report.time("gzip level 1", || gzip(&encoded, 1));
    if report.stages.first().is_some_and(|s| s.samples.len() == 1) {
        println!("gzip level 1: {} bytes", fast.len());
    }
    let input = config.clone();
    report.time("drop a Config", || drop(input));
    let input = config.clone();
    report.time("cluster::build::build (whole build)", || {
        tollgate_control_plane::cluster::build::build(version, input).unwrap()
    });
    // The data plane's side of the wire (shared code: convert + hash).
    let plain = report.time("DP: gunzip", || gunzip(&compressed));
    let decoded = report.time("DP: prost decode", || {
        pb::ControlPlaneMessage::decode(plain.as_slice()).unwrap()
    });
    let Some(pb::control_plane_message::Kind::Snapshot(received)) = decoded.kind else {
        panic!("not a snapshot");
    };
    let back = report.time("DP: Snapshot::try_from (convert + verify)", || {
        Snapshot::try_from(received).unwrap()
    });
    assert_eq!(back.hash, snapshot.hash);
    report.record_size(encoded.len(), compressed.len(), &snapshot.hash);
}

impl Report {
    fn record_size(&mut self, encoded: usize, compressed: usize, hash: &str) {
        if self.stages.first().is_some_and(|s| s.samples.len() == 1) {
            println!("snapshot: {encoded} bytes protobuf, {compressed} bytes gzip, hash {hash}");
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let text = match &args.config {
        Some(path) => std::fs::read_to_string(path).unwrap(),
        None => generate(args.routes, args.consumers),
    };
    let started = Instant::now();
    let config = tollgate_shared::declarative::parse(&text).unwrap();
    println!(
        "config {:?} (services, routes, consumers, plugins, jwt_secrets, certificates, snis) parsed in {:.1} s",
        counts(&config),
        started.elapsed().as_secs_f64()
    );

    let mut databases = Vec::new();
    if let Some(url) = &args.postgres {
        databases.push(("postgres", url.clone()));
    }
    if let Some(path) = &args.sqlite {
        databases.push(("sqlite", format!("sqlite://{path}")));
    }
    let mut loaded = None;
    for (label, url) in &databases {
        let store = prepare(url, &config).await;
        let mut report = Report::default();
        for _ in 0..args.iterations {
            let started = Instant::now();
            let (version, config) = store.load_config().await.unwrap();
            report.record(&format!("load_config ({label})"), started.elapsed());
            loaded = Some((u64::try_from(version).unwrap(), config));
        }
        report.print();
        store.close().await;
    }
    for (label, url) in &databases {
        if *label == "postgres" && !args.keep {
            drop_postgres(url).await;
        }
    }

    if args.load_only {
        return;
    }
    // Without a database, the stages run on the parsed config (sorted like a read).
    let (version, config) = loaded.unwrap_or((1, config));
    let mut report = Report::default();
    for _ in 0..args.iterations {
        build_stages(&mut report, version, config.clone());
    }
    report.print();
}
