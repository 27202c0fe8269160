//! Scheduling throughput of the pure path the loop runs: 10,000 pods onto
//! 5,000 synthetic nodes through [`Scheduler`] (cache, queue, filters with
//! the adaptive percentage of nodes to score, scores, assume), with every
//! binding reported back at once and confirmed as the watch would.
//!
//! `cargo run --release -p skiff-scheduler --example throughput [nodes] [pods] [plain|spread|anti]`
//! (`spread`: a zone topology spread constraint on every pod; `anti`: required
//! pod anti-affinity by hostname on every pod; `preempt`: every node is full of
//! a low-priority pod and every pod must preempt one, victims going at once).

use std::time::Instant;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use skiff_scheduler::{Action, Scheduler};

fn node(i: usize) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": format!("node-{i}"), "labels": {
            "kubernetes.io/hostname": format!("node-{i}"),
            "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
        "status": {
            "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }))
    .expect("node")
}

fn pod(i: usize, mode: &str) -> Pod {
    let app = format!("app-{}", i % 50);
    let mut spec = json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]});
    match mode {
        // Every pod spreads its app over zones.
        "spread" => {
            spec["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": app}}}]);
        }
        // Every pod keeps away from pods of its app on the same node.
        "anti" => {
            spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}]}});
        }
        // Every pod needs a whole node and outranks the pods already there.
        "preempt" => {
            spec["priority"] = json!(100);
            spec["containers"][0]["resources"]["requests"]["cpu"] = json!("32");
        }
        _ => {}
    }
    serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{i}"), "namespace": "default", "uid": format!("uid-{i}"),
                     "labels": {"app": app}},
        "spec": spec,
    }))
    .expect("pod")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let pods: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let mode = args.next().unwrap_or_else(|| "plain".into());
    let mut now = Timestamp::now();
    let mut sched = Scheduler::new();
    for i in 0..nodes {
        sched.on_node(&node(i), now);
        if mode == "preempt" {
            // A low-priority pod already fills each node.
            let mut low = pod(i, "plain");
            low.metadata.name = Some(format!("low-{i}"));
            let spec = low.spec.as_mut().expect("spec");
            spec.node_name = Some(format!("node-{i}"));
            spec.containers[0]
                .resources
                .as_mut()
                .and_then(|r| r.requests.as_mut())
                .expect("requests")
                .insert(
                    "cpu".into(),
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity("32".into()),
                );
            sched.on_pod(low, now);
        }
    }
    let objects: Vec<Pod> = (0..pods).map(|i| pod(i, &mode)).collect();
    let start = Instant::now();
    for p in objects {
        sched.on_pod(p, now);
    }
    let queued = start.elapsed();
    let mut bound = 0usize;
    let mut failed = 0usize;
    let mut preempted = 0usize;
    let mut per_node = std::collections::HashMap::<String, usize>::new();
    let mut echo_time = std::time::Duration::ZERO;
    while let Some(action) = sched.schedule_next(now) {
        let t = Instant::now();
        match action {
            Action::Bind { pod, node, .. } => {
                let key = format!(
                    "{}/{}",
                    pod.metadata.namespace.as_deref().unwrap_or(""),
                    pod.metadata.name.as_deref().unwrap_or("")
                );
                sched.on_bound(&key, true, now);
                // The watch then reports the pod bound.
                let mut echoed = (*pod).clone();
                echoed.spec.as_mut().expect("spec").node_name = Some(node.clone());
                sched.on_pod(echoed, now);
                *per_node.entry(node).or_default() += 1;
                bound += 1;
            }
            Action::Preempt { victims, .. } => {
                // The victims go at once; the preemptor's back-off passes.
                for v in victims {
                    sched.on_pod_deleted(&v, now);
                }
                now += jiff::SignedDuration::from_secs(11);
                preempted += 1;
            }
            Action::Unschedulable { .. } => failed += 1,
        }
        echo_time += t.elapsed();
    }
    let elapsed = start.elapsed();
    let max = per_node.values().copied().max().unwrap_or(0);
    println!(
        "{mode}: {nodes} nodes, {pods} pods: {bound} bound, {preempted} preemptions, {failed} not placed in {:.3}s \
         (queueing {:.3}s, binding echoes {:.3}s) = {:.0} pods/s; {} nodes used, at most {max} pods on one",
        elapsed.as_secs_f64(),
        queued.as_secs_f64(),
        echo_time.as_secs_f64(),
        bound as f64 / elapsed.as_secs_f64(),
        per_node.len(),
    );
}
