//! Table tests for the cache, the percentage of nodes to score, preemption
//! and the scheduler core driven with a fake clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;

use crate::preemption::{Candidate, eligible, pick_one, preempt};
use crate::tests::{bound, node, pod_l, req};
use crate::*;

fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn at(secs: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(secs)
}

/// A pod with a priority and cpu request.
fn prio(name: &str, priority: i32, cpu: &str) -> Pod {
    pod_l(
        name,
        json!({}),
        json!({"priority": priority, "containers": req(cpu, "1Mi")}),
    )
}

fn started(mut p: Pod, at: &str) -> Pod {
    p.status = Some(serde_json::from_value(json!({"startTime": at})).unwrap());
    p
}

fn ready(mut n: Node) -> Node {
    n.status.as_mut().unwrap().conditions = Some(vec![
        serde_json::from_value(json!({"type": "Ready", "status": "True"})).unwrap(),
    ]);
    n
}

fn plain_node(name: &str) -> Node {
    node(name, json!({}), json!({}))
}

/// (pods, milli cpu requested) per node, in name order.
fn usage(cache: &Cache) -> Vec<(String, usize, i64)> {
    let mut v: Vec<_> = cache
        .snapshot()
        .nodes
        .iter()
        .map(|n| (n.name().to_string(), n.pods.len(), n.requested.milli_cpu))
        .collect();
    v.sort();
    v
}

fn u(list: &[(&str, usize, i64)]) -> Vec<(String, usize, i64)> {
    list.iter()
        .map(|(n, p, c)| (n.to_string(), *p, *c))
        .collect()
}

enum Op {
    AddNode(&'static str),
    RemoveNode(&'static str),
    Update(Pod),
    Remove(&'static str),
    Assume(Pod, &'static str),
    Forget(&'static str),
}

#[test]
fn cache_accounts_pods_incrementally() {
    let a = || prio("a", 0, "1");
    let done = |mut p: Pod| {
        p.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        p
    };
    type Step = (&'static str, Op, Vec<(String, usize, i64)>, Option<bool>);
    let steps: Vec<Step> = vec![
        ("node n1", Op::AddNode("n1"), u(&[("n1", 0, 0)]), None),
        (
            "node n2",
            Op::AddNode("n2"),
            u(&[("n1", 0, 0), ("n2", 0, 0)]),
            None,
        ),
        (
            "assume a on n1",
            Op::Assume(a(), "n1"),
            u(&[("n1", 1, 1000), ("n2", 0, 0)]),
            Some(true),
        ),
        (
            "forget a",
            Op::Forget("default/a"),
            u(&[("n1", 0, 0), ("n2", 0, 0)]),
            Some(false),
        ),
        (
            "assume again",
            Op::Assume(a(), "n1"),
            u(&[("n1", 1, 1000), ("n2", 0, 0)]),
            Some(true),
        ),
        (
            "unbound update keeps the assumption",
            Op::Update(a()),
            u(&[("n1", 1, 1000), ("n2", 0, 0)]),
            Some(true),
        ),
        (
            "watch confirms the binding",
            Op::Update(bound(a(), "n1")),
            u(&[("n1", 1, 1000), ("n2", 0, 0)]),
            Some(false),
        ),
        (
            "forget after confirmation is a no-op",
            Op::Forget("default/a"),
            u(&[("n1", 1, 1000), ("n2", 0, 0)]),
            Some(false),
        ),
        (
            "update of a bound pod replaces it",
            Op::Update(bound(prio("a", 0, "1"), "n1")),
            u(&[("n1", 1, 1000), ("n2", 0, 0)]),
            None,
        ),
        (
            "pod bound elsewhere",
            Op::Update(bound(prio("b", 0, "500m"), "n2")),
            u(&[("n1", 1, 1000), ("n2", 1, 500)]),
            None,
        ),
        (
            "pod on an unknown node waits",
            Op::Update(bound(prio("c", 0, "2"), "n3")),
            u(&[("n1", 1, 1000), ("n2", 1, 500)]),
            None,
        ),
        (
            "the node appears with it",
            Op::AddNode("n3"),
            u(&[("n1", 1, 1000), ("n2", 1, 500), ("n3", 1, 2000)]),
            None,
        ),
        (
            "node update keeps pods",
            Op::AddNode("n1"),
            u(&[("n1", 1, 1000), ("n2", 1, 500), ("n3", 1, 2000)]),
            None,
        ),
        (
            "finished pod leaves",
            Op::Update(done(bound(prio("b", 0, "500m"), "n2"))),
            u(&[("n1", 1, 1000), ("n2", 0, 0), ("n3", 1, 2000)]),
            None,
        ),
        (
            "node deleted",
            Op::RemoveNode("n3"),
            u(&[("n1", 1, 1000), ("n2", 0, 0)]),
            None,
        ),
        (
            "and back with its pod",
            Op::AddNode("n3"),
            u(&[("n1", 1, 1000), ("n2", 0, 0), ("n3", 1, 2000)]),
            None,
        ),
        (
            "pod deleted",
            Op::Remove("default/a"),
            u(&[("n1", 0, 0), ("n2", 0, 0), ("n3", 1, 2000)]),
            Some(false),
        ),
    ];
    let mut cache = Cache::new();
    for (name, op, want, assumed) in steps {
        match op {
            Op::AddNode(n) => cache.add_node(plain_node(n)),
            Op::RemoveNode(n) => cache.remove_node(n),
            Op::Update(p) => cache.update_pod(Arc::new(p)),
            Op::Remove(k) => cache.remove_pod(k),
            Op::Assume(p, n) => cache.assume(Arc::new(p), n),
            Op::Forget(k) => cache.forget(k),
        }
        assert_eq!(usage(&cache), want, "{name}");
        if let Some(a) = assumed {
            assert_eq!(cache.is_assumed("default/a"), a, "{name}: assumed");
        }
        for n in &cache.snapshot().nodes {
            assert_eq!(
                cache.snapshot().get(n.name()).unwrap().name(),
                n.name(),
                "{name}: index"
            );
        }
    }
}

#[test]
fn cache_tracks_images_ports_and_affinity_pods() {
    let mut cache = Cache::new();
    let with_image = |name: &str, image: &str| {
        let mut n = plain_node(name);
        n.status.as_mut().unwrap().images = Some(vec![
            serde_json::from_value(json!({"names": [image], "sizeBytes": 1})).unwrap(),
        ]);
        n
    };
    cache.add_node(with_image("n1", "nginx:latest"));
    cache.add_node(with_image("n2", "nginx:latest"));
    assert_eq!(cache.snapshot().image_nodes.get("nginx:latest"), Some(&2));
    cache.add_node(with_image("n2", "redis:latest"));
    assert_eq!(cache.snapshot().image_nodes.get("nginx:latest"), Some(&1));
    assert_eq!(cache.snapshot().image_nodes.get("redis:latest"), Some(&1));
    cache.remove_node("n1");
    assert_eq!(cache.snapshot().image_nodes.get("nginx:latest"), None);

    let anti = pod_l(
        "x",
        json!({"app": "x"}),
        json!({"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80, "hostPort": 8080}]}],
               "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                   {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}]}}}),
    );
    assert!(!cache.snapshot().have_pods_with_affinity());
    cache.update_pod(Arc::new(bound(anti, "n2")));
    let n2 = cache.snapshot().get("n2").unwrap();
    assert_eq!(
        (
            n2.pods_with_affinity,
            n2.pods_with_required_anti_affinity,
            n2.used_ports.len()
        ),
        (1, 1, 1)
    );
    assert!(cache.snapshot().have_pods_with_required_anti_affinity());
    cache.remove_pod("default/x");
    let n2 = cache.snapshot().get("n2").unwrap();
    assert_eq!(
        (
            n2.pods_with_affinity,
            n2.pods_with_required_anti_affinity,
            n2.used_ports.len()
        ),
        (0, 0, 0)
    );
}

#[test]
fn num_feasible_nodes_to_find_follows_kubernetes() {
    let cases = [
        (0, 0),
        (50, 50),
        (99, 99),
        (100, 100),   // 50 % of 100 is below the floor of 100
        (200, 100),   // 49 % = 98 → 100
        (1000, 420),  // 50 − 8 = 42 %
        (2000, 680),  // 34 %
        (5000, 500),  // 10 %
        (5625, 281),  // 50 − 45 = 5 %
        (10000, 500), // floor of 5 %
        (20000, 1000),
    ];
    for (nodes, want) in cases {
        assert_eq!(num_feasible_nodes_to_find(nodes), want, "{nodes} nodes");
    }
}

fn identical_nodes(n: usize) -> Snapshot {
    Snapshot::new(
        (0..n).map(|i| plain_node(&format!("n{i:04}"))).collect(),
        &[],
    )
}

#[test]
fn feasible_search_stops_early_and_goes_round() {
    let snap = identical_nodes(1000);
    let p = prio("p", 0, "100m");
    let f = find_feasible_from(&p, &snap, 990, 20).unwrap();
    let want: Vec<usize> = (990..1000).chain(0..10).collect();
    assert_eq!((f.nodes, f.processed), (want, 20));
    // Through the scheduling cycle: 42 % of 1000 nodes are found and scored.
    let placed = schedule_from(&p, &snap, 0, 0).unwrap();
    assert_eq!((placed.processed, placed.feasible), (420, 420));
    // Nothing fits: every node was looked at and rejected.
    let big = prio("big", 0, "64");
    let err = schedule_from(&big, &snap, 0, 500).unwrap_err();
    assert_eq!(err.node_rejections.len(), 1000);
    assert_eq!(
        err.to_string(),
        "0/1000 nodes are available: 1000 Insufficient cpu."
    );
}

#[test]
fn the_loop_resumes_the_search_where_the_last_cycle_stopped() {
    let mut s = Scheduler::new();
    for i in 0..200 {
        s.on_node(&ready(plain_node(&format!("n{i:03}"))), at(0));
    }
    let starts: Vec<usize> = (0..3)
        .map(|i| {
            s.on_pod(prio(&format!("p{i}"), 0, "100m"), at(0));
            assert!(matches!(s.schedule_next(at(0)), Some(Action::Bind { .. })));
            s.next_start()
        })
        .collect();
    // 200 nodes: 49 % is 98, raised to the minimum of 100 per cycle.
    assert_eq!(starts, vec![100, 0, 100]);
}

#[test]
fn preemption_takes_only_lower_priority_pods_and_as_few_as_possible() {
    let on = |p: Pod| bound(p, "n1");
    type Case = (
        &'static str,
        Vec<Pod>,
        Pod,
        Result<Vec<&'static str>, &'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "only the lower-priority pod goes",
            vec![on(prio("low", 10, "2")), on(prio("high", 100, "2"))],
            prio("p", 50, "2"),
            Ok(vec!["default/low"]),
        ),
        (
            "the least important are taken, the rest reprieved",
            vec![
                on(prio("l1", 1, "1")),
                on(prio("l2", 2, "1")),
                on(prio("l3", 3, "1")),
                on(prio("l4", 4, "1")),
            ],
            prio("p", 50, "2"),
            Ok(vec!["default/l2", "default/l1"]),
        ),
        (
            "equal priority is not preempted",
            vec![on(prio("same", 50, "4"))],
            prio("p", 50, "1"),
            Err(
                "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod",
            ),
        ),
        (
            "no fit even without every lower-priority pod",
            vec![on(prio("high", 100, "3")), on(prio("low", 1, "1"))],
            prio("p", 50, "2"),
            Err("preemption: 0/1 nodes are available: 1 Insufficient cpu"),
        ),
        (
            "preemptionPolicy Never",
            vec![on(prio("low", 1, "4"))],
            {
                let mut p = prio("p", 50, "1");
                p.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
                p
            },
            Err("preemption: not eligible due to preemptionPolicy=Never"),
        ),
        (
            "larger than the node: not helpful",
            vec![on(prio("low", 1, "1"))],
            prio("p", 50, "8"),
            Err("preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling"),
        ),
    ];
    for (name, existing, p, want) in cases {
        let snap = Snapshot::new(vec![plain_node("n1")], &existing);
        let err = find_feasible(&p, &snap).unwrap_err();
        let got = preempt(&p, &snap, &err, 0).map(|c| {
            assert_eq!(c.node, "n1", "{name}");
            c.victim_keys()
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
        });
        let want = want
            .map(|v| v.into_iter().map(String::from).collect::<Vec<_>>())
            .map_err(String::from);
        assert_eq!(got, want, "{name}");
    }
}

fn cand(node: &str, victims: &[(i32, Option<&str>)]) -> Candidate {
    Candidate {
        node: node.into(),
        victims: victims
            .iter()
            .enumerate()
            .map(|(i, (p, start))| {
                let mut pod = prio(&format!("{node}-{i}"), *p, "1");
                if let Some(s) = start {
                    pod = started(pod, s);
                }
                PodInfo::new(Arc::new(pod))
            })
            .collect(),
        pdb_violations: 0,
    }
}

#[test]
fn candidates_are_ordered_as_kubernetes_orders_them() {
    let early = Some("2026-01-01T10:00:00Z");
    let late = Some("2026-01-01T11:00:00Z");
    let cases: Vec<(&str, Vec<Candidate>, &str)> = vec![
        (
            "no victims wins",
            vec![cand("a", &[(1, None)]), cand("b", &[])],
            "b",
        ),
        (
            "lowest highest-priority victim",
            vec![cand("a", &[(5, None)]), cand("b", &[(3, None), (3, None)])],
            "b",
        ),
        (
            "lowest sum of priorities",
            vec![
                cand("a", &[(3, None), (2, None)]),
                cand("b", &[(3, None), (1, None)]),
            ],
            "b",
        ),
        (
            "fewest victims",
            vec![cand("a", &[(3, None), (1, None)]), cand("b", &[(3, None)])],
            "b",
        ),
        (
            "latest start of the highest-priority victims",
            vec![cand("a", &[(3, early)]), cand("b", &[(3, late)])],
            "b",
        ),
        (
            "first on a full tie",
            vec![cand("a", &[(3, early)]), cand("b", &[(3, early)])],
            "a",
        ),
    ];
    for (name, cands, want) in cases {
        let i = pick_one(&cands).unwrap();
        assert_eq!(cands[i].node, want, "{name}");
    }
    // Fewer PDB violations comes first of all.
    let mut a = cand("a", &[(1, None)]);
    a.pdb_violations = 1;
    let b = cand("b", &[(100, None), (100, None)]);
    assert_eq!(cands_pick(vec![a, b]), "b");
}

fn cands_pick(c: Vec<Candidate>) -> String {
    let i = pick_one(&c).unwrap();
    c[i].node.clone()
}

#[test]
fn nominated_pods_hold_room_for_pods_of_lower_or_equal_priority() {
    let mut cache = Cache::new();
    cache.add_node(plain_node("n1"));
    let mut nominated = prio("nom", 100, "3");
    nominated.status = Some(serde_json::from_value(json!({"nominatedNodeName": "n1"})).unwrap());
    cache.update_pod(Arc::new(nominated));
    assert_eq!(cache.nominated_node("default/nom"), Some("n1"));
    let cases = [(0, false), (100, false), (200, true)];
    for (priority, fits) in cases {
        let p = prio("p", priority, "2");
        assert_eq!(
            find_feasible(&p, cache.snapshot()).is_ok(),
            fits,
            "priority {priority}"
        );
    }
    // The nominated pod itself is not held against itself.
    let mut me = prio("nom", 100, "3");
    me.status = Some(serde_json::from_value(json!({"nominatedNodeName": "n1"})).unwrap());
    assert!(find_feasible(&me, cache.snapshot()).is_ok());
    cache.remove_pod("default/nom");
    assert!(find_feasible(&prio("p", 0, "2"), cache.snapshot()).is_ok());
}

#[test]
fn no_second_preemption_while_victims_terminate() {
    let mut victim = bound(prio("low", 1, "4"), "n1");
    victim.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(0)));
    victim.status = Some(
        serde_json::from_value(
            json!({"conditions": [{"type": "DisruptionTarget", "status": "True",
            "reason": "PreemptionByScheduler"}]}),
        )
        .unwrap(),
    );
    let snap = Snapshot::new(vec![plain_node("n1")], &[victim]);
    let mut p = prio("p", 50, "2");
    p.status = Some(serde_json::from_value(json!({"nominatedNodeName": "n1"})).unwrap());
    let err = find_feasible(&p, &snap).unwrap_err();
    assert_eq!(
        eligible(&p, &snap, &err),
        Err("not eligible due to a terminating pod on the nominated node.")
    );
    assert_eq!(
        schedule(&p, &snap, 0).unwrap_err().to_string(),
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to a terminating pod on the nominated node."
    );
}

fn key_of(a: &Action) -> (String, String) {
    match a {
        Action::Bind { pod, node, .. } => (
            "bind".into(),
            format!("{} {node}", pod.metadata.name.as_deref().unwrap()),
        ),
        Action::Unschedulable { pod, message } => (
            "unschedulable".into(),
            format!("{} {message}", pod.metadata.name.as_deref().unwrap()),
        ),
        Action::Preempt {
            pod,
            node,
            victims,
            message,
            ..
        } => (
            "preempt".into(),
            format!(
                "{} {node} [{}] {message}",
                pod.metadata.name.as_deref().unwrap(),
                victims
                    .iter()
                    .map(|v| v.metadata.name.clone().unwrap())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
    }
}

fn drain(s: &mut Scheduler, now: Timestamp) -> Vec<(String, String)> {
    std::iter::from_fn(|| s.schedule_next(now))
        .map(|a| key_of(&a))
        .collect()
}

fn a(kind: &str, what: &str) -> (String, String) {
    (kind.into(), what.into())
}

#[test]
fn the_loop_assumes_binds_backs_off_and_reports_once() {
    let mut s = Scheduler::new();
    assert!(s.schedule_next(at(0)).is_none());
    s.on_pod(prio("early", 0, "1"), at(0));
    assert_eq!(
        drain(&mut s, at(0)),
        vec![a(
            "unschedulable",
            "early no nodes available to schedule pods"
        )]
    );
    s.on_node(&ready(plain_node("n1")), at(1));
    // The new node retries the pod (equal priority and age: by key); the
    // 3-cpu pod after it sees the first one assumed, and fits beside it.
    s.on_pod(prio("second", 0, "3"), at(1));
    assert_eq!(
        drain(&mut s, at(1)),
        vec![a("bind", "early n1"), a("bind", "second n1")]
    );
    s.on_pod(prio("third", 0, "1"), at(1));
    let full = "third 0/1 nodes are available: 1 Insufficient cpu. \
                preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";
    assert_eq!(drain(&mut s, at(1)), vec![a("unschedulable", full)]);
    // A status-only update (our own condition patch) does not retry it; the same message is not reported twice.
    let mut patched = prio("third", 0, "1");
    patched.status = Some(
        serde_json::from_value(
            json!({"conditions": [{"type": "PodScheduled", "status": "False"}]}),
        )
        .unwrap(),
    );
    s.on_pod(patched, at(2));
    assert_eq!(s.queue().lens(), (0, 0, 1));
    s.on_node(
        &ready(node("n1", json!({"new": "label"}), json!({}))),
        at(2),
    );
    assert_eq!(drain(&mut s, at(3)), vec![]);
    // The second pod's binding failed: it is forgotten and backs off 1 s; the
    // room it frees sends the unschedulable pod to the back-off queue too.
    s.on_bound("default/second", false, at(3));
    assert!(!s.cache().is_assumed("default/second"));
    assert_eq!(s.queue().lens(), (0, 2, 0));
    assert_eq!(s.next_wakeup(), Some(at(4)));
    assert_eq!(drain(&mut s, at(4)), vec![a("bind", "second n1")]);
    // The third pod's retry (2 s back-off, second attempt) fails the same way: not reported again.
    assert_eq!(drain(&mut s, at(5)), vec![]);
    assert_eq!(s.queue().lens(), (0, 0, 1));
    s.on_bound("default/second", true, at(5));
    s.on_pod(bound(prio("second", 0, "3"), "n1"), at(5));
    assert!(!s.cache().is_assumed("default/second"));
    assert_eq!(
        s.cache().snapshot().get("n1").unwrap().requested.milli_cpu,
        4000
    );
}

#[test]
fn the_loop_preempts_waits_for_victims_then_binds() {
    let mut s = Scheduler::new();
    s.on_node(&ready(plain_node("n1")), at(0));
    s.on_pod(
        started(bound(prio("low", 1, "3"), "n1"), "2026-01-01T00:00:00Z"),
        at(0),
    );
    s.on_pod(bound(prio("keep", 1000, "1"), "n1"), at(0));
    s.on_pod(prio("high", 100, "2"), at(1));
    assert_eq!(
        drain(&mut s, at(1)),
        vec![a(
            "preempt",
            "high n1 [low] 0/1 nodes are available: 1 Insufficient cpu."
        )]
    );
    assert_eq!(s.cache().nominated_node("default/high"), Some("n1"));
    // The victim is marked and terminating; a retry now must not preempt again.
    let mut terminating = bound(prio("low", 1, "3"), "n1");
    terminating.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(2)));
    terminating.status = Some(
        serde_json::from_value(
            json!({"conditions": [{"type": "DisruptionTarget", "status": "True",
            "reason": "PreemptionByScheduler"}]}),
        )
        .unwrap(),
    );
    s.on_pod(terminating, at(2));
    // A lower-priority newcomer cannot take the room held for the nominated pod.
    s.on_pod(prio("small", 0, "1"), at(2));
    s.on_node(&ready(node("n1", json!({"x": "y"}), json!({}))), at(2));
    let got = drain(&mut s, at(3));
    assert_eq!(
        got,
        vec![
            a(
                "unschedulable",
                "high 0/1 nodes are available: 1 Insufficient cpu. \
               preemption: not eligible due to a terminating pod on the nominated node."
            ),
            a(
                "unschedulable",
                "small 0/1 nodes are available: 1 Insufficient cpu. \
               preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
            ),
        ]
    );
    // The victim is gone: the preemptor binds to its nominated node.
    s.on_pod_deleted(&bound(prio("low", 1, "3"), "n1"), at(4));
    assert_eq!(
        drain(&mut s, at(10)),
        vec![a("bind", "high n1"), a("bind", "small n1")]
    );
    assert_eq!(s.cache().nominated_node("default/high"), None);
}

#[test]
fn a_relist_forgets_what_was_deleted_while_the_watch_was_down() {
    let mut s = Scheduler::new();
    s.on_node(&ready(plain_node("n1")), at(0));
    s.on_node(&ready(plain_node("n2")), at(0));
    s.on_pod(bound(prio("kept", 0, "1"), "n1"), at(0));
    s.on_pod(bound(prio("gone", 0, "2"), "n1"), at(0));
    s.on_pod(prio("waiting", 0, "100"), at(0));
    assert_eq!(drain(&mut s, at(0)).len(), 1);
    let listed = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect();
    s.resync_pods(&listed(&["default/kept"]), at(1));
    assert_eq!(
        s.cache().snapshot().get("n1").unwrap().requested.milli_cpu,
        1000
    );
    assert_eq!(s.queue().lens(), (0, 0, 0));
    s.resync_nodes(&listed(&["n2"]));
    let names: Vec<&str> = s
        .cache()
        .snapshot()
        .nodes
        .iter()
        .map(|n| n.name())
        .collect();
    assert_eq!(names, vec!["n2"]);
}

fn budget(app: &str, allowed: i32, disrupted: &[&str]) -> crate::preemption::Budget {
    let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": app, "namespace": "default"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}},
        "status": {"disruptionsAllowed": allowed, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1,
                   "disruptedPods": disrupted.iter().map(|p| (p.to_string(), "2026-01-01T00:00:00Z")).collect::<BTreeMap<_, _>>()}
    }))
    .unwrap();
    crate::preemption::Budget::of(&pdb)
}

fn labelled(mut p: Pod, app: &str) -> Pod {
    p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
    p
}

#[test]
fn budgets_are_spent_in_order_and_disrupted_pods_spend_nothing() {
    use crate::preemption::split_by_budgets;
    let infos = |pods: Vec<Pod>| -> Vec<PodInfo> {
        pods.into_iter()
            .map(|p| PodInfo::new(Arc::new(p)))
            .collect()
    };
    let names = |v: &[PodInfo]| v.iter().map(|p| p.key.clone()).collect::<Vec<_>>();
    let pods = infos(vec![
        labelled(prio("a", 1, "1"), "db"),
        labelled(prio("b", 1, "1"), "db"),
        labelled(prio("c", 1, "1"), "web"),
        prio("d", 1, "1"),
    ]);
    // One disruption allowed for db: the first db pod spends it, the second violates.
    let (violating, fine) = split_by_budgets(pods.clone(), &[budget("db", 1, &[])]);
    assert_eq!(names(&violating), vec!["default/b"]);
    assert_eq!(names(&fine), vec!["default/a", "default/c", "default/d"]);
    // A pod already disrupted spends nothing.
    let (violating, _) = split_by_budgets(pods.clone(), &[budget("db", 1, &["a"])]);
    assert!(violating.is_empty());
    // Another namespace's budget does not apply.
    let mut other = budget("db", 0, &[]);
    other.namespace = "other".into();
    let (violating, _) = split_by_budgets(pods, &[other]);
    assert!(violating.is_empty());
}

#[test]
fn preemption_prefers_victims_no_budget_protects() {
    // Two nodes, each with one low-priority pod; the pod on n1 is protected by a
    // budget with no disruption left, so n2 is chosen.
    let on = |p: Pod, n: &str| {
        let mut p = p;
        p.spec.as_mut().unwrap().node_name = Some(n.into());
        p
    };
    let existing = vec![
        on(labelled(prio("guarded", 1, "4"), "db"), "n1"),
        on(labelled(prio("free", 1, "4"), "web"), "n2"),
    ];
    let mut snap = Snapshot::new(vec![plain_node("n1"), plain_node("n2")], &existing);
    snap.budgets = vec![budget("db", 0, &[])];
    let p = prio("p", 50, "2");
    let err = find_feasible(&p, &snap).unwrap_err();
    for seed in 0..2 {
        let c = preempt(&p, &snap, &err, seed).unwrap();
        assert_eq!(
            (c.node.as_str(), c.pdb_violations),
            ("n2", 0),
            "seed {seed}"
        );
        assert_eq!(c.victim_keys(), vec!["default/free"]);
    }
    // When only protected victims exist, preemption still goes ahead, counting the violation.
    snap.budgets = vec![budget("db", 0, &[]), budget("web", 0, &[])];
    let c = preempt(&p, &snap, &err, 0).unwrap();
    assert_eq!(c.pdb_violations, 1);
}
