//! Start-up settings of `tollgate-dp serve`: the command line, its environment
//! variables (`TOLLGATE_<FLAG>`) and the TOML file given by `--config`, merged
//! with flags over env over file, then checked into typed [`Settings`].

use crate::startup::LogFormat;
use clap::{Args, Parser, Subcommand};
use http::HeaderName;
use ipnet::IpNet;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use tollgate_shared::exposition::Naming;
use tollgate_shared::plugin::DEFAULT_MAX_SERIES;

/// A setting that could not be used; its `Display` is the one line printed before exiting.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid setting {setting}: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
    #[error("cannot read --config file {path}: {reason}")]
    ConfigFile { path: String, reason: String },
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        setting,
        reason: reason.into(),
    }
}

#[derive(Debug, Parser)]
#[command(name = "tollgate-dp", version, about = "Tollgate data plane")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Proxy traffic with the configuration from a control plane or a declarative file.
    Serve(Box<ServeArgs>),
}

/// The flags of `tollgate-dp serve`. Every one is optional here so that the
/// TOML file can fill what neither a flag nor the environment gave.
#[derive(Debug, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of these settings (keys as the flag names, `-` or `_`).
    #[arg(long, env = "TOLLGATE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Control plane cluster URL, e.g. https://cp.internal:8005. This or --config-file is required.
    #[arg(long, env = "TOLLGATE_CONTROL_PLANE", value_name = "URL")]
    pub control_plane: Option<String>,
    /// Cluster CA certificate (PEM) the control plane's certificate must chain to. Required with --control-plane.
    #[arg(long, env = "TOLLGATE_CLUSTER_CA", value_name = "PEM")]
    pub cluster_ca: Option<PathBuf>,
    /// This data plane's client certificate (PEM), issued by the cluster CA. Required with --control-plane.
    #[arg(long, env = "TOLLGATE_CLUSTER_CERT", value_name = "PEM")]
    pub cluster_cert: Option<PathBuf>,
    /// Private key (PEM) of --cluster-cert. Required with --control-plane.
    #[arg(long, env = "TOLLGATE_CLUSTER_KEY", value_name = "PEM")]
    pub cluster_key: Option<PathBuf>,
    /// Name the control plane's cluster certificate carries. Default tollgate-cp.
    #[arg(long, env = "TOLLGATE_CLUSTER_SERVER_NAME")]
    pub cluster_server_name: Option<String>,
    /// Plain HTTP listener (HTTP/1.1 and h2c); repeatable. Default 0.0.0.0:8000.
    #[arg(long, env = "TOLLGATE_PROXY_LISTEN", value_delimiter = ',')]
    #[serde(default)]
    pub proxy_listen: Vec<String>,
    /// TLS listener (HTTP/1.1 and HTTP/2 by ALPN); repeatable. Off by default.
    #[arg(long, env = "TOLLGATE_PROXY_TLS_LISTEN", value_delimiter = ',')]
    #[serde(default)]
    pub proxy_tls_listen: Vec<String>,
    /// Status listener (/status, /status/ready, /metrics). Default 127.0.0.1:8100.
    #[arg(long, env = "TOLLGATE_STATUS_LISTEN")]
    pub status_listen: Option<String>,
    /// Directory for the last good snapshot. Default /var/lib/tollgate.
    #[arg(long, env = "TOLLGATE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Peers whose forwarding headers are believed (addresses or CIDRs, comma separated).
    #[arg(long, env = "TOLLGATE_TRUSTED_IPS", value_delimiter = ',')]
    #[serde(default)]
    pub trusted_ips: Vec<String>,
    /// Header carrying the client address from a trusted peer. Default X-Real-IP.
    #[arg(long, env = "TOLLGATE_REAL_IP_HEADER")]
    pub real_ip_header: Option<String>,
    /// This node's id (a UUID) as the control plane lists it. Default: a UUID kept in --cache-dir.
    #[arg(long, env = "TOLLGATE_NODE_ID")]
    pub node_id: Option<String>,
    /// Proxy worker threads. Default: the number of CPUs.
    #[arg(long, env = "TOLLGATE_WORKERS")]
    pub workers: Option<usize>,
    /// Database-less mode: a Kong declarative YAML file, re-read on SIGHUP.
    #[arg(long, env = "TOLLGATE_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Default TLS certificate chain (PEM) for handshakes no configured SNI matches.
    #[arg(long, env = "TOLLGATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `--tls-cert`.
    #[arg(long, env = "TOLLGATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// How long in-flight requests may run after SIGTERM/SIGINT, in seconds. Default 10.
    #[arg(long, env = "TOLLGATE_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<u64>,
    /// Seconds a client connection may stay idle or take to send a request head. Default 60.
    #[arg(long, env = "TOLLGATE_CLIENT_HEADER_TIMEOUT")]
    pub client_header_timeout: Option<u64>,
    /// Log filter: a level (error, warn, info, debug, trace) or a tracing filter. Default: RUST_LOG, else info.
    #[arg(long, env = "TOLLGATE_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log format: text or json (one object per line). Default text.
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Seconds a request body may send nothing before the request is answered 408. Default 60.
    #[arg(long, env = "TOLLGATE_CLIENT_BODY_TIMEOUT")]
    pub client_body_timeout: Option<u64>,
    /// Largest request body (bytes, or with k/m/g), 413 above it; 0 is unlimited. Default 0 (as Kong).
    #[arg(long, env = "TOLLGATE_CLIENT_MAX_BODY_SIZE")]
    pub client_max_body_size: Option<ByteSize>,
    /// Buffered request bodies up to this size stay in memory, larger ones go to a
    /// temporary file. Default 16k.
    #[arg(long, env = "TOLLGATE_CLIENT_BODY_BUFFER_SIZE")]
    pub client_body_buffer_size: Option<ByteSize>,
    /// Directory of the temporary files of large buffered request bodies. Default: the system's.
    #[arg(long, env = "TOLLGATE_CLIENT_BODY_TEMP_DIR")]
    pub client_body_temp_dir: Option<PathBuf>,
    /// Most simultaneous proxy connections from one client address (`--trusted-ips` peers
    /// exempt); 0 is unlimited. Default 0.
    #[arg(long, env = "TOLLGATE_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Prefix of every metric name on /metrics. Default tollgate; `kong` gives Kong's exact
    /// metric names and types (Kong's Grafana dashboard 7424 works unchanged).
    #[arg(long, env = "TOLLGATE_METRICS_PREFIX")]
    pub metrics_prefix: Option<String>,
    /// Most series per metric of the prometheus plugin; samples of further series are
    /// dropped and counted. Default 10000.
    #[arg(long, env = "TOLLGATE_METRICS_MAX_SERIES")]
    pub metrics_max_series: Option<usize>,
}

/// A size in bytes, written as a number with an optional `k`, `m` or `g`
/// (powers of 1024, as nginx), from a flag, a variable or the TOML file
/// (where a plain integer works too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (digits, unit) = match text.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
            _ => (text, 'b'),
        };
        let multiplier: u64 = match unit {
            'b' => 1,
            'k' => 1 << 10,
            'm' => 1 << 20,
            'g' => 1 << 30,
            _ => return Err(format!("'{text}' is not a size like 512k, 10m or 1048576")),
        };
        digits
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .map(ByteSize)
            .ok_or_else(|| format!("'{text}' is not a size like 512k, 10m or 1048576"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(n) => Ok(ByteSize(n)),
            Written::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl ServeArgs {
    /// Fills every unset field from `file` (flags and env already won).
    fn fill_from(&mut self, file: ServeArgs) {
        fn fill<T>(slot: &mut Option<T>, from: Option<T>) {
            if slot.is_none() {
                *slot = from;
            }
        }
        fn fill_vec<T>(slot: &mut Vec<T>, from: Vec<T>) {
            if slot.is_empty() {
                *slot = from;
            }
        }
        fill(&mut self.control_plane, file.control_plane);
        fill(&mut self.cluster_ca, file.cluster_ca);
        fill(&mut self.cluster_cert, file.cluster_cert);
        fill(&mut self.cluster_key, file.cluster_key);
        fill(&mut self.cluster_server_name, file.cluster_server_name);
        fill_vec(&mut self.proxy_listen, file.proxy_listen);
        fill_vec(&mut self.proxy_tls_listen, file.proxy_tls_listen);
        fill(&mut self.status_listen, file.status_listen);
        fill(&mut self.cache_dir, file.cache_dir);
        fill_vec(&mut self.trusted_ips, file.trusted_ips);
        fill(&mut self.real_ip_header, file.real_ip_header);
        fill(&mut self.node_id, file.node_id);
        fill(&mut self.workers, file.workers);
        fill(&mut self.config_file, file.config_file);
        fill(&mut self.tls_cert, file.tls_cert);
        fill(&mut self.tls_key, file.tls_key);
        fill(&mut self.shutdown_grace, file.shutdown_grace);
        fill(&mut self.client_header_timeout, file.client_header_timeout);
        fill(&mut self.log_level, file.log_level);
        fill(&mut self.log_format, file.log_format);
        fill(&mut self.client_body_timeout, file.client_body_timeout);
        fill(&mut self.client_max_body_size, file.client_max_body_size);
        fill(
            &mut self.client_body_buffer_size,
            file.client_body_buffer_size,
        );
        fill(&mut self.client_body_temp_dir, file.client_body_temp_dir);
        fill(
            &mut self.max_connections_per_ip,
            file.max_connections_per_ip,
        );
        fill(&mut self.metrics_prefix, file.metrics_prefix);
        fill(&mut self.metrics_max_series, file.metrics_max_series);
    }
}

/// Limits that protect the proxy from oversized or slow clients.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Longest accepted request target (path and query), in bytes; longer ⇒ 414.
    pub max_request_target: usize,
    /// Largest accepted total of header names and values, in bytes; larger ⇒ 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request; more ⇒ 431.
    pub max_headers: usize,
    /// A connection with no request in progress (idle keep-alive, or a head still
    /// arriving) is closed after this long.
    pub header_timeout: Duration,
    /// A request body that receives no data for this long is abandoned (408).
    pub body_timeout: Duration,
    /// Largest request body in bytes (413 above it); 0 is unlimited.
    pub max_body_size: u64,
    /// A buffered request body larger than this is spilled to `body_temp_dir`.
    pub body_buffer_size: usize,
    pub body_temp_dir: PathBuf,
    /// Most simultaneous proxy connections per client address; 0 is unlimited.
    pub max_connections_per_ip: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            max_request_target: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            header_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            // Kong sets nginx's client_max_body_size to 0 for the proxy: an
            // upload that passes Kong must pass here too.
            max_body_size: 0,
            body_buffer_size: 16 * 1024,
            body_temp_dir: std::env::temp_dir(),
            max_connections_per_ip: 0,
        }
    }
}

/// Upstream keep-alive pool tuning (Kong defaults: 60 s idle).
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Idle connections kept per upstream (scheme, host, port).
    pub max_idle_per_upstream: usize,
    pub idle_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_idle_per_upstream: 512,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Checked settings of a data plane.
#[derive(Debug, Clone)]
pub struct Settings {
    pub control_plane: Option<String>,
    pub cluster_ca: Option<PathBuf>,
    pub cluster_cert: Option<PathBuf>,
    pub cluster_key: Option<PathBuf>,
    pub cluster_server_name: String,
    pub proxy_listen: Vec<SocketAddr>,
    pub proxy_tls_listen: Vec<SocketAddr>,
    pub status_listen: SocketAddr,
    pub cache_dir: PathBuf,
    pub trusted_ips: Vec<IpNet>,
    pub real_ip_header: HeaderName,
    pub node_id: Option<String>,
    pub workers: usize,
    pub config_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub shutdown_grace: Duration,
    pub limits: ClientLimits,
    pub pool: PoolSettings,
    /// `--log-level`; `None`: `RUST_LOG`, else `info`.
    pub log_level: Option<String>,
    pub log_format: LogFormat,
    /// Metric naming (`--metrics-prefix`).
    pub metrics_naming: Naming,
    /// Series cap per metric of the prometheus plugin (`--metrics-max-series`).
    pub metrics_max_series: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            control_plane: None,
            cluster_ca: None,
            cluster_cert: None,
            cluster_key: None,
            cluster_server_name: "tollgate-cp".to_string(),
            proxy_listen: vec![SocketAddr::from(([0, 0, 0, 0], 8000))],
            proxy_tls_listen: Vec::new(),
            status_listen: SocketAddr::from(([127, 0, 0, 1], 8100)),
            cache_dir: PathBuf::from("/var/lib/tollgate"),
            trusted_ips: Vec::new(),
            real_ip_header: HeaderName::from_static("x-real-ip"),
            node_id: None,
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            config_file: None,
            tls_cert: None,
            tls_key: None,
            shutdown_grace: Duration::from_secs(10),
            limits: ClientLimits::default(),
            pool: PoolSettings::default(),
            log_level: None,
            log_format: LogFormat::Text,
            metrics_naming: Naming::default(),
            metrics_max_series: DEFAULT_MAX_SERIES,
        }
    }
}

impl Settings {
    /// Settings for tests and embedding: every listener on `127.0.0.1:0`, no TLS.
    pub fn loopback() -> Self {
        Self {
            proxy_listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            status_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            workers: 1,
            ..Self::default()
        }
    }

    /// Merges the `--config` TOML file (if any) under the flags/env and checks everything.
    pub fn from_args(mut args: ServeArgs) -> Result<Settings, SettingsError> {
        if let Some(path) = args.config.clone() {
            let file = read_toml(&path)?;
            args.fill_from(file);
        }
        Self::check(args)
    }

    fn check(args: ServeArgs) -> Result<Settings, SettingsError> {
        let defaults = Settings::default();
        let proxy_listen = if args.proxy_listen.is_empty() {
            defaults.proxy_listen
        } else {
            parse_addrs("--proxy-listen", &args.proxy_listen)?
        };
        let proxy_tls_listen = parse_addrs("--proxy-tls-listen", &args.proxy_tls_listen)?;
        let status_listen = match &args.status_listen {
            Some(addr) => parse_addr("--status-listen", addr)?,
            None => defaults.status_listen,
        };
        let trusted_ips = args
            .trusted_ips
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                parse_net(s).ok_or_else(|| {
                    invalid(
                        "--trusted-ips",
                        format!("'{s}' is not an IP address or CIDR"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let real_ip_header = match &args.real_ip_header {
            Some(name) => HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                invalid("--real-ip-header", format!("'{name}' is not a header name"))
            })?,
            None => defaults.real_ip_header,
        };
        let workers = match args.workers {
            Some(0) => return Err(invalid("--workers", "must be at least 1")),
            Some(n) if n > 1024 => return Err(invalid("--workers", "must be at most 1024")),
            Some(n) => n,
            None => defaults.workers,
        };
        if args.tls_cert.is_some() != args.tls_key.is_some() {
            return Err(invalid(
                "--tls-cert",
                "--tls-cert and --tls-key must be given together",
            ));
        }
        if let Some(url) = &args.control_plane {
            if !url.starts_with("https://") {
                return Err(invalid(
                    "--control-plane",
                    format!("'{url}' is not an https:// URL"),
                ));
            }
            for (setting, value) in [
                ("--cluster-ca", &args.cluster_ca),
                ("--cluster-cert", &args.cluster_cert),
                ("--cluster-key", &args.cluster_key),
            ] {
                if value.is_none() {
                    return Err(invalid(setting, "required with --control-plane"));
                }
            }
            if args.config_file.is_some() {
                return Err(invalid(
                    "--config-file",
                    "cannot be combined with --control-plane",
                ));
            }
        }
        if args.control_plane.is_none() && args.config_file.is_none() {
            return Err(invalid(
                "--control-plane",
                "give --control-plane https://CP:8005 (with --cluster-ca/--cluster-cert/--cluster-key) or --config-file kong.yml; without either there is no configuration to serve",
            ));
        }
        let log_level = match args.log_level {
            Some(filter) => {
                crate::startup::check_log_level(&filter).map_err(|e| invalid("--log-level", e))?;
                Some(filter)
            }
            None => None,
        };
        let log_format = match &args.log_format {
            Some(format) => format
                .parse()
                .map_err(|e: String| invalid("--log-format", e))?,
            None => LogFormat::Text,
        };
        let mut limits = ClientLimits::default();
        if let Some(secs) = args.client_header_timeout {
            if secs == 0 {
                return Err(invalid("--client-header-timeout", "must be at least 1"));
            }
            limits.header_timeout = Duration::from_secs(secs);
        }
        if let Some(secs) = args.client_body_timeout {
            if secs == 0 {
                return Err(invalid("--client-body-timeout", "must be at least 1"));
            }
            limits.body_timeout = Duration::from_secs(secs);
        }
        if let Some(ByteSize(size)) = args.client_max_body_size {
            limits.max_body_size = size;
        }
        if let Some(ByteSize(size)) = args.client_body_buffer_size {
            limits.body_buffer_size = usize::try_from(size)
                .ok()
                .filter(|s| *s <= 64 << 20)
                .ok_or_else(|| invalid("--client-body-buffer-size", "must be at most 64m"))?;
        }
        if let Some(dir) = args.client_body_temp_dir {
            if !dir.is_dir() {
                return Err(invalid(
                    "--client-body-temp-dir",
                    format!("'{}' is not a directory", dir.display()),
                ));
            }
            limits.body_temp_dir = dir;
        }
        if let Some(cap) = args.max_connections_per_ip {
            limits.max_connections_per_ip = cap;
        }
        let metrics_naming = match &args.metrics_prefix {
            Some(prefix) => Naming::new(prefix).map_err(|e| invalid("--metrics-prefix", e))?,
            None => defaults.metrics_naming,
        };
        let metrics_max_series = match args.metrics_max_series {
            Some(0) => return Err(invalid("--metrics-max-series", "must be at least 1")),
            Some(cap) => cap,
            None => defaults.metrics_max_series,
        };
        Ok(Settings {
            control_plane: args.control_plane,
            cluster_ca: args.cluster_ca,
            cluster_cert: args.cluster_cert,
            cluster_key: args.cluster_key,
            cluster_server_name: args
                .cluster_server_name
                .unwrap_or(defaults.cluster_server_name),
            proxy_listen,
            proxy_tls_listen,
            status_listen,
            cache_dir: args.cache_dir.unwrap_or(defaults.cache_dir),
            trusted_ips,
            real_ip_header,
            node_id: args.node_id,
            workers,
            config_file: args.config_file,
            tls_cert: args.tls_cert,
            tls_key: args.tls_key,
            shutdown_grace: args
                .shutdown_grace
                .map(Duration::from_secs)
                .unwrap_or(defaults.shutdown_grace),
            limits,
            pool: PoolSettings::default(),
            log_level,
            log_format,
            metrics_naming,
            metrics_max_series,
        })
    }
}

fn read_toml(path: &std::path::Path) -> Result<ServeArgs, SettingsError> {
    let file_error = |reason: String| SettingsError::ConfigFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| file_error(crate::startup::toml_error(&text, &e)))?;
    // Keys may be spelled like the flags (`proxy-listen`) or in TOML style (`proxy_listen`).
    let normalized: toml::Table = table
        .into_iter()
        .map(|(key, value)| (key.replace('-', "_"), value))
        .collect();
    ServeArgs::deserialize(toml::Value::Table(normalized)).map_err(|e| {
        // The table was rebuilt, so the error has no position: find the key it names.
        let message = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid value")
            .to_string();
        let line = message
            .split('`')
            .nth(1)
            .and_then(|key| crate::startup::line_of_key(&text, key));
        file_error(match line {
            Some(line) => format!("line {line}: {message}"),
            None => message,
        })
    })
}

fn parse_addrs(setting: &'static str, values: &[String]) -> Result<Vec<SocketAddr>, SettingsError> {
    values
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| parse_addr(setting, s))
        .collect()
}

fn parse_addr(setting: &'static str, value: &str) -> Result<SocketAddr, SettingsError> {
    value.trim().parse().map_err(|_| {
        invalid(
            setting,
            format!("'{value}' is not an address like 0.0.0.0:8000 or [::1]:8000"),
        )
    })
}

/// An address or CIDR; a bare address is a single-host network.
pub fn parse_net(value: &str) -> Option<IpNet> {
    if let Ok(net) = value.parse::<IpNet>() {
        return Some(net.trunc());
    }
    value.parse::<IpAddr>().ok().map(IpNet::from)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn parse(argv: &[&str]) -> Result<Settings, SettingsError> {
        let mut full = vec!["tollgate-dp", "serve"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).unwrap();
        let Command::Serve(args) = cli.command;
        Settings::from_args(*args)
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = parse(&["--config-file", "kong.yml"]).unwrap();
        assert_eq!(s.proxy_listen, vec!["0.0.0.0:8000".parse().unwrap()]);
        assert!(s.proxy_tls_listen.is_empty());
        assert_eq!(s.status_listen, "127.0.0.1:8100".parse().unwrap());
        assert_eq!(s.real_ip_header, "x-real-ip");
        assert!(s.trusted_ips.is_empty());
        assert!(s.workers >= 1);
        assert_eq!(s.metrics_naming.prefix(), "tollgate");
        assert_eq!(s.metrics_max_series, 10_000);
        let kong = parse(&["--config-file", "k.yml", "--metrics-prefix", "kong"]).unwrap();
        assert!(kong.metrics_naming.is_kong());
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases: &[(&[&str], &str)] = &[
            (&["--proxy-listen", "nope"], "--proxy-listen"),
            (&["--status-listen", "1.2.3.4"], "--status-listen"),
            (&["--trusted-ips", "10.0.0.0/8,bogus"], "--trusted-ips"),
            (&["--workers", "0"], "--workers"),
            (&["--real-ip-header", "bad header"], "--real-ip-header"),
            (&["--tls-cert", "/x.pem"], "--tls-cert"),
            (&["--control-plane", "cp:8005"], "--control-plane"),
            (&["--control-plane", "https://cp:8005"], "--cluster-ca"),
            (&[], "--control-plane"),
            (
                &["--config-file", "k.yml", "--log-format", "xml"],
                "--log-format",
            ),
            (
                &["--config-file", "k.yml", "--log-level", "info,=["],
                "--log-level",
            ),
            (
                &["--config-file", "k.yml", "--client-body-timeout", "0"],
                "--client-body-timeout",
            ),
            (
                &["--config-file", "k.yml", "--client-body-buffer-size", "1g"],
                "--client-body-buffer-size",
            ),
            (
                &[
                    "--config-file",
                    "k.yml",
                    "--client-body-temp-dir",
                    "/nonexistent/dir",
                ],
                "--client-body-temp-dir",
            ),
            (
                &["--config-file", "k.yml", "--metrics-prefix", "kong-gw"],
                "--metrics-prefix",
            ),
            (
                &["--config-file", "k.yml", "--metrics-max-series", "0"],
                "--metrics-max-series",
            ),
        ];
        for (argv, setting) in cases {
            let err = parse(argv).unwrap_err().to_string();
            assert!(err.contains(setting), "{argv:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn flags_win_over_file_and_file_fills_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dp.toml");
        std::fs::write(
            &path,
            "proxy-listen = [\"127.0.0.1:9000\", \"127.0.0.1:9001\"]\nworkers = 3\ntrusted_ips = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        let s = parse(&[
            "--config",
            path.to_str().unwrap(),
            "--workers",
            "2",
            "--config-file",
            "kong.yml",
        ])
        .unwrap();
        assert_eq!(s.workers, 2);
        assert_eq!(s.proxy_listen.len(), 2);
        assert_eq!(s.trusted_ips, vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn body_limits_take_sizes_from_flags_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dp.toml");
        std::fs::write(
            &path,
            "client-max-body-size = \"10m\"\nclient_body_buffer_size = 4096\nmax_connections_per_ip = 8\n",
        )
        .unwrap();
        let s = parse(&["--config-file", "k.yml", "--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(s.limits.max_body_size, 10 << 20);
        assert_eq!(s.limits.body_buffer_size, 4096);
        assert_eq!(s.limits.max_connections_per_ip, 8);
        let s = parse(&[
            "--config-file",
            "k.yml",
            "--client-max-body-size",
            "512K",
            "--client-body-timeout",
            "5",
        ])
        .unwrap();
        assert_eq!(s.limits.max_body_size, 512 << 10);
        assert_eq!(s.limits.body_timeout, Duration::from_secs(5));
        let defaults = parse(&["--config-file", "k.yml"]).unwrap().limits;
        assert_eq!(defaults.max_body_size, 0);
        assert_eq!(defaults.max_connections_per_ip, 0);
        for bad in ["", "k", "10x", "-1", "99999999999g"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_file_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dp.toml");
        std::fs::write(&path, "workers = 2\nproxy-lisen = [\"127.0.0.1:9000\"]\n").unwrap();
        let err = parse(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2: unknown field `proxy_lisen`"), "{err}");
        std::fs::write(
            &path,
            "workers = 2\nlog_level = \"debug\"\nproxy_listen = [\n",
        )
        .unwrap();
        let err = parse(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3: "), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn trusted_ips_accept_addresses_and_cidrs() {
        let s = parse(&[
            "--trusted-ips",
            "127.0.0.1, 10.1.2.3/8 ,::1",
            "--config-file",
            "kong.yml",
        ])
        .unwrap();
        let expected: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ];
        assert_eq!(s.trusted_ips, expected);
    }
}
