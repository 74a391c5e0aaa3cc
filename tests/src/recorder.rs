//! An upstream that records every request exactly as it arrived (method,
//! target, header fields in order, body) and answers each with `200 ok` (an empty 200 to a HEAD): the
//! harness for asserting what a proxy really forwards. It frames bodies the
//! strict way (one `Transfer-Encoding: chunked`, or one `Content-Length`);
//! anything else it records as a framing violation and closes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// Every value of header `name` (case-insensitive), in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What the upstream received, shared with the test.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    requests: Arc<Mutex<Vec<Recorded>>>,
    violations: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Messages the upstream could not frame (would have been smuggling).
    pub fn violations(&self) -> Vec<String> {
        self.violations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn clear(&self) {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn violation(&self, what: String) {
        self.violations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(what);
    }
}

/// Starts the recording upstream on `127.0.0.1:0`.
pub async fn spawn() -> std::io::Result<(SocketAddr, Recorder)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let recorder = Recorder::default();
    let shared = recorder.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, shared.clone()));
        }
    });
    Ok((addr, recorder))
}

async fn serve(mut stream: TcpStream, recorder: Recorder) {
    let mut buf = Vec::new();
    loop {
        let Some((mut request, head_len, framing)) =
            next_head(&mut stream, &mut buf, &recorder).await
        else {
            return;
        };
        buf.drain(..head_len);
        let body = match framing {
            Framing::Length(n) => read_exact(&mut stream, &mut buf, n).await,
            Framing::Chunked => read_chunked(&mut stream, &mut buf).await,
        };
        let Some(body) = body else {
            recorder.violation(format!(
                "{} {}: body cut short",
                request.method, request.target
            ));
            return;
        };
        request.body = body;
        // A HEAD answer has no body; its length is 0 so that a reader of the
        // proxy's answers can frame them without knowing the methods.
        let answer: &[u8] = if request.method == "HEAD" {
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        };
        recorder
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
        if stream.write_all(answer).await.is_err() {
            return;
        }
    }
}

enum Framing {
    Length(usize),
    Chunked,
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

async fn next_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    recorder: &Recorder,
) -> Option<(Recorded, usize, Framing)> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Request::new(&mut slots);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let request = Recorded {
                    method: parsed.method.unwrap_or("").to_string(),
                    target: parsed.path.unwrap_or("").to_string(),
                    headers: parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    body: Vec::new(),
                };
                let te = request.values("transfer-encoding");
                let cl = request.values("content-length");
                let framing = match (te.as_slice(), cl.as_slice()) {
                    ([], []) => Framing::Length(0),
                    ([], [n]) => match n.parse() {
                        Ok(n) => Framing::Length(n),
                        Err(_) => {
                            recorder.violation(format!("content-length {n:?}"));
                            return None;
                        }
                    },
                    (["chunked"], []) => Framing::Chunked,
                    _ => {
                        recorder.violation(format!(
                            "{} {}: transfer-encoding {te:?} with content-length {cl:?}",
                            request.method, request.target
                        ));
                        return None;
                    }
                };
                return Some((request, len, framing));
            }
            Ok(httparse::Status::Partial) => {
                if !fill(stream, buf).await {
                    if !buf.is_empty() {
                        recorder.violation("connection ended inside a head".to_string());
                    }
                    return None;
                }
            }
            Err(error) => {
                recorder.violation(format!("unparseable head: {error}"));
                return None;
            }
        }
    }
}

async fn read_exact(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Option<Vec<u8>> {
    while buf.len() < n {
        if !fill(stream, buf).await {
            return None;
        }
    }
    Some(buf.drain(..n).collect())
}

async fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.drain(..at + 2).take(at).collect();
            return Some(line);
        }
        if !fill(stream, buf).await {
            return None;
        }
    }
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(stream, buf).await?;
        let size = std::str::from_utf8(&line).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailers, then the blank line.
            while !read_line(stream, buf).await?.is_empty() {}
            return Some(body);
        }
        body.extend(read_exact(stream, buf, size).await?);
        if !read_line(stream, buf).await?.is_empty() {
            return None;
        }
    }
}
