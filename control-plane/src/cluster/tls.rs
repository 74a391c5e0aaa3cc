//! The cluster listener's mTLS: the server config (our certificate, client
//! certificates verified against the cluster CA, ALPN h2), the handshake
//! done here rather than inside tonic so that each refused handshake is
//! logged with the peer's address and the reason (rate-limited), and the CA's
//! path length constraint, which rustls-webpki does not apply to a trust
//! anchor: with the `pathlen:0` cluster CA a client certificate must be
//! signed by the CA itself, not by an intermediate below it.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    AlertDescription, CertificateError, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// How long a peer may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the cluster TLS material cannot be used; each names its setting.
#[derive(Debug, thiserror::Error)]
pub enum ClusterTlsError {
    #[error("invalid setting --cluster-ca: {0}")]
    Ca(String),
    #[error("invalid setting --cluster-cert: {0}")]
    Cert(String),
    #[error("invalid setting --cluster-key: {0}")]
    Key(String),
}

/// The intermediates a client certificate chain may hold: the CA's path
/// length constraint, `None` when it has none.
fn path_length_limit(ca: &CertificateDer<'_>) -> Result<Option<usize>, ClusterTlsError> {
    let (_, certificate) = x509_parser::parse_x509_certificate(ca.as_ref())
        .map_err(|e| ClusterTlsError::Ca(format!("not a valid X.509 certificate: {e}")))?;
    let constraints = certificate
        .basic_constraints()
        .map_err(|e| ClusterTlsError::Ca(format!("invalid basic constraints: {e}")))?;
    Ok(constraints
        .and_then(|c| c.value.path_len_constraint)
        .map(|n| n as usize))
}

/// The rustls server config of the cluster listener.
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, ClusterTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cas = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClusterTlsError::Ca(format!("not a PEM certificate: {e}")))?;
    let Some(first_ca) = cas.first() else {
        return Err(ClusterTlsError::Ca("no certificate in the file".into()));
    };
    let max_intermediates = path_length_limit(first_ca)?;
    let mut roots = RootCertStore::empty();
    for ca in &cas {
        roots
            .add(ca.clone())
            .map_err(|e| ClusterTlsError::Ca(format!("unusable CA certificate: {e}")))?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ClusterTlsError::Ca(e.to_string()))?;
    let verifier = Arc::new(PathLengthVerifier {
        inner,
        max_intermediates,
    });
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClusterTlsError::Cert(format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(ClusterTlsError::Cert("no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| ClusterTlsError::Key(format!("not a PEM private key: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClusterTlsError::Cert(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => ClusterTlsError::Key(
                "it does not match --cluster-cert (the key belongs to another certificate)".into(),
            ),
            other => ClusterTlsError::Key(other.to_string()),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A chain longer than the CA's path length constraint allows.
#[derive(Debug)]
struct PathLengthExceeded {
    intermediates: usize,
    allowed: usize,
}

impl std::fmt::Display for PathLengthExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the client certificate chain has {} intermediate CA(s); the cluster CA's path length constraint allows {}",
            self.intermediates, self.allowed
        )
    }
}

impl std::error::Error for PathLengthExceeded {}

/// webpki's client verifier plus the CA's path length constraint.
#[derive(Debug)]
struct PathLengthVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    max_intermediates: Option<usize>,
}

impl ClientCertVerifier for PathLengthVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // webpki builds paths only from the presented intermediates, so their
        // number bounds the path's length.
        if let Some(allowed) = self.max_intermediates {
            if intermediates.len() > allowed {
                return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    OtherError(Arc::new(PathLengthExceeded {
                        intermediates: intermediates.len(),
                        allowed,
                    })),
                )));
            }
        }
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Why a handshake was refused, in an operator's words.
pub fn refusal_reason(error: &std::io::Error) -> String {
    let tls = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::NoCertificatesPresented) => {
            "no client certificate presented (give the data plane --cluster-cert and --cluster-key)".into()
        }
        Some(rustls::Error::InvalidCertificate(problem)) => match problem {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "the client certificate is not issued by the cluster CA".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the client certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the client certificate is not valid yet (check the clocks)".into()
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "the client certificate is not for client authentication".into()
            }
            CertificateError::Other(other) => other.to_string(),
            other => format!("invalid client certificate: {other:?}"),
        },
        Some(rustls::Error::AlertReceived(alert)) => match alert {
            AlertDescription::UnknownCA | AlertDescription::BadCertificate => format!(
                "the peer does not trust our certificate ({alert:?}): check its --cluster-ca and --cluster-server-name"
            ),
            other => format!("the peer sent the alert {other:?}"),
        },
        Some(rustls::Error::InvalidMessage(_)) | Some(rustls::Error::InappropriateMessage { .. }) => {
            "not a TLS client (plain HTTP to the cluster port?)".into()
        }
        Some(rustls::Error::NoApplicationProtocol) => {
            "the client does not offer HTTP/2 (ALPN h2): not a data plane".into()
        }
        Some(other) => other.to_string(),
        None => match error.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                "the peer closed the connection during the handshake".into()
            }
            std::io::ErrorKind::InvalidData => "not a TLS client".into(),
            _ => error.to_string(),
        },
    }
}

/// Logs refused handshakes: at most `burst` lines per `window`, then one
/// line saying how many more were refused, so a scan or a misconfigured
/// fleet cannot flood the log.
pub struct RefusalLog {
    window: Duration,
    burst: u32,
    state: Mutex<RefusalWindow>,
}

struct RefusalWindow {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

impl RefusalLog {
    pub fn new(window: Duration, burst: u32) -> Self {
        Self {
            window,
            burst,
            state: Mutex::new(RefusalWindow {
                started: Instant::now(),
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Logs one refusal, unless this window's allowance is spent.
    pub fn refused(&self, peer: SocketAddr, reason: &str) {
        match self.admit(Instant::now()) {
            Admission::Log { suppressed_before } => {
                if suppressed_before > 0 {
                    tracing::warn!(
                        suppressed = suppressed_before,
                        "more cluster handshakes were refused than logged in the previous {:?}",
                        self.window
                    );
                }
                tracing::warn!(%peer, reason, "refused a cluster handshake");
            }
            Admission::Suppress => {}
        }
    }

    /// Whether a refusal at `now` is logged, and how many went unlogged in
    /// the window that just ended.
    fn admit(&self, now: Instant) -> Admission {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut suppressed_before = 0;
        if now.saturating_duration_since(state.started) >= self.window {
            suppressed_before = state.suppressed;
            *state = RefusalWindow {
                started: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if state.logged < self.burst {
            state.logged += 1;
            Admission::Log { suppressed_before }
        } else {
            state.suppressed += 1;
            Admission::Suppress
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Log it, after saying how many the previous window suppressed.
    Log {
        suppressed_before: u64,
    },
    Suppress,
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self::new(Duration::from_secs(10), 10)
    }
}

/// Accepts TCP connections on `listener`, completes each TLS handshake on
/// its own task and hands the established streams to `streams`; refusals go
/// to `log`. Ends when `streams` is closed.
pub async fn accept(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    streams: mpsc::Sender<std::io::Result<TlsStream<TcpStream>>>,
    log: Arc<RefusalLog>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (tcp, peer) = tokio::select! {
            () = streams.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(%error, "cluster listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Without it Nagle holds a snapshot frame behind the data plane's
        // delayed ACK of the previous one (40 ms per back-to-back change).
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let streams = streams.clone();
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = streams.send(Ok(stream)).await;
                }
                Ok(Err(error)) => log.refused(peer, &refusal_reason(&error)),
                Err(_) => log.refused(
                    peer,
                    &format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}"),
                ),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn refusals_are_logged_up_to_the_burst_then_counted() {
        let log = RefusalLog::new(Duration::from_secs(10), 2);
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        // (second, Some(suppressed count reported first) when logged, None when suppressed);
        // the window after 10 s logs again and reports what the last one swallowed.
        let expected = [
            (0, Some(0)),
            (1, Some(0)),
            (2, None),
            (3, None),
            (11, Some(2)),
            (12, Some(0)),
        ];
        for (second, want) in expected {
            let got = match log.admit(at(second)) {
                Admission::Log { suppressed_before } => Some(suppressed_before),
                Admission::Suppress => None,
            };
            assert_eq!(got, want, "at {second} s");
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let ca = crate::cert::ClusterCa::generate("ca").unwrap();
        let issue = || {
            ca.issue(
                "tollgate-cp",
                crate::cert::Role::ControlPlane,
                crate::cert::Validity::leaf(),
            )
            .unwrap()
        };
        let (one, two) = (issue(), issue());
        let err = server_config(&ca.cert_pem, &one.cert_pem, &two.key_pem)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("invalid setting --cluster-key: it does not match"),
            "{err}"
        );
        assert!(server_config(&ca.cert_pem, &one.cert_pem, &one.key_pem).is_ok());
    }
}
