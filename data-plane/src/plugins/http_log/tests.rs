#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a test waits for a queue to act.
const TEST_PATIENCE: Duration = Duration::from_secs(10);

/// One request as the collector saw it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    uri: String,
    headers: http::HeaderMap,
    body: String,
}

/// A local collector answering each request with the next scripted status
/// (200 once the script is used up), recording what it received.
#[derive(Debug, Default)]
struct Collector {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<u16>>,
}

impl Collector {
    async fn start(script: &[u16]) -> (SocketAddr, Arc<Collector>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let collector = Arc::new(Collector {
            received: Mutex::default(),
            script: Mutex::new(script.iter().copied().collect()),
        });
        let shared = Arc::clone(&collector);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let collector = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let collector = Arc::clone(&collector);
                        async move {
                            let (head, body) = request.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            collector.received.lock().unwrap().push(Received {
                                method: head.method.to_string(),
                                uri: head.uri.to_string(),
                                headers: head.headers,
                                body: String::from_utf8(body.to_vec()).unwrap(),
                            });
                            let status =
                                collector.script.lock().unwrap().pop_front().unwrap_or(200);
                            let mut response =
                                Response::new(Full::new(Bytes::from_static(b"nope")));
                            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, collector)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    async fn wait_for(&self, requests: usize) -> Vec<Received> {
        let deadline = Instant::now() + TEST_PATIENCE;
        loop {
            let received = self.received();
            if received.len() >= requests {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "only {} requests: {received:?}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn target(addr: SocketAddr) -> HttpLogTarget {
    HttpLogTarget {
        tls: false,
        host: addr.ip().to_string(),
        port: addr.port(),
        path_and_query: "/logs?index=kong".into(),
        method: "POST",
        content_type: "application/json".into(),
        authorization: None,
        headers: Vec::new(),
        timeout: Duration::from_secs(5),
        keepalive: Duration::from_secs(60),
        queue: QueueSettings {
            max_batch_size: 1,
            max_coalescing_delay: Duration::from_millis(50),
            max_entries: 100,
            max_bytes: None,
            max_retry_time: Duration::from_secs(10),
            initial_retry_delay: Duration::from_millis(5),
            max_retry_delay: Duration::from_millis(50),
            unbounded_concurrency: false,
        },
    }
}

fn queues() -> HttpLogQueues {
    let tls = crate::tls::UpstreamTls::new(rustls::RootCertStore::empty())
        .unwrap()
        .client_config(false, false);
    HttpLogQueues::new(tokio::runtime::Handle::current(), tls, Arc::default())
}

async fn wait_counter(counter: &AtomicU64, expected: u64) {
    let deadline = Instant::now() + TEST_PATIENCE;
    while counter.load(Ordering::Relaxed) != expected {
        assert!(
            Instant::now() < deadline,
            "counter at {}, expected {expected}",
            counter.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn payloads_are_bare_objects_or_arrays_as_kong() {
    let batch: Vec<Box<[u8]>> = vec![b"{\"a\":1}"[..].into(), b"{\"b\":2}"[..].into()];
    assert_eq!(&payload(&batch[..1], 1)[..], b"{\"a\":1}");
    assert_eq!(&payload(&batch[..1], 5)[..], b"[{\"a\":1}]");
    assert_eq!(&payload(&batch, 5)[..], b"[{\"a\":1},{\"b\":2}]");
}

#[tokio::test]
async fn single_entries_arrive_with_kongs_request_headers() {
    let (addr, collector) = Collector::start(&[]).await;
    let queues = queues();
    let mut target = target(addr);
    target.authorization = Some("Basic dTpw".into());
    target.headers = vec![("X-Api-Key".into(), "k1".into())];
    let queue = queues.queue(&target).unwrap();
    queue.enqueue(r#"{"n":1}"#.as_bytes());
    queue.enqueue(r#"{"n":2}"#.as_bytes());
    let received = collector.wait_for(2).await;
    assert_eq!(received[0].body, r#"{"n":1}"#);
    assert_eq!(received[1].body, r#"{"n":2}"#);
    let first = &received[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.uri, "/logs?index=kong");
    assert_eq!(first.headers["content-type"], "application/json");
    assert_eq!(first.headers["content-length"], "7");
    assert_eq!(first.headers["authorization"], "Basic dTpw");
    assert_eq!(first.headers["x-api-key"], "k1");
    assert_eq!(first.headers["host"], format!("127.0.0.1:{}", addr.port()));
    wait_counter(&queues.counters().sent, 2).await;
    assert_eq!(queues.counters().queued.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn entries_are_batched_into_json_arrays() {
    let (addr, collector) = Collector::start(&[]).await;
    let queues = queues();
    let mut target = target(addr);
    target.queue.max_batch_size = 3;
    target.queue.max_coalescing_delay = Duration::from_millis(200);
    let queue = queues.queue(&target).unwrap();
    for n in 0..7 {
        queue.enqueue(format!(r#"{{"n":{n}}}"#).as_bytes());
    }
    wait_counter(&queues.counters().sent, 7).await;
    let received = collector.received();
    let mut seen = Vec::new();
    for request in &received {
        let batch: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        let batch = batch.as_array().unwrap();
        assert!((1..=3).contains(&batch.len()), "{batch:?}");
        seen.extend(batch.iter().map(|entry| entry["n"].as_u64().unwrap()));
    }
    assert_eq!(seen, (0..7).collect::<Vec<u64>>(), "in order, each once");
    assert!(received.len() < 7, "batched: {} requests", received.len());
}

#[tokio::test]
async fn identical_targets_share_one_queue_and_a_closed_queue_flushes() {
    let (addr, collector) = Collector::start(&[]).await;
    let queues = queues();
    let mut target = target(addr);
    target.queue.max_batch_size = 10;
    target.queue.max_coalescing_delay = Duration::from_secs(3600);
    let a = queues.queue(&target).unwrap();
    let b = queues.queue(&target).unwrap();
    assert_eq!(queues.counters().queues.load(Ordering::Relaxed), 1);
    let mut other = target.clone();
    other.timeout = Duration::from_secs(1);
    let c = queues.queue(&other).unwrap();
    assert_eq!(queues.counters().queues.load(Ordering::Relaxed), 2);
    a.enqueue(b"{}");
    b.enqueue(b"{}");
    drop(c);
    // Nothing is sent before the coalescing delay while the queue is in use…
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(collector.received().is_empty());
    // …and dropping its last user sends what waits at once.
    drop((a, b));
    let received = collector.wait_for(1).await;
    assert_eq!(received[0].body, "[{},{}]");
    wait_counter(&queues.counters().queues, 0).await;
}

#[tokio::test]
async fn a_refusing_collector_is_retried_until_it_accepts() {
    let (addr, collector) = Collector::start(&[500, 503]).await;
    let queues = queues();
    let queue = queues.queue(&target(addr)).unwrap();
    queue.enqueue(r#"{"n":1}"#.as_bytes());
    wait_counter(&queues.counters().sent, 1).await;
    assert_eq!(collector.received().len(), 3);
    assert_eq!(queues.counters().retried.load(Ordering::Relaxed), 2);
    assert_eq!(queues.counters().dropped.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_batch_is_dropped_after_max_retry_time_and_counted() {
    let (addr, collector) = Collector::start(&[500; 1000]).await;
    let queues = queues();
    let mut target = target(addr);
    target.queue.max_retry_time = Duration::from_millis(100);
    target.queue.max_batch_size = 2;
    target.queue.max_coalescing_delay = Duration::from_millis(20);
    let queue = queues.queue(&target).unwrap();
    queue.enqueue(b"{}");
    queue.enqueue(b"{}");
    wait_counter(&queues.counters().dropped, 2).await;
    let attempts = collector.received().len();
    assert!(attempts >= 2, "retried before giving up: {attempts}");
    assert_eq!(queues.counters().sent.load(Ordering::Relaxed), 0);
    // Doubling from 5 ms with a 50 ms cap: a handful of attempts, not a storm.
    assert!(attempts < 20, "{attempts} attempts in 100 ms");
}

#[tokio::test]
async fn a_hanging_collector_fills_the_queue_which_drops_its_oldest() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = Arc::clone(&held);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            holder.lock().unwrap().push(stream);
        }
    });
    let queues = queues();
    let mut target = target(addr);
    target.timeout = Duration::from_secs(30);
    target.queue.max_entries = 10;
    let queue = queues.queue(&target).unwrap();
    queue.enqueue(r#"{"n":0}"#.as_bytes());
    // Taken and in flight: the collector holds it.
    wait_counter(&queues.counters().queued, 0).await;
    let started = std::time::Instant::now();
    for n in 1..1000 {
        queue.enqueue(format!(r#"{{"n":{n}}}"#).as_bytes());
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "enqueue never waits"
    );
    // Ten wait, the rest were dropped (the oldest first).
    wait_counter(&queues.counters().dropped, 989).await;
    assert_eq!(queues.counters().queued.load(Ordering::Relaxed), 10);
}

#[tokio::test]
async fn unbounded_concurrency_sends_every_entry_on_its_own() {
    let (addr, collector) = Collector::start(&[]).await;
    let queues = queues();
    let mut target = target(addr);
    target.queue.unbounded_concurrency = true;
    target.queue.max_batch_size = 5;
    let queue = queues.queue(&target).unwrap();
    for _ in 0..4 {
        queue.enqueue(b"{}");
    }
    wait_counter(&queues.counters().sent, 4).await;
    let received = collector.received();
    assert_eq!(received.len(), 4);
    assert!(received.iter().all(|r| r.body == "[{}]"), "{received:?}");
}

#[tokio::test]
async fn an_unreachable_collector_is_a_counted_loss_not_an_error_at_enqueue() {
    // A port nobody listens on: bind, learn it, close.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let queues = queues();
    let mut target = target(addr);
    target.queue.max_retry_time = Duration::from_millis(50);
    let queue = queues.queue(&target).unwrap();
    queue.enqueue(b"{}");
    wait_counter(&queues.counters().dropped, 1).await;
    assert!(queues.counters().retried.load(Ordering::Relaxed) >= 1);
}
