//! Admin API and store tests, each run against PostgreSQL and SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "admin/concurrency.rs"]
mod concurrency;
#[path = "admin/credentials.rs"]
mod credentials;
#[path = "admin/crud.rs"]
mod crud;
#[path = "admin/database_url.rs"]
mod database_url;
#[path = "admin/declarative.rs"]
mod declarative;
#[path = "admin/errors.rs"]
mod errors;
#[path = "admin/info.rs"]
mod info;
#[path = "admin/lengths.rs"]
mod lengths;
#[path = "admin/listener.rs"]
mod listener;
#[path = "admin/opentelemetry.rs"]
mod opentelemetry;
#[path = "admin/outage.rs"]
mod outage;
#[path = "admin/precision.rs"]
mod precision;
#[path = "admin/security.rs"]
mod security;
#[path = "admin/seed.rs"]
mod seed;
#[path = "admin/store.rs"]
mod store;
#[path = "admin/support.rs"]
mod support;
