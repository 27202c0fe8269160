//! Table tests for [`answer`]: each case is a question and the response a
//! client would see, written as zone-file-like lines.

use super::*;
use serde_json::json;

fn service(name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "testns"},
        "spec": spec,
    }))
    .unwrap()
}

fn slice(
    name: &str,
    svc: &str,
    endpoints: serde_json::Value,
    ports: serde_json::Value,
) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "testns",
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "endpoints": endpoints, "ports": ports,
    }))
    .unwrap()
}

fn fixture() -> ClusterView {
    let http = json!([{"name": "http", "protocol": "TCP", "port": 80}]);
    ClusterView::from_objects(
        [
            service(
                "svc1",
                json!({"type": "ClusterIP", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
                       "ports": [{"name": "http", "protocol": "TCP", "port": 80},
                                 {"name": "dns", "protocol": "UDP", "port": 53}]}),
            ),
            service(
                "np",
                json!({"type": "NodePort", "clusterIP": "10.0.0.2",
                       "ports": [{"name": "web", "port": 8080, "nodePort": 30080}]}),
            ),
            service(
                "lb",
                json!({"type": "LoadBalancer", "clusterIPs": ["10.0.0.3", "fd00::3"],
                       "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}),
            ),
            service(
                "hdls",
                json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}),
            ),
            service("db", json!({"clusterIP": "None"})),
            service("empty", json!({"clusterIP": "None"})),
            service(
                "ext",
                json!({"type": "ExternalName", "externalName": "ext.example.test"}),
            ),
            service(
                "ext-in",
                json!({"type": "ExternalName", "externalName": "svc1.testns.svc.cluster.local."}),
            ),
        ],
        [
            slice(
                "svc1-a",
                "svc1",
                json!([{"addresses": ["172.0.0.1"], "hostname": "ep1a",
                        "conditions": {"ready": true}}]),
                http.clone(),
            ),
            slice(
                "hdls-a",
                "hdls",
                json!([
                    {"addresses": ["172.0.0.2"], "conditions": {"ready": true}},
                    {"addresses": ["172.0.0.3"]},
                    {"addresses": ["172.0.0.9"], "conditions": {"ready": false}},
                ]),
                json!([{"name": "http", "protocol": "TCP", "port": 8080}]),
            ),
            slice(
                "db-a",
                "db",
                json!([
                    {"addresses": ["172.0.1.10"], "hostname": "db-0", "conditions": {"ready": true}},
                    {"addresses": ["172.0.1.11"], "hostname": "db-1", "conditions": {"ready": true}},
                    {"addresses": ["172.0.1.12"], "hostname": "db-2", "conditions": {"ready": false}},
                ]),
                json!([{"name": "pg", "protocol": "TCP", "port": 5432}]),
            ),
            slice(
                "empty-a",
                "empty",
                json!([{"addresses": ["172.0.2.1"], "conditions": {"ready": false}}]),
                json!([]),
            ),
        ],
    )
}

fn config() -> DnsConfig {
    DnsConfig {
        service_cidr: Some((Ipv4Addr::new(10, 0, 0, 0), 16)),
        cluster_cidr: Some((Ipv4Addr::new(172, 0, 0, 0), 16)),
        ..DnsConfig::default()
    }
}

fn line(r: &Record) -> String {
    format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data)
}

/// The response as lines: the rcode, then the records, additionals marked `+`.
fn show(a: &Answer) -> Vec<String> {
    match a {
        Answer::Records {
            answers,
            additionals,
            chase,
        } => {
            let mut out = vec!["NOERROR".to_string()];
            out.extend(answers.iter().map(line));
            out.extend(additionals.iter().map(|r| format!("+ {}", line(r))));
            if let Some(c) = chase {
                out.push(format!("chase {c}"));
            }
            out
        }
        Answer::NoData { soa } => vec![format!("NODATA {}", line(soa))],
        Answer::NxDomain { soa } => vec![format!("NXDOMAIN {}", line(soa))],
        Answer::Forward => vec!["FORWARD".into()],
    }
}

const SOA: &str =
    "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5";

#[test]
fn answers_like_coredns() {
    let nodata = format!("NODATA {SOA}");
    let nx = format!("NXDOMAIN {SOA}");
    let cases: Vec<(&str, RecordType, Vec<&str>)> = vec![
        // ClusterIP, NodePort and LoadBalancer Services answer with their cluster IPs.
        (
            "svc1.testns.svc.cluster.local.",
            RecordType::A,
            vec!["NOERROR", "svc1.testns.svc.cluster.local. 5 A 10.0.0.1"],
        ),
        (
            "np.testns.svc.cluster.local.",
            RecordType::A,
            vec!["NOERROR", "np.testns.svc.cluster.local. 5 A 10.0.0.2"],
        ),
        (
            "lb.testns.svc.cluster.local.",
            RecordType::A,
            vec!["NOERROR", "lb.testns.svc.cluster.local. 5 A 10.0.0.3"],
        ),
        (
            "lb.testns.svc.cluster.local.",
            RecordType::AAAA,
            vec!["NOERROR", "lb.testns.svc.cluster.local. 5 AAAA fd00::3"],
        ),
        // A name that exists but has no record of the type: NODATA, not NXDOMAIN.
        (
            "svc1.testns.svc.cluster.local.",
            RecordType::AAAA,
            vec![&nodata],
        ),
        (
            "svc1.testns.svc.cluster.local.",
            RecordType::MX,
            vec![&nodata],
        ),
        (
            "svc1.testns.svc.cluster.local.",
            RecordType::SOA,
            vec![&nodata],
        ),
        // Names are case-insensitive; records carry the name as asked.
        (
            "SVC1.TestNS.Svc.Cluster.Local.",
            RecordType::A,
            vec!["NOERROR", "SVC1.TestNS.Svc.Cluster.Local. 5 A 10.0.0.1"],
        ),
        // Headless: every ready endpoint (an absent condition counts as ready).
        (
            "hdls.testns.svc.cluster.local.",
            RecordType::A,
            vec![
                "NOERROR",
                "hdls.testns.svc.cluster.local. 5 A 172.0.0.2",
                "hdls.testns.svc.cluster.local. 5 A 172.0.0.3",
            ],
        ),
        (
            "hdls.testns.svc.cluster.local.",
            RecordType::AAAA,
            vec![&nodata],
        ),
        // A headless Service whose only endpoint is not ready has no addresses.
        (
            "empty.testns.svc.cluster.local.",
            RecordType::A,
            vec![&nodata],
        ),
        // Endpoints by dashed IP and by hostname (StatefulSet pods).
        (
            "172-0-0-2.hdls.testns.svc.cluster.local.",
            RecordType::A,
            vec![
                "NOERROR",
                "172-0-0-2.hdls.testns.svc.cluster.local. 5 A 172.0.0.2",
            ],
        ),
        (
            "db-0.db.testns.svc.cluster.local.",
            RecordType::A,
            vec![
                "NOERROR",
                "db-0.db.testns.svc.cluster.local. 5 A 172.0.1.10",
            ],
        ),
        (
            "db-0.db.testns.svc.cluster.local.",
            RecordType::AAAA,
            vec![&nodata],
        ),
        // Not ready, unknown, or named by IP when it has a hostname.
        (
            "db-2.db.testns.svc.cluster.local.",
            RecordType::A,
            vec![&nx],
        ),
        (
            "172-0-0-9.hdls.testns.svc.cluster.local.",
            RecordType::A,
            vec![&nx],
        ),
        (
            "172-0-1-10.db.testns.svc.cluster.local.",
            RecordType::A,
            vec![&nx],
        ),
        // Endpoint names exist only under headless Services.
        (
            "ep1a.svc1.testns.svc.cluster.local.",
            RecordType::A,
            vec![&nx],
        ),
        // SRV: a ClusterIP Service points at its own name, address in additional.
        (
            "_http._tcp.svc1.testns.svc.cluster.local.",
            RecordType::SRV,
            vec![
                "NOERROR",
                "_http._tcp.svc1.testns.svc.cluster.local. 5 SRV 0 100 80 svc1.testns.svc.cluster.local.",
                "+ svc1.testns.svc.cluster.local. 5 A 10.0.0.1",
            ],
        ),
        (
            "_DNS._UDP.svc1.testns.svc.cluster.local.",
            RecordType::SRV,
            vec![
                "NOERROR",
                "_DNS._UDP.svc1.testns.svc.cluster.local. 5 SRV 0 100 53 svc1.testns.svc.cluster.local.",
                "+ svc1.testns.svc.cluster.local. 5 A 10.0.0.1",
            ],
        ),
        // The protocol defaults to TCP.
        (
            "_web._tcp.np.testns.svc.cluster.local.",
            RecordType::SRV,
            vec![
                "NOERROR",
                "_web._tcp.np.testns.svc.cluster.local. 5 SRV 0 100 8080 np.testns.svc.cluster.local.",
                "+ np.testns.svc.cluster.local. 5 A 10.0.0.2",
            ],
        ),
        // Dual stack: one SRV, weight split over both addresses.
        (
            "_http._tcp.lb.testns.svc.cluster.local.",
            RecordType::SRV,
            vec![
                "NOERROR",
                "_http._tcp.lb.testns.svc.cluster.local. 5 SRV 0 50 80 lb.testns.svc.cluster.local.",
                "+ lb.testns.svc.cluster.local. 5 A 10.0.0.3",
                "+ lb.testns.svc.cluster.local. 5 AAAA fd00::3",
            ],
        ),
        // The bare Service name answers SRV for every port.
        (
            "svc1.testns.svc.cluster.local.",
            RecordType::SRV,
            vec![
                "NOERROR",
                "svc1.testns.svc.cluster.local. 5 SRV 0 50 80 svc1.testns.svc.cluster.local.",
                "svc1.testns.svc.cluster.local. 5 SRV 0 50 53 svc1.testns.svc.cluster.local.",
                "+ svc1.testns.svc.cluster.local. 5 A 10.0.0.1",
            ],
        ),
        // Headless SRV: one per ready endpoint, on the endpoint port.
        (
            "_http._tcp.hdls.testns.svc.cluster.local.",
            RecordType::SRV,
            vec![
                "NOERROR",
                "_http._tcp.hdls.testns.svc.cluster.local. 5 SRV 0 50 8080 172-0-0-2.hdls.testns.svc.cluster.local.",
                "_http._tcp.hdls.testns.svc.cluster.local. 5 SRV 0 50 8080 172-0-0-3.hdls.testns.svc.cluster.local.",
                "+ 172-0-0-2.hdls.testns.svc.cluster.local. 5 A 172.0.0.2",
                "+ 172-0-0-3.hdls.testns.svc.cluster.local. 5 A 172.0.0.3",
            ],
        ),
        (
            "_pg._tcp.db.testns.svc.cluster.local.",
            RecordType::SRV,
            vec![
                "NOERROR",
                "_pg._tcp.db.testns.svc.cluster.local. 5 SRV 0 50 5432 db-0.db.testns.svc.cluster.local.",
                "_pg._tcp.db.testns.svc.cluster.local. 5 SRV 0 50 5432 db-1.db.testns.svc.cluster.local.",
                "+ db-0.db.testns.svc.cluster.local. 5 A 172.0.1.10",
                "+ db-1.db.testns.svc.cluster.local. 5 A 172.0.1.11",
            ],
        ),
        // A port the Service does not have, or the wrong protocol: NXDOMAIN.
        (
            "_http._udp.svc1.testns.svc.cluster.local.",
            RecordType::SRV,
            vec![&nx],
        ),
        (
            "_nope._tcp.svc1.testns.svc.cluster.local.",
            RecordType::SRV,
            vec![&nx],
        ),
        (
            "_http._tcp.svc1.testns.svc.cluster.local.",
            RecordType::A,
            vec![&nodata],
        ),
        // ExternalName: a CNAME, whose external target the server resolves upstream.
        (
            "ext.testns.svc.cluster.local.",
            RecordType::CNAME,
            vec![
                "NOERROR",
                "ext.testns.svc.cluster.local. 5 CNAME ext.example.test.",
            ],
        ),
        (
            "ext.testns.svc.cluster.local.",
            RecordType::A,
            vec![
                "NOERROR",
                "ext.testns.svc.cluster.local. 5 CNAME ext.example.test.",
                "chase ext.example.test.",
            ],
        ),
        // ... and an internal target is followed here.
        (
            "ext-in.testns.svc.cluster.local.",
            RecordType::A,
            vec![
                "NOERROR",
                "ext-in.testns.svc.cluster.local. 5 CNAME svc1.testns.svc.cluster.local.",
                "svc1.testns.svc.cluster.local. 5 A 10.0.0.1",
            ],
        ),
        (
            "sub.ext.testns.svc.cluster.local.",
            RecordType::A,
            vec![&nx],
        ),
        // Pods, "insecure": any dashed IPv4 in any namespace.
        (
            "10-240-0-1.anyns.pod.cluster.local.",
            RecordType::A,
            vec![
                "NOERROR",
                "10-240-0-1.anyns.pod.cluster.local. 5 A 10.240.0.1",
            ],
        ),
        (
            "10-240-0-1.anyns.pod.cluster.local.",
            RecordType::AAAA,
            vec![&nodata],
        ),
        ("blah.anyns.pod.cluster.local.", RecordType::A, vec![&nx]),
        ("anyns.pod.cluster.local.", RecordType::A, vec![&nx]),
        // Unknown names in the domain: NXDOMAIN; the structure's own names: NODATA.
        ("nope.testns.svc.cluster.local.", RecordType::A, vec![&nx]),
        (
            "nope.testns.svc.cluster.local.",
            RecordType::AAAA,
            vec![&nx],
        ),
        ("svc1.nons.svc.cluster.local.", RecordType::A, vec![&nx]),
        ("foo.cluster.local.", RecordType::A, vec![&nx]),
        ("a.b.c.d.e.f.cluster.local.", RecordType::A, vec![&nx]),
        ("testns.svc.cluster.local.", RecordType::A, vec![&nodata]),
        ("nons.svc.cluster.local.", RecordType::A, vec![&nx]),
        ("svc.cluster.local.", RecordType::A, vec![&nodata]),
        ("pod.cluster.local.", RecordType::A, vec![&nodata]),
        ("cluster.local.", RecordType::A, vec![&nodata]),
        ("cluster.local.", RecordType::SOA, vec!["NOERROR", SOA]),
        (
            "cluster.local.",
            RecordType::NS,
            vec!["NOERROR", "cluster.local. 5 NS ns.dns.cluster.local."],
        ),
        (
            "dns-version.cluster.local.",
            RecordType::TXT,
            vec!["NOERROR", "dns-version.cluster.local. 28800 TXT 1.1.0"],
        ),
        // PTR: Service IPs, then endpoint IPs (hostname when it has one).
        (
            "1.0.0.10.in-addr.arpa.",
            RecordType::PTR,
            vec![
                "NOERROR",
                "1.0.0.10.in-addr.arpa. 5 PTR svc1.testns.svc.cluster.local.",
            ],
        ),
        (
            "3.0.0.10.IN-ADDR.ARPA.",
            RecordType::PTR,
            vec![
                "NOERROR",
                "3.0.0.10.IN-ADDR.ARPA. 5 PTR lb.testns.svc.cluster.local.",
            ],
        ),
        (
            "10.1.0.172.in-addr.arpa.",
            RecordType::PTR,
            vec![
                "NOERROR",
                "10.1.0.172.in-addr.arpa. 5 PTR db-0.db.testns.svc.cluster.local.",
            ],
        ),
        (
            "2.0.0.172.in-addr.arpa.",
            RecordType::PTR,
            vec![
                "NOERROR",
                "2.0.0.172.in-addr.arpa. 5 PTR 172-0-0-2.hdls.testns.svc.cluster.local.",
            ],
        ),
        (
            "1.0.0.172.in-addr.arpa.",
            RecordType::PTR,
            vec![
                "NOERROR",
                "1.0.0.172.in-addr.arpa. 5 PTR ep1a.svc1.testns.svc.cluster.local.",
            ],
        ),
        (
            "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
            RecordType::PTR,
            vec![
                "NOERROR",
                "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 PTR lb.testns.svc.cluster.local.",
            ],
        ),
        // A not-ready endpoint has no PTR; unknown IPs in our CIDRs are NXDOMAIN.
        (
            "9.0.0.172.in-addr.arpa.",
            RecordType::PTR,
            vec![
                "NXDOMAIN 0.172.in-addr.arpa. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5",
            ],
        ),
        (
            "99.0.0.10.in-addr.arpa.",
            RecordType::PTR,
            vec![
                "NXDOMAIN 0.10.in-addr.arpa. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5",
            ],
        ),
        (
            "1.0.0.10.in-addr.arpa.",
            RecordType::A,
            vec![
                "NODATA 0.10.in-addr.arpa. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5",
            ],
        ),
        // Everything else goes upstream.
        ("8.8.8.8.in-addr.arpa.", RecordType::PTR, vec!["FORWARD"]),
        ("example.com.", RecordType::A, vec!["FORWARD"]),
        ("local.", RecordType::A, vec!["FORWARD"]),
        ("cluster.local.example.com.", RecordType::A, vec!["FORWARD"]),
    ];
    let view = fixture();
    let config = config();
    let mut failures = Vec::new();
    for (name, qtype, want) in cases {
        let got = show(&answer(
            &view,
            &config,
            &Name::from_ascii(name).unwrap(),
            qtype,
        ));
        if got != want {
            failures.push(format!(
                "{name} {qtype}:\n  got  {got:#?}\n  want {want:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ttl_and_domain_come_from_the_config() {
    let config = DnsConfig {
        domain: "k8s.internal.".into(),
        ttl: 30,
        ..DnsConfig::default()
    };
    let view = fixture();
    let q = |n: &str| {
        show(&answer(
            &view,
            &config,
            &Name::from_ascii(n).unwrap(),
            RecordType::A,
        ))
    };
    assert_eq!(
        q("svc1.testns.svc.k8s.internal."),
        ["NOERROR", "svc1.testns.svc.k8s.internal. 30 A 10.0.0.1"]
    );
    assert_eq!(
        q("nope.k8s.internal."),
        [
            "NXDOMAIN k8s.internal. 30 SOA ns.dns.k8s.internal. hostmaster.k8s.internal. 1 7200 1800 86400 30"
        ]
    );
    assert_eq!(q("svc1.testns.svc.cluster.local."), ["FORWARD"]);
    // Without configured CIDRs every reverse miss is forwarded.
    let ptr = answer(
        &view,
        &config,
        &Name::from_ascii("99.0.0.10.in-addr.arpa.").unwrap(),
        RecordType::PTR,
    );
    assert_eq!(show(&ptr), ["FORWARD"]);
}

#[test]
fn upstreams_come_from_nameserver_lines() {
    let text = "# generated\nsearch example.com\nnameserver 192.168.1.1\n\
                nameserver 2001:db8::53 # v6\n;nameserver 10.9.9.9\nnameserver fe80::1%eth0\n\
                nameserver 192.168.1.1\noptions ndots:5\nnameserver\n";
    assert_eq!(
        upstreams_from_resolv_conf(text),
        vec![
            "192.168.1.1:53".parse::<SocketAddr>().unwrap(),
            "[2001:db8::53]:53".parse().unwrap()
        ]
    );
    assert!(upstreams_from_resolv_conf("").is_empty());
}
