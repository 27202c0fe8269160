//! The cluster DNS server over real sockets: UDP and TCP clients, a view that
//! changes under a running server, and forwarding to a fake upstream.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_net::dns::{DnsConfig, DnsServer, Error, serve};
use skiff_net::view::ClusterView;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

fn service(ns: &str, name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
        .unwrap()
}

fn slice(ns: &str, svc: &str, endpoints: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{svc}-x"), "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": "pg", "protocol": "TCP", "port": 5432}],
    }))
    .unwrap()
}

fn view() -> ClusterView {
    ClusterView::from_objects(
        [
            service(
                "default",
                "kubernetes",
                json!({"clusterIP": "10.96.0.1",
                "ports": [{"name": "https", "protocol": "TCP", "port": 443}]}),
            ),
            service("default", "db", json!({"clusterIP": "None"})),
            service(
                "default",
                "ext",
                json!({"type": "ExternalName",
                "externalName": "ext.example.test"}),
            ),
        ],
        [slice(
            "default",
            "db",
            json!([{"addresses": ["10.244.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                   {"addresses": ["10.244.0.6"], "hostname": "db-1", "conditions": {"ready": false}}]),
        )],
    )
}

struct Running {
    addr: SocketAddr,
    view_tx: watch::Sender<Arc<ClusterView>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), Error>>,
}

async fn start(upstreams: Vec<SocketAddr>) -> Running {
    let (view_tx, view_rx) = watch::channel(Arc::new(view()));
    let (stop, stop_rx) = watch::channel(false);
    let config = DnsConfig {
        upstreams,
        ..DnsConfig::default()
    };
    let server = DnsServer::bind(vec!["127.0.0.1:0".parse().unwrap()], view_rx, config)
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let task = tokio::spawn(server.run(stop_rx));
    Running {
        addr,
        view_tx,
        stop,
        task,
    }
}

impl Running {
    async fn stop(self) {
        self.stop.send_replace(true);
        let r = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        r.expect("server stops when told").unwrap().unwrap();
    }
}

fn question(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(4096);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

async fn udp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&question(name, qtype, true), addr)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
        .await
        .expect("an answer over UDP")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, 0x1234);
    m
}

async fn tcp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let q = question(name, qtype, false);
    conn.write_all(&(q.len() as u16).to_be_bytes())
        .await
        .unwrap();
    conn.write_all(&q).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read_u16())
        .await
        .expect("an answer over TCP")
        .unwrap();
    let mut buf = vec![0u8; n as usize];
    conn.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

/// The answer section as "name TYPE rdata" lines.
fn answers(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect()
}

#[tokio::test]
async fn answers_cluster_names_over_udp_and_tcp_and_follows_the_view() {
    let s = start(vec![]).await;
    for m in [
        udp(
            s.addr,
            "kubernetes.default.svc.cluster.local.",
            RecordType::A,
        )
        .await,
        tcp(
            s.addr,
            "Kubernetes.Default.svc.cluster.local.",
            RecordType::A,
        )
        .await,
    ] {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, 5);
        assert_eq!(m.answers[0].data, RData::A(A(Ipv4Addr::new(10, 96, 0, 1))));
    }
    // A StatefulSet pod by hostname; its not-ready sibling does not resolve.
    let m = udp(s.addr, "db-0.db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(
        answers(&m),
        ["db-0.db.default.svc.cluster.local. A 10.244.0.5"]
    );
    let m = udp(s.addr, "db-1.db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // SRV with the target's address in the additional section.
    let m = tcp(
        s.addr,
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(
        answers(&m),
        [
            "_https._tcp.kubernetes.default.svc.cluster.local. SRV 0 100 443 kubernetes.default.svc.cluster.local."
        ]
    );
    assert_eq!(m.additionals.len(), 1);
    // NODATA and NXDOMAIN both carry the SOA in the authority section.
    let m = udp(
        s.addr,
        "kubernetes.default.svc.cluster.local.",
        RecordType::AAAA,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    let m = udp(s.addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(m.authorities[0].name.to_ascii(), "cluster.local.");
    // PTR of the Service IP.
    let m = udp(s.addr, "1.0.96.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(
        answers(&m),
        ["1.0.96.10.in-addr.arpa. PTR kubernetes.default.svc.cluster.local."]
    );

    // A new Service appears: the running server answers for it.
    let mut v = view();
    v = ClusterView::from_objects(
        v.services.values().map(|s| (**s).clone()).chain([service(
            "default",
            "web",
            json!({"clusterIP": "10.96.0.20"}),
        )]),
        v.slices
            .values()
            .flat_map(|m| m.values().map(|s| (**s).clone())),
    );
    s.view_tx.send_replace(Arc::new(v));
    for m in [
        udp(s.addr, "web.default.svc.cluster.local.", RecordType::A).await,
        tcp(s.addr, "web.default.svc.cluster.local.", RecordType::A).await,
    ] {
        assert_eq!(answers(&m), ["web.default.svc.cluster.local. A 10.96.0.20"]);
    }
    // And an emptied view forgets everything.
    s.view_tx.send_replace(Arc::new(ClusterView::default()));
    let m = udp(s.addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    s.stop().await;
}

/// A fake upstream resolver on UDP and TCP (same port): `example.com` has one
/// address, `big.example.com` has 40 and is truncated over UDP,
/// `ext.example.test` is the ExternalName target, the rest is NXDOMAIN.
async fn fake_upstream() -> SocketAddr {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    fn reply(bytes: &[u8], over_udp: bool) -> Vec<u8> {
        let q = Message::from_vec(bytes).unwrap();
        let mut r = Message::response(q.metadata.id, OpCode::Query);
        r.metadata.recursion_available = true;
        r.add_queries(q.queries.clone());
        let name = q.queries[0].name().clone();
        let a = |ip: [u8; 4]| Record::from_rdata(name.clone(), 300, RData::A(A(ip.into())));
        match name.to_ascii().as_str() {
            "example.com." => {
                r.add_answer(a([93, 184, 216, 34]));
            }
            "ext.example.test." => {
                r.add_answer(a([1, 2, 3, 4]));
            }
            "big.example.com." if over_udp => r.metadata.truncation = true,
            "big.example.com." => {
                for i in 0..40 {
                    r.add_answer(a([10, 0, 0, i]));
                }
            }
            _ => r.metadata.response_code = ResponseCode::NXDomain,
        }
        r.to_vec().unwrap()
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let _ = udp.send_to(&reply(&buf[..n], true), from).await;
        }
    });
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let n = conn.read_u16().await.unwrap();
                let mut buf = vec![0u8; n as usize];
                conn.read_exact(&mut buf).await.unwrap();
                let r = reply(&buf, false);
                conn.write_all(&(r.len() as u16).to_be_bytes())
                    .await
                    .unwrap();
                conn.write_all(&r).await.unwrap();
            });
        }
    });
    addr
}

/// An address nothing listens on: a UDP query there fails at once.
async fn dead_upstream() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.local_addr().unwrap()
}

#[tokio::test]
async fn forwards_other_names_to_the_upstreams() {
    let up = fake_upstream().await;
    let s = start(vec![dead_upstream().await, up]).await;
    // The first upstream is down; the second answers.
    let m = udp(s.addr, "example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.metadata.authoritative);
    assert!(m.metadata.recursion_available);
    assert_eq!(answers(&m), ["example.com. A 93.184.216.34"]);
    assert_eq!(m.answers[0].ttl, 300);
    let m = tcp(s.addr, "nope.example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Truncated over UDP upstream: asked again over TCP.
    let m = udp(s.addr, "big.example.com.", RecordType::A).await;
    assert_eq!(m.answers.len(), 40);
    assert!(!m.metadata.truncation);
    // An ExternalName's target is resolved upstream, after the CNAME.
    let m = udp(s.addr, "ext.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(
        answers(&m),
        [
            "ext.default.svc.cluster.local. CNAME ext.example.test.",
            "ext.example.test. A 1.2.3.4"
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn servfail_when_no_upstream_answers() {
    let s = start(vec![dead_upstream().await]).await;
    let m = udp(s.addr, "example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    // Cluster names still answer.
    let m = udp(
        s.addr,
        "kubernetes.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    s.stop().await;
}

#[tokio::test]
async fn bind_errors_name_the_address() {
    let taken = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let (_view_tx, view_rx) = watch::channel(Arc::new(ClusterView::default()));
    let (_stop, stop_rx) = watch::channel(false);
    let err = serve(
        vec![addr],
        view_rx.clone(),
        DnsConfig::default(),
        stop_rx.clone(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Bind { proto: "UDP", .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot listen for DNS over UDP on {addr}: ")),
        "{err}"
    );
    let err = serve(vec![], view_rx, DnsConfig::default(), stop_rx)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "no address given to serve DNS on");
}
