//! What to do next for one pod: the kubelet's `computePodActions`, as a pure function.
//!
//! [`compute_pod_actions`] looks at the pod (its spec, deletion and phase), what the runtime
//! shows ([`ObservedPod`]), the latest probe results and the restart back-off, and returns a
//! [`Plan`]: the runtime calls to make, in order, plus what the worker must report (containers
//! held in CrashLoopBackOff) and when to look again.
//!
//! Differences from the kubelet, on purpose:
//! - When the sandbox is recreated, every init container runs again: progress through the init
//!   containers is read only from containers of the *current* sandbox (the kubelet reads every
//!   attempt and may skip init containers that completed in an old sandbox, kubernetes#124002).
//! - The back-off check is made here, on a read-only [`Backoff`]; a start that passed it carries
//!   a [`BackoffUpdate`] the worker applies (`Backoff::next`) when it makes the start.
//! - Instead of a "wait" action the plan has [`Plan::requeue_at`].

use super::backoff::{Backoff, go_duration};
use super::status;
use crate::runtime::{ContainerState, Sandbox};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use std::collections::BTreeMap;
use std::time::Duration;

/// One container of the pod as the runtime lists it (any attempt, any sandbox of the pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedContainer {
    /// Runtime id.
    pub id: String,
    /// The container's name in the pod spec (init or app container).
    pub name: String,
    /// The sandbox it was created in.
    pub sandbox_id: String,
    /// Attempt number (0 for the first start); also the restart count.
    pub attempt: u32,
    /// The image it runs, as the runtime reports it.
    pub image: String,
    /// The image's id (digest), for `imageID`.
    pub image_id: String,
    /// [`container_hash`] of the spec it was created from; empty when unknown (never compared).
    pub hash: String,
    /// Its state.
    pub state: ContainerState,
}

/// What the runtime shows for one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedPod {
    /// The newest sandbox of the pod, if any.
    pub sandbox: Option<Sandbox>,
    /// Whether that sandbox is usable (created, network set up, not stopped).
    pub sandbox_ready: bool,
    /// Every container of the pod the runtime still knows.
    pub containers: Vec<ObservedContainer>,
}

impl ObservedPod {
    /// The newest attempt of a container name, in any sandbox.
    pub fn newest(&self, name: &str) -> Option<&ObservedContainer> {
        self.containers
            .iter()
            .filter(|c| c.name == name)
            .max_by_key(|c| c.attempt)
    }

    /// The newest attempt of a container name in the current sandbox.
    pub fn newest_in_sandbox(&self, name: &str) -> Option<&ObservedContainer> {
        let sandbox = self.sandbox.as_ref()?;
        self.containers
            .iter()
            .filter(|c| c.name == name && c.sandbox_id == sandbox.id)
            .max_by_key(|c| c.attempt)
    }

    /// Every attempt of a container name, newest first.
    pub fn attempts(&self, name: &str) -> Vec<&ObservedContainer> {
        let mut v: Vec<_> = self.containers.iter().filter(|c| c.name == name).collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.attempt));
        v
    }

    /// The newest attempt of a container name that exited, with when it finished.
    fn newest_exited(&self, name: &str) -> Option<Timestamp> {
        self.attempts(name).into_iter().find_map(|c| match c.state {
            ContainerState::Exited { finished_at, .. } => Some(finished_at),
            _ => None,
        })
    }

    fn any_active(&self) -> bool {
        self.containers.iter().any(|c| {
            matches!(
                c.state,
                ContainerState::Running { .. } | ContainerState::Unknown
            )
        })
    }
}

/// One probe's latest result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// The probe passed.
    Success,
    /// The probe failed (past its failure threshold).
    Failure,
}

/// The latest probe results of one container (None: that probe has not reported yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerProbes {
    /// Liveness.
    pub liveness: Option<ProbeResult>,
    /// Readiness.
    pub readiness: Option<ProbeResult>,
    /// Startup.
    pub startup: Option<ProbeResult>,
}

/// Probe results by container runtime id.
pub type ProbeResults = BTreeMap<String, ContainerProbes>;

/// A waiting reason and message for a container status (CrashLoopBackOff, ErrImagePull, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The reason, e.g. "CrashLoopBackOff".
    pub reason: String,
    /// The message.
    pub message: String,
}

/// Why a container is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// Its liveness probe failed.
    LivenessProbe,
    /// Its startup probe failed.
    StartupProbe,
    /// The spec it runs changed (e.g. a new image).
    SpecChanged,
    /// The runtime lost track of it; it is killed before being started again.
    Unknown,
}

/// The back-off step to record when a start is made (`Backoff::next(key, event_time, now)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackoffUpdate {
    /// The back-off key.
    pub key: String,
    /// When the previous attempt finished.
    pub event_time: Timestamp,
}

/// One runtime step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop every running container of the pod (app containers and sidecars, then the rest)
    /// with this grace period, and stop the sandbox (its network); exited containers stay for
    /// their logs and status.
    KillPod {
        /// Grace period for each container.
        grace: Duration,
        /// Why.
        reason: String,
    },
    /// Create a new sandbox with this attempt number.
    CreateSandbox {
        /// The sandbox attempt.
        attempt: u32,
    },
    /// Stop one container.
    KillContainer {
        /// Runtime id.
        id: String,
        /// Container name.
        name: String,
        /// Why.
        reason: KillReason,
        /// The message for the Killing event.
        message: String,
        /// Grace period.
        grace: Duration,
    },
    /// Create and start `spec.initContainers[index]`.
    StartInitContainer {
        /// Index in `spec.initContainers`.
        index: usize,
        /// Attempt number to label it with.
        attempt: u32,
        /// Back-off step to record when starting it.
        backoff: Option<BackoffUpdate>,
    },
    /// Create and start `spec.containers[index]`.
    StartContainer {
        /// Index in `spec.containers`.
        index: usize,
        /// Attempt number to label it with.
        attempt: u32,
        /// Back-off step to record when starting it.
        backoff: Option<BackoffUpdate>,
    },
    /// Remove an exited container no longer needed (older than the newest exited attempt).
    RemoveContainer {
        /// Runtime id.
        id: String,
    },
}

/// The outcome of planning one sync of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Runtime steps, in order.
    pub actions: Vec<Action>,
    /// Containers (by name) that were not started because they are in back-off, with the
    /// CrashLoopBackOff waiting state the status must show.
    pub waiting: BTreeMap<String, Waiting>,
    /// When to sync again at the latest (the earliest back-off end).
    pub requeue_at: Option<Timestamp>,
    /// The pod is terminal or being deleted, and nothing of it runs any more.
    pub finished: bool,
}

const MINIMUM_GRACE: Duration = Duration::from_secs(2);
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// `spec.restartPolicy`, defaulting to Always.
pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub fn is_restartable(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// A stable hash of a container spec, to detect changes (labelled on the container).
pub fn container_hash(c: &Container) -> String {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(c).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

/// The CrashLoopBackOff message, as the kubelet writes it.
pub fn backoff_message(pod: &Pod, container: &str, backoff: Duration) -> String {
    let meta = &pod.metadata;
    format!(
        "back-off {} restarting failed container={} pod={}_{}({})",
        go_duration(backoff),
        container,
        meta.name.as_deref().unwrap_or_default(),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default(),
    )
}

/// The back-off key of a container of a pod.
pub fn backoff_key(pod: &Pod, c: &Container) -> String {
    let meta = &pod.metadata;
    Backoff::key(
        meta.name.as_deref().unwrap_or_default(),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default(),
        &c.name,
        c.image.as_deref().unwrap_or_default(),
    )
}

/// Whether a container must be (re)started, given its newest attempt: the kubelet's
/// `ShouldContainerBeRestarted`. Sidecars restart whatever the pod's restart policy.
pub fn should_restart(pod: &Pod, c: &Container, newest: Option<&ObservedContainer>) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(newest) = newest else {
        return true;
    };
    match &newest.state {
        ContainerState::Running { .. } => false,
        ContainerState::Unknown | ContainerState::Created => true,
        ContainerState::Exited { exit_code, .. } => {
            if is_restartable(c) {
                return true;
            }
            match restart_policy(pod) {
                "Never" => false,
                "OnFailure" => *exit_code != 0,
                _ => true,
            }
        }
    }
}

/// The grace period for stopping the whole pod.
pub fn pod_grace(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    Duration::from_secs(secs.max(0) as u64).max(MINIMUM_GRACE)
}

/// The grace period for killing one container for `reason` (a probe's own
/// `terminationGracePeriodSeconds` wins for probe failures).
fn container_grace(pod: &Pod, c: &Container, reason: KillReason) -> Duration {
    if pod.metadata.deletion_grace_period_seconds.is_none() {
        let probe: Option<&Probe> = match reason {
            KillReason::LivenessProbe => c.liveness_probe.as_ref(),
            KillReason::StartupProbe => c.startup_probe.as_ref(),
            _ => None,
        };
        if let Some(secs) = probe.and_then(|p| p.termination_grace_period_seconds) {
            return Duration::from_secs(secs.max(0) as u64).max(MINIMUM_GRACE);
        }
    }
    pod_grace(pod)
}

fn next_attempt(observed: &ObservedPod, name: &str) -> u32 {
    observed.newest(name).map_or(0, |c| c.attempt + 1)
}

/// Which container list a start is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Init,
    App,
}

/// Builds the plan, holding the inputs.
struct Planner<'a> {
    pod: &'a Pod,
    observed: &'a ObservedPod,
    backoff: &'a Backoff,
    now: Timestamp,
    plan: Plan,
}

impl Planner<'_> {
    /// Adds a start unless the container is in back-off; returns whether it was added.
    fn start(&mut self, kind: Kind, index: usize, c: &Container) -> bool {
        let mut update = None;
        if let Some(finished) = self.observed.newest_exited(&c.name) {
            let key = backoff_key(self.pod, c);
            if let Some(until) = self.backoff.in_backoff(&key, finished, self.now) {
                let message = backoff_message(self.pod, &c.name, self.backoff.current(&key));
                self.plan.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "CrashLoopBackOff".to_string(),
                        message,
                    },
                );
                self.plan.requeue_at = Some(self.plan.requeue_at.map_or(until, |t| t.min(until)));
                return false;
            }
            update = Some(BackoffUpdate {
                key,
                event_time: finished,
            });
        }
        let attempt = next_attempt(self.observed, &c.name);
        self.plan.actions.push(match kind {
            Kind::Init => Action::StartInitContainer {
                index,
                attempt,
                backoff: update,
            },
            Kind::App => Action::StartContainer {
                index,
                attempt,
                backoff: update,
            },
        });
        true
    }

    fn kill(&mut self, oc: &ObservedContainer, c: &Container, reason: KillReason, message: String) {
        self.plan.actions.push(Action::KillContainer {
            id: oc.id.clone(),
            name: oc.name.clone(),
            reason,
            message,
            grace: container_grace(self.pod, c, reason),
        });
    }

    fn kill_pod(&mut self, reason: &str) {
        self.plan.actions.push(Action::KillPod {
            grace: pod_grace(self.pod),
            reason: reason.to_string(),
        });
    }
}

/// The result of looking at the init containers.
struct InitActions {
    /// Init containers to start, in order.
    to_start: Vec<usize>,
    /// Containers to kill first: (observed, spec index, reason, message).
    to_kill: Vec<(ObservedContainer, usize, KillReason, String)>,
    /// An init container failed and the pod may not restart it.
    kill_pod: bool,
    /// All init containers are done (or sidecars started): app containers may run.
    initialized: bool,
}

/// The kubelet's `computeInitContainerActions`, over containers of the current sandbox only.
fn init_actions(pod: &Pod, observed: &ObservedPod, probes: &ProbeResults) -> InitActions {
    let spec = pod.spec.as_ref();
    let inits: &[Container] = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[]);
    let apps: &[Container] = spec.map(|s| s.containers.as_slice()).unwrap_or(&[]);
    let mut out = InitActions {
        to_start: Vec::new(),
        to_kill: Vec::new(),
        kill_pod: false,
        initialized: inits.is_empty(),
    };
    if inits.is_empty() {
        return out;
    }
    // An app container created or running in this sandbox means initialization finished.
    let mut initialized = apps.iter().any(|c| {
        observed.newest_in_sandbox(&c.name).is_some_and(|s| {
            matches!(
                s.state,
                ContainerState::Created | ContainerState::Running { .. }
            )
        })
    });
    let mut previously = initialized;
    let restart_on_failure = restart_policy(pod) != "Never";
    let probe = |id: &str| probes.get(id).copied().unwrap_or_default();

    for i in (0..inits.len()).rev() {
        let c = &inits[i];
        let sidecar = is_restartable(c);
        let Some(status) = observed.newest_in_sandbox(&c.name) else {
            if previously && sidecar {
                out.to_start.push(i);
            }
            continue;
        };
        if previously && !sidecar {
            continue;
        }
        match &status.state {
            ContainerState::Created => out.to_start.push(i),
            ContainerState::Running { .. } => {
                if sidecar {
                    'sidecar: {
                        let p = probe(&status.id);
                        if c.startup_probe.is_some() {
                            match p.startup {
                                None => break 'sidecar,
                                Some(ProbeResult::Failure) => {
                                    out.to_kill.push((
                                        status.clone(),
                                        i,
                                        KillReason::StartupProbe,
                                        format!("Init container {} failed startup probe", c.name),
                                    ));
                                    out.to_start.push(i);
                                    break 'sidecar;
                                }
                                Some(ProbeResult::Success) => {}
                            }
                        }
                        if i == inits.len() - 1 {
                            initialized = true;
                        } else if !previously {
                            out.to_start.push(i + 1);
                        }
                        if !status.hash.is_empty() && status.hash != container_hash(c) {
                            out.to_kill.push((
                                status.clone(),
                                i,
                                KillReason::SpecChanged,
                                format!("Init container {} definition changed", c.name),
                            ));
                            out.to_start.push(i);
                            break 'sidecar;
                        }
                        if c.liveness_probe.is_some() && p.liveness == Some(ProbeResult::Failure) {
                            out.to_kill.push((
                                status.clone(),
                                i,
                                KillReason::LivenessProbe,
                                format!("Init container {} failed liveness probe", c.name),
                            ));
                            out.to_start.push(i);
                        }
                    }
                }
            }
            ContainerState::Exited { exit_code, .. } => {
                if sidecar {
                    out.to_start.push(i);
                } else if *exit_code != 0 {
                    if !restart_on_failure {
                        out.kill_pod = true;
                        out.to_start.clear();
                        return out;
                    }
                    out.to_start.push(i);
                } else if i == inits.len() - 1 {
                    initialized = true;
                } else {
                    out.to_start.push(i + 1);
                }
            }
            ContainerState::Unknown => {
                if !sidecar && !restart_on_failure {
                    out.kill_pod = true;
                    out.to_start.clear();
                    return out;
                }
                out.to_kill.push((
                    status.clone(),
                    i,
                    KillReason::Unknown,
                    "Init container is in \"unknown\" state, try killing it before restart"
                        .to_string(),
                ));
                out.to_start.push(i);
            }
        }
        previously = true;
    }
    if !previously {
        out.to_start.push(0);
    }
    out.to_start.reverse();
    out.to_kill.reverse();
    out.initialized = initialized;
    out
}

/// Exited containers that are not needed any more: per name, every exited attempt but the
/// newest exited one; every exited container whose name is not in the spec.
fn garbage(pod: &Pod, observed: &ObservedPod) -> Vec<Action> {
    let spec = pod.spec.as_ref();
    let known = |name: &str| {
        spec.is_some_and(|s| {
            s.containers.iter().any(|c| c.name == name)
                || s.init_containers.iter().flatten().any(|c| c.name == name)
        })
    };
    let mut names: Vec<&str> = observed
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let mut kept_dead = !known(name);
        let mut attempts = observed.attempts(name);
        attempts.reverse(); // oldest first, so removals come out oldest first
        let dead: Vec<_> = attempts
            .into_iter()
            .filter(|c| {
                matches!(
                    c.state,
                    ContainerState::Exited { .. } | ContainerState::Created
                )
            })
            .collect();
        for c in dead.into_iter().rev() {
            if !kept_dead {
                kept_dead = true;
                continue;
            }
            out.push(c);
        }
    }
    out.sort_by(|a, b| (&a.name, a.attempt).cmp(&(&b.name, b.attempt)));
    out.into_iter()
        .map(|c| Action::RemoveContainer { id: c.id.clone() })
        .collect()
}

/// Plans the next sync of a pod: the kubelet's `computePodActions` plus its handling of
/// terminal and deleted pods. Pure: `now` is the only time it knows.
pub fn compute_pod_actions(
    pod: &Pod,
    observed: &ObservedPod,
    probes: &ProbeResults,
    backoff: &Backoff,
    now: Timestamp,
) -> Plan {
    let mut p = Planner {
        pod,
        observed,
        backoff,
        now,
        plan: Plan::default(),
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    let apps = &spec.containers;
    let stop_needed = observed.any_active() || observed.sandbox_ready;

    // Deleted or terminal: stop everything, start nothing.
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let phase = status::pod_phase(pod, observed, probes);
    if deleting || phase == "Succeeded" || phase == "Failed" {
        if stop_needed {
            p.kill_pod(if deleting {
                "pod is being deleted"
            } else {
                "pod has terminated"
            });
        } else {
            p.plan.finished = true;
        }
        p.plan.actions.extend(garbage(pod, observed));
        return p.plan;
    }

    // No usable sandbox: kill what is left, make a new one, start from the first init container.
    if !observed.sandbox_ready || observed.sandbox.is_none() {
        let attempt = observed.sandbox.as_ref().map_or(0, |s| s.attempt + 1);
        let never = restart_policy(pod) == "Never";
        if never && observed.sandbox.is_some() && !observed.containers.is_empty() {
            if stop_needed {
                p.kill_pod("sandbox is gone and the pod never restarts");
            }
            return p.plan;
        }
        let to_start: Vec<usize> = apps
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                !(restart_policy(pod) == "OnFailure"
                    && observed.newest(&c.name).is_some_and(|s| {
                        matches!(s.state, ContainerState::Exited { exit_code: 0, .. })
                    }))
            })
            .map(|(i, _)| i)
            .collect();
        if to_start.is_empty() {
            return p.plan;
        }
        if observed.sandbox.is_some() || observed.any_active() {
            p.kill_pod("pod sandbox changed, it will be killed and re-created");
        }
        p.plan.actions.push(Action::CreateSandbox { attempt });
        if let Some(first) = inits.first() {
            p.start(Kind::Init, 0, first);
        } else {
            for i in to_start {
                p.start(Kind::App, i, &apps[i]);
            }
        }
        return p.plan;
    }

    // Init containers.
    let init = init_actions(pod, observed, probes);
    if init.kill_pod {
        p.kill_pod("init container failed and the pod never restarts");
        return p.plan;
    }
    for (oc, i, reason, message) in &init.to_kill {
        p.kill(oc, &inits[*i], *reason, message.clone());
    }
    let mut init_to_start = Vec::new();
    for &i in &init.to_start {
        init_to_start.push(i);
    }
    if !init.initialized {
        for i in init_to_start {
            let started = p.start(Kind::Init, i, &inits[i]);
            if !started && !is_restartable(&inits[i]) {
                break;
            }
        }
        p.plan.actions.extend(garbage(pod, observed));
        return p.plan;
    }

    // App containers.
    let restart_on_failure = restart_policy(pod) != "Never";
    let mut app_to_start = Vec::new();
    let mut kills = Vec::new();
    let mut keep = 0;
    for (i, c) in apps.iter().enumerate() {
        let newest = observed.newest(&c.name);
        let running = newest.filter(|s| matches!(s.state, ContainerState::Running { .. }));
        let Some(status) = running else {
            if should_restart(pod, c, newest) {
                app_to_start.push(i);
                if let Some(s) = newest.filter(|s| s.state == ContainerState::Unknown) {
                    kills.push((
                        s.clone(),
                        i,
                        KillReason::Unknown,
                        "Container is in \"unknown\" state, try killing it before restart"
                            .to_string(),
                    ));
                }
            }
            continue;
        };
        let pr = probes.get(&status.id).copied().unwrap_or_default();
        let (reason, message, restart) =
            if !status.hash.is_empty() && status.hash != container_hash(c) {
                (
                    KillReason::SpecChanged,
                    format!("Container {} definition changed", c.name),
                    true,
                )
            } else if pr.liveness == Some(ProbeResult::Failure) {
                (
                    KillReason::LivenessProbe,
                    format!("Container {} failed liveness probe", c.name),
                    restart_on_failure,
                )
            } else if pr.startup == Some(ProbeResult::Failure) {
                (
                    KillReason::StartupProbe,
                    format!("Container {} failed startup probe", c.name),
                    restart_on_failure,
                )
            } else {
                keep += 1;
                continue;
            };
        let message = if restart {
            app_to_start.push(i);
            format!("{message}, will be restarted")
        } else {
            message
        };
        kills.push((status.clone(), i, reason, message));
    }
    if keep == 0 && app_to_start.is_empty() {
        // Nothing runs or will run: don't let sidecars keep the pod alive.
        p.kill_pod("all containers have exited");
        p.plan.actions.extend(garbage(pod, observed));
        return p.plan;
    }
    for (oc, i, reason, message) in kills {
        p.kill(&oc, &apps[i], reason, message);
    }
    for i in init_to_start {
        p.start(Kind::Init, i, &inits[i]);
    }
    for i in app_to_start {
        p.start(Kind::App, i, &apps[i]);
    }
    p.plan.actions.extend(garbage(pod, observed));
    p.plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::fixtures::*;
    use serde_json::json;

    fn describe(a: &Action) -> String {
        match a {
            Action::KillPod { grace, .. } => format!("kill-pod {}s", grace.as_secs()),
            Action::CreateSandbox { attempt } => format!("create-sandbox {attempt}"),
            Action::KillContainer { id, reason, .. } => format!("kill {id} {reason:?}"),
            Action::StartInitContainer { index, attempt, .. } => {
                format!("start-init {index} #{attempt}")
            }
            Action::StartContainer { index, attempt, .. } => format!("start {index} #{attempt}"),
            Action::RemoveContainer { id } => format!("remove {id}"),
        }
    }

    fn app(policy: &str) -> Pod {
        pod(json!({"restartPolicy": policy, "containers": [{"name": "app", "image": "img"}]}))
    }

    fn with_init(policy: &str) -> Pod {
        pod(json!({"restartPolicy": policy,
            "initContainers": [{"name": "install", "image": "img"}, {"name": "migrate", "image": "img"}],
            "containers": [{"name": "app", "image": "img"}, {"name": "side", "image": "img"}]}))
    }

    fn sidecar(startup_probe: bool) -> Pod {
        let mut proxy = json!({"name": "proxy", "image": "img", "restartPolicy": "Always"});
        if startup_probe {
            proxy["startupProbe"] = json!({"exec": {"command": ["true"]}});
        }
        pod(
            json!({"initContainers": [proxy, {"name": "install", "image": "img"}],
            "containers": [{"name": "app", "image": "img"}]}),
        )
    }

    fn probes(id: &str, p: ContainerProbes) -> ProbeResults {
        [(id.to_string(), p)].into_iter().collect()
    }

    fn deleted(mut p: Pod, grace: i64) -> Pod {
        p.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(0)));
        p.metadata.deletion_grace_period_seconds = Some(grace);
        p
    }

    #[test]
    fn plans() {
        let none = ProbeResults::new();
        let liveness_failed = ContainerProbes {
            liveness: Some(ProbeResult::Failure),
            ..Default::default()
        };
        let startup_failed = ContainerProbes {
            startup: Some(ProbeResult::Failure),
            ..Default::default()
        };
        let startup_ok = ContainerProbes {
            startup: Some(ProbeResult::Success),
            ..Default::default()
        };
        let lost_sandbox = |containers| ObservedPod {
            sandbox: Some(sandbox("s1", 0)),
            sandbox_ready: false,
            containers,
        };
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Pod, ObservedPod, ProbeResults, Vec<&str>)> = vec![
            (
                "new pod: sandbox then app",
                app("Always"),
                ObservedPod::default(),
                none.clone(),
                vec!["create-sandbox 0", "start 0 #0"],
            ),
            (
                "new pod with init: sandbox then first init only",
                with_init("Always"),
                ObservedPod::default(),
                none.clone(),
                vec!["create-sandbox 0", "start-init 0 #0"],
            ),
            (
                "sandbox but nothing started",
                with_init("Always"),
                in_sandbox(vec![]),
                none.clone(),
                vec!["start-init 0 #0"],
            ),
            (
                "first init running: wait",
                with_init("Always"),
                in_sandbox(vec![ctr("install", 0, "s1", running(1))]),
                none.clone(),
                vec![],
            ),
            (
                "first init done: second",
                with_init("Always"),
                in_sandbox(vec![ctr("install", 0, "s1", exited(0, 1, 2))]),
                none.clone(),
                vec!["start-init 1 #0"],
            ),
            (
                "all init done: all app containers together",
                with_init("Always"),
                in_sandbox(vec![
                    ctr("install", 0, "s1", exited(0, 1, 2)),
                    ctr("migrate", 0, "s1", exited(0, 2, 3)),
                ]),
                none.clone(),
                vec!["start 0 #0", "start 1 #0"],
            ),
            (
                "init failed, Always: restart it (first restart immediate)",
                with_init("Always"),
                in_sandbox(vec![ctr("install", 0, "s1", exited(1, 1, 2))]),
                none.clone(),
                vec!["start-init 0 #1"],
            ),
            (
                "init failed, OnFailure: restart it",
                with_init("OnFailure"),
                in_sandbox(vec![ctr("install", 0, "s1", exited(1, 1, 2))]),
                none.clone(),
                vec!["start-init 0 #1"],
            ),
            (
                "init failed, Never: pod failed, stop it",
                with_init("Never"),
                in_sandbox(vec![ctr("install", 0, "s1", exited(1, 1, 2))]),
                none.clone(),
                vec!["kill-pod 30s"],
            ),
            (
                "running app: nothing",
                app("Always"),
                in_sandbox(vec![ctr("app", 0, "s1", running(1))]),
                none.clone(),
                vec![],
            ),
            (
                "app exited 0, Always: restart",
                app("Always"),
                in_sandbox(vec![ctr("app", 0, "s1", exited(0, 1, 2))]),
                none.clone(),
                vec!["start 0 #1"],
            ),
            (
                "app exited 0, OnFailure: succeeded, stop sandbox",
                app("OnFailure"),
                in_sandbox(vec![ctr("app", 0, "s1", exited(0, 1, 2))]),
                none.clone(),
                vec!["kill-pod 30s"],
            ),
            (
                "app exited 1, OnFailure: restart",
                app("OnFailure"),
                in_sandbox(vec![ctr("app", 0, "s1", exited(1, 1, 2))]),
                none.clone(),
                vec!["start 0 #1"],
            ),
            (
                "app exited 1, Never: failed, stop sandbox",
                app("Never"),
                in_sandbox(vec![ctr("app", 0, "s1", exited(1, 1, 2))]),
                none.clone(),
                vec!["kill-pod 30s"],
            ),
            (
                "liveness failed: kill and restart",
                app("Always"),
                in_sandbox(vec![ctr("app", 0, "s1", running(1))]),
                probes("app-0", liveness_failed),
                vec!["kill app-0 LivenessProbe", "start 0 #1"],
            ),
            (
                "liveness failed, Never: kill, no restart, pod stops",
                app("Never"),
                in_sandbox(vec![ctr("app", 0, "s1", running(1))]),
                probes("app-0", liveness_failed),
                vec!["kill-pod 30s"],
            ),
            (
                "startup failed: kill and restart",
                app("OnFailure"),
                in_sandbox(vec![ctr("app", 0, "s1", running(1))]),
                probes("app-0", startup_failed),
                vec!["kill app-0 StartupProbe", "start 0 #1"],
            ),
            (
                "sidecar first, alone",
                sidecar(false),
                in_sandbox(vec![]),
                none.clone(),
                vec!["start-init 0 #0"],
            ),
            (
                "sidecar running without startup probe: next init",
                sidecar(false),
                in_sandbox(vec![ctr("proxy", 0, "s1", running(1))]),
                none.clone(),
                vec!["start-init 1 #0"],
            ),
            (
                "sidecar startup probe not reported: wait",
                sidecar(true),
                in_sandbox(vec![ctr("proxy", 0, "s1", running(1))]),
                none.clone(),
                vec![],
            ),
            (
                "sidecar startup probe passed: next init",
                sidecar(true),
                in_sandbox(vec![ctr("proxy", 0, "s1", running(1))]),
                probes("proxy-0", startup_ok),
                vec!["start-init 1 #0"],
            ),
            (
                "sidecar startup probe failed: restart it",
                sidecar(true),
                in_sandbox(vec![ctr("proxy", 0, "s1", running(1))]),
                probes("proxy-0", startup_failed),
                vec!["kill proxy-0 StartupProbe", "start-init 0 #1"],
            ),
            (
                "sidecar and init done: app",
                sidecar(false),
                in_sandbox(vec![
                    ctr("proxy", 0, "s1", running(1)),
                    ctr("install", 0, "s1", exited(0, 2, 3)),
                ]),
                none.clone(),
                vec!["start 0 #0"],
            ),
            (
                "sidecar crashed after init: restart it, app keeps running",
                sidecar(false),
                in_sandbox(vec![
                    ctr("proxy", 0, "s1", exited(1, 1, 9)),
                    ctr("install", 0, "s1", exited(0, 2, 3)),
                    ctr("app", 0, "s1", running(4)),
                ]),
                none.clone(),
                vec!["start-init 0 #1"],
            ),
            (
                "sandbox lost: kill, new sandbox, init from the start",
                with_init("Always"),
                lost_sandbox(vec![
                    ctr("install", 0, "s1", exited(0, 1, 2)),
                    ctr("migrate", 0, "s1", exited(0, 2, 3)),
                    ctr("app", 0, "s1", exited(137, 3, 9)),
                    ctr("side", 0, "s1", exited(137, 3, 9)),
                ]),
                none.clone(),
                vec!["kill-pod 30s", "create-sandbox 1", "start-init 0 #1"],
            ),
            (
                "sandbox lost, Never: no new sandbox",
                app("Never"),
                lost_sandbox(vec![ctr("app", 0, "s1", running(1))]),
                none.clone(),
                vec!["kill-pod 30s"],
            ),
            (
                "deleting: kill with the deletion grace",
                deleted(app("Always"), 5),
                in_sandbox(vec![ctr("app", 0, "s1", running(1))]),
                none.clone(),
                vec!["kill-pod 5s"],
            ),
            (
                "deleting, grace 0: minimum 2 s",
                deleted(app("Always"), 0),
                in_sandbox(vec![ctr("app", 0, "s1", running(1))]),
                none.clone(),
                vec!["kill-pod 2s"],
            ),
            (
                "old attempts removed, newest exited kept",
                app("Always"),
                in_sandbox(vec![
                    ctr("app", 0, "s1", exited(1, 1, 2)),
                    ctr("app", 1, "s1", exited(1, 3, 4)),
                    ctr("app", 2, "s1", running(5)),
                ]),
                none.clone(),
                vec!["remove app-0"],
            ),
        ];
        for (name, pod, observed, probes, want) in cases {
            let plan = compute_pod_actions(&pod, &observed, &probes, &Backoff::default(), t(100));
            let got: Vec<String> = plan.actions.iter().map(describe).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn init_rerun_in_new_sandbox_ignores_old_sandbox_progress() {
        // New sandbox s2 ready; init containers completed only in s1: run install again.
        let p = with_init("Always");
        let observed = ObservedPod {
            sandbox: Some(sandbox("s2", 1)),
            sandbox_ready: true,
            containers: vec![
                ctr("install", 0, "s1", exited(0, 1, 2)),
                ctr("migrate", 0, "s1", exited(0, 2, 3)),
            ],
        };
        let plan = compute_pod_actions(
            &p,
            &observed,
            &ProbeResults::new(),
            &Backoff::default(),
            t(1000),
        );
        let got: Vec<String> = plan.actions.iter().map(describe).collect();
        assert_eq!(got, vec!["start-init 0 #1"]);
    }

    #[test]
    fn terminal_pod_gets_no_restarts() {
        // The API already says Succeeded: even with restartPolicy Always, nothing starts.
        let mut p = app("Always");
        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        let stopped = in_sandbox(vec![ctr("app", 0, "s1", exited(0, 1, 2))]);
        let plan = compute_pod_actions(
            &p,
            &stopped,
            &ProbeResults::new(),
            &Backoff::default(),
            t(50),
        );
        assert_eq!(
            plan.actions.iter().map(describe).collect::<Vec<_>>(),
            vec!["kill-pod 30s"]
        );
        assert!(!plan.finished);
        let mut done = stopped.clone();
        done.sandbox_ready = false;
        let plan = compute_pod_actions(&p, &done, &ProbeResults::new(), &Backoff::default(), t(50));
        assert!(plan.actions.is_empty());
        assert!(plan.finished);
    }

    #[test]
    fn crash_loop_back_off_holds_the_start() {
        let p = app("Always");
        let mut backoff = Backoff::default();
        let key = backoff_key(&p, &p.spec.as_ref().unwrap().containers[0]);
        // First crash at 10: restart now, and the plan tells the worker to record it.
        let o = in_sandbox(vec![ctr("app", 0, "s1", exited(1, 5, 10))]);
        let plan = compute_pod_actions(&p, &o, &ProbeResults::new(), &backoff, t(10));
        assert_eq!(
            plan.actions,
            vec![Action::StartContainer {
                index: 0,
                attempt: 1,
                backoff: Some(BackoffUpdate {
                    key: key.clone(),
                    event_time: t(10)
                }),
            }]
        );
        backoff.next(&key, t(10), t(10));
        // Second crash at 12: in back-off for 10 s.
        let o = in_sandbox(vec![
            ctr("app", 0, "s1", exited(1, 5, 10)),
            ctr("app", 1, "s1", exited(1, 11, 12)),
        ]);
        let plan = compute_pod_actions(&p, &o, &ProbeResults::new(), &backoff, t(15));
        assert_eq!(
            plan.actions.iter().map(describe).collect::<Vec<_>>(),
            vec!["remove app-0"]
        );
        assert_eq!(plan.requeue_at, Some(t(22)));
        assert_eq!(
            plan.waiting["app"],
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: "back-off 10s restarting failed container=app pod=web_default(u1)".into(),
            }
        );
        // At 22 it starts, as attempt 2.
        let plan = compute_pod_actions(&p, &o, &ProbeResults::new(), &backoff, t(22));
        assert_eq!(
            plan.actions.iter().map(describe).collect::<Vec<_>>(),
            vec!["start 0 #2", "remove app-0"]
        );
        assert!(plan.waiting.is_empty());
    }

    #[test]
    fn init_container_in_back_off_blocks_later_ones() {
        let p = with_init("OnFailure");
        let mut backoff = Backoff::default();
        let key = backoff_key(
            &p,
            &p.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0],
        );
        backoff.next(&key, t(0), t(0));
        let o = in_sandbox(vec![ctr("install", 1, "s1", exited(1, 1, 2))]);
        let plan = compute_pod_actions(&p, &o, &ProbeResults::new(), &backoff, t(5));
        assert!(plan.actions.is_empty());
        assert_eq!(plan.waiting["install"].reason, "CrashLoopBackOff");
        assert_eq!(plan.requeue_at, Some(t(12)));
    }

    #[test]
    fn spec_change_restarts_whatever_the_policy() {
        let p = app("Never");
        let mut c = ctr("app", 0, "s1", running(1));
        c.hash = "stale".into();
        let plan = compute_pod_actions(
            &p,
            &in_sandbox(vec![c]),
            &ProbeResults::new(),
            &Backoff::default(),
            t(5),
        );
        let msgs: Vec<_> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::KillContainer { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            msgs,
            vec!["Container app definition changed, will be restarted"]
        );
        assert_eq!(
            plan.actions.iter().map(describe).collect::<Vec<_>>(),
            vec!["kill app-0 SpecChanged", "start 0 #1"]
        );
        // The current hash is kept.
        let mut c = ctr("app", 0, "s1", running(1));
        c.hash = container_hash(&p.spec.as_ref().unwrap().containers[0]);
        let plan = compute_pod_actions(
            &p,
            &in_sandbox(vec![c]),
            &ProbeResults::new(),
            &Backoff::default(),
            t(5),
        );
        assert!(plan.actions.is_empty());
    }

    #[test]
    fn liveness_kill_uses_probe_grace_and_says_restart() {
        let p = pod(
            json!({"terminationGracePeriodSeconds": 60, "containers": [{"name": "app", "image": "img",
            "livenessProbe": {"exec": {"command": ["x"]}, "terminationGracePeriodSeconds": 7}}]}),
        );
        let pr = probes(
            "app-0",
            ContainerProbes {
                liveness: Some(ProbeResult::Failure),
                ..Default::default()
            },
        );
        let plan = compute_pod_actions(
            &p,
            &in_sandbox(vec![ctr("app", 0, "s1", running(1))]),
            &pr,
            &Backoff::default(),
            t(5),
        );
        assert_eq!(
            plan.actions[0],
            Action::KillContainer {
                id: "app-0".into(),
                name: "app".into(),
                reason: KillReason::LivenessProbe,
                message: "Container app failed liveness probe, will be restarted".into(),
                grace: Duration::from_secs(7),
            }
        );
    }

    #[test]
    fn sidecar_does_not_keep_a_finished_job_alive() {
        let p = pod(json!({"restartPolicy": "OnFailure",
            "initContainers": [{"name": "proxy", "image": "img", "restartPolicy": "Always"}],
            "containers": [{"name": "job", "image": "img"}]}));
        let o = in_sandbox(vec![
            ctr("proxy", 0, "s1", running(1)),
            ctr("job", 0, "s1", exited(0, 2, 3)),
        ]);
        let plan = compute_pod_actions(&p, &o, &ProbeResults::new(), &Backoff::default(), t(5));
        assert_eq!(
            plan.actions.iter().map(describe).collect::<Vec<_>>(),
            vec!["kill-pod 30s"]
        );
    }
}
