//! `skiff server --datastore-endpoint http://…` keeps the cluster in a real
//! etcd (Debian etcd-server): objects land under `/registry/…`, controllers
//! work through etcd watches, a restarted server finds everything again, and
//! an unreachable endpoint fails fast with a clear error.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

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
    let missing = ["/usr/bin/etcd", "/usr/bin/etcdctl"]
        .iter()
        .any(|p| !Path::new(p).exists())
        || Command::new("kubectl")
            .arg("version")
            .arg("--client")
            .output()
            .is_err();
    if missing {
        assert!(
            std::env::var_os("CI").is_none(),
            "etcd-server or kubectl missing in CI"
        );
        eprintln!("\n*** SKIPPING etcd test: needs etcd-server, etcd-client and kubectl ***\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let _etcd = Kill(
        Command::new("/usr/bin/etcd")
            .args([
                "--unsafe-no-fsync",
                "--heartbeat-interval=10",
                "--election-timeout=100",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("etcd"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait("etcd to serve", || {
        let out = Command::new("/usr/bin/etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &url, "endpoint", "health"])
            .output()
            .ok()?;
        out.status.success().then_some(())
    });
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
    let keys = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &url,
            "get",
            "--prefix",
            "/registry/configmaps/default/",
            "--keys-only",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&keys.stdout).contains("/registry/configmaps/default/c"),
        "{}",
        String::from_utf8_lossy(&keys.stdout)
    );
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
