//! The runtime plugins: a closed [`Plugin`] enum compiled from `PluginSpec`,
//! dispatched by `match`, and the per-route [`PluginChain`] that runs them in
//! Kong's priority order. A rejection is a [`Decision::Respond`], never an error.

mod chain;
mod ip_restriction;

pub use chain::{ChainStep, PluginChain, PluginInstance};
pub use ip_restriction::{IpRestriction, IpRestrictionError};

use http::{HeaderMap, StatusCode};
use std::borrow::Cow;
use std::net::IpAddr;
use tollgate_shared::PluginSpec;
use uuid::Uuid;

/// The plugins this data plane compiles, announced to the control plane.
pub const SUPPORTED: &[&str] = &["ip-restriction"];

/// A compiled plugin instance, ready to run on requests.
#[derive(Debug)]
pub enum Plugin {
    IpRestriction(IpRestriction),
}

/// Why a plugin instance could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginCompileError {
    #[error("ip-restriction: {0}")]
    IpRestriction(#[from] IpRestrictionError),
    /// The plugin exists in Kong and in `PluginSpec` but this data plane does not
    /// run it yet. Compiling it to a no-op would silently drop protection
    /// (authentication, rate limits), so the whole config is refused instead.
    #[error("plugin '{0}' is not supported by this data plane")]
    Unsupported(&'static str),
}

impl Plugin {
    /// Compiles a validated spec. No I/O happens here.
    pub fn compile(spec: &PluginSpec) -> Result<Plugin, PluginCompileError> {
        match spec {
            PluginSpec::IpRestriction(config) => {
                Ok(Plugin::IpRestriction(IpRestriction::compile(config)?))
            }
            PluginSpec::Jwt(_) => Err(PluginCompileError::Unsupported("jwt")),
            PluginSpec::RateLimiting(_) => Err(PluginCompileError::Unsupported("rate-limiting")),
            PluginSpec::FileLog(_) => Err(PluginCompileError::Unsupported("file-log")),
            PluginSpec::HttpLog(_) => Err(PluginCompileError::Unsupported("http-log")),
            PluginSpec::Prometheus(_) => Err(PluginCompileError::Unsupported("prometheus")),
        }
    }

    /// Runs the access phase for one request.
    pub fn on_request(&self, request: &mut PluginRequest<'_>) -> Decision {
        match self {
            Plugin::IpRestriction(plugin) => plugin.on_request(request),
        }
    }
}

pub use tollgate_shared::plugin::priority;

/// The request protocol, as plugin and route `protocols` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
    Grpc,
    Grpcs,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Grpc => "grpc",
            Protocol::Grpcs => "grpcs",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Protocol::Http => 1,
            Protocol::Https => 2,
            Protocol::Grpc => 4,
            Protocol::Grpcs => 8,
        }
    }
}

/// A set of [`Protocol`]s, e.g. a plugin's or a route's `protocols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProtocolSet(u8);

impl ProtocolSet {
    /// Builds the set from Kong protocol names; stream protocols (tcp, tls, udp…)
    /// have no HTTP meaning and are left out.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> ProtocolSet {
        let mut bits = 0;
        for name in names {
            bits |= match name.as_ref() {
                "http" => Protocol::Http.bit(),
                "https" => Protocol::Https.bit(),
                "grpc" => Protocol::Grpc.bit(),
                "grpcs" => Protocol::Grpcs.bit(),
                _ => 0,
            };
        }
        ProtocolSet(bits)
    }

    pub fn contains(self, protocol: Protocol) -> bool {
        self.0 & protocol.bit() != 0
    }
}

/// What a plugin sees of a request in the access phase.
#[derive(Debug)]
pub struct PluginRequest<'a> {
    /// The client address after real-IP processing (trusted peers only).
    pub client_ip: IpAddr,
    pub protocol: Protocol,
    pub headers: &'a HeaderMap,
    /// The authenticated consumer, once an authentication plugin set it.
    pub consumer: Option<Uuid>,
}

/// A plugin's verdict on a request.
#[derive(Debug)]
pub enum Decision {
    Continue,
    Respond(Rejection),
}

/// A response a plugin produces instead of proxying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
    pub style: RejectionStyle,
}

/// Which of Kong's body generators renders the rejection (kong-compat §2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionStyle {
    /// `kong.response.error`: format by `Accept`, with `request_id`.
    Error,
    /// `kong.response.exit`: plain `{"message":…}` JSON.
    Exit,
}
