//! `backstop scan`: classify every message of a Maildir or an mbox, summarise, and file the backscatter away safely.
//!
//! # What it does
//!
//! Every message is judged by the same [`evaluate`](crate::verdict::evaluate) as `deliver` (through
//! [`evaluate_bytes`], which honours `max_size`), with an empty [`EnvVars`]: the envelope
//! sender comes from the Return-Path header (or an mbox `From ` line), never from this process's
//! own `SENDER`/`RECIPIENT`. The report counts messages per verdict and kind and draws a per-day
//! histogram of backscatter. The day is the UTC day of the message's `Date:` header; when that
//! is missing, unparsable, or more than two days after the message arrived, the arrival time
//! is used instead (a Maildir file's mtime; an mbox message's `From ` line date, else the mbox
//! file's mtime).
//!
//! Nothing changes without `--apply` (a dry run says what would move).
//!
//! # Parallelism
//!
//! Messages are judged by `--jobs` worker threads (default: the number of cores) under
//! [`std::thread::scope`], taking the next message from a shared atomic index; each worker
//! builds its own [`RuleSet`] (its regexes compile lazily into `OnceCell`s, so a rule set is
//! not `Sync`). Maildir files are read by the workers too, so reading and parsing overlap.
//! SIGINT or SIGTERM stops the workers between two messages; nothing has moved by then.
//!
//! # Maildir: `--apply`
//!
//! Each message to move is renamed from `F/cur/NAME` (or `F/new/NAME`) to `B/cur/NAME` (or
//! `B/new/NAME`), where `B` is the backscatter folder made the way `deliver` makes it: the
//! file name, and with it the flags, stays the same, so an IMAP server sees a move. The rename
//! is `renameat2(RENAME_NOREPLACE)`, which never replaces an existing file; where the file
//! system lacks it, `link` then `unlink` (also never replacing). Either way a message is at
//! every moment in its folder, in `B`, or (between `link` and `unlink` only) in both under
//! the same name and inode. If `B/cur/NAME` already exists, an earlier run was interrupted
//! between `link` and `unlink`: the source is removed only when both names hold identical
//! bytes, and otherwise left alone and reported. Killing `scan --apply` at any moment
//! therefore loses nothing, and the next run moves what is left (messages already in `B`
//! are no longer in the scanned folder, and a tree scan skips `B`). The directories written to
//! are fsynced at the end; SIGINT stops between two renames.
//!
//! # mbox: `--apply` and why it is crash-safe
//!
//! The inbox mbox `M` loses the messages to move, the backscatter mbox `B` (`mbox_folder`) gains
//! them. Both are only ever *replaced* by `rename(2)` of a complete, fsynced new file, never
//! written in place, so each of them is at every moment either wholly old or wholly new. The
//! order of the steps and a journal `J` (`.NAME.backstop-scan` beside `M`, append-only, one line
//! per step, each fsynced before the next step starts) make the pair consistent:
//!
//! 1. `J` is created (exclusively) with the owner's host and pid, then `M` is locked exactly as
//!    `deliver` locks it (`mbox_locks`), and read again under the lock (messages that arrived
//!    since the unlocked scan are judged now).
//! 2. `J` gets the backscatter mbox's path, one `move LEN HASH` line per message to move (the
//!    length and FNV-1a hash of the message without its trailing empty lines) and `moves-end`.
//! 3. `B` is locked, copied with the messages appended to `.BNAME.backstop-scan.tmp`, which is
//!    fsynced; `J` records that file's inode (`folder-staged`); the file is renamed over `B`,
//!    the directory fsynced, and `J` records `folder-done`.
//! 4. The messages of `M` that stay are written to `.NAME.backstop-scan.tmp` (same mode and
//!    owner as `M`), fsynced; `J` records its inode (`mbox-staged`); it is renamed over `M`, the
//!    directory fsynced, and `J` records `mbox-done`.
//! 5. The locks are released (`deliver` waiting on the old `M` notices the new inode and
//!    reopens), and `J` is removed.
//!
//! A run that finds `J` first finishes the interrupted move (after checking that its owner is
//! dead, and removing the dotlocks that dead owner left): without `moves-end` nothing had
//! changed yet; otherwise `B` already has the messages iff `J` says `folder-done` or `B`'s
//! inode is the staged one (a rename is the only way `B` gets that inode, and the staged
//! file's inode number cannot be reused while that file or `B` holds it), and `M` has already
//! lost them iff `J` says `mbox-done` or `M`'s inode is the staged one. The missing steps are
//! redone from the files as they are now, locating the messages in `M` by their journal keys
//! (so mail delivered in between, to either file, is kept). At every point where the process
//! can die, a message is therefore in `M`, or in `B`, or (between steps 3 and 4) in both with
//! the journal saying to remove it from `M`: after the recovery, exactly once. SIGINT and
//! SIGTERM are held off while the locks are held (about the time of copying both files), so
//! a Ctrl-C leaves no stale dotlock; a second Ctrl-C, or SIGKILL, stops at once and leaves the
//! recovery to the next run. A journal key matches the message it was written for unless two
//! messages of the same length collide in a 64-bit hash: then the colliding message would be
//! moved instead of the other, which is misfiled but not lost.
//!
//! Messages are split at `From ` lines that start the file or follow an empty line, as
//! `deliver` writes them; each message's bytes, `From ` line and mboxrd quoting included, are
//! moved unchanged. For judging, the quoting is undone (`>From ` back to `From `) and the
//! separating empty line dropped, so that `scan` sees what `check` would see. The mbox is
//! held in memory (under `--apply` twice, the unlocked and the locked read, plus the
//! backscatter mbox while it is copied).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::num::NonZeroUsize;
use std::ops::Range;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rustix::io::Errno;
use serde::Serialize;

use crate::cli::{ReportFormat, ScanArgs};
use crate::config::{Config, Inbox};
use crate::exit::Exit;
use crate::message::{self, EnvVars};
use crate::rules::{Kind, RuleSet};
use crate::run::{evaluate_bytes, load};
use crate::store::maildir::{self, Layout, Maildir};
use crate::store::mbox::{self, Locked};
use crate::store::{OpenDir, host_name, node_name, process_alive, resolve_link, sync_parent};
use crate::util::dates::day_string;
use crate::util::text::bar;
use crate::verdict::Verdict;

/// The error of a Maildir file that was gone when it was read.
const VANISHED: &str = "vanished";
/// Width of the longest histogram bar.
const BAR_WIDTH: usize = 50;
/// Histograms list every day of the span when it is at most this long, else only busy days.
const MAX_FILLED_SPAN: i64 = 62;
/// A `Date:` more than this after the arrival time is not believed.
const DATE_SLACK_SECS: i64 = 2 * 86_400;
const SECS_PER_DAY: i64 = 86_400;

/// Runs `backstop scan`.
pub fn run(args: &ScanArgs) -> ExitCode {
    let config = match load(args.config.as_deref()) {
        Ok((config, _)) => config,
        Err(e) => {
            say!("backstop: {e}");
            return ExitCode::from(Exit::Error);
        }
    };
    let stop = interrupt_flag();
    let jobs = args
        .jobs
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get);
    let ctx = Ctx {
        config: &config,
        rules_name: config
            .path
            .as_ref()
            .map_or_else(|| "(defaults)".to_string(), |p| p.display().to_string()),
        jobs,
        stop,
        select: Select {
            include_unverified: args.include_unverified,
        },
    };
    let started = Instant::now();
    let result = match fs::metadata(&args.path) {
        Ok(m) if m.is_dir() => scan_maildir(args, &ctx),
        Ok(m) if m.is_file() => scan_mbox(args, &ctx),
        Ok(_) => Err(Failure::Usage(format!(
            "{} is neither a directory nor a regular file",
            args.path.display()
        ))),
        Err(e) => Err(Failure::Usage(format!("{}: {e}", args.path.display()))),
    };
    match result {
        Ok(mut report) => {
            report.jobs = jobs;
            report.elapsed_ms = started.elapsed().as_millis();
            let secs = started.elapsed().as_secs_f64();
            report.messages_per_second = if secs > 0.0 {
                report.messages as f64 / secs
            } else {
                0.0
            };
            let text = match args.format {
                ReportFormat::Text => render_text(&report),
                ReportFormat::Json => match serde_json::to_string_pretty(&report) {
                    Ok(j) => j + "\n",
                    Err(e) => {
                        say!("backstop: cannot write JSON: {e}");
                        return ExitCode::from(Exit::Error);
                    }
                },
            };
            let mut out = io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            if report.interrupted {
                ExitCode::from(Exit::Interrupted)
            } else if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(Exit::Partial)
            }
        }
        Err(Failure::Usage(msg)) => {
            say!("backstop: {msg}");
            ExitCode::from(Exit::Error)
        }
        Err(Failure::Io(msg)) => {
            say!("backstop: {msg}");
            ExitCode::from(Exit::Partial)
        }
        Err(Failure::Interrupted) => {
            say!("backstop: interrupted; nothing was moved");
            ExitCode::from(Exit::Interrupted)
        }
    }
}

/// Why a scan stopped early.
#[derive(Debug)]
enum Failure {
    /// Bad arguments or paths (exit 2).
    Usage(String),
    /// An I/O error that stopped the whole scan (exit 1).
    Io(String),
    /// SIGINT or SIGTERM before anything moved (exit 130).
    Interrupted,
}

impl Failure {
    fn into_message(self) -> String {
        match self {
            Failure::Usage(m) | Failure::Io(m) => m,
            Failure::Interrupted => "interrupted".into(),
        }
    }
}

/// What every part of a scan needs.
struct Ctx<'a> {
    config: &'a Config,
    rules_name: String,
    jobs: usize,
    stop: Arc<AtomicBool>,
    select: Select,
}

/// Which verdicts move.
#[derive(Debug, Clone, Copy)]
struct Select {
    include_unverified: bool,
}

impl Select {
    fn moves(self, verdict: Verdict) -> bool {
        verdict == Verdict::Backscatter
            || (self.include_unverified && verdict == Verdict::UnverifiedBounce)
    }

    fn describe(self) -> &'static str {
        if self.include_unverified {
            "backscatter and unverified bounces"
        } else {
            "backscatter"
        }
    }
}

/// SIGINT and SIGTERM set the returned flag; a second one while it is set exits at once.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Order matters: the conditional exit must see the flag before this signal sets it.
        let _ = signal_hook::flag::register_conditional_shutdown(
            sig,
            i32::from(Exit::Interrupted.code()),
            Arc::clone(&flag),
        );
        let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
    }
    flag
}

/// Test-only crash injection, compiled into debug builds alone: with `BACKSTOP_FAULT=scan:POINT`
/// the process sends itself SIGKILL at POINT, as `kill -9` or a power cut would stop it.
fn crash_point(point: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    static FAULT: OnceLock<Option<String>> = OnceLock::new();
    let fault = FAULT.get_or_init(|| {
        std::env::var("BACKSTOP_FAULT")
            .ok()
            .and_then(|v| v.strip_prefix("scan:").map(str::to_string))
    });
    if fault.as_deref() == Some(point) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

// ---------------------------------------------------------------------------------------------
// Judging
// ---------------------------------------------------------------------------------------------

/// What one message was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Judged {
    verdict: Verdict,
    kind: Option<Kind>,
    /// Days since 1970-01-01 (UTC); only worked out for bounces.
    day: Option<i64>,
}

/// The judgement of one message, or why it could not be read.
type Outcome = Result<Judged, String>;

/// A message's bytes as given to the judge, and when it arrived (seconds since the epoch).
struct Input<'d> {
    bytes: Cow<'d, [u8]>,
    arrived: Option<i64>,
}

/// Judges every item on `ctx.jobs` threads; `read` gives an item's bytes. The result has one
/// entry per item, in order: the judgement or why the item could not be read.
fn classify<'d, T: Sync>(
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
                    let rules = RuleSet::build(&ctx.config.user_rules, &ctx.rules_name)
                        .map_err(|e| e.to_string())?;
                    let mut done = Vec::new();
                    loop {
                        if ctx.stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        let judged =
                            read(item).and_then(|input| match input {
                                // A bug met by one message costs that message (it stays where it
                                // is, reported), not the scan.
                                Some(input) => catch_unwind(AssertUnwindSafe(|| {
                                    judge(&input, ctx.config, &rules)
                                }))
                                .map_err(|_| "evaluating it failed (internal error)".to_string()),
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

fn progress_bar(len: u64, label: &str) -> ProgressBar {
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

fn judge(input: &Input<'_>, config: &Config, rules: &RuleSet) -> Judged {
    let eval = evaluate_bytes(&input.bytes, config, rules, &EnvVars::default());
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

fn mtime_secs(meta: &fs::Metadata) -> Option<i64> {
    Some(meta.mtime()).filter(|&t| t > 0)
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

/// Counts for one verdict and kind.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CountRow {
    pub verdict: &'static str,
    pub kind: Option<&'static str>,
    pub count: usize,
}

/// Backscatter on one day.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DayRow {
    /// `YYYY-MM-DD`, UTC.
    pub date: String,
    pub backscatter: usize,
}

/// What a scan found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub path: String,
    /// "maildir" or "mbox".
    pub format: &'static str,
    /// The Maildir folders scanned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<String>,
    /// Messages judged.
    pub messages: usize,
    /// Messages that could not be read.
    pub unreadable: usize,
    /// Per verdict (all four, zeros included).
    pub verdicts: BTreeMap<&'static str, usize>,
    /// Per verdict and kind (only the combinations seen).
    pub counts: Vec<CountRow>,
    pub backscatter_per_day: Vec<DayRow>,
    /// Where the messages go (or would go).
    pub target: String,
    /// "backscatter", or "backscatter and unverified bounces".
    pub moving: &'static str,
    /// True with --apply.
    pub apply: bool,
    /// Messages that are (or, in a dry run, would be) moved.
    pub to_move: usize,
    /// Messages moved by this run.
    pub moved: usize,
    /// Messages an interrupted earlier run had already moved (found in the target, identical).
    pub already_moved: usize,
    /// Maildir messages that disappeared while the scan ran (the mail server moved or expunged
    /// them): not counted, not moved; a second run picks up those that were only moved.
    pub vanished: usize,
    /// Messages an interrupted earlier run had left half moved and this run finished (mbox).
    pub recovered: usize,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
    pub interrupted: bool,
    pub jobs: usize,
    pub elapsed_ms: u128,
    pub messages_per_second: f64,
}

impl Report {
    fn new(path: &Path, format: &'static str, select: Select) -> Report {
        Report {
            path: path.display().to_string(),
            format,
            folders: Vec::new(),
            messages: 0,
            unreadable: 0,
            verdicts: BTreeMap::new(),
            counts: Vec::new(),
            backscatter_per_day: Vec::new(),
            target: String::new(),
            moving: select.describe(),
            apply: false,
            to_move: 0,
            moved: 0,
            already_moved: 0,
            vanished: 0,
            recovered: 0,
            notes: Vec::new(),
            errors: Vec::new(),
            interrupted: false,
            jobs: 0,
            elapsed_ms: 0,
            messages_per_second: 0.0,
        }
    }

    /// Fills the counts and the histogram from the judgements.
    fn tally<'a>(&mut self, judged: impl IntoIterator<Item = &'a Judged>) {
        let mut per: BTreeMap<(Verdict, Option<Kind>), usize> = BTreeMap::new();
        let mut days: BTreeMap<i64, usize> = BTreeMap::new();
        let mut undated = 0;
        for j in judged {
            *per.entry((j.verdict, j.kind)).or_default() += 1;
            if j.verdict == Verdict::Backscatter {
                match j.day {
                    Some(d) => *days.entry(d).or_default() += 1,
                    None => undated += 1,
                }
            }
        }
        self.messages = per.values().sum();
        self.verdicts = [
            Verdict::Clean,
            Verdict::LegitBounce,
            Verdict::Backscatter,
            Verdict::UnverifiedBounce,
        ]
        .iter()
        .map(|v| (v.as_str(), 0))
        .collect();
        for (&(v, _), &n) in &per {
            *self.verdicts.entry(v.as_str()).or_default() += n;
        }
        self.counts = per
            .into_iter()
            .map(|((v, k), count)| CountRow {
                verdict: v.as_str(),
                kind: k.map(Kind::as_str),
                count,
            })
            .collect();
        self.backscatter_per_day = day_rows(&days);
        if undated > 0 {
            self.notes.push(format!(
                "{undated} backscatter messages have no date and are not in the histogram"
            ));
        }
    }
}

/// Histogram rows: every day of the span when it is short, else only the days with messages.
fn day_rows(days: &BTreeMap<i64, usize>) -> Vec<DayRow> {
    let (Some((&first, _)), Some((&last, _))) = (days.first_key_value(), days.last_key_value())
    else {
        return Vec::new();
    };
    let row = |d: i64| DayRow {
        date: day_string(d),
        backscatter: days.get(&d).copied().unwrap_or(0),
    };
    if last - first <= MAX_FILLED_SPAN {
        (first..=last).map(row).collect()
    } else {
        days.keys().map(|&d| row(d)).collect()
    }
}

fn render_text(r: &Report) -> String {
    let mut t = String::new();
    let kind = if r.format == "mbox" {
        "mbox"
    } else {
        "Maildir"
    };
    let _ = write!(t, "Scanned {} ({kind}", r.path);
    if r.folders.len() > 1 {
        let _ = write!(t, ", {} folders", r.folders.len());
    }
    let _ = writeln!(
        t,
        "): {} messages in {:.2} s ({:.0} messages/s, {} jobs)",
        r.messages,
        r.elapsed_ms as f64 / 1000.0,
        r.messages_per_second,
        r.jobs
    );
    let _ = writeln!(t, "\n{:<20} {:<20} {:>8}", "verdict", "kind", "count");
    let order = [
        Verdict::Clean,
        Verdict::LegitBounce,
        Verdict::Backscatter,
        Verdict::UnverifiedBounce,
    ];
    for verdict in order.map(Verdict::as_str) {
        let total = r.verdicts.get(verdict).copied().unwrap_or(0);
        let rows: Vec<&CountRow> = r.counts.iter().filter(|c| c.verdict == verdict).collect();
        if rows.len() > 1 {
            for c in &rows {
                let _ = writeln!(
                    t,
                    "{:<20} {:<20} {:>8}",
                    c.verdict,
                    c.kind.unwrap_or("-"),
                    c.count
                );
            }
            let _ = writeln!(t, "{:<20} {:<20} {:>8}", verdict, "(all kinds)", total);
        } else {
            let k = rows.first().and_then(|c| c.kind).unwrap_or("-");
            let _ = writeln!(t, "{:<20} {:<20} {:>8}", verdict, k, total);
        }
    }
    let _ = writeln!(t, "{:<20} {:<20} {:>8}", "total", "", r.messages);
    if r.unreadable > 0 {
        let _ = writeln!(t, "{:<20} {:<20} {:>8}", "unreadable", "", r.unreadable);
    }
    if !r.backscatter_per_day.is_empty() {
        let max = r
            .backscatter_per_day
            .iter()
            .map(|d| d.backscatter)
            .max()
            .unwrap_or(0);
        let _ = writeln!(t, "\nBackscatter per day (Date header, UTC):");
        for d in &r.backscatter_per_day {
            let _ = writeln!(
                t,
                "{} |{:<BAR_WIDTH$}| {}",
                d.date,
                bar(d.backscatter, max, BAR_WIDTH),
                d.backscatter
            );
        }
    }
    t.push('\n');
    if r.apply {
        let _ = write!(
            t,
            "Moved {} of {} messages ({}) to {}",
            r.moved, r.to_move, r.moving, r.target
        );
        if r.already_moved > 0 {
            let _ = write!(
                t,
                "; {} were already there from an interrupted run",
                r.already_moved
            );
        }
        t.push_str(".\n");
    } else {
        let _ = writeln!(
            t,
            "Dry run: {} messages ({}) would be moved to {}; nothing was changed (use --apply).",
            r.to_move, r.moving, r.target
        );
    }
    if r.recovered > 0 {
        let _ = writeln!(
            t,
            "Finished an interrupted run: {} messages moved.",
            r.recovered
        );
    }
    if r.vanished > 0 {
        let _ = writeln!(
            t,
            "Note: {} messages disappeared while the scan ran (moved or deleted by the mail server); run again to pick up those that were only moved.",
            r.vanished
        );
    }
    for n in &r.notes {
        let _ = writeln!(t, "Note: {n}");
    }
    for e in &r.errors {
        let _ = writeln!(t, "Error: {e}");
    }
    if r.interrupted {
        t.push_str("Interrupted: run the same command again to go on.\n");
    }
    t
}

// ---------------------------------------------------------------------------------------------
// Maildir
// ---------------------------------------------------------------------------------------------

/// One message file of a Maildir folder.
struct MailFile {
    folder: usize,
    sub: &'static str,
    name: OsString,
}

fn scan_maildir(args: &ScanArgs, ctx: &Ctx<'_>) -> Result<Report, Failure> {
    let path = args.path.as_path();
    if !is_maildir(path) {
        return Err(Failure::Usage(format!(
            "{} is a directory but not a Maildir (it has no cur/ or new/)",
            path.display()
        )));
    }
    let layout = ctx.config.layout;
    let root = maildir_root(path, ctx.config);
    let target = maildir::folder_dir(&root, &ctx.config.folder, layout)
        .map_err(|e| Failure::Usage(format!("the backscatter folder: {e}")))?;
    let folders = if args.recursive {
        maildir_tree(path, &target, layout)
            .map_err(|e| Failure::Io(format!("{}: {e}", path.display())))?
    } else {
        vec![path.to_path_buf()]
    };
    let mut files = Vec::new();
    let mut report = Report::new(path, "maildir", ctx.select);
    report.folders = folders.iter().map(|f| f.display().to_string()).collect();
    report.target = target.display().to_string();
    for (i, folder) in folders.iter().enumerate() {
        for sub in ["new", "cur"] {
            match list_messages(&folder.join(sub)) {
                Ok(names) => files.extend(names.into_iter().map(|name| MailFile {
                    folder: i,
                    sub,
                    name,
                })),
                Err(e) => report
                    .errors
                    .push(format!("{}: {e}", folder.join(sub).display())),
            }
        }
    }
    let max_size = ctx.config.max_size;
    let results = classify(&files, ctx, "scanning", |f| {
        let p = folders
            .get(f.folder)
            .map(|d| d.join(f.sub).join(&f.name))
            .unwrap_or_default();
        read_mail_file(&p, max_size).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => VANISHED.to_string(),
            _ => e.to_string(),
        })
    })?;
    // Messages already in the backscatter folder (a scan of that folder itself) stay.
    let in_target: Vec<bool> = folders
        .iter()
        .map(|f| same_dir(Some(f), Some(&target)))
        .collect();
    let mut judged = Vec::with_capacity(files.len());
    let mut moving = Vec::new();
    for (file, result) in files.iter().zip(results) {
        match result {
            Ok(j) => {
                if ctx.select.moves(j.verdict)
                    && !in_target.get(file.folder).copied().unwrap_or(true)
                {
                    moving.push(file);
                }
                judged.push(j);
            }
            Err(e) if e == VANISHED => report.vanished += 1,
            Err(e) => {
                let p = folders
                    .get(file.folder)
                    .map(|d| d.join(file.sub).join(&file.name));
                report.unreadable += 1;
                report
                    .errors
                    .push(format!("{}: {e}", p.unwrap_or_default().display()));
            }
        }
    }
    report.tally(&judged);
    if !args.recursive && same_dir(Some(&args.path.to_path_buf()), Some(&target)) {
        report
            .notes
            .push("this is the backscatter folder itself: nothing to move".into());
    }
    report.to_move = moving.len();
    if !args.apply || moving.is_empty() {
        report.apply = args.apply;
        return Ok(report);
    }
    report.apply = true;
    let target = maildir::ensure_folder(&root, &ctx.config.folder, layout).map_err(|e| {
        Failure::Io(format!(
            "cannot make the backscatter folder {}: {e}",
            target.display()
        ))
    })?;
    let (scanned, _) = OpenDir::configured(path, false)
        .map_err(|e| Failure::Io(format!("{}: {e}", path.display())))?;
    move_files(&moving, &folders, &scanned, &target, ctx, &mut report);
    Ok(report)
}

/// Reads a message file, or `None` when it is larger than `max_size` (it is not read at all).
fn read_mail_file(path: &Path, max_size: u64) -> io::Result<Option<Input<'static>>> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.len() > max_size {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(Some(Input {
        bytes: Cow::Owned(bytes),
        arrived: mtime_secs(&meta),
    }))
}

fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

fn same_dir(a: Option<&PathBuf>, b: Option<&PathBuf>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => match (fs::canonicalize(a), fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        },
        _ => false,
    }
}

/// The Maildir whose backscatter folder the messages go to: the configured inbox when PATH is
/// in it, the parent of a Maildir++ subfolder (it has a `maildirfolder` file), else PATH.
fn maildir_root(path: &Path, config: &Config) -> PathBuf {
    if let Some(Inbox::Maildir(root)) = &config.inbox
        && let (Ok(r), Ok(p)) = (fs::canonicalize(root), fs::canonicalize(path))
        && p.starts_with(&r)
    {
        return root.clone();
    }
    if path.join("maildirfolder").is_file()
        && let Some(parent) = path.parent()
    {
        return parent.to_path_buf();
    }
    path.to_path_buf()
}

/// Every folder of the tree at `root` (itself first), without `skip`.
fn maildir_tree(root: &Path, skip: &Path, layout: Layout) -> io::Result<Vec<PathBuf>> {
    let skip = fs::canonicalize(skip).ok();
    let skipped = |p: &Path| skip.is_some() && fs::canonicalize(p).ok() == skip;
    let mut found = Vec::new();
    if !skipped(root) {
        found.push(root.to_path_buf());
    }
    match layout {
        Layout::MaildirPlusPlus => {
            let mut subs: Vec<PathBuf> = fs::read_dir(root)?
                .filter_map(Result::ok)
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.as_bytes();
                    n.starts_with(b".") && n != b"." && n != b".."
                })
                // A symbolic link is not a folder of this Maildir (the Fs layout below skips
                // them too): its messages are not moved out of wherever it leads.
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .filter(|p| is_maildir(p) && !skipped(p))
                .collect();
            subs.sort();
            found.extend(subs);
        }
        Layout::Fs => {
            let mut stack = vec![root.to_path_buf()];
            let mut subs = Vec::new();
            while let Some(dir) = stack.pop() {
                for entry in fs::read_dir(&dir)?.filter_map(Result::ok) {
                    let name = entry.file_name();
                    if name.as_bytes().starts_with(b".")
                        || matches!(name.as_bytes(), b"cur" | b"new" | b"tmp")
                    {
                        continue;
                    }
                    let p = entry.path();
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        if is_maildir(&p) && !skipped(&p) {
                            subs.push(p.clone());
                        }
                        if !skipped(&p) {
                            stack.push(p);
                        }
                    }
                }
            }
            subs.sort();
            found.extend(subs);
        }
    }
    Ok(found)
}

/// The message files of `cur/` or `new/`, sorted (hidden files are not messages). A `cur/` or
/// `new/` that is a symbolic link is an error: its messages are not this Maildir's.
fn list_messages(dir: &Path) -> io::Result<Vec<OsString>> {
    if fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a symbolic link: not followed",
        ));
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.as_bytes().starts_with(b".") {
            continue;
        }
        let is_file = match entry.file_type() {
            Ok(t) if t.is_symlink() => entry.path().is_file(),
            Ok(t) => t.is_file(),
            Err(_) => false,
        };
        if is_file {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// How one move went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MoveResult {
    /// Moved.
    Done,
    /// The target held the same bytes (an interrupted run had linked it): the source is gone now.
    AlreadyThere,
    /// The source disappeared (the IMAP server moved or expunged it meanwhile).
    Vanished,
    /// The target holds different bytes: both are left alone.
    Conflict,
}

/// `folder/sub`, opened from the scanned directory one name at a time, never through a
/// symbolic link: messages are only moved out of the scanned tree itself.
fn open_source(scanned: &OpenDir, folder: &Path, sub: &str) -> io::Result<OpenDir> {
    let below = folder.strip_prefix(scanned.path()).map_err(|_| {
        io::Error::other(format!(
            "{} is not inside {}",
            folder.display(),
            scanned.path().display()
        ))
    })?;
    let (mut dir, _) = match below.iter().next() {
        Some(first) => scanned.sub(first, false)?,
        None => return Ok(scanned.sub(sub, false)?.0),
    };
    for name in below.iter().skip(1) {
        dir = dir.sub(name, false)?.0;
    }
    Ok(dir.sub(sub, false)?.0)
}

fn move_files(
    moving: &[&MailFile],
    folders: &[PathBuf],
    scanned: &OpenDir,
    target: &Maildir,
    ctx: &Ctx<'_>,
    report: &mut Report,
) {
    let progress = progress_bar(moving.len() as u64, "moving");
    let mut sources: BTreeMap<(usize, &str), Result<OpenDir, String>> = BTreeMap::new();
    let mut targets: Vec<&OpenDir> = Vec::new();
    for (n, file) in moving.iter().enumerate() {
        if ctx.stop.load(Ordering::Relaxed) {
            report.interrupted = true;
            break;
        }
        let (Some(folder), Some(dst)) = (folders.get(file.folder), target.sub(file.sub)) else {
            continue;
        };
        let src_path = folder.join(file.sub).join(&file.name);
        let dst_path = dst.path().join(&file.name);
        let src = sources
            .entry((file.folder, file.sub))
            .or_insert_with(|| open_source(scanned, folder, file.sub).map_err(|e| e.to_string()));
        let moved = match src {
            Ok(src) => move_no_replace(src, dst, &file.name).map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        match moved {
            Ok(MoveResult::Done) => report.moved += 1,
            Ok(MoveResult::AlreadyThere) => report.already_moved += 1,
            Ok(MoveResult::Vanished) => report.vanished += 1,
            Ok(MoveResult::Conflict) => report.errors.push(format!(
                "{} was not moved: {} exists with different content",
                src_path.display(),
                dst_path.display()
            )),
            Err(e) => report.errors.push(format!(
                "cannot move {} to {}: {e}",
                src_path.display(),
                dst_path.display()
            )),
        }
        if !targets.iter().any(|t| std::ptr::eq(*t, dst)) {
            targets.push(dst);
        }
        progress.inc(1);
        crash_point(&format!("moved-{}", n + 1));
    }
    progress.finish_and_clear();
    // Make the renames durable: targets first, so that a power cut never keeps only the removal.
    let opened = sources.values().filter_map(|s| s.as_ref().ok());
    for dir in targets.into_iter().chain(opened) {
        if let Err(e) = dir.sync() {
            report
                .errors
                .push(format!("cannot fsync {}: {e}", dir.path().display()));
        }
    }
}

/// Moves `dir/name` to `to/name` without ever replacing an existing `to/name`.
fn move_no_replace(dir: &OpenDir, to: &OpenDir, name: &OsStr) -> io::Result<MoveResult> {
    use rustix::fs::{AtFlags, RenameFlags, linkat, renameat, renameat_with};
    match renameat_with(dir.fd(), name, to.fd(), name, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(MoveResult::Done),
        Err(Errno::EXIST) => return settle_existing(dir, to, name),
        Err(Errno::NOENT) => return vanished_or(dir, name, Errno::NOENT.into()),
        // No RENAME_NOREPLACE on this file system (or kernel): link, then unlink.
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {}
        Err(e) => return Err(e.into()),
    }
    match linkat(dir.fd(), name, to.fd(), name, AtFlags::empty()) {
        Ok(()) => {
            crash_point("linked");
            dir.remove(name)?;
            Ok(MoveResult::Done)
        }
        Err(Errno::EXIST) => settle_existing(dir, to, name),
        Err(Errno::NOENT) => vanished_or(dir, name, Errno::NOENT.into()),
        Err(Errno::PERM | Errno::OPNOTSUPP) => {
            // No hard links either: a checked rename (names are unique, so the check cannot race
            // with anything but another scan of the same folder).
            match to.lstat(name) {
                Ok(_) => settle_existing(dir, to, name),
                Err(m) if m.kind() == io::ErrorKind::NotFound => {
                    renameat(dir.fd(), name, to.fd(), name)?;
                    Ok(MoveResult::Done)
                }
                Err(m) => Err(m),
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn vanished_or(dir: &OpenDir, name: &OsStr, e: io::Error) -> io::Result<MoveResult> {
    match dir.lstat(name) {
        Err(m) if m.kind() == io::ErrorKind::NotFound => Ok(MoveResult::Vanished),
        _ => Err(e),
    }
}

/// `to/name` exists: remove `dir/name` if it is the same file or holds the same bytes.
fn settle_existing(dir: &OpenDir, to: &OpenDir, name: &OsStr) -> io::Result<MoveResult> {
    let (s, d) = match (dir.lstat(name), to.lstat(name)) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) if e.kind() == io::ErrorKind::NotFound => return Ok(MoveResult::Vanished),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let read = |d: &OpenDir| -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        d.open_file(name)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let same = (s.dev() == d.dev() && s.ino() == d.ino())
        || (s.is_file() && d.is_file() && s.len() == d.len() && read(dir)? == read(to)?);
    if !same {
        return Ok(MoveResult::Conflict);
    }
    dir.remove(name)?;
    Ok(MoveResult::AlreadyThere)
}

// ---------------------------------------------------------------------------------------------
// mbox
// ---------------------------------------------------------------------------------------------

fn scan_mbox(args: &ScanArgs, ctx: &Ctx<'_>) -> Result<Report, Failure> {
    // Through a symbolic link only as `deliver` goes (see the `store` module): then the file
    // itself is what is read, replaced and journaled beside, not the link.
    let resolve = |p: &Path| resolve_link(p).map_err(|e| Failure::Io(e.to_string()));
    let path = resolve(&args.path)?;
    let path = path.as_path();
    let folder = resolve(&ctx.config.mbox_folder)?;
    let mut report = Report::new(path, "mbox", ctx.select);
    report.target = folder.display().to_string();
    let is_folder = same_file(path, &folder);
    if is_folder {
        report
            .notes
            .push("this is the backscatter mbox itself: nothing to move".into());
    }
    let journal = journal_path(path);
    if journal.exists() && !args.apply {
        report.notes.push(format!(
            "an interrupted --apply left {}: run with --apply to finish it",
            journal.display()
        ));
    }
    if args.apply && journal.exists() {
        report.recovered = recover(path, ctx.config).map_err(Failure::Io)?;
    }
    let arrived_fallback = fs::metadata(path).ok().as_ref().and_then(mtime_secs);
    let data =
        fs::read(path).map_err(|e| Failure::Io(format!("cannot read {}: {e}", path.display())))?;
    let chunks =
        split_mbox(&data).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let judged: Vec<Option<Judged>> =
        judge_chunks(&data, &chunks, arrived_fallback, ctx, "scanning")?
            .into_iter()
            .map(|outcome| outcome.map_err(|e| report.errors.push(e)).ok())
            .collect();
    report.unreadable = report.errors.len();
    let to_move = if is_folder {
        0
    } else {
        judged
            .iter()
            .flatten()
            .filter(|j| ctx.select.moves(j.verdict))
            .count()
    };
    if !args.apply || to_move == 0 || is_folder {
        report.tally(judged.iter().flatten());
        report.to_move = to_move;
        report.apply = args.apply;
        return Ok(report);
    }
    if ctx.stop.load(Ordering::Relaxed) {
        return Err(Failure::Interrupted);
    }
    report.apply = true;
    let known = Known::new(&data, &chunks, &judged);
    let done = apply_mbox(path, &folder, ctx, &known, arrived_fallback).map_err(Failure::Io)?;
    report.tally(&done.judged);
    // The locked pass judged again what the first could not: its word is the last.
    report.unreadable = done.errors.len();
    report.errors = done.errors;
    report.to_move = done.moved;
    report.moved = done.moved;
    report.interrupted = ctx.stop.load(Ordering::Relaxed);
    Ok(report)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Judges the messages `chunks` of `data`; a message that cannot be judged is an error that
/// names it by number and offset.
fn judge_chunks(
    data: &[u8],
    chunks: &[Range<usize>],
    arrived_fallback: Option<i64>,
    ctx: &Ctx<'_>,
    label: &str,
) -> Result<Vec<Outcome>, Failure> {
    let results = classify(chunks, ctx, label, |r| {
        let chunk = data.get(r.clone()).unwrap_or_default();
        let (line, _) = message::split_from_line(chunk);
        let arrived = line.and_then(from_line_time).or(arrived_fallback);
        Ok(Some(Input {
            bytes: for_judging(chunk),
            arrived,
        }))
    })?;
    Ok(results
        .into_iter()
        .zip(chunks)
        .map(|(r, range)| r.map_err(|e| format!("the message at byte {}: {e}", range.start)))
        .collect())
}

/// The byte ranges of the messages of an mbox: each from its `From ` line to the next one
/// (the separating empty line included). `From ` lines count at the start of the file and
/// after an empty line, as `deliver` (and every mboxrd writer) puts them.
fn split_mbox(data: &[u8]) -> Result<Vec<Range<usize>>, String> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    if !data.starts_with(b"From ") {
        return Err("not an mbox: it does not start with a \"From \" line".into());
    }
    let mut starts = vec![0];
    for nl in memchr::memmem::find_iter(data, b"\nFrom ") {
        let before = data.get(..=nl).unwrap_or_default();
        if before.ends_with(b"\n\n") || before.ends_with(b"\n\r\n") {
            starts.push(nl + 1);
        }
    }
    let mut ranges: Vec<Range<usize>> = starts
        .windows(2)
        .filter_map(|w| Some(*w.first()?..*w.get(1)?))
        .collect();
    if let Some(&last) = starts.last() {
        ranges.push(last..data.len());
    }
    Ok(ranges)
}

/// A message chunk without the empty line that separates it from the next.
fn without_separator(chunk: &[u8]) -> &[u8] {
    let cut = if chunk.ends_with(b"\n\n") {
        1
    } else if chunk.ends_with(b"\n\r\n") {
        2
    } else {
        0
    };
    chunk.get(..chunk.len() - cut).unwrap_or(chunk)
}

/// The message as `check` would see it: the separator dropped and the mboxrd quoting undone
/// (one `>` less on every line matching `^>+From `), the `From ` line kept.
fn for_judging(chunk: &[u8]) -> Cow<'_, [u8]> {
    let msg = without_separator(chunk);
    if memchr::memmem::find(msg, b"\n>").is_none() {
        return Cow::Borrowed(msg);
    }
    let mut out = Vec::with_capacity(msg.len());
    let mut first = true;
    for line in msg.split_inclusive(|&b| b == b'\n') {
        let gts = line.iter().take_while(|&&b| b == b'>').count();
        if !first
            && gts > 0
            && line
                .get(gts..)
                .is_some_and(|rest| rest.starts_with(b"From "))
        {
            out.extend_from_slice(line.get(1..).unwrap_or_default());
        } else {
            out.extend_from_slice(line);
        }
        first = false;
    }
    Cow::Owned(out)
}

/// Seconds since the epoch of the date in an mbox `From sender Www Mmm dd hh:mm:ss yyyy` line.
fn from_line_time(line: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(line).ok()?;
    let words: Vec<&str> = text.split_whitespace().collect();
    let t = words
        .iter()
        .rposition(|w| w.contains(':') && w.bytes().all(|b| b.is_ascii_digit() || b == b':'))?;
    let day = words.get(t.checked_sub(1)?)?;
    let month = words.get(t.checked_sub(2)?)?;
    let year = words
        .iter()
        .skip(t + 1)
        .find(|w| w.len() == 4 && w.bytes().all(|b| b.is_ascii_digit()))?;
    let time = words.get(t)?;
    let d = mail_parser::DateTime::parse_rfc822(&format!("{day} {month} {year} {time} +0000"))?;
    d.is_valid().then(|| d.to_timestamp())
}

/// The identity of a message in the journal: length and FNV-1a hash of its bytes without the
/// trailing line ends (so the separator an append adds does not change it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    len: usize,
    hash: u64,
}

fn key(chunk: &[u8]) -> Key {
    let end = chunk
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    let body = chunk.get(..end).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in body {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    Key {
        len: body.len(),
        hash,
    }
}

/// The judgements of the unlocked pass, found again by content in the locked read.
struct Known<'d> {
    by_key: HashMap<Key, Vec<(&'d [u8], Judged)>>,
}

impl<'d> Known<'d> {
    fn new(data: &'d [u8], chunks: &[Range<usize>], judged: &[Option<Judged>]) -> Known<'d> {
        let mut by_key: HashMap<Key, Vec<(&[u8], Judged)>> = HashMap::new();
        for (r, j) in chunks.iter().zip(judged) {
            let Some(j) = j else { continue };
            let chunk = without_separator(data.get(r.clone()).unwrap_or_default());
            by_key.entry(key(chunk)).or_default().push((chunk, *j));
        }
        Known { by_key }
    }

    fn get(&self, chunk: &[u8]) -> Option<Judged> {
        let chunk = without_separator(chunk);
        self.by_key
            .get(&key(chunk))?
            .iter()
            .find(|(c, _)| *c == chunk)
            .map(|(_, j)| *j)
    }
}

/// What the locked part of `--apply` did.
struct Applied {
    /// Every message of the mbox as it was under the lock (but those that could not be judged).
    judged: Vec<Judged>,
    /// Why some messages could not be judged (they stay where they are).
    errors: Vec<String>,
    moved: usize,
}

fn journal_path(mbox: &Path) -> PathBuf {
    beside(mbox, ".backstop-scan")
}

/// `DIR/.NAME<suffix>` for `DIR/NAME`.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(suffix);
    path.with_file_name(name)
}

fn staged_path(file: &Path) -> PathBuf {
    beside(file, ".backstop-scan.tmp")
}

/// The whole of a locked file's content.
fn read_locked(lock: &Locked) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut file = lock.file();
    file.read_to_end(&mut data)?;
    Ok(data)
}

fn apply_mbox(
    path: &Path,
    folder: &Path,
    ctx: &Ctx<'_>,
    known: &Known<'_>,
    arrived_fallback: Option<i64>,
) -> Result<Applied, String> {
    let mut journal = Journal::create(&journal_path(path))?;
    crash_point("journal-created");
    let inbox = Locked::acquire(path, &ctx.config.mbox_locks)
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    crash_point("locked");
    let data = read_locked(&inbox).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let chunks = split_mbox(&data).map_err(|e| format!("{}: {e}", path.display()))?;
    // Messages that arrived (or changed) since the unlocked pass are judged now, under the lock.
    let mut judged: Vec<Option<Judged>> = chunks
        .iter()
        .map(|r| known.get(data.get(r.clone()).unwrap_or_default()))
        .collect();
    let unknown: Vec<Range<usize>> = chunks
        .iter()
        .zip(&judged)
        .filter(|(_, j)| j.is_none())
        .map(|(r, _)| r.clone())
        .collect();
    // Under the lock a Ctrl-C is held off until the files are consistent again.
    let quiet = Ctx {
        config: ctx.config,
        rules_name: ctx.rules_name.clone(),
        jobs: ctx.jobs,
        stop: Arc::new(AtomicBool::new(false)),
        select: ctx.select,
    };
    let mut fresh = judge_chunks(&data, &unknown, arrived_fallback, &quiet, "new messages")
        .map_err(Failure::into_message)?
        .into_iter();
    let mut errors = Vec::new();
    for slot in judged.iter_mut().filter(|j| j.is_none()) {
        match fresh.next() {
            Some(Ok(j)) => *slot = Some(j),
            Some(Err(e)) => errors.push(e),
            None => {}
        }
    }
    let moves: Vec<Key> = chunks
        .iter()
        .zip(&judged)
        .filter(|(_, j)| j.is_some_and(|j| ctx.select.moves(j.verdict)))
        .map(|(r, _)| key(data.get(r.clone()).unwrap_or_default()))
        .collect();
    let judged: Vec<Judged> = judged.into_iter().flatten().collect();
    if moves.is_empty() {
        drop(inbox);
        journal.remove()?;
        return Ok(Applied {
            judged,
            errors,
            moved: 0,
        });
    }
    journal.record(&format!("folder {}", hex(folder.as_os_str().as_bytes())))?;
    let mut lines = String::new();
    for k in &moves {
        let _ = writeln!(lines, "move {} {:016x}", k.len, k.hash);
    }
    let _ = write!(lines, "moves-end {}", moves.len());
    journal.record(&lines)?;
    crash_point("moves-recorded");
    let state = JournalState {
        folder: Some(folder.to_path_buf()),
        moves,
        moves_end: true,
        ..JournalState::default()
    };
    let moved = complete(path, &inbox, &data, &state, ctx.config, &mut journal)?;
    drop(inbox);
    crash_point("unlocked");
    journal.remove()?;
    Ok(Applied {
        judged,
        errors,
        moved,
    })
}

/// With the inbox `path` locked (its content `data`) and the journal naming the messages to
/// move, brings the backscatter mbox and the inbox to the end state, recording every step.
/// Returns how many messages this call moved.
fn complete(
    path: &Path,
    inbox: &Locked,
    data: &[u8],
    state: &JournalState,
    config: &Config,
    journal: &mut Journal,
) -> Result<usize, String> {
    let folder = state
        .folder
        .as_deref()
        .ok_or("the journal names no backscatter mbox")?;
    let chunks = split_mbox(data).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut wanted: HashMap<Key, usize> = HashMap::new();
    for k in &state.moves {
        *wanted.entry(*k).or_default() += 1;
    }
    let selected: Vec<bool> = chunks
        .iter()
        .map(|r| {
            let k = key(data.get(r.clone()).unwrap_or_default());
            match wanted.get_mut(&k) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            }
        })
        .collect();
    let moving = selected.iter().filter(|&&s| s).count();
    let inbox_replaced = state.mbox_done
        || state
            .mbox_staged
            .is_some_and(|id| file_id(path) == Some(id));
    if inbox_replaced {
        return Ok(0);
    }
    let folder_replaced = state.folder_done
        || state
            .folder_staged
            .is_some_and(|id| file_id(folder) == Some(id));
    if !folder_replaced {
        if let Some(parent) = folder.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| format!("cannot make {}: {e}", parent.display()))?;
        }
        let lock = Locked::acquire(folder, &config.mbox_locks)
            .map_err(|e| format!("cannot lock {}: {e}", folder.display()))?;
        let mut out =
            read_locked(&lock).map_err(|e| format!("cannot read {}: {e}", folder.display()))?;
        for (r, _) in chunks.iter().zip(&selected).filter(|(_, s)| **s) {
            push_message(&mut out, data.get(r.clone()).unwrap_or_default());
        }
        let staged = staged_path(folder);
        let id = write_staged(&staged, &out, lock.file())
            .map_err(|e| format!("cannot write {}: {e}", staged.display()))?;
        journal.record(&format!("folder-staged {} {}", id.0, id.1))?;
        crash_point("folder-staged");
        fs::rename(&staged, folder)
            .map_err(|e| format!("cannot replace {}: {e}", folder.display()))?;
        crash_point("folder-renamed");
        sync_parent(folder)
            .map_err(|e| format!("cannot fsync the directory of {}: {e}", folder.display()))?;
        journal.record("folder-done")?;
        crash_point("folder-done");
        drop(lock);
    }
    let mut rest = Vec::with_capacity(data.len());
    for (r, _) in chunks.iter().zip(&selected).filter(|(_, s)| !**s) {
        rest.extend_from_slice(data.get(r.clone()).unwrap_or_default());
    }
    let staged = staged_path(path);
    let id = write_staged(&staged, &rest, inbox.file())
        .map_err(|e| format!("cannot write {}: {e}", staged.display()))?;
    journal.record(&format!("mbox-staged {} {}", id.0, id.1))?;
    crash_point("mbox-staged");
    fs::rename(&staged, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
    crash_point("mbox-renamed");
    sync_parent(path)
        .map_err(|e| format!("cannot fsync the directory of {}: {e}", path.display()))?;
    journal.record("mbox-done")?;
    crash_point("mbox-done");
    Ok(moving)
}

/// Appends one mbox message so that it is followed by an empty line, after making sure the
/// data before it ends with one.
fn push_message(out: &mut Vec<u8>, chunk: &[u8]) {
    if !(out.is_empty() || out.ends_with(b"\n\n") || out.ends_with(b"\n\r\n")) {
        out.extend_from_slice(if out.ends_with(b"\n") { b"\n" } else { b"\n\n" });
    }
    out.extend_from_slice(chunk);
    if !(chunk.ends_with(b"\n\n") || chunk.ends_with(b"\n\r\n")) {
        out.extend_from_slice(if chunk.ends_with(b"\n") {
            b"\n"
        } else {
            b"\n\n"
        });
    }
}

/// Writes `data` to a fresh `staged` (any leftover of a dead run is removed first; the caller
/// holds the lock that any writer of that name holds), with the mode and owner of `like`,
/// fsynced. Returns its (device, inode).
fn write_staged(staged: &Path, data: &[u8], like: &File) -> io::Result<(u64, u64)> {
    match fs::remove_file(staged) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let meta = like.metadata()?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(staged)?;
    // Same owner first (allowed when it is ours, or to root), then the same permissions.
    let _ = rustix::fs::fchown(
        &file,
        Some(rustix::fs::Uid::from_raw(meta.uid())),
        Some(rustix::fs::Gid::from_raw(meta.gid())),
    );
    file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    file.write_all(data)?;
    file.sync_all()?;
    let m = file.metadata()?;
    Ok((m.dev(), m.ino()))
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

// ---------------------------------------------------------------------------------------------
// The journal
// ---------------------------------------------------------------------------------------------

const JOURNAL_MAGIC: &str = "backstop-scan-journal 1";

/// `O_NOFOLLOW` for the journal: a symbolic link put in its place is not followed (reopening
/// truncates).
const NOFOLLOW: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;

/// The append-only journal of one `--apply` on an mbox.
struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Creates the journal (it must not exist) with its owner line, durably.
    fn create(path: &Path) -> Result<Journal, String> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => {
                    format!(
                        "{} exists: another backstop scan is working on this mbox",
                        path.display()
                    )
                }
                _ => format!("cannot create {}: {e}", path.display()),
            })?;
        let mut journal = Journal {
            path: path.to_path_buf(),
            file,
        };
        journal.record(&format!("{JOURNAL_MAGIC}\n{}", owner_line()))?;
        sync_parent(path)
            .map_err(|e| format!("cannot fsync the directory of {}: {e}", path.display()))?;
        Ok(journal)
    }

    /// Opens an existing journal to go on with it, cut to its first `len` bytes.
    fn reopen(path: &Path, len: u64) -> Result<Journal, String> {
        let file = OpenOptions::new()
            .append(true)
            .custom_flags(NOFOLLOW)
            .open(path)
            .and_then(|f| f.set_len(len).map(|()| f))
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends lines and makes them durable before anything else happens.
    fn record(&mut self, lines: &str) -> Result<(), String> {
        let mut text = String::with_capacity(lines.len() + 1);
        text.push_str(lines);
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    fn remove(self) -> Result<(), String> {
        drop(self.file);
        fs::remove_file(&self.path)
            .map_err(|e| format!("cannot remove {}: {e}", self.path.display()))?;
        sync_parent(&self.path)
            .map_err(|e| format!("cannot fsync the directory of {}: {e}", self.path.display()))
    }
}

/// `owner PID HOST`: who may hold the locks while the journal exists.
fn owner_line() -> String {
    format!(
        "owner {} {}",
        std::process::id(),
        hex(host_name().as_bytes())
    )
}

/// What a journal says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct JournalState {
    owner: Option<(u32, String)>,
    folder: Option<PathBuf>,
    moves: Vec<Key>,
    moves_end: bool,
    folder_staged: Option<(u64, u64)>,
    folder_done: bool,
    mbox_staged: Option<(u64, u64)>,
    mbox_done: bool,
}

impl JournalState {
    /// Parses a journal; a last line without its newline was being written when the run died
    /// and is ignored.
    fn parse(text: &[u8]) -> Result<JournalState, String> {
        let mut state = JournalState::default();
        let complete = match text.iter().rposition(|&b| b == b'\n') {
            Some(i) => text.get(..i).unwrap_or_default(),
            None => return Ok(state),
        };
        let text =
            std::str::from_utf8(complete).map_err(|_| "the journal is not text".to_string())?;
        let mut lines = text.split('\n');
        if lines.next() != Some(JOURNAL_MAGIC) {
            return Err("the journal does not start with its magic line".into());
        }
        let bad = |line: &str| format!("cannot understand the journal line {line:?}");
        for line in lines {
            let words: Vec<&str> = line.split(' ').collect();
            let id = |w: &[&str]| -> Option<(u64, u64)> {
                Some((w.get(1)?.parse().ok()?, w.get(2)?.parse().ok()?))
            };
            match words.as_slice() {
                ["owner", pid, host] => {
                    let host = unhex(host)
                        .and_then(|h| String::from_utf8(h).ok())
                        .ok_or_else(|| bad(line))?;
                    state.owner = Some((pid.parse().map_err(|_| bad(line))?, host));
                }
                ["folder", p] => {
                    state.folder = Some(PathBuf::from(OsString::from_vec(
                        unhex(p).ok_or_else(|| bad(line))?,
                    )))
                }
                ["move", len, hash] => state.moves.push(Key {
                    len: len.parse().map_err(|_| bad(line))?,
                    hash: u64::from_str_radix(hash, 16).map_err(|_| bad(line))?,
                }),
                ["moves-end", n] => {
                    if n.parse::<usize>().ok() != Some(state.moves.len()) {
                        return Err(bad(line));
                    }
                    state.moves_end = true;
                }
                ["folder-staged", ..] => {
                    state.folder_staged = Some(id(&words).ok_or_else(|| bad(line))?)
                }
                ["folder-done"] => state.folder_done = true,
                ["mbox-staged", ..] => {
                    state.mbox_staged = Some(id(&words).ok_or_else(|| bad(line))?)
                }
                ["mbox-done"] => state.mbox_done = true,
                _ => return Err(bad(line)),
            }
        }
        Ok(state)
    }
}

/// Finishes the move an interrupted `--apply` on `path` recorded; returns how many messages it
/// moved now.
fn recover(path: &Path, config: &Config) -> Result<usize, String> {
    let jpath = journal_path(path);
    let mut text = Vec::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(NOFOLLOW)
        .open(&jpath)
        .and_then(|mut f| f.read_to_end(&mut text))
        .map_err(|e| format!("cannot read {}: {e}", jpath.display()))?;
    let state = JournalState::parse(&text).map_err(|e| format!("{}: {e}", jpath.display()))?;
    if let Some((pid, host)) = &state.owner {
        if host != host_name() {
            return Err(format!(
                "{} was left by a backstop scan on {host}: finish it there (or remove it if no scan runs)",
                jpath.display()
            ));
        }
        if *pid != std::process::id() && process_alive(*pid) {
            return Err(format!(
                "a backstop scan (pid {pid}) is working on {}",
                path.display()
            ));
        }
        // The dead run's dotlocks would hold off everyone for five minutes: they are ours.
        remove_dead_dotlocks(path, *pid);
        if let Some(folder) = &state.folder {
            remove_dead_dotlocks(folder, *pid);
        }
    }
    // A torn last line is cut off, so that the lines appended from now on stay whole.
    let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut journal = Journal::reopen(&jpath, whole as u64)?;
    if !state.moves_end {
        // Nothing had changed yet.
        return journal.remove().map(|()| 0);
    }
    // From here on this process may hold the locks: a later run must know whose they are.
    journal.record(&owner_line())?;
    let inbox = Locked::acquire(path, &config.mbox_locks)
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    let data = read_locked(&inbox).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let moved = complete(path, &inbox, &data, &state, config, &mut journal)?;
    drop(inbox);
    journal.remove()?;
    Ok(moved)
}

/// Removes `NAME.lock` when it holds `pid` (a dotlock of the dead run: the journal says it ran
/// on this host), and that run's unique `NAME.lock.HOST.PID.N` files. (A lock naming its host
/// would be broken by the next locker anyway; one of an older version names no host.)
fn remove_dead_dotlocks(mbox: &Path, pid: u32) {
    let lock = mbox::dotlock_path(mbox);
    let ours = |host: Option<&[u8]>| host.is_none_or(|h| h == node_name().as_bytes());
    if fs::read(&lock)
        .is_ok_and(|c| mbox::dotlock_holder(&c).is_some_and(|(p, host)| p == pid && ours(host)))
    {
        let _ = fs::remove_file(&lock);
    }
    let mut prefix = lock.file_name().unwrap_or_default().to_os_string();
    prefix.push(format!(".{}.{pid}.", host_name()));
    if let Some(dir) = lock.parent()
        && let Ok(entries) = fs::read_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
    {
        for e in entries.filter_map(Result::ok) {
            if e.file_name().as_bytes().starts_with(prefix.as_bytes()) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_splits_at_from_lines_after_empty_lines() {
        let data = b"From a Thu Jan  1 00:00:00 1970\nX: 1\n\n>From here\n>>From there\n\nFrom b Thu Jan  1 00:00:00 1970\r\nY: 2\r\n\r\nbody";
        let ranges = split_mbox(data).unwrap();
        assert_eq!(ranges.len(), 2);
        let first = &data[ranges[0].clone()];
        assert!(first.ends_with(b">>From there\n\n"));
        assert_eq!(
            &data[ranges[1].clone()],
            b"From b Thu Jan  1 00:00:00 1970\r\nY: 2\r\n\r\nbody"
        );
        assert_eq!(
            &*for_judging(first),
            b"From a Thu Jan  1 00:00:00 1970\nX: 1\n\nFrom here\n>From there\n".as_slice()
        );
        assert!(split_mbox(b"X: 1\n").is_err());
        assert!(split_mbox(b"").unwrap().is_empty());
    }

    #[test]
    fn pushed_messages_are_separated_and_keep_their_key() {
        let mut out = b"From a x\n\nold".to_vec();
        push_message(&mut out, b"From b y\n\nno newline");
        push_message(&mut out, b"From c z\n\nlf\n");
        push_message(&mut out, b"From d z\n\nsep\n\n");
        assert_eq!(
            out,
            b"From a x\n\nold\n\nFrom b y\n\nno newline\n\nFrom c z\n\nlf\n\nFrom d z\n\nsep\n\n"
        );
        let ranges = split_mbox(&out).unwrap();
        assert_eq!(ranges.len(), 4);
        assert_eq!(key(&out[ranges[1].clone()]), key(b"From b y\n\nno newline"));
        assert_eq!(key(&out[ranges[2].clone()]), key(b"From c z\n\nlf\n"));
    }

    #[test]
    fn journal_round_trip_and_torn_last_line() {
        let text = format!(
            "{JOURNAL_MAGIC}\nowner 42 {}\nfolder {}\nmove 10 00000000000000ff\nmoves-end 1\nfolder-staged 1 2\nfolder-done\nmbox-sta",
            hex(b"host"),
            hex(b"/tmp/B x")
        );
        let s = JournalState::parse(text.as_bytes()).unwrap();
        assert_eq!(s.owner, Some((42, "host".into())));
        assert_eq!(s.folder.as_deref(), Some(Path::new("/tmp/B x")));
        assert_eq!(s.moves, vec![Key { len: 10, hash: 255 }]);
        assert!(s.moves_end && s.folder_done && !s.mbox_done);
        assert_eq!(s.folder_staged, Some((1, 2)));
        assert_eq!(s.mbox_staged, None);
        assert!(JournalState::parse(b"garbage\n").is_err());
        assert!(JournalState::parse(format!("{JOURNAL_MAGIC}\nmoves-end 3\n").as_bytes()).is_err());
        assert_eq!(
            JournalState::parse(b"backstop-scan-jou").unwrap(),
            JournalState::default()
        );
    }

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

    #[test]
    fn move_never_replaces() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap();
        let (from, _) = OpenDir::configured(&a, false).unwrap();
        let (to, _) = OpenDir::configured(&b, false).unwrap();
        let m = OsStr::new("m");
        fs::write(a.join(m), b"one").unwrap();
        assert_eq!(move_no_replace(&from, &to, m).unwrap(), MoveResult::Done);
        assert_eq!(fs::read(b.join(m)).unwrap(), b"one");
        fs::write(a.join(m), b"two").unwrap();
        assert_eq!(
            move_no_replace(&from, &to, m).unwrap(),
            MoveResult::Conflict
        );
        assert_eq!(fs::read(b.join(m)).unwrap(), b"one");
        fs::write(a.join(m), b"one").unwrap();
        assert_eq!(
            move_no_replace(&from, &to, m).unwrap(),
            MoveResult::AlreadyThere
        );
        assert!(!a.join(m).exists());
        assert_eq!(
            move_no_replace(&from, &to, m).unwrap(),
            MoveResult::Vanished
        );
    }
}
