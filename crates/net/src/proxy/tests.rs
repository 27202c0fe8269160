use super::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use std::sync::Mutex;

fn config() -> ProxyConfig {
    ProxyConfig {
        cluster_cidr: Some((Ipv4Addr::new(10, 244, 0, 0), 16)),
        cluster_dns: Some(Ipv4Addr::new(10, 96, 0, 10)),
        ..ProxyConfig::new("node-a")
    }
}

fn service(name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    }))
    .unwrap()
}

fn web(extra: Value) -> Service {
    let mut spec = json!({
        "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    service("web", spec)
}

/// An endpoint: address, node, and (ready, serving, terminating).
fn ep(ip: &str, node: &str, cond: (bool, bool, bool)) -> Value {
    json!({"addresses": [ip], "nodeName": node,
           "conditions": {"ready": cond.0, "serving": cond.1, "terminating": cond.2}})
}

const READY: (bool, bool, bool) = (true, true, false);
const TERMINATING: (bool, bool, bool) = (false, true, true);

fn slice(svc: &str, name: &str, ports: Value, endpoints: Vec<Value>) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns",
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "ports": ports, "endpoints": endpoints,
    }))
    .unwrap()
}

fn http_slice(endpoints: Vec<Value>) -> EndpointSlice {
    slice(
        "web",
        "web-1",
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
        endpoints,
    )
}

fn view(services: Vec<Service>, slices: Vec<EndpointSlice>) -> ClusterView {
    ClusterView::from_objects(services, slices)
}

fn chain(prefix: &str, readable: &str) -> String {
    plan::object_name(prefix, readable)
}

const SVC: &str = "ns/web/tcp/http";

fn ep_chain(addr: &str) -> String {
    chain("endpoint", &format!("{SVC}__{addr}"))
}

/// The elements of `set`, as `key : value` (or `key`) lines.
fn elements(rs: &Ruleset, set: &str) -> Vec<String> {
    rs.elements[set]
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k} : {v}")
            }
        })
        .collect()
}

#[test]
fn cluster_ip_dnats_to_ready_endpoints_at_random() {
    let rs = plan(
        &view(
            vec![web(json!({}))],
            vec![http_slice(vec![
                ep("10.244.1.2", "node-b", READY),
                ep("10.244.0.3", "node-a", READY),
                ep("10.244.2.9", "node-c", (false, false, false)),
            ])],
        ),
        &config(),
    );
    let svc = chain("service", SVC);
    assert_eq!(
        elements(&rs, SERVICE_IPS),
        [format!("10.96.0.5 . tcp . 80 : goto {svc}")]
    );
    assert_eq!(elements(&rs, CLUSTER_IPS), ["10.96.0.5"]);
    assert!(elements(&rs, NO_ENDPOINT_SERVICES).is_empty());
    let (a, b) = (ep_chain("10.244.0.3/8080"), ep_chain("10.244.1.2/8080"));
    assert_eq!(
        rs.rules(&svc).unwrap(),
        [
            "ip daddr 10.96.0.5 ip saddr != 10.244.0.0/16 jump mark-for-masquerade".to_string(),
            format!("numgen random mod 2 vmap {{ 0 : goto {a} , 1 : goto {b} }}"),
        ]
    );
    assert_eq!(
        rs.rules(&a).unwrap(),
        [
            "ip saddr 10.244.0.3 jump mark-for-masquerade",
            "meta l4proto tcp dnat to 10.244.0.3:8080"
        ]
    );
    // The not-ready endpoint gets nothing; no NodePort machinery for a ClusterIP.
    assert!(rs.rules(&ep_chain("10.244.2.9/8080")).is_none());
    assert!(rs.rules(&chain("external", SVC)).is_none());
    assert_eq!(
        rs.service_chains().count(),
        3,
        "{:?}",
        rs.service_chains().collect::<Vec<_>>()
    );
}

#[test]
fn each_port_matches_the_slice_port_of_the_same_name_and_protocol() {
    let svc = web(json!({"ports": [
        {"name": "http", "port": 80, "protocol": "TCP"},
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "metrics", "port": 9090, "protocol": "TCP"},
    ]}));
    // Named target ports arrive resolved: the slice carries the numbers.
    let s = slice(
        "web",
        "web-1",
        json!([{"name": "http", "port": 8080, "protocol": "TCP"},
               {"name": "dns", "port": 5353, "protocol": "UDP"}]),
        vec![ep("10.244.0.3", "node-a", READY)],
    );
    let rs = plan(&view(vec![svc], vec![s]), &config());
    assert_eq!(
        elements(&rs, SERVICE_IPS),
        [
            format!("10.96.0.5 . tcp . 80 : goto {}", chain("service", SVC)),
            format!(
                "10.96.0.5 . udp . 53 : goto {}",
                chain("service", "ns/web/udp/dns")
            ),
        ]
    );
    assert_eq!(
        rs.rules(&chain("endpoint", "ns/web/udp/dns__10.244.0.3/5353"))
            .unwrap()
            .last()
            .unwrap(),
        "meta l4proto udp dnat to 10.244.0.3:5353"
    );
    // The port the slice does not carry has no endpoints: rejected.
    assert_eq!(
        elements(&rs, NO_ENDPOINT_SERVICES),
        ["10.96.0.5 . tcp . 9090 : goto reject-chain"]
    );
}

#[test]
fn which_endpoints_and_verdicts_each_service_gets() {
    struct Case {
        name: &'static str,
        extra: Value,
        endpoints: Vec<Value>,
        service_ips: Vec<String>,
        no_endpoint: Vec<&'static str>,
        dnat_to: Vec<&'static str>,
    }
    let svc = chain("service", SVC);
    let local = chain("local", SVC);
    let cases = [
        Case {
            name: "no endpoints: rejected",
            extra: json!({}),
            endpoints: vec![],
            service_ips: vec![],
            no_endpoint: vec!["10.96.0.5 . tcp . 80 : goto reject-chain"],
            dnat_to: vec![],
        },
        Case {
            name: "only not-ready endpoints: rejected",
            extra: json!({}),
            endpoints: vec![ep("10.244.0.3", "node-a", (false, false, false))],
            service_ips: vec![],
            no_endpoint: vec!["10.96.0.5 . tcp . 80 : goto reject-chain"],
            dnat_to: vec![],
        },
        Case {
            name: "no ready endpoint: serving terminating ones are used",
            extra: json!({}),
            endpoints: vec![
                ep("10.244.0.3", "node-a", TERMINATING),
                ep("10.244.0.4", "node-a", (false, false, true)),
            ],
            service_ips: vec![format!("10.96.0.5 . tcp . 80 : goto {svc}")],
            no_endpoint: vec![],
            dnat_to: vec!["10.244.0.3:8080"],
        },
        Case {
            name: "ready endpoints win over terminating ones",
            extra: json!({}),
            endpoints: vec![
                ep("10.244.0.3", "node-a", TERMINATING),
                ep("10.244.1.3", "node-b", READY),
            ],
            service_ips: vec![format!("10.96.0.5 . tcp . 80 : goto {svc}")],
            no_endpoint: vec![],
            dnat_to: vec!["10.244.1.3:8080"],
        },
        Case {
            name: "internalTrafficPolicy Local: only this node's endpoints",
            extra: json!({"internalTrafficPolicy": "Local"}),
            endpoints: vec![
                ep("10.244.0.3", "node-a", READY),
                ep("10.244.1.3", "node-b", READY),
            ],
            service_ips: vec![format!("10.96.0.5 . tcp . 80 : goto {local}")],
            no_endpoint: vec![],
            dnat_to: vec!["10.244.0.3:8080"],
        },
        Case {
            name: "internalTrafficPolicy Local without local endpoints: rejected",
            extra: json!({"internalTrafficPolicy": "Local"}),
            endpoints: vec![ep("10.244.1.3", "node-b", READY)],
            service_ips: vec![],
            no_endpoint: vec!["10.96.0.5 . tcp . 80 : goto reject-chain"],
            dnat_to: vec![],
        },
    ];
    for c in cases {
        let rs = plan(
            &view(vec![web(c.extra)], vec![http_slice(c.endpoints)]),
            &config(),
        );
        assert_eq!(elements(&rs, SERVICE_IPS), c.service_ips, "{}", c.name);
        assert_eq!(
            elements(&rs, NO_ENDPOINT_SERVICES),
            c.no_endpoint,
            "{}",
            c.name
        );
        assert_eq!(elements(&rs, CLUSTER_IPS), ["10.96.0.5"], "{}", c.name);
        let dnats: Vec<&str> = rs
            .chains
            .values()
            .flat_map(|ch| &ch.rules)
            .filter_map(|r| r.strip_prefix("meta l4proto tcp dnat to "))
            .collect();
        assert_eq!(dnats, c.dnat_to, "{}", c.name);
    }
}

#[test]
fn node_ports_follow_the_external_traffic_policy() {
    let np = |policy: &str| {
        web(json!({"type": "NodePort", "externalTrafficPolicy": policy,
                   "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}))
    };
    let eps = || {
        vec![http_slice(vec![
            ep("10.244.0.3", "node-a", READY),
            ep("10.244.1.3", "node-b", READY),
        ])]
    };
    let (svc, local, ext) = (
        chain("service", SVC),
        chain("local", SVC),
        chain("external", SVC),
    );

    // Cluster: every endpoint, masqueraded.
    let rs = plan(&view(vec![np("Cluster")], eps()), &config());
    assert_eq!(
        elements(&rs, SERVICE_NODEPORTS),
        [format!("tcp . 30080 : goto {ext}")]
    );
    assert_eq!(
        rs.rules(&ext).unwrap(),
        [
            "jump mark-for-masquerade".to_string(),
            format!("goto {svc}")
        ]
    );
    assert!(rs.rules(&svc).unwrap()[1].contains("mod 2"));
    assert!(rs.rules(&local).is_none());
    assert_eq!(
        rs.rules("services").unwrap()[1],
        "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"
    );

    // Local: this node's endpoints, client address kept; pod and host traffic
    // short-circuits to every endpoint.
    let rs = plan(&view(vec![np("Local")], eps()), &config());
    assert_eq!(
        rs.rules(&ext).unwrap(),
        [
            format!("ip saddr 10.244.0.0/16 goto {svc} comment \"short-circuit pod traffic\""),
            "fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\""
                .to_string(),
            format!("fib saddr type local goto {svc} comment \"short-circuit local traffic\""),
            format!("goto {local}"),
        ]
    );
    assert_eq!(
        rs.rules(&local).unwrap(),
        [format!(
            "numgen random mod 1 vmap {{ 0 : goto {} }}",
            ep_chain("10.244.0.3/8080")
        )]
    );
    // The ClusterIP still reaches every endpoint.
    assert_eq!(
        elements(&rs, SERVICE_IPS),
        [format!("10.96.0.5 . tcp . 80 : goto {svc}")]
    );

    // Local with endpoints only elsewhere: the NodePort drops, the ClusterIP works.
    let rs = plan(
        &view(
            vec![np("Local")],
            vec![http_slice(vec![ep("10.244.1.3", "node-b", READY)])],
        ),
        &config(),
    );
    assert!(elements(&rs, SERVICE_NODEPORTS).is_empty());
    assert_eq!(elements(&rs, NO_ENDPOINT_NODEPORTS), ["tcp . 30080 : drop"]);
    assert_eq!(elements(&rs, SERVICE_IPS).len(), 1);

    // No endpoints at all: both rejected.
    let rs = plan(&view(vec![np("Cluster")], vec![]), &config());
    assert_eq!(
        elements(&rs, NO_ENDPOINT_NODEPORTS),
        ["tcp . 30080 : goto reject-chain"]
    );

    // Configured node addresses replace "every local address".
    let cfg = ProxyConfig {
        node_ips: vec![Ipv4Addr::new(192, 168, 1, 10)],
        ..config()
    };
    let rs = plan(&view(vec![np("Cluster")], eps()), &cfg);
    assert_eq!(elements(&rs, NODEPORT_IPS), ["192.168.1.10"]);
    assert_eq!(
        rs.rules("services").unwrap()[1],
        "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"
    );
}

#[test]
fn client_ip_affinity_remembers_each_client_per_endpoint() {
    let svc = web(json!({"sessionAffinity": "ClientIP",
                         "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}}));
    let rs = plan(
        &view(
            vec![svc],
            vec![http_slice(vec![
                ep("10.244.0.3", "node-a", READY),
                ep("10.244.1.3", "node-b", READY),
            ])],
        ),
        &config(),
    );
    let sets: Vec<&String> = rs
        .sets
        .keys()
        .filter(|s| s.starts_with("affinity-"))
        .collect();
    assert_eq!(sets.len(), 2);
    for s in &sets {
        assert_eq!(
            rs.sets[*s].spec,
            "type ipv4_addr ; flags dynamic,timeout ; timeout 600s ;"
        );
    }
    let a = ep_chain("10.244.0.3/8080");
    let rules = rs.rules(&chain("service", SVC)).unwrap();
    assert_eq!(rules.len(), 4, "{rules:?}");
    assert!(
        rules[1].starts_with("ip saddr @affinity-") && rules[1].ends_with(&format!("goto {a}"))
    );
    assert!(rules[3].starts_with("numgen random mod 2"));
    let ep_rules = rs.rules(&a).unwrap();
    assert!(
        ep_rules[1].starts_with("update @affinity-") && ep_rules[1].ends_with(" { ip saddr }"),
        "{ep_rules:?}"
    );

    // The default timeout is Kubernetes' 10800 seconds.
    let rs = plan(
        &view(
            vec![web(json!({"sessionAffinity": "ClientIP"}))],
            vec![http_slice(vec![ep("10.244.0.3", "node-a", READY)])],
        ),
        &config(),
    );
    let set = rs
        .sets
        .iter()
        .find(|(n, _)| n.starts_with("affinity-"))
        .unwrap();
    assert!(set.1.spec.ends_with("timeout 10800s ;"));
}

#[test]
fn services_without_a_cluster_ip_or_at_the_dns_ip_get_no_rules() {
    let eps = |svc: &str| {
        slice(
            svc,
            svc,
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
            vec![ep("10.244.0.3", "node-a", READY)],
        )
    };
    let ports = json!([{"name": "http", "port": 80, "protocol": "TCP"}]);
    let services = vec![
        service(
            "headless",
            json!({"clusterIP": "None", "clusterIPs": ["None"], "ports": ports}),
        ),
        service(
            "external",
            json!({"type": "ExternalName", "externalName": "example.com", "ports": ports}),
        ),
        service(
            "dns",
            json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ports": ports}),
        ),
    ];
    let rs = plan(
        &view(services, vec![eps("headless"), eps("external"), eps("dns")]),
        &config(),
    );
    assert_eq!(rs.service_chains().count(), 0);
    for set in rs.elements.values() {
        assert!(set.is_empty(), "{set:?}");
    }
}

#[test]
fn first_transaction_replaces_the_whole_table() {
    let rs = plan(
        &view(
            vec![web(json!({}))],
            vec![http_slice(vec![ep("10.244.0.3", "node-a", READY)])],
        ),
        &config(),
    );
    let script = transaction(None, &rs);
    let lines: Vec<&str> = script.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "add table ip skiff",
            "delete table ip skiff",
            "add table ip skiff { comment \"rules for skiff's service proxy\" ; }"
        ]
    );
    assert!(
        lines.contains(&"add chain ip skiff nat-output { type nat hook output priority -100 ; }")
    );
    assert!(lines.contains(&"add rule ip skiff nat-output jump services"));
    assert!(lines.contains(
        &"add map ip skiff service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }"
    ));
    assert!(
        lines.contains(
            &format!(
                "add element ip skiff service-ips {{ 10.96.0.5 . tcp . 80 : goto {} }}",
                chain("service", SVC)
            )
            .as_str()
        )
    );
    // Every chain is declared before any rule jumps to it.
    let first_rule = lines
        .iter()
        .position(|l| l.starts_with("add rule"))
        .unwrap();
    let last_chain = lines
        .iter()
        .rposition(|l| l.starts_with("add chain"))
        .unwrap();
    assert!(last_chain < first_rule);
    // Nothing changed: nothing to do.
    assert_eq!(transaction(Some(&rs), &rs), "");
}

fn two_services(web_eps: Vec<Value>) -> ClusterView {
    let api = service(
        "api",
        json!({"clusterIP": "10.96.0.7", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
    );
    let api_slice = slice(
        "api",
        "api-1",
        json!([{"name": "http", "port": 9000, "protocol": "TCP"}]),
        vec![ep("10.244.0.9", "node-a", READY)],
    );
    view(
        vec![web(json!({})), api],
        vec![http_slice(web_eps), api_slice],
    )
}

#[test]
fn an_added_endpoint_rewrites_only_that_services_chain() {
    let before = plan(
        &two_services(vec![ep("10.244.0.3", "node-a", READY)]),
        &config(),
    );
    let after = plan(
        &two_services(vec![
            ep("10.244.0.3", "node-a", READY),
            ep("10.244.1.3", "node-b", READY),
        ]),
        &config(),
    );
    let script = transaction(Some(&before), &after);
    let svc = chain("service", SVC);
    let new_ep = ep_chain("10.244.1.3/8080");
    assert_eq!(
        script.lines().collect::<Vec<_>>(),
        [
            format!("add chain ip skiff {new_ep}"),
            format!("add rule ip skiff {new_ep} ip saddr 10.244.1.3 jump mark-for-masquerade"),
            format!("add rule ip skiff {new_ep} meta l4proto tcp dnat to 10.244.1.3:8080"),
            format!("flush chain ip skiff {svc}"),
            format!(
                "add rule ip skiff {svc} ip daddr 10.96.0.5 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
            ),
            format!(
                "add rule ip skiff {svc} numgen random mod 2 vmap {{ 0 : goto {} , 1 : goto {new_ep} }}",
                ep_chain("10.244.0.3/8080")
            ),
        ]
    );
}

#[test]
fn losing_all_endpoints_moves_the_service_to_the_reject_map() {
    let before = plan(
        &two_services(vec![ep("10.244.0.3", "node-a", READY)]),
        &config(),
    );
    let after = plan(&two_services(vec![]), &config());
    let script = transaction(Some(&before), &after);
    let (svc, e) = (chain("service", SVC), ep_chain("10.244.0.3/8080"));
    assert_eq!(
        script.lines().collect::<Vec<_>>(),
        [
            "delete element ip skiff service-ips { 10.96.0.5 . tcp . 80 }".to_string(),
            "add element ip skiff no-endpoint-services { 10.96.0.5 . tcp . 80 : goto reject-chain }"
                .to_string(),
            format!("flush chain ip skiff {e}"),
            format!("flush chain ip skiff {svc}"),
            format!("delete chain ip skiff {e}"),
            format!("delete chain ip skiff {svc}"),
        ]
    );
}

#[test]
fn a_deleted_service_loses_its_chains_sets_and_elements() {
    let with = |affinity: bool| {
        let mut v = two_services(vec![ep("10.244.0.3", "node-a", READY)]);
        if !affinity {
            v.services.remove(&crate::view::Key::new("ns", "web"));
        } else {
            let web = web(json!({"sessionAffinity": "ClientIP"}));
            v.services
                .insert(crate::view::Key::new("ns", "web"), Arc::new(web));
        }
        plan(&v, &config())
    };
    let before = with(true);
    let after = with(false);
    let owned = owned_by(&before, "ns", "web");
    assert_eq!(owned.len(), 3, "{owned:?}"); // service, endpoint chains, affinity set
    let script = transaction(Some(&before), &after);
    let mut expected = vec![
        "delete element ip skiff cluster-ips { 10.96.0.5 }".to_string(),
        "delete element ip skiff service-ips { 10.96.0.5 . tcp . 80 }".to_string(),
    ];
    let chains: Vec<&String> = owned
        .iter()
        .filter(|n| !n.starts_with("affinity-"))
        .collect();
    expected.extend(chains.iter().map(|c| format!("flush chain ip skiff {c}")));
    expected.extend(chains.iter().map(|c| format!("delete chain ip skiff {c}")));
    let set = owned.iter().find(|n| n.starts_with("affinity-")).unwrap();
    expected.push(format!("delete set ip skiff {set}"));
    assert_eq!(script.lines().collect::<Vec<_>>(), expected);
    assert!(owned_by(&after, "ns", "web").is_empty());
    assert!(!owned_by(&after, "ns", "api").is_empty());
}

/// Records scripts; fails the first `fail` of them.
#[derive(Default)]
struct FakeNft {
    scripts: Mutex<Vec<String>>,
    fail: Mutex<usize>,
}

impl Nft for FakeNft {
    fn apply(&self, script: &str) -> Result<(), Error> {
        self.scripts.lock().unwrap().push(script.to_string());
        let mut fail = self.fail.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return Err(Error::Apply {
                nft: "nft".into(),
                status: "exit status: 1".into(),
                stderr: "Error: syntax error".into(),
            });
        }
        Ok(())
    }
}

#[test]
fn a_failed_sync_is_followed_by_a_full_one() {
    let nft = Arc::new(FakeNft::default());
    *nft.fail.lock().unwrap() = 1;
    let mut p = Proxier::with_nft(config(), nft.clone());
    let v = two_services(vec![ep("10.244.0.3", "node-a", READY)]);
    let err = p.sync(&v).unwrap_err();
    assert_eq!(
        err.to_string(),
        "nft -f - failed (exit status: 1): Error: syntax error"
    );
    assert!(p.applied().is_none());
    let info = p.sync(&v).unwrap();
    assert!(info.full);
    let info = p.sync(&v).unwrap();
    assert_eq!((info.full, info.lines), (false, 0));
    // The unchanged view did not call nft again.
    assert_eq!(nft.scripts.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn run_syncs_on_every_change_and_deletes_the_table_on_shutdown() {
    let nft = Arc::new(FakeNft::default());
    let proxier = Proxier::with_nft(config(), nft.clone());
    let mut synced = proxier.synced();
    let (view_tx, view_rx) = watch::channel(Arc::new(ClusterView::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(proxier.run(view_rx, stop_rx));

    synced.wait_for(|s| s.is_some()).await.unwrap();
    let first = synced.borrow_and_update().unwrap();
    assert!(first.full);
    view_tx.send_replace(Arc::new(two_services(vec![ep(
        "10.244.0.3",
        "node-a",
        READY,
    )])));
    synced.changed().await.unwrap();
    let second = synced.borrow_and_update().unwrap();
    assert!(!second.full && second.lines > 0 && second.at >= first.at);

    stop_tx.send_replace(true);
    task.await.unwrap().unwrap();
    let scripts = nft.scripts.lock().unwrap();
    assert_eq!(scripts.len(), 3);
    assert!(scripts[1].contains("10.96.0.7 . tcp . 80"));
    assert_eq!(scripts[2], "add table ip skiff\ndelete table ip skiff\n");
}
