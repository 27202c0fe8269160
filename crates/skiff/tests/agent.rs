//! The embedded node agent end to end: the real `skiff` binary runs pods as
//! runc containers, and the real kubectl shows what the kubelet would show.
//!
//! Needs root, runc, /bin/busybox (busybox-static), nsenter and kubectl. Without
//! them every test is skipped with a loud message, unless `CI` is set, where
//! that is a failure.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The busybox image archive, built once per test binary.
fn busybox_image() -> &'static PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let tmp = dir.join(format!("agent-e2e-busybox-{}.tar.tmp", std::process::id()));
        let out = dir.join("agent-e2e-busybox.tar");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-busybox-image.sh");
        let st = Command::new("bash")
            .arg(&script)
            .arg(&tmp)
            .stdout(Stdio::null())
            .status()
            .expect("bash runs");
        assert!(st.success(), "{} failed", script.display());
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
}

/// A private copy of the skiff binary: the target dir is shared with other
/// worktrees, whose builds may replace `CARGO_BIN_EXE_skiff` while the tests run
/// (the server's shims run the same file, so it must stay put).
fn skiff_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let tmp = dir.join(format!("agent-e2e-skiff-{}.tmp", std::process::id()));
        let out = dir.join("agent-e2e-skiff");
        std::fs::copy(env!("CARGO_BIN_EXE_skiff"), &tmp).expect("copying the skiff binary");
        // A rename leaves a copy that a previous run's shims still execute intact.
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
}

/// Why the tests cannot run here, if they cannot.
fn missing_prerequisite() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root".into());
    }
    for (tool, arg) in [
        ("runc", "--version"),
        ("kubectl", "version"),
        ("nsenter", "--version"),
    ] {
        let mut c = Command::new(tool);
        c.arg(arg);
        if tool == "kubectl" {
            c.arg("--client");
        }
        if !c.output().is_ok_and(|o| o.status.success()) {
            return Some(format!("{tool} is not installed"));
        }
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("/bin/busybox is missing (apt-get install busybox-static)".into());
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 250 ms until it returns Some, or panics after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One `kubectl get pod --no-headers` row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    ready: String,
    status: String,
    restarts: u32,
}

/// A `skiff server` with its embedded agent on a temp data dir.
struct Server {
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
    log_n: u32,
}

impl Server {
    /// Starts a server (with `extra` flags), or None (after a loud message) when the
    /// prerequisites are missing.
    fn start(extra: &[&str]) -> Option<Server> {
        if let Some(why) = missing_prerequisite() {
            if std::env::var_os("CI").is_some() {
                panic!("agent e2e tests cannot run: {why}");
            }
            eprintln!(
                "\n\n*** SKIPPING agent e2e test: {why} (needs root, runc, busybox-static, nsenter, kubectl) ***\n\n"
            );
            return None;
        }
        let image = busybox_image();
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new(skiff_bin())
            .args(["image", "import"])
            .arg(image)
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "skiff image import failed");
        let mut s = Server {
            dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log_n: 0,
        };
        s.spawn();
        Some(s)
    }

    fn data(&self) -> &Path {
        self.dir.path()
    }

    /// Spawns the server process on a fresh port and waits until it answers.
    fn spawn(&mut self) {
        let port = free_port();
        self.log_n += 1;
        let log =
            std::fs::File::create(self.data().join(format!("server-{}.log", self.log_n))).unwrap();
        let mut cmd = if std::env::var_os("AGENT_E2E_STRACE").is_some() {
            let mut c = Command::new("strace");
            c.args([
                "-f",
                "-qq",
                "-e",
                "trace=none",
                "-e",
                "signal=TERM,INT,HUP",
                "-o",
            ])
            .arg(self.data().join(format!("strace-{}.txt", self.log_n)))
            .arg(skiff_bin());
            c
        } else {
            Command::new(skiff_bin())
        };
        let child = cmd
            .arg("server")
            .arg("--data-dir")
            .arg(self.data())
            .args(["--https-listen-port", &port.to_string()])
            .args(&self.extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("skiff runs");
        self.child = Some(child);
        let kubeconfig = self.data().join("kubeconfig.yaml");
        wait_for("the server to answer", Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&kubeconfig).ok()?;
            if !text.contains(&format!(":{port}")) {
                return None;
            }
            let out = self.kubectl(&["get", "--raw", "/readyz"]);
            out.status.success().then_some(())
        });
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .env("KUBECONFIG", self.data().join("kubeconfig.yaml"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("kubectl runs")
    }

    /// Runs kubectl, asserts success, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `kubectl apply -f` of a YAML text.
    fn apply(&self, yaml: &str) {
        let p = self.data().join(format!("manifest-{}.yaml", rand_suffix()));
        std::fs::write(&p, yaml).unwrap();
        self.ok(&["apply", "-f", p.to_str().unwrap()]);
    }

    /// The pod's row in `kubectl get pods`, None if it does not exist (yet).
    fn row(&self, pod: &str) -> Option<Row> {
        let out = self.kubectl(&["get", "pod", pod, "--no-headers"]);
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let cols: Vec<&str> = text.split_whitespace().collect();
        assert!(cols.len() >= 5, "odd row: {text}");
        Some(Row {
            ready: cols[1].to_string(),
            status: cols[2].to_string(),
            restarts: cols[3].parse().expect("RESTARTS is a number"),
        })
    }

    /// `kubectl get pod POD -o jsonpath=EXPR`.
    fn jsonpath(&self, pod: &str, expr: &str) -> String {
        self.ok(&["get", "pod", pod, "-o", &format!("jsonpath={expr}")])
    }

    /// Waits until the pod's row satisfies `f`, returning every distinct STATUS seen on the way.
    fn wait_row(
        &self,
        pod: &str,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Row) -> bool,
    ) -> (Row, Vec<String>) {
        let mut seen: Vec<String> = Vec::new();
        let row = wait_for(&format!("pod {pod}: {what}"), timeout, || {
            let r = self.row(pod)?;
            if seen.last() != Some(&r.status) {
                seen.push(r.status.clone());
            }
            f(&r).then_some(r)
        });
        (row, seen)
    }

    /// The pod's events as `kubectl describe` lists them: (type, reason, from, message).
    fn events(&self, pod: &str) -> Vec<(String, String, String, String)> {
        let text = self.ok(&["describe", "pod", pod]);
        let Some((_, events)) = text.split_once("\nEvents:\n") else {
            return Vec::new();
        };
        events
            .lines()
            .skip(2) // header and dashes
            .filter_map(|l| {
                let cols: Vec<&str> = l
                    .trim()
                    .split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect();
                (cols.len() >= 5).then(|| {
                    (
                        cols[0].to_string(),
                        cols[1].to_string(),
                        cols[3].to_string(),
                        cols[4..].join("  "),
                    )
                })
            })
            .collect()
    }

    /// The pod's network namespace file.
    fn netns(&self) -> PathBuf {
        let dir = self.data().join("agent/containers/sandboxes");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path().join("ns/net"))
            .filter(|p| p.exists())
            .collect();
        assert_eq!(found.len(), 1, "one sandbox in {}", dir.display());
        found.pop().unwrap()
    }

    /// The text of a container's log file (attempt `attempt`).
    fn log_file(&self, pod: &str, container: &str, attempt: u32) -> String {
        let uid = self.jsonpath(pod, "{.metadata.uid}");
        let p = self
            .data()
            .join("agent/logs")
            .join(format!("default_{pod}_{uid}"))
            .join(container)
            .join(format!("{attempt}.log"));
        std::fs::read_to_string(&p).unwrap_or_default()
    }

    /// SIGKILLs the server process (its containers live on).
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every pod uid that ever ran here (from the log directories).
    fn pod_uids(&self) -> Vec<String> {
        std::fs::read_dir(self.data().join("agent/logs"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.rsplit('_').next().map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn runtime_dirs_empty(&self) -> bool {
        ["containers", "sandboxes"].iter().all(|d| {
            std::fs::read_dir(self.data().join("agent/containers").join(d))
                .map(|mut rd| rd.next().is_none())
                .unwrap_or(true)
        })
    }
}

fn rand_suffix() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{n:x}")
}

impl Drop for Server {
    fn drop(&mut self) {
        let data = self.data().to_path_buf();
        let data_s = data.to_string_lossy().into_owned();
        if std::thread::panicking() {
            for n in 1..=self.log_n {
                let log = std::fs::read_to_string(data.join(format!("server-{n}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let st = std::fs::read_to_string(data.join(format!("strace-{n}.txt")))
                    .unwrap_or_default();
                for l in st.lines().filter(|l| l.contains("SIG")) {
                    eprintln!("strace: {l}");
                }
                eprintln!("--- server log {n} (tail) ---");
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        // Let the agent stop and remove its pods, then stop the server.
        if self.child.is_some() {
            let _ = self.kubectl(&[
                "delete",
                "pod",
                "--all",
                "--grace-period=0",
                "--force",
                "--wait=false",
            ]);
            let deadline = Instant::now() + Duration::from_secs(20);
            while !self.runtime_dirs_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        let uids = self.pod_uids();
        self.kill9();
        // Whatever is left: containers, shims, mounts, cgroups of this data dir.
        let runc_root = data.join("agent/containers/runc");
        if let Ok(out) = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["list", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["kill", "--all", id, "KILL"])
                    .output();
                std::thread::sleep(Duration::from_millis(100));
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["delete", "--force", id])
                    .output();
            }
        }
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let root = std::fs::read_link(e.path().join("root")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&data_s) || root.starts_with(&data) {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
                }
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&data_s))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").args(["-l", p]).output();
        }
        for uid in uids {
            if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
                for h in rd.flatten() {
                    let pod = h.path().join("skiff").join(format!("pod{uid}"));
                    if let Ok(children) = std::fs::read_dir(&pod) {
                        for c in children.flatten().filter(|c| c.path().is_dir()) {
                            let _ = std::fs::remove_dir(c.path());
                        }
                        let _ = std::fs::remove_dir(&pod);
                    }
                }
            }
        }
    }
}

/// The seed example: an init container writes index.html into an emptyDir and
/// busybox httpd serves it.
#[test]
fn init_container_prepares_content_httpd_serves_it() {
    let Some(s) = Server::start(&[]) else { return };
    s.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: install
    image: busybox
    command: [sh, -c, 'sleep 3; echo "hello from the init container" > /work/index.html']
    volumeMounts: [{name: workdir, mountPath: /work}]
  containers:
  - name: web
    image: busybox
    command: [httpd, -f, -p, "8080", -h, /work]
    volumeMounts: [{name: workdir, mountPath: /work}]
  volumes:
  - {name: workdir, emptyDir: {}}
"#,
    );
    let (row, seen) = s.wait_row("web", "1/1 Running", Duration::from_secs(60), |r| {
        r.ready == "1/1" && r.status == "Running"
    });
    assert_eq!(row.restarts, 0);
    assert!(seen.contains(&"Init:0/1".to_string()), "statuses: {seen:?}");
    assert_eq!(
        s.jsonpath(
            "web",
            "{.status.initContainerStatuses[0].state.terminated.reason}"
        ),
        "Completed"
    );
    assert_eq!(s.jsonpath("web", "{.status.phase}"), "Running");

    let netns = s.netns();
    let body = wait_for("httpd to answer", Duration::from_secs(10), || {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["/bin/busybox", "wget", "-q", "-O", "-"])
            .arg("http://127.0.0.1:8080/index.html")
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert_eq!(body, "hello from the init container\n");

    let events: Vec<(String, String)> = s
        .events("web")
        .into_iter()
        .map(|(_, reason, _, msg)| (reason, msg))
        .collect();
    // `image: busybox` means pull policy Always: the kubelet goes to the
    // registry first; offline (as in CI) it runs the image the node has.
    let pulled = |m: &str| {
        m.starts_with(
            "Registry unreachable; using container image \"busybox\" already present on machine",
        ) || m.starts_with("Successfully pulled image \"busybox\"")
    };
    type Check<'a> = &'a dyn Fn(&str) -> bool;
    let want: [(&str, Check); 9] = [
        ("Scheduled", &|m: &str| {
            m.starts_with("Successfully assigned default/web to ")
        }),
        ("Pulling", &|m: &str| m == "Pulling image \"busybox\""),
        ("Pulled", &pulled),
        ("Created", &|m: &str| m == "Created container: install"),
        ("Started", &|m: &str| m == "Started container install"),
        ("Pulling", &|m: &str| m == "Pulling image \"busybox\""),
        ("Pulled", &pulled),
        ("Created", &|m: &str| m == "Created container: web"),
        ("Started", &|m: &str| m == "Started container web"),
    ];
    let got: Vec<(String, String)> = events.iter().take(want.len()).cloned().collect();
    assert_eq!(got.len(), want.len(), "events: {events:?}");
    for ((r, m), (wr, ok)) in got.iter().zip(want) {
        assert!(r == wr && ok(m), "events: {events:?}");
    }
}

/// restartPolicy Never, OnFailure and Always with a container exiting 1; exit 0 under OnFailure.
#[test]
fn restart_policies() {
    let Some(s) = Server::start(&[]) else { return };
    let pod = |name: &str, policy: &str, code: i32| {
        format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: {policy}
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: c, image: busybox, command: [sh, -c, 'sleep 1; exit {code}']}}
---
"
        )
    };
    s.apply(
        &[
            pod("never", "Never", 1),
            pod("onfailure", "OnFailure", 1),
            pod("always", "Always", 1),
            pod("done", "OnFailure", 0),
        ]
        .concat(),
    );
    // Never: Error, Failed, never restarted.
    let (row, _) = s.wait_row("never", "Error", Duration::from_secs(30), |r| {
        r.status == "Error"
    });
    assert_eq!((row.ready.as_str(), row.restarts), ("0/1", 0));
    wait_for("phase Failed", Duration::from_secs(10), || {
        (s.jsonpath("never", "{.status.phase}") == "Failed").then_some(())
    });
    assert_eq!(
        s.jsonpath(
            "never",
            "{.status.containerStatuses[0].state.terminated.exitCode}/{.status.containerStatuses[0].state.terminated.reason}"
        ),
        "1/Error"
    );
    // exit 0 under OnFailure: Completed, Succeeded.
    let (row, _) = s.wait_row("done", "Completed", Duration::from_secs(30), |r| {
        r.status == "Completed"
    });
    assert_eq!(row.restarts, 0);
    wait_for("phase Succeeded", Duration::from_secs(10), || {
        (s.jsonpath("done", "{.status.phase}") == "Succeeded").then_some(())
    });
    assert_eq!(
        s.jsonpath(
            "done",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "0"
    );
    // OnFailure and Always: restarted, into CrashLoopBackOff, phase stays Running.
    for name in ["onfailure", "always"] {
        let (row, seen) = s.wait_row(
            name,
            "CrashLoopBackOff after a restart",
            Duration::from_secs(40),
            |r| r.restarts >= 1 && r.status == "CrashLoopBackOff",
        );
        assert_eq!(row.ready, "0/1");
        assert!(
            seen.iter().all(|st| [
                "ContainerCreating",
                "Pending",
                "Running",
                "Error",
                "CrashLoopBackOff"
            ]
            .contains(&st.as_str())),
            "{name} statuses: {seen:?}"
        );
        assert_eq!(s.jsonpath(name, "{.status.phase}"), "Running");
        assert_eq!(
            s.jsonpath(
                name,
                "{.status.containerStatuses[0].lastState.terminated.exitCode}/{.status.containerStatuses[0].lastState.terminated.reason}"
            ),
            "1/Error"
        );
        // It keeps being restarted.
        s.wait_row(name, "a second restart", Duration::from_secs(30), |r| {
            r.restarts >= 2
        });
    }
    // Never stayed put.
    assert_eq!(s.row("never").unwrap().restarts, 0);
    assert_eq!(s.row("done").unwrap().restarts, 0);
}

fn parse_time(s: &str) -> i64 {
    // RFC 3339 "2024-01-02T03:04:05Z" to seconds since an arbitrary epoch (enough for gaps).
    let (date, time) = s
        .trim_end_matches('Z')
        .split_once('T')
        .expect("a timestamp");
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let t: Vec<i64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    // Days from a civil date (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe;
    days * 86400 + t[0] * 3600 + t[1] * 60 + t[2]
}

/// The crash-loop back-off: the first restart is immediate, then 10 s, then 20 s (the cap).
#[test]
fn crashloop_backoff_grows_to_its_cap() {
    let Some(s) = Server::start(&["--crashloop-backoff-max", "20s"]) else {
        return;
    };
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: busybox, command: [sh, -c, 'exit 1']}
",
    );
    let uid = wait_for("the pod", Duration::from_secs(10), || {
        let u = s.jsonpath("crash", "{.metadata.uid}");
        (!u.is_empty()).then_some(u)
    });
    // For each restart count n: attempt n's start and the back-off message, read while
    // the container waits in CrashLoopBackOff (then lastState is attempt n).
    let created = Instant::now();
    let mut first_restart: Option<Duration> = None;
    let mut seen: std::collections::BTreeMap<u32, (String, String)> = Default::default();
    wait_for("three restarts", Duration::from_secs(90), || {
        let out = s.jsonpath(
            "crash",
            "{.status.containerStatuses[0].restartCount}|{.status.containerStatuses[0].lastState.terminated.startedAt}|{.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}",
        );
        let f: Vec<&str> = out.splitn(4, '|').collect();
        let n: u32 = f[0].parse().ok()?;
        if n >= 1 && first_restart.is_none() {
            first_restart = Some(created.elapsed());
        }
        if f[2] == "CrashLoopBackOff" {
            seen.insert(n, (f[1].to_string(), f[3].to_string()));
        }
        seen.contains_key(&3).then_some(())
    });
    assert!(
        first_restart.unwrap() < Duration::from_secs(8),
        "the first restart is immediate: {first_restart:?}"
    );
    let t = |n: u32| parse_time(&seen[&n].0);
    assert!(
        (9..=14).contains(&(t(2) - t(1))),
        "second restart ~10s after the first: {seen:?}"
    );
    assert!(
        (19..=25).contains(&(t(3) - t(2))),
        "third restart ~20s (the cap) after the second: {seen:?}"
    );
    for (n, secs) in [(1, 10), (2, 20), (3, 20)] {
        assert_eq!(
            seen[&n].1,
            format!("back-off {secs}s restarting failed container=c pod=crash_default({uid})"),
            "{seen:?}"
        );
    }
    let (row, _) = s.wait_row("crash", "CrashLoopBackOff", Duration::from_secs(5), |r| {
        r.status == "CrashLoopBackOff"
    });
    assert_eq!((row.ready.as_str(), row.restarts), ("0/1", 3));
    let events = s.events("crash");
    assert!(
        events.iter().any(|(ty, reason, _, m)| ty == "Warning"
            && reason == "BackOff"
            && m == &format!("Back-off restarting failed container c in pod crash_default({uid})")),
        "events: {events:?}"
    );
}

/// A failing liveness probe restarts the container, with the kubelet's events.
#[test]
fn liveness_probe_failure_restarts_the_container() {
    let Some(s) = Server::start(&[]) else { return };
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'touch /tmp/healthy; sleep 4; rm /tmp/healthy; sleep 3600']
    livenessProbe:
      exec: {command: [test, -f, /tmp/healthy]}
      periodSeconds: 1
      failureThreshold: 2
",
    );
    s.wait_row("live", "1/1 Running", Duration::from_secs(30), |r| {
        r.ready == "1/1" && r.status == "Running"
    });
    let (row, _) = s.wait_row("live", "a restart", Duration::from_secs(30), |r| {
        r.restarts >= 1
    });
    assert!(row.restarts >= 1);
    assert_eq!(
        s.jsonpath(
            "live",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        ),
        "137",
        "the probe kills it (sleep ignores SIGTERM as PID 1)"
    );
    let events = s.events("live");
    assert!(
        events.iter().any(|(ty, r, _, m)| ty == "Warning"
            && r == "Unhealthy"
            && m.starts_with("Liveness probe failed")),
        "events: {events:?}"
    );
    assert!(
        events.iter().any(|(ty, r, _, m)| ty == "Normal"
            && r == "Killing"
            && m == "Container c failed liveness probe, will be restarted"),
        "events: {events:?}"
    );
    // The new attempt is healthy again.
    s.wait_row("live", "running again", Duration::from_secs(20), |r| {
        r.ready == "1/1" && r.status == "Running"
    });
}

/// A readiness probe flipping: READY and the Ready condition follow it, and
/// the container is never restarted.
#[test]
fn readiness_probe_flips_ready() {
    let Some(s) = Server::start(&[]) else { return };
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: ready}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'while true; do touch /tmp/ready; sleep 4; rm -f /tmp/ready; sleep 4; done']
    readinessProbe:
      exec: {command: [test, -f, /tmp/ready]}
      periodSeconds: 1
      failureThreshold: 1
",
    );
    let ready = |s: &Server| {
        s.jsonpath(
            "ready",
            r#"{.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="ContainersReady")].status}/{.status.containerStatuses[0].ready}"#,
        )
    };
    let mut transitions = Vec::new();
    for want in ["1/1", "0/1", "1/1", "0/1"] {
        s.wait_row("ready", want, Duration::from_secs(20), |r| {
            r.ready == want && r.status == "Running"
        });
        transitions.push(ready(&s));
    }
    // The conditions follow READY (read just after; a flip every 4 s leaves time).
    assert_eq!(
        transitions,
        [
            "True/True/true",
            "False/False/false",
            "True/True/true",
            "False/False/false"
        ]
    );
    assert_eq!(s.row("ready").unwrap().restarts, 0);
    let events = s.events("ready");
    assert!(
        events
            .iter()
            .any(|(_, r, _, m)| r == "Unhealthy" && m.starts_with("Readiness probe failed")),
        "events: {events:?}"
    );
}

/// A startup probe holds off liveness until it succeeds; then `started` is true.
#[test]
fn startup_probe_gates_liveness() {
    let Some(s) = Server::start(&[]) else { return };
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'sleep 5; touch /tmp/started; sleep 3600']
    startupProbe:
      exec: {command: [test, -f, /tmp/started]}
      periodSeconds: 1
      failureThreshold: 30
    livenessProbe:
      exec: {command: [test, -f, /tmp/started]}
      periodSeconds: 1
      failureThreshold: 1
",
    );
    wait_for("the container to run", Duration::from_secs(30), || {
        let started = s.jsonpath(
            "slow",
            "{.status.containerStatuses[0].state.running.startedAt}",
        );
        (!started.is_empty()).then_some(())
    });
    let before = s.jsonpath(
        "slow",
        "{.status.containerStatuses[0].started}/{.status.containerStatuses[0].ready}",
    );
    assert_eq!(before, "false/false");
    assert_eq!(s.row("slow").unwrap().ready, "0/1");
    let (row, _) = s.wait_row("slow", "1/1 Running", Duration::from_secs(30), |r| {
        r.ready == "1/1"
    });
    assert_eq!(
        row.restarts, 0,
        "liveness did not run before startup passed"
    );
    assert_eq!(
        s.jsonpath("slow", "{.status.containerStatuses[0].started}"),
        "true"
    );
    let events = s.events("slow");
    assert!(
        events
            .iter()
            .any(|(_, r, _, m)| r == "Unhealthy" && m.starts_with("Startup probe failed")),
        "events: {events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|(_, r, _, m)| r == "Killing" || m.starts_with("Liveness probe failed")),
        "events: {events:?}"
    );
    // Still fine a few liveness periods later.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s.row("slow").unwrap().restarts, 0);
}

/// A process over its memory limit is OOM-killed, and the status says so.
#[test]
fn memory_limit_oom_kills() {
    let Some(s) = Server::start(&[]) else { return };
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: oom}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [dd, if=/dev/zero, of=/dev/null, bs=64M, count=1]
    resources: {limits: {memory: 16Mi}}
",
    );
    let (row, _) = s.wait_row("oom", "OOMKilled", Duration::from_secs(30), |r| {
        r.status == "OOMKilled"
    });
    assert_eq!((row.ready.as_str(), row.restarts), ("0/1", 0));
    assert_eq!(
        s.jsonpath(
            "oom",
            "{.status.containerStatuses[0].state.terminated.reason}/{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "OOMKilled/137"
    );
    assert_eq!(s.jsonpath("oom", "{.status.phase}"), "Failed");
}

/// Environment from a ConfigMap key, a Secret key and the downward API, and a
/// ConfigMap volume.
#[test]
fn env_and_config_map_volume() {
    let Some(s) = Server::start(&[]) else { return };
    s.apply(
        "apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello, file.txt: from-the-volume}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {password: czNjcmV0}
---
apiVersion: v1
kind: Pod
metadata: {name: envpod, labels: {app: demo}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'echo GREETING=$GREETING; echo PASSWORD=$PASSWORD; echo POD=$POD_NAME/$POD_NS; echo NODE=$NODE; echo LITERAL=$LITERAL; echo FILE=$(cat /cfg/file.txt)']
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: settings, key: greeting}}}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: LITERAL, value: plain}
    volumeMounts: [{name: cfg, mountPath: /cfg}]
  volumes:
  - {name: cfg, configMap: {name: settings}}
",
    );
    s.wait_row("envpod", "Completed", Duration::from_secs(30), |r| {
        r.status == "Completed"
    });
    let node = s.jsonpath("envpod", "{.spec.nodeName}");
    assert!(!node.is_empty());
    let log = s.log_file("envpod", "c", 0);
    // CRI log lines: "<time> stdout F <text>".
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(""))
        .collect();
    assert_eq!(
        lines,
        [
            "GREETING=hello".to_string(),
            "PASSWORD=s3cret".to_string(),
            "POD=envpod/default".to_string(),
            format!("NODE={node}"),
            "LITERAL=plain".to_string(),
            "FILE=from-the-volume".to_string(),
        ],
        "log: {log}"
    );
    assert!(log.lines().all(|l| l.split(' ').nth(1) == Some("stdout")));
}

/// `kubectl delete pod` stops a container that ignores SIGTERM after the pod's grace
/// period (not the default 30 s), and runs preStop hooks first.
#[test]
fn graceful_delete_honours_grace_period_and_pre_stop() {
    let Some(s) = Server::start(&[]) else { return };
    let host = s.data().join("host-dir");
    std::fs::create_dir_all(&host).unwrap();
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: stubborn}}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - {{name: c, image: busybox, command: [sleep, '3600']}}
---
apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 1; done']
    lifecycle:
      preStop:
        exec: {{command: [sh, -c, 'echo pre-stop ran > /host/prestop']}}
    volumeMounts: [{{name: host, mountPath: /host}}]
  volumes:
  - {{name: host, hostPath: {{path: {}, type: Directory}}}}
",
        host.display()
    ));
    for p in ["stubborn", "hooked"] {
        s.wait_row(p, "1/1 Running", Duration::from_secs(30), |r| {
            r.ready == "1/1" && r.status == "Running"
        });
    }
    let t = Instant::now();
    s.ok(&["delete", "pod", "stubborn", "--wait=true"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(12),
        "deleting a SIGTERM-ignoring pod with a 3 s grace took {took:?}"
    );
    assert!(s.row("stubborn").is_none());

    assert!(!host.join("prestop").exists());
    let t = Instant::now();
    s.ok(&["delete", "pod", "hooked", "--wait=true"]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        std::fs::read_to_string(host.join("prestop")).unwrap(),
        "pre-stop ran\n"
    );
}

/// The server is SIGKILLed and restarted: the agent re-adopts the running
/// container instead of restarting it.
#[test]
fn agent_restart_readopts_running_containers() {
    let Some(mut s) = Server::start(&[]) else {
        return;
    };
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: survivor}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: busybox, command: [sleep, '3600']}
",
    );
    s.wait_row("survivor", "1/1 Running", Duration::from_secs(30), |r| {
        r.ready == "1/1" && r.status == "Running"
    });
    let state = "{.status.containerStatuses[0].containerID} {.status.containerStatuses[0].state.running.startedAt} {.status.containerStatuses[0].restartCount}";
    let before = s.jsonpath("survivor", state);
    s.kill9();
    std::thread::sleep(Duration::from_secs(1));
    s.spawn();
    // Give the agent several relist/sync rounds.
    std::thread::sleep(Duration::from_secs(6));
    let (row, seen) = s.wait_row("survivor", "1/1 Running", Duration::from_secs(10), |r| {
        r.ready == "1/1" && r.status == "Running"
    });
    assert_eq!(row.restarts, 0, "statuses: {seen:?}");
    assert_eq!(s.jsonpath("survivor", state), before);
    let ids: BTreeSet<String> = std::fs::read_dir(s.data().join("agent/containers/containers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids.len(), 1, "one container, not a second attempt: {ids:?}");
    let events = s.events("survivor");
    assert_eq!(
        events.iter().filter(|(_, r, _, _)| r == "Started").count(),
        1,
        "events: {events:?}"
    );
}

/// kubectl logs (-c, --tail, --previous), exec (exit codes, stdin) and attach against a running pod.
#[test]
fn logs_exec_and_attach() {
    let Some(s) = Server::start(&["--crashloop-backoff-max", "20s"]) else {
        return;
    };
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: talk}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: init
    image: busybox
    command: [sh, -c, 'echo from-init']
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'i=0; while true; do echo line $i; i=$((i+1)); sleep 0.3; done']
",
    );
    s.wait_row("talk", "Running", Duration::from_secs(30), |r| {
        r.status == "Running"
    });
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(s.ok(&["logs", "talk", "-c", "init"]), "from-init\n");
    let logs = s.ok(&["logs", "talk"]);
    assert!(logs.starts_with("line 0\nline 1\n"), "{logs}");
    let tail = s.ok(&["logs", "talk", "--tail=1"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let prev = s.kubectl(&["logs", "talk", "--previous"]);
    assert!(!prev.status.success());
    assert!(
        String::from_utf8_lossy(&prev.stderr)
            .contains("previous terminated container \"c\" in pod \"talk\" not found")
    );

    let out = s.kubectl(&[
        "exec",
        "talk",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("command terminated with exit code 3"));
    let mut child = std::process::Command::new("kubectl")
        .env("KUBECONFIG", s.data().join("kubeconfig.yaml"))
        .args([
            "exec",
            "-i",
            "talk",
            "--",
            "sh",
            "-c",
            "read x; echo got:$x",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got:hello\n");

    // attach streams what the container prints from now on.
    let out = std::process::Command::new("timeout")
        .env("KUBECONFIG", s.data().join("kubeconfig.yaml"))
        .args(["3", "kubectl", "attach", "talk"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().filter(|l| l.starts_with("line ")).count() >= 3,
        "{text}"
    );
    assert!(
        !text.contains("line 0\n"),
        "attach shows new output only: {text}"
    );
}

/// The scheduler: a pod whose nodeSelector no node matches stays Pending
/// with Kubernetes' FailedScheduling message; labelling the node schedules it.
#[test]
fn scheduler_reports_failed_scheduling_then_places_the_pod() {
    let Some(s) = Server::start(&[]) else { return };
    let node = s.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: picky}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {disk: ssd}
  containers:
  - name: c
    image: busybox
    imagePullPolicy: IfNotPresent
    command: [sleep, '3600']
",
    );
    let reason = wait_for("FailedScheduling", Duration::from_secs(20), || {
        s.events("picky")
            .into_iter()
            .find(|(_, r, _, _)| r == "FailedScheduling")
            .map(|(_, _, _, m)| m)
    });
    assert_eq!(
        reason,
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
    assert_eq!(
        s.jsonpath(
            "picky",
            "{.status.conditions[?(@.type==\"PodScheduled\")].reason}"
        ),
        "Unschedulable"
    );
    assert_eq!(s.row("picky").unwrap().status, "Pending");
    s.ok(&["label", "node", &node, "disk=ssd"]);
    s.wait_row("picky", "Running", Duration::from_secs(30), |r| {
        r.status == "Running"
    });
    assert_eq!(s.jsonpath("picky", "{.spec.nodeName}"), node);
}
