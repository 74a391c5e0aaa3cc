//! A stand-in control plane for the benchmark's own tests: every write bumps
//! a config version, and the fake data planes "acknowledge" it after a delay.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct FakeOptions {
    pub data_planes: usize,
    pub ack_delay: Duration,
    /// Whether writes answer with `X-Tollgate-Config-Version`.
    pub version_header: bool,
}

#[derive(Debug, Default)]
struct State {
    version: u64,
    nodes: Vec<(u64, i64)>,
    writes: usize,
}

#[derive(Clone)]
pub struct FakeCp {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl FakeCp {
    pub fn writes(&self) -> usize {
        self.state.lock().map(|s| s.writes).unwrap_or(0)
    }
}

fn now_ms() -> i64 {
    super::cluster::unix_micros() / 1000
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<Mutex<State>>,
    options: FakeOptions,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let reply = |status: u16, body: serde_json::Value| {
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        response
    };
    if method == Method::GET {
        let Ok(state) = state.lock() else {
            return Ok(reply(500, json!({})));
        };
        return Ok(match path.as_str() {
            "/clustering/data-planes" => {
                let data: Vec<_> = state
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(i, (version, acked))| {
                        json!({"id": format!("dp-{i}"), "config_version": version, "acked_at_ms": acked, "connected": true})
                    })
                    .collect();
                reply(200, json!({"data": data, "next": null}))
            }
            "/config" => reply(200, json!({"config": "_format_version: \"3.0\"\n"})),
            _ => reply(404, json!({"message": "Not found"})),
        });
    }
    let version = {
        let Ok(mut state) = state.lock() else {
            return Ok(reply(500, json!({})));
        };
        state.version += 1;
        state.writes += 1;
        state.version
    };
    let acker = Arc::clone(&state);
    tokio::spawn(async move {
        tokio::time::sleep(options.ack_delay).await;
        if let Ok(mut state) = acker.lock() {
            let at = now_ms();
            for node in &mut state.nodes {
                *node = (version, at);
            }
        }
    });
    let status = if method == Method::POST { 201 } else { 200 };
    let mut response = reply(status, json!({}));
    if options.version_header {
        response.headers_mut().insert(
            super::client::CONFIG_VERSION_HEADER,
            hyper::header::HeaderValue::from(version),
        );
    }
    Ok(response)
}

/// Starts the fake on `127.0.0.1:0`; it lives until the runtime stops.
pub async fn start(options: FakeOptions) -> std::io::Result<FakeCp> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = Arc::new(Mutex::new(State {
        version: 1,
        nodes: vec![(1, now_ms()); options.data_planes],
        writes: 0,
    }));
    let shared = Arc::clone(&state);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = Arc::clone(&shared);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    handle(request, Arc::clone(&state), options)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(FakeCp { base, state })
}
