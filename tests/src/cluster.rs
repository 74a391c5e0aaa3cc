//! The cluster harness: real `tollgate-cp` and `tollgate-dp` processes (built
//! by `cargo build --bins`, which `make test` runs first) on `127.0.0.1:0`,
//! cluster certificates from `tollgate-cp cert`, a fresh PostgreSQL database
//! per test, and Admin API helpers that wait on what the control plane reports.
//!
//! Processes announce their bound addresses in their start-up log line; the
//! harness reads them from there, keeps every log for failure messages, and
//! kills what it started when dropped.

use crate::dataplane::{self, Reply};
use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use sqlx::Connection as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a harness wait may take before the test fails (debug builds on a
/// loaded 2-core machine are slow; passing tests never wait this long).
pub const WAIT: Duration = Duration::from_secs(60);

/// A workspace binary next to the running test's `deps/` directory.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| anyhow!("cannot locate the target directory from {}", exe.display()))?;
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: run `cargo build --bins` (make test does) first",
            path.display()
        );
    }
    Ok(path)
}

/// Cluster certificates made by `tollgate-cp cert init` / `cert issue`.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn init(dir: &Path) -> anyhow::Result<Pki> {
        run_cp_cert(&["init", "--out", &dir.display().to_string()])?;
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    /// A further data plane certificate `NAME.crt`/`NAME.key`.
    pub fn issue(&self, name: &str) -> anyhow::Result<()> {
        let dir = self.dir.display().to_string();
        run_cp_cert(&["issue", "--ca-dir", &dir, "--name", name, "--out", &dir])
    }

    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn run_cp_cert(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(binary("tollgate-cp")?)
        .arg("cert")
        .args(args)
        .output()?;
    if !output.status.success() {
        bail!(
            "tollgate-cp cert {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A child process whose stderr is collected; killed when dropped.
pub struct Process {
    name: String,
    child: Child,
    log: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
}

impl Process {
    /// Spawns `command` and waits for a log line containing `marker`.
    pub fn spawn(
        name: &str,
        mut command: Command,
        marker: &str,
    ) -> anyhow::Result<(Process, String)> {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1")
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("{name}: no stderr pipe"))?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
                if tx.send(line).is_err() {
                    // Nobody waits on lines any more; keep draining into the log.
                }
            }
        });
        let mut process = Process {
            name: name.to_string(),
            child,
            log,
            lines,
        };
        let line = process.wait_for_line(marker)?;
        Ok((process, line))
    }

    /// Waits until the process logs a line containing `marker` (lines logged
    /// since the previous wait count).
    pub fn wait_for_line(&mut self, marker: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(marker) => return Ok(line),
                Ok(_) => {}
                Err(_) => bail!(
                    "{} did not log {marker:?} (exit status {:?}); its log:\n{}",
                    self.name,
                    self.child.try_wait().ok().flatten(),
                    self.log()
                ),
            }
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGKILL and reap: no graceful shutdown, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `key=value` from a tracing log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

fn addr_field(line: &str, key: &str) -> anyhow::Result<SocketAddr> {
    let text = field(line, key)
        .ok_or_else(|| anyhow!("no {key}= in log line {line:?}"))?
        .trim_matches(|c| c == '[' || c == ']' || c == ',');
    text.parse()
        .with_context(|| format!("{key}={text} is not an address"))
}

/// A running `tollgate-cp serve`.
pub struct ControlPlaneProcess {
    pub process: Process,
    pub admin: SocketAddr,
    pub cluster: SocketAddr,
}

impl ControlPlaneProcess {
    /// Serves `database_url` with the cluster listener on `cluster_listen`
    /// (`127.0.0.1:0` for any port).
    pub fn start(database_url: &str, pki: &Pki, cluster_listen: &str) -> anyhow::Result<Self> {
        let mut command = Command::new(binary("tollgate-cp")?);
        command
            .args(["serve", "--database-url", database_url])
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(["--cluster-listen", cluster_listen])
            .args(["--cluster-ca", &pki.file("ca.crt")])
            .args(["--cluster-cert", &pki.file("cp.crt")])
            .args(["--cluster-key", &pki.file("cp.key")])
            .args(["--log-level", "info"]);
        let (process, line) = Process::spawn("tollgate-cp", command, "serving the Admin API")?;
        Ok(Self {
            admin: addr_field(&line, "admin")?,
            cluster: addr_field(&line, "cluster")?,
            process,
        })
    }
}

/// A running `tollgate-dp serve` connected to a control plane.
pub struct DataPlaneProcess {
    pub process: Process,
    pub proxy: SocketAddr,
    pub status: SocketAddr,
    pub node_id: String,
}

/// What a data plane process is started with.
#[derive(Debug, Clone)]
pub struct DataPlaneOptions {
    pub control_plane: SocketAddr,
    /// The certificate's file stem in the PKI directory (`dp`, or a name given to [`Pki::issue`]).
    pub certificate: String,
    pub cache_dir: PathBuf,
    pub node_id: String,
}

impl DataPlaneOptions {
    /// One data plane following `control_plane`: certificate `dp`, its cache
    /// in `<dir>/dp-cache`, a fresh node id.
    pub fn new(control_plane: SocketAddr, dir: &Path) -> DataPlaneOptions {
        DataPlaneOptions {
            control_plane,
            certificate: "dp".into(),
            cache_dir: dir.join("dp-cache"),
            node_id: uuid::Uuid::new_v4().to_string(),
        }
    }
}

impl DataPlaneProcess {
    pub fn start(pki: &Pki, options: &DataPlaneOptions) -> anyhow::Result<Self> {
        Self::start_with_args(pki, options, &[])
    }

    /// [`DataPlaneProcess::start`] with further `tollgate-dp serve` flags
    /// (e.g. `--metrics-prefix kong`).
    pub fn start_with_args(
        pki: &Pki,
        options: &DataPlaneOptions,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(binary("tollgate-dp")?);
        command
            .args(["serve", "--control-plane"])
            .arg(format!("https://{}", options.control_plane))
            .args(["--cluster-ca", &pki.file("ca.crt")])
            .args([
                "--cluster-cert",
                &pki.file(&format!("{}.crt", options.certificate)),
            ])
            .args([
                "--cluster-key",
                &pki.file(&format!("{}.key", options.certificate)),
            ])
            .args(["--proxy-listen", "127.0.0.1:0"])
            .args(["--status-listen", "127.0.0.1:0"])
            .arg("--cache-dir")
            .arg(&options.cache_dir)
            .args(["--node-id", &options.node_id])
            .args(["--workers", "1"])
            .args(extra)
            .env("RUST_LOG", "info");
        let (process, line) = Process::spawn("tollgate-dp", command, "data plane listening")?;
        Ok(Self {
            proxy: addr_field(&line, "proxy_addrs")?,
            status: addr_field(&line, "status_addr")?,
            node_id: options.node_id.clone(),
            process,
        })
    }
}

/// The seed guide's first steps on real processes: a control plane on a
/// fresh database, one data plane following it (cache and certificates under
/// the caller's directory), service `my-api` at an upstream and its route
/// `api` on `/api`. Fields drop in order: data plane, control plane, database.
pub struct SeedCluster {
    pub dp: DataPlaneProcess,
    pub cp: ControlPlaneProcess,
    pub db: TestDatabase,
    pub pki: Pki,
}

impl SeedCluster {
    pub async fn start(dir: &Path, upstream: SocketAddr) -> anyhow::Result<SeedCluster> {
        let cluster = SeedCluster::empty(dir).await?;
        let service = serde_json::json!({ "name": "my-api", "url": format!("http://{upstream}") });
        admin_write(cluster.cp.admin, "POST", "/services", service).await?;
        let route = serde_json::json!({ "name": "api", "paths": ["/api"] });
        admin_write(cluster.cp.admin, "POST", "/services/my-api/routes", route).await?;
        Ok(cluster)
    }

    /// The same processes without the seed's service and route.
    pub async fn empty(dir: &Path) -> anyhow::Result<SeedCluster> {
        let pki = Pki::init(&dir.join("pki"))?;
        let db = TestDatabase::create().await?;
        let cp = ControlPlaneProcess::start(&db.url, &pki, "127.0.0.1:0")?;
        let dp = DataPlaneProcess::start(&pki, &DataPlaneOptions::new(cp.cluster, dir))?;
        Ok(SeedCluster { dp, cp, db, pki })
    }
}

/// A fresh PostgreSQL database, dropped with this value.
pub struct TestDatabase {
    pub url: String,
    server: String,
    name: String,
}

/// The PostgreSQL server tests use (`DATABASE_URL`, as `make test` exports it).
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, name: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}", &base[..host_end])
}

impl TestDatabase {
    pub async fn create() -> anyhow::Result<TestDatabase> {
        let server = server_url();
        let name = format!("tollgate_e2e_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&server)
            .await
            .context("connect to PostgreSQL (DATABASE_URL)")?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        let _ = conn.close().await;
        Ok(TestDatabase {
            url: with_database(&server, &name),
            server,
            name,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop may run inside a runtime: use a private one on its own thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&server).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// Sends an Admin API request with an optional JSON body.
pub async fn admin(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Reply> {
    let mut request = Request::builder().method(method).uri(path);
    let body = match body {
        Some(json) => {
            request = request.header("content-type", "application/json");
            Bytes::from(json.to_string())
        }
        None => Bytes::new(),
    };
    dataplane::send(admin, request.body(Full::new(body))?).await
}

/// Sends a write and returns the config version it committed.
pub async fn admin_write(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<u64> {
    let reply = admin(addr, method, path, Some(body)).await?;
    if !reply.status.is_success() {
        bail!("{method} {path}: {} {}", reply.status, reply.text());
    }
    reply
        .header("x-tollgate-config-version")
        .parse()
        .with_context(|| format!("{method} {path}: no X-Tollgate-Config-Version"))
}

/// The `data` array of `GET /clustering/data-planes`.
pub async fn data_planes(addr: SocketAddr) -> anyhow::Result<Vec<Value>> {
    let reply = admin(addr, "GET", "/clustering/data-planes", None).await?;
    if reply.status != http::StatusCode::OK {
        bail!(
            "GET /clustering/data-planes: {} {}",
            reply.status,
            reply.text()
        );
    }
    Ok(reply.json()["data"].as_array().cloned().unwrap_or_default())
}

/// Polls `check` until it returns `Some` or [`WAIT`] passes; `what` names the
/// condition in the failure.
pub async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + WAIT;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what} (last error: {last_error:?})");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the node `node_id` listed by the control plane at `addr`
/// satisfies `accept`, and returns its entry.
pub async fn wait_for_node(
    addr: SocketAddr,
    node_id: &str,
    what: &str,
    accept: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    wait_until(what, || async {
        let nodes = data_planes(addr).await?;
        Ok(nodes.into_iter().find(|n| n["id"] == node_id && accept(n)))
    })
    .await
}

/// Waits until `node_id` reports `config_version >= version` and `in_sync`.
pub async fn wait_in_sync(addr: SocketAddr, node_id: &str, version: u64) -> anyhow::Result<Value> {
    wait_for_node(
        addr,
        node_id,
        &format!("data plane {node_id} to ack version {version}"),
        |n| n["config_version"].as_u64() >= Some(version) && n["sync_status"] == "in_sync",
    )
    .await
}
