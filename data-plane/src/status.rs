//! The status listener: `/status` and `/status/ready` from [`StatusState`]
//! (the counters and config facts the node's telemetry owns), and `/metrics`
//! rendered by the telemetry. The state is an explicit value passed to
//! whoever updates it; nothing here is global.

use crate::shutdown::ShutdownSignal;
pub use crate::telemetry::{Applied, StatusState};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Renders the Prometheus exposition for `/metrics`.
pub trait MetricsRenderer: Send + Sync + std::fmt::Debug {
    fn render(&self) -> String;
}

/// Serves the status API on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    state: Arc<StatusState>,
    metrics: Option<Arc<dyn MetricsRenderer>>,
    mut shutdown: ShutdownSignal,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.wait() => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let state = Arc::clone(&state);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = handle(&request, &state, metrics.as_deref());
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn handle(
    request: &Request<Incoming>,
    state: &StatusState,
    metrics: Option<&dyn MetricsRenderer>,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"message": "Method not allowed"}),
        );
    }
    match request.uri().path().trim_end_matches('/') {
        "/status" => json(StatusCode::OK, &state.to_json()),
        "/status/ready" => {
            if state.is_ready() {
                json(StatusCode::OK, &serde_json::json!({"message": "ready"}))
            } else {
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"message": "no configuration available"}),
                )
            }
        }
        "/metrics" => match metrics {
            Some(metrics) => {
                let mut response = Response::new(Full::new(Bytes::from(metrics.render())));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(tollgate_shared::exposition::CONTENT_TYPE),
                );
                response
            }
            None => not_found(),
        },
        _ => not_found(),
    }
}

fn not_found() -> Response<Full<Bytes>> {
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({"message": "Not found"}),
    )
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}
