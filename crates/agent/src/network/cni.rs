//! Pod network attachment through CNI plugins, executed per the CNI 1.0 spec.
//!
//! The node's network is one bridge (`cni0`) with host-local addresses from
//! the node's pod CIDR and `portmap` for hostPorts, the plugins of Debian's
//! `containernetworking-plugins`. Each plugin is an executable: its
//! configuration on stdin, `CNI_*` variables in its environment, its result
//! (or a JSON error) on stdout. ADD runs the list in order, each plugin given
//! the previous one's result; DEL runs it in reverse, given the result ADD
//! returned, which the runtime keeps with the sandbox.

use serde_json::{Value, json};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// The CNI version skiff speaks to plugins.
pub const CNI_VERSION: &str = "1.0.0";

/// Where Debian and the CNI project install plugins.
pub const DEFAULT_BIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];

/// A hostPort mapping, as the portmap plugin's `portMappings` capability takes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// The port on the node.
    pub host_port: u16,
    /// The port in the pod.
    pub container_port: u16,
    /// "tcp", "udp" or "sctp".
    pub protocol: String,
    /// The node address to bind, empty for all.
    pub host_ip: String,
}

/// Who the attachment is for, passed to plugins in `CNI_ARGS` as the kubelet does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRef {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod uid.
    pub uid: String,
}

/// Why a CNI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// No executable for a plugin type in any plugin directory.
    #[error("failed to find plugin {plugin:?} in path {path:?}")]
    PluginNotFound {
        /// The plugin type.
        plugin: String,
        /// The directories searched.
        path: Vec<PathBuf>,
    },
    /// A plugin ran and reported an error.
    #[error("plugin type={plugin:?} failed ({command}): {message}")]
    Plugin {
        /// The plugin type.
        plugin: String,
        /// ADD or DEL.
        command: &'static str,
        /// The plugin's message (its JSON error's msg and details, or its stderr).
        message: String,
    },
    /// The plugin could not be run or its output read.
    #[error("running plugin {plugin:?}: {source}")]
    Io {
        /// The plugin type.
        plugin: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The bridge network of one node.
#[derive(Debug, Clone)]
pub struct BridgeNetwork {
    /// The network's name ("skiff").
    pub name: String,
    /// The bridge device ("cni0").
    pub bridge: String,
    /// The node's pod CIDR: addresses come from here, the bridge takes the first.
    pub subnet: (Ipv4Addr, u8),
    /// host-local's state directory (allocated addresses).
    pub ipam_dir: PathBuf,
    /// MTU of the pod interfaces; None lets the plugin choose.
    pub mtu: Option<u32>,
    /// Directories searched for plugin executables.
    pub bin_dirs: Vec<PathBuf>,
}

impl BridgeNetwork {
    /// The network configuration list, as a file in `/etc/cni/net.d` would hold it.
    pub fn conflist(&self) -> Value {
        let (ip, bits) = self.subnet;
        let mut bridge = json!({
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            // Masquerading is the agent's (pods reach other nodes' pods unmasqueraded).
            "ipMasq": false,
            // A pod reaching itself through a Service comes back over its own port.
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": format!("{ip}/{bits}")}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.ipam_dir,
            }
        });
        if let Some(mtu) = self.mtu {
            bridge["mtu"] = json!(mtu);
        }
        json!({
            "cniVersion": CNI_VERSION,
            "name": self.name,
            "plugins": [
                bridge,
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            ]
        })
    }

    /// The bridge's own address: the subnet's first, the pods' gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.0) + 1)
    }

    /// Attaches the network namespace `netns` of sandbox `id`; returns the CNI result.
    pub async fn add(
        &self,
        id: &str,
        netns: &Path,
        pod: &PodRef,
        ports: &[PortMapping],
    ) -> Result<Value, CniError> {
        let list = self.conflist();
        let plugins = list["plugins"].as_array().cloned().unwrap_or_default();
        let mut prev: Option<Value> = None;
        for (i, plugin) in plugins.iter().enumerate() {
            let conf = plugin_config(&list, plugin, prev.as_ref(), ports);
            match self.exec("ADD", id, Some(netns), pod, &conf).await {
                Ok(result) => prev = Some(result),
                Err(e) => {
                    // Undo what the earlier plugins did, as a runtime must.
                    for undo in plugins[..i].iter().rev() {
                        let conf = plugin_config(&list, undo, prev.as_ref(), ports);
                        let _ = self.exec("DEL", id, Some(netns), pod, &conf).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// Detaches sandbox `id`, releasing its address and port mappings. `netns` may
    /// be gone already (plugins then release what they still hold); `prev` is the
    /// result ADD returned.
    pub async fn del(
        &self,
        id: &str,
        netns: Option<&Path>,
        pod: &PodRef,
        prev: Option<&Value>,
        ports: &[PortMapping],
    ) -> Result<(), CniError> {
        let list = self.conflist();
        let plugins = list["plugins"].as_array().cloned().unwrap_or_default();
        let mut first_err = None;
        for plugin in plugins.iter().rev() {
            let conf = plugin_config(&list, plugin, prev, ports);
            if let Err(e) = self.exec("DEL", id, netns, pod, &conf).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn plugin_path(&self, kind: &str) -> Result<PathBuf, CniError> {
        self.bin_dirs
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.is_file())
            .ok_or_else(|| CniError::PluginNotFound {
                plugin: kind.to_string(),
                path: self.bin_dirs.clone(),
            })
    }

    async fn exec(
        &self,
        command: &'static str,
        id: &str,
        netns: Option<&Path>,
        pod: &PodRef,
        conf: &Value,
    ) -> Result<Value, CniError> {
        let kind = conf["type"].as_str().unwrap_or_default().to_string();
        let path = self.plugin_path(&kind)?;
        let io = |source| CniError::Io {
            plugin: kind.clone(),
            source,
        };
        let cni_path =
            std::env::join_paths(&self.bin_dirs).map_err(|e| io(std::io::Error::other(e)))?;
        let mut cmd = tokio::process::Command::new(&path);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns.map(Path::as_os_str).unwrap_or_default())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", cni_path)
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={id};K8S_POD_UID={}",
                    pod.namespace, pod.name, pod.uid
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(io)?;
        let input = serde_json::to_vec(conf).expect("JSON");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&input).await.map_err(io)?;
        }
        let out = child.wait_with_output().await.map_err(io)?;
        if !out.status.success() {
            return Err(CniError::Plugin {
                plugin: kind,
                command,
                message: plugin_error(&out.stdout, &out.stderr),
            });
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout).map_err(|e| CniError::Plugin {
            plugin: kind,
            command,
            message: format!("unreadable result: {e}"),
        })
    }
}

/// One plugin's stdin: its own configuration plus the list's name and
/// version, the previous result, and the runtime values of the capabilities it declares.
fn plugin_config(
    list: &Value,
    plugin: &Value,
    prev: Option<&Value>,
    ports: &[PortMapping],
) -> Value {
    let mut conf = plugin.clone();
    let obj = conf.as_object_mut().expect("plugin config is an object");
    obj.remove("capabilities");
    obj.insert("cniVersion".into(), list["cniVersion"].clone());
    obj.insert("name".into(), list["name"].clone());
    if let Some(p) = prev.filter(|p| !p.is_null()) {
        obj.insert("prevResult".into(), p.clone());
    }
    if plugin["capabilities"]["portMappings"] == true && !ports.is_empty() {
        let mappings: Vec<Value> = ports
            .iter()
            .map(|p| {
                json!({"hostPort": p.host_port, "containerPort": p.container_port,
                       "protocol": p.protocol, "hostIP": p.host_ip})
            })
            .collect();
        obj.insert("runtimeConfig".into(), json!({"portMappings": mappings}));
    }
    conf
}

/// A plugin's failure in words: its JSON error (msg: details), else its output.
fn plugin_error(stdout: &[u8], stderr: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(stdout)
        && let Some(msg) = v["msg"].as_str()
    {
        return match v["details"].as_str().filter(|d| !d.is_empty()) {
            Some(d) => format!("{msg}: {d}"),
            None => msg.to_string(),
        };
    }
    let text = String::from_utf8_lossy(if stderr.is_empty() { stdout } else { stderr });
    text.trim().to_string()
}

/// The pod's IPv4 address from a CNI result (the first address on the container's interface).
pub fn result_ip(result: &Value) -> Option<Ipv4Addr> {
    let ifaces = result["interfaces"].as_array();
    result["ips"].as_array()?.iter().find_map(|ip| {
        // Prefer an address on a sandbox interface (one with a netns), as the kubelet does.
        let on_sandbox = match (ip["interface"].as_u64(), ifaces) {
            (Some(i), Some(ifs)) => ifs
                .get(i as usize)
                .is_some_and(|f| f["sandbox"].as_str().is_some_and(|s| !s.is_empty())),
            _ => true,
        };
        let addr = ip["address"].as_str()?;
        let ip: Ipv4Addr = addr.split('/').next()?.parse().ok()?;
        on_sandbox.then_some(ip)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> BridgeNetwork {
        BridgeNetwork {
            name: "skiff".into(),
            bridge: "cni0".into(),
            subnet: (Ipv4Addr::new(10, 42, 3, 0), 24),
            ipam_dir: PathBuf::from("/var/lib/skiff/agent/cni/networks"),
            mtu: None,
            bin_dirs: vec![PathBuf::from("/usr/lib/cni")],
        }
    }

    #[test]
    fn conflist_is_a_bridge_on_the_node_cidr_with_portmap() {
        let list = net().conflist();
        assert_eq!(list["cniVersion"], "1.0.0");
        let bridge = &list["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "cni0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.42.3.0/24");
        assert_eq!(
            bridge["ipam"]["dataDir"],
            "/var/lib/skiff/agent/cni/networks"
        );
        assert_eq!(list["plugins"][1]["type"], "portmap");
        assert_eq!(net().gateway(), Ipv4Addr::new(10, 42, 3, 1));
    }

    #[test]
    fn plugin_config_carries_name_version_prev_result_and_port_mappings() {
        let list = net().conflist();
        let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.42.3.7/24"}]});
        let ports = [PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: String::new(),
        }];
        let first = plugin_config(&list, &list["plugins"][0], None, &ports);
        assert_eq!(first["name"], "skiff");
        assert_eq!(first["cniVersion"], "1.0.0");
        assert!(first.get("prevResult").is_none());
        assert!(
            first.get("runtimeConfig").is_none(),
            "bridge declares no capability"
        );
        let pm = plugin_config(&list, &list["plugins"][1], Some(&prev), &ports);
        assert_eq!(pm["prevResult"], prev);
        assert!(pm.get("capabilities").is_none());
        assert_eq!(
            pm["runtimeConfig"]["portMappings"][0],
            json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""})
        );
        let none = plugin_config(&list, &list["plugins"][1], Some(&prev), &[]);
        assert!(none.get("runtimeConfig").is_none());
    }

    #[test]
    fn result_ip_takes_the_sandbox_interface_address() {
        let result = json!({
            "interfaces": [
                {"name": "cni0", "mac": "aa"},
                {"name": "veth1", "mac": "bb"},
                {"name": "eth0", "mac": "cc", "sandbox": "/var/run/netns/x"}
            ],
            "ips": [{"interface": 2, "address": "10.42.3.7/24", "gateway": "10.42.3.1"}]
        });
        assert_eq!(result_ip(&result), Some(Ipv4Addr::new(10, 42, 3, 7)));
        let host_only = json!({"interfaces": [{"name": "cni0"}], "ips": [{"interface": 0, "address": "10.42.3.1/24"}]});
        assert_eq!(result_ip(&host_only), None);
        assert_eq!(
            result_ip(&json!({"ips": [{"address": "10.1.2.3/16"}]})),
            Some(Ipv4Addr::new(10, 1, 2, 3))
        );
    }

    #[test]
    fn plugin_errors_read_as_the_plugin_wrote_them() {
        let e = plugin_error(
            br#"{"cniVersion":"1.0.0","code":11,"msg":"failed to allocate for range 0","details":"no IP addresses available in range set"}"#,
            b"",
        );
        assert_eq!(
            e,
            "failed to allocate for range 0: no IP addresses available in range set"
        );
        assert_eq!(plugin_error(b"", b"boom\n"), "boom");
    }
}
