#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn parse(text: &[u8]) -> (Parsed, Vec<Field>) {
    let mut fields = Vec::new();
    let parsed = head(text, 100, &mut fields);
    (parsed, fields)
}

fn lean(text: &[u8]) -> (Head, Vec<Field>) {
    match parse(text) {
        (Parsed::Complete(head), fields) => (head, fields),
        (other, _) => panic!("{other:?} for {:?}", String::from_utf8_lossy(text)),
    }
}

fn not_lean(text: &str) {
    match parse(text.as_bytes()).0 {
        Parsed::NotLean => {}
        other => panic!("{other:?} for {text:?}"),
    }
}

#[test]
fn a_plain_get_is_built_sharing_the_head() {
    let text =
        b"GET /a/b?c=1 HTTP/1.1\r\nHost: example.test\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next";
    let (head, fields) = lean(text);
    assert_eq!(head.len, text.len() - b"GET /next".len());
    assert!(head.keep_alive);
    let bytes = bytes::Bytes::copy_from_slice(&text[..head.len]);
    let request = head.request(&bytes, &fields, ()).unwrap();
    assert_eq!(request.method(), Method::GET);
    assert_eq!(request.uri().path(), "/a/b");
    assert_eq!(request.uri().query(), Some("c=1"));
    assert_eq!(request.version(), Version::HTTP_11);
    assert_eq!(request.headers()["host"], "example.test");
    let twos: Vec<_> = request.headers().get_all("x-two").iter().collect();
    assert_eq!(twos, ["1", "2"]);
}

#[test]
fn connection_close_ends_keep_alive() {
    let (head, _) = lean(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n");
    assert!(!head.keep_alive);
}

#[test]
fn an_explicit_empty_body_stays_lean() {
    lean(b"DELETE /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
}

#[test]
fn a_partial_head_asks_for_more() {
    assert!(matches!(
        parse(b"GET / HTTP/1.1\r\nHost: a\r\n").0,
        Parsed::Partial
    ));
    assert!(matches!(parse(b"GE").0, Parsed::Partial));
}

#[test]
fn what_could_be_framed_two_ways_or_needs_hyper_goes_to_hyper() {
    for text in [
        // A body, however framed: hyper frames it (or refuses it).
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
        // Upgrades, 100-continue, tunnels, other versions.
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        // Malformed: hyper answers them as before.
        "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
        "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
    ] {
        not_lean(text);
    }
}

#[test]
fn more_headers_than_allowed_go_to_hyper() {
    let mut text = String::from("GET / HTTP/1.1\r\n");
    for i in 0..5 {
        text.push_str(&format!("X-{i}: v\r\n"));
    }
    text.push_str("\r\n");
    let mut fields = Vec::new();
    assert!(matches!(
        head(text.as_bytes(), 4, &mut fields),
        Parsed::NotLean
    ));
    assert!(matches!(
        head(text.as_bytes(), 5, &mut fields),
        Parsed::Complete(_)
    ));
    // Above the stack slots, the heap buffer takes them.
    assert!(matches!(
        head(text.as_bytes(), 500, &mut fields),
        Parsed::Complete(_)
    ));
}

/// Requests the mutations start from.
const SEEDS: &[&[u8]] = &[
    b"GET /r5/x?a=1 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.1\nHost: h\n\n",
];

/// Bytes that matter to HTTP/1 framing, favoured by the mutations.
const INTERESTING: &[u8] = b"\r\n :\t,;0123456789-+xX\x00\x7f\x80aAzZ/?%";

fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..4) {
        let at = rng.random_range(0..=out.len());
        let byte = if rng.random_bool(0.7) {
            INTERESTING[rng.random_range(0..INTERESTING.len())]
        } else {
            rng.random()
        };
        match rng.random_range(0..4) {
            0 if at < out.len() => out[at] = byte,
            1 => out.insert(at, byte),
            2 if at < out.len() => {
                out.remove(at);
            }
            _ => {
                let fragment: &[u8] = match rng.random_range(0..5) {
                    0 => b"\r\nContent-Length: 1",
                    1 => b"\r\nTransfer-Encoding: chunked",
                    2 => b"\r\nConnection: upgrade",
                    3 => b"\r\n te",
                    _ => b"\r\nContent-Length: 0",
                };
                let mut rest = out.split_off(at);
                out.extend_from_slice(fragment);
                out.append(&mut rest);
            }
        }
    }
    out
}

/// Random and mutated requests: whatever the lean path takes is exactly what
/// httparse parses (same length, method, target and fields in order), is
/// HTTP/1.1 without a body, upgrade or `Expect`, and builds into the same
/// request; whatever httparse refuses, the lean path leaves to hyper.
#[test]
fn lean_decisions_agree_with_httparse_on_mutated_requests() {
    let mut rng = StdRng::seed_from_u64(0x5eed_1e4a);
    let mut taken = 0;
    for round in 0..20_000 {
        let seed = SEEDS[round % SEEDS.len()];
        let input = if round % 10 == 0 {
            (0..rng.random_range(0..64)).map(|_| rng.random()).collect()
        } else {
            mutate(&mut rng, seed)
        };
        let mut slots = [httparse::EMPTY_HEADER; 100];
        let mut reference = httparse::Request::new(&mut slots);
        let expected = reference.parse(&input);
        let (parsed, fields) = parse(&input);
        match (parsed, expected) {
            (Parsed::Complete(head), Ok(httparse::Status::Complete(len))) => {
                taken += 1;
                assert_eq!(head.len, len, "{input:?}");
                assert_eq!(reference.version, Some(1));
                assert_ne!(reference.method, Some("CONNECT"));
                assert_eq!(fields.len(), reference.headers.len());
                let bytes = bytes::Bytes::copy_from_slice(&input[..len]);
                for (field, header) in fields.iter().zip(reference.headers.iter()) {
                    assert_eq!(&bytes[field.name.clone()], header.name.as_bytes());
                    assert_eq!(&bytes[field.value.clone()], header.value);
                    let name = header.name.to_ascii_lowercase();
                    assert!(
                        !matches!(name.as_str(), "transfer-encoding" | "upgrade" | "expect"),
                        "{input:?}"
                    );
                    if name == "content-length" {
                        assert_eq!(header.value, b"0", "{input:?}");
                    }
                }
                if let Some(request) = head.request(&bytes, &fields, ()) {
                    assert_eq!(Some(request.method().as_str()), reference.method);
                    assert_eq!(request.headers().len(), reference.headers.len());
                }
            }
            (Parsed::Complete(_), other) => panic!("lean took {input:?}, httparse said {other:?}"),
            (Parsed::Partial, Ok(httparse::Status::Partial)) => {}
            (Parsed::Partial, other) => panic!("partial for {input:?}, httparse said {other:?}"),
            (Parsed::NotLean, _) => {}
        }
    }
    // The mutations must leave enough requests whole to test the taken side.
    assert!(taken > 1_000, "only {taken} requests taken");
}
