//! Cluster PKI (`tollgate-cp cert init` / `cert issue`): a cluster CA, the
//! control plane's server certificate and data plane client certificates, made
//! with rcgen. The cluster listener always requires mTLS against this CA.
//!
//! Files are PEM: `ca.crt ca.key cp.crt cp.key dp.crt dp.key` for `init`,
//! `NAME.crt NAME.key` for `issue`. Private keys are written with mode 0600.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The DNS name the control plane's certificate carries and data planes verify
/// by default (besides `localhost` and `127.0.0.1`).
pub const CP_SERVER_NAME: &str = "tollgate-cp";

const CA_VALIDITY_DAYS: i64 = 3650;
const LEAF_VALIDITY_DAYS: i64 = 825;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} already exists; refusing to overwrite cluster keys")]
    Exists { path: PathBuf },
    #[error("invalid certificate name '{0}': use letters, digits, '-', '_' or '.'")]
    InvalidName(String),
}

/// A PEM certificate and its PEM private key.
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Which end of the cluster connection a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ControlPlane,
    DataPlane,
}

/// Validity window of an issued certificate, relative to now (negative values
/// make certificates that are already expired; tests use that).
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before_days: i64,
    pub not_after_days: i64,
}

impl Validity {
    pub fn leaf() -> Self {
        Self {
            not_before_days: -1,
            not_after_days: LEAF_VALIDITY_DAYS,
        }
    }
}

/// A cluster CA able to sign leaf certificates.
pub struct ClusterCa {
    pub cert_pem: String,
    key: KeyPair,
}

impl ClusterCa {
    /// A new self-signed CA.
    pub fn generate(common_name: &str) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let params = ca_params(common_name);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// Loads `ca.crt` and `ca.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, CertError> {
        let cert_pem = read(&dir.join("ca.crt"))?;
        let key_pem = read(&dir.join("ca.key"))?;
        let key = KeyPair::from_pem(&key_pem)?;
        // Parse to fail early on a file that is not a certificate.
        Issuer::from_ca_cert_pem(&cert_pem, &key)?;
        Ok(Self { cert_pem, key })
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Signs a leaf certificate for `name` in `role`.
    pub fn issue(
        &self,
        name: &str,
        role: Role,
        validity: Validity,
    ) -> Result<IssuedCert, CertError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let key = KeyPair::generate()?;
        let mut sans = vec![name.to_string()];
        if role == Role::ControlPlane {
            sans.extend(["localhost".to_string(), "127.0.0.1".to_string()]);
        }
        let mut params = CertificateParams::new(sans)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "Tollgate cluster");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match role {
            Role::ControlPlane => ExtendedKeyUsagePurpose::ServerAuth,
            Role::DataPlane => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        let now = OffsetDateTime::now_utc();
        params.not_before = now + Duration::days(validity.not_before_days);
        params.not_after = now + Duration::days(validity.not_after_days);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Tollgate cluster");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
    params
}

/// `cert init --out DIR`: writes the CA, the control plane's server
/// certificate and one data plane client certificate. Refuses to overwrite.
pub fn init(out: &Path) -> Result<Vec<PathBuf>, CertError> {
    let names = ["ca.crt", "ca.key", "cp.crt", "cp.key", "dp.crt", "dp.key"];
    for name in names {
        let path = out.join(name);
        if path.exists() {
            return Err(CertError::Exists { path });
        }
    }
    std::fs::create_dir_all(out).map_err(|source| CertError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let ca = ClusterCa::generate("Tollgate cluster CA")?;
    let cp = ca.issue(CP_SERVER_NAME, Role::ControlPlane, Validity::leaf())?;
    let dp = ca.issue("dp", Role::DataPlane, Validity::leaf())?;
    let files = [
        ("ca.crt", ca.cert_pem.clone(), false),
        ("ca.key", ca.key_pem(), true),
        ("cp.crt", cp.cert_pem, false),
        ("cp.key", cp.key_pem, true),
        ("dp.crt", dp.cert_pem, false),
        ("dp.key", dp.key_pem, true),
    ];
    let mut written = Vec::new();
    for (name, contents, secret) in files {
        let path = out.join(name);
        write(&path, &contents, secret)?;
        written.push(path);
    }
    Ok(written)
}

/// `cert issue --ca-dir DIR --name NAME --out DIR`: a further data plane
/// client certificate, `NAME.crt` and `NAME.key`.
pub fn issue(ca_dir: &Path, name: &str, out: &Path) -> Result<Vec<PathBuf>, CertError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if !valid {
        return Err(CertError::InvalidName(name.to_string()));
    }
    let ca = ClusterCa::load(ca_dir)?;
    let leaf = ca.issue(name, Role::DataPlane, Validity::leaf())?;
    std::fs::create_dir_all(out).map_err(|source| CertError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let cert_path = out.join(format!("{name}.crt"));
    let key_path = out.join(format!("{name}.key"));
    for path in [&cert_path, &key_path] {
        if path.exists() {
            return Err(CertError::Exists { path: path.clone() });
        }
    }
    write(&cert_path, &leaf.cert_pem, false)?;
    write(&key_path, &leaf.key_pem, true)?;
    Ok(vec![cert_path, key_path])
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, contents: &str, secret: bool) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| CertError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    file.write_all(contents.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|source| CertError::Write {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_writes_six_pem_files_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        let files = init(dir.path()).unwrap();
        assert_eq!(files.len(), 6);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.starts_with("-----BEGIN"), "{file:?} is not PEM");
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            if file.extension().is_some_and(|e| e == "key") {
                assert_eq!(mode, 0o600, "{file:?}");
            }
        }
        assert!(matches!(init(dir.path()), Err(CertError::Exists { .. })));
    }

    #[test]
    fn issue_signs_with_the_stored_ca_and_rejects_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path()).unwrap();
        let out = dir.path().join("issued");
        let files = issue(dir.path(), "dp-7", &out).unwrap();
        assert_eq!(files[0].file_name().unwrap(), "dp-7.crt");
        assert!(matches!(
            issue(dir.path(), "../evil", &out),
            Err(CertError::InvalidName(_))
        ));
        let missing = dir.path().join("nowhere");
        assert!(matches!(
            issue(&missing, "x", &out),
            Err(CertError::Read { .. })
        ));
    }
}
