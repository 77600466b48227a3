//! Stage 3, whose is it: the original message a bounce quotes, its Received chain judged hop
//! by hop, and the weighing of that evidence against the user's own hosts and domains.

pub mod original;
pub mod own;
pub mod ownership;
pub mod received;
