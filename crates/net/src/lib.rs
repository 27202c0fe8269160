//! The node's networking services: what makes a Service name and a Service IP
//! reach the right pods.
//!
//! # Layout
//! - [`balancer`]: the agent's client-side TCP load balancer for the API
//!   servers: a local port forwarding each connection to a live server.
//! - [`view`]: the node's view of the cluster's Services and EndpointSlices, kept
//!   current by one watch each and shared by the proxy and the DNS server.
//! - [`proxy`]: the service proxy, kube-proxy's model programmed as nftables rules.
//! - [`dns`]: the cluster DNS server (hickory), answering for `cluster.local`
//!   from the view and forwarding other names to the host's resolvers.

pub mod balancer;
pub mod dns;
pub mod proxy;
pub mod view;
