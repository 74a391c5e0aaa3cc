//! The Admin API listener on a real socket: a client cannot hold a connection
//! with a partial request head, a stalled body or too many connections, even
//! where a token is required (the token is only checked once a head arrived).

use crate::both_backends;
use crate::support::{Admin, Backend};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tollgate_control_plane::listener::{self, AdminLimits, AdminListener};
use tollgate_control_plane::settings::ListenAddr;

const TOKEN: &str = "listener-token-0123456789";
/// Upper bound for anything expected to happen within a short timeout.
const PATIENCE: Duration = Duration::from_secs(10);

struct Served {
    addr: SocketAddr,
    admin: Admin,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    async fn start(backend: Backend, limits: AdminLimits) -> Served {
        let admin = Admin::with_tokens(backend, &[TOKEN]).await;
        let bound = AdminListener::bind(&ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let addr: SocketAddr = bound.local_addr().parse().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(listener::serve(
            bound,
            admin.app.clone(),
            admin.state.counters.clone(),
            limits,
            stop.clone().cancelled_owned(),
        ));
        Served {
            addr,
            admin,
            stop,
            task,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the listener stops")
            .unwrap()
            .unwrap();
    }
}

const AUTHED_GET: &[u8] =
    b"GET /status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer listener-token-0123456789\r\n\r\n";

/// Reads one response (head and `Content-Length` body) without waiting for the close.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "closed before a full response: {text:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Waits until the server closes `stream`; returns what it sent and how long that took.
async fn wait_for_close(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("the server closes the connection")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

async fn partial_head(backend: Backend) {
    let header_timeout = Duration::from_millis(300);
    let served = Served::start(
        backend,
        AdminLimits {
            header_timeout,
            idle_timeout: Duration::from_secs(60),
            max_connections: 16,
        },
    )
    .await;

    // A head that never ends is cut, before any token was seen.
    let mut slow = served.connect().await;
    slow.write_all(b"GET /services HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let (sent, waited) = wait_for_close(&mut slow).await;
    assert!(waited >= header_timeout / 2, "closed after {waited:?}");
    assert!(!sent.contains("200 OK"), "{sent}");

    // An idle keep-alive connection is bounded by the same timeout.
    let mut idle = served.connect().await;
    idle.write_all(AUTHED_GET).await.unwrap();
    let reply = read_response(&mut idle).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let (sent, _) = wait_for_close(&mut idle).await;
    assert_eq!(sent, "");

    // A client that sends its head in time is served.
    let mut prompt = served.connect().await;
    prompt.write_all(AUTHED_GET).await.unwrap();
    assert!(read_response(&mut prompt).await.starts_with("HTTP/1.1 200"));
    served.stop().await;
}
both_backends!(partial_head_is_cut, partial_head);

async fn stalled_body(backend: Backend) {
    let idle_timeout = Duration::from_millis(300);
    let served = Served::start(
        backend,
        AdminLimits {
            header_timeout: Duration::from_secs(60),
            idle_timeout,
            max_connections: 16,
        },
    )
    .await;
    let version = served.admin.version().await;
    let mut stalled = served.connect().await;
    stalled
        .write_all(
            b"POST /services HTTP/1.1\r\nHost: localhost\r\n\
              Authorization: Bearer listener-token-0123456789\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":",
        )
        .await
        .unwrap();
    let (_, waited) = wait_for_close(&mut stalled).await;
    assert!(waited >= idle_timeout / 2, "closed after {waited:?}");
    // Nothing was written from the partial body.
    assert_eq!(served.admin.version().await, version);
    served.stop().await;
}
both_backends!(stalled_body_is_cut, stalled_body);

async fn connection_cap(backend: Backend) {
    let served = Served::start(
        backend,
        AdminLimits {
            header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 2,
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = served.connect().await;
        stream.write_all(AUTHED_GET).await.unwrap();
        assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    let mut extra = served.connect().await;
    let (sent, _) = wait_for_close(&mut extra).await;
    assert!(sent.starts_with("HTTP/1.1 503"), "{sent}");
    assert!(sent.contains("Too many connections"), "{sent}");
    assert_eq!(
        served
            .admin
            .state
            .counters
            .connections_active
            .load(Ordering::Relaxed),
        2
    );

    // A freed slot is served again.
    drop(held.pop());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut stream = served.connect().await;
        stream.write_all(AUTHED_GET).await.unwrap();
        let reply = response_or_refusal(&mut stream).await;
        if reply.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::task::yield_now().await;
    }
    drop(held);
    served.stop().await;
}
both_backends!(connection_cap_answers_503, connection_cap);

/// A 503 (then close) or a full response, whichever the server gives.
async fn response_or_refusal(stream: &mut TcpStream) -> String {
    let mut first = [0u8; 12];
    let n = tokio::time::timeout(PATIENCE, stream.peek(&mut first))
        .await
        .expect("an answer in time")
        .unwrap();
    if first[..n].starts_with(b"HTTP/1.1 503") {
        wait_for_close(stream).await.0
    } else {
        read_response(stream).await
    }
}

/// A handler that runs longer than the idle timeout (a large `/config`) is
/// not idleness: its client still gets the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handler_is_not_idle() {
    let idle_timeout = Duration::from_millis(200);
    // The handler stands in for slow database work; the test itself waits on the response.
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::get(move || async move {
            tokio::time::sleep(idle_timeout * 4).await;
            "done"
        }),
    );
    let bound = AdminListener::bind(&ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let addr: SocketAddr = bound.local_addr().parse().unwrap();
    let stop = CancellationToken::new();
    let counters = std::sync::Arc::new(tollgate_control_plane::state::ServerCounters::default());
    let task = tokio::spawn(listener::serve(
        bound,
        app,
        counters,
        AdminLimits {
            header_timeout: Duration::from_secs(60),
            idle_timeout,
            max_connections: 4,
        },
        stop.clone().cancelled_owned(),
    ));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let reply = read_response(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("done"), "{reply}");
    // Idle again after the answer: now it is closed.
    let (sent, _) = wait_for_close(&mut stream).await;
    assert_eq!(sent, "");
    stop.cancel();
    tokio::time::timeout(PATIENCE, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
