//! Reaching the control plane: the TCP connection and the mTLS handshake are
//! made here rather than inside tonic, so that a failure is known by kind and
//! explained as a [`ConnectProblem`] an operator can act on (refused, timed
//! out, the wrong CA, the wrong server name, our certificate rejected, a port
//! that does not speak the cluster protocol) instead of "transport error".
//!
//! The handshake is only trusted once the server has sent its first HTTP/2
//! bytes: with TLS 1.3 a server that rejects our client certificate says so
//! after the client considers the handshake done, and a plain TLS server that
//! is not the cluster listener sends nothing at all.

use hyper_util::rt::TokioIo;
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How long the TCP connection, the handshake and the server's first bytes
/// may each take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection to the control plane failed, in words that say what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectProblem {
    #[error("--control-plane {0}: not a URL like https://cp.internal:8005")]
    BadUrl(String),
    #[error("cannot resolve {host}: {reason}; check --control-plane")]
    Resolve { host: String, reason: String },
    #[error("connection refused by {addr}: is the control plane running, and is this its --cluster-listen port (default 8005)?")]
    Refused { addr: String },
    #[error("no answer from {addr} within {seconds} s: check the address, firewalls and that the control plane is up")]
    TimedOut { addr: String, seconds: u64 },
    #[error("cannot connect to {addr}: {reason}")]
    Io { addr: String, reason: String },
    #[error("the control plane's certificate at {addr} is not issued by --cluster-ca: give the CA file the control plane's certificate was made with (tollgate-cp cert init writes both)")]
    UnknownCa { addr: String },
    #[error("the control plane's certificate at {addr} is not valid for '{expected}' (it names {}): set --cluster-server-name to one of those, or reissue the certificate", presented_names(.presented))]
    NameMismatch {
        addr: String,
        expected: String,
        presented: Vec<String>,
    },
    #[error("the control plane's certificate at {addr} has expired or is not valid yet: renew it (tollgate-cp cert init)")]
    ServerCertificateExpired { addr: String },
    #[error("the control plane at {addr} rejected this data plane's certificate ({alert}): --cluster-cert must be issued by the control plane's cluster CA and be valid now")]
    ClientCertificateRejected { addr: String, alert: String },
    #[error("{addr} does not speak the cluster protocol ({detail}): is it the Admin API or proxy port? --control-plane must name the control plane's --cluster-listen port (default 8005)")]
    NotClusterProtocol { addr: String, detail: String },
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
}

fn presented_names(names: &[String]) -> String {
    if names.is_empty() {
        "no names".to_string()
    } else {
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where and how to connect: the control plane's address and the client TLS
/// config (CA, our certificate, ALPN h2).
#[derive(Clone)]
pub struct Connector {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    config: Arc<ClientConfig>,
}

/// Why the cluster TLS material cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsSetupError {
    #[error("invalid setting --cluster-ca: {0}")]
    Ca(String),
    #[error("invalid setting --cluster-cert: {0}")]
    Identity(String),
    #[error("invalid setting --cluster-key: {0}")]
    Key(String),
    #[error("invalid setting --cluster-server-name: '{0}' is not a DNS name or IP address")]
    ServerName(String),
}

impl Connector {
    /// Checks the URL and builds the TLS config; the PEM problems found here
    /// are the start-up refusals.
    pub fn new(
        endpoint: &str,
        server_name: &str,
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Connector, ConnectorError> {
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|_| ConnectProblem::BadUrl(endpoint.to_string()))?;
        let host = uri
            .host()
            .ok_or_else(|| ConnectProblem::BadUrl(endpoint.to_string()))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let mut roots = RootCertStore::empty();
        let cas = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsSetupError::Ca(format!("not a PEM certificate: {e}")))?;
        if cas.is_empty() {
            return Err(TlsSetupError::Ca("no certificate in the file".into()).into());
        }
        for ca in cas {
            roots
                .add(ca)
                .map_err(|e| TlsSetupError::Ca(format!("unusable CA certificate: {e}")))?;
        }
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsSetupError::Identity(format!("not a PEM certificate: {e}")))?;
        if chain.is_empty() {
            return Err(TlsSetupError::Identity("no certificate in the file".into()).into());
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| TlsSetupError::Key(format!("not a PEM private key: {e}")))?;
        let mut config = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Identity(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| key_problem(&e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|_| TlsSetupError::ServerName(server_name.to_string()))?;
        Ok(Connector {
            host,
            port,
            server_name,
            config: Arc::new(config),
        })
    }

    /// `host:port` as given in `--control-plane`.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// TCP, TLS, and the server's first bytes, each within [`CONNECT_TIMEOUT`].
    pub async fn connect(&self) -> Result<TokioIo<TlsStream<TcpStream>>, ConnectProblem> {
        let addr = self.addr();
        let timed_out = || ConnectProblem::TimedOut {
            addr: addr.clone(),
            seconds: CONNECT_TIMEOUT.as_secs(),
        };
        let resolved = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| ConnectProblem::Resolve {
                host: self.host.clone(),
                reason: e.to_string(),
            })?
            .collect::<Vec<_>>();
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&resolved[..]))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    ConnectProblem::Refused { addr: addr.clone() }
                }
                std::io::ErrorKind::TimedOut => timed_out(),
                _ => ConnectProblem::Io {
                    addr: addr.clone(),
                    reason: e.to_string(),
                },
            })?;
        let _ = tcp.set_nodelay(true);
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
        let mut tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            connector.connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| ConnectProblem::NotClusterProtocol {
            addr: addr.clone(),
            detail: "no TLS handshake".into(),
        })?
        .map_err(|e| self.name_expected(classify_io(&addr, &e)))?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(ConnectProblem::NotClusterProtocol {
                addr,
                detail: "TLS without HTTP/2".into(),
            });
        }
        tokio::time::timeout(CONNECT_TIMEOUT, await_first_bytes(&mut tls))
            .await
            .map_err(|_| ConnectProblem::NotClusterProtocol {
                addr: addr.clone(),
                detail: "no HTTP/2 greeting".into(),
            })?
            .map_err(|e| classify_io(&addr, &e))?;
        Ok(TokioIo::new(tls))
    }
}

impl Connector {
    /// Fills in the name we asked for when rustls did not say it.
    fn name_expected(&self, problem: ConnectProblem) -> ConnectProblem {
        match problem {
            ConnectProblem::NameMismatch {
                addr,
                expected,
                presented,
            } if expected.is_empty() => ConnectProblem::NameMismatch {
                addr,
                expected: self.server_name.to_str().into_owned(),
                presented,
            },
            other => other,
        }
    }
}

/// A [`Connector`] that could not be built: a bad URL or bad TLS material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    #[error(transparent)]
    Url(#[from] ConnectProblem),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

fn key_problem(error: &rustls::Error) -> TlsSetupError {
    match error {
        rustls::Error::InconsistentKeys(_) => TlsSetupError::Key(
            "it does not match --cluster-cert (the key belongs to another certificate)".into(),
        ),
        other => TlsSetupError::Key(other.to_string()),
    }
}

/// Reads TLS records until the server has sent application data (its HTTP/2
/// SETTINGS) without consuming it: the plaintext stays in the connection for
/// hyper to read. An alert the server sends instead surfaces here.
async fn await_first_bytes(tls: &mut TlsStream<TcpStream>) -> std::io::Result<()> {
    let closed = || {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        )
    };
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let (tcp, connection) = tls.get_mut();
        let read = tcp.read(&mut buffer).await?;
        if read == 0 {
            return Err(closed());
        }
        let mut pending = &buffer[..read];
        let mut has_plaintext = false;
        while !pending.is_empty() {
            connection.read_tls(&mut pending)?;
            let state = connection
                .process_new_packets()
                .map_err(std::io::Error::other)?;
            has_plaintext = state.plaintext_bytes_to_read() > 0;
            if state.peer_has_closed() && !has_plaintext {
                return Err(closed());
            }
        }
        if has_plaintext {
            return Ok(());
        }
    }
}

fn classify_io(addr: &str, error: &std::io::Error) -> ConnectProblem {
    let addr = addr.to_string();
    if let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return classify_tls(addr, tls);
    }
    match error.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe => ConnectProblem::NotClusterProtocol {
            addr,
            detail: "the server closed the connection during the TLS handshake".into(),
        },
        std::io::ErrorKind::InvalidData => ConnectProblem::NotClusterProtocol {
            addr,
            detail: "the server did not answer with TLS".into(),
        },
        _ => ConnectProblem::Io {
            addr,
            reason: error.to_string(),
        },
    }
}

fn classify_tls(addr: String, error: &rustls::Error) -> ConnectProblem {
    match error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                ConnectProblem::UnknownCa { addr }
            }
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => ConnectProblem::NameMismatch {
                addr,
                expected: expected.to_str().into_owned(),
                presented: presented.iter().map(|n| plain_name(n)).collect(),
            },
            CertificateError::NotValidForName => ConnectProblem::NameMismatch {
                addr,
                expected: String::new(),
                presented: Vec::new(),
            },
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => {
                ConnectProblem::ServerCertificateExpired { addr }
            }
            other => ConnectProblem::Tls {
                addr,
                reason: format!("the control plane's certificate: {other:?}"),
            },
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRequired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied
            | AlertDescription::DecryptError => ConnectProblem::ClientCertificateRejected {
                addr,
                alert: alert_name(*alert),
            },
            AlertDescription::NoApplicationProtocol => ConnectProblem::NotClusterProtocol {
                addr,
                detail: "the server does not offer HTTP/2".into(),
            },
            other => ConnectProblem::Tls {
                addr,
                reason: format!("the server sent the alert {}", alert_name(*other)),
            },
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            ConnectProblem::NotClusterProtocol {
                addr,
                detail: "the server did not answer with TLS".into(),
            }
        }
        other => ConnectProblem::Tls {
            addr,
            reason: other.to_string(),
        },
    }
}

/// `DnsName("cp")` → `cp`, `IpAddress(127.0.0.1)` → `127.0.0.1`: rustls
/// reports the names a certificate presents in their debug form.
fn plain_name(name: &str) -> String {
    for prefix in ["DnsName(", "IpAddress(", "URI(", "Uri("] {
        if let Some(inner) = name.strip_prefix(prefix).and_then(|n| n.strip_suffix(')')) {
            return inner.trim_matches('"').to_string();
        }
    }
    name.to_string()
}

fn alert_name(alert: AlertDescription) -> String {
    let debug = format!("{alert:?}");
    // `UnknownCA` → `unknown CA`, `BadCertificate` → `bad certificate`.
    let mut out = String::new();
    let chars: Vec<char> = debug.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
        let prev_lower = i > 0 && chars[i - 1].is_lowercase();
        if c.is_uppercase() && i > 0 && (prev_lower || next_lower) {
            out.push(' ');
        }
        if c.is_uppercase() && next_lower {
            out.extend(c.to_lowercase());
        } else {
            out.push(*c);
        }
    }
    out
}

/// The [`ConnectProblem`] behind a tonic transport or status error, if the
/// failure happened while connecting.
pub fn find_problem(error: &(dyn std::error::Error + 'static)) -> Option<ConnectProblem> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(problem) = error.downcast_ref::<ConnectProblem>() {
            return Some(problem.clone());
        }
        current = error.source();
    }
    None
}

/// The rustls error behind an error chain (an alert the server sent after
/// the handshake arrives through hyper and h2 as an I/O error).
pub fn find_tls_error(error: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        if let Some(tls) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.clone());
        }
        current = error.source();
    }
    None
}

/// Explains an error seen after the connection was made, when it is a TLS one.
pub fn explain_tls(
    addr: &str,
    error: &(dyn std::error::Error + 'static),
) -> Option<ConnectProblem> {
    find_tls_error(error).map(|tls| classify_tls(addr.to_string(), &tls))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn alert_names_read_as_words() {
        assert_eq!(alert_name(AlertDescription::UnknownCA), "unknown CA");
        assert_eq!(
            alert_name(AlertDescription::BadCertificate),
            "bad certificate"
        );
        assert_eq!(
            alert_name(AlertDescription::CertificateRequired),
            "certificate required"
        );
    }

    #[test]
    fn presented_names_read_plainly() {
        assert_eq!(plain_name("DnsName(\"tollgate-cp\")"), "tollgate-cp");
        assert_eq!(plain_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(plain_name("cp.example"), "cp.example");
    }

    #[test]
    fn a_url_without_host_is_refused() {
        let err = Connector::new("https://", "tollgate-cp", "", "", "")
            .err()
            .unwrap();
        assert!(err.to_string().contains("--control-plane"), "{err}");
    }
}
