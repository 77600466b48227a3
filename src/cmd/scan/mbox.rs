//! Scanning an mbox, and `--apply` on it: the kept and the moved messages rewritten under the
//! lock, crash-safely (see the `scan` module comment), and the recovery that finishes an
//! interrupted one from its journal.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::ScanArgs;
use crate::config::Config;
use crate::message;
use crate::store::mbox::Locked;
use crate::store::{self, host_name, node_name, process_alive, resolve_link, sync_parent};

use super::journal::{
    Journal, JournalState, Key, NOFOLLOW, beside, close_record, hex, journal_path, key, owner_line,
    undo_path,
};
use super::judge::{Input, Judged, Outcome, classify, mtime_secs};
use super::report::Report;
use super::{Ctx, Failure, crash_point};

pub(super) fn scan_mbox(args: &ScanArgs, ctx: &Ctx<'_>) -> Result<Report, Failure> {
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
        report.recovered = recover(path, ctx.config).map_err(Failure::Io)?.0;
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
    let mut to_move = 0;
    if !is_folder {
        for (n, (j, r)) in judged.iter().zip(&chunks).enumerate() {
            if let Some(j) = j.as_ref().filter(|j| ctx.select.moves(j)) {
                to_move += 1;
                if !args.apply {
                    report.list(j, place(n, r));
                }
            }
        }
    }
    if !args.apply || to_move == 0 || is_folder {
        report.tally(judged.iter().flatten());
        report.to_move = to_move;
        report.apply = args.apply;
        if args.apply {
            close_record(&undo_path(path)).map_err(Failure::Io)?;
        }
        return Ok(report);
    }
    if ctx.stop.load(Ordering::Relaxed) {
        return Err(Failure::Interrupted);
    }
    report.apply = true;
    let known = Known::new(&data, &chunks, &judged);
    let done = apply_mbox(path, &folder, ctx, &known, arrived_fallback).map_err(Failure::Io)?;
    report.tally(&done.judged);
    for (j, where_) in &done.listed {
        report.list(j, where_.clone());
    }
    // The locked pass judged again what the first could not: its word is the last.
    report.unreadable = done.errors.len();
    report.errors = done.errors;
    report.to_move = done.moved;
    report.moved = done.moved;
    report.interrupted = ctx.stop.load(Ordering::Relaxed);
    if !report.interrupted {
        close_record(&undo_path(path)).map_err(Failure::Io)?;
        crash_point("closed");
    }
    Ok(report)
}

/// Where a message of an mbox is, for the list: its number (from 1) and first byte.
fn place(n: usize, r: &Range<usize>) -> String {
    format!("message {} at byte {}", n + 1, r.start)
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
        Ok(Some(Input {
            bytes: for_judging(chunk),
            delivered: line.and_then(from_line_time),
            modified: arrived_fallback,
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
pub(crate) fn split_mbox(data: &[u8]) -> Result<Vec<Range<usize>>, String> {
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
pub(crate) fn for_judging(chunk: &[u8]) -> Cow<'_, [u8]> {
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
pub(super) fn from_line_time(line: &[u8]) -> Option<i64> {
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

/// The judgements of the unlocked pass, found again by content in the locked read.
struct Known<'d> {
    by_key: HashMap<Key, Vec<(&'d [u8], Judged)>>,
}

impl<'d> Known<'d> {
    pub(super) fn new(
        data: &'d [u8],
        chunks: &[Range<usize>],
        judged: &[Option<Judged>],
    ) -> Known<'d> {
        let mut by_key: HashMap<Key, Vec<(&[u8], Judged)>> = HashMap::new();
        for (r, j) in chunks.iter().zip(judged) {
            let Some(j) = j else { continue };
            let chunk = without_separator(data.get(r.clone()).unwrap_or_default());
            by_key
                .entry(key(chunk))
                .or_default()
                .push((chunk, j.clone()));
        }
        Known { by_key }
    }

    pub(super) fn get(&self, chunk: &[u8]) -> Option<Judged> {
        let chunk = without_separator(chunk);
        self.by_key
            .get(&key(chunk))?
            .iter()
            .find(|(c, _)| *c == chunk)
            .map(|(_, j)| j.clone())
    }
}

/// What the locked part of `--apply` did.
struct Applied {
    /// Every message of the mbox as it was under the lock (but those that could not be judged).
    judged: Vec<Judged>,
    /// Why some messages could not be judged (they stay where they are).
    errors: Vec<String>,
    moved: usize,
    /// The messages moved, and where each was.
    listed: Vec<(Judged, String)>,
}

fn staged_path(file: &Path) -> PathBuf {
    beside(file, ".backstop-scan.tmp")
}

/// The whole of a locked file's content.
pub(super) fn read_locked(lock: &Locked) -> io::Result<Vec<u8>> {
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
    let mut moves: Vec<Key> = Vec::new();
    let mut listed = Vec::new();
    for (n, (r, j)) in chunks.iter().zip(&judged).enumerate() {
        if let Some(j) = j.as_ref().filter(|j| ctx.select.moves(j)) {
            moves.push(key(data.get(r.clone()).unwrap_or_default()));
            listed.push((j.clone(), place(n, r)));
        }
    }
    let judged: Vec<Judged> = judged.into_iter().flatten().collect();
    if moves.is_empty() {
        drop(inbox);
        journal.remove()?;
        return Ok(Applied {
            judged,
            errors,
            moved: 0,
            listed,
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
    journal.keep(&undo_path(path))?;
    crash_point("kept");
    Ok(Applied {
        judged,
        errors,
        moved,
        listed,
    })
}

/// With the inbox `path` locked (its content `data`) and the journal naming the messages to
/// move, brings the backscatter mbox and the inbox to the end state, recording every step.
/// Returns how many messages this call moved.
pub(super) fn complete(
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

/// Finishes the move an interrupted `--apply` (or `--undo`, whose journal is beside the
/// backscatter mbox) on `path` recorded; returns how many messages it moved now, and whether
/// it kept the journal for `--undo` (that of an apply that got as far as naming its moves;
/// an undo's is removed with the record it undid).
pub(super) fn recover(path: &Path, config: &Config) -> Result<(usize, bool), String> {
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
        return journal.remove().map(|()| (0, false));
    }
    // From here on this process may hold the locks: a later run must know whose they are.
    journal.record(&owner_line())?;
    let inbox = Locked::acquire(path, &config.mbox_locks)
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    let data = read_locked(&inbox).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let moved = complete(path, &inbox, &data, &state, config, &mut journal)?;
    drop(inbox);
    if state.undo {
        journal.remove()?;
        if let Some(inbox) = &state.folder {
            remove_record(&undo_path(inbox))?;
        }
        return Ok((moved, false));
    }
    journal.keep(&undo_path(path))?;
    Ok((moved, true))
}

/// Removes an undo record (gone already is fine), durably.
pub(super) fn remove_record(path: &Path) -> Result<(), String> {
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path)
            .map_err(|e| format!("cannot fsync the directory of {}: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

/// Removes `NAME.lock` when it holds `pid` (a dotlock of the dead run: the journal says it ran
/// on this host), and that run's unique `NAME.lock.HOST.PID.N` files. (A lock naming its host
/// would be broken by the next locker anyway; one of an older version names no host.)
fn remove_dead_dotlocks(mbox: &Path, pid: u32) {
    let lock = store::mbox::dotlock_path(mbox);
    let ours = |host: Option<&[u8]>| host.is_none_or(|h| h == node_name().as_bytes());
    if fs::read(&lock).is_ok_and(|c| {
        store::mbox::dotlock_holder(&c).is_some_and(|(p, host)| p == pid && ours(host))
    }) {
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
}
