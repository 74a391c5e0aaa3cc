//! A whole gateway configuration: every entity, as one value. This is what the
//! control plane snapshots, hashes and ships, and what a data plane compiles.

use crate::entity::{
    Acl, BasicauthCredential, Certificate, Consumer, JwtSecret, KeyauthCredential, Plugin, Route,
    Service, Sni,
};
use serde::{Deserialize, Serialize};

/// A collection missing from serialized input is empty (configs written
/// before the credential collections existed still read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub services: Vec<Service>,
    pub routes: Vec<Route>,
    pub consumers: Vec<Consumer>,
    pub plugins: Vec<Plugin>,
    pub jwt_secrets: Vec<JwtSecret>,
    pub certificates: Vec<Certificate>,
    pub snis: Vec<Sni>,
    pub keyauth_credentials: Vec<KeyauthCredential>,
    pub basicauth_credentials: Vec<BasicauthCredential>,
    pub acls: Vec<Acl>,
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
        self.keyauth_credentials.sort_by_key(|e| e.id);
        self.basicauth_credentials.sort_by_key(|e| e.id);
        self.acls.sort_by_key(|e| e.id);
    }
}
