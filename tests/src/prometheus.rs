//! A real Prometheus server for tests: the `prometheus` binary of the Debian
//! package (`tests/scripts/ensure-services.sh` installs it; `$PROMETHEUS`
//! names another binary) started on `127.0.0.1:0` with a config the test
//! writes, and the few HTTP API calls tests make of it: instant queries,
//! series and label values (Grafana's `label_values()`), scrape targets and
//! rule health. Killed when dropped, like the harness's other processes.

use crate::cluster::{wait_until, Process};
use crate::dataplane;
use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Prometheus binary: `$PROMETHEUS`, else `prometheus` on `PATH`, else
/// where the Debian package puts it; `None` when there is none.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PROMETHEUS") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let packaged = PathBuf::from("/usr/bin/prometheus");
        packaged.is_file().then_some(packaged)
    })
}

/// A running Prometheus server.
pub struct Prometheus {
    pub process: Process,
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Starts `binary` with `config` (its `rule_files` relative to the
    /// config's directory), storing its data in `data_dir`, and waits until
    /// it serves its API.
    pub async fn start(binary: &Path, config: &Path, data_dir: &Path) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data_dir.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--log.level=info");
        // Its web server logs the bound address: `msg="Listening on" address=…`.
        let (process, line) = Process::spawn("prometheus", command, "msg=\"Listening on\"")?;
        let addr = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("address="))
            .ok_or_else(|| anyhow!("no address in {line:?}"))?
            .parse()
            .with_context(|| format!("address in {line:?}"))?;
        let prometheus = Prometheus { process, addr };
        wait_until("Prometheus to be ready", || async {
            let reply = dataplane::get(prometheus.addr, "/-/ready").await?;
            Ok(reply.status.is_success().then_some(()))
        })
        .await
        .map_err(|error| anyhow!("{error}; its log:\n{}", prometheus.process.log()))?;
        Ok(prometheus)
    }

    /// `POST path` with a form body; the `data` of a successful answer.
    async fn api(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Value> {
        let body = form
            .iter()
            .map(|(key, value)| format!("{}={}", form_encode(key), form_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let request = Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))?;
        let reply = dataplane::send(self.addr, request).await?;
        let answer = reply.json();
        if answer["status"] != "success" {
            bail!("{path} {form:?}: {} {}", reply.status, reply.text());
        }
        Ok(answer["data"].clone())
    }

    /// An instant query now: the result vector (or an error naming the query).
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<Value>> {
        let data = self.api("/api/v1/query", &[("query", promql)]).await?;
        match data["resultType"].as_str() {
            Some("vector" | "matrix") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
            // A scalar or string is one value.
            Some(_) => Ok(vec![data["result"].clone()]),
            None => bail!("query {promql:?}: no result type in {data}"),
        }
    }

    /// The values of `label` over the series `selector` selects, sorted
    /// (Grafana's `label_values(selector, label)`).
    pub async fn label_values(&self, selector: &str, label: &str) -> anyhow::Result<Vec<String>> {
        let data = self.api("/api/v1/series", &[("match[]", selector)]).await?;
        let mut values: Vec<String> = data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|series| series[label].as_str().map(ToString::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }

    /// The active scrape targets (`/api/v1/targets`).
    pub async fn targets(&self) -> anyhow::Result<Vec<Value>> {
        let reply = dataplane::get(self.addr, "/api/v1/targets?state=active").await?;
        Ok(reply.json()["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Waits until Prometheus scraped every one of `expected` targets
    /// successfully (its own `up`, through the targets API).
    pub async fn wait_for_targets_up(&self, expected: usize) -> anyhow::Result<()> {
        wait_until(&format!("{expected} scrape targets up"), || async {
            let targets = self.targets().await?;
            let up = targets.iter().filter(|t| t["health"] == "up").count();
            Ok((targets.len() == expected && up == expected).then_some(()))
        })
        .await
        .map_err(|error| anyhow!("{error}; Prometheus's log:\n{}", self.process.log()))
    }

    /// Every loaded rule (`/api/v1/rules`), flattened over groups.
    pub async fn rules(&self) -> anyhow::Result<Vec<Value>> {
        let reply = dataplane::get(self.addr, "/api/v1/rules").await?;
        Ok(reply.json()["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect())
    }
}

/// `application/x-www-form-urlencoded` encoding of one key or value.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
