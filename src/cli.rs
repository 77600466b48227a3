//! The command line: arguments, and the glue from each command to the modules that do the work.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::budget::evaluate_within;
use crate::config::{Config, ConfigError};
use crate::explain;
use crate::message::EnvVars;
use crate::rules::RuleSet;
use crate::verdict::{Evaluation, Verdict, evaluate};

/// Stops e-mail backscatter: tells bounces of your own mail from forged ones.
#[derive(Debug, Parser)]
#[command(
    name = "backstop",
    version = crate::VERSION,
    about = "Stops e-mail backscatter: tells bounces of your own mail from forged ones.",
    after_help = "See man backstop for hook-ups, verdicts and exit codes, and man backstop.yaml for the config."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the verdict for one message (no side effects).
    Check(CheckArgs),
    /// Print the path the decision took, step by step.
    Explain(InputArgs),
    /// Check a config or rules file without reading any message.
    Lint(LintArgs),
    /// Decide and deliver one message from standard input (exit 0 or 75 only).
    Deliver(crate::deliver::DeliverArgs),
    /// Print the message with X-Backstop-Verdict and X-Backstop-Reason headers added.
    ///
    /// Any X-Backstop-* header the message came with is removed, so that the rules after it
    /// act on backstop's own verdict alone.
    Filter(InputArgs),
    /// Classify a Maildir or mbox and move its backscatter away (a dry run without --apply).
    Scan(crate::scan::ScanArgs),
    /// Summarise the decision log: verdicts per day, top bounce senders, the current wave.
    Stats(crate::stats::StatsArgs),
    /// Record the Message-IDs of mail you sent in the ledger (one message on stdin, or Sent folders).
    Learn(crate::learn::LearnArgs),
    /// Manage the DKIM public keys backstop checks returned originals with.
    DkimKeys(crate::dkim_keys::DkimKeysArgs),
}

/// `deliver`'s help line when it is parsed alone (the same as its doc line above: a test).
const DELIVER_ABOUT: &str =
    "Decide and deliver one message from standard input (exit 0 or 75 only)";

/// Options every message-reading command takes.
#[derive(Debug, Args, Clone)]
pub struct InputArgs {
    /// The message file; standard input when absent or "-".
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The config file and the envelope, for every command that decides on a message.
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// The config file (default: ~/.config/backstop/config.yaml when it exists).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The envelope sender, overriding $SENDER ("" for the null sender).
    #[arg(long, value_name = "ADDRESS")]
    pub sender: Option<String>,
    /// The envelope recipient, overriding $RECIPIENT.
    #[arg(long, value_name = "ADDRESS")]
    pub recipient: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A line with the verdict, kind and action, then the reasons.
    Text,
    /// One JSON object.
    Json,
    /// The verdict word alone, with no newline (for Sieve execute :output).
    Word,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Exit 0 when the message is backscatter and 1 when it is not (like grep -q).
    #[arg(long)]
    pub exit_status: bool,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// The config or rules file (default: the default config file).
    pub file: Option<PathBuf>,
}

/// Exit status for usage and config errors.
const EXIT_ERROR: u8 = 2;

/// Runs the command line; returns the process exit code.
pub fn run() -> ExitCode {
    // `deliver` runs once per message: its arguments are parsed by its own subcommand
    // alone, which spares building the whole command tree (a tenth of a delivery's work).
    if std::env::args_os().nth(1).is_some_and(|a| a == "deliver") {
        return match parse_deliver(std::env::args_os().skip(1)) {
            Ok(args) => crate::deliver::run(&args),
            Err(err) => usage_error(err, true),
        };
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let delivering = std::env::args().skip(1).any(|a| a == "deliver");
            return usage_error(err, delivering);
        }
    };
    match cli.command {
        Command::Check(args) => check(&args),
        Command::Explain(args) => explain_cmd(&args),
        Command::Lint(args) => lint(&args),
        Command::Deliver(args) => crate::deliver::run(&args),
        Command::Filter(args) => crate::filter::run(&args),
        Command::Scan(args) => crate::scan::run(&args),
        Command::Stats(args) => crate::stats::run(&args),
        Command::Learn(args) => crate::learn::run(&args),
        Command::DkimKeys(args) => crate::dkim_keys::run(&args),
    }
}

/// The arguments of `deliver` (`args` starts with the word `deliver`), parsed by the same
/// definitions as in the whole command line.
pub fn parse_deliver<I, T>(args: I) -> Result<crate::deliver::DeliverArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches;
    // The flattened CommonArgs would lend its doc line: the about comes after.
    crate::deliver::DeliverArgs::augment_args(clap::Command::new("deliver"))
        .bin_name("backstop deliver")
        .about(DELIVER_ABOUT)
        .try_get_matches_from(args)
        .and_then(|m| crate::deliver::DeliverArgs::from_arg_matches(&m))
}

/// Reports a usage error and gives the exit status. A mistyped hook-up must defer mail,
/// never bounce or drop it: deliver exits 0 or 75 only, and when a host (not a terminal)
/// feeds it a message, even help and version output must not pass for a delivery.
fn usage_error(err: clap::Error, delivering: bool) -> ExitCode {
    let from_a_host = !std::io::stdin().is_terminal();
    if delivering && (err.use_stderr() || from_a_host) {
        let text = err.to_string();
        let first = text.lines().next().unwrap_or("usage error");
        say!("backstop: {first}; the MTA will try again");
        return ExitCode::from(crate::deliver::EX_TEMPFAIL);
    }
    err.exit();
}

/// Loads the config and builds the rules it asks for.
pub fn load(config: Option<&Path>) -> Result<(Config, RuleSet), ConfigError> {
    let config = Config::load(config)?;
    let name = config
        .path
        .as_ref()
        .map_or_else(|| "(defaults)".to_string(), |p| p.display().to_string());
    let rules = RuleSet::build(&config.user_rules, &name)?;
    Ok((config, rules))
}

/// The envelope as the environment and the flags give it.
pub fn env_vars(args: &CommonArgs) -> EnvVars {
    let mut env = EnvVars::from_process();
    if let Some(s) = &args.sender {
        env.sender = Some(s.clone());
    }
    if let Some(r) = &args.recipient {
        env.recipient = Some(("--recipient".to_string(), r.clone()));
        env.recipients = vec![("--recipient".to_string(), r.clone())];
    }
    env
}

/// A config and its rules, or why they could not be loaded.
pub type Loaded = Result<(Config, RuleSet), ConfigError>;

/// The unread rest of an input longer than the limit.
pub type Rest = Box<dyn Read>;

/// Reads the input (the file, or standard input for none or "-") up to `limit` bytes. When it
/// is longer, gives the first `limit + 1` bytes and the reader of the rest. Errors name the
/// file.
pub fn read_limited(file: Option<&Path>, limit: u64) -> Result<(Vec<u8>, Option<Rest>), String> {
    let mut reader: Rest = match file {
        Some(p) if p != Path::new("-") => Box::new(
            std::fs::File::open(p)
                .map_err(|e| format!("cannot read the message {}: {e}", p.display()))?,
        ),
        _ => Box::new(std::io::stdin()),
    };
    let name = || file.map_or_else(|| "standard input".to_string(), |p| p.display().to_string());
    let mut bytes = Vec::new();
    let cap = limit.saturating_add(1);
    (&mut reader)
        .take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the message {}: {e}", name()))?;
    let over = bytes.len() as u64 >= cap;
    Ok((bytes, over.then_some(reader)))
}

/// Reads and evaluates the message the arguments name, within the size limit and the CPU
/// budget.
fn evaluate_input(args: &InputArgs) -> Result<Evaluation, String> {
    let (config, rules) = load(args.common.config.as_deref()).map_err(|e| e.to_string())?;
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

fn check(args: &CheckArgs) -> ExitCode {
    let eval = match evaluate_input(&args.input) {
        Ok(e) => e,
        Err(msg) => {
            say!("backstop: {msg}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let text = match args.format {
        Format::Word => eval.verdict.as_str().to_string(),
        Format::Json => match serde_json::to_string(&eval) {
            Ok(j) => j + "\n",
            Err(e) => {
                say!("backstop: cannot write JSON: {e}");
                return ExitCode::from(EXIT_ERROR);
            }
        },
        Format::Text => {
            let kind = eval.kind.map_or("-", |k| k.as_str());
            let mut t = format!(
                "{} {} {}\n",
                eval.verdict.as_str(),
                kind,
                eval.action.as_str()
            );
            for r in &eval.reasons {
                t.push_str(&format!("  {r}\n"));
            }
            t
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        say!("backstop: cannot write the verdict: {e}");
        return ExitCode::from(EXIT_ERROR);
    }
    if args.exit_status {
        return ExitCode::from(u8::from(eval.verdict != Verdict::Backscatter));
    }
    ExitCode::SUCCESS
}

fn explain_cmd(args: &InputArgs) -> ExitCode {
    match evaluate_input(args) {
        Ok(eval) => {
            let mut out = std::io::stdout().lock();
            match out
                .write_all(explain::render(&eval).as_bytes())
                .and_then(|()| out.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    say!("backstop: cannot write the explanation: {e}");
                    ExitCode::from(EXIT_ERROR)
                }
            }
        }
        Err(msg) => {
            say!("backstop: {msg}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn lint(args: &LintArgs) -> ExitCode {
    let path = match args.file.clone().or_else(Config::default_path) {
        Some(p) => p,
        None => {
            say!("backstop: no file given and no default config location");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let result = Config::from_file(&path).and_then(|config| {
        let rules = RuleSet::build(&config.user_rules, &path.display().to_string())?;
        crate::proofs::lint(&config)
            .map_err(|e| ConfigError::whole(&path.display().to_string(), e))?;
        for rule in &rules.rules {
            rule.compile()
                .map_err(|e| ConfigError::whole(&rule.origin, e))?;
        }
        Ok(rules.rules.len())
    });
    match result {
        Ok(n) => {
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{}: ok ({n} rules in effect)", path.display()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    say!("backstop: cannot write the result: {e}");
                    ExitCode::from(EXIT_ERROR)
                }
            }
        }
        Err(e) => {
            say!("{e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `deliver` parsed alone reads every argument vector as the whole command line does.
    #[test]
    fn deliver_alone_parses_as_the_whole_command_line() {
        let cases: &[&[&str]] = &[
            &["deliver"],
            &["deliver", "/home/u/Maildir"],
            &["deliver", "--maildir", "/m", "-c", "/etc/b.yaml"],
            &[
                "deliver",
                "--mbox=/var/mail/u",
                "--sender",
                "",
                "--recipient",
                "u@x.example",
            ],
            &["deliver", "-c/etc/b.yaml", "--", "/m"],
            &["deliver", "--maildir", "/m", "/n"],
            &["deliver", "--mbox", "/b", "/m"],
            &["deliver", "--bogus"],
            &["deliver", "--help"],
            &["deliver", "--version"],
            &["deliver", "a", "b"],
        ];
        for args in cases {
            let whole =
                Cli::try_parse_from(std::iter::once("backstop").chain(args.iter().copied()));
            let alone = parse_deliver(args.iter().copied());
            match (whole, alone) {
                (Ok(w), Ok(a)) => {
                    let Command::Deliver(w) = w.command else {
                        panic!("{args:?}: not deliver");
                    };
                    assert_eq!(format!("{w:?}"), format!("{a:?}"), "{args:?}");
                }
                (Err(w), Err(a)) => {
                    assert_eq!(w.kind(), a.kind(), "{args:?}");
                    assert_eq!(w.to_string(), a.to_string(), "{args:?}");
                }
                (w, a) => panic!("{args:?}: whole {w:?}, alone {a:?}"),
            }
        }
    }
}
