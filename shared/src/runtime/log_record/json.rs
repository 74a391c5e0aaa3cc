//! The log record's JSON writer: appends keys, strings and numbers to one
//! byte buffer as compact JSON, byte for byte what `serde_json::to_string`
//! writes for the same values. The record's keys are fixed, so they are
//! written as they are; only values go through escaping, and a value that
//! needs none (nearly all of them) is copied in one piece.
//!
//! The buffer is UTF-8 by construction, without a validation pass: every
//! write is a `&str`, or bytes checked to be printable ASCII (header values,
//! in the same scan that finds they need no escaping), or lossily decoded.

use std::io::Write as _;

/// A record key as [`JsonWriter::key`] takes it: `key!("size")` is `"size":`.
macro_rules! key {
    ($name:literal) => {
        concat!("\"", $name, "\":")
    };
}
pub(super) use key;

/// A piece of a string value for [`JsonWriter::string_of_parts`].
#[derive(Clone, Copy)]
pub enum Piece<'a> {
    /// Needs no escaping by construction (a scheme, digits, a dot).
    Clean(&'a str),
    /// Escaped as any value.
    Text(&'a str),
}

/// Whether a byte must be escaped inside a JSON string (as serde_json does:
/// control characters, `"` and `\`; everything else, UTF-8 included, is
/// written as it is).
const fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// A compact JSON document being written. The caller opens and closes
/// objects and arrays; the writer places the commas.
pub struct JsonWriter {
    out: Vec<u8>,
    /// The next key or element of the innermost container is its first
    /// (no comma before it).
    first: bool,
}

impl JsonWriter {
    pub fn with_capacity(capacity: usize) -> JsonWriter {
        JsonWriter {
            out: Vec::with_capacity(capacity),
            first: true,
        }
    }

    /// The document: UTF-8 JSON.
    pub fn finish(self) -> Vec<u8> {
        debug_assert!(std::str::from_utf8(&self.out).is_ok());
        self.out
    }

    fn separate(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    /// `{`, as a value of the current key or element.
    pub fn open_object(&mut self) {
        self.separate();
        self.out.push(b'{');
        self.first = true;
    }

    pub fn close_object(&mut self) {
        self.out.push(b'}');
        self.first = false;
    }

    pub fn open_array(&mut self) {
        self.separate();
        self.out.push(b'[');
        self.first = true;
    }

    pub fn close_array(&mut self) {
        self.out.push(b']');
        self.first = false;
    }

    /// One of the record's own keys, given quoted with its colon by
    /// [`key!`]: one copy.
    pub fn key(&mut self, quoted: &'static str) {
        debug_assert!(quoted.starts_with('"') && quoted.ends_with("\":"));
        self.separate();
        self.out.extend_from_slice(quoted.as_bytes());
        // The key's value follows without a comma.
        self.first = true;
    }

    /// `key` and its string value.
    pub fn string_field(&mut self, quoted: &'static str, value: &str) {
        self.key(quoted);
        self.string(value);
    }

    /// `key` and its numeric value.
    pub fn unsigned_field(&mut self, quoted: &'static str, value: impl itoa::Integer) {
        self.key(quoted);
        self.unsigned(value);
    }

    pub fn signed_field(&mut self, quoted: &'static str, value: i64) {
        self.key(quoted);
        self.unsigned(value);
    }

    /// A key whose text needs no escaping: a header name (an HTTP token).
    pub fn token_key(&mut self, key: &str) {
        debug_assert!(!key.bytes().any(needs_escape), "{key:?} needs escaping");
        self.separate();
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.first = true;
    }

    /// A header: its name (an HTTP token) as the key and its one value. A
    /// value of printable ASCII other than `"` and `\` (nearly every one)
    /// is copied with the key in one reserve, with no UTF-8 validation; any
    /// other is written by [`JsonWriter::lossy_string`].
    pub fn header_field(&mut self, name: &str, value: &[u8]) {
        debug_assert!(!name.bytes().any(needs_escape), "{name:?} needs escaping");
        if is_plain_ascii(value) {
            // `,"name":"value"`
            self.out.reserve(name.len() + value.len() + 6);
            self.separate();
            self.out.push(b'"');
            self.out.extend_from_slice(name.as_bytes());
            self.out.extend_from_slice(b"\":\"");
            self.out.extend_from_slice(value);
            self.out.push(b'"');
        } else {
            self.token_key(name);
            self.lossy_string(value);
        }
    }

    /// A key from outside (a query argument name), escaped.
    pub fn escaped_key(&mut self, key: &str) {
        self.separate();
        self.escape(key);
        self.out.push(b':');
        self.first = true;
    }

    /// A string value (or an array element), escaped.
    pub fn string(&mut self, value: &str) {
        self.separate();
        self.escape(value);
    }

    /// A string value given as bytes (a header value): invalid UTF-8 becomes
    /// U+FFFD, as `String::from_utf8_lossy` makes it.
    pub fn lossy_string(&mut self, value: &[u8]) {
        match std::str::from_utf8(value) {
            Ok(text) => self.string(text),
            Err(_) => self.string(&String::from_utf8_lossy(value)),
        }
    }

    /// A string value made by formatting (a URL, an address).
    pub fn formatted_string(&mut self, value: std::fmt::Arguments<'_>) {
        self.separate();
        let start = self.out.len();
        self.out.push(b'"');
        // Writing into a Vec cannot fail; formatting writes UTF-8.
        let _ = self.out.write_fmt(value);
        if self.out[start + 1..].iter().copied().any(needs_escape) {
            let text = String::from_utf8_lossy(&self.out[start + 1..]).into_owned();
            self.out.truncate(start);
            self.escape(&text);
        } else {
            self.out.push(b'"');
        }
    }

    /// Already rendered JSON (a cached entity), as a value.
    pub fn raw(&mut self, json: &str) {
        self.raw_bytes(json.as_bytes());
    }

    /// Already rendered JSON from [`JsonWriter::finish`], as a value.
    pub fn raw_bytes(&mut self, json: &[u8]) {
        self.separate();
        self.out.extend_from_slice(json);
    }

    pub fn unsigned(&mut self, value: impl itoa::Integer) {
        self.separate();
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub fn boolean(&mut self, value: bool) {
        self.separate();
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// One string value written from its pieces (a URL: scheme, host,
    /// port, path), without joining them first.
    pub fn string_of_parts(&mut self, parts: &[Piece<'_>]) {
        self.separate();
        self.out.push(b'"');
        for part in parts {
            match *part {
                Piece::Clean(text) => {
                    debug_assert!(!text.bytes().any(needs_escape), "{text:?} needs escaping");
                    self.out.extend_from_slice(text.as_bytes());
                }
                Piece::Text(text) => self.escape_inner(text),
            }
        }
        self.out.push(b'"');
    }

    /// A string value that needs no escaping by construction (digits, a
    /// uuid, an HTTP token, a literal of ours): copied without the scan.
    pub fn clean_string(&mut self, value: &str) {
        debug_assert!(!value.bytes().any(needs_escape), "{value:?} needs escaping");
        self.separate();
        self.out.reserve(value.len() + 2);
        self.out.push(b'"');
        self.out.extend_from_slice(value.as_bytes());
        self.out.push(b'"');
    }

    /// `key` and its [`JsonWriter::clean_string`] value.
    pub fn clean_string_field(&mut self, quoted: &'static str, value: &str) {
        self.key(quoted);
        self.clean_string(value);
    }

    /// `"text"` with JSON escapes, as serde_json writes them.
    fn escape(&mut self, text: &str) {
        self.out.push(b'"');
        self.escape_inner(text);
        self.out.push(b'"');
    }

    fn escape_inner(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let mut copied = 0;
        let mut at = clean_prefix(bytes);
        while at < bytes.len() {
            let byte = bytes[at];
            if !needs_escape(byte) {
                at += 1;
                continue;
            }
            // Escapes cut the text only at ASCII bytes: char boundaries.
            self.out.extend_from_slice(&bytes[copied..at]);
            match byte {
                b'"' => self.out.extend_from_slice(b"\\\""),
                b'\\' => self.out.extend_from_slice(b"\\\\"),
                b'\n' => self.out.extend_from_slice(b"\\n"),
                b'\r' => self.out.extend_from_slice(b"\\r"),
                b'\t' => self.out.extend_from_slice(b"\\t"),
                0x08 => self.out.extend_from_slice(b"\\b"),
                0x0c => self.out.extend_from_slice(b"\\f"),
                control => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    self.out.extend_from_slice(b"\\u00");
                    self.out.push(HEX[usize::from(control >> 4)]);
                    self.out.push(HEX[usize::from(control & 0xf)]);
                }
            }
            at += 1;
            copied = at;
        }
        self.out.extend_from_slice(&bytes[copied..]);
    }
}

/// How many leading bytes of `bytes` need no escaping, eight at a time
/// while they are clean (most values are wholly clean).
fn clean_prefix(bytes: &[u8]) -> usize {
    word_prefix(bytes, 0)
}

/// Whether `bytes` are printable ASCII other than `"` and `\\` (DEL
/// included, which JSON leaves as it is): nothing to escape, and UTF-8.
/// Whole words at a time; past eight bytes, the tail is the last word,
/// read overlapping the one before.
fn is_plain_ascii(bytes: &[u8]) -> bool {
    let Some(last) = bytes.len().checked_sub(8) else {
        return bytes
            .iter()
            .all(|&byte| byte.is_ascii() && !needs_escape(byte));
    };
    word_prefix(bytes, HIGHS) == bytes.len() - bytes.len() % 8
        && word_prefix(&bytes[last..], HIGHS) == 8
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// How many leading bytes of `bytes`, eight at a time, need no escaping and
/// have none of the bits of `refused` (per byte) set.
fn word_prefix(bytes: &[u8], refused: u64) -> usize {
    // A byte of `word` is zero exactly when the result has its high bit set
    // for some byte (the classic zero-byte test; exact for "any").
    let has_zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let mut at = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(word);
        let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
        let quote = has_zero(word ^ (ONES * u64::from(b'"')));
        let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
        if below_space | quote | backslash | (word & refused) != 0 {
            break;
        }
        at += 8;
    }
    at
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use rand::{Rng, SeedableRng};

    fn written(build: impl FnOnce(&mut JsonWriter)) -> String {
        let mut json = JsonWriter::with_capacity(0);
        build(&mut json);
        String::from_utf8(json.finish()).unwrap()
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet: Vec<char> = (0u32..0x80)
            .filter_map(char::from_u32)
            .chain(['é', '€', '😀', '\u{2028}', '\u{7f}'])
            .collect();
        for _ in 0..2000 {
            let len = rng.random_range(0..24);
            let text: String = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            assert_eq!(
                written(|json| json.string(&text)),
                serde_json::to_string(&text).unwrap()
            );
            assert_eq!(
                written(|json| json.formatted_string(format_args!("{text}"))),
                serde_json::to_string(&text).unwrap()
            );
            let (head, tail) = text
                .split_at_checked(text.len() / 2)
                .unwrap_or((text.as_str(), ""));
            assert_eq!(
                written(|json| json.string_of_parts(&[Piece::Text(head), Piece::Text(tail)])),
                serde_json::to_string(&text).unwrap()
            );
        }
    }

    #[test]
    fn a_header_field_is_written_as_its_key_and_lossy_string_would_be() {
        for value in [
            &b"plain"[..],
            b"",
            b"0123456789abcdefg",
            b"a\"b",
            b"tab\there",
            b"\xffx",
            "é".as_bytes(),
            "a longer value, café".as_bytes(),
            b"\x7f is DEL, left as it is",
            b"12345678\x80",
            b"12345678\"quoted\"",
            b"01234567\n",
            b"0123456789\n",
            b"0123456789abcdef\xc3\xa9",
            b"\"0123456789abcdef",
        ] {
            let expected = written(|json| {
                json.token_key("x-h");
                json.lossy_string(value);
            });
            assert_eq!(
                written(|json| json.header_field("x-h", value)),
                expected,
                "{value:?}"
            );
        }
        let two = written(|json| {
            json.open_object();
            json.header_field("a", b"1");
            json.header_field("b", b"2");
            json.close_object();
        });
        assert_eq!(two, r#"{"a":"1","b":"2"}"#);
    }

    #[test]
    fn clean_strings_and_pieces_are_copied_as_they_are() {
        assert_eq!(written(|json| json.clean_string("GET")), "\"GET\"");
        assert_eq!(
            written(|json| json.string_of_parts(&[
                Piece::Clean("http://"),
                Piece::Text("h\"x"),
                Piece::Clean(":80"),
            ])),
            serde_json::to_string("http://h\"x:80").unwrap()
        );
    }

    #[test]
    fn invalid_utf8_becomes_the_replacement_character() {
        assert_eq!(
            written(|json| json.lossy_string(b"a\xffb")),
            "\"a\u{fffd}b\""
        );
    }

    #[test]
    fn containers_place_their_commas() {
        let json = written(|json| {
            json.open_object();
            json.key(key!("a"));
            json.unsigned(1u64);
            json.token_key("b");
            json.open_array();
            json.string("x");
            json.boolean(true);
            json.open_object();
            json.close_object();
            json.close_array();
            json.escaped_key("c\"d");
            json.string("h");
            json.signed_field(key!("g"), -1);
            json.key(key!("e"));
            json.raw("{\"f\":null}");
            json.close_object();
        });
        assert_eq!(
            json,
            r#"{"a":1,"b":["x",true,{}],"c\"d":"h","g":-1,"e":{"f":null}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["e"]["f"], serde_json::Value::Null);
    }
}
