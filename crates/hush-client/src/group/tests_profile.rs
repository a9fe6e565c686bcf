//! Tests on a real profile.
