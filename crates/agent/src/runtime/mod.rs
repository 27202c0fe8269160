//! The container runtime boundary: pod sandboxes and containers.
//!
//! [`Runtime`] is the only way the agent touches containers. The real one is
//! [`runc::RuncRuntime`] (runc under a small subreaper shim per container);
//! [`fake::FakeRuntime`] records calls and is driven by tests.

use jiff::Timestamp;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub mod fake;
pub mod runc;
pub mod shim;

/// Labels the agent puts on sandboxes and containers so it can find them again after a restart.
pub mod labels {
    /// The pod's uid.
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    /// The pod's name.
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    /// The pod's namespace.
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// The container's name in the pod spec.
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// How many times this container was started before (0 for the first).
    pub const ATTEMPT: &str = "io.kubernetes.container.attempt";
    /// The sandbox the container belongs to.
    pub const SANDBOX_ID: &str = "io.kubernetes.sandbox.id";
}

/// What a pod sandbox needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Pod uid.
    pub pod_uid: String,
    /// Pod name.
    pub pod_name: String,
    /// Pod namespace.
    pub pod_namespace: String,
    /// The sandbox's hostname (the pod's hostname, usually its name).
    pub hostname: String,
    /// Share the host's network namespace.
    pub host_network: bool,
    /// Which attempt at a sandbox for this pod this is.
    pub attempt: u32,
    /// hostPorts the node forwards into the sandbox.
    pub ports: Vec<crate::network::cni::PortMapping>,
}

/// A pod sandbox: the namespaces every container of the pod joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// Runtime id.
    pub id: String,
    /// Network namespace file; None for host network.
    pub netns: Option<PathBuf>,
    /// IPC namespace file.
    pub ipc: PathBuf,
    /// UTS namespace file.
    pub uts: PathBuf,
    /// Labels given at creation (pod uid, name, namespace).
    pub labels: BTreeMap<String, String>,
    /// The attempt number.
    pub attempt: u32,
    /// The pod's address on the pod network (None: host network, or loopback only).
    pub ip: Option<std::net::Ipv4Addr>,
}

/// A bind or special mount inside a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Path inside the container.
    pub destination: String,
    /// Path on the host (for bind mounts) or the source of a special filesystem.
    pub source: String,
    /// Filesystem type: "bind", "tmpfs", …
    pub kind: String,
    /// Mount options ("rbind", "ro", "rprivate", …).
    pub options: Vec<String>,
}

/// Resource limits applied through the container's cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// cpu.shares (from requests.cpu: millicores × 1024 / 1000, minimum 2).
    pub cpu_shares: Option<u64>,
    /// CFS quota in µs per period (from limits.cpu).
    pub cpu_quota: Option<i64>,
    /// CFS period in µs (100000).
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes (from limits.memory).
    pub memory_limit: Option<i64>,
}

/// Security settings of the container process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    /// Run privileged (all capabilities, devices, no seccomp).
    pub privileged: bool,
    /// Mount the root filesystem read-only.
    pub read_only_rootfs: bool,
    /// Capabilities added to the default set (names like "NET_ADMIN").
    pub cap_add: Vec<String>,
    /// Capabilities dropped ("ALL" drops everything).
    pub cap_drop: Vec<String>,
    /// Set no_new_privs (allowPrivilegeEscalation: false).
    pub no_new_privileges: bool,
}

/// The process to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    /// argv, already combined from image Entrypoint/Cmd and pod command/args.
    pub args: Vec<String>,
    /// "KEY=value" strings.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
}

/// Everything needed to create one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Runtime id, unique on the node.
    pub id: String,
    /// The sandbox to join.
    pub sandbox: Sandbox,
    /// Labels (pod uid, container name, attempt, …).
    pub labels: BTreeMap<String, String>,
    /// Unpacked image layers, lowest first; the runtime stacks them with a writable layer on top.
    pub layers: Vec<PathBuf>,
    /// The process.
    pub process: Process,
    /// Mounts (volumes, /etc/hosts, …), in order.
    pub mounts: Vec<Mount>,
    /// Cgroup limits.
    pub resources: Resources,
    /// The cgroup path of the pod (e.g. "/skiff/pod<uid>"); the container gets a child of it.
    pub cgroup_parent: String,
    /// Security settings.
    pub security: Security,
    /// Where stdout and stderr go, in the CRI log format.
    pub log_path: PathBuf,
    /// Keep stdin open for attach (the container's `stdin`).
    pub stdin: bool,
    /// Close stdin when the first attach ends (the container's `stdinOnce`).
    pub stdin_once: bool,
}

/// A container's state as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Running.
    Running {
        /// Host pid of the container's init.
        pid: u32,
        /// When it started.
        started_at: Timestamp,
    },
    /// Exited.
    Exited {
        /// Exit code (128 + signal when killed by a signal).
        exit_code: i32,
        /// The signal that killed it, if any.
        signal: Option<i32>,
        /// When it started, if it did.
        started_at: Option<Timestamp>,
        /// When it exited.
        finished_at: Timestamp,
        /// Whether the kernel OOM killer ended it.
        oom_killed: bool,
    },
    /// The runtime lost track of it.
    Unknown,
}

/// One container as listed by the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Runtime id.
    pub id: String,
    /// Labels given at creation.
    pub labels: BTreeMap<String, String>,
    /// Current state.
    pub state: ContainerState,
}

/// The result of running a command inside a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code.
    pub exit_code: i32,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
}

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No such container or sandbox.
    #[error("{0} not found")]
    NotFound(String),
    /// A command run for the runtime failed.
    #[error("{command}: {message}")]
    Command {
        /// The command, e.g. "runc create".
        command: String,
        /// What it printed or why it could not run.
        message: String,
    },
    /// A timeout passed.
    #[error("{0} timed out")]
    Timeout(String),
    /// Filesystem or OS error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result of a runtime operation.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// The container runtime.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Creates a pod sandbox (its namespaces, loopback up, hostname set).
    async fn create_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox>;
    /// Removes a sandbox's namespaces (its containers must be removed first).
    async fn remove_sandbox(&self, id: &str) -> Result<()>;
    /// Every sandbox on the node (for re-adoption after an agent restart).
    async fn list_sandboxes(&self) -> Result<Vec<Sandbox>>;
    /// Creates a container (not started).
    async fn create_container(&self, config: &ContainerConfig) -> Result<()>;
    /// Starts a created container.
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Sends SIGTERM, waits up to `grace`, then SIGKILL; returns once it has exited.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;
    /// Removes an exited container and its writable layer (its log stays until the pod is removed).
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// One container.
    async fn container(&self, id: &str) -> Result<ContainerInfo>;
    /// Every container on the node.
    async fn list_containers(&self) -> Result<Vec<ContainerInfo>>;
    /// Runs a command in a running container, killing it after `timeout`.
    async fn exec_sync(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput>;
}

/// The runtime of a node that cannot run containers (no root, no runc):
/// every operation fails with the reason, and the node reports NotReady.
pub struct Unavailable(pub String);

#[async_trait::async_trait]
impl Runtime for Unavailable {
    async fn create_sandbox(&self, _config: &SandboxConfig) -> Result<Sandbox> {
        Err(self.error())
    }
    async fn remove_sandbox(&self, _id: &str) -> Result<()> {
        Err(self.error())
    }
    async fn list_sandboxes(&self) -> Result<Vec<Sandbox>> {
        Ok(Vec::new())
    }
    async fn create_container(&self, _config: &ContainerConfig) -> Result<()> {
        Err(self.error())
    }
    async fn start_container(&self, _id: &str) -> Result<()> {
        Err(self.error())
    }
    async fn stop_container(&self, _id: &str, _grace: Duration) -> Result<()> {
        Err(self.error())
    }
    async fn remove_container(&self, _id: &str) -> Result<()> {
        Err(self.error())
    }
    async fn container(&self, id: &str) -> Result<ContainerInfo> {
        Err(RuntimeError::NotFound(id.to_string()))
    }
    async fn list_containers(&self) -> Result<Vec<ContainerInfo>> {
        Ok(Vec::new())
    }
    async fn exec_sync(
        &self,
        _id: &str,
        _cmd: &[String],
        _timeout: Duration,
    ) -> Result<ExecOutput> {
        Err(self.error())
    }
}

impl Unavailable {
    fn error(&self) -> RuntimeError {
        RuntimeError::Command {
            command: "runtime".into(),
            message: self.0.clone(),
        }
    }
}
