//! The upstream request path (kong-compat §2.3, `path_handling = v0`, Kong's
//! `get_upstream_uri_v0`) and the query string appended to it.

/// The path sent upstream.
///
/// - `service_path`: the service's `path` (`None` or empty ⇒ `/`);
/// - `request_path`: the normalized request path;
/// - `stripped`: what `strip_path` removes — the matched path when the route
///   has `strip_path = true` (`/` for a route without paths), `None` when off.
///   See [`super::RouteMatch::stripped_prefix`].
pub fn upstream_path(
    service_path: Option<&str>,
    request_path: &str,
    stripped: Option<&str>,
) -> String {
    let base = service_path.filter(|p| !p.is_empty()).unwrap_or("/");
    let base_trimmed = base.strip_suffix('/');

    let Some(prefix) = stripped else {
        return match base_trimmed {
            // Base ends with `/`: keep the request path without its leading `/`.
            Some(_) => concat(base, request_path.strip_prefix('/').unwrap_or(request_path)),
            None if request_path == "/" => base.to_owned(),
            None => concat(base, request_path),
        };
    };

    // Kong cuts by length (the match is always a prefix of the request path;
    // an unanchored regex alternative is cut the same way as in Kong).
    let postfix = sanitize_postfix(request_path.get(prefix.len()..).unwrap_or(""));
    match base_trimmed {
        Some(trimmed) => {
            if postfix.is_empty() {
                if base == "/" {
                    "/".to_owned()
                } else if request_path.ends_with('/') {
                    base.to_owned()
                } else {
                    trimmed.to_owned()
                }
            } else if postfix.starts_with('/') {
                concat(trimmed, postfix)
            } else {
                concat(base, postfix)
            }
        }
        None => {
            if postfix.is_empty() {
                if request_path.len() > 1 && request_path.ends_with('/') {
                    concat(base, "/")
                } else {
                    base.to_owned()
                }
            } else if postfix.starts_with('/') {
                concat(base, postfix)
            } else {
                let mut out = String::with_capacity(base.len() + 1 + postfix.len());
                out.push_str(base);
                out.push('/');
                out.push_str(postfix);
                out
            }
        }
    }
}

/// A leading `./` or `../`, or a bare `.`/`..`, left after stripping is dropped.
fn sanitize_postfix(postfix: &str) -> &str {
    if postfix == "." || postfix == ".." {
        return "";
    }
    postfix
        .strip_prefix("./")
        .or_else(|| postfix.strip_prefix("../"))
        .unwrap_or(postfix)
}

fn concat(a: &str, b: &str) -> String {
    let mut out = String::with_capacity(a.len() + b.len());
    out.push_str(a);
    out.push_str(b);
    out
}

/// Appends the request's query string unchanged: `Some("a=1")` ⇒ `?a=1`;
/// `Some("")` (a bare trailing `?` in the request) ⇒ `?`; `None` ⇒ nothing.
/// `http::Uri::query()` yields exactly these three cases.
pub fn append_query(path: &mut String, query: Option<&str>) {
    if let Some(query) = query {
        path.push('?');
        path.push_str(query);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    struct Case {
        service: Option<&'static str>,
        request: &'static str,
        stripped: Option<&'static str>,
        want: &'static str,
    }

    const fn case(
        service: Option<&'static str>,
        request: &'static str,
        stripped: Option<&'static str>,
        want: &'static str,
    ) -> Case {
        Case {
            service,
            request,
            stripped,
            want,
        }
    }

    #[test]
    fn path_joining_table() {
        let cases = [
            // kong-compat §2.3 examples: service path null, route /foo, strip on.
            case(None, "/foo", Some("/foo"), "/"),
            case(None, "/foo/", Some("/foo"), "/"),
            case(None, "/foo/bar", Some("/foo"), "/bar"),
            case(None, "/foobar", Some("/foo"), "/bar"),
            // Service /api.
            case(Some("/api"), "/foo", Some("/foo"), "/api"),
            case(Some("/api"), "/foo/", Some("/foo"), "/api/"),
            case(Some("/api"), "/foo/bar", Some("/foo"), "/api/bar"),
            case(Some("/api"), "/foo/bar", None, "/api/foo/bar"),
            // base ends with `/`, strip on, postfix empty.
            case(Some("/"), "/foo", Some("/foo"), "/"),
            case(Some("/api/"), "/foo/", Some("/foo/"), "/api/"),
            case(Some("/api/"), "/foo", Some("/foo"), "/api"),
            // base ends with `/`, strip on, postfix starts with `/`.
            case(Some("/api/"), "/foo/bar", Some("/foo"), "/api/bar"),
            case(Some("/"), "/foo/bar/", Some("/foo"), "/bar/"),
            // base ends with `/`, strip on, other postfix.
            case(Some("/api/"), "/foobar", Some("/foo"), "/api/bar"),
            case(Some("/api/"), "/foo/bar", Some("/foo/"), "/api/bar"),
            // base ends with `/`, strip off.
            case(Some("/api/"), "/foo/bar", None, "/api/foo/bar"),
            case(Some("/api/"), "/", None, "/api/"),
            case(None, "/foo/bar", None, "/foo/bar"),
            case(None, "/", None, "/"),
            // base without trailing `/`, strip on, postfix empty.
            case(Some("/api"), "/", Some("/"), "/api"),
            case(Some("/api"), "/foo/", Some("/foo/"), "/api/"),
            // base without trailing `/`, strip on, postfix starts with `/`.
            case(Some("/api"), "/foo//x", Some("/foo"), "/api//x"),
            // base without trailing `/`, strip on, other postfix.
            case(Some("/api"), "/foobar", Some("/foo"), "/api/bar"),
            case(Some("/api"), "/foo/bar", Some("/foo/"), "/api/bar"),
            // base without trailing `/`, strip off.
            case(Some("/api"), "/", None, "/api"),
            case(Some("/api"), "/foo", None, "/api/foo"),
            case(Some("/api"), "/foo/", None, "/api/foo/"),
            // Leading `./`, `../`, bare `.`/`..` of the postfix dropped.
            case(Some("/api"), "/foo.", Some("/foo"), "/api"),
            case(Some("/api"), "/foo..", Some("/foo"), "/api"),
            case(Some("/api"), "/foo./x", Some("/foo"), "/api/x"),
            case(Some("/api"), "/foo../x", Some("/foo"), "/api/x"),
            case(Some("/api/"), "/foo../x", Some("/foo"), "/api/x"),
            // Route without paths and strip on: the path minus its leading `/`.
            case(Some("/api"), "/x/y", Some("/"), "/api/x/y"),
            case(None, "/x/y", Some("/"), "/x/y"),
            // Empty service path counts as `/`.
            case(Some(""), "/foo/bar", Some("/foo"), "/bar"),
            // Regex match `/users/42` of `/users/42/posts`.
            case(
                Some("/v2"),
                "/users/42/posts",
                Some("/users/42"),
                "/v2/posts",
            ),
        ];
        for c in &cases {
            assert_eq!(
                upstream_path(c.service, c.request, c.stripped),
                c.want,
                "service {:?} request {} stripped {:?}",
                c.service,
                c.request,
                c.stripped
            );
        }
    }

    #[test]
    fn query_is_appended_unchanged() {
        let cases: &[(&str, &str)] = &[
            ("/foo/bar?a=1&b=%2F", "/api/bar?a=1&b=%2F"),
            ("/foo/bar?", "/api/bar?"),
            ("/foo/bar", "/api/bar"),
            ("/foo?x", "/api?x"),
            ("/foo/bar??a", "/api/bar??a"),
        ];
        for (uri, want) in cases {
            let uri: http::Uri = uri.parse().unwrap();
            let mut path = upstream_path(Some("/api"), uri.path(), Some("/foo"));
            append_query(&mut path, uri.query());
            assert_eq!(path, *want, "uri {uri}");
        }
    }
}
