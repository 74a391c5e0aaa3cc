//! Consumers, JWT credentials, certificates and SNIs.

use super::{expect_errors, invalid, valid, CONSUMER_ID};
use serde_json::{json, Value};
use tollgate_shared::entity::JwtAlgorithm;
use tollgate_shared::EntityKind::{Certificates, Consumers, JwtSecrets, Snis};
use tollgate_shared::{Certificate, Consumer, JwtSecret, Sni};

const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA43SAtjI/Pibh4bgwJ2gf
bR4WPQ4NTHpy/T4cNKwXUB2YQ449p/mXbI1pX8UwqVheOYFE8tM2rU2d7TG4+I33
cLpI9mxGl/MsOoa/wLbXdMYxJFgourW8PXK+DvWjG9TJ6aBzWUVmH778/T2dMATg
FnouOsS0vx/yVazx8+058GIIFRinz5wO8GMhxgk4dxunPUwkgt9OoE/DbM4ifUwO
+Y1riR8/gT2rWTdd47zO5lwJzQeeI0l62y9yM+JoHw3aG2vnqTh43lK3g396Mj6Q
eJuZHTfyNjXLrHi4LDl1Cqb6PF4IrQK2uHxY88ryhQ9UnjPpXywkkgFTKk4TW73b
OwIDAQAB
-----END PUBLIC KEY-----
";

const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEVKgPPfyeS47FOAnM1Z+sIvzPrInP
FIUhw0M8GT0Umu4y7+rNKWWsB70p/vZ8zAbONQ8GsfY3mZWTlT/feDCT7Q==
-----END PUBLIC KEY-----
";

const EC_P384_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE9Nt7PPoWzJsJY9XlXVYTQjhTbxx/uZPd
BNvhVfRpan87pFHu6Q2vMnbaQenF6zXaQB+pre9n97RooKk8P+70XLaFaCJb6bgT
O/dmP/JW4b1jjBX90ku7aMTK2BTZ7i7a
-----END PUBLIC KEY-----
";

const EC_P521_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIGbMBAGByqGSM49AgEGBSuBBAAjA4GGAAQAt29SMX6orr3sYF9JYrHvLjQ+iSCu
CVgCwL9L1uydB5xwPPc7uXstvXuDoR94w3BrqqkK59/gwAcfYlMSSfZxQTMB2nQQ
l1FrVFPeU4a+tYfVcC4WDe7epedJOug5vYWzFd4YP9YG1lgeJ2t6R3pNp0/th0py
JwAhl/9n/G/rsxHohTM=
-----END PUBLIC KEY-----
";

const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA+gsgqwFmYe/kEPyiDxVKDUe+fvfViQH0GErWaGl291o=
-----END PUBLIC KEY-----
";

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

#[test]
fn consumer_needs_username_or_custom_id() {
    let (fields, message) = invalid(Consumers, json!({}));
    assert_eq!(
        fields,
        json!({"@entity": ["at least one of these fields must be non-empty: 'custom_id', 'username'"]})
    );
    assert_eq!(
        message,
        "schema violation (at least one of these fields must be non-empty: 'custom_id', 'username')"
    );
    expect_errors(
        Consumers,
        vec![
            (
                json!({"username": ""}),
                json!({"username": "length must be at least 1", "@entity": ["at least one of these fields must be non-empty: 'custom_id', 'username'"]}),
            ),
            (
                json!({"username": 1}),
                json!({"username": "expected a string"}),
            ),
            (
                json!({"username": "a", "type": 0}),
                json!({"type": "unknown field"}),
            ),
        ],
    );
    for input in [
        json!({"username": "api-client-1"}),
        json!({"custom_id": "c-1"}),
    ] {
        let out = valid(Consumers, input.clone());
        let consumer: Consumer = serde_json::from_value(out.clone()).unwrap();
        assert_eq!(consumer.username.as_deref(), input["username"].as_str());
        assert_eq!(out["tags"], Value::Null);
        assert!(out["updated_at"].is_i64());
    }
}

#[test]
fn jwt_secret_defaults_generate_key_and_secret() {
    let a = valid(JwtSecrets, json!({"consumer": {"id": CONSUMER_ID}}));
    let b = valid(JwtSecrets, json!({"consumer": {"id": CONSUMER_ID}}));
    for out in [&a, &b] {
        for field in ["key", "secret"] {
            let value = out[field].as_str().unwrap();
            assert_eq!(value.len(), 32, "{field}");
            assert!(
                value.chars().all(|c| c.is_ascii_alphanumeric()),
                "{field}: {value}"
            );
        }
        assert_eq!(out["algorithm"], json!("HS256"));
        assert_eq!(out["rsa_public_key"], Value::Null);
        assert!(
            out.get("updated_at").is_none(),
            "jwt_secrets have no updated_at"
        );
        assert!(out["created_at"].is_i64());
    }
    assert_ne!(a["key"], b["key"], "keys are random");
    assert_ne!(a["secret"], b["secret"], "secrets are random");
    assert_ne!(a["key"], a["secret"]);
    let secret: JwtSecret = serde_json::from_value(a).unwrap();
    assert_eq!(secret.algorithm, JwtAlgorithm::HS256);

    let out = valid(
        JwtSecrets,
        json!({"consumer": {"id": CONSUMER_ID}, "key": "iss-1", "secret": "s3cr3t"}),
    );
    assert_eq!(
        (out["key"].as_str(), out["secret"].as_str()),
        (Some("iss-1"), Some("s3cr3t"))
    );
}

#[test]
fn jwt_secret_field_rules() {
    expect_errors(
        JwtSecrets,
        vec![
            (json!({}), json!({"consumer": "required field missing"})),
            (
                json!({"consumer": {"id": "x"}}),
                json!({"consumer": {"id": "expected a valid UUID"}}),
            ),
            (
                json!({"consumer": {"id": CONSUMER_ID}, "algorithm": "HS1"}),
                json!({"algorithm": "expected one of: HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512, EdDSA"}),
            ),
            (
                json!({"consumer": {"id": CONSUMER_ID}, "updated_at": 1}),
                json!({"updated_at": "unknown field"}),
            ),
        ],
    );
}

#[test]
fn public_key_algorithms_require_a_parsable_key() {
    let required = json!({
        "rsa_public_key": "required field missing",
        "@entity": ["failed conditional validation given value of field 'algorithm'"],
    });
    let invalid_key = json!({
        "rsa_public_key": "invalid key",
        "@entity": ["failed conditional validation given value of field 'algorithm'"],
    });
    let cases: Vec<(&str, &str)> = vec![
        ("RS256", RSA_PUBLIC),
        ("RS384", RSA_PUBLIC),
        ("RS512", RSA_PUBLIC),
        ("PS256", RSA_PUBLIC),
        ("PS384", RSA_PUBLIC),
        ("PS512", RSA_PUBLIC),
        ("ES256", EC_PUBLIC),
        ("ES384", EC_P384_PUBLIC),
        ("ES512", EC_P521_PUBLIC),
        ("EdDSA", ED_PUBLIC),
    ];
    for (algorithm, good_key) in cases {
        let base = json!({"consumer": {"id": CONSUMER_ID}, "algorithm": algorithm});
        let (fields, message) = invalid(JwtSecrets, base.clone());
        assert_eq!(fields, required, "{algorithm} without key");
        assert_eq!(
            message,
            "2 schema violations (failed conditional validation given value of field 'algorithm'; rsa_public_key: required field missing)"
        );
        let mut bad = base.clone();
        bad["rsa_public_key"] =
            json!("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----");
        assert_eq!(
            invalid(JwtSecrets, bad).0,
            invalid_key,
            "{algorithm} with junk"
        );
        let mut good = base.clone();
        good["rsa_public_key"] = json!(good_key);
        let out = valid(JwtSecrets, good);
        assert_eq!(out["rsa_public_key"], json!(good_key));
        let typed: JwtSecret = serde_json::from_value(out).unwrap();
        assert_eq!(typed.algorithm.as_str(), algorithm);
    }
    // A key of the wrong family cannot verify tokens of the algorithm.
    let wrong =
        json!({"consumer": {"id": CONSUMER_ID}, "algorithm": "RS256", "rsa_public_key": EC_PUBLIC});
    assert_eq!(invalid(JwtSecrets, wrong).0, invalid_key);
    // An EC key must be on the algorithm's curve.
    let wrong_curve =
        json!({"consumer": {"id": CONSUMER_ID}, "algorithm": "ES512", "rsa_public_key": EC_PUBLIC});
    assert_eq!(invalid(JwtSecrets, wrong_curve).0, invalid_key);
    // HMAC credentials ignore rsa_public_key.
    for algorithm in ["HS256", "HS384", "HS512"] {
        valid(
            JwtSecrets,
            json!({"consumer": {"id": CONSUMER_ID}, "algorithm": algorithm}),
        );
    }
}

#[test]
fn certificates_and_snis() {
    let out = valid(Certificates, json!({"cert": CERT, "key": KEY}));
    let cert: Certificate = serde_json::from_value(out.clone()).unwrap();
    assert_eq!(cert.cert_alt, None);
    expect_errors(
        Certificates,
        vec![
            (
                json!({}),
                json!({"cert": "required field missing", "key": "required field missing"}),
            ),
            (
                json!({"cert": "x", "key": KEY}),
                json!({"cert": "invalid certificate: not a PEM-encoded X.509 certificate"}),
            ),
            (
                json!({"cert": CERT, "key": CERT}),
                json!({"key": "invalid key: not a PEM-encoded private key"}),
            ),
            (
                json!({"cert": CERT, "key": KEY, "cert_alt": CERT}),
                json!({"@entity": ["all or none of these fields must be set: 'cert_alt', 'key_alt'"]}),
            ),
        ],
    );
    let rsa_key = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n";
    valid(
        Certificates,
        json!({"cert": CERT, "key": rsa_key, "cert_alt": CERT, "key_alt": KEY}),
    );

    let cert_ref = json!({"id": CONSUMER_ID});
    let out = valid(
        Snis,
        json!({"name": "*.example.com", "certificate": cert_ref}),
    );
    let sni: Sni = serde_json::from_value(out).unwrap();
    assert_eq!(sni.name, "*.example.com");
    expect_errors(
        Snis,
        vec![
            (
                json!({"name": "a.com"}),
                json!({"certificate": "required field missing"}),
            ),
            (
                json!({"certificate": cert_ref}),
                json!({"name": "required field missing"}),
            ),
            (
                json!({"name": "a.*.com", "certificate": cert_ref}),
                json!({"name": "wildcard must be leftmost or rightmost character"}),
            ),
            (
                json!({"name": "*.a.*", "certificate": cert_ref}),
                json!({"name": "only one wildcard must be specified"}),
            ),
            (
                json!({"name": "10.0.0.1", "certificate": cert_ref}),
                json!({"name": "must not be an IP"}),
            ),
            (
                json!({"name": "a.com:443", "certificate": cert_ref}),
                json!({"name": "must not have a port"}),
            ),
        ],
    );
}
