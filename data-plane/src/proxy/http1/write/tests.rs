#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use http::header::HeaderValue;
use tokio::io::AsyncReadExt;

/// Writes `response` through a real in-process pipe and returns what the
/// client would read, and whether the connection may be kept.
async fn written(response: Response<ResponseBody>, is_head: bool, keep: bool) -> (String, bool) {
    let (mut client, mut server) = tokio::io::duplex(1 << 20);
    let mut keep_alive = keep;
    self::response(&mut server, response, is_head, &mut keep_alive)
        .await
        .unwrap();
    drop(server);
    let mut text = String::new();
    client.read_to_string(&mut text).await.unwrap();
    (text, keep_alive)
}

fn reply(status: u16, body: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

fn split(text: &str) -> (Vec<&str>, &str) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.split("\r\n").collect(), body)
}

#[tokio::test]
async fn a_sized_body_is_framed_by_its_length_with_a_date() {
    let mut response = reply(200, "hello");
    response
        .headers_mut()
        .insert("content-length", HeaderValue::from_static("99"));
    response
        .headers_mut()
        .insert("x-kept", HeaderValue::from_static("yes"));
    let (text, keep) = written(response, false, true).await;
    let (head, body) = split(&text);
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    assert!(head.contains(&"x-kept: yes"));
    // The length is the body's own, never a stale header's.
    assert!(head.contains(&"content-length: 5"), "{head:?}");
    assert!(!head.iter().any(|line| line.contains("99")));
    let date = head.iter().find(|l| l.starts_with("date: ")).unwrap();
    assert!(httpdate::parse_http_date(&date["date: ".len()..]).is_ok());
    assert_eq!(body, "hello");
    assert!(keep);
}

#[tokio::test]
async fn head_and_bodiless_statuses_send_no_body() {
    let mut response = reply(200, "hello");
    response
        .headers_mut()
        .insert("content-length", HeaderValue::from_static("5"));
    let (text, _) = written(response, true, true).await;
    let (head, body) = split(&text);
    assert!(head.contains(&"content-length: 5"));
    assert_eq!(body, "");
    for status in [204, 304] {
        let (text, _) = written(reply(status, "ignored"), false, true).await;
        let (head, body) = split(&text);
        assert!(head[0].starts_with(&format!("HTTP/1.1 {status} ")));
        assert!(!head.iter().any(|l| l.starts_with("content-length")));
        assert_eq!(body, "");
    }
}

#[tokio::test]
async fn closing_is_announced_and_honoured() {
    let (text, keep) = written(reply(200, "x"), false, false).await;
    assert!(split(&text).0.contains(&"connection: close"));
    assert!(!keep);
    let mut response = reply(400, "bad");
    response
        .headers_mut()
        .insert("connection", HeaderValue::from_static("close"));
    let (text, keep) = written(response, false, true).await;
    let (head, _) = split(&text);
    assert_eq!(
        head.iter().filter(|l| l.starts_with("connection")).count(),
        1
    );
    assert!(!keep);
}

#[tokio::test]
async fn a_large_body_arrives_whole() {
    let body: String = (0..3 * OUT_CHUNK)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let body: &'static str = Box::leak(body.into_boxed_str());
    let (text, _) = written(reply(200, body), false, true).await;
    let (head, received) = split(&text);
    assert!(head.contains(&format!("content-length: {}", body.len()).as_str()));
    assert_eq!(received, body);
}

#[tokio::test]
async fn an_unknown_status_has_an_empty_reason() {
    let (text, _) = written(reply(599, ""), false, true).await;
    assert!(text.starts_with("HTTP/1.1 599 \r\n"));
}

#[tokio::test]
async fn plugin_headers_that_ride_with_the_body_replace_fields_of_their_names() {
    let mut response = reply(200, "ok");
    let headers = response.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from_static("99"));
    headers.append("ratelimit-limit", HeaderValue::from_static("98"));
    headers.insert("x-upstream", HeaderValue::from_static("kept"));
    let mut plugin = tollgate_shared::runtime::ResponseHeaders::default();
    plugin.insert(
        HeaderName::from_static("ratelimit-limit"),
        HeaderValue::from_static("5"),
    );
    plugin.insert(
        HeaderName::from_static("x-ratelimit-remaining-minute"),
        HeaderValue::from_static("4"),
    );
    response.body_mut().set_plugin_headers(plugin);
    let (text, _) = written(response, false, true).await;
    let (head, body) = split(&text);
    assert!(head.contains(&"x-upstream: kept"), "{head:?}");
    assert!(
        head.contains(&"x-ratelimit-remaining-minute: 4"),
        "{head:?}"
    );
    let limits: Vec<&&str> = head
        .iter()
        .filter(|line| line.starts_with("ratelimit-limit:"))
        .collect();
    assert_eq!(limits, [&"ratelimit-limit: 5"], "{head:?}");
    assert_eq!(body, "ok");
}
