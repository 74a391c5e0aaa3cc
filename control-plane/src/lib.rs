//! Tollgate's control plane: it owns the configuration (PostgreSQL or SQLite
//! through sqlx), serves the Kong-compatible Admin API, builds versioned config
//! snapshots and streams them to data planes over mTLS gRPC.
//!
//! It must not proxy traffic.

pub mod cert;
pub mod cluster;
