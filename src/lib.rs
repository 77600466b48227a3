//! backstop: tells bounces of the user's own mail from backscatter, and files each message.
//!
//! # The pipeline
//!
//! Each message goes down five stages, and each module imports only from the stages below it:
//!
//! 1. [`message`]: bytes to a parsed message and its envelope (the mbox From_ line split off).
//! 2. [`rules`]: is it a bounce or an automatic reply? Rules score the message's facts.
//! 3. [`evidence`]: whose is it? The returned original, the trust anchor (who wrote the
//!    bounce), the original's Received chain judged hop by hop against the user's own hosts,
//!    networks and domains ([`evidence::own`]), and the weighing.
//! 4. [`verdict`]: [`verdict::evaluate`] puts these together into one [`verdict::Evaluation`]:
//!    clean, legit bounce, backscatter or unverified bounce, with every reason.
//! 5. [`trace`] (the `X-Backstop-*` header lines), [`log`] (the decision log), [`syslog`]
//!    (the same decision for the system log) and [`store`] (durable Maildir and mbox
//!    writers) act on it.
//!
//! Around them: [`config`] reads the YAML config (the site's, and the user's merged over
//! it), [`cli`] holds the command-line types, [`run`] is the glue the commands share (load the
//! config, read the input, take the envelope from the environment, evaluate within the CPU
//! budget of [`budget`]), and [`cmd`] has one module per command. [`error`], [`exit`],
//! [`perms`] and [`util`] are leaves that everything may use. Only `run`, `cmd`, `config`,
//! `log`, `syslog`, `perms` and `store` touch files, sockets, standard input or the
//! environment.
//!
//! # Example
//!
//! ```
//! use backstop::config::Config;
//! use backstop::message::EnvVars;
//! use backstop::rules::RuleSet;
//! use backstop::verdict::{Verdict, evaluate};
//!
//! let config = Config::from_str("own:\n  domains: [example.org]\n", "config.yaml")?;
//! let rules = RuleSet::build(&config.user_rules, "config.yaml")?;
//! let message = b"From: friend@example.net\nTo: me@example.org\nSubject: lunch?\n\nAt noon.\n";
//! let eval = evaluate(message, &config, &rules, &EnvVars::default());
//! assert_eq!(eval.verdict, Verdict::Clean);
//! # Ok::<(), backstop::error::ConfigError>(())
//! ```

/// Writes one line to standard error and never panics: `eprintln!` panics when stderr is
/// closed, and outside `deliver`'s guard that panic would exit 101, a status that makes an MTA
/// bounce the message.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        // What is said may quote a message or a file name: no control character reaches the
        // terminal or the MTA's log.
        let line = format!($($arg)*);
        let _ = writeln!(std::io::stderr(), "{}", $crate::util::text::for_terminal(&line));
    }};
}

pub mod budget;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod error;
pub mod evidence;
pub mod exit;
pub mod explain;
pub mod log;
pub mod message;
pub mod perms;
pub mod proofs;
pub mod rules;
pub mod run;
pub mod store;
pub mod syslog;
pub mod trace;
pub mod util;
pub mod verdict;

/// The version and the git revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("BACKSTOP_GIT_REV"),
    ")"
);
