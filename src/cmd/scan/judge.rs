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
use crate::util::text::cut_at_char;
use crate::verdict::Verdict;

use super::{Ctx, Failure, SECS_PER_DAY};

/// What one message was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Judged {
    pub(super) verdict: Verdict,
    pub(super) kind: Option<Kind>,
    /// When it arrived (seconds since the epoch, see [`arrival`]); only worked out for bounces.
    pub(super) arrived: Option<i64>,
    /// Its From and Subject (cut to [`MAX_SHOWN`] bytes), for the list of what moves; only
    /// kept for bounces.
    pub(super) from: Option<Box<str>>,
    pub(super) subject: Option<Box<str>>,
}

impl Judged {
    /// A message that was not read (over `max_size`): it stays.
    fn unread() -> Judged {
        Judged {
            verdict: Verdict::Clean,
            kind: None,
            arrived: None,
            from: None,
            subject: None,
        }
    }

    /// Days since 1970-01-01 (UTC) of its arrival.
    pub(super) fn day(&self) -> Option<i64> {
        self.arrived.map(|t| t.div_euclid(SECS_PER_DAY))
    }
}

/// The most of a From or Subject kept for the list (bytes, cut at a character).
const MAX_SHOWN: usize = 200;

/// The judgement of one message, or why it could not be read.
pub(super) type Outcome = Result<Judged, String>;

/// A message's bytes as given to the judge, and what its store says of its arrival (seconds
/// since the epoch).
pub(super) struct Input<'d> {
    pub(super) bytes: Cow<'d, [u8]>,
    /// The delivery time the store recorded with the message itself: the timestamp of a
    /// Maildir file name, the date of an mbox `From ` line.
    pub(super) delivered: Option<i64>,
    /// A weaker stand-in: the file's modification time (a Maildir file's own; the whole
    /// mbox's), used when neither the delivery time nor a top Received date is known.
    pub(super) modified: Option<i64>,
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
                            None => Ok(Judged::unread()),
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
    let (delivered, modified) = (input.delivered, input.modified);
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
        delivered,
        modified,
    };
    (Ok(judged_from(&input, &eval)), back)
}

/// The verdict, kind, arrival, From and Subject of a message's evaluation.
fn judged_from(input: &Input<'_>, eval: &crate::verdict::Evaluation) -> Judged {
    // Only what may move is dated and described (the rest is counted alone).
    let bounce = matches!(
        eval.verdict,
        Verdict::Backscatter | Verdict::UnverifiedBounce
    );
    let shown = |t: &Option<String>| -> Option<Box<str>> {
        t.as_deref().map(|t| cut_at_char(t, MAX_SHOWN).into())
    };
    Judged {
        verdict: eval.verdict,
        kind: eval.kind,
        arrived: bounce.then(|| arrival(input)).flatten(),
        from: bounce.then(|| shown(&eval.from)).flatten(),
        subject: bounce.then(|| shown(&eval.subject)).flatten(),
    }
}

/// When a message arrived, by what the user's own side recorded, never by its `Date:` (the
/// sender writes that, and a spammer's clock or lie would put a wave on the wrong days): the
/// store's delivery time, else the date of the top Received line (the last hop, the user's
/// own mail server, adds it), else the file's modification time.
///
/// A time before 1970 or more than two days ahead is not believed (an imported message's
/// top Received line may be the sender's, and a chart must not span millennia).
pub(super) fn arrival(input: &Input<'_>) -> Option<i64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let plausible = |t: &i64| (0..=now.saturating_add(2 * SECS_PER_DAY)).contains(t);
    input
        .delivered
        .filter(plausible)
        .or_else(|| top_received_time(&input.bytes).filter(plausible))
        .or(input.modified.filter(plausible))
}

/// The date after the last `;` of the first Received header.
fn top_received_time(raw: &[u8]) -> Option<i64> {
    let value = header_value(raw, b"received")?;
    let (_, date) = value.rsplit_once(';')?;
    let d = mail_parser::DateTime::parse_rfc822(date.trim())?;
    d.is_valid().then(|| d.to_timestamp())
}

/// The delivery time in a Maildir file name: the seconds before its first dot
/// (`1733400000.M1P2.host:2,S`), as every Maildir writer names its files.
pub(super) fn maildir_name_time(name: &[u8]) -> Option<i64> {
    let digits = name.split(|&b| b == b'.').next()?;
    if !(9..=11).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
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
    fn arrival_is_the_stores_time_or_the_top_received_never_the_date_header() {
        let raw = b"From x Thu Nov 27 07:38:00 2025\nReceived: from a by mx.own.example; Fri, 28 Nov 2025 10:00:00 +0000\nReceived: from b by c; Wed, 1 Jan 2020 00:00:00 +0000\nSubject: a\nDate: Mon,\n 1 Jan 2035 00:00:00 +0000\n\nbody\n";
        let stamp = from_line_time(b"From x Thu Nov 27 07:38:00 2025");
        assert_eq!(stamp, Some(1_764_229_080));
        let input = |delivered, modified| Input {
            bytes: Cow::Borrowed(&raw[..]),
            delivered,
            modified,
        };
        let day = |t: Option<i64>| t.map(|t| day_string(t.div_euclid(SECS_PER_DAY)));
        // The store's delivery time first.
        assert_eq!(
            day(arrival(&input(stamp, Some(0)))).as_deref(),
            Some("2025-11-27")
        );
        // Then the top Received line (not a lower one, never the Date header).
        assert_eq!(
            day(arrival(&input(None, Some(0)))).as_deref(),
            Some("2025-11-28")
        );
        // Then the file's time.
        let bare = Input {
            bytes: Cow::Borrowed(b"Date: Mon, 1 Jan 2035 00:00:00 +0000\n\n"),
            delivered: None,
            modified: Some(86_400),
        };
        assert_eq!(day(arrival(&bare)).as_deref(), Some("1970-01-02"));
        // Times out of reach are not believed: the next source is taken.
        assert_eq!(
            day(arrival(&input(Some(99_999_999_999), Some(0)))).as_deref(),
            Some("2025-11-28")
        );
        assert_eq!(
            header_value(raw, b"date").as_deref(),
            Some("Mon, 1 Jan 2035 00:00:00 +0000")
        );
        assert_eq!(
            maildir_name_time(b"1733400000.M1P2.host:2,S"),
            Some(1_733_400_000)
        );
        assert_eq!(maildir_name_time(b"msg.1"), None);
        assert_eq!(maildir_name_time(b"12.x"), None);
    }
}
