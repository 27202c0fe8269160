//! The skiff API server.
