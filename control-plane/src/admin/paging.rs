//! Kong's listing arguments: `size` (1..1000, default 100), the opaque
//! `offset` token (unpadded base64 of a JSON array holding the last key), and
//! the `tags` filter (`a,b` all, `a/b` any, at most 5).

use super::error::ApiError;
use crate::store::TagFilter;
use base64::Engine;
use serde_json::Value;
use std::collections::HashMap;

pub const DEFAULT_SIZE: usize = 100;
pub const MAX_SIZE: usize = 1000;
const MAX_TAGS: usize = 5;

/// Decoded query string; the first value of a repeated key wins. Bytes that
/// are not UTF-8 once decoded are a 400.
pub fn query_args(query: Option<&str>) -> Result<HashMap<String, String>, ApiError> {
    let pairs = super::body::urlencoded_pairs(query.unwrap_or_default().as_bytes())
        .map_err(|_| ApiError::BadRequest("Invalid UTF-8 in the query string".into()))?;
    let mut args = HashMap::new();
    for (k, v) in pairs {
        args.entry(k).or_insert(v);
    }
    Ok(args)
}

pub fn size(args: &HashMap<String, String>) -> Result<usize, ApiError> {
    let Some(text) = args.get("size") else {
        return Ok(DEFAULT_SIZE);
    };
    let number: f64 = text
        .trim()
        .parse()
        .map_err(|_| ApiError::InvalidSize("size must be a number"))?;
    if number.fract() != 0.0 || !(1.0..=MAX_SIZE as f64).contains(&number) {
        return Err(ApiError::InvalidSize(
            "size must be an integer between 1 and 1000",
        ));
    }
    Ok(number as usize)
}

/// Encodes the last key of a page as Kong's offset token.
pub fn encode_offset(last: &Value) -> String {
    let json = Value::Array(vec![last.clone()]).to_string();
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(json)
}

/// Decodes an offset token back into the last key.
pub fn decode_offset(token: &str) -> Result<Value, ApiError> {
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| ApiError::InvalidOffset {
            token: token.to_string(),
            reason: "bad base64 encoding",
        })?;
    let bad_json = || ApiError::InvalidOffset {
        token: token.to_string(),
        reason: "bad json encoding",
    };
    match serde_json::from_slice::<Value>(&bytes).map_err(|_| bad_json())? {
        Value::Array(mut items) if items.len() == 1 => Ok(items.remove(0)),
        _ => Err(bad_json()),
    }
}

/// The `after` id of an entity listing.
pub fn offset_id(args: &HashMap<String, String>) -> Result<Option<String>, ApiError> {
    let Some(token) = args.get("offset") else {
        return Ok(None);
    };
    match decode_offset(token)? {
        Value::String(id) => Ok(Some(id)),
        _ => Err(ApiError::InvalidOffset {
            token: token.to_string(),
            reason: "bad json encoding",
        }),
    }
}

/// Kong's tag characters: printable ASCII except `,` and `/`, or any non-ASCII.
fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag
            .chars()
            .all(|c| !c.is_ascii() || (c.is_ascii_graphic() && c != ',' && c != '/'))
}

pub fn tags(args: &HashMap<String, String>) -> Result<Option<TagFilter>, ApiError> {
    let Some(text) = args.get("tags") else {
        return Ok(None);
    };
    let invalid = |message| ApiError::InvalidOption {
        option: "tags",
        message,
    };
    if text.is_empty() {
        return Err(invalid("cannot be null"));
    }
    let has_and = text.contains(',');
    let has_or = text.contains('/');
    if has_and && has_or {
        return Err(invalid("invalid filter syntax"));
    }
    let separator = if has_or { '/' } else { ',' };
    let names: Vec<String> = text.split(separator).map(str::to_string).collect();
    if names.len() > MAX_TAGS {
        return Err(invalid("cannot query more than 5 tags"));
    }
    if !names.iter().all(|t| valid_tag(t)) {
        return Err(invalid("invalid filter syntax"));
    }
    Ok(Some(if has_or {
        TagFilter::Any(names)
    } else {
        TagFilter::All(names)
    }))
}

/// The `next` link of a page.
pub fn next_link(base: &str, token: &str, extra: &[(&str, &str)]) -> String {
    let mut link = format!("{base}?offset={}", urlencode(token));
    for (k, v) in extra {
        link.push_str(&format!("&{k}={}", urlencode(v)));
    }
    link
}

fn urlencode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn args(q: &str) -> HashMap<String, String> {
        query_args(Some(q)).unwrap()
    }

    #[test]
    fn query_strings_must_decode_to_utf8() {
        assert_eq!(args("tags=caf%C3%A9+x")["tags"], "café x");
        assert!(query_args(Some("tags=%FF")).is_err());
    }

    #[test]
    fn sizes() {
        let cases: &[(&str, Result<usize, &str>)] = &[
            ("", Ok(100)),
            ("size=1", Ok(1)),
            ("size=1000", Ok(1000)),
            ("size=0", Err("size must be an integer between 1 and 1000")),
            (
                "size=1001",
                Err("size must be an integer between 1 and 1000"),
            ),
            (
                "size=2.5",
                Err("size must be an integer between 1 and 1000"),
            ),
            ("size=abc", Err("size must be a number")),
        ];
        for (q, want) in cases {
            let got = size(&args(q)).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_string), "{q}");
        }
    }

    #[test]
    fn offsets_round_trip() {
        let id = "9748f662-7711-4a90-8186-dc02f10eb0f5";
        let token = encode_offset(&Value::String(id.into()));
        assert!(!token.ends_with('='));
        let q = format!("offset={}", urlencode(&token));
        assert_eq!(offset_id(&args(&q)).unwrap().as_deref(), Some(id));
        assert_eq!(
            offset_id(&args("offset=%25%25")).unwrap_err().to_string(),
            "'%%' is not a valid offset: bad base64 encoding"
        );
        assert_eq!(
            offset_id(&args("offset=bm90anNvbg"))
                .unwrap_err()
                .to_string(),
            "'bm90anNvbg' is not a valid offset: bad json encoding"
        );
    }

    #[test]
    fn tag_filters() {
        let all = |v: &[&str]| Some(TagFilter::All(v.iter().map(|s| s.to_string()).collect()));
        let any = |v: &[&str]| Some(TagFilter::Any(v.iter().map(|s| s.to_string()).collect()));
        assert_eq!(tags(&args("")).unwrap(), None);
        assert_eq!(tags(&args("tags=a")).unwrap(), all(&["a"]));
        assert_eq!(tags(&args("tags=a,b")).unwrap(), all(&["a", "b"]));
        assert_eq!(tags(&args("tags=a/b")).unwrap(), any(&["a", "b"]));
        let err = |q: &str| tags(&args(q)).unwrap_err().to_string();
        assert_eq!(
            err("tags=a,b/c"),
            "invalid option (tags: invalid filter syntax)"
        );
        assert_eq!(
            err("tags=a,b,c,d,e,f"),
            "invalid option (tags: cannot query more than 5 tags)"
        );
        assert_eq!(err("tags="), "invalid option (tags: cannot be null)");
        assert_eq!(
            err("tags=a,,b"),
            "invalid option (tags: invalid filter syntax)"
        );
    }
}
