//! Verification keys of JWT credentials: a credential's secret or public key
//! parsed once, for exactly the algorithm the credential names, into the
//! verifier that checks a token's signature. Used by the plugin's compile step
//! and by the `jwt_secrets` schema, so a key the Admin API accepts is a key
//! every data plane can use.
//!
//! Signatures are JOSE's: HMAC bytes, RSASSA-PKCS1-v1_5 or PSS bytes, ECDSA as
//! raw `r || s`, Ed25519's 64 bytes. A signature of the wrong length is a bad
//! signature (Kong answers some of those with an internal assertion, a 500).
//!
//! Which code does the arithmetic: keys are parsed and validated with the
//! RustCrypto crates (the same acceptance rules as the Admin API's schema
//! check), then RS*, PS*, ES256 and ES384 signatures are checked by `ring`,
//! already in the tree as rustls's provider, whose assembly makes these
//! verifications several times cheaper than the pure-Rust ones on the data
//! plane's hot path (see ARCHITECTURE.md for the figures). `ring` has no
//! P-521 and refuses RSA moduli under 2048 bits, so ES512 and such RSA keys
//! stay on RustCrypto, as does Ed25519 (ed25519-dalek's precomputed tables
//! are as fast, and its strict verification rejects small-order keys).

use crate::entity::JwtAlgorithm;
use hmac::{Hmac, Mac};
use ring::signature as ring_sig;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier as _;
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;
use sha2::{Sha256, Sha384, Sha512};
use std::fmt;

/// Why a credential's key cannot verify tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the HMAC secret is empty")]
    EmptySecret,
    #[error("'rsa_public_key' is not a {family} public key in PEM form")]
    InvalidPublicKey { family: &'static str },
}

/// A parsed key bound to one algorithm.
pub struct Verifier {
    algorithm: JwtAlgorithm,
    key: Key,
}

/// The key material in the form its verification code takes.
enum Key {
    Hs256(Hmac<Sha256>),
    Hs384(Hmac<Sha384>),
    Hs512(Hmac<Sha512>),
    /// An RSA key `ring` accepts (2048 to 8192 bits, odd exponent ≥ 3):
    /// the big-endian modulus and exponent, checked against the
    /// algorithm's parameters on every verification (ring keeps no parsed
    /// public key; the parse is a small part of the exponentiation).
    RingRsa {
        params: &'static ring_sig::RsaParameters,
        n: Box<[u8]>,
        e: Box<[u8]>,
    },
    /// ES256/ES384: the uncompressed SEC1 point (whatever form the PEM or
    /// JWK gave), which is what `ring` takes.
    RingEc(ring_sig::UnparsedPublicKey<Box<[u8]>>),
    /// RSA keys `ring` refuses (under 2048 bits): RustCrypto.
    Rs256(rsa::pkcs1v15::VerifyingKey<Sha256>),
    Rs384(rsa::pkcs1v15::VerifyingKey<Sha384>),
    Rs512(rsa::pkcs1v15::VerifyingKey<Sha512>),
    Ps256(rsa::pss::VerifyingKey<Sha256>),
    Ps384(rsa::pss::VerifyingKey<Sha384>),
    Ps512(rsa::pss::VerifyingKey<Sha512>),
    Es512(p521::ecdsa::VerifyingKey),
    EdDsa(ed25519_dalek::VerifyingKey),
}

impl fmt::Debug for Verifier {
    // Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({})", self.algorithm.as_str())
    }
}

impl Verifier {
    /// An HMAC verifier keyed with `secret` (raw bytes, already base64-decoded
    /// when the plugin says so).
    pub fn hmac(algorithm: JwtAlgorithm, secret: &[u8]) -> Result<Verifier, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        // HMAC takes keys of any length, so these cannot fail.
        let invalid = |_| KeyError::EmptySecret;
        let (algorithm, key) = match algorithm {
            JwtAlgorithm::HS384 => (
                JwtAlgorithm::HS384,
                Key::Hs384(Hmac::new_from_slice(secret).map_err(invalid)?),
            ),
            JwtAlgorithm::HS512 => (
                JwtAlgorithm::HS512,
                Key::Hs512(Hmac::new_from_slice(secret).map_err(invalid)?),
            ),
            _ => (
                JwtAlgorithm::HS256,
                Key::Hs256(Hmac::new_from_slice(secret).map_err(invalid)?),
            ),
        };
        Ok(Verifier { algorithm, key })
    }

    /// A public-key verifier for `algorithm` from PEM text: `PUBLIC KEY`
    /// (SubjectPublicKeyInfo) for every family, or `RSA PUBLIC KEY` (PKCS#1)
    /// for RSA. The key's type must match the algorithm's family, and an EC
    /// key its curve (P-256 for ES256, P-384 for ES384, P-521 for ES512).
    pub fn public_key(algorithm: JwtAlgorithm, pem: &str) -> Result<Verifier, KeyError> {
        let pem = pem.trim();
        let invalid = |family| KeyError::InvalidPublicKey { family };
        let key = match algorithm {
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512 => {
                return Verifier::hmac(algorithm, pem.as_bytes())
            }
            JwtAlgorithm::RS256
            | JwtAlgorithm::RS384
            | JwtAlgorithm::RS512
            | JwtAlgorithm::PS256
            | JwtAlgorithm::PS384
            | JwtAlgorithm::PS512 => {
                let key = RsaPublicKey::from_public_key_pem(pem)
                    .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
                    .map_err(|_| invalid("RSA"))?;
                return Verifier::rsa(algorithm, key);
            }
            JwtAlgorithm::ES256 => p256::PublicKey::from_public_key_pem(pem)
                .map(|key| {
                    ring_ec(
                        p256::ecdsa::VerifyingKey::from(key)
                            .to_encoded_point(false)
                            .as_bytes(),
                    )
                })
                .map_err(|_| invalid("P-256 EC"))?,
            JwtAlgorithm::ES384 => p384::PublicKey::from_public_key_pem(pem)
                .map(|key| {
                    ring_ec(
                        p384::ecdsa::VerifyingKey::from(key)
                            .to_encoded_point(false)
                            .as_bytes(),
                    )
                })
                .map_err(|_| invalid("P-384 EC"))?,
            JwtAlgorithm::ES512 => Key::Es512(
                p521::PublicKey::from_public_key_pem(pem)
                    .ok()
                    .and_then(|key| p521::ecdsa::VerifyingKey::from_affine(*key.as_affine()).ok())
                    .ok_or_else(|| invalid("P-521 EC"))?,
            ),
            JwtAlgorithm::EdDSA => Key::EdDsa(
                ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
                    .map_err(|_| invalid("Ed25519"))?,
            ),
        };
        Ok(Verifier { algorithm, key })
    }

    /// An RSA verifier from the big-endian modulus and exponent (a JWK's
    /// `n` and `e`), for an RS* or PS* algorithm.
    pub fn rsa_components(
        algorithm: JwtAlgorithm,
        modulus: &[u8],
        exponent: &[u8],
    ) -> Result<Verifier, KeyError> {
        let key = RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(modulus),
            rsa::BigUint::from_bytes_be(exponent),
        )
        .map_err(|_| KeyError::InvalidPublicKey { family: "RSA" })?;
        Verifier::rsa(algorithm, key)
    }

    /// An RSA key RustCrypto accepted, on `ring` when it takes it.
    fn rsa(algorithm: JwtAlgorithm, key: RsaPublicKey) -> Result<Verifier, KeyError> {
        let params: &'static ring_sig::RsaParameters = match algorithm {
            JwtAlgorithm::RS256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
            JwtAlgorithm::RS384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
            JwtAlgorithm::RS512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
            JwtAlgorithm::PS256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
            JwtAlgorithm::PS384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
            JwtAlgorithm::PS512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
            _ => return Err(KeyError::InvalidPublicKey { family: "RSA" }),
        };
        let (n, e) = (key.n().to_bytes_be(), key.e().to_bytes_be());
        if ring_takes_rsa(&n, &e) {
            let key = Key::RingRsa {
                params,
                n: n.into_boxed_slice(),
                e: e.into_boxed_slice(),
            };
            return Ok(Verifier { algorithm, key });
        }
        let key = match algorithm {
            JwtAlgorithm::RS256 => Key::Rs256(rsa::pkcs1v15::VerifyingKey::new(key)),
            JwtAlgorithm::RS384 => Key::Rs384(rsa::pkcs1v15::VerifyingKey::new(key)),
            JwtAlgorithm::RS512 => Key::Rs512(rsa::pkcs1v15::VerifyingKey::new(key)),
            JwtAlgorithm::PS256 => Key::Ps256(rsa::pss::VerifyingKey::new(key)),
            JwtAlgorithm::PS384 => Key::Ps384(rsa::pss::VerifyingKey::new(key)),
            _ => Key::Ps512(rsa::pss::VerifyingKey::new(key)),
        };
        Ok(Verifier { algorithm, key })
    }

    /// An ECDSA verifier from a SEC1 point (a JWK's `0x04 || x || y`); the
    /// algorithm fixes the curve.
    pub fn ec_point(algorithm: JwtAlgorithm, sec1: &[u8]) -> Result<Verifier, KeyError> {
        let invalid = |family| KeyError::InvalidPublicKey { family };
        let key = match algorithm {
            JwtAlgorithm::ES256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
                .map(|key| ring_ec(key.to_encoded_point(false).as_bytes()))
                .map_err(|_| invalid("P-256 EC"))?,
            JwtAlgorithm::ES384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
                .map(|key| ring_ec(key.to_encoded_point(false).as_bytes()))
                .map_err(|_| invalid("P-384 EC"))?,
            JwtAlgorithm::ES512 => Key::Es512(
                p521::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
                    .map_err(|_| invalid("P-521 EC"))?,
            ),
            _ => return Err(invalid("EC")),
        };
        Ok(Verifier { algorithm, key })
    }

    /// An Ed25519 verifier from the 32-byte public key (a JWK's `x`).
    pub fn ed25519(public: &[u8]) -> Result<Verifier, KeyError> {
        let invalid = KeyError::InvalidPublicKey { family: "Ed25519" };
        let bytes: &[u8; 32] = public.try_into().map_err(|_| invalid.clone())?;
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(|key| Verifier {
                algorithm: JwtAlgorithm::EdDSA,
                key: Key::EdDsa(key),
            })
            .map_err(|_| invalid)
    }

    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// Whether `signature` signs `message` (the token's `header.payload`).
    /// HMAC tags are compared in constant time.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.key {
            Key::Hs256(mac) => mac
                .clone()
                .chain_update(message)
                .verify_slice(signature)
                .is_ok(),
            Key::Hs384(mac) => mac
                .clone()
                .chain_update(message)
                .verify_slice(signature)
                .is_ok(),
            Key::Hs512(mac) => mac
                .clone()
                .chain_update(message)
                .verify_slice(signature)
                .is_ok(),
            Key::RingRsa { params, n, e } => ring_sig::RsaPublicKeyComponents { n, e }
                .verify(params, message, signature)
                .is_ok(),
            Key::RingEc(key) => key.verify(message, signature).is_ok(),
            Key::Rs256(key) => rsa_pkcs1(key, message, signature),
            Key::Rs384(key) => rsa_pkcs1(key, message, signature),
            Key::Rs512(key) => rsa_pkcs1(key, message, signature),
            Key::Ps256(key) => rsa_pss(key, message, signature),
            Key::Ps384(key) => rsa_pss(key, message, signature),
            Key::Ps512(key) => rsa_pss(key, message, signature),
            Key::Es512(key) => p521::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
            Key::EdDsa(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify_strict(message, &sig).is_ok()),
        }
    }

    /// Whether `ring` checks this verifier's signatures (for tests).
    #[cfg(test)]
    pub(crate) fn on_ring(&self) -> bool {
        matches!(self.key, Key::RingRsa { .. } | Key::RingEc(_))
    }
}

/// What `ring`'s RSA verification accepts (its `PublicModulus` and
/// `PublicExponent` rules): an odd modulus of 2048 to 8192 bits and an odd
/// exponent from 3 to 2^33 - 1. Anything else RustCrypto accepted stays
/// there, so no key the schema let in stops verifying.
fn ring_takes_rsa(n: &[u8], e: &[u8]) -> bool {
    let odd = |bytes: &[u8]| bytes.last().is_some_and(|b| b & 1 == 1);
    let n_bits = key_bits(n);
    let e_value = (e.len() <= 8).then(|| e.iter().fold(0u64, |v, b| v << 8 | u64::from(*b)));
    (2048..=8192).contains(&n_bits)
        && odd(n)
        && e_value.is_some_and(|e| e & 1 == 1 && (3..1 << 33).contains(&e))
}

/// The bit length of a big-endian unsigned integer.
fn key_bits(bytes: &[u8]) -> usize {
    let bytes = match bytes.iter().position(|b| *b != 0) {
        Some(first) => &bytes[first..],
        None => return 0,
    };
    bytes.len() * 8 - bytes.first().map_or(0, |b| b.leading_zeros() as usize)
}

/// An ES256/ES384 key for `ring`, from its uncompressed SEC1 encoding
/// (which `ring` checks again on each verification, a point-on-curve test
/// that is a small part of the signature check).
fn ring_ec(uncompressed: &[u8]) -> Key {
    let bytes: Box<[u8]> = uncompressed.into();
    let algorithm: &'static ring_sig::EcdsaVerificationAlgorithm = match bytes.len() {
        // 0x04 || x || y: 65 bytes on P-256, 97 on P-384.
        65 => &ring_sig::ECDSA_P256_SHA256_FIXED,
        _ => &ring_sig::ECDSA_P384_SHA384_FIXED,
    };
    Key::RingEc(ring_sig::UnparsedPublicKey::new(algorithm, bytes))
}

fn rsa_pkcs1<D>(key: &rsa::pkcs1v15::VerifyingKey<D>, message: &[u8], signature: &[u8]) -> bool
where
    D: sha2::Digest + rsa::pkcs8::AssociatedOid,
{
    rsa::pkcs1v15::Signature::try_from(signature).is_ok_and(|sig| key.verify(message, &sig).is_ok())
}

fn rsa_pss<D>(key: &rsa::pss::VerifyingKey<D>, message: &[u8], signature: &[u8]) -> bool
where
    D: sha2::Digest + sha2::digest::FixedOutputReset,
{
    rsa::pss::Signature::try_from(signature).is_ok_and(|sig| key.verify(message, &sig).is_ok())
}

/// Whether `pem` is a public key usable with `algorithm` (the `jwt_secrets`
/// schema's check; HMAC algorithms take no public key).
pub fn public_key_parses(algorithm: JwtAlgorithm, pem: &str) -> bool {
    algorithm.is_hmac() || Verifier::public_key(algorithm, pem).is_ok()
}
