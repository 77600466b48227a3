//! `backstop check`: print the verdict for one message, with no side effects.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{CheckArgs, Format};
use crate::exit::Exit;
use crate::run::evaluate_input;
use crate::verdict::Verdict;

/// Runs `check`.
pub fn run(args: &CheckArgs) -> ExitCode {
    let eval = match evaluate_input(&args.input) {
        Ok(e) => e,
        Err(msg) => {
            say!("backstop: {msg}");
            return ExitCode::from(Exit::Error);
        }
    };
    let text = match args.format {
        Format::Word => eval.verdict.as_str().to_string(),
        Format::Json => match serde_json::to_string(&eval) {
            Ok(j) => j + "\n",
            Err(e) => {
                say!("backstop: cannot write JSON: {e}");
                return ExitCode::from(Exit::Error);
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
        return ExitCode::from(Exit::Error);
    }
    if args.exit_status {
        return ExitCode::from(if eval.verdict == Verdict::Backscatter {
            Exit::Success
        } else {
            Exit::NotBackscatter
        });
    }
    ExitCode::SUCCESS
}
