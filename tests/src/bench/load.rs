//! Open-loop, fixed-rate HTTP load against a data plane's proxy, and the
//! "p99 while configs are pushed vs idle" comparison built on it.
//!
//! Latency is measured from each request's scheduled start, not from when it
//! was actually sent, so a stall delays every request queued behind it instead
//! of hiding them (no coordinated omission).

use super::client::{BenchError, HttpClient};
use super::cluster::{self, PushRound};
use super::config_io::{ConfigFile, Encoding};
use super::stats::{ms, rate, LatencySummary};
use super::table::Table;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};

#[derive(Debug, Clone)]
pub struct LoadResult {
    pub label: String,
    pub scheduled: usize,
    pub ok: usize,
    pub errors: usize,
    /// Requests not started because `max_in_flight` were already pending.
    pub dropped: usize,
    pub elapsed: Duration,
    pub latency: Option<LatencySummary>,
    pub first_error: Option<String>,
}

/// Sends `GET path` at `rate` requests per second until `until` completes,
/// with at most `max_in_flight` outstanding; any 2xx counts as success.
pub async fn fixed_rate(
    label: &str,
    client: &HttpClient,
    path: &str,
    rate_per_sec: u32,
    max_in_flight: usize,
    until: impl Future<Output = ()>,
) -> LoadResult {
    let period = Duration::from_secs_f64(1.0 / f64::from(rate_per_sec.max(1)));
    let start = Instant::now();
    let mut ticker = tokio::time::interval_at(start, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let (done, mut outcomes) = mpsc::unbounded_channel::<Result<Duration, String>>();
    let path: Arc<str> = Arc::from(path);
    let mut scheduled = 0usize;
    let mut dropped = 0usize;
    tokio::pin!(until);
    loop {
        tokio::select! {
            biased;
            () = &mut until => break,
            at = ticker.tick() => {
                scheduled += 1;
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    dropped += 1;
                    continue;
                };
                let (client, path, done) = (client.clone(), Arc::clone(&path), done.clone());
                tokio::spawn(async move {
                    let outcome = match client.get(&path).await {
                        Ok(reply) if reply.status.is_success() => Ok(at.elapsed()),
                        Ok(reply) => Err(format!("status {}", reply.status.as_u16())),
                        Err(err) => Err(err.to_string()),
                    };
                    drop(permit);
                    let _ = done.send(outcome);
                });
            }
        }
    }
    let elapsed = start.elapsed();
    drop(done);
    let mut latencies = Vec::with_capacity(scheduled);
    let mut errors = 0;
    let mut first_error = None;
    while let Some(outcome) = outcomes.recv().await {
        match outcome {
            Ok(latency) => latencies.push(latency),
            Err(err) => {
                errors += 1;
                first_error.get_or_insert(err);
            }
        }
    }
    LoadResult {
        label: label.to_string(),
        scheduled,
        ok: latencies.len(),
        errors,
        dropped,
        elapsed,
        latency: LatencySummary::from_samples(latencies),
        first_error,
    }
}

#[derive(Debug, Clone)]
pub struct PushLoadOptions {
    pub path: String,
    pub rate: u32,
    pub duration: Duration,
    pub max_in_flight: usize,
    pub dp_count: usize,
    pub encoding: Encoding,
    pub timeout: Duration,
    pub interval: Duration,
    /// Load before the first push and after the last acknowledgement.
    pub margin: Duration,
    /// Unreported load before the idle run (connections, caches).
    pub warmup: Duration,
}

#[derive(Debug, Clone)]
pub struct PushLoadResult {
    pub idle: LoadResult,
    pub pushing: LoadResult,
    pub pushes: Vec<PushRound>,
}

/// The same load twice: idle for `duration`, then while importing `files`
/// one after another (each waited for until every node acknowledged it); the
/// second run lasts at least `duration` and until `margin` after the last push.
pub async fn push_load(
    proxy: &HttpClient,
    admin: &HttpClient,
    files: &[ConfigFile],
    options: &PushLoadOptions,
) -> Result<PushLoadResult, BenchError> {
    if !options.warmup.is_zero() {
        fixed_rate(
            "warm-up",
            proxy,
            &options.path,
            options.rate,
            options.max_in_flight,
            tokio::time::sleep(options.warmup),
        )
        .await;
    }
    let idle = fixed_rate(
        "idle",
        proxy,
        &options.path,
        options.rate,
        options.max_in_flight,
        tokio::time::sleep(options.duration),
    )
    .await;

    let (finished, pushes_done) = oneshot::channel::<()>();
    let pusher = async {
        tokio::time::sleep(options.margin).await;
        let mut rounds = Vec::with_capacity(files.len());
        let mut outcome = Ok(());
        for file in files {
            match cluster::push(
                admin,
                file,
                options.encoding,
                options.dp_count,
                options.timeout,
                options.interval,
            )
            .await
            {
                Ok(round) => rounds.push(round),
                Err(err) => {
                    outcome = Err(err);
                    break;
                }
            }
        }
        let _ = finished.send(());
        outcome.map(|()| rounds)
    };
    let until = async {
        tokio::join!(tokio::time::sleep(options.duration), async {
            let _ = pushes_done.await;
            tokio::time::sleep(options.margin).await;
        });
    };
    let label = format!("pushing {} config(s)", files.len());
    let load = fixed_rate(
        &label,
        proxy,
        &options.path,
        options.rate,
        options.max_in_flight,
        until,
    );
    let (pushing, pushes) = tokio::join!(load, pusher);
    Ok(PushLoadResult {
        idle,
        pushing,
        pushes: pushes?,
    })
}

fn load_row(result: &LoadResult) -> Vec<String> {
    let (p50, p99, max) = result
        .latency
        .map(|l| (ms(l.p50), ms(l.p99), ms(l.max)))
        .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
    vec![
        result.label.clone(),
        format!("{:.1}", result.elapsed.as_secs_f64()),
        format!("{:.0}", rate(result.ok, result.elapsed)),
        p50,
        p99,
        max,
        result.ok.to_string(),
        (result.errors + result.dropped).to_string(),
    ]
}

fn load_table(title: &str, results: &[&LoadResult]) -> Table {
    let mut table = Table::new(
        title,
        &[
            "run", "seconds", "ok/s", "p50 ms", "p99 ms", "max ms", "ok", "errors",
        ],
    );
    for result in results {
        table.row(load_row(result));
        if let Some(err) = &result.first_error {
            table.note(format!("first error in {}: {err}", result.label));
        }
        if result.dropped > 0 {
            table.note(format!(
                "{}: {} requests not sent (in-flight limit reached), counted as errors",
                result.label, result.dropped
            ));
        }
    }
    table
}

pub fn load_report(result: &LoadResult, target: &str, rate_per_sec: u32) -> Table {
    load_table(
        &format!("Fixed-rate load: {rate_per_sec} req/s GET {target}"),
        &[result],
    )
}

/// p99 while pushing divided by p99 idle.
pub fn p99_ratio(result: &PushLoadResult) -> Option<f64> {
    let idle = result.idle.latency?.p99.as_secs_f64();
    let pushing = result.pushing.latency?.p99.as_secs_f64();
    (idle > 0.0).then(|| pushing / idle)
}

pub fn push_load_report(result: &PushLoadResult, target: &str, rate_per_sec: u32) -> Table {
    let mut table = load_table(
        &format!("Proxy latency during config pushes vs idle: {rate_per_sec} req/s GET {target}"),
        &[&result.idle, &result.pushing],
    );
    match p99_ratio(result) {
        Some(ratio) => table.note(format!("p99 ratio pushing/idle: {ratio:.2}")),
        None => table.note("p99 ratio pushing/idle: n/a (no successful requests)"),
    }
    for round in &result.pushes {
        table.note(format!(
            "push {} (v{}): POST /config {} ms, 201 → all DPs acked {} ms",
            round.file,
            round.version,
            ms(round.import.took),
            ms(round.propagate)
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::{body::Incoming, Request, Response};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A local server answering 200, or 503 for `/fail`; counts requests.
    async fn server() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let status = if req.uri().path() == "/fail" {
                            503
                        } else {
                            200
                        };
                        async move {
                            let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (format!("http://{addr}"), hits)
    }

    #[tokio::test]
    async fn sends_at_the_requested_rate_and_counts_outcomes() {
        let (base, hits) = server().await;
        let client = HttpClient::new(&base).unwrap();
        let result = fixed_rate(
            "ok",
            &client,
            "/",
            200,
            100,
            tokio::time::sleep(Duration::from_millis(500)),
        )
        .await;
        // 200/s for 0.5 s is 100 requests (one more for the tick at t = 0)
        assert!(
            (95..=102).contains(&result.scheduled),
            "scheduled {}",
            result.scheduled
        );
        assert_eq!(result.ok + result.errors + result.dropped, result.scheduled);
        assert_eq!(result.errors, 0);
        assert_eq!(hits.load(Ordering::Relaxed), result.ok);
        assert_eq!(result.latency.unwrap().count, result.ok);

        let failing = fixed_rate(
            "fail",
            &client,
            "/fail",
            100,
            100,
            tokio::time::sleep(Duration::from_millis(100)),
        )
        .await;
        assert_eq!(failing.ok, 0);
        assert!(failing.errors > 0);
        assert_eq!(failing.first_error.as_deref(), Some("status 503"));
        assert!(failing.latency.is_none());
    }

    #[test]
    fn ratio_of_p99s() {
        let summary = |p99_ms| LatencySummary {
            count: 1,
            p50: Duration::from_millis(1),
            p99: Duration::from_millis(p99_ms),
            max: Duration::from_millis(p99_ms),
            mean: Duration::from_millis(1),
        };
        let run = |p99_ms| LoadResult {
            label: String::new(),
            scheduled: 1,
            ok: 1,
            errors: 0,
            dropped: 0,
            elapsed: Duration::from_secs(1),
            latency: Some(summary(p99_ms)),
            first_error: None,
        };
        let result = PushLoadResult {
            idle: run(2),
            pushing: run(5),
            pushes: Vec::new(),
        };
        assert_eq!(p99_ratio(&result), Some(2.5));
    }

    #[tokio::test]
    async fn push_load_runs_idle_then_pushes_during_the_second_run() {
        use crate::bench::fake_cp::{self, FakeOptions};
        let (base, hits) = server().await;
        let cp = fake_cp::start(FakeOptions {
            data_planes: 2,
            ack_delay: Duration::from_millis(150),
            version_header: true,
        })
        .await
        .unwrap();
        let files: Vec<ConfigFile> = ["a.yaml", "b.yaml"]
            .iter()
            .map(|name| ConfigFile {
                name: (*name).into(),
                text: Bytes::from_static(b"_format_version: \"3.0\"\n"),
            })
            .collect();
        let options = PushLoadOptions {
            path: "/r0".into(),
            rate: 200,
            duration: Duration::from_millis(200),
            max_in_flight: 100,
            dp_count: 2,
            encoding: Encoding::Yaml,
            timeout: Duration::from_secs(5),
            interval: Duration::from_millis(1),
            margin: Duration::from_millis(50),
            warmup: Duration::from_millis(50),
        };
        let proxy = HttpClient::new(&base).unwrap();
        let admin = HttpClient::new(&cp.base).unwrap();
        let result = push_load(&proxy, &admin, &files, &options).await.unwrap();
        assert_eq!(cp.writes(), 2);
        assert_eq!(result.pushes.len(), 2);
        assert_eq!(
            result.pushes.iter().map(|p| p.version).collect::<Vec<_>>(),
            [2, 3]
        );
        // two pushes of ≥150 ms each, plus the margins: longer than `duration`
        assert!(
            result.pushing.elapsed >= Duration::from_millis(350),
            "{:?}",
            result.pushing.elapsed
        );
        assert!((result.idle.elapsed.as_millis() as i64 - 200).abs() < 100);
        assert!(result.idle.ok > 0 && result.pushing.ok > result.idle.ok);
        // the warm-up sends about 10 unreported requests (200/s for 50 ms)
        let reported = result.idle.ok + result.pushing.ok;
        let served = hits.load(Ordering::Relaxed);
        assert!(
            (reported + 8..=reported + 12).contains(&served),
            "{served} vs {reported}"
        );
        let table = push_load_report(&result, "x", 200).to_string();
        assert!(table.contains("p99 ratio pushing/idle"), "{table}");
    }
}
