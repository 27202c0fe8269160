//! End to end: resource metrics and the HorizontalPodAutoscaler on real CPU
//! use. Pods of a Deployment burn CPU (a busybox loop) under a 100m request
//! until a file on the node's hostPath appears; `kubectl top` shows the use,
//! the HPA scales the Deployment up, and back down once the load stops and
//! the (shortened) stabilisation window has passed.

mod support;

use std::time::Duration;
use support::{Server, wait_for};

/// Millicores from a `kubectl top` CPU column ("523m", "1").
fn millicores(s: &str) -> u64 {
    match s.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => s.parse::<u64>().unwrap() * 1000,
    }
}

#[test]
fn hpa_scales_a_busy_deployment_up_and_back_down() {
    let Some(s) = Server::start(&[
        "--metric-resolution=2s",
        "--horizontal-pod-autoscaler-sync-period=2s",
        "--horizontal-pod-autoscaler-downscale-stabilization=10s",
    ]) else {
        return;
    };
    let flag_dir = s.data().join("load");
    std::fs::create_dir_all(&flag_dir).unwrap();
    s.apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: burn}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: burn}}}}
  template:
    metadata: {{labels: {{app: burn}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: loop
        image: busybox
        command: [sh, -c, 'while :; do if [ -e /load/stop ]; then sleep 1; fi; done']
        resources: {{requests: {{cpu: 100m}}}}
        volumeMounts: [{{name: load, mountPath: /load}}]
      volumes:
      - {{name: load, hostPath: {{path: {}, type: Directory}}}}
"#,
        flag_dir.display()
    ));
    s.ok(&["rollout", "status", "deployment/burn", "--timeout=60s"]);

    // kubectl top: the busy pod uses most of a core, and the node at least that.
    let (pod, cpu) = wait_for("kubectl top pod", Duration::from_secs(30), || {
        let out = s.kubectl(&["top", "pod", "-l", "app=burn", "--no-headers"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let cols: Vec<&str> = text.split_whitespace().collect();
        (out.status.success() && cols.len() >= 3)
            .then(|| (cols[0].to_string(), millicores(cols[1])))
    });
    assert!(pod.starts_with("burn-"), "{pod}");
    assert!(cpu >= 300, "a CPU loop shows as {cpu}m");
    let containers = s.ok(&["top", "pod", &pod, "--containers", "--no-headers"]);
    assert!(containers.contains(" loop "), "{containers}");
    let node = s.ok(&["top", "node", "--no-headers"]);
    let node_cpu = millicores(node.split_whitespace().nth(1).unwrap());
    assert!(node_cpu >= 300, "node CPU {node_cpu}m: {node}");

    s.ok(&[
        "autoscale",
        "deployment",
        "burn",
        "--cpu-percent=50",
        "--min=1",
        "--max=3",
    ]);
    wait_for("scaled up to 3", Duration::from_secs(90), || {
        let r = s.ok(&[
            "get",
            "deployment",
            "burn",
            "-o",
            "jsonpath={.spec.replicas}",
        ]);
        (r == "3").then_some(())
    });
    let hpa = s.ok(&["get", "hpa", "burn", "--no-headers"]);
    assert!(hpa.contains("/50%"), "TARGETS: {hpa}");
    let describe = s.ok(&["describe", "hpa", "burn"]);
    assert!(describe.contains("SuccessfulRescale"), "{describe}");
    assert!(
        describe.contains("cpu resource utilization (percentage of request) above target"),
        "{describe}"
    );

    // The load stops: after the stabilisation window the HPA scales back to 1.
    std::fs::write(flag_dir.join("stop"), b"").unwrap();
    wait_for("scaled back down to 1", Duration::from_secs(120), || {
        let r = s.ok(&[
            "get",
            "deployment",
            "burn",
            "-o",
            "jsonpath={.spec.replicas}",
        ]);
        (r == "1").then_some(())
    });
    let describe = s.ok(&["describe", "hpa", "burn"]);
    assert!(describe.contains("All metrics below target"), "{describe}");
}
