//! End to end: `examples/statefulset-db` on real runc, CNI and kubectl: a
//! StorageClass, a headless Service and a 3-member etcd StatefulSet whose
//! members find each other through their per-pod DNS names and keep their
//! data on volumes from the built-in local-path provisioner.

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use support::{Server, wait_for};

/// The etcd image archive (scripts/build-etcd-image.sh), built once.
fn etcd_image() -> Option<&'static PathBuf> {
    static IMAGE: OnceLock<Option<PathBuf>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            if !Path::new("/usr/bin/etcd").exists() {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "etcd-server is missing in CI"
                );
                eprintln!("\n*** SKIPPING StatefulSet e2e: /usr/bin/etcd missing (apt-get install etcd-server) ***\n");
                return None;
            }
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-etcd-image.tar");
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-etcd-image.sh");
            let st = std::process::Command::new("bash")
                .arg(&script)
                .arg(&out)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "{} failed", script.display());
            Some(out)
        })
        .as_ref()
}

fn ready(s: &Server, pod: &str) -> bool {
    s.jsonpath(pod, "{.status.conditions[?(@.type==\"Ready\")].status}") == "True"
}

/// `etcdctl` in member `pod` against its own endpoint.
fn etcdctl(s: &Server, pod: &str, args: &[&str]) -> Option<String> {
    let mut full = vec![
        "exec",
        pod,
        "--",
        "etcdctl",
        "--endpoints=http://127.0.0.1:2379",
        "--command-timeout=5s",
    ];
    full.extend_from_slice(args);
    let out = s.kubectl(&full);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn etcd_statefulset_keeps_names_dns_and_data() {
    let Some(image) = etcd_image() else { return };
    let storage = tempfile::tempdir().unwrap();
    let storage_path = storage.path().to_str().unwrap().to_string();
    let Some(s) = Server::start_networked(&[
        "--node-name",
        "n1",
        "--default-local-storage-path",
        &storage_path,
    ]) else {
        return;
    };
    s.import_image(image);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/statefulset-db");
    s.ok(&["apply", "-f", example.to_str().unwrap()]);
    // The example's class provisions under the default path; point it here.
    // (00-storageclass.yaml names no nodePath, so the server flag decides.)

    // OrderedReady: db-1 is created only once db-0 is Ready, db-2 after db-1.
    wait_for("db-0, db-1, db-2 Ready", Duration::from_secs(180), || {
        ["db-0", "db-1", "db-2"]
            .iter()
            .all(|p| ready(&s, p))
            .then_some(())
    });
    let ready_at = |p: &str| {
        s.jsonpath(
            p,
            "{.status.conditions[?(@.type==\"Ready\")].lastTransitionTime}",
        )
    };
    let created = |p: &str| s.jsonpath(p, "{.metadata.creationTimestamp}");
    assert!(created("db-1") >= ready_at("db-0"), "db-1 waited for db-0");
    assert!(created("db-2") >= ready_at("db-1"), "db-2 waited for db-1");
    assert_eq!(
        s.jsonpath("db-1", "{.spec.hostname}/{.spec.subdomain}"),
        "db-1/db"
    );

    // One claim per member, Bound to a provisioned volume under the storage path.
    for i in 0..3 {
        let claim = format!("data-db-{i}");
        let phase = s.ok(&["get", "pvc", &claim, "-o", "jsonpath={.status.phase}"]);
        assert_eq!(phase, "Bound", "{claim}");
        let pv = s.ok(&["get", "pvc", &claim, "-o", "jsonpath={.spec.volumeName}"]);
        let path = s.ok(&["get", "pv", &pv, "-o", "jsonpath={.spec.hostPath.path}"]);
        assert!(path.starts_with(&storage_path), "{path}");
    }

    // The members found each other by name: a 3-member cluster.
    let members = wait_for("a 3-member etcd cluster", Duration::from_secs(60), || {
        etcdctl(&s, "db-0", &["member", "list"]).filter(|m| m.lines().count() == 3)
    });
    for i in 0..3 {
        assert!(
            members.contains(&format!("http://db-{i}.db.default.svc.cluster.local:2380")),
            "{members}"
        );
    }
    // Per-pod DNS names resolve to the right pods.
    let ip1 = s.jsonpath("db-1", "{.status.podIP}");
    let lookup = s.ok(&[
        "exec",
        "db-0",
        "--",
        "nslookup",
        "db-1.db.default.svc.cluster.local",
    ]);
    assert!(lookup.contains(&ip1), "{lookup}");
    wait_for("a write", Duration::from_secs(30), || {
        etcdctl(&s, "db-0", &["put", "greeting", "hello"])
    });

    // db-0 deleted: it comes back as db-0, on the same claim, with the data.
    let uid = s.jsonpath("db-0", "{.metadata.uid}");
    s.ok(&["delete", "pod", "db-0", "--wait=false"]);
    wait_for("db-0 back and Ready", Duration::from_secs(120), || {
        (s.jsonpath("db-0", "{.metadata.uid}") != uid && ready(&s, "db-0")).then_some(())
    });
    assert_eq!(
        s.jsonpath(
            "db-0",
            "{.spec.volumes[?(@.name==\"data\")].persistentVolumeClaim.claimName}"
        ),
        "data-db-0"
    );
    let got = wait_for("db-0 reads the data", Duration::from_secs(60), || {
        etcdctl(&s, "db-0", &["get", "greeting", "--print-value-only"])
    });
    assert_eq!(got.trim(), "hello");

    // Scale down (the highest ordinal goes), then up: db-2 returns on its claim.
    s.ok(&["scale", "sts", "db", "--replicas=2"]);
    wait_for("db-2 gone", Duration::from_secs(60), || {
        (!s.kubectl(&["get", "pod", "db-2"]).status.success()).then_some(())
    });
    assert_eq!(
        s.ok(&["get", "pvc", "data-db-2", "-o", "jsonpath={.status.phase}"]),
        "Bound",
        "kept"
    );
    s.ok(&["scale", "sts", "db", "--replicas=3"]);
    wait_for("db-2 back and Ready", Duration::from_secs(120), || {
        ready(&s, "db-2").then_some(())
    });
    let got = wait_for("db-2 reads the data", Duration::from_secs(60), || {
        etcdctl(&s, "db-2", &["get", "greeting", "--print-value-only"])
    });
    assert_eq!(got.trim(), "hello");

    // Deleting the set and its claims deletes the volumes and their directories.
    let dirs: Vec<PathBuf> = std::fs::read_dir(storage.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 3, "{dirs:?}");
    s.ok(&["delete", "sts", "db"]);
    wait_for("members gone", Duration::from_secs(60), || {
        let out = s.ok(&["get", "pods", "-l", "app=db", "-o", "name"]);
        out.trim().is_empty().then_some(())
    });
    s.ok(&["delete", "pvc", "data-db-0", "data-db-1", "data-db-2"]);
    wait_for(
        "volumes and directories gone",
        Duration::from_secs(60),
        || {
            let pvs = s.ok(&["get", "pv", "-o", "name"]);
            (pvs.trim().is_empty() && dirs.iter().all(|d| !d.exists())).then_some(())
        },
    );
}
