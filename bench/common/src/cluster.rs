//! Running a skiff cluster for a benchmark: the busybox image, `skiff server`
//! started and waited for, polling with a liveness check, kubectl, SIGINT and
//! SIGTERM, and the cleanup of what runc and the agent's mounts leave behind.

use crate::{Proc, free_port, kube_client};
use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The script that builds the busybox image from the host's busybox, relative
/// to the repository root.
pub const BUSYBOX_SCRIPT: &str = "scripts/build-busybox-image.sh";

/// SIGINT or SIGTERM, whichever comes first.
pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    /// Starts listening for both (inside a tokio runtime).
    pub fn new() -> Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next signal: the error `interrupted` or `terminated`.
    pub async fn recv(&mut self) -> anyhow::Error {
        tokio::select! {
            _ = self.int.recv() => anyhow!("interrupted"),
            _ = self.term.recv() => anyhow!("terminated"),
        }
    }

    /// Runs `work` unless a signal comes first (then the signal's error, and
    /// `work` is dropped).
    pub async fn unless_signalled<T>(
        &mut self,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::select! {
            r = work => r,
            e = self.recv() => Err(e),
        }
    }

    /// Runs `work` for `limit` at most (then the error `benchmark did not
    /// finish within N s`), unless a signal comes first.
    pub async fn within<T>(
        &mut self,
        limit: Duration,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let timed = async {
            tokio::time::timeout(limit, work)
                .await
                .map_err(|_| anyhow!("benchmark did not finish within {} s", limit.as_secs()))?
        };
        self.unless_signalled(timed).await
    }

    /// Runs the orderly cleanup `work`; a signal cuts it short (what is left
    /// is then killed by the guards' drops and [`force_cleanup`]).
    pub async fn clean_up(&mut self, work: impl Future<Output = ()>) {
        tokio::select! {
            _ = work => {}
            _ = self.recv() => eprintln!("  cleanup interrupted: killing what is left"),
        }
    }
}

/// Runs `main` on a new multi-threaded tokio runtime with SIGINT and SIGTERM
/// caught into the [`Signals`] it is given.
pub fn block_on_with_signals<T, Fut>(main: impl FnOnce(Signals) -> Fut) -> Result<T>
where
    Fut: Future<Output = Result<T>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async { main(Signals::new()?).await })
}

/// Runs a command to completion: its stdout and stderr, or an error with them.
pub fn run_cmd(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{cmd:?}: {text}");
    }
    Ok(text)
}

/// `kubectl ARGS` with `KUBECONFIG`, not yet run: no stdin, killed on drop.
pub fn kubectl_cmd(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(kubectl);
    c.env("KUBECONFIG", kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// Runs kubectl to completion: its stdout, or an error with its stderr.
pub async fn kubectl(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let out = kubectl_cmd(kubectl, kubeconfig, args).output().await?;
    if !out.status.success() {
        bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fails unless the benchmark runs from the repository root (where
/// [`BUSYBOX_SCRIPT`] is).
pub fn check_repo_root() -> Result<()> {
    let script = Path::new(BUSYBOX_SCRIPT);
    if !script.exists() {
        bail!(
            "run from the repository root ({} not found)",
            script.display()
        );
    }
    Ok(())
}

/// Fails unless the binary `path` exists, saying how to build it.
pub fn check_built(path: &Path, how: &str) -> Result<()> {
    if !path.exists() {
        bail!("{} does not exist (build it: {how})", path.display());
    }
    Ok(())
}

/// Copies `skiff` to `dir/skiff` (the container shims run that file, which a
/// build must not replace while the benchmark runs), builds the busybox image
/// to `dir/busybox.tar` with [`BUSYBOX_SCRIPT`] and imports it into the data
/// dir `data`. The private copy's path.
pub fn private_skiff_with_busybox(skiff: &Path, dir: &Path, data: &Path) -> Result<PathBuf> {
    let copy = dir.join("skiff");
    std::fs::copy(skiff, &copy).context("copying skiff")?;
    let image = dir.join("busybox.tar");
    run_cmd(Command::new("bash").arg(BUSYBOX_SCRIPT).arg(&image))?;
    run_cmd(
        Command::new(&copy)
            .args(["image", "import"])
            .arg(&image)
            .arg("--data-dir")
            .arg(data),
    )?;
    Ok(copy)
}

/// Starts `skiff server EXTRA… --data-dir DATA` on 127.0.0.1 and a fresh
/// port, its output in `log`, and waits (60 s at most, every 20 ms) until its
/// kubeconfig names that port and it answers `/readyz`. The server, a client
/// and the port.
pub async fn start_server(
    skiff: &Path,
    data: &Path,
    log: &Path,
    extra: &[&OsStr],
) -> Result<(Proc, kube::Client, u16)> {
    let port = free_port()?;
    let mut server = Proc::spawn(
        Command::new(skiff)
            .arg("server")
            .args(extra)
            .arg("--data-dir")
            .arg(data)
            .args(["--bind-address", "127.0.0.1"])
            .args(["--https-listen-port", &port.to_string()]),
        log.to_path_buf(),
    )?;
    let kubeconfig = data.join("kubeconfig.yaml");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        server.check_alive("skiff server")?;
        if Instant::now() > deadline {
            bail!("skiff server not ready within 60 s");
        }
        if let Ok(text) = std::fs::read_to_string(&kubeconfig)
            && text.contains(&format!(":{port}"))
            && let Ok(c) = kube_client(&kubeconfig).await
            && c.request_text(http::Request::get("/readyz").body(Vec::new())?)
                .await
                .is_ok()
        {
            return Ok((server, c, port));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every `every` until it yields a value. Fails after
/// `timeout` (with the last error `check` gave), or as soon as `alive` fails
/// (a process the wait depends on has died).
pub async fn poll_until<T, A, F, Fut>(
    what: &str,
    every: Duration,
    timeout: Duration,
    mut alive: A,
    mut check: F,
) -> Result<T>
where
    A: FnMut() -> Result<()>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        alive()?;
        if Instant::now() > deadline {
            bail!(
                "{what}: not within {} s (last error: {last_err:?})",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(every).await;
    }
}

/// [`poll_until`] while the `skiff server` process `server` lives: fails as
/// soon as it has exited (with its log).
pub async fn poll_while_up<T, F, Fut>(
    what: &str,
    every: Duration,
    timeout: Duration,
    server: &mut Proc,
    check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let alive = || server.check_alive("skiff server");
    poll_until(what, every, timeout, alive, check).await
}

/// Waits (every 250 ms, `timeout` at most, while `alive`) until the pods of
/// `pods` are gone, so the agent has stopped their containers. Gives up
/// quietly: it is cleanup.
pub async fn wait_pods_gone(pods: &Api<Pod>, timeout: Duration, mut alive: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && alive() {
        match pods.list(&ListParams::default()).await {
            Ok(l) if l.items.is_empty() => break,
            Err(_) => break,
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Whether the pod's Ready condition is True.
pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether the pod's phase is Running.
pub fn pod_running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// Whether the node's Ready condition is True.
pub fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The mount points under `dir` in the text of `/proc/self/mountinfo`,
/// deepest first (the order they can be unmounted in).
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts
}

/// Whatever the orderly cleanup left: the runc containers of the state dir
/// `runc_root` are killed and deleted, mounts under `dir` (volumes, namespace
/// files) unmounted, lazily.
pub fn force_cleanup(runc_root: &Path, dir: &Path) {
    if runc_root.exists()
        && let Ok(out) = Command::new("runc")
            .arg("--root")
            .arg(runc_root)
            .args(["list", "-q"])
            .stderr(Stdio::null())
            .output()
    {
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            eprintln!("  cleanup: force-deleting runc container {id}");
            let _ = Command::new("runc")
                .arg("--root")
                .arg(runc_root)
                .args(["delete", "--force", id])
                .stderr(Stdio::null())
                .status();
        }
    }
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for m in mounts_under(&mountinfo, dir) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_deepest_first_and_only_under_dir() {
        let info = "22 1 0:21 / /proc rw - proc proc rw\n\
                    40 30 0:50 / /tmp/b-1/data/pods/x/vol rw - tmpfs tmpfs rw\n\
                    41 30 0:4 net:[1] /tmp/b-1/data/sandboxes/s/ns/net rw - nsfs nsfs rw\n\
                    42 30 0:51 / /tmp/b-1 rw - tmpfs tmpfs rw\n\
                    43 30 0:52 / /tmp/b-10/data rw - tmpfs tmpfs rw\n";
        let got = mounts_under(info, Path::new("/tmp/b-1"));
        let want = [
            "/tmp/b-1/data/sandboxes/s/ns/net",
            "/tmp/b-1/data/pods/x/vol",
            "/tmp/b-1",
        ]
        .map(PathBuf::from);
        assert_eq!(got, want, "a sibling with the same prefix is not under it");
        assert!(mounts_under("", Path::new("/tmp/b-1")).is_empty());
    }

    #[test]
    fn ready_conditions() {
        let pod = |v: serde_json::Value| -> Pod { serde_json::from_value(v).unwrap() };
        let node = |v: serde_json::Value| -> Node { serde_json::from_value(v).unwrap() };
        let cond = |status: &str| {
            serde_json::json!({"conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": status},
            ]})
        };
        assert!(pod_ready(&pod(serde_json::json!({"status": cond("True")}))));
        assert!(!pod_ready(&pod(
            serde_json::json!({"status": cond("False")})
        )));
        let running = pod(serde_json::json!({"status": {"phase": "Running"}}));
        assert!(pod_running(&running) && !pod_ready(&running));
        assert!(!pod_running(&pod(
            serde_json::json!({"status": {"phase": "Pending"}})
        )));
        assert!(!pod_ready(&pod(serde_json::json!({}))));
        assert!(!pod_running(&pod(serde_json::json!({}))));
        assert!(node_ready(&node(
            serde_json::json!({"status": cond("True")})
        )));
        assert!(!node_ready(&node(
            serde_json::json!({"status": cond("Unknown")})
        )));
        assert!(!node_ready(&node(serde_json::json!({}))));
    }

    #[test]
    fn commands_and_their_output() {
        let out = run_cmd(Command::new("sh").args(["-c", "echo out; echo err >&2"])).unwrap();
        assert_eq!(out, "out\nerr\n");
        let err = run_cmd(Command::new("sh").args(["-c", "echo why >&2; exit 3"])).unwrap_err();
        assert!(err.to_string().ends_with(": why\n"), "{err}");
        assert!(check_built(Path::new("/nonexistent/skiff"), "make it").is_err());
    }

    #[test]
    fn work_under_a_time_limit() {
        let got = block_on_with_signals(|mut signals| async move {
            let quick = signals
                .within(Duration::from_secs(5), async { Ok(7) })
                .await?;
            let slow = signals
                .within(
                    Duration::from_millis(10),
                    std::future::pending::<Result<()>>(),
                )
                .await
                .unwrap_err()
                .to_string();
            let passed = signals.unless_signalled(async { Ok("done") }).await?;
            let mut cleaned = false;
            signals.clean_up(async { cleaned = true }).await;
            Ok((quick, slow, passed, cleaned))
        })
        .unwrap();
        assert_eq!(
            got,
            (
                7,
                "benchmark did not finish within 0 s".to_string(),
                "done",
                true
            )
        );
    }

    #[tokio::test]
    async fn polling_stops_on_a_value_a_timeout_or_a_death() {
        let mut n = 0;
        let got = poll_until(
            "three",
            Duration::from_millis(1),
            Duration::from_secs(5),
            || Ok(()),
            || {
                n += 1;
                let v = (n == 3).then_some(n);
                async move { Ok(v) }
            },
        )
        .await
        .unwrap();
        assert_eq!(got, 3);
        let err = poll_until::<(), _, _, _>(
            "never",
            Duration::from_millis(1),
            Duration::ZERO,
            || Ok(()),
            || async { Err(anyhow!("boom")) },
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("never: not within 0 s") && err.contains("boom"),
            "{err}"
        );
        let err = poll_until::<(), _, _, _>(
            "never",
            Duration::from_millis(1),
            Duration::from_secs(5),
            || Err(anyhow!("skiff server exited")),
            || async { Ok(None) },
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "skiff server exited");
    }

    #[tokio::test]
    async fn polling_while_the_server_is_up() {
        let dir = crate::TempDir::new("bench-common-poll").unwrap();
        let mut up = Proc::spawn(Command::new("sleep").arg("30"), dir.0.join("up.log")).unwrap();
        let every = Duration::from_millis(1);
        let got = poll_while_up("now", every, Duration::from_secs(5), &mut up, || async {
            Ok(Some(1))
        })
        .await
        .unwrap();
        assert_eq!(got, 1);
        let mut gone = Proc::spawn(
            Command::new("sh").args(["-c", "echo bye; exit 3"]),
            dir.0.join("gone.log"),
        )
        .unwrap();
        let err = poll_while_up::<(), _, _>(
            "never",
            every,
            Duration::from_secs(30),
            &mut gone,
            || async { Ok(None) },
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("skiff server exited") && err.ends_with("bye\n"),
            "{err}"
        );
    }
}
