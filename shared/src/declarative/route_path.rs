//! Route path migration for `_format_version` "1.1" and "2.1" files (Kong 2.x
//! semantics): a plain path is normalized like the schema normalizes
//! (percent-decoding of characters that need no escaping, dot segments
//! removed, slashes merged); anything else was a
//! regex in 2.x and gets the 3.x `~` prefix, with percent-encoded characters
//! decoded (regex metacharacters escaped, reserved ones left encoded).

/// RFC 3986 reserved characters plus `%`: never decoded.
const RESERVED: &[u8] = b"!#$%&'()*+,/:;=?@[]";
/// Characters that mean something in a regex once decoded.
const REGEX_META: &[u8] = b".^-{}\\|";

/// Migrates one 2.x route path to its 3.x form.
pub(super) fn migrate(path: &str) -> String {
    if is_plain(path) {
        normalize(path)
    } else {
        format!("~{}", decode_regex(path))
    }
}

fn is_plain(path: &str) -> bool {
    path.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_~/%".contains(&b))
}

/// The schema's own normalization, so a migrated path always passes its
/// "non-normalized path" check.
fn normalize(path: &str) -> String {
    crate::schema::normalize_path(path)
}

/// Decodes a regex path's `%XX` triplets except reserved characters (which
/// are upper-cased), backslash-escaping decoded regex metacharacters. Falls
/// back to decoding ASCII only when the result would not be UTF-8.
fn decode_regex(input: &str) -> String {
    if !input.contains('%') {
        return input.to_string();
    }
    match String::from_utf8(decode_bytes(input, true)) {
        Ok(s) => s,
        Err(_) => String::from_utf8_lossy(&decode_bytes(input, false)).into_owned(),
    }
}

fn decode_bytes(input: &str, decode_non_ascii: bool) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let triplet = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok().map(|b| (b, hex)));
        match triplet {
            Some((b, hex)) if RESERVED.contains(&b) || (!decode_non_ascii && !b.is_ascii()) => {
                out.push(b'%');
                out.extend_from_slice(hex.to_ascii_uppercase().as_bytes());
                i += 3;
            }
            Some((b, _)) => {
                if REGEX_META.contains(&b) {
                    out.push(b'\\');
                }
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::migrate;

    #[test]
    fn migrates_like_kong_2x_to_3x() {
        let cases = [
            ("/", "/"),
            ("/api", "/api"),
            ("/api/", "/api/"),
            ("/foo/../bar", "/bar"),
            ("/foo/./bar/.", "/foo/bar/"),
            ("/a//b///c", "/a/b/c"),
            ("/%7Euser", "/~user"),
            ("/caf%c3%a9", "/café"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%3Fb", "/a%3Fb"),
            ("/r%ff+", "~/r%FF+"),
            ("/v1/(?<id>\\d+)$", "~/v1/(?<id>\\d+)$"),
            ("/users/[0-9]+", "~/users/[0-9]+"),
            ("/x y", "~/x y"),
            ("/r%2E*", "~/r\\.*"),
            ("/r%2F*", "~/r%2F*"),
        ];
        for (input, expected) in cases {
            assert_eq!(migrate(input), expected, "{input}");
        }
    }
}
