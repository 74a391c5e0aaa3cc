//! Verification keys of JWT credentials: a credential's secret or public key
//! parsed once, for exactly the algorithm the credential names, into the
//! verifier that checks a token's signature. Used by the plugin's compile step
//! and by the `jwt_secrets` schema, so a key the Admin API accepts is a key
//! every data plane can use.
//!
//! Signatures are JOSE's: HMAC bytes, RSASSA-PKCS1-v1_5 or PSS bytes, ECDSA as
//! raw `r || s`, Ed25519's 64 bytes. A signature of the wrong length is a bad
//! signature (Kong answers some of those with an internal assertion, a 500).

use crate::entity::JwtAlgorithm;
use hmac::{Hmac, Mac};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier as _;
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
pub enum Verifier {
    Hs256(Hmac<Sha256>),
    Hs384(Hmac<Sha384>),
    Hs512(Hmac<Sha512>),
    Rs256(rsa::pkcs1v15::VerifyingKey<Sha256>),
    Rs384(rsa::pkcs1v15::VerifyingKey<Sha384>),
    Rs512(rsa::pkcs1v15::VerifyingKey<Sha512>),
    Ps256(rsa::pss::VerifyingKey<Sha256>),
    Ps384(rsa::pss::VerifyingKey<Sha384>),
    Ps512(rsa::pss::VerifyingKey<Sha512>),
    Es256(p256::ecdsa::VerifyingKey),
    Es384(p384::ecdsa::VerifyingKey),
    Es512(p521::ecdsa::VerifyingKey),
    EdDsa(ed25519_dalek::VerifyingKey),
}

impl fmt::Debug for Verifier {
    // Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({})", self.algorithm().as_str())
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
        Ok(match algorithm {
            JwtAlgorithm::HS384 => Verifier::Hs384(Hmac::new_from_slice(secret).map_err(invalid)?),
            JwtAlgorithm::HS512 => Verifier::Hs512(Hmac::new_from_slice(secret).map_err(invalid)?),
            _ => Verifier::Hs256(Hmac::new_from_slice(secret).map_err(invalid)?),
        })
    }

    /// A public-key verifier for `algorithm` from PEM text: `PUBLIC KEY`
    /// (SubjectPublicKeyInfo) for every family, or `RSA PUBLIC KEY` (PKCS#1)
    /// for RSA. The key's type must match the algorithm's family, and an EC
    /// key its curve (P-256 for ES256, P-384 for ES384, P-521 for ES512).
    pub fn public_key(algorithm: JwtAlgorithm, pem: &str) -> Result<Verifier, KeyError> {
        let pem = pem.trim();
        let invalid = |family| KeyError::InvalidPublicKey { family };
        let rsa = || {
            RsaPublicKey::from_public_key_pem(pem)
                .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
                .map_err(|_| invalid("RSA"))
        };
        Ok(match algorithm {
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512 => {
                return Verifier::hmac(algorithm, pem.as_bytes())
            }
            JwtAlgorithm::RS256 => Verifier::Rs256(rsa::pkcs1v15::VerifyingKey::new(rsa()?)),
            JwtAlgorithm::RS384 => Verifier::Rs384(rsa::pkcs1v15::VerifyingKey::new(rsa()?)),
            JwtAlgorithm::RS512 => Verifier::Rs512(rsa::pkcs1v15::VerifyingKey::new(rsa()?)),
            JwtAlgorithm::PS256 => Verifier::Ps256(rsa::pss::VerifyingKey::new(rsa()?)),
            JwtAlgorithm::PS384 => Verifier::Ps384(rsa::pss::VerifyingKey::new(rsa()?)),
            JwtAlgorithm::PS512 => Verifier::Ps512(rsa::pss::VerifyingKey::new(rsa()?)),
            JwtAlgorithm::ES256 => Verifier::Es256(
                p256::PublicKey::from_public_key_pem(pem)
                    .map(p256::ecdsa::VerifyingKey::from)
                    .map_err(|_| invalid("P-256 EC"))?,
            ),
            JwtAlgorithm::ES384 => Verifier::Es384(
                p384::PublicKey::from_public_key_pem(pem)
                    .map(p384::ecdsa::VerifyingKey::from)
                    .map_err(|_| invalid("P-384 EC"))?,
            ),
            JwtAlgorithm::ES512 => Verifier::Es512(
                p521::PublicKey::from_public_key_pem(pem)
                    .ok()
                    .and_then(|key| p521::ecdsa::VerifyingKey::from_affine(*key.as_affine()).ok())
                    .ok_or_else(|| invalid("P-521 EC"))?,
            ),
            JwtAlgorithm::EdDSA => Verifier::EdDsa(
                ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
                    .map_err(|_| invalid("Ed25519"))?,
            ),
        })
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
        Ok(match algorithm {
            JwtAlgorithm::RS256 => Verifier::Rs256(rsa::pkcs1v15::VerifyingKey::new(key)),
            JwtAlgorithm::RS384 => Verifier::Rs384(rsa::pkcs1v15::VerifyingKey::new(key)),
            JwtAlgorithm::RS512 => Verifier::Rs512(rsa::pkcs1v15::VerifyingKey::new(key)),
            JwtAlgorithm::PS256 => Verifier::Ps256(rsa::pss::VerifyingKey::new(key)),
            JwtAlgorithm::PS384 => Verifier::Ps384(rsa::pss::VerifyingKey::new(key)),
            JwtAlgorithm::PS512 => Verifier::Ps512(rsa::pss::VerifyingKey::new(key)),
            _ => return Err(KeyError::InvalidPublicKey { family: "RSA" }),
        })
    }

    /// An ECDSA verifier from a SEC1 point (a JWK's `0x04 || x || y`); the
    /// algorithm fixes the curve.
    pub fn ec_point(algorithm: JwtAlgorithm, sec1: &[u8]) -> Result<Verifier, KeyError> {
        let invalid = |family| KeyError::InvalidPublicKey { family };
        Ok(match algorithm {
            JwtAlgorithm::ES256 => Verifier::Es256(
                p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
                    .map_err(|_| invalid("P-256 EC"))?,
            ),
            JwtAlgorithm::ES384 => Verifier::Es384(
                p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
                    .map_err(|_| invalid("P-384 EC"))?,
            ),
            JwtAlgorithm::ES512 => Verifier::Es512(
                p521::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
                    .map_err(|_| invalid("P-521 EC"))?,
            ),
            _ => return Err(invalid("EC")),
        })
    }

    /// An Ed25519 verifier from the 32-byte public key (a JWK's `x`).
    pub fn ed25519(public: &[u8]) -> Result<Verifier, KeyError> {
        let invalid = KeyError::InvalidPublicKey { family: "Ed25519" };
        let bytes: &[u8; 32] = public.try_into().map_err(|_| invalid.clone())?;
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Verifier::EdDsa)
            .map_err(|_| invalid)
    }

    pub fn algorithm(&self) -> JwtAlgorithm {
        match self {
            Verifier::Hs256(_) => JwtAlgorithm::HS256,
            Verifier::Hs384(_) => JwtAlgorithm::HS384,
            Verifier::Hs512(_) => JwtAlgorithm::HS512,
            Verifier::Rs256(_) => JwtAlgorithm::RS256,
            Verifier::Rs384(_) => JwtAlgorithm::RS384,
            Verifier::Rs512(_) => JwtAlgorithm::RS512,
            Verifier::Ps256(_) => JwtAlgorithm::PS256,
            Verifier::Ps384(_) => JwtAlgorithm::PS384,
            Verifier::Ps512(_) => JwtAlgorithm::PS512,
            Verifier::Es256(_) => JwtAlgorithm::ES256,
            Verifier::Es384(_) => JwtAlgorithm::ES384,
            Verifier::Es512(_) => JwtAlgorithm::ES512,
            Verifier::EdDsa(_) => JwtAlgorithm::EdDSA,
        }
    }

    /// Whether `signature` signs `message` (the token's `header.payload`).
    /// HMAC tags are compared in constant time.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Verifier::Hs256(mac) => mac
                .clone()
                .chain_update(message)
                .verify_slice(signature)
                .is_ok(),
            Verifier::Hs384(mac) => mac
                .clone()
                .chain_update(message)
                .verify_slice(signature)
                .is_ok(),
            Verifier::Hs512(mac) => mac
                .clone()
                .chain_update(message)
                .verify_slice(signature)
                .is_ok(),
            Verifier::Rs256(key) => rsa_pkcs1(key, message, signature),
            Verifier::Rs384(key) => rsa_pkcs1(key, message, signature),
            Verifier::Rs512(key) => rsa_pkcs1(key, message, signature),
            Verifier::Ps256(key) => rsa_pss(key, message, signature),
            Verifier::Ps384(key) => rsa_pss(key, message, signature),
            Verifier::Ps512(key) => rsa_pss(key, message, signature),
            Verifier::Es256(key) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
            Verifier::Es384(key) => p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
            Verifier::Es512(key) => p521::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
            Verifier::EdDsa(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify_strict(message, &sig).is_ok()),
        }
    }
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
