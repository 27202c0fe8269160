//! What the etcd end-to-end tests share: real etcd members (Debian
//! etcd-server, started in about 0.1 s with fast elections and no fsync),
//! etcdctl, kubectl, and processes that die with the test.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process, SIGKILLed when dropped.
pub struct Kill(pub Child);

impl Kill {
    /// SIGKILLs the process and reaps it (again is harmless).
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Stops the process as an operator would (SIGTERM) and waits for it to exit.
    pub fn stop(mut self) {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.0.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the process did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Kill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether etcd, etcdctl and kubectl are here; outside CI a missing one
/// skips the test `name` (loudly), in CI it fails.
pub fn prerequisites(name: &str) -> bool {
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
            "etcd-server, etcd-client or kubectl missing in CI"
        );
        eprintln!("\n*** SKIPPING {name} test: needs etcd-server, etcd-client and kubectl ***\n");
    }
    !missing
}

/// kubectl with `kubeconfig`; its stdout when it succeeds (its stderr is
/// printed when it fails).
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .arg("--request-timeout=10s")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `f` every 100 ms until it returns Some; panics after 30 s.
pub fn wait<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `etcdctl` on `endpoints`, with more flags; its stdout when it succeeds.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoints])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One etcd member `name` with its data in `dir`, serving `client_url`;
/// `cluster` is the `--initial-cluster` (`name=peer_url,…`), `extra` more
/// flags (TLS), and its log goes to `log` when given.
pub fn etcd_member(
    dir: &Path,
    name: &str,
    client_url: &str,
    peer_url: &str,
    cluster: &str,
    extra: &[String],
    log: Option<&Path>,
) -> Kill {
    let stderr = match log {
        Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
        None => Stdio::null(),
    };
    Kill(
        Command::new("/usr/bin/etcd")
            .args([
                "--unsafe-no-fsync",
                "--heartbeat-interval=10",
                "--election-timeout=100",
            ])
            .args(["--name", name])
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen-client-urls", client_url])
            .args(["--advertise-client-urls", client_url])
            .args(["--listen-peer-urls", peer_url])
            .args(["--initial-advertise-peer-urls", peer_url])
            .args(["--initial-cluster", cluster])
            .args(["--initial-cluster-token", "skiff-test"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("etcd runs"),
    )
}

/// A one-member etcd in `dir` serving `client_url` (http://, or https://
/// with TLS flags in `extra`).
pub fn etcd(dir: &Path, client_url: &str, extra: &[String]) -> Kill {
    let peer = format!("http://127.0.0.1:{}", free_port());
    etcd_member(
        dir,
        "default",
        client_url,
        &peer,
        &format!("default={peer}"),
        extra,
        None,
    )
}

/// A 3-member etcd on 127.0.0.1 (data and logs `etcd-<i>` in `dir`), once
/// healthy: the members and their client URLs.
pub fn etcd_cluster(dir: &Path) -> (Vec<Kill>, Vec<String>) {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let cluster: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
        .collect();
    let mut members = Vec::new();
    let mut urls = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let url = format!("http://127.0.0.1:{client}");
        members.push(etcd_member(
            &dir.join(format!("etcd-{i}")),
            &format!("e{i}"),
            &url,
            &format!("http://127.0.0.1:{peer}"),
            &cluster.join(","),
            &[],
            Some(&dir.join(format!("etcd-{i}.log"))),
        ));
        urls.push(url);
    }
    wait("the etcd cluster", || {
        etcdctl(&urls.join(","), &["endpoint", "health"])
    });
    (members, urls)
}

/// The index in `urls` of the member that leads the etcd cluster.
pub fn etcd_leader(urls: &[String]) -> usize {
    let out = etcdctl(&urls.join(","), &["endpoint", "status", "-w", "json"]).unwrap();
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    status
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["Status"]["leader"] == s["Status"]["header"]["member_id"])
        .expect("a member leads")
}
