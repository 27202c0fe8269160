//! The Job controller (batch/v1) and the TTL-after-finished controller, as
//! kube-controller-manager runs them.
//!
//! [`plan`] is pure: from a Job, its pods and the back-off still to wait, it
//! decides which pods to create (with completion indexes for Indexed Jobs),
//! which to delete, which finished pods to count and the status to write.
//! Finished pods are counted as Kubernetes does since 1.26: every pod carries
//! the `batch.kubernetes.io/job-tracking` finalizer; a finished pod's uid goes
//! to `status.uncountedTerminatedPods` first, then its finalizer is removed,
//! then ([`settle`]) it moves into `succeeded`/`failed`. A pod is thus counted
//! exactly once even when it is deleted right after finishing. The terminal
//! conditions come in two steps, as in Kubernetes 1.31+: `SuccessCriteriaMet`
//! or `FailureTarget` first, `Complete` or `Failed` ([`finish`]) once no pod is
//! left uncounted or terminating.
//!
//! [`run`] watches Jobs and pods and carries the plans out; pods created or
//! deleted are noted at once (expectations), so a lagging watch never makes
//! it create or delete twice. Finished Jobs with `ttlSecondsAfterFinished`
//! are deleted (foreground, with a uid precondition) when it runs out.

use crate::cache::Cache;
use crate::events::{Involved, record};
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::watcher;
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;
use tokio::sync::watch;

/// The finalizer every Job pod carries until it is counted.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The annotation (and label) holding an Indexed Job pod's completion index.
pub const INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// How many pods one sync creates or deletes at most (`MaxPodCreateDeletePerSync`).
pub const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;

/// Settings of the Job controller.
#[derive(Debug, Clone)]
pub struct Options {
    /// The first delay before a failed pod is replaced (10 s in Kubernetes);
    /// it doubles with every further failure.
    pub backoff_base: Duration,
    /// The longest such delay (6 min in Kubernetes).
    pub backoff_max: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(360),
        }
    }
}

/// Failures since the last success, for the exponential back-off of pod
/// re-creation (Kubernetes' `backoffRecord`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Backoff {
    /// Failed pods counted since the last succeeded one.
    pub failures: u32,
    /// When the last of them was counted.
    pub last_failure: Option<Timestamp>,
}

impl Backoff {
    /// The record after a sync counted `succeeded` and `failed` new pods.
    pub fn observe(&self, succeeded: usize, failed: usize, now: Timestamp) -> Backoff {
        if failed == 0 && succeeded == 0 {
            return self.clone();
        }
        if failed == 0 {
            return Backoff::default();
        }
        let base = if succeeded > 0 { 0 } else { self.failures };
        Backoff {
            failures: base + failed as u32,
            last_failure: Some(now),
        }
    }

    /// How long pod creation must still wait at `now`: `base` doubled for
    /// every failure after the first, capped at `max`, from the last failure.
    pub fn remaining(&self, now: Timestamp, base: Duration, max: Duration) -> Duration {
        let Some(last) = self.last_failure else {
            return Duration::ZERO;
        };
        if self.failures == 0 {
            return Duration::ZERO;
        }
        let mut delay = base;
        for _ in 1..self.failures {
            delay = delay.saturating_mul(2);
            if delay >= max {
                break;
            }
        }
        let delay = delay.min(max);
        let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
        delay.saturating_sub(elapsed)
    }
}

/// What [`plan`] needs besides the Job and its pods.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The time of the sync.
    pub now: Timestamp,
    /// Back-off still to wait before creating pods.
    pub backoff_remaining: Duration,
    /// Whether every create/delete asked for earlier has been seen by the watch.
    pub expectations_satisfied: bool,
    /// Uids of pods whose finalizer removal was asked for but not yet seen.
    pub expected_rm_finalizers: &'a HashSet<String>,
}

/// What one sync of a Job does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Pods to create: one entry each, with the completion index for Indexed Jobs.
    pub create: Vec<Option<i64>>,
    /// Active pods to delete keeping their finalizer (the Job is finishing:
    /// they will be counted as failed).
    pub delete: Vec<String>,
    /// Active pods to delete after removing their finalizer (suspend, surplus:
    /// they are not counted).
    pub delete_uncounted: Vec<String>,
    /// Finished pods whose finalizer is removed after `status` is written.
    pub remove_finalizers: Vec<(String, String)>,
    /// Uids of pods that keep the tracking finalizer (for [`settle`]).
    pub with_finalizer: HashSet<String>,
    /// The status to write before finalizers are removed.
    pub status: Value,
    /// The condition (`Complete` or `Failed`) to add once every pod is counted.
    pub final_condition: Option<Value>,
    /// Pods terminating (being deleted, not finished), this sync's deletions included.
    pub terminating: i64,
    /// Sync again after this long (active deadline, back-off).
    pub requeue_after: Option<Duration>,
    /// Events to record: (type, reason, message).
    pub events: Vec<(&'static str, &'static str, &'static str)>,
    /// Pods newly counted this sync (for the back-off record).
    pub new_succeeded: usize,
    /// Pods newly counted as failed this sync.
    pub new_failed: usize,
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn has_finalizer(p: &Pod) -> bool {
    p.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == TRACKING_FINALIZER))
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn is_active(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none() && !matches!(phase(p), "Succeeded" | "Failed")
}

/// Whether a pod counts as failed: it failed, or it is being deleted before succeeding.
fn is_failed(p: &Pod) -> bool {
    phase(p) == "Failed" || (p.metadata.deletion_timestamp.is_some() && phase(p) != "Succeeded")
}

fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some() && !matches!(phase(p), "Succeeded" | "Failed")
}

/// A pod's completion index, if it has a valid one.
pub fn completion_index(p: &Pod) -> Option<i64> {
    p.metadata
        .annotations
        .as_ref()?
        .get(INDEX_ANNOTATION)?
        .parse::<i64>()
        .ok()
        .filter(|i| *i >= 0)
}

/// Parses `completedIndexes` ("1,3-5") into indexes.
pub fn parse_indexes(s: &str) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

/// Formats indexes as `completedIndexes` does: ascending, runs as "a-b".
pub fn format_indexes(ix: &BTreeSet<i64>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(i64, i64)> = None;
    for &i in ix {
        run = match run {
            Some((a, b)) if i == b + 1 => Some((a, i)),
            Some((a, b)) => {
                parts.push(if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                });
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    if let Some((a, b)) = run {
        parts.push(if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        });
    }
    parts.join(",")
}

fn condition<'a>(job: &'a Value, type_: &str) -> Option<&'a Value> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

/// Whether the Job has finished (`Complete` or `Failed` is True).
pub fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}

fn new_condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> Value {
    let t = now.to_string();
    json!({"type": type_, "status": "True", "lastProbeTime": t, "lastTransitionTime": t,
           "reason": reason, "message": message})
}

/// Sets condition `type_` to `status` (appending only a True one), as
/// Kubernetes' `ensureJobConditionStatus`; true when the list changed.
fn ensure_condition(
    conds: &mut Vec<Value>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let t = now.to_string();
    if let Some(c) = conds.iter_mut().find(|c| c["type"] == type_) {
        if c["status"] == status && c["reason"] == reason && c["message"] == message {
            return false;
        }
        *c = json!({"type": type_, "status": status, "lastProbeTime": t, "lastTransitionTime": t,
                    "reason": reason, "message": message});
        return true;
    }
    if status == "True" {
        conds.push(new_condition(type_, reason, message, now));
        return true;
    }
    false
}

fn uid_set(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Plans one sync of a Job that has not finished yet. `pods` are the pods
/// of its namespace; those it controls are picked by owner uid.
pub fn plan(job: &Job, pods: &[&Pod], inputs: &Inputs<'_>) -> Plan {
    let now = inputs.now;
    let jv = serde_json::to_value(job).unwrap_or(Value::Null);
    let spec = &jv["spec"];
    let job_uid = job.metadata.uid.as_deref().unwrap_or("");
    let mine: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| {
            p.metadata.owner_references.as_ref().is_some_and(|o| {
                o.iter()
                    .any(|o| o.controller == Some(true) && o.uid == job_uid)
            })
        })
        .collect();
    let indexed = spec["completionMode"] == "Indexed";
    let completions = spec["completions"].as_i64();
    let parallelism = spec["parallelism"].as_i64().unwrap_or(1).max(0);
    let backoff_limit = spec["backoffLimit"].as_i64().unwrap_or(6);
    let suspended = spec["suspend"].as_bool().unwrap_or(false);
    let valid_index = |p: &Pod| -> bool {
        !indexed || completion_index(p).is_some_and(|i| i < completions.unwrap_or(0))
    };

    let mut plan = Plan::default();
    let mut status: Map<String, Value> = jv["status"].as_object().cloned().unwrap_or_default();
    let mut conds: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut unc_succeeded = uid_set(&jv["status"]["uncountedTerminatedPods"]["succeeded"]);
    let mut unc_failed = uid_set(&jv["status"]["uncountedTerminatedPods"]["failed"]);
    let mut succeeded_count = jv["status"]["succeeded"].as_i64().unwrap_or(0);
    let mut failed_count = jv["status"]["failed"].as_i64().unwrap_or(0);

    let tracked = |p: &&Pod| has_finalizer(p) && !inputs.expected_rm_finalizers.contains(&uid(p));
    plan.with_finalizer = mine.iter().copied().filter(tracked).map(uid).collect();
    // Uncounted pods whose finalizer is gone are counted now.
    settle_lists(
        &mut unc_succeeded,
        &mut unc_failed,
        &mut succeeded_count,
        &mut failed_count,
        &plan.with_finalizer,
    );

    let mut active: Vec<&Pod> = mine.iter().copied().filter(|p| is_active(p)).collect();
    let mut terminating = mine.iter().filter(|p| is_terminating(p)).count() as i64;
    let mut ready = active
        .iter()
        .filter(|p| crate::replicaset::ready_since(p).is_some())
        .count() as i64;
    let new_succeeded: Vec<&Pod> = mine
        .iter()
        .copied()
        .filter(tracked)
        .filter(|p| !unc_succeeded.contains(&uid(p)) && phase(p) == "Succeeded" && valid_index(p))
        .collect();
    let new_failed: Vec<&Pod> = mine
        .iter()
        .copied()
        .filter(tracked)
        .filter(|p| !unc_failed.contains(&uid(p)) && is_failed(p) && valid_index(p))
        .collect();
    let mut succeeded = succeeded_count + new_succeeded.len() as i64 + unc_succeeded.len() as i64;
    let failed = failed_count + new_failed.len() as i64 + unc_failed.len() as i64;

    if status.get("startTime").is_none_or(Value::is_null) && !suspended {
        status.insert("startTime".into(), json!(now.to_string()));
    }
    let start = status
        .get("startTime")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok());

    // Is the Job done, one way or the other?
    let mut finished: Option<Value> = None;
    if let Some(c) = condition(&jv, "SuccessCriteriaMet") {
        finished = Some(c.clone());
    } else if let Some(c) = condition(&jv, "FailureTarget") {
        finished = Some(c.clone());
    } else if failed > backoff_limit || past_backoff_on_failure(&jv, &active, backoff_limit) {
        finished = Some(new_condition(
            "FailureTarget",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
            now,
        ));
    } else if let (Some(ads), Some(start), false) =
        (spec["activeDeadlineSeconds"].as_i64(), start, suspended)
    {
        let deadline = start + SignedDuration::from_secs(ads);
        if now >= deadline {
            finished = Some(new_condition(
                "FailureTarget",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
                now,
            ));
        } else {
            plan.requeue_after =
                Some(Duration::try_from(deadline.duration_since(now)).unwrap_or_default());
        }
    }

    let mut succeeded_ix: BTreeSet<i64> = BTreeSet::new();
    if indexed {
        succeeded_ix = parse_indexes(jv["status"]["completedIndexes"].as_str().unwrap_or(""));
        succeeded_ix.retain(|i| *i < completions.unwrap_or(0));
        for p in &mine {
            if phase(p) == "Succeeded"
                && let Some(i) = completion_index(p).filter(|i| *i < completions.unwrap_or(0))
            {
                succeeded_ix.insert(i);
            }
        }
        succeeded = succeeded_ix.len() as i64;
    }

    let mut n_active = active.len() as i64;
    if finished.is_some() {
        // Done: every active pod goes, keeping its finalizer so it is counted.
        plan.delete = active.iter().map(|p| name(p)).collect();
        ready -= active
            .iter()
            .filter(|p| crate::replicaset::ready_since(p).is_some())
            .count() as i64;
        terminating += n_active;
        n_active = 0;
        if !inputs.expectations_satisfied {
            finished = None;
        }
    } else {
        let manage = inputs.expectations_satisfied && job.metadata.deletion_timestamp.is_none();
        if manage {
            if suspended {
                plan.delete_uncounted = active.iter().map(|p| name(p)).collect();
                terminating += n_active;
                ready = 0;
                n_active = 0;
            } else {
                let want = match completions {
                    None if succeeded > 0 => n_active,
                    None => parallelism,
                    Some(c) => (c - succeeded).clamp(0, parallelism),
                };
                let mut remove: Vec<&Pod> = Vec::new();
                if indexed {
                    // Pods without a valid index and repeated indexes go first.
                    crate::replicaset::deletion_order(&mut active, |_| 0);
                    let mut seen: HashSet<i64> = HashSet::new();
                    let mut keep = Vec::new();
                    for p in active.iter().rev() {
                        match completion_index(p).filter(|i| *i < completions.unwrap_or(0)) {
                            Some(i) if !succeeded_ix.contains(&i) && seen.insert(i) => {
                                keep.push(*p)
                            }
                            _ => remove.push(p),
                        }
                    }
                    keep.reverse();
                    active = keep;
                }
                let surplus = (active.len() as i64 - want).max(0) as usize;
                if remove.len() < surplus || !remove.is_empty() {
                    crate::replicaset::deletion_order(&mut active, |_| 0);
                    let more = surplus.saturating_sub(remove.len()).min(active.len());
                    remove.extend(active.iter().take(more));
                }
                remove.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
                if !remove.is_empty() {
                    plan.delete_uncounted = remove.iter().map(|p| name(p)).collect();
                    let removed_ready = remove
                        .iter()
                        .filter(|p| crate::replicaset::ready_since(p).is_some())
                        .count() as i64;
                    ready -= removed_ready;
                    terminating += remove.len() as i64;
                    n_active -= remove.len() as i64;
                } else if want > n_active {
                    if inputs.backoff_remaining > Duration::ZERO {
                        plan.requeue_after =
                            Some(plan.requeue_after.map_or(inputs.backoff_remaining, |r| {
                                r.min(inputs.backoff_remaining)
                            }));
                    } else {
                        let diff = ((want - n_active) as usize).min(MAX_POD_CREATE_DELETE_PER_SYNC);
                        if indexed {
                            let held: HashSet<i64> =
                                active.iter().filter_map(|p| completion_index(p)).collect();
                            plan.create = (0..completions.unwrap_or(0))
                                .filter(|i| !succeeded_ix.contains(i) && !held.contains(i))
                                .take(diff)
                                .map(Some)
                                .collect();
                        } else {
                            plan.create = vec![None; diff];
                        }
                        n_active += plan.create.len() as i64;
                    }
                }
            }
        }
        let complete = match completions {
            None => succeeded > 0 && n_active == 0,
            Some(c) => succeeded >= c && n_active == 0,
        };
        if complete {
            finished = Some(new_condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            ));
        } else if manage {
            if suspended {
                if ensure_condition(
                    &mut conds,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    now,
                ) {
                    plan.events.push(("Normal", "Suspended", "Job suspended"));
                }
            } else if ensure_condition(
                &mut conds,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            ) {
                plan.events.push(("Normal", "Resumed", "Job resumed"));
                // The deadline counts from the resumption.
                status.insert("startTime".into(), json!(now.to_string()));
            }
        }
    }

    // Count finished pods: their uids go to uncountedTerminatedPods, their
    // finalizers are removed after that is written.
    let finishing_failed = finished
        .as_ref()
        .is_some_and(|c| c["type"] != "SuccessCriteriaMet");
    let deleting_job = job.metadata.deletion_timestamp.is_some();
    let mut sorted: Vec<&Pod> = mine.iter().copied().filter(tracked).collect();
    sorted.sort_by_key(|p| (completion_index(p), p.metadata.name.clone()));
    let mut new_ix: Vec<i64> = Vec::new();
    for p in sorted {
        let failed_now = is_failed(p);
        let removable = deleting_job || finished.is_some() || phase(p) == "Succeeded" || failed_now;
        if !removable {
            continue;
        }
        let u = uid(p);
        if phase(p) == "Succeeded" && !unc_failed.contains(&u) {
            if indexed {
                if let Some(i) = completion_index(p).filter(|i| *i < completions.unwrap_or(0)) {
                    new_ix.push(i);
                }
            } else if !unc_succeeded.contains(&u) {
                unc_succeeded.push(u.clone());
                plan.new_succeeded += 1;
            }
        } else if (failed_now || finishing_failed) && !unc_failed.contains(&u) && valid_index(p) {
            unc_failed.push(u.clone());
            plan.new_failed += 1;
        }
        plan.remove_finalizers.push((name(p), u));
    }
    if indexed {
        plan.new_succeeded += new_ix.len();
        status.insert(
            "completedIndexes".into(),
            json!(format_indexes(&succeeded_ix)),
        );
        status.insert("succeeded".into(), json!(succeeded));
    } else {
        status.insert("succeeded".into(), json!(succeeded_count));
    }
    status.insert("failed".into(), json!(failed_count));
    status.insert("active".into(), json!(n_active));
    status.insert("ready".into(), json!(ready.max(0)));
    status.insert("terminating".into(), json!(terminating));
    status.insert(
        "uncountedTerminatedPods".into(),
        uncounted_value(&unc_succeeded, &unc_failed),
    );
    if let Some(c) = &finished {
        let interim = c["type"].as_str().unwrap_or("").to_string();
        if !conds
            .iter()
            .any(|x| x["type"] == interim.as_str() && x["status"] == "True")
        {
            conds.push(c.clone());
        }
        let final_type = if interim == "SuccessCriteriaMet" {
            "Complete"
        } else {
            "Failed"
        };
        plan.final_condition = Some(new_condition(
            final_type,
            c["reason"].as_str().unwrap_or(""),
            c["message"].as_str().unwrap_or(""),
            now,
        ));
    }
    if !conds.is_empty() {
        status.insert("conditions".into(), Value::Array(conds));
    }
    plan.terminating = terminating;
    plan.status = Value::Object(status);
    plan
}

fn uncounted_value(succeeded: &[String], failed: &[String]) -> Value {
    let mut m = Map::new();
    if !succeeded.is_empty() {
        m.insert("succeeded".into(), json!(succeeded));
    }
    if !failed.is_empty() {
        m.insert("failed".into(), json!(failed));
    }
    Value::Object(m)
}

fn settle_lists(
    unc_succeeded: &mut Vec<String>,
    unc_failed: &mut Vec<String>,
    succeeded: &mut i64,
    failed: &mut i64,
    with_finalizer: &HashSet<String>,
) -> bool {
    let (s0, f0) = (unc_succeeded.len(), unc_failed.len());
    unc_succeeded.retain(|u| with_finalizer.contains(u));
    unc_failed.retain(|u| with_finalizer.contains(u));
    *succeeded += (s0 - unc_succeeded.len()) as i64;
    *failed += (f0 - unc_failed.len()) as i64;
    s0 != unc_succeeded.len() || f0 != unc_failed.len()
}

/// Moves uids of `uncountedTerminatedPods` whose pods no longer carry the
/// finalizer into the `succeeded`/`failed` counters; true when it changed.
pub fn settle(status: &mut Value, with_finalizer: &HashSet<String>) -> bool {
    let mut s = uid_set(&status["uncountedTerminatedPods"]["succeeded"]);
    let mut f = uid_set(&status["uncountedTerminatedPods"]["failed"]);
    let mut sc = status["succeeded"].as_i64().unwrap_or(0);
    let mut fc = status["failed"].as_i64().unwrap_or(0);
    let indexed = status.get("completedIndexes").is_some();
    let changed = settle_lists(&mut s, &mut f, &mut sc, &mut fc, with_finalizer);
    if changed {
        if !indexed {
            status["succeeded"] = json!(sc);
        }
        status["failed"] = json!(fc);
        status["uncountedTerminatedPods"] = uncounted_value(&s, &f);
    }
    changed
}

/// Adds the terminal condition once no pod is uncounted or terminating (and
/// `completionTime` for `Complete`); true when the Job finished now.
pub fn finish(status: &mut Value, final_condition: Option<&Value>, terminating: i64) -> bool {
    let Some(c) = final_condition else {
        return false;
    };
    let unc = &status["uncountedTerminatedPods"];
    if !uid_set(&unc["succeeded"]).is_empty()
        || !uid_set(&unc["failed"]).is_empty()
        || terminating > 0
    {
        return false;
    }
    let mut conds = status["conditions"].as_array().cloned().unwrap_or_default();
    if conds
        .iter()
        .any(|x| x["type"] == c["type"] && x["status"] == "True")
    {
        return false;
    }
    conds.push(c.clone());
    status["conditions"] = Value::Array(conds);
    if c["type"] == "Complete" {
        status["completionTime"] = c["lastTransitionTime"].clone();
    }
    true
}

/// With `restartPolicy: OnFailure`, failures are container restarts: the
/// sum over running and pending pods reaching the limit fails the Job.
fn past_backoff_on_failure(job: &Value, active: &[&Pod], limit: i64) -> bool {
    if job["spec"]["template"]["spec"]["restartPolicy"] != "OnFailure" {
        return false;
    }
    let restarts: i64 = active
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| i64::from(c.restart_count))
        .sum();
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// When a finished Job's `ttlSecondsAfterFinished` runs out, if it has one.
pub fn ttl_expires_at(job: &Job) -> Option<Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let status = job.status.as_ref()?;
    let finished_at = status
        .conditions
        .as_ref()?
        .iter()
        .filter(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .next()
        .or(status.completion_time.as_ref().map(|t| t.0))?;
    Some(finished_at + SignedDuration::from_secs(i64::from(ttl)))
}

/// The pod a Job's template makes, with completion index `index` for Indexed Jobs.
pub fn pod_from_template(job: &Job, index: Option<i64>) -> Value {
    let template = job
        .spec
        .as_ref()
        .map(|s| serde_json::to_value(&s.template).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    let name = job.metadata.name.as_deref().unwrap_or("");
    let mut metadata = json!({
        "generateName": format!("{name}-"),
        "namespace": job.metadata.namespace,
        "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": name,
            "uid": job.metadata.uid, "controller": true, "blockOwnerDeletion": true,
        }],
    });
    for k in ["labels", "annotations"] {
        if let Some(v) = template["metadata"].get(k).filter(|v| !v.is_null()) {
            metadata[k] = v.clone();
        }
    }
    let mut finalizers = template["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(json!(TRACKING_FINALIZER));
    }
    metadata["finalizers"] = Value::Array(finalizers);
    let mut spec = template["spec"].clone();
    if let Some(i) = index {
        metadata["generateName"] = json!(format!("{name}-{i}-"));
        if !metadata["annotations"].is_object() {
            metadata["annotations"] = json!({});
        }
        metadata["annotations"][INDEX_ANNOTATION] = json!(i.to_string());
        if !metadata["labels"].is_object() {
            metadata["labels"] = json!({});
        }
        metadata["labels"][INDEX_ANNOTATION] = json!(i.to_string());
        spec["hostname"] = json!(format!("{name}-{i}"));
        for kind in ["initContainers", "containers"] {
            if let Some(cs) = spec[kind].as_array_mut() {
                for c in cs {
                    let env = c
                        .as_object_mut()
                        .map(|o| o.entry("env").or_insert(json!([])));
                    if let Some(Value::Array(env)) = env
                        && !env.iter().any(|e| e["name"] == "JOB_COMPLETION_INDEX")
                    {
                        env.push(
                            json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                            "fieldPath": format!("metadata.annotations['{INDEX_ANNOTATION}']")}}}),
                        );
                    }
                }
            }
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

/// Pods created or deleted but not yet seen so by the watch, per Job.
#[derive(Default)]
struct Expectations {
    creating: HashMap<String, HashSet<String>>,
    deleting: HashMap<String, HashSet<String>>,
    rm_finalizers: HashMap<String, HashSet<String>>,
}

impl Expectations {
    fn satisfied(&self, key: &str) -> bool {
        self.creating.get(key).is_none_or(HashSet::is_empty)
            && self.deleting.get(key).is_none_or(HashSet::is_empty)
    }
    fn forget(&mut self, key: &str) {
        self.creating.remove(key);
        self.deleting.remove(key);
        self.rm_finalizers.remove(key);
    }
}

/// Runs the Job controller with Kubernetes' back-off until `shutdown` turns true.
pub async fn run(client: kube::Client, shutdown: watch::Receiver<bool>) {
    let pods = crate::informer::own_pods(client.clone());
    run_with(client, Options::default(), pods, shutdown).await
}

/// Runs the Job controller with `options` until `shutdown` turns true.
pub async fn run_with(
    client: kube::Client,
    options: Options,
    pods_in: crate::informer::PodStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut job_stream =
        watcher(Api::<Job>::all(client.clone()), watcher::Config::default()).boxed();
    let mut pod_stream = pods_in;
    let mut jobs: Cache<Job> = Cache::new();
    let mut pods: Cache<Pod> = Cache::new();
    let mut dirty: HashSet<String> = HashSet::new();
    let mut expect = Expectations::default();
    let mut backoffs: HashMap<String, Backoff> = HashMap::new();
    let mut wake: HashMap<String, Timestamp> = HashMap::new();
    let mut written: HashMap<String, u64> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            ev = job_stream.next() => match ev {
                Some(Ok(ev)) => {
                    jobs.apply_marking(ev, &mut dirty);
                }
                Some(Err(e)) => {
                    tracing::warn!("job controller: watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return,
            },
            ev = pod_stream.next() => match ev {
                Some(Ok(ev)) => {
                    if let watcher::Event::Apply(p) | watcher::Event::Delete(p) = &ev {
                        let gone = matches!(ev, watcher::Event::Delete(_)) || p.metadata.deletion_timestamp.is_some();
                        note_pod(&jobs, &mut expect, &mut dirty, p, gone);
                    }
                    // Only pods of Jobs (or still holding the Job finalizer) are kept:
                    // the rest of the cluster's pods never cost this controller a scan.
                    match ev {
                        watcher::Event::Apply(p) if !job_pod(&p) => {
                            pods.apply(watcher::Event::Delete(p));
                        }
                        watcher::Event::InitApply(p) if !job_pod(&p) => {}
                        ev => {
                            pods.apply(ev);
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("job controller: pod watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return,
            },
            _ = tick.tick() => {
                let now = Timestamp::now();
                let due: Vec<String> = wake.iter().filter(|(_, t)| **t <= now).map(|(k, _)| k.clone()).collect();
                for k in due {
                    wake.remove(&k);
                    dirty.insert(k);
                }
            }
        }
        if !jobs.synced || !pods.synced {
            continue;
        }
        for key in std::mem::take(&mut dirty) {
            let Some(job) = jobs.get(&key).cloned() else {
                expect.forget(&key);
                backoffs.remove(&key);
                wake.remove(&key);
                written.remove(&key);
                continue;
            };
            // Our own last status write not seen yet: the cached Job is stale.
            if written.get(&key).is_some_and(|w| rv_of(&job) < *w) {
                continue;
            }
            if is_finished(&job) {
                backoffs.remove(&key);
                expect.forget(&key);
                release_pods(&client, &job, &mut pods).await;
                if let Some(at) = ttl_expires_at(&job) {
                    if Timestamp::now() >= at {
                        delete_expired(&client, &job).await;
                    } else {
                        wake.insert(key.clone(), at);
                    }
                }
                continue;
            }
            let again = sync(
                &client,
                &options,
                &job,
                &key,
                &mut written,
                &mut pods,
                &mut expect,
                &mut backoffs,
            )
            .await;
            if let Some(d) = again {
                let at = Timestamp::now() + SignedDuration::try_from(d).unwrap_or_default();
                let e = wake.entry(key.clone()).or_insert(at);
                *e = (*e).min(at);
            }
        }
        // Pods still holding the finalizer after their Job is gone are let go.
        orphans(&client, &jobs, &mut pods).await;
    }
}

/// Whether a pod concerns the Job controller: a Job controls it, or it still
/// holds the Job tracking finalizer.
fn job_pod(p: &Pod) -> bool {
    controller_uid(p).is_some() || has_finalizer(p)
}

fn rv_of(job: &Job) -> u64 {
    job.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Remembers the resourceVersion of a status write, so the Job is not
/// synced again from an older cached copy.
fn note_written(written: &mut HashMap<String, u64>, key: &str, job: &Job) {
    written.insert(key.to_string(), rv_of(job));
}

fn controller_uid(p: &Pod) -> Option<&str> {
    p.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Job")
        .map(|o| o.uid.as_str())
}

fn note_pod(
    jobs: &Cache<Job>,
    expect: &mut Expectations,
    dirty: &mut HashSet<String>,
    pod: &Pod,
    gone: bool,
) {
    let Some(owner) = controller_uid(pod) else {
        return;
    };
    let Some((k, _)) = jobs
        .items
        .iter()
        .find(|(_, j)| j.metadata.uid.as_deref() == Some(owner))
    else {
        return;
    };
    let u = uid(pod);
    if let Some(c) = expect.creating.get_mut(k) {
        c.remove(pod.metadata.name.as_deref().unwrap_or(""));
    }
    if gone && let Some(d) = expect.deleting.get_mut(k) {
        d.remove(&u);
    }
    if !has_finalizer(pod)
        && let Some(r) = expect.rm_finalizers.get_mut(k)
    {
        r.remove(&u);
    }
    dirty.insert(k.clone());
}

async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> bool {
    let mut pod = pod.clone();
    for _ in 0..3 {
        let keep: Vec<String> = pod
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != TRACKING_FINALIZER)
            .cloned()
            .collect();
        // The resourceVersion guards against dropping a finalizer added meanwhile.
        let patch = json!({"metadata": {"finalizers": keep, "resourceVersion": pod.metadata.resource_version}});
        match api
            .patch(&name(&pod), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return true,
            Err(kube::Error::Api(s)) if s.code == 404 => return true,
            Err(kube::Error::Api(s)) if s.code == 409 => match api.get_opt(&name(&pod)).await {
                Ok(Some(fresh)) if has_finalizer(&fresh) => pod = fresh,
                Ok(_) => return true,
                Err(_) => return false,
            },
            Err(e) => {
                tracing::debug!("job controller: removing finalizer of {}: {e}", name(&pod));
                return false;
            }
        }
    }
    false
}

/// Removes the tracking finalizer from pods of a finished Job (they are counted).
async fn release_pods(client: &kube::Client, job: &Job, pods: &mut Cache<Pod>) {
    let job_uid = job.metadata.uid.as_deref();
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let held: Vec<Pod> = pods
        .values()
        .filter(|p| controller_uid(p) == job_uid && has_finalizer(p))
        .cloned()
        .collect();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for p in held {
        remove_finalizer(&api, &p).await;
    }
}

async fn orphans(client: &kube::Client, jobs: &Cache<Job>, pods: &mut Cache<Pod>) {
    let uids: HashSet<&str> = jobs
        .values()
        .filter_map(|j| j.metadata.uid.as_deref())
        .collect();
    let stray: Vec<Pod> = pods
        .values()
        .filter(|p| has_finalizer(p))
        .filter(|p| controller_uid(p).is_none_or(|u| !uids.contains(u)))
        .cloned()
        .collect();
    for p in stray {
        let api: Api<Pod> = Api::namespaced(
            client.clone(),
            p.metadata.namespace.as_deref().unwrap_or(""),
        );
        if remove_finalizer(&api, &p).await {
            // Not seen again until the watch says otherwise.
            let mut p = p;
            if let Some(f) = p.metadata.finalizers.as_mut() {
                f.retain(|f| f != TRACKING_FINALIZER);
            }
            pods.put(p);
        }
    }
}

async fn delete_expired(client: &kube::Client, job: &Job) {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(client.clone(), &ns);
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: job.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    if let Err(e) = api
        .delete(job.metadata.name.as_deref().unwrap_or(""), &dp)
        .await
    {
        tracing::debug!("ttl-after-finished: deleting job: {e}");
    }
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .filter(|(k, v)| {
                    // Kubernetes omits zero counters.
                    !(matches!(k.as_str(), "active" | "succeeded" | "failed")
                        && v.as_i64() == Some(0))
                })
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The status as a merge patch: zero counters removed as Kubernetes omits them.
fn status_patch(new: &Value, old: &Value) -> Value {
    let mut p = strip_nulls(new);
    if let (Some(pm), Some(om)) = (p.as_object_mut(), old.as_object()) {
        for k in om.keys() {
            if !pm.contains_key(k) {
                pm.insert(k.clone(), Value::Null);
            }
        }
        // uncountedTerminatedPods lists are replaced whole.
        if let Some(u) = pm
            .get_mut("uncountedTerminatedPods")
            .and_then(Value::as_object_mut)
        {
            for k in ["succeeded", "failed"] {
                u.entry(k).or_insert(Value::Null);
            }
        }
    }
    p
}

#[allow(clippy::too_many_arguments)]
async fn sync(
    client: &kube::Client,
    options: &Options,
    job: &Job,
    key: &str,
    written: &mut HashMap<String, u64>,
    pods: &mut Cache<Pod>,
    expect: &mut Expectations,
    backoffs: &mut HashMap<String, Backoff>,
) -> Option<Duration> {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let jname = job.metadata.name.clone().unwrap_or_default();
    let now = crate::now_rounded();
    let record_now = Timestamp::now();
    let rm = expect.rm_finalizers.get(key).cloned().unwrap_or_default();
    let in_ns: Vec<&Pod> = pods
        .values()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let backoff = backoffs.get(key).cloned().unwrap_or_default();
    let inputs = Inputs {
        now,
        backoff_remaining: backoff.remaining(record_now, options.backoff_base, options.backoff_max),
        expectations_satisfied: expect.satisfied(key),
        expected_rm_finalizers: &rm,
    };
    let plan = plan(job, &in_ns, &inputs);
    let about = Involved {
        kind: "Job",
        api_version: "batch/v1",
        namespace: &ns,
        name: &jname,
        uid: job.metadata.uid.as_deref(),
    };
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let job_api: Api<Job> = Api::namespaced(client.clone(), &ns);
    let by_name = |pods: &Cache<Pod>, n: &str| pods.get(&format!("{ns}/{n}")).cloned();

    // Deletions: finishing (finalizer kept, the pod is counted as failed) or
    // surplus/suspend (finalizer removed first: not counted).
    let mut status = plan.status.clone();
    for (n, uncounted) in plan
        .delete
        .iter()
        .map(|n| (n, false))
        .chain(plan.delete_uncounted.iter().map(|n| (n, true)))
    {
        let Some(p) = by_name(pods, n) else { continue };
        if uncounted && has_finalizer(&p) && !remove_finalizer(&pod_api, &p).await {
            continue;
        }
        let deleted = match pod_api.delete(n, &DeleteParams::default()).await {
            Ok(_) => true,
            Err(kube::Error::Api(s)) if s.code == 404 => true,
            Err(e) => {
                tracing::debug!("job {key}: deleting {n}: {e}");
                false
            }
        };
        if deleted {
            expect
                .deleting
                .entry(key.to_string())
                .or_default()
                .insert(uid(&p));
            if uncounted {
                expect
                    .rm_finalizers
                    .entry(key.to_string())
                    .or_default()
                    .insert(uid(&p));
            }
            record(
                client,
                "job-controller",
                &about,
                "Normal",
                "SuccessfulDelete",
                &format!("Deleted pod: {n}"),
            )
            .await;
        } else {
            status["active"] = json!(status["active"].as_i64().unwrap_or(0) + 1);
        }
    }

    // Creations in slow-start batches, stopping at the first failure.
    let mut failed_creates = 0i64;
    let mut queue: Vec<Option<i64>> = plan.create.clone();
    let mut batch = 1;
    let mut stop = false;
    let pp = PostParams::default();
    while !queue.is_empty() && !stop {
        let n = batch.min(queue.len());
        let chunk: Vec<Option<i64>> = queue.drain(..n).collect();
        let templates: Vec<Pod> = chunk
            .iter()
            .filter_map(|i| serde_json::from_value(pod_from_template(job, *i)).ok())
            .collect();
        let results =
            futures::future::join_all(templates.iter().map(|t| pod_api.create(&pp, t))).await;
        for r in results {
            match r {
                Ok(p) => {
                    let pname = name(&p);
                    expect
                        .creating
                        .entry(key.to_string())
                        .or_default()
                        .insert(pname.clone());
                    pods.put(p);
                    record(
                        client,
                        "job-controller",
                        &about,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {pname}"),
                    )
                    .await;
                }
                Err(e) => {
                    let msg = crate::api_message(&e);
                    record(
                        client,
                        "job-controller",
                        &about,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {msg}"),
                    )
                    .await;
                    failed_creates += 1;
                    stop = true;
                }
            }
        }
        batch *= 2;
    }
    failed_creates += queue.len() as i64;
    if failed_creates > 0 {
        status["active"] = json!((status["active"].as_i64().unwrap_or(0) - failed_creates).max(0));
    }
    for (t, reason, msg) in &plan.events {
        record(client, "job-controller", &about, t, reason, msg).await;
    }

    // 1. Write the status with the newly finished pods as uncounted.
    let old = serde_json::to_value(&job.status).unwrap_or(Value::Null);
    let mut current = job.clone();
    if strip_nulls(&status) != strip_nulls(&old) {
        match job_api
            .patch_status(
                &jname,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status_patch(&status, &old)})),
            )
            .await
        {
            Ok(j) => {
                note_written(written, key, &j);
                current = j;
                backoffs.insert(
                    key.to_string(),
                    backoff.observe(plan.new_succeeded, plan.new_failed, record_now),
                );
            }
            Err(e) => {
                tracing::debug!("job {key}: status: {e}");
                return Some(Duration::from_secs(1));
            }
        }
    }
    // 2. Remove the finalizers of the pods now recorded.
    let mut with_finalizer = plan.with_finalizer.clone();
    for (n, u) in &plan.remove_finalizers {
        let Some(p) = by_name(pods, n) else {
            with_finalizer.remove(u);
            continue;
        };
        if remove_finalizer(&pod_api, &p).await {
            with_finalizer.remove(u);
            expect
                .rm_finalizers
                .entry(key.to_string())
                .or_default()
                .insert(u.clone());
        }
    }
    // 3. Count them, and finish the Job if nothing is left.
    let before = serde_json::to_value(&current.status).unwrap_or(Value::Null);
    let mut status = before.clone();
    let counted = settle(&mut status, &with_finalizer);
    let finished = finish(&mut status, plan.final_condition.as_ref(), plan.terminating);
    if counted || finished {
        match job_api
            .patch_status(
                &jname,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status_patch(&status, &before)})),
            )
            .await
        {
            Ok(j) => note_written(written, key, &j),
            Err(e) => tracing::debug!("job {key}: status: {e}"),
        }
        if finished {
            let c = plan.final_condition.as_ref().unwrap_or(&Value::Null);
            if c["type"] == "Complete" {
                record(
                    client,
                    "job-controller",
                    &about,
                    "Normal",
                    "Completed",
                    "Job completed",
                )
                .await;
            } else {
                record(
                    client,
                    "job-controller",
                    &about,
                    "Warning",
                    c["reason"].as_str().unwrap_or(""),
                    c["message"].as_str().unwrap_or(""),
                )
                .await;
            }
        }
    }
    plan.requeue_after
}

#[cfg(test)]
mod tests;
