//! End-to-end tests of the runc runtime: real runc, real namespaces, real cgroups.
//!
//! They need root and runc; without them every test says so LOUDLY and passes.
//! Run with `--test-threads=1`.

use skiff_agent::runtime::runc::RuncRuntime;
use skiff_agent::runtime::{
    ContainerConfig, ContainerState, Mount, Process, Resources, Runtime, RuntimeError, Sandbox,
    SandboxConfig, Security, labels,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod runc_support;

const APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "cat", "head", "tail", "hostname", "httpd", "wget", "dd", "true", "ls",
];

/// A runtime on a temporary root, a busybox image in two layers, and a unique cgroup parent.
/// Dropping it removes every container, sandbox, mount and cgroup it made, even after a panic.
struct Env {
    tmp: tempfile::TempDir,
    rt: RuncRuntime,
    layers: Vec<PathBuf>,
    cgroup_root: String,
}

fn shim() -> Vec<String> {
    vec![env!("CARGO_BIN_EXE_skiff-shim").to_string()]
}

fn setup(name: &str) -> Option<Env> {
    if let Err(why) = RuncRuntime::check() {
        eprintln!("\n!!!!!!!! SKIPPING runc test {name}: {why} !!!!!!!!\n");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("layers/base");
    let top = tmp.path().join("layers/top");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "www"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", base.join("bin/busybox")).unwrap();
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", base.join("bin").join(a)).unwrap();
    }
    std::fs::write(base.join("etc/msg"), "base\n").unwrap();
    std::fs::write(base.join("etc/only-base"), "b\n").unwrap();
    std::fs::create_dir_all(top.join("etc")).unwrap();
    std::fs::create_dir_all(top.join("www")).unwrap();
    std::fs::write(top.join("etc/msg"), "top\n").unwrap();
    std::fs::write(top.join("www/index.html"), "pong\n").unwrap();
    let rt = RuncRuntime::new(tmp.path().join("root"), shim()).unwrap();
    Some(Env {
        tmp,
        rt,
        layers: vec![base, top],
        cgroup_root: format!("skiff-test-{}-{name}", std::process::id()),
    })
}

impl Env {
    fn sandbox_config(&self, uid: &str, host_network: bool) -> SandboxConfig {
        SandboxConfig {
            pod_uid: uid.into(),
            pod_name: format!("pod-{uid}"),
            pod_namespace: "default".into(),
            hostname: format!("host-{uid}"),
            host_network,
            attempt: 0,
            ports: Vec::new(),
        }
    }

    fn container(&self, id: &str, sandbox: &Sandbox, args: &[&str]) -> ContainerConfig {
        ContainerConfig {
            id: id.into(),
            sandbox: sandbox.clone(),
            labels: BTreeMap::from([
                (labels::CONTAINER_NAME.to_string(), format!("name-{id}")),
                (labels::SANDBOX_ID.to_string(), sandbox.id.clone()),
            ]),
            layers: self.layers.clone(),
            process: Process {
                args: args.iter().map(|s| s.to_string()).collect(),
                env: vec!["GREETING=hello".into()],
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

    async fn wait_exited(&self, id: &str, limit: Duration) -> ContainerState {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.rt.container(id).await.unwrap().state;
            if matches!(state, ContainerState::Exited { .. }) || Instant::now() > deadline {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn running_pid(&self, id: &str) -> u32 {
        match self.rt.container(id).await.unwrap().state {
            ContainerState::Running { pid, .. } => pid,
            other => panic!("{id} is not running: {other:?}"),
        }
    }

    async fn exec(&self, id: &str, cmd: &[&str]) -> String {
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        let out = self
            .rt
            .exec_sync(id, &cmd, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            out.exit_code,
            0,
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.display().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

impl Drop for Env {
    fn drop(&mut self) {
        runc_support::clean_up(&self.tmp.path().join("root"), &self.cgroup_root);
    }
}

#[tokio::test]
async fn sandboxes_are_created_listed_and_removed() {
    let Some(env) = setup("sandbox") else { return };
    let sb = env
        .rt
        .create_sandbox(&env.sandbox_config("u1", false))
        .await
        .unwrap();
    let host = env
        .rt
        .create_sandbox(&env.sandbox_config("u2", true))
        .await
        .unwrap();
    let net = sb.netns.clone().expect("own network namespace");
    assert!(host.netns.is_none(), "host network has no netns");
    for p in [&net, &sb.ipc, &sb.uts, &host.ipc, &host.uts] {
        assert!(is_mounted(p), "{} is not a namespace mount", p.display());
    }
    assert_eq!(sb.labels[labels::POD_UID], "u1");
    assert_eq!(sb.labels[labels::POD_NAME], "pod-u1");
    assert_eq!(sb.labels[labels::POD_NAMESPACE], "default");

    // The hostname is set in the UTS namespace; loopback is up in the network namespace.
    let out = std::process::Command::new("nsenter")
        .arg(format!("--uts={}", sb.uts.display()))
        .arg(format!("--net={}", net.display()))
        .args(["sh", "-c", "hostname; ip -o link show lo"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("host-u1\n"), "{text}");
    assert!(text.contains("UP"), "{text}");

    // A new runtime on the same root (an agent restart) lists both.
    let rt2 = RuncRuntime::new(env.tmp.path().join("root"), shim()).unwrap();
    let mut want = vec![sb.clone(), host.clone()];
    want.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(rt2.list_sandboxes().await.unwrap(), want);

    env.rt.remove_sandbox(&sb.id).await.unwrap();
    assert!(!is_mounted(&net) && !is_mounted(&sb.ipc));
    assert!(!net.parent().unwrap().exists());
    assert_eq!(env.rt.list_sandboxes().await.unwrap(), vec![host.clone()]);
    env.rt.remove_sandbox(&host.id).await.unwrap();
    assert!(env.rt.list_sandboxes().await.unwrap().is_empty());
    assert!(matches!(
        env.rt.remove_sandbox(&host.id).await,
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test]
async fn exit_code_and_cri_log() {
    let Some(env) = setup("exit") else { return };
    let sb = env
        .rt
        .create_sandbox(&env.sandbox_config("u1", false))
        .await
        .unwrap();
    let cfg = env.container(
        "exit3",
        &sb,
        &[
            "sh",
            "-c",
            "echo $GREETING; cat /etc/msg /etc/only-base; echo oops >&2; exit 3",
        ],
    );
    env.rt.create_container(&cfg).await.unwrap();
    assert_eq!(
        env.rt.container("exit3").await.unwrap().state,
        ContainerState::Created
    );
    env.rt.start_container("exit3").await.unwrap();
    let state = env.wait_exited("exit3", Duration::from_secs(10)).await;
    let ContainerState::Exited {
        exit_code,
        signal,
        started_at,
        finished_at,
        oom_killed,
    } = state
    else {
        panic!("not exited: {state:?}");
    };
    assert_eq!((exit_code, signal, oom_killed), (3, None, false));
    assert!(started_at.expect("started_at") <= finished_at);

    let log = std::fs::read_to_string(&cfg.log_path).unwrap();
    let records: Vec<(&str, &str, &str, &str)> = log
        .lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap_or(""),
            )
        })
        .collect();
    let mut stdout: Vec<&str> = records
        .iter()
        .filter(|r| r.1 == "stdout")
        .map(|r| r.3)
        .collect();
    stdout.sort();
    assert_eq!(stdout, ["b", "hello", "top"], "log:\n{log}");
    assert!(
        records
            .iter()
            .any(|r| r.1 == "stderr" && r.2 == "F" && r.3 == "oops"),
        "log:\n{log}"
    );
    for (ts, _, tag, _) in &records {
        assert_eq!(*tag, "F");
        assert!(ts.ends_with('Z') && ts.len() == 30, "timestamp {ts}");
        ts.parse::<jiff::Timestamp>().unwrap();
    }

    let bundle = env.tmp.path().join("root/containers/exit3");
    env.rt.remove_container("exit3").await.unwrap();
    assert!(!bundle.exists());
    assert!(!is_mounted(&bundle.join("rootfs")));
    assert!(
        cfg.log_path.exists(),
        "the log stays until the pod is removed"
    );
    assert!(matches!(
        env.rt.container("exit3").await,
        Err(RuntimeError::NotFound(_))
    ));

    // A container that was created but never started can be removed.
    env.rt
        .create_container(&env.container("never", &sb, &["sleep", "1000"]))
        .await
        .unwrap();
    assert_eq!(
        env.rt.container("never").await.unwrap().state,
        ContainerState::Created
    );
    env.rt.remove_container("never").await.unwrap();
    assert!(env.rt.list_containers().await.unwrap().is_empty());
    let runc_state = std::process::Command::new("runc")
        .arg("--root")
        .arg(env.tmp.path().join("root/runc"))
        .args(["state", "never"])
        .output()
        .unwrap();
    assert!(
        !runc_state.status.success(),
        "runc still knows the container"
    );
    env.rt.remove_sandbox(&sb.id).await.unwrap();
}

#[tokio::test]
async fn stop_kills_after_grace() {
    let Some(env) = setup("stop") else { return };
    let sb = env
        .rt
        .create_sandbox(&env.sandbox_config("u1", false))
        .await
        .unwrap();
    // busybox sleep as PID 1 ignores SIGTERM; sh with `trap '' TERM` ignores it too.
    env.rt
        .create_container(&env.container("sleeper", &sb, &["sleep", "1000"]))
        .await
        .unwrap();
    env.rt
        .create_container(&env.container("trapper", &sb, &["sh", "-c", "trap '' TERM; sleep 1000"]))
        .await
        .unwrap();
    env.rt
        .create_container(&env.container(
            "polite",
            &sb,
            &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
        ))
        .await
        .unwrap();
    for id in ["sleeper", "trapper", "polite"] {
        env.rt.start_container(id).await.unwrap();
        assert!(env.running_pid(id).await > 0);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    for id in ["sleeper", "trapper"] {
        let t = Instant::now();
        env.rt
            .stop_container(id, Duration::from_secs(1))
            .await
            .unwrap();
        let took = t.elapsed();
        assert!(
            took >= Duration::from_secs(1),
            "{id}: grace not honoured ({took:?})"
        );
        assert!(took < Duration::from_millis(2500), "{id}: took {took:?}");
        match env.rt.container(id).await.unwrap().state {
            ContainerState::Exited {
                exit_code, signal, ..
            } => {
                assert_eq!((exit_code, signal), (137, Some(9)), "{id}")
            }
            other => panic!("{id}: {other:?}"),
        }
    }

    let t = Instant::now();
    env.rt
        .stop_container("polite", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "SIGTERM handler ignored"
    );
    match env.rt.container("polite").await.unwrap().state {
        ContainerState::Exited {
            exit_code, signal, ..
        } => assert_eq!((exit_code, signal), (0, None)),
        other => panic!("polite: {other:?}"),
    }
    // Stopping an exited container is fine.
    env.rt
        .stop_container("polite", Duration::from_secs(1))
        .await
        .unwrap();
    for id in ["sleeper", "trapper", "polite"] {
        env.rt.remove_container(id).await.unwrap();
    }
    env.rt.remove_sandbox(&sb.id).await.unwrap();
}

#[tokio::test]
async fn exec_sync_output_exit_code_and_timeout() {
    let Some(env) = setup("exec") else { return };
    let sb = env
        .rt
        .create_sandbox(&env.sandbox_config("u1", false))
        .await
        .unwrap();
    env.rt
        .create_container(&env.container("c", &sb, &["sleep", "1000"]))
        .await
        .unwrap();
    env.rt.start_container("c").await.unwrap();

    let cmd = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let out = env
        .rt
        .exec_sync("c", &cmd(&["echo", "hi"]), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_slice(), out.stderr.as_slice()),
        (0, &b"hi\n"[..], &b""[..])
    );
    let out = env
        .rt
        .exec_sync(
            "c",
            &cmd(&["sh", "-c", "echo err >&2; exit 7"]),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!((out.exit_code, out.stderr.as_slice()), (7, &b"err\n"[..]));

    let t = Instant::now();
    let err = env
        .rt
        .exec_sync("c", &cmd(&["sleep", "30"]), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Timeout(_)), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // The timed-out command was killed inside the container.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ps = env
        .exec(
            "c",
            &["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"],
        )
        .await;
    assert!(!ps.contains("sleep 30"), "{ps}");

    env.rt.stop_container("c", Duration::ZERO).await.unwrap();
    env.rt.remove_container("c").await.unwrap();
    env.rt.remove_sandbox(&sb.id).await.unwrap();
}

#[tokio::test]
async fn memory_limit_oom_kill_is_reported() {
    let Some(env) = setup("oom") else { return };
    let sb = env
        .rt
        .create_sandbox(&env.sandbox_config("u1", false))
        .await
        .unwrap();
    let mut cfg = env.container("oom", &sb, &["sh", "-c", "head -c 200m /dev/zero | tail"]);
    cfg.resources.memory_limit = Some(20 * 1024 * 1024);
    env.rt.create_container(&cfg).await.unwrap();
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/{}/pod/oom/memory.limit_in_bytes",
        env.cgroup_root
    ))
    .unwrap();
    assert_eq!(limit.trim(), (20 * 1024 * 1024).to_string());
    env.rt.start_container("oom").await.unwrap();
    match env.wait_exited("oom", Duration::from_secs(30)).await {
        ContainerState::Exited {
            oom_killed,
            exit_code,
            ..
        } => {
            assert!(oom_killed, "exit code {exit_code}");
            assert_ne!(exit_code, 0);
        }
        other => panic!("{other:?}"),
    }
    env.rt.remove_container("oom").await.unwrap();

    // A container that stays under its limit is not reported as OOM-killed.
    let mut cfg = env.container(
        "fits",
        &sb,
        &["sh", "-c", "head -c 1m /dev/zero | tail -c 10 >/dev/null"],
    );
    cfg.resources.memory_limit = Some(20 * 1024 * 1024);
    env.rt.create_container(&cfg).await.unwrap();
    env.rt.start_container("fits").await.unwrap();
    match env.wait_exited("fits", Duration::from_secs(10)).await {
        ContainerState::Exited {
            oom_killed,
            exit_code,
            ..
        } => assert_eq!((oom_killed, exit_code), (false, 0)),
        other => panic!("{other:?}"),
    }
    env.rt.remove_container("fits").await.unwrap();
    env.rt.remove_sandbox(&sb.id).await.unwrap();
}

#[tokio::test]
async fn containers_in_a_sandbox_share_hostname_and_loopback() {
    let Some(env) = setup("share") else { return };
    let sb = env
        .rt
        .create_sandbox(&env.sandbox_config("u1", false))
        .await
        .unwrap();
    env.rt
        .create_container(&env.container("web", &sb, &["httpd", "-f", "-p", "8080", "-h", "/www"]))
        .await
        .unwrap();
    env.rt
        .create_container(&env.container("client", &sb, &["sleep", "1000"]))
        .await
        .unwrap();
    env.rt.start_container("web").await.unwrap();
    env.rt.start_container("client").await.unwrap();
    assert_eq!(env.exec("web", &["hostname"]).await, "host-u1\n");
    assert_eq!(env.exec("client", &["hostname"]).await, "host-u1\n");
    let mut body = String::new();
    for _ in 0..50 {
        let cmd: Vec<String> = ["wget", "-qO-", "http://127.0.0.1:8080/index.html"]
            .map(String::from)
            .to_vec();
        let out = env
            .rt
            .exec_sync("client", &cmd, Duration::from_secs(5))
            .await
            .unwrap();
        if out.exit_code == 0 {
            body = String::from_utf8(out.stdout).unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(body, "pong\n");

    // A host-network sandbox: the container sees the host's interfaces but its own hostname.
    let host_sb = env
        .rt
        .create_sandbox(&env.sandbox_config("u2", true))
        .await
        .unwrap();
    let mut cfg = env.container("hostnet", &host_sb, &["sleep", "1000"]);
    cfg.mounts.push(Mount {
        destination: "/hostdata".into(),
        source: env.layers[1].join("www").display().to_string(),
        kind: "bind".into(),
        options: vec!["rbind".into(), "ro".into()],
    });
    env.rt.create_container(&cfg).await.unwrap();
    env.rt.start_container("hostnet").await.unwrap();
    assert_eq!(env.exec("hostnet", &["hostname"]).await, "host-u2\n");
    assert_eq!(
        env.exec("hostnet", &["cat", "/hostdata/index.html"]).await,
        "pong\n"
    );
    let host_links = std::fs::read_dir("/sys/class/net").unwrap().count();
    let links = env.exec("hostnet", &["ls", "/sys/class/net"]).await;
    assert_eq!(links.split_whitespace().count(), host_links, "{links}");

    for id in ["web", "client", "hostnet"] {
        env.rt
            .stop_container(id, Duration::from_secs(1))
            .await
            .unwrap();
        env.rt.remove_container(id).await.unwrap();
    }
    env.rt.remove_sandbox(&sb.id).await.unwrap();
    env.rt.remove_sandbox(&host_sb.id).await.unwrap();
}

#[tokio::test]
async fn restarted_agent_finds_running_containers() {
    let Some(env) = setup("restart") else { return };
    let sb = env
        .rt
        .create_sandbox(&env.sandbox_config("u1", false))
        .await
        .unwrap();
    let cfg = env.container(
        "keep",
        &sb,
        &["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
    );
    env.rt.create_container(&cfg).await.unwrap();
    env.rt.start_container("keep").await.unwrap();
    let pid = env.running_pid("keep").await;

    let rt2 = RuncRuntime::new(env.tmp.path().join("root"), shim()).unwrap();
    let list = rt2.list_containers().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, "keep");
    assert_eq!(list[0].labels, cfg.labels);
    let ContainerState::Running { pid: pid2, .. } = list[0].state else {
        panic!("{:?}", list[0].state);
    };
    assert_eq!(pid2, pid, "the container was not restarted");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.running_pid("keep").await, pid);
    let ticks = std::fs::read_to_string(&cfg.log_path)
        .unwrap()
        .matches("stdout F tick")
        .count();
    assert!(ticks >= 2, "{ticks} ticks logged");

    rt2.stop_container("keep", Duration::from_secs(1))
        .await
        .unwrap();
    match rt2.container("keep").await.unwrap().state {
        ContainerState::Exited {
            signal: Some(_), ..
        }
        | ContainerState::Exited { exit_code: 0, .. } => {}
        other => panic!("{other:?}"),
    }
    rt2.remove_container("keep").await.unwrap();
    rt2.remove_sandbox(&sb.id).await.unwrap();
    assert!(rt2.list_containers().await.unwrap().is_empty());
}
