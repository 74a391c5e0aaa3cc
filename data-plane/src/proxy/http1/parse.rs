//! Request heads for the lean path: parsed once with `httparse`, judged
//! (does the lean path take this request?), and turned into an
//! `http::Request` whose target and header values share the read buffer.

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri, Version};
use std::mem::MaybeUninit;
use std::ops::Range;

/// The most head bytes the lean path buffers; a longer head goes to hyper,
/// whose own limit (the same size) answers it.
pub const MAX_HEAD: usize = 96 * 1024;

/// Headers the proxy adds upstream (Host, X-Forwarded-*, X-Real-IP, Via,
/// the request id) beyond the client's own.
const UPSTREAM_HEADROOM: usize = 10;

/// Header slots on the stack; a configured `max_headers` above this parses
/// into a heap buffer.
const STACK_HEADERS: usize = 100;

/// One header field, as byte ranges of the head.
#[derive(Debug, Clone)]
pub struct Field {
    name: Range<usize>,
    value: Range<usize>,
}

/// A complete request head the lean path takes.
#[derive(Debug)]
pub struct Head {
    /// Bytes of the head, blank line included.
    pub len: usize,
    method: Range<usize>,
    target: Range<usize>,
    /// HTTP/1.1 without `Connection: close`.
    pub keep_alive: bool,
}

/// What the front of the read buffer holds.
#[derive(Debug)]
pub enum Parsed {
    Complete(Head),
    /// Not a whole head yet.
    Partial,
    /// A head the lean path leaves to hyper: not HTTP/1.1, a body, an
    /// upgrade, `Expect`, `CONNECT`, too many headers, or not valid at all.
    NotLean,
}

/// Parses the head at the front of `buf`; on `Complete`, `fields` holds its
/// header fields in order.
pub fn head(buf: &[u8], max_headers: usize, fields: &mut Vec<Field>) -> Parsed {
    if max_headers <= STACK_HEADERS {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
        judge(buf, &mut slots[..max_headers], fields)
    } else {
        let mut slots = Vec::with_capacity(max_headers);
        slots.resize_with(max_headers, MaybeUninit::uninit);
        judge(buf, &mut slots, fields)
    }
}

fn judge<'b>(
    buf: &'b [u8],
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
    fields: &mut Vec<Field>,
) -> Parsed {
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::NotLean,
    };
    let (Some(method), Some(target), Some(1)) = (request.method, request.path, request.version)
    else {
        return Parsed::NotLean;
    };
    if method == "CONNECT" {
        return Parsed::NotLean;
    }
    let base = buf.as_ptr() as usize;
    let range = |part: &[u8]| {
        let start = part.as_ptr() as usize - base;
        start..start + part.len()
    };
    fields.clear();
    let mut keep_alive = true;
    let mut content_length = false;
    for header in request.headers.iter() {
        let name = header.name.as_bytes();
        let value = header.value;
        if name.eq_ignore_ascii_case(b"content-length") {
            // Only an explicit empty body; a second one is ambiguous.
            if content_length || value != &b"0"[..] {
                return Parsed::NotLean;
            }
            content_length = true;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
        {
            return Parsed::NotLean;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parsed::NotLean;
                }
            }
        }
        fields.push(Field {
            name: range(name),
            value: range(value),
        });
    }
    Parsed::Complete(Head {
        len,
        method: range(method.as_bytes()),
        target: range(target.as_bytes()),
        keep_alive,
    })
}

impl Head {
    /// The request, its target and header values sharing `bytes` (the head
    /// split off the read buffer); `None` if the `http` crate refuses a part
    /// that `httparse` let through.
    pub fn request<B>(
        &self,
        bytes: &bytes::Bytes,
        fields: &[Field],
        body: B,
    ) -> Option<Request<B>> {
        let head = bytes.as_ref();
        let method = Method::from_bytes(head.get(self.method.clone())?).ok()?;
        let uri = Uri::from_maybe_shared(bytes.slice(self.target.clone())).ok()?;
        // Room for the forwarding headers the proxy adds, so that adding them
        // never grows (rehashes) the map.
        let mut headers = HeaderMap::with_capacity(fields.len() + UPSTREAM_HEADROOM);
        for field in fields {
            let name = HeaderName::from_bytes(head.get(field.name.clone())?).ok()?;
            let value = HeaderValue::from_maybe_shared(bytes.slice(field.value.clone())).ok()?;
            headers.append(name, value);
        }
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        Some(request)
    }
}

#[cfg(test)]
mod tests;
