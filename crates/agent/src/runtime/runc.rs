//! The runc runtime.
//!
//! # Layout on disk (under the root given to [`RuncRuntime::new`])
//! - `sandboxes/<id>/sandbox.json`: the [`Sandbox`] (labels, attempt, namespace paths).
//! - `sandboxes/<id>/ns/{net,ipc,uts}`: the pod's namespaces, bind-mounted onto files
//!   (CRI-O "pinns" style: no pause process). `ns/` is a private bind mount of itself.
//! - `containers/<id>/`: the OCI bundle: `config.json`, `rootfs/` (an overlay of the image
//!   layers), `upper/` and `work/` (the writable layer), `meta.json` (labels, log path) and
//!   the shim's files (see [`super::shim`]).
//! - `runc/`: runc's own state directory (`runc --root`).

use super::shim::{EXIT_FILE, ExitRecord, STARTED_FILE, STATE_FILE, ShimArgs, ShimState};
use super::{
    ContainerConfig, ContainerInfo, ContainerState, ExecOutput, Result, Runtime, RuntimeError,
    Sandbox, SandboxConfig, Security,
};
use crate::network::PodNetwork;
use crate::network::cni::PodRef;
use jiff::Timestamp;
use nix::mount::{MntFlags, MsFlags};
use oci_spec::runtime as oci;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Command;

/// The capabilities a container gets by default (as Docker and containerd give).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability (what a privileged container gets).
pub const ALL_CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETGID",
    "SETFCAP",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// Paths hidden from unprivileged containers (containerd's defaults).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths mounted read-only in unprivileged containers (containerd's defaults).
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// How long `create_container` waits for the shim to report.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop_container` waits for the exit file after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// The container runtime: runc, one shim per container.
#[derive(Debug, Clone)]
pub struct RuncRuntime {
    root: PathBuf,
    runc: String,
    shim: Vec<String>,
    network: Option<Arc<PodNetwork>>,
}

/// What the agent persists next to a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ContainerMeta {
    id: String,
    labels: BTreeMap<String, String>,
    log_path: PathBuf,
    cgroup: String,
}

/// The persisted form of a [`Sandbox`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SandboxRecord {
    id: String,
    netns: Option<PathBuf>,
    ipc: PathBuf,
    uts: PathBuf,
    labels: BTreeMap<String, String>,
    attempt: u32,
    hostname: String,
    /// The pod's address, when it is attached to the pod network.
    #[serde(default)]
    ip: Option<std::net::Ipv4Addr>,
    /// What CNI ADD returned: DEL is given it back.
    #[serde(default)]
    cni_result: Option<serde_json::Value>,
    /// The hostPorts mapped, released again at DEL.
    #[serde(default)]
    ports: Vec<crate::network::cni::PortMapping>,
}

impl From<SandboxRecord> for Sandbox {
    fn from(r: SandboxRecord) -> Self {
        Sandbox {
            id: r.id,
            netns: r.netns,
            ipc: r.ipc,
            uts: r.uts,
            labels: r.labels,
            attempt: r.attempt,
            ip: r.ip,
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Io { context, source }
}

fn nix_err(context: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> RuntimeError {
    let context = context.into();
    move |e| RuntimeError::Io {
        context,
        source: std::io::Error::from(e),
    }
}

/// Finds an executable named `name` on `$PATH` (or the usual system directories).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .chain([
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Rejects ids that could escape the runtime's directories.
fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::NotFound(format!("invalid id {id:?}")))
    }
}

impl RuncRuntime {
    /// A runtime keeping its state under `root` (e.g. `DATA_DIR/agent/containers`).
    /// `shim` is the argv prefix that runs [`super::shim::shim_main`], e.g.
    /// `["/usr/bin/skiff", "shim"]`.
    pub fn new(root: PathBuf, shim: Vec<String>) -> Result<Self> {
        let runc = which("runc")
            .ok_or_else(|| RuntimeError::Command {
                command: "runc".into(),
                message: "no runc binary on PATH".into(),
            })?
            .display()
            .to_string();
        if shim.is_empty() {
            return Err(RuntimeError::Command {
                command: "shim".into(),
                message: "empty shim command".into(),
            });
        }
        for dir in ["sandboxes", "containers", "runc"] {
            std::fs::create_dir_all(root.join(dir))
                .map_err(io_err(format!("creating {}", root.join(dir).display())))?;
        }
        Ok(RuncRuntime {
            root,
            runc,
            shim,
            network: None,
        })
    }

    /// Attaches sandboxes to `network` (without one they get loopback only).
    pub fn with_network(mut self, network: Arc<PodNetwork>) -> Self {
        self.network = Some(network);
        self
    }

    /// runc's version, or one line saying why containers cannot run here.
    pub fn check() -> Result<String, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err(format!(
                "the runc runtime needs root (running as uid {})",
                nix::unistd::geteuid()
            ));
        }
        let runc = which("runc").ok_or("no runc binary on PATH")?;
        let out = std::process::Command::new(&runc)
            .arg("--version")
            .output()
            .map_err(|e| format!("{}: {e}", runc.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} --version failed: {}",
                runc.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().next().unwrap_or("runc").trim().to_string())
    }

    /// Container `id`'s cgroup path, relative to each hierarchy's mount point
    /// (`/skiff/pod<uid>/<id>`), as it was created.
    pub fn cgroup(&self, id: &str) -> Result<String> {
        check_id(id)?;
        Ok(self.read_meta(id)?.cgroup)
    }

    /// The socket feeding container `id`'s stdin; it exists only for containers with stdin.
    pub fn attach_socket(&self, id: &str) -> PathBuf {
        self.bundle(id).join(super::shim::ATTACH_SOCKET)
    }

    fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.root.join("sandboxes").join(id)
    }

    fn bundle(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    fn runc_cmd(&self) -> Command {
        let mut cmd = Command::new(&self.runc);
        cmd.arg("--root").arg(self.root.join("runc"));
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// Runs runc with `args`; its stdout on success, its stderr as the error otherwise.
    async fn runc_run(&self, args: &[&str]) -> Result<Vec<u8>> {
        let command = format!("runc {}", args.first().copied().unwrap_or(""));
        let out = self
            .runc_cmd()
            .args(args)
            .output()
            .await
            .map_err(|e| RuntimeError::Command {
                command: command.clone(),
                message: e.to_string(),
            })?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(RuntimeError::Command {
                command,
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    fn read_meta(&self, id: &str) -> Result<ContainerMeta> {
        let path = self.bundle(id).join("meta.json");
        let data = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                RuntimeError::NotFound(format!("container {id}"))
            } else {
                RuntimeError::Io {
                    context: format!("reading {}", path.display()),
                    source: e,
                }
            }
        })?;
        serde_json::from_slice(&data).map_err(|e| RuntimeError::Io {
            context: format!("parsing {}", path.display()),
            source: std::io::Error::other(e),
        })
    }

    fn exit_record(&self, id: &str) -> Option<ExitRecord> {
        let data = std::fs::read(self.bundle(id).join(EXIT_FILE)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    fn started_at(&self, id: &str) -> Option<Timestamp> {
        std::fs::read_to_string(self.bundle(id).join(STARTED_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn shim_state(&self, id: &str) -> Option<ShimState> {
        let data = std::fs::read(self.bundle(id).join(STATE_FILE)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// The container's state from the shim's files and `runc state`.
    /// A container's state from the shim's files, without running runc: the
    /// exit record, else the init pid (alive or not) and whether it was
    /// started. Only a container without shim files asks `runc state`.
    /// Listing N containers is N small file reads, not N processes.
    async fn state(&self, id: &str) -> ContainerState {
        if let Some(exit) = self.exit_record(id) {
            return exited(exit);
        }
        match self.shim_state(id) {
            Some(ShimState::Created { pid }) => {
                let started = self.started_at(id);
                let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
                match (started, alive) {
                    (Some(at), _) => ContainerState::Running {
                        pid,
                        started_at: at,
                    },
                    (None, true) => ContainerState::Created,
                    // Created, never started, and gone: the shim is writing its exit record.
                    (None, false) => ContainerState::Created,
                }
            }
            Some(ShimState::Error { .. }) => ContainerState::Unknown,
            None => self.state_from_runc(id).await,
        }
    }

    async fn state_from_runc(&self, id: &str) -> ContainerState {
        let runc_state = self
            .runc_run(&["state", id])
            .await
            .ok()
            .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out).ok());
        let status = runc_state
            .as_ref()
            .and_then(|v| v.get("status")?.as_str().map(str::to_string));
        let pid = runc_state
            .as_ref()
            .and_then(|v| v.get("pid")?.as_u64())
            .unwrap_or(0) as u32;
        match status.as_deref() {
            Some("created") => ContainerState::Created,
            Some("running") | Some("paused") => ContainerState::Running {
                pid,
                started_at: self.started_at(id).unwrap_or_else(Timestamp::now),
            },
            _ => match self.exit_record(id) {
                Some(exit) => exited(exit),
                None => ContainerState::Unknown,
            },
        }
    }

    async fn wait_exit(&self, id: &str, limit: Duration) -> Option<ExitRecord> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(exit) = self.exit_record(id) {
                return Some(exit);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Mounts the image layers (lowest first) as an overlay on `bundle/rootfs`.
    fn mount_rootfs(bundle: &Path, layers: &[PathBuf]) -> Result<()> {
        let rootfs = bundle.join("rootfs");
        let upper = bundle.join("upper");
        let work = bundle.join("work");
        for d in [&rootfs, &upper, &work] {
            std::fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        if layers.is_empty() {
            return Err(RuntimeError::Io {
                context: "mounting rootfs".into(),
                source: std::io::Error::other("no image layers"),
            });
        }
        let data = overlay_options(layers, &upper, &work);
        nix::mount::mount(
            Some("overlay"),
            &rootfs,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(nix_err(format!("mounting overlay on {}", rootfs.display())))
    }
}

/// Overlay mount options: lowerdir lists the topmost layer first.
fn overlay_options(layers: &[PathBuf], upper: &Path, work: &Path) -> String {
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    )
}

fn exited(exit: ExitRecord) -> ContainerState {
    ContainerState::Exited {
        exit_code: exit.exit_code,
        signal: exit.signal,
        started_at: exit.started_at,
        finished_at: exit.finished_at,
        oom_killed: exit.oom_killed,
    }
}

/// Unmounts `path`, ignoring "not mounted" and "does not exist".
fn unmount(path: &Path) -> Result<()> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(nix_err(format!("unmounting {}", path.display()))(e)),
    }
}

/// The capability set for `security`, as the names without "CAP_".
pub fn capabilities(security: &Security) -> Vec<String> {
    if security.privileged {
        return ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect();
    }
    let norm = |s: &str| {
        s.trim()
            .to_uppercase()
            .trim_start_matches("CAP_")
            .to_string()
    };
    let drop: HashSet<String> = security.cap_drop.iter().map(|s| norm(s)).collect();
    let mut caps: Vec<String> = if drop.contains("ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for add in &security.cap_add {
        let add = norm(add);
        if add == "ALL" {
            return ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect();
        }
        if !caps.contains(&add) {
            caps.push(add);
        }
    }
    caps
}

fn oci_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Io {
        context: "building config.json".into(),
        source: std::io::Error::other(e.to_string()),
    }
}

fn oci_mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> oci::Mount {
    let mut m = oci::Mount::default();
    m.set_destination(destination.into());
    m.set_typ(Some(kind.into()));
    m.set_source(Some(source.into()));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

fn namespace(typ: oci::LinuxNamespaceType, path: Option<&Path>) -> oci::LinuxNamespace {
    let mut ns = oci::LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path.map(Path::to_path_buf));
    ns
}

/// The OCI runtime spec for a container (rootfs at `bundle/rootfs`).
pub fn build_spec(config: &ContainerConfig) -> Result<oci::Spec> {
    let sec = &config.security;
    let p = &config.process;

    let caps: oci::Capabilities = capabilities(sec)
        .into_iter()
        .filter_map(|c| serde_json::from_value(serde_json::Value::String(c)).ok())
        .collect();
    let linux_caps = oci::LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps.clone())
        .inheritable(oci::Capabilities::new())
        .ambient(oci::Capabilities::new())
        .build()
        .map_err(oci_err)?;
    let mut user = oci::User::default();
    user.set_uid(p.uid);
    user.set_gid(p.gid);
    if !p.additional_gids.is_empty() {
        user.set_additional_gids(Some(p.additional_gids.clone()));
    }
    let mut env = p.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    let mut process = oci::Process::default();
    process.set_terminal(Some(false));
    process.set_args(Some(p.args.clone()));
    process.set_env(Some(env));
    process.set_cwd(if p.cwd.is_empty() {
        "/".into()
    } else {
        p.cwd.clone().into()
    });
    process.set_user(user);
    process.set_capabilities(Some(linux_caps));
    process.set_no_new_privileges(Some(sec.no_new_privileges));
    process.set_rlimits(None);
    process.set_apparmor_profile(None);
    process.set_oom_score_adj(None);
    process.set_selinux_label(None);

    let mut root = oci::Root::default();
    root.set_path("rootfs".into());
    root.set_readonly(Some(sec.read_only_rootfs));

    let sys_opts: &[&str] = if sec.privileged {
        &["nosuid", "noexec", "nodev"]
    } else {
        &["nosuid", "noexec", "nodev", "ro"]
    };
    let mut mounts = vec![
        oci_mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        oci_mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        oci_mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        oci_mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        oci_mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        oci_mount("/sys", "sysfs", "sysfs", sys_opts),
        oci_mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ];
    for m in &config.mounts {
        let opts: Vec<&str> = m.options.iter().map(String::as_str).collect();
        mounts.push(oci_mount(&m.destination, &m.kind, &m.source, &opts));
    }

    let sb = &config.sandbox;
    let mut namespaces = vec![
        namespace(oci::LinuxNamespaceType::Pid, None),
        namespace(oci::LinuxNamespaceType::Mount, None),
        namespace(oci::LinuxNamespaceType::Ipc, Some(&sb.ipc)),
        namespace(oci::LinuxNamespaceType::Uts, Some(&sb.uts)),
    ];
    if let Some(net) = &sb.netns {
        namespaces.push(namespace(oci::LinuxNamespaceType::Network, Some(net)));
    }

    let r = &config.resources;
    let mut cpu = oci::LinuxCpu::default();
    cpu.set_shares(r.cpu_shares);
    cpu.set_quota(r.cpu_quota);
    cpu.set_period(r.cpu_period);
    let mut memory = oci::LinuxMemory::default();
    memory.set_limit(r.memory_limit);
    let mut device = oci::LinuxDeviceCgroup::default();
    device.set_allow(sec.privileged);
    device.set_access(Some("rwm".into()));
    let mut resources = oci::LinuxResources::default();
    resources.set_cpu(Some(cpu));
    resources.set_memory(Some(memory));
    resources.set_devices(Some(vec![device]));

    let mut linux = oci::Linux::default();
    linux.set_namespaces(Some(namespaces));
    linux.set_cgroups_path(Some(cgroup_path(&config.cgroup_parent, &config.id).into()));
    linux.set_resources(Some(resources));
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_devices(None);
    linux.set_seccomp(None);
    if sec.privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        linux.set_masked_paths(Some(MASKED_PATHS.iter().map(|s| s.to_string()).collect()));
        linux.set_readonly_paths(Some(READONLY_PATHS.iter().map(|s| s.to_string()).collect()));
    }

    let mut spec = oci::Spec::default();
    spec.set_hostname(None);
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    spec.set_mounts(Some(mounts));
    spec.set_linux(Some(linux));
    let mut annotations = std::collections::HashMap::new();
    for (k, v) in &config.labels {
        annotations.insert(k.clone(), v.clone());
    }
    spec.set_annotations(Some(annotations));
    Ok(spec)
}

/// The container's cgroup: a child of the pod's.
fn cgroup_path(parent: &str, id: &str) -> String {
    let parent = parent.trim_end_matches('/');
    if parent.is_empty() {
        format!("/{id}")
    } else if parent.starts_with('/') {
        format!("{parent}/{id}")
    } else {
        format!("/{parent}/{id}")
    }
}

fn new_sandbox_id(config: &SandboxConfig) -> String {
    let mut h = sha2::Sha256::new();
    h.update(config.pod_uid.as_bytes());
    h.update(config.attempt.to_le_bytes());
    h.update(Timestamp::now().as_nanosecond().to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    hex::encode(h.finalize())[..32].to_string()
}

#[async_trait::async_trait]
impl Runtime for RuncRuntime {
    async fn create_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox> {
        // Fail before making anything when the pod network is not ready.
        let attach = match (&self.network, config.host_network) {
            (Some(net), false) => net.attachment().map_err(|message| RuntimeError::Command {
                command: "network".into(),
                message,
            })?,
            _ => None,
        };
        let id = new_sandbox_id(config);
        let dir = self.sandbox_dir(&id);
        let ns = dir.join("ns");
        std::fs::create_dir_all(&ns).map_err(io_err(format!("creating {}", ns.display())))?;
        let mut record = SandboxRecord {
            id: id.clone(),
            netns: (!config.host_network).then(|| ns.join("net")),
            ipc: ns.join("ipc"),
            uts: ns.join("uts"),
            labels: BTreeMap::from([
                (super::labels::POD_UID.to_string(), config.pod_uid.clone()),
                (super::labels::POD_NAME.to_string(), config.pod_name.clone()),
                (
                    super::labels::POD_NAMESPACE.to_string(),
                    config.pod_namespace.clone(),
                ),
            ]),
            attempt: config.attempt,
            hostname: config.hostname.clone(),
            ip: None,
            cni_result: None,
            ports: Vec::new(),
        };
        let result = async {
            // Namespace files can only be bind-mounted under a private mount.
            nix::mount::mount(Some(&ns), &ns, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(nix_err(format!("bind-mounting {}", ns.display())))?;
            nix::mount::mount(
                None::<&str>,
                &ns,
                None::<&str>,
                MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(nix_err(format!("making {} private", ns.display())))?;
            let mut files = vec![&record.ipc, &record.uts];
            if let Some(net) = &record.netns {
                files.push(net);
            }
            for f in files {
                std::fs::File::create(f).map_err(io_err(format!("creating {}", f.display())))?;
            }
            let mut cmd = Command::new("unshare");
            cmd.arg(format!("--ipc={}", record.ipc.display()))
                .arg(format!("--uts={}", record.uts.display()));
            let script = if let Some(net) = &record.netns {
                cmd.arg(format!("--net={}", net.display()));
                "hostname \"$1\" && ip link set lo up"
            } else {
                "hostname \"$1\""
            };
            cmd.args(["sh", "-c", script, "sh", &config.hostname]);
            let out =
                cmd.stdin(Stdio::null())
                    .output()
                    .await
                    .map_err(|e| RuntimeError::Command {
                        command: "unshare".into(),
                        message: e.to_string(),
                    })?;
            if !out.status.success() {
                return Err(RuntimeError::Command {
                    command: "unshare".into(),
                    message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            if let (Some(net), Some(netns)) = (&attach, &record.netns) {
                let pod = PodRef {
                    namespace: config.pod_namespace.clone(),
                    name: config.pod_name.clone(),
                    uid: config.pod_uid.clone(),
                };
                let result = net
                    .add(&id, netns, &pod, &config.ports)
                    .await
                    .map_err(|e| RuntimeError::Command {
                        command: "network".into(),
                        message: format!(
                            "plugin type=\"bridge\" name=\"{}\" failed (add): {e}",
                            net.name
                        ),
                    })?;
                record.ip = crate::network::cni::result_ip(&result);
                record.cni_result = Some(result);
                record.ports = config.ports.clone();
            }
            let data = serde_json::to_vec_pretty(&record).map_err(oci_err)?;
            let written = super::shim::write_atomic(&dir.join("sandbox.json"), &data)
                .map_err(io_err("writing sandbox.json"));
            if written.is_err()
                && let (Some(net), Some(netns)) = (&attach, &record.netns)
            {
                let _ = net
                    .del(
                        &id,
                        Some(netns),
                        &pod_ref(&record),
                        record.cni_result.as_ref(),
                        &record.ports,
                    )
                    .await;
            }
            written
        }
        .await;
        match result {
            Ok(()) => Ok(record.into()),
            Err(e) => {
                let _ = remove_sandbox_dir(&dir);
                Err(e)
            }
        }
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let dir = self.sandbox_dir(id);
        if !dir.exists() {
            return Err(RuntimeError::NotFound(format!("sandbox {id}")));
        }
        let record = std::fs::read(dir.join("sandbox.json"))
            .ok()
            .and_then(|d| serde_json::from_slice::<SandboxRecord>(&d).ok());
        if let Some(record) = record.filter(|r| r.cni_result.is_some())
            && let Some(net) = self.network.as_ref().and_then(|n| n.configured())
        {
            // Release the address and host ports while the namespace still exists;
            // on failure the sandbox stays and the agent tries again.
            net.del(
                id,
                record.netns.as_deref().filter(|p| p.exists()),
                &pod_ref(&record),
                record.cni_result.as_ref(),
                &record.ports,
            )
            .await
            .map_err(|e| RuntimeError::Command {
                command: "network".into(),
                message: format!("tearing down the pod network: {e}"),
            })?;
        }
        remove_sandbox_dir(&dir)
    }

    async fn list_sandboxes(&self) -> Result<Vec<Sandbox>> {
        let mut out = Vec::new();
        for dir in read_dirs(&self.root.join("sandboxes"))? {
            let Ok(data) = std::fs::read(dir.join("sandbox.json")) else {
                continue;
            };
            if let Ok(record) = serde_json::from_slice::<SandboxRecord>(&data) {
                out.push(record.into());
            }
        }
        out.sort_by(|a: &Sandbox, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn create_container(&self, config: &ContainerConfig) -> Result<()> {
        check_id(&config.id)?;
        let bundle = self.bundle(&config.id);
        if bundle.exists() {
            return Err(RuntimeError::Command {
                command: "create container".into(),
                message: format!("container {} already exists", config.id),
            });
        }
        std::fs::create_dir_all(&bundle)
            .map_err(io_err(format!("creating {}", bundle.display())))?;
        let result = self.create_in(&bundle, config).await;
        if result.is_err() {
            let _ = self.runc_run(&["delete", "--force", &config.id]).await;
            let _ = unmount(&bundle.join("rootfs"));
            let _ = std::fs::remove_dir_all(&bundle);
        }
        result
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        check_id(id)?;
        self.read_meta(id)?;
        let started = self.bundle(id).join(STARTED_FILE);
        super::shim::write_atomic(&started, Timestamp::now().to_string().as_bytes())
            .map_err(io_err("writing the start time"))?;
        if let Err(e) = self.runc_run(&["start", id]).await {
            let _ = std::fs::remove_file(&started);
            return Err(e);
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        check_id(id)?;
        self.read_meta(id)?;
        match self.state(id).await {
            ContainerState::Exited { .. } => return Ok(()),
            ContainerState::Running { .. } if !grace.is_zero() => {
                let _ = self.runc_run(&["kill", id, "TERM"]).await;
                if self.wait_exit(id, grace).await.is_some() {
                    return Ok(());
                }
            }
            _ => {}
        }
        let _ = self.runc_run(&["kill", "--all", id, "KILL"]).await;
        match self.wait_exit(id, KILL_TIMEOUT).await {
            Some(_) => Ok(()),
            None => Err(RuntimeError::Timeout(format!("stopping container {id}"))),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        check_id(id)?;
        self.read_meta(id)?;
        if !matches!(self.state(id).await, ContainerState::Exited { .. }) {
            let _ = self.stop_container(id, Duration::ZERO).await;
        }
        let _ = self.runc_run(&["delete", "--force", id]).await;
        let bundle = self.bundle(id);
        unmount(&bundle.join("rootfs"))?;
        std::fs::remove_dir_all(&bundle).map_err(io_err(format!("removing {}", bundle.display())))
    }

    async fn container(&self, id: &str) -> Result<ContainerInfo> {
        check_id(id)?;
        let meta = self.read_meta(id)?;
        Ok(ContainerInfo {
            id: meta.id,
            labels: meta.labels,
            state: self.state(id).await,
        })
    }

    async fn list_containers(&self) -> Result<Vec<ContainerInfo>> {
        let mut out = Vec::new();
        for dir in read_dirs(&self.root.join("containers"))? {
            let Some(id) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            if let Ok(info) = self.container(&id).await {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn exec_sync(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput> {
        check_id(id)?;
        self.read_meta(id)?;
        if cmd.is_empty() {
            return Err(RuntimeError::Command {
                command: "runc exec".into(),
                message: "empty command".into(),
            });
        }
        let pid_file = self
            .bundle(id)
            .join(format!("exec-{}.pid", Timestamp::now().as_nanosecond()));
        let child = self
            .runc_cmd()
            .arg("exec")
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .args(cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| RuntimeError::Command {
                command: "runc exec".into(),
                message: e.to_string(),
            })?;
        let result = tokio::time::timeout(timeout, child.wait_with_output()).await;
        let exec_pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let _ = std::fs::remove_file(&pid_file);
        match result {
            Ok(Ok(out)) => Ok(ExecOutput {
                exit_code: out.status.code().unwrap_or_else(|| {
                    128 + std::os::unix::process::ExitStatusExt::signal(&out.status).unwrap_or(0)
                }),
                stdout: out.stdout,
                stderr: out.stderr,
            }),
            Ok(Err(e)) => Err(RuntimeError::Command {
                command: "runc exec".into(),
                message: e.to_string(),
            }),
            Err(_) => {
                // The runc process was killed on drop; end the command inside the container too.
                if let Some(pid) = exec_pid {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                Err(RuntimeError::Timeout(format!("exec in container {id}")))
            }
        }
    }
}

impl RuncRuntime {
    async fn create_in(&self, bundle: &Path, config: &ContainerConfig) -> Result<()> {
        let cgroup = cgroup_path(&config.cgroup_parent, &config.id);
        let meta = ContainerMeta {
            id: config.id.clone(),
            labels: config.labels.clone(),
            log_path: config.log_path.clone(),
            cgroup: cgroup.clone(),
        };
        let data = serde_json::to_vec_pretty(&meta).map_err(oci_err)?;
        super::shim::write_atomic(&bundle.join("meta.json"), &data)
            .map_err(io_err("writing meta.json"))?;
        let spec = build_spec(config)?;
        spec.save(bundle.join("config.json")).map_err(oci_err)?;
        Self::mount_rootfs(bundle, &config.layers)?;

        let args = ShimArgs {
            runc: self.runc.clone(),
            runc_root: self.root.join("runc"),
            bundle: bundle.to_path_buf(),
            id: config.id.clone(),
            log: config.log_path.clone(),
            cgroup,
            stdin: match (config.stdin, config.stdin_once) {
                (false, _) => String::new(),
                (true, false) => "open".into(),
                (true, true) => "once".into(),
            },
        };
        let shim_log =
            std::fs::File::create(bundle.join("shim.log")).map_err(io_err("creating shim.log"))?;
        let mut child = Command::new(&self.shim[0])
            .args(&self.shim[1..])
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(shim_log)
            .spawn()
            .map_err(|e| RuntimeError::Command {
                command: self.shim.join(" "),
                message: e.to_string(),
            })?;
        let deadline = tokio::time::Instant::now() + CREATE_TIMEOUT;
        let outcome = loop {
            if let Some(state) = self.shim_state(&config.id) {
                break Ok(state);
            }
            if let Ok(Some(status)) = child.try_wait() {
                // The shim may have written its state just before exiting.
                if let Some(state) = self.shim_state(&config.id) {
                    break Ok(state);
                }
                let log = std::fs::read_to_string(bundle.join("shim.log")).unwrap_or_default();
                break Err(RuntimeError::Command {
                    command: "shim".into(),
                    message: format!("exited with {status}: {}", log.trim()),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.start_kill();
                break Err(RuntimeError::Timeout(format!(
                    "creating container {}",
                    config.id
                )));
            }
            tokio::time::sleep(POLL).await;
        };
        // The shim lives on in its own session; reap it whenever it exits.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        match outcome? {
            ShimState::Created { .. } => Ok(()),
            ShimState::Error { message } => Err(RuntimeError::Command {
                command: "runc create".into(),
                message,
            }),
        }
    }
}

fn pod_ref(record: &SandboxRecord) -> PodRef {
    let label = |k: &str| record.labels.get(k).cloned().unwrap_or_default();
    PodRef {
        namespace: label(super::labels::POD_NAMESPACE),
        name: label(super::labels::POD_NAME),
        uid: label(super::labels::POD_UID),
    }
}

fn read_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(format!("reading {}", dir.display()))(e)),
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect())
}

fn remove_sandbox_dir(dir: &Path) -> Result<()> {
    let ns = dir.join("ns");
    for name in ["net", "ipc", "uts"] {
        unmount(&ns.join(name))?;
    }
    unmount(&ns)?;
    std::fs::remove_dir_all(dir).map_err(io_err(format!("removing {}", dir.display())))
}

/// A command started in a container for `kubectl exec`, with its streams.
pub struct InteractiveExec {
    /// The runc process; its exit status is the command's.
    pub child: tokio::process::Child,
    /// stdin (or the terminal), when asked for.
    pub stdin: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    /// stdout (or the terminal).
    pub stdout: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    /// stderr (none with a terminal).
    pub stderr: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
    /// Resizes the terminal (columns, rows), when there is one.
    pub resize: Option<Box<dyn Fn(u16, u16) + Send + Sync>>,
}

nix::ioctl_write_ptr_bad!(tiocswinsz, nix::libc::TIOCSWINSZ, nix::pty::Winsize);

/// Sets a terminal's size (columns, rows); errors are ignored, as a resize is advisory.
fn set_window_size(tty: &std::fs::File, cols: u16, rows: u16) {
    use std::os::fd::AsRawFd;
    let ws = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one Winsize from the pointer, which lives for the call.
    let _ = unsafe { tiocswinsz(tty.as_raw_fd(), &ws) };
}

impl RuncRuntime {
    /// Starts `cmd` in a running container with streamed stdio; with `tty`
    /// the process gets a pseudo-terminal (80x24) on all three streams.
    pub fn exec_interactive(
        &self,
        id: &str,
        cmd: &[String],
        stdin: bool,
        tty: bool,
    ) -> Result<InteractiveExec> {
        check_id(id)?;
        self.read_meta(id)?;
        if cmd.is_empty() {
            return Err(RuntimeError::Command {
                command: "runc exec".into(),
                message: "empty command".into(),
            });
        }
        let err = |e: std::io::Error| RuntimeError::Command {
            command: "runc exec".into(),
            message: e.to_string(),
        };
        if tty {
            // In the foreground runc allocates the terminal inside the container and
            // copies between it and its own stdio, which is a host pty we hold the master of.
            let size = nix::pty::Winsize {
                ws_row: 24,
                ws_col: 80,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            let pty = nix::pty::openpty(Some(&size), None).map_err(|e| err(e.into()))?;
            let slave = std::fs::File::from(pty.slave);
            let mut c = self.runc_cmd();
            c.arg("exec").arg("--tty").arg(id).args(cmd);
            c.stdin(slave.try_clone().map_err(err)?)
                .stdout(slave.try_clone().map_err(err)?)
                .stderr(slave);
            let child = c.spawn().map_err(err)?;
            let runc_pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
            let master = std::fs::File::from(pty.master);
            let resize_fd = master.try_clone().map_err(err)?;
            let writer = tokio::fs::File::from_std(master.try_clone().map_err(err)?);
            let reader = tokio::fs::File::from_std(master);
            return Ok(InteractiveExec {
                child,
                stdin: Some(Box::new(writer)),
                stdout: Box::new(reader),
                stderr: None,
                resize: Some(Box::new(move |w, h| {
                    set_window_size(&resize_fd, w, h);
                    // runc copies its terminal's size into the container on SIGWINCH.
                    if let Some(pid) = runc_pid {
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGWINCH);
                    }
                })),
            });
        }
        let mut c = self.runc_cmd();
        c.arg("exec").arg(id).args(cmd);
        c.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(err)?;
        let stdin_w = child
            .stdin
            .take()
            .map(|w| Box::new(w) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>);
        let stdout = Box::new(child.stdout.take().expect("piped stdout"));
        let stderr = child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn tokio::io::AsyncRead + Send + Unpin>);
        Ok(InteractiveExec {
            child,
            stdin: stdin_w,
            stdout,
            stderr,
            resize: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Mount, Process, Resources};

    fn sec(privileged: bool, add: &[&str], drop: &[&str]) -> Security {
        Security {
            privileged,
            cap_add: add.iter().map(|s| s.to_string()).collect(),
            cap_drop: drop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn computes_capabilities() {
        let cases: Vec<(Security, Vec<&str>)> = vec![
            (sec(false, &[], &[]), DEFAULT_CAPABILITIES.to_vec()),
            (sec(false, &[], &["ALL"]), vec![]),
            (sec(false, &["NET_ADMIN"], &["ALL"]), vec!["NET_ADMIN"]),
            (
                sec(false, &["CAP_SYS_TIME"], &["cap_chown", "KILL"]),
                DEFAULT_CAPABILITIES
                    .iter()
                    .copied()
                    .filter(|c| *c != "CHOWN" && *c != "KILL")
                    .chain(["SYS_TIME"])
                    .collect(),
            ),
            (sec(false, &["ALL"], &[]), ALL_CAPABILITIES.to_vec()),
            (sec(true, &[], &["ALL"]), ALL_CAPABILITIES.to_vec()),
        ];
        for (s, want) in cases {
            assert_eq!(capabilities(&s), want, "{s:?}");
        }
    }

    #[test]
    fn every_capability_name_parses() {
        for c in ALL_CAPABILITIES {
            let parsed: oci::Capability =
                serde_json::from_value(serde_json::Value::String(c.to_string())).unwrap();
            assert_eq!(serde_json::to_value(parsed).unwrap(), format!("CAP_{c}"));
        }
    }

    #[test]
    fn overlay_lists_topmost_first() {
        let layers = vec![
            PathBuf::from("/l/base"),
            PathBuf::from("/l/mid"),
            PathBuf::from("/l/top"),
        ];
        assert_eq!(
            overlay_options(&layers, Path::new("/b/upper"), Path::new("/b/work")),
            "lowerdir=/l/top:/l/mid:/l/base,upperdir=/b/upper,workdir=/b/work"
        );
    }

    #[test]
    fn cgroup_paths() {
        for (parent, want) in [
            ("/skiff/pod1", "/skiff/pod1/c"),
            ("/skiff/pod1/", "/skiff/pod1/c"),
            ("skiff/pod1", "/skiff/pod1/c"),
            ("", "/c"),
        ] {
            assert_eq!(cgroup_path(parent, "c"), want);
        }
    }

    #[test]
    fn rejects_bad_ids() {
        for (id, ok) in [
            ("abc-1_2.x", true),
            ("", false),
            ("../x", false),
            ("a/b", false),
            (".x", false),
        ] {
            assert_eq!(check_id(id).is_ok(), ok, "{id}");
        }
    }

    fn config(privileged: bool, host_network: bool) -> ContainerConfig {
        ContainerConfig {
            id: "c1".into(),
            sandbox: Sandbox {
                id: "s1".into(),
                netns: (!host_network).then(|| PathBuf::from("/s/ns/net")),
                ipc: "/s/ns/ipc".into(),
                uts: "/s/ns/uts".into(),
                labels: BTreeMap::new(),
                attempt: 0,
                ip: None,
            },
            labels: BTreeMap::from([("k".to_string(), "v".to_string())]),
            layers: vec!["/l/0".into()],
            process: Process {
                args: vec!["sh".into()],
                env: vec!["A=b".into()],
                cwd: String::new(),
                uid: 1000,
                gid: 1000,
                additional_gids: vec![5],
            },
            mounts: vec![Mount {
                destination: "/data".into(),
                source: "/host/data".into(),
                kind: "bind".into(),
                options: vec!["rbind".into(), "ro".into()],
            }],
            resources: Resources {
                cpu_shares: Some(512),
                cpu_quota: Some(50000),
                cpu_period: Some(100000),
                memory_limit: Some(1 << 20),
            },
            cgroup_parent: "/skiff/pod1".into(),
            security: Security {
                privileged,
                read_only_rootfs: true,
                no_new_privileges: true,
                ..Default::default()
            },
            log_path: "/logs/c1.log".into(),
            stdin: false,
            stdin_once: false,
        }
    }

    #[test]
    fn spec_has_what_runc_needs() {
        for (privileged, host_network) in [(false, false), (true, true)] {
            let spec = serde_json::to_value(build_spec(&config(privileged, host_network)).unwrap())
                .unwrap();
            let p = &spec["process"];
            assert_eq!(p["args"], serde_json::json!(["sh"]));
            assert_eq!(p["cwd"], "/");
            assert_eq!(p["env"][1], "A=b");
            assert!(p["env"][0].as_str().unwrap().starts_with("PATH="));
            assert_eq!(p["user"]["uid"], 1000);
            assert_eq!(p["user"]["additionalGids"], serde_json::json!([5]));
            assert_eq!(p["noNewPrivileges"], true);
            let caps = p["capabilities"]["bounding"].as_array().unwrap().len();
            assert_eq!(
                caps,
                if privileged {
                    ALL_CAPABILITIES.len()
                } else {
                    DEFAULT_CAPABILITIES.len()
                }
            );
            assert_eq!(spec["root"]["readonly"], true);
            let linux = &spec["linux"];
            assert_eq!(linux["cgroupsPath"], "/skiff/pod1/c1");
            assert_eq!(linux["resources"]["cpu"]["shares"], 512);
            assert_eq!(linux["resources"]["cpu"]["quota"], 50000);
            assert_eq!(linux["resources"]["memory"]["limit"], 1 << 20);
            let ns: Vec<(String, Option<String>)> = linux["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| {
                    (
                        n["type"].as_str().unwrap().to_string(),
                        n["path"].as_str().map(str::to_string),
                    )
                })
                .collect();
            let mut want = vec![
                ("pid".to_string(), None),
                ("mount".to_string(), None),
                ("ipc".to_string(), Some("/s/ns/ipc".to_string())),
                ("uts".to_string(), Some("/s/ns/uts".to_string())),
            ];
            if !host_network {
                want.push(("network".to_string(), Some("/s/ns/net".to_string())));
            }
            assert_eq!(ns, want);
            assert_eq!(linux["maskedPaths"].is_null(), privileged);
            assert_eq!(linux["readonlyPaths"].is_null(), privileged);
            let mounts = spec["mounts"].as_array().unwrap();
            let dests: Vec<&str> = mounts
                .iter()
                .map(|m| m["destination"].as_str().unwrap())
                .collect();
            assert_eq!(
                dests,
                [
                    "/proc",
                    "/dev",
                    "/dev/pts",
                    "/dev/shm",
                    "/dev/mqueue",
                    "/sys",
                    "/sys/fs/cgroup",
                    "/data"
                ]
            );
            let sys_ro = mounts[5]["options"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o == "ro");
            assert_eq!(sys_ro, !privileged);
            assert_eq!(spec["annotations"]["k"], "v");
        }
    }
}
