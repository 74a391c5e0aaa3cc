//! Start-up checks of the cluster certificates' validity windows, shared by
//! both binaries: an expired (or not yet valid) certificate stops start-up,
//! one that expires within [`WARN_WITHIN_DAYS`] is a warning, so a
//! certificate is renewed before the cluster stops syncing rather than after.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// A certificate expiring within this many days is reported at start-up.
pub const WARN_WITHIN_DAYS: i64 = 30;

/// Checks every certificate in `pem` (given by `setting`) against `now` (unix
/// seconds). `Ok` carries the warnings to log; `Err` the one-line refusal.
pub fn check_validity(setting: &str, pem: &str, now: i64) -> Result<Vec<String>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid setting {setting}: not a PEM certificate: {e}"))?;
    if certificates.is_empty() {
        return Err(format!(
            "invalid setting {setting}: no certificate in the file"
        ));
    }
    let mut warnings = Vec::new();
    for der in &certificates {
        let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| {
            format!("invalid setting {setting}: not a valid X.509 certificate: {e}")
        })?;
        let subject = certificate.subject().to_string();
        let validity = certificate.validity();
        let not_after = validity.not_after.timestamp();
        let not_before = validity.not_before.timestamp();
        if not_after < now {
            return Err(format!(
                "invalid setting {setting}: the certificate '{subject}' expired on {}; issue a new one (tollgate-cp cert init / cert issue)",
                validity.not_after
            ));
        }
        if not_before > now {
            return Err(format!(
                "invalid setting {setting}: the certificate '{subject}' is not valid before {}; check this host's clock",
                validity.not_before
            ));
        }
        let days_left = (not_after - now) / 86_400;
        if days_left < WARN_WITHIN_DAYS {
            warnings.push(format!(
                "{setting}: the certificate '{subject}' expires in {days_left} day(s), on {}; renew it before then",
                validity.not_after
            ));
        }
    }
    Ok(warnings)
}

/// When the first certificate of `pem` to expire does (unix seconds), or
/// `None` if `pem` holds no readable certificate.
pub fn not_after(pem: &str) -> Option<i64> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .filter_map(|der| {
            x509_parser::parse_x509_certificate(der.as_ref())
                .ok()
                .map(|(_, certificate)| certificate.validity().not_after.timestamp())
        })
        .min()
}

/// The current time in unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Valid from 2020-01-01 to 2030-01-01.
    fn certificate() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["dp".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 1);
        params.self_signed(&key).unwrap().pem()
    }

    const NOT_AFTER: i64 = 1_893_456_000;

    #[test]
    fn expired_refuses_expiring_soon_warns_valid_passes() {
        let pem = certificate();
        let err = check_validity("--cluster-cert", &pem, NOT_AFTER + 1).unwrap_err();
        assert!(err.starts_with("invalid setting --cluster-cert: "), "{err}");
        assert!(err.contains("expired on"), "{err}");
        let warnings = check_validity("--cluster-cert", &pem, NOT_AFTER - 10 * 86_400).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("expires in 10 day(s)"), "{warnings:?}");
        assert!(
            check_validity("--cluster-cert", &pem, NOT_AFTER - 40 * 86_400)
                .unwrap()
                .is_empty()
        );
        let err = check_validity("--cluster-cert", &pem, 1_500_000_000).unwrap_err();
        assert!(err.contains("not valid before"), "{err}");
        let err = check_validity("--cluster-ca", "garbage", NOT_AFTER).unwrap_err();
        assert!(err.contains("--cluster-ca: no certificate"), "{err}");
    }
}
