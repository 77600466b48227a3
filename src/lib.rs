//! backstop: tells bounces of the user's own mail from backscatter, and files each message.

pub mod cli;
pub mod config;
pub mod deliver;
pub mod explain;
pub mod filter;
pub mod log;
pub mod message;
pub mod original;
pub mod ownership;
pub mod received;
pub mod rules;
pub mod scan;
pub mod stats;
pub mod store;
pub mod verdict;

/// The version and the git revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("BACKSTOP_GIT_REV"),
    ")"
);
