//! End-to-end: protocols on the client side — h2c by prior knowledge, TLS
//! with ALPN (HTTP/2 and HTTP/1.1), certificates chosen by SNI and replaced
//! without a restart, WebSocket upgrades tunnelled to the upstream.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_data_plane::Settings;
use tollgate_tests::dataplane::{self, send_h2c, send_tls, tls_connect, ConfigBuilder};
use tollgate_tests::echo;

const VERSION: &str = env!("CARGO_PKG_VERSION");

struct TestCert {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn cert(name: &str) -> TestCert {
    certs_for(&[name])
}

fn certs_for(names: &[&str]) -> TestCert {
    let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let generated = rcgen::generate_simple_self_signed(names).unwrap();
    let cert_pem = generated.cert.pem();
    TestCert {
        der: CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap(),
        cert_pem,
        key_pem: generated.signing_key.serialize_pem(),
    }
}

async fn served_cert(
    addr: std::net::SocketAddr,
    name: &str,
    trust: &TestCert,
) -> Option<CertificateDer<'static>> {
    let stream = tls_connect(addr, name, std::slice::from_ref(&trust.der), &[b"http/1.1"])
        .await
        .ok()?;
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first().cloned())
}

#[tokio::test]
async fn h2c_prior_knowledge_is_proxied() {
    let upstream = echo::spawn().await.unwrap();
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(10, Some(1), &["/h2"], json!({}))
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let reply = send_h2c(dp.proxy_addrs()[0], "/h2/x").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["uri"], "/x");
    // The upstream speaks HTTP/1.1 and gets the authority as Host.
    assert_eq!(reply.json()["version"], "HTTP/1.1");
    assert_eq!(reply.upstream_header("host"), upstream.to_string());
    assert_eq!(
        reply.upstream_header("via"),
        format!("2 tollgate/{VERSION}")
    );
    assert_eq!(reply.header("x-tollgate-request-id").len(), 32);
    dp.shutdown().await;
}

#[tokio::test]
async fn tls_picks_certificates_by_sni_and_swaps_them_without_restart() {
    let upstream = echo::spawn().await.unwrap();
    let (a, b, fallback) = (
        cert("a.test"),
        certs_for(&["b.test", "*.b.test"]),
        cert("other.test"),
    );
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("d.crt"), dir.path().join("d.key"));
    std::fs::write(&cert_path, &fallback.cert_pem).unwrap();
    std::fs::write(&key_path, &fallback.key_pem).unwrap();

    let mut settings = Settings::loopback();
    settings.proxy_tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
    settings.tls_cert = Some(cert_path);
    settings.tls_key = Some(key_path);
    let base = ConfigBuilder::new().service(1, upstream, json!({})).route(
        10,
        Some(1),
        &["/"],
        json!({"protocols": ["https"]}),
    );
    let config = base
        .clone()
        .certificate(50, &a.cert_pem, &a.key_pem, &[(60, "a.test")])
        .certificate(
            51,
            &b.cert_pem,
            &b.key_pem,
            &[(61, "*.b.test"), (62, "b.test")],
        )
        .build()
        .unwrap();
    let dp = dataplane::start(settings, &config).await.unwrap();
    let tls = dp.tls_addrs()[0];

    assert_eq!(served_cert(tls, "a.test", &a).await, Some(a.der.clone()));
    assert_eq!(served_cert(tls, "b.test", &b).await, Some(b.der.clone()));
    assert_eq!(
        served_cert(tls, "other.test", &fallback).await,
        Some(fallback.der.clone())
    );
    assert_eq!(served_cert(tls, "x.b.test", &b).await, Some(b.der.clone()));
    assert_eq!(served_cert(tls, "x.b.test", &fallback).await, None);

    // A new certificate for a.test arrives with the next config; no restart.
    let a2 = cert("a.test");
    let rotated = base
        .certificate(52, &a2.cert_pem, &a2.key_pem, &[(60, "a.test")])
        .certificate(51, &b.cert_pem, &b.key_pem, &[(62, "b.test")])
        .build()
        .unwrap();
    dp.gateway().apply_local(&rotated).unwrap();
    assert_eq!(served_cert(tls, "a.test", &a2).await, Some(a2.der.clone()));
    assert_eq!(served_cert(tls, "a.test", &a).await, None);

    // The default certificate can be replaced too (SIGHUP does this from the files).
    let fallback2 = cert("other.test");
    dp.set_default_certificate(Some(
        tollgate_data_plane::tls::certified_key(&fallback2.cert_pem, &fallback2.key_pem).unwrap(),
    ));
    assert_eq!(
        served_cert(tls, "other.test", &fallback2).await,
        Some(fallback2.der.clone())
    );
    dp.shutdown().await;
}

#[tokio::test]
async fn tls_alpn_selects_http2_or_http1() {
    let upstream = echo::spawn().await.unwrap();
    let site = cert("api.test");
    let mut settings = Settings::loopback();
    settings.proxy_tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(10, Some(1), &["/secure"], json!({"protocols": ["https"]}))
        .certificate(50, &site.cert_pem, &site.key_pem, &[(60, "api.test")])
        .build()
        .unwrap();
    let dp = dataplane::start(settings, &config).await.unwrap();
    let tls = dp.tls_addrs()[0];

    let h2 = tls_connect(
        tls,
        "api.test",
        std::slice::from_ref(&site.der),
        &[b"h2", b"http/1.1"],
    )
    .await
    .unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let reply = send_tls(h2, "api.test", "/secure/x").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.upstream_header("x-forwarded-proto"), "https");
    assert_eq!(
        reply.upstream_header("via"),
        format!("2 tollgate/{VERSION}")
    );

    let h1 = tls_connect(
        tls,
        "api.test",
        std::slice::from_ref(&site.der),
        &[b"http/1.1"],
    )
    .await
    .unwrap();
    let reply = send_tls(h1, "api.test", "/secure/x").await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.upstream_header("via"),
        format!("1.1 tollgate/{VERSION}")
    );
    assert_eq!(
        reply.upstream_header("x-forwarded-port"),
        tls.port().to_string()
    );

    // The same https-only route over plain HTTP asks for TLS.
    let plain = dataplane::get(dp.proxy_addrs()[0], "/secure/x")
        .await
        .unwrap();
    assert_eq!(plain.status, 426);
    dp.shutdown().await;
}

#[tokio::test]
async fn websocket_upgrades_are_tunnelled() {
    let upstream = echo::spawn().await.unwrap();
    let config = ConfigBuilder::new()
        .service(1, upstream, json!({}))
        .route(10, Some(1), &["/ws"], json!({}))
        .build()
        .unwrap();
    let dp = dataplane::start(Settings::loopback(), &config)
        .await
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(dp.proxy_addrs()[0])
        .await
        .unwrap();
    stream
        .write_all(
            b"GET /ws/chat HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "closed before the 101 head ended"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");

    for message in [&b"hello"[..], b"second frame", &[0u8, 1, 2, 255]] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed, message);
    }
    dp.shutdown().await;
}
