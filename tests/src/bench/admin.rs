//! Admin API throughput: closed-loop phases of writes (create consumers,
//! create services) and reads (get a consumer by name, list services), each
//! run by N concurrent tasks for a fixed time.

use super::client::{HttpClient, Payload};
use super::stats::{ms, rate, LatencySummary};
use super::table::Table;
use serde_json::json;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct AdminOptions {
    /// How long each phase runs.
    pub duration: Duration,
    /// Concurrent tasks (each with its own keep-alive connection).
    pub concurrency: usize,
    /// Makes names unique across runs against the same database.
    pub run_id: String,
    /// Same-run baseline: raw PostgreSQL single-row INSERT commits/s and
    /// primary-key SELECTs/s at the same concurrency (e.g. from pgbench).
    pub baseline: Option<Baseline>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub writes_per_sec: f64,
    pub reads_per_sec: f64,
}

impl Baseline {
    /// The baseline rate a phase compares with: writes for POST, reads otherwise.
    fn for_phase(&self, name: &str) -> f64 {
        if name.starts_with("POST") {
            self.writes_per_sec
        } else {
            self.reads_per_sec
        }
    }
}

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub name: String,
    pub elapsed: Duration,
    pub ok: usize,
    pub errors: usize,
    pub latency: Option<LatencySummary>,
    /// The first failure, to tell "slow" from "broken".
    pub first_error: Option<String>,
}

impl PhaseResult {
    pub fn ops_per_sec(&self) -> f64 {
        rate(self.ok, self.elapsed)
    }
}

struct WorkerResult {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

/// Runs `op(worker, iteration)` in `concurrency` tasks until `duration` has
/// passed; an `Err` counts as an error and its latency is not recorded.
pub async fn phase<F, Fut>(name: &str, duration: Duration, concurrency: usize, op: F) -> PhaseResult
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency.max(1) {
        let op = Arc::clone(&op);
        tasks.spawn(async move {
            let mut result = WorkerResult {
                latencies: Vec::new(),
                errors: 0,
                first_error: None,
            };
            let mut iteration = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match op(worker, iteration).await {
                    Ok(()) => result.latencies.push(sent.elapsed()),
                    Err(err) => {
                        result.errors += 1;
                        result.first_error.get_or_insert(err);
                    }
                }
                iteration += 1;
            }
            result
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(worker) => {
                latencies.extend(worker.latencies);
                errors += worker.errors;
                if first_error.is_none() {
                    first_error = worker.first_error;
                }
            }
            Err(err) => {
                errors += 1;
                first_error.get_or_insert(format!("worker task failed: {err}"));
            }
        }
    }
    let elapsed = started.elapsed();
    PhaseResult {
        name: name.to_string(),
        elapsed,
        ok: latencies.len(),
        errors,
        latency: LatencySummary::from_samples(latencies),
        first_error,
    }
}

fn check(result: Result<super::Reply, super::BenchError>, expected: u16) -> Result<(), String> {
    match result {
        Ok(reply) if reply.status.as_u16() == expected => Ok(()),
        Ok(reply) => Err(format!(
            "status {} (expected {expected}): {}",
            reply.status.as_u16(),
            String::from_utf8_lossy(&reply.body)
                .chars()
                .take(200)
                .collect::<String>()
        )),
        Err(err) => Err(err.to_string()),
    }
}

/// Runs the four phases in order: the reads use the consumers the first phase created.
pub async fn run(client: &HttpClient, options: &AdminOptions) -> Vec<PhaseResult> {
    let mut results = Vec::new();
    let created = Arc::new(Mutex::new(Vec::<String>::new()));

    let (c, names, run_id) = (client.clone(), Arc::clone(&created), options.run_id.clone());
    results.push(
        phase(
            "POST /consumers",
            options.duration,
            options.concurrency,
            move |worker, i| {
                let (c, names) = (c.clone(), Arc::clone(&names));
                let username = format!("bench-{run_id}-{worker}-{i}");
                async move {
                    let body = Payload::json(&json!({ "username": username }));
                    check(c.post("/consumers", body).await, 201)?;
                    if let Ok(mut names) = names.lock() {
                        names.push(username);
                    }
                    Ok(())
                }
            },
        )
        .await,
    );

    let (c, run_id) = (client.clone(), options.run_id.clone());
    results.push(
        phase(
            "POST /services",
            options.duration,
            options.concurrency,
            move |worker, i| {
                let c = c.clone();
                let body = Payload::json(&json!({
                    "name": format!("bench-{run_id}-{worker}-{i}"),
                    "url": format!("http://upstream-{}.bench.test:8080/v1", i % 8),
                }));
                async move { check(c.post("/services", body).await, 201) }
            },
        )
        .await,
    );

    let names: Arc<Vec<String>> = Arc::new(
        created
            .lock()
            .map(|names| names.clone())
            .unwrap_or_default(),
    );
    let c = client.clone();
    results.push(
        phase(
            "GET /consumers/{username}",
            options.duration,
            options.concurrency,
            move |worker, i| {
                let c = c.clone();
                let path = pick(&names, worker, i).map(|name| format!("/consumers/{name}"));
                async move {
                    match path {
                        Some(path) => check(c.get(&path).await, 200),
                        None => Err("no consumer was created to read".to_string()),
                    }
                }
            },
        )
        .await,
    );

    let c = client.clone();
    results.push(
        phase(
            "GET /services?size=100",
            options.duration,
            options.concurrency,
            move |_, _| {
                let c = c.clone();
                async move { check(c.get("/services?size=100").await, 200) }
            },
        )
        .await,
    );
    results
}

/// Spreads reads over the created names so no single row stays hot in a cache.
fn pick(names: &[String], worker: usize, iteration: u64) -> Option<&String> {
    if names.is_empty() {
        return None;
    }
    let spread = (worker as u64)
        .wrapping_mul(7919)
        .wrapping_add(iteration.wrapping_mul(104_729));
    names.get((spread % names.len() as u64) as usize)
}

/// The results as a markdown table.
pub fn report(results: &[PhaseResult], options: &AdminOptions) -> Table {
    let mut table = Table::new(
        &format!(
            "Admin API throughput ({} tasks, {:.0} s per phase)",
            options.concurrency,
            options.duration.as_secs_f64()
        ),
        &[
            "operation",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "ok",
            "errors",
            "vs PostgreSQL",
        ],
    );
    for result in results {
        let (p50, p99, max) = result
            .latency
            .map(|l| (ms(l.p50), ms(l.p99), ms(l.max)))
            .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
        let ratio = options
            .baseline
            .map(|b| b.for_phase(&result.name))
            .filter(|base| *base > 0.0)
            .map_or_else(
                || "-".to_string(),
                |base| format!("{:.2}", result.ops_per_sec() / base),
            );
        table.row(vec![
            result.name.clone(),
            format!("{:.1}", result.ops_per_sec()),
            p50,
            p99,
            max,
            result.ok.to_string(),
            result.errors.to_string(),
            ratio,
        ]);
    }
    if let Some(baseline) = options.baseline {
        table.note(format!(
            "vs PostgreSQL: Admin API ops/s divided by raw PostgreSQL ops/s at the same concurrency, \
             measured in this run: {:.0} single-row INSERT commits/s for POSTs, {:.0} primary-key SELECTs/s for GETs",
            baseline.writes_per_sec, baseline.reads_per_sec
        ));
    }
    for result in results {
        if let Some(err) = &result.first_error {
            table.note(format!("first error in {}: {err}", result.name));
        }
    }
    table
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test]
    async fn phase_counts_successes_and_errors_per_worker() {
        let calls = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&calls);
        let result = phase("t", Duration::from_millis(50), 3, move |worker, i| {
            counter.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                if worker == 0 && i % 2 == 1 {
                    Err(format!("odd {i}"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let total = calls.load(Ordering::Relaxed) as usize;
        assert_eq!(result.ok + result.errors, total);
        assert!(result.errors > 0 && result.ok > result.errors);
        assert_eq!(result.first_error.as_deref(), Some("odd 1"));
        assert!(result.elapsed >= Duration::from_millis(50));
        assert_eq!(result.latency.unwrap().count, result.ok);
    }

    #[test]
    fn pick_stays_in_bounds_and_spreads() {
        let names: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
        let picked: std::collections::BTreeSet<&String> =
            (0..100).filter_map(|i| pick(&names, 1, i)).collect();
        assert!(picked.len() > 5);
        assert_eq!(pick(&[], 0, 0), None);
    }

    #[test]
    fn report_compares_posts_with_writes_and_gets_with_reads() {
        let phase = |name: &str, ok| PhaseResult {
            name: name.into(),
            elapsed: Duration::from_secs(2),
            ok,
            errors: 0,
            latency: None,
            first_error: None,
        };
        let options = AdminOptions {
            duration: Duration::from_secs(2),
            concurrency: 4,
            run_id: "r".into(),
            baseline: Some(Baseline {
                writes_per_sec: 500.0,
                reads_per_sec: 4000.0,
            }),
        };
        let table = report(
            &[phase("POST /consumers", 500), phase("GET /services", 2000)],
            &options,
        );
        let ratios: Vec<&str> = table.rows().iter().map(|r| r[7].as_str()).collect();
        assert_eq!(ratios, ["0.50", "0.25"]);
        let without = AdminOptions {
            baseline: None,
            ..options
        };
        let table = report(&[phase("POST /consumers", 500)], &without);
        assert_eq!(table.rows()[0][7], "-");
    }
}
