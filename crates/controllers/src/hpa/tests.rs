//! Table tests of the HPA planner on a paused clock.

use super::*;
use serde_json::{Value, json};

/// (what, pods, cpu per pod, current, desired, utilization %).
type CalcCase = (
    &'static str,
    Vec<Pod>,
    Vec<(&'static str, &'static str)>,
    i32,
    i32,
    i32,
);
/// (what, behavior, start replicas, (seconds, cpu per pod) steps, replicas after each).
type PolicyCase = (&'static str, Value, i32, Vec<(i64, &'static str)>, Vec<i32>);

fn t0() -> Timestamp {
    "2026-01-01T00:10:00Z".parse().unwrap()
}

fn at(s: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(s)
}

fn hpa(min: i32, max: i32, metrics: Value, behavior: Option<Value>) -> HorizontalPodAutoscaler {
    let mut spec = json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": min, "maxReplicas": max, "metrics": metrics});
    if let Some(b) = behavior {
        spec["behavior"] = b;
    }
    serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "d", "generation": 3},
        "spec": spec}),
    )
    .unwrap()
}

fn cpu(util: i32) -> Value {
    json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": util}}}])
}

/// A running, Ready pod started long ago with containers `(name, cpu request)`.
fn pod(name: &str, containers: &[(&str, Option<&str>)]) -> Pod {
    let cs: Vec<Value> = containers
        .iter()
        .map(|(n, req)| match req {
            Some(r) => json!({"name": n, "image": "i", "resources": {"requests": {"cpu": r}}}),
            None => json!({"name": n, "image": "i"}),
        })
        .collect();
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d", "labels": {"app": "web"}},
        "spec": {"containers": cs},
        "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:10Z"}]}}))
    .unwrap()
}

fn web(name: &str) -> Pod {
    pod(name, &[("c", Some("100m"))])
}

fn usage(name: &str, containers: &[(&str, &str)]) -> PodMetrics {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d"},
        "timestamp": "2026-01-01T00:09:55Z", "window": "15s",
        "containers": containers.iter().map(|(n, c)| json!({"name": n, "usage": {"cpu": c, "memory": "10Mi"}})).collect::<Vec<_>>()}))
    .unwrap()
}

fn scale(n: i32) -> ScaleView {
    ScaleView {
        replicas: n,
        selector: "app=web".into(),
    }
}

fn cond(p: &Plan, type_: &str) -> String {
    let c = p
        .status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_}"));
    format!(
        "{} {} {}",
        c.status,
        c.reason.as_deref().unwrap_or(""),
        c.message.as_deref().unwrap_or("")
    )
}

fn run(h: &HorizontalPodAutoscaler, current: i32, pods: &[Pod], m: Vec<PodMetrics>) -> Plan {
    let refs: Vec<&Pod> = pods.iter().collect();
    // A history whose only recommendation is older than every window, so
    // the table sees the calculation itself.
    let old = History {
        recommendations: vec![Recommendation {
            replicas: current,
            at: at(-3600),
        }],
        ..Default::default()
    };
    plan(
        h,
        Ok(&scale(current)),
        &refs,
        &Ok(m),
        &old,
        &Options::default(),
        t0(),
    )
}

#[test]
fn replica_calculation_tolerance_band_missing_and_unready_pods() {
    // (what, pods, metrics (pod, cpu), current, desired, utilization)
    let mut pending = web("p3");
    pending.status.as_mut().unwrap().phase = Some("Pending".into());
    let mut failed = web("p3");
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let mut young_unready = web("p3");
    {
        let st = young_unready.status.as_mut().unwrap();
        st.start_time = Some(Time("2026-01-01T00:09:00Z".parse().unwrap()));
        st.conditions.as_mut().unwrap()[0].status = "False".into();
    }
    let cases: Vec<CalcCase> = vec![
        (
            "inside the band: 108% of 100%",
            vec![web("p1"), web("p2")],
            vec![("p1", "108m"), ("p2", "108m")],
            2,
            2,
            108,
        ),
        (
            "just outside: 111%",
            vec![web("p1"), web("p2")],
            vec![("p1", "111m"), ("p2", "111m")],
            2,
            3,
            111,
        ),
        (
            "below: 40% → ceil(0.4 × 4)",
            vec![web("p1"), web("p2"), web("p3"), web("p4")],
            vec![("p1", "40m"), ("p2", "40m"), ("p3", "40m"), ("p4", "40m")],
            4,
            2,
            40,
        ),
        (
            "up, missing pod counts 0%: (200+200+0)/300 → 4",
            vec![web("p1"), web("p2"), web("p3")],
            vec![("p1", "200m"), ("p2", "200m")],
            3,
            4,
            200,
        ),
        (
            "down, missing pod counts 100%: (20+20+100)/300 → 2",
            vec![web("p1"), web("p2"), web("p3")],
            vec![("p1", "20m"), ("p2", "20m")],
            3,
            2,
            20,
        ),
        (
            "pending pod counts 0% on a scale-up",
            vec![web("p1"), web("p2"), pending.clone()],
            vec![("p1", "300m"), ("p2", "300m")],
            3,
            6,
            300,
        ),
        (
            "failed pod ignored",
            vec![web("p1"), web("p2"), failed],
            vec![("p1", "200m"), ("p2", "200m"), ("p3", "900m")],
            3,
            4,
            200,
        ),
        (
            "cpu of a pod in its initialisation period, not ready: left out, 0% on up",
            vec![web("p1"), web("p2"), young_unready],
            vec![("p1", "300m"), ("p2", "300m"), ("p3", "900m")],
            3,
            6,
            300,
        ),
        (
            "missing pod flips the ratio: hold",
            vec![web("p1"), web("p2"), web("p3")],
            vec![("p1", "120m"), ("p2", "120m")],
            3,
            3,
            120,
        ),
    ];
    for (what, pods, m, current, desired, util) in cases {
        let metrics = m.iter().map(|(p, c)| usage(p, &[("c", c)])).collect();
        let p = run(&hpa(1, 10, cpu(100), None), current, &pods, metrics);
        assert_eq!(p.status.desired_replicas, desired, "{what}: {p:#?}");
        let cur = p.status.current_metrics.as_ref().unwrap()[0]
            .resource
            .as_ref()
            .unwrap();
        assert_eq!(cur.current.average_utilization, Some(util), "{what}");
    }
}

#[test]
fn utilization_over_containers_and_missing_requests() {
    // Two containers: requests 100m + 300m, usage 100m + 300m → 100%... then 200m+600m → 200%.
    let pods = vec![pod("p1", &[("a", Some("100m")), ("b", Some("300m"))])];
    let p = run(
        &hpa(1, 10, cpu(50), None),
        1,
        &pods,
        vec![usage("p1", &[("a", "100m"), ("b", "300m")])],
    );
    assert_eq!(p.status.desired_replicas, 2);
    let cur = &p.status.current_metrics.as_ref().unwrap()[0]
        .resource
        .as_ref()
        .unwrap()
        .current;
    assert_eq!(
        (cur.average_utilization, cur.average_value.clone()),
        (Some(100), Some(Quantity("400m".into())))
    );
    assert_eq!(
        p.events[0].message,
        "New size: 2; reason: cpu resource utilization (percentage of request) above target"
    );
    assert_eq!(
        cond(&p, "ScalingActive"),
        "True ValidMetricFound the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)"
    );

    // A container without a request: Kubernetes' error, events and conditions.
    let pods = vec![pod("p1", &[("a", Some("100m")), ("b", None)])];
    let p = run(
        &hpa(1, 10, cpu(50), None),
        1,
        &pods,
        vec![usage("p1", &[("a", "100m"), ("b", "300m")])],
    );
    assert_eq!(p.scale_to, None);
    let e = "failed to get cpu utilization: missing request for cpu in container b of Pod p1";
    assert_eq!(
        cond(&p, "ScalingActive"),
        format!(
            "False FailedGetResourceMetric the HPA was unable to compute the replica count: {e}"
        )
    );
    assert_eq!(
        p.events
            .iter()
            .map(|e| (e.reason.as_str(), e.message.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("FailedGetResourceMetric", e),
            (
                "FailedComputeMetricsReplicas",
                &format!("invalid metrics (1 invalid out of 1), first error is: {e}")[..]
            ),
        ]
    );

    // ContainerResource: only container b counts (600m of 300m = 200% vs 100%).
    let m = json!([{"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "b",
        "target": {"type": "Utilization", "averageUtilization": 100}}}]);
    let pods = vec![pod("p1", &[("a", None), ("b", Some("300m"))])];
    let p = run(
        &hpa(1, 10, m, None),
        1,
        &pods,
        vec![usage("p1", &[("a", "1"), ("b", "600m")])],
    );
    assert_eq!(p.scale_to, Some(2));
    assert_eq!(
        p.events[0].message,
        "New size: 2; reason: cpu container resource utilization (percentage of request) above target"
    );
    let st = p.status.current_metrics.as_ref().unwrap()[0]
        .container_resource
        .clone()
        .unwrap();
    assert_eq!(
        (st.container.as_str(), st.current.average_utilization),
        ("b", Some(200))
    );

    // AverageValue on memory: 3 pods × 30Mi vs 10Mi → 9 (limited to max(2×3, 4) = 6).
    let m = json!([{"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "10Mi"}}}]);
    let pods = vec![web("p1"), web("p2"), web("p3")];
    let metrics = ["p1", "p2", "p3"]
        .iter()
        .map(|n| {
            let mut u = usage(n, &[("c", "1m")]);
            u.containers[0]
                .usage
                .insert("memory".into(), Quantity("30Mi".into()));
            u
        })
        .collect();
    let p = run(&hpa(1, 20, m, None), 3, &pods, metrics);
    assert_eq!(p.scale_to, Some(6));
    assert_eq!(
        cond(&p, "ScalingLimited"),
        "True ScaleUpLimit the desired replica count is increasing faster than the maximum scale rate"
    );
    assert_eq!(
        p.events[0].message,
        "New size: 6; reason: memory resource above target"
    );
    assert_eq!(
        p.status.current_metrics.as_ref().unwrap()[0]
            .resource
            .as_ref()
            .unwrap()
            .current
            .average_value,
        Some(Quantity("31457280".into()))
    );
}

#[test]
fn min_max_limits_and_their_conditions() {
    let pods: Vec<Pod> = (1..=4).map(|i| web(&format!("p{i}"))).collect();
    let m = |c: &str| {
        (1..=4)
            .map(|i| usage(&format!("p{i}"), &[("c", c)]))
            .collect::<Vec<_>>()
    };
    // (what, min, max, current, cpu, desired, ScalingLimited)
    let cases = [
        (
            "too many",
            1,
            5,
            4,
            "500m",
            5,
            "True TooManyReplicas the desired replica count is more than the maximum replica count",
        ),
        (
            "too few",
            3,
            10,
            4,
            "10m",
            3,
            "True TooFewReplicas the desired replica count is less than the minimum replica count",
        ),
        (
            "within",
            1,
            10,
            4,
            "150m",
            6,
            "False DesiredWithinRange the desired count is within the acceptable range",
        ),
    ];
    for (what, min, max, current, c, desired, limited) in cases {
        let p = run(&hpa(min, max, cpu(100), None), current, &pods, m(c));
        assert_eq!(p.status.desired_replicas, desired, "{what}");
        assert_eq!(cond(&p, "ScalingLimited"), limited, "{what}");
        assert_eq!(
            cond(&p, "AbleToScale"),
            format!(
                "True SucceededRescale the HPA controller was able to update the target scale to {desired}"
            ),
            "{what}"
        );
        assert_eq!(p.status.observed_generation, Some(3));
        assert_eq!(p.status.last_scale_time, Some(Time(t0())));
    }
    // Current outside [min, max]: straight to the bound, with Kubernetes' reason.
    let p = run(&hpa(1, 3, cpu(100), None), 4, &pods, m("100m"));
    assert_eq!(
        (p.scale_to, p.reason.as_str()),
        (Some(3), "Current number of replicas above Spec.MaxReplicas")
    );
    // Zero replicas: scaling disabled.
    let p = run(&hpa(1, 3, cpu(100), None), 0, &pods, m("100m"));
    assert_eq!(p.scale_to, None);
    assert_eq!(
        cond(&p, "ScalingActive"),
        "False ScalingDisabled scaling is disabled since the replica count of the target is zero"
    );
    // No metrics at all.
    let p = run(&hpa(1, 3, cpu(100), None), 2, &pods, vec![]);
    assert_eq!(
        cond(&p, "ScalingActive"),
        "False FailedGetResourceMetric the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: no metrics returned from resource metrics API"
    );
    // The scale cannot be read.
    let refs: Vec<&Pod> = pods.iter().collect();
    let p = plan(
        &hpa(1, 3, cpu(100), None),
        Err("deployments.apps \"web\" not found".into()),
        &refs,
        &Ok(vec![]),
        &History::default(),
        &Options::default(),
        t0(),
    );
    assert_eq!(
        cond(&p, "AbleToScale"),
        "False FailedGetScale the HPA controller was unable to get the target's current scale: deployments.apps \"web\" not found"
    );
    assert_eq!(p.events[0].reason, "FailedGetScale");
}

/// Runs the planner through a sequence of (seconds, cpu per pod) with the
/// target following every rescale; returns the replica count after each step.
fn sequence(h: &HorizontalPodAutoscaler, start: i32, steps: &[(i64, &str)]) -> (Vec<i32>, Plan) {
    let opts = Options::default();
    let mut hist = History::default();
    let mut current = start;
    let mut out = Vec::new();
    let mut last = None;
    for (s, c) in steps {
        let pods: Vec<Pod> = (0..current).map(|i| web(&format!("p{i}"))).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let m = (0..current)
            .map(|i| usage(&format!("p{i}"), &[("c", c)]))
            .collect();
        let p = plan(h, Ok(&scale(current)), &refs, &Ok(m), &hist, &opts, at(*s));
        hist = p.history.clone();
        if let Some(to) = p.scale_to {
            hist.store_scale_event(behavior(h, &opts).as_ref(), current, to, at(*s));
            current = to;
        }
        out.push(current);
        last = Some(p);
    }
    (out, last.unwrap())
}

#[test]
fn stabilisation_windows_up_and_down() {
    // No behavior: a scale-down waits for the 300 s window's highest recommendation.
    let (r, p) = sequence(
        &hpa(1, 10, cpu(100), None),
        4,
        &[(0, "100m"), (15, "20m"), (30, "20m")],
    );
    assert_eq!(r, vec![4, 4, 4]);
    assert_eq!(
        cond(&p, "AbleToScale"),
        "True ScaleDownStabilized recent recommendations were higher than current one, applying the highest recent recommendation"
    );
    let (r, _) = sequence(
        &hpa(1, 10, cpu(100), None),
        4,
        &[(0, "100m"), (15, "20m"), (301, "20m")],
    );
    assert_eq!(r, vec![4, 4, 1]);
    // behavior with a 60 s scale-down window.
    let b = json!({"scaleDown": {"stabilizationWindowSeconds": 60}});
    let (r, _) = sequence(
        &hpa(1, 10, cpu(100), Some(b.clone())),
        4,
        &[(0, "100m"), (30, "20m"), (59, "20m"), (61, "20m")],
    );
    assert_eq!(r, vec![4, 4, 4, 1]);
    // A scale-up window of 30 s: the lowest recent recommendation.
    let b = json!({"scaleUp": {"stabilizationWindowSeconds": 30}});
    let (r, p) = sequence(
        &hpa(1, 10, cpu(100), Some(b)),
        2,
        &[(0, "100m"), (10, "200m")],
    );
    assert_eq!(r, vec![2, 2]);
    assert_eq!(
        cond(&p, "AbleToScale"),
        "True ScaleUpStabilized recent recommendations were lower than current one, applying the lowest recent recommendation"
    );
    assert_eq!(
        cond(&p, "ScalingLimited"),
        "False DesiredWithinRange the desired count is within the acceptable range"
    );
}

#[test]
fn behavior_policies_and_select_policy() {
    let up = |select: &str, policies: Value| json!({"scaleUp": {"selectPolicy": select, "policies": policies}});
    let two = json!([{"type": "Pods", "value": 2, "periodSeconds": 60}, {"type": "Percent", "value": 50, "periodSeconds": 60}]);
    // (what, behavior, start, steps, replicas after each)
    let cases: Vec<PolicyCase> = vec![
        (
            "defaults: max(4 pods, 100%) per 15 s",
            json!({}),
            1,
            vec![(0, "1000m"), (15, "1000m"), (30, "1000m")],
            vec![5, 10, 20],
        ),
        (
            "defaults cap within a period",
            json!({}),
            1,
            vec![(0, "1000m"), (5, "1000m")],
            vec![5, 5],
        ),
        (
            "Max of Pods 2 / Percent 50",
            up("Max", two.clone()),
            10,
            vec![(0, "900m")],
            vec![15],
        ),
        (
            "Min of Pods 2 / Percent 50",
            up("Min", two.clone()),
            10,
            vec![(0, "900m")],
            vec![12],
        ),
        (
            "Min counts the period's scale-ups",
            up("Min", two.clone()),
            10,
            vec![(0, "900m"), (30, "900m"), (61, "900m")],
            vec![12, 12, 14],
        ),
        (
            "Disabled up",
            up("Disabled", two.clone()),
            10,
            vec![(0, "900m")],
            vec![10],
        ),
        (
            "scale-down Pods 1 per 30 s",
            json!({"scaleDown": {"stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}}),
            5,
            vec![(0, "10m"), (10, "10m"), (31, "10m")],
            vec![4, 4, 3],
        ),
        (
            "scale-down Percent 50 (rounded down)",
            json!({"scaleDown": {"stabilizationWindowSeconds": 0,
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 30}]}}),
            5,
            vec![(0, "10m")],
            vec![2],
        ),
        (
            "scale-down Disabled",
            json!({"scaleDown": {"selectPolicy": "Disabled"}}),
            5,
            vec![(0, "10m"), (400, "10m")],
            vec![5, 5],
        ),
    ];
    for (what, b, start, steps, want) in cases {
        let (r, _) = sequence(&hpa(1, 100, cpu(100), Some(b)), start, &steps);
        assert_eq!(r, want, "{what}");
    }
    let (_, p) = sequence(
        &hpa(1, 100, cpu(100), Some(json!({}))),
        1,
        &[(0, "1000m"), (5, "1000m")],
    );
    assert_eq!(
        cond(&p, "ScalingLimited"),
        "True ScaleUpLimit the desired replica count is increasing faster than the maximum scale rate"
    );
    let (_, p) = sequence(
        &hpa(
            1,
            100,
            cpu(100),
            Some(json!({"scaleDown": {"stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}})),
        ),
        5,
        &[(0, "10m")],
    );
    assert_eq!(
        cond(&p, "ScalingLimited"),
        "True ScaleDownLimit the desired replica count is decreasing faster than the maximum scale rate"
    );
}

#[test]
fn beyond_kubernetes_surge_pods_and_crashing_pods() {
    // kubernetes#72775: 10 replicas + 3 surge pods at 85%: Kubernetes proposes
    // ceil(0.85 × 13) = 12 > 10; skiff keeps 10.
    let pods: Vec<Pod> = (0..13).map(|i| web(&format!("p{i}"))).collect();
    let m = (0..13)
        .map(|i| usage(&format!("p{i}"), &[("c", "85m")]))
        .collect();
    let p = run(&hpa(1, 30, cpu(100), None), 10, &pods, m);
    assert_eq!(p.scale_to, None, "{:?}", p.status);
    // kubernetes#87199: a crash-looping pod holds a scale-up.
    let mut crashing = web("p2");
    serde_json::from_value::<k8s_openapi::api::core::v1::PodStatus>(json!({"phase": "Running",
        "startTime": "2026-01-01T00:00:00Z",
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:08:00Z"}],
        "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}))
    .map(|s| crashing.status = Some(s))
    .unwrap();
    assert!(crash_looping(&crashing));
    let pods = vec![web("p1"), crashing];
    let p = run(
        &hpa(1, 10, cpu(50), None),
        2,
        &pods,
        vec![usage("p1", &[("c", "300m")]), usage("p2", &[("c", "0")])],
    );
    assert_eq!(p.scale_to, None);
    assert_eq!(p.status.desired_replicas, 2);
    // Without the crashing pod the same load scales up.
    let p = run(
        &hpa(1, 10, cpu(50), None),
        2,
        &[web("p1"), web("p2")],
        vec![usage("p1", &[("c", "300m")]), usage("p2", &[("c", "300m")])],
    );
    assert_eq!(p.scale_to, Some(4));
}

#[test]
fn quantities_and_durations() {
    for (v, s) in [
        (0, "0"),
        (250, "250m"),
        (1000, "1"),
        (1500, "1500m"),
        (2_000_000, "2k"),
        (31_457_280_000, "31457280"),
    ] {
        assert_eq!(milli_quantity(v).0, s);
    }
    assert_eq!(milli_value(&Quantity("1.5".into())), Some(1500));
    assert_eq!(milli_value(&Quantity("10Mi".into())), Some(10_485_760_000));
    assert_eq!(go_duration_ms("15s"), Some(15_000));
    assert_eq!(go_duration_ms("1m0.5s"), Some(60_500));
    assert_eq!(
        scale_path("apps/v1", "StatefulSet", "d", "db"),
        "/apis/apps/v1/namespaces/d/statefulsets/db/scale"
    );
    assert_eq!(
        scale_path("v1", "ReplicationController", "d", "rc"),
        "/api/v1/namespaces/d/replicationcontrollers/rc/scale"
    );
}
