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
    s.wait_row(pod, "Running", Duration::from_secs(60), |r| {
        r.status == "Running"
    });
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
    let Some(mut s) = Server::start(&["--disable-agent"]) else {
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
}
