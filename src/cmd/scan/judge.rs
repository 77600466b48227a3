//! Judging: reading each message and evaluating it on a pool of worker threads.

use std::borrow::Cow;
use std::fs;
use std::io::{self, IsTerminal};
use std::os::unix::fs::MetadataExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use crate::budget::evaluate_keeping_rules;
use crate::config::Config;
use crate::message::{self, EnvVars};
use crate::rules::{Kind, RuleSet};
use crate::run::evaluate_bytes;
use crate::verdict::Verdict;

use super::{Ctx, DATE_SLACK_SECS, Failure, SECS_PER_DAY};

/// What one message was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Judged {
    pub(super) verdict: Verdict,
    pub(super) kind: Option<Kind>,
    /// Days since 1970-01-01 (UTC); only worked out for bounces.
    pub(super) day: Option<i64>,
}

/// The judgement of one message, or why it could not be read.
pub(super) type Outcome = Result<Judged, String>;

/// A message's bytes as given to the judge, and when it arrived (seconds since the epoch).
pub(super) struct Input<'d> {
    pub(super) bytes: Cow<'d, [u8]>,
    pub(super) arrived: Option<i64>,
}

/// Judges every item on `ctx.jobs` threads; `read` gives an item's bytes. The result has one
/// entry per item, in order: the judgement or why the item could not be read.
pub(super) fn classify<'d, T: Sync>(
    items: &'d [T],
    ctx: &Ctx<'_>,
    label: &str,
    read: impl Fn(&'d T) -> Result<Option<Input<'d>>, String> + Sync,
) -> Result<Vec<Outcome>, Failure> {
    let progress = progress_bar(items.len() as u64, label);
    let next = AtomicUsize::new(0);
    let jobs = ctx.jobs.clamp(1, items.len().max(1));
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                let (next, read, progress) = (&next, &read, &progress);
                scope.spawn(move || -> Result<Vec<(usize, Outcome)>, String> {
                    let build = || {
                        RuleSet::build(&ctx.config.user_rules, &ctx.rules_name)
                            .map_err(|e| e.to_string())
                    };
                    // Each message is judged within the CPU budget (crate::budget), on a thread
                    // of its own that borrows nothing: the config is shared, the rules move
                    // there and back, and are built again after a message that overran.
                    let config = Arc::new(ctx.config.clone());
                    let mut rules = Some(build()?);
                    let mut done = Vec::new();
                    loop {
                        if ctx.stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        let judged = read(item).and_then(|input| match input {
                            // A bug met by one message costs that message (it stays where it
                            // is, reported), not the scan.
                            Some(input) => {
                                let rules_now = match rules.take() {
                                    Some(r) => r,
                                    None => build()?,
                                };
                                catch_unwind(AssertUnwindSafe(|| {
                                    judge_within(input, &config, rules_now)
                                }))
                                .map_err(|_| "evaluating it failed (internal error)".to_string())
                                .and_then(|(judged, back)| {
                                    rules = back;
                                    judged
                                })
                            }
                            // Over max_size: not read, like deliver, it stays in the inbox.
                            None => Ok(Judged {
                                verdict: Verdict::Clean,
                                kind: None,
                                day: None,
                            }),
                        });
                        done.push((i, judged));
                        progress.inc(1);
                    }
                    Ok(done)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join()).collect::<Vec<_>>()
    });
    progress.finish_and_clear();
    let mut out: Vec<Option<Outcome>> = vec![None; items.len()];
    for worker in results {
        match worker {
            Ok(Ok(done)) => {
                for (i, j) in done {
                    if let Some(slot) = out.get_mut(i) {
                        *slot = Some(j);
                    }
                }
            }
            Ok(Err(e)) => return Err(Failure::Usage(e)),
            Err(_) => return Err(Failure::Io("a worker thread panicked".into())),
        }
    }
    if ctx.stop.load(Ordering::Relaxed) {
        return Err(Failure::Interrupted);
    }
    out.into_iter()
        .map(|slot| slot.ok_or_else(|| Failure::Io("a message was left unjudged".into())))
        .collect()
}

pub(super) fn progress_bar(len: u64, label: &str) -> ProgressBar {
    if !io::stderr().is_terminal() || len == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({rate}/s, {eta} left)")
    {
        let style = style
            .with_key(
                "rate",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}", s.per_sec());
                },
            )
            .progress_chars("=> ");
        bar.set_style(style);
    }
    bar.set_message(label.to_string());
    bar
}

/// Judges one message within the CPU budget; gives the rules back when it ended in time. A
/// message that overran is reported and stays where it is.
fn judge_within(
    input: Input<'_>,
    config: &Arc<Config>,
    rules: RuleSet,
) -> (Result<Judged, String>, Option<RuleSet>) {
    if input.bytes.len() as u64 > config.max_size {
        return (
            Ok(judged_from(
                &input,
                &evaluate_bytes(&input.bytes, config, &rules, &EnvVars::default()),
            )),
            Some(rules),
        );
    }
    let arrived = input.arrived;
    let raw = Arc::new(input.bytes.into_owned());
    let (eval, back) = evaluate_keeping_rules(&raw, config, rules, &EnvVars::default());
    if let Some(error) = &eval.error {
        return (
            Err(format!(
                "not judged ({}); it stays where it is",
                error.split(": not judged").next().unwrap_or(error)
            )),
            back,
        );
    }
    let input = Input {
        bytes: Cow::Borrowed(&raw[..]),
        arrived,
    };
    (Ok(judged_from(&input, &eval)), back)
}

/// The verdict, kind and day of a message's evaluation.
fn judged_from(input: &Input<'_>, eval: &crate::verdict::Evaluation) -> Judged {
    let day = matches!(
        eval.verdict,
        Verdict::Backscatter | Verdict::UnverifiedBounce
    )
    .then(|| message_time(&input.bytes, input.arrived))
    .flatten()
    .map(|t| t.div_euclid(SECS_PER_DAY));
    Judged {
        verdict: eval.verdict,
        kind: eval.kind,
        day,
    }
}

/// The time of the `Date:` header when it is believable, else the arrival time.
fn message_time(raw: &[u8], arrived: Option<i64>) -> Option<i64> {
    let date = header_value(raw, b"date").and_then(|v| {
        let d = mail_parser::DateTime::parse_rfc822(&v)?;
        d.is_valid().then(|| d.to_timestamp())
    });
    match (date, arrived) {
        (Some(d), Some(a)) if d > a + DATE_SLACK_SECS => Some(a),
        (Some(d), _) => Some(d),
        (None, a) => a,
    }
}

/// The unfolded value of the first header called `name` (lower case), skipping a `From ` line.
fn header_value(raw: &[u8], name: &[u8]) -> Option<String> {
    let (_, rest) = message::split_from_line(raw);
    let mut lines = rest
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            return None;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (field, value) = line.split_at(colon);
        if !field.trim_ascii_end().eq_ignore_ascii_case(name) {
            continue;
        }
        let mut text = String::from_utf8_lossy(value.get(1..).unwrap_or_default()).into_owned();
        while let Some(cont) =
            lines.next_if(|l| l.first().is_some_and(|&b| b == b' ' || b == b'\t'))
        {
            // Unfolding removes the line break only; the continuation keeps its white space.
            text.push_str(&String::from_utf8_lossy(cont));
        }
        return Some(text.trim().to_string());
    }
    None
}

pub(super) fn mtime_secs(meta: &fs::Metadata) -> Option<i64> {
    Some(meta.mtime()).filter(|&t| t > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::scan::mbox::from_line_time;
    use crate::util::dates::day_string;

    #[test]
    fn dates_from_headers_and_from_lines() {
        let raw = b"From x Thu Nov 27 07:38:00 2025\nSubject: a\nDate: Wed,\n 26 Nov 2025 23:00:00 -0200\n\nbody\nDate: no\n";
        assert_eq!(
            header_value(raw, b"date").as_deref(),
            Some("Wed, 26 Nov 2025 23:00:00 -0200")
        );
        let arrived = from_line_time(b"From x Thu Nov 27 07:38:00 2025");
        assert_eq!(arrived, Some(1_764_229_080));
        // 23:00 at -0200 is 01:00 UTC on the 27th.
        assert_eq!(
            message_time(raw, arrived)
                .map(|t| day_string(t.div_euclid(SECS_PER_DAY)))
                .as_deref(),
            Some("2025-11-27")
        );
        // A date far after the arrival is not believed.
        let future = b"Date: Mon, 1 Jan 2035 00:00:00 +0000\n\n";
        assert_eq!(message_time(future, arrived), arrived);
        assert_eq!(message_time(b"Subject: x\n\n", None), None);
    }
}
