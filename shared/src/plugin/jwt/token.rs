//! Finding and decoding the token of a request (kong-compat §5.3 and the
//! decoding rows of §5.4): every configured query parameter, cookie and
//! `Bearer` header contributes, and several distinct tokens are an error; a
//! token is three base64url segments, a JSON header naming a supported `alg`,
//! JSON claims and a signature. Nothing here allocates for the common case of
//! one token in one header, except the decoded segments themselves.

use crate::entity::JwtAlgorithm;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine as _, GeneralPurpose, GeneralPurposeConfig};
use http::header::{HeaderName, COOKIE};
use http::HeaderMap;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Where a jwt instance looks for tokens (header names parsed once).
#[derive(Debug, Clone)]
pub struct TokenSources {
    pub uri_param_names: Vec<String>,
    pub cookie_names: Vec<String>,
    pub header_names: Vec<HeaderName>,
}

/// What the lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'r> {
    None,
    One(Cow<'r, [u8]>),
    Several,
}

/// Kong's `\s*[Bb]earer\s+(.+)`, unanchored, on the header's bytes.
/// The token of a `Bearer` header value, as Kong's `\s*[Bb]earer\s+(.+)`
/// (unanchored, leftmost match, `.` stops at a line feed) captures it, found
/// with a byte scan: a regex capture cost more than the rest of the plugin.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let mut at = 0;
    while at + 6 <= value.len() {
        let offset = value[at..].iter().position(|&b| b == b'B' || b == b'b')?;
        let start = at + offset;
        at = start + 1;
        if value.get(start + 1..start + 6) != Some(&b"earer"[..]) {
            continue;
        }
        let after = start + 6;
        let spaces = value[after..].iter().take_while(|&&b| is_space(b)).count();
        if spaces == 0 {
            continue;
        }
        // `\s+` is greedy but gives back one character so that `.+` matches.
        let mut token_start = after + spaces;
        if token_start == value.len() || value[token_start] == b'\n' {
            if spaces < 2 || value[token_start - 1] == b'\n' {
                continue;
            }
            token_start -= 1;
        }
        let rest = &value[token_start..];
        // memchr: the token is most of the value, scanned a word at a time.
        let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        return Some(&rest[..end]);
    }
    None
}

impl TokenSources {
    /// Collects the distinct tokens of a request: query parameters (every
    /// repetition, decoded; empty ones ignored), then cookies (the first of
    /// each name, non-empty), then the first value of each header when it
    /// carries a `Bearer` token.
    pub fn find<'r>(&self, query: Option<&'r str>, headers: &'r HeaderMap) -> Found<'r> {
        let mut found = Found::None;
        let mut add = |token: Cow<'r, [u8]>| -> bool {
            match &found {
                Found::None => {
                    found = Found::One(token);
                    true
                }
                Found::One(first) if *first == token => true,
                _ => {
                    found = Found::Several;
                    false
                }
            }
        };
        if let Some(query) = query.filter(|_| !self.uri_param_names.is_empty()) {
            for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
                if value.is_empty() || !self.uri_param_names.iter().any(|n| *n == name) {
                    continue;
                }
                let token = match value {
                    Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
                    Cow::Owned(text) => Cow::Owned(text.into_bytes()),
                };
                if !add(token) {
                    return Found::Several;
                }
            }
        }
        for name in &self.cookie_names {
            if let Some(value) = cookie(headers, name) {
                if !add(Cow::Borrowed(value)) {
                    return Found::Several;
                }
            }
        }
        for name in &self.header_names {
            let Some(value) = headers.get(name) else {
                continue;
            };
            let token = bearer_token(value.as_bytes());
            if let Some(token) = token.filter(|t| !t.is_empty()) {
                if !add(Cow::Borrowed(token)) {
                    return Found::Several;
                }
            }
        }
        found
    }
}

/// The first non-empty cookie called `name` (names compared without case,
/// as nginx's `$cookie_` variables do), as sent.
fn cookie<'r>(headers: &'r HeaderMap, name: &str) -> Option<&'r [u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii_start();
            let eq = pair.iter().position(|b| *b == b'=')?;
            let (key, value) = (&pair[..eq], &pair[eq + 1..]);
            key.trim_ascii_end()
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| value.trim_ascii())
        })
        .filter(|value| !value.is_empty())
}

/// Why a token could not be decoded; the text follows Kong's `Bad token; `.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadToken {
    Json,
    Alg,
    Signature,
}

impl BadToken {
    pub fn message(self) -> &'static str {
        match self {
            BadToken::Json => "Bad token; invalid JSON",
            BadToken::Alg => "Bad token; invalid alg",
            BadToken::Signature => "Bad token; invalid signature",
        }
    }
}

/// A decoded, not yet verified token.
#[derive(Debug)]
pub struct Token<'t> {
    /// `header.payload` as sent: what the signature signs.
    pub signed: &'t [u8],
    pub header: Map<String, Value>,
    /// Empty when the payload is valid JSON but not an object.
    pub claims: Map<String, Value>,
    pub algorithm: JwtAlgorithm,
    pub signature: Vec<u8>,
}

impl<'t> Token<'t> {
    /// Decodes `token` in Kong's order: header and claims must be base64url
    /// JSON, then the header's `alg` must be a supported algorithm, then the
    /// signature must be base64url. Extra segments end up in the signature
    /// (and make it undecodable), as Kong splits at the first two dots.
    pub fn decode(token: &'t [u8]) -> Result<Token<'t>, BadToken> {
        let mut parts = token.splitn(3, |b| *b == b'.');
        let (Some(header_64), Some(claims_64), Some(signature_64)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(BadToken::Json);
        };
        let header: Value = json_segment(header_64).ok_or(BadToken::Json)?;
        let claims: Value = json_segment(claims_64).ok_or(BadToken::Json)?;
        let Value::Object(header) = header else {
            return Err(BadToken::Alg);
        };
        let algorithm = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(JwtAlgorithm::parse)
            .ok_or(BadToken::Alg)?;
        let claims = match claims {
            Value::Object(claims) => claims,
            _ => Map::new(),
        };
        let signature = decode_base64url(signature_64).ok_or(BadToken::Signature)?;
        let signed = &token[..header_64.len() + 1 + claims_64.len()];
        Ok(Token {
            signed,
            header,
            claims,
            algorithm,
            signature,
        })
    }
}

fn json_segment(segment: &[u8]) -> Option<Value> {
    let bytes = decode_base64url(segment)?;
    serde_json::from_slice(&bytes).ok()
}

/// Lenient base64url as Kong decodes it: padding optional, the standard
/// alphabet's `+` and `/` accepted too, unused trailing bits ignored.
static LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes base64url (or standard base64) text; `None` when it is not.
pub fn decode_base64url(input: &[u8]) -> Option<Vec<u8>> {
    if input.iter().any(|b| *b == b'+' || *b == b'/') {
        let translated: Vec<u8> = input
            .iter()
            .map(|b| match b {
                b'+' => b'-',
                b'/' => b'_',
                other => *other,
            })
            .collect();
        return LENIENT_URL_SAFE.decode(translated).ok();
    }
    LENIENT_URL_SAFE.decode(input).ok()
}

#[cfg(test)]
mod bearer_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::bearer_token;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use regex::bytes::Regex;

    /// The scan captures exactly what Kong's regex captures, on chosen and
    /// on random values built from the bytes that matter.
    #[test]
    fn the_scan_agrees_with_kongs_regex() {
        let regex = Regex::new(r"(?-u)\s*[Bb]earer\s+(.+)").unwrap();
        let reference = |v: &[u8]| {
            regex
                .captures(v)
                .and_then(|c| c.get(1))
                .map(|m| m.as_bytes().to_vec())
        };
        for value in [
            &b"Bearer abc"[..],
            b"bearer   abc",
            b"  Bearer\tabc def",
            b"Bearer",
            b"Bearer ",
            b"Bearer   ",
            b"Bearerabc",
            b"xBearer abc",
            b"Basic x, Bearer tok",
            b"BBearer tok",
            b"Bearer\nabc",
            b"Bearer  \nx",
            b"Bearer \n\nx",
            b"Beare Bearer t",
            b"",
        ] {
            assert_eq!(
                bearer_token(value).map(<[u8]>::to_vec),
                reference(value),
                "{value:?}"
            );
        }
        let alphabet = b"Bbearer \t\n\r\x0bxyz.";
        let mut rng = StdRng::seed_from_u64(0xbea4e4);
        for _ in 0..50_000 {
            let len = rng.random_range(0..24);
            let value: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            assert_eq!(
                bearer_token(&value).map(<[u8]>::to_vec),
                reference(&value),
                "{value:?}"
            );
        }
    }
}
