//! The one integration test binary: each module drives the built `backstop` binary.

mod scenarios;
mod util;

mod cli;
mod complexity;
mod config_errors;
mod deliver;
mod firstday;
mod forgery;
mod fuzz;
mod hardening;
mod hosts;
mod init;
mod malformed;
mod milter;
mod proofs;
mod recognition;
mod scan;
mod site;
