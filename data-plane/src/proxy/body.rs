//! The two streaming bodies of a proxied exchange: the client's request body
//! on its way upstream, and the response body on its way to the client, which
//! hands its upstream connection back to the pool the moment it ends.

use super::server::ActiveRequest;
use super::service::LogJob;
use super::upstream::{ConnControl, Http1Lease};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The client stopped sending its request body for longer than the body
/// timeout (nginx `client_body_timeout`); the exchange is abandoned with 408.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("client request body timed out")]
pub struct ClientBodyTimeout;

/// Error of a request body on its way upstream.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A request body sent upstream.
pub enum RequestBody {
    Empty,
    Streaming {
        body: Incoming,
        /// The connection it is being written to; told when the last byte left.
        control: Option<Arc<ConnControl>>,
        stall: StallTimer,
    },
}

/// Times how long the client leaves the body without data. The timer is
/// allocated only when a wait happens and re-armed only when it fires early.
pub struct StallTimer {
    timeout: Duration,
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl StallTimer {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            waiting_since: None,
            timer: None,
        }
    }

    /// `true` once the current wait exceeded the timeout.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let now = Instant::now();
        let deadline = *self.waiting_since.get_or_insert(now) + self.timeout;
        if now >= deadline {
            return true;
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() > deadline || timer.is_elapsed() {
            timer.as_mut().reset(deadline);
        }
        // Registers the wake-up; elapsed only when `deadline` itself passed.
        timer.as_mut().poll(cx).is_ready()
    }
}

impl RequestBody {
    pub fn from_incoming(body: Incoming, stall_timeout: Duration) -> RequestBody {
        if body.is_end_stream() {
            RequestBody::Empty
        } else {
            RequestBody::Streaming {
                body,
                control: None,
                stall: StallTimer::new(stall_timeout),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, RequestBody::Empty)
    }

    /// Binds the body to the connection it is about to be written to. An empty
    /// body is written with the head, so the response wait starts at once.
    pub fn attach(&mut self, connection: &Arc<ConnControl>) {
        match self {
            RequestBody::Empty => connection.set_awaiting_response(true),
            RequestBody::Streaming { control, .. } => {
                connection.set_awaiting_response(false);
                *control = Some(Arc::clone(connection));
            }
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Streaming {
                body,
                control,
                stall,
            } => {
                let frame = match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(frame) => frame,
                    Poll::Pending if stall.expired(cx) => {
                        return Poll::Ready(Some(Err(Box::new(ClientBodyTimeout))))
                    }
                    Poll::Pending => return Poll::Pending,
                };
                stall.waiting_since = None;
                let finished = match &frame {
                    None => true,
                    Some(Ok(_)) => body.is_end_stream(),
                    Some(Err(_)) => false,
                };
                if finished {
                    if let Some(control) = control {
                        control.set_awaiting_response(true);
                    }
                }
                Poll::Ready(frame.map(|f| f.map_err(BodyError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Streaming { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Streaming { body, .. } => body.size_hint(),
        }
    }
}

/// A response body sent to the client.
pub struct ResponseBody {
    inner: Inner,
    /// The log phase, run when the body is dropped: the response finished or
    /// the client went away. Dropped before `_active` so that the connection
    /// counts as busy until the log phase is done.
    log: Option<Box<LogJob>>,
    /// Data bytes delivered so far (counted only when there is a log phase).
    sent: u64,
    /// Marks the client connection busy until the body is dropped.
    _active: Option<ActiveRequest>,
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.finish(self.sent);
        }
    }
}

enum Inner {
    Full(Option<Bytes>),
    Upstream {
        body: Incoming,
        lease: Option<Http1Lease>,
    },
}

impl ResponseBody {
    pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
        let bytes = bytes.into();
        ResponseBody {
            inner: Inner::Full((!bytes.is_empty()).then_some(bytes)),
            log: None,
            sent: 0,
            _active: None,
        }
    }

    pub fn empty() -> ResponseBody {
        ResponseBody {
            inner: Inner::Full(None),
            log: None,
            sent: 0,
            _active: None,
        }
    }

    /// Streams the upstream body; `lease` goes back to the pool when it ends.
    pub fn upstream(body: Incoming, lease: Option<Http1Lease>) -> ResponseBody {
        let lease = match lease {
            Some(lease) if body.is_end_stream() => {
                lease.release();
                None
            }
            other => other,
        };
        ResponseBody {
            inner: Inner::Upstream { body, lease },
            log: None,
            sent: 0,
            _active: None,
        }
    }

    pub(crate) fn set_active(&mut self, active: ActiveRequest) {
        self._active = Some(active);
    }

    pub(crate) fn set_log(&mut self, log: Box<LogJob>) {
        self.log = Some(log);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(this.poll_inner(cx));
        if this.log.is_some() {
            if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                this.sent += data.map_or(0, |d| d.len() as u64);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(bytes) => bytes.is_none(),
            Inner::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Inner::Upstream { body, .. } => body.size_hint(),
        }
    }
}

impl ResponseBody {
    fn poll_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.inner {
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Upstream { body, lease } => {
                // The leased connection feeds the body: drive it first.
                if let Some(connection) = lease {
                    if connection.poll_connection(cx).is_ready() {
                        // Ended (closed or failed); what it delivered stays in `body`.
                        drop(lease.take());
                    }
                }
                let frame = ready!(Pin::new(&mut *body).poll_frame(cx));
                match &frame {
                    None => release(lease),
                    Some(Ok(_)) if body.is_end_stream() => release(lease),
                    Some(Ok(_)) => {}
                    // The connection is in an unknown state: dropping the lease closes it.
                    Some(Err(_)) => drop(lease.take()),
                }
                Poll::Ready(frame)
            }
        }
    }
}

fn release(lease: &mut Option<Http1Lease>) {
    if let Some(lease) = lease.take() {
        lease.release();
    }
}
