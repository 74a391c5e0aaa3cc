//! W3C Trace Context (`traceparent`) parsing and formatting, and Kong's
//! trace-id-based sampler. Parsing borrows the header's bytes and allocates
//! nothing; a malformed header is `None`, and the caller starts a new trace.

use crate::runtime::{SpanId, TraceId};
use http::HeaderValue;

/// The `sampled` bit of the trace flags.
pub const SAMPLED: u8 = 0x01;

/// What a valid incoming `traceparent` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traceparent {
    pub trace_id: TraceId,
    /// The caller's span: the parent of the gateway's server span.
    pub parent_id: SpanId,
    pub flags: u8,
}

impl Traceparent {
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        // W3C: uppercase hex digits are invalid.
        _ => None,
    }
}

fn hex_bytes<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(out)
}

/// Parses `version-traceid-parentid-flags` (W3C Trace Context level 1):
/// lowercase hex, version `ff` invalid, all-zero ids invalid; version `00`
/// is exactly 55 bytes, a later version may carry more after a `-`.
pub fn parse_traceparent(value: &[u8]) -> Option<Traceparent> {
    let value = trim(value);
    if value.len() < 55 {
        return None;
    }
    let version = hex_bytes::<1>(&value[0..2])?[0];
    if version == 0xff || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    match (version, value.get(55)) {
        (0, None) => {}
        (0, Some(_)) => return None,
        (_, None) | (_, Some(b'-')) => {}
        (_, Some(_)) => return None,
    }
    let trace_id = hex_bytes::<16>(&value[3..35])?;
    let parent_id = hex_bytes::<8>(&value[36..52])?;
    let flags = hex_bytes::<1>(&value[53..55])?[0];
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(Traceparent {
        trace_id: TraceId(trace_id),
        parent_id: SpanId(parent_id),
        flags,
    })
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// `00-<trace id>-<span id>-<flags>` as a header value.
pub fn format_traceparent(trace_id: TraceId, span_id: SpanId, flags: u8) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 55];
    text[0] = b'0';
    text[1] = b'0';
    text[2] = b'-';
    let mut at = 3;
    for byte in trace_id.0 {
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0x0f)];
        at += 2;
    }
    text[at] = b'-';
    at += 1;
    for byte in span_id.0 {
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0x0f)];
        at += 2;
    }
    text[at] = b'-';
    text[at + 1] = HEX[usize::from(flags >> 4)];
    text[at + 2] = HEX[usize::from(flags & 0x0f)];
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Kong's probability sampler (`kong/pdk/tracing.lua`): rate ≥ 1 samples
/// everything, ≤ 0 nothing; otherwise the trace is sampled when the trace
/// id's first 8 bytes, read as Kong reads them on x86-64 (little-endian
/// u64), are below `rate × 2^64`. Deciding from the trace id means every
/// node on a trace with the same rate decides alike.
pub fn sample_by_trace_id(trace_id: TraceId, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 || rate.is_nan() {
        return false;
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&trace_id.0[..8]);
    let value = u64::from_le_bytes(first);
    // 2^64 as f64 is exact; the product is below it for rate < 1.
    (value as f64) < rate * 18_446_744_073_709_551_616.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let parsed = parse_traceparent(VALID.as_bytes()).unwrap();
        assert_eq!(parsed.trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.parent_id.to_hex(), "00f067aa0ba902b7");
        assert_eq!(parsed.flags, 1);
        assert!(parsed.sampled());
        let unsampled = parse_traceparent(VALID.replace("-01", "-00").as_bytes()).unwrap();
        assert!(!unsampled.sampled());
        // Surrounding optional whitespace is allowed (RFC 9110 field values).
        assert!(parse_traceparent(format!(" {VALID}\t").as_bytes()).is_some());
    }

    #[test]
    fn refuses_malformed_headers() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn later_versions_are_read_by_their_version_00_prefix() {
        let future =
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        let parsed = parse_traceparent(future.as_bytes()).unwrap();
        assert_eq!(parsed.parent_id.to_hex(), "00f067aa0ba902b7");
    }

    #[test]
    fn formats_round_trip() {
        let parsed = parse_traceparent(VALID.as_bytes()).unwrap();
        let value = format_traceparent(parsed.trace_id, parsed.parent_id, parsed.flags);
        assert_eq!(value.to_str().unwrap(), VALID);
    }

    #[test]
    fn sampler_follows_the_rate() {
        let id = TraceId([0xff; 16]);
        assert!(sample_by_trace_id(id, 1.0));
        assert!(!sample_by_trace_id(TraceId([0; 16]), 0.0));
        assert!(!sample_by_trace_id(id, 0.5));
        let mut low = [0u8; 16];
        low[7] = 0x10; // little-endian: a small fraction of 2^64
        assert!(sample_by_trace_id(TraceId(low), 0.5));
        let sampled = (0..2000)
            .filter(|_| sample_by_trace_id(TraceId::random(), 0.25))
            .count();
        assert!((300..700).contains(&sampled), "{sampled}");
    }
}
