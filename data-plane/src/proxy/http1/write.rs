//! Responses on the lean path: the head encoded into one buffer (status line,
//! the response's headers, the framing we choose, `Date`), the body framed
//! by its known length or chunked, and small bodies sent in the same write as
//! the head.

use crate::proxy::body::ResponseBody;
use crate::proxy::headers::has_token;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use std::cell::RefCell;
use std::io::{self, IoSlice, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Body bytes copied behind the head into one write; a larger data frame is
/// written from its own buffer.
pub const OUT_CHUNK: usize = 16 * 1024;

enum Framing {
    /// No body is sent (HEAD, 1xx, 204, 304): the headers stay as they are.
    None,
    Length(u64),
    Chunked,
}

/// Writes `response`; clears `keep_alive` when the connection must close
/// after it. An error means the connection is unusable.
pub async fn response<S: AsyncWrite + Unpin>(
    io: &mut S,
    response: Response<ResponseBody>,
    is_head: bool,
    keep_alive: &mut bool,
) -> io::Result<()> {
    let mut out = SpareBuffer::take();
    let written = encode_and_send(io, &mut out.0, response, is_head, keep_alive).await;
    out.give_back();
    written
}

/// A write buffer borrowed from the worker's spares for one response, so that
/// a connection between responses holds none.
struct SpareBuffer(Vec<u8>);

/// Spare buffers kept per worker thread, and the largest one kept.
const SPARES: usize = 64;
const SPARE_CAPACITY: usize = 64 * 1024;

thread_local! {
    static SPARE_BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

impl SpareBuffer {
    fn take() -> SpareBuffer {
        let spare =
            SPARE_BUFFERS.with(|spares| spares.try_borrow_mut().ok().and_then(|mut s| s.pop()));
        SpareBuffer(spare.unwrap_or_else(|| Vec::with_capacity(1024)))
    }

    fn give_back(self) {
        let mut buffer = self.0;
        if buffer.capacity() > SPARE_CAPACITY {
            return;
        }
        buffer.clear();
        SPARE_BUFFERS.with(|spares| {
            if let Ok(mut spares) = spares.try_borrow_mut() {
                if spares.len() < SPARES {
                    spares.push(buffer);
                }
            }
        });
    }
}

async fn encode_and_send<S: AsyncWrite + Unpin>(
    io: &mut S,
    out: &mut Vec<u8>,
    response: Response<ResponseBody>,
    is_head: bool,
    keep_alive: &mut bool,
) -> io::Result<()> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let framing = if is_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::None
    } else {
        match body.size_hint().exact() {
            Some(length) => Framing::Length(length),
            None => Framing::Chunked,
        }
    };
    // A reply that stops reading from the client says `Connection: close`.
    if has_token(&parts.headers, &header::CONNECTION, b"close") {
        *keep_alive = false;
    }
    out.clear();
    status_line(out, status);
    let mut has_date = false;
    let mut has_connection = false;
    let mut write_field = |name: &HeaderName, value: &HeaderValue| {
        if !matches!(framing, Framing::None)
            && (name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING)
        {
            return;
        }
        has_date |= name == header::DATE;
        has_connection |= name == header::CONNECTION;
        field(out, name.as_str().as_bytes(), value.as_bytes());
    };
    // Plugin headers not merged into the map replace its fields of the same
    // names, as a map insert would have.
    let plugin_headers = body.take_plugin_headers();
    if plugin_headers.is_empty() {
        for (name, value) in &parts.headers {
            write_field(name, value);
        }
    } else {
        // A loop of its own rather than `ResponseHeaders::over`: this is
        // every response of a rate-limited route, and the iterator adaptors
        // cost a hundred instructions more here.
        let replaced = plugin_headers.replaced();
        for (name, value) in &parts.headers {
            if !replaced.contains(name) {
                write_field(name, value);
            }
        }
        for (name, value) in plugin_headers.iter() {
            write_field(name, value);
        }
    }
    match framing {
        Framing::None => {}
        Framing::Length(length) => field(
            out,
            b"content-length",
            itoa::Buffer::new().format(length).as_bytes(),
        ),
        Framing::Chunked => field(out, b"transfer-encoding", b"chunked"),
    }
    if !has_date {
        DATE.with(|date| field(out, b"date", date.borrow_mut().now()));
    }
    if !*keep_alive && !has_connection {
        field(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    drop(parts);
    match framing {
        Framing::None => io.write_all(out).await,
        Framing::Length(length) => {
            let sent = send_body(io, out, &mut body, false).await?;
            if sent != length {
                // The body broke its own length: the client cannot frame what follows.
                return Err(io::Error::other("response body length mismatch"));
            }
            Ok(())
        }
        Framing::Chunked => send_body(io, out, &mut body, true).await.map(|_| ()),
    }
}

/// Sends the body behind the head already in `out`, copying small frames in
/// and flushing only when the body has nothing ready; returns its data bytes.
async fn send_body<S: AsyncWrite + Unpin>(
    io: &mut S,
    out: &mut Vec<u8>,
    body: &mut ResponseBody,
    chunked: bool,
) -> io::Result<u64> {
    let mut sent = 0u64;
    loop {
        let next = {
            let mut frame = body.frame();
            match futures_util::poll!(&mut frame) {
                std::task::Poll::Ready(next) => next,
                std::task::Poll::Pending => {
                    if !out.is_empty() {
                        io.write_all(out).await?;
                        out.clear();
                    }
                    frame.await
                }
            }
        };
        let data = match next {
            None => break,
            Some(Err(_)) => return Err(io::Error::other("response body failed")),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // HTTP/1.1 responses here carry no trailers.
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if chunked {
            let _ = write!(out, "{:x}\r\n", data.len());
        }
        if out.len() + data.len() <= OUT_CHUNK {
            out.extend_from_slice(&data);
        } else {
            write_pair(io, out, data).await?;
            out.clear();
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(sent)
}

/// Writes `first` then `second` with vectored writes, without copying.
async fn write_pair<S: AsyncWrite + Unpin>(
    io: &mut S,
    first: &[u8],
    second: Bytes,
) -> io::Result<()> {
    let (mut a, mut b) = (first, &second[..]);
    while !a.is_empty() {
        let written = io
            .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
            .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if written < a.len() {
            a = &a[written..];
        } else {
            b = &b[written - a.len()..];
            a = &[];
        }
    }
    io.write_all(b).await
}

fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The `Date` value of the current second, formatted once per second per
/// worker thread.
struct DateCache {
    second: u64,
    text: [u8; 29],
}

impl DateCache {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == self.text.len() {
                self.text.copy_from_slice(text.as_bytes());
                self.second = second;
            }
        }
        &self.text
    }
}

thread_local! {
    static DATE: RefCell<DateCache> = const {
        RefCell::new(DateCache { second: 0, text: *b"Thu, 01 Jan 1970 00:00:00 GMT" })
    };
}

#[cfg(test)]
mod tests;
