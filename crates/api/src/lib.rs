//! The skiff resource catalogue and the pure rules around it.
//!
//! Nothing here does IO: the apiserver, controllers and agent call into it.
//!
//! # Layout
//! - [`catalog`]: every served kind, its group/version/resource, scope, short names, subresources.
//! - [`field`]: field errors with Kubernetes' paths and messages.
//! - [`defaults`]: per-kind defaulting, as the Kubernetes apiserver applies it.
//! - [`validation`]: per-kind validation returning field errors.
//! - [`node_match`]: taints and tolerations, node selectors and node affinity terms.
//! - [`strategic`]: strategic merge patch with Kubernetes' patch strategies and directives.
//! - [`selector`]: label and field selectors.
//! - [`printers`]: `kubectl get` table columns and rows, including the pod STATUS column.
//! - [`convert`]: conversion between versions that share storage.
//! - [`meta`]: small helpers over JSON objects.

pub mod catalog;
pub mod convert;
pub mod defaults;
pub mod field;
pub mod meta;
pub mod node_match;
pub mod printers;
pub mod selector;
pub mod strategic;
pub mod validation;

pub use catalog::{RESOURCES, ResourceInfo};
pub use field::{ErrorType, FieldError};
