//! What a pod learns about the network from its files and environment:
//! `/etc/resolv.conf` by dnsPolicy, `/etc/hosts` as the kubelet writes it, and
//! the Service environment variables (`WEB_SERVICE_HOST`, …).

use k8s_openapi::api::core::v1::{PodSpec, Service};
use std::net::Ipv4Addr;

/// The cluster DNS a pod may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// `--cluster-dns`.
    pub server: Ipv4Addr,
    /// `--cluster-domain`.
    pub domain: String,
}

/// Kubernetes' limits on a pod's resolv.conf.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// A resolv.conf, parsed into what Kubernetes combines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines.
    pub nameservers: Vec<String>,
    /// The `search` list.
    pub searches: Vec<String>,
    /// `options`, e.g. "ndots:5".
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Reads the text of a resolv.conf (the last `search` line wins, as in libc).
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => out.nameservers.extend(words.next().map(str::to_string)),
                Some("search") | Some("domain") => {
                    out.searches = words.map(str::to_string).collect();
                }
                Some("options") => out.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        out
    }

    /// The file, written as container runtimes write it.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if !self.searches.is_empty() {
            s.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for ns in &self.nameservers {
            s.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            s.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        s
    }
}

/// A warning the kubelet records as an event on the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsWarning {
    /// Event reason.
    pub reason: &'static str,
    /// Event message.
    pub message: String,
}

/// The pod's resolv.conf from its dnsPolicy and dnsConfig, the node's own
/// resolv.conf, and the cluster DNS (None when the cluster has none).
pub fn resolv_conf(
    spec: &PodSpec,
    namespace: &str,
    cluster: Option<&ClusterDns>,
    host: &ResolvConf,
) -> (ResolvConf, Option<DnsWarning>) {
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let wants_cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut warning = None;
    let mut conf = match (policy, wants_cluster, cluster) {
        ("None", _, _) => ResolvConf::default(),
        (_, true, Some(c)) => {
            let mut searches = vec![
                format!("{namespace}.svc.{}", c.domain),
                format!("svc.{}", c.domain),
                c.domain.clone(),
            ];
            searches.extend(host.searches.iter().cloned());
            ResolvConf {
                nameservers: vec![c.server.to_string()],
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        (_, true, None) => {
            warning = Some(DnsWarning {
                reason: "MissingClusterDNS",
                message: format!(
                    "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"{policy}\" policy. Falling back to \"Default\" policy."
                ),
            });
            host.clone()
        }
        _ => host.clone(),
    };
    if let Some(dc) = &spec.dns_config {
        for ns in dc.nameservers.iter().flatten() {
            if !conf.nameservers.contains(ns) {
                conf.nameservers.push(ns.clone());
            }
        }
        for s in dc.searches.iter().flatten() {
            if !conf.searches.contains(s) {
                conf.searches.push(s.clone());
            }
        }
        for o in dc.options.iter().flatten() {
            let rendered = match &o.value {
                Some(v) => format!("{}:{v}", o.name.as_deref().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            };
            let name = o.name.clone().unwrap_or_default();
            conf.options
                .retain(|x| x.split(':').next() != Some(name.as_str()));
            conf.options.push(rendered);
        }
    }
    conf.nameservers.truncate(MAX_NAMESERVERS);
    conf.searches.truncate(MAX_SEARCHES);
    (conf, warning)
}

/// The kubelet's managed /etc/hosts: localhost entries, the pod's own name
/// (fully qualified when it sets a subdomain), then hostAliases.
pub fn hosts_file(
    spec: &PodSpec,
    namespace: &str,
    hostname: &str,
    pod_ip: Option<Ipv4Addr>,
    domain: &str,
    host_hosts: &str,
) -> String {
    let mut h = if spec.host_network.unwrap_or(false) {
        host_hosts.to_string()
    } else {
        let mut h = String::from(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
        );
        if let Some(ip) = pod_ip {
            match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => h.push_str(&format!(
                    "{ip}\t{hostname}.{sub}.{namespace}.svc.{domain}\t{hostname}\n"
                )),
                None => h.push_str(&format!("{ip}\t{hostname}\n")),
            }
        }
        h
    };
    let aliases = spec.host_aliases.as_deref().unwrap_or_default();
    if !aliases.is_empty() {
        h.push_str("\n# Entries added by HostAliases.\n");
        for ha in aliases {
            h.push_str(&format!(
                "{}\t{}\n",
                ha.ip,
                ha.hostnames.clone().unwrap_or_default().join("\t")
            ));
        }
    }
    h
}

/// The Service environment variables of a pod (enableServiceLinks): for
/// each Service of its namespace with a cluster IP, and always for
/// `default/kubernetes`, `NAME_SERVICE_HOST`, `NAME_SERVICE_PORT`,
/// `NAME_SERVICE_PORT_<PORTNAME>` and the Docker link variables.
pub fn service_env(services: &[Service], namespace: &str, links: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chosen: Vec<&Service> = services
        .iter()
        .filter(|s| {
            let ns = s.metadata.namespace.as_deref().unwrap_or_default();
            let name = s.metadata.name.as_deref().unwrap_or_default();
            (ns == namespace && links) || (ns == "default" && name == "kubernetes")
        })
        .collect();
    chosen.sort_by_key(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()));
    chosen.dedup_by_key(|s| s.metadata.name.clone());
    for svc in chosen {
        let Some(spec) = &svc.spec else { continue };
        let ip = spec.cluster_ip.as_deref().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let prefix = env_name(svc.metadata.name.as_deref().unwrap_or_default());
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in ports {
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name(n)),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        out.push((
            format!("{prefix}_PORT"),
            format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
        ));
        for p in ports {
            let pr = proto(p);
            let base = format!("{prefix}_PORT_{}_{}", p.port, pr.to_uppercase());
            out.push((
                base.clone(),
                format!("{}://{ip}:{}", pr.to_lowercase(), p.port),
            ));
            out.push((format!("{base}_PROTO"), pr.to_lowercase()));
            out.push((format!("{base}_PORT"), p.port.to_string()));
            out.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    out
}

fn env_name(s: &str) -> String {
    s.to_uppercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(mut v: serde_json::Value) -> PodSpec {
        v["containers"] = json!([{"name": "c"}]);
        serde_json::from_value(v).unwrap()
    }

    fn cluster() -> ClusterDns {
        ClusterDns {
            server: Ipv4Addr::new(10, 43, 0, 10),
            domain: "cluster.local".into(),
        }
    }

    fn host() -> ResolvConf {
        ResolvConf::parse("# host\nnameserver 10.255.255.53\nsearch corp.example\noptions edns0\n")
    }

    #[test]
    fn resolv_conf_follows_dns_policy() {
        let cases = [
            (
                json!({}),
                "search web.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.43.0.10\noptions ndots:5\n",
            ),
            (
                json!({"dnsPolicy": "ClusterFirst", "hostNetwork": true}),
                "search corp.example\nnameserver 10.255.255.53\noptions edns0\n",
            ),
            (
                json!({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": true}),
                "search web.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.43.0.10\noptions ndots:5\n",
            ),
            (
                json!({"dnsPolicy": "Default"}),
                "search corp.example\nnameserver 10.255.255.53\noptions edns0\n",
            ),
            (
                json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.2.3.4"], "searches": ["ns1.svc.cluster-domain.example"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}),
                "search ns1.svc.cluster-domain.example\nnameserver 1.2.3.4\noptions ndots:2 edns0\n",
            ),
            (
                json!({"dnsConfig": {"nameservers": ["10.43.0.10", "9.9.9.9"], "options": [{"name": "ndots", "value": "1"}]}}),
                "search web.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.43.0.10\nnameserver 9.9.9.9\noptions ndots:1\n",
            ),
        ];
        for (s, want) in cases {
            let (conf, warning) = resolv_conf(&spec(s.clone()), "web", Some(&cluster()), &host());
            assert_eq!(conf.render(), want, "{s}");
            assert!(warning.is_none());
        }
    }

    #[test]
    fn cluster_first_without_cluster_dns_falls_back_with_a_warning() {
        let (conf, warning) = resolv_conf(&spec(json!({})), "web", None, &host());
        assert_eq!(conf, host());
        let w = warning.expect("warning");
        assert_eq!(w.reason, "MissingClusterDNS");
        assert_eq!(
            w.message,
            "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy."
        );
    }

    #[test]
    fn hosts_file_names_the_pod_and_its_aliases() {
        let s = spec(
            json!({"hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}]}),
        );
        let h = hosts_file(
            &s,
            "default",
            "web-1",
            Some(Ipv4Addr::new(10, 42, 0, 7)),
            "cluster.local",
            "",
        );
        assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(h.contains("fe00::2\tip6-allrouters\n10.42.0.7\tweb-1\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n"), "{h}");
        let sts = spec(json!({"hostname": "db-0", "subdomain": "db"}));
        let h = hosts_file(
            &sts,
            "default",
            "db-0",
            Some(Ipv4Addr::new(10, 42, 1, 4)),
            "cluster.local",
            "",
        );
        assert!(
            h.ends_with("10.42.1.4\tdb-0.db.default.svc.cluster.local\tdb-0\n"),
            "{h}"
        );
        let hn = spec(json!({"hostNetwork": true}));
        assert_eq!(
            hosts_file(
                &hn,
                "default",
                "n",
                None,
                "cluster.local",
                "127.0.0.1 localhost\n"
            ),
            "127.0.0.1 localhost\n"
        );
    }

    #[test]
    fn service_env_as_the_kubelet_sets_it() {
        let svc = |ns: &str, name: &str, ip: &str, ports: serde_json::Value| -> Service {
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns},
                "spec": {"clusterIP": ip, "ports": ports}}))
            .unwrap()
        };
        let services = [
            svc(
                "default",
                "kubernetes",
                "10.43.0.1",
                json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
            ),
            svc(
                "shop",
                "web-front",
                "10.43.0.20",
                json!([{"name": "http", "port": 80}, {"port": 53, "protocol": "UDP"}]),
            ),
            svc("shop", "db", "None", json!([{"port": 5432}])),
            svc("other", "x", "10.43.0.30", json!([{"port": 1}])),
        ];
        let env: std::collections::BTreeMap<String, String> =
            service_env(&services, "shop", true).into_iter().collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.43.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://10.43.0.1:443");
        assert_eq!(env["WEB_FRONT_SERVICE_HOST"], "10.43.0.20");
        assert_eq!(env["WEB_FRONT_SERVICE_PORT_HTTP"], "80");
        assert_eq!(env["WEB_FRONT_PORT_53_UDP"], "udp://10.43.0.20:53");
        assert_eq!(env["WEB_FRONT_PORT_53_UDP_PROTO"], "udp");
        assert_eq!(env["WEB_FRONT_PORT_80_TCP_ADDR"], "10.43.0.20");
        assert!(
            !env.keys()
                .any(|k| k.starts_with("DB_") || k.starts_with("X_"))
        );
        let only_master = service_env(&services, "shop", false);
        assert!(
            only_master
                .iter()
                .all(|(k, _)| k.starts_with("KUBERNETES_"))
        );
    }
}
