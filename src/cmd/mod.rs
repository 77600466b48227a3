//! One module per command. A command reads its input, calls the library, and writes its
//! output; commands never import each other (shared glue lives in `crate::run`).

pub mod deliver;
pub mod filter;
pub mod scan;
pub mod stats;
