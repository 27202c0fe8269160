//! Built-in objects (the four namespaces, the `kubernetes` Service) and the
//! namespace controller: a `default` ServiceAccount in every namespace, and
//! a terminating namespace emptied, then removed.

use crate::Server;
use crate::error::ApiResult;
use crate::registry::{DeleteOptions, WriteOptions};
use serde_json::{Value, json};
use skiff_api::catalog::{self, RESOURCES};
use skiff_api::meta;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

/// The namespaces that exist from the start.
pub const BUILTIN_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

async fn create_if_absent(
    server: &Server,
    group: &str,
    resource: &str,
    ns: Option<&str>,
    obj: Value,
) -> ApiResult<()> {
    let r = catalog::lookup(group, "v1", resource).expect("built-in kind");
    let name = meta::name(&obj).to_string();
    if server.registry().get(r, ns, &name).await.is_ok() {
        return Ok(());
    }
    match server
        .registry()
        .create(r, ns, obj, &WriteOptions::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the built-in namespaces and the `kubernetes` Service and Endpoints.
pub async fn ensure_builtin(
    server: &Arc<Server>,
    kube_svc_ip: Ipv4Addr,
    cluster_dns: Option<Ipv4Addr>,
    port: u16,
    host: IpAddr,
) -> ApiResult<()> {
    for ns in BUILTIN_NAMESPACES {
        create_if_absent(
            server,
            "",
            "namespaces",
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    // Kubernetes' two built-in PriorityClasses.
    for (name, value, description) in [
        (
            "system-node-critical",
            2_000_001_000,
            "Used for system critical pods that must not be moved from their current node.",
        ),
        (
            "system-cluster-critical",
            2_000_000_000,
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        ),
    ] {
        create_if_absent(
            server,
            "scheduling.k8s.io",
            "priorityclasses",
            None,
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value, "globalDefault": false,
                "description": description, "preemptionPolicy": "PreemptLowerPriority"}),
        )
        .await?;
    }
    create_if_absent(
        server,
        "",
        "services",
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": kube_svc_ip.to_string(),
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}}),
    )
    .await?;
    if let Some(dns) = cluster_dns {
        // The cluster DNS address, as k3s' CoreDNS Service holds it; every node
        // answers on it itself, so no pods back it.
        create_if_absent(
            server,
            "",
            "services",
            Some("kube-system"),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns",
                    "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
                    "annotations": {"skiff.io/served-by": "every node's agent"}},
                "spec": {"type": "ClusterIP", "clusterIP": dns.to_string(),
                         "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                                   {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}}),
        )
        .await?;
    }
    let Some(advertise) = advertise_address(host) else {
        tracing::warn!(
            "no non-loopback address to advertise; the kubernetes Service has no endpoints"
        );
        return Ok(());
    };
    create_if_absent(
        server,
        "",
        "endpoints",
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": advertise.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}),
    )
    .await?;
    create_if_absent(
        server,
        "discovery.k8s.io",
        "endpointslices",
        Some("default"),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [advertise.to_string()], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}),
    )
    .await?;
    Ok(())
}

/// The address the `kubernetes` Service points at: the bind address, or when
/// that is loopback or unspecified, the machine's first non-loopback IPv4
/// address (Kubernetes rejects loopback endpoints).
pub fn advertise_address(bind: IpAddr) -> Option<IpAddr> {
    if !bind.is_loopback() && !bind.is_unspecified() {
        return Some(bind);
    }
    let trie = std::fs::read_to_string("/proc/net/fib_trie").ok()?;
    let lines: Vec<&str> = trie.lines().collect();
    for w in lines.windows(2) {
        if w[1].trim() == "/32 host LOCAL"
            && let Some(ip) = w[0].trim().strip_prefix("|-- ")
            && let Ok(ip) = ip.parse::<Ipv4Addr>()
            && !ip.is_loopback()
        {
            return Some(IpAddr::V4(ip));
        }
    }
    None
}

/// Runs the namespace controller until shutdown.
pub fn spawn_namespace_controller(
    server: Arc<Server>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let nsr = catalog::lookup("", "v1", "namespaces").expect("namespaces");
        let prefix = crate::registry::prefix(nsr, None);
        let mut sub = server
            .registry()
            .cache()
            .subscribe(server.registry().cache().revision())
            .ok();
        loop {
            if let Err(e) = reconcile(&server).await {
                tracing::warn!("namespace controller: {}", e.message);
            }
            let terminating = server
                .registry()
                .cache()
                .list(&prefix, None)
                .0
                .iter()
                .any(|o| meta::at(&o.value, &["metadata", "deletionTimestamp"]).is_some());
            // Wake on a namespace change, or soon again while one is terminating.
            let wait = if terminating {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(30)
            };
            let deadline = tokio::time::sleep(wait);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = &mut deadline => break,
                    ev = async {
                        match sub.as_mut() {
                            Some(s) => s.live.recv().await.ok(),
                            None => std::future::pending().await,
                        }
                    } => {
                        match ev {
                            Some(ev) if ev.obj.key.starts_with(&prefix) => break,
                            Some(_) => continue,
                            None => {
                                sub = server.registry().cache().subscribe(server.registry().cache().revision()).ok();
                                break;
                            }
                        }
                    }
                }
            }
        }
    });
}

async fn reconcile(server: &Server) -> ApiResult<()> {
    let reg = server.registry();
    let nsr = catalog::lookup("", "v1", "namespaces").expect("namespaces");
    let sar = catalog::lookup("", "v1", "serviceaccounts").expect("serviceaccounts");
    let (namespaces, _) = reg.list(nsr, None, None).await?;
    for ns in namespaces {
        let name = meta::name(&ns.value).to_string();
        if meta::at(&ns.value, &["metadata", "deletionTimestamp"]).is_none() {
            if reg.get(sar, Some(&name), "default").await.is_err() {
                let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}});
                match reg
                    .create(sar, Some(&name), sa, &WriteOptions::default())
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.code == 409 || e.code == 403 || e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            continue;
        }
        // Terminating: delete everything in it, then finalize.
        let mut remaining = 0;
        for r in RESOURCES
            .iter()
            .filter(|r| r.namespaced && r.storage_version)
        {
            let (objs, _) = reg.list(r, Some(&name), None).await?;
            for o in objs {
                remaining += 1;
                if meta::at(&o.value, &["metadata", "deletionTimestamp"]).is_some() {
                    continue;
                }
                match reg
                    .delete(
                        r,
                        Some(&name),
                        meta::name(&o.value),
                        &DeleteOptions::default(),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if remaining == 0 {
            finalize(server, &name).await?;
        }
    }
    Ok(())
}

/// Removes the `kubernetes` finalizer of an empty terminating namespace, which deletes it.
async fn finalize(server: &Server, name: &str) -> ApiResult<()> {
    let reg = server.registry();
    let nsr = catalog::lookup("", "v1", "namespaces").expect("namespaces");
    let Ok(cur) = reg.get(nsr, None, name).await else {
        return Ok(());
    };
    let mut new = cur.value.clone();
    meta::set(&mut new, &["spec", "finalizers"], json!([]));
    match reg
        .update(
            nsr,
            None,
            name,
            Some("finalize"),
            new,
            &WriteOptions::default(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
