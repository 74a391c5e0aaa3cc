//! The `ip-restriction` plugin (Kong priority 990, kong-compat §6): its config
//! and schema, and its runtime: allow/deny lists of addresses and CIDRs of both
//! families, deny wins, evaluated on the resolved client address, with
//! IPv4-mapped IPv6 addresses treated as the IPv4 address they carry.

use crate::runtime::{
    CompileContext, CompilePlugin, Decision, Phases, PluginCompileError, PluginError,
    PluginRuntime, Rejection, RejectionStyle, RequestContext,
};
use crate::schema::engine::{Check, Field, Record, Subschema};
use crate::schema::typedefs::{self, parse_ip_or_cidr, PROTOCOLS};
use http::StatusCode;
use ipnet::IpNet;
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::net::IpAddr;

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpRestrictionError {
    #[error("config.{field}: '{value}' is not an IP address or CIDR")]
    InvalidEntry { field: &'static str, value: String },
    #[error("at least one of these fields must be non-empty: 'config.allow', 'config.deny'")]
    Empty,
    #[error("config.status: {0} is not an HTTP status code")]
    InvalidStatus(String),
}

/// A set of networks; v4 and v6 kept apart so a lookup compares plain integers.
#[derive(Debug, Default)]
struct NetSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl NetSet {
    fn build(field: &'static str, entries: &[String]) -> Result<NetSet, IpRestrictionError> {
        let mut set = NetSet::default();
        for entry in entries {
            let net = parse_entry(entry).ok_or_else(|| IpRestrictionError::InvalidEntry {
                field,
                value: entry.clone(),
            })?;
            match net {
                IpNet::V4(net) => set.v4.push(v4_key(net)),
                IpNet::V6(net) => set.v6.push(v6_key(net)),
            }
        }
        Ok(set)
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => {
                let ip = u32::from(ip);
                self.v4.iter().any(|&(net, mask)| ip & mask == net)
            }
            IpAddr::V6(ip) => {
                let ip = u128::from(ip);
                self.v6.iter().any(|&(net, mask)| ip & mask == net)
            }
        }
    }
}

fn v4_key(net: Ipv4Net) -> (u32, u32) {
    let mask = u32::from(net.netmask());
    (u32::from(net.network()) & mask, mask)
}

fn v6_key(net: Ipv6Net) -> (u128, u128) {
    let mask = u128::from(net.netmask());
    (u128::from(net.network()) & mask, mask)
}

/// An address or CIDR. IPv4-mapped IPv6 entries (`::ffff:10.0.0.0/104`) become
/// the IPv4 network they describe, because client addresses are canonicalized
/// the same way before matching.
fn parse_entry(entry: &str) -> Option<IpNet> {
    let entry = entry.trim();
    let net = match entry.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(entry.parse::<IpAddr>().ok()?),
    };
    if let IpNet::V6(v6) = net {
        if let Some(v4) = v6.addr().to_ipv4_mapped() {
            if v6.prefix_len() >= 96 {
                return Ipv4Net::new(v4, v6.prefix_len() - 96).ok().map(IpNet::V4);
            }
        }
    }
    Some(net)
}

#[derive(Debug)]
pub struct IpRestriction {
    allow: NetSet,
    deny: NetSet,
    status: StatusCode,
    message: Option<String>,
}

impl IpRestriction {
    pub fn from_config(config: &IpRestrictionConfig) -> Result<IpRestriction, IpRestrictionError> {
        let allow = NetSet::build("allow", config.allow.as_deref().unwrap_or_default())?;
        let deny = NetSet::build("deny", config.deny.as_deref().unwrap_or_default())?;
        if allow.is_empty() && deny.is_empty() {
            return Err(IpRestrictionError::Empty);
        }
        let status = match config.status {
            None => StatusCode::FORBIDDEN,
            Some(code) => Some(code)
                .filter(|c| c.fract() == 0.0 && (100.0..=999.0).contains(c))
                .and_then(|c| StatusCode::from_u16(c as u16).ok())
                .ok_or_else(|| IpRestrictionError::InvalidStatus(code.to_string()))?,
        };
        Ok(IpRestriction {
            allow,
            deny,
            status,
            message: config.message.clone(),
        })
    }

    /// Deny wins; then a non-empty allow list must contain the address.
    pub fn permits(&self, client_ip: IpAddr) -> bool {
        let ip = client_ip.to_canonical();
        if self.deny.contains(ip) {
            return false;
        }
        self.allow.is_empty() || self.allow.contains(ip)
    }

    /// The rejection for a client the lists refuse, `None` for one they permit.
    pub fn decide(&self, client_ip: IpAddr) -> Option<Rejection> {
        if self.permits(client_ip) {
            return None;
        }
        let message = match &self.message {
            Some(message) => Cow::Owned(message.clone()),
            None => Cow::Owned(format!(
                "IP address not allowed: {}",
                client_ip.to_canonical()
            )),
        };
        Some(Rejection {
            status: self.status,
            message,
            style: RejectionStyle::Error,
        })
    }
}

impl PluginRuntime for IpRestriction {
    const PHASES: Phases = Phases::ACCESS;

    fn access(
        &self,
        ctx: &mut RequestContext,
    ) -> impl std::future::Future<Output = Result<Decision, PluginError>> + Send {
        let decision = match self.decide(ctx.client_ip) {
            None => Decision::Continue,
            Some(rejection) => Decision::Respond(rejection),
        };
        std::future::ready(Ok(decision))
    }
}

impl CompilePlugin<IpRestrictionConfig> for IpRestriction {
    fn compile(
        config: &IpRestrictionConfig,
        _cx: &CompileContext<'_>,
    ) -> Result<Self, PluginCompileError> {
        IpRestriction::from_config(config).map_err(|e| PluginCompileError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn typed(config: serde_json::Value) -> Result<IpRestrictionConfig, serde_json::Error> {
        serde_json::from_value(config)
    }

    fn decide(config: serde_json::Value, ip: &str) -> Option<Rejection> {
        let plugin = IpRestriction::from_config(&typed(config).unwrap()).unwrap();
        plugin.decide(ip.parse().unwrap())
    }

    #[test]
    fn allow_and_deny_table() {
        let cases = [
            (json!({"allow": ["10.0.0.0/8"]}), "10.1.2.3", true),
            (json!({"allow": ["10.0.0.0/8"]}), "11.1.2.3", false),
            (json!({"allow": ["10.0.0.0/8"]}), "::ffff:10.1.2.3", true),
            (json!({"allow": ["::ffff:10.0.0.0/104"]}), "10.9.9.9", true),
            (json!({"allow": ["127.0.0.1"]}), "127.0.0.1", true),
            (json!({"allow": ["127.0.0.1"]}), "127.0.0.2", false),
            (json!({"deny": ["127.0.0.1"]}), "127.0.0.1", false),
            (json!({"deny": ["127.0.0.1"]}), "127.0.0.2", true),
            (json!({"allow": ["::1"]}), "::1", true),
            (json!({"allow": ["2001:db8::/32"]}), "2001:db8:1::5", true),
            (json!({"allow": ["2001:db8::/32"]}), "2001:db9::5", false),
            (json!({"deny": ["2001:db8::/32"]}), "10.0.0.1", true),
            (
                json!({"allow": ["10.0.0.0/8"], "deny": ["10.0.0.5"]}),
                "10.0.0.5",
                false,
            ),
            (
                json!({"allow": ["10.0.0.0/8"], "deny": ["10.0.0.5"]}),
                "10.0.0.6",
                true,
            ),
            (
                json!({"allow": [], "deny": ["0.0.0.0/0"]}),
                "192.168.1.1",
                false,
            ),
            (json!({"allow": ["0.0.0.0/0"]}), "::1", false),
        ];
        for (config, ip, allowed) in cases {
            let result = decide(config.clone(), ip);
            assert_eq!(result.is_none(), allowed, "{config} {ip}");
        }
    }

    #[test]
    fn default_rejection_is_403_with_kong_message() {
        let r = decide(json!({"deny": ["1.2.3.4"]}), "1.2.3.4").unwrap();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.message, "IP address not allowed: 1.2.3.4");
        assert_eq!(r.style, RejectionStyle::Error);
        let r = decide(json!({"deny": ["10.0.0.0/8"]}), "::ffff:10.0.0.1").unwrap();
        assert_eq!(r.message, "IP address not allowed: 10.0.0.1");
    }

    #[test]
    fn custom_status_and_message() {
        let r = decide(
            json!({"deny": ["1.2.3.4"], "status": 401, "message": "go away"}),
            "1.2.3.4",
        )
        .unwrap();
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.message, "go away");
    }

    #[test]
    fn invalid_configs_are_refused() {
        let cases = [
            json!({}),
            json!({"allow": [], "deny": null}),
            json!({"allow": ["10.0.0.0/33"]}),
            json!({"allow": ["fe80::1%eth0"]}),
            json!({"deny": ["example.com"]}),
            json!({"deny": ["1.2.3.4"], "status": 1000}),
            json!({"deny": "1.2.3.4"}),
        ];
        for config in cases {
            let refused =
                typed(config.clone()).map_or(true, |c| IpRestriction::from_config(&c).is_err());
            assert!(refused, "{config}");
        }
    }
}
