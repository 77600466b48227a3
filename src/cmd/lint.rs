//! `backstop lint`: check a config or rules file without reading any message (merged over
//! the site config, as it will be used).

use std::io::Write;
use std::process::ExitCode;

use crate::cli::LintArgs;
use crate::config::Config;
use crate::error::ConfigError;
use crate::exit::Exit;
use crate::rules::RuleSet;

/// Runs `lint`: the named file (else `$BACKSTOP_CONFIG`, else the default file) merged over
/// the site config, as every command loads them; the site config alone when the user has none.
pub fn run(args: &LintArgs) -> ExitCode {
    let given = args.file.clone().or_else(|| args.config.clone());
    let user = Config::user_path(given.as_deref());
    let site = Config::site_path().filter(|p| p.exists());
    let Some(path) = user.clone().or_else(|| site.clone()) else {
        // No file named and none at the default places: nothing can be wrong.
        let mut out = std::io::stdout().lock();
        let place = Config::default_path()
            .map_or_else(String::new, |p| format!(" (none at {})", p.display()));
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
    };
    let result = Config::load_files(site.as_deref(), user.as_deref()).and_then(|config| {
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
        let over = match &config.site_path {
            Some(site) if config.path.is_some() => {
                format!("; merged over the site config {}", site.display())
            }
            _ => String::new(),
        };
        Ok(format!("{} rules in effect{over}", rules.rules.len()))
    });
    match result {
        Ok(n) => {
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{}: ok ({n})", path.display()) {
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
