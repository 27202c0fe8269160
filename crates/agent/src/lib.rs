//! The skiff node agent: what the kubelet does, for one node.
//!
//! # Layout
//! - [`runtime`]: the container runtime boundary (runc under a shim; a fake for tests).
//! - [`image`]: the image store, archive import and reference resolution.
//! - [`pod`]: the pod worker: a pure planner and status computation, and the loop that carries plans out.

pub mod image;
pub mod runtime;
