//! Deployments on real runc through the embedded node, driven by the real
//! kubectl: the seed's sequence (create, set image, edit, history, undo,
//! pause/resume, scale) asserting on kubectl's output, and a rollout to an
//! image that cannot be pulled, which stalls with the old pods still serving
//! until `kubectl rollout undo` recovers it (kubernetes#50021).

mod support;

use std::time::Duration;
use support::{Server, wait_for};

#[test]
fn a_failed_rollout_is_undone_and_old_pods_keep_serving_meanwhile() {
    let Some(s) = Server::start(&[]) else {
        return;
    };
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=3",
        "--",
        "sleep",
        "3600",
    ]);
    let out = s.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );

    // An image nobody has: the one surge pod cannot start; no old pod is taken
    // down (maxUnavailable rounds down to 0 at 3 replicas).
    s.ok(&[
        "set",
        "image",
        "deployment/web",
        "busybox=registry.invalid/nothing:1",
    ]);
    let stalled = s.kubectl(&["rollout", "status", "deployment/web", "--timeout=8s"]);
    assert!(!stalled.status.success());
    let text = String::from_utf8_lossy(&stalled.stderr).into_owned()
        + &String::from_utf8_lossy(&stalled.stdout);
    assert!(
        text.contains("Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated"),
        "{text}"
    );
    let rows = s.ok(&["get", "pods", "-l", "app=web", "--no-headers"]);
    assert_eq!(
        rows.lines().filter(|l| l.contains("Running")).count(),
        3,
        "old pods keep serving: {rows}"
    );
    assert!(
        rows.lines()
            .any(|l| l.contains("ErrImagePull") || l.contains("ImagePullBackOff")),
        "{rows}"
    );

    s.ok(&["rollout", "undo", "deployment/web"]);
    let out = s.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_for("the broken pod gone", Duration::from_secs(30), || {
        let rows = s.ok(&["get", "pods", "-l", "app=web", "--no-headers"]);
        (rows.lines().count() == 3 && rows.lines().all(|l| l.contains("Running"))).then_some(())
    });
    let images = s.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert_eq!(images, "busybox busybox busybox");
    let history = s.ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, vec!["2", "3"], "{history}");
}

/// Builds a busybox image tagged `tag` and imports it into the server's node.
fn import_tag(s: &Server, tag: &str) {
    let archive = s
        .data()
        .join(format!("{}.tar", tag.replace([':', '/'], "_")));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/build-busybox-image.sh");
    let st = std::process::Command::new("bash")
        .arg(&script)
        .arg(&archive)
        .arg(tag)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "building {tag}");
    let st = std::process::Command::new(support::skiff_bin())
        .args(["image", "import"])
        .arg(&archive)
        .arg("--data-dir")
        .arg(s.data())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "importing {tag}");
}

/// The image of every live pod of app=nginx, sorted.
fn pod_images(s: &Server) -> Vec<String> {
    let out = s.ok(&[
        "get", "pods", "-l", "app=nginx", "-o",
        "jsonpath={range .items[*]}{.metadata.deletionTimestamp}/{.spec.containers[0].image}{\"\\n\"}{end}",
    ]);
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix('/'))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn rolled_out(s: &Server) {
    let out = s.ok(&["rollout", "status", "deployment/nginx", "--timeout=90s"]);
    assert!(
        out.trim_end()
            .ends_with("deployment \"nginx\" successfully rolled out"),
        "{out}"
    );
}

/// The seed's upgrade, rollback and scaling sequence on real runc, asserting
/// on what kubectl prints after each step.
#[test]
fn the_seed_rollout_sequence_on_runc() {
    let Some(s) = Server::start(&[]) else {
        return;
    };
    import_tag(&s, "busybox:1.36");
    import_tag(&s, "busybox:1.37");
    s.apply(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx
  labels: {app: nginx}
spec:
  replicas: 3
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: nginx
        image: busybox:1.36
        command: [sleep, '3600']
",
    );
    rolled_out(&s);
    let row = s.ok(&["get", "deployment", "nginx", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cols[..4],
        &["nginx", "3/3", "3", "3"],
        "READY UP-TO-DATE AVAILABLE: {row}"
    );
    assert_eq!(pod_images(&s), vec!["busybox:1.36"; 3]);

    // set image: a rolling update.
    s.ok(&["set", "image", "deployment/nginx", "nginx=busybox:1.37"]);
    rolled_out(&s);
    wait_for("only 1.37 pods", Duration::from_secs(30), || {
        (pod_images(&s) == vec!["busybox:1.37"; 3]).then_some(())
    });

    // edit: the template's image back to 1.36, through $KUBE_EDITOR.
    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", s.data().join("kubeconfig.yaml"))
        .env("KUBE_EDITOR", "sed -i s#busybox:1.37#busybox:1.36#")
        .args(["edit", "deployment/nginx"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deployment.apps/nginx edited"
    );
    rolled_out(&s);
    wait_for("1.36 pods again", Duration::from_secs(30), || {
        (pod_images(&s) == vec!["busybox:1.36"; 3]).then_some(())
    });

    // history: revision 1 came back as 3.
    let history = s.ok(&["rollout", "history", "deployment/nginx"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, vec!["2", "3"], "{history}");
    let rev2 = s.ok(&["rollout", "history", "deployment/nginx", "--revision=2"]);
    assert!(rev2.contains("busybox:1.37"), "{rev2}");

    // undo to revision 2.
    s.ok(&["rollout", "undo", "deployment/nginx", "--to-revision=2"]);
    rolled_out(&s);
    wait_for("1.37 pods after undo", Duration::from_secs(30), || {
        (pod_images(&s) == vec!["busybox:1.37"; 3]).then_some(())
    });

    // pause: two changes, no rollout; resume: one rollout for both.
    let sets_before = s
        .ok(&["get", "rs", "-l", "app=nginx", "-o", "name"])
        .lines()
        .count();
    s.ok(&["rollout", "pause", "deployment/nginx"]);
    s.ok(&["set", "image", "deployment/nginx", "nginx=busybox:1.36"]);
    s.ok(&["set", "resources", "deployment/nginx", "--limits=cpu=200m"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        pod_images(&s),
        vec!["busybox:1.37"; 3],
        "nothing rolls while paused"
    );
    s.ok(&["rollout", "resume", "deployment/nginx"]);
    rolled_out(&s);
    wait_for(
        "1.36 pods with the cpu limit",
        Duration::from_secs(30),
        || {
            let limits = s.ok(&[
                "get",
                "pods",
                "-l",
                "app=nginx",
                "-o",
                "jsonpath={.items[*].spec.containers[0].resources.limits.cpu}",
            ]);
            (pod_images(&s) == vec!["busybox:1.36"; 3] && limits == "200m 200m 200m").then_some(())
        },
    );
    let sets_after = s
        .ok(&["get", "rs", "-l", "app=nginx", "-o", "name"])
        .lines()
        .count();
    assert_eq!(
        sets_after,
        sets_before + 1,
        "one new ReplicaSet for both changes"
    );

    // scale.
    s.ok(&["scale", "deployment", "nginx", "--replicas=5"]);
    rolled_out(&s);
    let row = s.ok(&["get", "deployment", "nginx", "--no-headers"]);
    assert_eq!(
        &row.split_whitespace().collect::<Vec<_>>()[..4],
        &["nginx", "5/5", "5", "5"],
        "{row}"
    );

    // ReplicaSets and pods carry the pod-template-hash.
    let rs = s.ok(&["get", "rs", "-l", "app=nginx", "--no-headers"]);
    let current: Vec<&str> = rs
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("5"))
        .collect();
    assert_eq!(current.len(), 1, "{rs}");
    let rs_name = current[0].split_whitespace().next().unwrap();
    let hash = rs_name.strip_prefix("nginx-").expect("nginx-<hash>");
    let pods = s.ok(&[
        "get",
        "pods",
        "-l",
        &format!("pod-template-hash={hash}"),
        "-o",
        "name",
    ]);
    assert_eq!(pods.lines().count(), 5, "{pods}");
    assert!(
        pods.lines()
            .all(|p| p.starts_with(&format!("pod/{rs_name}-"))),
        "{pods}"
    );
}
