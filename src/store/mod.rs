//! Storage layer: durable final delivery of one message into a Maildir (`maildir`) or an mbox file (`mbox`).
//!
//! Both writers take the same [`Payload`] and write its bytes exactly as given (no re-encoding, no
//! line-ending changes; mbox only adds its `From ` line, `>` quoting and the separating empty line).
//! Both follow one rule: when they return `Ok`, the message is on stable storage; when they return
//! `Err`, the caller must exit 75 (EX_TEMPFAIL) so that the MTA keeps the message and retries.
//!
//! Symbolic links: a path from the config or the command line (the Maildir, an mbox, the log)
//! is followed through a symbolic link in its last component only when root or this user owns
//! the link (`resolve_link`; Postfix's local(8) trusts root's alone, but backstop runs as the
//! user, who could as well have configured the link's target), and never through a chain of
//! links. Inside a Maildir nothing is followed: every directory and file below the Maildir is
//! opened one name at a time relative to its parent's descriptor, with `O_NOFOLLOW`
//! (`OpenDir`), so nothing is ever written or removed outside it. A refusal is an error like
//! any other: the delivery fails (the message then goes to the inbox, or the MTA retries).

pub mod maildir;
pub mod mbox;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::{AtFlags, CWD, Mode, OFlags, mkdirat, openat, unlinkat};
use rustix::io::Errno;

/// The bytes of one message to store: `head` (extra trace header lines, already formatted, may be empty),
/// then `body` (the message bytes held in memory), then whatever `tail` yields (the unread rest of stdin
/// for messages too large to hold; None normally). Bytes are written exactly as given: no re-encoding,
/// no line-ending changes.
pub struct Payload<'a> {
    pub head: &'a [u8],
    pub body: &'a [u8],
    pub tail: Option<&'a mut dyn std::io::Read>,
}

/// Where a message went (for the log and explain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub path: std::path::PathBuf,
    pub bytes: u64,
}

/// Size of the fixed buffer the tail is streamed through (and of the mbox output buffer).
pub(crate) const CHUNK: usize = 64 * 1024;

/// Feeds the payload to `sink` in order: `head`, `body`, then the tail in chunks of at most
/// [`CHUNK`] bytes read through one fixed buffer (the tail is never held in memory as a whole).
/// Empty pieces are skipped. The first error (from the tail reader or from `sink`) is returned.
pub(crate) fn for_each_chunk(
    payload: Payload<'_>,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    if !payload.head.is_empty() {
        sink(payload.head)?;
    }
    if !payload.body.is_empty() {
        sink(payload.body)?;
    }
    if let Some(tail) = payload.tail {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match tail.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => match buf.get(..n) {
                    Some(chunk) => sink(chunk)?,
                    None => {
                        return Err(io::Error::other(
                            "tail reader returned an impossible length",
                        ));
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// This host's name as `gethostname()` gives it (`uname().nodename()`): what a dotlock's
/// content names, as Dovecot writes it.
pub(crate) fn node_name() -> &'static str {
    static NODE: OnceLock<String> = OnceLock::new();
    NODE.get_or_init(|| {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    })
}

/// This host's name as used in Maildir unique names and in dotlock names: [`node_name`] with
/// `/` written as `\057` and `:` as `\072` (Maildir spec), "localhost" if the name is empty.
pub(crate) fn host_name() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| escape_host(node_name()))
}

/// Whether the process `pid` of this host still exists. A process of another user counts (only
/// ESRCH means it is gone); so does a pid that cannot be one, so that nothing is judged dead
/// by mistake.
pub(crate) fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return true;
    };
    !matches!(rustix::process::test_kill_process(pid), Err(Errno::SRCH))
}

fn escape_host(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '/' => out.push_str("\\057"),
            ':' => out.push_str("\\072"),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        out.push_str("localhost");
    }
    out
}

/// Writes `bytes` to `staged` (0600, never through a symbolic link), syncs it, and renames it
/// over `to`, syncing the directory: the file is replaced whole or not at all. The ledger, the
/// alarm state and scan's journal and undo record are written this way.
pub(crate) fn replace_durably(staged: &Path, to: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(staged)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(staged, to)?;
    sync_parent(to)
}

/// fsyncs the directory that contains `path` (`.` for a bare relative name), to make a new
/// directory entry in it durable.
pub(crate) fn sync_parent(path: &std::path::Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    sync_dir(parent)
}

/// fsyncs a directory.
pub(crate) fn sync_dir(dir: &std::path::Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Whether a symbolic link may be followed: root or this user owns it, so another local user
/// cannot have put it there.
fn trusted_link(link: &fs::Metadata) -> bool {
    link.uid() == 0 || link.uid() == rustix::process::geteuid().as_raw()
}

/// The file a configured path names: the path itself, or the target of the symbolic link it
/// is, when root or this user owns the link and the target is not a link too. A missing path
/// is itself (to be created).
///
/// # Errors
///
/// `PermissionDenied` for a link someone else owns, `InvalidInput` for a link to a link,
/// otherwise the I/O error met.
pub(crate) fn resolve_link(path: &Path) -> io::Result<PathBuf> {
    let link = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => m,
        Ok(_) => return Ok(path.to_path_buf()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(path.to_path_buf()),
        Err(e) => return Err(e),
    };
    if !trusted_link(&link) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is a symbolic link owned by uid {}, neither root nor this user: not followed",
                path.display(),
                link.uid()
            ),
        ));
    }
    let to = fs::read_link(path)?;
    // A relative target is relative to the link's directory; join() keeps an absolute one.
    let target = path
        .parent()
        .map_or_else(|| to.clone(), |dir| dir.join(&to));
    if fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link to a symbolic link ({}): not followed",
                path.display(),
                to.display()
            ),
        ));
    }
    Ok(target)
}

/// The error for `ELOOP` from an `O_NOFOLLOW` open: the name is a symbolic link.
pub(crate) fn no_follow_error(e: io::Error, path: &Path) -> io::Error {
    if Errno::from_io_error(&e) == Some(Errno::LOOP) {
        link_error(path)
    } else {
        e
    }
}

fn link_error(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is a symbolic link: not followed", path.display()),
    )
}

/// Whether an error opening a directory with `O_NOFOLLOW` came from a symbolic link (`ELOOP`,
/// or `ENOTDIR` as Linux reports it with `O_DIRECTORY`), as `is_link` tells.
fn dir_link_error(e: Errno, path: &Path, is_link: impl FnOnce() -> bool) -> io::Error {
    if matches!(e, Errno::LOOP | Errno::NOTDIR) && is_link() {
        link_error(path)
    } else {
        e.into()
    }
}

/// An open directory whose entries are reached one name at a time with `O_NOFOLLOW`: a
/// symbolic link inside it is never followed, so whatever is created, written or removed
/// through it stays inside it. `path` is only for messages and for naming what was stored.
pub(crate) struct OpenDir {
    fd: OwnedFd,
    path: PathBuf,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl OpenDir {
    /// Opens the configured directory `path` (through a symbolic link only as [`resolve_link`]
    /// allows), creating it (mode 0700) when `create` and it is missing; a new directory's
    /// parent is fsynced. Only the last component is created: a missing parent is `NotFound`.
    /// Returns whether this call created it.
    pub(crate) fn configured(path: &Path, create: bool) -> io::Result<(OpenDir, bool)> {
        let real = resolve_link(path)?;
        let created = create && make_dir_at(CWD, &real)?;
        if created {
            sync_parent(&real)?;
        }
        let fd = openat(CWD, &real, DIR_FLAGS, Mode::empty()).map_err(|e| {
            dir_link_error(e, path, || {
                fs::symlink_metadata(&real).is_ok_and(|m| m.file_type().is_symlink())
            })
        })?;
        Ok((
            OpenDir {
                fd,
                path: path.to_path_buf(),
            },
            created,
        ))
    }

    /// The directory `name` (one path component) inside this one, never through a symbolic
    /// link, created (mode 0700) when `create` and it is missing. Returns whether this call
    /// created it; the caller fsyncs this directory to make a new one durable.
    pub(crate) fn sub(&self, name: impl AsRef<OsStr>, create: bool) -> io::Result<(OpenDir, bool)> {
        let name = one_name(name.as_ref())?;
        let path = self.path.join(name);
        let created = create && make_dir_at(self.fd.as_fd(), name)?;
        let fd = openat(&self.fd, name, DIR_FLAGS, Mode::empty()).map_err(|e| {
            dir_link_error(e, &path, || {
                self.lstat(name).is_ok_and(|m| m.file_type().is_symlink())
            })
        })?;
        Ok((OpenDir { fd, path }, created))
    }

    /// Creates the file `name` exclusively (`O_EXCL` never follows a symbolic link), for writing.
    pub(crate) fn create_file(&self, name: impl AsRef<OsStr>, mode: u32) -> io::Result<File> {
        let name = one_name(name.as_ref())?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd = openat(
            &self.fd,
            name,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        Ok(File::from(fd))
    }

    /// Opens the file `name` for reading, never through a symbolic link.
    pub(crate) fn open_file(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        let name = one_name(name.as_ref())?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = openat(&self.fd, name, flags, Mode::empty())
            .map_err(|e| no_follow_error(e.into(), &self.path.join(name)))?;
        Ok(File::from(fd))
    }

    /// The metadata of the entry `name` itself (a symbolic link is not followed).
    pub(crate) fn lstat(&self, name: impl AsRef<OsStr>) -> io::Result<fs::Metadata> {
        let name = one_name(name.as_ref())?;
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        File::from(openat(&self.fd, name, flags, Mode::empty())?).metadata()
    }

    /// Removes the entry `name` (not a directory).
    pub(crate) fn remove(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let name = one_name(name.as_ref())?;
        Ok(unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    /// fsyncs the directory, making the entries made or removed in it durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// `name` if it is one path component (no `/`, not `.` or `..`): what [`OpenDir`] accepts.
fn one_name(name: &OsStr) -> io::Result<&Path> {
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name);
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single file name"),
        ));
    }
    Ok(Path::new(name))
}

/// mkdir (mode 0700) relative to `dir`; `Ok(true)` if this call made it, `Ok(false)` if the
/// name exists (whatever it is: the open that follows checks).
fn make_dir_at(dir: BorrowedFd<'_>, name: &Path) -> io::Result<bool> {
    match mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A tail that yields `good` bytes in reads of at most `chunk`, then fails (for tests).
#[cfg(test)]
pub(crate) struct FailingTail {
    pub good: usize,
    pub chunk: usize,
}

#[cfg(test)]
impl std::io::Read for FailingTail {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.good == 0 {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "stdin broke",
            ));
        }
        let n = self.good.min(buf.len()).min(self.chunk);
        buf[..n].fill(b'z');
        self.good -= n;
        Ok(n)
    }
}

/// A payload of `body` alone (for tests).
#[cfg(test)]
pub(crate) fn payload(body: &[u8]) -> Payload<'_> {
    Payload {
        head: b"",
        body,
        tail: None,
    }
}

/// The sorted names in a directory (for tests).
#[cfg(test)]
pub(crate) fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn host_escaping() {
        assert_eq!(escape_host("mail.example.org"), "mail.example.org");
        assert_eq!(escape_host("a/b:c"), "a\\057b\\072c");
        assert_eq!(escape_host(""), "localhost");
        let h = host_name();
        assert!(!h.is_empty());
        assert!(!h.contains('/') && !h.contains(':'));
    }

    /// A reader that hands out at most `step` bytes per call and reports EINTR once.
    struct Dribble<'a> {
        data: &'a [u8],
        step: usize,
        interrupted: bool,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.interrupted {
                self.interrupted = true;
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn chunks_in_order_and_retry_on_eintr() {
        let tail_data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut tail = Dribble {
            data: &tail_data,
            step: 70_000,
            interrupted: false,
        };
        let mut got = Vec::new();
        let mut max_chunk = 0;
        for_each_chunk(
            Payload {
                head: b"H: 1\n",
                body: b"B\n",
                tail: Some(&mut tail),
            },
            |c| {
                max_chunk = max_chunk.max(c.len());
                got.extend_from_slice(c);
                Ok(())
            },
        )
        .unwrap();
        let mut want = b"H: 1\nB\n".to_vec();
        want.extend_from_slice(&tail_data);
        assert_eq!(got, want);
        assert!(max_chunk <= CHUNK);
    }
}
