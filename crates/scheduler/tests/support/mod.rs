//! What the scheduler's end-to-end tests share: an API server in this
//! process and polling until something happens.

use std::time::Duration;

/// An API server in this process on an in-memory store (its data directory
/// under `dir`), and a client of it. Keep the server for the test's length.
pub async fn api_server(dir: &std::path::Path) -> (skiff_apiserver::Running, kube::Client) {
    let mut c = skiff_apiserver::Config::new(dir);
    c.port = 0;
    let running =
        skiff_apiserver::start_with_store(c, std::sync::Arc::new(skiff_store::MemoryStore::new()))
            .await
            .unwrap();
    let client = kube::Client::new(
        skiff_apiserver::inproc::InProcess(running.server.clone()),
        "default",
    );
    (running, client)
}

/// Polls `f` until it gives a value, for up to 20 s.
pub async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
