//! The runc runtime.
