//! The tokens one jwt instance has already verified against a credential, so
//! a client that sends the same token again (every request of a session)
//! costs a map lookup instead of base64, two JSON documents and a signature.
//!
//! What is remembered is only what the verdict depends on besides the
//! token's bytes: the credential's `key` and the numeric `exp` and `nbf`
//! claims, because those are judged against the clock on every request. A
//! token is the key, compared whole, so only a byte-identical token can hit;
//! its signature was checked with a key that cannot change while this
//! instance lives (a new config compiles new instances with empty caches).
//! Failures are never remembered. Memory is bounded: tokens longer than
//! [`MAX_TOKEN_LEN`] are not kept, and a full cache is emptied before it
//! takes a new token.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

/// Tokens kept per instance.
pub(super) const MAX_ENTRIES: usize = 4096;
/// Longer tokens are verified every time (they are rare, and the cache's
/// memory stays below `MAX_ENTRIES * MAX_TOKEN_LEN`).
pub(super) const MAX_TOKEN_LEN: usize = 2048;

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
    /// The credential's `key` (its index key).
    credential_key: Box<str>,
    claims: TimeClaims,
}

/// Verified tokens by their bytes.
#[derive(Debug, Default)]
pub(super) struct VerifiedTokens {
    entries: RwLock<HashMap<Box<[u8]>, Entry>>,
}

impl VerifiedTokens {
    /// The credential key and time claims of `token` if it was verified
    /// before, handed to `found` while the cache is read-locked.
    pub(super) fn lookup<R>(
        &self,
        token: &[u8],
        found: impl FnOnce(&str, TimeClaims) -> R,
    ) -> Option<R> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(token)
            .map(|entry| found(&entry.credential_key, entry.claims))
    }

    /// Remembers that `token` verified against the credential `key`.
    pub(super) fn remember(&self, token: &[u8], credential_key: &str, claims: TimeClaims) {
        if token.len() > MAX_TOKEN_LEN {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(token) {
            entries.clear();
        }
        entries.insert(
            token.into(),
            Entry {
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
