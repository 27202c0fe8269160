//! `kubectl port-forward` end to end: the real `skiff` binary runs a busybox
//! httpd pod under runc, the real kubectl forwards a local port to it, and a
//! plain TCP client fetches files through the tunnel — over kubectl's
//! default WebSocket-tunnelled SPDY and over the direct SPDY upgrade.
//!
//! Needs root, runc, /bin/busybox (busybox-static) and kubectl. Without them
//! the test is skipped with a loud message, unless `CI` is set, where that is
//! a failure.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

/// `kubectl port-forward pod/POD LOCAL:REMOTE -v=4` in the background,
/// with `env` added; returns once it says it is forwarding.
fn port_forward(s: &Server, pod: &str, local: u16, remote: u16, env: &[(&str, &str)]) -> Forward {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let out_path = s.data().join(format!("pf-{n}.out"));
    let err_path = s.data().join(format!("pf-{n}.err"));
    let child = Command::new("kubectl")
        .env("KUBECONFIG", s.data().join("kubeconfig.yaml"))
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
    let Some(s) = Server::start(&[]) else { return };
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
        let pf = port_forward(&s, "web", local, 8080, env);
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
    let pf = port_forward(&s, "web", local, 9999, &[]);
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
