//! Scanning a Maildir (or a tree of them) and moving its backscatter without replacing anything.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use rustix::io::Errno;

use crate::cli::ScanArgs;
use crate::config::{Config, Inbox};
use crate::store::maildir::{Layout, Maildir};
use crate::store::{self, OpenDir};

use super::judge::{Input, classify, maildir_name_time, mtime_secs, progress_bar};
use super::report::Report;
use super::{Ctx, Failure, VANISHED, crash_point, undo};

/// One message file of a Maildir folder.
struct MailFile {
    folder: usize,
    sub: &'static str,
    name: OsString,
}

pub(super) fn scan_maildir(args: &ScanArgs, ctx: &Ctx<'_>) -> Result<Report, Failure> {
    let path = args.path.as_path();
    if !is_maildir(path) {
        return Err(Failure::Usage(format!(
            "{} is a directory but not a Maildir (it has no cur/ or new/)",
            path.display()
        )));
    }
    let layout = ctx.config.layout;
    let root = maildir_root(path, ctx.config);
    let target = store::maildir::folder_dir(&root, &ctx.config.folder, layout)
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
                if ctx.select.moves(&j) && !in_target.get(file.folder).copied().unwrap_or(true) {
                    let place = folders
                        .get(file.folder)
                        .map(|d| d.join(file.sub).join(&file.name))
                        .unwrap_or_default();
                    report.list(&j, place.display().to_string());
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
    let target = store::maildir::ensure_folder(&root, &ctx.config.folder, layout).map_err(|e| {
        Failure::Io(format!(
            "cannot make the backscatter folder {}: {e}",
            target.display()
        ))
    })?;
    let (scanned, _) = OpenDir::configured(path, false)
        .map_err(|e| Failure::Io(format!("{}: {e}", path.display())))?;
    // What is about to move is recorded first, for `--undo`.
    let planned: Vec<undo::Moved> = moving
        .iter()
        .filter_map(|f| {
            Some(undo::Moved {
                folder: folders
                    .get(f.folder)?
                    .strip_prefix(path)
                    .ok()?
                    .to_path_buf(),
                sub: f.sub,
                name: f.name.clone(),
            })
        })
        .collect();
    undo::record_maildir(path, target.path(), &planned).map_err(Failure::Io)?;
    move_files(&moving, &folders, &scanned, &target, ctx, &mut report);
    if !report.interrupted {
        undo::finish_maildir_record(path).map_err(Failure::Io)?;
    }
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
        delivered: path
            .file_name()
            .and_then(|n| maildir_name_time(n.as_bytes())),
        modified: mtime_secs(&meta),
    }))
}

pub(super) fn is_maildir(dir: &Path) -> bool {
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
pub(super) fn maildir_root(path: &Path, config: &Config) -> PathBuf {
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
pub(super) enum MoveResult {
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
pub(super) fn open_source(scanned: &OpenDir, folder: &Path, sub: &str) -> io::Result<OpenDir> {
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
pub(super) fn move_no_replace(dir: &OpenDir, to: &OpenDir, name: &OsStr) -> io::Result<MoveResult> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
