//! The data plane's side of the plugin runtime. Plugins themselves (config,
//! schema, compile and phases) live in `tollgate_shared::plugin`, one module
//! each, named in one table; this module re-exports what the proxy drives and
//! owns the live resources they use (`resources`: log files; `redis`: Redis
//! connections with a circuit breaker; `jwks`: the jwt plugin's JWKS caches
//! and their fetches; `otlp`: trace exporters; `http_log`: the http-log
//! queues and their senders).

pub mod http_log;
pub mod jwks;
pub mod otlp;
pub mod redis;
pub mod resources;

pub use tollgate_shared::runtime::{
    Decision, PluginChain, PluginFailure, Protocol, ProtocolSet, Rejection, RejectionStyle,
    RequestContext,
};

/// The plugins this data plane runs, announced to the control plane.
pub fn supported() -> Vec<String> {
    tollgate_shared::plugin::supported()
        .map(ToString::to_string)
        .collect()
}
