//! Several nodes on one machine: a server without its own node and two
//! `skiff agent`s (separate data dirs, real runc), driven by the real kubectl.
//! Pods spread across nodes and obey node selectors, taints and cordons;
//! logs, exec and port-forward reach pods on remote nodes through the
//! agents' kubelet endpoints.

mod support;

use std::time::Duration;
use support::{Server, wait_for};

fn pod(name: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "echo hello from {name}; exec sleep 3600"]
    resources:
      requests:
        cpu: 10m
        memory: 8Mi
{extra_spec}"#
    )
}

fn node_of(s: &Server, pod: &str) -> String {
    s.jsonpath(pod, "{.spec.nodeName}")
}

fn wait_running(s: &Server, pod: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while s.row(pod).is_none_or(|r| r.status != "Running") {
        if std::time::Instant::now() > deadline {
            let describe = s.kubectl(&["describe", "pod", pod]);
            let nodes = s.kubectl(&["get", "nodes", "-o", "yaml"]);
            panic!(
                "pod {pod} never Running:\n{}\n{}",
                String::from_utf8_lossy(&describe.stdout),
                String::from_utf8_lossy(&nodes.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Like `wait_for`, with the cluster's state in the failure message.
fn wait_or_dump<T>(
    s: &Server,
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if std::time::Instant::now() > deadline {
            let dump = |args: &[&str]| {
                let o = s.kubectl(args);
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            };
            panic!(
                "timed out waiting for {what}\n{}\n{}\n{}\n{}",
                dump(&["get", "nodes", "-o", "wide"]),
                dump(&["get", "deploy,rs,pods", "-o", "wide"]),
                dump(&["describe", "pods", "-l", "app=survivor"]),
                dump(&["get", "node", "worker-2", "-o", "yaml"]),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn scheduled_message(s: &Server, pod: &str) -> String {
    wait_for(
        &format!("{pod} to be marked unschedulable"),
        Duration::from_secs(20),
        || {
            let m = s.jsonpath(
                pod,
                "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
            );
            (!m.is_empty()).then_some(m)
        },
    )
}

#[test]
fn pods_spread_over_joined_nodes_and_obey_selectors_taints_and_cordons() {
    let Some(mut s) = Server::start(&[
        "--disable-agent",
        "--node-monitor-grace-period=15s",
        "--node-monitor-period=1s",
        "--default-unreachable-toleration-seconds=4",
    ]) else {
        return;
    };
    s.join_agent("worker-1", &[]);
    s.join_agent("worker-2", &[]);
    let nodes = s.ok(&["get", "nodes", "--no-headers"]);
    assert_eq!(
        nodes
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count(),
        2,
        "{nodes}"
    );

    // Equal pods spread evenly (LeastAllocated and BalancedAllocation).
    for i in 0..4 {
        s.apply(&pod(&format!("spread-{i}"), ""));
    }
    for i in 0..4 {
        wait_running(&s, &format!("spread-{i}"));
    }
    let on: Vec<String> = (0..4)
        .map(|i| node_of(&s, &format!("spread-{i}")))
        .collect();
    assert_eq!(
        on.iter().filter(|n| *n == "worker-1").count(),
        2,
        "pods spread 2/2: {on:?}"
    );

    // Logs and exec reach a pod on each node through that node's agent.
    for i in 0..2 {
        let name = format!("spread-{i}");
        let logs = s.ok(&["logs", &name]);
        assert_eq!(logs, format!("hello from {name}\n"));
        let out = s.ok(&[
            "exec",
            &name,
            "--",
            "sh",
            "-c",
            "echo $((6*7)); cat /proc/1/cmdline | head -c 5",
        ]);
        assert_eq!(
            out, "42\nsleep",
            "the command ran in the pod, whose PID 1 is sleep"
        );
        let failed = s.kubectl(&["exec", &name, "--", "sh", "-c", "exit 3"]);
        assert_eq!(failed.status.code(), Some(3), "exit codes travel back");
    }

    // nodeSelector.
    s.ok(&["label", "node", "worker-2", "disk=ssd"]);
    s.apply(&pod("ssd", "  nodeSelector:\n    disk: ssd\n"));
    wait_running(&s, "ssd");
    assert_eq!(node_of(&s, "ssd"), "worker-2");

    // Taints keep pods away unless tolerated.
    s.ok(&["taint", "node", "worker-1", "dedicated=db:NoSchedule"]);
    for i in 0..2 {
        s.apply(&pod(&format!("plain-{i}"), ""));
    }
    s.apply(&pod(
        "db",
        "  nodeSelector:\n    kubernetes.io/hostname: worker-1\n  tolerations:\n  - key: dedicated\n    value: db\n    effect: NoSchedule\n",
    ));
    for p in ["plain-0", "plain-1", "db"] {
        wait_running(&s, p);
    }
    assert_eq!(node_of(&s, "plain-0"), "worker-2");
    assert_eq!(node_of(&s, "plain-1"), "worker-2");
    assert_eq!(node_of(&s, "db"), "worker-1");

    // Nothing fits: Kubernetes' FailedScheduling message, counted per node.
    s.apply(&pod("nowhere", "  nodeSelector:\n    disk: hdd\n"));
    let msg = scheduled_message(&s, "nowhere");
    assert_eq!(
        msg,
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: db}. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );

    // Cordon: no new pods on worker-2; uncordon lets the waiting pod in.
    s.ok(&["cordon", "worker-2"]);
    let nodes = s.ok(&["get", "node", "worker-2", "--no-headers"]);
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    s.apply(&pod("late", ""));
    let msg = scheduled_message(&s, "late");
    assert!(
        msg.starts_with("0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 1 node(s) were unschedulable."),
        "{msg}"
    );
    s.ok(&["uncordon", "worker-2"]);
    wait_running(&s, "late");
    assert_eq!(node_of(&s, "late"), "worker-2");

    // A node is lost: its pods are evicted after their toleration and their
    // Deployment replaces them on the node that is left.
    s.ok(&["taint", "node", "worker-1", "dedicated-"]);
    s.ok(&["cordon", "worker-1"]);
    s.ok(&[
        "create",
        "deployment",
        "survivor",
        "--image=busybox",
        "--replicas=2",
        "--",
        "sleep",
        "3600",
    ]);
    let survivors = |s: &Server| -> Vec<(String, String, String)> {
        s.ok(&[
            "get", "pods", "-l", "app=survivor", "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ])
        .lines()
        .map(|l| {
            let mut f = l.split(' ').map(str::to_string);
            (f.next().unwrap_or_default(), f.next().unwrap_or_default(), f.next().unwrap_or_default())
        })
        .collect()
    };
    let first = wait_for(
        "2 survivor pods on worker-2",
        Duration::from_secs(60),
        || {
            let pods = survivors(&s);
            let running = s.ok(&["get", "pods", "-l", "app=survivor", "--no-headers"]);
            (pods.len() == 2
                && pods.iter().all(|p| p.1 == "worker-2")
                && running.lines().filter(|l| l.contains("Running")).count() == 2)
                .then_some(pods)
        },
    );
    s.ok(&["uncordon", "worker-1"]);
    s.kill_agent("worker-2");
    wait_for("worker-2 NotReady", Duration::from_secs(30), || {
        let row = s.ok(&["get", "node", "worker-2", "--no-headers"]);
        (row.split_whitespace().nth(1) == Some("NotReady")).then_some(())
    });
    let taints = s.ok(&[
        "get",
        "node",
        "worker-2",
        "-o",
        "jsonpath={.spec.taints[*].key}",
    ]);
    assert!(
        taints.contains("node.kubernetes.io/unreachable"),
        "{taints}"
    );
    wait_or_dump(
        &s,
        "replacements Running on worker-1",
        Duration::from_secs(60),
        || {
            let pods = survivors(&s);
            let live: Vec<_> = pods.iter().filter(|p| p.2.is_empty()).collect();
            let rows = s.ok(&[
                "get",
                "pods",
                "-l",
                "app=survivor",
                "-o",
                "wide",
                "--no-headers",
            ]);
            let running_on_1 = rows
                .lines()
                .filter(|l| l.contains("Running") && l.contains("worker-1"))
                .count();
            (live.len() == 2 && live.iter().all(|p| p.1 == "worker-1") && running_on_1 == 2)
                .then_some(())
        },
    );
    // The lost pods are being deleted; their kubelet never confirms it.
    let rows = s.ok(&["get", "pods", "-l", "app=survivor", "--no-headers"]);
    for (name, _, _) in &first {
        let row = rows
            .lines()
            .find(|l| l.starts_with(name.as_str()))
            .unwrap_or("");
        assert!(
            row.contains("Terminating"),
            "{name} on the lost node: {rows}"
        );
    }
}
