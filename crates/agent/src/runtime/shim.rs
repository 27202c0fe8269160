//! The per-container shim.
