//! Service: an upstream API that routes forward to.

use super::ForeignKey;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: Uuid,
    pub created_at: i64,
    pub updated_at: i64,
    pub name: Option<String>,
    pub retries: i64,
    pub protocol: String,
    pub host: String,
    pub port: i64,
    pub path: Option<String>,
    pub connect_timeout: i64,
    pub write_timeout: i64,
    pub read_timeout: i64,
    pub tags: Option<Vec<String>>,
    pub client_certificate: Option<ForeignKey>,
    pub tls_verify: Option<bool>,
    pub tls_verify_depth: Option<i64>,
    pub ca_certificates: Option<Vec<Uuid>>,
    pub enabled: bool,
}
