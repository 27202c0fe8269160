//! The pod worker's pure core: what to do next for one pod, and what its status is.
//!
//! # Layout
//! - [`plan`]: [`plan::compute_pod_actions`] turns the pod, what the runtime shows, the probe
//!   results and the restart back-off into an ordered list of runtime actions.
//! - [`status`]: [`status::pod_status`] derives the pod's API status (phase, conditions,
//!   container statuses) from the same inputs.
//! - [`backoff`]: the per-container restart back-off (CrashLoopBackOff).
//!
//! Nothing here does IO or reads a clock: time is passed in, so every rule is table-tested.

pub mod backoff;
pub mod plan;
pub mod status;

/// Builders shared by the tests of this module.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::plan::{ObservedContainer, ObservedPod};
    use crate::runtime::{ContainerState, Sandbox};
    use jiff::Timestamp;
    use k8s_openapi::api::core::v1::Pod;
    use std::path::PathBuf;

    /// A time `secs` after a fixed origin.
    pub fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    /// A pod named "web" in "default" with uid "u1", from a spec given as JSON.
    pub fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    /// A sandbox with this id and attempt.
    pub fn sandbox(id: &str, attempt: u32) -> Sandbox {
        Sandbox {
            id: id.to_string(),
            netns: None,
            ipc: PathBuf::from("/ipc"),
            uts: PathBuf::from("/uts"),
            labels: Default::default(),
            attempt,
            ip: None,
        }
    }

    /// A container `name` attempt `attempt` in sandbox `sb`, id "NAME-ATTEMPT".
    pub fn ctr(name: &str, attempt: u32, sb: &str, state: ContainerState) -> ObservedContainer {
        ObservedContainer {
            id: format!("{name}-{attempt}"),
            name: name.to_string(),
            sandbox_id: sb.to_string(),
            attempt,
            image: "img".to_string(),
            image_id: "sha256:abc".to_string(),
            hash: String::new(),
            state,
        }
    }

    /// Running since `at`.
    pub fn running(at: i64) -> ContainerState {
        ContainerState::Running {
            pid: 42,
            started_at: t(at),
        }
    }

    /// Exited with `code`, started at `from`, finished at `to`.
    pub fn exited(code: i32, from: i64, to: i64) -> ContainerState {
        ContainerState::Exited {
            exit_code: code,
            signal: None,
            started_at: Some(t(from)),
            finished_at: t(to),
            oom_killed: false,
        }
    }

    /// A ready sandbox "s1" with these containers.
    pub fn in_sandbox(containers: Vec<ObservedContainer>) -> ObservedPod {
        ObservedPod {
            sandbox: Some(sandbox("s1", 0)),
            sandbox_ready: true,
            containers,
        }
    }
}
