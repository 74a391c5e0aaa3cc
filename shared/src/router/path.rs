//! Request path normalization (kong-compat §2.1, Kong's `kong/tools/uri.lua`):
//! the form routes are matched against and the path forwarded upstream.

/// Why a request path cannot be normalized; the proxy answers 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path does not start with '/'")]
    NotAbsolute,
    #[error("invalid percent-encoding at byte {at}")]
    BadPercentEncoding { at: usize },
}

/// Normalizes a request path (the query already removed): percent-encoded
/// triplets uppercased, those of unreserved characters (`A-Z a-z 0-9 - . _ ~`)
/// decoded, dot-segments resolved (`%2e` counts as `.`), runs of `/` merged.
///
/// Kong also decodes "other" characters (space, `"`, non-ASCII bytes…) and
/// re-escapes them when forwarding; Tollgate leaves them encoded, which gives
/// the same forwarded bytes and keeps the result safe to forward as is.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_unreserved(raw)?;
    if !decoded.contains('.') && !decoded.contains("//") {
        return Ok(decoded);
    }
    Ok(remove_dot_segments(&decoded))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_unreserved(raw: &str) -> Result<String, PathError> {
    if !raw.contains('%') {
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        let digits = bytes.get(i + 1..i + 3);
        let value = digits.and_then(|d| Some(hex_value(d[0])? << 4 | hex_value(d[1])?));
        let Some(value) = value else {
            return Err(PathError::BadPercentEncoding { at: i });
        };
        out.push_str(&raw[copied..i]);
        if is_unreserved(value) {
            out.push(char::from(value));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(value >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(value & 0xf)]));
        }
        i += 3;
        copied = i;
    }
    out.push_str(&raw[copied..]);
    Ok(out)
}

/// RFC 3986 §5.2.4 with slash merging, step for step as Kong's `normalize`.
fn remove_dot_segments(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    // Start offsets in `out` of the segments written so far (each begins with `/`).
    let mut starts: Vec<usize> = Vec::new();
    let pop = |out: &mut String, starts: &mut Vec<usize>| {
        if let Some(start) = starts.pop() {
            out.truncate(start);
        }
    };
    let mut rest = path;
    while !rest.is_empty() {
        if rest == "/." {
            rest = "/";
        } else if rest == "/.." {
            rest = "/";
            pop(&mut out, &mut starts);
        } else if rest == "." || rest == ".." {
            rest = "";
        } else if let Some(after) = rest.strip_prefix("../") {
            rest = after;
        } else if let Some(after) = rest.strip_prefix("./") {
            rest = after;
        } else if rest.starts_with("/./") {
            rest = &rest[2..];
        } else if rest.starts_with("/../") {
            rest = &rest[3..];
            pop(&mut out, &mut starts);
        } else if rest.starts_with("//") {
            rest = &rest[1..];
        } else {
            let end = rest
                .get(1..)
                .and_then(|tail| tail.find('/'))
                .map_or(rest.len(), |i| i + 1);
            starts.push(out.len());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn normalization_table() {
        let cases: &[(&str, &str)] = &[
            ("/", "/"),
            ("/foo", "/foo"),
            ("/foo/", "/foo/"),
            ("//a", "/a"),
            ("/a//b///c", "/a/b/c"),
            ("/a//", "/a/"),
            ("/a/../b", "/b"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            ("/../a", "/a"),
            ("/a/../../b", "/b"),
            ("/a/b/../../..", "/"),
            ("/.", "/"),
            ("/a/.b/..c/...", "/a/.b/..c/..."),
            ("/%2e%2e/a", "/a"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/%2E/b", "/a/b"),
            ("/a/.%2e/b", "/b"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%2f..%2fb", "/a%2F..%2Fb"),
            ("/%7e", "/~"),
            ("/%7Euser", "/~user"),
            ("/%41%62%30%2D%5F", "/Ab0-_"),
            ("/a%20b", "/a%20b"),
            ("/%e2%82%ac", "/%E2%82%AC"),
            ("/a%3fb", "/a%3Fb"),
            ("/a%25b", "/a%25b"),
            ("/%2F%2f", "/%2F%2F"),
            ("/a/%2e", "/a/"),
            ("/a//../b", "/b"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_path(raw).as_deref(), Ok(*want), "raw {raw}");
        }
    }

    #[test]
    fn rejects_bad_paths() {
        let cases: &[(&str, PathError)] = &[
            ("", PathError::NotAbsolute),
            ("foo", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("http://x/y", PathError::NotAbsolute),
            ("/a%", PathError::BadPercentEncoding { at: 2 }),
            ("/a%2", PathError::BadPercentEncoding { at: 2 }),
            ("/a%zz", PathError::BadPercentEncoding { at: 2 }),
            ("/a%2g/b", PathError::BadPercentEncoding { at: 2 }),
            ("/ok%20/%x1", PathError::BadPercentEncoding { at: 7 }),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_path(raw), Err(want.clone()), "raw {raw}");
        }
    }

    #[test]
    fn normalized_paths_are_fixed_points() {
        for raw in ["/a/../b//c/%2e/%7e%2f", "//x/./y/../z/", "/%2e%2e%2f%2E"] {
            let once = normalize_path(raw).unwrap();
            assert_eq!(normalize_path(&once).unwrap(), once, "raw {raw}");
        }
    }
}
