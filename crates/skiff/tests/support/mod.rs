//! The harness of the end-to-end tests that run the real `skiff` binary
//! with its embedded agent (real runc) and drive it with the real kubectl:
//! prerequisites, a busybox image, a server on a temp data dir, and a
//! cleanup that leaves no pod, shim, mount or cgroup behind.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The busybox image archive, built once per test binary.
pub fn busybox_image() -> &'static PathBuf {
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
pub fn skiff_bin() -> &'static PathBuf {
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
pub fn missing_prerequisite() -> Option<String> {
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 250 ms until it returns Some, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
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
pub struct Row {
    pub ready: String,
    pub status: String,
    pub restarts: u32,
}

/// A `skiff server` with its embedded agent on a temp data dir.
pub struct Server {
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
    log_n: u32,
    port: u16,
    agents: Vec<Agent>,
    /// The simulated network, when the cluster runs with pod networking.
    lab: Option<Lab>,
}

/// Hosts on one simulated LAN: each a network namespace (`ip netns`) with an
/// `eth0` on a shared bridge, 10.99.0.<i>/24. Host 1 runs the server.
pub struct Lab {
    prefix: String,
    hosts: Vec<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    fn new() -> Lab {
        let prefix = format!("skl{}", &rand_suffix()[6..]);
        let lan = format!("{prefix}-lan");
        ip(&["netns", "add", &lan]);
        ip(&["-n", &lan, "link", "set", "lo", "up"]);
        ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &lan, "link", "set", "br0", "up"]);
        Lab {
            prefix,
            hosts: Vec::new(),
        }
    }

    /// Adds host `i` (1-based); returns its netns name.
    fn add_host(&mut self) -> (String, String) {
        let i = self.hosts.len() + 1;
        let name = format!("{}-h{i}", self.prefix);
        let lan = format!("{}-lan", self.prefix);
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        let port = format!("v{i}");
        ip(&[
            "-n", &lan, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &name,
        ]);
        ip(&["-n", &lan, "link", "set", &port, "master", "br0", "up"]);
        let addr = format!("10.99.0.{i}");
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &name, "link", "set", "eth0", "up"]);
        self.hosts.push(name.clone());
        (name, addr)
    }

    /// The netns file of host `name`.
    pub fn ns_path(name: &str) -> String {
        format!("/run/netns/{name}")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", h]).output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &format!("{}-lan", self.prefix)])
            .output();
    }
}

/// A `skiff agent` joined to the test's server, its data dir under the server's.
pub struct Agent {
    /// Its node name.
    pub name: String,
    child: Option<Child>,
}

impl Server {
    /// Starts a server (with `extra` flags), or None (after a loud message) when the
    /// prerequisites are missing.
    pub fn start(extra: &[&str]) -> Option<Server> {
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
            port: 0,
            agents: Vec::new(),
            lab: None,
        };
        s.spawn();
        Some(s)
    }

    /// Starts a server with pod networking, service proxy and cluster DNS, on
    /// host 1 of a simulated LAN (its own network namespace, 10.99.0.1).
    pub fn start_networked(extra: &[&str]) -> Option<Server> {
        if let Some(why) = missing_prerequisite() {
            if std::env::var_os("CI").is_some() {
                panic!("network e2e tests cannot run: {why}");
            }
            eprintln!("\n\n*** SKIPPING network e2e test: {why} ***\n\n");
            return None;
        }
        let mut lab = Lab::new();
        let (host, _addr) = lab.add_host();
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new(skiff_bin())
            .args(["image", "import"])
            .arg(busybox_image())
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "skiff image import failed");
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        extra.extend(["--bind-address".into(), "0.0.0.0".into()]);
        let mut s = Server {
            dir,
            child: None,
            extra,
            log_n: 0,
            port: 0,
            agents: Vec::new(),
            lab: Some(lab),
        };
        let _ = host;
        s.spawn();
        Some(s)
    }

    /// The netns name of the server's host, when networked.
    pub fn host_ns(&self) -> Option<String> {
        self.lab.as_ref().map(|l| l.hosts[0].clone())
    }

    /// A command run in the server's host network namespace (when networked).
    fn in_ns(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match self.host_ns() {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", Lab::ns_path(&ns))).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Starts kubectl in the background (in the server's network namespace when
    /// networked), its output going to `out`.
    pub fn kubectl_spawn(&self, args: &[&str], out: &Path) -> Child {
        self.in_ns("kubectl")
            .env("KUBECONFIG", self.data().join("kubeconfig.yaml"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl runs")
    }

    /// Runs a command in the network namespace of lab host `i` (1 = the server's).
    pub fn on_host(&self, i: usize, args: &[&str]) -> Output {
        let lab = self.lab.as_ref().expect("a networked cluster");
        Command::new("nsenter")
            .arg(format!("--net={}", Lab::ns_path(&lab.hosts[i - 1])))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter runs")
    }

    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `skiff agent` as node `name` (data dir `DATA/name`, its own
    /// kubelet port on loopback) and waits until the node is Ready.
    pub fn join_agent(&mut self, name: &str, extra: &[&str]) {
        self.join_agent_via(name, None, extra)
    }

    /// [`Server::join_agent`], with `--server` given as `servers` (e.g. a
    /// comma-separated list of several servers) instead of this server's URL.
    pub fn join_agent_via(&mut self, name: &str, servers: Option<&str>, extra: &[&str]) {
        let dir = self.data().join(name);
        let st = Command::new(skiff_bin())
            .args(["image", "import"])
            .arg(busybox_image())
            .arg("--data-dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "skiff image import failed");
        let log = std::fs::File::create(self.data().join(format!("agent-{name}.log"))).unwrap();
        let (server, node_ip, kubelet_port, mut cmd) = match self.lab.as_mut() {
            Some(lab) => {
                let (ns, addr) = lab.add_host();
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", Lab::ns_path(&ns)))
                    .arg(skiff_bin());
                ("10.99.0.1".to_string(), addr, 10250, c)
            }
            None => (
                "127.0.0.1".to_string(),
                "127.0.0.1".to_string(),
                free_port(),
                Command::new(skiff_bin()),
            ),
        };
        let child = cmd
            .arg("agent")
            .args([
                "--server",
                &servers
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("https://{server}:{}", self.port)),
            ])
            .arg("--token-file")
            .arg(self.data().join("token"))
            .args(["--node-name", name, "--node-ip", &node_ip])
            .args(["--kubelet-port", &kubelet_port.to_string()])
            .arg("--data-dir")
            .arg(&dir)
            .args(extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("skiff agent runs");
        self.agents.push(Agent {
            name: name.to_string(),
            child: Some(child),
        });
        wait_for(
            &format!("node {name} Ready"),
            Duration::from_secs(30),
            || {
                let out = self.kubectl(&[
                    "get",
                    "node",
                    name,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ]);
                (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
            },
        );
    }

    /// SIGKILLs agent `name` (its containers live on, as after a node crash).
    pub fn kill_agent(&mut self, name: &str) {
        if let Some(a) = self.agents.iter_mut().find(|a| a.name == name)
            && let Some(mut c) = a.child.take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The agent data dirs: the embedded agent's and each joined agent's.
    fn agent_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.data().join("agent")];
        dirs.extend(
            self.agents
                .iter()
                .map(|a| self.data().join(&a.name).join("agent")),
        );
        dirs
    }

    /// Spawns the server process on a fresh port and waits until it answers.
    pub fn spawn(&mut self) {
        self.spawn_at(free_port())
    }

    /// The server's HTTPS port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Spawns the server process on `port` and waits until it answers.
    pub fn spawn_at(&mut self, port: u16) {
        self.port = port;
        self.log_n += 1;
        let log =
            std::fs::File::create(self.data().join(format!("server-{}.log", self.log_n))).unwrap();
        let mut cmd = if self.lab.is_some() {
            self.in_ns(skiff_bin())
        } else if std::env::var_os("AGENT_E2E_STRACE").is_some() {
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
            .args(if self.lab.is_some() {
                &[][..]
            } else {
                // Clusters of tests that share this machine's network stay off it.
                &[
                    "--flannel-backend=none",
                    "--disable-kube-proxy",
                    "--disable=coredns",
                ][..]
            })
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

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.in_ns("kubectl")
            .env("KUBECONFIG", self.data().join("kubeconfig.yaml"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("kubectl runs")
    }

    /// Imports an image archive into the server's node (agents: their own data dir).
    pub fn import_image(&self, archive: &Path) {
        let st = Command::new(skiff_bin())
            .args(["image", "import"])
            .arg(archive)
            .arg("--data-dir")
            .arg(self.data())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "skiff image import {} failed",
            archive.display()
        );
    }

    /// Runs kubectl with `input` on its stdin.
    pub fn kubectl_input(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .in_ns("kubectl")
            .env("KUBECONFIG", self.data().join("kubeconfig.yaml"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
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
    pub fn apply(&self, yaml: &str) {
        let p = self.data().join(format!("manifest-{}.yaml", rand_suffix()));
        std::fs::write(&p, yaml).unwrap();
        self.ok(&["apply", "-f", p.to_str().unwrap()]);
    }

    /// The pod's row in `kubectl get pods`, None if it does not exist (yet).
    pub fn row(&self, pod: &str) -> Option<Row> {
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
    pub fn jsonpath(&self, pod: &str, expr: &str) -> String {
        self.ok(&["get", "pod", pod, "-o", &format!("jsonpath={expr}")])
    }

    /// Waits until the pod's row satisfies `f`, returning every distinct STATUS seen on the way.
    pub fn wait_row(
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
    pub fn events(&self, pod: &str) -> Vec<(String, String, String, String)> {
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
    pub fn netns(&self) -> PathBuf {
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
    pub fn log_file(&self, pod: &str, container: &str, attempt: u32) -> String {
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
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every pod uid that ever ran here (from the log directories of every agent).
    pub fn pod_uids(&self) -> Vec<String> {
        self.agent_dirs()
            .iter()
            .flat_map(|dir| {
                std::fs::read_dir(dir.join("logs"))
                    .map(|rd| {
                        rd.flatten()
                            .filter_map(|e| {
                                let n = e.file_name().to_string_lossy().into_owned();
                                n.rsplit('_').next().map(str::to_string)
                            })
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect()
    }

    pub fn runtime_dirs_empty(&self) -> bool {
        self.agent_dirs().iter().all(|dir| {
            ["containers", "sandboxes"].iter().all(|d| {
                std::fs::read_dir(dir.join("containers").join(d))
                    .map(|mut rd| rd.next().is_none())
                    .unwrap_or(true)
            })
        })
    }
}

pub fn rand_suffix() -> String {
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
            for a in &self.agents {
                let log = std::fs::read_to_string(data.join(format!("agent-{}.log", a.name)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("--- agent {} log (tail) ---", a.name);
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
        let agent_dirs = self.agent_dirs();
        for a in &mut self.agents {
            if let Some(mut c) = a.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.kill9();
        // Whatever is left: containers, shims, mounts, cgroups of this data dir.
        for runc_root in agent_dirs.iter().map(|d| d.join("containers/runc")) {
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
