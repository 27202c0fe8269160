//! The metrics collector against real runc containers and real cgroups: a
//! container burning CPU reads as about one core, and its working set is what
//! its cgroup files say.
//!
//! Needs root and runc; without them the test says so LOUDLY and passes.

use skiff_agent::metrics::{self, Roots};
use skiff_agent::runtime::runc::RuncRuntime;
use skiff_agent::runtime::{
    ContainerConfig, ContainerState, Process, Resources, Runtime, Sandbox, SandboxConfig, Security,
    labels,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod runc_support;

/// A runtime on a temporary root with a busybox rootfs and a unique cgroup
/// parent; dropping it removes every container, mount and cgroup it made.
struct Env {
    tmp: tempfile::TempDir,
    rt: RuncRuntime,
    rootfs: PathBuf,
    cgroup_root: String,
}

fn setup() -> Option<Env> {
    if let Err(why) = RuncRuntime::check() {
        eprintln!("\n!!!!!!!! SKIPPING metrics test: {why} !!!!!!!!\n");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("layers/base");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in ["sh", "true", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    let shim = vec![env!("CARGO_BIN_EXE_skiff-shim").to_string()];
    let rt = RuncRuntime::new(tmp.path().join("root"), shim).unwrap();
    Some(Env {
        tmp,
        rt,
        rootfs,
        cgroup_root: format!("skiff-metrics-test-{}", std::process::id()),
    })
}

impl Env {
    fn container(&self, id: &str, sandbox: &Sandbox, args: &[&str]) -> ContainerConfig {
        ContainerConfig {
            id: id.into(),
            sandbox: sandbox.clone(),
            labels: BTreeMap::from([
                (labels::POD_NAMESPACE.to_string(), "default".to_string()),
                (labels::POD_NAME.to_string(), "burner".to_string()),
                (labels::CONTAINER_NAME.to_string(), format!("name-{id}")),
                (labels::SANDBOX_ID.to_string(), sandbox.id.clone()),
            ]),
            layers: vec![self.rootfs.clone()],
            process: Process {
                args: args.iter().map(|s| s.to_string()).collect(),
                env: vec![],
                cwd: "/".into(),
                uid: 0,
                gid: 0,
                additional_gids: vec![],
            },
            mounts: vec![],
            resources: Resources::default(),
            cgroup_parent: format!("/{}/pod", self.cgroup_root),
            security: Security::default(),
            log_path: self.tmp.path().join("logs").join(format!("{id}.log")),
            stdin: false,
            stdin_once: false,
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        runc_support::clean_up(&self.tmp.path().join("root"), &self.cgroup_root);
    }
}

/// (CPU seconds, working-set bytes) of `cgroup` straight from the files,
/// written independently of the collector.
fn from_files(cgroup: &str) -> (f64, u64) {
    let rel = cgroup.trim_start_matches('/');
    let base = Path::new("/sys/fs/cgroup");
    let read = |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    let stat_value = |text: &str, key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    };
    if base.join("cgroup.controllers").exists() {
        let dir = base.join(rel);
        let usec = stat_value(&read(dir.join("cpu.stat")), "usage_usec");
        let current: u64 = read(dir.join("memory.current")).trim().parse().unwrap();
        let inactive = stat_value(&read(dir.join("memory.stat")), "inactive_file");
        (usec as f64 / 1e6, current.saturating_sub(inactive))
    } else {
        let cpuacct = std::fs::read_dir(base)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join(rel).join("cpuacct.usage").exists())
            .expect("a cpuacct hierarchy with the container's cgroup");
        let ns: u64 = read(cpuacct.join(rel).join("cpuacct.usage"))
            .trim()
            .parse()
            .unwrap();
        let mem = base.join("memory").join(rel);
        let usage: u64 = read(mem.join("memory.usage_in_bytes"))
            .trim()
            .parse()
            .unwrap();
        let inactive = stat_value(&read(mem.join("memory.stat")), "total_inactive_file");
        (ns as f64 / 1e9, usage.saturating_sub(inactive))
    }
}

#[tokio::test]
async fn a_busy_container_reads_as_one_core() {
    let Some(env) = setup() else { return };
    let sb = env
        .rt
        .create_sandbox(&SandboxConfig {
            pod_uid: "u1".into(),
            pod_name: "burner".into(),
            pod_namespace: "default".into(),
            hostname: "burner".into(),
            host_network: false,
            attempt: 0,
            ports: Vec::new(),
        })
        .await
        .unwrap();
    for (id, args) in [
        ("burn", &["sh", "-c", "while :; do :; done"][..]),
        ("done", &["true"][..]),
    ] {
        env.rt
            .create_container(&env.container(id, &sb, args))
            .await
            .unwrap();
        env.rt.start_container(id).await.unwrap();
    }
    let cgroup = env.rt.cgroup("burn").unwrap();
    assert_eq!(cgroup, format!("/{}/pod/burn", env.cgroup_root));
    // Let the exited one exit and the busy one get going.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !matches!(
        env.rt.container("done").await.unwrap().state,
        ContainerState::Exited { .. }
    ) {
        assert!(std::time::Instant::now() < deadline, "`true` never exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let roots = Roots::default();
    let scrape = || async {
        let before = from_files(&cgroup);
        let got = metrics::collect_runc(&env.rt, &roots).await;
        let after = from_files(&cgroup);
        (before, got, after)
    };
    let (b1, first, a1) = scrape().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (b2, second, a2) = scrape().await;

    for (before, got, after) in [(b1, &first, a1), (b2, &second, a2)] {
        let names: Vec<&str> = got
            .containers
            .iter()
            .map(|c| c.container.as_str())
            .collect();
        assert_eq!(names, vec!["name-burn"], "running containers only");
        let c = &got.containers[0];
        assert_eq!(
            (c.namespace.as_str(), c.pod.as_str()),
            ("default", "burner")
        );
        let u = c.sample.usage;
        assert!(
            before.0 <= u.cpu_seconds && u.cpu_seconds <= after.0,
            "CPU {} is not between the file's {} and {}",
            u.cpu_seconds,
            before.0,
            after.0
        );
        let (lo, hi) = (before.1.min(after.1), before.1.max(after.1));
        assert!(u.memory_working_set_bytes > 0, "working set is 0");
        assert!(
            lo <= u.memory_working_set_bytes && u.memory_working_set_bytes <= hi,
            "working set {} is not the file's ({} .. {})",
            u.memory_working_set_bytes,
            lo,
            hi
        );
    }
    let (s1, s2) = (first.containers[0].sample, second.containers[0].sample);
    let secs = (s2.timestamp_ms - s1.timestamp_ms) as f64 / 1000.0;
    let rate = (s2.usage.cpu_seconds - s1.usage.cpu_seconds) / secs;
    eprintln!(
        "busy container: {rate:.3} cores over {secs:.3} s, working set {} bytes",
        s2.usage.memory_working_set_bytes
    );
    // One spinning thread uses at most one core; on a machine busy with other
    // work it gets less, but far more than an idle container's ~0.
    assert!(
        (0.2..=1.05).contains(&rate),
        "CPU rate {rate} is not that of a busy loop"
    );

    let (n1, n2) = (first.node.unwrap(), second.node.unwrap());
    let node_rate = (n2.usage.cpu_seconds - n1.usage.cpu_seconds)
        / ((n2.timestamp_ms - n1.timestamp_ms) as f64 / 1000.0);
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    eprintln!(
        "node: {node_rate:.3} cores, working set {} bytes",
        n2.usage.memory_working_set_bytes
    );
    assert!(
        node_rate >= rate * 0.8 && node_rate <= cores + 0.1,
        "node CPU rate {node_rate} with a container using {rate} on {cores} cores"
    );
    assert!(n2.usage.memory_working_set_bytes > 0);
}
