//! The cluster DNS server.
//!
//! [`answer`] decides, as a pure function of the node's [`ClusterView`](crate::view::ClusterView),
//! what the server says for one question, following CoreDNS's `kubernetes`
//! plugin (with `pods insecure`) and the Kubernetes DNS-based service discovery
//! specification. [`serve`] puts it on UDP and TCP with hickory-server and sends
//! names outside the cluster domain to the host's resolvers.

mod answer;

pub use answer::{Answer, DnsConfig, answer, upstreams_from_resolv_conf};
mod forward;
mod server;

pub use server::{DnsServer, Error, serve};
