//! `backstop explain`: print the path the decision took, step by step.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::InputArgs;
use crate::exit::Exit;
use crate::explain;
use crate::run::evaluate_input;
use crate::util::text::for_terminal;

/// Runs `explain`.
pub fn run(args: &InputArgs) -> ExitCode {
    match evaluate_input(args) {
        Ok(eval) => {
            let mut out = std::io::stdout().lock();
            match out
                .write_all(for_terminal(&explain::render(&eval)).as_bytes())
                .and_then(|()| out.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    say!("backstop: cannot write the explanation: {e}");
                    ExitCode::from(Exit::Error)
                }
            }
        }
        Err(msg) => {
            say!("backstop: {msg}");
            ExitCode::from(Exit::Error)
        }
    }
}
