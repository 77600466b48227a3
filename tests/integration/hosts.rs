//! Integration tests: hosts.
