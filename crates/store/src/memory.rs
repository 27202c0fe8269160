//! In-memory backend.

/// An in-memory store for tests.
pub struct MemoryStore;
