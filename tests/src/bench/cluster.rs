//! Config propagation: how long from an Admin API write (or a whole
//! `POST /config`) until every connected data plane has acknowledged the
//! version that write committed, as reported by `GET /clustering/data-planes`.

use super::client::{BenchError, HttpClient, Payload};
use super::config_io::{self, ConfigFile, Encoding, Imported};
use super::stats::{ms, LatencySummary};
use super::table::Table;
use http::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The wall clock in unix microseconds (comparable with the CP's `acked_at_ms`).
pub fn unix_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One entry of `GET /clustering/data-planes`, as far as benchmarks care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlaneView {
    pub id: String,
    pub config_version: u64,
    /// When the CP received the Ack of `config_version` (unix ms); `None`
    /// when absent or zero.
    pub acked_at_ms: Option<i64>,
    pub connected: bool,
}

fn as_u64(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

fn as_i64(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// Reads the `data` array of `GET /clustering/data-planes`. A node counts as
/// connected unless it says `connected: false` or `sync_status: "disconnected"`.
pub fn parse_data_planes(body: &Value) -> Result<Vec<DataPlaneView>, BenchError> {
    let data = body
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| BenchError::Protocol("/clustering/data-planes: no \"data\" array".into()))?;
    let mut out = Vec::with_capacity(data.len());
    for node in data {
        let id = node
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let config_version = node.get("config_version").and_then(as_u64).unwrap_or(0);
        let acked_at_ms = node
            .get("acked_at_ms")
            .and_then(as_i64)
            .filter(|ms| *ms > 0);
        let disconnected = node.get("connected").and_then(Value::as_bool) == Some(false)
            || node.get("sync_status").and_then(Value::as_str) == Some("disconnected");
        out.push(DataPlaneView {
            id,
            config_version,
            acked_at_ms,
            connected: !disconnected,
        });
    }
    Ok(out)
}

pub async fn data_planes(client: &HttpClient) -> Result<Vec<DataPlaneView>, BenchError> {
    let reply = client
        .get("/clustering/data-planes")
        .await?
        .expect(200, "GET /clustering/data-planes")?;
    parse_data_planes(&reply.json("GET /clustering/data-planes")?)
}

fn connected(nodes: Vec<DataPlaneView>) -> Vec<DataPlaneView> {
    nodes.into_iter().filter(|n| n.connected).collect()
}

/// Waits until at least `count` data planes are connected.
pub async fn wait_connected(
    client: &HttpClient,
    count: usize,
    timeout: Duration,
) -> Result<Vec<DataPlaneView>, BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        let nodes = connected(data_planes(client).await?);
        if nodes.len() >= count {
            return Ok(nodes);
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Wait(format!(
                "{count} connected data planes (have {})",
                nodes.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The moment every connected data plane (at least `count`) ran a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    /// Unix µs at which the poll saw it.
    pub observed_at_us: i64,
    /// The latest `acked_at_ms` among the nodes, when every node reports one.
    pub acked_max_ms: Option<i64>,
    pub nodes: usize,
}

/// `Some` once at least `count` nodes are connected and all of them run `version` or later.
pub fn reached(
    nodes: &[DataPlaneView],
    count: usize,
    version: u64,
) -> Option<(usize, Option<i64>)> {
    let live: Vec<&DataPlaneView> = nodes.iter().filter(|n| n.connected).collect();
    if live.len() < count.max(1) || live.iter().any(|n| n.config_version < version) {
        return None;
    }
    let acked = live
        .iter()
        .map(|n| n.acked_at_ms)
        .collect::<Option<Vec<i64>>>()
        .and_then(|all| all.into_iter().max());
    Some((live.len(), acked))
}

/// Polls `GET /clustering/data-planes` every `interval` until [`reached`].
pub async fn wait_version(
    client: &HttpClient,
    count: usize,
    version: u64,
    timeout: Duration,
    interval: Duration,
) -> Result<Reached, BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        let nodes = data_planes(client).await?;
        let observed_at_us = unix_micros();
        if let Some((nodes, acked_max_ms)) = reached(&nodes, count, version) {
            return Ok(Reached {
                observed_at_us,
                acked_max_ms,
                nodes,
            });
        }
        if Instant::now() >= deadline {
            let behind: Vec<String> = nodes
                .iter()
                .filter(|n| n.connected && n.config_version < version)
                .map(|n| format!("{} at {}", n.id, n.config_version))
                .collect();
            return Err(BenchError::Wait(format!(
                "{count} data planes at config version {version} (connected: {}; behind: {})",
                nodes.iter().filter(|n| n.connected).count(),
                behind.join(", ")
            )));
        }
        tokio::time::sleep(interval).await;
    }
}

/// Latency from `t0_us` to the moment every node had acknowledged, by the
/// CP's Ack receipt time when reported (ms granularity), else by the poll.
pub fn latency_since(t0_us: i64, reached: &Reached) -> (Duration, LatencySource) {
    let (end_us, source) = match reached.acked_max_ms {
        Some(acked_ms) if acked_ms.saturating_mul(1000) + 999 >= t0_us => {
            (acked_ms.saturating_mul(1000), LatencySource::Ack)
        }
        _ => (reached.observed_at_us, LatencySource::Poll),
    };
    let micros = u64::try_from(end_us.saturating_sub(t0_us)).unwrap_or(0);
    (Duration::from_micros(micros), source)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencySource {
    /// `acked_at_ms` from the control plane.
    Ack,
    /// The poll that first saw every node at the version.
    Poll,
}

/// The version to wait for after a write: its `X-Tollgate-Config-Version`,
/// or, when the server does not send one, one past the newest version any
/// node ran before the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSource {
    Header,
    Guessed,
}

fn target_version(header: Option<u64>, before: u64) -> (u64, VersionSource) {
    match header {
        Some(v) => (v, VersionSource::Header),
        None => (before + 1, VersionSource::Guessed),
    }
}

fn newest(nodes: &[DataPlaneView]) -> u64 {
    nodes.iter().map(|n| n.config_version).max().unwrap_or(0)
}

/// Which Admin API write each propagation sample makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WriteKind {
    /// `POST /services/{bench}/routes` with a unique path.
    Route,
    /// `PATCH /services/{bench}` changing `retries`.
    Patch,
    /// Alternates the two.
    Mixed,
}

#[derive(Debug, Clone)]
pub struct PropagationOptions {
    pub dp_count: usize,
    pub writes: usize,
    pub kind: WriteKind,
    pub timeout: Duration,
    pub interval: Duration,
    pub run_id: String,
}

#[derive(Debug, Clone, Default)]
pub struct PropagationResult {
    /// Write sent → every node acknowledged.
    pub latencies: Vec<Duration>,
    /// Write sent → a poll saw every node at the version.
    pub observed: Vec<Duration>,
    /// Write sent → its response read.
    pub responses: Vec<Duration>,
    pub by_ack: usize,
    pub guessed_versions: usize,
    pub nodes: usize,
}

const BENCH_SERVICE: &str = "bench-propagation";

async fn write(
    client: &HttpClient,
    kind: WriteKind,
    index: usize,
    run_id: &str,
) -> Result<super::Reply, BenchError> {
    let patch = match kind {
        WriteKind::Route => false,
        WriteKind::Patch => true,
        WriteKind::Mixed => index % 2 == 1,
    };
    if patch {
        // consecutive values differ, so every PATCH is a real change
        let body = Payload::json(&json!({ "retries": (index % 30) + 1 }));
        client
            .send(
                Method::PATCH,
                &format!("/services/{BENCH_SERVICE}"),
                Some(body),
            )
            .await?
            .expect(200, "PATCH /services/{bench}")
    } else {
        let name = format!("prop-{run_id}-{index}");
        let body = Payload::json(&json!({ "name": name, "paths": [format!("/{name}")] }));
        client
            .post(&format!("/services/{BENCH_SERVICE}/routes"), body)
            .await?
            .expect(201, "POST /services/{bench}/routes")
    }
}

/// Creates (or replaces) the bench service and waits until the nodes run it.
async fn prepare(client: &HttpClient, options: &PropagationOptions) -> Result<u64, BenchError> {
    let before = newest(&wait_connected(client, options.dp_count, options.timeout).await?);
    let body = Payload::json(&json!({ "url": "http://127.0.0.1:9/propagation" }));
    let reply = client
        .send(
            Method::PUT,
            &format!("/services/{BENCH_SERVICE}"),
            Some(body),
        )
        .await?;
    // Kong answers an upsert with 200; accept 201 from a server that reports creation.
    let reply = if reply.status.as_u16() == 201 {
        reply
    } else {
        reply.expect(200, "PUT /services/{bench}")?
    };
    let (version, _) = target_version(reply.config_version(), before);
    wait_version(
        client,
        options.dp_count,
        version,
        options.timeout,
        options.interval,
    )
    .await?;
    Ok(newest(&data_planes(client).await?))
}

/// Makes `writes` writes one after another, each waiting for every node.
pub async fn propagation(
    client: &HttpClient,
    options: &PropagationOptions,
) -> Result<PropagationResult, BenchError> {
    let mut before = prepare(client, options).await?;
    let mut result = PropagationResult::default();
    for index in 0..options.writes {
        let sent = Instant::now();
        let reply = write(client, options.kind, index, &options.run_id).await?;
        result.responses.push(sent.elapsed());
        // Propagation counts from the Admin API's answer, as the issue defines it.
        let t0_us = unix_micros();
        let (version, source) = target_version(reply.config_version(), before);
        if source == VersionSource::Guessed {
            result.guessed_versions += 1;
        }
        let reached = wait_version(
            client,
            options.dp_count,
            version,
            options.timeout,
            options.interval,
        )
        .await?;
        let (latency, source) = latency_since(t0_us, &reached);
        if source == LatencySource::Ack {
            result.by_ack += 1;
        }
        result.latencies.push(latency);
        result.observed.push(Duration::from_micros(
            u64::try_from(reached.observed_at_us - t0_us).unwrap_or(0),
        ));
        result.nodes = reached.nodes;
        before = before.max(version);
    }
    Ok(result)
}

fn summary_row(table: &mut Table, label: &str, samples: &[Duration]) {
    match LatencySummary::from_samples(samples.to_vec()) {
        Some(s) => table.row(vec![
            label.to_string(),
            s.count.to_string(),
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
        ]),
        None => table.row(vec![label.to_string(), "0".into()]),
    }
}

pub fn propagation_report(result: &PropagationResult, options: &PropagationOptions) -> Table {
    let mut table = Table::new(
        &format!(
            "Config propagation to {} data plane(s), {} sequential {:?} writes",
            result.nodes.max(options.dp_count),
            options.writes,
            options.kind
        ),
        &["measure", "samples", "p50 ms", "p99 ms", "max ms"],
    );
    summary_row(&mut table, "201 → all DPs acked", &result.latencies);
    summary_row(&mut table, "201 → seen by polling", &result.observed);
    summary_row(&mut table, "write response", &result.responses);
    table.note(format!(
        "acked = latest acked_at_ms among the nodes (CP clock) minus the time the write's response arrived; {} of {} samples used it, the rest the poll time ({} ms poll interval)",
        result.by_ack,
        result.latencies.len(),
        options.interval.as_millis()
    ));
    if result.guessed_versions > 0 {
        table.note(format!(
            "{} writes had no X-Tollgate-Config-Version header: waited for one version past the newest seen before the write",
            result.guessed_versions
        ));
    }
    table
}

/// One `POST /config` followed by waiting for every node.
#[derive(Debug, Clone)]
pub struct PushRound {
    pub file: String,
    pub import: Imported,
    pub version: u64,
    pub version_source: VersionSource,
    /// 201 received → every node acknowledged (compile, swap, Ack).
    pub propagate: Duration,
    pub propagate_source: LatencySource,
    /// Request sent → every node acknowledged.
    pub total: Duration,
    pub nodes: usize,
}

/// Imports `file` and waits until `dp_count` nodes run it.
pub async fn push(
    client: &HttpClient,
    file: &ConfigFile,
    encoding: Encoding,
    dp_count: usize,
    timeout: Duration,
    interval: Duration,
) -> Result<PushRound, BenchError> {
    let before = newest(&data_planes(client).await?);
    let t0_us = unix_micros();
    let import = config_io::import(client, file, encoding).await?;
    let (version, version_source) = target_version(import.version, before);
    let reached = wait_version(client, dp_count, version, timeout, interval).await?;
    let (total, propagate_source) = latency_since(t0_us, &reached);
    let (propagate, _) = latency_since(import.answered_at_us, &reached);
    Ok(PushRound {
        file: file.name.clone(),
        import,
        version,
        version_source,
        propagate,
        propagate_source,
        total,
        nodes: reached.nodes,
    })
}

pub fn push_report(rounds: &[PushRound]) -> Table {
    let nodes = rounds.iter().map(|r| r.nodes).max().unwrap_or(0);
    let mut table = Table::new(
        &format!("Whole-config push to {nodes} data plane(s)"),
        &[
            "round",
            "file",
            "version",
            "POST /config → 201 ms",
            "201 → all DPs acked ms",
            "total ms",
        ],
    )
    .left_columns(2);
    for (i, round) in rounds.iter().enumerate() {
        let version = match round.version_source {
            VersionSource::Header => round.version.to_string(),
            VersionSource::Guessed => format!("{} (guessed)", round.version),
        };
        table.row(vec![
            (i + 1).to_string(),
            round.file.clone(),
            version,
            ms(round.import.took),
            ms(round.propagate),
            ms(round.total),
        ]);
    }
    let median_of = |f: fn(&PushRound) -> Duration| {
        super::stats::median(&rounds.iter().map(f).collect::<Vec<_>>())
            .map_or_else(|| "-".into(), ms)
    };
    table.row(vec![
        "median".into(),
        String::new(),
        String::new(),
        median_of(|r| r.import.took),
        median_of(|r| r.propagate),
        median_of(|r| r.total),
    ]);
    let by_poll = rounds
        .iter()
        .filter(|r| r.propagate_source == LatencySource::Poll)
        .count();
    if by_poll > 0 {
        table.note(format!(
            "{by_poll} round(s) had no acked_at_ms: their end time is when polling saw every node"
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn node(id: &str, version: u64, acked: Option<i64>, connected: bool) -> DataPlaneView {
        DataPlaneView {
            id: id.into(),
            config_version: version,
            acked_at_ms: acked,
            connected,
        }
    }

    #[test]
    fn parses_the_data_planes_listing() {
        let body = json!({"data": [
            {"id": "a", "config_version": 7, "acked_at_ms": 1000, "sync_status": "in_sync", "connected": true},
            {"id": "b", "config_version": "8", "acked_at_ms": 0},
            {"id": "c", "config_version": 3, "sync_status": "disconnected"},
            {"id": "d", "connected": false}
        ], "next": null});
        let nodes = parse_data_planes(&body).unwrap();
        assert_eq!(
            nodes,
            vec![
                node("a", 7, Some(1000), true),
                node("b", 8, None, true),
                node("c", 3, None, false),
                node("d", 0, None, false),
            ]
        );
        assert!(parse_data_planes(&json!({"message": "Not found"})).is_err());
    }

    #[test]
    fn reached_needs_enough_live_nodes_all_at_the_version() {
        type Case = (Vec<DataPlaneView>, usize, u64, Option<(usize, Option<i64>)>);
        let cases: Vec<Case> = vec![
            (vec![], 1, 1, None),
            (
                vec![node("a", 5, Some(10), true)],
                1,
                5,
                Some((1, Some(10))),
            ),
            (
                vec![node("a", 6, Some(10), true)],
                1,
                5,
                Some((1, Some(10))),
            ),
            (vec![node("a", 4, Some(10), true)], 1, 5, None),
            (
                vec![node("a", 5, Some(10), true), node("b", 5, Some(12), true)],
                2,
                5,
                Some((2, Some(12))),
            ),
            (
                vec![node("a", 5, Some(10), true), node("b", 4, Some(12), true)],
                2,
                5,
                None,
            ),
            // a disconnected node neither blocks nor counts
            (
                vec![node("a", 5, Some(10), true), node("b", 1, None, false)],
                1,
                5,
                Some((1, Some(10))),
            ),
            (
                vec![node("a", 5, Some(10), true), node("b", 1, None, false)],
                2,
                5,
                None,
            ),
            // one node without an ack time: fall back to polling
            (
                vec![node("a", 5, Some(10), true), node("b", 5, None, true)],
                2,
                5,
                Some((2, None)),
            ),
        ];
        for (nodes, count, version, expected) in cases {
            assert_eq!(
                reached(&nodes, count, version),
                expected,
                "{nodes:?} count {count} v{version}"
            );
        }
    }

    #[test]
    fn latency_prefers_the_ack_time_and_falls_back_to_polling() {
        let t0 = 1_000_000_000; // µs
        let by_ack = Reached {
            observed_at_us: t0 + 9_000,
            acked_max_ms: Some(1_000_004),
            nodes: 1,
        };
        assert_eq!(
            latency_since(t0, &by_ack),
            (Duration::from_millis(4), LatencySource::Ack)
        );
        let no_ack = Reached {
            acked_max_ms: None,
            ..by_ack
        };
        assert_eq!(
            latency_since(t0, &no_ack),
            (Duration::from_millis(9), LatencySource::Poll)
        );
        // an ack stamped in the same millisecond as t0 counts as zero, not negative
        let same_ms = Reached {
            acked_max_ms: Some(1_000_000),
            ..by_ack
        };
        assert_eq!(
            latency_since(t0 + 500, &same_ms),
            (Duration::ZERO, LatencySource::Ack)
        );
        // an ack older than the write is stale: use the poll
        let stale = Reached {
            acked_max_ms: Some(999_000),
            ..by_ack
        };
        assert_eq!(latency_since(t0, &stale).1, LatencySource::Poll);
    }

    #[test]
    fn target_version_prefers_the_header() {
        assert_eq!(target_version(Some(42), 7), (42, VersionSource::Header));
        assert_eq!(target_version(None, 7), (8, VersionSource::Guessed));
    }

    use crate::bench::fake_cp::{self, FakeOptions};

    fn options(dp_count: usize, writes: usize, timeout_ms: u64) -> PropagationOptions {
        PropagationOptions {
            dp_count,
            writes,
            kind: WriteKind::Mixed,
            timeout: Duration::from_millis(timeout_ms),
            interval: Duration::from_millis(1),
            run_id: "t".into(),
        }
    }

    #[tokio::test]
    async fn propagation_waits_for_every_node_after_each_write() {
        for version_header in [true, false] {
            let cp = fake_cp::start(FakeOptions {
                data_planes: 3,
                ack_delay: Duration::from_millis(20),
                version_header,
            })
            .await
            .unwrap();
            let client = HttpClient::new(&cp.base).unwrap();
            let result = propagation(&client, &options(3, 4, 5_000)).await.unwrap();
            assert_eq!(
                cp.writes(),
                5,
                "the bench service, then one write per sample"
            );
            assert_eq!(result.latencies.len(), 4);
            assert_eq!(result.observed.len(), 4);
            assert_eq!(result.by_ack, 4);
            assert_eq!(result.nodes, 3);
            assert_eq!(result.guessed_versions, if version_header { 0 } else { 4 });
            for (acked, seen) in result.latencies.iter().zip(&result.observed) {
                // No lower bound: the fake control plane delays its acks from
                // the moment it stored the write, while a latency starts when
                // the client received the 201, which a loaded machine delays by
                // an arbitrary amount. `by_ack` above shows the latencies came
                // from the acks.
                assert!(*acked < Duration::from_secs(2), "{acked:?}");
                assert!(
                    *seen + Duration::from_millis(1) >= *acked,
                    "{seen:?} < {acked:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn propagation_gives_up_when_too_few_nodes_are_connected() {
        let cp = fake_cp::start(FakeOptions {
            data_planes: 1,
            ack_delay: Duration::from_millis(1),
            version_header: true,
        })
        .await
        .unwrap();
        let client = HttpClient::new(&cp.base).unwrap();
        let err = propagation(&client, &options(2, 1, 200)).await.unwrap_err();
        assert!(
            matches!(&err, BenchError::Wait(what) if what.contains("have 1")),
            "{err}"
        );
        assert_eq!(cp.writes(), 0);
    }

    #[tokio::test]
    async fn push_splits_import_time_from_propagation_time() {
        let cp = fake_cp::start(FakeOptions {
            data_planes: 2,
            ack_delay: Duration::from_millis(30),
            version_header: true,
        })
        .await
        .unwrap();
        let client = HttpClient::new(&cp.base).unwrap();
        let file = ConfigFile {
            name: "c.yaml".into(),
            text: bytes::Bytes::from_static(b"_format_version: \"3.0\"\n"),
        };
        let interval = Duration::from_millis(1);
        let round = push(
            &client,
            &file,
            Encoding::Yaml,
            2,
            Duration::from_secs(5),
            interval,
        )
        .await
        .unwrap();
        assert_eq!(round.version, 2);
        assert_eq!(round.version_source, VersionSource::Header);
        assert_eq!(round.propagate_source, LatencySource::Ack);
        assert_eq!(round.nodes, 2);
        assert!(round.propagate >= Duration::from_millis(25), "{round:?}");
        assert!(
            round.total + Duration::from_millis(1) >= round.propagate,
            "{round:?}"
        );
        let table = push_report(&[round]).to_string();
        assert!(table.contains("| 1      | c.yaml |       2 |"), "{table}");
    }
}
