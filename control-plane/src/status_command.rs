//! `tollgate-cp status`: the cluster as a table (node, version applied, sync
//! status, lag, last error), read from a running control plane's Admin API
//! (`GET /clustering/data-planes`), so it works from any host that can reach
//! the Admin API.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// How long the Admin API may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the table could not be printed; one line each.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("--admin-url {0}: expected http://HOST:PORT")]
    Url(String),
    #[error("--admin-token-file {path}: {reason}")]
    Token { path: String, reason: String },
    #[error("cannot reach the Admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the Admin API at {url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
}

/// Fetches `/clustering/data-planes` from `admin_url` and renders the table.
pub async fn run(admin_url: &str, token_file: Option<&Path>) -> Result<String, StatusError> {
    let base = admin_url.trim_end_matches('/');
    if !base.starts_with("http://") {
        return Err(StatusError::Url(admin_url.to_string()));
    }
    let uri: http::Uri = format!("{base}/clustering/data-planes")
        .parse()
        .map_err(|_| StatusError::Url(admin_url.to_string()))?;
    let mut request = http::Request::get(uri);
    if let Some(path) = token_file {
        let token = crate::settings::read_admin_tokens(path)
            .map_err(|e| StatusError::Token {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?
            .into_iter()
            .next()
            .map(|t| String::from_utf8_lossy(&t.secret).into_owned())
            .unwrap_or_default();
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|_| StatusError::Url(admin_url.to_string()))?;
    let unreachable = |reason: String| StatusError::Unreachable {
        url: base.to_string(),
        reason,
    };
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(TIMEOUT, client.request(request))
        .await
        .map_err(|_| unreachable(format!("no answer within {TIMEOUT:?}")))?
        .map_err(|e| unreachable(connect_reason(&e)))?;
    let status = response.status();
    let body = tokio::time::timeout(TIMEOUT, response.into_body().collect())
        .await
        .map_err(|_| unreachable(format!("no answer within {TIMEOUT:?}")))?
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(StatusError::Refused {
            url: base.to_string(),
            status: status.as_u16(),
            message: json["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
        });
    }
    Ok(render(&json))
}

fn connect_reason(error: &hyper_util::client::legacy::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    "connection refused (is tollgate-cp serve running, and is this its --admin-listen?)".into()
                }
                _ => io.to_string(),
            };
        }
        source = cause.source();
    }
    error.to_string()
}

fn lag(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

/// The table for a `/clustering/data-planes` body.
pub fn render(body: &Value) -> String {
    let published = &body["published"];
    let mut out = match published["config_version"].as_u64() {
        Some(version) => format!(
            "published config version {version} (hash {})\n",
            published["config_hash"]
                .as_str()
                .map(|h| &h[..h.len().min(12)])
                .unwrap_or("-")
        ),
        None => "no config published yet\n".to_string(),
    };
    if let Some(error) = published["last_error"].as_str() {
        out.push_str(&format!("newest config not pushed: {error}\n"));
    }
    let nodes = body["data"].as_array().cloned().unwrap_or_default();
    if nodes.is_empty() {
        out.push_str("no data plane has connected\n");
        return out;
    }
    let mut rows = vec![[
        "NODE".to_string(),
        "HOSTNAME".into(),
        "VERSION".into(),
        "STATUS".into(),
        "LAG".into(),
        "LAST ERROR".into(),
    ]];
    for node in &nodes {
        rows.push([
            node["id"].as_str().unwrap_or("-").to_string(),
            node["hostname"].as_str().unwrap_or("-").to_string(),
            node["config_version"]
                .as_u64()
                .map_or("-".into(), |v| v.to_string()),
            node["sync_status"].as_str().unwrap_or("-").to_string(),
            lag(node["lag_ms"].as_i64()),
            node["last_error"]
                .as_str()
                .map(|e| e.replace('\n', " "))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|column| {
            rows.iter()
                .map(|r| r[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            match widths.get(column) {
                Some(width) => line.push_str(&format!("{cell:<width$}  ")),
                None => line.push_str(cell),
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_table_has_a_row_per_node_and_aligned_columns() {
        let body = serde_json::json!({
            "published": {"config_version": 7, "config_hash": "0123456789abcdef0123", "last_error": null},
            "data": [
                {"id": "a", "hostname": "dp-1", "config_version": 7, "sync_status": "in_sync", "lag_ms": 12, "last_error": null},
                {"id": "bb", "hostname": "dp-22", "config_version": 6, "sync_status": "rejected", "lag_ms": 2500, "last_error": "route r: bad regex"},
            ],
        });
        let table = render(&body);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "published config version 7 (hash 0123456789ab)");
        assert!(
            lines[1].starts_with("NODE  HOSTNAME  VERSION  STATUS    LAG    LAST ERROR"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("a     dp-1      7        in_sync   12 ms  -"),
            "{table}"
        );
        assert!(lines[3].ends_with("2.5 s  route r: bad regex"), "{table}");
    }
}
