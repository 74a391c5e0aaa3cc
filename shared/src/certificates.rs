//! Certificates as the compile step sees them: PEM chains and keys parsed
//! into signing-ready rustls keys (ring provider only) and indexed by SNI
//! name. Both planes run this, so a certificate the data plane could not load
//! is refused by the control plane first. No sockets, no files.

use crate::{Certificate, Sni};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

pub mod validity;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate found in PEM")]
    NoCertificate,
    #[error("invalid certificate PEM: {0}")]
    CertificatePem(String),
    #[error("invalid private key PEM: {0}")]
    KeyPem(String),
    #[error("unusable certificate/key pair: {0}")]
    Key(String),
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

/// The crypto provider every TLS object in the data plane is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM chain and key into a signing-ready certificate.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::CertificatePem(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError::KeyPem(e.to_string()))?;
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(|e| TlsError::Key(e.to_string()))
}

/// A certificate with its optional alternate (e.g. ECDSA next to RSA); the
/// first one whose key can sign with a scheme the client offers is served.
#[derive(Debug)]
pub struct CertificateChoice {
    keys: Vec<Arc<CertifiedKey>>,
}

impl CertificateChoice {
    fn pick(&self, offered: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        if self.keys.len() == 1 {
            return self.keys.first().cloned();
        }
        self.keys
            .iter()
            .find(|k| k.key.choose_scheme(offered).is_some())
            .or(self.keys.first())
            .cloned()
    }
}

/// Why a certificate or SNI entity could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateCompileError {
    #[error("certificate {id}: {source}")]
    Certificate { id: Uuid, source: TlsError },
    #[error("sni '{name}': certificate {certificate} does not exist")]
    MissingCertificate { name: String, certificate: Uuid },
    #[error("sni '{name}' is defined more than once")]
    DuplicateSni { name: String },
}

/// Certificates by SNI name: exact names, `*.example.com` and `example.*`.
#[derive(Debug, Default)]
pub struct CertificateStore {
    exact: HashMap<String, Arc<CertificateChoice>>,
    /// `*.example.com`, keyed by `example.com`.
    leading_wildcards: HashMap<String, Arc<CertificateChoice>>,
    /// `example.*`, keyed by `example`.
    trailing_wildcards: HashMap<String, Arc<CertificateChoice>>,
}

impl CertificateStore {
    pub fn compile(
        certificates: &[Certificate],
        snis: &[Sni],
    ) -> Result<CertificateStore, Vec<CertificateCompileError>> {
        let mut errors = Vec::new();
        let mut by_id = HashMap::new();
        for certificate in certificates {
            let mut keys = Vec::new();
            match certified_key(&certificate.cert, &certificate.key) {
                Ok(key) => keys.push(key),
                Err(source) => errors.push(CertificateCompileError::Certificate {
                    id: certificate.id,
                    source,
                }),
            }
            if let (Some(cert), Some(key)) = (&certificate.cert_alt, &certificate.key_alt) {
                match certified_key(cert, key) {
                    Ok(key) => keys.push(key),
                    Err(source) => errors.push(CertificateCompileError::Certificate {
                        id: certificate.id,
                        source,
                    }),
                }
            }
            by_id.insert(certificate.id, Arc::new(CertificateChoice { keys }));
        }
        let mut store = CertificateStore::default();
        for sni in snis {
            let Some(choice) = by_id.get(&sni.certificate.id) else {
                errors.push(CertificateCompileError::MissingCertificate {
                    name: sni.name.clone(),
                    certificate: sni.certificate.id,
                });
                continue;
            };
            let name = sni.name.to_ascii_lowercase();
            let (map, key) = if let Some(rest) = name.strip_prefix("*.") {
                (&mut store.leading_wildcards, rest.to_string())
            } else if let Some(rest) = name.strip_suffix(".*") {
                (&mut store.trailing_wildcards, rest.to_string())
            } else {
                (&mut store.exact, name.clone())
            };
            if map.insert(key, Arc::clone(choice)).is_some() {
                errors.push(CertificateCompileError::DuplicateSni { name });
            }
        }
        if errors.is_empty() {
            Ok(store)
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.leading_wildcards.is_empty()
            && self.trailing_wildcards.is_empty()
    }

    /// The certificate for `server_name` (already lowercase, as rustls gives it):
    /// exact name first, then `*.parent`, then `first-label.*`.
    pub fn find(
        &self,
        server_name: &str,
        offered: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        if let Some(choice) = self.exact.get(server_name) {
            return choice.pick(offered);
        }
        if let Some((_, parent)) = server_name.split_once('.') {
            if let Some(choice) = self.leading_wildcards.get(parent) {
                return choice.pick(offered);
            }
        }
        if let Some((head, _)) = server_name.rsplit_once('.') {
            if let Some(choice) = self.trailing_wildcards.get(head) {
                return choice.pick(offered);
            }
        }
        None
    }
}
