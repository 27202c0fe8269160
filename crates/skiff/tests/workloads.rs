//! Deployments on real runc through the embedded node, driven by the real
//! kubectl: a rollout to an image that cannot be pulled stalls with the old
//! pods still serving, and `kubectl rollout undo` recovers it
//! (kubernetes#50021).

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
