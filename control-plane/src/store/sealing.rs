//! Secrets at rest: with a keyring (`--secrets-key-file`), the store seals the
//! secret fields of an entity (jwt `secret`, certificate `key`/`key_alt`, a
//! plugin's `config.redis.password`, a key-auth `key`, a basic-auth password
//! hash) with AES-256-GCM before they reach the
//! database, and opens them on the way out. Everything above the store sees
//! plaintext; the database, its dumps and backups see `$tg1$<key id>$<base64>`.
//!
//! The first key in the file seals; every key opens, so keys rotate by adding
//! a new first line. The AAD binds a value to its table, row and field, so a
//! sealed value copied elsewhere does not open.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;
use tollgate_shared::EntityKind;

/// How every sealed value starts.
pub(super) const PREFIX: &str = "$tg1$";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("--secrets-key-file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("{field} of {table} {id} is sealed with key {key_id}, which the keyring lacks")]
    UnknownKey {
        table: &'static str,
        id: String,
        field: String,
        key_id: String,
    },
    #[error("{field} of {table} {id} is sealed but no --secrets-key-file is configured")]
    NoKeyring {
        table: &'static str,
        id: String,
        field: String,
    },
    #[error("{field} of {table} {id} does not open (tampered or wrong key)")]
    Tampered {
        table: &'static str,
        id: String,
        field: String,
    },
    #[error("no randomness for a nonce")]
    Random,
}

struct SealingKey {
    id: String,
    key: LessSafeKey,
}

/// The keys secrets are sealed with; the first one seals.
pub struct Keyring {
    keys: Vec<SealingKey>,
    random: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// Reads a key file: one base64 32-byte key per line, `#` comments allowed.
    pub fn from_file(path: &Path) -> Result<Keyring, SealError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SealError::KeyFile {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        Keyring::parse(&text).map_err(|reason| SealError::KeyFile {
            path: shown,
            reason,
        })
    }

    /// Parses key file text.
    pub fn parse(text: &str) -> Result<Keyring, String> {
        use base64::Engine;
        let mut keys = Vec::new();
        for (index, line) in text.lines().map(str::trim).enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(line)
                .map_err(|_| format!("line {}: not base64", index + 1))?;
            if bytes.len() != 32 {
                return Err(format!(
                    "line {}: a key must be 32 bytes (try `head -c 32 /dev/urandom | base64`)",
                    index + 1
                ));
            }
            let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| format!("line {}: unusable key", index + 1))?;
            keys.push(SealingKey {
                id: hex::encode(&Sha256::digest(&bytes)[..4]),
                key: LessSafeKey::new(unbound),
            });
        }
        if keys.is_empty() {
            return Err("holds no key".into());
        }
        Ok(Keyring {
            keys,
            random: SystemRandom::new(),
        })
    }

    /// The id of the sealing key (shown, never the key).
    pub fn active_key_id(&self) -> &str {
        self.keys.first().map(|k| k.id.as_str()).unwrap_or_default()
    }

    fn seal(&self, aad: &str, plaintext: &str) -> Result<String, SealError> {
        use base64::Engine;
        let key = self.keys.first().ok_or(SealError::Random)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut buffer = plaintext.as_bytes().to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| SealError::Random)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&buffer);
        Ok(format!(
            "{PREFIX}{}${}",
            key.id,
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(sealed)
        ))
    }
}

/// Where secrets sit in each kind of entity.
fn secret_paths(kind: EntityKind) -> &'static [&'static [&'static str]] {
    match kind {
        EntityKind::JwtSecrets => &[&["secret"]],
        EntityKind::Certificates => &[&["key"], &["key_alt"]],
        EntityKind::Plugins => &[&["config", "redis", "password"]],
        EntityKind::KeyauthCredentials => &[&["key"]],
        // Kong's hash, which an offline guess could still be checked against.
        EntityKind::BasicauthCredentials => &[&["password"]],
        _ => &[],
    }
}

/// Whether entities of `kind` have fields that are sealed at rest.
pub(super) fn has_secret_fields(kind: EntityKind) -> bool {
    !secret_paths(kind).is_empty()
}

fn slot<'a>(entity: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    let mut current = entity;
    for step in path {
        current = current.as_object_mut()?.get_mut(*step)?;
    }
    Some(current)
}

fn aad(kind: EntityKind, id: &str, path: &[&str]) -> String {
    format!("{}:{id}:{}", kind.table_name(), path.join("."))
}

fn entity_id(entity: &Value) -> String {
    entity
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The entity as it is written to the database.
pub fn seal_entity(
    keyring: Option<&Keyring>,
    kind: EntityKind,
    entity: &Value,
) -> Result<Value, SealError> {
    let mut out = entity.clone();
    let Some(keyring) = keyring else {
        return Ok(out);
    };
    let id = entity_id(entity);
    for path in secret_paths(kind) {
        if let Some(value) = slot(&mut out, path) {
            if let Value::String(plain) = value {
                if !plain.starts_with(PREFIX) {
                    *value = Value::String(keyring.seal(&aad(kind, &id, path), plain)?);
                }
            }
        }
    }
    Ok(out)
}

/// The entity as read from the database, secrets opened.
pub fn open_entity(
    keyring: Option<&Keyring>,
    kind: EntityKind,
    mut entity: Value,
) -> Result<Value, SealError> {
    use base64::Engine;
    let id = entity_id(&entity);
    for path in secret_paths(kind) {
        let Some(value) = slot(&mut entity, path) else {
            continue;
        };
        let Some(sealed) = value.as_str().and_then(|s| s.strip_prefix(PREFIX)) else {
            continue;
        };
        let field = path.join(".");
        let Some(keyring) = keyring else {
            return Err(SealError::NoKeyring {
                table: kind.table_name(),
                id,
                field,
            });
        };
        let tampered = || SealError::Tampered {
            table: kind.table_name(),
            id: id.clone(),
            field: field.clone(),
        };
        let (key_id, payload) = sealed.split_once('$').ok_or_else(tampered)?;
        let key = keyring
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| SealError::UnknownKey {
                table: kind.table_name(),
                id: id.clone(),
                field: field.clone(),
                key_id: key_id.to_string(),
            })?;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(payload)
            .map_err(|_| tampered())?;
        if bytes.len() < NONCE_LEN {
            return Err(tampered());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| tampered())?;
        let mut buffer = ciphertext.to_vec();
        let plain = key
            .key
            .open_in_place(
                nonce,
                Aad::from(aad(kind, &id, path).as_bytes()),
                &mut buffer,
            )
            .map_err(|_| tampered())?;
        let plain = String::from_utf8(plain.to_vec()).map_err(|_| tampered())?;
        *value = Value::String(plain);
    }
    Ok(entity)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    const KEY_A: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const KEY_B: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

    #[test]
    fn seal_open_rotate() {
        let a = Keyring::parse(KEY_A).unwrap();
        let jwt = json!({"id": "j1", "key": "k", "secret": "s3cr3t"});
        let sealed = seal_entity(Some(&a), EntityKind::JwtSecrets, &jwt).unwrap();
        let stored = sealed["secret"].as_str().unwrap();
        assert!(stored.starts_with("$tg1$"));
        assert!(!stored.contains("s3cr3t"));
        assert_eq!(sealed["key"], "k");
        // sealing twice gives different ciphertexts (random nonces)
        let again = seal_entity(Some(&a), EntityKind::JwtSecrets, &jwt).unwrap();
        assert_ne!(again["secret"], sealed["secret"]);
        assert_eq!(
            open_entity(Some(&a), EntityKind::JwtSecrets, sealed.clone()).unwrap(),
            jwt
        );

        // a new first key seals; the old one still opens
        let rotated = Keyring::parse(&format!("# new first\n{KEY_B}\n{KEY_A}\n")).unwrap();
        assert_ne!(rotated.active_key_id(), a.active_key_id());
        assert_eq!(
            open_entity(Some(&rotated), EntityKind::JwtSecrets, sealed.clone()).unwrap(),
            jwt
        );
        let b_only = Keyring::parse(KEY_B).unwrap();
        assert!(matches!(
            open_entity(Some(&b_only), EntityKind::JwtSecrets, sealed.clone()),
            Err(SealError::UnknownKey { .. })
        ));
        assert!(matches!(
            open_entity(None, EntityKind::JwtSecrets, sealed.clone()),
            Err(SealError::NoKeyring { .. })
        ));
        // bound to its row: moved to another id it does not open
        let mut moved = sealed.clone();
        moved["id"] = json!("j2");
        assert!(matches!(
            open_entity(Some(&a), EntityKind::JwtSecrets, moved),
            Err(SealError::Tampered { .. })
        ));
        // plaintext rows written before sealing was enabled still read
        assert_eq!(
            open_entity(Some(&a), EntityKind::JwtSecrets, jwt.clone()).unwrap(),
            jwt
        );
    }

    #[test]
    fn nested_and_absent_fields() {
        let a = Keyring::parse(KEY_A).unwrap();
        let plugin = json!({"id": "p", "config": {"redis": {"host": "h", "password": "pw"}}});
        let sealed = seal_entity(Some(&a), EntityKind::Plugins, &plugin).unwrap();
        assert_ne!(sealed["config"]["redis"]["password"], "pw");
        assert_eq!(
            open_entity(Some(&a), EntityKind::Plugins, sealed).unwrap(),
            plugin
        );
        let no_password = json!({"id": "p", "config": {"redis": {"password": null}}});
        assert_eq!(
            seal_entity(Some(&a), EntityKind::Plugins, &no_password).unwrap(),
            no_password
        );
        let cert = json!({"id": "c", "cert": "C", "key": "K", "key_alt": null});
        let sealed = seal_entity(Some(&a), EntityKind::Certificates, &cert).unwrap();
        assert_eq!(sealed["cert"], "C");
        assert_eq!(sealed["key_alt"], Value::Null);
        assert_eq!(
            open_entity(Some(&a), EntityKind::Certificates, sealed).unwrap(),
            cert
        );
    }

    #[test]
    fn bad_key_files() {
        for (text, want) in [
            ("", "holds no key"),
            ("not base64!", "not base64"),
            ("c2hvcnQ=", "32 bytes"),
        ] {
            let err = Keyring::parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
