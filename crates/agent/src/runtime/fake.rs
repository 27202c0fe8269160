//! A recording fake runtime for tests: containers "run" until the test
//! makes them exit, and every call is recorded.

use super::{
    ContainerConfig, ContainerInfo, ContainerState, ExecOutput, Result, Runtime, RuntimeError,
    Sandbox, SandboxConfig, labels,
};
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// create_sandbox(pod uid)
    CreateSandbox(String),
    /// remove_sandbox(id)
    RemoveSandbox(String),
    /// create_container(container name, attempt)
    CreateContainer(String, u32),
    /// start_container(id)
    StartContainer(String),
    /// stop_container(id)
    StopContainer(String),
    /// remove_container(id)
    RemoveContainer(String),
    /// exec_sync(id, cmd)
    Exec(String, Vec<String>),
}

#[derive(Default)]
struct State {
    sandboxes: BTreeMap<String, Sandbox>,
    containers: BTreeMap<String, ContainerInfo>,
    calls: Vec<Call>,
    next: u64,
    exec_results: BTreeMap<String, i32>,
    /// Container name → the mounts of its newest create.
    mounts: BTreeMap<String, Vec<super::Mount>>,
}

/// The fake runtime.
#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

impl FakeRuntime {
    /// An empty fake.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().expect("fake lock").calls.clone()
    }

    /// The mounts the newest container named `name` was created with.
    pub fn mounts(&self, name: &str) -> Option<Vec<super::Mount>> {
        self.state
            .lock()
            .expect("fake lock")
            .mounts
            .get(name)
            .cloned()
    }

    /// Makes the newest running container named `name` exit with `code`.
    pub fn exit(&self, name: &str, code: i32, oom_killed: bool) {
        let mut s = self.state.lock().expect("fake lock");
        let newest = s
            .containers
            .values_mut()
            .filter(|c| c.labels.get(labels::CONTAINER_NAME).map(String::as_str) == Some(name))
            .max_by_key(|c| {
                c.labels
                    .get(labels::ATTEMPT)
                    .and_then(|a| a.parse::<u32>().ok())
                    .unwrap_or(0)
            });
        if let Some(c) = newest
            && let ContainerState::Running { started_at, .. } = c.state
        {
            c.state = ContainerState::Exited {
                exit_code: code,
                signal: None,
                started_at: Some(started_at),
                finished_at: Timestamp::now(),
                oom_killed,
            };
        }
    }

    /// Makes `exec_sync` in containers named `name` return `code` from now on.
    pub fn set_exec_result(&self, name: &str, code: i32) {
        self.state
            .lock()
            .expect("fake lock")
            .exec_results
            .insert(name.to_string(), code);
    }

    /// Loses a sandbox, as if the node rebooted.
    pub fn lose_sandbox(&self, id: &str) {
        self.state.lock().expect("fake lock").sandboxes.remove(id);
    }
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    async fn create_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox> {
        let mut s = self.state.lock().expect("fake lock");
        s.next += 1;
        let id = format!("sandbox-{}", s.next);
        let mut l = BTreeMap::new();
        l.insert(labels::POD_UID.to_string(), config.pod_uid.clone());
        l.insert(labels::POD_NAME.to_string(), config.pod_name.clone());
        l.insert(
            labels::POD_NAMESPACE.to_string(),
            config.pod_namespace.clone(),
        );
        let sb = Sandbox {
            id: id.clone(),
            netns: if config.host_network {
                None
            } else {
                Some(format!("/fake/{id}/net").into())
            },
            ipc: format!("/fake/{id}/ipc").into(),
            uts: format!("/fake/{id}/uts").into(),
            labels: l,
            attempt: config.attempt,
            ip: None,
        };
        s.sandboxes.insert(id, sb.clone());
        s.calls.push(Call::CreateSandbox(config.pod_uid.clone()));
        Ok(sb)
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock().expect("fake lock");
        s.sandboxes.remove(id);
        s.calls.push(Call::RemoveSandbox(id.to_string()));
        Ok(())
    }

    async fn list_sandboxes(&self) -> Result<Vec<Sandbox>> {
        Ok(self
            .state
            .lock()
            .expect("fake lock")
            .sandboxes
            .values()
            .cloned()
            .collect())
    }

    async fn create_container(&self, config: &ContainerConfig) -> Result<()> {
        let mut s = self.state.lock().expect("fake lock");
        let name = config
            .labels
            .get(labels::CONTAINER_NAME)
            .cloned()
            .unwrap_or_default();
        let attempt = config
            .labels
            .get(labels::ATTEMPT)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        s.containers.insert(
            config.id.clone(),
            ContainerInfo {
                id: config.id.clone(),
                labels: config.labels.clone(),
                state: ContainerState::Created,
            },
        );
        s.mounts.insert(name.clone(), config.mounts.clone());
        s.calls.push(Call::CreateContainer(name, attempt));
        Ok(())
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock().expect("fake lock");
        let c = s
            .containers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(id.into()))?;
        c.state = ContainerState::Running {
            pid: 1,
            started_at: Timestamp::now(),
        };
        s.calls.push(Call::StartContainer(id.to_string()));
        Ok(())
    }

    async fn stop_container(&self, id: &str, _grace: Duration) -> Result<()> {
        let mut s = self.state.lock().expect("fake lock");
        let c = s
            .containers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(id.into()))?;
        if let ContainerState::Running { started_at, .. } = c.state {
            c.state = ContainerState::Exited {
                exit_code: 137,
                signal: Some(9),
                started_at: Some(started_at),
                finished_at: Timestamp::now(),
                oom_killed: false,
            };
        }
        s.calls.push(Call::StopContainer(id.to_string()));
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock().expect("fake lock");
        s.containers.remove(id);
        s.calls.push(Call::RemoveContainer(id.to_string()));
        Ok(())
    }

    async fn container(&self, id: &str) -> Result<ContainerInfo> {
        self.state
            .lock()
            .expect("fake lock")
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(id.into()))
    }

    async fn list_containers(&self) -> Result<Vec<ContainerInfo>> {
        Ok(self
            .state
            .lock()
            .expect("fake lock")
            .containers
            .values()
            .cloned()
            .collect())
    }

    async fn exec_sync(&self, id: &str, cmd: &[String], _timeout: Duration) -> Result<ExecOutput> {
        let mut s = self.state.lock().expect("fake lock");
        let name = s
            .containers
            .get(id)
            .and_then(|c| c.labels.get(labels::CONTAINER_NAME).cloned())
            .unwrap_or_default();
        let code = s.exec_results.get(&name).copied().unwrap_or(0);
        s.calls.push(Call::Exec(id.to_string(), cmd.to_vec()));
        Ok(ExecOutput {
            exit_code: code,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }
}
