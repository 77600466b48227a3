//! `backstop lint`: check a config or rules file without reading any message.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::LintArgs;
use crate::config::Config;
use crate::error::ConfigError;
use crate::exit::Exit;
use crate::rules::RuleSet;

/// Runs `lint`.
pub fn run(args: &LintArgs) -> ExitCode {
    let given = args.file.clone().or_else(|| args.config.clone());
    let path = match given
        .clone()
        .or_else(Config::env_path)
        .or_else(Config::default_path)
    {
        // No file named and none at the default place: nothing can be wrong.
        Some(p) if given.is_some() || Config::env_path().is_some() || p.exists() => p,
        default => {
            let mut out = std::io::stdout().lock();
            let place = default.map_or_else(String::new, |p| format!(" (none at {})", p.display()));
            return match writeln!(
                out,
                "no config{place}: the built-in defaults are in use and valid"
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    say!("backstop: cannot write the result: {e}");
                    ExitCode::from(Exit::Error)
                }
            };
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
        for w in config.warnings() {
            say!("{}: warning: {w}", path.display());
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
                    ExitCode::from(Exit::Error)
                }
            }
        }
        Err(e) => {
            say!("{e}");
            ExitCode::from(Exit::Error)
        }
    }
}
