//! Tollgate's domain model, shared by the control plane and the data planes.
//!
//! It owns the Kong-compatible entities (services, routes, consumers, plugins,
//! JWT credentials, certificates and SNIs), the typed plugin specs, the schema
//! validation that reports every error with its field path (in the shape of
//! Kong's schema-violation body), the Kong declarative format, canonical hashing
//! of a whole config, and conversions to and from the cluster protocol. It also
//! owns the compile step both planes run (router, certificates, the plugin
//! table and the plugin runtime), so the control plane refuses exactly what a
//! data plane could not serve.
//!
//! It must not do I/O or depend on an async runtime: both planes call it from
//! wherever they are. Plugins reach files and sockets only through resource
//! handles the data plane implements (`runtime::Resources`).

pub mod certificates;
pub mod compile;
pub mod config;
pub mod convert;
pub mod declarative;
pub mod entity;
pub mod exposition;
pub mod hash;
pub mod plugin;
pub mod router;
pub mod runtime;
pub mod schema;
pub mod snapshot;
pub mod startup;
pub mod validation;

pub use config::Config;
pub use entity::{
    Acl, BasicauthCredential, Certificate, Consumer, EntityKind, ForeignKey, JwtSecret,
    KeyauthCredential, Plugin, Route, Service, Sni,
};
pub use plugin::PluginSpec;
pub use validation::{FieldErrors, ValidationError};

/// Tollgate's own version, reported to peers and checked for cluster compatibility.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
