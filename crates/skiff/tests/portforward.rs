//! `kubectl port-forward` end to end: the real `skiff` binary runs a busybox
//! httpd pod under runc, the real kubectl forwards a local port to it, and a
//! plain TCP client fetches files through the tunnel — over kubectl's
//! default WebSocket-tunnelled SPDY and over the direct SPDY upgrade.
//!
//! Needs root, runc, /bin/busybox (busybox-static) and kubectl. Without them
//! the test is skipped with a loud message, unless `CI` is set, where that is
//! a failure.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The busybox image archive, built once per test binary.
fn busybox_image() -> &'static PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let tmp = dir.join(format!("pf-e2e-busybox-{}.tar.tmp", std::process::id()));
        let out = dir.join("pf-e2e-busybox.tar");
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

/// A private copy of the skiff binary (the target dir may be shared, and the
/// server's shims run the same file, so it must stay put).
fn skiff_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let tmp = dir.join(format!("pf-e2e-skiff-{}.tmp", std::process::id()));
        let out = dir.join("pf-e2e-skiff");
        std::fs::copy(env!("CARGO_BIN_EXE_skiff"), &tmp).expect("copying the skiff binary");
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
}

/// Why the test cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root".into());
    }
    for (tool, args) in [
        ("runc", &["--version"][..]),
        ("kubectl", &["version", "--client"][..]),
    ] {
        if !Command::new(tool)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
        {
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

/// A `skiff server` with its embedded agent on a temp data dir.
struct Server {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    /// Starts a server, or None (after a loud message) when the prerequisites
    /// are missing.
    fn start() -> Option<Server> {
        if let Some(why) = missing_prerequisite() {
            if std::env::var_os("CI").is_some() {
                panic!("port-forward e2e test cannot run: {why}");
            }
            eprintln!(
                "\n\n*** SKIPPING port-forward e2e test: {why} (needs root, runc, busybox-static, kubectl) ***\n\n"
            );
            return None;
        }
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
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(skiff_bin())
            .arg("server")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--https-listen-port", &port.to_string()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("skiff runs");
        let s = Server {
            dir,
            child: Some(child),
        };
        let kubeconfig = s.data().join("kubeconfig.yaml");
        wait_for("the server to answer", Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&kubeconfig).ok()?;
            if !text.contains(&format!(":{port}")) {
                return None;
            }
            s.kubectl(&["get", "--raw", "/readyz"])
                .status
                .success()
                .then_some(())
        });
        Some(s)
    }

    fn data(&self) -> &Path {
        self.dir.path()
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

    fn apply(&self, yaml: &str) {
        let p = self.data().join("manifest.yaml");
        std::fs::write(&p, yaml).unwrap();
        self.ok(&["apply", "-f", p.to_str().unwrap()]);
    }

    /// `kubectl port-forward pod/POD LOCAL:REMOTE -v=4` in the background,
    /// with `env` added; returns once it says it is forwarding.
    fn port_forward(&self, pod: &str, local: u16, remote: u16, env: &[(&str, &str)]) -> Forward {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let out_path = self.data().join(format!("pf-{n}.out"));
        let err_path = self.data().join(format!("pf-{n}.err"));
        let child = Command::new("kubectl")
            .env("KUBECONFIG", self.data().join("kubeconfig.yaml"))
            .envs(env.iter().copied())
            .args([
                "port-forward",
                &format!("pod/{pod}"),
                &format!("{local}:{remote}"),
                "-v=4",
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .expect("kubectl runs");
        let mut f = Forward {
            child,
            out_path,
            err_path,
        };
        wait_for(
            "kubectl port-forward to listen",
            Duration::from_secs(20),
            || {
                if let Ok(Some(st)) = f.child.try_wait() {
                    panic!("kubectl port-forward exited ({st}):\n{}", f.stderr());
                }
                f.stdout().contains("Forwarding from").then_some(())
            },
        );
        f
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let data = self.data().to_path_buf();
        let data_s = data.to_string_lossy().into_owned();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(data.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- server log (tail) ---");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
        // Let the agent stop and remove its pods, then stop the server.
        let _ = self.kubectl(&[
            "delete",
            "pod",
            "--all",
            "--grace-period=0",
            "--force",
            "--wait=false",
        ]);
        let deadline = Instant::now() + Duration::from_secs(20);
        let empty = || {
            ["containers", "sandboxes"].iter().all(|d| {
                std::fs::read_dir(data.join("agent/containers").join(d))
                    .map(|mut rd| rd.next().is_none())
                    .unwrap_or(true)
            })
        };
        while !empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
        }
        let uids: Vec<String> = std::fs::read_dir(data.join("agent/logs"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.rsplit('_').next().map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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

/// A running `kubectl port-forward`, killed (by its own pid) on drop.
struct Forward {
    child: Child,
    out_path: PathBuf,
    err_path: PathBuf,
}

impl Forward {
    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out_path).unwrap_or_default()
    }
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err_path).unwrap_or_default()
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.0 GET over a plain TCP connection: (status line, body).
fn get(port: u16, path: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&resp)));
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head.lines().next().unwrap_or("").to_string();
    (status, resp[split + 4..].to_vec())
}

#[test]
fn kubectl_port_forward_reaches_busybox_httpd() {
    let Some(s) = Server::start() else { return };
    s.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: busybox
    command: [sh, -c, 'echo "hello through port-forward" > /www/index.html; head -c 300000 /dev/zero | tr "\0" x > /www/big; exec httpd -f -p 8080 -h /www']
    volumeMounts: [{name: www, mountPath: /www}]
  volumes:
  - {name: www, emptyDir: {}}
"#,
    );
    wait_for("pod web Running", Duration::from_secs(60), || {
        let out = s.kubectl(&["get", "pod", "web", "-o", "jsonpath={.status.phase}"]);
        (String::from_utf8_lossy(&out.stdout) == "Running").then_some(())
    });

    // kubectl's default (WebSocket tunnel, falling back to SPDY if refused),
    // then the direct SPDY upgrade only.
    for (mode, env) in [
        ("websocket", &[][..]),
        ("spdy", &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")][..]),
    ] {
        let local = free_port();
        let pf = s.port_forward("web", local, 8080, env);
        assert!(
            pf.stdout()
                .contains(&format!("Forwarding from 127.0.0.1:{local} -> 8080")),
            "{mode}: {}",
            pf.stdout()
        );
        // httpd may need a moment after the pod turns Running.
        let first = wait_for("httpd through the tunnel", Duration::from_secs(10), || {
            let r = std::panic::catch_unwind(|| get(local, "/index.html")).ok()?;
            r.0.contains("200").then_some(r)
        });
        assert_eq!(first.1, b"hello through port-forward\n", "{mode}");
        // A second connection is a second stream pair on the same session.
        let (status, body) = get(local, "/index.html");
        assert!(status.contains("200 OK"), "{mode}: {status}");
        assert_eq!(body, b"hello through port-forward\n", "{mode}");
        // More than the 64 KiB initial SPDY window.
        let (status, body) = get(local, "/big");
        assert!(status.contains("200 OK"), "{mode}: {status}");
        assert_eq!(body.len(), 300_000, "{mode}");
        assert!(body.iter().all(|&b| b == b'x'), "{mode}");

        let out = pf.stdout();
        assert!(
            out.matches(&format!("Handling connection for {local}"))
                .count()
                >= 3,
            "{mode}: {out}"
        );
        let err = pf.stderr();
        let fell_back = err.contains("fallback to secondary dialer");
        match mode {
            "websocket" => assert!(!fell_back, "the WebSocket tunnel was refused:\n{err}"),
            _ => assert!(
                !err.contains("Before WebSocket Upgrade"),
                "KUBECTL_PORT_FORWARD_WEBSOCKETS=false still tried WebSockets:\n{err}"
            ),
        }
        assert!(
            !err.to_lowercase().contains("error"),
            "{mode}: kubectl reported an error:\n{err}"
        );
    }

    // A port nothing listens on: kubectl reports the kubelet-style error.
    let local = free_port();
    let pf = s.port_forward("web", local, 9999, &[]);
    let _ = std::panic::catch_unwind(|| get(local, "/"));
    let err = wait_for("the forwarding error", Duration::from_secs(10), || {
        let e = pf.stderr();
        e.contains("error forwarding port 9999 to pod web, uid ")
            .then_some(e)
    });
    assert!(
        err.contains(&format!("an error occurred forwarding {local} -> 9999")),
        "{err}"
    );
    assert!(!err.contains("Internal error occurred"), "{err}");
}
