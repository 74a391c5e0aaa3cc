//! `ProxyError`: what went wrong while proxying one request, which side failed,
//! and a fixed low-cardinality label for logs and metrics. Rejections by
//! plugins are not errors (see `plugins::Decision`).

use super::body::ClientBodyError;
use http::StatusCode;
use std::error::Error as _;
use std::io;

impl From<&ClientBodyError> for ProxyError {
    fn from(error: &ClientBodyError) -> ProxyError {
        match error {
            ClientBodyError::Timeout => ProxyError::ClientBodyTimeout,
            ClientBodyError::TooLarge => ProxyError::ClientBodyTooLarge,
            ClientBodyError::Malformed(_) => ProxyError::ClientBodyMalformed,
        }
    }
}

/// Which party a failure is attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("request path cannot be normalized")]
    InvalidPath,
    #[error("client request body timed out")]
    ClientBodyTimeout,
    #[error("client request body larger than allowed")]
    ClientBodyTooLarge,
    #[error("client request body malformed")]
    ClientBodyMalformed,
    #[error("request body could not be buffered")]
    BodyBuffer(#[source] io::Error),
    #[error("upstream name resolution failed")]
    NameResolution(#[source] io::Error),
    #[error("upstream connect failed")]
    Connect(#[source] io::Error),
    #[error("upstream connect timed out")]
    ConnectTimeout,
    #[error("upstream TLS handshake failed")]
    Tls(#[source] io::Error),
    #[error("upstream timed out")]
    Timeout,
    #[error("upstream connection failed")]
    Upstream(#[source] hyper::Error),
    #[error("upstream sent an invalid response head")]
    InvalidResponse(#[source] hyper::Error),
    /// The lean HTTP/1.1 client's own parse of a response head failed.
    #[error("upstream sent an invalid response head")]
    InvalidResponseHead,
    /// The lean HTTP/1.1 client lost the connection (closed, reset) mid-exchange.
    #[error("upstream connection failed")]
    UpstreamIo(#[source] io::Error),
    #[error("upstream switched protocols unasked")]
    UnexpectedUpgrade,
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl ProxyError {
    pub fn side(&self) -> Side {
        match self {
            ProxyError::InvalidPath
            | ProxyError::ClientBodyTimeout
            | ProxyError::ClientBodyTooLarge
            | ProxyError::ClientBodyMalformed => Side::Client,
            ProxyError::Internal(_) | ProxyError::BodyBuffer(_) => Side::Internal,
            _ => Side::Upstream,
        }
    }

    /// A fixed label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            ProxyError::InvalidPath => "client_invalid_path",
            ProxyError::ClientBodyTimeout => "client_body_timeout",
            ProxyError::ClientBodyTooLarge => "client_body_too_large",
            ProxyError::ClientBodyMalformed => "client_body_malformed",
            ProxyError::BodyBuffer(_) => "body_buffer",
            ProxyError::NameResolution(_) => "upstream_name_resolution",
            ProxyError::Connect(_) => "upstream_connect",
            ProxyError::ConnectTimeout => "upstream_connect_timeout",
            ProxyError::Tls(_) => "upstream_tls",
            ProxyError::Timeout => "upstream_timeout",
            ProxyError::Upstream(_) | ProxyError::UpstreamIo(_) => "upstream_protocol",
            ProxyError::InvalidResponse(_) | ProxyError::InvalidResponseHead => {
                "upstream_invalid_header"
            }
            ProxyError::UnexpectedUpgrade => "upstream_unexpected_upgrade",
            ProxyError::Internal(_) => "internal",
        }
    }

    /// The status Kong answers with (kong-compat §2.7).
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::InvalidPath => StatusCode::BAD_REQUEST,
            ProxyError::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::ClientBodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientBodyMalformed => StatusCode::BAD_REQUEST,
            ProxyError::NameResolution(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect(_)
            | ProxyError::Tls(_)
            | ProxyError::Upstream(_)
            | ProxyError::UpstreamIo(_)
            | ProxyError::InvalidResponse(_)
            | ProxyError::InvalidResponseHead
            | ProxyError::UnexpectedUpgrade => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout | ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Internal(_) | ProxyError::BodyBuffer(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Classifies an I/O failure of the lean client's exchange.
    pub fn from_io(error: io::Error) -> ProxyError {
        if error.kind() == io::ErrorKind::TimedOut {
            ProxyError::Timeout
        } else {
            ProxyError::UpstreamIo(error)
        }
    }

    /// Classifies a failed exchange on an upstream connection.
    pub fn from_hyper(error: hyper::Error) -> ProxyError {
        let mut source = error.source();
        while let Some(cause) = source {
            if let Some(client) = cause.downcast_ref::<ClientBodyError>() {
                return client.into();
            }
            if let Some(io) = cause.downcast_ref::<io::Error>() {
                if io.kind() == io::ErrorKind::TimedOut {
                    return ProxyError::Timeout;
                }
            }
            source = cause.source();
        }
        if error.is_parse() {
            return ProxyError::InvalidResponse(error);
        }
        ProxyError::Upstream(error)
    }

    /// Whether a replayable request that failed this way after being sent may
    /// be sent again. An invalid response is not a transport failure (nginx's
    /// `invalid_header` is not in its default retry set), and a client's own
    /// failure would only repeat.
    pub fn may_retry_after_send(&self) -> bool {
        matches!(
            self,
            ProxyError::Upstream(_) | ProxyError::UpstreamIo(_) | ProxyError::Timeout
        )
    }

    /// Failures that happen before any byte of the request reached the upstream.
    pub fn is_before_send(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect(_) | ProxyError::ConnectTimeout | ProxyError::Tls(_)
        )
    }
}
