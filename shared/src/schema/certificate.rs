//! The `certificates` and `snis` schemas.

use super::engine::{Check, Field, Record, Rule};
use super::typedefs;
use serde_json::Value;

pub(crate) fn certificates() -> Record {
    Record::new(vec![
        typedefs::id(),
        typedefs::timestamp("created_at"),
        typedefs::timestamp("updated_at"),
        certificate("cert").required(),
        private_key("key").required(),
        certificate("cert_alt"),
        private_key("key_alt"),
        typedefs::tags(),
    ])
    .checks(vec![Check::MutuallyRequired(vec!["cert_alt", "key_alt"])])
}

pub(crate) fn snis() -> Record {
    Record::new(vec![
        typedefs::id(),
        Field::string("name")
            .required()
            .rule(Rule::LenMax(typedefs::MAX_HOST_LEN))
            .rule(Rule::Custom(typedefs::check_wildcard_host)),
        typedefs::timestamp("created_at"),
        typedefs::timestamp("updated_at"),
        typedefs::tags(),
        Field::foreign("certificate", "certificates").required(),
    ])
}

fn certificate(name: &'static str) -> Field {
    Field::string(name).rule(Rule::Custom(check_certificate))
}

fn private_key(name: &'static str) -> Field {
    Field::string(name).rule(Rule::Custom(check_private_key))
}

/// The PEM block labels of `pem`, in order.
fn pem_labels(pem: &str) -> Vec<&str> {
    pem.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("-----BEGIN ")
                .and_then(|rest| rest.strip_suffix("-----"))
        })
        .filter(|label| pem.contains(&format!("-----END {label}-----")))
        .collect()
}

fn check_certificate(value: &Value) -> Result<(), String> {
    let pem = value.as_str().unwrap_or_default();
    if pem_labels(pem).first() == Some(&"CERTIFICATE") {
        Ok(())
    } else {
        Err("invalid certificate: not a PEM-encoded X.509 certificate".into())
    }
}

fn check_private_key(value: &Value) -> Result<(), String> {
    let pem = value.as_str().unwrap_or_default();
    if pem_labels(pem)
        .first()
        .is_some_and(|label| label.ends_with("PRIVATE KEY"))
    {
        Ok(())
    } else {
        Err("invalid key: not a PEM-encoded private key".into())
    }
}
