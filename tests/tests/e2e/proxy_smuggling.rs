//! End-to-end: request smuggling and parser defects on the lean HTTP/1.1
//! path (issue 15; shared/spec/reliability.md §5.2). Every case is sent on a
//! connection that the lean loop is already serving (a plain GET first, in
//! the same write), so the lean parser judges it before anything else; then
//! a last `Connection: close` GET. Both what the client reads and what the
//! upstream really received (a recording upstream that frames strictly) are
//! asserted: no smuggled request ever reaches the upstream, no request ever
//! carries both `Content-Length` and `Transfer-Encoding`, and no hop-by-hop
//! or `Connection`-named header is forwarded.

use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_data_plane::DataPlane;
use tollgate_tests::dataplane::ConfigBuilder;
use tollgate_tests::recorder::{self, Recorded, Recorder};

const LIMIT: Duration = Duration::from_secs(10);
const WARM: &str = "GET /r/warm HTTP/1.1\r\nHost: x\r\n\r\n";
const FINAL: &str = "GET /r/final HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// The statuses of the responses in `text`, in order (heads framed by
/// `Content-Length`, as every answer here is).
fn statuses(text: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut slots);
        let Ok(httparse::Status::Complete(len)) = response.parse(rest) else {
            panic!("unparseable answer: {:?}", String::from_utf8_lossy(rest));
        };
        out.push(response.code.unwrap_or(0));
        let length: usize = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
            .unwrap_or(0);
        rest = &rest[(len + length).min(rest.len())..];
    }
    out
}

/// Sends the warm-up GET, `case` and the closing GET in one write; returns
/// the statuses answered after the warm-up one (which must be 200).
async fn send(proxy: SocketAddr, case: &[u8]) -> Vec<u16> {
    let mut bytes = WARM.as_bytes().to_vec();
    bytes.extend_from_slice(case);
    bytes.extend_from_slice(FINAL.as_bytes());
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut text = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut text))
        .await
        .expect("the proxy closes the connection")
        .ok();
    let mut all = statuses(&text);
    assert_eq!(
        all.first(),
        Some(&200),
        "{:?}",
        String::from_utf8_lossy(&text)
    );
    all.remove(0);
    all
}

fn targets(requests: &[Recorded]) -> Vec<&str> {
    requests.iter().map(|r| r.target.as_str()).collect()
}

/// A data plane in front of a recording upstream: `/r` buffers request
/// bodies (Kong's default), `/s` streams them.
async fn recorded_proxy() -> (DataPlane, SocketAddr, Recorder) {
    let (upstream, recorded) = recorder::spawn().await.unwrap();
    let dp = ConfigBuilder::new()
        .service(1, upstream, json!({"retries": 0}))
        .route(10, Some(1), &["/r"], json!({"strip_path": false}))
        .route(
            11,
            Some(1),
            &["/s"],
            json!({"strip_path": false, "request_buffering": false}),
        )
        .start()
        .await
        .unwrap();
    let proxy = dp.proxy_addrs()[0];
    (dp, proxy, recorded)
}

const SMUGGLED: &str = "GET /r/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn smuggling_and_parser_defects_never_reach_the_upstream() {
    let (dp, proxy, recorded) = recorded_proxy().await;
    let long_target = format!(
        "GET /r/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(9 * 1024)
    );
    let long_headers = format!(
        "GET /r/x HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..40)
            .map(|i| format!("X-Big-{i}: {}\r\n", "b".repeat(1000)))
            .collect::<String>()
    );
    let many_headers = format!(
        "GET /r/x HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..120)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, String, &[u16], &[&str])> = vec![
        // (name, bytes, statuses after the warm-up, targets the upstream saw after it)
        // Both framings: Transfer-Encoding wins, the message goes upstream
        // once with one framing of its own, and the connection closes after
        // the answer (RFC 9112 §6.1), so what follows is never read.
        (
            "CL.TE",
            format!("POST /r/cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
            &[200],
            &["/r/cl-te"],
        ),
        (
            "CL.TE, body streamed",
            format!("POST /s/cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
            &[200],
            &["/s/cl-te"],
        ),
        (
            "TE.CL",
            format!("POST /r/te-cl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n{SMUGGLED}"),
            &[200],
            &["/r/te-cl"],
        ),
        (
            "TE.CL, body streamed",
            format!("POST /s/te-cl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n{SMUGGLED}"),
            &[200],
            &["/s/te-cl"],
        ),
        (
            "duplicate Content-Length, different values",
            format!("POST /r/dup HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc{SMUGGLED}"),
            &[400],
            &[],
        ),
        (
            "signed Content-Length",
            format!("POST /r/plus HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc{SMUGGLED}"),
            &[400],
            &[],
        ),
        (
            "Transfer-Encoding with a space before the colon",
            format!("POST /r/space HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
            &[400],
            &[],
        ),
        (
            "an unknown transfer coding",
            format!("POST /r/xchunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
            &[400],
            &[],
        ),
        (
            "chunked, then identity",
            format!("POST /r/identity HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{SMUGGLED}"),
            &[400],
            &[],
        ),
        (
            "obs-fold",
            format!("GET /r/fold HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n{SMUGGLED}"),
            &[400],
            &[],
        ),
        (
            "a bare LF head",
            "GET /r/lf HTTP/1.1\nHost: x\n\n".to_string(),
            &[200, 200],
            &["/r/lf", "/r/final"],
        ),
        ("a request target over the limit", long_target, &[414], &[]),
        ("a header block over the limit", long_headers, &[431], &[]),
        ("more header fields than allowed", many_headers, &[431], &[]),
        (
            "a chunked body, forwarded whole and alone",
            "POST /r/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_string(),
            &[200, 200],
            &["/r/chunked", "/r/final"],
        ),
    ];
    let mut mismatches = Vec::new();
    for (name, bytes, expected, forwarded) in cases {
        recorded.clear();
        let answered = send(proxy, bytes.as_bytes()).await;
        let requests = recorded.requests();
        let seen = targets(&requests);
        assert_eq!(seen.first(), Some(&"/r/warm"), "{name}");
        if answered != expected || seen[1..] != *forwarded {
            mismatches.push(format!(
                "{name}: answered {answered:?} (expected {expected:?}), upstream saw {:?} (expected {forwarded:?})",
                &seen[1..]
            ));
        }
        for request in &requests {
            let te = request.values("transfer-encoding");
            let cl = request.values("content-length");
            assert!(te.is_empty() || cl.is_empty(), "{name}: {request:?}");
        }
        if name.starts_with("a chunked body") {
            assert_eq!(
                requests.get(1).map(|r| r.body.as_slice()),
                Some(&b"abc"[..]),
                "{name}"
            );
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert!(
        recorded.violations().is_empty(),
        "{:?}",
        recorded.violations()
    );
    dp.shutdown().await;
}

#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_are_not_forwarded() {
    let (dp, proxy, recorded) = recorded_proxy().await;
    let case = "GET /r/hop HTTP/1.1\r\nHost: x\r\nConnection: X-Secret, keep-alive\r\n\
                X-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\n\
                Proxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n";
    assert_eq!(send(proxy, case.as_bytes()).await, [200, 200]);
    let requests = recorded.requests();
    let hop = requests.iter().find(|r| r.target == "/r/hop").unwrap();
    for name in [
        "connection",
        "x-secret",
        "keep-alive",
        "te",
        "trailer",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        assert!(hop.values(name).is_empty(), "{name} forwarded: {hop:?}");
    }
    assert_eq!(hop.values("x-kept"), ["yes"]);
    // Our own forwarding headers, once each.
    assert_eq!(hop.values("x-forwarded-for").len(), 1);
    assert_eq!(hop.values("host").len(), 1);
    dp.shutdown().await;
}

/// The lean loop and hyper take turns correctly on one keep-alive
/// connection: lean GETs, a POST with a body (handed to hyper with the bytes
/// already read), then GETs that hyper serves; every answer in order, every
/// request forwarded once with its body.
#[tokio::test]
async fn a_connection_handed_to_hyper_mid_stream_loses_nothing() {
    let (dp, proxy, recorded) = recorded_proxy().await;
    let case = "GET /r/a HTTP/1.1\r\nHost: x\r\n\r\n\
                HEAD /r/b HTTP/1.1\r\nHost: x\r\n\r\n\
                POST /r/c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
                GET /r/d HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(
        send(proxy, case.as_bytes()).await,
        [200, 200, 200, 200, 200]
    );
    let requests = recorded.requests();
    assert_eq!(
        targets(&requests),
        ["/r/warm", "/r/a", "/r/b", "/r/c", "/r/d", "/r/final"]
    );
    assert_eq!(requests[2].method, "HEAD");
    assert_eq!(requests[3].body, b"hello");
    assert!(
        recorded.violations().is_empty(),
        "{:?}",
        recorded.violations()
    );
    dp.shutdown().await;
}
