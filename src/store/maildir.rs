//! Maildir delivery: write `tmp/NAME`, fsync, link to `new/NAME,S=size`, fsync `new/` (hosts.md section 7).
//!
//! Durability contract (the program must never lose mail):
//! - `Ok` means the message is in `new/` and both its data and its directory entry were fsynced.
//! - `Err` before the link means nothing was stored: the tmp file has been unlinked and `new/` is
//!   untouched. The caller exits 75 and the MTA retries.
//! - `Err` after the link (only possible when the fsync of `new/` fails) means the message IS in
//!   `new/` but may not survive a crash. We still return `Err` so that the caller exits 75 and the
//!   MTA keeps its copy and retries: a duplicate is better than a loss. The file is left in `new/`
//!   on purpose (removing it could lose the only readable copy if the retry never succeeds).
//! - A failure to unlink the tmp file after a successful link is not an error: the message is safe
//!   in `new/`, and the orphan in `tmp/` is ignored by readers and removed after 36 hours.
//!
//! Symbolic links: the Maildir's own path may be one (see the `store` module comment), but
//! nothing below it is followed: `cur/`, `new/`, `tmp/`, a folder's directories, the tmp file,
//! `subscriptions` and `maildirfolder` are all reached through `OpenDir` with `O_NOFOLLOW`.
//! A symbolic link where a directory should be fails the delivery; the sweep of stale `tmp/`
//! files only ever removes regular files in the Maildir's own `tmp/`.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, linkat, renameat};
use rustix::io::Errno;

use super::{OpenDir, Payload, Stored, for_each_chunk, host_name};

/// How folder names map to directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Dovecot's default and Courier's: folder `Junk.Backscatter` (or `Junk/Backscatter`) is
    /// `root/.Junk.Backscatter/` with an empty `maildirfolder` file.
    #[default]
    #[serde(rename = "maildir++", alias = "maildirplusplus")]
    MaildirPlusPlus,
    /// Dovecot `LAYOUT=fs`: folder `Junk/Backscatter` is `root/Junk/Backscatter/` (no dot, no
    /// `maildirfolder`). Only `/` separates levels; a `.` is part of the name.
    Fs,
}

const FILE_MODE: u32 = 0o600;
/// How many fresh names to try when a name is taken (it never is in practice: pid + counter).
const NAME_ATTEMPTS: u32 = 100;
/// Files in `tmp/` whose status changed longer ago than this are leftovers of crashed deliveries.
const TMP_MAX_AGE: Duration = Duration::from_secs(36 * 3600);
/// How long to wait for Dovecot's `subscriptions.lock` before giving up on subscribing.
const SUBSCRIPTIONS_LOCK_WAIT: Duration = Duration::from_secs(2);
/// A `subscriptions.lock` unchanged for this long is stale (left by a killed process) and is
/// replaced: Dovecot's own rule for that file (`SUBSCRIPTION_FILE_CHANGE_TIMEOUT`).
const SUBSCRIPTIONS_LOCK_STALE: Duration = Duration::from_secs(30);

/// Deliver into the Maildir at `root`, into `folder` (None = INBOX). Maildir++: folder "Backscatter" is
/// root/.Backscatter (with cur/new/tmp and an empty `maildirfolder` file, created when missing; "Junk/Backscatter"
/// or "Junk.Backscatter" becomes root/.Junk.Backscatter); Fs layout: root/Junk/Backscatter with no dot and no maildirfolder.
/// When it creates a Maildir++ folder it appends the folder name to root/subscriptions (Dovecot's format: first line "V\t2",
/// an empty line, then one name per line; create it if missing, never duplicate a name; a failure to write
/// subscriptions must not fail the delivery).
/// root itself (cur/new/tmp) is created if missing (mode 0700).
///
/// Details:
/// - `folder` "INBOX" (any case) is the root itself.
/// - Only the last path component of `root` is created: a missing parent is an error (NotFound),
///   so that an unmounted home directory defers mail instead of growing a stray Maildir.
/// - Names containing "..", starting with "/", containing NUL or having an empty level are
///   rejected with `InvalidInput`; so are, in the Fs layout, levels starting with "." and the
///   levels "cur", "new" and "tmp" (they would land inside a mailbox's own directories).
/// - Hierarchical names are written to `subscriptions` the way Dovecot 2.x writes them: levels
///   separated by a TAB, each level tab-escaped. The file is replaced atomically under Dovecot's
///   `subscriptions.lock` (create exclusively, write, fsync, rename).
/// - After a successful delivery, files in the folder's `tmp/` whose ctime is older than 36 hours are
///   removed (best effort). ctime is used because it cannot be set back with utime(), unlike mtime.
/// - No symbolic link below `root` is followed (see the module comment): one where a directory
///   should be is an error.
///
/// # Errors
///
/// Any error means "exit 75". `InvalidInput` for a rejected folder name; otherwise the I/O error
/// met. Nothing is left in `tmp/` or `new/`, except after a failed fsync of `new/` (see the
/// module comment: the message is then in `new/` and may be delivered twice).
pub fn deliver(
    root: &Path,
    folder: Option<&str>,
    layout: Layout,
    payload: Payload<'_>,
) -> io::Result<Stored> {
    let maildir = ensure_folder(root, folder.unwrap_or("INBOX"), layout)?;
    let stored = write_message(&maildir, payload)?;
    remove_stale_tmp(&maildir.tmp, SystemTime::now());
    Ok(stored)
}

/// Splits and checks a configured folder name. `Ok(None)` is the INBOX.
pub(crate) fn folder_levels(name: &str, layout: Layout) -> io::Result<Option<Vec<&str>>> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok(None);
    }
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid folder name {name:?}: {why}"),
        )
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.starts_with('/') {
        return Err(invalid("starts with /"));
    }
    if name.contains(|c: char| c.is_ascii_control()) {
        return Err(invalid("contains a control character"));
    }
    if name.contains("..") {
        return Err(invalid("contains .."));
    }
    let levels: Vec<&str> = match layout {
        Layout::MaildirPlusPlus => name.split(['.', '/']).collect(),
        Layout::Fs => name.split('/').collect(),
    };
    if levels.iter().any(|l| l.is_empty()) {
        return Err(invalid("empty level"));
    }
    if layout == Layout::Fs {
        if levels.iter().any(|l| l.starts_with('.')) {
            return Err(invalid("a level starts with ."));
        }
        if levels.iter().any(|l| matches!(*l, "cur" | "new" | "tmp")) {
            return Err(invalid("a level is cur, new or tmp"));
        }
    }
    Ok(Some(levels))
}

/// One Maildir (the root or a folder) with its `cur/`, `new/` and `tmp/` open.
pub(crate) struct Maildir {
    dir: OpenDir,
    cur: OpenDir,
    new: OpenDir,
    tmp: OpenDir,
}

impl Maildir {
    /// Its directory.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Its `cur/` or `new/` (`scan` moves messages into them).
    pub(crate) fn sub(&self, sub: &str) -> Option<&OpenDir> {
        match sub {
            "cur" => Some(&self.cur),
            "new" => Some(&self.new),
            _ => None,
        }
    }
}

/// Makes sure `dir/cur`, `dir/new` and `dir/tmp` exist (fsyncing `dir` when one was created, so
/// that a message delivered into them cannot vanish with its directory after a crash) and opens
/// them. Returns whether anything was created.
fn ensure_maildir(dir: OpenDir) -> io::Result<(Maildir, bool)> {
    let (cur, made_cur) = dir.sub("cur", true)?;
    let (new, made_new) = dir.sub("new", true)?;
    let (tmp, made_tmp) = dir.sub("tmp", true)?;
    let created = made_cur || made_new || made_tmp;
    if created {
        dir.sync()?;
    }
    Ok((Maildir { dir, cur, new, tmp }, created))
}

/// The directory `name` inside `parent`, created when missing (and then made durable).
fn sub_durably(parent: &OpenDir, name: &str) -> io::Result<(OpenDir, bool)> {
    let (dir, created) = parent.sub(name, true)?;
    if created {
        parent.sync()?;
    }
    Ok((dir, created))
}

/// The directory of `folder` under `root` (`root` itself for the INBOX), as [`deliver`] would
/// use it, without creating anything. `scan` uses it to leave that folder out of a tree scan.
///
/// # Errors
///
/// `InvalidInput` for a name [`deliver`] would reject.
pub(crate) fn folder_dir(root: &Path, folder: &str, layout: Layout) -> io::Result<PathBuf> {
    Ok(match folder_levels(folder, layout)? {
        None => root.to_path_buf(),
        Some(levels) => match layout {
            Layout::MaildirPlusPlus => root.join(format!(".{}", levels.join("."))),
            Layout::Fs => levels.iter().fold(root.to_path_buf(), |dir, l| dir.join(l)),
        },
    })
}

/// Makes `folder` under `root` exist exactly as a delivery into it would (cur/, new/, tmp/, and
/// for Maildir++ the `maildirfolder` marker and the subscription), and returns it open.
/// [`deliver`] writes into it; `scan --apply` moves messages into it.
///
/// # Errors
///
/// As [`deliver`]'s, before any message is written.
pub(crate) fn ensure_folder(root: &Path, folder: &str, layout: Layout) -> io::Result<Maildir> {
    let levels = folder_levels(folder, layout)?;
    let (root, _) = OpenDir::configured(root, true)?;
    let (inbox, _) = ensure_maildir(root)?;
    match levels {
        None => Ok(inbox),
        Some(levels) => create_folder(&inbox.dir, &levels, layout),
    }
}

/// Creates the folder's directories when missing and returns the folder's Maildir.
fn create_folder(root: &OpenDir, levels: &[&str], layout: Layout) -> io::Result<Maildir> {
    match layout {
        Layout::MaildirPlusPlus => {
            let (dir, made_dir) = sub_durably(root, &format!(".{}", levels.join(".")))?;
            let (folder, made_subs) = ensure_maildir(dir)?;
            let created = made_dir || made_subs;
            let marker = "maildirfolder";
            // Subscribe first, then write the marker: a delivery killed in between, or one
            // that could not subscribe (the lock held, or left by a killed process), leaves
            // the marker missing, so the next one subscribes (a no-op when listed) instead of
            // never. A folder with its marker is never subscribed again (the user may have
            // unsubscribed it on purpose).
            if (created || folder.dir.lstat(marker).is_err())
                // Best effort by contract: an unsubscribed folder is still delivered to.
                && subscribe(root, levels).is_ok()
            {
                // The marker only matters to quota tools: failing to create it must not fail
                // delivery.
                let _ = folder.dir.create_file(marker, FILE_MODE);
            }
            Ok(folder)
        }
        Layout::Fs => {
            let (first, rest) = levels
                .split_first()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty folder name"))?;
            let (mut dir, _) = sub_durably(root, first)?;
            for level in rest {
                dir = sub_durably(&dir, level)?.0;
            }
            Ok(ensure_maildir(dir)?.0)
        }
    }
}

/// A fresh `secs.M<usec>P<pid>Q<counter>.host` name.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        host_name()
    )
}

/// The tmp file of one delivery. Dropping it unlinks the file, on every path out of
/// `write_message` (success, error or panic), so `tmp/` never keeps a partial message.
struct TmpFile<'a> {
    dir: &'a OpenDir,
    name: String,
}

impl Drop for TmpFile<'_> {
    fn drop(&mut self) {
        let _ = self.dir.remove(&self.name);
    }
}

/// Opens `tmp/NAME` with O_CREAT|O_EXCL (mode 0600), trying a new name when one is taken.
fn create_tmp(tmp: &OpenDir) -> io::Result<(TmpFile<'_>, File)> {
    for _ in 0..NAME_ATTEMPTS {
        let name = unique_name();
        match tmp.create_file(&name, FILE_MODE) {
            Ok(file) => return Ok((TmpFile { dir: tmp, name }, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free unique name in {}", tmp.path().display()),
    ))
}

/// Writes the whole payload, fsyncs and closes the file; returns the number of bytes written.
fn write_and_sync(mut file: File, payload: Payload<'_>) -> io::Result<u64> {
    let mut size = 0u64;
    for_each_chunk(payload, |chunk| {
        file.write_all(chunk)?;
        size += chunk.len() as u64;
        Ok(())
    })?;
    file.sync_all()?;
    // close(2): std cannot report its error, but every write-back error (NFS included) has
    // already been reported by the fsync above.
    drop(file);
    Ok(size)
}

/// `link(2)` errors that mean "this filesystem has no hard links" rather than a real failure.
fn links_unsupported(e: Errno) -> bool {
    matches!(e, Errno::PERM | Errno::OPNOTSUPP)
}

/// Links `tmp/NAME` to `new/BASE,S=size`, picking a new BASE when the name is taken (never
/// overwriting), and returns the name in `new/`. On filesystems without hard links it falls back
/// to rename(2) after checking that the name is free (names are unique per pid and counter, so the
/// check cannot race in practice).
fn link_into_new(tmp: &OpenDir, name: &str, new: &OpenDir, size: u64) -> io::Result<String> {
    let mut base = name.to_string();
    for _ in 0..NAME_ATTEMPTS {
        let dest = format!("{base},S={size}");
        match linkat(tmp.fd(), name, new.fd(), &dest, AtFlags::empty()) {
            Ok(()) => return Ok(dest),
            Err(Errno::EXIST) => {}
            Err(e) if links_unsupported(e) => match new.lstat(&dest) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    renameat(tmp.fd(), name, new.fd(), &dest)?;
                    return Ok(dest);
                }
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e.into()),
        }
        base = unique_name();
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free unique name in {}", new.path().display()),
    ))
}

/// The durable write of hosts.md section 7 into `maildir`.
fn write_message(maildir: &Maildir, payload: Payload<'_>) -> io::Result<Stored> {
    let (tmp, file) = create_tmp(&maildir.tmp)?;
    // From here on, `tmp` unlinks the tmp file when it goes out of scope, error or not.
    let size = write_and_sync(file, payload)?;
    let dest = link_into_new(&maildir.tmp, &tmp.name, &maildir.new, size)?;
    let dest = maildir.new.path().join(dest);
    // Unlink tmp/NAME. A failure here is ignored on purpose (see the module comment).
    drop(tmp);
    // Make the new directory entry durable. If this fails the message is in new/ but might not
    // survive a crash: report the error so the caller exits 75 and the MTA retries. A duplicate is
    // better than a loss.
    maildir.new.sync().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "message written to {} but fsync of {} failed (it may be delivered twice): {e}",
                dest.display(),
                maildir.new.path().display()
            ),
        )
    })?;
    Ok(Stored {
        path: dest,
        bytes: size,
    })
}

/// Removes the regular files of `tmp` whose ctime and mtime are both older than 36 hours before
/// `now`. Only entries of `tmp` itself are looked at and removed, never through a symbolic link.
/// Best effort: every error is ignored.
fn remove_stale_tmp(tmp: &OpenDir, now: SystemTime) {
    let Some(cutoff) = now
        .checked_sub(TMP_MAX_AGE)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
    else {
        return;
    };
    let cutoff = i64::try_from(cutoff.as_secs()).unwrap_or(i64::MAX);
    let Ok(entries) = rustix::fs::Dir::read_from(tmp.fd()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        if tmp
            .lstat(name)
            .is_ok_and(|m| m.is_file() && m.ctime() < cutoff && m.mtime() < cutoff)
        {
            let _ = tmp.remove(name);
        }
    }
}

/// Dovecot's tab-escaping of one name level in a version 2 subscriptions file.
fn tab_escape(level: &str, out: &mut String) {
    for c in level.chars() {
        match c {
            '\x01' => out.push_str("\x011"),
            '\t' => out.push_str("\x01t"),
            '\r' => out.push_str("\x01r"),
            '\n' => out.push_str("\x01n"),
            c => out.push(c),
        }
    }
}

/// The content of `subscriptions` with the folder added, or `None` if it is already listed.
/// `v2` is the name as a version 2 file stores it (levels separated by TAB), `v1` as an old
/// headerless file stores it (levels separated by the Maildir++ separator `.`).
fn with_subscription(current: &[u8], v2: &str, v1: &str) -> Option<Vec<u8>> {
    if current.is_empty() {
        return Some(format!("V\t2\n\n{v2}\n").into_bytes());
    }
    let is_v2 = current.starts_with(b"V\t");
    let name = if is_v2 { v2 } else { v1 };
    let mut lines = current.split(|&b| b == b'\n');
    if is_v2 {
        lines.next();
    }
    if lines.any(|line| line == name.as_bytes()) {
        return None;
    }
    let mut out = current.to_vec();
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    if is_v2 && out.iter().filter(|&&b| b == b'\n').count() < 2 {
        // The header must be followed by an empty line.
        out.push(b'\n');
    }
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    Some(out)
}

/// Dovecot's `subscriptions.lock` in the Maildir root: the new content is written into it, then
/// it is renamed over `subscriptions`. Dropping it before the rename removes it.
struct SubscriptionsLock<'a> {
    root: &'a OpenDir,
    file: File,
    armed: bool,
}

const SUBSCRIPTIONS: &str = "subscriptions";
const SUBSCRIPTIONS_LOCK: &str = "subscriptions.lock";

impl<'a> SubscriptionsLock<'a> {
    fn acquire(root: &'a OpenDir, wait: Duration) -> io::Result<Self> {
        let start = Instant::now();
        loop {
            match root.create_file(SUBSCRIPTIONS_LOCK, FILE_MODE) {
                Ok(file) => {
                    return Ok(Self {
                        root,
                        file,
                        armed: true,
                    });
                }
                // Held by Dovecot (or another delivery): wait a little. Only a lock unchanged
                // for SUBSCRIPTIONS_LOCK_STALE is broken, as Dovecot breaks it.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let stale = root
                        .lstat(SUBSCRIPTIONS_LOCK)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .is_some_and(|age| age >= SUBSCRIPTIONS_LOCK_STALE);
                    if stale {
                        let _ = root.remove(SUBSCRIPTIONS_LOCK);
                        continue;
                    }
                    if start.elapsed() >= wait {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "{} is held by someone else",
                                root.path().join(SUBSCRIPTIONS_LOCK).display()
                            ),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for SubscriptionsLock<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.root.remove(SUBSCRIPTIONS_LOCK);
        }
    }
}

/// Adds the folder to `root/subscriptions` unless it is already there.
fn subscribe(root: &OpenDir, levels: &[&str]) -> io::Result<()> {
    let mut v2 = String::new();
    for (i, level) in levels.iter().enumerate() {
        if i > 0 {
            v2.push('\t');
        }
        tab_escape(level, &mut v2);
    }
    let v1 = levels.join(".");
    let mut lock = SubscriptionsLock::acquire(root, SUBSCRIPTIONS_LOCK_WAIT)?;
    let mut current = Vec::new();
    match root.open_file(SUBSCRIPTIONS) {
        Ok(mut file) => {
            file.read_to_end(&mut current)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let Some(updated) = with_subscription(&current, &v2, &v1) else {
        return Ok(());
    };
    lock.file.write_all(&updated)?;
    lock.file.sync_all()?;
    renameat(root.fd(), SUBSCRIPTIONS_LOCK, root.fd(), SUBSCRIPTIONS)?;
    // The lock name now belongs to whoever takes the lock next: do not remove it.
    lock.armed = false;
    root.sync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FailingTail, names, payload};
    use std::collections::BTreeSet;
    use std::fs;
    use std::io::Cursor;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// Delivers `body` into the folder Backscatter of the Maildir at `root`.
    fn into_backscatter(root: &Path, body: &[u8]) -> Stored {
        deliver(root, Some("Backscatter"), Layout::default(), payload(body)).unwrap()
    }

    fn assert_is_maildir(dir: &Path) {
        for sub in ["cur", "new", "tmp"] {
            assert!(
                dir.join(sub).is_dir(),
                "{} missing",
                dir.join(sub).display()
            );
        }
    }

    /// Checks the `secs.M<usec>P<pid>Q<n>.host,S=<size>` shape of a name in new/.
    fn assert_name_shape(name: &str, size: usize) {
        let host = host_name();
        let suffix = format!(".{host},S={size}");
        let Some(id) = name.strip_suffix(&suffix) else {
            panic!("{name} does not end with {suffix}");
        };
        let (secs, rest) = id.split_once('.').unwrap();
        assert!(secs.parse::<u64>().unwrap() > 1_600_000_000);
        let rest = rest.strip_prefix('M').unwrap();
        let (usec, rest) = rest.split_once('P').unwrap();
        assert!(usec.parse::<u32>().unwrap() < 1_000_000);
        let (pid, q) = rest.split_once('Q').unwrap();
        assert_eq!(pid.parse::<u32>().unwrap(), std::process::id());
        q.parse::<u64>().unwrap();
    }

    fn delivered_one(dir: &Path, want: &[u8], stored: &Stored) {
        let new = names(&dir.join("new"));
        assert_eq!(new.len(), 1, "{new:?}");
        assert_name_shape(&new[0], want.len());
        assert_eq!(stored.path, dir.join("new").join(&new[0]));
        assert_eq!(stored.bytes, want.len() as u64);
        assert_eq!(fs::read(&stored.path).unwrap(), want);
        let mode = fs::metadata(&stored.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(names(&dir.join("tmp")).is_empty());
        assert!(names(&dir.join("cur")).is_empty());
    }

    #[test]
    fn lf_payload_is_stored_byte_exact() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("Maildir");
        let msg = b"From: a@example.org\nSubject: hi\n\nFrom here\n\xff\xfe raw bytes\n";
        let stored = deliver(&root, None, Layout::default(), payload(msg)).unwrap();
        delivered_one(&root, msg, &stored);
        for d in ["", "cur", "new", "tmp"] {
            let mode = fs::metadata(root.join(d)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{d}");
        }
    }

    #[test]
    fn crlf_payload_is_stored_byte_exact() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("Maildir");
        let msg = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\nno final newline";
        let stored = deliver(&root, None, Layout::Fs, payload(msg)).unwrap();
        delivered_one(&root, msg, &stored);
    }

    #[test]
    fn head_body_and_tail_are_concatenated() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("Maildir");
        let head = b"X-Backstop: clean\n";
        let body = b"From: a@example.org\n\nfirst part ";
        let tail_data: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut tail = Cursor::new(tail_data.clone());
        let stored = deliver(
            &root,
            None,
            Layout::default(),
            Payload {
                head,
                body,
                tail: Some(&mut tail),
            },
        )
        .unwrap();
        let mut want = head.to_vec();
        want.extend_from_slice(body);
        want.extend_from_slice(&tail_data);
        delivered_one(&root, &want, &stored);
    }

    #[test]
    fn empty_message_is_stored() {
        let t = tempfile::tempdir().unwrap();
        let stored = deliver(t.path(), None, Layout::default(), payload(b"")).unwrap();
        delivered_one(t.path(), b"", &stored);
    }

    #[test]
    fn missing_parent_of_root_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("no-such-home").join("Maildir");
        let err = deliver(&root, None, Layout::default(), payload(b"x\n")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(!t.path().join("no-such-home").exists());
    }

    #[test]
    fn inbox_name_is_the_root() {
        let t = tempfile::tempdir().unwrap();
        let stored = deliver(t.path(), Some("inbox"), Layout::default(), payload(b"x\n")).unwrap();
        delivered_one(t.path(), b"x\n", &stored);
        assert!(!t.path().join("subscriptions").exists());
    }

    #[test]
    fn maildirplusplus_folder_is_created_and_subscribed_once() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("Maildir");
        let stored = deliver(
            &root,
            Some("Backscatter"),
            Layout::default(),
            payload(b"1\n"),
        )
        .unwrap();
        let folder = root.join(".Backscatter");
        assert_is_maildir(&root);
        assert_is_maildir(&folder);
        delivered_one(&folder, b"1\n", &stored);
        assert_eq!(fs::read(folder.join("maildirfolder")).unwrap(), b"");
        assert_eq!(
            fs::read_to_string(root.join("subscriptions")).unwrap(),
            "V\t2\n\nBackscatter\n"
        );
        assert!(!root.join("subscriptions.lock").exists());
        assert!(names(&root.join("new")).is_empty());

        // Both spellings of a subfolder are the same directory; each name is listed once.
        for name in [
            "Backscatter",
            "Junk/Backscatter",
            "Junk.Backscatter",
            "Junk/Backscatter",
        ] {
            deliver(&root, Some(name), Layout::default(), payload(b"2\n")).unwrap();
        }
        assert!(!root.join(".Junk").exists());
        assert!(!root.join("Junk").exists());
        let junk = root.join(".Junk.Backscatter");
        assert_is_maildir(&junk);
        assert!(junk.join("maildirfolder").is_file());
        assert_eq!(names(&junk.join("new")).len(), 3);
        assert_eq!(names(&folder.join("new")).len(), 2);
        assert_eq!(
            fs::read_to_string(root.join("subscriptions")).unwrap(),
            "V\t2\n\nBackscatter\nJunk\tBackscatter\n"
        );

        // An existing folder that someone unsubscribed is not subscribed again.
        fs::write(root.join("subscriptions"), "V\t2\n\n").unwrap();
        deliver(
            &root,
            Some("Backscatter"),
            Layout::default(),
            payload(b"3\n"),
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(root.join("subscriptions")).unwrap(),
            "V\t2\n\n"
        );
    }

    #[test]
    fn subscriptions_file_is_extended_not_replaced() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("subscriptions"), "V\t2\n\nArchive\nSent").unwrap();
        into_backscatter(t.path(), b"x\n");
        assert_eq!(
            fs::read_to_string(t.path().join("subscriptions")).unwrap(),
            "V\t2\n\nArchive\nSent\nBackscatter\n"
        );
    }

    #[test]
    fn subscription_edits() {
        assert_eq!(
            with_subscription(b"", "A\tB", "A.B").unwrap(),
            b"V\t2\n\nA\tB\n"
        );
        assert_eq!(with_subscription(b"V\t2\n\nA\tB\n", "A\tB", "A.B"), None);
        assert_eq!(with_subscription(b"V\t2\n\nA\tB", "A\tB", "A.B"), None);
        assert_eq!(
            with_subscription(b"V\t2\n", "X", "X").unwrap(),
            b"V\t2\n\nX\n"
        );
        assert_eq!(
            with_subscription(b"V\t2", "X", "X").unwrap(),
            b"V\t2\n\nX\n"
        );
        // Version 1 (no header): names use the real separator.
        assert_eq!(with_subscription(b"Sent\nA.B\n", "A\tB", "A.B"), None);
        assert_eq!(
            with_subscription(b"Sent\n", "A\tB", "A.B").unwrap(),
            b"Sent\nA.B\n"
        );
        let mut s = String::new();
        tab_escape("a\tb\nc\rd\x01e", &mut s);
        assert_eq!(s, "a\x01tb\x01nc\x01rd\x011e");
    }

    #[test]
    fn busy_subscriptions_lock_does_not_fail_delivery() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("subscriptions.lock"), "dovecot").unwrap();
        let stored = into_backscatter(t.path(), b"x\n");
        delivered_one(&t.path().join(".Backscatter"), b"x\n", &stored);
        assert!(!t.path().join("subscriptions").exists());
        assert_eq!(
            fs::read(t.path().join("subscriptions.lock")).unwrap(),
            b"dovecot"
        );
    }

    #[test]
    fn busy_subscriptions_lock_leaves_the_marker_for_the_next_delivery() {
        let t = tempfile::tempdir().unwrap();
        let lock = t.path().join("subscriptions.lock");
        fs::write(&lock, "dovecot").unwrap();
        into_backscatter(t.path(), b"x\n");
        assert!(!t.path().join(".Backscatter/maildirfolder").exists());
        // Left by a killed process: unchanged for longer than Dovecot waits, it is broken.
        let old = SystemTime::now() - SUBSCRIPTIONS_LOCK_STALE - Duration::from_secs(1);
        File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(old)
            .unwrap();
        into_backscatter(t.path(), b"y\n");
        assert!(!lock.exists());
        assert_eq!(
            fs::read(t.path().join("subscriptions")).unwrap(),
            b"V\t2\n\nBackscatter\n"
        );
        assert!(t.path().join(".Backscatter/maildirfolder").exists());
    }

    #[test]
    fn fs_layout_folder() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("Maildir");
        let stored = deliver(&root, Some("Junk/Backscatter"), Layout::Fs, payload(b"x\n")).unwrap();
        let folder = root.join("Junk").join("Backscatter");
        assert_is_maildir(&root);
        assert_is_maildir(&folder);
        delivered_one(&folder, b"x\n", &stored);
        assert!(!folder.join("maildirfolder").exists());
        assert!(!root.join(".Junk.Backscatter").exists());
        assert!(!root.join(".Junk").exists());
        assert!(!root.join("subscriptions").exists());
        // A dot is part of the name in the Fs layout.
        deliver(&root, Some("Junk.Old"), Layout::Fs, payload(b"y\n")).unwrap();
        assert_is_maildir(&root.join("Junk.Old"));
    }

    #[test]
    fn bad_folder_names_are_rejected() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("Maildir");
        let bad_both = ["", "..", "a/../b", "/etc", "a\0b", "a//b", "a/"];
        for name in bad_both {
            for layout in [Layout::MaildirPlusPlus, Layout::Fs] {
                let err = deliver(&root, Some(name), layout, payload(b"x\n")).unwrap_err();
                assert_eq!(
                    err.kind(),
                    io::ErrorKind::InvalidInput,
                    "{name:?} {layout:?}"
                );
            }
        }
        for name in [".Junk", "Junk.", "a..b", "a./b"] {
            let err =
                deliver(&root, Some(name), Layout::MaildirPlusPlus, payload(b"x\n")).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
        for name in [".hidden", "a/.b", "new", "Junk/tmp", "cur/x", "."] {
            let err = deliver(&root, Some(name), Layout::Fs, payload(b"x\n")).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
        // Nothing was created for a rejected name.
        assert!(!root.exists());
    }

    #[test]
    fn concurrent_deliveries_get_distinct_files() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("Maildir");
        let threads: Vec<_> = (0..200)
            .map(|i| {
                let root = root.clone();
                std::thread::spawn(move || {
                    let body = format!("Subject: {i}\n\n{}\n", "x".repeat(i * 37));
                    let folder = if i % 2 == 0 {
                        None
                    } else {
                        Some("Backscatter")
                    };
                    deliver(&root, folder, Layout::default(), payload(body.as_bytes())).unwrap()
                })
            })
            .collect();
        let stored: Vec<Stored> = threads.into_iter().map(|h| h.join().unwrap()).collect();
        let mut want = BTreeSet::new();
        let mut got = BTreeSet::new();
        for i in 0..200 {
            want.insert(format!("Subject: {i}\n\n{}\n", "x".repeat(i * 37)));
        }
        let mut paths = BTreeSet::new();
        for dir in [root.clone(), root.join(".Backscatter")] {
            for name in names(&dir.join("new")) {
                let content = fs::read_to_string(dir.join("new").join(&name)).unwrap();
                assert_name_shape(&name, content.len());
                got.insert(content);
                paths.insert(dir.join("new").join(name));
            }
            assert!(names(&dir.join("tmp")).is_empty());
        }
        assert_eq!(paths.len(), 200);
        assert_eq!(got, want);
        let reported: BTreeSet<PathBuf> = stored.into_iter().map(|s| s.path).collect();
        assert_eq!(reported, paths);
        assert_eq!(
            fs::read_to_string(root.join("subscriptions")).unwrap(),
            "V\t2\n\nBackscatter\n"
        );
    }

    #[test]
    fn tail_error_leaves_nothing_behind() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("Maildir");
        let mut tail = FailingTail {
            good: 150_000,
            chunk: 1000,
        };
        let err = deliver(
            &root,
            Some("Backscatter"),
            Layout::default(),
            Payload {
                head: b"X: y\n",
                body: b"body\n",
                tail: Some(&mut tail),
            },
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        let folder = root.join(".Backscatter");
        assert!(names(&folder.join("new")).is_empty());
        assert!(names(&folder.join("tmp")).is_empty());
        assert!(names(&folder.join("cur")).is_empty());
    }

    #[test]
    fn link_failure_unlinks_tmp() {
        // Works as root too: new/ is removed once open, so link() fails with ENOENT after the
        // message has been written to tmp/ and fsynced.
        let t = tempfile::tempdir().unwrap();
        let maildir = ensure_folder(t.path(), "INBOX", Layout::default()).unwrap();
        fs::remove_dir(t.path().join("new")).unwrap();
        let err = write_message(&maildir, payload(b"message\n")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(names(&t.path().join("tmp")).is_empty());
    }

    #[test]
    fn new_not_a_directory_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for sub in ["cur", "tmp"] {
            fs::create_dir(root.join(sub)).unwrap();
        }
        fs::write(root.join("new"), b"not a directory").unwrap();
        let err = deliver(root, None, Layout::default(), payload(b"message\n")).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::NOTDIR.raw_os_error())
        );
        assert!(names(&root.join("tmp")).is_empty());
        assert_eq!(fs::read(root.join("new")).unwrap(), b"not a directory");
    }

    #[test]
    fn tmp_not_writable_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for sub in ["cur", "new"] {
            fs::create_dir(root.join(sub)).unwrap();
        }
        fs::write(root.join("tmp"), b"").unwrap();
        assert!(deliver(root, None, Layout::default(), payload(b"m\n")).is_err());
        assert!(names(&root.join("new")).is_empty());
    }

    #[test]
    fn existing_name_in_new_is_never_overwritten() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let maildir = ensure_folder(root, "INBOX", Layout::default()).unwrap();
        fs::write(root.join("tmp").join("X"), b"second").unwrap();
        fs::write(root.join("new").join("X,S=6"), b"first!").unwrap();
        let dest = link_into_new(&maildir.tmp, "X", &maildir.new, 6).unwrap();
        assert_ne!(dest, "X,S=6");
        assert_eq!(fs::read(root.join("new").join("X,S=6")).unwrap(), b"first!");
        assert_eq!(fs::read(root.join("new").join(dest)).unwrap(), b"second");
    }

    #[test]
    fn stale_tmp_files_are_removed() {
        let t = tempfile::tempdir().unwrap();
        let maildir = ensure_folder(&t.path().join("Maildir"), "INBOX", Layout::default()).unwrap();
        let tmp = t.path().join("Maildir/tmp");
        fs::write(tmp.join("old"), b"x").unwrap();
        fs::create_dir(tmp.join("adir")).unwrap();
        // A link in tmp/ is not a leftover, and what it points to is not looked at.
        fs::write(t.path().join("outside"), b"keep").unwrap();
        symlink(t.path().join("outside"), tmp.join("link")).unwrap();
        // Fresh files stay, even with an old mtime (ctime cannot be set back).
        let f = File::options().write(true).open(tmp.join("old")).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(100 * 3600))
            .unwrap();
        drop(f);
        remove_stale_tmp(&maildir.tmp, SystemTime::now());
        assert_eq!(names(&tmp), ["adir", "link", "old"]);
        // 37 hours later it is a leftover.
        remove_stale_tmp(
            &maildir.tmp,
            SystemTime::now() + Duration::from_secs(37 * 3600),
        );
        assert_eq!(names(&tmp), ["adir", "link"]);
        assert_eq!(fs::read(t.path().join("outside")).unwrap(), b"keep");
    }

    /// A directory outside the Maildir holding one old file, as a symbolic link would reach it.
    fn outside_dir(t: &Path) -> PathBuf {
        let outside = t.join("outside");
        for sub in ["", "cur", "new", "tmp"] {
            fs::create_dir_all(outside.join(sub)).unwrap();
        }
        fs::write(outside.join("tmp/precious"), b"keep").unwrap();
        fs::write(outside.join("new/precious"), b"keep").unwrap();
        outside
    }

    /// Every file under `dir`, relative to it, sorted.
    fn tree(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() && !p.is_symlink() {
                    stack.push(p.clone());
                }
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
        out.sort();
        out
    }

    #[test]
    fn symbolic_links_inside_the_maildir_are_never_followed() {
        // tmp/, new/ or cur/ of the root, a Maildir++ folder, a level of an Fs folder: each a
        // link out of the Maildir. The delivery fails (the caller falls back to the inbox, or
        // the MTA retries) and nothing outside is written or removed.
        let cases: [(&str, Option<&str>, Layout); 6] = [
            ("tmp", None, Layout::MaildirPlusPlus),
            ("new", None, Layout::MaildirPlusPlus),
            ("cur", None, Layout::MaildirPlusPlus),
            (".Backscatter", Some("Backscatter"), Layout::MaildirPlusPlus),
            ("Junk", Some("Junk/Backscatter"), Layout::Fs),
            ("Junk", Some("Junk"), Layout::Fs),
        ];
        for (link, folder, layout) in cases {
            let t = tempfile::tempdir().unwrap();
            let outside = outside_dir(t.path());
            let root = t.path().join("Maildir");
            fs::create_dir(&root).unwrap();
            symlink(&outside, root.join(link)).unwrap();
            let before = tree(&outside);
            let err = deliver(&root, folder, layout, payload(b"x\n")).unwrap_err();
            assert!(err.to_string().contains("symbolic link"), "{link}: {err}");
            assert_eq!(tree(&outside), before, "{link}: written outside");
            assert!(fs::symlink_metadata(root.join(link)).unwrap().is_symlink());
        }
    }

    #[test]
    fn the_maildir_itself_may_be_a_link_of_its_owner_only() {
        use rustix::fs::{AtFlags, CWD, Uid, chownat};
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        let link = t.path().join("Maildir");
        fs::create_dir(&real).unwrap();
        symlink(&real, &link).unwrap();
        // A link this user (or root) owns is followed, and the paths name the link.
        let stored = deliver(&link, None, Layout::default(), payload(b"x\n")).unwrap();
        assert!(stored.path.starts_with(&link));
        delivered_one(&real, b"x\n", &stored_in(&real, &link, &stored));
        // Another user's link is not: it could lead anywhere that user chose.
        chownat(
            CWD,
            &link,
            Some(Uid::from_raw(54_321)),
            None,
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .expect("lchown (this test needs root, as CI has)");
        let err = deliver(&link, None, Layout::default(), payload(b"y\n")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert_eq!(names(&real.join("new")).len(), 1);
        // Nor is a link to a link.
        let chain = t.path().join("chain");
        symlink(&link, &chain).unwrap();
        chownat(
            CWD,
            &link,
            Some(Uid::from_raw(0)),
            None,
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let err = deliver(&chain, None, Layout::default(), payload(b"z\n")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert_eq!(names(&real.join("new")).len(), 1);
    }

    /// `stored` with its path moved from under `link` to under `real`.
    fn stored_in(real: &Path, link: &Path, stored: &Stored) -> Stored {
        Stored {
            path: real.join(stored.path.strip_prefix(link).unwrap()),
            bytes: stored.bytes,
        }
    }
}
