//! `tollgate-bench`: benchmark client for Tollgate (Admin API throughput,
//! declarative import/export, config propagation, proxy load during pushes).
//! Prints markdown tables on stdout; progress and errors go to stderr.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;
use tollgate_tests::bench::cluster::{self, PropagationOptions, WriteKind};
use tollgate_tests::bench::config_gen::{self, GenOptions};
use tollgate_tests::bench::config_io::{self, ConfigFile, Encoding};
use tollgate_tests::bench::load::{self, PushLoadOptions};
use tollgate_tests::bench::{admin, snapshot, HttpClient};

#[derive(Parser)]
#[command(
    name = "tollgate-bench",
    about = "Benchmarks for Tollgate; prints markdown tables"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Admin API writes/s and reads/s (closed loop, fixed time per phase)
    Admin {
        /// Admin API base URL
        #[arg(long)]
        admin: String,
        /// Seconds per phase
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Concurrent client tasks
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Same-run baseline: raw PostgreSQL INSERT commits/s (adds a ratio column)
        #[arg(long, requires = "baseline_reads")]
        baseline_writes: Option<f64>,
        /// Same-run baseline: raw PostgreSQL primary-key SELECTs/s
        #[arg(long, requires = "baseline_writes")]
        baseline_reads: Option<f64>,
    },
    /// Write a Kong declarative YAML with N services/routes and N jwt consumers
    ConfigGen {
        #[arg(long)]
        routes: usize,
        #[arg(long)]
        consumers: usize,
        #[arg(long)]
        out: String,
        /// URL every service points to
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        upstream: String,
        /// Distinct route hosts h1..hK.bench.test (one route in K+1 has none)
        #[arg(long, default_value_t = 4)]
        hosts: usize,
        /// Non-zero: tag every service `variant-V` (same shape, different content)
        #[arg(long, default_value_t = 0)]
        variant: u32,
    },
    /// Time POST /config imports and GET /config exports
    ConfigIo {
        #[arg(long)]
        admin: String,
        /// Declarative file; repeat to cycle through several (each round a real change)
        #[arg(long = "file", required = true)]
        files: Vec<String>,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, value_enum, default_value_t = Encoding::Yaml)]
        encoding: Encoding,
    },
    /// Admin write → every data plane acked, over W sequential writes
    Propagation {
        #[arg(long)]
        admin: String,
        /// Data planes that must be connected and acknowledge each write
        #[arg(long)]
        dp_count: usize,
        #[arg(long, default_value_t = 200)]
        writes: usize,
        #[arg(long, value_enum, default_value_t = WriteKind::Route)]
        kind: WriteKind,
        /// Milliseconds between polls of /clustering/data-planes. Latency is
        /// taken from the CP's Ack times, so polling only detects completion:
        /// a tighter poll would mostly load the control plane being measured.
        #[arg(long, default_value_t = 10)]
        poll_ms: u64,
        /// Seconds to wait for each write before giving up
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
    /// POST /config → 201 → every data plane acked, per round
    Push {
        #[arg(long)]
        admin: String,
        #[arg(long = "file", required = true)]
        files: Vec<String>,
        #[arg(long)]
        dp_count: usize,
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        #[arg(long, value_enum, default_value_t = Encoding::Yaml)]
        encoding: Encoding,
        #[arg(long, default_value_t = 50)]
        poll_ms: u64,
        #[arg(long, default_value_t = 300.0)]
        timeout: f64,
    },
    /// Fixed-rate GET load against a URL (open loop)
    Load {
        /// Full URL, e.g. http://127.0.0.1:8000/r0
        #[arg(long)]
        url: String,
        /// Host header to send instead of the URL's
        #[arg(long)]
        host: Option<String>,
        #[arg(long, default_value_t = 2000)]
        rate: u32,
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        #[arg(long, default_value_t = 1000)]
        max_in_flight: usize,
        /// Seconds of unreported load first
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
    /// Proxy p99 idle vs while importing configs (each waited for on every DP)
    PushLoad {
        /// Proxy base URL, e.g. http://127.0.0.1:8000
        #[arg(long)]
        proxy: String,
        /// Path to request on the proxy
        #[arg(long, default_value = "/r0")]
        path: String,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        admin: String,
        /// Files imported one after another during the second run
        #[arg(long = "file", required = true)]
        files: Vec<String>,
        #[arg(long)]
        dp_count: usize,
        #[arg(long, default_value_t = 2000)]
        rate: u32,
        /// Seconds of the idle run (and the minimum of the pushing run)
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        #[arg(long, default_value_t = 1000)]
        max_in_flight: usize,
        /// Seconds of unreported load before the idle run
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        #[arg(long, value_enum, default_value_t = Encoding::Yaml)]
        encoding: Encoding,
        #[arg(long, default_value_t = 50)]
        poll_ms: u64,
        #[arg(long, default_value_t = 300.0)]
        timeout: f64,
    },
    /// Size of declarative configs, raw and gzip-compressed
    SnapshotSize {
        #[arg(long = "file")]
        files: Vec<String>,
        /// Also measure the Admin API's GET /config export
        #[arg(long)]
        admin: Option<String>,
    },
    /// Wait until every URL answers the expected status
    WaitHttp {
        #[arg(long = "url", required = true)]
        urls: Vec<String>,
        #[arg(long, default_value_t = 200)]
        status: u16,
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
}

fn seconds(value: f64, name: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("--{name} must be a number of seconds ≥ 0"))
}

fn read_files(paths: &[String]) -> Result<Vec<ConfigFile>> {
    paths
        .iter()
        .map(|p| ConfigFile::read(p).with_context(|| format!("reading {p}")))
        .collect()
}

/// Splits `http://host:port/path?q` into (`http://host:port`, `/path?q`).
fn split_url(url: &str) -> Result<(String, String)> {
    let uri: http::Uri = url.parse().with_context(|| format!("invalid URL {url}"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        bail!("expected an absolute URL, got {url}");
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Ok((format!("{scheme}://{authority}"), path))
}

fn proxy_client(base: &str, host: Option<&str>) -> Result<HttpClient> {
    let client = HttpClient::new(base)?.with_timeout(Duration::from_secs(30));
    Ok(match host {
        Some(host) => client.with_host(host)?,
        None => client,
    })
}

fn run_id() -> String {
    format!("{:x}", cluster::unix_micros())
}

async fn wait_http(urls: &[String], status: u16, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    for url in urls {
        let (base, path) = split_url(url)?;
        let client = HttpClient::new(&base)?.with_timeout(Duration::from_secs(5));
        loop {
            let last = match client.get(&path).await {
                Ok(reply) if reply.status.as_u16() == status => break,
                Ok(reply) => format!("status {}", reply.status.as_u16()),
                Err(err) => err.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                bail!("{url} did not answer {status} within {timeout:?} (last: {last})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Admin {
            admin: url,
            duration,
            concurrency,
            baseline_writes,
            baseline_reads,
        } => {
            let client = HttpClient::new(&url)?.with_timeout(Duration::from_secs(30));
            let baseline =
                baseline_writes
                    .zip(baseline_reads)
                    .map(|(writes, reads)| admin::Baseline {
                        writes_per_sec: writes,
                        reads_per_sec: reads,
                    });
            let options = admin::AdminOptions {
                duration: seconds(duration, "duration")?,
                concurrency,
                run_id: run_id(),
                baseline,
            };
            let results = admin::run(&client, &options).await;
            println!("{}", admin::report(&results, &options));
            if results.iter().all(|r| r.ok == 0) {
                bail!("no Admin API request succeeded");
            }
        }
        Command::ConfigGen {
            routes,
            consumers,
            out,
            upstream,
            hosts,
            variant,
        } => {
            let text = config_gen::generate(&GenOptions {
                routes,
                consumers,
                upstream,
                hosts,
                variant,
            });
            std::fs::write(&out, &text).with_context(|| format!("writing {out}"))?;
            eprintln!(
                "wrote {out}: {routes} services/routes, {consumers} consumers, {} bytes",
                text.len()
            );
        }
        Command::ConfigIo {
            admin: url,
            files,
            rounds,
            encoding,
        } => {
            let client = HttpClient::new(&url)?;
            let files = read_files(&files)?;
            let results = config_io::run(&client, &files, rounds, encoding).await?;
            println!("{}", config_io::report(&results, &files, encoding));
        }
        Command::Propagation {
            admin: url,
            dp_count,
            writes,
            kind,
            poll_ms,
            timeout,
        } => {
            let client = HttpClient::new(&url)?.with_timeout(Duration::from_secs(30));
            let options = PropagationOptions {
                dp_count,
                writes,
                kind,
                timeout: seconds(timeout, "timeout")?,
                interval: Duration::from_millis(poll_ms),
                run_id: run_id(),
            };
            let result = cluster::propagation(&client, &options).await?;
            println!("{}", cluster::propagation_report(&result, &options));
        }
        Command::Push {
            admin: url,
            files,
            dp_count,
            rounds,
            encoding,
            poll_ms,
            timeout,
        } => {
            let client = HttpClient::new(&url)?;
            let files = read_files(&files)?;
            let timeout = seconds(timeout, "timeout")?;
            cluster::wait_connected(&client, dp_count, timeout).await?;
            let mut results = Vec::with_capacity(rounds);
            for round in 0..rounds {
                let Some(file) = files.get(round % files.len()) else {
                    bail!("no file to push");
                };
                let interval = Duration::from_millis(poll_ms);
                results.push(
                    cluster::push(&client, file, encoding, dp_count, timeout, interval).await?,
                );
            }
            println!("{}", cluster::push_report(&results));
        }
        Command::Load {
            url,
            host,
            rate,
            duration,
            max_in_flight,
            warmup,
        } => {
            let (base, path) = split_url(&url)?;
            let client = proxy_client(&base, host.as_deref())?;
            let duration = seconds(duration, "duration")?;
            let warmup = seconds(warmup, "warmup")?;
            if !warmup.is_zero() {
                let until = tokio::time::sleep(warmup);
                load::fixed_rate("warm-up", &client, &path, rate, max_in_flight, until).await;
            }
            let result = load::fixed_rate(
                "load",
                &client,
                &path,
                rate,
                max_in_flight,
                tokio::time::sleep(duration),
            )
            .await;
            println!("{}", load::load_report(&result, &url, rate));
            if result.ok == 0 {
                bail!("no request succeeded");
            }
        }
        Command::PushLoad {
            proxy,
            path,
            host,
            admin: url,
            files,
            dp_count,
            rate,
            duration,
            max_in_flight,
            warmup,
            encoding,
            poll_ms,
            timeout,
        } => {
            let proxy_client = proxy_client(&proxy, host.as_deref())?;
            let admin_client = HttpClient::new(&url)?;
            let files = read_files(&files)?;
            let options = PushLoadOptions {
                path: path.clone(),
                rate,
                duration: seconds(duration, "duration")?,
                max_in_flight,
                dp_count,
                encoding,
                timeout: seconds(timeout, "timeout")?,
                interval: Duration::from_millis(poll_ms),
                margin: Duration::from_millis(500),
                warmup: seconds(warmup, "warmup")?,
            };
            let result = load::push_load(&proxy_client, &admin_client, &files, &options).await?;
            println!(
                "{}",
                load::push_load_report(&result, &format!("{proxy}{path}"), rate)
            );
        }
        Command::SnapshotSize { files, admin: url } => {
            let mut entries = Vec::new();
            for file in read_files(&files)? {
                let (raw, gzip) = snapshot::sizes(&file.text)?;
                entries.push((file.name, raw, gzip));
            }
            if let Some(url) = url {
                let export = config_io::export(&HttpClient::new(&url)?).await?;
                let (raw, gzip) = snapshot::sizes(export.text.as_bytes())?;
                entries.push(("GET /config export".to_string(), raw, gzip));
            }
            if entries.is_empty() {
                bail!("give --file and/or --admin");
            }
            println!("{}", snapshot::report(&entries));
        }
        Command::WaitHttp {
            urls,
            status,
            timeout,
        } => wait_http(&urls, status, seconds(timeout, "timeout")?).await?,
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tollgate-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
