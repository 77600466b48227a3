//! Integration tests: config_errors.
