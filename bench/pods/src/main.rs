//! `skiff-bench-pods`: a benchmark (not a test) of pod start-up on the skiff
//! node agent.
//!
//! It starts a release `skiff server` (API server + embedded node agent
//! running pods with runc) on 127.0.0.1 with a fresh temp data dir, imports a
//! busybox image built from the host's busybox, and measures in one run:
//! - `pod startup`: N one-container busybox pods (`sleep 3600`) created at
//!   once; per pod, POST sent → `Running` seen on a watch; p50/p99/min/max,
//!   with a per-phase breakdown from the API and the agent's files on disk;
//! - `rss`: server (+ agent) RSS idle and with N running pods; the shims'
//!   RSS apart (total and per shim);
//! - `cleanup`: delete all N pods → gone from the API → node clean (no
//!   container dirs, sandboxes, shims or mounts left);
//! - baselines: `podman kube play` of the same pod (one at a time, private
//!   config and storage under a temp dir) and bare `runc create` + `runc
//!   start` of the same busybox rootfs.
//!
//! Every process, container, mount, cgroup and directory it makes is removed
//! when the run ends, on failure and on Ctrl-C/SIGTERM too. See
//! `bench/README.md` for what each figure means.

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Goals from `shared/design/PERFORMANCE.md`, printed next to the figures.
const GOAL_P50_MS: f64 = 120.0;
const GOAL_P99_MS: f64 = 250.0;
const GOAL_RATIO: f64 = 4.0;
const GOAL_RSS_100_MB: f64 = 100.0;

/// The namespace the pods run in.
const NS: &str = "bench-pods";
/// The image every pod runs (fully qualified, so podman and skiff read it alike).
const IMAGE: &str = "docker.io/library/busybox:1.36";

/// Run parameters.
#[derive(Debug, Clone, PartialEq)]
struct Opts {
    skiff: PathBuf,
    image_script: PathBuf,
    pods: usize,
    clients: usize,
    podman_pods: usize,
    runc_runs: usize,
    delete_grace: i64,
    restart_policy: String,
    timeout_s: u64,
    skip_podman: bool,
    skip_runc: bool,
}

impl Opts {
    fn parse(args: &[String], default_skiff: PathBuf, default_script: PathBuf) -> Result<Opts> {
        let mut o = Opts {
            skiff: default_skiff,
            image_script: default_script,
            pods: 100,
            clients: 8,
            podman_pods: 20,
            runc_runs: 100,
            delete_grace: 1,
            restart_policy: "Never".into(),
            timeout_s: 120,
            skip_podman: false,
            skip_runc: false,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            match flag.as_str() {
                "--skip-podman" => {
                    o.skip_podman = true;
                    continue;
                }
                "--skip-runc" => {
                    o.skip_runc = true;
                    continue;
                }
                "-h" | "--help" => bail!(
                    "usage: skiff-bench-pods [--skiff PATH] [--image-script PATH] [--pods N] [--clients N] \
                     [--podman-pods N] [--runc-runs N] [--delete-grace S] [--restart-policy Never|Always] \
                     [--timeout S] [--skip-podman] [--skip-runc]"
                ),
                _ => {}
            }
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            let num = || -> Result<usize> {
                let n: usize = value
                    .parse()
                    .with_context(|| format!("{flag} {value:?}: not a number"))?;
                if n == 0 {
                    bail!("{flag} must be at least 1");
                }
                Ok(n)
            };
            match flag.as_str() {
                "--skiff" => o.skiff = PathBuf::from(value),
                "--image-script" => o.image_script = PathBuf::from(value),
                "--pods" => o.pods = num()?,
                "--clients" => o.clients = num()?,
                "--podman-pods" => o.podman_pods = num()?,
                "--runc-runs" => o.runc_runs = num()?,
                "--timeout" => o.timeout_s = num()? as u64,
                "--delete-grace" => {
                    o.delete_grace = value
                        .parse()
                        .ok()
                        .filter(|g: &i64| *g >= 0)
                        .with_context(|| format!("{flag} {value:?}: not a number >= 0"))?
                }
                "--restart-policy" => {
                    if !["Never", "Always", "OnFailure"].contains(&value.as_str()) {
                        bail!("{flag} {value:?}: expected Never, Always or OnFailure");
                    }
                    o.restart_policy = value.clone();
                }
                _ => bail!("unknown flag {flag:?} (try --help)"),
            }
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------- helpers

/// The value at percentile `p` (0–100) of sorted samples, nearest-rank.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `b - a` in ms (negative when `b` is earlier).
fn ms_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => ms(d),
        Err(e) => -ms(e.duration()),
    }
}

/// `p50 X, p99 Y, min Z, max W` of sorted samples.
fn summary(s: &[f64]) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms (n={})",
        percentile(s, 50.0),
        percentile(s, 99.0),
        percentile(s, 0.0),
        percentile(s, 100.0),
        s.len()
    )
}

/// `VmRSS` in MiB from the text of `/proc/PID/status`.
fn parse_vmrss_mib(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_vmrss_mib(&status).context("no VmRSS line")
}

/// User + system CPU time in clock ticks from the text of `/proc/PID/stat`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU time of waited-for children (cutime + cstime) from `/proc/PID/stat`.
fn parse_child_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(13)?.parse::<u64>().ok()? + f.get(14)?.parse::<u64>().ok()?)
}

/// CPU used so far by the reaped children of `pid` (runc, unshare, ...), in ms.
fn child_cpu_ms(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_child_cpu_ticks(&s))
        .map_or(f64::NAN, |t| t as f64 * 10.0)
}

/// CPU time used so far by `pid`, in ms (USER_HZ = 100).
fn cpu_ms(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_cpu_ticks(&s))
        .map_or(f64::NAN, |t| t as f64 * 10.0)
}

/// `MemTotal` in GiB from the text of `/proc/meminfo`.
fn parse_memtotal_gib(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0 / 1024.0)
}

/// `ok` or `MISS` against a goal (`lower` = smaller is better).
fn verdict(value: f64, goal: f64, lower: bool) -> &'static str {
    let ok = if lower { value <= goal } else { value >= goal };
    if ok { "ok" } else { "MISS" }
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("skiff-bench-pods-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Never remove through a mount that is still there.
        unmount_under(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Set on Ctrl-C, SIGTERM or the overall time limit: the blocking baselines stop.
static CANCEL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn check_cancel() -> Result<()> {
    if CANCEL.load(Ordering::Relaxed) {
        bail!("cancelled");
    }
    Ok(())
}

/// Runs a command to completion (at most 60 s, then it is killed) with null
/// stdin/stdout and stderr to a temp file (a pipe would be held open by a
/// detached container); Ok when it exits 0.
fn run_quiet(cmd: &mut Command) -> Result<()> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let err_path = std::env::temp_dir().join(format!(
        "skiff-bench-pods-{}-stderr-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let err = std::fs::File::create(&err_path)?;
    let result = (|| {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .with_context(|| format!("running {:?}", cmd.get_program()))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{:?} took more than 60 s", cmd.get_program());
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if !status.success() {
            bail!(
                "{:?} {:?}: {}: {}",
                cmd.get_program(),
                cmd.get_args().collect::<Vec<_>>(),
                status,
                std::fs::read_to_string(&err_path)
                    .unwrap_or_default()
                    .trim()
            );
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&err_path);
    result
}

/// Decodes the octal escapes (`\040`) of a `/proc/self/mountinfo` path.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or below `prefix` in the text of a mountinfo file,
/// deepest (longest) first.
fn parse_mounts_under(mountinfo: &str, prefix: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .filter(|p| p.starts_with(prefix))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out.dedup();
    out
}

fn mounts_under(prefix: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| parse_mounts_under(&s, prefix))
        .unwrap_or_default()
}

/// Lazily unmounts everything mounted at or below `prefix`.
fn unmount_under(prefix: &Path) -> usize {
    let mut n = 0;
    // Stacked mounts need more than one pass.
    for _ in 0..4 {
        let ms = mounts_under(prefix);
        if ms.is_empty() {
            break;
        }
        for m in ms {
            if run_quiet(Command::new("umount").arg("-l").arg(&m)).is_ok() {
                n += 1;
            }
        }
    }
    n
}

/// The argv of every process whose command line `pred` accepts.
fn procs_matching(pred: impl Fn(&[String]) -> bool) -> Vec<(u32, Vec<String>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !argv.is_empty() && pred(&argv) {
            out.push((pid, argv));
        }
    }
    out
}

fn kill9(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = run_quiet(
        Command::new("kill")
            .arg("-9")
            .args(pids.iter().map(u32::to_string)),
    );
}

/// `/sys/fs/cgroup/<hierarchy>/<rel>` for every hierarchy where it is a directory.
fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path().join(rel))
        .filter(|p| p.is_dir())
        .collect()
}

/// Kills every process in a cgroup directory and its children, then removes them.
fn remove_cgroup_tree(dir: &Path) {
    let mut dirs = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        if let Ok(entries) = std::fs::read_dir(&dirs[i]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(e.path());
                }
            }
        }
        i += 1;
    }
    for d in dirs.iter().rev() {
        for _ in 0..20 {
            let pids: Vec<u32> = std::fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            kill9(&pids);
            if std::fs::remove_dir(d).is_ok() || !d.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Entries of a directory (empty when it does not exist).
fn dir_entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

// ------------------------------------------------------------- the pod

/// The one-container busybox pod every system runs, as JSON (which is YAML
/// too, so `podman kube play` reads the same document).
fn pod_json(name: &str, restart_policy: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {
            "restartPolicy": restart_policy,
            "containers": [{
                "name": "main",
                "image": IMAGE,
                "command": ["sleep", "3600"],
            }],
        },
    })
}

/// Whether a watched pod counts as running: phase `Running` or its
/// container in state `running`.
fn pod_running(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        || status
            .container_statuses
            .iter()
            .flatten()
            .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

/// The busybox OCI archive, built once by `scripts/build-busybox-image.sh`.
fn build_image(script: &Path, dir: &Path) -> Result<PathBuf> {
    let out = dir.join("busybox.tar");
    run_quiet(
        Command::new("bash")
            .arg(script)
            .arg(&out)
            .arg(IMAGE.trim_start_matches("docker.io/library/")),
    )
    .context("building the busybox image")?;
    Ok(out)
}

// ------------------------------------------------------------ skiff

/// A running `skiff server` with its temp data dir. Dropping it kills the
/// server and sweeps away anything its agent left: containers, shims,
/// mounts, cgroups, the data dir.
struct Skiff {
    child: Option<Child>,
    dir: TempDir,
    uids: Vec<String>,
}

impl Skiff {
    fn data(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    /// The runc runtime's root (`DATA/agent/containers`).
    fn runtime_root(&self) -> PathBuf {
        self.data().join("agent").join("containers")
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Shim processes of this server: `SKIFF shim ... --bundle DATA/...`.
    fn shims(&self) -> Vec<u32> {
        let data = self.data().display().to_string();
        procs_matching(|argv| {
            argv.get(1).map(String::as_str) == Some("shim")
                && argv.iter().any(|a| a.starts_with(&data))
        })
        .into_iter()
        .map(|(p, _)| p)
        .collect()
    }

    /// Container bundles, sandboxes, shims and mounts the agent still has.
    fn node_leftovers(&self) -> (usize, usize, usize, usize) {
        let root = self.runtime_root();
        (
            dir_entries(&root.join("containers")).len(),
            dir_entries(&root.join("sandboxes")).len(),
            self.shims().len(),
            mounts_under(&self.dir.0).len(),
        )
    }

    /// Pod cgroups still present (per hierarchy).
    fn cgroup_leftovers(&self) -> usize {
        self.uids
            .iter()
            .map(|u| cgroup_dirs(&format!("skiff/pod{u}")).len())
            .sum()
    }

    /// Stops the server gracefully (SIGTERM, up to 5 s).
    fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let _ = run_quiet(
            Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string()),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes everything; returns what had to be removed.
    fn sweep(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let root = self.runtime_root();
        let containers = dir_entries(&root.join("containers"));
        for c in &containers {
            if let Some(id) = c.file_name() {
                let _ = run_quiet(
                    Command::new("runc")
                        .arg("--root")
                        .arg(root.join("runc"))
                        .args(["delete", "--force"])
                        .arg(id),
                );
            }
        }
        let shims = self.shims();
        kill9(&shims);
        // Pod uids from the bundles too, in case the creates were not all answered.
        let mut uids = self.uids.clone();
        for c in &containers {
            if let Ok(meta) = std::fs::read(c.join("meta.json"))
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&meta)
                && let Some(u) = v["labels"]["io.kubernetes.pod.uid"].as_str()
            {
                uids.push(u.to_string());
            }
        }
        uids.sort();
        uids.dedup();
        let mut cgroups = 0;
        for u in &uids {
            for d in cgroup_dirs(&format!("skiff/pod{u}")) {
                remove_cgroup_tree(&d);
                cgroups += 1;
            }
        }
        let mounts = unmount_under(&self.dir.0);
        format!(
            "{} containers, {} shims, {} pod cgroups, {} mounts",
            containers.len(),
            shims.len(),
            cgroups,
            mounts
        )
    }
}

impl Drop for Skiff {
    fn drop(&mut self) {
        let _ = self.sweep();
    }
}

async fn kube_client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(kube::Client::try_from(config)?)
}

/// Starts `skiff server` on `dir` (the image already imported) and waits
/// for `/readyz` and a Ready node. Returns the client and the time to Ready.
async fn start_skiff(opts: &Opts, skiff: &mut Skiff) -> Result<(kube::Client, Duration)> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let log = std::fs::File::create(skiff.dir.0.join("server.log"))?;
    let t0 = Instant::now();
    let child = Command::new(&opts.skiff)
        .arg("server")
        .arg("--data-dir")
        .arg(skiff.data())
        .args(["--bind-address", "127.0.0.1"])
        .args(["--https-listen-port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("spawning skiff server")?;
    skiff.child = Some(child);
    let kubeconfig = skiff.data().join("kubeconfig.yaml");
    let mut client = None;
    let deadline = t0 + Duration::from_secs(30);
    loop {
        if let Some(c) = skiff.child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            let out = std::fs::read_to_string(skiff.dir.0.join("server.log")).unwrap_or_default();
            bail!("skiff server exited ({status}):\n{out}");
        }
        if Instant::now() > deadline {
            bail!("skiff server: no Ready node within 30 s");
        }
        if client.is_none() && kubeconfig.exists() {
            client = kube_client(&kubeconfig).await.ok();
        }
        if let Some(c) = &client {
            let nodes: Api<Node> = Api::all(c.clone());
            if let Ok(list) = nodes.list(&ListParams::default()).await
                && list.items.iter().any(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
            {
                return Ok((c.clone(), t0.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the benchmark saw of one pod.
#[derive(Debug, Clone, Default)]
struct PodTimes {
    uid: String,
    post_sent: Option<(Instant, SystemTime)>,
    created: Option<(Instant, SystemTime)>,
    scheduled: Option<(Instant, SystemTime)>,
    running: Option<(Instant, SystemTime)>,
    delete_sent: Option<Instant>,
    deleted: Option<Instant>,
}

/// One observation from the watch.
enum Seen {
    Scheduled(String),
    Running(String),
    Deleted(String),
    Error(String),
}

/// Watches the bench namespace from `rv` and forwards observations, each
/// stamped when the event was decoded.
async fn watch_pods(
    client: kube::Client,
    rv: String,
    tx: tokio::sync::mpsc::UnboundedSender<(Seen, Instant, SystemTime)>,
) {
    let api: Api<Pod> = Api::namespaced(client, NS);
    let stream = match api.watch(&WatchParams::default().timeout(290), &rv).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send((
                Seen::Error(format!("watch: {e}")),
                Instant::now(),
                SystemTime::now(),
            ));
            return;
        }
    };
    let mut stream = std::pin::pin!(stream);
    while let Some(ev) = stream.next().await {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
        let seen: Vec<Seen> = match ev {
            Ok(WatchEvent::Added(p)) | Ok(WatchEvent::Modified(p)) => {
                let mut v = Vec::new();
                if p.spec.as_ref().is_some_and(|s| s.node_name.is_some()) {
                    v.push(Seen::Scheduled(name(&p)));
                }
                if pod_running(&p) {
                    v.push(Seen::Running(name(&p)));
                }
                v
            }
            Ok(WatchEvent::Deleted(p)) => vec![Seen::Deleted(name(&p))],
            Ok(WatchEvent::Bookmark(_)) => Vec::new(),
            Ok(WatchEvent::Error(e)) => vec![Seen::Error(format!("watch error: {e:?}"))],
            Err(e) => vec![Seen::Error(format!("watch: {e}"))],
        };
        for s in seen {
            if tx.send((s, now, wall)).is_err() {
                return;
            }
        }
    }
    let _ = tx.send((
        Seen::Error("watch ended".into()),
        Instant::now(),
        SystemTime::now(),
    ));
}

/// Per-phase timings of one pod from the agent's files (realtime clock).
#[derive(Debug, Clone, Default)]
struct DiskTimes {
    /// `sandbox.json` written: namespaces made.
    sandbox_done: Option<SystemTime>,
    /// `meta.json` written: container creation begins.
    create_begin: Option<SystemTime>,
    /// `shim-state.json` written: `runc create` done.
    created: Option<SystemTime>,
    /// The time in the `started` file: `runc start` begins.
    start_begin: Option<SystemTime>,
}

/// Reads the agent's sandbox and container files, by pod uid.
fn disk_times(runtime_root: &Path) -> HashMap<String, DiskTimes> {
    let mut out: HashMap<String, DiskTimes> = HashMap::new();
    let uid_of = |json: &Path| -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(json).ok()?).ok()?;
        v["labels"]["io.kubernetes.pod.uid"]
            .as_str()
            .map(str::to_string)
    };
    for sb in dir_entries(&runtime_root.join("sandboxes")) {
        let f = sb.join("sandbox.json");
        if let Some(uid) = uid_of(&f) {
            out.entry(uid).or_default().sandbox_done = mtime(&f);
        }
    }
    for c in dir_entries(&runtime_root.join("containers")) {
        let meta = c.join("meta.json");
        let Some(uid) = uid_of(&meta) else { continue };
        let t = out.entry(uid).or_default();
        t.create_begin = mtime(&meta);
        t.created = mtime(&c.join("shim-state.json"));
        t.start_begin = std::fs::read_to_string(c.join("started"))
            .ok()
            .and_then(|s| s.trim().parse::<jiff::Timestamp>().ok())
            .map(SystemTime::from);
    }
    out
}

/// Results of the skiff run.
#[derive(Default)]
struct SkiffResult {
    startup_ms: Vec<f64>,
    running: usize,
    rss_idle: f64,
    rss_pods: f64,
    shim_rss_total: f64,
    shims: usize,
    cleanup_api_ms: f64,
    cleanup_node_ms: f64,
}

async fn run_skiff(opts: &Opts, image: &Path, skiff: &mut Skiff) -> Result<SkiffResult> {
    let mut r = SkiffResult::default();
    run_quiet(
        Command::new(&opts.skiff)
            .args(["image", "import"])
            .arg(image)
            .arg("--data-dir")
            .arg(skiff.data()),
    )
    .context("skiff image import")?;
    let (client, ready) = start_skiff(opts, skiff).await?;
    println!(
        "skiff: server up, node Ready {:.0} ms after spawn",
        ms(ready)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let server_pid = skiff.pid();
    r.rss_idle = rss_mib(server_pid)?;
    println!(
        "rss_server_idle: {:.1} MiB (2 s after node Ready)",
        r.rss_idle
    );

    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))?,
    )
    .await
    .context("creating the namespace")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    // Open the pooled connections before the clock starts.
    let warm: Vec<_> = (0..opts.clients)
        .map(|_| {
            let pods = pods.clone();
            tokio::spawn(async move { pods.list(&ListParams::default().limit(1)).await })
        })
        .collect();
    let mut rv = String::new();
    for w in warm {
        let list = w.await??;
        rv = list.metadata.resource_version.unwrap_or_default();
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = tokio::spawn(watch_pods(client.clone(), rv, tx));
    // Let the watch reach the server before the first create.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let names: Vec<String> = (0..opts.pods).map(|i| format!("pod-{i:03}")).collect();
    let mut times: BTreeMap<String, PodTimes> = names
        .iter()
        .map(|n| (n.clone(), PodTimes::default()))
        .collect();
    let cpu0 = cpu_ms(server_pid);
    let child_cpu0 = child_cpu_ms(server_pid);
    let t_start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let names_arc = Arc::new(names.clone());
    let mut workers = Vec::new();
    for _ in 0..opts.clients {
        let (next, names, pods) = (next.clone(), names_arc.clone(), pods.clone());
        let policy = opts.restart_policy.clone();
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(name) = names.get(i) else { break };
                let pod: Pod = serde_json::from_value(pod_json(name, &policy))?;
                let sent = (Instant::now(), SystemTime::now());
                let created = pods
                    .create(&PostParams::default(), &pod)
                    .await
                    .with_context(|| format!("creating {name}"))?;
                let done = (Instant::now(), SystemTime::now());
                out.push((
                    name.clone(),
                    created.metadata.uid.unwrap_or_default(),
                    sent,
                    done,
                ));
            }
            anyhow::Ok(out)
        }));
    }
    for w in workers {
        for (name, uid, sent, done) in w.await?? {
            skiff.uids.push(uid.clone());
            let t = times.get_mut(&name).expect("named pod");
            t.uid = uid;
            t.post_sent = Some(sent);
            t.created = Some(done);
        }
    }
    let creates_ms = ms(t_start.elapsed());
    println!(
        "skiff: {} pods created by {} clients in {creates_ms:.1} ms",
        opts.pods, opts.clients
    );

    // Wait for every pod to be Running.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(opts.timeout_s);
    let mut watch_errors = Vec::new();
    while r.running < opts.pods {
        let Ok(ev) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            break;
        };
        let Some((seen, now, wall)) = ev else { break };
        match seen {
            Seen::Scheduled(n) => {
                if let Some(t) = times.get_mut(&n) {
                    t.scheduled.get_or_insert((now, wall));
                }
            }
            Seen::Running(n) => {
                if let Some(t) = times.get_mut(&n)
                    && t.running.is_none()
                {
                    t.running = Some((now, wall));
                    r.running += 1;
                }
            }
            Seen::Deleted(_) => {}
            Seen::Error(e) => watch_errors.push(e),
        }
    }
    let all_running_ms = ms(t_start.elapsed());
    let startup_cpu = cpu_ms(server_pid) - cpu0;
    let startup_child_cpu = child_cpu_ms(server_pid) - child_cpu0;
    for e in watch_errors.iter().take(5) {
        println!("  {e}");
    }
    r.startup_ms = sorted(
        times
            .values()
            .filter_map(|t| Some(ms(t.running?.0.duration_since(t.post_sent?.0))))
            .collect(),
    );
    println!(
        "skiff: {}/{} pods Running; last one {all_running_ms:.1} ms after the first POST; server+agent CPU meanwhile {startup_cpu:.0} ms, its reaped children (runc, unshare) {startup_child_cpu:.0} ms",
        r.running, opts.pods
    );
    println!(
        "pod_startup (POST sent -> Running seen on the watch): {}   goal p50 <= {GOAL_P50_MS} ms [{}], p99 <= {GOAL_P99_MS} ms [{}]",
        summary(&r.startup_ms),
        verdict(percentile(&r.startup_ms, 50.0), GOAL_P50_MS, true),
        verdict(percentile(&r.startup_ms, 99.0), GOAL_P99_MS, true),
    );
    print_phases(&times, &disk_times(&skiff.runtime_root()));

    // Memory with the pods running.
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.rss_pods = rss_mib(server_pid)?;
    let shims = skiff.shims();
    r.shims = shims.len();
    r.shim_rss_total = shims.iter().filter_map(|p| rss_mib(*p).ok()).sum();
    println!(
        "rss_server_{}pods: {:.1} MiB (server + agent, containers and shims excluded)   goal <= {GOAL_RSS_100_MB} MB [{}]",
        opts.pods,
        r.rss_pods,
        verdict(r.rss_pods, GOAL_RSS_100_MB, true)
    );
    println!(
        "shims: {} processes, RSS total {:.1} MiB, {:.2} MiB per shim",
        r.shims,
        r.shim_rss_total,
        r.shim_rss_total / r.shims.max(1) as f64
    );

    // Delete them all.
    let t_del = Instant::now();
    let dp = DeleteParams {
        grace_period_seconds: Some(opts.delete_grace as u32),
        ..DeleteParams::default()
    };
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..opts.clients {
        let (next, names, pods, dp) = (next.clone(), names_arc.clone(), pods.clone(), dp.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(name) = names.get(i) else { break };
                pods.delete(name, &dp)
                    .await
                    .with_context(|| format!("deleting {name}"))?;
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    for t in times.values_mut() {
        t.delete_sent = Some(t_del);
    }
    let deletes_ms = ms(t_del.elapsed());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut gone = 0;
    while gone < opts.pods {
        let Ok(Some((seen, now, _))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            break;
        };
        if let Seen::Deleted(n) = seen
            && let Some(t) = times.get_mut(&n)
            && t.deleted.is_none()
        {
            t.deleted = Some(now);
            gone += 1;
        }
    }
    r.cleanup_api_ms = times
        .values()
        .filter_map(|t| t.deleted)
        .max()
        .map_or(f64::NAN, |d| ms(d.duration_since(t_del)));
    if gone < opts.pods {
        println!(
            "cleanup: only {gone}/{} pods gone from the API within 90 s",
            opts.pods
        );
        r.cleanup_api_ms = f64::NAN;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut left = skiff.node_leftovers();
    while left != (0, 0, 0, 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = skiff.node_leftovers();
    }
    r.cleanup_node_ms = if left == (0, 0, 0, 0) {
        ms(t_del.elapsed())
    } else {
        f64::NAN
    };
    println!(
        "cleanup (DELETE gracePeriodSeconds={} of all {}, sent in {deletes_ms:.1} ms): all gone from the API after {:.1} ms; node clean (no bundles, sandboxes, shims, mounts) after {:.1} ms{}",
        opts.delete_grace,
        opts.pods,
        r.cleanup_api_ms,
        r.cleanup_node_ms,
        if left == (0, 0, 0, 0) {
            String::new()
        } else {
            format!(
                "; still left after 60 s: {} bundles, {} sandboxes, {} shims, {} mounts",
                left.0, left.1, left.2, left.3
            )
        }
    );
    watcher.abort();
    let cg = skiff.cgroup_leftovers();
    skiff.stop();
    let swept = skiff.sweep();
    println!(
        "skiff: server stopped; pod cgroup dirs the agent left: {cg}; the bench swept: {swept}"
    );
    Ok(r)
}

/// Prints the median and p99 of each phase of the pods' start-up.
fn print_phases(times: &BTreeMap<String, PodTimes>, disk: &HashMap<String, DiskTimes>) {
    type Phase = (&'static str, Vec<f64>);
    let mut phases: Vec<Phase> = [
        "POST sent -> 201 (API create)",
        "201 -> nodeName seen on watch (self-assign binding)",
        "nodeName seen -> sandbox.json (agent picks pod up, namespaces)",
        "sandbox.json -> meta.json (volumes, image, container config)",
        "meta.json -> shim-state.json (rootfs overlay, shim, runc create)",
        "shim-state.json -> started (agent sees created, calls start)",
        "started -> Running seen on watch (runc start, status, API, watch)",
    ]
    .into_iter()
    .map(|n| (n, Vec::new()))
    .collect();
    for t in times.values() {
        let d = disk.get(&t.uid).cloned().unwrap_or_default();
        let points = [
            t.post_sent.map(|p| p.1),
            t.created.map(|p| p.1),
            t.scheduled.map(|p| p.1),
            d.sandbox_done,
            d.create_begin,
            d.created,
            d.start_begin,
            t.running.map(|p| p.1),
        ];
        for (i, ph) in phases.iter_mut().enumerate() {
            if let (Some(a), Some(b)) = (points[i], points[i + 1]) {
                ph.1.push(ms_between(a, b));
            }
        }
    }
    println!(
        "skiff start-up phases per pod (wall clock; file mtimes from the agent's runtime dir):"
    );
    for (name, v) in phases {
        let v = sorted(v);
        println!(
            "  {name:<68} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  (n={})",
            percentile(&v, 50.0),
            percentile(&v, 99.0),
            percentile(&v, 100.0),
            v.len()
        );
    }
}

// ------------------------------------------------------------ podman

/// A private podman set-up (config, storage, run and tmp dirs) under a temp
/// dir. Dropping it removes every pod it made, their processes, mounts and
/// cgroups, and the dir.
struct Podman {
    dir: TempDir,
    pod_ids: Vec<String>,
    /// `libpod_parent` cgroup dirs that existed before the run (kept).
    parents_before: Vec<PathBuf>,
}

impl Podman {
    fn new() -> Result<Podman> {
        let dir = TempDir::new("podman")?;
        let d = dir.0.display().to_string();
        for sub in ["root", "run", "tmp", "net"] {
            std::fs::create_dir_all(dir.0.join(sub))?;
        }
        std::fs::write(
            dir.0.join("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
                 log_driver = \"k8s-file\"\n\
                 [engine]\n\
                 runtime = \"runc\"\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"none\"\n\
                 lock_type = \"file\"\n\
                 tmp_dir = \"{d}/tmp\"\n\
                 volume_path = \"{d}/root/volumes\"\n\
                 static_dir = \"{d}/root/libpod\"\n\
                 [network]\n\
                 network_config_dir = \"{d}/net\"\n"
            ),
        )?;
        std::fs::write(
            dir.0.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/run\"\n"
            ),
        )?;
        Ok(Podman {
            dir,
            pod_ids: Vec::new(),
            parents_before: cgroup_dirs("libpod_parent"),
        })
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.0.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.0.join("storage.conf"))
            .env("TMPDIR", self.dir.0.join("tmp"))
            .stdin(Stdio::null());
        c
    }

    /// `podman kube play` of one pod; returns the pod id.
    fn play(&mut self, name: &str, policy: &str) -> Result<String> {
        let file = self.dir.0.join(format!("{name}.yaml"));
        std::fs::write(&file, serde_json::to_vec_pretty(&pod_json(name, policy))?)?;
        let out = self
            .cmd()
            .args(["kube", "play", "--network", "none"])
            .arg(&file)
            .output()
            .context("running podman kube play")?;
        // Pod: \n <id> \n Container: ...
        let text = String::from_utf8_lossy(&out.stdout);
        let id = parse_play_pod_id(&text);
        if let Some(id) = &id {
            self.pod_ids.push(id.clone());
        }
        if !out.status.success() {
            bail!(
                "podman kube play {name}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        id.with_context(|| format!("podman kube play {name}: no pod id in {text:?}"))
    }

    fn pod_state(&self, id: &str) -> String {
        self.cmd()
            .args(["pod", "inspect", "--format", "{{.State}}", id])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    fn sweep(&mut self) {
        let _ = run_quiet(
            self.cmd()
                .args(["pod", "rm", "--all", "--force", "--time", "0"]),
        );
        let d = self.dir.0.display().to_string();
        let procs: Vec<u32> = procs_matching(|argv| argv.iter().any(|a| a.contains(&d)))
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        kill9(&procs);
        for id in &self.pod_ids {
            for cg in cgroup_dirs(&format!("libpod_parent/{id}")) {
                remove_cgroup_tree(&cg);
            }
        }
        for parent in cgroup_dirs("libpod_parent") {
            if !self.parents_before.contains(&parent) {
                let _ = std::fs::remove_dir(&parent);
            }
        }
        unmount_under(&self.dir.0);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.sweep();
    }
}

/// The pod id in the output of `podman kube play`.
fn parse_play_pod_id(out: &str) -> Option<String> {
    let mut lines = out.lines().map(str::trim);
    lines.find(|l| *l == "Pod:")?;
    let id = lines.next()?;
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

struct PodmanResult {
    startup_ms: Vec<f64>,
    cleanup_ms: f64,
}

fn run_podman(opts: &Opts, image: &Path, podman: &mut Podman) -> Result<PodmanResult> {
    run_quiet(podman.cmd().arg("load").arg("-i").arg(image)).context("podman load")?;
    // Warm-up (untimed): podman builds its pause image on the first pod.
    let warm = podman.play("warmup", &opts.restart_policy)?;
    run_quiet(
        podman
            .cmd()
            .args(["pod", "rm", "--force", "--time", "0", &warm]),
    )?;
    let mut startup = Vec::new();
    for i in 0..opts.podman_pods {
        check_cancel()?;
        let name = format!("pod-{i:03}");
        let t = Instant::now();
        let id = podman.play(&name, &opts.restart_policy)?;
        let took = ms(t.elapsed());
        let state = podman.pod_state(&id);
        if state != "Running" {
            bail!("podman pod {name} is {state:?} after kube play");
        }
        startup.push(took);
    }
    let startup = sorted(startup);
    println!(
        "podman kube play (one pod at a time, process start -> exit, pod Running): {}",
        summary(&startup)
    );
    // One pod at a time: each `pod rm` stops its pod's containers in turn
    // (several seconds a pod), so one command for all would pass the 60 s limit.
    let t = Instant::now();
    let grace = opts.delete_grace.to_string();
    for id in podman.pod_ids.clone().iter().filter(|id| **id != warm) {
        check_cancel()?;
        run_quiet(
            podman
                .cmd()
                .args(["pod", "rm", "--force", "--time", &grace, id.as_str()]),
        )
        .context("podman pod rm")?;
    }
    let cleanup_ms = ms(t.elapsed());
    println!(
        "podman cleanup: pod rm --force --time {} of {} pods, one after the other: {cleanup_ms:.1} ms",
        opts.delete_grace, opts.podman_pods
    );
    Ok(PodmanResult {
        startup_ms: startup,
        cleanup_ms,
    })
}

// -------------------------------------------------------------- runc

/// Bare runc containers under a temp dir; dropping it deletes them all.
struct Runc {
    dir: TempDir,
    ids: Vec<String>,
    cgroup: String,
}

impl Runc {
    fn state_root(&self) -> PathBuf {
        self.dir.0.join("state")
    }

    fn runc(&self) -> Command {
        let mut c = Command::new("runc");
        c.arg("--root").arg(self.state_root());
        c
    }

    fn sweep(&mut self) {
        for id in &self.ids {
            let _ = run_quiet(self.runc().args(["delete", "--force", id]));
        }
        for d in cgroup_dirs(&self.cgroup) {
            remove_cgroup_tree(&d);
        }
        unmount_under(&self.dir.0);
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        self.sweep();
    }
}

/// Unpacks the image's single layer from the OCI archive into `rootfs`.
fn unpack_rootfs(archive: &Path, work: &Path, rootfs: &Path) -> Result<()> {
    let oci = work.join("oci");
    std::fs::create_dir_all(&oci)?;
    std::fs::create_dir_all(rootfs)?;
    run_quiet(
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(&oci),
    )?;
    let blob = |digest: &str| -> Result<PathBuf> {
        let hex = digest.strip_prefix("sha256:").context("digest")?;
        Ok(oci.join("blobs").join("sha256").join(hex))
    };
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(oci.join("index.json"))?)?;
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(
        index["manifests"][0]["digest"]
            .as_str()
            .context("index digest")?,
    )?)?)?;
    for layer in manifest["layers"].as_array().context("layers")? {
        let path = blob(layer["digest"].as_str().context("layer digest")?)?;
        run_quiet(
            Command::new("tar")
                .arg("-xzf")
                .arg(&path)
                .arg("-C")
                .arg(rootfs),
        )?;
    }
    Ok(())
}

/// Turns `runc spec`'s default into the benchmark's container.
fn runc_config(mut spec: serde_json::Value, rootfs: &Path, cgroup: &str) -> serde_json::Value {
    spec["process"]["terminal"] = serde_json::json!(false);
    spec["process"]["args"] = serde_json::json!(["sleep", "3600"]);
    spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    spec["linux"]["cgroupsPath"] = serde_json::json!(cgroup);
    spec
}

struct RuncResult {
    startup_ms: Vec<f64>,
    cleanup_ms: f64,
}

fn run_runc(opts: &Opts, image: &Path, runc: &mut Runc) -> Result<RuncResult> {
    let rootfs = runc.dir.0.join("rootfs");
    unpack_rootfs(image, &runc.dir.0, &rootfs)?;
    let bundle = runc.dir.0.join("bundle");
    std::fs::create_dir_all(&bundle)?;
    run_quiet(
        Command::new("runc")
            .arg("spec")
            .arg("--bundle")
            .arg(&bundle),
    )?;
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
    let mut startup = Vec::new();
    for i in 0..opts.runc_runs {
        check_cancel()?;
        let id = format!("skiff-bench-{}-{i}", std::process::id());
        let cfg = runc_config(spec.clone(), &rootfs, &format!("/{}/{id}", runc.cgroup));
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(&cfg)?)?;
        let t = Instant::now();
        runc.ids.push(id.clone());
        run_quiet(
            runc.runc()
                .args(["create", "--bundle"])
                .arg(&bundle)
                .arg(&id),
        )?;
        run_quiet(runc.runc().args(["start", &id]))?;
        let took = ms(t.elapsed());
        let out = runc.runc().args(["state", &id]).output()?;
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if state["status"] != "running" {
            bail!("runc container {id} is {} after start", state["status"]);
        }
        startup.push(took);
    }
    let startup = sorted(startup);
    println!(
        "runc create + start (one at a time, shared read-only rootfs): {}",
        summary(&startup)
    );
    let t = Instant::now();
    let ids = std::mem::take(&mut runc.ids);
    for id in &ids {
        run_quiet(runc.runc().args(["delete", "--force", id]))?;
    }
    let cleanup_ms = ms(t.elapsed());
    println!(
        "runc cleanup: delete --force of {} containers: {cleanup_ms:.1} ms",
        ids.len()
    );
    Ok(RuncResult {
        startup_ms: startup,
        cleanup_ms,
    })
}

// ------------------------------------------------------------------- run

async fn run(opts: Opts) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| parse_memtotal_gib(&s))
        .unwrap_or(f64::NAN);
    println!(
        "skiff-bench-pods: {} on {cores} cores, {mem_gib:.1} GiB; pods={} clients={} restartPolicy={} podman_pods={} runc_runs={}",
        opts.skiff.display(),
        opts.pods,
        opts.clients,
        opts.restart_policy,
        opts.podman_pods,
        opts.runc_runs
    );
    if !opts.skiff.exists() {
        bail!(
            "{} does not exist (build with cargo build --release -p skiff)",
            opts.skiff.display()
        );
    }
    let work = TempDir::new("image")?;
    let image = build_image(&opts.image_script, &work.0)?;

    let mut skiff = Skiff {
        child: None,
        dir: TempDir::new("skiff")?,
        uids: Vec::new(),
    };
    let t = Instant::now();
    let s = run_skiff(&opts, &image, &mut skiff).await;
    drop(skiff);
    let s = s?;
    println!("skiff phase took {:.1} s", t.elapsed().as_secs_f64());

    let p = if opts.skip_podman {
        None
    } else {
        let t = Instant::now();
        let (o, img) = (opts.clone(), image.clone());
        let r = tokio::task::spawn_blocking(move || {
            let mut podman = Podman::new()?;
            run_podman(&o, &img, &mut podman)
        })
        .await?;
        println!("podman phase took {:.1} s", t.elapsed().as_secs_f64());
        Some(r?)
    };
    let rc = if opts.skip_runc {
        None
    } else {
        let (o, img) = (opts.clone(), image.clone());
        let r = tokio::task::spawn_blocking(move || {
            let mut runc = Runc {
                dir: TempDir::new("runc")?,
                ids: Vec::new(),
                cgroup: format!("skiff-bench-runc-{}", std::process::id()),
            };
            run_runc(&o, &img, &mut runc)
        })
        .await?;
        Some(r?)
    };

    let p50 = percentile(&s.startup_ms, 50.0);
    let p99 = percentile(&s.startup_ms, 99.0);
    let podman_p50 = p
        .as_ref()
        .map_or(f64::NAN, |p| percentile(&p.startup_ms, 50.0));
    let podman_p99 = p
        .as_ref()
        .map_or(f64::NAN, |p| percentile(&p.startup_ms, 99.0));
    let podman_cleanup = p.as_ref().map_or(f64::NAN, |p| p.cleanup_ms);
    let runc_p50 = rc
        .as_ref()
        .map_or(f64::NAN, |r| percentile(&r.startup_ms, 50.0));
    let runc_p99 = rc
        .as_ref()
        .map_or(f64::NAN, |r| percentile(&r.startup_ms, 99.0));
    let runc_cleanup = rc.as_ref().map_or(f64::NAN, |r| r.cleanup_ms);
    let ratio = podman_p50 / p50;
    println!(
        "ratio: podman p50 / skiff p50 = {ratio:.2}   goal >= {GOAL_RATIO} [{}]",
        verdict(ratio, GOAL_RATIO, false)
    );
    if s.running < opts.pods {
        println!(
            "NOTE: only {}/{} skiff pods reached Running within {} s; percentiles are over those",
            s.running, opts.pods, opts.timeout_s
        );
    }
    println!(
        "machine cores={cores} mem_gib={mem_gib:.0} pods={} pods_running={} pod_startup_p50_ms={p50:.1} \
         pod_startup_p99_ms={p99:.1} pod_startup_min_ms={:.1} pod_startup_max_ms={:.1} \
         podman_p50_ms={podman_p50:.1} podman_p99_ms={podman_p99:.1} runc_p50_ms={runc_p50:.1} \
         runc_p99_ms={runc_p99:.1} ratio_vs_podman={ratio:.2} rss_server_idle_mb={:.1} \
         rss_server_100pods_mb={:.1} shim_count={} shim_rss_total_mb={:.1} shim_rss_per_mb={:.2} \
         cleanup_api_ms={:.0} cleanup_node_ms={:.0} podman_cleanup_ms={podman_cleanup:.0} \
         runc_cleanup_ms={runc_cleanup:.0}",
        opts.pods,
        s.running,
        percentile(&s.startup_ms, 0.0),
        percentile(&s.startup_ms, 100.0),
        s.rss_idle,
        s.rss_pods,
        s.shims,
        s.shim_rss_total,
        s.shim_rss_total / s.shims.max(1) as f64,
        s.cleanup_api_ms,
        s.cleanup_node_ms,
    );
    if s.running < opts.pods {
        bail!("not every skiff pod reached Running");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let default_skiff = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("skiff")))
        .unwrap_or_else(|| PathBuf::from("skiff"));
    let default_script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/build-busybox-image.sh")
        .components()
        .collect::<PathBuf>();
    let opts = Opts::parse(&args, default_skiff, default_script)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        // Dropping `run` on a signal or the overall time limit drops every
        // guard it holds, which kills and removes what it made.
        // Blocking baselines see CANCEL and return, dropping their guards;
        // dropping the runtime waits for them.
        let r = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(480), run(opts)) => {
                r.map_err(|_| anyhow!("benchmark did not finish within 8 minutes")).and_then(|r| r)
            }
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
            _ = term.recv() => Err(anyhow!("terminated")),
        };
        if r.is_err() {
            CANCEL.store(true, Ordering::Relaxed);
        }
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        for (p, want) in [(50.0, 50.0), (99.0, 99.0), (100.0, 100.0), (0.0, 1.0)] {
            assert_eq!(percentile(&v, p), want, "p{p}");
        }
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(percentile(&sorted(vec![3.0, 1.0, 2.0]), 50.0), 2.0);
    }

    #[test]
    fn proc_files() {
        let status = "Name:\tskiff\nVmRSS:\t   20480 kB\n";
        assert_eq!(parse_vmrss_mib(status), Some(20.0));
        assert_eq!(parse_vmrss_mib("Name:\tx\n"), None);
        let stat = "123 (sk iff) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        let stat2 = "1 (x) S 1 2 3 4 5 6 7 8 9 10 250 50 7 3 20";
        assert_eq!(parse_child_cpu_ticks(stat2), Some(10));
        assert_eq!(
            parse_memtotal_gib("MemTotal:       25165824 kB\n"),
            Some(24.0)
        );
    }

    #[test]
    fn mountinfo_under_prefix_deepest_first() {
        let mi = "\
36 35 98:0 / /tmp/x rw - ext4 /dev/a rw
37 36 0:1 / /tmp/x/c/rootfs rw - overlay overlay rw
38 36 0:2 / /tmp/x/s/ns rw - ext4 /dev/a rw
39 35 0:3 / /tmp/xy rw - tmpfs t rw
40 35 0:4 / /tmp/x/with\\040space rw - tmpfs t rw
";
        let got = parse_mounts_under(mi, Path::new("/tmp/x"));
        let want: Vec<PathBuf> = [
            "/tmp/x/with space",
            "/tmp/x/c/rootfs",
            "/tmp/x/s/ns",
            "/tmp/x",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(got, want);
        assert!(parse_mounts_under(mi, Path::new("/nope")).is_empty());
    }

    #[test]
    fn play_output_pod_id() {
        let id = "a".repeat(64);
        let cases = [
            (
                format!("Pod:\n{id}\nContainer:\n{}\n", "b".repeat(64)),
                Some(id.clone()),
            ),
            ("Pod:\nnot-an-id\n".to_string(), None),
            ("Container:\nx\n".to_string(), None),
            (String::new(), None),
        ];
        for (out, want) in cases {
            assert_eq!(parse_play_pod_id(&out), want, "{out:?}");
        }
    }

    #[test]
    fn runc_config_edits() {
        let spec = serde_json::json!({
            "process": {"terminal": true, "args": ["sh"]},
            "root": {"path": "rootfs", "readonly": true},
            "linux": {"namespaces": [{"type": "pid"}]}
        });
        let c = runc_config(spec, Path::new("/r/rootfs"), "/g/c1");
        assert_eq!(c["process"]["terminal"], false);
        assert_eq!(c["process"]["args"], serde_json::json!(["sleep", "3600"]));
        assert_eq!(c["root"]["path"], "/r/rootfs");
        assert_eq!(c["linux"]["cgroupsPath"], "/g/c1");
        assert_eq!(c["linux"]["namespaces"][0]["type"], "pid");
    }

    #[test]
    fn pod_is_the_same_for_everyone() {
        let v = pod_json("p-1", "Always");
        assert_eq!(v["metadata"]["name"], "p-1");
        assert_eq!(v["spec"]["restartPolicy"], "Always");
        assert_eq!(v["spec"]["containers"][0]["image"], IMAGE);
        let pod: Pod = serde_json::from_value(v).unwrap();
        assert_eq!(
            pod.spec.unwrap().containers[0].command,
            Some(vec!["sleep".to_string(), "3600".to_string()])
        );
    }

    #[test]
    fn running_means_phase_or_container_running() {
        let pod = |status: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "status": status}))
                .unwrap()
        };
        let cases = [
            (serde_json::json!({}), false),
            (serde_json::json!({"phase": "Pending"}), false),
            (serde_json::json!({"phase": "Running"}), true),
            (
                serde_json::json!({"phase": "Pending", "containerStatuses": [{"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"running": {}}}]}),
                true,
            ),
            (
                serde_json::json!({"phase": "Pending", "containerStatuses": [{"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
                false,
            ),
        ];
        for (status, want) in cases {
            assert_eq!(pod_running(&pod(status.clone())), want, "{status}");
        }
    }

    #[test]
    fn flags() {
        let args = |s: &str| -> Vec<String> { s.split_whitespace().map(String::from).collect() };
        let (sk, sc) = (PathBuf::from("/x/skiff"), PathBuf::from("/s.sh"));
        let o = Opts::parse(&args(""), sk.clone(), sc.clone()).unwrap();
        assert_eq!((o.pods, o.clients, o.delete_grace), (100, 8, 1));
        assert_eq!(o.restart_policy, "Never");
        let o = Opts::parse(
            &args("--pods 10 --restart-policy Always --delete-grace 0 --skip-podman"),
            sk.clone(),
            sc.clone(),
        )
        .unwrap();
        assert_eq!((o.pods, o.delete_grace, o.skip_podman), (10, 0, true));
        assert_eq!(o.restart_policy, "Always");
        for bad in [
            "--pods",
            "--pods 0",
            "--restart-policy Sometimes",
            "--delete-grace -1",
            "--nope 1",
        ] {
            assert!(
                Opts::parse(&args(bad), sk.clone(), sc.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn temp_dir_removed_on_drop() {
        let d = TempDir::new("test").unwrap();
        let p = d.0.clone();
        std::fs::write(p.join("f"), "x").unwrap();
        drop(d);
        assert!(!p.exists());
    }
}
