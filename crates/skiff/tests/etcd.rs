//! `skiff server --datastore-endpoint http://…` keeps the cluster in a real
//! etcd (Debian etcd-server): objects land under `/registry/…`, controllers
//! work through etcd watches, a restarted server finds everything again, and
//! an unreachable endpoint fails fast with a clear error.

mod etcd_support;

use etcd_support::{Kill, etcd, etcdctl, free_port, kubectl, prerequisites, wait};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn server(data: &Path, endpoint: &str, port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_skiff"));
    c.args([
        "server",
        "--disable-agent",
        "--datastore-endpoint",
        endpoint,
    ])
    .args(["--https-listen-port", &port.to_string()])
    .arg("--data-dir")
    .arg(data)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c
}

#[test]
fn a_server_on_etcd_keeps_the_cluster_there() {
    if !prerequisites("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let _etcd = etcd(&dir.path().join("etcd"), &url, &[]);
    wait("etcd to serve", || etcdctl(&url, &["endpoint", "health"]));
    let data = dir.path().join("server");
    let port = free_port();
    let kubeconfig = data.join("kubeconfig.yaml");
    let mut first = Kill(server(&data, &url, port).spawn().unwrap());
    wait("the server on etcd", || {
        kubectl(&kubeconfig, &["get", "ns"])
    });
    kubectl(
        &kubeconfig,
        &["create", "configmap", "c", "--from-literal=a=b"],
    )
    .expect("create");
    // The object is in etcd, under Kubernetes' key layout.
    let keys = etcdctl(
        &url,
        &[
            "get",
            "--prefix",
            "/registry/configmaps/default/",
            "--keys-only",
        ],
    )
    .unwrap();
    assert!(keys.contains("/registry/configmaps/default/c"), "{keys}");
    // Controllers work through etcd watches: a Deployment gets its ReplicaSet and pods.
    kubectl(
        &kubeconfig,
        &[
            "create",
            "deployment",
            "d",
            "--image=busybox",
            "--replicas=2",
        ],
    )
    .expect("deployment");
    wait("ReplicaSet and pods", || {
        let pods = kubectl(&kubeconfig, &["get", "pods", "-l", "app=d", "-o", "name"])?;
        (pods.lines().count() == 2).then_some(())
    });

    // A restarted server finds the cluster where it left it.
    let _ = first.0.kill();
    let _ = first.0.wait();
    let _second = Kill(server(&data, &url, port).spawn().unwrap());
    let value = wait("the configmap after a restart", || {
        kubectl(&kubeconfig, &["get", "cm", "c", "-o", "jsonpath={.data.a}"])
    });
    assert_eq!(value, "b");

    // A wrong endpoint fails fast and says so.
    let started = Instant::now();
    let out = server(
        &dir.path().join("other"),
        &format!("http://127.0.0.1:{}", free_port()),
        free_port(),
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is unreachable"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
