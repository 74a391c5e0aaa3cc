//! The `ip-restriction` plugin: config (Kong priority 990).

use crate::schema::engine::{Check, Field, Record, Subschema};
use crate::schema::typedefs::{self, parse_ip_or_cidr, PROTOCOLS};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IpRestrictionConfig {
    /// Addresses or CIDR ranges allowed (everything else is rejected).
    pub allow: Option<Vec<String>>,
    /// Addresses or CIDR ranges rejected; deny wins over allow.
    pub deny: Option<Vec<String>>,
    /// Status of the rejection; `None` means 403.
    pub status: Option<f64>,
    /// Message of the rejection; `None` means `IP address not allowed: <ip>`.
    pub message: Option<String>,
}

impl IpRestrictionConfig {
    /// `allow` as networks (a bare address is a /32 or /128).
    pub fn allow_nets(&self) -> Vec<IpNet> {
        nets(self.allow.as_deref())
    }

    /// `deny` as networks (a bare address is a /32 or /128).
    pub fn deny_nets(&self) -> Vec<IpNet> {
        nets(self.deny.as_deref())
    }
}

fn nets(entries: Option<&[String]>) -> Vec<IpNet> {
    entries
        .unwrap_or_default()
        .iter()
        .filter_map(|e| parse_ip_or_cidr(e))
        .collect()
}

pub(crate) fn subschema() -> Subschema {
    Subschema {
        fields: vec![
            typedefs::protocols(
                &PROTOCOLS,
                &["http", "https", "tcp", "tls", "grpc", "grpcs"],
            ),
            Field::record(
                "config",
                Record::new(vec![
                    Field::array("allow", typedefs::ip_or_cidr("")),
                    Field::array("deny", typedefs::ip_or_cidr("")),
                    Field::number("status"),
                    Field::string("message"),
                ]),
            ),
        ],
        checks: vec![Check::AtLeastOneOf(vec!["config.allow", "config.deny"])],
    }
}
