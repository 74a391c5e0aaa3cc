//! Microseconds per signature check of the jwt plugin's verifiers, one line
//! per algorithm family, with keys made here (rcgen for EC and Ed25519, the
//! `openssl` command for RSA). Not a test and not a benchmark the suite
//! runs: a number to compare across changes, meaningful only in an
//! optimised build (`cargo run --release -p tollgate-shared --example
//! jwt_verify_timing`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::process::Command;
use std::time::Instant;
use tollgate_shared::entity::JwtAlgorithm;
use tollgate_shared::plugin::Verifier;

const ROUNDS: u32 = 2000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let claims = serde_json::json!({"iss": "timing", "exp": 1_900_000_000});
    let rsa_private = openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
        "",
    )?;
    let rsa_public = openssl(&["pkey", "-pubout"], &rsa_private)?;
    let ec = |alg: &'static rcgen::SignatureAlgorithm| -> Result<(String, String), rcgen::Error> {
        let pair = rcgen::KeyPair::generate_for(alg)?;
        Ok((pair.serialize_pem(), pair.public_key_pem()))
    };
    let p256 = ec(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let p384 = ec(&rcgen::PKCS_ECDSA_P384_SHA384)?;
    let ed = ec(&rcgen::PKCS_ED25519)?;
    let cases = [
        (
            "HS256",
            JwtAlgorithm::HS256,
            Algorithm::HS256,
            EncodingKey::from_secret(b"secret"),
            "secret".to_string(),
        ),
        (
            "RS256",
            JwtAlgorithm::RS256,
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(rsa_private.as_bytes())?,
            rsa_public.clone(),
        ),
        (
            "PS256",
            JwtAlgorithm::PS256,
            Algorithm::PS256,
            EncodingKey::from_rsa_pem(rsa_private.as_bytes())?,
            rsa_public,
        ),
        (
            "ES256",
            JwtAlgorithm::ES256,
            Algorithm::ES256,
            EncodingKey::from_ec_pem(p256.0.as_bytes())?,
            p256.1,
        ),
        (
            "ES384",
            JwtAlgorithm::ES384,
            Algorithm::ES384,
            EncodingKey::from_ec_pem(p384.0.as_bytes())?,
            p384.1,
        ),
        (
            "EdDSA",
            JwtAlgorithm::EdDSA,
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ed.0.as_bytes())?,
            ed.1,
        ),
    ];
    for (name, ours, theirs, signing, material) in cases {
        let token = jsonwebtoken::encode(&Header::new(theirs), &claims, &signing)?;
        let (signed, signature) = token.rsplit_once('.').ok_or("a token has three parts")?;
        let signature = URL_SAFE_NO_PAD.decode(signature)?;
        let verifier = Verifier::public_key(ours, &material)?;
        if !verifier.verify(signed.as_bytes(), &signature) {
            return Err(format!("{name}: the token did not verify").into());
        }
        let start = Instant::now();
        for _ in 0..ROUNDS {
            std::hint::black_box(verifier.verify(signed.as_bytes(), &signature));
        }
        let micros = start.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);
        println!("{name}  {micros:8.1} µs/verify");
    }
    Ok(())
}

fn openssl(args: &[&str], input: &str) -> Result<String, Box<dyn std::error::Error>> {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        // Key generation's progress dots.
        .stderr(std::process::Stdio::null())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("openssl's stdin")?
        .write_all(input.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        return Err(format!("openssl {args:?} failed").into());
    }
    Ok(String::from_utf8(output.stdout)?)
}
