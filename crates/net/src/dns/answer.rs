//! What the cluster DNS says for one question: a pure function of the node's
//! [`ClusterView`] and the [`DnsConfig`], following CoreDNS's `kubernetes`
//! plugin (`pods insecure`) and the Kubernetes DNS specification.

use crate::view::ClusterView;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// The TTL CoreDNS gives the `dns-version` TXT record.
const SCHEMA_TTL: u32 = 28800;
/// The schema version the Kubernetes DNS specification defines.
const SCHEMA_VERSION: &str = "1.1.0";
/// How many CNAMEs inside the cluster domain an answer follows.
const MAX_CHASE: usize = 8;

/// How the cluster DNS is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The cluster domain, `cluster.local` (with or without the final dot).
    pub domain: String,
    /// The TTL of every record and of negative answers; CoreDNS's default is 5.
    pub ttl: u32,
    /// Where names outside the cluster domain go, from the host's resolv.conf.
    pub upstreams: Vec<SocketAddr>,
    /// The Service CIDR: reverse names in it are answered here, NXDOMAIN when unknown.
    pub service_cidr: Option<(Ipv4Addr, u8)>,
    /// The Pod CIDR: reverse names in it are answered here, NXDOMAIN when unknown.
    pub cluster_cidr: Option<(Ipv4Addr, u8)>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            domain: "cluster.local".into(),
            ttl: 5,
            upstreams: Vec::new(),
            service_cidr: None,
            cluster_cidr: None,
        }
    }
}

/// The answer to one question.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// NOERROR with records. When `chase` is set the answer ends in a CNAME to
    /// a name outside the cluster domain, whose records of the asked type the
    /// server adds from the upstreams.
    Records {
        /// The answer section.
        answers: Vec<Record>,
        /// The additional section (the addresses of SRV targets).
        additionals: Vec<Record>,
        /// An external CNAME target still to resolve.
        chase: Option<Name>,
    },
    /// NOERROR without records: the name exists, but has no record of this type.
    NoData {
        /// The zone's SOA, for the authority section.
        soa: Record,
    },
    /// NXDOMAIN: no such name in the zone.
    NxDomain {
        /// The zone's SOA, for the authority section.
        soa: Record,
    },
    /// Not ours: ask the upstreams.
    Forward,
}

/// The upstream servers a resolv.conf names (port 53), in order. Link-local
/// IPv6 addresses with a zone (`fe80::1%eth0`) are skipped: a socket address
/// here carries no scope.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        if let Some(Ok(ip)) = words.next().map(IpAddr::from_str) {
            let addr = SocketAddr::new(ip, 53);
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
    }
    out
}

/// Answers `name`/`qtype` from the view. Names are matched case-insensitively;
/// records carry the name as asked.
pub fn answer(view: &ClusterView, config: &DnsConfig, name: &Name, qtype: RecordType) -> Answer {
    let zone = Zone::new(config);
    let mut chain = Vec::new();
    let mut step = zone.lookup(view, name, qtype);
    for _ in 0..MAX_CHASE {
        match step {
            // A CNAME that stays inside the cluster domain is followed here, as
            // CoreDNS does; a target without records leaves the chain as it is.
            Answer::Records {
                answers,
                additionals,
                chase: Some(target),
            } if zone.contains(&target) => {
                chain.extend(answers);
                step = match zone.lookup(view, &target, qtype) {
                    next @ Answer::Records { .. } => next,
                    _ => {
                        return Answer::Records {
                            answers: chain,
                            additionals,
                            chase: None,
                        };
                    }
                };
            }
            Answer::Records {
                answers,
                additionals,
                chase,
            } => {
                chain.extend(answers);
                return Answer::Records {
                    answers: chain,
                    additionals,
                    chase,
                };
            }
            other => return other,
        }
    }
    Answer::Records {
        answers: chain,
        additionals: Vec::new(),
        chase: None,
    }
}

/// The cluster domain, parsed once per question.
struct Zone<'a> {
    config: &'a DnsConfig,
    /// The domain's labels, lowercase, leftmost first.
    labels: Vec<String>,
    origin: Name,
}

/// A name's labels, lowercase, leftmost first.
fn labels_of(name: &Name) -> Vec<String> {
    name.iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect()
}

fn fqdn(s: &str) -> Name {
    let mut n = Name::from_ascii(s).unwrap_or_else(|_| Name::root());
    n.set_fqdn(true);
    n
}

impl<'a> Zone<'a> {
    fn new(config: &'a DnsConfig) -> Self {
        let origin = fqdn(config.domain.trim_end_matches('.'));
        Self {
            config,
            labels: labels_of(&origin),
            origin,
        }
    }

    fn contains(&self, name: &Name) -> bool {
        let l = labels_of(name);
        l.len() >= self.labels.len() && l[l.len() - self.labels.len()..] == self.labels[..]
    }

    /// `label.label…<domain>.`
    fn name(&self, parts: &[&str]) -> Name {
        let mut s = parts.join(".");
        s.push('.');
        s.push_str(&self.origin.to_ascii());
        fqdn(&s)
    }

    fn record(&self, name: &Name, data: RData) -> Record {
        Record::from_rdata(name.clone(), self.config.ttl, data)
    }

    fn soa(&self) -> Record {
        self.soa_at(&self.origin)
    }

    fn soa_at(&self, owner: &Name) -> Record {
        let ttl = self.config.ttl;
        self.record(
            owner,
            RData::SOA(SOA::new(
                self.name(&["ns", "dns"]),
                self.name(&["hostmaster"]),
                1,
                7200,
                1800,
                86400,
                ttl,
            )),
        )
    }

    fn nxdomain(&self) -> Answer {
        Answer::NxDomain { soa: self.soa() }
    }

    fn nodata(&self) -> Answer {
        Answer::NoData { soa: self.soa() }
    }

    /// Records found, or NODATA when none is of the asked type.
    fn found(&self, answers: Vec<Record>, additionals: Vec<Record>) -> Answer {
        if answers.is_empty() {
            self.nodata()
        } else {
            Answer::Records {
                answers,
                additionals,
                chase: None,
            }
        }
    }

    fn lookup(&self, view: &ClusterView, name: &Name, qtype: RecordType) -> Answer {
        let labels = labels_of(name);
        if !self.contains(name) {
            return self.reverse(view, name, &labels, qtype);
        }
        let rest: Vec<&str> = labels[..labels.len() - self.labels.len()]
            .iter()
            .map(String::as_str)
            .collect();
        match rest.as_slice() {
            [] => match qtype {
                RecordType::SOA => self.found(vec![self.soa_at(name)], vec![]),
                RecordType::NS => self.found(
                    vec![self.record(name, RData::NS(NS(self.name(&["ns", "dns"]))))],
                    vec![],
                ),
                _ => self.nodata(),
            },
            ["dns-version"] => match qtype {
                RecordType::TXT => {
                    let r = Record::from_rdata(
                        name.clone(),
                        SCHEMA_TTL,
                        RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()])),
                    );
                    self.found(vec![r], vec![])
                }
                _ => self.nodata(),
            },
            ["svc"] | ["pod"] => self.nodata(),
            [ns, "svc"] => {
                if view.services.keys().any(|k| k.namespace == *ns) {
                    self.nodata()
                } else {
                    self.nxdomain()
                }
            }
            [svc, ns, "svc"] => match view.service(ns, svc) {
                Some(s) => self.service(view, name, s, qtype),
                None => self.nxdomain(),
            },
            [ep, svc, ns, "svc"] => match view.service(ns, svc) {
                Some(s) if is_headless(s) => self.endpoint(view, name, s, ep, qtype),
                _ => self.nxdomain(),
            },
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                match view.service(ns, svc) {
                    Some(s) => {
                        let want = (&port[1..], &proto[1..]);
                        let srv = self.srv(view, name, s, Some(want));
                        match srv {
                            Some((answers, additionals)) if qtype == RecordType::SRV => {
                                self.found(answers, additionals)
                            }
                            Some(_) => self.nodata(),
                            None => self.nxdomain(),
                        }
                    }
                    None => self.nxdomain(),
                }
            }
            [ip, _ns, "pod"] => match dashed_ip(ip) {
                Some(ip) => self.found(address_records(self, name, [ip], qtype), vec![]),
                None => self.nxdomain(),
            },
            _ => self.nxdomain(),
        }
    }

    /// The records of the Service's own name.
    fn service(&self, view: &ClusterView, name: &Name, s: &Service, qtype: RecordType) -> Answer {
        let spec = s.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") {
            let target = fqdn(
                spec.external_name
                    .as_deref()
                    .unwrap_or("")
                    .trim_end_matches('.'),
            );
            let cname = self.record(name, RData::CNAME(CNAME(target.clone())));
            let chase = (qtype != RecordType::CNAME).then_some(target);
            return Answer::Records {
                answers: vec![cname],
                additionals: vec![],
                chase,
            };
        }
        match qtype {
            RecordType::A | RecordType::AAAA => {
                let ips: Vec<IpAddr> = if is_headless(s) {
                    ready_endpoints(view, s).into_iter().map(|e| e.ip).collect()
                } else {
                    cluster_ips(s)
                };
                self.found(address_records(self, name, ips, qtype), vec![])
            }
            RecordType::SRV => match self.srv(view, name, s, None) {
                Some((answers, additionals)) => self.found(answers, additionals),
                None => self.nodata(),
            },
            _ => self.nodata(),
        }
    }

    /// The records of one headless endpoint, named by hostname or dashed IP.
    fn endpoint(
        &self,
        view: &ClusterView,
        name: &Name,
        s: &Service,
        label: &str,
        qtype: RecordType,
    ) -> Answer {
        let ips: Vec<IpAddr> = ready_endpoints(view, s)
            .into_iter()
            .filter(|e| e.label() == label)
            .map(|e| e.ip)
            .collect();
        if ips.is_empty() {
            return self.nxdomain();
        }
        self.found(address_records(self, name, ips, qtype), vec![])
    }

    /// SRV records for the Service's ports (only the one named `want` =
    /// (port name, protocol) when given), with the targets' addresses.
    /// None when no port matches.
    fn srv(
        &self,
        view: &ClusterView,
        name: &Name,
        s: &Service,
        want: Option<(&str, &str)>,
    ) -> Option<(Vec<Record>, Vec<Record>)> {
        let svc = s.metadata.name.as_deref().unwrap_or("");
        let ns = s.metadata.namespace.as_deref().unwrap_or("");
        let matches = |pname: &str, proto: &str| match want {
            None => true,
            Some((w, p)) => pname.eq_ignore_ascii_case(w) && proto.eq_ignore_ascii_case(p),
        };
        // (target, port, address) before de-duplication: CoreDNS divides the
        // weight by this count.
        let mut found: Vec<(Name, u16, IpAddr)> = Vec::new();
        if is_headless(s) {
            for e in ready_endpoints(view, s) {
                for (pname, proto, port) in &e.ports {
                    if matches(pname, proto) {
                        found.push((self.name(&[&e.label(), svc, ns, "svc"]), *port, e.ip));
                    }
                }
            }
        } else {
            let target = self.name(&[svc, ns, "svc"]);
            for p in s
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .into_iter()
                .flatten()
            {
                let proto = p.protocol.as_deref().unwrap_or("TCP");
                if matches(p.name.as_deref().unwrap_or(""), proto) {
                    for ip in cluster_ips(s) {
                        found.push((target.clone(), p.port as u16, ip));
                    }
                }
            }
        }
        if found.is_empty() {
            return None;
        }
        let weight = (100 / found.len()) as u16;
        let mut seen = BTreeSet::new();
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        let mut seen_addr = BTreeSet::new();
        for (target, port, ip) in found {
            if seen.insert((target.to_ascii(), port)) {
                answers
                    .push(self.record(name, RData::SRV(SRV::new(0, weight, port, target.clone()))));
            }
            if seen_addr.insert((target.to_ascii(), ip)) {
                additionals.push(self.record(&target, ip_rdata(ip)));
            }
        }
        Some((answers, additionals))
    }

    /// PTR answers for `*.in-addr.arpa` / `*.ip6.arpa` names of Service and
    /// endpoint IPs; NXDOMAIN inside the configured CIDRs; forwarded otherwise.
    fn reverse(
        &self,
        view: &ClusterView,
        name: &Name,
        labels: &[String],
        qtype: RecordType,
    ) -> Answer {
        let Some(ip) = parse_reverse(labels) else {
            return Answer::Forward;
        };
        let mut targets: Vec<Name> = Vec::new();
        for (key, s) in &view.services {
            if !is_headless(s) && cluster_ips(s).contains(&ip) {
                targets.push(self.name(&[&key.name, &key.namespace, "svc"]));
                break;
            }
        }
        if targets.is_empty() {
            for (key, s) in &view.services {
                for e in ready_endpoints(view, s) {
                    if e.ip == ip {
                        let t = self.name(&[&e.label(), &key.name, &key.namespace, "svc"]);
                        if !targets.contains(&t) {
                            targets.push(t);
                        }
                    }
                }
            }
        }
        if !targets.is_empty() {
            if qtype != RecordType::PTR {
                return Answer::NoData {
                    soa: self.soa_at(&reverse_zone(ip, self.cidr_of(ip))),
                };
            }
            let answers = targets
                .into_iter()
                .map(|t| self.record(name, RData::PTR(PTR(t))))
                .collect();
            return Answer::Records {
                answers,
                additionals: vec![],
                chase: None,
            };
        }
        match self.cidr_of(ip) {
            Some(bits) => Answer::NxDomain {
                soa: self.soa_at(&reverse_zone(ip, Some(bits))),
            },
            None => Answer::Forward,
        }
    }

    /// The prefix length of the configured CIDR holding `ip`, if any.
    fn cidr_of(&self, ip: IpAddr) -> Option<u8> {
        let IpAddr::V4(v4) = ip else { return None };
        [self.config.service_cidr, self.config.cluster_cidr]
            .into_iter()
            .flatten()
            .find(|(net, bits)| in_cidr(v4, *net, *bits))
            .map(|(_, bits)| bits)
    }
}

fn in_cidr(ip: Ipv4Addr, net: Ipv4Addr, bits: u8) -> bool {
    let bits = bits.min(32);
    if bits == 0 {
        return true;
    }
    let mask = u32::MAX << (32 - u32::from(bits));
    u32::from(ip) & mask == u32::from(net) & mask
}

/// The reverse zone a CIDR falls in, rounded down to whole octets
/// (`10.96.0.0/12` → `10.in-addr.arpa.`).
fn reverse_zone(ip: IpAddr, bits: Option<u8>) -> Name {
    match ip {
        IpAddr::V4(v4) => {
            let octets = usize::from(bits.unwrap_or(0) / 8).min(4);
            let mut parts: Vec<String> = v4.octets()[..octets]
                .iter()
                .rev()
                .map(u8::to_string)
                .collect();
            parts.push("in-addr.arpa".into());
            fqdn(&parts.join("."))
        }
        IpAddr::V6(_) => fqdn("ip6.arpa"),
    }
}

/// The IP a full reverse name stands for.
fn parse_reverse(labels: &[String]) -> Option<IpAddr> {
    match labels {
        [d, c, b, a, inaddr, arpa] if inaddr == "in-addr" && arpa == "arpa" => {
            let s = format!("{a}.{b}.{c}.{d}");
            Ipv4Addr::from_str(&s).ok().map(IpAddr::V4)
        }
        [nibbles @ .., ip6, arpa] if ip6 == "ip6" && arpa == "arpa" && nibbles.len() == 32 => {
            let mut v: u128 = 0;
            for n in nibbles.iter().rev() {
                if n.len() != 1 {
                    return None;
                }
                v = (v << 4) | u128::from(u8::from_str_radix(n, 16).ok()?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(v)))
        }
        _ => None,
    }
}

/// `10-1-2-3` → 10.1.2.3; `fd00--1` → fd00::1.
fn dashed_ip(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = Ipv4Addr::from_str(&label.replace('-', ".")) {
        return Some(IpAddr::V4(v4));
    }
    Ipv6Addr::from_str(&label.replace('-', ":"))
        .ok()
        .map(IpAddr::V6)
}

/// `10.1.2.3` → `10-1-2-3`; `fd00::1` → `fd00--1`.
fn dash(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

fn ip_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// A/AAAA records of `name` for the addresses of the asked family.
fn address_records(
    zone: &Zone<'_>,
    name: &Name,
    ips: impl IntoIterator<Item = IpAddr>,
    qtype: RecordType,
) -> Vec<Record> {
    let mut seen = BTreeSet::new();
    ips.into_iter()
        .filter(|ip| match qtype {
            RecordType::A => ip.is_ipv4(),
            RecordType::AAAA => ip.is_ipv6(),
            _ => false,
        })
        .filter(|ip| seen.insert(*ip))
        .map(|ip| zone.record(name, ip_rdata(ip)))
        .collect()
}

fn is_headless(s: &Service) -> bool {
    let spec = s.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) != Some("ExternalName")
        && spec.and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The Service's cluster IPs (`spec.clusterIPs`, else `spec.clusterIP`).
fn cluster_ips(s: &Service) -> Vec<IpAddr> {
    let Some(spec) = s.spec.as_ref() else {
        return Vec::new();
    };
    let list: Vec<&str> = match spec.cluster_ips.as_ref() {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    list.into_iter()
        .filter_map(|ip| IpAddr::from_str(ip).ok())
        .collect()
}

/// One ready address of a Service's endpoints.
struct Endpoint {
    ip: IpAddr,
    hostname: Option<String>,
    /// (name, protocol, port) of the slice the address is in.
    ports: Vec<(String, String, u16)>,
}

impl Endpoint {
    /// Its DNS label: the hostname, else the dashed IP.
    fn label(&self) -> String {
        match &self.hostname {
            Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
            _ => dash(self.ip),
        }
    }
}

/// The addresses of the Service's endpoints whose `ready` condition is not
/// false (an absent condition counts as ready, as the API documents), in
/// slice order, each address once.
fn ready_endpoints(view: &ClusterView, s: &Service) -> Vec<Endpoint> {
    let ns = s.metadata.namespace.as_deref().unwrap_or("");
    let name = s.metadata.name.as_deref().unwrap_or("");
    let mut out: Vec<Endpoint> = Vec::new();
    for slice in view.slices_of(ns, name) {
        let ports = slice_ports(slice);
        for e in &slice.endpoints {
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &e.addresses {
                let Ok(ip) = IpAddr::from_str(a) else {
                    continue;
                };
                if out.iter().any(|o| o.ip == ip) {
                    continue;
                }
                out.push(Endpoint {
                    ip,
                    hostname: e.hostname.clone(),
                    ports: ports.clone(),
                });
            }
        }
    }
    out
}

fn slice_ports(slice: &EndpointSlice) -> Vec<(String, String, u16)> {
    slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let port = u16::try_from(p.port?).ok()?;
            Some((
                p.name.clone().unwrap_or_default(),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port,
            ))
        })
        .collect()
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
