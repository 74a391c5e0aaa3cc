//! A whole gateway configuration: every entity, as one value. This is what the
//! control plane snapshots, hashes and ships, and what a data plane compiles.

use crate::entity::{Certificate, Consumer, JwtSecret, Plugin, Route, Service, Sni};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub services: Vec<Service>,
    pub routes: Vec<Route>,
    pub consumers: Vec<Consumer>,
    pub plugins: Vec<Plugin>,
    pub jwt_secrets: Vec<JwtSecret>,
    pub certificates: Vec<Certificate>,
    pub snis: Vec<Sni>,
}

impl Config {
    /// Sorts every collection by id, the canonical order used for hashing and
    /// for deterministic output.
    pub fn sort(&mut self) {
        self.services.sort_by_key(|e| e.id);
        self.routes.sort_by_key(|e| e.id);
        self.consumers.sort_by_key(|e| e.id);
        self.plugins.sort_by_key(|e| e.id);
        self.jwt_secrets.sort_by_key(|e| e.id);
        self.certificates.sort_by_key(|e| e.id);
        self.snis.sort_by_key(|e| e.id);
    }
}
