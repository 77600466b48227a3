//! Integration tests: malformed.
