//! The tokens one jwt instance has already verified against a credential, so
//! a client that sends the same token again (every request of a session)
//! costs a map lookup instead of base64, two JSON documents and a signature.
//!
//! What is remembered is only what the verdict depends on besides the
//! token's bytes: the credential's `key` and the numeric `exp` and `nbf`
//! claims, because those are judged against the clock on every request.
//! Entries are found by a keyed hash of the token's length and last
//! [`HASHED_SUFFIX`] bytes (inside the signature, which a client cannot
//! choose without the credential's key; the hash is a folded multiply of
//! those bytes with two random words of the instance, so even a credential
//! holder cannot aim tokens at one bucket), then the token is compared
//! whole, so only a byte-identical token can hit;
//! its signature was checked with a key that cannot change while this
//! instance lives (a new config compiles new instances with empty caches).
//! Failures are never remembered. Memory is bounded: tokens longer than
//! [`MAX_TOKEN_LEN`] are not kept, and a full cache is emptied before it
//! takes a new token.

use crate::router::FastHash;
use serde_json::{Map, Value};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{PoisonError, RwLock};

/// Tokens kept per instance.
pub(super) const MAX_ENTRIES: usize = 4096;
/// Longer tokens are verified every time (they are rare, and the cache's
/// memory stays below `MAX_ENTRIES * MAX_TOKEN_LEN`).
pub(super) const MAX_TOKEN_LEN: usize = 2048;
/// Bytes at the end of a token that its cache key hashes: hashing the
/// whole token (a few hundred bytes) was most of a cached lookup.
const HASHED_SUFFIX: usize = 16;

/// The claims a verified token is judged by on each request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct TimeClaims {
    /// `exp` when it is a JSON number.
    pub exp: Option<f64>,
    /// `nbf` when it is a JSON number.
    pub nbf: Option<f64>,
}

impl TimeClaims {
    pub(super) fn of(claims: &Map<String, Value>) -> TimeClaims {
        let number = |name: &str| claims.get(name).and_then(Value::as_f64);
        TimeClaims {
            exp: number("exp"),
            nbf: number("nbf"),
        }
    }
}

#[derive(Debug)]
struct Entry {
    token: Box<[u8]>,
    /// The credential's `key` (its index key).
    credential_key: Box<str>,
    claims: TimeClaims,
}

/// Verified tokens by the keyed hash of their suffix; the hash is the map's
/// key as it is (`FastHash` only mixes it).
#[derive(Debug)]
pub(super) struct VerifiedTokens {
    /// The hash's key: random per instance.
    seeds: [u64; 2],
    entries: RwLock<HashMap<u64, Entry, FastHash>>,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        // std's RandomState draws its keys from the OS once per process and
        // varies them per instance: hashing two numbers gives two random words.
        let random = RandomState::new();
        VerifiedTokens {
            seeds: [random.hash_one(0u8), random.hash_one(1u8)],
            entries: RwLock::default(),
        }
    }
}

impl VerifiedTokens {
    /// The credential key and time claims of `token` if it was verified
    /// before, handed to `found` while the cache is read-locked.
    pub(super) fn lookup<R>(
        &self,
        token: &[u8],
        found: impl FnOnce(&str, TimeClaims) -> R,
    ) -> Option<R> {
        let key = self.key(token);
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(&key)
            .filter(|entry| *entry.token == *token)
            .map(|entry| found(&entry.credential_key, entry.claims))
    }

    fn key(&self, token: &[u8]) -> u64 {
        let suffix = &token[token.len().saturating_sub(HASHED_SUFFIX)..];
        let mut words = [0u8; HASHED_SUFFIX];
        words[HASHED_SUFFIX - suffix.len()..].copy_from_slice(suffix);
        let [low, high] = [&words[..8], &words[8..]].map(|bytes| {
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            u64::from_le_bytes(word)
        });
        let [seed_low, seed_high] = self.seeds;
        let length = token.len() as u64;
        folded_multiply(
            folded_multiply(low ^ seed_low, high ^ seed_high),
            length ^ seed_low.rotate_left(32),
        )
    }

    /// Remembers that `token` verified against the credential `key`.
    pub(super) fn remember(&self, token: &[u8], credential_key: &str, claims: TimeClaims) {
        if token.len() > MAX_TOKEN_LEN {
            return;
        }
        let key = self.key(token);
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.clear();
        }
        // A token whose key another one holds replaces it.
        entries.insert(
            key,
            Entry {
                token: token.into(),
                credential_key: credential_key.into(),
                claims,
            },
        );
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The 128-bit product of `a` and `b`, its halves combined: every input
/// bit reaches many output bits (the mixing step of foldhash and wyhash).
fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const CLAIMS: TimeClaims = TimeClaims {
        exp: Some(10.0),
        nbf: None,
    };

    #[test]
    fn only_the_same_bytes_hit() {
        let cache = VerifiedTokens::default();
        cache.remember(b"a.b.c", "issuer", CLAIMS);
        assert_eq!(
            cache.lookup(b"a.b.c", |key, claims| (key.to_string(), claims)),
            Some(("issuer".to_string(), CLAIMS))
        );
        assert_eq!(cache.lookup(b"a.b.d", |_, _| ()), None);
        assert_eq!(cache.lookup(b"a.b.c ", |_, _| ()), None);
    }

    #[test]
    fn tokens_that_share_their_hashed_suffix_are_told_apart() {
        let cache = VerifiedTokens::default();
        let suffix = "s".repeat(HASHED_SUFFIX);
        let first = format!("header-one.{suffix}");
        let forged = format!("header-two.{suffix}");
        assert_eq!(first.len(), forged.len());
        cache.remember(first.as_bytes(), "issuer", CLAIMS);
        assert_eq!(cache.lookup(forged.as_bytes(), |_, _| ()), None);
        assert!(cache.lookup(first.as_bytes(), |_, _| ()).is_some());
        // The second token takes the first one's place; the first misses.
        cache.remember(forged.as_bytes(), "other", CLAIMS);
        assert_eq!(
            cache.lookup(forged.as_bytes(), |key, _| key.to_string()),
            Some("other".to_string())
        );
        assert_eq!(cache.lookup(first.as_bytes(), |_, _| ()), None);
    }

    #[test]
    fn bounded_in_entries_and_token_length() {
        let cache = VerifiedTokens::default();
        cache.remember(&vec![b'x'; MAX_TOKEN_LEN + 1], "issuer", CLAIMS);
        assert_eq!(cache.len(), 0);
        for i in 0..MAX_ENTRIES + 10 {
            cache.remember(format!("token-{i}").as_bytes(), "issuer", CLAIMS);
            assert!(cache.len() <= MAX_ENTRIES);
        }
        // The newest token is always kept.
        let last = format!("token-{}", MAX_ENTRIES + 9);
        assert!(cache.lookup(last.as_bytes(), |_, _| ()).is_some());
    }

    #[test]
    fn time_claims_are_numbers_only() {
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"exp": "10", "nbf": 5.5}"#).unwrap();
        assert_eq!(
            TimeClaims::of(&claims),
            TimeClaims {
                exp: None,
                nbf: Some(5.5)
            }
        );
    }
}
