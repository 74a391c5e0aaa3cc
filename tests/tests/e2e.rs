//! End-to-end tests: real sockets, real TLS, real PostgreSQL and Redis.
//! One test binary for the whole suite keeps CI to a single link step.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod e2e {
    pub mod auth_jwks;
    pub mod auth_jwt;
    pub mod auth_keys;
    pub mod cluster_sync;
    pub mod cluster_tls;
    pub mod file_log;
    pub mod http_log;
    pub mod metrics;
    pub mod opentelemetry;
    pub mod operator;
    pub mod plugin_runtime;
    pub mod prometheus_server;
    pub mod proxy_basics;
    pub mod proxy_hardening;
    pub mod proxy_protocols;
    pub mod proxy_security;
    pub mod proxy_smuggling;
    pub mod proxy_upstream;
    pub mod rate_limiting;
}
