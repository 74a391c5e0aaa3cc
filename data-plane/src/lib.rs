//! Tollgate's data plane: it proxies HTTP traffic according to one immutable
//! compiled config held in an `ArcSwap`, runs the plugin chain, syncs the
//! config from the control plane and keeps the last good one on disk.
//!
//! It must not link sqlx or talk to the database.

pub mod cache;
pub mod router;
pub mod sync;
