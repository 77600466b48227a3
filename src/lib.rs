//! backstop: tells bounces of the user's own mail from backscatter, and files each message.

/// Writes one line to standard error and never panics: `eprintln!` panics when stderr is
/// closed, and outside `deliver`'s guard that panic would exit 101, a status that makes an MTA
/// bounce the message.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod anchor;
pub mod budget;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod dkim_keys;
pub mod explain;
pub mod filter;
pub mod learn;
pub mod log;
pub mod message;
pub mod original;
pub mod ownership;
pub mod perms;
pub mod proofs;
pub mod received;
pub mod rules;
pub mod scan;
pub mod stats;
pub mod store;
pub mod trace;
pub mod verdict;

/// The version and the git revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("BACKSTOP_GIT_REV"),
    ")"
);
