//! Sends one request to a service's upstream over a pooled connection, with
//! Kong's per-try timeouts and `retries` (kong-compat §2.8): a try that failed
//! before the request left is always retried; one that failed after is retried
//! only for an idempotent request without a body (sent by the lean client,
//! which only borrows the request, so a retry needs no copy), only on a new
//! connection or one idle long enough to be closing (a hot keep-alive
//! connection failing mid-exchange is answered 502), and never when the
//! upstream answered an invalid response (nginx's `invalid_header` is not in
//! its default retry set). Requests with a body go through hyper's client.
//! Each retried try is recorded (`FailedTry`) for the request's trace spans.

mod io;
mod lean;
mod pool;

pub use io::ConnControl;
pub use lean::LeanBody;
pub use pool::{HostPool, Http1Lease, PoolKey, PoolRegistry, Timeouts, UpstreamProtocol};

use super::body::RequestBody;
use super::error::ProxyError;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use tollgate_shared::runtime::{ConsumerHeaders, FailedTry};

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

/// An upstream response body: read by hyper (HTTP/2, requests with a body,
/// upgrades) or by the lean HTTP/1.1 client (bodyless requests).
pub enum UpstreamBody {
    Hyper(Incoming),
    Lean(LeanBody),
}

/// The upstream's response head and body, and the hyper connection to give
/// back when the body ends (HTTP/1.1 with hyper only; a lean body returns
/// its connection itself).
pub struct UpstreamResponse {
    pub response: Response<UpstreamBody>,
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

/// The retries a request has left, and the tries that failed so far (for the
/// request's trace spans).
struct Tries<'f> {
    left: u32,
    failed: &'f mut Vec<FailedTry>,
}

impl Tries<'_> {
    /// Takes one of the tries left for a try that started at `started` and
    /// failed with `error`, recording it; `false` when none is left.
    fn retry(&mut self, started: tokio::time::Instant, error: &ProxyError) -> bool {
        if self.left == 0 {
            return false;
        }
        self.failed.push(FailedTry {
            started: started.into_std(),
            ended: std::time::Instant::now(),
            error: error.label(),
        });
        self.left -= 1;
        tracing::debug!(
            error = error.label(),
            tries_left = self.left,
            "retrying upstream"
        );
        true
    }

    /// A connection from `checkout`, which is tried again while it fails
    /// before anything was sent and tries are left; with the start of the
    /// try that got it.
    async fn checkout<C, F>(
        &mut self,
        mut checkout: impl FnMut() -> F,
    ) -> Result<(C, tokio::time::Instant), ProxyError>
    where
        F: Future<Output = Result<C, ProxyError>>,
    {
        loop {
            let started = tokio::time::Instant::now();
            match checkout().await {
                Ok(connection) => return Ok((connection, started)),
                Err(error) if error.is_before_send() && self.retry(started, &error) => {}
                Err(error) => return Err(error),
            }
        }
    }
}

/// Sends `request`, with the `consumer` headers an authentication plugin
/// set, with the target's retries; every try that failed and was retried is
/// appended to `failed` (for the request's trace spans).
pub async fn forward(
    target: &UpstreamTarget,
    mut request: Request<RequestBody>,
    consumer: Option<&ConsumerHeaders>,
    failed: &mut Vec<FailedTry>,
) -> Result<UpstreamResponse, ProxyError> {
    let lean = !target.pool.key().protocol.is_http2() && request.body().is_empty();
    if lean {
        // The lean client writes the consumer headers' prepared lines.
        let lines = consumer.map_or(&[][..], ConsumerHeaders::lines);
        return forward_lean(target, request, lines, failed).await;
    }
    if let Some(consumer) = consumer {
        consumer.merge_into(request.headers_mut());
    }
    if target.pool.key().protocol.is_http2() {
        forward_http2(target, request, failed).await
    } else {
        forward_http1(target, request, failed).await
    }
}

/// A bodyless HTTP/1.1 request through the lean client, with the same retry
/// rules as hyper's path; the request is only borrowed by each try, so a
/// retry needs no copy of it.
async fn forward_lean(
    target: &UpstreamTarget,
    request: Request<RequestBody>,
    extra_lines: &[u8],
    failed: &mut Vec<FailedTry>,
) -> Result<UpstreamResponse, ProxyError> {
    let replayable = is_idempotent(request.method());
    let mut tries = Tries {
        left: target.retries,
        failed,
    };
    loop {
        let (lease, started) = tries
            .checkout(|| target.pool.checkout_lean(&target.timeouts))
            .await?;
        let connected_at = tokio::time::Instant::now();
        let may_fail_after_send = lease.may_fail_after_send;
        let error = match lean::exchange(lease.conn, &target.pool, &request, extra_lines).await {
            Ok(response) => {
                return Ok(UpstreamResponse {
                    response: response.map(UpstreamBody::Lean),
                    lease: None,
                    connected_at: Some(connected_at),
                })
            }
            Err(lean::Failure::Unsent(error)) => error,
            Err(lean::Failure::AfterSend(error))
                if replayable && may_fail_after_send && error.may_retry_after_send() =>
            {
                error
            }
            Err(lean::Failure::AfterSend(error)) => return Err(error),
        };
        if !tries.retry(started, &error) {
            return Err(error);
        }
    }
}

async fn forward_http1(
    target: &UpstreamTarget,
    mut request: Request<RequestBody>,
    failed: &mut Vec<FailedTry>,
) -> Result<UpstreamResponse, ProxyError> {
    let mut tries = Tries {
        left: target.retries,
        failed,
    };
    loop {
        let (mut lease, started) = tries
            .checkout(|| target.pool.checkout_http1(&target.timeouts))
            .await?;
        let connected_at = tokio::time::Instant::now();
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
                    response: response.map(UpstreamBody::Hyper),
                    lease,
                    connected_at: Some(connected_at),
                })
            }
            Err(mut failure) => {
                let unsent = failure.take_message();
                let error = ProxyError::from_hyper(failure.into_error());
                // A body cannot be sent twice: only a request hyper never
                // started writing goes again.
                let Some(unsent) = unsent else {
                    return Err(error);
                };
                if !tries.retry(started, &error) {
                    return Err(error);
                }
                request = unsent;
            }
        }
    }
}

async fn forward_http2(
    target: &UpstreamTarget,
    mut request: Request<RequestBody>,
    failed: &mut Vec<FailedTry>,
) -> Result<UpstreamResponse, ProxyError> {
    let mut tries = Tries {
        left: target.retries,
        failed,
    };
    loop {
        let (mut sender, started) = tries
            .checkout(|| target.pool.checkout_http2(&target.timeouts))
            .await?;
        let connected_at = tokio::time::Instant::now();
        let exchange = sender.try_send_request(request);
        match tokio::time::timeout(target.timeouts.read, exchange).await {
            Err(_) => return Err(ProxyError::Timeout),
            Ok(Ok(response)) => {
                return Ok(UpstreamResponse {
                    response: response.map(UpstreamBody::Hyper),
                    lease: None,
                    connected_at: Some(connected_at),
                })
            }
            Ok(Err(mut failure)) => {
                let unsent = failure.take_message();
                let error = ProxyError::from_hyper(failure.into_error());
                match unsent {
                    Some(unsent) if tries.retry(started, &error) => request = unsent,
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
