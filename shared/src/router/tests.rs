//! Router conformance tests (kong-compat §2.1–§2.2) and an index-vs-linear-scan
//! cross-check on generated tables.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::compile::{Group, GroupPaths, RequestFacts, HOST_BUF_LEN};
use super::index::PathMatch;
use super::*;
use crate::ForeignKey;
use std::collections::BTreeMap;
use uuid::Uuid;

const ENABLED_SERVICE: u128 = 0xE0;
const DISABLED_SERVICE: u128 = 0xD0;

fn service(id: u128, enabled: bool) -> Service {
    Service {
        id: Uuid::from_u128(id),
        created_at: 0,
        updated_at: 0,
        name: None,
        retries: 5,
        protocol: "http".into(),
        host: "upstream.test".into(),
        port: 80,
        path: None,
        connect_timeout: 60_000,
        write_timeout: 60_000,
        read_timeout: 60_000,
        tags: None,
        client_certificate: None,
        tls_verify: None,
        tls_verify_depth: None,
        ca_certificates: None,
        enabled,
    }
}

fn services() -> Vec<Service> {
    vec![
        service(ENABLED_SERVICE, true),
        service(DISABLED_SERVICE, false),
    ]
}

/// A route named `name` with Kong's defaults and no match fields yet.
fn route(name: &str, id: u128) -> Route {
    Route {
        id: Uuid::from_u128(id),
        created_at: 0,
        updated_at: 0,
        name: Some(name.into()),
        protocols: vec!["http".into(), "https".into()],
        methods: None,
        hosts: None,
        paths: None,
        headers: None,
        snis: None,
        sources: None,
        destinations: None,
        https_redirect_status_code: 426,
        regex_priority: 0,
        strip_path: true,
        preserve_host: false,
        request_buffering: true,
        response_buffering: true,
        path_handling: "v0".into(),
        service: Some(ForeignKey::from(Uuid::from_u128(ENABLED_SERVICE))),
        tags: None,
    }
}

fn strings(values: &[&str]) -> Option<Vec<String>> {
    Some(values.iter().map(|s| (*s).to_owned()).collect())
}

trait RouteExt {
    fn paths(self, paths: &[&str]) -> Self;
    fn hosts(self, hosts: &[&str]) -> Self;
    fn methods(self, methods: &[&str]) -> Self;
    fn snis(self, snis: &[&str]) -> Self;
    fn header(self, name: &str, values: &[&str]) -> Self;
    fn protocols(self, protocols: &[&str]) -> Self;
    fn regex_priority(self, priority: i64) -> Self;
    fn redirect(self, code: i64) -> Self;
    fn service(self, id: Option<u128>) -> Self;
}

impl RouteExt for Route {
    fn paths(mut self, paths: &[&str]) -> Self {
        self.paths = strings(paths);
        self
    }
    fn hosts(mut self, hosts: &[&str]) -> Self {
        self.hosts = strings(hosts);
        self
    }
    fn methods(mut self, methods: &[&str]) -> Self {
        self.methods = strings(methods);
        self
    }
    fn snis(mut self, snis: &[&str]) -> Self {
        self.snis = strings(snis);
        self
    }
    fn header(mut self, name: &str, values: &[&str]) -> Self {
        self.headers
            .get_or_insert_with(BTreeMap::new)
            .insert(name.into(), strings(values).unwrap_or_default());
        self
    }
    fn protocols(mut self, protocols: &[&str]) -> Self {
        self.protocols = strings(protocols).unwrap_or_default();
        self
    }
    fn regex_priority(mut self, priority: i64) -> Self {
        self.regex_priority = priority;
        self
    }
    fn redirect(mut self, code: i64) -> Self {
        self.https_redirect_status_code = code;
        self
    }
    fn service(mut self, id: Option<u128>) -> Self {
        self.service = id.map(|id| ForeignKey::from(Uuid::from_u128(id)));
        self
    }
}

#[derive(Clone)]
struct Req {
    method: &'static str,
    host: Option<&'static str>,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    https: bool,
    sni: Option<&'static str>,
    port: u16,
}

fn get(host: Option<&'static str>, path: &'static str) -> Req {
    Req {
        method: "GET",
        host,
        path,
        headers: Vec::new(),
        https: false,
        sni: None,
        port: 8000,
    }
}

impl Req {
    fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
    fn tls(mut self, sni: Option<&'static str>) -> Self {
        self.https = true;
        self.sni = sni;
        self.port = 8443;
        self
    }
    fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    fn find(&self, router: &Router) -> Option<RouteMatch> {
        let mut headers = http::HeaderMap::new();
        for (name, value) in &self.headers {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        router.find(&RequestInfo {
            method: self.method,
            host: self.host,
            path: self.path,
            headers: &headers,
            https: self.https,
            sni: self.sni,
            listener_port: self.port,
        })
    }
}

fn name_of(m: &RouteMatch) -> &str {
    m.entry.route.name.as_deref().unwrap_or("?")
}

struct Case {
    what: &'static str,
    routes: Vec<Route>,
    req: Req,
    /// Winning route name and its matched path, or `None` for no match.
    want: Option<(&'static str, Option<&'static str>)>,
}

fn case(
    what: &'static str,
    routes: Vec<Route>,
    req: Req,
    want: Option<(&'static str, Option<&'static str>)>,
) -> Case {
    Case {
        what,
        routes,
        req,
        want,
    }
}

const H: Option<&str> = Some("example.com");

fn conformance_cases() -> Vec<Case> {
    vec![
        // ---- methods ----
        case(
            "method must equal",
            vec![route("get", 1).methods(&["GET"]).paths(&["/"])],
            get(H, "/x").method("POST"),
            None,
        ),
        case(
            "method matches",
            vec![route("get", 1).methods(&["GET", "HEAD"]).paths(&["/"])],
            get(H, "/x").method("HEAD"),
            Some(("get", Some("/"))),
        ),
        case(
            "method is case-sensitive",
            vec![route("get", 1).methods(&["GET"])],
            get(H, "/").method("get"),
            None,
        ),
        // ---- hosts ----
        case(
            "plain host equality",
            vec![route("a", 1).hosts(&["example.com"])],
            get(H, "/anything"),
            Some(("a", None)),
        ),
        case(
            "plain host other name",
            vec![route("a", 1).hosts(&["example.com"])],
            get(Some("example.org"), "/"),
            None,
        ),
        case(
            "host compared case-insensitively",
            vec![route("a", 1).hosts(&["Example.COM"])],
            get(Some("EXAMPLE.com"), "/"),
            Some(("a", None)),
        ),
        case(
            "request Host port is split off",
            vec![route("a", 1).hosts(&["example.com"])],
            get(Some("example.com:8000"), "/"),
            Some(("a", None)),
        ),
        case(
            "no Host header never matches a hosts route",
            vec![route("a", 1).hosts(&["example.com"])],
            get(None, "/"),
            None,
        ),
        case(
            "wildcard suffix matches a deeper name",
            vec![route("w", 1).hosts(&["*.example.com"])],
            get(Some("a.b.example.com"), "/"),
            Some(("w", None)),
        ),
        case(
            "wildcard suffix does not match the bare domain",
            vec![route("w", 1).hosts(&["*.example.com"])],
            get(Some("example.com"), "/"),
            None,
        ),
        case(
            "wildcard prefix matches any tld",
            vec![route("w", 1).hosts(&["example.*"])],
            get(Some("example.org:9000"), "/"),
            Some(("w", None)),
        ),
        case(
            "wildcard prefix needs the label at the start",
            vec![route("w", 1).hosts(&["example.*"])],
            get(Some("www.example.org"), "/"),
            None,
        ),
        case(
            "host:port entry with matching Host port",
            vec![route("p", 1).hosts(&["example.com:8080"])],
            get(Some("example.com:8080"), "/"),
            Some(("p", None)),
        ),
        case(
            "host:port entry with another Host port",
            vec![route("p", 1).hosts(&["example.com:8080"])],
            get(Some("example.com:9090"), "/").port(8080),
            None,
        ),
        case(
            "host:port entry falls back to the listener port",
            vec![route("p", 1).hosts(&["example.com:8080"])],
            get(H, "/").port(8080),
            Some(("p", None)),
        ),
        case(
            "host:port entry with another listener port",
            vec![route("p", 1).hosts(&["example.com:8080"])],
            get(H, "/").port(8000),
            None,
        ),
        case(
            "wildcard host with port",
            vec![route("p", 1).hosts(&["*.example.com:8443"])],
            get(Some("api.example.com"), "/").tls(None),
            Some(("p", None)),
        ),
        // ---- paths ----
        case(
            "prefix is not segment-aware",
            vec![route("foo", 1).paths(&["/foo"])],
            get(H, "/foobar"),
            Some(("foo", Some("/foo"))),
        ),
        case(
            "prefix is case-sensitive",
            vec![route("foo", 1).paths(&["/Foo"])],
            get(H, "/foo"),
            None,
        ),
        case(
            "longest prefix wins",
            vec![
                route("short", 1).paths(&["/foo"]),
                route("long", 2).paths(&["/foo/bar"]),
                route("other", 3).paths(&["/fox"]),
            ],
            get(H, "/foo/bar/baz"),
            Some(("long", Some("/foo/bar"))),
        ),
        case(
            "regex anchored at the start",
            vec![route("re", 1).paths(&[r"~/users/\d+"])],
            get(H, "/api/users/42"),
            None,
        ),
        case(
            "regex not anchored at the end; matched portion reported",
            vec![route("re", 1).paths(&[r"~/users/\d+"])],
            get(H, "/users/42/posts"),
            Some(("re", Some("/users/42"))),
        ),
        case(
            "regex outranks a longer prefix",
            vec![
                route("prefix", 1).paths(&["/a/b/c/d/e"]),
                route("regex", 2).paths(&["~/a"]),
            ],
            get(H, "/a/b/c/d/e"),
            Some(("regex", Some("/a"))),
        ),
        case(
            "regex_priority orders regex routes",
            vec![
                route("low", 9).paths(&["~/a"]).regex_priority(1),
                route("high", 1).paths(&["~/a/b"]).regex_priority(5),
            ],
            get(H, "/a/b"),
            Some(("high", Some("/a/b"))),
        ),
        case(
            "negative regex_priority ranks below zero",
            vec![
                route("neg", 9).paths(&["~/a"]).regex_priority(-1),
                route("zero", 1).paths(&["~/a"]),
            ],
            get(H, "/a"),
            Some(("zero", Some("/a"))),
        ),
        case(
            "regex_priority ignored for prefix routes",
            vec![
                route("short-high", 1).paths(&["/a"]).regex_priority(100),
                route("long", 2).paths(&["/a/b"]),
            ],
            get(H, "/a/b"),
            Some(("long", Some("/a/b"))),
        ),
        case(
            "PCRE named group syntax accepted",
            vec![route("named", 1).paths(&[r"~/u/(?<id>\d+)$"])],
            get(H, "/u/7"),
            Some(("named", Some("/u/7"))),
        ),
        case(
            "path matched against the given (normalized) path only",
            vec![route("x", 1).paths(&["/a/b"])],
            get(H, "/a//b"),
            None,
        ),
        // ---- headers ----
        case(
            "header value case-insensitive",
            vec![route("h", 1).header("X-Version", &["V1"])],
            get(H, "/").header("x-version", "v1"),
            Some(("h", None)),
        ),
        case(
            "headers AND across names",
            vec![route("h", 1).header("x-a", &["1"]).header("x-b", &["2"])],
            get(H, "/").header("x-a", "1"),
            None,
        ),
        case(
            "headers AND across names satisfied",
            vec![route("h", 1).header("x-a", &["1"]).header("x-b", &["2"])],
            get(H, "/").header("x-b", "2").header("x-a", "1"),
            Some(("h", None)),
        ),
        case(
            "header OR across values",
            vec![route("h", 1).header("x-a", &["1", "2", "3"])],
            get(H, "/").header("x-a", "3"),
            Some(("h", None)),
        ),
        case(
            "header value must equal, not contain",
            vec![route("h", 1).header("x-a", &["abc"])],
            get(H, "/").header("x-a", "abcd"),
            None,
        ),
        case(
            "header ~* regex is case-insensitive",
            vec![route("h", 1).header("x-client", &[r"~*^mobile-(ios|android)$"])],
            get(H, "/").header("x-client", "Mobile-IOS"),
            Some(("h", None)),
        ),
        case(
            "header ~* regex is unanchored",
            vec![route("h", 1).header("user-agent", &["~*curl"])],
            get(H, "/").header("user-agent", "Mozilla curl/8.0"),
            Some(("h", None)),
        ),
        case(
            "header ~* regex miss",
            vec![route("h", 1).header("x-client", &[r"~*^mobile"])],
            get(H, "/").header("x-client", "desktop-mobile"),
            None,
        ),
        case(
            "any occurrence of a repeated header may match",
            vec![route("h", 1).header("x-tenant", &["blue"])],
            get(H, "/")
                .header("x-tenant", "red")
                .header("x-tenant", "BLUE"),
            Some(("h", None)),
        ),
        case(
            "comma-joined values are one value",
            vec![route("h", 1).header("x-tenant", &["blue"])],
            get(H, "/").header("x-tenant", "red, blue"),
            None,
        ),
        // ---- snis ----
        case(
            "snis ignored for plain http",
            vec![route("s", 1).snis(&["secure.test"]).paths(&["/"])],
            get(H, "/x"),
            Some(("s", Some("/"))),
        ),
        case(
            "snis must match over TLS",
            vec![route("s", 1).snis(&["secure.test"]).paths(&["/"])],
            get(H, "/x").tls(Some("other.test")),
            None,
        ),
        case(
            "snis matched over TLS",
            vec![route("s", 1).snis(&["secure.test."]).paths(&["/"])],
            get(H, "/x").tls(Some("Secure.Test")),
            Some(("s", Some("/"))),
        ),
        case(
            "snis required but TLS without SNI",
            vec![route("s", 1).snis(&["secure.test"])],
            get(H, "/x").tls(None),
            None,
        ),
        case(
            "sni wildcard",
            vec![route("s", 1).snis(&["*.secure.test"])],
            get(H, "/x").tls(Some("api.secure.test")),
            Some(("s", None)),
        ),
        // ---- protocols are not part of matching ----
        case(
            "https-only route still matched by plain http",
            vec![
                route("plain", 1).paths(&["/a"]),
                route("tls-only", 2).paths(&["/a/b"]).protocols(&["https"]),
            ],
            get(H, "/a/b"),
            Some(("tls-only", Some("/a/b"))),
        ),
        case(
            "http-only route matched over TLS",
            vec![route("plain", 1).paths(&["/a"]).protocols(&["http"])],
            get(H, "/a").tls(Some("example.com")),
            Some(("plain", Some("/a"))),
        ),
        case(
            "stream routes are not HTTP routes",
            vec![route("tcp", 1).protocols(&["tcp"]).snis(&["x.test"])],
            get(H, "/").tls(Some("x.test")),
            None,
        ),
        // ---- priority ----
        case(
            "plain host beats wildcard",
            vec![
                route("wild", 9).hosts(&["*.example.com"]).paths(&["/"]),
                route("plain", 1).hosts(&["api.example.com"]).paths(&["/"]),
            ],
            get(Some("api.example.com"), "/x"),
            Some(("plain", Some("/"))),
        ),
        case(
            "mixed plain and wildcard hosts are not plain",
            vec![
                route("mixed", 9)
                    .hosts(&["api.example.com", "*.other.com"])
                    .paths(&["/"]),
                route("plain", 1).hosts(&["api.example.com"]).paths(&["/"]),
            ],
            get(Some("api.example.com"), "/x"),
            Some(("plain", Some("/"))),
        ),
        case(
            "plain-host bit outranks a longer prefix",
            vec![
                route("wild-long", 9)
                    .hosts(&["*.example.com"])
                    .paths(&["/very/long/prefix"]),
                route("plain-short", 1)
                    .hosts(&["api.example.com"])
                    .paths(&["/"]),
            ],
            get(Some("api.example.com"), "/very/long/prefix"),
            Some(("plain-short", Some("/"))),
        ),
        case(
            "more fields (match weight) beat a longer prefix",
            vec![
                route("long", 9).paths(&["/a/b/c"]),
                route("method-and-short", 1)
                    .methods(&["GET"])
                    .paths(&["/a"]),
            ],
            get(H, "/a/b/c"),
            Some(("method-and-short", Some("/a"))),
        ),
        case(
            "more headers wins",
            vec![
                route("one", 9).header("x-a", &["1"]).paths(&["/"]),
                route("two", 1)
                    .header("x-a", &["1"])
                    .header("x-b", &["2"])
                    .paths(&["/"]),
            ],
            get(H, "/").header("x-a", "1").header("x-b", "2"),
            Some(("two", Some("/"))),
        ),
        case(
            "header count outranks the regex bit",
            vec![
                route("regex-1h", 9)
                    .hosts(&["example.com"])
                    .header("x-a", &["1"])
                    .paths(&["~/"]),
                route("prefix-2h", 1)
                    .hosts(&["example.com"])
                    .header("x-a", &["1"])
                    .header("x-b", &["2"])
                    .paths(&["/"]),
            ],
            get(H, "/a").header("x-a", "1").header("x-b", "2"),
            Some(("prefix-2h", Some("/"))),
        ),
        case(
            "plain-host bit outranks header count",
            vec![
                route("wild-2h", 9)
                    .hosts(&["*.com"])
                    .header("x-a", &["1"])
                    .header("x-b", &["2"]),
                route("plain-1h", 1)
                    .hosts(&["example.com"])
                    .header("x-a", &["1"]),
            ],
            get(H, "/").header("x-a", "1").header("x-b", "2"),
            Some(("plain-1h", None)),
        ),
        case(
            "tie goes to the larger route UUID",
            vec![
                route("smaller", 0x100).paths(&["/same"]),
                route("larger", 0x200).paths(&["/same"]),
                route("middle", 0x150).paths(&["/same"]),
            ],
            get(H, "/same"),
            Some(("larger", Some("/same"))),
        ),
        case(
            "multi-path route: long path beats other route's middle length",
            vec![
                route("multi", 1).paths(&["/a", "/a/b/c"]),
                route("mid", 2).paths(&["/a/b"]),
            ],
            get(H, "/a/b/c/d"),
            Some(("multi", Some("/a/b/c"))),
        ),
        case(
            "multi-path route: short path loses to other route's middle length",
            vec![
                route("multi", 1).paths(&["/a", "/a/b/c"]),
                route("mid", 2).paths(&["/a/b"]),
            ],
            get(H, "/a/b/x"),
            Some(("mid", Some("/a/b"))),
        ),
        case(
            "multi-path route: regex group outranks its own prefixes",
            vec![route("multi", 1).paths(&["/api/v1/long", r"~/api/v\d"])],
            get(H, "/api/v1/long"),
            Some(("multi", Some("/api/v1"))),
        ),
        case(
            "multi-path route: first matching regex of the group reports the match",
            vec![route("multi", 1).paths(&["~/x/(y|z)", "~/x/y/z", "~/q"])],
            get(H, "/x/y/z"),
            Some(("multi", Some("/x/y"))),
        ),
        case(
            "routes of a disabled service are excluded",
            vec![
                route("disabled", 1)
                    .paths(&["/a/b"])
                    .service(Some(DISABLED_SERVICE)),
                route("enabled", 2).paths(&["/a"]),
            ],
            get(H, "/a/b"),
            Some(("enabled", Some("/a"))),
        ),
        case(
            "route without service still matches",
            vec![route("orphan", 1).paths(&["/o"]).service(None)],
            get(H, "/o"),
            Some(("orphan", Some("/o"))),
        ),
        case(
            "no route matches",
            vec![
                route("a", 1).paths(&["/a"]),
                route("b", 2).hosts(&["b.test"]),
            ],
            get(H, "/b"),
            None,
        ),
        case(
            "same route reachable from exact and wildcard buckets",
            vec![
                route("both", 1)
                    .hosts(&["api.example.com", "*.example.com"])
                    .paths(&["/"]),
                route("wild", 2).hosts(&["*.example.com"]).paths(&["/x"]),
            ],
            get(Some("api.example.com"), "/x"),
            Some(("wild", Some("/x"))),
        ),
    ]
}

#[test]
fn kong_conformance_table() {
    let cases = conformance_cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    for c in &cases {
        let router = Router::build(&c.routes, &services())
            .unwrap_or_else(|e| panic!("{}: build failed: {e:?}", c.what));
        let got = c.req.find(&router);
        let got = got
            .as_ref()
            .map(|m| (name_of(m).to_owned(), m.matched_path().map(str::to_owned)));
        let want = c
            .want
            .map(|(name, path)| (name.to_owned(), path.map(str::to_owned)));
        assert_eq!(got, want, "case: {}", c.what);
    }
}

#[test]
fn https_only_route_reports_the_redirect_code() {
    let routes = vec![
        route("426", 1).paths(&["/upgrade"]).protocols(&["https"]),
        route("301", 2)
            .paths(&["/moved"])
            .protocols(&["https"])
            .redirect(301),
        route("both", 3).paths(&["/both"]),
    ];
    let router = Router::build(&routes, &services()).unwrap();
    let cases: &[(Req, Option<ProtocolMismatch>)] = &[
        (
            get(H, "/upgrade"),
            Some(ProtocolMismatch::HttpsRequired {
                redirect_status_code: 426,
            }),
        ),
        (
            get(H, "/moved"),
            Some(ProtocolMismatch::HttpsRequired {
                redirect_status_code: 301,
            }),
        ),
        (get(H, "/upgrade").tls(Some("example.com")), None),
        (get(H, "/both"), None),
        (get(H, "/both").tls(None), None),
    ];
    for (req, want) in cases {
        let m = req.find(&router).unwrap();
        assert_eq!(m.protocol_mismatch, *want, "path {}", req.path);
    }
    let entry = router.entry(0).unwrap();
    assert!(entry.https_only());
    assert_eq!(entry.protocol_mismatch(true), None);
}

#[test]
fn regex_captures_are_exposed() {
    let routes = vec![
        route("named", 1).paths(&[r"~/users/(?<user>\w+)/items/(\d+)(/x)?"]),
        route("prefix", 2).paths(&["/plain"]),
    ];
    let router = Router::build(&routes, &services()).unwrap();
    let m = get(H, "/users/ann/items/42/rest").find(&router).unwrap();
    let captures = m.captures.as_deref().unwrap();
    assert_eq!(
        captures.unnamed,
        vec![
            Some("/users/ann/items/42".to_owned()),
            Some("ann".to_owned()),
            Some("42".to_owned()),
            None
        ]
    );
    assert_eq!(captures.by_name("user"), Some("ann"));
    assert_eq!(captures.by_name("nope"), None);
    assert_eq!(m.matched_path(), Some("/users/ann/items/42"));

    let m = get(H, "/plain/x").find(&router).unwrap();
    assert!(m.captures.is_none());
}

#[test]
fn upstream_path_from_a_match() {
    let mut api = service(0xA1, true);
    api.path = Some("/api".into());
    let routes = vec![
        route("strip", 1).paths(&["/foo"]).service(Some(0xA1)),
        {
            let mut r = route("keep", 2).paths(&["/keep"]).service(Some(0xA1));
            r.strip_path = false;
            r
        },
        route("regex", 3).paths(&[r"~/r/\d+"]).service(Some(0xA1)),
        route("pathless", 4)
            .hosts(&["nopath.test"])
            .service(Some(0xA1)),
    ];
    let router = Router::build(&routes, &[api]).unwrap();
    let cases: &[(Req, &str, Option<&str>)] = &[
        (get(H, "/foo/bar"), "/api/bar", Some("/foo")),
        (get(H, "/foo"), "/api", Some("/foo")),
        (get(H, "/keep/x"), "/api/keep/x", None),
        (get(H, "/r/12/x"), "/api/x", Some("/r/12")),
        (get(Some("nopath.test"), "/a/b"), "/api/a/b", Some("/")),
    ];
    for (req, want, stripped) in cases {
        let m = req.find(&router).unwrap();
        assert_eq!(m.upstream_path(req.path), *want, "path {}", req.path);
        assert_eq!(m.stripped_prefix(), *stripped, "path {}", req.path);
    }
}

#[test]
fn build_reports_every_error() {
    let routes = vec![
        route("bad-regex", 1).paths(&["~/a(", "~/ok", "~/b["]),
        route("bad-header", 2).header("x-a", &["~*("]),
        route("unknown-service", 3)
            .paths(&["/x"])
            .service(Some(0xBAD)),
        route("bad-header-name", 4).header("bad name", &["v"]),
        route("fine", 5).paths(&["/fine"]),
        route("bad-hosts", 6).hosts(&["*", "ok.test", ":80"]),
    ];
    let errors = Router::build(&routes, &services()).unwrap_err();
    let kinds: Vec<(&str, Uuid)> = errors
        .iter()
        .map(|e| match e {
            RouterError::InvalidRegex { route_id, .. } => ("regex", *route_id),
            RouterError::InvalidHeaderRegex { route_id, .. } => ("header-regex", *route_id),
            RouterError::InvalidHeaderName { route_id, .. } => ("header-name", *route_id),
            RouterError::InvalidHost { route_id, .. } => ("host", *route_id),
            RouterError::UnknownService { route_id, .. } => ("service", *route_id),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("regex", Uuid::from_u128(1)),
            ("regex", Uuid::from_u128(1)),
            ("header-regex", Uuid::from_u128(2)),
            ("service", Uuid::from_u128(3)),
            ("header-name", Uuid::from_u128(4)),
            ("host", Uuid::from_u128(6)),
            ("host", Uuid::from_u128(6)),
        ]
    );
}

/// The proxy normalizes, then routes and forwards the normalized path.
#[test]
fn normalized_request_paths_route_and_forward() {
    let routes = vec![
        route("bar", 1).paths(&["/bar"]),
        route("tilde", 2).paths(&["/~user"]),
        route("dots", 3).paths(&[r"~/files/[^/]+$"]),
    ];
    let router = Router::build(&routes, &services()).unwrap();
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("/foo/../bar", Some("bar"), "/"),
        ("//bar//x", Some("bar"), "/x"),
        ("/%7euser/x", Some("tilde"), "/x"),
        ("/bar%2fx", Some("bar"), "/%2Fx"),
        ("/%62ar/y", Some("bar"), "/y"),
        ("/files/a%2Fb", Some("dots"), "/"),
        ("/files/x/%2e%2e/a.txt", Some("dots"), "/"),
        ("/%2e%2e/etc", None, ""),
    ];
    for (raw, want, upstream) in cases {
        let path = normalize_path(raw).unwrap();
        let headers = http::HeaderMap::new();
        let found = router.find(&RequestInfo {
            method: "GET",
            host: H,
            path: &path,
            headers: &headers,
            https: false,
            sni: None,
            listener_port: 8000,
        });
        assert_eq!(found.as_ref().map(name_of), *want, "raw {raw}");
        if let Some(m) = found {
            assert_eq!(m.upstream_path(&path), *upstream, "raw {raw}");
        }
    }
}

#[test]
fn router_is_shareable_across_workers() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Router>();
    assert_send_sync::<RouteMatch>();
}

#[test]
fn len_counts_routable_routes_only() {
    let routes = vec![
        route("a", 1).paths(&["/a"]),
        route("off", 2)
            .paths(&["/b"])
            .service(Some(DISABLED_SERVICE)),
        route("tcp", 3).protocols(&["tcp"]),
        route("c", 4).paths(&["/c", "/cc", "~/c"]),
    ];
    let router = Router::build(&routes, &services()).unwrap();
    assert_eq!(router.len(), 2);
    assert!(!router.is_empty());
    assert!(router.entry(1).is_none());
    assert_eq!(router.entry(3).unwrap().route.id, Uuid::from_u128(4));
    assert_eq!(get(H, "/cc").find(&router).unwrap().route_index, 3);
    assert!(Router::build(&[], &[]).unwrap().is_empty());
}

/// Split groups carry Kong's UUIDv5 ids (`<route id>#<length>` / `#true`), which
/// decide ties against other routes.
#[test]
fn split_groups_tie_break_on_their_derived_ids() {
    let namespace = Uuid::parse_str("7f145bf9-0dce-4f91-98eb-debbce4b9f6b").unwrap();
    let multi_id = Uuid::from_u128(0x42);
    let derived = Uuid::new_v5(&namespace, format!("{multi_id}#2").as_bytes());
    // Two single-path routes just below and above the derived id of `/a`.
    let below = Uuid::from_u128(derived.as_u128() - 1);
    let above = Uuid::from_u128(derived.as_u128() + 1);
    for (rival, want) in [(below, "multi"), (above, "rival")] {
        let mut rival_route = route("rival", 0).paths(&["/a"]);
        rival_route.id = rival;
        let routes = vec![route("multi", 0x42).paths(&["/a", "/bcd"]), rival_route];
        let router = Router::build(&routes, &services()).unwrap();
        let m = get(H, "/a/x").find(&router).unwrap();
        assert_eq!(name_of(&m), want, "rival {rival}");
    }
}

// ---- index vs linear scan on generated tables ----

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const HOSTS: &[&str] = &[
    "a.test",
    "b.test",
    "x.a.test",
    "A.Test",
    "*.a.test",
    "*.test",
    "a.*",
    "b.*",
    "a.test:8000",
    "*.a.test:9000",
];
const PATHS: &[&str] = &[
    "/",
    "/a",
    "/a/",
    "/a/b",
    "/ab",
    "/a/b/c",
    "/b",
    "/b/a",
    "~/a",
    "~/a/b$",
    r"~/\w/b",
    "~/b|/a",
    "~/(a|b)/c",
];
const REQ_HOSTS: &[&str] = &[
    "a.test",
    "b.test",
    "x.a.test",
    "y.x.a.test",
    "a.org",
    "A.TEST:8000",
    "x.a.test:9000",
    "c.test",
];
const REQ_PATHS: &[&str] = &[
    "/", "/a", "/a/", "/a/b", "/a/b/c/d", "/ab", "/b", "/b/a/c", "/c", "/b/c",
];

fn random_route(rng: &mut Rng, i: usize) -> Route {
    let mut r = route(
        &format!("r{i}"),
        rng.next() as u128 | (rng.next() as u128) << 64,
    );
    if rng.below(3) == 0 {
        r = r.methods(&[rng.pick(&["GET", "POST"])]);
    }
    if rng.below(2) == 0 {
        let hosts: Vec<&str> = (0..1 + rng.below(2)).map(|_| rng.pick(HOSTS)).collect();
        r = r.hosts(&hosts);
    }
    if rng.below(4) != 0 {
        let paths: Vec<&str> = (0..1 + rng.below(3)).map(|_| rng.pick(PATHS)).collect();
        r = r.paths(&paths);
    }
    if rng.below(4) == 0 {
        r = r.header("x-a", &[rng.pick(&["1", "2", "~*^[12]$"])]);
    }
    if rng.below(6) == 0 {
        r = r.header("x-b", &["1"]);
    }
    if rng.below(5) == 0 {
        r = r.snis(&[rng.pick(&["a.test", "*.test"])]);
    }
    if rng.below(4) == 0 {
        r = r.regex_priority(rng.below(3) as i64 - 1);
    }
    if rng.below(10) == 0 {
        r = r.service(Some(DISABLED_SERVICE));
    }
    if r.methods.is_none() && r.hosts.is_none() && r.paths.is_none() && r.headers.is_none() {
        r = r.paths(&["/"]);
    }
    r
}

/// The obvious O(n) evaluation of every group, for comparison with the index.
fn linear_best(router: &Router, req: &RequestInfo<'_>) -> Option<(usize, Option<String>)> {
    let mut buf = [0u8; HOST_BUF_LEN];
    let facts = RequestFacts::new(req, &mut buf);
    let mut best: Option<&Group> = None;
    let mut best_path = PathMatch::None;
    for group in &router.groups {
        let path = match &group.paths {
            GroupPaths::Any => Some(PathMatch::None),
            GroupPaths::Prefixes(p) => p
                .iter()
                .position(|p| req.path.starts_with(&*p.text))
                .map(PathMatch::Prefix),
            GroupPaths::Regexes(r) => r
                .iter()
                .position(|r| r.is_match(req.path))
                .map(PathMatch::Regex),
        };
        let Some(path) = path else { continue };
        if !group.matches_request(req, &facts, false) {
            continue;
        }
        if best.is_none_or(|b| group.priority > b.priority) {
            best = Some(group);
            best_path = path;
        }
    }
    let group = best?;
    let matched = match (&group.paths, best_path) {
        (GroupPaths::Prefixes(p), PathMatch::Prefix(i)) => Some(p[i].text.to_string()),
        (GroupPaths::Regexes(r), PathMatch::Regex(i)) => {
            r[i].find(req.path).map(|m| m.as_str().to_owned())
        }
        _ => None,
    };
    Some((group.route_index, matched))
}

#[test]
fn index_agrees_with_linear_scan() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut compared = 0;
    let mut matched = 0;
    for table in 0..60 {
        let routes: Vec<Route> = (0..5 + table * 2)
            .map(|i| random_route(&mut rng, i))
            .collect();
        let router = Router::build(&routes, &services()).unwrap();
        for _ in 0..200 {
            let mut req = get(Some(rng.pick(REQ_HOSTS)), rng.pick(REQ_PATHS));
            if rng.below(5) == 0 {
                req.host = None;
            }
            req = req.method(rng.pick(&["GET", "POST"]));
            if rng.below(2) == 0 {
                req = req.header("x-a", rng.pick(&["1", "2", "3"]));
            }
            if rng.below(3) == 0 {
                req = req.header("x-b", "1");
            }
            if rng.below(3) == 0 {
                req = req.tls(Some(rng.pick(&["a.test", "b.test", "c.a.test"])));
            }
            if rng.below(4) == 0 {
                req = req.port(9000);
            }
            let mut headers = http::HeaderMap::new();
            for (name, value) in &req.headers {
                headers.append(
                    http::HeaderName::from_static(name),
                    http::HeaderValue::from_static(value),
                );
            }
            let info = RequestInfo {
                method: req.method,
                host: req.host,
                path: req.path,
                headers: &headers,
                https: req.https,
                sni: req.sni,
                listener_port: req.port,
            };
            let want = linear_best(&router, &info);
            let got = router
                .find(&info)
                .map(|m| (m.route_index, m.matched_path().map(str::to_owned)));
            assert_eq!(
                got, want,
                "table {table} request {:?} {:?}",
                req.host, req.path
            );
            compared += 1;
            matched += usize::from(want.is_some());
        }
    }
    // The generator must exercise both outcomes to mean anything.
    assert!(
        matched > compared / 4 && matched < compared,
        "{matched}/{compared}"
    );
}

#[test]
fn large_table_finds_each_route() {
    let routes: Vec<Route> = (0..10_000u128)
        .map(|i| {
            let r = route(&format!("r{i}"), i + 1);
            match i % 3 {
                0 => r.paths(&[&format!("/svc-{i}/")]),
                1 => r.hosts(&[&format!("h{i}.example.com")]).paths(&["/"]),
                _ => r.hosts(&[&format!("*.w{i}.example.net")]),
            }
        })
        .collect();
    let router = Router::build(&routes, &services()).unwrap();
    assert_eq!(router.len(), 10_000);
    for i in (0..10_000usize).step_by(97) {
        let path = format!("/svc-{i}/x");
        let host = match i % 3 {
            0 => "any.test".to_owned(),
            1 => format!("h{i}.example.com"),
            _ => format!("a.w{i}.example.net"),
        };
        let mut headers = http::HeaderMap::new();
        headers.insert("x", http::HeaderValue::from_static("y"));
        let m = router
            .find(&RequestInfo {
                method: "GET",
                host: Some(&host),
                path: &path,
                headers: &headers,
                https: false,
                sni: None,
                listener_port: 8000,
            })
            .unwrap();
        assert_eq!(m.route_index, i, "host {host} path {path}");
    }
}
