//! Declarative import and export through the Admin API: `POST /config` of a
//! file (raw YAML or `{"config": text}`), `GET /config`, timed per round.

use super::client::{BenchError, HttpClient, Payload};
use super::stats::{median, ms};
use super::table::Table;
use bytes::Bytes;
use serde_json::json;
use std::time::{Duration, Instant};

/// How `POST /config` carries the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// Raw body, `Content-Type: application/yaml`.
    Yaml,
    /// `{"config": "<file text>"}`, `Content-Type: application/json`.
    Json,
}

/// A declarative file read into memory.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub name: String,
    pub text: Bytes,
}

impl ConfigFile {
    pub fn read(path: &str) -> Result<Self, BenchError> {
        let text = std::fs::read(path).map_err(|source| BenchError::File {
            path: path.to_string(),
            source,
        })?;
        let name = std::path::Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.to_string());
        Ok(Self {
            name,
            text: Bytes::from(text),
        })
    }

    fn payload(&self, encoding: Encoding) -> Payload {
        match encoding {
            Encoding::Yaml => Payload::yaml(self.text.clone()),
            Encoding::Json => Payload::json(&json!({
                "config": String::from_utf8_lossy(&self.text),
            })),
        }
    }
}

/// A completed `POST /config`.
#[derive(Debug, Clone, Copy)]
pub struct Imported {
    /// From sending the request to the whole 201 response.
    pub took: Duration,
    /// `X-Tollgate-Config-Version` of the 201, when the server sent it.
    pub version: Option<u64>,
    /// Wall clock (unix µs) when the 201 had been read.
    pub answered_at_us: i64,
}

/// Imports `file`; anything but 201 is an error.
pub async fn import(
    client: &HttpClient,
    file: &ConfigFile,
    encoding: Encoding,
) -> Result<Imported, BenchError> {
    let payload = file.payload(encoding);
    let started = Instant::now();
    let reply = client.post("/config", payload).await?;
    let took = started.elapsed();
    let answered_at_us = super::cluster::unix_micros();
    let reply = reply.expect(201, &format!("POST /config ({})", file.name))?;
    Ok(Imported {
        took,
        version: reply.config_version(),
        answered_at_us,
    })
}

/// A completed `GET /config`.
#[derive(Debug, Clone)]
pub struct Exported {
    pub took: Duration,
    /// Length of the declarative text in `{"config": …}`.
    pub config_bytes: usize,
    /// Length of the whole response body.
    pub body_bytes: usize,
    pub text: String,
}

pub async fn export(client: &HttpClient) -> Result<Exported, BenchError> {
    let started = Instant::now();
    let reply = client.get("/config").await?;
    let took = started.elapsed();
    let reply = reply.expect(200, "GET /config")?;
    let value = reply.json("GET /config")?;
    let text = value
        .get("config")
        .and_then(|c| c.as_str())
        .ok_or_else(|| BenchError::Protocol("GET /config: no \"config\" string".into()))?
        .to_string();
    Ok(Exported {
        took,
        config_bytes: text.len(),
        body_bytes: reply.body.len(),
        text,
    })
}

#[derive(Debug, Clone)]
pub struct Round {
    pub file: String,
    pub import: Imported,
    pub export: Exported,
}

/// `rounds` rounds of import-then-export, cycling through `files` (so with
/// two different files every import is a real change).
pub async fn run(
    client: &HttpClient,
    files: &[ConfigFile],
    rounds: usize,
    encoding: Encoding,
) -> Result<Vec<Round>, BenchError> {
    let mut out = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let Some(file) = files.get(round % files.len().max(1)) else {
            return Err(BenchError::Protocol("no file to import".into()));
        };
        let import = import(client, file, encoding).await?;
        let mut export = export(client).await?;
        export.text.clear();
        out.push(Round {
            file: file.name.clone(),
            import,
            export,
        });
    }
    Ok(out)
}

pub fn report(rounds: &[Round], files: &[ConfigFile], encoding: Encoding) -> Table {
    let sizes: Vec<String> = files
        .iter()
        .map(|f| format!("{} = {} bytes", f.name, f.text.len()))
        .collect();
    let mut table = Table::new(
        &format!(
            "Declarative import/export ({:?} body; {})",
            encoding,
            sizes.join(", ")
        ),
        &[
            "round",
            "file",
            "POST /config ms",
            "GET /config ms",
            "exported bytes",
            "version",
        ],
    )
    .left_columns(2);
    for (i, round) in rounds.iter().enumerate() {
        table.row(vec![
            (i + 1).to_string(),
            round.file.clone(),
            ms(round.import.took),
            ms(round.export.took),
            round.export.config_bytes.to_string(),
            round
                .import
                .version
                .map_or_else(|| "-".into(), |v| v.to_string()),
        ]);
    }
    let imports: Vec<Duration> = rounds.iter().map(|r| r.import.took).collect();
    let exports: Vec<Duration> = rounds.iter().map(|r| r.export.took).collect();
    table.row(vec![
        "median".into(),
        String::new(),
        median(&imports).map_or_else(|| "-".into(), ms),
        median(&exports).map_or_else(|| "-".into(), ms),
        String::new(),
        String::new(),
    ]);
    if let Some(first) = rounds.first() {
        if rounds.len() > 1 && files.len() == 1 {
            table.note(format!(
                "round 1 loads {} into the database; later rounds re-import the same content",
                first.file
            ));
        }
    }
    table
}
