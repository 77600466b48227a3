//! Small pure helpers every stage may use: date arithmetic and text cutting. A leaf: it
//! imports nothing from the crate.

pub mod dates;
pub mod text;
