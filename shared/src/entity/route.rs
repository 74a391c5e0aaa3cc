//! Route: the rules that match a request and the service it goes to.

use super::ForeignKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub id: Uuid,
    pub created_at: i64,
    pub updated_at: i64,
    pub name: Option<String>,
    pub protocols: Vec<String>,
    pub methods: Option<Vec<String>>,
    pub hosts: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    pub snis: Option<Vec<String>>,
    pub sources: Option<Vec<serde_json::Value>>,
    pub destinations: Option<Vec<serde_json::Value>>,
    pub https_redirect_status_code: i64,
    pub regex_priority: i64,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub request_buffering: bool,
    pub response_buffering: bool,
    pub path_handling: String,
    pub service: Option<ForeignKey>,
    pub tags: Option<Vec<String>>,
}
