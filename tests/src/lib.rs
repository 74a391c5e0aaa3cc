//! Tollgate's test harness: starts control planes, data planes, an echo
//! upstream, a recording upstream, a log collector and a Prometheus server on `127.0.0.1:0`, and
//! waits on their signals. It holds no product logic.

pub mod bench;
pub mod cluster;
pub mod collector;
pub mod dataplane;
pub mod echo;
pub mod logs;
pub mod prometheus;
pub mod recorder;
