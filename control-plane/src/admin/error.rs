//! Every Admin API failure and the one place it becomes a response, with
//! Kong's status codes and bodies. Internal error text is logged, never sent.

use super::response::{json, json_with_status};
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use tollgate_shared::FieldErrors;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound,
    /// 404 with a specific `{"message": …}`.
    #[error("{0}")]
    NotFoundMessage(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("cannot parse JSON body")]
    BadJson,
    /// 400 with `{"message": …}`.
    #[error("{0}")]
    BadRequest(String),
    /// Kong code 2.
    #[error("{}", .0.message())]
    Schema(FieldErrors),
    /// Kong code 6 (PATCH of a missing entity); `key` is `{id=…}` or `{name=…}`.
    #[error("entity not found")]
    EntityNotFound { key: Map<String, Value> },
    /// Kong code 7.
    #[error("'{token}' is not a valid offset: {reason}")]
    InvalidOffset { token: String, reason: &'static str },
    /// Kong code 9.
    #[error("{0}")]
    InvalidSize(&'static str),
    /// Kong code 11; `option` names the query argument.
    #[error("invalid option ({option}: {message})")]
    InvalidOption {
        option: &'static str,
        message: &'static str,
    },
    /// Kong code 14.
    #[error("{message}")]
    Declarative { message: String, fields: Value },
    /// Kong code 14, the body built by the declarative parser.
    #[error("invalid declarative configuration")]
    DeclarativeBody(Value),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound | ApiError::NotFoundMessage(_) | ApiError::EntityNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadJson
            | ApiError::BadRequest(_)
            | ApiError::Schema(_)
            | ApiError::InvalidOffset { .. }
            | ApiError::InvalidSize(_)
            | ApiError::InvalidOption { .. }
            | ApiError::Declarative { .. }
            | ApiError::DeclarativeBody(_) => StatusCode::BAD_REQUEST,
            ApiError::Store(err) => match err {
                StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                StoreError::Unique { .. } | StoreError::PrimaryKey { .. } => StatusCode::CONFLICT,
                StoreError::MissingParent { .. } | StoreError::Referenced { .. } => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// The JSON body, or `None` for Kong's empty 415.
    pub fn body(&self) -> Option<Value> {
        let message = |m: &str| Some(json!({ "message": m }));
        match self {
            ApiError::NotFound => message("Not found"),
            ApiError::MethodNotAllowed => message("Method not allowed"),
            ApiError::UnsupportedMediaType => None,
            ApiError::PayloadTooLarge => message("Request body too large"),
            ApiError::BadJson => message("Cannot parse JSON body"),
            ApiError::BadRequest(m) | ApiError::NotFoundMessage(m) => message(m),
            ApiError::Schema(errors) => Some(json!({
                "code": 2,
                "name": "schema violation",
                "message": errors.message(),
                "fields": errors.to_json(),
            })),
            ApiError::EntityNotFound { key } => {
                let rendered = crate::store::lua_literal(&Value::Object(key.clone()));
                let message = if key.contains_key("id") {
                    format!("could not find the entity with primary key '{rendered}'")
                } else {
                    format!("could not find the entity with '{rendered}'")
                };
                Some(json!({"code": 6, "name": "not found", "message": message, "fields": key}))
            }
            ApiError::InvalidOffset { .. } => Some(json!({
                "code": 7,
                "name": "invalid offset",
                "message": self.to_string(),
            })),
            ApiError::InvalidSize(m) => Some(json!({
                "code": 9,
                "name": "invalid size",
                "message": m,
            })),
            ApiError::InvalidOption { option, message } => Some(json!({
                "code": 11,
                "name": "invalid options",
                "message": self.to_string(),
                "options": { *option: message },
            })),
            ApiError::Declarative { message, fields } => Some(json!({
                "code": 14,
                "name": "invalid declarative configuration",
                "message": message,
                "fields": fields,
            })),
            ApiError::DeclarativeBody(body) => Some(body.clone()),
            ApiError::Store(err) => store_error_body(err),
        }
    }
}

fn store_error_body(err: &StoreError) -> Option<Value> {
    match err {
        StoreError::Unavailable(_) => Some(json!({
            "message": "The database is unavailable; try again shortly"
        })),
        StoreError::Unique { key, .. } => Some(json!({
            "code": 5,
            "name": "unique constraint violation",
            "message": err.to_string(),
            "fields": key,
        })),
        StoreError::PrimaryKey { id, .. } => Some(json!({
            "code": 3,
            "name": "primary key violation",
            "message": err.to_string(),
            "fields": { "id": id },
        })),
        StoreError::MissingParent { field, key, .. } => Some(json!({
            "code": 4,
            "name": "foreign key violation",
            "message": err.to_string(),
            "fields": { field.as_str(): key },
        })),
        StoreError::Referenced { child, .. } => Some(json!({
            "code": 4,
            "name": "foreign key violation",
            "message": err.to_string(),
            "fields": { "@referenced_by": child.table_name() },
        })),
        _ => Some(json!({ "message": "An unexpected error occurred" })),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Store(StoreError::Unavailable(reason)) => {
                tracing::warn!(%reason, "database unavailable");
            }
            ApiError::Store(err) if status.is_server_error() => {
                tracing::error!(error = %err, "admin request failed");
            }
            _ => {}
        }
        let mut response = match self.body() {
            Some(body) => json_with_status(status, &body),
            None => {
                let mut r = json(&Value::Null);
                *r.body_mut() = axum::body::Body::empty();
                r.headers_mut().remove(axum::http::header::CONTENT_TYPE);
                *r.status_mut() = status;
                r
            }
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
