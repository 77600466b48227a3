//! The command line: arguments, and the glue from each command to the modules that do the work.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    Filter(InputArgs),
    /// Classify a Maildir or mbox and move its backscatter away (a dry run without --apply).
    Scan(crate::scan::ScanArgs),
    /// Summarise the decision log: verdicts per day, top bounce senders, the current wave.
    Stats(crate::stats::StatsArgs),
}

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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // A mistyped hook-up must defer mail, never bounce or drop it: deliver exits 0
            // or 75 only, and when a host (not a terminal) feeds it a message, even help
            // and version output must not pass for a delivery.
            let delivering = std::env::args().skip(1).any(|a| a == "deliver");
            let from_a_host = !std::io::stdin().is_terminal();
            if delivering && (err.use_stderr() || from_a_host) {
                let text = err.to_string();
                let first = text.lines().next().unwrap_or("usage error");
                eprintln!("backstop: {first}; the MTA will try again");
                return ExitCode::from(crate::deliver::EX_TEMPFAIL);
            }
            err.exit();
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
    }
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
    }
    env
}

/// Reads the whole input: the file, or standard input.
pub fn read_input(file: Option<&Path>) -> std::io::Result<Vec<u8>> {
    match file {
        Some(p) if p != Path::new("-") => std::fs::read(p),
        _ => {
            let mut buf = Vec::new();
            std::io::stdin().lock().read_to_end(&mut buf)?;
            Ok(buf)
        }
    }
}

/// Reads and evaluates the message the arguments name.
fn evaluate_input(args: &InputArgs) -> Result<Evaluation, String> {
    let (config, rules) = load(args.common.config.as_deref()).map_err(|e| e.to_string())?;
    let raw =
        read_input(args.file.as_deref()).map_err(|e| format!("cannot read the message: {e}"))?;
    Ok(evaluate_bytes(
        &raw,
        &config,
        &rules,
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
            eprintln!("backstop: {msg}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let text = match args.format {
        Format::Word => eval.verdict.as_str().to_string(),
        Format::Json => match serde_json::to_string(&eval) {
            Ok(j) => j + "\n",
            Err(e) => {
                eprintln!("backstop: cannot write JSON: {e}");
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
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    if args.exit_status {
        return ExitCode::from(u8::from(eval.verdict != Verdict::Backscatter));
    }
    ExitCode::SUCCESS
}

fn explain_cmd(args: &InputArgs) -> ExitCode {
    match evaluate_input(args) {
        Ok(eval) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(explain::render(&eval).as_bytes());
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("backstop: {msg}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn lint(args: &LintArgs) -> ExitCode {
    let path = match args.file.clone().or_else(Config::default_path) {
        Some(p) => p,
        None => {
            eprintln!("backstop: no file given and no default config location");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let result = Config::from_file(&path).and_then(|config| {
        let rules = RuleSet::build(&config.user_rules, &path.display().to_string())?;
        for rule in &rules.rules {
            rule.compile()
                .map_err(|e| ConfigError::whole(&rule.origin, e))?;
        }
        Ok(rules.rules.len())
    });
    match result {
        Ok(n) => {
            println!("{}: ok ({n} rules in effect)", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
