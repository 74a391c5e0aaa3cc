//! The request's one host (RFC 9112 §3.2, RFC 9113 §8.3.1), decided once per
//! request: an absolute-form target or HTTP/2's `:authority` wins over a
//! `Host` header, a request with several `Host` headers or an HTTP/1.1 request
//! with none is refused. Routing, plugins, redirects, `X-Forwarded-Host`,
//! `preserve_host` and the upstream `Host` all use this value, so no two steps
//! can disagree about which host a request is for.

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::Authority;
use http::{Uri, Version};

/// Why a request's host could not be decided; every case is a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("HTTP/1.1 request without Host")]
    Missing,
    #[error("several Host headers")]
    Repeated,
    #[error("invalid host")]
    Invalid,
}

/// The canonical host of one request, as sent by the client (port included).
/// Both forms share the request's own bytes: deciding copies nothing.
#[derive(Debug, Clone, Default)]
pub struct RequestHost {
    value: Option<HostValue>,
    /// A `Host` header disagreed with the target or `:authority`: the header
    /// is replaced, so that plugins reading headers see what routing saw.
    rewrite_header: bool,
}

#[derive(Debug, Clone)]
enum HostValue {
    Header(HeaderValue),
    Authority(Authority),
}

impl RequestHost {
    pub fn as_str(&self) -> Option<&str> {
        match self.value.as_ref()? {
            // Only values that passed `is_valid_host` (visible ASCII) are stored.
            HostValue::Header(value) => value.to_str().ok(),
            HostValue::Authority(authority) => Some(authority.as_str()),
        }
    }

    /// The host as a header value (`preserve_host`).
    pub fn header_value(&self) -> Option<HeaderValue> {
        match self.value.as_ref()? {
            HostValue::Header(value) => Some(value.clone()),
            HostValue::Authority(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        }
    }

    /// Replaces a disagreeing `Host` header with this host; free otherwise.
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        if self.rewrite_header {
            if let Some(value) = self.header_value() {
                headers.insert(header::HOST, value);
            }
        }
    }
}

/// Decides the host of a request from its target and headers.
pub fn canonical_host(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<RequestHost, HostError> {
    let mut host_headers = headers.get_all(header::HOST).iter();
    let host_header = host_headers.next();
    if host_headers.next().is_some() {
        return Err(HostError::Repeated);
    }
    // RFC 9112 §3.2 (and nginx): HTTP/1.1 needs Host even with an absolute-form target.
    if host_header.is_none() && version == Version::HTTP_11 {
        return Err(HostError::Missing);
    }
    if let Some(authority) = uri.authority() {
        let (value, text) = match authority.as_str().rsplit_once('@') {
            None => (HostValue::Authority(authority.clone()), authority.as_str()),
            Some((_, host)) => {
                let value = HeaderValue::from_str(host).map_err(|_| HostError::Invalid)?;
                (HostValue::Header(value), host)
            }
        };
        if !is_valid_host(text.as_bytes()) {
            return Err(HostError::Invalid);
        }
        if let Some(header) = host_header.filter(|h| h.as_bytes() == text.as_bytes()) {
            return Ok(RequestHost {
                value: Some(HostValue::Header(header.clone())),
                rewrite_header: false,
            });
        }
        return Ok(RequestHost {
            value: Some(value),
            rewrite_header: host_header.is_some(),
        });
    }
    match host_header {
        Some(header) if is_valid_host(header.as_bytes()) => Ok(RequestHost {
            value: Some(HostValue::Header(header.clone())),
            rewrite_header: false,
        }),
        Some(_) => Err(HostError::Invalid),
        // HTTP/1.0 may omit the host; HTTP/2 may for non-http schemes.
        None => Ok(RequestHost::default()),
    }
}

/// nginx's host check: not empty, no whitespace or control bytes, no path
/// separator, no `..`, visible ASCII only.
fn is_valid_host(host: &[u8]) -> bool {
    !host.is_empty()
        && host
            .iter()
            .all(|&b| b > 0x20 && b < 0x7f && b != b'/' && b != b'\\')
        && !host.windows(2).any(|pair| pair == b"..")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn decide(version: Version, target: &str, hosts: &[&str]) -> Result<RequestHost, HostError> {
        let uri: Uri = target.parse().unwrap();
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        canonical_host(version, &uri, &headers)
    }

    #[test]
    fn one_host_header_is_the_host() {
        let host = decide(Version::HTTP_11, "/x", &["api.example:8000"]).unwrap();
        assert_eq!(host.as_str(), Some("api.example:8000"));
        assert!(!host.rewrite_header);
    }

    #[test]
    fn missing_repeated_and_invalid_hosts_are_refused() {
        use HostError::*;
        let cases: &[(Version, &str, &[&str], HostError)] = &[
            (Version::HTTP_11, "/", &[], Missing),
            (Version::HTTP_11, "http://a.example/", &[], Missing),
            (Version::HTTP_11, "/", &["a.example", "b.example"], Repeated),
            (Version::HTTP_10, "/", &["a.example", "a.example"], Repeated),
            (Version::HTTP_11, "/", &[""], Invalid),
            (Version::HTTP_11, "/", &["a b"], Invalid),
            (Version::HTTP_11, "/", &["a/b"], Invalid),
            (Version::HTTP_11, "/", &["a..b"], Invalid),
            (Version::HTTP_2, "http://a.example/", &["x", "y"], Repeated),
        ];
        for (version, target, hosts, expected) in cases {
            let got = decide(*version, target, hosts).unwrap_err();
            assert_eq!(got, *expected, "{version:?} {target} {hosts:?}");
        }
    }

    #[test]
    fn http10_may_omit_the_host() {
        assert_eq!(decide(Version::HTTP_10, "/", &[]).unwrap().as_str(), None);
    }

    #[test]
    fn the_target_authority_wins_over_host() {
        let host = decide(
            Version::HTTP_11,
            "http://public.example/x",
            &["internal.example"],
        )
        .unwrap();
        assert_eq!(host.as_str(), Some("public.example"));
        assert!(host.rewrite_header);
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("internal.example"));
        host.apply_to(&mut headers);
        assert_eq!(headers[header::HOST], "public.example");

        let same = decide(
            Version::HTTP_2,
            "https://a.example:8443/",
            &["a.example:8443"],
        )
        .unwrap();
        assert!(!same.rewrite_header);
        // HTTP/2 without a host header: nothing to rewrite.
        let h2 = decide(Version::HTTP_2, "https://a.example/", &[]).unwrap();
        assert_eq!(h2.as_str(), Some("a.example"));
        assert!(!h2.rewrite_header);
        assert_eq!(h2.header_value().unwrap(), "a.example");
        let user = decide(Version::HTTP_11, "http://u:p@a.example/", &["b"]).unwrap();
        assert_eq!(user.as_str(), Some("a.example"));
    }
}
