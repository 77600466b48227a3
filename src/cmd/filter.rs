//! `backstop filter`: print the whole message with X-Backstop headers added (procmail `fw`,
//! maildrop `xfilter`, Sieve `filter`). Never prints an empty or partial message on success.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::budget::{over_budget, run_within};
use crate::cli::InputArgs;
use crate::config::DEFAULT_MAX_SIZE;
use crate::exit::Exit;
use crate::message::split_from_line;
use crate::run::{Loaded, Rest, env_vars, fault_point, load, quiet_panics, read_limited};
use crate::trace::{incoming_fields, trace_headers, trace_line};
use crate::verdict::{Evaluation, evaluate};

/// Runs `filter`: exit 0 with the full message on stdout, or 75 with nothing usable.
pub fn run(args: &InputArgs) -> ExitCode {
    quiet_panics();
    let loaded = load(args.common.config.as_deref());
    let limit = loaded
        .as_ref()
        .map_or(DEFAULT_MAX_SIZE, |(c, _)| c.max_size);
    // Past max_size the message is passed through unread: the bytes held in memory are
    // bounded, and the rest is copied from the input to the output as it comes.
    let (raw, mut rest) = match read_limited(args.file.as_deref(), limit) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "backstop: {e}");
            return ExitCode::from(Exit::TempFail);
        }
    };
    let raw = Arc::new(raw);
    let oversized = rest.is_some();
    let head = match catch_unwind(AssertUnwindSafe(|| {
        headers_for(&raw, oversized, loaded, args)
    })) {
        Ok(h) => h,
        Err(_) => trace_line(&raw, "X-Backstop-Error", "internal error, not filtered"),
    };
    ExitCode::from(pass_on(&raw, &head, rest.as_mut()))
}

/// Prints the message with `head` added: the From_ line (if any) first, with its own line end;
/// then `head`; then the rest, less the X-Backstop fields it came with, and the unread `tail`.
/// Written piece by piece, so that the message is never held twice. Gives the exit status.
fn pass_on(raw: &[u8], head: &[u8], tail: Option<&mut Rest>) -> u8 {
    let (_, message) = split_from_line(raw);
    let from_part = &raw[..raw.len() - message.len()];
    let mut pieces = vec![from_part, head];
    let mut at = 0;
    for field in incoming_fields(message) {
        pieces.push(&message[at..field.start]);
        at = field.end;
    }
    pieces.push(&message[at..]);
    let mut stdout = std::io::stdout().lock();
    let written = pieces
        .iter()
        .try_for_each(|piece| stdout.write_all(piece))
        .and_then(|()| match tail {
            Some(tail) => std::io::copy(tail, &mut stdout).map(drop),
            None => Ok(()),
        })
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => Exit::Success.code(),
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "backstop: cannot pass the message on: {e}"
            );
            Exit::TempFail.code()
        }
    }
}

fn headers_for(raw: &Arc<Vec<u8>>, oversized: bool, loaded: Loaded, args: &InputArgs) -> Vec<u8> {
    match loaded {
        Ok((config, rules)) => {
            let config = Arc::new(config);
            let eval = if oversized {
                Evaluation::unparsed(
                    format!(
                        "the message is larger than max_size ({} bytes): not parsed, passed on",
                        config.max_size
                    ),
                    Default::default(),
                )
            } else {
                fault_point("evaluate");
                let env = env_vars(&args.common);
                let budget = Duration::from_millis(config.cpu_budget_ms);
                let whole = raw.clone();
                run_within(
                    budget,
                    || evaluate(raw, &config, &rules, &env),
                    // Past the budget: the whole message, unjudged and marked, and the end.
                    move || pass_on(&whole, &trace_headers(&whole, &over_budget(budget)), None),
                )
            };
            let entry = crate::log::Entry::new(&eval, None);
            if let Some(path) = &config.log
                && let Err(e) = crate::log::append_entry(path, &entry)
            {
                crate::log::warn(path, &e);
            }
            if config.syslog
                && let Err(e) = crate::syslog::send(&entry)
            {
                say!("backstop: cannot write to the system log {e}");
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
