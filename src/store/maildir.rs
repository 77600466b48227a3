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

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Payload, Stored, for_each_chunk, host_name, sync_dir, sync_parent};

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

const DIR_MODE: u32 = 0o700;
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
    let levels = match folder {
        Some(name) => folder_levels(name, layout)?,
        None => None,
    };
    ensure_maildir(root)?;
    let dir = match levels {
        None => root.to_path_buf(),
        Some(levels) => create_folder(root, &levels, layout)?,
    };
    let stored = write_message(&dir, payload)?;
    remove_stale_tmp(&dir.join("tmp"), SystemTime::now());
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

/// Creates `path` with mode 0700; `Ok(true)` if this call created it, `Ok(false)` if it existed.
fn make_dir(path: &Path) -> io::Result<bool> {
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes sure `dir`, `dir/cur`, `dir/new` and `dir/tmp` exist, fsyncing the parent of every new
/// entry so that a message delivered into them cannot vanish with its directory after a crash.
/// Returns whether anything was created.
fn ensure_maildir(dir: &Path) -> io::Result<bool> {
    let mut created = false;
    if make_dir(dir)? {
        sync_parent(dir)?;
        created = true;
    }
    let mut sub_created = false;
    for sub in ["cur", "new", "tmp"] {
        if make_dir(&dir.join(sub))? {
            sub_created = true;
        }
    }
    if sub_created {
        sync_dir(dir)?;
        created = true;
    }
    Ok(created)
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
/// for Maildir++ the `maildirfolder` marker and the subscription), and returns its directory.
/// `scan --apply` moves messages into it.
///
/// # Errors
///
/// As [`deliver`]'s, before any message is written.
pub(crate) fn ensure_folder(root: &Path, folder: &str, layout: Layout) -> io::Result<PathBuf> {
    let levels = folder_levels(folder, layout)?;
    ensure_maildir(root)?;
    match levels {
        None => Ok(root.to_path_buf()),
        Some(levels) => create_folder(root, &levels, layout),
    }
}

/// Creates the folder's directories when missing and returns the folder's Maildir.
fn create_folder(root: &Path, levels: &[&str], layout: Layout) -> io::Result<PathBuf> {
    match layout {
        Layout::MaildirPlusPlus => {
            let dir = root.join(format!(".{}", levels.join(".")));
            let created = ensure_maildir(&dir)?;
            let marker = dir.join("maildirfolder");
            // Subscribe first, then write the marker: a delivery killed in between, or one
            // that could not subscribe (the lock held, or left by a killed process), leaves
            // the marker missing, so the next one subscribes (a no-op when listed) instead of
            // never. A folder with its marker is never subscribed again (the user may have
            // unsubscribed it on purpose).
            if (created || !marker.exists())
                // Best effort by contract: an unsubscribed folder is still delivered to.
                && subscribe(root, levels).is_ok()
            {
                // The marker only matters to quota tools: failing to create it must not fail
                // delivery.
                let _ = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(FILE_MODE)
                    .open(&marker);
            }
            Ok(dir)
        }
        Layout::Fs => {
            let mut dir = root.to_path_buf();
            let (last, parents) = levels
                .split_last()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty folder name"))?;
            for level in parents {
                dir.push(level);
                if make_dir(&dir)? {
                    sync_parent(&dir)?;
                }
            }
            dir.push(last);
            ensure_maildir(&dir)?;
            Ok(dir)
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
struct TmpFile {
    path: PathBuf,
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Opens `tmp/NAME` with O_CREAT|O_EXCL (mode 0600), trying a new name when one is taken.
fn create_tmp(tmp_dir: &Path) -> io::Result<(String, TmpFile, File)> {
    for _ in 0..NAME_ATTEMPTS {
        let name = unique_name();
        let path = tmp_dir.join(&name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
        {
            Ok(file) => return Ok((name, TmpFile { path }, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free unique name in {}", tmp_dir.display()),
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
fn links_unsupported(e: &io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(e),
        Some(rustix::io::Errno::PERM | rustix::io::Errno::OPNOTSUPP)
    )
}

/// Links the tmp file to `new/BASE,S=size`, picking a new BASE when the name is taken (never
/// overwriting). On filesystems without hard links it falls back to rename(2) after checking that
/// the name is free (names are unique per pid and counter, so the check cannot race in practice).
fn link_into_new(tmp: &Path, new_dir: &Path, first_base: String, size: u64) -> io::Result<PathBuf> {
    let mut base = first_base;
    for _ in 0..NAME_ATTEMPTS {
        let dest = new_dir.join(format!("{base},S={size}"));
        match fs::hard_link(tmp, &dest) {
            Ok(()) => return Ok(dest),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) if links_unsupported(&e) => match fs::symlink_metadata(&dest) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::rename(tmp, &dest)?;
                    return Ok(dest);
                }
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
        base = unique_name();
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free unique name in {}", new_dir.display()),
    ))
}

/// The durable write of hosts.md section 7 into the Maildir `dir` (which must exist).
fn write_message(dir: &Path, payload: Payload<'_>) -> io::Result<Stored> {
    let new_dir = dir.join("new");
    let (name, tmp, file) = create_tmp(&dir.join("tmp"))?;
    // From here on, `tmp` unlinks the tmp file when it goes out of scope, error or not.
    let size = write_and_sync(file, payload)?;
    let dest = link_into_new(&tmp.path, &new_dir, name, size)?;
    // Unlink tmp/NAME. A failure here is ignored on purpose (see the module comment).
    drop(tmp);
    // Make the new directory entry durable. If this fails the message is in new/ but might not
    // survive a crash: report the error so the caller exits 75 and the MTA retries. A duplicate is
    // better than a loss.
    sync_dir(&new_dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "message written to {} but fsync of {} failed (it may be delivered twice): {e}",
                dest.display(),
                new_dir.display()
            ),
        )
    })?;
    Ok(Stored {
        path: dest,
        bytes: size,
    })
}

/// Removes regular files from `tmp_dir` whose ctime and mtime are both older than 36 hours
/// before `now`. Best effort: every error is ignored.
fn remove_stale_tmp(tmp_dir: &Path, now: SystemTime) {
    let Some(cutoff) = now
        .checked_sub(TMP_MAX_AGE)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
    else {
        return;
    };
    let cutoff = i64::try_from(cutoff.as_secs()).unwrap_or(i64::MAX);
    let Ok(entries) = fs::read_dir(tmp_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_file() && meta.ctime() < cutoff && meta.mtime() < cutoff {
            let _ = fs::remove_file(entry.path());
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

/// Dovecot's `subscriptions.lock`: the new content is written into it, then it is renamed over
/// `subscriptions`. Dropping it before the rename removes it.
struct SubscriptionsLock {
    path: PathBuf,
    file: File,
    armed: bool,
}

impl SubscriptionsLock {
    fn acquire(path: PathBuf, wait: Duration) -> io::Result<Self> {
        let start = Instant::now();
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(Self {
                        path,
                        file,
                        armed: true,
                    });
                }
                // Held by Dovecot (or another delivery): wait a little. Only a lock unchanged
                // for SUBSCRIPTIONS_LOCK_STALE is broken, as Dovecot breaks it.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let stale = fs::symlink_metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .is_some_and(|age| age >= SUBSCRIPTIONS_LOCK_STALE);
                    if stale {
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    if start.elapsed() >= wait {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("{} is held by someone else", path.display()),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for SubscriptionsLock {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Adds the folder to `root/subscriptions` unless it is already there.
fn subscribe(root: &Path, levels: &[&str]) -> io::Result<()> {
    let mut v2 = String::new();
    for (i, level) in levels.iter().enumerate() {
        if i > 0 {
            v2.push('\t');
        }
        tab_escape(level, &mut v2);
    }
    let v1 = levels.join(".");
    let path = root.join("subscriptions");
    let mut lock =
        SubscriptionsLock::acquire(root.join("subscriptions.lock"), SUBSCRIPTIONS_LOCK_WAIT)?;
    let current = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let Some(updated) = with_subscription(&current, &v2, &v1) else {
        return Ok(());
    };
    lock.file.write_all(&updated)?;
    lock.file.sync_all()?;
    fs::rename(&lock.path, &path)?;
    // The lock name now belongs to whoever takes the lock next: do not remove it.
    lock.armed = false;
    sync_dir(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FailingTail, names, payload};
    use std::collections::BTreeSet;
    use std::io::Cursor;
    use std::os::unix::fs::PermissionsExt;

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
        // Works as root too: new/ is a regular file, so link() fails with ENOTDIR after the
        // message has been written to tmp/ and fsynced.
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
        ensure_maildir(root).unwrap();
        fs::write(root.join("tmp").join("X"), b"second").unwrap();
        fs::write(root.join("new").join("X,S=6"), b"first!").unwrap();
        let dest = link_into_new(
            &root.join("tmp").join("X"),
            &root.join("new"),
            "X".into(),
            6,
        )
        .unwrap();
        assert_ne!(dest, root.join("new").join("X,S=6"));
        assert_eq!(fs::read(root.join("new").join("X,S=6")).unwrap(), b"first!");
        assert_eq!(fs::read(&dest).unwrap(), b"second");
    }

    #[test]
    fn stale_tmp_files_are_removed() {
        let t = tempfile::tempdir().unwrap();
        let tmp = t.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        fs::write(tmp.join("old"), b"x").unwrap();
        fs::create_dir(tmp.join("adir")).unwrap();
        // Fresh files stay, even with an old mtime (ctime cannot be set back).
        let f = File::options().write(true).open(tmp.join("old")).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(100 * 3600))
            .unwrap();
        drop(f);
        remove_stale_tmp(&tmp, SystemTime::now());
        assert_eq!(names(&tmp), ["adir", "old"]);
        // 37 hours later it is a leftover.
        remove_stale_tmp(&tmp, SystemTime::now() + Duration::from_secs(37 * 3600));
        assert_eq!(names(&tmp), ["adir"]);
    }
}
