//! A recording fake runtime for tests.
