//! `backstop filter`: print the whole message with X-Backstop headers added (procmail `fw`,
//! maildrop `xfilter`, Sieve `filter`). Never prints an empty or partial message on success.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;

use crate::cli::{InputArgs, env_vars, evaluate_bytes, load, read_input};
use crate::deliver::{EX_TEMPFAIL, trace_headers, trace_line};
use crate::message::split_from_line;

/// Runs `filter`: exit 0 with the full message on stdout, or 75 with nothing usable.
pub fn run(args: &InputArgs) -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(std::io::stderr(), "backstop: internal error: {info}");
    }));
    let raw = match read_input(args.file.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "backstop: cannot read the message: {e}");
            return ExitCode::from(EX_TEMPFAIL);
        }
    };
    let head = match catch_unwind(AssertUnwindSafe(|| headers_for(&raw, args))) {
        Ok(h) => h,
        Err(_) => trace_line(&raw, "X-Backstop-Error", "internal error, not filtered"),
    };
    // The From_ line (if any) stays first, with its own line end; then the headers; then the
    // rest. Written piece by piece, so that the message is never held twice.
    let (_, rest) = split_from_line(&raw);
    let from_part = &raw[..raw.len() - rest.len()];
    let mut stdout = std::io::stdout().lock();
    let written = [from_part, &head, rest]
        .iter()
        .try_for_each(|piece| stdout.write_all(piece))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "backstop: cannot write the message: {e}");
            ExitCode::from(EX_TEMPFAIL)
        }
    }
}

fn headers_for(raw: &[u8], args: &InputArgs) -> Vec<u8> {
    match load(args.common.config.as_deref()) {
        Ok((config, rules)) => {
            crate::deliver::fault_point("evaluate");
            let eval = evaluate_bytes(raw, &config, &rules, &env_vars(&args.common));
            if let Some(path) = &config.log {
                crate::log::append(path, &eval, None);
            }
            trace_headers(raw, &eval)
        }
        Err(err) => {
            let _ = writeln!(
                std::io::stderr(),
                "backstop: {err}; message passed through unfiltered"
            );
            trace_line(
                raw,
                "X-Backstop-Error",
                &format!("config error, not filtered: {err}"),
            )
        }
    }
}
