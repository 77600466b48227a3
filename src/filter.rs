//! `backstop filter`: print the whole message with X-Backstop headers added (procmail `fw`,
//! maildrop `xfilter`, Sieve `filter`). Never prints an empty or partial message on success.

use std::io::Write;
use std::ops::Range;
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
    // rest, less the X-Backstop fields it came with. Written piece by piece, so that the
    // message is never held twice.
    let (_, rest) = split_from_line(&raw);
    let from_part = &raw[..raw.len() - rest.len()];
    let mut pieces = vec![from_part, &head];
    let mut at = 0;
    for field in incoming_trace_fields(rest) {
        pieces.push(&rest[at..field.start]);
        at = field.end;
    }
    pieces.push(&rest[at..]);
    let mut stdout = std::io::stdout().lock();
    let written = pieces
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

/// The byte ranges of the X-Backstop-* fields (with their folded lines) in the message's own
/// header block, in order. Anyone can put such a field in a message, and the hosts' rules act
/// on the first `X-Backstop-Verdict` they see, or on any (Sieve `header :contains` tests every
/// occurrence): a forged `action=discard` would make them drop the message. So only the fields
/// backstop adds leave the filter.
fn incoming_trace_fields(message: &[u8]) -> Vec<Range<usize>> {
    const PREFIX: &[u8] = b"x-backstop-";
    let mut fields: Vec<Range<usize>> = Vec::new();
    let mut in_field = false;
    let mut start = 0;
    while start < message.len() {
        let end = message[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| start + i + 1);
        let line = &message[start..end];
        if line == b"\n" || line == b"\r\n" {
            break;
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            // A folded line belongs to the field above it.
            if in_field && let Some(last) = fields.last_mut() {
                last.end = end;
            }
        } else {
            let name_end = line.iter().position(|&b| b == b':');
            in_field = name_end.is_some_and(|n| {
                line.len() >= PREFIX.len()
                    && n >= PREFIX.len()
                    && line[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
            });
            if in_field {
                fields.push(start..end);
            }
        }
        start = end;
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        for r in incoming_trace_fields(message) {
            out.extend_from_slice(&message[at..r.start]);
            at = r.end;
        }
        out.extend_from_slice(&message[at..]);
        out
    }

    #[test]
    fn incoming_trace_fields_are_found_in_the_header_block_only() {
        let message = b"Subject: hi\r\n\
X-Backstop-Verdict: clean; action=discard\r\n\
x-backstop-reason: folded\r\n\
\tover two lines\r\n\
X-Backstopper: stays\r\n\
X-Backstop: stays (no dash after the name)\r\n\
From: a@b.example\r\n\
\r\n\
X-Backstop-Verdict: in the body, stays\r\n";
        assert_eq!(
            strip(message),
            b"Subject: hi\r\n\
X-Backstopper: stays\r\n\
X-Backstop: stays (no dash after the name)\r\n\
From: a@b.example\r\n\
\r\n\
X-Backstop-Verdict: in the body, stays\r\n"
        );
        assert_eq!(strip(b"X-Backstop-Verdict: x"), b"");
        assert_eq!(strip(b""), b"");
        assert_eq!(
            strip(b"\nX-Backstop-Verdict: body\n"),
            b"\nX-Backstop-Verdict: body\n"
        );
    }
}
