//! `multipart/form-data` bodies (RFC 7578 over RFC 2046's framing) as
//! key-auth reads them: the parts' names and values, as Kong's
//! `kong.request.get_body` returns them (lua-multipart's
//! `get_all_with_arrays`: a name given twice is an array, which key-auth
//! calls a duplicate key), and the body without the parts of one name for
//! `hide_credentials`.
//!
//! The parser only indexes the body it is given (already bounded by the
//! client body buffer): no copies of values, at most [`MAX_PARTS`] parts,
//! and anything malformed (no closing delimiter, a delimiter followed by
//! other text, a part without a blank line after its headers) makes the
//! whole body unreadable, so no key comes from it, as Kong goes on with an
//! empty table when it cannot decode a body. Removing a part keeps every
//! other byte as sent (Kong re-encodes the remaining fields and loses their
//! file names and content types).

use memchr::memmem;
use std::ops::Range;

/// More parts than this and the body is not searched.
pub(super) const MAX_PARTS: usize = 1000;

/// RFC 2046: a boundary is 1 to 70 characters.
const MAX_BOUNDARY: usize = 70;

/// One part with a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Part {
    pub name: String,
    /// The part's content.
    pub value: Range<usize>,
    /// From its delimiter to the next one: what removing it cuts.
    span: Range<usize>,
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub(super) fn boundary(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (1..=MAX_BOUNDARY).contains(&value.len()).then_some(value)
    })
}

/// The named parts of `body`, in order; `None` when it is not well formed
/// or has more than [`MAX_PARTS`] parts.
pub(super) fn parse(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let dash_boundary = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    let next_delimiter = memmem::Finder::new(delimiter.as_bytes());
    // The first delimiter may open the body or follow a preamble.
    let mut at = if body.starts_with(dash_boundary.as_bytes()) {
        0
    } else {
        next_delimiter.find(body)? + 2
    };
    let mut parts = Vec::new();
    loop {
        let mut pos = at + dash_boundary.len();
        let rest = body.get(pos..)?;
        if rest.starts_with(b"--") {
            // The close delimiter; what follows is the epilogue.
            return Some(parts);
        }
        // Transport padding, then the line end.
        pos += rest
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if !body.get(pos..)?.starts_with(b"\r\n") {
            return None;
        }
        pos += 2;
        let (headers, content_start) = if body.get(pos..)?.starts_with(b"\r\n") {
            (&body[pos..pos], pos + 2)
        } else {
            let end = pos + memmem::find(body.get(pos..)?, b"\r\n\r\n")?;
            let headers = &body[pos..end];
            // A blank line found only past the next delimiter: the part
            // had none.
            if next_delimiter.find(headers).is_some() {
                return None;
            }
            (headers, end + 4)
        };
        let content_end = content_start + next_delimiter.find(body.get(content_start..)?)?;
        let next = content_end + 2;
        if parts.len() == MAX_PARTS {
            return None;
        }
        if let Some(name) = part_name(headers) {
            parts.push(Part {
                name,
                value: content_start..content_end,
                span: at..next,
            });
        }
        at = next;
    }
}

/// The `name` parameter of a part's `Content-Disposition: form-data`
/// header; `None` for a part without one (Kong skips those).
fn part_name(headers: &[u8]) -> Option<String> {
    let headers = std::str::from_utf8(headers).ok()?;
    let value = headers.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(value)
    })?;
    let mut parameters = split_parameters(value).into_iter();
    let kind = parameters.next()?;
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    parameters.find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("name") {
            return None;
        }
        Some(unquote(value.trim()))
    })
}

/// `a; b="x;y"; c` split at the semicolons outside quoted strings.
fn split_parameters(value: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                pieces.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&value[start..]);
    pieces
}

/// A quoted-string's content (backslash escapes undone), or a token as is.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// `body` without the parts named `name`.
pub(super) fn without(body: &[u8], parts: &[Part], name: &str) -> Vec<u8> {
    let mut kept = Vec::with_capacity(body.len());
    let mut from = 0;
    for part in parts.iter().filter(|p| p.name == name) {
        kept.extend_from_slice(&body[from..part.span.start]);
        from = part.span.end;
    }
    kept.extend_from_slice(&body[from..]);
    kept
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const BODY: &[u8] = b"preamble\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"field\"\r\n\r\n\
one\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"apikey\"\r\n\
Content-Type: text/plain\r\n\r\n\
secret-key\r\n--XyZ\r\n\
content-disposition: form-data; name=\"upload\"; filename=\"a;b.txt\"\r\n\r\n\
line 1\r\nline 2 --XyZ not a delimiter\r\n--XyZ--\r\nepilogue";

    fn values(body: &[u8]) -> Vec<(String, String)> {
        parse(body, "XyZ")
            .unwrap()
            .into_iter()
            .map(|p| (p.name, String::from_utf8(body[p.value].to_vec()).unwrap()))
            .collect()
    }

    #[test]
    fn boundaries_from_content_types() {
        assert_eq!(boundary("multipart/form-data; boundary=XyZ"), Some("XyZ"));
        assert_eq!(
            boundary("multipart/form-data;charset=utf-8; BOUNDARY=\"a b\""),
            Some("a b")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/form-data; boundary="), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            None
        );
    }

    #[test]
    fn parts_with_their_names_and_values() {
        assert_eq!(
            values(BODY),
            vec![
                ("field".into(), "one".into()),
                ("apikey".into(), "secret-key".into()),
                (
                    "upload".into(),
                    "line 1\r\nline 2 --XyZ not a delimiter".into()
                ),
            ]
        );
        // No preamble, an empty value, a part with no headers (skipped).
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=apikey\r\n\r\n\r\n--XyZ\r\n\r\nanonymous\r\n--XyZ--";
        assert_eq!(values(body), vec![("apikey".into(), String::new())]);
    }

    #[test]
    fn malformed_bodies_are_unreadable() {
        let bodies: [&[u8]; 6] = [
            b"",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno close",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\nno blank line\r\n--XyZ--",
            b"--XyZtrailing\r\n\r\nx\r\n--XyZ--",
            b"--XyZ",
            b"no delimiter at all",
        ];
        for body in bodies {
            assert_eq!(
                parse(body, "XyZ"),
                None,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn too_many_parts_are_unreadable() {
        let part = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n";
        let mut body = part.repeat(MAX_PARTS);
        body.extend_from_slice(b"--XyZ--");
        assert_eq!(parse(&body, "XyZ").map(|p| p.len()), Some(MAX_PARTS));
        let mut body = part.repeat(MAX_PARTS + 1);
        body.extend_from_slice(b"--XyZ--");
        assert_eq!(parse(&body, "XyZ"), None);
    }

    #[test]
    fn removing_a_part_keeps_the_rest_as_sent() {
        let parts = parse(BODY, "XyZ").unwrap();
        let kept = without(BODY, &parts, "apikey");
        let text = String::from_utf8(kept.clone()).unwrap();
        assert!(!text.contains("secret-key"));
        assert!(text.starts_with("preamble\r\n--XyZ\r\n"));
        assert!(text.ends_with("--XyZ--\r\nepilogue"));
        assert_eq!(
            values(&kept),
            vec![
                ("field".into(), "one".into()),
                (
                    "upload".into(),
                    "line 1\r\nline 2 --XyZ not a delimiter".into()
                ),
            ]
        );
        let first_gone = without(BODY, &parts, "field");
        assert_eq!(values(&first_gone).len(), 2);
        assert_eq!(without(BODY, &parts, "absent"), BODY);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // Every prefix of a valid body, and bytes flipped in it.
        for end in 0..=BODY.len() {
            let _ = parse(&BODY[..end], "XyZ");
        }
        for i in 0..BODY.len() {
            let mut body = BODY.to_vec();
            body[i] = b'\r';
            if let Some(parts) = parse(&body, "XyZ") {
                let _ = without(&body, &parts, "apikey");
            }
        }
    }
}
