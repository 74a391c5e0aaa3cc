//! Test configs shared by the conversion, hashing, snapshot and declarative
//! tests: one with every field set, one with every optional field null, and
//! generated large ones.

use crate::config::Config;
use crate::entity::{
    Certificate, Consumer, ForeignKey, JwtAlgorithm, JwtSecret, Plugin, Route, Service, Sni,
};
use serde_json::json;
use std::collections::BTreeMap;
use uuid::Uuid;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x1000_0000_0000_4000_8000_0000_0000_0000 + n)
}

fn fk(n: u128) -> ForeignKey {
    ForeignKey { id: id(n) }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

/// Every entity type, every field set (optional ones non-null, some lists empty).
pub(crate) fn full_config() -> Config {
    let certificate = Certificate {
        id: id(70),
        created_at: 1_700_000_070,
        updated_at: 1_700_000_071,
        cert: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        key: "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n".into(),
        cert_alt: Some("-----BEGIN CERTIFICATE-----\nALT\n-----END CERTIFICATE-----\n".into()),
        key_alt: Some("-----BEGIN PRIVATE KEY-----\nALT\n-----END PRIVATE KEY-----\n".into()),
        tags: Some(strings(&["tls"])),
    };
    let service = Service {
        id: id(10),
        created_at: 1_700_000_010,
        updated_at: 1_700_000_011,
        name: Some("my-api".into()),
        retries: 3,
        protocol: "https".into(),
        host: "backend.internal".into(),
        port: 8443,
        path: Some("/v1".into()),
        connect_timeout: 1000,
        write_timeout: 2000,
        read_timeout: 3000,
        tags: Some(strings(&["prod", "api"])),
        client_certificate: Some(fk(70)),
        tls_verify: Some(true),
        tls_verify_depth: Some(2),
        ca_certificates: Some(vec![id(90), id(91)]),
        enabled: true,
    };
    let mut headers = BTreeMap::new();
    headers.insert("x-version".to_string(), strings(&["1", "2"]));
    headers.insert("x-empty".to_string(), vec![]);
    let route = Route {
        id: id(20),
        created_at: 1_700_000_020,
        updated_at: 1_700_000_021,
        name: Some("api-route".into()),
        protocols: strings(&["http", "https"]),
        methods: Some(strings(&["GET", "POST"])),
        hosts: Some(strings(&["api.example.com", "*.example.org"])),
        paths: Some(strings(&["/api", "~/v[0-9]+/items$"])),
        headers: Some(headers),
        snis: Some(strings(&["api.example.com"])),
        sources: Some(vec![json!({"ip": "10.0.0.0/8", "port": 1234})]),
        destinations: Some(vec![json!({"ip": "192.0.2.1"}), json!({"port": 80})]),
        https_redirect_status_code: 301,
        regex_priority: 7,
        strip_path: false,
        preserve_host: true,
        request_buffering: false,
        response_buffering: false,
        path_handling: "v1".into(),
        service: Some(fk(10)),
        tags: Some(vec![]),
    };
    let consumer = Consumer {
        id: id(30),
        created_at: 1_700_000_030,
        updated_at: 1_700_000_031,
        username: Some("api-client-1".into()),
        custom_id: Some("cust-1".into()),
        tags: Some(strings(&["partner"])),
    };
    let plugin = Plugin {
        id: id(40),
        created_at: 1_700_000_040,
        updated_at: 1_700_000_041,
        name: "rate-limiting".into(),
        instance_name: Some("rl-strict".into()),
        config: json!({
            "minute": 30,
            "hour": 500,
            "policy": "redis",
            "fault_tolerant": true,
            "second": null,
            "ratio": 0.5,
            "redis": {"host": "127.0.0.1", "port": 6379, "ssl": false},
            "list": [3, 1, 2],
        }),
        route: Some(fk(20)),
        service: Some(fk(10)),
        consumer: Some(fk(30)),
        protocols: strings(&["grpc", "grpcs", "http", "https"]),
        enabled: false,
        tags: Some(strings(&["limits"])),
    };
    let jwt = JwtSecret {
        id: id(50),
        created_at: 1_700_000_050,
        consumer: fk(30),
        key: "api-client-1-iss".into(),
        secret: Some("s3cr3t".into()),
        rsa_public_key: Some("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n".into()),
        algorithm: JwtAlgorithm::RS256,
        tags: Some(strings(&["jwt"])),
    };
    let sni = Sni {
        id: id(80),
        created_at: 1_700_000_080,
        updated_at: 1_700_000_081,
        name: "api.example.com".into(),
        certificate: fk(70),
        tags: Some(strings(&["tls"])),
    };
    Config {
        services: vec![service],
        routes: vec![route],
        consumers: vec![consumer],
        plugins: vec![plugin],
        jwt_secrets: vec![jwt],
        certificates: vec![certificate],
        snis: vec![sni],
        // Not here: the golden hashes of this fixture predate them (see
        // `with_credentials`).
        ..Config::default()
    }
}

/// [`full_config`] with a key-auth key, a basic-auth credential and two acl
/// groups of its consumer.
pub(crate) fn with_credentials() -> Config {
    use crate::entity::{Acl, BasicauthCredential, KeyauthCredential};
    let mut config = full_config();
    let consumer = config.consumers[0].id;
    config.keyauth_credentials.push(KeyauthCredential {
        id: id(90),
        created_at: 1_700_000_090,
        consumer: consumer.into(),
        key: "key-90".into(),
        tags: Some(strings(&["auth"])),
        expires_at: Some(1_900_000_000),
    });
    config.basicauth_credentials.push(BasicauthCredential {
        id: id(91),
        created_at: 1_700_000_091,
        consumer: consumer.into(),
        username: "user-91".into(),
        password: crate::entity::basic_auth_password_hash(&consumer.to_string(), "pw"),
        tags: None,
    });
    for (n, group) in [(92, "gold"), (93, "silver")] {
        config.acls.push(Acl {
            id: id(n),
            created_at: 1_700_000_000 + n as i64,
            consumer: consumer.into(),
            group: group.into(),
            tags: None,
        });
    }
    config
}

/// Every entity type with every optional field null.
pub(crate) fn null_config() -> Config {
    let mut config = full_config();
    for s in &mut config.services {
        s.name = None;
        s.path = None;
        s.tags = None;
        s.client_certificate = None;
        s.tls_verify = None;
        s.tls_verify_depth = None;
        s.ca_certificates = None;
    }
    for r in &mut config.routes {
        r.name = None;
        r.methods = None;
        r.hosts = None;
        r.paths = None;
        r.headers = None;
        r.snis = None;
        r.sources = None;
        r.destinations = None;
        r.service = None;
        r.tags = None;
    }
    for c in &mut config.consumers {
        c.username = None;
        c.custom_id = None;
        c.tags = None;
    }
    for p in &mut config.plugins {
        p.instance_name = None;
        p.config = serde_json::Value::Null;
        p.route = None;
        p.service = None;
        p.consumer = None;
        p.tags = None;
    }
    for j in &mut config.jwt_secrets {
        j.secret = None;
        j.rsa_public_key = None;
        j.tags = None;
    }
    for c in &mut config.certificates {
        c.cert_alt = None;
        c.key_alt = None;
        c.tags = None;
    }
    for s in &mut config.snis {
        s.tags = None;
    }
    config
}

/// `routes` routes spread over services of 10 routes each, `consumers`
/// consumers with one JWT credential each, and a rate-limiting plugin per service.
pub(crate) fn generated(routes: usize, consumers: usize) -> Config {
    let mut config = Config::default();
    let service_count = routes.div_ceil(10).max(1);
    for s in 0..service_count {
        config.services.push(Service {
            id: Uuid::from_u128(0x2000_0000_0000_4000_8000_0000_0000_0000 + s as u128),
            created_at: 1,
            updated_at: 1,
            name: Some(format!("svc-{s}")),
            retries: 5,
            protocol: "http".into(),
            host: format!("backend-{s}.internal"),
            port: 80,
            path: None,
            connect_timeout: 60000,
            write_timeout: 60000,
            read_timeout: 60000,
            tags: None,
            client_certificate: None,
            tls_verify: None,
            tls_verify_depth: None,
            ca_certificates: None,
            enabled: true,
        });
        config.plugins.push(Plugin {
            id: Uuid::from_u128(0x5000_0000_0000_4000_8000_0000_0000_0000 + s as u128),
            created_at: 1,
            updated_at: 1,
            name: "rate-limiting".into(),
            instance_name: None,
            config: json!({"minute": 100 + s, "policy": "local"}),
            route: None,
            service: Some(ForeignKey {
                id: config.services[s].id,
            }),
            consumer: None,
            protocols: strings(&["grpc", "grpcs", "http", "https"]),
            enabled: true,
            tags: None,
        });
    }
    for r in 0..routes {
        let service = config.services[r / 10].id;
        config.routes.push(Route {
            id: Uuid::from_u128(0x3000_0000_0000_4000_8000_0000_0000_0000 + r as u128),
            created_at: 1,
            updated_at: 1,
            name: Some(format!("route-{r}")),
            protocols: strings(&["http", "https"]),
            methods: None,
            hosts: None,
            paths: Some(vec![format!("/r/{r}")]),
            headers: None,
            snis: None,
            sources: None,
            destinations: None,
            https_redirect_status_code: 426,
            regex_priority: 0,
            strip_path: true,
            preserve_host: false,
            request_buffering: true,
            response_buffering: true,
            path_handling: "v0".into(),
            service: Some(ForeignKey { id: service }),
            tags: None,
        });
    }
    for c in 0..consumers {
        let consumer_id = Uuid::from_u128(0x4000_0000_0000_4000_8000_0000_0000_0000 + c as u128);
        config.consumers.push(Consumer {
            id: consumer_id,
            created_at: 1,
            updated_at: 1,
            username: Some(format!("user-{c}")),
            custom_id: None,
            tags: None,
        });
        config.jwt_secrets.push(JwtSecret {
            id: Uuid::from_u128(0x6000_0000_0000_4000_8000_0000_0000_0000 + c as u128),
            created_at: 1,
            consumer: ForeignKey { id: consumer_id },
            key: format!("user-{c}-iss"),
            secret: Some(format!("secret-{c}")),
            rsa_public_key: None,
            algorithm: JwtAlgorithm::HS256,
            tags: None,
        });
    }
    config
}
