//! The request path of the data plane, one module per step: `server` accepts
//! and owns client connections, `service` handles one request, `upstream`
//! forwards it over pooled connections, `respond` renders everything the proxy
//! answers itself. `headers`, `host`, `body` and `error` hold what those steps
//! share; `conn_limit` and `log_limit` bound what an attacker can make the
//! proxy hold or write.

pub mod body;
pub mod conn_limit;
pub mod error;
pub mod headers;
pub mod host;
pub mod log_limit;
pub mod respond;
pub mod server;
pub mod service;
pub mod upstream;

pub use error::{ProxyError, Side};
