//! Echo upstream: answers every request with the request it received, as JSON.
//! Used by `make run`, the benchmarks and the end-to-end tests.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("echo listening on {}", listener.local_addr()?);
    tollgate_tests::echo::serve(listener).await;
    Ok(())
}
