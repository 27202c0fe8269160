//! The `kubernetes` Service's endpoints: every live server of the cluster,
//! as kube-apiserver's lease endpoint reconciler keeps them.
//!
//! Each server renews a lease under `/masterleases/<ip>` in the datastore
//! (every [`INTERVAL`], good for [`TTL`]) and then writes the `kubernetes`
//! Endpoints and EndpointSlice in `default` to hold the addresses of the
//! servers whose leases are live, when they differ. A server that stops
//! cleanly removes its lease and itself from the endpoints at once; one that
//! dies drops out when its lease runs out. In-cluster clients (through the
//! Service's cluster IP) then reach only servers that answer.
//!
//! Kubernetes assumes every server listens on one port; the endpoints use
//! the Service's target port, and a server on another port is left out (it
//! says so).

use crate::Server;
use crate::error::{ApiError, ApiResult};
use crate::registry::WriteOptions;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use skiff_api::catalog;
use skiff_store::StoreError;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often a server renews its lease and reconciles the endpoints
/// (kube-apiserver's endpoint reconciler interval).
pub const INTERVAL: Duration = Duration::from_secs(10);
/// How long a lease stays live without renewal (kube-apiserver's master lease TTL).
pub const TTL: Duration = Duration::from_secs(15);

/// A server's lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerLease {
    /// The address the server advertises.
    pub ip: IpAddr,
    /// Its HTTPS port.
    pub port: u16,
    /// When it last renewed.
    pub renew_time: jiff::Timestamp,
    /// How long the lease lasts after `renew_time`.
    pub ttl_seconds: u64,
}

fn lease_key(ip: IpAddr) -> String {
    format!("/masterleases/{ip}")
}

/// The addresses the endpoints hold: the live leases on `port`, sorted.
pub fn live_addresses(leases: &[PeerLease], port: u16, now: jiff::Timestamp) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = leases
        .iter()
        .filter(|l| l.port == port)
        .filter(|l| {
            let expiry = l
                .renew_time
                .checked_add(jiff::SignedDuration::from_secs(l.ttl_seconds as i64))
                .unwrap_or(l.renew_time);
            expiry > now
        })
        .map(|l| l.ip)
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Renews this server's lease (creating it when absent).
async fn renew(server: &Server, me: &PeerLease) -> Result<(), StoreError> {
    let store = server.registry().store();
    let key = lease_key(me.ip);
    let value = bytes::Bytes::from(serde_json::to_vec(me).expect("plain fields serialise"));
    match store.get(&key).await? {
        None => match store.create(&key, value).await {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        },
        Some(kv) => match store.update(&key, value, kv.mod_revision).await {
            // Another server on this address renewed at the same moment.
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        },
    }
}

async fn leases(server: &Server) -> Result<Vec<PeerLease>, StoreError> {
    let (items, _) = server.registry().store().list("/masterleases/").await?;
    Ok(items
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect())
}

/// The `kubernetes` Service's target port.
async fn service_port(server: &Server) -> ApiResult<Option<u16>> {
    let services = catalog::lookup("", "v1", "services").expect("services");
    let svc = server
        .registry()
        .get(services, Some("default"), "kubernetes")
        .await?;
    Ok(svc.value["spec"]["ports"][0]["targetPort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok()))
}

/// Writes the `kubernetes` Endpoints and EndpointSlice to hold `ips` on
/// `port`, where they hold anything else.
async fn write_endpoints(server: &Server, ips: &[IpAddr], port: u16) -> ApiResult<()> {
    let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    let subsets = if ips.is_empty() {
        json!([])
    } else {
        json!([{"addresses": addresses,
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}])
    };
    let endpoints: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
        .collect();
    for (group, resource, field, want) in [
        ("", "endpoints", "subsets", subsets),
        (
            "discovery.k8s.io",
            "endpointslices",
            "endpoints",
            json!(endpoints),
        ),
    ] {
        let r = catalog::lookup(group, "v1", resource).expect("built-in kind");
        // Another server may write it at the same moment: read again and retry.
        for attempt in 0.. {
            let current = match server
                .registry()
                .get(r, Some("default"), "kubernetes")
                .await
            {
                Ok(o) => o,
                // Made by bootstrap; until then there is nothing to keep current.
                Err(e) if e.code == 404 => break,
                Err(e) => return Err(e),
            };
            let same = match (&current.value[field], &want) {
                (Value::Null, Value::Array(w)) => w.is_empty(),
                (now, w) => now == w,
            };
            if same {
                break;
            }
            let mut obj = current.value.clone();
            obj[field] = want.clone();
            if resource == "endpointslices" {
                obj["ports"] = json!([{"name": "https", "port": port, "protocol": "TCP"}]);
            }
            match server
                .registry()
                .update(
                    r,
                    Some("default"),
                    "kubernetes",
                    None,
                    obj,
                    &WriteOptions::default(),
                )
                .await
            {
                Err(e) if e.code == 409 && attempt < 5 => continue,
                Err(e) => return Err(e),
                Ok(_) => break,
            }
        }
    }
    Ok(())
}

/// One round: renew this server's lease, then bring the endpoints in line
/// with the live leases. Returns the `kubernetes` Service's target port.
pub async fn reconcile(server: &Server, me: &PeerLease) -> ApiResult<Option<u16>> {
    renew(server, me).await.map_err(store_error)?;
    follow_leases(server).await
}

/// Removes this server from the endpoints and its lease (a clean stop).
pub async fn withdraw(server: &Server, ip: IpAddr) -> ApiResult<()> {
    match server.registry().store().delete(&lease_key(ip), None).await {
        Ok(_) | Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(store_error(e)),
    }
    follow_leases(server).await.map(|_| ())
}

fn store_error(e: StoreError) -> ApiError {
    ApiError::internal(e.to_string())
}

/// Writes the endpoints to hold the servers whose leases are live now, on
/// the `kubernetes` Service's target port (returned; None before bootstrap
/// made the Service).
async fn follow_leases(server: &Server) -> ApiResult<Option<u16>> {
    let Some(port) = service_port(server).await? else {
        return Ok(None);
    };
    let all = leases(server).await.map_err(store_error)?;
    write_endpoints(
        server,
        &live_addresses(&all, port, jiff::Timestamp::now()),
        port,
    )
    .await?;
    Ok(Some(port))
}

/// Keeps this server (`ip`, `port`) in the `kubernetes` endpoints until
/// `shutdown`, then withdraws it. Returns when withdrawn.
pub async fn run(
    server: Arc<Server>,
    ip: IpAddr,
    port: u16,
    interval: Duration,
    ttl: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut warned = false;
    loop {
        let me = PeerLease {
            ip,
            port,
            renew_time: jiff::Timestamp::now(),
            ttl_seconds: ttl.as_secs().max(1),
        };
        match reconcile(&server, &me).await {
            Err(e) => {
                tracing::warn!("keeping the kubernetes Service's endpoints: {}", e.message)
            }
            Ok(Some(target)) if !warned => {
                if target != port {
                    tracing::warn!(
                        "this server listens on port {port}, but the kubernetes Service targets port {target}: in-cluster clients will reach the other servers only"
                    );
                }
                warned = true;
            }
            Ok(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => break,
        }
    }
    if let Err(e) = withdraw(&server, ip).await {
        tracing::warn!(
            "removing this server from the kubernetes Service's endpoints: {}",
            e.message
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(ip: &str, port: u16, age_s: i64, ttl: u64) -> PeerLease {
        PeerLease {
            ip: ip.parse().unwrap(),
            port,
            renew_time: jiff::Timestamp::from_second(1_000_000 - age_s).unwrap(),
            ttl_seconds: ttl,
        }
    }

    #[test]
    fn live_addresses_are_the_unexpired_leases_on_the_port() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases: Vec<(&str, Vec<PeerLease>, Vec<IpAddr>)> = vec![
            ("none", vec![], vec![]),
            (
                "fresh, sorted",
                vec![
                    lease("10.0.0.2", 6443, 1, 15),
                    lease("10.0.0.1", 6443, 14, 15),
                ],
                vec![ip("10.0.0.1"), ip("10.0.0.2")],
            ),
            (
                "expired leases drop out",
                vec![
                    lease("10.0.0.2", 6443, 15, 15),
                    lease("10.0.0.1", 6443, 40, 15),
                ],
                vec![],
            ),
            (
                "another port is left out",
                vec![
                    lease("10.0.0.1", 6443, 0, 15),
                    lease("10.0.0.3", 7443, 0, 15),
                ],
                vec![ip("10.0.0.1")],
            ),
        ];
        for (name, leases, want) in cases {
            assert_eq!(live_addresses(&leases, 6443, now), want, "{name}");
        }
    }

    #[tokio::test]
    async fn endpoints_follow_the_live_servers() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::Config::new(dir.path());
        config.port = 0;
        let running = crate::start_with_store(config, Arc::new(skiff_store::MemoryStore::new()))
            .await
            .unwrap();
        let server = running.server.clone();
        let port = service_port(&server).await.unwrap().unwrap();
        let eps = catalog::lookup("", "v1", "endpoints").unwrap();
        let slices = catalog::lookup("discovery.k8s.io", "v1", "endpointslices").unwrap();
        // The server's own loop lists its advertised address too.
        let own = crate::bootstrap::advertise_address(IpAddr::from([127, 0, 0, 1]))
            .map(|ip| ip.to_string());
        let addresses = || async {
            let e = server
                .registry()
                .get(eps, Some("default"), "kubernetes")
                .await
                .unwrap();
            let s = server
                .registry()
                .get(slices, Some("default"), "kubernetes")
                .await
                .unwrap();
            let from_endpoints: Vec<String> = e.value["subsets"][0]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| a["ip"].as_str().unwrap().to_string())
                .collect();
            let from_slice: Vec<String> = s.value["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| a["addresses"][0].as_str().unwrap().to_string())
                .collect();
            assert_eq!(from_endpoints, from_slice);
            from_endpoints
                .into_iter()
                .filter(|ip| Some(ip) != own.as_ref())
                .collect::<Vec<_>>()
        };
        let at = |ip: &str, age: i64| PeerLease {
            ip: ip.parse().unwrap(),
            port,
            renew_time: jiff::Timestamp::now() - jiff::SignedDuration::from_secs(age),
            ttl_seconds: 15,
        };
        // Two servers renew: both are listed.
        reconcile(&server, &at("10.0.0.2", 0)).await.unwrap();
        reconcile(&server, &at("10.0.0.1", 0)).await.unwrap();
        assert_eq!(addresses().await, ["10.0.0.1", "10.0.0.2"]);
        // 10.0.0.2 stops renewing: once its lease runs out, the next round drops it.
        reconcile(&server, &at("10.0.0.2", 20)).await.unwrap();
        assert_eq!(addresses().await, ["10.0.0.1"]);
        // It comes back, then stops cleanly: gone at once.
        reconcile(&server, &at("10.0.0.2", 0)).await.unwrap();
        assert_eq!(addresses().await, ["10.0.0.1", "10.0.0.2"]);
        withdraw(&server, "10.0.0.2".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(addresses().await, ["10.0.0.1"]);
        // A round with nothing changed writes nothing.
        let before = server
            .registry()
            .get(eps, Some("default"), "kubernetes")
            .await
            .unwrap()
            .rev;
        reconcile(&server, &at("10.0.0.1", 0)).await.unwrap();
        let after = server
            .registry()
            .get(eps, Some("default"), "kubernetes")
            .await
            .unwrap()
            .rev;
        assert_eq!(before, after);
        running.stop().await;
    }
}
