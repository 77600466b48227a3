//! `backstop scan`: classify every message of a Maildir or an mbox, summarise, and file the backscatter away safely.
//!
//! # What it does
//!
//! Every message is judged by the same [`evaluate`](crate::verdict::evaluate) as `deliver`
//! (through [`evaluate_bytes`](crate::run::evaluate_bytes), which honours `max_size`), with an
//! empty [`EnvVars`](crate::message::EnvVars): the envelope sender comes from the Return-Path header (or an mbox `From ` line), never from this process's
//! own `SENDER`/`RECIPIENT`. The report counts messages per verdict and kind, draws a per-day
//! histogram of backscatter, and lists every message that moves (or would move) with its
//! verdict, kind, arrival, From and Subject. The day is the UTC day the message *arrived*, by
//! what the user's own side recorded, never by its forgeable `Date:` header: the delivery time
//! the store keeps with it (a Maildir file name's timestamp, an mbox message's `From ` line);
//! else the date of the top Received line (added by the user's own server); last, the file's
//! mtime (a Maildir file's own, the whole mbox's).
//!
//! Nothing changes without `--apply` (a dry run says what would move); `--undo` puts back what
//! the last `--apply` moved (see the `undo` module).
//!
//! # Parallelism
//!
//! Messages are judged by `--jobs` worker threads (default: the number of cores) under
//! [`std::thread::scope`], taking the next message from a shared atomic index; each worker
//! builds its own [`RuleSet`](crate::rules::RuleSet) (its regexes compile lazily into `OnceCell`s, so a rule set is
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

use std::fs;
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::cli::{ReportFormat, ScanArgs};
use crate::config::Config;
use crate::exit::Exit;
use crate::run::{load, print_report};
use crate::util::days;
use crate::verdict::Verdict;

mod journal;
mod judge;
mod maildir;
mod mbox;
pub(crate) use mbox::{for_judging, split_mbox};
mod report;
mod undo;

use judge::Judged;
use maildir::scan_maildir;
use mbox::scan_mbox;
use report::render_text;

/// The error of a Maildir file that was gone when it was read.
const VANISHED: &str = "vanished";
/// Width of the longest histogram bar.
const BAR_WIDTH: usize = 50;
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
    let since = match days::since(args.since.as_deref(), args.days, days::today()) {
        Ok(s) => s,
        Err(e) => {
            say!("backstop: {e}");
            return ExitCode::from(Exit::Error);
        }
    };
    if args.undo {
        return undo::run(args, &config);
    }
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
            since,
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
            if let Err(e) = print_report(&text, args.format, "report") {
                say!("backstop: {e}");
                return ExitCode::from(Exit::Error);
            }
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

/// Which messages move.
#[derive(Debug, Clone, Copy)]
struct Select {
    include_unverified: bool,
    /// `--since`/`--days`: the first day (days since 1970-01-01) a moving bounce arrived on.
    since: Option<i64>,
}

impl Select {
    fn moves(self, j: &Judged) -> bool {
        (j.verdict == Verdict::Backscatter
            || (self.include_unverified && j.verdict == Verdict::UnverifiedBounce))
            && self.counts(j)
    }

    /// Whether a bounce is within `--since` (an undated one is not, when it is given).
    fn counts(self, j: &Judged) -> bool {
        self.since
            .is_none_or(|since| j.day().is_some_and(|d| d >= since))
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
