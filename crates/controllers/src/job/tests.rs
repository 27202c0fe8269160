use super::*;
use crate::testing::merge;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// A Job as the API server stores it (defaults applied), with `extra` merged in.
fn job(extra: Value) -> Job {
    let mut v = json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
        "spec": {"parallelism": 1, "completions": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
                 "suspend": false,
                 "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "job-uid"}},
                 "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "job-uid",
                                                      "batch.kubernetes.io/job-name": "pi"}},
                              "spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "c", "image": "busybox"}]}}}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

/// A pod of the Job: name, phase, whether it still has the tracking finalizer, index.
fn pod(name: &str, phase: &str, finalizer: bool, index: Option<i64>) -> Pod {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi",
                "uid": "job-uid", "controller": true}]},
        "spec": {"containers": []},
        "status": {"phase": phase}
    });
    if finalizer {
        v["metadata"]["finalizers"] = json!([TRACKING_FINALIZER]);
    }
    if let Some(i) = index {
        v["metadata"]["annotations"] = json!({INDEX_ANNOTATION: i.to_string()});
    }
    serde_json::from_value(v).unwrap()
}

fn now() -> Timestamp {
    "2026-01-01T00:10:00Z".parse().unwrap()
}

fn run_plan(job: &Job, pods: &[Pod]) -> Plan {
    let empty = HashSet::new();
    let refs: Vec<&Pod> = pods.iter().collect();
    plan(
        job,
        &refs,
        &Inputs {
            now: now(),
            backoff_remaining: Duration::ZERO,
            expectations_satisfied: true,
            expected_rm_finalizers: &empty,
        },
    )
}

/// Carries a plan's status through finalizer removal (all succeeding) and
/// the terminal condition, as the loop does.
fn settled(p: &Plan) -> Value {
    let mut status = p.status.clone();
    let mut with = p.with_finalizer.clone();
    for (_, u) in &p.remove_finalizers {
        with.remove(u);
    }
    settle(&mut status, &with);
    finish(&mut status, p.final_condition.as_ref(), p.terminating);
    status
}

fn types(status: &Value) -> Vec<String> {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "True")
        .map(|c| c["type"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn parallelism_and_completions_decide_how_many_pods_run() {
    // (what, completions, parallelism, pods, want created, want deleted)
    let run = |n: &str| pod(n, "Running", true, None);
    let ok = |n: &str| pod(n, "Succeeded", false, None);
    type Case<'a> = (&'a str, Value, i64, Vec<Pod>, usize, usize);
    let cases: Vec<Case> = vec![
        ("fresh job, 1 of 1", json!(1), 1, vec![], 1, 0),
        ("parallelism caps", json!(10), 3, vec![], 3, 0),
        (
            "remaining completions cap",
            json!(5),
            3,
            vec![run("a"), ok("b"), ok("c"), ok("d")],
            1,
            0,
        ),
        (
            "done but one running",
            json!(3),
            3,
            vec![run("a"), ok("b"), ok("c"), ok("d")],
            0,
            1,
        ),
        (
            "refill to parallelism",
            json!(10),
            3,
            vec![run("a"), ok("b")],
            2,
            0,
        ),
        (
            "surplus deleted",
            json!(10),
            1,
            vec![run("a"), run("b"), run("c")],
            0,
            2,
        ),
        ("nil completions: parallelism", Value::Null, 4, vec![], 4, 0),
        (
            "nil completions after a success: no more",
            Value::Null,
            4,
            vec![run("a"), ok("b")],
            0,
            0,
        ),
    ];
    for (what, completions, parallelism, pods, create, delete) in cases {
        // Succeeded pods without the finalizer were counted before.
        let done = pods.iter().filter(|p| phase(p) == "Succeeded").count();
        let j = job(
            json!({"spec": {"completions": completions, "parallelism": parallelism},
                           "status": {"succeeded": done}}),
        );
        let p = run_plan(&j, &pods);
        assert_eq!(p.create.len(), create, "{what}: create");
        assert_eq!(p.delete_uncounted.len(), delete, "{what}: delete");
        assert_eq!(
            p.status["active"].as_i64().unwrap() as usize,
            pods.iter().filter(|p| phase(p) == "Running").count() + create - delete,
            "{what}: active"
        );
    }
}

#[test]
fn finished_pods_are_counted_once_through_uncounted_terminated_pods() {
    let j = job(json!({"spec": {"completions": 3, "parallelism": 3}}));
    let pods = vec![
        pod("a", "Succeeded", true, None),
        pod("b", "Running", true, None),
        pod("c", "Failed", true, None),
    ];
    let p = run_plan(&j, &pods);
    assert_eq!(
        p.status["uncountedTerminatedPods"],
        json!({"succeeded": ["uid-a"], "failed": ["uid-c"]}),
        "first written as uncounted"
    );
    assert_eq!(
        (p.status["succeeded"].as_i64(), p.status["failed"].as_i64()),
        (Some(0), Some(0))
    );
    let mut names: Vec<&str> = p
        .remove_finalizers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(p.create.len(), 1, "the failed pod is replaced");
    let after = settled(&p);
    assert_eq!(after["uncountedTerminatedPods"], json!({}));
    assert_eq!(
        (after["succeeded"].as_i64(), after["failed"].as_i64()),
        (Some(1), Some(1))
    );

    // The next sync sees them without finalizers and counts nothing again.
    let j2 = job(json!({"spec": {"completions": 3, "parallelism": 3}, "status": after}));
    let pods = vec![
        pod("a", "Succeeded", false, None),
        pod("b", "Running", true, None),
        pod("c", "Failed", false, None),
        pod("d", "Running", true, None),
    ];
    let p = run_plan(&j2, &pods);
    assert!(p.remove_finalizers.is_empty());
    assert_eq!(
        (p.status["succeeded"].as_i64(), p.status["failed"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(p.status["active"], 2);
    assert!(p.create.is_empty());
}

#[test]
fn success_goes_through_success_criteria_met_to_complete() {
    let j = job(json!({"spec": {"completions": 2, "parallelism": 2}}));
    let pods = vec![
        pod("a", "Succeeded", true, None),
        pod("b", "Succeeded", true, None),
    ];
    let p = run_plan(&j, &pods);
    assert_eq!(types(&p.status), ["SuccessCriteriaMet"]);
    let c = &p.status["conditions"][0];
    assert_eq!(c["reason"], "CompletionsReached");
    assert_eq!(c["message"], "Reached expected number of succeeded pods");
    let after = settled(&p);
    assert_eq!(types(&after), ["SuccessCriteriaMet", "Complete"]);
    assert_eq!(after["completionTime"], json!(now().to_string()));
    assert_eq!(after["succeeded"], 2);
    assert_eq!(after["startTime"], json!(now().to_string()));

    // Nil completions with parallelism: one success and no active pods completes.
    let j = job(json!({"spec": {"completions": null, "parallelism": 2}}));
    let p = run_plan(
        &j,
        &[
            pod("a", "Succeeded", true, None),
            pod("b", "Failed", true, None),
        ],
    );
    assert_eq!(types(&settled(&p)), ["SuccessCriteriaMet", "Complete"]);
    let p = run_plan(
        &j,
        &[
            pod("a", "Succeeded", true, None),
            pod("b", "Running", true, None),
        ],
    );
    assert!(types(&settled(&p)).is_empty(), "waits for the running pod");
}

#[test]
fn backoff_limit_fails_the_job_and_deletes_active_pods() {
    // (what, backoffLimit, restartPolicy, pods, want failed)
    let restarted = |n: &str, r: i32| {
        let mut p = pod(n, "Running", true, None);
        p.status.as_mut().unwrap().container_statuses = Some(vec![serde_json::from_value(
            json!({"name": "c", "image": "busybox", "imageID": "", "ready": true, "restartCount": r}),
        ).unwrap()]);
        p
    };
    let cases: Vec<(&str, i64, &str, Vec<Pod>, bool)> = vec![
        (
            "within limit",
            2,
            "Never",
            vec![
                pod("a", "Failed", true, None),
                pod("b", "Failed", true, None),
            ],
            false,
        ),
        (
            "over limit",
            1,
            "Never",
            vec![
                pod("a", "Failed", true, None),
                pod("b", "Failed", true, None),
            ],
            true,
        ),
        (
            "limit 0, one failure",
            0,
            "Never",
            vec![pod("a", "Failed", true, None)],
            true,
        ),
        (
            "OnFailure restarts reach the limit",
            3,
            "OnFailure",
            vec![restarted("a", 3)],
            true,
        ),
        (
            "OnFailure restarts below",
            3,
            "OnFailure",
            vec![restarted("a", 2)],
            false,
        ),
        (
            "OnFailure limit 0",
            0,
            "OnFailure",
            vec![restarted("a", 1)],
            true,
        ),
    ];
    for (what, limit, policy, pods, want) in cases {
        let j = job(
            json!({"spec": {"backoffLimit": limit, "completions": 5, "parallelism": 2,
            "template": {"spec": {"restartPolicy": policy}}}}),
        );
        let mut pods = pods;
        pods.push(pod("live", "Running", true, None));
        let p = run_plan(&j, &pods);
        if want {
            assert_eq!(types(&p.status), ["FailureTarget"], "{what}");
            assert_eq!(
                p.status["conditions"][0]["reason"], "BackoffLimitExceeded",
                "{what}"
            );
            assert_eq!(
                p.status["conditions"][0]["message"],
                "Job has reached the specified backoff limit"
            );
            assert!(
                p.delete.contains(&"live".to_string()),
                "{what}: active pods deleted"
            );
            assert!(p.create.is_empty(), "{what}");
            assert_eq!(p.status["active"], 0);
            assert_eq!(
                p.final_condition.as_ref().unwrap()["type"],
                "Failed",
                "{what}: Failed follows"
            );
            assert!(
                types(&settled(&p)).len() == 1,
                "{what}: not Failed while pods terminate"
            );
        } else {
            assert!(types(&p.status).is_empty(), "{what}");
            assert!(p.delete.is_empty(), "{what}");
        }
    }
}

#[test]
fn terminating_pods_count_as_failed_and_failed_follows_failure_target() {
    let mut gone = pod("live", "Running", true, None);
    gone.metadata.deletion_timestamp = Some(Time(now()));
    let j = job(
        json!({"spec": {"backoffLimit": 1}, "status": {"failed": 2, "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
         "message": "Job has reached the specified backoff limit",
         "lastProbeTime": "2026-01-01T00:09:00Z", "lastTransitionTime": "2026-01-01T00:09:00Z"}]}}),
    );
    let p = run_plan(&j, &[gone]);
    assert_eq!(
        p.status["uncountedTerminatedPods"],
        json!({"failed": ["uid-live"]})
    );
    let after = settled(&p);
    assert_eq!(
        types(&after),
        ["FailureTarget"],
        "not Failed while a pod terminates"
    );
    assert_eq!(after["failed"], 3);
    // Once it is gone, the Job fails.
    let mut j = j;
    j.status = serde_json::from_value(after).unwrap();
    let after = settled(&run_plan(&j, &[]));
    assert_eq!(types(&after), ["FailureTarget", "Failed"]);
    assert_eq!(after["failed"], 3);
    assert!(after.get("completionTime").is_none());
}

#[test]
fn active_deadline_fails_the_job_and_is_requeued_before() {
    let start = |ago: i64| (now() - SignedDuration::from_secs(ago)).to_string();
    let j = job(json!({"spec": {"activeDeadlineSeconds": 30}, "status": {"startTime": start(31)}}));
    let p = run_plan(&j, &[pod("a", "Running", true, None)]);
    assert_eq!(p.status["conditions"][0]["reason"], "DeadlineExceeded");
    assert_eq!(
        p.status["conditions"][0]["message"],
        "Job was active longer than specified deadline"
    );
    assert_eq!(p.delete, ["a"]);

    let j = job(json!({"spec": {"activeDeadlineSeconds": 30}, "status": {"startTime": start(20)}}));
    let p = run_plan(&j, &[pod("a", "Running", true, None)]);
    assert!(types(&p.status).is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(10)));

    let j = job(
        json!({"spec": {"activeDeadlineSeconds": 30, "suspend": true},
                       "status": {"startTime": start(100)}}),
    );
    assert!(
        !types(&run_plan(&j, &[]).status).contains(&"FailureTarget".to_string()),
        "no deadline while suspended"
    );
}

#[test]
fn suspend_deletes_active_pods_uncounted_and_resume_restarts_the_clock() {
    let j = job(json!({"spec": {"suspend": true, "parallelism": 2, "completions": 4}}));
    let p = run_plan(
        &j,
        &[
            pod("a", "Running", true, None),
            pod("b", "Pending", true, None),
        ],
    );
    let mut del = p.delete_uncounted.clone();
    del.sort();
    assert_eq!(del, ["a", "b"]);
    assert!(p.create.is_empty());
    assert_eq!(types(&p.status), ["Suspended"]);
    assert_eq!(p.status["conditions"][0]["reason"], "JobSuspended");
    assert_eq!(p.events, vec![("Normal", "Suspended", "Job suspended")]);
    assert!(
        p.status.get("startTime").is_none(),
        "a suspended job has not started"
    );
    assert_eq!(
        p.status["uncountedTerminatedPods"],
        json!({}),
        "not counted as failures"
    );

    let j = job(
        json!({"spec": {"parallelism": 2, "completions": 4}, "status": {
        "startTime": "2026-01-01T00:00:00Z", "conditions": [
        {"type": "Suspended", "status": "True", "reason": "JobSuspended", "message": "Job suspended",
         "lastProbeTime": "2026-01-01T00:01:00Z", "lastTransitionTime": "2026-01-01T00:01:00Z"}]}}),
    );
    let p = run_plan(&j, &[]);
    assert_eq!(p.create.len(), 2);
    assert_eq!(p.status["conditions"][0]["status"], "False");
    assert_eq!(p.status["conditions"][0]["reason"], "JobResumed");
    assert_eq!(p.events, vec![("Normal", "Resumed", "Job resumed")]);
    assert_eq!(p.status["startTime"], json!(now().to_string()));
}

#[test]
fn indexed_jobs_create_missing_indexes_and_complete_by_index() {
    let j = job(json!({"spec": {"completionMode": "Indexed", "completions": 5, "parallelism": 3}}));
    let p = run_plan(&j, &[pod("pi-1-x", "Running", true, Some(1))]);
    assert_eq!(p.create, vec![Some(0), Some(2)]);

    let pods = vec![
        pod("a", "Succeeded", true, Some(0)),
        pod("b", "Succeeded", true, Some(2)),
        pod("b2", "Succeeded", true, Some(2)),
        pod("c", "Running", true, Some(3)),
        pod("c2", "Running", true, Some(3)),
        pod("z", "Running", true, Some(9)),
    ];
    let p = run_plan(&j, &pods);
    assert_eq!(p.status["completedIndexes"], "0,2");
    assert_eq!(p.status["succeeded"], 2);
    let mut del = p.delete_uncounted.clone();
    del.sort();
    assert_eq!(
        del.len(),
        2,
        "a repeated index and an index out of range: {del:?}"
    );
    assert!(del.contains(&"z".to_string()));
    assert!(p.create.is_empty(), "deletions first, creations next sync");

    let j = job(
        json!({"spec": {"completionMode": "Indexed", "completions": 3, "parallelism": 3},
                       "status": {"completedIndexes": "0-1", "succeeded": 2}}),
    );
    let p = run_plan(&j, &[pod("c", "Succeeded", true, Some(2))]);
    assert_eq!(p.status["completedIndexes"], "0-2");
    assert_eq!(types(&settled(&p)), ["SuccessCriteriaMet", "Complete"]);
}

#[test]
fn indexed_pods_carry_index_hostname_env_and_the_finalizer() {
    let j = job(json!({"spec": {"completionMode": "Indexed", "completions": 3}}));
    let p = pod_from_template(&j, Some(2));
    assert_eq!(p["metadata"]["generateName"], "pi-2-");
    assert_eq!(p["metadata"]["annotations"][INDEX_ANNOTATION], "2");
    assert_eq!(p["metadata"]["labels"][INDEX_ANNOTATION], "2");
    assert_eq!(
        p["metadata"]["labels"]["batch.kubernetes.io/job-name"],
        "pi"
    );
    assert_eq!(p["spec"]["hostname"], "pi-2");
    assert_eq!(
        p["spec"]["containers"][0]["env"][0]["name"],
        "JOB_COMPLETION_INDEX"
    );
    assert_eq!(p["metadata"]["finalizers"], json!([TRACKING_FINALIZER]));
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
    assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
    let p = pod_from_template(&job(json!({})), None);
    assert_eq!(p["metadata"]["generateName"], "pi-");
    assert!(p["spec"].get("hostname").is_none());
}

#[test]
fn completed_indexes_format_as_runs() {
    for s in ["", "0", "0-2", "1,3-5,7", "0-1,3"] {
        assert_eq!(format_indexes(&parse_indexes(s)), s);
    }
    assert_eq!(format_indexes(&[0, 1].into_iter().collect()), "0-1");
}

#[test]
fn backoff_doubles_from_the_last_failure_up_to_the_cap() {
    let base = Duration::from_secs(10);
    let max = Duration::from_secs(360);
    let t0 = now();
    let cases = [
        (1, 0, 10),
        (2, 0, 20),
        (3, 5, 35),
        (6, 0, 320),
        (7, 0, 360),
        (30, 0, 360),
        (1, 15, 0),
    ];
    for (failures, elapsed, want) in cases {
        let b = Backoff {
            failures,
            last_failure: Some(t0),
        };
        assert_eq!(
            b.remaining(t0 + SignedDuration::from_secs(elapsed), base, max),
            Duration::from_secs(want),
            "{failures} failures, {elapsed}s later"
        );
    }
    let b = Backoff::default().observe(0, 2, t0);
    assert_eq!(b.failures, 2);
    assert_eq!(
        b.observe(1, 0, t0),
        Backoff::default(),
        "a success resets it"
    );
    // While backing off, no pod is created and the job is synced again then.
    let empty = HashSet::new();
    let p = plan(
        &job(json!({})),
        &[],
        &Inputs {
            now: t0,
            backoff_remaining: Duration::from_secs(7),
            expectations_satisfied: true,
            expected_rm_finalizers: &empty,
        },
    );
    assert!(p.create.is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(7)));
}

#[test]
fn unsatisfied_expectations_hold_creation() {
    let empty = HashSet::new();
    let p = plan(
        &job(json!({})),
        &[],
        &Inputs {
            now: now(),
            backoff_remaining: Duration::ZERO,
            expectations_satisfied: false,
            expected_rm_finalizers: &empty,
        },
    );
    assert!(p.create.is_empty());
}

#[test]
fn ttl_after_finished_counts_from_the_finish() {
    let j = job(
        json!({"spec": {"ttlSecondsAfterFinished": 100}, "status": {"conditions": [
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
    );
    assert_eq!(
        ttl_expires_at(&j),
        Some("2026-01-01T00:01:40Z".parse().unwrap())
    );
    assert!(is_finished(&j));
    let running = job(json!({"spec": {"ttlSecondsAfterFinished": 100}}));
    assert_eq!(ttl_expires_at(&running), None);
    assert_eq!(
        ttl_expires_at(&job(json!({"status": {"conditions": [
        {"type": "Failed", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))),
        None
    );
}
