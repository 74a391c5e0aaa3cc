//! The lean HTTP/1.1 server path: the connection loop that reads request
//! heads with `httparse`, hands each request to [`service::handle`] and writes
//! the response itself, without hyper's general-purpose server machinery.
//!
//! It takes the common request only: HTTP/1.1, no body (no `Content-Length`
//! other than `0`, no `Transfer-Encoding`), no `Upgrade`, no `Expect`, not
//! `CONNECT`, every header valid for the `http` crate. The first request that
//! is anything else (or that `httparse` refuses, or that outgrows the head
//! buffer) ends the lean loop: the connection and every byte read so far are
//! handed to hyper ([`Ended::Handover`]), which serves the rest of the
//! connection. So whatever is unusual or malformed is framed, refused or
//! upgraded by exactly the code that handled it before this path existed, and
//! an ambiguous request can never be framed two ways.

mod parse;
mod prefixed;
mod write;

pub use prefixed::Prefixed;

use super::body::ClientIncoming;
use super::server::ClientConn;
use super::service;
use bytes::{Bytes, BytesMut};
use http::Request;
use parse::{Field, Parsed};
use std::cell::RefCell;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// How the lean loop ended.
pub enum Ended<S> {
    /// The connection is done (closed by either side, or failed).
    Closed,
    /// hyper takes over the connection; `buffered` holds the bytes already
    /// read from it, starting with the request the lean path did not take.
    Handover { io: S, buffered: Bytes },
}

/// Bytes asked of the socket per read once a request is under way.
const READ_CHUNK: usize = 8 * 1024;

/// The first read of a request goes to the stack (not to a buffer the idle
/// connection would keep): most request heads fit.
const FIRST_READ: usize = 2048;

thread_local! {
    /// Header field ranges of the head being parsed: parsing and building a
    /// request never wait, so one vector per worker thread serves every
    /// connection.
    static FIELDS: RefCell<Vec<Field>> = const { RefCell::new(Vec::new()) };
}

/// What the front of the read buffer holds.
// Lives only from a parse to its `match`; boxing the request would allocate
// for every request.
#[allow(clippy::large_enum_variant)]
enum Step {
    Request(Request<ClientIncoming>, bool),
    Partial,
    Handover,
}

/// Parses and builds the request at the front of `buf`, splitting its head
/// off. On `Handover`, `buf` still holds every byte read.
fn next_request(buf: &mut BytesMut, max_headers: usize) -> Step {
    FIELDS.with(|fields| {
        let Ok(mut fields) = fields.try_borrow_mut() else {
            return Step::Handover;
        };
        match parse::head(buf, max_headers, &mut fields) {
            Parsed::Complete(head) => {
                let bytes = buf.split_to(head.len).freeze();
                match head.request(&bytes, &fields, ClientIncoming::Empty) {
                    Some(request) => Step::Request(request, head.keep_alive),
                    None => {
                        *buf = rejoin(bytes, std::mem::take(buf));
                        Step::Handover
                    }
                }
            }
            Parsed::Partial if buf.len() < parse::MAX_HEAD => Step::Partial,
            Parsed::Partial | Parsed::NotLean => Step::Handover,
        }
    })
}

/// Serves requests on `io` until the connection ends or needs hyper. An idle
/// connection holds no buffer: the loop's state between requests is a few
/// words, and the request's own future is boxed while it runs.
pub async fn serve<S>(mut io: S, conn: Arc<ClientConn>) -> Ended<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::new();
    let max_headers = conn.shared.limits.max_headers;
    loop {
        let (request, mut keep_alive) = loop {
            if !buf.is_empty() {
                match next_request(&mut buf, max_headers) {
                    Step::Request(request, keep_alive) => break (request, keep_alive),
                    Step::Partial => {}
                    Step::Handover => {
                        return Ended::Handover {
                            io,
                            buffered: buf.freeze(),
                        }
                    }
                }
            }
            match read_more(&mut io, &mut buf, &conn).await {
                Ok(0) | Err(_) => return Ended::Closed,
                Ok(_) => {}
            }
        };
        let is_head = request.method() == http::Method::HEAD;
        let Ok(response) = service::handle(Arc::clone(&conn), request).await;
        let written = write::response(&mut io, response, is_head, &mut keep_alive).await;
        if written.is_err() {
            return Ended::Closed;
        }
        if !keep_alive || conn.is_closing() {
            let _ = io.shutdown().await;
            return Ended::Closed;
        }
        if buf.is_empty() {
            // Let go of the read buffer while the connection waits.
            buf = BytesMut::new();
        }
    }
}

/// Reads more of the connection into `buf`. Between requests (nothing
/// buffered), a connection asked to close reads as ended, and the read goes
/// to the stack first so that waiting costs no buffer.
async fn read_more<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    conn: &ClientConn,
) -> std::io::Result<usize> {
    if buf.is_empty() {
        return std::future::poll_fn(|cx| {
            if conn.is_closing() {
                return Poll::Ready(Ok(0));
            }
            let mut first = [0u8; FIRST_READ];
            let mut read = ReadBuf::new(&mut first);
            match Pin::new(&mut *io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    buf.extend_from_slice(read.filled());
                    Poll::Ready(Ok(read.filled().len()))
                }
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
    }
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    io.read_buf(buf).await
}

/// A head the lean path parsed but could not build, followed by what came
/// after it, for hyper to read from the start.
fn rejoin(head: Bytes, rest: BytesMut) -> BytesMut {
    let mut joined = BytesMut::with_capacity(head.len() + rest.len());
    joined.extend_from_slice(&head);
    joined.extend_from_slice(&rest);
    joined
}
