//! Small pure helpers every stage may use: date arithmetic, the days of a chart and its SVG, text cutting. A leaf: it
//! imports nothing from the crate.

pub mod dates;
pub mod days;
pub mod svg;
pub mod text;
