//! HTTP/1.1 upstream exchanges without hyper, for requests without a body
//! (the common proxied request). The head is encoded into one buffer and
//! written in one call; the response head is parsed once with `httparse`
//! into a `HeaderMap` whose values share the read buffer; the body is framed
//! here (its length, chunked, or until close) straight from that buffer, so a
//! small response costs one read. As with the pool's hyper connections, the
//! request that leases a connection drives it, with no task of its own, and
//! the body hands it back to the pool the moment it ends. Requests with a
//! body keep hyper's client, which writes the body while watching for an
//! early answer.

mod chunked;

use super::io::{ConnControl, UpstreamIo};
use super::pool::HostPool;
use super::RequestBody;
use crate::proxy::error::ProxyError;
use crate::proxy::headers::has_token;
use bytes::{Bytes, BytesMut};
use chunked::Chunked;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWriteExt;

/// The largest response head accepted (hyper's client buffer was 128 KiB).
const MAX_RESPONSE_HEAD: usize = 128 * 1024;
/// Most header fields in a response head, as hyper's client.
const MAX_RESPONSE_HEADERS: usize = 100;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;

/// An upstream HTTP/1.1 connection used by the lean client.
pub struct LeanConn {
    io: UpstreamIo,
    control: Arc<ConnControl>,
    read: BytesMut,
}

impl LeanConn {
    pub fn new(io: UpstreamIo, control: Arc<ConnControl>) -> Self {
        Self {
            io,
            control,
            read: BytesMut::new(),
        }
    }

    pub fn control(&self) -> &Arc<ConnControl> {
        &self.control
    }

    /// The socket and its control, for hyper's client to take up; only
    /// called on a parked connection, whose read buffer is empty.
    pub fn into_io(self) -> (UpstreamIo, Arc<ConnControl>) {
        (self.io, self.control)
    }

    /// Whether a parked connection can carry a request: nothing arrived
    /// while it was idle and the upstream has not closed it.
    pub fn poll_still_open(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        self.read.reserve(64);
        matches!(
            tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read),
            Poll::Pending
        )
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
            self.read.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}

/// How a lean exchange failed: before any byte of the request left (always
/// safe to retry), or after.
#[derive(Debug)]
pub enum Failure {
    Unsent(ProxyError),
    AfterSend(ProxyError),
}

/// Sends `request` (which has no body) on `conn` and reads the response head.
pub async fn exchange(
    mut conn: LeanConn,
    pool: &Arc<HostPool>,
    request: &Request<RequestBody>,
    extra_lines: &[u8],
) -> Result<Response<LeanBody>, Failure> {
    // Room for a large head (a token, the consumer headers) without
    // regrowing; 1 KiB costs what 512 bytes cost to allocate.
    let mut out = Vec::with_capacity(1024);
    encode(&mut out, request, extra_lines);
    conn.control.set_awaiting_response(false);
    let mut written = 0;
    while written < out.len() {
        match conn.io.write(&out[written..]).await {
            Ok(0) => {
                let error = ProxyError::from_io(io::ErrorKind::WriteZero.into());
                return Err(if written == 0 {
                    Failure::Unsent(error)
                } else {
                    Failure::AfterSend(error)
                });
            }
            Ok(n) => written += n,
            Err(error) if written == 0 => return Err(Failure::Unsent(ProxyError::from_io(error))),
            Err(error) => return Err(Failure::AfterSend(ProxyError::from_io(error))),
        }
    }
    conn.control.set_awaiting_response(true);
    let is_head = request.method() == Method::HEAD;
    loop {
        match parse_head(&mut conn.read) {
            Ok(Some(parts)) => {
                if parts.status.is_informational()
                    && parts.status != StatusCode::SWITCHING_PROTOCOLS
                {
                    // 100 Continue, 103 Early Hints: the final answer follows.
                    continue;
                }
                return LeanBody::start(conn, pool, parts, is_head).map_err(Failure::AfterSend);
            }
            Ok(None) if conn.read.len() >= MAX_RESPONSE_HEAD => {
                return Err(Failure::AfterSend(ProxyError::InvalidResponseHead))
            }
            Ok(None) => {}
            Err(()) => return Err(Failure::AfterSend(ProxyError::InvalidResponseHead)),
        }
        match conn.fill().await {
            Ok(0) => {
                let closed = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "upstream closed the connection before answering",
                );
                return Err(Failure::AfterSend(ProxyError::UpstreamIo(closed)));
            }
            Ok(_) => {}
            Err(error) => return Err(Failure::AfterSend(ProxyError::from_io(error))),
        }
    }
}

/// Methods whose empty body is announced with `Content-Length: 0`.
fn announces_empty_body(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// The request head: its line, its header map, then `extra_lines` (header
/// lines kept apart from the map, each ending in CRLF, whose names the map
/// does not hold: the consumer headers).
fn encode(out: &mut Vec<u8>, request: &Request<RequestBody>, extra_lines: &[u8]) {
    out.extend_from_slice(request.method().as_str().as_bytes());
    out.push(b' ');
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let headers = request.headers();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra_lines);
    if announces_empty_body(request.method()) && !headers.contains_key(header::CONTENT_LENGTH) {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Response headers the gateway may add beyond the upstream's: `Via`, the
/// latency headers, and a plugin's (rate-limiting sets five).
const RESPONSE_HEADROOM: usize = 12;

/// Parses the response head at the front of `read` and splits it off:
/// `Ok(None)` until it is complete; `Err` when it is not a valid HTTP/1.x
/// head. The header values share the head's bytes.
fn parse_head(read: &mut BytesMut) -> Result<Option<http::response::Parts>, ()> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        read,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let version = match response.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(()),
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(())?;
    let base = read.as_ptr() as usize;
    let mut fields: Vec<(HeaderName, std::ops::Range<usize>)> =
        Vec::with_capacity(response.headers.len());
    for field in response.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| ())?;
        let start = field.value.as_ptr() as usize - base;
        fields.push((name, start..start + field.value.len()));
    }
    let head: Bytes = read.split_to(len).freeze();
    // Room for what the gateway adds (its own headers, the plugins'), so
    // the response phase never rehashes the map.
    let mut headers = HeaderMap::with_capacity(fields.len() + RESPONSE_HEADROOM);
    for (name, range) in fields {
        let value = HeaderValue::from_maybe_shared(head.slice(range)).map_err(|_| ())?;
        headers.append(name, value);
    }
    let mut parts = Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(parts))
}

/// How the rest of a response body is delimited.
enum Framing {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

/// A response body read from a lean connection; the connection goes back to
/// the pool when the body ends cleanly, and is closed otherwise.
pub struct LeanBody {
    conn: Option<LeanConn>,
    pool: Arc<HostPool>,
    framing: Framing,
    /// The connection may carry another request once this body ends.
    reusable: bool,
}

impl std::fmt::Debug for LeanBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeanBody").finish_non_exhaustive()
    }
}

impl LeanBody {
    /// Decides the body's framing (RFC 9112 §6.3) and whether the connection
    /// survives it.
    fn start(
        conn: LeanConn,
        pool: &Arc<HostPool>,
        parts: http::response::Parts,
        is_head: bool,
    ) -> Result<Response<LeanBody>, ProxyError> {
        let status = parts.status;
        let headers = &parts.headers;
        let mut reusable =
            parts.version == Version::HTTP_11 && !has_token(headers, &header::CONNECTION, b"close");
        let framing = if is_head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            if status == StatusCode::SWITCHING_PROTOCOLS {
                // Never asked for on this path: the exchange is refused above us.
                reusable = false;
            }
            Framing::Length(0)
        } else if headers.contains_key(header::TRANSFER_ENCODING) {
            // Transfer-Encoding overrides Content-Length, and a message
            // carrying both must not leave the connection reusable.
            if headers.contains_key(header::CONTENT_LENGTH) {
                reusable = false;
            }
            if last_coding_is_chunked(headers) {
                Framing::Chunked(Chunked::default())
            } else {
                reusable = false;
                Framing::UntilClose
            }
        } else if let Some(length) = content_length(headers)? {
            Framing::Length(length)
        } else {
            reusable = false;
            Framing::UntilClose
        };
        let mut body = LeanBody {
            conn: Some(conn),
            pool: Arc::clone(pool),
            framing,
            reusable,
        };
        if matches!(body.framing, Framing::Length(0)) {
            body.finish();
        }
        Ok(Response::from_parts(parts, body))
    }

    /// The body ended: hand the connection back if it is clean.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(conn) = self.conn.take() {
            if self.reusable && conn.read.is_empty() {
                conn.control.set_awaiting_response(false);
                self.pool.put(conn);
            }
        }
    }

    fn fail(&mut self, error: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.framing = Framing::Done;
        self.conn = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for LeanBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(remaining) => {
                    if !conn.read.is_empty() {
                        let take = usize::try_from(*remaining)
                            .unwrap_or(usize::MAX)
                            .min(conn.read.len());
                        let data = conn.read.split_to(take).freeze();
                        *remaining -= take as u64;
                        if *remaining == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Framing::Chunked(chunked) => match chunked.next(&mut conn.read) {
                    Ok(chunked::Step::Data(data)) => {
                        return Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Ok(chunked::Step::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(chunked::Step::NeedMore) => {}
                    Err(error) => return this.fail(error),
                },
                Framing::UntilClose => {
                    if !conn.read.is_empty() {
                        let data = conn.read.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match std::task::ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.framing, Framing::UntilClose) => {
                    this.framing = Framing::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return this.fail(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "upstream closed the connection mid-body",
                    ))
                }
                Ok(_) => {}
                Err(error) => return this.fail(error),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

fn last_coding_is_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|value| value.as_bytes().rsplit(|&b| b == b',').next())
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// The one length all `Content-Length` fields agree on; `Err` when they
/// disagree or one is not a plain decimal number.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ProxyError> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) || part.len() > 19 {
                return Err(ProxyError::InvalidResponseHead);
            }
            let parsed: u64 = std::str::from_utf8(part)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or(ProxyError::InvalidResponseHead)?;
            if length.is_some_and(|known| known != parsed) {
                return Err(ProxyError::InvalidResponseHead);
            }
            length = Some(parsed);
        }
    }
    Ok(length)
}

#[cfg(test)]
mod tests;
