//! The one place where the proxy generates a response itself: no route, no
//! service, https required, plugin rejections, client limits and upstream
//! failures, rendered with Kong's bodies (kong-compat §2.7) in the format the
//! client asked for.

use super::body::ResponseBody;
use super::error::ProxyError;
use super::headers::{StaticValues, X_REQUEST_ID, X_RESPONSE_LATENCY};
use crate::plugins::{Rejection, RejectionStyle};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use std::borrow::Cow;
use std::time::Duration;

/// Which of Kong's generators renders the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A: `kong.response.error`, format by `Accept`, JSON by default.
    KongError,
    /// B: nginx error pages, format by `Accept`, else `Content-Type`, else text.
    ErrorPage,
    /// C: `kong.response.exit`, `{"message": …}`.
    Exit,
    /// C with a table body: the message is the JSON object text, sent as is.
    ExitJson,
}

/// A response the proxy generates instead of (or after failing at) proxying.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
    pub style: Style,
    /// Extra headers (426 `Upgrade`, redirect `Location`).
    pub headers: Option<HeaderMap>,
    /// Send no body at all (redirects).
    pub empty: bool,
}

impl Reply {
    pub fn kong(status: StatusCode, message: &'static str) -> Reply {
        Reply {
            status,
            message: Cow::Borrowed(message),
            style: Style::KongError,
            headers: None,
            empty: false,
        }
    }

    pub fn error_page(status: StatusCode) -> Reply {
        Reply {
            status,
            message: Cow::Borrowed(error_page_message(status)),
            style: Style::ErrorPage,
            headers: None,
            empty: false,
        }
    }

    pub fn from_error(error: &ProxyError) -> Reply {
        match error {
            // Kong answers DNS failures through kong.response.error.
            ProxyError::NameResolution(_) => {
                Reply::kong(StatusCode::SERVICE_UNAVAILABLE, "name resolution failed")
            }
            other => Reply::error_page(other.status()),
        }
    }

    pub fn from_rejection(rejection: Rejection) -> Reply {
        Reply {
            status: rejection.status,
            message: rejection.message,
            style: match rejection.style {
                RejectionStyle::Error => Style::KongError,
                RejectionStyle::Exit => Style::Exit,
                RejectionStyle::ExitJson => Style::ExitJson,
            },
            headers: None,
            empty: false,
        }
    }
}

/// Message of nginx's error page for `status` (kong-compat §2.7 B).
pub fn error_page_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad request",
        404 => "Not found",
        405 => "Method not allowed",
        408 => "Request timeout",
        411 => "Length required",
        412 => "Precondition failed",
        413 => "Payload too large",
        414 => "URI too long",
        417 => "Expectation failed",
        431 => "Request header or cookie too large",
        500 => "An unexpected error occurred",
        501 => "Not implemented",
        502 => "An invalid response was received from the upstream server",
        503 => "The upstream server is currently unavailable",
        504 => "The upstream server is timing out",
        _ => "The upstream server responded with an error",
    }
}

/// The request facts that choose the body format, captured before the request
/// is handed upstream.
#[derive(Debug, Default)]
pub struct FormatHints {
    pub accept: Option<HeaderValue>,
    pub content_type: Option<HeaderValue>,
}

impl FormatHints {
    pub fn of(headers: &HeaderMap) -> FormatHints {
        FormatHints {
            accept: headers.get(header::ACCEPT).cloned(),
            content_type: headers.get(header::CONTENT_TYPE).cloned(),
        }
    }

    fn is_grpc(&self) -> bool {
        self.content_type
            .as_ref()
            .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Text,
    Html,
    Xml,
}

fn format_of_media(media: &str) -> Option<Format> {
    let media = media.trim();
    [
        ("application/json", Format::Json),
        ("text/plain", Format::Text),
        ("text/html", Format::Html),
        ("application/xml", Format::Xml),
        ("text/xml", Format::Xml),
    ]
    .into_iter()
    .find(|(name, _)| media.eq_ignore_ascii_case(name))
    .map(|(_, format)| format)
}

/// The supported type with the highest `q` in an `Accept` header.
fn format_from_accept(accept: &str) -> Option<Format> {
    let mut best: Option<(Format, f32)> = None;
    for range in accept.split(',') {
        let mut params = range.split(';');
        let Some(format) = params.next().and_then(format_of_media) else {
            continue;
        };
        let q = params
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q > 0.0 && best.is_none_or(|(_, best_q)| q > best_q) {
            best = Some((format, q));
        }
    }
    best.map(|(format, _)| format)
}

fn choose_format(style: Style, hints: &FormatHints) -> Format {
    let from_accept = hints
        .accept
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(format_from_accept);
    match style {
        Style::Exit | Style::ExitJson => Format::Json,
        Style::KongError => from_accept.unwrap_or(Format::Json),
        Style::ErrorPage => from_accept
            .or_else(|| {
                hints
                    .content_type
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .and_then(|ct| ct.split(';').next())
                    .and_then(format_of_media)
            })
            .unwrap_or(Format::Text),
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn render(format: Format, style: Style, message: &str, request_id: &str) -> (String, &'static str) {
    match (style, format) {
        (Style::ExitJson, _) => (message.to_string(), "application/json; charset=utf-8"),
        (Style::Exit, _) => (
            format!("{{\"message\":{}}}", json_string(message)),
            "application/json; charset=utf-8",
        ),
        (_, Format::Json) => (
            format!(
                "{{\n  \"message\":{},\n  \"request_id\":\"{request_id}\"\n}}",
                json_string(message)
            ),
            "application/json; charset=utf-8",
        ),
        (_, Format::Text) => (
            format!("{message}\nrequest_id: {request_id}\n"),
            "text/plain; charset=utf-8",
        ),
        (_, Format::Html) => (
            format!(
                "<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n    <p>{}.</p>\n    <p>request_id: {request_id}</p>\n  </body>\n</html>\n",
                escape_markup(message)
            ),
            "text/html; charset=utf-8",
        ),
        (_, Format::Xml) => (
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>\n  <message>{}</message>\n  <requestid>{request_id}</requestid>\n</error>\n",
                escape_markup(message)
            ),
            "application/xml; charset=utf-8",
        ),
    }
}

fn escape_markup(text: &str) -> Cow<'_, str> {
    if !text.contains(['<', '>', '&', '"']) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;"),
    )
}

/// gRPC status for an HTTP status (the mapping gRPC's own spec uses).
fn grpc_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "13",
        401 => "16",
        403 => "7",
        404 => "12",
        429 | 502..=504 => "14",
        _ => "2",
    }
}

/// Builds the response for `reply`.
pub fn respond(
    reply: Reply,
    hints: &FormatHints,
    request_id: &HeaderValue,
    values: &StaticValues,
    elapsed: Duration,
) -> Response<ResponseBody> {
    let exit = matches!(reply.style, Style::Exit | Style::ExitJson);
    let mut response = if hints.is_grpc() && !exit {
        let mut response = Response::new(ResponseBody::empty());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(
            "grpc-status",
            HeaderValue::from_static(grpc_status(reply.status)),
        );
        if let Ok(message) = HeaderValue::from_str(&reply.message) {
            headers.insert("grpc-message", message);
        }
        response
    } else if reply.empty {
        Response::new(ResponseBody::empty())
    } else {
        let format = choose_format(reply.style, hints);
        let (body, content_type) = render(
            format,
            reply.style,
            &reply.message,
            request_id.to_str().unwrap_or(""),
        );
        let mut response = Response::new(ResponseBody::full(body));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    };
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    if let Some(extra) = reply.headers {
        headers.extend(extra);
    }
    headers.insert(header::SERVER, values.server.clone());
    headers.insert(X_REQUEST_ID, request_id.clone());
    headers.insert(X_RESPONSE_LATENCY, values.latency(elapsed));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(response: Response<ResponseBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn hints(accept: Option<&'static str>, content_type: Option<&'static str>) -> FormatHints {
        FormatHints {
            accept: accept.map(HeaderValue::from_static),
            content_type: content_type.map(HeaderValue::from_static),
        }
    }

    #[tokio::test]
    async fn kong_error_defaults_to_json_with_request_id() {
        let id = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
        let response = respond(
            Reply::kong(StatusCode::NOT_FOUND, "no Route matched with those values"),
            &hints(None, None),
            &id,
            &StaticValues::default(),
            Duration::ZERO,
        );
        assert_eq!(response.status(), 404);
        assert_eq!(
            response.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        assert_eq!(response.headers()["x-tollgate-request-id"], id);
        let body = body_of(response).await;
        assert_eq!(
            body,
            "{\n  \"message\":\"no Route matched with those values\",\n  \"request_id\":\"0123456789abcdef0123456789abcdef\"\n}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["request_id"], "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn format_follows_accept_then_content_type() {
        let cases = [
            (Style::KongError, None, None, Format::Json),
            (Style::KongError, Some("text/html"), None, Format::Html),
            (
                Style::KongError,
                Some("text/plain;q=0.5, application/xml"),
                None,
                Format::Xml,
            ),
            (
                Style::KongError,
                Some("text/plain;q=0.9, application/json;q=0.1"),
                None,
                Format::Text,
            ),
            (Style::KongError, Some("*/*"), None, Format::Json),
            (Style::ErrorPage, None, None, Format::Text),
            (
                Style::ErrorPage,
                None,
                Some("application/json; charset=utf-8"),
                Format::Json,
            ),
            (
                Style::ErrorPage,
                Some("application/json"),
                Some("text/html"),
                Format::Json,
            ),
            (Style::Exit, Some("text/html"), None, Format::Json),
        ];
        for (style, accept, content_type, expected) in cases {
            assert_eq!(
                choose_format(style, &hints(accept, content_type)),
                expected,
                "{style:?} {accept:?} {content_type:?}"
            );
        }
    }

    #[tokio::test]
    async fn error_pages_use_kong_messages() {
        let id = HeaderValue::from_static("00000000000000000000000000000000");
        let response = respond(
            Reply::error_page(StatusCode::BAD_GATEWAY),
            &hints(None, None),
            &id,
            &StaticValues::default(),
            Duration::ZERO,
        );
        assert_eq!(response.status(), 502);
        assert_eq!(
            body_of(response).await,
            "An invalid response was received from the upstream server\nrequest_id: 00000000000000000000000000000000\n"
        );
    }
}
