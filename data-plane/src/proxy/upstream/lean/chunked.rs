//! The chunked transfer coding of an upstream response body (RFC 9112 §7.1),
//! decoded in place from the connection's read buffer: data chunks are
//! handed on as slices of it, without a copy. Strict: a chunk line must end
//! in CRLF, sizes are hex digits (at most 16), extensions are skipped, and
//! trailer fields are read and dropped (they are not forwarded over HTTP/1).

use bytes::{Buf, Bytes, BytesMut};
use std::io;

/// Longest chunk-size line or trailer line accepted.
const MAX_LINE: usize = 4096;

#[derive(Debug, Default)]
pub struct Chunked {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    Done,
}

/// What the buffer yielded.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    /// The body's end (last chunk and trailers read).
    End,
    /// More bytes are needed to go on.
    NeedMore,
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The line at the front of `buf` without its CRLF, consumed; `None` when
/// no whole line is there yet.
fn take_line(buf: &mut BytesMut) -> io::Result<Option<BytesMut>> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) => {
            if end == 0 || buf[end - 1] != b'\r' {
                return Err(invalid("chunk line without CRLF"));
            }
            let mut line = buf.split_to(end + 1);
            line.truncate(end - 1);
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(invalid("chunk line too long")),
        None => Ok(None),
    }
}

fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii_end();
    if digits.is_empty() || digits.len() > 16 {
        return Err(invalid("chunk size"));
    }
    digits.iter().try_fold(0u64, |size, &b| {
        let digit = (b as char)
            .to_digit(16)
            .ok_or_else(|| invalid("chunk size"))?;
        Ok(size << 4 | u64::from(digit))
    })
}

impl Chunked {
    /// Decodes what `buf` holds as far as it goes.
    pub fn next(&mut self, buf: &mut BytesMut) -> io::Result<Step> {
        loop {
            match self.state {
                State::Done => return Ok(Step::End),
                State::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(remaining) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Step::Data(data));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(invalid("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::NeedMore);
                    };
                    if line.is_empty() {
                        self.state = State::Done;
                        return Ok(Step::End);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Feeds `input` one byte at a time, as a slow upstream would.
    fn decode_bytewise(input: &[u8]) -> io::Result<(Vec<u8>, bool, usize)> {
        let mut chunked = Chunked::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        for &byte in input {
            buf.extend_from_slice(&[byte]);
            loop {
                match chunked.next(&mut buf)? {
                    Step::Data(data) => body.extend_from_slice(&data),
                    Step::End => return Ok((body, true, buf.len())),
                    Step::NeedMore => break,
                }
            }
        }
        Ok((body, false, buf.len()))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let input = b"5;name=v\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (body, ended, _) = decode_bytewise(input).unwrap();
        assert!(ended);
        assert_eq!(body, b"hello0123456789");
        // What follows the body stays in the buffer for the next response.
        let mut chunked = Chunked::default();
        let mut buf = BytesMut::from(&input[..]);
        while chunked.next(&mut buf).unwrap() != Step::End {}
        assert_eq!(&buf[..], b"NEXT");
    }

    #[test]
    fn malformed_framing_is_an_error() {
        for input in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"zz\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"11111111111111111\r\n",
            b"\r\n",
        ] {
            assert!(decode_bytewise(input).is_err(), "{input:?}");
        }
        let long = vec![b'1'; MAX_LINE + 2];
        assert!(decode_bytewise(&long).is_err());
    }

    #[test]
    fn an_unfinished_body_asks_for_more() {
        let (body, ended, _) = decode_bytewise(b"5\r\nhel").unwrap();
        assert_eq!(body, b"hel");
        assert!(!ended);
    }
}
