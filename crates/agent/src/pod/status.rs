//! A pod's status from what the runtime shows: the kubelet's `generateAPIPodStatus`,
//! `convertToAPIContainerStatuses`, `getPhase`, the probe manager's `ready`/`started` and
//! the condition generators of `pkg/kubelet/status/generate.go`, as pure functions.
//!
//! The previous status is the pod's own `status` (the last one written): it gives condition
//! transition times, the start time, the QoS class, the phase's reason and message, and what a
//! container that disappeared from the runtime last looked like.

use super::plan::{
    ObservedContainer, ObservedPod, ProbeResult, ProbeResults, Waiting, is_restartable,
    restart_policy, should_restart,
};
use crate::runtime::ContainerState as RtState;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;

/// The node and pod addresses to report (None keeps what the previous status had).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    /// The node's IP.
    pub host_ip: Option<String>,
    /// The pod's IP (the node's for host-network pods).
    pub pod_ip: Option<String>,
}

/// Condition types the kubelet owns (it regenerates them on every status).
const KUBELET_CONDITIONS: [&str; 5] = [
    "PodScheduled",
    "Ready",
    "Initialized",
    "ContainersReady",
    "PodReadyToStartContainers",
];

/// The pod's status now. `waiting` holds waiting reasons for containers that are not running
/// and will be started again (CrashLoopBackOff from [`super::plan::Plan::waiting`], image pull
/// errors, CreateContainerConfigError, … from the worker).
pub fn pod_status(
    pod: &Pod,
    observed: &ObservedPod,
    probes: &ProbeResults,
    waiting: &BTreeMap<String, Waiting>,
    addresses: &Addresses,
    now: Timestamp,
) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    let (init_statuses, app_statuses) = all_statuses(pod, observed, probes, waiting);
    let all: Vec<ContainerStatus> = init_statuses
        .iter()
        .chain(app_statuses.iter())
        .cloned()
        .collect();
    let phase = merged_phase(pod, &all);

    let mut s = PodStatus {
        phase: Some(phase.clone()),
        qos_class: old.qos_class.clone(),
        start_time: Some(old.start_time.clone().unwrap_or(Time(now))),
        ..PodStatus::default()
    };
    if old.phase.as_deref() == Some(phase.as_str()) {
        s.reason = old.reason.clone();
        s.message = old.message.clone();
    }
    let host_ip = addresses.host_ip.clone().or(old.host_ip.clone());
    let pod_ip = addresses.pod_ip.clone().or(old.pod_ip.clone());
    s.host_ips = host_ip.clone().map(|ip| vec![HostIP { ip }]);
    s.host_ip = host_ip;
    s.pod_ips = pod_ip.clone().map(|ip| vec![PodIP { ip }]);
    s.pod_ip = pod_ip;

    // Conditions: others' first, then the kubelet's in its order.
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let mut conditions: Vec<PodCondition> = old_conditions
        .iter()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    let sandbox_ok = observed.sandbox.is_some() && observed.sandbox_ready;
    let mut mine = vec![
        condition("PodReadyToStartContainers", sandbox_ok, None, None),
        initialized_condition(&spec.containers, &inits, &all, &phase),
        ready_condition(pod, &conditions, &all, &phase),
        containers_ready_condition(&spec.containers, &inits, &all, &phase),
        condition("PodScheduled", true, None, None),
    ];
    for c in &mut mine {
        let kept = old_conditions
            .iter()
            .find(|o| o.type_ == c.type_ && o.status == c.status)
            .and_then(|o| o.last_transition_time.clone());
        c.last_transition_time = Some(kept.unwrap_or(Time(now)));
    }
    conditions.extend(mine);
    s.conditions = Some(conditions);
    s.init_container_statuses = (!inits.is_empty()).then_some(init_statuses);
    s.container_statuses = Some(app_statuses);
    s
}

/// The phase the pod is in now (as [`pod_status`] would report it), without waiting reasons.
pub fn pod_phase(pod: &Pod, observed: &ObservedPod, probes: &ProbeResults) -> String {
    let (inits, apps) = all_statuses(pod, observed, probes, &BTreeMap::new());
    let all: Vec<ContainerStatus> = inits.into_iter().chain(apps).collect();
    merged_phase(pod, &all)
}

/// `getPhase`, then: a terminal phase the pod already had is kept.
fn merged_phase(pod: &Pod, all: &[ContainerStatus]) -> String {
    let terminal = pod.metadata.deletion_timestamp.is_some();
    let phase = get_phase(pod, all, terminal);
    let old = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    match old {
        Some(p @ ("Succeeded" | "Failed")) => p.to_string(),
        _ => phase.to_string(),
    }
}

fn all_statuses(
    pod: &Pod,
    observed: &ObservedPod,
    probes: &ProbeResults,
    waiting: &BTreeMap<String, Waiting>,
) -> (Vec<ContainerStatus>, Vec<ContainerStatus>) {
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let has_init = !inits.is_empty();
    let init_statuses = container_statuses(
        pod,
        observed,
        probes,
        waiting,
        &inits,
        true,
        has_init,
        old.init_container_statuses.as_deref().unwrap_or(&[]),
    );
    let mut app_statuses = container_statuses(
        pod,
        observed,
        probes,
        waiting,
        &spec.containers,
        false,
        has_init,
        old.container_statuses.as_deref().unwrap_or(&[]),
    );
    app_statuses.sort_by(|a, b| a.name.cmp(&b.name));
    (init_statuses, app_statuses)
}

fn waiting_state(reason: Option<&str>, message: Option<&str>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: reason.map(str::to_string),
            message: message.map(str::to_string),
        }),
        ..ContainerState::default()
    }
}

fn terminated(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.state.as_ref().and_then(|st| st.terminated.as_ref())
}

fn is_running(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.running.is_some())
}

fn is_waiting(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|st| st.waiting.is_some())
}

fn last_terminated(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.last_state.as_ref().and_then(|st| st.terminated.as_ref())
}

/// The API state of one runtime container (`convertContainerStatus`).
fn convert(oc: &ObservedContainer, old: Option<&ContainerStatus>) -> ContainerStatus {
    let container_id = format!("runc://{}", oc.id);
    let mut status = ContainerStatus {
        name: oc.name.clone(),
        restart_count: oc.attempt as i32,
        image: oc.image.clone(),
        image_id: oc.image_id.clone(),
        container_id: Some(container_id.clone()),
        ..ContainerStatus::default()
    };
    status.state = Some(match &oc.state {
        RtState::Running { started_at, .. } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*started_at)),
            }),
            ..ContainerState::default()
        },
        RtState::Created => waiting_state(None, None),
        RtState::Exited {
            exit_code,
            started_at,
            finished_at,
            oom_killed,
            ..
        } => {
            let reason = if *oom_killed {
                "OOMKilled"
            } else if *exit_code == 0 {
                "Completed"
            } else {
                "Error"
            };
            ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *exit_code,
                    reason: Some(reason.to_string()),
                    // The kubelet reports a signal as exit code 128+N and leaves `signal` unset.
                    signal: None,
                    started_at: started_at.map(Time),
                    finished_at: Some(Time(*finished_at)),
                    container_id: Some(container_id),
                    message: None,
                }),
                ..ContainerState::default()
            }
        }
        RtState::Unknown => match old {
            Some(o) if is_running(o) => {
                status.restart_count = o.restart_count + 1;
                ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 137,
                        reason: Some("ContainerStatusUnknown".to_string()),
                        message: Some(
                            "The container could not be located when the pod was terminated"
                                .to_string(),
                        ),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }
            }
            _ => waiting_state(None, None),
        },
    });
    status
}

/// `convertToAPIContainerStatuses` for one list (init or app containers), plus the probe
/// manager's `started` and `ready`. Init containers only look at the current sandbox; older
/// attempts give their last state and restart count.
#[allow(clippy::too_many_arguments)]
fn container_statuses(
    pod: &Pod,
    observed: &ObservedPod,
    probes: &ProbeResults,
    waiting: &BTreeMap<String, Waiting>,
    specs: &[Container],
    init: bool,
    has_init: bool,
    old: &[ContainerStatus],
) -> Vec<ContainerStatus> {
    let default_reason = if has_init {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let current_sandbox = observed.sandbox.as_ref().map(|s| s.id.as_str());
    let mut out = Vec::with_capacity(specs.len());
    for c in specs {
        let old_status = old.iter().find(|o| o.name == c.name);
        let all = observed.attempts(&c.name);
        let view: Vec<&ObservedContainer> = if init {
            all.iter()
                .copied()
                .filter(|oc| Some(oc.sandbox_id.as_str()) == current_sandbox)
                .collect()
        } else {
            all.clone()
        };
        let mut status = ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            state: Some(waiting_state(Some(default_reason), None)),
            ..ContainerStatus::default()
        };
        if let Some(o) = view.first() {
            status = convert(o, old_status);
            if let Some(prev) = view.get(1) {
                status.last_state = convert(prev, None).state;
            }
        } else if let Some(older) = all.first() {
            // An init container that ran in an older sandbox and will run again in this one.
            status.restart_count = older.attempt as i32;
            status.last_state = convert(older, None).state;
        } else if let Some(o) = old_status {
            if terminated(o).is_some() {
                status = o.clone();
            } else {
                status.restart_count = o.restart_count;
                status.last_state = o.last_state.clone();
                if is_running(o) && last_terminated(&status).is_none() {
                    // It ran and the runtime lost it: it stopped, we don't know how.
                    status.last_state = Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 137,
                            reason: Some("ContainerStatusUnknown".to_string()),
                            message: Some(
                                "The container could not be located when the pod was deleted.  The container used to be Running"
                                    .to_string(),
                            ),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    });
                    if !deleting {
                        status.restart_count += 1;
                    }
                }
            }
        }

        // Waiting reasons for containers that will be started again.
        let newest = view.first().copied();
        let done_init = init
            && !is_restartable(c)
            && newest.is_some_and(|n| matches!(n.state, RtState::Exited { exit_code: 0, .. }));
        if !done_init
            && should_restart(pod, c, newest)
            && let Some(w) = waiting.get(&c.name)
        {
            if terminated(&status).is_some() {
                status.last_state = status.state.clone();
            }
            status.state = Some(waiting_state(Some(&w.reason), Some(&w.message)));
        }

        // started and ready, from the probes.
        let results = newest
            .and_then(|n| probes.get(&n.id).copied())
            .unwrap_or_default();
        let running = is_running(&status);
        let started = running
            && match results.startup {
                Some(r) => r == ProbeResult::Success,
                None => c.startup_probe.is_none(),
            };
        status.started = Some(started);
        status.ready = if init && !is_restartable(c) {
            terminated(&status).is_some_and(|t| t.exit_code == 0)
        } else {
            started
                && match results.readiness {
                    Some(r) => r == ProbeResult::Success,
                    None => c.readiness_probe.is_none(),
                }
        };
        out.push(status);
    }
    out
}

/// The kubelet's `getPhase`. `terminal`: the pod is being stopped for good, so its containers
/// will not restart whatever the restart policy.
fn get_phase(pod: &Pod, info: &[ContainerStatus], terminal: bool) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    let find = |name: &str| info.iter().find(|s| s.name == name);
    let mut pending_init = 0;
    let mut failed_init = 0;
    for c in inits.iter().filter(|c| !is_restartable(c)) {
        let Some(s) = find(&c.name) else {
            pending_init += 1;
            continue;
        };
        if is_running(s) {
            pending_init += 1;
        } else if let Some(t) = terminated(s) {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if is_waiting(s) {
            match last_terminated(s) {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in inits.iter().filter(|c| is_restartable(c)) {
        let Some(s) = find(&c.name) else {
            unknown += 1;
            continue;
        };
        if is_running(s) {
            if s.started != Some(true) {
                pending_init += 1;
            }
            running += 1;
        } else if terminated(s).is_some() {
        } else if is_waiting(s) {
            if last_terminated(s).is_none() {
                pending_init += 1;
                waiting += 1;
            }
        } else {
            pending_init += 1;
            unknown += 1;
        }
    }
    for c in &spec.containers {
        let Some(s) = find(&c.name) else {
            unknown += 1;
            continue;
        };
        if is_running(s) {
            running += 1;
        } else if let Some(t) = terminated(s) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if is_waiting(s) {
            if last_terminated(s).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    let policy = restart_policy(pod);
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if (pending_init > 0 && !any_regular_started(&spec.containers, info)) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if terminal {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

/// Whether any app container is running or has terminated (`HasAnyRegularContainerStarted`).
fn any_regular_started(apps: &[Container], info: &[ContainerStatus]) -> bool {
    info.iter().any(|s| {
        apps.iter().any(|c| c.name == s.name) && (is_running(s) || terminated(s).is_some())
    })
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.map(str::to_string),
        message,
        ..PodCondition::default()
    }
}

/// Go's `%s` of a string slice: `[a b]`.
fn go_list(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}

fn containers_ready_condition(
    apps: &[Container],
    inits: &[Container],
    all: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let mut unknown = Vec::new();
    let mut unready = Vec::new();
    for c in inits
        .iter()
        .filter(|c| is_restartable(c))
        .chain(apps.iter())
    {
        match all.iter().find(|s| s.name == c.name) {
            Some(s) if !s.ready => unready.push(c.name.clone()),
            Some(_) => {}
            None => unknown.push(c.name.clone()),
        }
    }
    if (phase == "Succeeded" && unknown.is_empty()) || phase == "Failed" {
        let reason = if phase == "Failed" {
            "PodFailed"
        } else {
            "PodCompleted"
        };
        return condition("ContainersReady", false, Some(reason), None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !unready.is_empty() {
        messages.push(format!(
            "containers with unready status: {}",
            go_list(&unready)
        ));
    }
    if messages.is_empty() {
        condition("ContainersReady", true, None, None)
    } else {
        condition(
            "ContainersReady",
            false,
            Some("ContainersNotReady"),
            Some(messages.join(", ")),
        )
    }
}

fn ready_condition(
    pod: &Pod,
    others: &[PodCondition],
    all: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    let cr = containers_ready_condition(&spec.containers, &inits, all, phase);
    if cr.status != "True" {
        return PodCondition {
            type_: "Ready".to_string(),
            ..cr
        };
    }
    let mut messages = Vec::new();
    for gate in spec.readiness_gates.iter().flatten() {
        match others.iter().find(|c| c.type_ == gate.condition_type) {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate {:?} does not exist.",
                gate.condition_type
            )),
            Some(c) if c.status != "True" => messages.push(format!(
                "the status of pod readiness gate {:?} is not \"True\", but {}",
                gate.condition_type, c.status
            )),
            Some(_) => {}
        }
    }
    if messages.is_empty() {
        condition("Ready", true, None, None)
    } else {
        condition(
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some(messages.join(", ")),
        )
    }
}

fn initialized_condition(
    apps: &[Container],
    inits: &[Container],
    all: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let mut unknown = Vec::new();
    let mut incomplete = Vec::new();
    for c in inits {
        let Some(s) = all.iter().find(|s| s.name == c.name) else {
            unknown.push(c.name.clone());
            continue;
        };
        let done = if is_restartable(c) {
            s.started == Some(true)
        } else {
            s.ready
        };
        if !done {
            incomplete.push(c.name.clone());
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition("Initialized", true, Some("PodCompleted"), None);
    }
    if any_regular_started(apps, all) {
        return condition("Initialized", true, None, None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !incomplete.is_empty() {
        messages.push(format!(
            "containers with incomplete status: {}",
            go_list(&incomplete)
        ));
    }
    if messages.is_empty() {
        condition("Initialized", true, None, None)
    } else {
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(messages.join(", ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::fixtures::*;
    use crate::pod::plan::ContainerProbes;
    use serde_json::json;

    fn with_init(policy: &str) -> Pod {
        pod(json!({"restartPolicy": policy,
            "initContainers": [{"name": "install", "image": "busybox"}],
            "containers": [{"name": "nginx", "image": "nginx"}]}))
    }

    fn app(policy: &str, readiness: bool) -> Pod {
        let mut c = json!({"name": "nginx", "image": "nginx"});
        if readiness {
            c["readinessProbe"] = json!({"httpGet": {"port": 80}});
        }
        pod(json!({"restartPolicy": policy, "containers": [c]}))
    }

    fn status_of(
        p: &Pod,
        o: &ObservedPod,
        probes: &ProbeResults,
        waiting: &BTreeMap<String, Waiting>,
        now: Timestamp,
    ) -> (Pod, String) {
        let s = pod_status(p, o, probes, waiting, &Addresses::default(), now);
        let mut out = p.clone();
        out.status = Some(s);
        let column = skiff_api::printers::pod_status(&serde_json::to_value(&out).unwrap(), now);
        (out, column)
    }

    fn cond<'a>(p: &'a Pod, type_: &str) -> &'a PodCondition {
        p.status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap()
    }

    fn crash(msg: &str) -> BTreeMap<String, Waiting> {
        [(
            "nginx".to_string(),
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: msg.into(),
            },
        )]
        .into_iter()
        .collect()
    }

    #[test]
    fn phase_and_status_column() {
        let none = ProbeResults::new();
        let no_wait = BTreeMap::new();
        let no_sandbox = ObservedPod::default();
        let s = |v| in_sandbox(v);
        #[allow(clippy::type_complexity)]
        let cases: Vec<(
            &str,
            Pod,
            ObservedPod,
            BTreeMap<String, Waiting>,
            &str,
            &str,
        )> = vec![
            (
                "nothing yet",
                app("Always", false),
                no_sandbox.clone(),
                no_wait.clone(),
                "Pending",
                "ContainerCreating",
            ),
            (
                "init not started",
                with_init("Always"),
                s(vec![]),
                no_wait.clone(),
                "Pending",
                "Init:0/1",
            ),
            (
                "init running",
                with_init("Always"),
                s(vec![ctr("install", 0, "s1", running(1))]),
                no_wait.clone(),
                "Pending",
                "Init:0/1",
            ),
            (
                "init done, app not started",
                with_init("Always"),
                s(vec![ctr("install", 0, "s1", exited(0, 1, 2))]),
                no_wait.clone(),
                "Pending",
                "PodInitializing",
            ),
            (
                "init failed, Never",
                with_init("Never"),
                s(vec![ctr("install", 0, "s1", exited(1, 1, 2))]),
                no_wait.clone(),
                "Failed",
                "Init:Error",
            ),
            (
                "init failed, Always, restarting",
                with_init("Always"),
                s(vec![ctr("install", 0, "s1", exited(1, 1, 2))]),
                no_wait.clone(),
                "Pending",
                "Init:Error",
            ),
            (
                "init in back-off",
                with_init("OnFailure"),
                s(vec![ctr("install", 0, "s1", exited(1, 1, 2))]),
                [(
                    "install".to_string(),
                    Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: "m".into(),
                    },
                )]
                .into_iter()
                .collect(),
                "Pending",
                "Init:CrashLoopBackOff",
            ),
            (
                "running",
                with_init("Always"),
                s(vec![
                    ctr("install", 0, "s1", exited(0, 1, 2)),
                    ctr("nginx", 0, "s1", running(3)),
                ]),
                no_wait.clone(),
                "Running",
                "Running",
            ),
            (
                "completed, Never",
                app("Never", false),
                s(vec![ctr("nginx", 0, "s1", exited(0, 1, 2))]),
                no_wait.clone(),
                "Succeeded",
                "Completed",
            ),
            (
                "completed, OnFailure",
                app("OnFailure", false),
                s(vec![ctr("nginx", 0, "s1", exited(0, 1, 2))]),
                no_wait.clone(),
                "Succeeded",
                "Completed",
            ),
            (
                "completed, Always: restarting",
                app("Always", false),
                s(vec![ctr("nginx", 0, "s1", exited(0, 1, 2))]),
                no_wait.clone(),
                "Running",
                "Completed",
            ),
            (
                "error, Never",
                app("Never", false),
                s(vec![ctr("nginx", 0, "s1", exited(2, 1, 2))]),
                no_wait.clone(),
                "Failed",
                "Error",
            ),
            (
                "error, OnFailure: restarting",
                app("OnFailure", false),
                s(vec![ctr("nginx", 0, "s1", exited(2, 1, 2))]),
                no_wait.clone(),
                "Running",
                "Error",
            ),
            (
                "crash loop",
                app("Always", false),
                s(vec![ctr("nginx", 0, "s1", exited(2, 1, 2))]),
                crash("back-off 10s restarting failed container=nginx pod=web_default(u1)"),
                "Running",
                "CrashLoopBackOff",
            ),
            (
                "image pull error",
                app("Always", false),
                s(vec![]),
                [(
                    "nginx".to_string(),
                    Waiting {
                        reason: "ErrImagePull".into(),
                        message: "not found".into(),
                    },
                )]
                .into_iter()
                .collect(),
                "Pending",
                "ErrImagePull",
            ),
            (
                "waiting reason ignored for a finished container",
                app("Never", false),
                s(vec![ctr("nginx", 0, "s1", exited(0, 1, 2))]),
                crash("x"),
                "Succeeded",
                "Completed",
            ),
        ];
        for (name, p, o, waiting, phase, column) in cases {
            let (out, got) = status_of(&p, &o, &none, &waiting, t(100));
            assert_eq!(
                out.status.as_ref().unwrap().phase.as_deref(),
                Some(phase),
                "{name}"
            );
            assert_eq!(got, column, "{name}");
        }
    }

    #[test]
    fn container_status_fields() {
        let p = app("Always", false);
        let o = in_sandbox(vec![
            ctr("nginx", 0, "s1", exited(1, 1, 2)),
            ctr("nginx", 1, "s1", ContainerState_oom()),
        ]);
        let (out, _) = status_of(
            &p,
            &o,
            &ProbeResults::new(),
            &crash("back-off 20s restarting failed container=nginx pod=web_default(u1)"),
            t(100),
        );
        let cs = &out
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        let v = serde_json::to_value(cs).unwrap();
        assert_eq!(
            v["state"],
            json!({"waiting": {"reason": "CrashLoopBackOff",
            "message": "back-off 20s restarting failed container=nginx pod=web_default(u1)"}})
        );
        assert_eq!(v["lastState"]["terminated"]["reason"], "OOMKilled");
        assert_eq!(v["lastState"]["terminated"]["exitCode"], 137);
        assert!(
            v["lastState"]["terminated"].get("signal").is_none(),
            "the kubelet never sets signal"
        );
        assert_eq!(
            v["lastState"]["terminated"]["containerID"],
            "runc://nginx-1"
        );
        assert_eq!(v["restartCount"], 1);
        assert_eq!(v["ready"], false);
        assert_eq!(v["started"], false);
        assert_eq!(v["imageID"], "sha256:abc");
        assert_eq!(v["containerID"], "runc://nginx-1");
    }

    #[allow(non_snake_case)]
    fn ContainerState_oom() -> RtState {
        RtState::Exited {
            exit_code: 137,
            signal: Some(9),
            started_at: Some(t(3)),
            finished_at: t(4),
            oom_killed: true,
        }
    }

    #[test]
    fn running_with_previous_attempt_as_last_state() {
        let p = app("Always", false);
        let o = in_sandbox(vec![
            ctr("nginx", 0, "s1", exited(1, 1, 2)),
            ctr("nginx", 1, "s1", running(5)),
        ]);
        let (out, column) = status_of(&p, &o, &ProbeResults::new(), &BTreeMap::new(), t(100));
        let v = serde_json::to_value(
            &out.status
                .as_ref()
                .unwrap()
                .container_statuses
                .as_ref()
                .unwrap()[0],
        )
        .unwrap();
        assert_eq!(v["state"]["running"]["startedAt"], json!(t(5).to_string()));
        assert_eq!(v["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(v["restartCount"], 1);
        assert_eq!(v["ready"], true);
        assert_eq!(v["started"], true);
        assert_eq!(column, "Running");
    }

    #[test]
    fn readiness_drives_ready_conditions() {
        let p = app("Always", true);
        let o = in_sandbox(vec![ctr("nginx", 0, "s1", running(1))]);
        let cases = [
            (
                None,
                "False",
                Some("ContainersNotReady"),
                Some("containers with unready status: [nginx]"),
            ),
            (
                Some(ProbeResult::Failure),
                "False",
                Some("ContainersNotReady"),
                Some("containers with unready status: [nginx]"),
            ),
            (Some(ProbeResult::Success), "True", None, None),
        ];
        for (result, want, reason, message) in cases {
            let probes: ProbeResults = [(
                "nginx-0".to_string(),
                ContainerProbes {
                    readiness: result,
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect();
            let (out, _) = status_of(&p, &o, &probes, &BTreeMap::new(), t(100));
            for type_ in ["Ready", "ContainersReady"] {
                let c = cond(&out, type_);
                assert_eq!(c.status, want, "{type_} {result:?}");
                assert_eq!(c.reason.as_deref(), reason, "{type_} {result:?}");
                assert_eq!(c.message.as_deref(), message, "{type_} {result:?}");
            }
        }
    }

    #[test]
    fn conditions_during_init_and_order() {
        let p = with_init("Always");
        let o = in_sandbox(vec![ctr("install", 0, "s1", running(1))]);
        let (out, _) = status_of(&p, &o, &ProbeResults::new(), &BTreeMap::new(), t(100));
        let types: Vec<_> = out
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            types,
            vec![
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        let init = cond(&out, "Initialized");
        assert_eq!(
            (
                init.status.as_str(),
                init.reason.as_deref(),
                init.message.as_deref()
            ),
            (
                "False",
                Some("ContainersNotInitialized"),
                Some("containers with incomplete status: [install]")
            )
        );
        assert_eq!(cond(&out, "PodReadyToStartContainers").status, "True");
        let (out, _) = status_of(
            &p,
            &ObservedPod::default(),
            &ProbeResults::new(),
            &BTreeMap::new(),
            t(100),
        );
        assert_eq!(cond(&out, "PodReadyToStartContainers").status, "False");
        let app_status = &out
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            app_status
                .state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("PodInitializing")
        );
    }

    #[test]
    fn last_transition_time_kept_while_unchanged() {
        let p = app("Always", false);
        let starting = in_sandbox(vec![]);
        let (mut p1, _) = status_of(&p, &starting, &ProbeResults::new(), &BTreeMap::new(), t(10));
        assert_eq!(cond(&p1, "Ready").last_transition_time, Some(Time(t(10))));
        assert_eq!(p1.status.as_ref().unwrap().start_time, Some(Time(t(10))));
        // Ready flips at 20; PodScheduled keeps its time.
        let up = in_sandbox(vec![ctr("nginx", 0, "s1", running(15))]);
        p1.metadata.name = Some("web".into());
        let (p2, _) = status_of(&p1, &up, &ProbeResults::new(), &BTreeMap::new(), t(20));
        assert_eq!(cond(&p2, "Ready").last_transition_time, Some(Time(t(20))));
        assert_eq!(
            cond(&p2, "PodScheduled").last_transition_time,
            Some(Time(t(10)))
        );
        assert_eq!(p2.status.as_ref().unwrap().start_time, Some(Time(t(10))));
        // Nothing changes at 30.
        let (p3, _) = status_of(&p2, &up, &ProbeResults::new(), &BTreeMap::new(), t(30));
        assert_eq!(cond(&p3, "Ready").last_transition_time, Some(Time(t(20))));
        assert_eq!(p3.status, p2.status);
    }

    #[test]
    fn sidecar_started_gates_initialized_and_phase() {
        let p = pod(
            json!({"initContainers": [{"name": "proxy", "image": "img", "restartPolicy": "Always",
            "startupProbe": {"exec": {"command": ["true"]}}}],
            "containers": [{"name": "nginx", "image": "nginx"}]}),
        );
        let o = in_sandbox(vec![ctr("proxy", 0, "s1", running(1))]);
        let (out, column) = status_of(&p, &o, &ProbeResults::new(), &BTreeMap::new(), t(100));
        assert_eq!(
            out.status.as_ref().unwrap().phase.as_deref(),
            Some("Pending")
        );
        assert_eq!(cond(&out, "Initialized").status, "False");
        assert_eq!(column, "Init:0/1");
        let started: ProbeResults = [(
            "proxy-0".to_string(),
            ContainerProbes {
                startup: Some(ProbeResult::Success),
                ..Default::default()
            },
        )]
        .into_iter()
        .collect();
        let (out, column) = status_of(&p, &o, &started, &BTreeMap::new(), t(100));
        assert_eq!(cond(&out, "Initialized").status, "True");
        assert_eq!(column, "PodInitializing");
        // With the app running too, the sidecar counts in READY but not for the phase.
        let o = in_sandbox(vec![
            ctr("proxy", 0, "s1", running(1)),
            ctr("nginx", 0, "s1", running(2)),
        ]);
        let (out, column) = status_of(&p, &o, &started, &BTreeMap::new(), t(100));
        assert_eq!(
            out.status.as_ref().unwrap().phase.as_deref(),
            Some("Running")
        );
        assert_eq!(column, "Running");
        assert_eq!(cond(&out, "Ready").status, "True");
    }

    #[test]
    fn deletion_makes_stopped_pod_terminal_regardless_of_policy() {
        let mut p = app("Always", false);
        p.metadata.deletion_timestamp = Some(Time(t(0)));
        let o = in_sandbox(vec![ctr("nginx", 0, "s1", exited(0, 1, 2))]);
        let (out, _) = status_of(&p, &o, &ProbeResults::new(), &BTreeMap::new(), t(100));
        assert_eq!(
            out.status.as_ref().unwrap().phase.as_deref(),
            Some("Succeeded")
        );
        assert_eq!(cond(&out, "Ready").reason.as_deref(), Some("PodCompleted"));
        let o = in_sandbox(vec![ctr("nginx", 0, "s1", exited(143, 1, 2))]);
        let (out, _) = status_of(&p, &o, &ProbeResults::new(), &BTreeMap::new(), t(100));
        assert_eq!(
            out.status.as_ref().unwrap().phase.as_deref(),
            Some("Failed")
        );
        assert_eq!(
            cond(&out, "ContainersReady").reason.as_deref(),
            Some("PodFailed")
        );
    }

    #[test]
    fn terminal_phase_sticks() {
        let mut p = app("Always", false);
        p.status = Some(PodStatus {
            phase: Some("Failed".into()),
            reason: Some("Evicted".into()),
            ..Default::default()
        });
        let o = in_sandbox(vec![ctr("nginx", 1, "s1", running(5))]);
        let (out, column) = status_of(&p, &o, &ProbeResults::new(), &BTreeMap::new(), t(100));
        assert_eq!(
            out.status.as_ref().unwrap().phase.as_deref(),
            Some("Failed")
        );
        assert_eq!(
            out.status.as_ref().unwrap().reason.as_deref(),
            Some("Evicted")
        );
        assert_eq!(column, "Evicted");
    }

    #[test]
    fn new_sandbox_shows_init_pending_again() {
        let p = with_init("Always");
        let o = ObservedPod {
            sandbox: Some(sandbox("s2", 1)),
            sandbox_ready: true,
            containers: vec![
                ctr("install", 0, "s1", exited(0, 1, 2)),
                ctr("nginx", 0, "s1", exited(137, 3, 9)),
            ],
        };
        let (out, column) = status_of(&p, &o, &ProbeResults::new(), &BTreeMap::new(), t(100));
        let init = &out
            .status
            .as_ref()
            .unwrap()
            .init_container_statuses
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            init.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("PodInitializing")
        );
        assert_eq!(
            init.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            0
        );
        // The app container ran before, so the pod counts as initialized (as the kubelet has
        // it) and kubectl shows the app container's last state.
        assert_eq!(cond(&out, "Initialized").status, "True");
        assert_eq!(column, "Error");
    }

    #[test]
    fn addresses_and_lost_running_container() {
        let mut p = app("Always", false);
        p.status = Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "nginx".into(),
                restart_count: 3,
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time(t(1))),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let addrs = Addresses {
            host_ip: Some("10.0.0.1".into()),
            pod_ip: Some("10.42.0.5".into()),
        };
        let s = pod_status(
            &p,
            &in_sandbox(vec![]),
            &ProbeResults::new(),
            &BTreeMap::new(),
            &addrs,
            t(100),
        );
        assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.5"));
        assert_eq!(s.host_ips.as_ref().unwrap()[0].ip, "10.0.0.1");
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.restart_count, 4);
        assert_eq!(
            cs.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("ContainerStatusUnknown")
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }
}
