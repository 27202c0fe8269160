//! The Node object and its Lease: registration from what the machine has,
//! conditions, and the 10-second heartbeat in `kube-node-lease`.

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// The kubelet version skiff reports.
pub const KUBELET_VERSION: &str = "v1.32.0+skiff";

/// What the machine offers, read once at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// CPUs.
    pub cpus: u64,
    /// Memory in KiB.
    pub memory_kib: u64,
    /// Size of the filesystem holding the data dir, in bytes.
    pub ephemeral_storage: u64,
    /// Kernel release.
    pub kernel: String,
    /// PRETTY_NAME from /etc/os-release.
    pub os_image: String,
    /// machine-id.
    pub machine_id: String,
    /// boot id.
    pub boot_id: String,
    /// Architecture as Kubernetes names it (amd64, arm64).
    pub arch: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Machine {
    /// Reads the machine's facts from /proc, /etc and the data dir's filesystem.
    pub fn read(data_dir: &Path) -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1);
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0);
        let ephemeral_storage = nix::sys::statvfs::statvfs(data_dir)
            .map(|s| s.blocks() * s.fragment_size())
            .unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        }
        .to_string();
        Self {
            cpus,
            memory_kib,
            ephemeral_storage,
            kernel: read("/proc/sys/kernel/osrelease"),
            os_image,
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            arch,
        }
    }
}

/// How the node describes itself.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node name.
    pub name: String,
    /// Address other nodes and the server reach it at.
    pub address: String,
    /// Roles, as `node-role.kubernetes.io/<role>` labels.
    pub roles: Vec<String>,
    /// The runtime's version ("runc://1.1.5"), or why it cannot run.
    pub runtime: Result<String, String>,
    /// The port of the node's kubelet endpoint (logs, exec, port-forward).
    pub kubelet_port: u16,
    /// The pod network, whose readiness the Ready condition reports (None: not managed here).
    pub network: Option<std::sync::Arc<crate::network::PodNetwork>>,
}

/// The status part of the Node: capacity, conditions, addresses, info.
pub fn node_status(
    machine: &Machine,
    config: &NodeConfig,
    now: Timestamp,
    previous: Option<&Value>,
) -> Value {
    let capacity = json!({
        "cpu": machine.cpus.to_string(),
        "memory": format!("{}Ki", machine.memory_kib),
        "ephemeral-storage": format!("{}", machine.ephemeral_storage),
        "pods": "110",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    });
    let now_s = now.round(jiff::Unit::Second).unwrap_or(now).to_string();
    let network = config.network.as_ref().map_or(Ok(()), |n| n.ready());
    let (ready, ready_reason, ready_message) = match &config.runtime {
        Ok(_) if network.is_err() => (
            "False",
            "KubeletNotReady",
            network.clone().err().unwrap_or_default(),
        ),
        Ok(_) => (
            "True",
            "KubeletReady",
            "kubelet is posting ready status".to_string(),
        ),
        Err(why) => (
            "False",
            "KubeletNotReady",
            format!("container runtime is down: {why}"),
        ),
    };
    let cond = |type_: &str, status: &str, reason: &str, message: &str| {
        // Keep lastTransitionTime while the status holds.
        let transition = previous
            .and_then(|p| p["conditions"].as_array())
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
            .filter(|c| c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_string))
            .unwrap_or_else(|| now_s.clone());
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now_s, "lastTransitionTime": transition})
    };
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", ready, ready_reason, &ready_message),
        ],
        "addresses": [
            {"type": "InternalIP", "address": config.address},
            {"type": "Hostname", "address": config.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": config.kubelet_port}},
        "nodeInfo": {
            "machineID": machine.machine_id,
            "systemUUID": machine.machine_id,
            "bootID": machine.boot_id,
            "kernelVersion": machine.kernel,
            "osImage": machine.os_image,
            "containerRuntimeVersion": config.runtime.clone().unwrap_or_else(|_| "runc://unavailable".into()),
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": machine.arch,
        },
    })
}

/// The Node object registered at start.
pub fn node_object(machine: &Machine, config: &NodeConfig) -> Value {
    let mut labels = json!({
        "kubernetes.io/hostname": config.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": machine.arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": machine.arch,
    });
    for r in &config.roles {
        labels[format!("node-role.kubernetes.io/{r}")] = json!("true");
    }
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": config.name, "labels": labels}, "spec": {}})
}

/// Why registration or a heartbeat failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The API refused or could not be reached.
    #[error("node {name}: {source}")]
    Api {
        /// Node name.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// Registers the node (creating it or refreshing its labels) and posts its status.
pub async fn register(
    client: &kube::Client,
    machine: &Machine,
    config: &NodeConfig,
) -> Result<(), NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let err = |source| NodeError::Api {
        name: config.name.clone(),
        source,
    };
    let obj: Node = serde_json::from_value(node_object(machine, config)).expect("valid node");
    match nodes.create(&PostParams::default(), &obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let labels = node_object(machine, config)["metadata"]["labels"].clone();
            nodes
                .patch(
                    &config.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": labels}})),
                )
                .await
                .map_err(err)?;
        }
        Err(e) => return Err(err(e)),
    }
    post_status(client, machine, config).await
}

/// Posts the node's status (conditions with a fresh heartbeat).
pub async fn post_status(
    client: &kube::Client,
    machine: &Machine,
    config: &NodeConfig,
) -> Result<(), NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let err = |source| NodeError::Api {
        name: config.name.clone(),
        source,
    };
    let current = nodes.get_status(&config.name).await.map_err(err)?;
    let prev = current
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok());
    let status = node_status(machine, config, Timestamp::now(), prev.as_ref());
    nodes
        .patch_status(
            &config.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .map_err(err)?;
    Ok(())
}

/// Creates or renews the node's Lease in kube-node-lease.
pub async fn renew_lease(
    client: &kube::Client,
    node: &str,
    duration: Duration,
) -> Result<(), NodeError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let err = |source| NodeError::Api {
        name: node.to_string(),
        source,
    };
    let now = Timestamp::now().to_string();
    let renew = json!({"spec": {"holderIdentity": node, "leaseDurationSeconds": duration.as_secs(), "renewTime": micro(&now)}});
    match leases
        .patch(node, &PatchParams::default(), &Patch::Merge(renew.clone()))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let mut lease = renew;
            lease["metadata"] = json!({"name": node, "namespace": "kube-node-lease",
                "ownerReferences": []});
            let lease: Lease = serde_json::from_value(lease).expect("valid lease");
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map_err(err)?;
            Ok(())
        }
        Err(e) => Err(err(e)),
    }
}

/// A timestamp in MicroTime form (6 fractional digits), as Lease renewTime uses.
fn micro(ts: &str) -> String {
    let t: Timestamp = ts.parse().unwrap_or_else(|_| Timestamp::now());
    let secs = t.as_second();
    let micros = t.subsec_microsecond();
    let base = Timestamp::from_second(secs).unwrap_or(t).to_string();
    format!("{}.{micros:06}Z", base.trim_end_matches('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            cpus: 2,
            memory_kib: 24_000_000,
            ephemeral_storage: 100_000_000_000,
            kernel: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            arch: "amd64".into(),
        }
    }

    #[test]
    fn ready_node_reports_kubelet_ready_and_capacity() {
        let cfg = NodeConfig {
            name: "n1".into(),
            address: "10.0.0.5".into(),
            roles: vec!["control-plane".into()],
            runtime: Ok("runc://1.1.5".into()),
            kubelet_port: 10250,
            network: None,
        };
        let s = node_status(&machine(), &cfg, Timestamp::now(), None);
        assert_eq!(s["capacity"]["cpu"], "2");
        assert_eq!(s["capacity"]["memory"], "24000000Ki");
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
        let obj = node_object(&machine(), &cfg);
        assert_eq!(
            obj["metadata"]["labels"]["node-role.kubernetes.io/control-plane"],
            "true"
        );
    }

    #[test]
    fn node_without_runtime_is_not_ready_and_says_why() {
        let cfg = NodeConfig {
            name: "n1".into(),
            address: "10.0.0.5".into(),
            roles: vec![],
            runtime: Err("runc not found in PATH".into()),
            kubelet_port: 10250,
            network: None,
        };
        let s = node_status(&machine(), &cfg, Timestamp::now(), None);
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "False");
        assert_eq!(
            ready["message"],
            "container runtime is down: runc not found in PATH"
        );
    }

    #[test]
    fn transition_time_is_kept_while_status_holds() {
        let cfg = NodeConfig {
            name: "n1".into(),
            address: "a".into(),
            roles: vec![],
            runtime: Ok("runc://1".into()),
            kubelet_port: 10250,
            network: None,
        };
        let t0: Timestamp = "2026-11-28T05:00:00Z".parse().unwrap();
        let first = node_status(&machine(), &cfg, t0, None);
        let t1: Timestamp = "2026-11-28T05:10:00Z".parse().unwrap();
        let second = node_status(&machine(), &cfg, t1, Some(&first));
        let ready = second["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["lastTransitionTime"], "2026-11-28T05:00:00Z");
        assert_eq!(ready["lastHeartbeatTime"], "2026-11-28T05:10:00Z");
        assert_eq!(
            micro("2026-11-28T05:10:00.5Z"),
            "2026-11-28T05:10:00.500000Z"
        );
    }
}
