//! `scan --undo`: puts back what the last `--apply` on a folder moved, by the record that
//! apply kept.
//!
//! **Maildir.** Before it moves anything, `--apply` writes `backstop-scan-undo` in the scanned
//! directory (a plain file: neither Maildir++ nor the fs layout takes a file for a folder): the
//! backscatter folder and, for each message, its folder (relative to the scanned one), `cur`
//! or `new`, and file name. `--undo` finds each message in the backscatter folder by the
//! unique part of its name (before `:`, so a flag the mail client set since does not lose
//! it), and renames it back to the same subdirectory of the folder it came from, never
//! replacing a file (the same move as `--apply`'s). Messages no longer in the backscatter
//! folder (deleted or moved since) are counted and left alone; the record is removed once
//! every message is back or gone. An interrupted undo is finished by running it again.
//!
//! **mbox.** The journal of a finished `--apply` is kept as `.NAME.backstop-scan.undo` beside
//! the mbox: the backscatter mbox and each moved message's key (length and hash). `--undo`
//! moves the messages with those keys from the backscatter mbox back to the inbox by the very
//! same crash-safe procedure as `--apply` (see the `scan` module comment), the other way
//! round: its journal, marked `undo`, lives beside the backscatter mbox and names the inbox as
//! where the messages go, and the record is removed as soon as that journal holds it. The
//! messages come back at the end of the inbox, byte for byte. A second run, or a `scan
//! --apply` of the backscatter mbox, finishes an interrupted undo.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use serde::Serialize;

use crate::cli::{ReportFormat, ScanArgs};
use crate::config::Config;
use crate::exit::Exit;
use crate::run::print_report;
use crate::store::mbox::Locked;
use crate::store::{OpenDir, replace_durably, resolve_link};
use crate::util::dates::rfc3339;

use super::journal::{Journal, JournalState, NOFOLLOW, hex, journal_path, undo_path, unhex};
use super::maildir::{MoveResult, is_maildir, move_no_replace, open_source};
use super::mbox::{complete, read_locked, recover, remove_record};

/// The record a Maildir `--apply` leaves in the scanned directory.
const MAILDIR_RECORD: &str = "backstop-scan-undo";
const MAILDIR_MAGIC: &str = "backstop-scan-undo 1";

/// One message a Maildir `--apply` moves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Moved {
    /// Its folder, relative to the scanned directory ("" for that directory itself).
    pub(super) folder: PathBuf,
    /// `cur` or `new`.
    pub(super) sub: &'static str,
    pub(super) name: OsString,
}

/// What an undo did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct UndoReport {
    pub path: String,
    /// Where the messages were put: the backscatter folder or mbox.
    pub from: String,
    /// When the undone `--apply` ran (Maildir).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    /// Messages the record names.
    pub recorded: usize,
    /// Messages put back by this run.
    pub restored: usize,
    /// Messages already back where they came from (an interrupted undo, or an apply that
    /// stopped before moving them).
    pub already_back: usize,
    /// Messages no longer in the backscatter folder: deleted or moved since; left alone.
    pub missing: usize,
    /// Messages an interrupted earlier undo had left half moved and this run finished (mbox).
    pub recovered: usize,
    pub errors: Vec<String>,
}

/// Runs `backstop scan --undo PATH`.
pub(super) fn run(args: &ScanArgs, config: &Config) -> ExitCode {
    let result = match fs::metadata(&args.path) {
        Ok(m) if m.is_dir() && is_maildir(&args.path) => undo_maildir(&args.path),
        Ok(m) if m.is_file() => undo_mbox(&args.path, config),
        Ok(_) => Err(format!(
            "{} is neither a Maildir nor an mbox file",
            args.path.display()
        )),
        Err(e) => Err(format!("{}: {e}", args.path.display())),
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            say!("backstop: {e}");
            return ExitCode::from(Exit::Error);
        }
    };
    let text = match args.format {
        ReportFormat::Text => render(&report),
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
    if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(Exit::Partial)
    }
}

fn render(r: &UndoReport) -> String {
    let mut t = String::new();
    if r.recorded == 0 && r.recovered == 0 {
        let _ = writeln!(t, "Nothing to undo for {}.", r.path);
    } else {
        let _ = write!(
            t,
            "Put back {} of {} messages from {} to {}",
            r.restored, r.recorded, r.from, r.path
        );
        if let Some(at) = &r.applied_at {
            let _ = write!(t, " (moved by the --apply of {at})");
        }
        t.push_str(".\n");
    }
    if r.already_back > 0 {
        let _ = writeln!(t, "{} were already back.", r.already_back);
    }
    if r.missing > 0 {
        let _ = writeln!(
            t,
            "{} are no longer in {} (deleted or moved since): left alone.",
            r.missing, r.from
        );
    }
    if r.recovered > 0 {
        let _ = writeln!(
            t,
            "Finished an interrupted undo: {} messages put back.",
            r.recovered
        );
    }
    for e in &r.errors {
        let _ = writeln!(t, "Error: {e}");
    }
    if !r.errors.is_empty() {
        t.push_str("The record is kept: run the same command again to go on.\n");
    }
    t
}

/// Writes the record of a Maildir `--apply` into `scanned` (replacing the last one), durably,
/// before anything moves. The record of an apply that was interrupted (it has no `done` line)
/// is carried on: this run finishes that apply, and `--undo` undoes both.
pub(super) fn record_maildir(scanned: &Path, target: &Path, moved: &[Moved]) -> Result<(), String> {
    // Absolute: an undo may run from another directory.
    let target = fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    let target = target.as_path();
    let mut all: Vec<&Moved> = Vec::new();
    let earlier = fs::read(scanned.join(MAILDIR_RECORD))
        .ok()
        .and_then(|t| read_maildir_record(&t).ok())
        .filter(|r| !r.done && r.target == target);
    if let Some(earlier) = &earlier {
        let now: HashSet<&Moved> = moved.iter().collect();
        all.extend(earlier.moves.iter().filter(|m| !now.contains(m)));
    }
    all.extend(moved);
    let mut text = format!(
        "{MAILDIR_MAGIC}\ntime {}\ntarget {}\n",
        earlier
            .as_ref()
            .map_or_else(|| rfc3339(SystemTime::now()), |r| r.time.clone()),
        hex(target.as_os_str().as_bytes())
    );
    for m in all {
        let _ = writeln!(
            text,
            "move {} {} {}",
            hex(m.folder.as_os_str().as_bytes()),
            m.sub,
            hex(m.name.as_bytes())
        );
    }
    let path = scanned.join(MAILDIR_RECORD);
    let staged = scanned.join(format!("{MAILDIR_RECORD}.tmp"));
    replace_durably(&staged, &path, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Marks the record of a Maildir `--apply` finished (every message it names was dealt with).
pub(super) fn finish_maildir_record(scanned: &Path) -> Result<(), String> {
    let path = scanned.join(MAILDIR_RECORD);
    OpenOptions::new()
        .append(true)
        .custom_flags(NOFOLLOW)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(b"done\n")?;
            f.sync_all()
        })
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A Maildir record, read back.
struct MaildirRecord {
    time: String,
    target: PathBuf,
    moves: Vec<Moved>,
    /// The apply finished.
    done: bool,
}

fn read_maildir_record(text: &[u8]) -> Result<MaildirRecord, String> {
    let text = std::str::from_utf8(text).map_err(|_| "not text".to_string())?;
    let mut lines = text.lines();
    if lines.next() != Some(MAILDIR_MAGIC) {
        return Err("it does not start with its magic line".into());
    }
    let bad = |line: &str| format!("cannot understand the line {line:?}");
    let (mut time, mut target, mut moves, mut done) = (String::new(), None, Vec::new(), false);
    for line in lines {
        match line.split(' ').collect::<Vec<_>>().as_slice() {
            ["time", t] => time = (*t).to_string(),
            ["done"] => done = true,
            ["target", p] => {
                target = Some(PathBuf::from(OsString::from_vec(
                    unhex(p).ok_or_else(|| bad(line))?,
                )));
            }
            ["move", folder, sub, name] => moves.push(Moved {
                folder: PathBuf::from(OsString::from_vec(unhex(folder).ok_or_else(|| bad(line))?)),
                sub: match *sub {
                    "cur" => "cur",
                    "new" => "new",
                    _ => return Err(bad(line)),
                },
                name: OsString::from_vec(unhex(name).ok_or_else(|| bad(line))?),
            }),
            _ => return Err(bad(line)),
        }
    }
    let target = target.ok_or("it names no backscatter folder")?;
    Ok(MaildirRecord {
        time,
        target,
        moves,
        done,
    })
}

/// The unique part of a Maildir file name: before the `:` that starts its flags.
fn unique_part(name: &[u8]) -> &[u8] {
    name.split(|&b| b == b':').next().unwrap_or(name)
}

/// The message files of `dir/cur` and `dir/new`, by unique part: (sub, whole name).
fn index(dir: Option<&OpenDir>) -> HashMap<Vec<u8>, (&'static str, OsString)> {
    let mut found = HashMap::new();
    let Some(dir) = dir else { return found };
    for sub in ["new", "cur"] {
        let Ok(entries) = fs::read_dir(dir.path().join(sub)) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name();
            if !name.as_bytes().starts_with(b".") {
                found.insert(unique_part(name.as_bytes()).to_vec(), (sub, name));
            }
        }
    }
    found
}

fn undo_maildir(path: &Path) -> Result<UndoReport, String> {
    let record = path.join(MAILDIR_RECORD);
    let mut report = UndoReport {
        path: path.display().to_string(),
        ..UndoReport::default()
    };
    let mut text = Vec::new();
    match OpenOptions::new()
        .read(true)
        .custom_flags(NOFOLLOW)
        .open(&record)
    {
        Ok(mut f) => f
            .read_to_end(&mut text)
            .map_err(|e| format!("cannot read {}: {e}", record.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(format!("cannot read {}: {e}", record.display())),
    };
    let MaildirRecord {
        time,
        target,
        moves,
        ..
    } = read_maildir_record(&text).map_err(|e| format!("{}: {e}", record.display()))?;
    report.from = target.display().to_string();
    report.applied_at = Some(time);
    report.recorded = moves.len();
    let backscatter = OpenDir::configured(&target, false).ok().map(|(d, _)| d);
    let in_backscatter = index(backscatter.as_ref());
    let (scanned, _) =
        OpenDir::configured(path, false).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut sources: BTreeMap<&'static str, OpenDir> = BTreeMap::new();
    let mut dests: BTreeMap<(PathBuf, &'static str), OpenDir> = BTreeMap::new();
    let mut back_home: HashMap<PathBuf, HashSet<Vec<u8>>> = HashMap::new();
    for m in &moves {
        let unique = unique_part(m.name.as_bytes());
        let folder = path.join(&m.folder);
        let Some((sub, name)) = in_backscatter.get(unique) else {
            let home = back_home.entry(m.folder.clone()).or_insert_with(|| {
                let dir = OpenDir::configured(&folder, false).ok().map(|(d, _)| d);
                index(dir.as_ref()).into_keys().collect()
            });
            if home.contains(unique) {
                report.already_back += 1;
            } else {
                report.missing += 1;
            }
            continue;
        };
        let key = (m.folder.clone(), *sub);
        if !sources.contains_key(sub)
            && let Some(b) = backscatter.as_ref()
            && let Ok((d, _)) = b.sub(sub, false)
        {
            sources.insert(sub, d);
        }
        if !dests.contains_key(&key)
            && let Ok(d) = open_source(&scanned, &folder, sub)
        {
            dests.insert(key.clone(), d);
        }
        let opened = match (sources.get(sub), dests.get(&key)) {
            (Some(s), Some(d)) => Ok((s, d)),
            (None, _) => Err(io::Error::other(format!(
                "cannot open {}",
                target.join(sub).display()
            ))),
            (_, None) => Err(io::Error::other(format!(
                "cannot open {}",
                folder.join(sub).display()
            ))),
        };
        let what = || {
            format!(
                "{} back to {}",
                target.join(sub).join(name).display(),
                folder.join(sub).display()
            )
        };
        match opened.and_then(|(from, to)| move_no_replace(from, to, name)) {
            Ok(MoveResult::Done) => report.restored += 1,
            Ok(MoveResult::AlreadyThere) => report.already_back += 1,
            Ok(MoveResult::Vanished) => report.missing += 1,
            Ok(MoveResult::Conflict) => report.errors.push(format!(
                "cannot move {}: a different file of that name is there",
                what()
            )),
            Err(e) => report.errors.push(format!("cannot move {}: {e}", what())),
        }
    }
    for dir in dests.values().chain(sources.values()) {
        if let Err(e) = dir.sync() {
            report
                .errors
                .push(format!("cannot fsync {}: {e}", dir.path().display()));
        }
    }
    if report.errors.is_empty() {
        remove_record(&record)?;
    }
    Ok(report)
}

fn undo_mbox(path: &Path, config: &Config) -> Result<UndoReport, String> {
    let inbox = resolve_link(path).map_err(|e| e.to_string())?;
    let record = undo_path(&inbox);
    let mut report = UndoReport {
        path: inbox.display().to_string(),
        ..UndoReport::default()
    };
    if journal_path(&inbox).exists() {
        return Err(format!(
            "an interrupted --apply left {}: run scan --apply {} first to finish it",
            journal_path(&inbox).display(),
            inbox.display()
        ));
    }
    let read = |p: &Path| -> Result<Option<JournalState>, String> {
        let mut text = Vec::new();
        match OpenOptions::new().read(true).custom_flags(NOFOLLOW).open(p) {
            Ok(mut f) => f
                .read_to_end(&mut text)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
        };
        JournalState::parse(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    // An undo that was interrupted is finished first (its journal is beside the backscatter
    // mbox, which the record or the configuration names).
    let folder = match read(&record)? {
        Some(state) => state.folder,
        None => Some(resolve_link(&config.mbox_folder).map_err(|e| e.to_string())?),
    };
    if let Some(folder) = &folder
        && let Some(state) = read(&journal_path(folder))?
        && state.undo
        && state.folder.as_deref() == Some(inbox.as_path())
    {
        report.from = folder.display().to_string();
        report.recovered = recover(folder, config)?.0;
    }
    let Some(state) = read(&record)? else {
        return Ok(report);
    };
    let folder = state
        .folder
        .clone()
        .ok_or_else(|| format!("{}: it names no backscatter mbox", record.display()))?;
    report.from = folder.display().to_string();
    report.recorded = state.moves.len();
    let undo = JournalState {
        folder: Some(inbox.clone()),
        moves: state.moves,
        moves_end: true,
        undo: true,
        ..JournalState::default()
    };
    let mut journal = Journal::create(&journal_path(&folder))?;
    let mut lines = format!("undo\nfolder {}\n", hex(inbox.as_os_str().as_bytes()));
    for k in &undo.moves {
        let _ = writeln!(lines, "move {} {:016x}", k.len, k.hash);
    }
    let _ = write!(lines, "moves-end {}", undo.moves.len());
    journal.record(&lines)?;
    // The journal holds the record now: a run that dies from here on is finished as an undo.
    remove_record(&record)?;
    let lock = Locked::acquire(&folder, &config.mbox_locks)
        .map_err(|e| format!("cannot lock {}: {e}", folder.display()))?;
    let data = read_locked(&lock).map_err(|e| format!("cannot read {}: {e}", folder.display()))?;
    report.restored = complete(&folder, &lock, &data, &undo, config, &mut journal)?;
    drop(lock);
    journal.remove()?;
    report.missing = report.recorded.saturating_sub(report.restored);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_record_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let moved = vec![
            Moved {
                folder: PathBuf::new(),
                sub: "cur",
                name: "1.M1.h:2,S".into(),
            },
            Moved {
                folder: ".Sub dir".into(),
                sub: "new",
                name: "2.M2.h".into(),
            },
        ];
        record_maildir(t.path(), Path::new("/m/.Backscatter"), &moved).unwrap();
        let text = fs::read(t.path().join(MAILDIR_RECORD)).unwrap();
        let r = read_maildir_record(&text).unwrap();
        assert_eq!(r.target, Path::new("/m/.Backscatter"));
        assert_eq!(r.moves, moved);
        assert!(!r.done);
        // An interrupted apply's record is carried on by the next one; a finished one is not.
        let later = vec![Moved {
            folder: PathBuf::new(),
            sub: "new",
            name: "3.M3.h".into(),
        }];
        record_maildir(t.path(), Path::new("/m/.Backscatter"), &later[..]).unwrap();
        let r = read_maildir_record(&fs::read(t.path().join(MAILDIR_RECORD)).unwrap()).unwrap();
        assert_eq!(r.moves.len(), 3);
        finish_maildir_record(t.path()).unwrap();
        record_maildir(t.path(), Path::new("/m/.Backscatter"), &later[..]).unwrap();
        let r = read_maildir_record(&fs::read(t.path().join(MAILDIR_RECORD)).unwrap()).unwrap();
        assert_eq!(r.moves, later);
        assert!(read_maildir_record(b"junk\n").is_err());
        assert!(
            read_maildir_record(format!("{MAILDIR_MAGIC}\nmove 00 tmp 00\n").as_bytes()).is_err()
        );
        assert_eq!(unique_part(b"1.M1.h:2,S"), b"1.M1.h");
    }
}
