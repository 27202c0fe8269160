//! High availability on etcd, end to end: two `skiff server`s on one
//! 3-member etcd (Debian etcd-server) and one agent (real runc) that lists
//! both servers, driven by the real kubectl.
//!
//! - The second server joins with the token alone: it takes the first one's
//!   CA and admin token from the datastore, and either server shows the same
//!   cluster.
//! - The controllers and the scheduler run on one server (Leases
//!   `kube-controller-manager` / `kube-scheduler`); kill -9 of that server in
//!   the middle of a Deployment rollout → the other takes the leases within
//!   the lease duration and the rollout completes; the agent moves to the
//!   surviving server.
//! - Kill -9 of an etcd member → writes continue.
//! - A writer counts the creates the servers acknowledged through all of
//!   this; every one of them is read back at the end.

mod etcd_support;
mod support;

use etcd_support::{Kill, etcd_cluster, etcd_leader, kubectl};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Server, free_port, skiff_bin, wait_for};

const TOKEN: &str = "ha-test-token";
/// Short leader-election timings, so the test sees a take-over in seconds.
const LEASE: Duration = Duration::from_secs(4);
const ELECTION: [&str; 6] = [
    "--leader-elect-lease-duration",
    "4s",
    "--leader-elect-renew-deadline",
    "3s",
    "--leader-elect-retry-period",
    "500ms",
];

/// Prints the tails of these logs when the test fails.
struct DumpOnPanic(Vec<PathBuf>);

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for path in &self.0 {
            let log = std::fs::read_to_string(path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- {} (tail) ---", path.display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn holder(kubeconfig: &Path, lease: &str) -> String {
    kubectl(
        kubeconfig,
        &[
            "get",
            "lease",
            "-n",
            "kube-system",
            lease,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    )
    .unwrap_or_default()
}

/// Creates ConfigMaps `w-<n>` one after another through whichever server
/// answers, keeping the names the API acknowledged (201 Created).
fn writer(kubeconfigs: [PathBuf; 2], stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>) {
    let mut server = 0;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let name = format!("w-{n}");
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &kubeconfigs[server])
            .args(["--request-timeout=5s", "create", "configmap", &name])
            .args(["-n", "writes", "--from-literal=n=1"])
            .stdin(Stdio::null())
            .output()
            .expect("kubectl runs");
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            acked.lock().unwrap().push(name);
            n += 1;
        } else if err.contains("already exists") {
            // Written by an attempt whose answer was lost: not acknowledged.
            n += 1;
        } else {
            // That server does not answer: use the other.
            eprintln!(
                "writer: {name} through server {}: {}",
                server + 1,
                err.trim()
            );
            server = 1 - server;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn deployment_status(kubeconfig: &Path) -> Option<(i64, i64, i64)> {
    let out = kubectl(
        kubeconfig,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.updatedReplicas} {.status.availableReplicas} {.status.replicas}",
        ],
    )?;
    let v: Vec<i64> = out
        .split_whitespace()
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    Some((
        v.first().copied().unwrap_or(0),
        v.get(1).copied().unwrap_or(0),
        v.get(2).copied().unwrap_or(0),
    ))
}

#[test]
fn two_servers_on_etcd_survive_losing_the_leader_and_an_etcd_member() {
    if !etcd_support::prerequisites("HA") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let _dump = DumpOnPanic(
        ["server-2.log", "etcd-0.log", "etcd-1.log"]
            .iter()
            .map(|f| work.path().join(f))
            .collect(),
    );
    let (mut etcd, urls) = etcd_cluster(work.path());
    let endpoints = urls.join(",");
    let server_flags = |name: &'static str| -> Vec<String> {
        let mut f: Vec<String> = vec![
            "--disable-agent".into(),
            "--datastore-endpoint".into(),
            endpoints.clone(),
            "--token".into(),
            TOKEN.into(),
            "--node-name".into(),
            name.into(),
        ];
        f.extend(ELECTION.iter().map(|s| s.to_string()));
        f
    };
    let flags1 = server_flags("s1");
    let flags1: Vec<&str> = flags1.iter().map(String::as_str).collect();
    let Some(mut s1) = Server::start(&flags1) else {
        return;
    };
    let kc1 = s1.data().join("kubeconfig.yaml");
    wait_for("server 1 to lead", Duration::from_secs(30), || {
        (holder(&kc1, "kube-controller-manager").starts_with("s1_")
            && holder(&kc1, "kube-scheduler").starts_with("s1_"))
        .then_some(())
    });

    // The second server joins with the token alone.
    let s2_dir = work.path().join("s2");
    let s2_port = free_port();
    let kc2 = s2_dir.join("kubeconfig.yaml");
    let s2_log = std::fs::File::create(work.path().join("server-2.log")).unwrap();
    let mut s2 = Kill(
        Command::new(skiff_bin())
            .arg("server")
            .arg("--data-dir")
            .arg(&s2_dir)
            .args(["--https-listen-port", &s2_port.to_string()])
            .args([
                "--flannel-backend=none",
                "--disable-kube-proxy",
                "--disable=coredns",
            ])
            .args(server_flags("s2"))
            .stdout(Stdio::null())
            .stderr(s2_log)
            .spawn()
            .expect("skiff runs"),
    );
    wait_for("server 2 to answer", Duration::from_secs(30), || {
        kubectl(&kc2, &["get", "--raw", "/readyz"])
    });
    for f in ["server/tls/server-ca.crt", "server/admin.token", "token"] {
        assert_eq!(
            std::fs::read_to_string(s1.data().join(f)).unwrap(),
            std::fs::read_to_string(s2_dir.join(f)).unwrap(),
            "{f} differs between the servers"
        );
    }
    // One cluster, seen through either server; server 1 keeps the leases.
    kubectl(&kc1, &["create", "namespace", "writes"]).expect("namespace");
    assert!(
        wait_for(
            "the namespace through server 2",
            Duration::from_secs(10),
            || { kubectl(&kc2, &["get", "ns", "writes", "-o", "name"]) }
        )
        .contains("namespace/writes")
    );
    assert!(holder(&kc2, "kube-controller-manager").starts_with("s1_"));

    // One agent, listing both servers (server 1 first).
    let servers = format!(
        "https://127.0.0.1:{},https://127.0.0.1:{s2_port}",
        s1.port()
    );
    s1.join_agent_via("n1", Some(&servers), &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writer_thread = {
        let (stop, acked, kcs) = (stop.clone(), acked.clone(), [kc1.clone(), kc2.clone()]);
        std::thread::spawn(move || writer(kcs, stop, acked))
    };

    s1.apply(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 4
  minReadySeconds: 2
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: ["sleep", "3600"]
"#,
    );
    wait_for("the first rollout", Duration::from_secs(90), || {
        (deployment_status(&kc1)? == (4, 4, 4)).then_some(())
    });

    // A new template; kill -9 server 1 (leader, and the agent's first
    // server) once the rollout has started and before it ends.
    kubectl(&kc1, &["set", "env", "deploy/web", "ROUND=2"]).expect("set env");
    wait_for(
        "the rollout to be under way",
        Duration::from_secs(30),
        || {
            let (updated, _, _) = deployment_status(&kc1)?;
            (updated >= 1).then_some(())
        },
    );
    let (updated, _, _) = deployment_status(&kc1).unwrap();
    assert!(updated < 4, "the rollout ended before the kill");
    let killed = Instant::now();
    let s1_port = s1.port();
    s1.kill9();

    wait_for("server 2 to take the leases", LEASE * 3, || {
        (holder(&kc2, "kube-controller-manager").starts_with("s2_")
            && holder(&kc2, "kube-scheduler").starts_with("s2_"))
        .then_some(())
    });
    let takeover = killed.elapsed();
    assert!(
        takeover < LEASE + Duration::from_secs(3),
        "took {takeover:?} to take over"
    );
    let out = Command::new("kubectl")
        .env("KUBECONFIG", &kc2)
        .args(["rollout", "status", "deploy/web", "--timeout=120s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rollout status: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(deployment_status(&kc2), Some((4, 4, 4)));
    // Every pod is of the new template, and Running on the node once the
    // old ones have terminated: the agent reports through server 2 now.
    wait_for("the old pods to go", Duration::from_secs(30), || {
        let pods = kubectl(
            &kc2,
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.status.phase} {.spec.containers[0].env[0].value}{\"\\n\"}{end}",
            ],
        )?;
        let rows: Vec<&str> = pods.lines().filter(|l| !l.is_empty()).collect();
        (rows.len() == 4 && rows.iter().all(|r| *r == "Running 2")).then_some(())
    });

    // Kill the etcd member that leads the raft group: the writes go on.
    let leader = etcd_leader(&urls);
    let before = acked.lock().unwrap().len();
    etcd[leader].kill();
    let member_killed = Instant::now();
    eprintln!("killed etcd member {leader}, the raft leader");
    wait_for(
        "writes after an etcd member died",
        Duration::from_secs(30),
        || (acked.lock().unwrap().len() >= before + 5).then_some(()),
    );
    let five_more = member_killed.elapsed();
    // The controllers go on too: a scale goes through.
    kubectl(&kc2, &["scale", "deploy/web", "--replicas=2"]).expect("scale");
    wait_for("the scale-down", Duration::from_secs(60), || {
        (deployment_status(&kc2)? == (2, 2, 2)).then_some(())
    });

    stop.store(true, Ordering::Relaxed);
    writer_thread.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 20,
        "only {} writes acknowledged",
        acked.len()
    );
    let stored = kubectl(&kc2, &["get", "configmaps", "-n", "writes", "-o", "name"]).unwrap();
    let stored: std::collections::HashSet<&str> = stored
        .lines()
        .filter_map(|l| l.strip_prefix("configmap/"))
        .collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|n| !stored.contains(n.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acked.len()
    );
    eprintln!(
        "HA: leases taken over {takeover:?} after the kill; 5 more writes acknowledged {five_more:?} after the etcd leader died; {} acknowledged writes, none lost",
        acked.len()
    );

    // Server 1 comes back on its port and sees the same cluster; server 2
    // keeps the leases.
    s1.spawn_at(s1_port);
    assert_eq!(deployment_status(&kc1), Some((2, 2, 2)));
    assert!(holder(&kc1, "kube-controller-manager").starts_with("s2_"));

    // A server that stops cleanly hands its leases over at once.
    let pid = s2.0.id().to_string();
    let stopping = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for("server 1 to lead again", LEASE, || {
        (holder(&kc1, "kube-controller-manager").starts_with("s1_")
            && holder(&kc1, "kube-scheduler").starts_with("s1_"))
        .then_some(())
    });
    assert!(
        stopping.elapsed() < LEASE,
        "took {:?} after a clean stop",
        stopping.elapsed()
    );
    let status = s2.0.wait().unwrap();
    assert!(status.success(), "server 2 exited with {status}");
}
