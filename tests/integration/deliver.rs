//! Integration tests: deliver.
