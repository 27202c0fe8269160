//! The service proxy against the real kernel: rules applied with `nft` in a
//! private network namespace, and real TCP connections through them.
//!
//! Needs root, `nft`, `unshare`, `nsenter`, `ip`, `busybox` (httpd) and `curl`;
//! skips with a printed reason otherwise. The namespace lives as long as a
//! `sleep` holder process, so nothing is left behind on the host: its veth
//! pair, addresses and table go with it.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use skiff_net::proxy::{Proxier, ProxyConfig, SyncInfo};
use skiff_net::view::ClusterView;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const TABLE: &str = "skiff-test";

fn missing_prerequisite() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".into());
    }
    for tool in ["nft", "unshare", "nsenter", "ip", "busybox", "curl"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// A private network namespace, held open by a `sleep` process.
struct Netns {
    holder: Child,
    servers: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Netns {
    fn new() -> Self {
        let holder = Command::new("unshare")
            .args(["-n", "sleep", "600"])
            .spawn()
            .expect("unshare -n");
        let ns = Self {
            holder,
            servers: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        // unshare execs sleep once the namespace exists; wait for that.
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        let theirs = format!("/proc/{}/ns/net", ns.holder.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(&theirs).ok().is_none_or(|l| l == own) {
            assert!(Instant::now() < deadline, "namespace never appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
        ns
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder.id().to_string(), "-n", program]);
        c
    }

    fn sh(&self, script: &str) -> Output {
        self.command("sh").args(["-c", script]).output().unwrap()
    }

    fn must(&self, script: &str) {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An `nft` that runs inside the namespace, for the proxier.
    fn nft_wrapper(&self) -> PathBuf {
        let path = self.dir.path().join("nft");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nexec nsenter -t {} -n nft \"$@\"\n",
                self.holder.id()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// An HTTP server on `addr` whose `/id` answers `name`.
    fn serve(&mut self, addr: &str, name: &str) {
        let root = self.dir.path().join(name);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("id"), name).unwrap();
        let child = self
            .command("busybox")
            .args(["httpd", "-f", "-p", addr, "-h"])
            .arg(&root)
            .spawn()
            .unwrap();
        self.servers.push(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self
            .sh(&format!("curl -sS --max-time 1 http://{addr}/id"))
            .status
            .success()
        {
            assert!(Instant::now() < deadline, "server on {addr} never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GETs `url` from inside the namespace: the body, or curl's error.
    fn get(&self, url: &str) -> (Result<String, String>, Duration) {
        let start = Instant::now();
        let out = self.sh(&format!("curl -sS --max-time 3 {url}"));
        let took = start.elapsed();
        let result = if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        };
        (result, took)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in self
            .servers
            .iter_mut()
            .chain(std::iter::once(&mut self.holder))
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn service(spec: Value) -> Service {
    serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}),
    )
    .unwrap()
}

fn cluster_ip() -> Service {
    service(
        json!({"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
    )
}

fn slice(ips: &[&str]) -> EndpointSlice {
    let endpoints: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}, "nodeName": "node-a"}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": "web-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .unwrap()
}

/// Publishes `view` and waits for the proxier to program it; returns the sync
/// and the latency from publishing to programmed.
async fn publish(
    tx: &watch::Sender<Arc<ClusterView>>,
    synced: &mut watch::Receiver<Option<SyncInfo>>,
    view: ClusterView,
) -> (SyncInfo, Duration) {
    synced.mark_unchanged();
    let sent = Instant::now();
    tx.send_replace(Arc::new(view));
    tokio::time::timeout(Duration::from_secs(10), synced.changed())
        .await
        .expect("the proxier never synced")
        .unwrap();
    let info = synced.borrow_and_update().expect("a sync");
    (info, info.at - sent)
}

fn list_table(ns: &Netns) -> Output {
    ns.sh(&format!("nft list table ip {TABLE}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ips_and_node_ports_carry_real_traffic_in_a_namespace() {
    if let Some(reason) = missing_prerequisite() {
        eprintln!("SKIPPED cluster_ips_and_node_ports_carry_real_traffic_in_a_namespace: {reason}");
        return;
    }
    let mut ns = Netns::new();
    ns.must(
        // (A veth pair, as containers may lack the dummy link type.)
        "ip link set lo up && ip link add v0 type veth peer name v1 \
         && ip link set v0 up && ip link set v1 up && ip addr add 10.0.0.1/24 dev v0 \
         && ip addr add 10.244.0.3/32 dev v0 && ip addr add 10.244.0.4/32 dev v0 \
         && ip route add 10.96.0.0/16 dev v0 src 10.0.0.1",
    );
    ns.serve("10.244.0.3:8080", "ep-a");
    ns.serve("10.244.0.4:8080", "ep-b");

    let config = ProxyConfig {
        // The client (10.0.0.1) counts as in-cluster, so it is not masqueraded.
        cluster_cidr: Some((Ipv4Addr::new(10, 0, 0, 0), 8)),
        table: TABLE.into(),
        nft: ns.nft_wrapper(),
        ..ProxyConfig::new("node-a")
    };
    let proxier = Proxier::new(config);
    let mut synced = proxier.synced();
    let (view_tx, view_rx) = watch::channel(Arc::new(ClusterView::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(proxier.run(view_rx, stop_rx));
    let first = tokio::time::timeout(Duration::from_secs(10), synced.wait_for(|s| s.is_some()))
        .await
        .expect("first sync")
        .unwrap()
        .unwrap();
    assert!(first.full);

    // One endpoint: the ClusterIP reaches it (nat output hook).
    let (info, latency) = publish(
        &view_tx,
        &mut synced,
        ClusterView::from_objects([cluster_ip()], [slice(&["10.244.0.3"])]),
    )
    .await;
    assert!(!info.full, "the second sync is partial");
    eprintln!(
        "endpoint added: programmed {latency:?} after publishing ({} lines)",
        info.lines
    );
    let table = String::from_utf8_lossy(&list_table(&ns).stdout).into_owned();
    assert!(
        table.contains("10.96.0.5 . tcp . 80 : goto service-")
            && table.contains("dnat to 10.244.0.3:8080"),
        "{table}"
    );
    assert_eq!(ns.get("http://10.96.0.5/id").0, Ok("ep-a".to_string()));

    // The endpoint moves: traffic follows.
    let (_, latency) = publish(
        &view_tx,
        &mut synced,
        ClusterView::from_objects([cluster_ip()], [slice(&["10.244.0.4"])]),
    )
    .await;
    eprintln!("endpoint replaced: programmed {latency:?} after publishing");
    for _ in 0..5 {
        assert_eq!(ns.get("http://10.96.0.5/id").0, Ok("ep-b".to_string()));
    }

    // Both: the random choice reaches each.
    publish(
        &view_tx,
        &mut synced,
        ClusterView::from_objects([cluster_ip()], [slice(&["10.244.0.3", "10.244.0.4"])]),
    )
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(ns.get("http://10.96.0.5/id").0.unwrap());
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // No endpoints: refused at once (the reject), where without rules the SYN
    // would go out v0 unanswered until curl's timeout.
    publish(
        &view_tx,
        &mut synced,
        ClusterView::from_objects([cluster_ip()], [slice(&[])]),
    )
    .await;
    let (result, took) = ns.get("http://10.96.0.5/id");
    let err = result.unwrap_err();
    assert!(err.contains("Failed to connect"), "{err}");
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // A NodePort on a local address (externalTrafficPolicy Cluster).
    let node_port = service(json!({"type": "NodePort", "clusterIP": "10.96.0.5",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}));
    publish(
        &view_tx,
        &mut synced,
        ClusterView::from_objects([node_port], [slice(&["10.244.0.3"])]),
    )
    .await;
    assert_eq!(ns.get("http://10.0.0.1:30080/id").0, Ok("ep-a".to_string()));
    assert_eq!(ns.get("http://10.96.0.5/id").0, Ok("ep-a".to_string()));

    // Shutdown deletes the table.
    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run stopped")
        .unwrap()
        .unwrap();
    let out = list_table(&ns);
    assert!(!out.status.success(), "table still there after shutdown");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such file or directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_script_nft_rejects_is_reported_with_its_message() {
    if let Some(reason) = missing_prerequisite() {
        eprintln!("SKIPPED a_script_nft_rejects_is_reported_with_its_message: {reason}");
        return;
    }
    let ns = Netns::new();
    let nft = skiff_net::proxy::NftCommand {
        nft: ns.nft_wrapper(),
    };
    use skiff_net::proxy::Nft;
    let err = nft
        .apply(
            "add table ip skiff-test\nadd chain ip skiff-test c\nadd rule ip skiff-test c bogus\n",
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("-f - failed") && err.contains("bogus"),
        "{err}"
    );
}

/// Every kind of rule the planner writes, as full and partial syncs, is
/// accepted by the real `nft`; ClientIP affinity keeps a client on one endpoint.
#[test]
fn every_rule_kind_is_accepted_by_nft_and_affinity_sticks() {
    if let Some(reason) = missing_prerequisite() {
        eprintln!("SKIPPED every_rule_kind_is_accepted_by_nft_and_affinity_sticks: {reason}");
        return;
    }
    let mut ns = Netns::new();
    ns.must(
        "ip link set lo up && ip link add v0 type veth peer name v1 \
         && ip link set v0 up && ip link set v1 up && ip addr add 10.0.0.1/24 dev v0 \
         && ip addr add 10.244.0.3/32 dev v0 && ip addr add 10.244.0.4/32 dev v0 \
         && ip route add 10.96.0.0/16 dev v0 src 10.0.0.1",
    );
    ns.serve("10.244.0.3:8080", "ep-a");
    ns.serve("10.244.0.4:8080", "ep-b");
    let mut proxier = Proxier::new(ProxyConfig {
        cluster_cidr: Some((Ipv4Addr::new(10, 0, 0, 0), 8)),
        table: TABLE.into(),
        nft: ns.nft_wrapper(),
        ..ProxyConfig::new("node-a")
    });
    let kinds = |affinity_timeout: i32, ips: &[&str]| {
        let sticky = service(json!({"clusterIP": "10.96.0.5",
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": affinity_timeout}},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}));
        let mut local: Service = service(json!({"type": "LoadBalancer", "clusterIP": "10.96.0.6",
            "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30081}]}));
        local.metadata.name = Some("local".into());
        let mut local_slice = slice(&["10.244.0.3"]);
        local_slice.metadata.name = Some("local-1".into());
        local_slice
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("kubernetes.io/service-name".into(), "local".into());
        ClusterView::from_objects([sticky, local], [slice(ips), local_slice])
    };
    let steps = [
        kinds(600, &["10.244.0.3", "10.244.0.4"]),
        kinds(60, &["10.244.0.3", "10.244.0.4"]),
        kinds(60, &["10.244.0.4"]),
        kinds(60, &[]),
        ClusterView::default(),
        kinds(60, &["10.244.0.3", "10.244.0.4"]),
    ];
    for (i, view) in steps.iter().enumerate() {
        let info = proxier
            .sync(view)
            .unwrap_or_else(|e| panic!("step {i}: {e}"));
        assert_eq!(info.full, i == 0, "step {i}");
    }
    // The last step has affinity over two endpoints: one client always lands
    // on the same one.
    let first = ns.get("http://10.96.0.5/id").0.unwrap();
    for _ in 0..10 {
        assert_eq!(ns.get("http://10.96.0.5/id").0.unwrap(), first);
    }
    let table = String::from_utf8_lossy(&list_table(&ns).stdout).into_owned();
    assert!(table.contains("flags dynamic,timeout"), "{table}");
    assert!(table.contains("timeout 1m"), "{table}");
    proxier.cleanup().unwrap();
    assert!(!list_table(&ns).status.success());
}
