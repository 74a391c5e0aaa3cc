//! The credentials of Kong's key-auth, basic-auth and acl plugins
//! (`keyauth_credentials`, `basicauth_credentials`, `acls`): rows owned by a
//! consumer, with Kong's field names (kong/plugins/{key-auth,basic-auth,acl}/daos.lua).

use super::ForeignKey;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use uuid::Uuid;

/// A key-auth API key. `key` is unique and generated when absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyauthCredential {
    pub id: Uuid,
    pub created_at: i64,
    pub consumer: ForeignKey,
    pub key: String,
    pub tags: Option<Vec<String>>,
    /// Unix seconds after which the key no longer authenticates: Kong's
    /// `ttl` (given in seconds on a write, shown as the seconds left), kept
    /// as the instant it runs out. `None`: never.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl KeyauthCredential {
    /// Kong's `ttl` at Unix time `now`: the seconds left, 0 once expired.
    pub fn ttl_at(&self, now: i64) -> Option<i64> {
        self.expires_at.map(|at| (at - now).max(0))
    }
}

/// Kong's bounds for a `ttl` option (kong/db/dao/init.lua).
pub const MAX_TTL: i64 = 100_000_000;

/// A basic-auth username and password. `password` holds Kong's hash
/// ([`basic_auth_password_hash`]), never the password itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BasicauthCredential {
    pub id: Uuid,
    pub created_at: i64,
    pub consumer: ForeignKey,
    pub username: String,
    pub password: String,
    pub tags: Option<Vec<String>>,
}

/// A consumer's membership of an ACL group; (consumer, group) is unique.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acl {
    pub id: Uuid,
    pub created_at: i64,
    pub consumer: ForeignKey,
    pub group: String,
    pub tags: Option<Vec<String>>,
}

/// Kong OSS's stored form of a basic-auth password
/// (kong/plugins/basic-auth/crypto.lua): lowercase hex SHA-1 of the password
/// followed by the consumer's id (the salt). Kept exactly so that credentials
/// exported from Kong keep working here and the other way round.
pub fn basic_auth_password_hash(consumer_id: &str, password: &str) -> String {
    let mut digest = Sha1::new();
    digest.update(password.as_bytes());
    digest.update(consumer_id.as_bytes());
    hex::encode(digest.finalize())
}

#[cfg(test)]
mod tests {
    use super::basic_auth_password_hash;

    #[test]
    fn password_hash_is_sha1_of_password_then_consumer_id() {
        // printf '%s' 'secretc5ff5ed0-0d3a-4d2c-8fd4-6c5bb2ed5f35' | sha1sum
        assert_eq!(
            basic_auth_password_hash("c5ff5ed0-0d3a-4d2c-8fd4-6c5bb2ed5f35", "secret"),
            "d9932672224487fd43695612b93bd230475859d9"
        );
    }
}
