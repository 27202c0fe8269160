//! A server killed with SIGKILL in the middle of a stream of writes loses
//! none that it acknowledged.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_server(dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "server",
            "--disable-agent",
            "--https-listen-port",
            &port.to_string(),
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("skiff runs")
}

async fn client_when_ready(dir: &std::path::Path, port: u16) -> kube::Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "server never became ready");
        if let Ok(kc) = Kubeconfig::read_from(dir.join("kubeconfig.yaml"))
            && kc.clusters.iter().any(|c| {
                c.cluster
                    .as_ref()
                    .and_then(|c| c.server.as_deref())
                    .is_some_and(|s| s.ends_with(&format!(":{port}")))
            })
            && let Ok(cfg) =
                kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await
            && let Ok(client) = kube::Client::try_from(cfg)
            && client
                .request_text(http::Request::get("/readyz").body(Vec::new()).unwrap())
                .await
                .is_ok()
        {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_no_acknowledged_create() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = spawn_server(dir.path(), port);
    let client = client_when_ready(dir.path(), port).await;
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{w}-{i}");
                let cm: ConfigMap = serde_json::from_value(
                    serde_json::json!({"metadata": {"name": name}, "data": {"i": i.to_string()}}),
                )
                .unwrap();
                match cms.create(&PostParams::default(), &cm).await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(name);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    // Let writes flow, then kill the server without warning.
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    for w in writers {
        let _ = w.await;
    }
    let acked: BTreeSet<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    let port = free_port();
    let mut server = spawn_server(dir.path(), port);
    let client = client_when_ready(dir.path(), port).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let stored: BTreeSet<String> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged creates lost after SIGKILL: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
