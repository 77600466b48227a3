//! The backstop binary: parses the command line, runs the command (in the library's `cmd`),
//! and exits with its status.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use backstop::cli::{Cli, Command, parse_deliver};
use backstop::cmd;
use backstop::exit::Exit;
use clap::Parser;

fn main() -> ExitCode {
    // `deliver` runs once per message: its arguments are parsed by its own subcommand
    // alone, which spares building the whole command tree (a tenth of a delivery's work).
    if std::env::args_os().nth(1).is_some_and(|a| a == "deliver") {
        return match parse_deliver(std::env::args_os().skip(1)) {
            Ok(args) => cmd::deliver::run(&args),
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
        Command::Check(args) => cmd::check::run(&args),
        Command::Explain(args) => cmd::explain::run(&args),
        Command::Lint(args) => cmd::lint::run(&args),
        Command::Config(args) => cmd::config::run(&args),
        Command::Deliver(args) => cmd::deliver::run(&args),
        Command::Filter(args) => cmd::filter::run(&args),
        Command::Scan(args) => cmd::scan::run(&args),
        Command::Stats(args) => cmd::stats::run(&args),
        Command::Learn(args) => cmd::learn::run(&args),
        Command::DkimKeys(args) => cmd::dkim_keys::run(&args),
        Command::Init(args) => cmd::init::run(&args),
    }
}

/// Reports a usage error and gives the exit status. A mistyped hook-up must defer mail,
/// never bounce or drop it: deliver exits 0 or 75 only, and when a host (not a terminal)
/// feeds it a message, even help and version output must not pass for a delivery.
fn usage_error(err: clap::Error, delivering: bool) -> ExitCode {
    let from_a_host = !std::io::stdin().is_terminal();
    if delivering && (err.use_stderr() || from_a_host) {
        let text = err.render().to_string();
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("usage error");
        // The first line is what the MTA logs (Exim logs no more); the rest (clap's "did
        // you mean", or the whole help asked for) follows for whoever reads stderr.
        // Never panics: `eprintln!` would on a closed stderr, and exit 101.
        let first = if err.use_stderr() {
            first.to_string()
        } else {
            "help or version asked for while delivering, not a message".to_string()
        };
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "backstop: {first}; the MTA will try again");
        let rest: Vec<&str> = if err.use_stderr() {
            lines.collect()
        } else {
            text.lines().collect()
        };
        for line in rest {
            let _ = writeln!(stderr, "{line}");
        }
        return ExitCode::from(Exit::TempFail);
    }
    err.exit();
}
