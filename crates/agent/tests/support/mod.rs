//! What the agent's tests against an API server share.

/// An API server in this process on an in-memory store (its data directory
/// `dir`), and a client of it. Keep the server for the test's length.
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
