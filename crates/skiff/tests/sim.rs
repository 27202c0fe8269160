//! End-to-end test of `skiff sim`: hollow nodes joining a real `skiff server`
//! (control plane only), driven with the real kubectl.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{free_port, skiff_bin, wait_for};

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kubectl(data: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .env("KUBECONFIG", data.join("kubeconfig.yaml"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kubectl runs")
}

fn ok(data: &Path, args: &[&str]) -> String {
    let out = kubectl(data, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn log(p: &PathBuf) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn kubectl_missing() -> bool {
    let missing = !Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if missing {
        if std::env::var_os("CI").is_some() {
            panic!("the sim e2e test needs kubectl");
        }
        eprintln!("\n\n*** SKIPPING sim e2e test: kubectl is not installed ***\n\n");
    }
    missing
}

#[test]
fn twenty_hollow_nodes_join_run_pods_confirm_deletions_and_leave() {
    if kubectl_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let server_log = dir.path().join("server.log");
    let _server = Killed(
        Command::new(skiff_bin())
            .args(["server", "--disable-agent", "--data-dir"])
            .arg(&data)
            .args(["--https-listen-port", &port.to_string()])
            .stdout(std::fs::File::create(&server_log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("server.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the server to answer", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(data.join("kubeconfig.yaml")).ok()?;
        text.contains(&format!(":{port}")).then_some(())?;
        kubectl(&data, &["get", "--raw", "/readyz"])
            .status
            .success()
            .then_some(())
    });
    let token = std::fs::read_to_string(data.join("token")).unwrap();

    let sim_log = dir.path().join("sim.log");
    let t0 = Instant::now();
    let mut sim = Killed(
        Command::new(skiff_bin())
            .args(["sim", "--nodes", "20", "--delete-nodes-on-exit"])
            .args(["--server", &format!("https://127.0.0.1:{port}")])
            .args(["--token", token.trim()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&sim_log).unwrap())
            .spawn()
            .unwrap(),
    );

    // 20 Ready hollow nodes, labelled as such.
    let rows = wait_for("20 Ready hollow nodes", Duration::from_secs(60), || {
        let out = kubectl(
            &data,
            &["get", "nodes", "-l", "skiff.io/hollow=true", "--no-headers"],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let ready = text
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        (ready == 20).then_some(text)
    });
    assert!(
        rows.lines().all(|l| l.starts_with("hollow-node-")),
        "{rows}"
    );
    let took = t0.elapsed();
    wait_for("the sim's ready line", Duration::from_secs(10), || {
        log(&sim_log)
            .contains("skiff sim: 20 hollow nodes registered and Ready in")
            .then_some(())
    });
    assert!(took < Duration::from_secs(30), "registration took {took:?}");
    let node = ok(
        &data,
        &[
            "get",
            "node",
            "hollow-node-7",
            "-o",
            "jsonpath={.status.capacity.cpu} {.status.capacity.memory} {.status.capacity.pods} {.status.addresses[0].address} {.spec.podCIDR} {.metadata.labels.kubernetes\\.io/hostname}",
        ],
    );
    assert_eq!(
        node,
        "4 33554432Ki 110 10.64.0.8 10.128.7.0/24 hollow-node-7"
    );
    let leases = ok(
        &data,
        &["get", "leases", "-n", "kube-node-lease", "--no-headers"],
    );
    assert_eq!(
        leases
            .lines()
            .filter(|l| l.starts_with("hollow-node-"))
            .count(),
        20,
        "{leases}"
    );

    // Pods are scheduled over the nodes and run at once.
    let mut manifest = String::new();
    for i in 0..6 {
        manifest.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web-{i}\nspec:\n  containers:\n  - name: main\n    image: busybox:1.36\n    command: [sleep, \"3600\"]\n    resources:\n      requests:\n        cpu: 500m\n        memory: 256Mi\n"
        ));
    }
    let path = dir.path().join("pods.yaml");
    std::fs::write(&path, manifest).unwrap();
    ok(&data, &["apply", "-f", path.to_str().unwrap()]);
    let rows = wait_for("6 pods Running", Duration::from_secs(30), || {
        let text = ok(&data, &["get", "pods", "-o", "wide", "--no-headers"]);
        let running = text
            .lines()
            .filter(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                c.get(1) == Some(&"1/1") && c.get(2) == Some(&"Running")
            })
            .count();
        (running == 6).then_some(text)
    });
    let mut nodes: Vec<&str> = Vec::new();
    for row in rows.lines() {
        // NAME READY STATUS RESTARTS AGE IP NODE ...
        let c: Vec<&str> = row.split_whitespace().collect();
        let (ip, node) = (c[5], c[6]);
        let i: u32 = node.strip_prefix("hollow-node-").unwrap().parse().unwrap();
        assert!(
            ip.starts_with(&format!("10.128.{i}.")),
            "pod IP {ip} from the /24 of {node}: {row}"
        );
        nodes.push(node);
    }
    nodes.sort();
    nodes.dedup();
    assert_eq!(
        nodes.len(),
        6,
        "the scheduler spreads 6 pods over 6 of 20 empty nodes:\n{rows}"
    );
    let status = ok(
        &data,
        &[
            "get",
            "pod",
            "web-0",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.containerStatuses[0].started} {.status.containerStatuses[0].state.running.startedAt}",
        ],
    );
    let parts: Vec<&str> = status.split(' ').collect();
    assert_eq!(&parts[..2], ["True", "true"], "{status}");
    assert!(!parts[2].is_empty(), "startedAt set: {status}");

    // A deletion (30 s grace) is confirmed by the hollow node at once.
    let t = Instant::now();
    ok(&data, &["delete", "pod", "web-0", "--timeout=20s"]);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "deletion took {:?}",
        t.elapsed()
    );
    let gone = kubectl(&data, &["get", "pod", "web-0"]);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("pods \"web-0\" not found"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    assert_eq!(
        ok(&data, &["get", "pods", "--no-headers"]).lines().count(),
        5
    );

    // SIGTERM: the sim stops, deleting its nodes and Leases.
    let pid = sim.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = wait_for("the sim to exit", Duration::from_secs(30), || {
        sim.0.try_wait().unwrap()
    });
    let text = log(&sim_log);
    assert!(status.success(), "sim exited {status}:\n{text}");
    assert!(
        text.contains("skiff sim: deleted 20 hollow nodes"),
        "{text}"
    );
    assert!(
        text.contains(
            "skiff sim: stopped: 20 nodes registered, 6 pods Running, 1 deletions confirmed"
        ),
        "{text}"
    );
    let left = ok(
        &data,
        &["get", "nodes", "-l", "skiff.io/hollow=true", "--no-headers"],
    );
    assert_eq!(left.trim(), "", "no hollow node left");
}
