//! Response builders: Kong's JSON content type on every body.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// 200 with a JSON body.
pub fn json(body: &Value) -> Response {
    json_with_status(StatusCode::OK, body)
}

/// A JSON body with `status`.
pub fn json_with_status(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    response
}

/// 204 with no body.
pub fn no_content() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// The header naming the config version a write committed, so a client can
/// wait for the data planes to acknowledge exactly that version.
pub const CONFIG_VERSION_HEADER: &str = "x-tollgate-config-version";

/// Stamps `response` with the config version its write committed.
pub fn committed(mut response: Response, version: i64) -> Response {
    response
        .headers_mut()
        .insert(CONFIG_VERSION_HEADER, HeaderValue::from(version));
    response
}
