//! The two streaming bodies of a proxied exchange: the client's request body
//! on its way upstream (streamed, or read completely first when the route
//! buffers requests: in memory, spilled to an unnamed temporary file past a
//! threshold), and the response body on its way to the client, which hands
//! its upstream connection back to the pool the moment it ends.

use super::server::ActiveRequest;
use super::service::LogJob;
use super::upstream::{ConnControl, Http1Lease, LeanBody, UpstreamBody};
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncSeekExt, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};
use tollgate_shared::runtime::ResponseHeaders;

/// What went wrong with the client's request body; carried inside the
/// upstream exchange's error so that it is answered as the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    /// No data for longer than the body timeout (nginx `client_body_timeout`): 408.
    #[error("client request body timed out")]
    Timeout,
    /// More than the body size limit (nginx `client_max_body_size`): 413.
    #[error("client request body larger than allowed")]
    TooLarge,
    /// Invalid framing (chunk size, chunk line) or a client gone mid-body: 400.
    #[error("client request body malformed")]
    Malformed(#[source] hyper::Error),
}

/// Error of a request body on its way upstream.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The client's request body as its connection delivers it: hyper's stream,
/// or nothing for a request the lean HTTP/1.1 path took (it takes only
/// requests without a body; see `proxy::http1`).
pub enum ClientIncoming {
    Hyper(Incoming),
    Empty,
}

impl Body for ClientIncoming {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ClientIncoming::Hyper(body) => Pin::new(body).poll_frame(cx),
            ClientIncoming::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientIncoming::Hyper(body) => body.is_end_stream(),
            ClientIncoming::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientIncoming::Hyper(body) => body.size_hint(),
            ClientIncoming::Empty => SizeHint::with_exact(0),
        }
    }
}

/// A request body sent upstream.
pub enum RequestBody {
    Empty,
    Streaming {
        body: ClientIncoming,
        /// The connection it is being written to; told when the last byte left.
        control: Option<Arc<ConnControl>>,
        stall: StallTimer,
        received: u64,
        /// Most bytes accepted; 0 is unlimited.
        max: u64,
        /// Where the log record learns the size of a body of unknown length.
        counted: Option<Arc<AtomicU64>>,
    },
    /// Read completely before the upstream was contacted.
    Buffered {
        data: Buffered,
        control: Option<Arc<ConnControl>>,
    },
}

/// A completely read request body.
pub enum Buffered {
    Memory(Option<Bytes>),
    File(Box<Spool>),
}

/// A body spilled to an unnamed temporary file (gone once closed).
pub struct Spool {
    file: tokio::fs::File,
    remaining: u64,
    chunk: BytesMut,
}

/// How request bodies are read before forwarding.
#[derive(Debug, Clone)]
pub struct BufferLimits<'a> {
    /// Most bytes accepted; 0 is unlimited.
    pub max: u64,
    /// Bodies up to this size stay in memory; larger ones go to `temp_dir`.
    pub memory: usize,
    pub temp_dir: &'a Path,
    pub stall_timeout: Duration,
}

/// Bytes read from a spooled file per frame.
const SPOOL_CHUNK: usize = 64 * 1024;

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
    /// The client's body, streamed; `max` bytes at most (0: unlimited).
    pub fn from_incoming(body: ClientIncoming, stall_timeout: Duration, max: u64) -> RequestBody {
        if body.is_end_stream() {
            RequestBody::Empty
        } else {
            RequestBody::Streaming {
                body,
                control: None,
                stall: StallTimer::new(stall_timeout),
                received: 0,
                max,
                counted: None,
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, RequestBody::Empty)
    }

    /// Adds the data bytes of a streamed body to `counter` as they pass.
    pub fn count_into(&mut self, counter: Arc<AtomicU64>) {
        if let RequestBody::Streaming { counted, .. } = self {
            *counted = Some(counter);
        }
    }

    /// Binds the body to the connection it is about to be written to. An empty
    /// body is written with the head, so the response wait starts at once.
    pub fn attach(&mut self, connection: &Arc<ConnControl>) {
        match self {
            RequestBody::Empty => connection.set_awaiting_response(true),
            RequestBody::Streaming { control, .. } | RequestBody::Buffered { control, .. } => {
                connection.set_awaiting_response(false);
                *control = Some(Arc::clone(connection));
            }
        }
    }
}

/// Reads the client's whole body before anything is sent upstream (request
/// buffering), so a slow client holds its own socket but no upstream
/// connection. A declared length above the limit is refused before reading.
pub async fn buffer_request_body(
    body: ClientIncoming,
    limits: &BufferLimits<'_>,
) -> Result<RequestBody, BufferError> {
    if limits.max > 0 && body.size_hint().lower() > limits.max {
        return Err(ClientBodyError::TooLarge.into());
    }
    let mut streaming = RequestBody::from_incoming(body, limits.stall_timeout, limits.max);
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut in_memory = 0usize;
    let mut spool: Option<(tokio::fs::File, u64)> = None;
    while let Some(frame) = streaming.frame().await {
        let frame = frame.map_err(|error| match error.downcast::<ClientBodyError>() {
            Ok(client) => BufferError::Client(*client),
            Err(_) => BufferError::Spool(io::Error::other("request body failed")),
        })?;
        let Ok(data) = frame.into_data() else {
            // Trailers of a buffered body are not forwarded.
            continue;
        };
        if let Some((file, written)) = spool.as_mut() {
            file.write_all(&data).await?;
            *written += data.len() as u64;
        } else if in_memory + data.len() <= limits.memory {
            in_memory += data.len();
            chunks.push(data);
        } else {
            let mut file = new_spool_file(limits.temp_dir).await?;
            let mut written = 0u64;
            for chunk in chunks.drain(..).chain(std::iter::once(data)) {
                file.write_all(&chunk).await?;
                written += chunk.len() as u64;
            }
            spool = Some((file, written));
        }
    }
    let data = match spool {
        Some((mut file, written)) => {
            file.flush().await?;
            file.seek(io::SeekFrom::Start(0)).await?;
            Buffered::File(Box::new(Spool {
                file,
                remaining: written,
                chunk: BytesMut::new(),
            }))
        }
        None if chunks.is_empty() => return Ok(RequestBody::Empty),
        None if chunks.len() == 1 => Buffered::Memory(chunks.pop()),
        None => {
            let mut joined = BytesMut::with_capacity(in_memory);
            for chunk in &chunks {
                joined.extend_from_slice(chunk);
            }
            Buffered::Memory(Some(joined.freeze()))
        }
    };
    Ok(RequestBody::Buffered {
        data,
        control: None,
    })
}

/// Why a body could not be buffered: the client's fault, or the spool file's.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error(transparent)]
    Client(#[from] ClientBodyError),
    #[error("cannot spool the request body: {0}")]
    Spool(#[from] io::Error),
}

async fn new_spool_file(dir: &Path) -> io::Result<tokio::fs::File> {
    let dir = dir.to_path_buf();
    let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
        .await
        .map_err(io::Error::other)??;
    Ok(tokio::fs::File::from_std(file))
}

impl Buffered {
    fn len(&self) -> u64 {
        match self {
            Buffered::Memory(bytes) => bytes.as_ref().map_or(0, |b| b.len() as u64),
            Buffered::File(spool) => spool.remaining,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        match self {
            Buffered::Memory(bytes) => Poll::Ready(bytes.take().map(Ok)),
            Buffered::File(spool) => {
                if spool.remaining == 0 {
                    return Poll::Ready(None);
                }
                let want = usize::try_from(spool.remaining)
                    .unwrap_or(SPOOL_CHUNK)
                    .min(SPOOL_CHUNK);
                spool.chunk.resize(want, 0);
                let mut buf = ReadBuf::new(&mut spool.chunk[..]);
                if let Err(error) = ready!(Pin::new(&mut spool.file).poll_read(cx, &mut buf)) {
                    return Poll::Ready(Some(Err(error)));
                }
                let read = buf.filled().len();
                if read == 0 {
                    return Poll::Ready(Some(Err(io::ErrorKind::UnexpectedEof.into())));
                }
                spool.remaining -= read as u64;
                spool.chunk.truncate(read);
                Poll::Ready(Some(Ok(spool.chunk.split().freeze())))
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
            RequestBody::Buffered { data, control } => {
                let next = ready!(data.poll_next(cx));
                if data.len() == 0 {
                    if let Some(control) = control {
                        control.set_awaiting_response(true);
                    }
                }
                Poll::Ready(next.map(|r| r.map(Frame::data).map_err(BodyError::from)))
            }
            RequestBody::Streaming {
                body,
                control,
                stall,
                received,
                max,
                counted,
            } => {
                let frame = match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(frame) => frame,
                    Poll::Pending if stall.expired(cx) => {
                        return Poll::Ready(Some(Err(Box::new(ClientBodyError::Timeout))))
                    }
                    Poll::Pending => return Poll::Pending,
                };
                stall.waiting_since = None;
                let frame = match frame {
                    None => None,
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            *received += data.len() as u64;
                            if let Some(counter) = counted {
                                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                            }
                            if *max > 0 && *received > *max {
                                return Poll::Ready(Some(Err(Box::new(ClientBodyError::TooLarge))));
                            }
                        }
                        Some(Ok(frame))
                    }
                    Some(Err(error)) => {
                        return Poll::Ready(Some(Err(Box::new(ClientBodyError::Malformed(error)))))
                    }
                };
                let finished = frame.is_none() || body.is_end_stream();
                if finished {
                    if let Some(control) = control {
                        control.set_awaiting_response(true);
                    }
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Streaming { body, .. } => body.is_end_stream(),
            RequestBody::Buffered { data, .. } => data.len() == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Streaming { body, .. } => body.size_hint(),
            RequestBody::Buffered { data, .. } => SizeHint::with_exact(data.len()),
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
    /// Headers plugins set (rate-limiting's counters) that are not in the
    /// head's map yet: whoever writes the head adds them, replacing fields of
    /// the same names (see `service::response_phase`).
    plugin_headers: ResponseHeaders,
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
    /// Read by the lean client, which hands its connection back itself.
    Lean(LeanBody),
}

impl ResponseBody {
    pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
        let bytes = bytes.into();
        ResponseBody {
            inner: Inner::Full((!bytes.is_empty()).then_some(bytes)),
            log: None,
            plugin_headers: ResponseHeaders::default(),
            sent: 0,
            _active: None,
        }
    }

    pub fn empty() -> ResponseBody {
        ResponseBody {
            inner: Inner::Full(None),
            log: None,
            plugin_headers: ResponseHeaders::default(),
            sent: 0,
            _active: None,
        }
    }

    /// Streams the upstream body; `lease` goes back to the pool when it ends.
    pub fn upstream(body: UpstreamBody, lease: Option<Http1Lease>) -> ResponseBody {
        let body = match body {
            UpstreamBody::Hyper(body) => body,
            UpstreamBody::Lean(body) => {
                return ResponseBody {
                    inner: Inner::Lean(body),
                    log: None,
                    plugin_headers: ResponseHeaders::default(),
                    sent: 0,
                    _active: None,
                }
            }
        };
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
            plugin_headers: ResponseHeaders::default(),
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

    pub(crate) fn set_plugin_headers(&mut self, headers: ResponseHeaders) {
        self.plugin_headers = headers;
    }

    pub(crate) fn plugin_headers(&self) -> &ResponseHeaders {
        &self.plugin_headers
    }

    /// The plugin headers still to be written with the head.
    pub(crate) fn take_plugin_headers(&mut self) -> ResponseHeaders {
        std::mem::take(&mut self.plugin_headers)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
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
            Inner::Lean(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Inner::Upstream { body, .. } => body.size_hint(),
            Inner::Lean(body) => body.size_hint(),
        }
    }
}

impl ResponseBody {
    fn poll_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.inner {
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Lean(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|r| r.map_err(BodyError::from))),
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
                Poll::Ready(frame.map(|r| r.map_err(BodyError::from)))
            }
        }
    }
}

fn release(lease: &mut Option<Http1Lease>) {
    if let Some(lease) = lease.take() {
        lease.release();
    }
}
