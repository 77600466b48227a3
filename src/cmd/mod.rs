//! One module per command. A command reads its input, calls the library, and writes its
//! output; commands never import each other (shared glue lives in `crate::run`).

pub mod check;
pub mod config;
pub mod deliver;
pub mod dkim_keys;
pub mod explain;
pub mod filter;
pub mod init;
pub mod learn;
pub mod lint;
pub mod scan;
pub mod stats;
