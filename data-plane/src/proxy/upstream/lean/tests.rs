#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;

fn head(text: &str) -> Result<Option<http::response::Parts>, ()> {
    let mut read = BytesMut::from(text.as_bytes());
    parse_head(&mut read)
}

#[test]
fn a_response_head_is_parsed_and_split_off() {
    let mut read = BytesMut::from(
        &b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\nokNEXT"[..],
    );
    let parts = parse_head(&mut read).unwrap().unwrap();
    assert_eq!(parts.status, StatusCode::CREATED);
    assert_eq!(parts.version, Version::HTTP_11);
    let values: Vec<_> = parts.headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(&read[..], b"okNEXT");
}

#[test]
fn partial_and_invalid_heads() {
    assert!(head("HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
    for bad in [
        "HTTP/2.0 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "SMTP ready\r\n\r\n",
    ] {
        assert!(head(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn content_lengths_must_agree_and_be_plain_numbers() {
    let map = |values: &[&str]| {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                header::CONTENT_LENGTH,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    };
    assert_eq!(content_length(&map(&[])).unwrap(), None);
    assert_eq!(content_length(&map(&["12"])).unwrap(), Some(12));
    assert_eq!(content_length(&map(&["12", "12"])).unwrap(), Some(12));
    assert_eq!(content_length(&map(&["12, 12"])).unwrap(), Some(12));
    for bad in [
        &["12", "13"][..],
        &["+12"],
        &["-1"],
        &["1 2"],
        &["0x10"],
        &[""],
    ] {
        assert!(content_length(&map(bad)).is_err(), "{bad:?}");
    }
}

#[test]
fn the_request_head_is_encoded_once_with_the_empty_body_announced_where_due() {
    let mut request = Request::new(RequestBody::Empty);
    *request.uri_mut() = "/a?b=1".parse().unwrap();
    request
        .headers_mut()
        .insert(header::HOST, HeaderValue::from_static("up"));
    let mut out = Vec::new();
    encode(&mut out, &request, b"");
    assert_eq!(out, b"GET /a?b=1 HTTP/1.1\r\nhost: up\r\n\r\n");
    *request.method_mut() = Method::POST;
    out.clear();
    encode(&mut out, &request, b"x-consumer-id: c\r\n");
    assert_eq!(
        out,
        b"POST /a?b=1 HTTP/1.1\r\nhost: up\r\nx-consumer-id: c\r\ncontent-length: 0\r\n\r\n"
    );
}

#[test]
fn the_last_transfer_coding_decides_chunked() {
    let mut headers = HeaderMap::new();
    headers.append(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
    headers.append(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("x, Chunked"),
    );
    assert!(last_coding_is_chunked(&headers));
    headers.append(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
    assert!(!last_coding_is_chunked(&headers));
}
