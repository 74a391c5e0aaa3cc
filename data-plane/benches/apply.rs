//! Cost of taking a large config snapshot in on a data plane, phase by phase:
//! the shape `tests/src/bench/config_gen.rs` benchmarks (N services each with
//! one prefix route `/r{i}`, N consumers each with one jwt credential; every
//! tenth credential RS256, the rest HS256).
//!
//! Phases, each timed separately (best and median of the rounds):
//! - `encode`: `Snapshot::to_proto` + protobuf encoding (the control plane's side)
//! - `decode`: protobuf decoding of the message (what tonic does on arrival)
//! - `proto clone`: one deep copy of the decoded message
//! - `try_from`: `Snapshot::try_from` (conversion + hash verification)
//! - `hash`: `config_hash` alone (the verification part of `try_from`)
//! - `compile`: `compile::compile` on a data plane's pool registry
//! - `check`: `compile::check` (what the control plane runs before publishing)
//! - `drop compiled`: freeing one compiled config
//! - `sink apply`: `SnapshotSink::apply` on a `Gateway` that already runs a
//!   config of the same size (conversion, verification, compile, swap, and
//!   freeing the previous one), alternating two snapshots so every round
//!   really applies
//! - `sink apply owned`: the same through `SnapshotSink::apply_owned`, what
//!   the sync client calls (the message copies are made outside the timed part)
//!
//! Run: `cargo bench -p tollgate-data-plane --bench apply` (optional arguments:
//! the number of services/routes/consumers, default 10000, and the rounds,
//! default 5; `--distinct-hosts` gives every service its own upstream host;
//! `--only PHASE`, e.g. `--only "sink apply"`, times that phase alone, for
//! profiling with `perf record`).

use prost::Message;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_data_plane::compile::{compile, ConfigMeta, Deps};
use tollgate_data_plane::proxy::upstream::PoolRegistry;
use tollgate_data_plane::settings::PoolSettings;
use tollgate_data_plane::sync::SnapshotSink;
use tollgate_data_plane::tls::UpstreamTls;
use tollgate_data_plane::{Gateway, StatusState};
use tollgate_proto::v1 as pb;
use tollgate_shared::snapshot::Snapshot;
use tollgate_shared::Config;

/// The data plane binary's allocator, so that allocation-heavy phases cost
/// what they cost in `tollgate-dp`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A fixed RSA public key for the RS256 credentials (only parsed, never used to verify).
const RSA_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAxF8fccz32oBlWCsF2HUU
lnod+k362SabOp8oqtTQRIG+wDAGEGwE/6FSnP0ons8EtfUqClPCVRMZwDaNswV3
sAv51jtwPM7Z1UzBm8UP6zOCG955wpLfyTavYiXCxg8hrJMq8doQWSar3G9yT4UN
zvmEcQi5nlprdM6cer6qMJtM3OTbJvCkZMy7Rx0myIviqS1ethfWntPsr+KKHyQK
rUB6aI0FWwHQzQiA4E7XYi65CJEtkjwKacG7KP/XB6YU/CMSXvduvQPUs0/znHtt
eH+qe4rNpY7zXYNY/38DGp0Kr/kgVoPkt4T7L5wzSSXtaZGx6AtJSbNCXRyO5xYl
jwIDAQAB
-----END PUBLIC KEY-----
";

/// The benchmark's declarative config: the config_gen shape with four route
/// hosts; `variant` tags every service so two variants hash differently.
fn declarative(n: usize, variant: u32, distinct_hosts: bool) -> String {
    let mut out = String::with_capacity(200 * n + 256);
    out.push_str("_format_version: \"3.0\"\nservices:\n");
    for i in 0..n {
        let _ = writeln!(out, "  - name: \"svc-{i}\"");
        if distinct_hosts {
            let _ = writeln!(out, "    url: \"http://u{i}.upstream.test:3000\"");
        } else {
            out.push_str("    url: \"http://127.0.0.1:3000\"\n");
        }
        let _ = writeln!(out, "    tags: [\"variant-{variant}\"]");
        out.push_str("    routes:\n");
        let _ = writeln!(out, "      - name: \"route-{i}\"");
        let _ = writeln!(out, "        paths: [\"/r{i}\"]");
        let k = i % 5;
        if k != 0 {
            let _ = writeln!(out, "        hosts: [\"h{k}.bench.test\"]");
        }
    }
    out.push_str("consumers:\n");
    for i in 0..n {
        let _ = writeln!(out, "  - username: \"consumer-{i}\"");
        out.push_str("    jwt_secrets:\n");
        let _ = writeln!(out, "      - key: \"consumer-{i}-iss\"");
        if i % 10 == 9 {
            out.push_str("        algorithm: \"RS256\"\n        rsa_public_key: |\n");
            for line in RSA_PUBLIC_KEY.lines() {
                let _ = writeln!(out, "          {line}");
            }
        } else {
            let _ = writeln!(
                out,
                "        secret: \"bench-secret-{i:08}-0123456789abcdef\""
            );
            out.push_str("        algorithm: \"HS256\"\n");
        }
    }
    out
}

fn config(n: usize, variant: u32, distinct_hosts: bool) -> Result<Config, String> {
    tollgate_shared::declarative::parse(&declarative(n, variant, distinct_hosts))
        .map_err(|e| format!("generated config does not parse: {e}"))
}

fn deps() -> Result<Deps, String> {
    let tls = UpstreamTls::new(rustls::RootCertStore::empty()).map_err(|e| e.to_string())?;
    Ok(Deps {
        pools: Arc::new(PoolRegistry::new(PoolSettings::default(), tls)),
        resources: tollgate_shared::runtime::Resources::check_only(),
    })
}

/// Runs `f` `rounds` times; returns (best, median).
fn time<T>(rounds: usize, mut f: impl FnMut(usize) -> T) -> (Duration, Duration) {
    let mut all: Vec<Duration> = (0..rounds)
        .map(|round| {
            let start = Instant::now();
            black_box(f(round));
            start.elapsed()
        })
        .collect();
    all.sort_unstable();
    (all[0], all[all.len() / 2])
}

/// Whether `phase` is to be timed (every phase unless `--only` names one).
fn wanted(phase: &str) -> bool {
    let mut args = std::env::args().skip_while(|a| a != "--only").skip(1);
    args.next().is_none_or(|only| only == phase)
}

/// Times `f` and prints the result, if the phase is wanted.
fn phase<T>(name: &str, rounds: usize, f: impl FnMut(usize) -> T) {
    if wanted(name) {
        report(name, time(rounds, f));
    }
}

fn report(name: &str, (best, median): (Duration, Duration)) {
    println!(
        "apply/{name:<15} best {:>9.2} ms   median {:>9.2} ms",
        best.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3
    );
}

fn main() -> Result<(), String> {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let distinct_hosts = std::env::args().any(|a| a == "--distinct-hosts");
    let n = numbers.first().copied().unwrap_or(10_000);
    let rounds = numbers.get(1).copied().unwrap_or(5).max(1);

    let setup = Instant::now();
    let snapshots = [
        Snapshot::new(1, config(n, 1, distinct_hosts)?),
        Snapshot::new(2, config(n, 2, distinct_hosts)?),
    ];
    let encoded: Vec<Vec<u8>> = snapshots
        .iter()
        .map(|s| s.to_proto(0).encode_to_vec())
        .collect();
    let messages: Vec<pb::Snapshot> = encoded
        .iter()
        .map(|bytes| pb::Snapshot::decode(bytes.as_slice()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    println!(
        "apply: {n} services/routes, {n} consumers/jwt credentials{}; message {:.1} MiB; setup {:.1} s; {rounds} rounds",
        if distinct_hosts { ", distinct upstream hosts" } else { "" },
        encoded[0].len() as f64 / (1024.0 * 1024.0),
        setup.elapsed().as_secs_f64()
    );

    phase("encode", rounds, |_| {
        snapshots[0].to_proto(0).encode_to_vec()
    });
    phase("decode", rounds, |_| {
        pb::Snapshot::decode(encoded[0].as_slice())
    });
    phase("proto clone", rounds, |_| messages[0].clone());
    if wanted("try_from") {
        // The copies are made outside the timed part.
        let mut copies: Vec<pb::Snapshot> = (0..rounds).map(|_| messages[0].clone()).collect();
        phase("try_from", rounds, |_| {
            copies
                .pop()
                .map(|m| Snapshot::try_from(m).map_err(|e| e.to_string()))
        });
    }
    phase("hash", rounds, |_| {
        tollgate_shared::hash::config_hash(&snapshots[0].config)
    });

    let deps = deps()?;
    let meta = ConfigMeta {
        version: 1,
        hash: snapshots[0].hash.clone(),
    };
    let mut compiled = Vec::new();
    let mut compile_once = || match compile(meta.clone(), &snapshots[0].config, &deps) {
        Ok(c) => compiled.push(c),
        Err(errors) => eprintln!("compile failed: {:?}", errors.first()),
    };
    if wanted("compile") {
        phase("compile", rounds, |_| compile_once());
    } else if wanted("drop compiled") {
        (0..rounds).for_each(|_| compile_once());
    }
    if wanted("drop compiled") || wanted("compile") {
        if compiled.len() != rounds {
            return Err("the benchmark config does not compile".into());
        }
        phase("drop compiled", rounds, |_| drop(compiled.pop()));
    }
    phase("check", rounds, |_| {
        tollgate_data_plane::compile::check(&snapshots[0].config)
    });

    if !wanted("sink apply") && !wanted("sink apply owned") {
        return Ok(());
    }
    let gateway = Gateway::new(deps, Arc::new(StatusState::new()));
    SnapshotSink::apply(&gateway, &messages[1])
        .map_err(|e| format!("apply failed: {:?}", e.first()))?;
    let mut failed = None;
    phase("sink apply", rounds, |round| {
        if let Err(e) = SnapshotSink::apply(&gateway, &messages[round % 2]) {
            failed = e.into_iter().next();
        }
    });
    if wanted("sink apply owned") {
        let mut copies: Vec<pb::Snapshot> = (0..rounds)
            .rev()
            .map(|round| messages[round % 2].clone())
            .collect();
        let mut persisted = Vec::with_capacity(rounds);
        phase("sink apply owned", rounds, |_| {
            match copies.pop().map(|m| SnapshotSink::apply_owned(&gateway, m)) {
                Some(Ok(persist)) => persisted.push(persist),
                Some(Err(e)) => failed = e.into_iter().next(),
                None => {}
            }
        });
    }
    match failed {
        Some(error) => Err(format!("apply failed: {error}")),
        None => Ok(()),
    }
}
