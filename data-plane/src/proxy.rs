//! The request path of the data plane, one module per step: `server` accepts
//! and owns client connections, `http1` serves the common HTTP/1.1 request on
//! them (hyper serves the rest), `service` handles one request, `upstream`
//! forwards it over pooled connections, `respond` renders everything the proxy
//! answers itself. `headers`, `host`, `body` and `error` hold what those steps
//! share; `conn_limit` and `log_limit` bound what an attacker can make the
//! proxy hold or write. The proxy reads the running config through
//! [`LiveConfig`] and never depends on the gateway that swaps it.

pub mod body;
pub mod conn_limit;
pub mod error;
pub mod headers;
pub mod host;
pub mod http1;
pub mod log_limit;
pub mod respond;
pub mod server;
pub mod service;
pub mod upstream;

pub use error::{ProxyError, Side};

use arc_swap::ArcSwap;
use std::sync::Arc;
use upstream::UpstreamTarget;

/// One immutable runtime config as this proxy serves it: the shared compile
/// step's output with each service bound to its upstream pool.
pub type Compiled = tollgate_shared::compile::Compiled<UpstreamTarget>;
pub type CompiledRoute = tollgate_shared::compile::CompiledRoute<UpstreamTarget>;
pub type CompiledService = tollgate_shared::compile::CompiledService<UpstreamTarget>;

/// The one `ArcSwap` of the running config: the gateway swaps, the proxy and
/// the TLS resolver load. A request loads it once and uses only that config.
#[derive(Debug)]
pub struct LiveConfig(ArcSwap<Compiled>);

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig(ArcSwap::from_pointee(Compiled::empty()))
    }
}

impl LiveConfig {
    /// The config to use for one request (or one handshake).
    pub fn current(&self) -> Arc<Compiled> {
        self.0.load_full()
    }

    /// Installs `compiled`; returns the config it replaced.
    pub fn swap(&self, compiled: Arc<Compiled>) -> Arc<Compiled> {
        self.0.swap(compiled)
    }
}
