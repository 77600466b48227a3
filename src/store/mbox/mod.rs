//! mbox delivery: append one message as mboxrd under fcntl and/or NFS-safe dot locks, truncating back on failure (hosts.md section 8).
//!
//! Durability contract: `Ok` means the whole message was appended and fsynced before the locks were
//! released. `Err` means the file was cut back to its length before this delivery (as Postfix
//! does), fsynced and unlocked; the caller exits 75 and the MTA retries. The rollback also runs
//! when the tail reader panics (it lives in a `Drop`). It cuts only what this delivery wrote: if
//! the file has grown by more than that, another writer appended after us (one that takes none of
//! our locks, or broke them), and cutting would lose its message, so the partial one is left
//! (the retry then stores the message whole: a duplicate is better than a loss).
//!
//! Locks:
//! - `Fcntl` is a POSIX write lock on the whole file (`fcntl(F_SETLK, F_WRLCK)`, `l_len` 0), the
//!   lock Postfix, Dovecot, procmail and maildrop take. It is tried without blocking and retried
//!   with a short jittered backoff rather than waited for with `F_SETLKW`, so that a stuck lock
//!   holder makes us give up after about 10 s (exit 75, retry later) instead of hanging until the
//!   MTA's time limit, which Postfix turns into a bounce. fcntl locks belong to the process: any
//!   close of the same file by another thread of this process releases them.
//! - `Dotlock` is `NAME.lock`, made NFS-safely: a unique file `NAME.lock.<host>.<pid>.<n>` is
//!   link()ed to `NAME.lock`; the lock is ours if link() succeeded or the unique file's link count
//!   is 2. The lock holds `PID:HOST`, as Dovecot writes it. A lock is stale, and is removed, when
//!   it names a process of this host that no longer exists (a delivery killed with SIGKILL), or
//!   when its mtime is more than 5 minutes before, or more than a minute after, the mtime of our
//!   unique file just touched (both times come from the file server's clock, and a holder touching
//!   its lock cannot give it a time ahead of that clock). A held dotlock is touched every minute
//!   by a thread of its own for as long as it is held, so a delivery whose input stalls does not
//!   look stale while its process lives.
//!   If the dotlock cannot be made for lack of permission (EACCES/EPERM/EROFS, e.g. a
//!   `/var/mail` that only group mail may write) and `Fcntl` is also in the list, delivery goes
//!   on under the fcntl lock alone, as Postfix does for files; with `Dotlock` alone it fails.
//! - All locks together must be acquired within about 10 s, else the error kind is `TimedOut`.
//!
//! Symbolic links: an mbox path that is a symbolic link is followed only when root or this user
//! owns the link, one level only (see the `store` module comment); the file itself is opened with
//! `O_NOFOLLOW`. The dotlock is then taken beside the link (where writers naming the link lock)
//! and beside its target (where writers naming the file lock); the fcntl lock is on the file.
//!
//! Format (mboxrd): `From <sender> <asctime UTC>` LF, the message with `>` added to every line
//! matching `^>*From `, a LF if the message does not end with one, and an empty line (LF). The
//! message's own line ends (LF or CRLF) are kept; what this module adds always uses LF, which is
//! what mbox readers split on. If the existing file does not end with an empty line, LFs are
//! added first so that the new `From ` line starts after an empty line.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::{FlockOperation, Timespec, Timestamps, UTIME_NOW, fcntl_lock, futimens};
use rustix::io::Errno;

use crate::util::dates::asctime;

mod dotlock;

use dotlock::DotLock;
pub(crate) use dotlock::{dotlock_holder, dotlock_path};

use super::{
    CHUNK, Payload, Stored, for_each_chunk, host_name, no_follow_error, node_name, process_alive,
    resolve_link, sync_parent,
};

/// A kind of mbox lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lock {
    /// POSIX `fcntl` write lock on the whole file.
    Fcntl,
    /// NFS-safe `NAME.lock` file.
    Dotlock,
}

/// The default lock order, Debian's Postfix and Dovecot order.
pub const DEFAULT_LOCKS: [Lock; 2] = [Lock::Fcntl, Lock::Dotlock];

const FILE_MODE: u32 = 0o600;
/// Budget for acquiring all locks of one delivery.
const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// A dotlock older than this is left over from a crash.
const STALE_LOCK: Duration = Duration::from_secs(300);
/// A dotlock whose mtime is further ahead than this was not made by a holder touching it (its
/// touch and ours read the same clock): it was set by hand, or by a clock since stepped back.
/// The margin lets a small step back pass.
const FUTURE_LOCK: Duration = Duration::from_secs(60);
/// How often a held dotlock's mtime is refreshed.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// How often to reopen when the mbox is replaced under us, or a unique name is taken.
const ATTEMPTS: u32 = 5;
const FROM: &[u8] = b"From ";

/// Append one message to the mbox file `path` (created 0600 if missing), as mboxrd: a first line
/// `From <sender or MAILER-DAEMON> <asctime date in UTC>` (sender: envelope sender, "MAILER-DAEMON" when None or empty),
/// then the message with every line matching ^>*From  given one more '>', ending with a newline and then one empty line.
/// A leading mbox "From " line in the payload is NOT expected (the caller strips it). Locks in the order given
/// (default [Fcntl, Dotlock]); dotlock is NFS-safe: create a unique file `NAME.lock.<host>.<pid>.<n>`, link() it to NAME.lock,
/// accept if link succeeded or the unique file's link count is 2, retry with backoff up to ~10 s total, break stale locks
/// (their process on this host is gone, or their mtime is 5 minutes old or a minute ahead), keep the held lock fresh
/// from a thread; remove the lock afterwards. fcntl = write lock on the whole file (see the module comment
/// for why it is polled with F_SETLK instead of waited for with F_SETLKW).
/// On any failure, truncate the file back to its original length (as Postfix does) unless another writer appended
/// meanwhile, fsync, unlock and return the error. fsync the file before unlocking.
///
/// The sender `<>` also counts as empty; whitespace and control characters in the sender are
/// written as `_` so the `From ` line stays one well-formed line. An empty `locks` takes no lock.
/// `Stored::bytes` is the number of bytes appended. `path` must be a regular file (or missing), or
/// a symbolic link to one that root or this user owns (see the module comment).
///
/// # Errors
///
/// Any error means "exit 75": the file is back at its original length (unless another writer
/// appended after us). `TimedOut` when the locks could not be had within about 10 s,
/// `InvalidInput` when `path` is not a regular file or is a link to a link, `PermissionDenied`
/// when it is a link another user owns, otherwise the I/O error met.
pub fn deliver(
    path: &Path,
    sender: Option<&str>,
    locks: &[Lock],
    payload: Payload<'_>,
) -> io::Result<Stored> {
    deliver_within(path, sender, locks, payload, TIMING)
}

/// How long to try for the locks, and how often to refresh a held dotlock (tests shorten both).
#[derive(Debug, Clone, Copy)]
struct Timing {
    lock_timeout: Duration,
    touch_every: Duration,
}

const TIMING: Timing = Timing {
    lock_timeout: LOCK_TIMEOUT,
    touch_every: TOUCH_EVERY,
};

fn deliver_within(
    path: &Path,
    sender: Option<&str>,
    locks: &[Lock],
    payload: Payload<'_>,
    timing: Timing,
) -> io::Result<Stored> {
    let (mut session, created) = open_locked(path, locks, timing)?;
    let orig_len = session.file.metadata()?.len();
    // From here on, dropping `session` without `committed` truncates back to `orig_len`.
    session.orig_len = Some(orig_len);
    let bytes = append(&mut session, orig_len, sender, payload)?;
    session.file.sync_all()?;
    if created {
        sync_parent(&session.real)?;
    }
    session.committed = true;
    // Unlocks (in reverse order) and closes. Unlock errors are ignored: the message is durable,
    // and reporting them would make the MTA deliver it twice.
    drop(session);
    Ok(Stored {
        path: path.to_path_buf(),
        bytes,
    })
}

/// One delivery's open mbox and held locks. Dropping it rolls back an uncommitted append
/// (truncate + fsync), then releases the locks in reverse order, then closes the file.
struct Session {
    file: File,
    /// The file's path: the configured one, or the target of the link it is.
    real: PathBuf,
    held: Vec<Held>,
    orig_len: Option<u64>,
    /// How many bytes this delivery's writes put in the file.
    appended: u64,
    committed: bool,
}

enum Held {
    Fcntl,
    Dot(DotLock),
}

impl Drop for Session {
    fn drop(&mut self) {
        // Only what this delivery wrote is cut (see the module comment): a file of any other
        // length has been written by someone else too.
        if !self.committed
            && let Some(len) = self.orig_len
            && self
                .file
                .metadata()
                .is_ok_and(|m| m.len() == len.saturating_add(self.appended))
        {
            let _ = self.file.set_len(len);
            let _ = self.file.sync_all();
        }
        while let Some(held) = self.held.pop() {
            match held {
                Held::Fcntl => {
                    let _ = fcntl_lock(&self.file, FlockOperation::Unlock);
                }
                Held::Dot(dot) => drop(dot),
            }
        }
    }
}

/// An mbox held under the same locks a delivery takes, for a caller that rewrites it whole
/// (`scan --apply`: a new file renamed over it) instead of appending. Dropping it releases the
/// locks in reverse order; it never truncates anything.
pub(crate) struct Locked(Session);

impl Locked {
    /// Opens (creating 0600 if needed) and locks `path` within the delivery lock budget (about
    /// 10 s); a file created here has its directory entry fsynced.
    ///
    /// # Errors
    ///
    /// As [`deliver`]'s: `TimedOut` when the locks could not be had, `InvalidInput` when `path`
    /// is not a regular file, otherwise the I/O error met.
    pub(crate) fn acquire(path: &Path, locks: &[Lock]) -> io::Result<Locked> {
        let (session, created) = open_locked(path, locks, TIMING)?;
        if created {
            sync_parent(&session.real)?;
        }
        Ok(Locked(session))
    }

    /// The locked file (opened for reading and appending).
    pub(crate) fn file(&self) -> &File {
        &self.0.file
    }
}

/// Opens (creating 0600 if needed) and locks the mbox; makes sure the locked file is still the
/// one at `path` (a reader may have replaced it meanwhile, and appending to an unlinked file
/// would lose the message). Returns whether this call created the file.
fn open_locked(path: &Path, locks: &[Lock], timing: Timing) -> io::Result<(Session, bool)> {
    let deadline = Instant::now() + timing.lock_timeout;
    let real = resolve_link(path)?;
    // Beside the link (if it is one), then beside the file: always in this order.
    let mut lock_names = vec![real.as_path()];
    if real != path {
        lock_names.insert(0, path);
    }
    for _ in 0..ATTEMPTS {
        let (file, created) = open_mbox(&real)?;
        let mut session = Session {
            file,
            real: real.clone(),
            held: Vec::new(),
            orig_len: None,
            appended: 0,
            committed: false,
        };
        let mut done: Vec<Lock> = Vec::new();
        for &lock in locks {
            if done.contains(&lock) {
                continue;
            }
            done.push(lock);
            match lock {
                Lock::Fcntl => {
                    fcntl_wait(&session.file, path, deadline)?;
                    session.held.push(Held::Fcntl);
                }
                Lock::Dotlock => {
                    for name in &lock_names {
                        match DotLock::acquire(name, deadline, timing.touch_every) {
                            Ok(dot) => session.held.push(Held::Dot(dot)),
                            Err(e) if no_permission(&e) && locks.contains(&Lock::Fcntl) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
        if same_file(&session.file, &real)? {
            return Ok((session, created));
        }
    }
    Err(io::Error::other(format!(
        "{} kept being replaced while locking it",
        path.display()
    )))
}

fn open_mbox(path: &Path) -> io::Result<(File, bool)> {
    for _ in 0..ATTEMPTS {
        match OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)
        {
            Ok(file) => return Ok((file, true)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        match OpenOptions::new()
            .read(true)
            .append(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
        {
            Ok(file) => {
                if !file.metadata()?.is_file() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} is not a regular file", path.display()),
                    ));
                }
                return Ok((file, false));
            }
            // Removed between the two opens: try again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(no_follow_error(e, path)),
        }
    }
    Err(io::Error::other(format!(
        "{} could neither be created nor opened",
        path.display()
    )))
}

/// Whether `path` itself (not a symbolic link's target) still names the inode open as `file`.
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata()?;
    match fs::symlink_metadata(path) {
        Ok(now) => Ok(now.dev() == open.dev() && now.ino() == open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn no_permission(e: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(e),
        Some(Errno::ACCESS | Errno::PERM | Errno::ROFS)
    )
}

fn timed_out(what: &str, path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("timed out waiting for the {what} of {}", path.display()),
    )
}

/// Jittered exponential backoff: 5 ms doubling up to 200 ms, never sleeping past the deadline.
struct Backoff {
    delay: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            delay: Duration::from_millis(5),
        }
    }

    /// Sleeps before the next try; `false` once the deadline has passed.
    fn wait(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let jitter = self.delay.mul_f64(f64::from(nanos % 1000) / 1000.0);
        std::thread::sleep((self.delay / 2 + jitter).min(deadline - now));
        self.delay = (self.delay * 2).min(Duration::from_millis(200));
        true
    }
}

fn fcntl_wait(file: &File, path: &Path, deadline: Instant) -> io::Result<()> {
    let mut backoff = Backoff::new();
    loop {
        match fcntl_lock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(e) if e == Errno::INTR => {}
            // Held by another process (POSIX allows either code).
            Err(e) if e == Errno::AGAIN || e == Errno::ACCESS => {
                if !backoff.wait(deadline) {
                    return Err(timed_out("fcntl lock", path));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Buffered output through one fixed buffer, counting bytes and remembering the last one.
/// It has no `Drop` flush on purpose: nothing may reach the file after a rollback.
struct Out<W: Write> {
    sink: W,
    buf: Vec<u8>,
    written: u64,
    last: Option<u8>,
}

impl<W: Write> Out<W> {
    fn new(sink: W) -> Self {
        Self {
            sink,
            buf: Vec::with_capacity(CHUNK),
            written: 0,
            last: None,
        }
    }

    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(&last) = data.last() else {
            return Ok(());
        };
        if self.buf.len() + data.len() > CHUNK {
            self.flush()?;
        }
        if data.len() >= CHUNK {
            self.sink.write_all(data)?;
        } else {
            self.buf.extend_from_slice(data);
        }
        self.written += data.len() as u64;
        self.last = Some(last);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.sink.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Streaming mboxrd quoting: adds one `>` to every line matching `^>*From `, whatever the chunk
/// boundaries. At a line start it only remembers how many `>` and how much of `From ` it has
/// seen (constant memory, even for a line of a million `>`).
struct Quoter {
    at_line_start: bool,
    gts: u64,
    matched: usize,
}

impl Quoter {
    fn new() -> Self {
        Self {
            at_line_start: true,
            gts: 0,
            matched: 0,
        }
    }

    fn feed<W: Write>(&mut self, mut data: &[u8], out: &mut Out<W>) -> io::Result<()> {
        while let Some((&b, rest)) = data.split_first() {
            if !self.at_line_start {
                match data.iter().position(|&c| c == b'\n') {
                    Some(i) => {
                        let (line, rest) = data.split_at(i + 1);
                        out.put(line)?;
                        data = rest;
                        self.at_line_start = true;
                    }
                    None => return out.put(data),
                }
            } else if self.matched == 0 && b == b'>' {
                self.gts += 1;
                data = rest;
            } else if FROM.get(self.matched) == Some(&b) {
                self.matched += 1;
                data = rest;
                if self.matched == FROM.len() {
                    out.put(b">")?;
                    self.flush_prefix(out)?;
                    self.at_line_start = false;
                }
            } else {
                // Not a From line: write what was held back and copy the rest of the line.
                self.flush_prefix(out)?;
                self.at_line_start = false;
            }
        }
        Ok(())
    }

    fn flush_prefix<W: Write>(&mut self, out: &mut Out<W>) -> io::Result<()> {
        const GTS: [u8; 64] = [b'>'; 64];
        while self.gts > 0 {
            let n = self.gts.min(GTS.len() as u64);
            out.put(GTS.get(..n as usize).unwrap_or(&GTS))?;
            self.gts -= n;
        }
        out.put(FROM.get(..self.matched).unwrap_or(FROM))?;
        self.matched = 0;
        Ok(())
    }

    /// Writes a held-back partial prefix at the end of the message (e.g. a last line `>Fro`).
    fn finish<W: Write>(&mut self, out: &mut Out<W>) -> io::Result<()> {
        if self.at_line_start {
            self.flush_prefix(out)?;
        }
        Ok(())
    }
}

/// Writes to the mbox, counting the bytes that reached it (for the rollback).
struct Counted<'a> {
    file: &'a File,
    count: &'a mut u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        *self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the message (with the separator the existing file needs, the `From ` line, the quoted
/// payload and the final empty line) and returns the number of bytes appended.
fn append(
    session: &mut Session,
    orig_len: u64,
    sender: Option<&str>,
    payload: Payload<'_>,
) -> io::Result<u64> {
    let separator = separator_needed(&session.file, orig_len)?;
    let mut out = Out::new(Counted {
        file: &session.file,
        count: &mut session.appended,
    });
    out.put(separator)?;
    out.put(from_line(sender, SystemTime::now()).as_bytes())?;
    let mut quoter = Quoter::new();
    for_each_chunk(payload, |chunk| quoter.feed(chunk, &mut out))?;
    quoter.finish(&mut out)?;
    let end: &[u8] = if out.last == Some(b'\n') {
        b"\n"
    } else {
        b"\n\n"
    };
    out.put(end)?;
    out.flush()?;
    Ok(out.written)
}

/// What must be written before our `From ` line so that it follows an empty line.
fn separator_needed(file: &File, len: u64) -> io::Result<&'static [u8]> {
    if len == 0 {
        return Ok(b"");
    }
    let n = len.min(3);
    let mut last = [0u8; 3];
    let last = last.get_mut(..n as usize).unwrap_or_default();
    file.read_exact_at(last, len - n)?;
    Ok(if !last.ends_with(b"\n") {
        b"\n\n"
    } else if last.ends_with(b"\n\n") || last.ends_with(b"\n\r\n") {
        b""
    } else {
        b"\n"
    })
}

/// `From <sender> <asctime>` plus LF.
fn from_line(sender: Option<&str>, now: SystemTime) -> String {
    let sender = match sender.map(str::trim) {
        Some(s) if !s.is_empty() && s != "<>" => s,
        _ => "MAILER-DAEMON",
    };
    let sender: String = sender
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    format!("From {sender} {}\n", asctime(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FailingTail, names as dir_names, payload};
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    /// Splits the file into its `From ` line and the rest, checking the `From ` line's shape.
    fn split_from_line<'a>(data: &'a [u8], sender: &str) -> &'a [u8] {
        let nl = data.iter().position(|&b| b == b'\n').unwrap();
        let line = std::str::from_utf8(&data[..nl]).unwrap();
        let date = line
            .strip_prefix(&format!("From {sender} "))
            .unwrap_or_else(|| panic!("bad From line {line:?}"));
        assert_eq!(date.len(), 24, "{date:?}");
        let year: u32 = date[20..].parse().unwrap();
        assert!(year >= 2024, "{date:?}");
        assert_eq!(&date[13..14], ":");
        &data[nl + 1..]
    }

    fn quote_all(pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Out::new(Vec::new());
        let mut q = Quoter::new();
        for p in pieces {
            q.feed(p, &mut out).unwrap();
        }
        q.finish(&mut out).unwrap();
        out.flush().unwrap();
        assert_eq!(out.written, out.sink.len() as u64);
        out.sink
    }

    const CORPUS: &[u8] = b"From: a@example.org\nSubject: s\n\nFrom here\n>From there\n\
>>From everywhere\nFromage\n>Fro\n From x\n>\n>>\nFrom\r\nFrom \r\n>From \nFrom";
    const QUOTED: &[u8] = b"From: a@example.org\nSubject: s\n\n>From here\n>>From there\n\
>>>From everywhere\nFromage\n>Fro\n From x\n>\n>>\nFrom\r\n>From \r\n>>From \nFrom";

    #[test]
    fn mboxrd_quoting_at_every_split() {
        assert_eq!(quote_all(&[CORPUS]), QUOTED);
        for i in 0..=CORPUS.len() {
            for j in i..=CORPUS.len() {
                let got = quote_all(&[&CORPUS[..i], &CORPUS[i..j], &CORPUS[j..]]);
                assert_eq!(got, QUOTED, "split at {i},{j}");
            }
        }
        let bytes: Vec<&[u8]> = CORPUS.chunks(1).collect();
        assert_eq!(quote_all(&bytes), QUOTED);
        // A long run of '>' is counted, not buffered, and written back in full.
        let many = format!("{}From x\n{}y\n", ">".repeat(1000), ">".repeat(130));
        let want = format!(">{}From x\n{}y\n", ">".repeat(1000), ">".repeat(130));
        assert_eq!(quote_all(&[many.as_bytes()]), want.as_bytes());
        assert_eq!(quote_all(&[b">>>"]), b">>>");
        assert_eq!(quote_all(&[b""]), b"");
    }

    #[test]
    fn message_is_quoted_and_terminated() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        let stored = deliver(&path, None, &DEFAULT_LOCKS, payload(CORPUS)).unwrap();
        let data = fs::read(&path).unwrap();
        assert_eq!(stored.bytes, data.len() as u64);
        assert_eq!(stored.path, path);
        let rest = split_from_line(&data, "MAILER-DAEMON");
        let mut want = QUOTED.to_vec();
        want.extend_from_slice(b"\n\n");
        assert_eq!(rest, want);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // No lock or unique file is left behind.
        assert_eq!(dir_names(t.path()), ["mbox"]);
    }

    #[test]
    fn crlf_message_keeps_its_line_ends() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        let msg = b"Subject: a\r\n\r\nFrom me\r\n>From you\r\nend\r\n";
        deliver(&path, Some("a@example.org"), &DEFAULT_LOCKS, payload(msg)).unwrap();
        let data = fs::read(&path).unwrap();
        assert_eq!(
            split_from_line(&data, "a@example.org"),
            b"Subject: a\r\n\r\n>From me\r\n>>From you\r\nend\r\n\n"
        );
    }

    #[test]
    fn quoting_spans_head_body_and_tail() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        let mut tail: &[u8] = b"om split\n>Fr";
        let mut tail2 = OneByte(b"om x\nFrom y".as_slice());
        let mut chain = (&mut tail).chain(&mut tail2);
        deliver(
            &path,
            Some("s@example.org"),
            &[Lock::Dotlock],
            Payload {
                head: b"X-Trace: 1\n",
                body: b"From body\n\nFr",
                tail: Some(&mut chain),
            },
        )
        .unwrap();
        let data = fs::read(&path).unwrap();
        assert_eq!(
            split_from_line(&data, "s@example.org"),
            b"X-Trace: 1\n>From body\n\n>From split\n>>From x\n>From y\n\n"
        );
    }

    /// Reads one byte per call.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn appends_after_an_empty_line() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        for (before, sep) in [
            (&b"From a x\n\nold"[..], &b"\n\n"[..]),
            (b"From a x\n\nold\n", b"\n"),
            (b"From a x\n\nold\n\n", b""),
            (b"From a x\r\n\r\nold\r\n\r\n", b""),
            (b"From a x\n\nold\r\n\n", b""),
        ] {
            fs::write(&path, before).unwrap();
            let stored = deliver(&path, Some("b"), &DEFAULT_LOCKS, payload(b"new")).unwrap();
            let data = fs::read(&path).unwrap();
            assert_eq!(stored.bytes, (data.len() - before.len()) as u64);
            let (old, new) = data.split_at(before.len());
            assert_eq!(old, before);
            let new = new.strip_prefix(sep).unwrap();
            assert_eq!(split_from_line(new, "b"), b"new\n\n");
        }
    }

    #[test]
    fn second_message_follows_the_first() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        deliver(&path, Some("a"), &DEFAULT_LOCKS, payload(b"one\n")).unwrap();
        deliver(&path, Some("b"), &DEFAULT_LOCKS, payload(b"two\n")).unwrap();
        let data = fs::read(&path).unwrap();
        let rest = split_from_line(&data, "a");
        let rest = rest.strip_prefix(b"one\n\n".as_slice()).unwrap();
        assert_eq!(split_from_line(rest, "b"), b"two\n\n");
    }

    #[test]
    fn sender_in_from_line() {
        let at = UNIX_EPOCH + Duration::from_secs(1_234_567_890);
        assert_eq!(
            from_line(None, at),
            "From MAILER-DAEMON Fri Feb 13 23:31:30 2009\n"
        );
        assert_eq!(
            from_line(Some(""), at),
            "From MAILER-DAEMON Fri Feb 13 23:31:30 2009\n"
        );
        assert_eq!(
            from_line(Some("<>"), at),
            "From MAILER-DAEMON Fri Feb 13 23:31:30 2009\n"
        );
        assert_eq!(
            from_line(Some("a b\n\t@x"), at),
            "From a_b__@x Fri Feb 13 23:31:30 2009\n"
        );
        assert_eq!(
            from_line(Some("bounce@example.org"), at),
            "From bounce@example.org Fri Feb 13 23:31:30 2009\n"
        );
    }

    #[test]
    fn tail_error_rolls_back() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        let before = b"From a Thu Jan  1 00:00:00 1970\n\nold message";
        fs::write(&path, before).unwrap();
        let lock_sets: [&[Lock]; 3] = [&DEFAULT_LOCKS, &[Lock::Dotlock, Lock::Fcntl], &[]];
        for locks in lock_sets {
            let mut tail = FailingTail {
                good: 300_000,
                chunk: 5000,
            };
            let err = deliver(
                &path,
                None,
                locks,
                Payload {
                    head: b"X: y\n",
                    body: b"body\n",
                    tail: Some(&mut tail),
                },
            )
            .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
            assert_eq!(fs::read(&path).unwrap(), before);
            assert_eq!(dir_names(t.path()), ["mbox"]);
        }
        // And the file still takes the next message.
        deliver(&path, None, &DEFAULT_LOCKS, payload(b"ok\n")).unwrap();
        let data = fs::read(&path).unwrap();
        let new = data[before.len()..]
            .strip_prefix(b"\n\n".as_slice())
            .unwrap();
        assert_eq!(split_from_line(new, "MAILER-DAEMON"), b"ok\n\n");
    }

    #[test]
    fn panicking_tail_rolls_back_and_unlocks() {
        struct Panics;
        impl Read for Panics {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                panic!("reader bug");
            }
        }
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        fs::write(&path, b"").unwrap();
        let p = path.clone();
        let result = std::thread::spawn(move || {
            deliver(
                &p,
                None,
                &DEFAULT_LOCKS,
                Payload {
                    head: b"",
                    body: &[b'x'; 100_000],
                    tail: Some(&mut Panics),
                },
            )
        })
        .join();
        assert!(result.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"");
        assert_eq!(dir_names(t.path()), ["mbox"]);
    }

    #[test]
    fn not_a_regular_file() {
        let t = tempfile::tempdir().unwrap();
        assert!(deliver(t.path(), None, &DEFAULT_LOCKS, payload(b"x\n")).is_err());
        let err = deliver(Path::new("/dev/null"), None, &[], payload(b"x\n")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn busy_dotlock_times_out_and_is_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        fs::write(&path, b"").unwrap();
        fs::write(t.path().join("mbox.lock"), b"someone\n").unwrap();
        let start = Instant::now();
        let err = deliver_within(
            &path,
            None,
            &DEFAULT_LOCKS,
            payload(b"x\n"),
            quick(Duration::from_millis(300)),
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(fs::read(&path).unwrap(), b"");
        assert_eq!(fs::read(t.path().join("mbox.lock")).unwrap(), b"someone\n");
        assert_eq!(dir_names(t.path()), ["mbox", "mbox.lock"]);
    }

    #[test]
    fn stale_dotlock_is_broken() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        let lock = t.path().join("mbox.lock");
        fs::write(&lock, b"crashed\n").unwrap();
        let f = File::options().write(true).open(&lock).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(600))
            .unwrap();
        drop(f);
        deliver(&path, None, &[Lock::Dotlock], payload(b"x\n")).unwrap();
        assert_eq!(dir_names(t.path()), ["mbox"]);
    }

    /// Lock timings for tests: `wait` for the locks, and a refresh every 20 ms.
    fn quick(wait: Duration) -> Timing {
        Timing {
            lock_timeout: wait,
            touch_every: Duration::from_millis(20),
        }
    }

    /// A pid no process of this host has now: that of a child that has exited.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    /// Makes `lock` hold `content`, with the mtime `at`.
    fn held_lock(lock: &Path, content: &str, at: SystemTime) {
        fs::write(lock, content).unwrap();
        File::options()
            .write(true)
            .open(lock)
            .unwrap()
            .set_modified(at)
            .unwrap();
    }

    #[test]
    fn dotlock_names_its_process_and_host() {
        let t = tempfile::tempdir().unwrap();
        let mbox = t.path().join("mbox");
        let dot =
            DotLock::acquire(&mbox, Instant::now() + Duration::from_secs(1), TOUCH_EVERY).unwrap();
        let content = fs::read(dotlock_path(&mbox)).unwrap();
        assert_eq!(
            dotlock_holder(&content),
            Some((std::process::id(), Some(node_name().as_bytes())))
        );
        drop(dot);
        assert_eq!(dotlock_holder(b"123\n"), Some((123, None)));
        assert_eq!(dotlock_holder(b"7:a:b"), Some((7, Some(b"a:b".as_slice()))));
        assert_eq!(dotlock_holder(b""), None);
        assert_eq!(dotlock_holder(b"x:host"), None);
    }

    #[test]
    fn dotlock_of_a_dead_process_of_this_host_is_broken_at_once() {
        // What a delivery killed with SIGKILL leaves: a fresh NAME.lock naming its pid.
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        let lock = dotlock_path(&path);
        for locks in [&DEFAULT_LOCKS[..], &[Lock::Dotlock]] {
            let content = format!("{}:{}\n", dead_pid(), node_name());
            held_lock(&lock, &content, SystemTime::now());
            deliver_within(
                &path,
                None,
                locks,
                payload(b"x\n"),
                quick(Duration::from_secs(5)),
            )
            .unwrap();
            assert_eq!(dir_names(t.path()), ["mbox"]);
        }
    }

    #[test]
    fn dotlock_of_a_live_or_unknown_holder_is_kept() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        let lock = dotlock_path(&path);
        let kept = [
            // This very process: alive.
            format!("{}:{}\n", std::process::id(), node_name()),
            // Another host's process: its pid says nothing here.
            format!("{}:elsewhere.example\n", dead_pid()),
            // No host (an older version, liblockfile): it may be another host's.
            format!("{}\n", dead_pid()),
            String::new(),
            // A minute's margin for a clock stepped back a little.
            "someone\n".into(),
        ];
        for (i, content) in kept.iter().enumerate() {
            let at = if i == kept.len() - 1 {
                SystemTime::now() + Duration::from_secs(20)
            } else {
                SystemTime::now()
            };
            held_lock(&lock, content, at);
            let err = deliver_within(
                &path,
                None,
                &[Lock::Dotlock],
                payload(b"x\n"),
                quick(Duration::from_millis(200)),
            )
            .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{content:?}");
            assert_eq!(fs::read_to_string(&lock).unwrap(), *content);
        }
    }

    #[test]
    fn dotlock_from_the_future_is_broken() {
        // Never made by a holder touching it: its mtime is ahead of the file server's clock.
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        held_lock(
            &dotlock_path(&path),
            "someone\n",
            SystemTime::now() + Duration::from_secs(3600),
        );
        deliver_within(
            &path,
            None,
            &[Lock::Dotlock],
            payload(b"x\n"),
            quick(Duration::from_secs(5)),
        )
        .unwrap();
        assert_eq!(dir_names(t.path()), ["mbox"]);
    }

    /// A tail that hands out one chunk, then stalls: it makes the held dotlock look 10 minutes
    /// old (as a 10-minute stall would without a refresh), waits until the lock is fresh again
    /// (30 s at most), and meanwhile lets a rival delivery try for the lock.
    struct Stall {
        mbox: PathBuf,
        step: u8,
        rival: Option<io::Result<Stored>>,
    }

    impl Read for Stall {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.step += 1;
            if self.step == 1 {
                buf[..5].copy_from_slice(b"part\n");
                return Ok(5);
            }
            if self.step == 2 {
                let lock = dotlock_path(&self.mbox);
                let old = SystemTime::now() - Duration::from_secs(600);
                File::options().write(true).open(&lock)?.set_modified(old)?;
                let until = Instant::now() + Duration::from_secs(30);
                while fs::metadata(&lock)?.modified()? < old + STALE_LOCK && Instant::now() < until
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                self.rival = Some(deliver_within(
                    &self.mbox,
                    Some("rival"),
                    &[Lock::Dotlock],
                    payload(b"rival\n"),
                    quick(Duration::from_millis(300)),
                ));
            }
            Ok(0)
        }
    }

    #[test]
    fn a_stalled_writer_keeps_its_dotlock() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        let mut stall = Stall {
            mbox: path.clone(),
            step: 0,
            rival: None,
        };
        deliver_within(
            &path,
            Some("first"),
            &[Lock::Dotlock],
            Payload {
                head: b"",
                body: b"Subject: first\n\n",
                tail: Some(&mut stall),
            },
            quick(Duration::from_secs(5)),
        )
        .unwrap();
        let rival = stall.rival.expect("the stall happened");
        assert_eq!(
            rival.map_err(|e| e.kind()).unwrap_err(),
            io::ErrorKind::TimedOut
        );
        let data = fs::read(&path).unwrap();
        assert_eq!(
            split_from_line(&data, "first"),
            b"Subject: first\n\npart\n\n"
        );
        assert_eq!(dir_names(t.path()), ["mbox"]);
    }

    /// A tail that hands out a chunk (written at once), then appends another writer's message
    /// to the mbox behind our back, then fails.
    struct Interloper {
        mbox: PathBuf,
        step: u8,
    }

    const THEIRS: &[u8] = b"From other Thu Jan  1 00:00:00 1970\n\ntheirs\n\n";

    impl Read for Interloper {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.step += 1;
            if self.step == 1 {
                buf.fill(b'p');
                return Ok(buf.len());
            }
            OpenOptions::new()
                .append(true)
                .open(&self.mbox)?
                .write_all(THEIRS)?;
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "stdin broke",
            ))
        }
    }

    #[test]
    fn rollback_never_cuts_what_another_writer_appended() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        let before = b"From a Thu Jan  1 00:00:00 1970\n\nold\n\n";
        fs::write(&path, before).unwrap();
        let mut tail = Interloper {
            mbox: path.clone(),
            step: 0,
        };
        // No lock, as if ours had been broken: the other writer's message must survive.
        let err = deliver(
            &path,
            None,
            &[],
            Payload {
                head: b"",
                body: b"X: y\n\n",
                tail: Some(&mut tail),
            },
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        let data = fs::read(&path).unwrap();
        assert!(data.starts_with(before));
        assert!(data.ends_with(THEIRS), "the other writer's message was cut");
    }

    #[test]
    fn mbox_link_of_another_user_is_refused() {
        use rustix::fs::{AtFlags, CWD, Uid, chownat};
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        let link = t.path().join("mbox");
        fs::write(&real, b"").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        chownat(
            CWD,
            &link,
            Some(Uid::from_raw(54_321)),
            None,
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .expect("lchown (this test needs root, as CI has)");
        let err = deliver(&link, None, &DEFAULT_LOCKS, payload(b"x\n")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert_eq!(fs::read(&real).unwrap(), b"");
        assert_eq!(dir_names(t.path()), ["mbox", "real"]);
    }

    #[test]
    fn mbox_link_of_its_owner_is_followed_and_locked_on_both_sides() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("dir")).unwrap();
        let real = t.path().join("dir/real");
        let link = t.path().join("mbox");
        fs::write(&real, b"").unwrap();
        // A relative target is relative to the link's directory.
        std::os::unix::fs::symlink("dir/real", &link).unwrap();
        let stored = deliver(&link, Some("a"), &DEFAULT_LOCKS, payload(b"one\n")).unwrap();
        assert_eq!(stored.path, link);
        assert_eq!(split_from_line(&fs::read(&real).unwrap(), "a"), b"one\n\n");
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        // Writers naming the file lock beside it, writers naming the link beside the link:
        // the delivery respects both.
        for held in [dotlock_path(&real), dotlock_path(&link)] {
            fs::write(&held, b"someone\n").unwrap();
            let err = deliver_within(
                &link,
                None,
                &[Lock::Dotlock],
                payload(b"x\n"),
                quick(Duration::from_millis(200)),
            )
            .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{}", held.display());
            fs::remove_file(&held).unwrap();
        }
        assert_eq!(dir_names(t.path()), ["dir", "mbox"]);
        assert_eq!(dir_names(&t.path().join("dir")), ["real"]);
        // A link to a link is not followed.
        let chain = t.path().join("chain");
        std::os::unix::fs::symlink(&link, &chain).unwrap();
        let err = deliver(&chain, None, &DEFAULT_LOCKS, payload(b"x\n")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert_eq!(split_from_line(&fs::read(&real).unwrap(), "a"), b"one\n\n");
        // A link to a file not made yet: the file is made.
        let later = t.path().join("later");
        std::os::unix::fs::symlink("dir/new", &later).unwrap();
        deliver(&later, Some("b"), &DEFAULT_LOCKS, payload(b"two\n")).unwrap();
        let made = fs::read(t.path().join("dir/new")).unwrap();
        assert_eq!(split_from_line(&made, "b"), b"two\n\n");
    }

    #[test]
    fn dotlock_is_not_removed_if_someone_else_took_it() {
        let t = tempfile::tempdir().unwrap();
        let mbox = t.path().join("mbox");
        let dot =
            DotLock::acquire(&mbox, Instant::now() + Duration::from_secs(1), TOUCH_EVERY).unwrap();
        assert_eq!(dir_names(t.path()), ["mbox.lock"]);
        // Someone judged it stale and replaced it with their own.
        fs::remove_file(t.path().join("mbox.lock")).unwrap();
        fs::write(t.path().join("mbox.lock"), b"theirs").unwrap();
        drop(dot);
        assert_eq!(fs::read(t.path().join("mbox.lock")).unwrap(), b"theirs");
    }

    #[test]
    fn replaced_file_is_detected() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        fs::write(&path, b"a").unwrap();
        let f = File::open(&path).unwrap();
        assert!(same_file(&f, &path).unwrap());
        fs::write(t.path().join("new"), b"b").unwrap();
        fs::rename(t.path().join("new"), &path).unwrap();
        assert!(!same_file(&f, &path).unwrap());
        fs::remove_file(&path).unwrap();
        assert!(!same_file(&f, &path).unwrap());
    }

    /// A tail of `lines` lines that sleeps 1 ms every 100 lines, so that a message is written in
    /// several write() calls spread over time.
    struct SlowLines {
        tag: String,
        next: usize,
        lines: usize,
    }

    impl Read for SlowLines {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.next == self.lines {
                return Ok(0);
            }
            if self.next.is_multiple_of(100) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let line = format!("{} line {:05} {}\n", self.tag, self.next, "-".repeat(60));
            assert!(line.len() <= buf.len());
            buf[..line.len()].copy_from_slice(line.as_bytes());
            self.next += 1;
            Ok(line.len())
        }
    }

    const LINES: usize = 1500;

    fn append_many(path: &Path, who: &str, count: usize, locks: &[Lock]) {
        for i in 0..count {
            let tag = format!("{who}-{i}");
            let head = format!("Subject: {tag}\n\n");
            let mut tail = SlowLines {
                tag,
                next: 0,
                lines: LINES,
            };
            deliver(
                path,
                Some(who),
                locks,
                Payload {
                    head: head.as_bytes(),
                    body: b"",
                    tail: Some(&mut tail),
                },
            )
            .unwrap();
        }
    }

    /// Checks that the mbox holds exactly `count` whole messages from each of `who`.
    fn check_whole(path: &Path, who: &[&str], count: usize) {
        let data = fs::read_to_string(path).unwrap();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let messages: Vec<&str> = data
            .strip_prefix("From ")
            .unwrap()
            .split("\n\nFrom ")
            .collect();
        for (n, m) in messages.iter().enumerate() {
            let (from, body) = m.split_once('\n').unwrap();
            let sender = from.split(' ').next().unwrap();
            let body = body.strip_prefix("Subject: ").unwrap();
            let (tag, body) = body.split_once("\n\n").unwrap();
            assert!(tag.starts_with(&format!("{sender}-")), "message {n}: {tag}");
            let mut want: String = (0..LINES)
                .map(|j| format!("{tag} line {j:05} {}\n", "-".repeat(60)))
                .collect();
            // The separator "\n\nFrom " took the last line's LF and the empty line.
            if n + 1 == messages.len() {
                want.push('\n');
            } else {
                want.pop();
            }
            assert!(body == want, "message {n} ({tag}) is not whole");
            *seen.entry(tag.to_string()).or_default() += 1;
        }
        let want: BTreeMap<String, usize> = who
            .iter()
            .flat_map(|w| (0..count).map(move |i| (format!("{w}-{i}"), 1)))
            .collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn concurrent_threads_with_dotlock_keep_messages_whole() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        let who = ["t0", "t1", "t2"];
        let handles: Vec<_> = who
            .iter()
            .map(|w| {
                let path = path.clone();
                let w = w.to_string();
                // fcntl locks do not exclude threads of one process: the dotlock does the work.
                std::thread::spawn(move || append_many(&path, &w, 6, &[Lock::Dotlock]))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        check_whole(&path, &who, 6);
        assert_eq!(dir_names(t.path()), ["mbox"]);
    }

    const CHILD_ENV: &str = "BACKSTOP_TEST_MBOX_CHILD";

    /// Run by `concurrent_processes_with_fcntl_keep_messages_whole` in a second process.
    #[test]
    #[ignore = "helper: runs in the child process of concurrent_processes_with_fcntl_keep_messages_whole"]
    fn child_appender() {
        if let Some(path) = std::env::var_os(CHILD_ENV) {
            append_many(Path::new(&path), "child", 8, &[Lock::Fcntl]);
        }
    }

    #[test]
    fn concurrent_processes_with_fcntl_keep_messages_whole() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mbox");
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, m)| m);
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &format!("{module}::child_appender"),
                "--ignored",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        append_many(&path, "parent", 8, &[Lock::Fcntl]);
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        check_whole(&path, &["parent", "child"], 8);
    }
}
