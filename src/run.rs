//! The glue the commands share: load the config and its rules, read the input within the size
//! limit, take the envelope from the environment and the flags, and evaluate. This and `cmd`
//! are where the process meets its files, standard input and environment; the stages below
//! do no IO.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use crate::budget::evaluate_within;
use crate::cli::{CommonArgs, InputArgs};
use crate::config::Config;
use crate::error::{ConfigError, InputError};
use crate::message::EnvVars;
use crate::rules::RuleSet;
use crate::verdict::{Evaluation, evaluate};

/// Loads the config and builds the rules it asks for.
pub fn load(config: Option<&Path>) -> Loaded {
    let config = Config::load(config)?;
    let name = config
        .path
        .as_ref()
        .map_or_else(|| "(defaults)".to_string(), |p| p.display().to_string());
    let rules = RuleSet::build(&config.user_rules, &name)?;
    Ok((config, rules))
}

/// A config and its rules, or why they could not be loaded.
pub type Loaded = Result<(Config, RuleSet), ConfigError>;

/// The envelope as the environment and the flags give it.
pub fn env_vars(args: &CommonArgs) -> EnvVars {
    let mut env = process_env_vars();
    if let Some(s) = &args.sender {
        env.sender = Some(s.clone());
    }
    if let Some(r) = &args.recipient {
        env.recipient = Some(("--recipient".to_string(), r.clone()));
        env.recipients = vec![("--recipient".to_string(), r.clone())];
    }
    env
}

/// The envelope variables the delivery agent set: SENDER, and RECIPIENT, ORIGINAL_RECIPIENT and
/// ORIG_RECIPIENT (each that holds an address; the first is the recipient).
fn process_env_vars() -> EnvVars {
    let get = |name: &str| std::env::var(name).ok();
    let recipients: Vec<(String, String)> = ["RECIPIENT", "ORIGINAL_RECIPIENT", "ORIG_RECIPIENT"]
        .iter()
        .filter_map(|n| {
            get(n)
                .filter(|v| v.contains('@'))
                .map(|v| (n.to_string(), v))
        })
        .collect();
    EnvVars {
        sender: get("SENDER"),
        recipient: recipients.first().cloned(),
        recipients,
    }
}

/// The unread rest of an input longer than the limit.
pub type Rest = Box<dyn Read>;

/// Reads the input (the file, or standard input for none or "-") up to `limit` bytes. When it
/// is longer, gives the first `limit + 1` bytes and the reader of the rest. Errors name the
/// file.
pub fn read_limited(
    file: Option<&Path>,
    limit: u64,
) -> Result<(Vec<u8>, Option<Rest>), InputError> {
    let what = || file.map_or_else(|| "standard input".to_string(), |p| p.display().to_string());
    let mut reader: Rest = match file {
        Some(p) if p != Path::new("-") => {
            Box::new(std::fs::File::open(p).map_err(|error| InputError::Read {
                what: what(),
                error,
            })?)
        }
        _ => Box::new(std::io::stdin()),
    };
    let mut bytes = Vec::new();
    let cap = limit.saturating_add(1);
    (&mut reader)
        .take(cap)
        .read_to_end(&mut bytes)
        .map_err(|error| InputError::Read {
            what: what(),
            error,
        })?;
    let over = bytes.len() as u64 >= cap;
    Ok((bytes, over.then_some(reader)))
}

/// Reads and evaluates the message the arguments name, within the size limit and the CPU
/// budget.
pub fn evaluate_input(args: &InputArgs) -> Result<Evaluation, InputError> {
    let (config, rules) = load(args.common.config.as_deref())?;
    let (raw, rest) = read_limited(args.file.as_deref(), config.max_size)?;
    if rest.is_some() {
        let note = format!(
            "the message is larger than max_size ({} bytes): not parsed, goes to the inbox",
            config.max_size
        );
        return Ok(Evaluation::unparsed(note, Default::default()));
    }
    Ok(evaluate_within(
        &Arc::new(raw),
        &Arc::new(config),
        rules,
        &env_vars(&args.common),
    ))
}

/// Evaluates bytes, honouring the size limit.
pub fn evaluate_bytes(raw: &[u8], config: &Config, rules: &RuleSet, env: &EnvVars) -> Evaluation {
    if raw.len() as u64 > config.max_size {
        let note = format!(
            "the message ({} bytes) is larger than max_size ({} bytes): not parsed, goes to the inbox",
            raw.len(),
            config.max_size
        );
        return Evaluation::unparsed(note, Default::default());
    }
    evaluate(raw, config, rules, env)
}

/// Makes a panic print one line in backstop's words, never starting with a status code: for
/// the commands that a mail host runs and that turn a panic into exit 75.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(std::io::stderr(), "backstop: internal error: {info}");
    }));
}

/// Test-only fault injection, compiled into debug builds alone: with
/// `BACKSTOP_FAULT=<point>` set, the named point panics.
pub(crate) fn fault_point(point: &str) {
    if cfg!(debug_assertions) && std::env::var("BACKSTOP_FAULT").is_ok_and(|v| v == point) {
        panic!("fault injected at {point}");
    }
}

/// Writes a report to standard output: text made safe for a terminal
/// ([`for_terminal`](crate::util::text::for_terminal)), JSON as it is (serde_json escapes its
/// control characters itself). The error names `what` was being written.
pub fn print_report(
    text: &str,
    format: crate::cli::ReportFormat,
    what: &str,
) -> Result<(), String> {
    use std::io::Write;
    let shown = match format {
        crate::cli::ReportFormat::Text => crate::util::text::for_terminal(text),
        crate::cli::ReportFormat::Json => std::borrow::Cow::Borrowed(text),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(shown.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write the {what}: {e}"))
}
