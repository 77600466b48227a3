//! Stage 3, whose is it: the original message a bounce quotes, the trust anchor (who wrote the
//! bounce), the original's Received chain judged hop by hop from there, and the weighing of
//! that evidence against the user's own hosts and domains.

pub mod anchor;
pub mod original;
pub mod own;
pub mod ownership;
pub mod received;
