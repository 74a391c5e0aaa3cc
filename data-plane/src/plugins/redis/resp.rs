//! RESP2, the part of Redis's protocol the data plane speaks: commands
//! written as arrays of bulk strings, and replies read incrementally from a
//! buffer that may hold a partial reply, several replies, or both.

use tollgate_shared::runtime::bulk_string;

/// One reply from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and other status lines.
    Status(String),
    /// `-ERR ...`: the command failed; the connection is still usable.
    Error(String),
    Integer(i64),
    /// A bulk string; `None` is Redis's nil.
    Bulk(Option<Vec<u8>>),
    /// An array; `None` is a nil array.
    Array(Option<Vec<Reply>>),
}

/// The reply could not be read: the connection is out of step for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed redis reply: {0}")]
pub struct ProtocolError(&'static str);

/// The largest bulk string or array accepted; our scripts answer a few
/// integers, so anything near this is a stream out of step.
const MAX_LENGTH: i64 = 64 * 1024 * 1024;

/// How deeply arrays may nest.
const MAX_DEPTH: usize = 8;

/// Appends a command of whole arguments.
pub fn command(out: &mut Vec<u8>, arguments: &[&[u8]]) {
    array_header(out, arguments.len());
    for argument in arguments {
        bulk_string(out, &[argument]);
    }
}

/// Appends the header of an array of `length` elements.
pub fn array_header(out: &mut Vec<u8>, length: usize) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Reads the first reply in `input`: the reply and the bytes it took, or
/// `None` when `input` ends before the reply does.
pub fn decode(input: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let mut at = 0;
    match reply(input, &mut at, 0)? {
        Some(reply) => Ok(Some((reply, at))),
        None => Ok(None),
    }
}

fn reply(input: &[u8], at: &mut usize, depth: usize) -> Result<Option<Reply>, ProtocolError> {
    let Some(line) = line(input, at)? else {
        return Ok(None);
    };
    let (&kind, rest) = line.split_first().ok_or(ProtocolError("empty line"))?;
    Ok(Some(match kind {
        b'+' => Reply::Status(String::from_utf8_lossy(rest).into_owned()),
        b'-' => Reply::Error(String::from_utf8_lossy(rest).into_owned()),
        b':' => Reply::Integer(integer(rest)?),
        b'$' => {
            let length = integer(rest)?;
            if length < 0 {
                return Ok(Some(Reply::Bulk(None)));
            }
            let length = bounded(length)?;
            let end = *at + length;
            if input.len() < end + 2 {
                return Ok(None);
            }
            if &input[end..end + 2] != b"\r\n" {
                return Err(ProtocolError("bulk string without its CRLF"));
            }
            let value = input[*at..end].to_vec();
            *at = end + 2;
            Reply::Bulk(Some(value))
        }
        b'*' => {
            let length = integer(rest)?;
            if length < 0 {
                return Ok(Some(Reply::Array(None)));
            }
            if depth >= MAX_DEPTH {
                return Err(ProtocolError("arrays nested too deeply"));
            }
            let length = bounded(length)?;
            // Each element takes at least 3 bytes (":0\r\n" is 4), so a
            // length the buffer cannot hold yet allocates nothing.
            if input.len() - *at < length * 3 {
                return Ok(None);
            }
            let mut elements = Vec::with_capacity(length);
            for _ in 0..length {
                match reply(input, at, depth + 1)? {
                    Some(element) => elements.push(element),
                    None => return Ok(None),
                }
            }
            Reply::Array(Some(elements))
        }
        _ => return Err(ProtocolError("unknown reply type")),
    }))
}

/// The next CRLF-terminated line, without its CRLF.
fn line<'i>(input: &'i [u8], at: &mut usize) -> Result<Option<&'i [u8]>, ProtocolError> {
    let rest = &input[*at..];
    let Some(cr) = rest.iter().position(|&b| b == b'\r') else {
        if rest.len() > 64 * 1024 {
            return Err(ProtocolError("line too long"));
        }
        return Ok(None);
    };
    match rest.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => {
            *at += cr + 2;
            Ok(Some(&rest[..cr]))
        }
        Some(_) => Err(ProtocolError("CR without LF")),
    }
}

fn integer(digits: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(ProtocolError("not an integer"))
}

fn bounded(length: i64) -> Result<usize, ProtocolError> {
    if length > MAX_LENGTH {
        return Err(ProtocolError("length out of bounds"));
    }
    usize::try_from(length).map_err(|_| ProtocolError("length out of bounds"))
}

impl Reply {
    /// The reply of our scripts: an array of integers.
    pub fn integers(self) -> Result<Vec<i64>, String> {
        match self {
            Reply::Array(Some(elements)) => elements
                .into_iter()
                .map(|element| match element {
                    Reply::Integer(value) => Ok(value),
                    other => Err(format!("expected integers, got {}", other.kind())),
                })
                .collect(),
            Reply::Error(message) => Err(message),
            other => Err(format!("expected an array, got {}", other.kind())),
        }
    }

    /// What kind of reply this is, for error messages (never its content).
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Status(_) => "a status",
            Reply::Error(_) => "an error",
            Reply::Integer(_) => "an integer",
            Reply::Bulk(_) => "a bulk string",
            Reply::Array(_) => "an array",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn every_reply_type_and_the_bytes_it_takes() {
        let cases: [(&[u8], Reply); 8] = [
            (b"+OK\r\n", Reply::Status("OK".into())),
            (b"-NOSCRIPT x\r\n", Reply::Error("NOSCRIPT x".into())),
            (b":-42\r\n", Reply::Integer(-42)),
            (b"$3\r\na\r\n\r\n", Reply::Bulk(Some(b"a\r\n".to_vec()))),
            (b"$-1\r\n", Reply::Bulk(None)),
            (b"*-1\r\n", Reply::Array(None)),
            (b"*0\r\n", Reply::Array(Some(vec![]))),
            (
                b"*2\r\n:1\r\n*1\r\n$0\r\n\r\n",
                Reply::Array(Some(vec![
                    Reply::Integer(1),
                    Reply::Array(Some(vec![Reply::Bulk(Some(vec![]))])),
                ])),
            ),
        ];
        for (wire, expected) in cases {
            let mut input = wire.to_vec();
            input.extend_from_slice(b":7\r\n");
            assert_eq!(decode(&input).unwrap(), Some((expected, wire.len())));
        }
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete_not_an_error() {
        let wire = b"*3\r\n:1\r\n$5\r\nhello\r\n-ERR no\r\n";
        for end in 0..wire.len() {
            assert_eq!(decode(&wire[..end]).unwrap(), None, "prefix of {end} bytes");
        }
        assert!(decode(wire).unwrap().is_some());
    }

    #[test]
    fn malformed_replies_are_errors() {
        for wire in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b"$3\r\nabcd\r\n",
            b"+a\rb\r\n",
            b"$99999999999\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(decode(wire).is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn script_replies_as_integers() {
        let (reply, _) = decode(b"*2\r\n:3\r\n:0\r\n").unwrap().unwrap();
        assert_eq!(reply.integers().unwrap(), [3, 0]);
        let (reply, _) = decode(b"*1\r\n$1\r\n3\r\n").unwrap().unwrap();
        assert!(reply.integers().is_err());
        let (reply, _) = decode(b"-ERR boom\r\n").unwrap().unwrap();
        assert_eq!(reply.integers().unwrap_err(), "ERR boom");
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"SELECT", b"3"]);
        assert_eq!(out, b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n");
    }
}
