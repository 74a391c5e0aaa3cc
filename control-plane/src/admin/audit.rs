//! The audit log: secret redaction of the before/after images recorded with
//! every change, and `GET /audit` (paginated like the entity collections).

use super::error::ApiError;
use super::paging;
use super::response::json;
use super::AdminRequest;
use crate::state::MASK;
use axum::response::Response;
use serde_json::{Map, Value};
use tollgate_shared::EntityKind;

fn mask(map: &mut Map<String, Value>, field: &str) {
    if let Some(value) = map.get_mut(field) {
        if !value.is_null() {
            *value = Value::String(MASK.into());
        }
    }
}

/// `scheme://user:password@host` → `scheme://user:******@host`.
fn mask_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    format!("{scheme}://{user}:{MASK}@{host}{tail}")
}

const SECRET_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "apikey"];

/// A copy of `entity` with its secrets replaced by `******`: jwt `secret`,
/// certificate keys, Redis passwords, http-log credentials, key-auth keys,
/// basic-auth password hashes, opentelemetry endpoint userinfo and every
/// opentelemetry header value (that plugin's `headers` exist to carry a
/// receiver's token, under any vendor's name).
pub fn redact(kind: EntityKind, entity: &Value) -> Value {
    let mut out = entity.clone();
    let Value::Object(map) = &mut out else {
        return out;
    };
    match kind {
        EntityKind::JwtSecrets => mask(map, "secret"),
        EntityKind::KeyauthCredentials => mask(map, "key"),
        EntityKind::BasicauthCredentials => mask(map, "password"),
        EntityKind::Certificates => {
            mask(map, "key");
            mask(map, "key_alt");
        }
        EntityKind::Plugins => {
            let every_header_secret =
                map.get("name").and_then(Value::as_str) == Some("opentelemetry");
            if let Some(Value::Object(config)) = map.get_mut("config") {
                mask(config, "redis_password");
                if let Some(Value::Object(redis)) = config.get_mut("redis") {
                    mask(redis, "password");
                }
                for field in ["http_endpoint", "traces_endpoint", "logs_endpoint"] {
                    if let Some(Value::String(endpoint)) = config.get_mut(field) {
                        *endpoint = mask_userinfo(endpoint);
                    }
                }
                if let Some(Value::Object(headers)) = config.get_mut("headers") {
                    for (name, value) in headers.iter_mut() {
                        if every_header_secret
                            || SECRET_HEADERS.contains(&name.to_ascii_lowercase().as_str())
                        {
                            *value = Value::String(MASK.into());
                        }
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// `GET /audit`.
pub async fn list(request: &AdminRequest) -> Result<Response, ApiError> {
    let size = paging::size(&request.query)?;
    let after = match request.query.get("offset") {
        None => None,
        Some(token) => match paging::decode_offset(token)? {
            Value::Number(n) => n.as_i64(),
            _ => {
                return Err(ApiError::InvalidOffset {
                    token: token.clone(),
                    reason: "bad json encoding",
                })
            }
        },
    };
    let (items, next_seq) = request.state.store.list_audit(after, size).await?;
    let mut body = Map::new();
    body.insert("data".into(), Value::Array(items));
    match next_seq {
        Some(seq) => {
            let token = paging::encode_offset(&Value::from(seq));
            let mut extra = Vec::new();
            if let Some(size) = request.query.get("size") {
                extra.push(("size", size.as_str()));
            }
            body.insert(
                "next".into(),
                Value::String(paging::next_link("/audit", &token, &extra)),
            );
            body.insert("offset".into(), Value::String(token));
        }
        None => {
            body.insert("next".into(), Value::Null);
        }
    }
    Ok(json(&Value::Object(body)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked() {
        let cases = vec![
            (
                EntityKind::JwtSecrets,
                json!({"key": "k", "secret": "s"}),
                json!({"key": "k", "secret": MASK}),
            ),
            (
                EntityKind::JwtSecrets,
                json!({"key": "k", "secret": null}),
                json!({"key": "k", "secret": null}),
            ),
            (
                EntityKind::KeyauthCredentials,
                json!({"key": "k", "consumer": {"id": "c"}}),
                json!({"key": MASK, "consumer": {"id": "c"}}),
            ),
            (
                EntityKind::BasicauthCredentials,
                json!({"username": "u", "password": "h"}),
                json!({"username": "u", "password": MASK}),
            ),
            (
                EntityKind::Certificates,
                json!({"cert": "C", "key": "K", "key_alt": "K2"}),
                json!({"cert": "C", "key": MASK, "key_alt": MASK}),
            ),
            (
                EntityKind::Plugins,
                json!({"name": "rate-limiting", "config": {"redis": {"host": "h", "password": "p"}, "redis_password": "p"}}),
                json!({"name": "rate-limiting", "config": {"redis": {"host": "h", "password": MASK}, "redis_password": MASK}}),
            ),
            (
                EntityKind::Plugins,
                json!({"name": "http-log", "config": {"http_endpoint": "https://u:pw@logs.example/x?y", "headers": {"Authorization": "Bearer t", "X-Other": "v"}}}),
                json!({"name": "http-log", "config": {"http_endpoint": format!("https://u:{MASK}@logs.example/x?y"), "headers": {"Authorization": MASK, "X-Other": "v"}}}),
            ),
            (
                EntityKind::Plugins,
                json!({"name": "opentelemetry", "config": {"traces_endpoint": "https://u:pw@otel.example/v1/traces", "headers": {"x-honeycomb-team": "t"}}}),
                json!({"name": "opentelemetry", "config": {"traces_endpoint": format!("https://u:{MASK}@otel.example/v1/traces"), "headers": {"x-honeycomb-team": MASK}}}),
            ),
            (
                EntityKind::Services,
                json!({"host": "h"}),
                json!({"host": "h"}),
            ),
        ];
        for (kind, input, want) in cases {
            assert_eq!(redact(kind, &input), want, "{input}");
        }
        assert_eq!(
            mask_userinfo("http://log-aggregator:9200/kong-logs"),
            "http://log-aggregator:9200/kong-logs"
        );
    }
}
