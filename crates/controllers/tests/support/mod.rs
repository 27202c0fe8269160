//! What the controller integration tests share: an in-process API server on
//! the memory store with the controllers a test chooses, and the real kubectl
//! against it. Each test brings its own stand-in kubelet.

#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A running API server with controllers.
pub struct Cluster {
    /// An in-process client (no TLS).
    pub client: kube::Client,
    /// The admin kubeconfig, for kubectl.
    pub kubeconfig: std::path::PathBuf,
    /// What `kubectl get` lists when a wait times out.
    dump: &'static str,
    _stop: watch::Sender<bool>,
    running: Option<skiff_apiserver::Running>,
    /// A scratch dir for manifests, removed with the cluster.
    pub dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.running.take();
    }
}

impl Cluster {
    /// Starts a server; `spawn` starts the controllers (and stand-ins) the
    /// test wants with its client and shutdown signal. `dump` is what
    /// `kubectl get` shows when a wait times out (e.g. `deploy,rs,pods`).
    pub async fn start(
        dump: &'static str,
        spawn: impl FnOnce(&kube::Client, &watch::Receiver<bool>),
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut c = skiff_apiserver::Config::new(dir.path());
        c.port = 0;
        let running = skiff_apiserver::start_with_store(
            c,
            std::sync::Arc::new(skiff_store::MemoryStore::new()),
        )
        .await
        .unwrap();
        let client = kube::Client::new(
            skiff_apiserver::inproc::InProcess(running.server.clone()),
            "default",
        );
        let (stop, shutdown) = watch::channel(false);
        spawn(&client, &shutdown);
        Cluster {
            client,
            kubeconfig: running.kubeconfig.clone(),
            dump,
            _stop: stop,
            running: Some(running),
            dir,
        }
    }

    /// Runs kubectl: (success, stdout and stderr).
    pub fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Runs kubectl, which must succeed; its output.
    pub fn ok(&self, args: &[&str]) -> String {
        let (good, text) = self.kubectl(args);
        assert!(good, "kubectl {args:?}: {text}");
        text
    }

    /// Writes `manifest` to `<name>.json` in the scratch dir and `kubectl apply`s
    /// it, which must succeed.
    pub fn apply(&self, name: &str, manifest: &str) {
        let path = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, manifest).unwrap();
        self.ok(&["apply", "-f", path.to_str().unwrap()]);
    }

    /// Waits up to 30 s for `f`, showing the cluster's objects if it never holds.
    pub fn wait(&self, what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out: {what}\n{}",
                self.ok(&["get", self.dump, "-o", "wide"])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// True (after a loud message) when kubectl is missing; in CI that is a failure.
pub fn no_kubectl() -> bool {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        assert!(std::env::var_os("CI").is_none(), "kubectl missing in CI");
        eprintln!("\n*** SKIPPING: no kubectl ***\n");
        return true;
    }
    false
}

/// Polls `f` until it gives a value, for up to 15 s.
pub async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
