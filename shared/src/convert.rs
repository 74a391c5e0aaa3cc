//! Conversions between the domain model and the cluster protocol messages
//! (`tollgate.cluster.v1`).
//!
//! Domain → proto is total. Proto → domain checks what the wire cannot
//! guarantee (UUID syntax, JSON payloads, known enum spellings) and names the
//! offending field by its path, e.g. `routes[3].service_id`. Null and empty are
//! kept apart on the wire with the `OptionalString`/`OptionalInt`/`StringList`
//! wrappers: an absent wrapper is `null`, a present one with no values is `[]`.

use crate::config::Config;
use crate::entity::{
    Acl, BasicauthCredential, Certificate, Consumer, ForeignKey, JwtAlgorithm, JwtSecret,
    KeyauthCredential, Plugin, Route, Service, Sni,
};
use std::collections::BTreeMap;
use tollgate_proto::v1 as pb;
use uuid::Uuid;

/// A proto message that does not describe a valid domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("{path}: expected a valid UUID, got '{value}'")]
    InvalidUuid { path: String, value: String },
    #[error("{path}: invalid JSON: {message}")]
    InvalidJson { path: String, message: String },
    #[error("{path}: unknown JWT algorithm '{value}'")]
    UnknownAlgorithm { path: String, value: String },
    #[error("{path}: required message missing")]
    Missing { path: String },
}

impl From<&Config> for pb::Config {
    fn from(config: &Config) -> Self {
        pb::Config {
            services: config.services.iter().map(service_to_pb).collect(),
            routes: config.routes.iter().map(route_to_pb).collect(),
            consumers: config.consumers.iter().map(consumer_to_pb).collect(),
            plugins: config.plugins.iter().map(plugin_to_pb).collect(),
            jwt_secrets: config.jwt_secrets.iter().map(jwt_secret_to_pb).collect(),
            certificates: config.certificates.iter().map(certificate_to_pb).collect(),
            snis: config.snis.iter().map(sni_to_pb).collect(),
            keyauth_credentials: config
                .keyauth_credentials
                .iter()
                .map(keyauth_credential_to_pb)
                .collect(),
            basicauth_credentials: config
                .basicauth_credentials
                .iter()
                .map(basicauth_credential_to_pb)
                .collect(),
            acls: config.acls.iter().map(acl_to_pb).collect(),
        }
    }
}

impl TryFrom<pb::Config> for Config {
    type Error = ConvertError;

    fn try_from(msg: pb::Config) -> Result<Self, Self::Error> {
        Ok(Config {
            services: convert_all(msg.services, "services", service_from_pb)?,
            routes: convert_all(msg.routes, "routes", route_from_pb)?,
            consumers: convert_all(msg.consumers, "consumers", consumer_from_pb)?,
            plugins: convert_all(msg.plugins, "plugins", plugin_from_pb)?,
            jwt_secrets: convert_all(msg.jwt_secrets, "jwt_secrets", jwt_secret_from_pb)?,
            certificates: convert_all(msg.certificates, "certificates", certificate_from_pb)?,
            snis: convert_all(msg.snis, "snis", sni_from_pb)?,
            keyauth_credentials: convert_all(
                msg.keyauth_credentials,
                "keyauth_credentials",
                keyauth_credential_from_pb,
            )?,
            basicauth_credentials: convert_all(
                msg.basicauth_credentials,
                "basicauth_credentials",
                basicauth_credential_from_pb,
            )?,
            acls: convert_all(msg.acls, "acls", acl_from_pb)?,
        })
    }
}

fn convert_all<M, T>(
    messages: Vec<M>,
    collection: &str,
    convert: impl Fn(M, &Path) -> Result<T, ConvertError>,
) -> Result<Vec<T>, ConvertError> {
    messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| convert(m, &Path(format!("{collection}[{i}]"))))
        .collect()
}

/// The location of the message being converted, for error paths.
struct Path(String);

impl Path {
    fn field(&self, name: &str) -> String {
        format!("{}.{name}", self.0)
    }
}

fn uuid(value: &str, path: &Path, field: &str) -> Result<Uuid, ConvertError> {
    Uuid::parse_str(value).map_err(|_| ConvertError::InvalidUuid {
        path: path.field(field),
        value: value.to_string(),
    })
}

fn opt_uuid(
    value: Option<pb::OptionalString>,
    path: &Path,
    field: &str,
) -> Result<Option<ForeignKey>, ConvertError> {
    value
        .map(|v| uuid(&v.value, path, field).map(ForeignKey::from))
        .transpose()
}

fn opt_string(value: &Option<String>) -> Option<pb::OptionalString> {
    value
        .as_ref()
        .map(|v| pb::OptionalString { value: v.clone() })
}

fn from_opt_string(value: Option<pb::OptionalString>) -> Option<String> {
    value.map(|v| v.value)
}

fn string_list(values: &Option<Vec<String>>) -> Option<pb::StringList> {
    values
        .as_ref()
        .map(|v| pb::StringList { values: v.clone() })
}

fn from_string_list(values: Option<pb::StringList>) -> Option<Vec<String>> {
    values.map(|v| v.values)
}

fn fk_to_pb(fk: &Option<ForeignKey>) -> Option<pb::OptionalString> {
    fk.map(|fk| pb::OptionalString {
        value: fk.id.to_string(),
    })
}

fn json_values_to_pb(values: &Option<Vec<serde_json::Value>>) -> Option<pb::OptionalString> {
    values.as_ref().map(|v| pb::OptionalString {
        // A Vec<Value> always serializes; "[]" keeps the field non-null if it ever did not.
        value: serde_json::to_string(v).unwrap_or_else(|_| "[]".to_string()),
    })
}

fn json_values_from_pb(
    value: Option<pb::OptionalString>,
    path: &Path,
    field: &str,
) -> Result<Option<Vec<serde_json::Value>>, ConvertError> {
    value
        .map(|v| {
            serde_json::from_str(&v.value).map_err(|e| ConvertError::InvalidJson {
                path: path.field(field),
                message: e.to_string(),
            })
        })
        .transpose()
}

fn service_to_pb(s: &Service) -> pb::Service {
    pb::Service {
        id: s.id.to_string(),
        name: opt_string(&s.name),
        created_at: s.created_at,
        updated_at: s.updated_at,
        retries: s.retries,
        protocol: s.protocol.clone(),
        host: s.host.clone(),
        port: s.port,
        path: opt_string(&s.path),
        connect_timeout: s.connect_timeout,
        write_timeout: s.write_timeout,
        read_timeout: s.read_timeout,
        tags: string_list(&s.tags),
        client_certificate_id: fk_to_pb(&s.client_certificate),
        tls_verify: s.tls_verify,
        tls_verify_depth: s.tls_verify_depth.map(|value| pb::OptionalInt { value }),
        ca_certificates: s.ca_certificates.as_ref().map(|ids| pb::StringList {
            values: ids.iter().map(Uuid::to_string).collect(),
        }),
        enabled: s.enabled,
    }
}

fn service_from_pb(m: pb::Service, path: &Path) -> Result<Service, ConvertError> {
    let ca_certificates = match m.ca_certificates {
        None => None,
        Some(list) => Some(
            list.values
                .iter()
                .enumerate()
                .map(|(i, v)| uuid(v, path, &format!("ca_certificates[{i}]")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(Service {
        id: uuid(&m.id, path, "id")?,
        created_at: m.created_at,
        updated_at: m.updated_at,
        name: from_opt_string(m.name),
        retries: m.retries,
        protocol: m.protocol,
        host: m.host,
        port: m.port,
        path: from_opt_string(m.path),
        connect_timeout: m.connect_timeout,
        write_timeout: m.write_timeout,
        read_timeout: m.read_timeout,
        tags: from_string_list(m.tags),
        client_certificate: opt_uuid(m.client_certificate_id, path, "client_certificate_id")?,
        tls_verify: m.tls_verify,
        tls_verify_depth: m.tls_verify_depth.map(|v| v.value),
        ca_certificates,
        enabled: m.enabled,
    })
}

fn route_to_pb(r: &Route) -> pb::Route {
    pb::Route {
        id: r.id.to_string(),
        name: opt_string(&r.name),
        created_at: r.created_at,
        updated_at: r.updated_at,
        protocols: r.protocols.clone(),
        methods: string_list(&r.methods),
        hosts: string_list(&r.hosts),
        paths: string_list(&r.paths),
        headers: r
            .headers
            .iter()
            .flatten()
            .map(|(name, values)| {
                (
                    name.clone(),
                    pb::StringList {
                        values: values.clone(),
                    },
                )
            })
            .collect(),
        has_headers: r.headers.is_some(),
        snis: string_list(&r.snis),
        https_redirect_status_code: r.https_redirect_status_code,
        regex_priority: r.regex_priority,
        strip_path: r.strip_path,
        preserve_host: r.preserve_host,
        request_buffering: r.request_buffering,
        response_buffering: r.response_buffering,
        path_handling: r.path_handling.clone(),
        service_id: fk_to_pb(&r.service),
        tags: string_list(&r.tags),
        sources_json: json_values_to_pb(&r.sources),
        destinations_json: json_values_to_pb(&r.destinations),
    }
}

fn route_from_pb(m: pb::Route, path: &Path) -> Result<Route, ConvertError> {
    let headers = m.has_headers.then(|| {
        m.headers
            .into_iter()
            .map(|(name, list)| (name, list.values))
            .collect::<BTreeMap<_, _>>()
    });
    Ok(Route {
        id: uuid(&m.id, path, "id")?,
        created_at: m.created_at,
        updated_at: m.updated_at,
        name: from_opt_string(m.name),
        protocols: m.protocols,
        methods: from_string_list(m.methods),
        hosts: from_string_list(m.hosts),
        paths: from_string_list(m.paths),
        headers,
        snis: from_string_list(m.snis),
        sources: json_values_from_pb(m.sources_json, path, "sources_json")?,
        destinations: json_values_from_pb(m.destinations_json, path, "destinations_json")?,
        https_redirect_status_code: m.https_redirect_status_code,
        regex_priority: m.regex_priority,
        strip_path: m.strip_path,
        preserve_host: m.preserve_host,
        request_buffering: m.request_buffering,
        response_buffering: m.response_buffering,
        path_handling: m.path_handling,
        service: opt_uuid(m.service_id, path, "service_id")?,
        tags: from_string_list(m.tags),
    })
}

fn consumer_to_pb(c: &Consumer) -> pb::Consumer {
    pb::Consumer {
        id: c.id.to_string(),
        created_at: c.created_at,
        updated_at: c.updated_at,
        username: opt_string(&c.username),
        custom_id: opt_string(&c.custom_id),
        tags: string_list(&c.tags),
    }
}

fn consumer_from_pb(m: pb::Consumer, path: &Path) -> Result<Consumer, ConvertError> {
    Ok(Consumer {
        id: uuid(&m.id, path, "id")?,
        created_at: m.created_at,
        updated_at: m.updated_at,
        username: from_opt_string(m.username),
        custom_id: from_opt_string(m.custom_id),
        tags: from_string_list(m.tags),
    })
}

fn plugin_to_pb(p: &Plugin) -> pb::Plugin {
    pb::Plugin {
        id: p.id.to_string(),
        name: p.name.clone(),
        instance_name: opt_string(&p.instance_name),
        created_at: p.created_at,
        updated_at: p.updated_at,
        // A Value always serializes; "null" only guards the impossible case.
        config_json: serde_json::to_string(&p.config).unwrap_or_else(|_| "null".to_string()),
        route_id: fk_to_pb(&p.route),
        service_id: fk_to_pb(&p.service),
        consumer_id: fk_to_pb(&p.consumer),
        protocols: p.protocols.clone(),
        enabled: p.enabled,
        tags: string_list(&p.tags),
    }
}

fn plugin_from_pb(m: pb::Plugin, path: &Path) -> Result<Plugin, ConvertError> {
    let config = serde_json::from_str(&m.config_json).map_err(|e| ConvertError::InvalidJson {
        path: path.field("config_json"),
        message: e.to_string(),
    })?;
    Ok(Plugin {
        id: uuid(&m.id, path, "id")?,
        created_at: m.created_at,
        updated_at: m.updated_at,
        name: m.name,
        instance_name: from_opt_string(m.instance_name),
        config,
        route: opt_uuid(m.route_id, path, "route_id")?,
        service: opt_uuid(m.service_id, path, "service_id")?,
        consumer: opt_uuid(m.consumer_id, path, "consumer_id")?,
        protocols: m.protocols,
        enabled: m.enabled,
        tags: from_string_list(m.tags),
    })
}

fn jwt_secret_to_pb(j: &JwtSecret) -> pb::JwtSecret {
    pb::JwtSecret {
        id: j.id.to_string(),
        created_at: j.created_at,
        consumer_id: j.consumer.id.to_string(),
        key: j.key.clone(),
        secret: opt_string(&j.secret),
        rsa_public_key: opt_string(&j.rsa_public_key),
        algorithm: j.algorithm.as_str().to_string(),
        tags: string_list(&j.tags),
    }
}

fn jwt_secret_from_pb(m: pb::JwtSecret, path: &Path) -> Result<JwtSecret, ConvertError> {
    let algorithm =
        JwtAlgorithm::parse(&m.algorithm).ok_or_else(|| ConvertError::UnknownAlgorithm {
            path: path.field("algorithm"),
            value: m.algorithm.clone(),
        })?;
    Ok(JwtSecret {
        id: uuid(&m.id, path, "id")?,
        created_at: m.created_at,
        consumer: uuid(&m.consumer_id, path, "consumer_id")?.into(),
        key: m.key,
        secret: from_opt_string(m.secret),
        rsa_public_key: from_opt_string(m.rsa_public_key),
        algorithm,
        tags: from_string_list(m.tags),
    })
}

fn certificate_to_pb(c: &Certificate) -> pb::Certificate {
    pb::Certificate {
        id: c.id.to_string(),
        created_at: c.created_at,
        updated_at: c.updated_at,
        cert: c.cert.clone(),
        key: c.key.clone(),
        cert_alt: opt_string(&c.cert_alt),
        key_alt: opt_string(&c.key_alt),
        tags: string_list(&c.tags),
    }
}

fn certificate_from_pb(m: pb::Certificate, path: &Path) -> Result<Certificate, ConvertError> {
    Ok(Certificate {
        id: uuid(&m.id, path, "id")?,
        created_at: m.created_at,
        updated_at: m.updated_at,
        cert: m.cert,
        key: m.key,
        cert_alt: from_opt_string(m.cert_alt),
        key_alt: from_opt_string(m.key_alt),
        tags: from_string_list(m.tags),
    })
}

fn sni_to_pb(s: &Sni) -> pb::Sni {
    pb::Sni {
        id: s.id.to_string(),
        name: s.name.clone(),
        created_at: s.created_at,
        updated_at: s.updated_at,
        certificate_id: s.certificate.id.to_string(),
        tags: string_list(&s.tags),
    }
}

fn sni_from_pb(m: pb::Sni, path: &Path) -> Result<Sni, ConvertError> {
    Ok(Sni {
        id: uuid(&m.id, path, "id")?,
        created_at: m.created_at,
        updated_at: m.updated_at,
        name: m.name,
        certificate: uuid(&m.certificate_id, path, "certificate_id")?.into(),
        tags: from_string_list(m.tags),
    })
}

fn keyauth_credential_to_pb(k: &KeyauthCredential) -> pb::KeyauthCredential {
    pb::KeyauthCredential {
        id: k.id.to_string(),
        created_at: k.created_at,
        consumer_id: k.consumer.id.to_string(),
        key: k.key.clone(),
        tags: string_list(&k.tags),
        expires_at: k.expires_at.map(|value| pb::OptionalInt { value }),
    }
}

fn keyauth_credential_from_pb(
    m: pb::KeyauthCredential,
    path: &Path,
) -> Result<KeyauthCredential, ConvertError> {
    Ok(KeyauthCredential {
        id: uuid(&m.id, path, "id")?,
        created_at: m.created_at,
        consumer: uuid(&m.consumer_id, path, "consumer_id")?.into(),
        key: m.key,
        tags: from_string_list(m.tags),
        expires_at: m.expires_at.map(|v| v.value),
    })
}

fn basicauth_credential_to_pb(b: &BasicauthCredential) -> pb::BasicauthCredential {
    pb::BasicauthCredential {
        id: b.id.to_string(),
        created_at: b.created_at,
        consumer_id: b.consumer.id.to_string(),
        username: b.username.clone(),
        password: b.password.clone(),
        tags: string_list(&b.tags),
    }
}

fn basicauth_credential_from_pb(
    m: pb::BasicauthCredential,
    path: &Path,
) -> Result<BasicauthCredential, ConvertError> {
    Ok(BasicauthCredential {
        id: uuid(&m.id, path, "id")?,
        created_at: m.created_at,
        consumer: uuid(&m.consumer_id, path, "consumer_id")?.into(),
        username: m.username,
        password: m.password,
        tags: from_string_list(m.tags),
    })
}

fn acl_to_pb(a: &Acl) -> pb::Acl {
    pb::Acl {
        id: a.id.to_string(),
        created_at: a.created_at,
        consumer_id: a.consumer.id.to_string(),
        group: a.group.clone(),
        tags: string_list(&a.tags),
    }
}

fn acl_from_pb(m: pb::Acl, path: &Path) -> Result<Acl, ConvertError> {
    Ok(Acl {
        id: uuid(&m.id, path, "id")?,
        created_at: m.created_at,
        consumer: uuid(&m.consumer_id, path, "consumer_id")?.into(),
        group: m.group,
        tags: from_string_list(m.tags),
    })
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
