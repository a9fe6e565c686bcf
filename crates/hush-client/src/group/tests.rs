//! Engine tests (in-memory provider).
