//! The cluster DNS server.
//!
//! [`answer`] decides, as a pure function of the node's
//! [`ClusterView`](crate::view::ClusterView), what the server says for one
//! question, following CoreDNS's `kubernetes` plugin (with `pods insecure`)
//! and the Kubernetes DNS-based service discovery specification:
//!
//! | name | answer |
//! |---|---|
//! | `svc.ns.svc.<domain>` | A/AAAA: the cluster IPs; headless: the ready endpoint IPs; ExternalName: CNAME (its target resolved upstream); SRV: one per port |
//! | `_port._proto.svc.ns.svc.<domain>` | SRV to the Service name (ClusterIP) or to each ready endpoint (headless), addresses in the additional section |
//! | `host.svc.ns.svc.<domain>` | A/AAAA of the headless endpoint whose hostname (or dashed IP) is `host` |
//! | `a-b-c-d.ns.pod.<domain>` | A a.b.c.d, for any namespace |
//! | `d.c.b.a.in-addr.arpa`, `….ip6.arpa` | PTR to the Service, else to each endpoint with that IP |
//! | `dns-version.<domain>` | TXT `1.1.0` |
//! | `<domain>` | SOA, NS |
//!
//! A name that exists without records of the asked type is NODATA, an unknown
//! name in the domain NXDOMAIN, both with the zone's SOA (TTL and minimum = the
//! configured TTL). Reverse names of unknown IPs inside the configured Service
//! and Pod CIDRs are NXDOMAIN; everything else goes to the upstreams.
//!
//! [`serve`] (or [`DnsServer::bind`] + [`DnsServer::run`]) puts this on UDP and
//! TCP with hickory-server, reading the latest view snapshot for every query.
//! Forwarded questions go to each upstream in turn over UDP (TCP when the
//! answer is truncated), and SERVFAIL when none answers.

mod answer;
mod forward;
mod server;

pub use answer::{Answer, DnsConfig, answer, upstreams_from_resolv_conf};
pub use server::{DnsServer, Error, serve};
