//! Sends one request to a service's upstream over a pooled connection, with
//! Kong's per-try timeouts and `retries` (kong-compat §2.8): a try that failed
//! before the request left is always retried; one that failed after is retried
//! only for an idempotent request without a body, re-sent from a copy, only
//! on a new connection or one idle long enough to be closing (a hot keep-alive
//! connection failing mid-exchange is answered 502 rather than copying every
//! request head up front), and never when the upstream answered an invalid
//! response (nginx's `invalid_header` is not in its default retry set).
//! Each retried try is recorded (`FailedTry`) for the request's trace spans.

mod io;
mod pool;

pub use io::ConnControl;
pub use pool::{HostPool, Http1Lease, PoolKey, PoolRegistry, Timeouts, UpstreamProtocol};

use super::body::RequestBody;
use super::error::ProxyError;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use tollgate_shared::runtime::FailedTry;

/// Where and how a service's requests go.
#[derive(Debug)]
pub struct UpstreamTarget {
    pub pool: Arc<HostPool>,
    pub timeouts: Timeouts,
    /// Extra tries after the first.
    pub retries: u32,
}

impl tollgate_shared::compile::BindUpstream for PoolRegistry {
    type Target = UpstreamTarget;

    /// Each service reaches its pool directly from the compiled config; pools
    /// are shared by services with the same key and survive config swaps.
    fn bind(
        &self,
        spec: &tollgate_shared::compile::UpstreamSpec,
    ) -> Result<UpstreamTarget, String> {
        let pool = self.pool(PoolKey {
            protocol: spec.protocol,
            host: Arc::clone(&spec.host),
            port: spec.port,
            verify_tls: spec.verify_tls,
        })?;
        Ok(UpstreamTarget {
            pool,
            timeouts: spec.timeouts,
            retries: spec.retries,
        })
    }
}

/// The upstream's response head and body, and the connection to give back
/// when the body ends (HTTP/1.1 only).
pub struct UpstreamResponse {
    pub response: Response<Incoming>,
    pub lease: Option<Http1Lease>,
    /// When the connection that carried the exchange was ready (for the
    /// request's timings; `None` for an upgrade's dedicated connection).
    pub connected_at: Option<tokio::time::Instant>,
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// A bodyless request's head, kept to re-send it after a failed try.
struct Replay {
    method: Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
}

impl Replay {
    fn of(request: &Request<RequestBody>) -> Replay {
        Replay {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
        }
    }

    fn into_request(self) -> Request<RequestBody> {
        let mut request = Request::new(RequestBody::Empty);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers;
        request
    }
}

/// Records a try that failed and is about to be retried.
fn note_retry(failed: &mut Vec<FailedTry>, started: tokio::time::Instant, error: &ProxyError) {
    failed.push(FailedTry {
        started: started.into_std(),
        ended: std::time::Instant::now(),
        error: error.label(),
    });
}

/// Sends `request` with the target's retries; every try that failed and was
/// retried is appended to `failed` (for the request's trace spans).
pub async fn forward(
    target: &UpstreamTarget,
    request: Request<RequestBody>,
    failed: &mut Vec<FailedTry>,
) -> Result<UpstreamResponse, ProxyError> {
    if target.pool.key().protocol.is_http2() {
        forward_http2(target, request, failed).await
    } else {
        forward_http1(target, request, failed).await
    }
}

async fn forward_http1(
    target: &UpstreamTarget,
    mut request: Request<RequestBody>,
    failed: &mut Vec<FailedTry>,
) -> Result<UpstreamResponse, ProxyError> {
    let replayable = request.body().is_empty() && is_idempotent(request.method());
    let mut tries_left = target.retries;
    loop {
        let started = tokio::time::Instant::now();
        let mut lease = match target.pool.checkout_http1(&target.timeouts).await {
            Ok(lease) => lease,
            Err(error) if error.is_before_send() && tries_left > 0 => {
                note_retry(failed, started, &error);
                tries_left -= 1;
                tracing::debug!(error = error.label(), tries_left, "retrying upstream");
                continue;
            }
            Err(error) => return Err(error),
        };
        let connected_at = tokio::time::Instant::now();
        let replay = (replayable && tries_left > 0 && lease.may_fail_after_send)
            .then(|| Replay::of(&request));
        request.body_mut().attach(&lease.control);
        let exchange = lease.sender.try_send_request(request);
        let mut exchange = std::pin::pin!(exchange);
        // Drive the connection until the exchange resolves: the connection
        // writes the request and reads the response head into the exchange.
        let outcome = std::future::poll_fn(|cx| {
            let connection_ended = lease.poll_connection(cx).is_ready();
            match exchange.as_mut().poll(cx) {
                Poll::Ready(outcome) => Poll::Ready(Some(outcome)),
                Poll::Pending if connection_ended => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let (outcome, lease) = match outcome {
            Some(outcome) => (outcome, Some(lease)),
            // The connection ended before taking the request up; dropping it
            // hands the request back through the exchange, unsent.
            None => {
                drop(lease);
                (exchange.await, None)
            }
        };
        match outcome {
            Ok(response) => {
                return Ok(UpstreamResponse {
                    response,
                    lease,
                    connected_at: Some(connected_at),
                })
            }
            Err(mut failure) => {
                let unsent = failure.take_message();
                let error = ProxyError::from_hyper(failure.into_error());
                let next = match (unsent, replay) {
                    (Some(unsent), _) => unsent,
                    (None, Some(replay)) if error.may_retry_after_send() => replay.into_request(),
                    (None, _) => return Err(error),
                };
                if tries_left == 0 {
                    return Err(error);
                }
                note_retry(failed, started, &error);
                tries_left -= 1;
                tracing::debug!(error = error.label(), tries_left, "retrying upstream");
                request = next;
            }
        }
    }
}

async fn forward_http2(
    target: &UpstreamTarget,
    mut request: Request<RequestBody>,
    failed: &mut Vec<FailedTry>,
) -> Result<UpstreamResponse, ProxyError> {
    let mut tries_left = target.retries;
    loop {
        let started = tokio::time::Instant::now();
        let mut sender = match target.pool.checkout_http2(&target.timeouts).await {
            Ok(sender) => sender,
            Err(error) if error.is_before_send() && tries_left > 0 => {
                note_retry(failed, started, &error);
                tries_left -= 1;
                continue;
            }
            Err(error) => return Err(error),
        };
        let connected_at = tokio::time::Instant::now();
        let exchange = sender.try_send_request(request);
        match tokio::time::timeout(target.timeouts.read, exchange).await {
            Err(_) => return Err(ProxyError::Timeout),
            Ok(Ok(response)) => {
                return Ok(UpstreamResponse {
                    response,
                    lease: None,
                    connected_at: Some(connected_at),
                })
            }
            Ok(Err(mut failure)) => {
                let unsent = failure.take_message();
                let error = ProxyError::from_hyper(failure.into_error());
                match unsent {
                    Some(unsent) if tries_left > 0 => {
                        note_retry(failed, started, &error);
                        tries_left -= 1;
                        request = unsent;
                    }
                    _ => return Err(error),
                }
            }
        }
    }
}

/// Sends an upgrade request (WebSocket) on a fresh connection that is never
/// pooled; the caller joins both upgraded sides once the upstream answers 101.
pub async fn forward_upgrade(
    target: &UpstreamTarget,
    mut request: Request<RequestBody>,
) -> Result<Response<Incoming>, ProxyError> {
    let mut tries_left = target.retries;
    let (mut sender, control) = loop {
        match target.pool.connect_for_upgrade(&target.timeouts).await {
            Ok(connection) => break connection,
            Err(error) if error.is_before_send() && tries_left > 0 => tries_left -= 1,
            Err(error) => return Err(error),
        }
    };
    request.body_mut().attach(&control);
    sender
        .send_request(request)
        .await
        .map_err(ProxyError::from_hyper)
}
