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
use parse::{Field, Parsed};
use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How the lean loop ended.
pub enum Ended<S> {
    /// The connection is done (closed by either side, or failed).
    Closed,
    /// hyper takes over the connection; `buffered` holds the bytes already
    /// read from it, starting with the request the lean path did not take.
    Handover { io: S, buffered: Bytes },
}

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;

/// Serves requests on `io` until the connection ends or needs hyper.
pub async fn serve<S>(mut io: S, conn: Arc<ClientConn>) -> Ended<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = Vec::with_capacity(write::OUT_CHUNK);
    let max_headers = conn.shared.limits.max_headers;
    let mut fields: Vec<Field> = Vec::new();
    loop {
        let head = loop {
            if !buf.is_empty() {
                match parse::head(&buf, max_headers, &mut fields) {
                    Parsed::Complete(head) => break head,
                    Parsed::Partial if buf.len() < parse::MAX_HEAD => {}
                    Parsed::Partial | Parsed::NotLean => {
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
        let bytes = buf.split_to(head.len).freeze();
        let Some(request) = head.request(&bytes, &fields, ClientIncoming::Empty) else {
            return Ended::Handover {
                io,
                buffered: rejoin(bytes, buf),
            };
        };
        let is_head = request.method() == http::Method::HEAD;
        let mut keep_alive = head.keep_alive;
        let Ok(response) = service::handle(Arc::clone(&conn), request).await;
        let written = write::response(&mut io, &mut out, response, is_head, &mut keep_alive).await;
        if written.is_err() {
            return Ended::Closed;
        }
        if !keep_alive || conn.is_closing() {
            let _ = io.shutdown().await;
            return Ended::Closed;
        }
    }
}

/// Reads more of the connection into `buf`. Between requests (nothing
/// buffered), a connection asked to close reads as ended.
async fn read_more<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    conn: &ClientConn,
) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    let between_requests = buf.is_empty();
    let mut read = std::pin::pin!(io.read_buf(buf));
    std::future::poll_fn(|cx| {
        if between_requests && conn.is_closing() {
            return std::task::Poll::Ready(Ok(0));
        }
        read.as_mut().poll(cx)
    })
    .await
}

/// A head the lean path parsed but could not build, followed by what came
/// after it, for hyper to read from the start.
fn rejoin(head: Bytes, rest: BytesMut) -> Bytes {
    let mut joined = BytesMut::with_capacity(head.len() + rest.len());
    joined.extend_from_slice(&head);
    joined.extend_from_slice(&rest);
    joined.freeze()
}
