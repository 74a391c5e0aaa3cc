//! Header rules of the proxy: hop-by-hop stripping (RFC 9110 §7.6.1), the
//! headers added upstream (Host, X-Forwarded-*, X-Real-IP, Via, request id;
//! kong-compat §2.4–§2.5) and downstream (Via, Server, latencies; §2.6), with
//! every constant value built once.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;
use std::time::Duration;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub const X_FORWARDED_PATH: HeaderName = HeaderName::from_static("x-forwarded-path");
pub const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-tollgate-request-id");
pub const X_UPSTREAM_LATENCY: HeaderName = HeaderName::from_static("x-tollgate-upstream-latency");
pub const X_PROXY_LATENCY: HeaderName = HeaderName::from_static("x-tollgate-proxy-latency");
pub const X_RESPONSE_LATENCY: HeaderName = HeaderName::from_static("x-tollgate-response-latency");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

pub const SERVER_TOKEN: &str = concat!("tollgate/", env!("CARGO_PKG_VERSION"));

/// Header values that never change while the process runs.
#[derive(Debug)]
pub struct StaticValues {
    pub server: HeaderValue,
    pub http: HeaderValue,
    pub https: HeaderValue,
    via_10: HeaderValue,
    via_11: HeaderValue,
    via_2: HeaderValue,
    /// `0`…`LATENCY_TABLE - 1` milliseconds, shared instead of formatted per request.
    latencies: Vec<HeaderValue>,
}

const LATENCY_TABLE: u64 = 1024;

impl Default for StaticValues {
    fn default() -> Self {
        Self {
            server: HeaderValue::from_static(SERVER_TOKEN),
            http: HeaderValue::from_static("http"),
            https: HeaderValue::from_static("https"),
            via_10: HeaderValue::from_static(concat!("1.0 tollgate/", env!("CARGO_PKG_VERSION"))),
            via_11: HeaderValue::from_static(concat!("1.1 tollgate/", env!("CARGO_PKG_VERSION"))),
            via_2: HeaderValue::from_static(concat!("2 tollgate/", env!("CARGO_PKG_VERSION"))),
            latencies: (0..LATENCY_TABLE).map(HeaderValue::from).collect(),
        }
    }
}

impl StaticValues {
    pub fn via(&self, version: Version) -> &HeaderValue {
        match version {
            Version::HTTP_2 | Version::HTTP_3 => &self.via_2,
            Version::HTTP_10 | Version::HTTP_09 => &self.via_10,
            _ => &self.via_11,
        }
    }

    pub fn latency(&self, elapsed: Duration) -> HeaderValue {
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        usize::try_from(ms)
            .ok()
            .and_then(|i| self.latencies.get(i))
            .cloned()
            .unwrap_or_else(|| HeaderValue::from(ms))
    }

    /// Appends our `Via` element to whatever the message already carries.
    pub fn append_via(&self, headers: &mut HeaderMap, version: Version) {
        let ours = self.via(version);
        match headers.get(header::VIA) {
            None => {
                headers.insert(header::VIA, ours.clone());
            }
            Some(existing) => {
                let mut joined = Vec::with_capacity(existing.len() + 2 + ours.len());
                joined.extend_from_slice(existing.as_bytes());
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(ours.as_bytes());
                if let Ok(value) = HeaderValue::from_bytes(&joined) {
                    headers.insert(header::VIA, value);
                }
            }
        }
    }
}

/// The hop-by-hop headers (RFC 9110 §7.6.1, plus `Keep-Alive` and
/// `Proxy-Connection` as nginx).
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Which of [`HOP_BY_HOP`] `headers` holds, one bit each, found in one pass
/// over its names (no hashing).
fn hop_by_hop_present(headers: &HeaderMap) -> u8 {
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present |= 1 << i;
        }
    }
    present
}

/// What survives of the connection-level headers when forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Nothing,
    /// `TE: trailers`, which gRPC needs end to end over HTTP/2.
    TeTrailers,
    /// `Upgrade` and `Connection: upgrade` of a protocol switch.
    Upgrade,
}

/// Removes hop-by-hop headers and every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep: Keep) {
    let present = hop_by_hop_present(headers);
    if present == 0 {
        return;
    }
    let upgrade = headers.get(header::UPGRADE).cloned();
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderValue> = headers
            .get_all(header::CONNECTION)
            .iter()
            .cloned()
            .collect();
        for value in &listed {
            let Ok(text) = value.to_str() else { continue };
            for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                // `close` names no header and `keep-alive` goes below anyway.
                if token.eq_ignore_ascii_case("close") || token.eq_ignore_ascii_case("keep-alive") {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    headers.remove(name);
                }
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    match keep {
        Keep::Nothing => {}
        Keep::TeTrailers => {
            if te_trailers {
                headers.insert(header::TE, HeaderValue::from_static("trailers"));
            }
        }
        Keep::Upgrade => {
            if let Some(upgrade) = upgrade {
                headers.insert(header::UPGRADE, upgrade);
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
        }
    }
}

/// `true` for an HTTP/1.1 request asking to switch to WebSocket, the only
/// upgrade forwarded (as Kong's `$upstream_upgrade` map): any other `Upgrade`
/// (`h2c`, several tokens…) is stripped and the request proxied as plain
/// HTTP/1.1, never turned into a tunnel.
pub fn is_upgrade_request(headers: &HeaderMap, version: Version) -> bool {
    version == Version::HTTP_11
        && is_websocket(headers)
        && has_token(headers, &header::CONNECTION, b"upgrade")
}

/// Whether a comma-separated header `name` lists `token` (any case, spaces
/// around ignored), in any of its fields.
pub fn has_token(headers: &HeaderMap, name: &HeaderName, token: &[u8]) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    })
}

/// Exactly one `Upgrade` value, and it is `websocket` (any case).
pub fn is_websocket(headers: &HeaderMap) -> bool {
    is_single_token(headers, &header::UPGRADE, b"websocket")
}

/// A `Transfer-Encoding` other than exactly `chunked`: nginx answers 501
/// rather than forward a body whose other codings it would have to drop.
pub fn has_unsupported_transfer_coding(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        && !is_single_token(headers, &header::TRANSFER_ENCODING, b"chunked")
}

/// `name` appears once and its value is `token` (any case, spaces around ignored).
fn is_single_token(headers: &HeaderMap, name: &HeaderName, token: &[u8]) -> bool {
    let mut values = headers.get_all(name).iter();
    matches!(
        (values.next(), values.next()),
        (Some(value), None) if value.as_bytes().trim_ascii().eq_ignore_ascii_case(token)
    )
}

/// Sum of header name and value lengths, for the header size limit.
pub fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum()
}

/// `Host` without its port, lowercased (nginx `$host`).
pub fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split_once(']').map_or(host, |(addr, _)| addr);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Joins the client's `X-Forwarded-For` values with the TCP peer address.
pub fn append_forwarded_for(headers: &HeaderMap, peer: &HeaderValue) -> Option<HeaderValue> {
    let mut values = headers.get_all(X_FORWARDED_FOR).iter();
    let first = values.next()?;
    let mut joined = Vec::with_capacity(first.len() + 2 + peer.len());
    joined.extend_from_slice(first.as_bytes());
    for more in values {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(more.as_bytes());
    }
    joined.extend_from_slice(b", ");
    joined.extend_from_slice(peer.as_bytes());
    HeaderValue::from_bytes(&joined).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn strips_hop_by_hop_and_connection_listed_headers() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-secret"),
            ("connection", "X-Other"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "3"),
        ]);
        strip_hop_by_hop(&mut headers, Keep::Nothing);
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn keeps_te_trailers_for_grpc_and_upgrade_for_websocket() {
        let original = map(&[
            ("te", "trailers"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ]);
        let mut grpc = original.clone();
        strip_hop_by_hop(&mut grpc, Keep::TeTrailers);
        assert_eq!(grpc.get("te").unwrap(), "trailers");
        assert!(grpc.get("upgrade").is_none());
        let mut ws = original.clone();
        strip_hop_by_hop(&mut ws, Keep::Upgrade);
        assert_eq!(ws.get("upgrade").unwrap(), "websocket");
        assert_eq!(ws.get("connection").unwrap(), "upgrade");
        assert!(ws.get("te").is_none());
    }

    #[test]
    fn detects_upgrade_requests() {
        let ws = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(is_upgrade_request(&ws, Version::HTTP_11));
        assert!(!is_upgrade_request(&ws, Version::HTTP_2));
        assert!(!is_upgrade_request(
            &map(&[("upgrade", "websocket")]),
            Version::HTTP_11
        ));
        assert!(is_upgrade_request(
            &map(&[("connection", "upgrade"), ("upgrade", " WebSocket ")]),
            Version::HTTP_11
        ));
        for other in ["h2c", "websocket, h2c", "TLS/1.2"] {
            let headers = map(&[("connection", "upgrade"), ("upgrade", other)]);
            assert!(!is_upgrade_request(&headers, Version::HTTP_11), "{other}");
        }
    }

    #[test]
    fn only_plain_chunked_transfer_coding_is_supported() {
        assert!(!has_unsupported_transfer_coding(&map(&[])));
        assert!(!has_unsupported_transfer_coding(&map(&[(
            "transfer-encoding",
            "Chunked"
        )])));
        for codings in [
            &["gzip, chunked"][..],
            &["chunked, chunked"],
            &["chunked", "chunked"],
            &["identity"],
        ] {
            let pairs: Vec<(&str, &str)> =
                codings.iter().map(|c| ("transfer-encoding", *c)).collect();
            assert!(has_unsupported_transfer_coding(&map(&pairs)), "{codings:?}");
        }
    }

    #[test]
    fn host_port_is_split_off() {
        for (host, expected) in [
            ("example.com", "example.com"),
            ("example.com:8000", "example.com"),
            ("[::1]:8000", "::1"),
            ("[::1]", "::1"),
            ("127.0.0.1:80", "127.0.0.1"),
        ] {
            assert_eq!(host_without_port(host), expected);
        }
    }

    #[test]
    fn via_and_forwarded_for_are_appended() {
        let values = StaticValues::default();
        let mut headers = map(&[("via", "1.1 front")]);
        values.append_via(&mut headers, Version::HTTP_11);
        assert_eq!(
            headers.get("via").unwrap(),
            &format!("1.1 front, 1.1 {SERVER_TOKEN}")[..]
        );
        let xff = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        let joined = append_forwarded_for(&xff, &HeaderValue::from_static("127.0.0.1")).unwrap();
        assert_eq!(joined, "1.1.1.1, 2.2.2.2, 127.0.0.1");
        assert_eq!(values.latency(Duration::from_millis(7)), "7");
        assert_eq!(values.latency(Duration::from_secs(5)), "5000");
    }
}
