//! The stored entities, with Kong's field names, JSON shapes and defaults.
//!
//! These structs are what the Admin API renders and the store persists: every
//! field is present in JSON, unset ones as `null`, foreign keys as `{"id": …}`.
//! They are built from input only through [`crate::schema`] validation, which
//! fills defaults and checks every rule first.

mod certificate;
mod consumer;
mod credentials;
mod jwt_secret;
mod plugin;
mod route;
mod service;

pub use certificate::{Certificate, Sni};
pub use consumer::Consumer;
pub use credentials::{
    basic_auth_password_hash, Acl, BasicauthCredential, KeyauthCredential, MAX_TTL,
};
pub use jwt_secret::{JwtAlgorithm, JwtSecret};
pub use plugin::Plugin;
pub use route::Route;
pub use service::Service;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A reference to another entity, rendered as Kong does: `{"id": "<uuid>"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ForeignKey {
    pub id: Uuid,
}

impl From<Uuid> for ForeignKey {
    fn from(id: Uuid) -> Self {
        Self { id }
    }
}

/// Every entity type the Admin API and the declarative format know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Services,
    Routes,
    Consumers,
    Plugins,
    JwtSecrets,
    Certificates,
    Snis,
    KeyauthCredentials,
    BasicauthCredentials,
    Acls,
}

impl EntityKind {
    pub const ALL: [EntityKind; 10] = [
        EntityKind::Services,
        EntityKind::Routes,
        EntityKind::Consumers,
        EntityKind::Plugins,
        EntityKind::JwtSecrets,
        EntityKind::Certificates,
        EntityKind::Snis,
        EntityKind::KeyauthCredentials,
        EntityKind::BasicauthCredentials,
        EntityKind::Acls,
    ];

    /// The collection name used in Kong's Admin API, errors and declarative files.
    pub fn table_name(self) -> &'static str {
        match self {
            EntityKind::Services => "services",
            EntityKind::Routes => "routes",
            EntityKind::Consumers => "consumers",
            EntityKind::Plugins => "plugins",
            EntityKind::JwtSecrets => "jwt_secrets",
            EntityKind::Certificates => "certificates",
            EntityKind::Snis => "snis",
            EntityKind::KeyauthCredentials => "keyauth_credentials",
            EntityKind::BasicauthCredentials => "basicauth_credentials",
            EntityKind::Acls => "acls",
        }
    }

    /// The field that `/{collection}/{x}` looks up when `x` is not a UUID.
    pub fn endpoint_key(self) -> Option<&'static str> {
        match self {
            EntityKind::Services | EntityKind::Routes | EntityKind::Snis => Some("name"),
            EntityKind::Consumers => Some("username"),
            EntityKind::Plugins => Some("instance_name"),
            EntityKind::JwtSecrets | EntityKind::KeyauthCredentials => Some("key"),
            EntityKind::BasicauthCredentials => Some("username"),
            // `/consumers/{c}/acls/{group}` is resolved by the Admin API itself.
            EntityKind::Certificates | EntityKind::Acls => None,
        }
    }
}

/// Current time as Kong stamps `created_at`/`updated_at`: integer Unix seconds.
pub fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
