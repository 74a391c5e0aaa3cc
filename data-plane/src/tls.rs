//! TLS with rustls (ring provider only): server certificates chosen by SNI
//! from the compiled config with a default from `--tls-cert/--tls-key`, the
//! server config (TLS 1.2/1.3, ALPN h2 and http/1.1), and the client configs
//! used towards https/grpcs upstreams.

use arc_swap::ArcSwapOption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::path::Path;
use std::sync::Arc;

pub use tollgate_shared::certificates::{
    certified_key, provider, CertificateChoice, CertificateCompileError, CertificateStore, TlsError,
};

/// Reads the default certificate given by `--tls-cert` and `--tls-key`.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| TlsError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    };
    certified_key(&read(cert)?, &read(key)?)
}

/// Where the resolver reads the current certificates from; implemented by the
/// gateway so that a config swap changes certificates without a restart.
pub trait CertificateSource: Send + Sync + std::fmt::Debug {
    fn find_certificate(
        &self,
        server_name: &str,
        offered: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>>;
}

/// Picks the certificate for each handshake: the config's SNI match, else the
/// default certificate (replaceable at runtime, e.g. on SIGHUP).
#[derive(Debug)]
pub struct SniResolver {
    source: Arc<dyn CertificateSource>,
    default: ArcSwapOption<CertifiedKey>,
}

impl SniResolver {
    pub fn new(source: Arc<dyn CertificateSource>, default: Option<Arc<CertifiedKey>>) -> Self {
        Self {
            source,
            default: ArcSwapOption::new(default),
        }
    }

    pub fn set_default(&self, default: Option<Arc<CertifiedKey>>) {
        self.default.store(default);
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = client_hello.server_name() {
            if let Some(key) = self
                .source
                .find_certificate(name, client_hello.signature_schemes())
            {
                return Some(key);
            }
        }
        let default = self.default.load_full();
        if default.is_none() {
            tracing::debug!(sni = ?client_hello.server_name(), "no certificate for TLS handshake");
        }
        default
    }
}

/// The proxy's server config: TLS 1.3 and 1.2, ALPN h2 then http/1.1.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Client configs towards upstreams. Kong leaves `tls_verify` off unless a
/// service sets it, so both a verifying and a non-verifying config exist.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    verify_http1: Arc<ClientConfig>,
    verify_h2: Arc<ClientConfig>,
    no_verify_http1: Arc<ClientConfig>,
    no_verify_h2: Arc<ClientConfig>,
}

impl UpstreamTls {
    /// Builds the configs; verification trusts `roots` (the system bundle at start-up).
    pub fn new(roots: RootCertStore) -> Result<UpstreamTls, TlsError> {
        let roots = Arc::new(roots);
        let build = |verify: bool, alpn: &[u8]| -> Result<Arc<ClientConfig>, TlsError> {
            let builder = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| TlsError::Setup(e.to_string()))?;
            let mut config = if verify {
                builder
                    .with_root_certificates(Arc::clone(&roots))
                    .with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
                    .with_no_client_auth()
            };
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(config))
        };
        Ok(UpstreamTls {
            verify_http1: build(true, b"http/1.1")?,
            verify_h2: build(true, b"h2")?,
            no_verify_http1: build(false, b"http/1.1")?,
            no_verify_h2: build(false, b"h2")?,
        })
    }

    /// Roots from the system bundle when present; an empty store otherwise
    /// (verifying services then fail their handshakes, loudly).
    pub fn system_roots() -> RootCertStore {
        let mut roots = RootCertStore::empty();
        for path in [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/cert.pem",
        ] {
            if let Ok(pem) = std::fs::read(path) {
                for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
                    let _ = roots.add(cert);
                }
                break;
            }
        }
        roots
    }

    pub fn client_config(&self, verify: bool, h2: bool) -> Arc<ClientConfig> {
        Arc::clone(match (verify, h2) {
            (true, false) => &self.verify_http1,
            (true, true) => &self.verify_h2,
            (false, false) => &self.no_verify_http1,
            (false, true) => &self.no_verify_h2,
        })
    }
}

/// Accepts any upstream certificate (Kong's default `tls_verify = off`) while
/// still checking handshake signatures, so the session keys are sound.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use tollgate_shared::{Certificate, ForeignKey, Sni};
    use uuid::Uuid;

    fn self_signed(name: &str) -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    fn certificate(id: u128, name: &str) -> Certificate {
        let (cert, key) = self_signed(name);
        Certificate {
            id: Uuid::from_u128(id),
            created_at: 0,
            updated_at: 0,
            cert,
            key,
            cert_alt: None,
            key_alt: None,
            tags: None,
        }
    }

    fn sni(id: u128, name: &str, certificate: u128) -> Sni {
        Sni {
            id: Uuid::from_u128(id),
            created_at: 0,
            updated_at: 0,
            name: name.to_string(),
            certificate: ForeignKey::from(Uuid::from_u128(certificate)),
            tags: None,
        }
    }

    #[test]
    fn finds_exact_then_wildcards() {
        let certs = [
            certificate(1, "a.test"),
            certificate(2, "wild.test"),
            certificate(3, "x"),
        ];
        let snis = [
            sni(10, "a.example.com", 1),
            sni(11, "*.example.com", 2),
            sni(12, "api.*", 3),
        ];
        let store = CertificateStore::compile(&certs, &snis).unwrap();
        let cert_of = |name: &str| store.find(name, &[]).map(|k| k.cert[0].clone());
        let expected =
            |i: usize| Some(CertificateDer::from_pem_slice(certs[i].cert.as_bytes()).unwrap());
        assert_eq!(cert_of("a.example.com"), expected(0));
        assert_eq!(cert_of("b.example.com"), expected(1));
        assert_eq!(cert_of("api.internal"), expected(2));
        assert_eq!(cert_of("example.com"), None);
        assert_eq!(cert_of("other.test"), None);
    }

    #[test]
    fn bad_material_and_dangling_snis_are_errors() {
        let mut broken = certificate(1, "a.test");
        broken.key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
        let mismatched = {
            let mut c = certificate(2, "b.test");
            c.key = self_signed("c.test").1;
            c
        };
        let errors = CertificateStore::compile(
            &[broken, mismatched],
            &[
                sni(10, "x.test", 99),
                sni(11, "y.test", 2),
                sni(12, "Y.test", 2),
            ],
        )
        .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
    }
}
