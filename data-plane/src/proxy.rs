//! The request path of the data plane, one module per step: `server` accepts
//! and owns client connections, `service` handles one request, `upstream`
//! forwards it over pooled connections, `respond` renders everything the proxy
//! answers itself. `headers`, `body` and `error` hold what those steps share.

pub mod body;
pub mod error;
pub mod headers;
pub mod respond;
pub mod server;
pub mod service;
pub mod upstream;

pub use error::{ProxyError, Side};
