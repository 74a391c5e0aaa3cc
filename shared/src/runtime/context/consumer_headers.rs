//! The upstream headers that say who a request is (kong-compat §5.5:
//! `X-Consumer-ID`, `X-Consumer-Custom-ID`, `X-Consumer-Username`,
//! `X-Credential-Identifier`, `X-Anonymous-Consumer`), kept beside the
//! client's header map rather than in it. An authentication plugin first
//! removes the client's own copies of those names from the map, so the two
//! never overlap. They are prepared once per credential or anonymous
//! consumer, as fields and as HTTP/1.1 header lines: setting them on a
//! request is one reference count, and the lean upstream encoder copies the
//! lines in one piece, where inserting them into the map cost a hashed
//! insert each, a regrown map and a longer header scan.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// A consumer's upstream headers, in the order they are sent.
#[derive(Debug, PartialEq, Eq)]
pub struct ConsumerHeaders {
    fields: Vec<(HeaderName, HeaderValue)>,
    /// `name: value\r\n` for every field.
    lines: Vec<u8>,
}

impl ConsumerHeaders {
    pub fn new(fields: Vec<(HeaderName, HeaderValue)>) -> ConsumerHeaders {
        let mut lines = Vec::with_capacity(
            fields
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 4)
                .sum(),
        );
        for (name, value) in &fields {
            lines.extend_from_slice(name.as_str().as_bytes());
            lines.extend_from_slice(b": ");
            lines.extend_from_slice(value.as_bytes());
            lines.extend_from_slice(b"\r\n");
        }
        ConsumerHeaders { fields, lines }
    }

    pub fn fields(&self) -> &[(HeaderName, HeaderValue)] {
        &self.fields
    }

    /// The fields as HTTP/1.1 header lines, each ending in CRLF.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// The value of `name`, compared without regard to case.
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.fields
            .iter()
            .find(|(known, _)| known.as_str().eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// Sets the fields in `headers` (for an upstream request that is not
    /// written by the lean encoder).
    pub fn merge_into(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.fields {
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> ConsumerHeaders {
        ConsumerHeaders::new(vec![
            (
                HeaderName::from_static("x-consumer-id"),
                HeaderValue::from_static("c1"),
            ),
            (
                HeaderName::from_static("x-credential-identifier"),
                HeaderValue::from_static("key"),
            ),
        ])
    }

    #[test]
    fn lines_are_the_fields_as_http1_header_lines() {
        assert_eq!(
            sample().lines(),
            b"x-consumer-id: c1\r\nx-credential-identifier: key\r\n"
        );
    }

    #[test]
    fn lookup_ignores_case_and_merge_replaces_fields_of_the_same_name() {
        let headers = sample();
        assert_eq!(headers.get("X-Consumer-ID").unwrap(), "c1");
        assert!(headers.get("x-consumer-username").is_none());
        let mut map = HeaderMap::new();
        map.insert("x-consumer-id", HeaderValue::from_static("old"));
        map.insert("accept", HeaderValue::from_static("*/*"));
        headers.merge_into(&mut map);
        assert_eq!(map.get_all("x-consumer-id").iter().count(), 1);
        assert_eq!(map["x-consumer-id"], "c1");
        assert_eq!(map["x-credential-identifier"], "key");
        assert_eq!(map["accept"], "*/*");
    }
}
