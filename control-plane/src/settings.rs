//! Command line, environment and TOML settings of `tollgate-cp`, merged with the
//! precedence flags > `TOLLGATE_*` environment > `--config` file > defaults, and
//! checked so that a bad value stops start-up with one line naming the setting.

use crate::listener::AdminLimits;
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use tollgate_shared::startup::{check_log_level, toml_error, LogFormat};

/// Default `--database-url`: an SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://tollgate.db";
/// Default `--admin-listen`: Kong's loopback admin port.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8001";
/// Default `--cluster-listen`: Kong's cluster port.
pub const DEFAULT_CLUSTER_LISTEN: &str = "0.0.0.0:8005";

#[derive(Debug, Parser)]
#[command(name = "tollgate-cp", version, about = "Tollgate control plane")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Admin API and the cluster stream (applies pending migrations unless --no-migrate).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit (idempotent, safe from several hosts at once).
    Migrate(MigrateArgs),
    /// Print the cluster as a table (node, version applied, sync status, lag, last error) from the Admin API.
    Status(StatusArgs),
    /// Cluster certificates for mTLS between control and data planes.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Writes the cluster CA, the control plane's certificate and one data plane
    /// certificate: DIR/ca.crt ca.key cp.crt cp.key dp.crt dp.key.
    Init {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Issues a further data plane client certificate: DIR/NAME.crt NAME.key.
    Issue {
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        #[arg(long, value_name = "NAME")]
        name: String,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file with any of these settings (keys as the flag names, `_` or `-`).
    #[arg(long, env = "TOLLGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// sqlite://path or postgres://user@host/db [default: sqlite://tollgate.db]
    #[arg(long, env = "TOLLGATE_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// HOST:PORT or unix:/path/admin.sock [default: 127.0.0.1:8001]
    #[arg(long, env = "TOLLGATE_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// File holding the Admin API bearer token(s), one per line; required for a non-loopback listener.
    #[arg(long, env = "TOLLGATE_ADMIN_TOKEN_FILE", value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,
    /// Seconds a client has to send a complete request head, from connecting or
    /// from the end of the previous response (so it also ends idle keep-alive) [default: 30]
    #[arg(long, env = "TOLLGATE_ADMIN_HEADER_TIMEOUT", value_name = "SECS")]
    pub admin_header_timeout: Option<u64>,
    /// Seconds an Admin API connection may send and receive nothing while no
    /// request is being handled (a stalled upload, an unread response) [default: 60]
    #[arg(long, env = "TOLLGATE_ADMIN_IDLE_TIMEOUT", value_name = "SECS")]
    pub admin_idle_timeout: Option<u64>,
    /// Admin API connections served at once; one more is answered 503 and closed [default: 1024]
    #[arg(long, env = "TOLLGATE_ADMIN_MAX_CONNECTIONS", value_name = "N")]
    pub admin_max_connections: Option<u64>,
    /// Address of the cluster (data plane) listener [default: 0.0.0.0:8005]
    #[arg(long, env = "TOLLGATE_CLUSTER_LISTEN", value_name = "ADDR")]
    pub cluster_listen: Option<String>,
    /// Cluster CA certificate (PEM) that data plane client certificates must chain to.
    #[arg(long, env = "TOLLGATE_CLUSTER_CA", value_name = "PEM")]
    pub cluster_ca: Option<PathBuf>,
    /// Control plane server certificate (PEM) for the cluster listener.
    #[arg(long, env = "TOLLGATE_CLUSTER_CERT", value_name = "PEM")]
    pub cluster_cert: Option<PathBuf>,
    /// Private key (PEM) of --cluster-cert.
    #[arg(long, env = "TOLLGATE_CLUSTER_KEY", value_name = "PEM")]
    pub cluster_key: Option<PathBuf>,
    /// Seal secrets at rest (jwt secrets, certificate keys, Redis passwords) with
    /// AES-256-GCM: one base64 32-byte key per line, the first seals, all open.
    #[arg(long, env = "TOLLGATE_SECRETS_KEY_FILE", value_name = "PATH")]
    pub secrets_key_file: Option<PathBuf>,
    /// Do not apply pending migrations at start-up.
    #[arg(long, env = "TOLLGATE_NO_MIGRATE", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub no_migrate: Option<bool>,
    /// tracing filter, e.g. `info` or `tollgate_control_plane=debug` [default: info]
    #[arg(long, env = "TOLLGATE_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// text or json (one object per line) [default: text]
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Prefix of every metric name on GET /metrics; `kong` gives Kong's exact names and
    /// types (Kong's Grafana dashboard 7424 works unchanged) [default: tollgate]
    #[arg(long, env = "TOLLGATE_METRICS_PREFIX", value_name = "PREFIX")]
    pub metrics_prefix: Option<String>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// TOML file with any of these settings.
    #[arg(long, env = "TOLLGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// sqlite://path or postgres://user@host/db [default: sqlite://tollgate.db]
    #[arg(long, env = "TOLLGATE_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// tracing filter [default: info]
    #[arg(long, env = "TOLLGATE_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// text or json (one object per line) [default: text]
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The Admin API to ask [default: http://127.0.0.1:8001]
    #[arg(long, env = "TOLLGATE_ADMIN_URL", value_name = "URL")]
    pub admin_url: Option<String>,
    /// File holding the Admin API bearer token (its first token is sent).
    #[arg(long, env = "TOLLGATE_ADMIN_TOKEN_FILE", value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,
}

/// The `--config` TOML file. Unknown keys are refused so that a typo is not
/// silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    #[serde(alias = "database-url")]
    database_url: Option<String>,
    #[serde(alias = "admin-listen")]
    admin_listen: Option<String>,
    #[serde(alias = "metrics-prefix")]
    metrics_prefix: Option<String>,
    #[serde(alias = "admin-token-file")]
    admin_token_file: Option<PathBuf>,
    #[serde(alias = "admin-header-timeout")]
    admin_header_timeout: Option<u64>,
    #[serde(alias = "admin-idle-timeout")]
    admin_idle_timeout: Option<u64>,
    #[serde(alias = "admin-max-connections")]
    admin_max_connections: Option<u64>,
    #[serde(alias = "cluster-listen")]
    cluster_listen: Option<String>,
    #[serde(alias = "cluster-ca")]
    cluster_ca: Option<PathBuf>,
    #[serde(alias = "cluster-cert")]
    cluster_cert: Option<PathBuf>,
    #[serde(alias = "cluster-key")]
    cluster_key: Option<PathBuf>,
    #[serde(alias = "secrets-key-file")]
    secrets_key_file: Option<PathBuf>,
    #[serde(alias = "no-migrate")]
    no_migrate: Option<bool>,
    #[serde(alias = "log-level")]
    log_level: Option<String>,
    #[serde(alias = "log-format")]
    log_format: Option<String>,
}

/// A setting that cannot be used; the message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("--config {path}: {reason}")]
    ConfigFile { path: String, reason: String },
    #[error("--{setting} {value:?}: {reason}")]
    Invalid {
        setting: &'static str,
        value: String,
        reason: String,
    },
    #[error("--admin-listen {0}: not a loopback address; give --admin-token-file to expose the Admin API beyond this host")]
    ExposedWithoutToken(String),
}

/// Where a listener binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    /// Parses `HOST:PORT` (IP literal or `localhost`) or `unix:/path`.
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("expected unix:/path/to/socket".into());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if let Some(port) = text.strip_prefix("localhost:") {
            let port: u16 = port
                .parse()
                .map_err(|_| "expected HOST:PORT or unix:/path".to_string())?;
            return Ok(ListenAddr::Tcp(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                port,
            )));
        }
        text.parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .map_err(|_| "expected HOST:PORT (an IP address) or unix:/path".to_string())
    }

    /// A Unix socket or a loopback TCP address: reachable only from this host.
    pub fn is_local(&self) -> bool {
        match self {
            ListenAddr::Unix(_) => true,
            ListenAddr::Tcp(addr) => addr.ip().is_loopback(),
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// One accepted Admin API bearer token. `id` names it in audit records without
/// revealing it.
#[derive(Clone)]
pub struct AdminToken {
    pub id: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("id", &self.id)
            .field("secret", &"******")
            .finish()
    }
}

impl AdminToken {
    pub fn new(secret: &str) -> AdminToken {
        let digest = hex::encode(Sha256::digest(secret.as_bytes()));
        AdminToken {
            id: format!("token-{}", &digest[..12]),
            secret: secret.as_bytes().to_vec(),
        }
    }
}

/// The cluster listener's mTLS material (PKI mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything `serve` needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub database_url: String,
    pub admin_listen: ListenAddr,
    pub admin_tokens: Vec<AdminToken>,
    pub admin_token_file: Option<PathBuf>,
    pub admin_limits: AdminLimits,
    pub cluster_listen: SocketAddr,
    pub cluster_tls: Option<ClusterTls>,
    pub secrets_key_file: Option<PathBuf>,
    /// Loaded from `secrets_key_file`.
    pub keyring: Option<std::sync::Arc<crate::store::Keyring>>,
    pub migrate: bool,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Metric naming (`--metrics-prefix`).
    pub metrics_naming: tollgate_shared::exposition::Naming,
}

/// Everything `migrate` needs.
#[derive(Debug, Clone)]
pub struct MigrateSettings {
    pub database_url: String,
    pub log_level: String,
    pub log_format: LogFormat,
}

/// `--log-level` and `--log-format`, checked.
struct LogSettings {
    level: String,
    format: LogFormat,
}

impl LogSettings {
    fn resolve(
        level: Option<String>,
        format: Option<String>,
        file: &FileSettings,
    ) -> Result<LogSettings, SettingsError> {
        let level = level
            .or_else(|| file.log_level.clone())
            .unwrap_or_else(|| "info".into());
        check_log_level(&level).map_err(|reason| SettingsError::Invalid {
            setting: "log-level",
            value: level.clone(),
            reason,
        })?;
        let format = match format.or_else(|| file.log_format.clone()) {
            Some(text) => text.parse().map_err(|reason| SettingsError::Invalid {
                setting: "log-format",
                value: text.clone(),
                reason,
            })?,
            None => LogFormat::Text,
        };
        Ok(LogSettings { level, format })
    }
}

fn read_file_settings(path: Option<&Path>) -> Result<FileSettings, SettingsError> {
    let Some(path) = path else {
        return Ok(FileSettings::default());
    };
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError::ConfigFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| SettingsError::ConfigFile {
        path: path.display().to_string(),
        reason: toml_error(&text, &e),
    })
}

fn check_database_url(url: String) -> Result<String, SettingsError> {
    let supported = ["sqlite:", "postgres://", "postgresql://"];
    if !supported.iter().any(|p| url.starts_with(p)) {
        return Err(SettingsError::Invalid {
            setting: "database-url",
            value: crate::store::redact_url(&url),
            reason: "expected sqlite://PATH or postgres://USER@HOST/DB".into(),
        });
    }
    // The driver logs a parameter it does not know together with its value:
    // a secret it would ignore anyway is refused rather than written to the log.
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let unsupported_secret = query
        .split('&')
        .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
        .find(|name| {
            crate::store::is_secret_url_parameter(name) && !name.eq_ignore_ascii_case("password")
        });
    if let Some(name) = unsupported_secret {
        return Err(SettingsError::Invalid {
            setting: "database-url",
            value: crate::store::redact_url(&url),
            reason: format!("the query parameter {name:?} is not supported"),
        });
    }
    Ok(url)
}

/// Reads the token file: one token per non-empty line, `#` comments allowed.
pub fn read_admin_tokens(path: &Path) -> Result<Vec<AdminToken>, SettingsError> {
    let invalid = |reason: String| SettingsError::Invalid {
        setting: "admin-token-file",
        value: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
    let tokens: Vec<AdminToken> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(AdminToken::new)
        .collect();
    if tokens.is_empty() {
        return Err(invalid("holds no token".into()));
    }
    if tokens.iter().any(|t| t.secret.len() < 16) {
        return Err(invalid("a token shorter than 16 characters".into()));
    }
    Ok(tokens)
}

/// The admin listener's limits; zero is refused (it would disable the bound
/// or the listener).
fn admin_limits(
    header_timeout: Option<u64>,
    idle_timeout: Option<u64>,
    max_connections: Option<u64>,
) -> Result<AdminLimits, SettingsError> {
    let at_least_one = |setting: &'static str, value: Option<u64>| match value {
        Some(0) => Err(SettingsError::Invalid {
            setting,
            value: "0".into(),
            reason: "must be at least 1".into(),
        }),
        other => Ok(other),
    };
    let defaults = AdminLimits::default();
    let seconds = std::time::Duration::from_secs;
    Ok(AdminLimits {
        header_timeout: at_least_one("admin-header-timeout", header_timeout)?
            .map_or(defaults.header_timeout, seconds),
        idle_timeout: at_least_one("admin-idle-timeout", idle_timeout)?
            .map_or(defaults.idle_timeout, seconds),
        max_connections: match at_least_one("admin-max-connections", max_connections)? {
            None => defaults.max_connections,
            // tokio's semaphore holds at most usize::MAX >> 3 permits.
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| *n <= tokio::sync::Semaphore::MAX_PERMITS)
                .ok_or_else(|| SettingsError::Invalid {
                    setting: "admin-max-connections",
                    value: n.to_string(),
                    reason: "too large".into(),
                })?,
        },
    })
}

impl ServeArgs {
    /// Merges flags/env (already applied by clap) over the file and defaults.
    pub fn resolve(self) -> Result<ServeSettings, SettingsError> {
        let file = read_file_settings(self.config.as_deref())?;
        let log = LogSettings::resolve(self.log_level, self.log_format, &file)?;
        let database_url = check_database_url(
            self.database_url
                .or(file.database_url)
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
        )?;
        let admin_listen_text = self
            .admin_listen
            .or(file.admin_listen)
            .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.into());
        let admin_listen =
            ListenAddr::parse(&admin_listen_text).map_err(|reason| SettingsError::Invalid {
                setting: "admin-listen",
                value: admin_listen_text.clone(),
                reason,
            })?;
        let admin_token_file = self.admin_token_file.or(file.admin_token_file);
        let admin_tokens = match &admin_token_file {
            Some(path) => read_admin_tokens(path)?,
            None => Vec::new(),
        };
        if admin_tokens.is_empty() && !admin_listen.is_local() {
            return Err(SettingsError::ExposedWithoutToken(admin_listen.to_string()));
        }
        let admin_limits = admin_limits(
            self.admin_header_timeout.or(file.admin_header_timeout),
            self.admin_idle_timeout.or(file.admin_idle_timeout),
            self.admin_max_connections.or(file.admin_max_connections),
        )?;
        let cluster_listen_text = self
            .cluster_listen
            .or(file.cluster_listen)
            .unwrap_or_else(|| DEFAULT_CLUSTER_LISTEN.into());
        let cluster_listen = match ListenAddr::parse(&cluster_listen_text) {
            Ok(ListenAddr::Tcp(addr)) => addr,
            _ => {
                return Err(SettingsError::Invalid {
                    setting: "cluster-listen",
                    value: cluster_listen_text,
                    reason: "expected HOST:PORT (an IP address)".into(),
                })
            }
        };
        let cluster_tls = match (
            self.cluster_ca.or(file.cluster_ca),
            self.cluster_cert.or(file.cluster_cert),
            self.cluster_key.or(file.cluster_key),
        ) {
            (Some(ca), Some(cert), Some(key)) => Some(ClusterTls { ca, cert, key }),
            (None, None, None) => None,
            (ca, cert, _) => {
                let missing = if ca.is_none() {
                    "cluster-ca"
                } else if cert.is_none() {
                    "cluster-cert"
                } else {
                    "cluster-key"
                };
                return Err(SettingsError::Invalid {
                    setting: missing,
                    value: String::new(),
                    reason: "--cluster-ca, --cluster-cert and --cluster-key go together".into(),
                });
            }
        };
        let secrets_key_file = self.secrets_key_file.or(file.secrets_key_file);
        let keyring = match &secrets_key_file {
            Some(path) => Some(std::sync::Arc::new(
                crate::store::Keyring::from_file(path).map_err(|e| SettingsError::Invalid {
                    setting: "secrets-key-file",
                    value: path.display().to_string(),
                    reason: match e {
                        crate::store::SealError::KeyFile { reason, .. } => reason,
                        other => other.to_string(),
                    },
                })?,
            )),
            None => None,
        };
        let metrics_prefix = self.metrics_prefix.or(file.metrics_prefix);
        let metrics_naming = match metrics_prefix {
            Some(prefix) => {
                tollgate_shared::exposition::Naming::new(&prefix).map_err(|reason| {
                    SettingsError::Invalid {
                        setting: "metrics-prefix",
                        value: prefix.clone(),
                        reason,
                    }
                })?
            }
            None => tollgate_shared::exposition::Naming::default(),
        };
        Ok(ServeSettings {
            database_url,
            admin_listen,
            admin_tokens,
            admin_token_file,
            admin_limits,
            cluster_listen,
            cluster_tls,
            secrets_key_file,
            keyring,
            migrate: !self.no_migrate.or(file.no_migrate).unwrap_or(false),
            log_level: log.level,
            log_format: log.format,
            metrics_naming,
        })
    }
}

impl MigrateArgs {
    pub fn resolve(self) -> Result<MigrateSettings, SettingsError> {
        let file = read_file_settings(self.config.as_deref())?;
        let log = LogSettings::resolve(self.log_level, self.log_format, &file)?;
        Ok(MigrateSettings {
            database_url: check_database_url(
                self.database_url
                    .or(file.database_url)
                    .unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            )?,
            log_level: log.level,
            log_format: log.format,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn serve(args: &[&str]) -> Result<ServeSettings, SettingsError> {
        let mut argv = vec!["tollgate-cp", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(a) => a.resolve(),
            _ => panic!("not parsed as serve"),
        }
    }

    #[test]
    fn metrics_prefix_is_a_metric_name() {
        assert_eq!(serve(&[]).unwrap().metrics_naming.prefix(), "tollgate");
        assert!(serve(&["--metrics-prefix", "kong"])
            .unwrap()
            .metrics_naming
            .is_kong());
        let err = serve(&["--metrics-prefix", "kong-gw"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics-prefix"), "{err}");
    }

    #[test]
    fn listen_addresses_parse() {
        let cases: &[(&str, Option<ListenAddr>)] = &[
            (
                "127.0.0.1:8001",
                Some(ListenAddr::Tcp("127.0.0.1:8001".parse().unwrap())),
            ),
            (
                "[::1]:8001",
                Some(ListenAddr::Tcp("[::1]:8001".parse().unwrap())),
            ),
            (
                "localhost:9",
                Some(ListenAddr::Tcp("127.0.0.1:9".parse().unwrap())),
            ),
            (
                "unix:/run/a.sock",
                Some(ListenAddr::Unix("/run/a.sock".into())),
            ),
            ("unix:", None),
            ("8001", None),
            ("example.com:80", None),
        ];
        for (text, want) in cases {
            assert_eq!(ListenAddr::parse(text).ok(), *want, "{text}");
        }
    }

    #[test]
    fn defaults_apply() {
        let s = serve(&[]).unwrap();
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(s.admin_listen.to_string(), DEFAULT_ADMIN_LISTEN);
        assert_eq!(s.cluster_listen.to_string(), DEFAULT_CLUSTER_LISTEN);
        assert!(s.migrate);
        assert!(s.admin_tokens.is_empty());
        assert_eq!(s.admin_limits, AdminLimits::default());
    }

    #[test]
    fn admin_limits_from_flags_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.toml");
        std::fs::write(
            &file,
            "admin-header-timeout = 5\nadmin_idle_timeout = 7\nadmin-max-connections = 9\n",
        )
        .unwrap();
        let s = serve(&["--config", file.to_str().unwrap()]).unwrap();
        assert_eq!(
            s.admin_limits,
            AdminLimits {
                header_timeout: std::time::Duration::from_secs(5),
                idle_timeout: std::time::Duration::from_secs(7),
                max_connections: 9,
            }
        );
        let s = serve(&[
            "--config",
            file.to_str().unwrap(),
            "--admin-max-connections",
            "3",
        ])
        .unwrap();
        assert_eq!(s.admin_limits.max_connections, 3);
        assert_eq!(s.admin_limits.idle_timeout.as_secs(), 7);
    }

    #[test]
    fn non_loopback_admin_needs_a_token() {
        let err = serve(&["--admin-listen", "0.0.0.0:8001"]).unwrap_err();
        assert!(matches!(err, SettingsError::ExposedWithoutToken(_)));
        assert!(!err.to_string().contains('\n'));

        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
        let s = serve(&[
            "--admin-listen",
            "0.0.0.0:8001",
            "--admin-token-file",
            token.to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!(s.admin_tokens.len(), 1);
        assert!(s.admin_tokens[0].id.starts_with("token-"));
        assert!(!format!("{s:?}").contains("0123456789abcdef0123"));
    }

    #[test]
    fn flags_win_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.toml");
        std::fs::write(
            &file,
            "database_url = \"postgres://db/x\"\nadmin-listen = \"unix:/tmp/a.sock\"\nno_migrate = true\n",
        )
        .unwrap();
        let s = serve(&["--config", file.to_str().unwrap()]).unwrap();
        assert_eq!(s.database_url, "postgres://db/x");
        assert_eq!(s.admin_listen, ListenAddr::Unix("/tmp/a.sock".into()));
        assert!(!s.migrate);

        let s = serve(&[
            "--config",
            file.to_str().unwrap(),
            "--database-url",
            "sqlite://other.db",
            "--no-migrate=false",
        ])
        .unwrap();
        assert_eq!(s.database_url, "sqlite://other.db");
        assert!(s.migrate);
    }

    #[test]
    fn malformed_toml_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.toml");
        std::fs::write(
            &file,
            "database_url = \"sqlite://x.db\"\n\nadmin_listen = 127.0.0.1:8001\n",
        )
        .unwrap();
        let err = serve(&["--config", file.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cp.toml: line 3: "), "{err}");
        std::fs::write(&file, "log_format = \"json\"\ndatabse_url = \"x\"\n").unwrap();
        let err = serve(&["--config", file.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2: unknown field `databse_url`"), "{err}");
        std::fs::write(&file, "log_format = \"json\"\n").unwrap();
        let s = serve(&["--config", file.to_str().unwrap()]).unwrap();
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn invalid_settings_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.toml");
        std::fs::write(&file, "databse_url = \"x\"\n").unwrap();
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec!["--admin-listen", "nope"], "--admin-listen"),
            (vec!["--database-url", "mysql://x"], "--database-url"),
            (vec!["--cluster-listen", "unix:/x"], "--cluster-listen"),
            (vec!["--cluster-ca", "/ca.pem"], "--cluster-cert"),
            (
                vec!["--admin-header-timeout", "0"],
                "--admin-header-timeout",
            ),
            (vec!["--admin-idle-timeout", "0"], "--admin-idle-timeout"),
            (
                vec!["--admin-max-connections", "0"],
                "--admin-max-connections",
            ),
            (vec!["--config", file.to_str().unwrap()], "--config"),
            (vec!["--log-format", "xml"], "--log-format"),
            (vec!["--log-level", "info,=["], "--log-level"),
            (
                vec!["--admin-token-file", "/nonexistent/token"],
                "--admin-token-file",
            ),
        ];
        for (args, setting) in cases {
            let err = serve(&args).unwrap_err().to_string();
            assert!(err.starts_with(setting), "{args:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
