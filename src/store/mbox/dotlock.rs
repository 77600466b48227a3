//! The NFS-safe `NAME.lock` dot lock of an mbox: made by link(), recognised as stale, touched
//! while held, and removed only while it is still ours (see the `mbox` module comment).

use super::*;

/// The dotlock file name of an mbox: `NAME.lock`.
pub(crate) fn dotlock_path(mbox: &Path) -> PathBuf {
    with_suffix(mbox, ".lock")
}

/// The maker of a dotlock as its content names it: `PID:HOST` as backstop and Dovecot write it,
/// or a bare `PID` (older backstop versions, liblockfile), whose host is unknown.
pub(crate) fn dotlock_holder(content: &[u8]) -> Option<(u32, Option<&[u8]>)> {
    let content = content.strip_suffix(b"\n").unwrap_or(content);
    let (pid, host) = match content.iter().position(|&b| b == b':') {
        Some(i) => (content.get(..i)?, content.get(i + 1..)),
        None => (content, None),
    };
    let pid = std::str::from_utf8(pid).ok()?.trim().parse().ok()?;
    Some((pid, host))
}

pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Removes a path when dropped.
pub(super) struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A held `NAME.lock`. Dropping it stops its refresher, then removes the lock if it is still
/// ours.
pub(super) struct DotLock {
    lock_path: PathBuf,
    /// The lock's inode (our unique file's): to recognize it.
    dev: u64,
    ino: u64,
    refresher: Option<Refresher>,
}

impl DotLock {
    pub(super) fn acquire(
        mbox: &Path,
        deadline: Instant,
        touch_every: Duration,
    ) -> io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let lock_path = with_suffix(mbox, ".lock");
        let mut made = None;
        for _ in 0..ATTEMPTS {
            let unique = with_suffix(
                mbox,
                &format!(
                    ".lock.{}.{}.{}",
                    host_name(),
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                ),
            );
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&unique)
            {
                Ok(file) => {
                    made = Some((unique, file));
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        let Some((unique, mut file)) = made else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("no free unique name for {}", lock_path.display()),
            ));
        };
        // The unique name goes away in every case; once locked, NAME.lock keeps the inode.
        let _unique = RemoveOnDrop(unique.clone());
        writeln!(file, "{}:{}", std::process::id(), node_name())?;
        let ours = file.metadata()?;
        let mut backoff = Backoff::new();
        loop {
            let linked = match fs::hard_link(&unique, &lock_path) {
                Ok(()) => true,
                // Over NFS the link may have been made although the reply was lost.
                Err(e) => match fs::symlink_metadata(&unique) {
                    Ok(m) if m.nlink() == 2 => true,
                    Ok(_) if e.kind() == io::ErrorKind::AlreadyExists => false,
                    Ok(_) => return Err(e),
                    Err(e) => return Err(e),
                },
            };
            if linked {
                return Ok(Self {
                    lock_path,
                    dev: ours.dev(),
                    ino: ours.ino(),
                    refresher: Some(Refresher::start(file, touch_every)?),
                });
            }
            match stale_lock(&lock_path, &file) {
                Ok(Some(held)) => {
                    // Still the lock judged stale (not a fresh one someone made meanwhile).
                    if fs::symlink_metadata(&lock_path).is_ok_and(|m| same_lock(&m, &held))
                        && fs::remove_file(&lock_path).is_ok()
                    {
                        continue;
                    }
                }
                Ok(None) => {}
                // Released meanwhile: the next link() will tell.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            if !backoff.wait(deadline) {
                return Err(timed_out("dotlock", mbox));
            }
        }
    }
}

/// The metadata of the dotlock at `lock_path` if it is stale (see the module comment): its maker
/// is a process of this host that no longer exists, or its mtime is too far from the file
/// server's time, which `ours` (our unique file, touched now) gives.
pub(super) fn stale_lock(lock_path: &Path, ours: &File) -> io::Result<Option<fs::Metadata>> {
    let held = fs::symlink_metadata(lock_path)?;
    if held.is_file() && made_by_dead_local_process(lock_path, &held) {
        return Ok(Some(held));
    }
    touch(ours)?;
    let (Ok(held_time), Ok(now)) = (held.modified(), ours.metadata()?.modified()) else {
        return Ok(None);
    };
    let stale = match now.duration_since(held_time) {
        Ok(age) => age > STALE_LOCK,
        Err(ahead) => ahead.duration() > FUTURE_LOCK,
    };
    Ok(stale.then_some(held))
}

/// Whether the dotlock `held` at `lock_path` names, as `PID:HOST`, a process of this host that
/// no longer exists. A lock of another host, or one without a host, cannot tell.
pub(super) fn made_by_dead_local_process(lock_path: &Path, held: &fs::Metadata) -> bool {
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(lock_path)
    else {
        return false;
    };
    let mut content = Vec::with_capacity(64);
    // The content read must be that of the lock judged (not of one made since).
    let same = file.metadata().is_ok_and(|m| same_lock(&m, held));
    if !same || file.take(256).read_to_end(&mut content).is_err() {
        return false;
    }
    match dotlock_holder(&content) {
        Some((pid, Some(host))) => host == node_name().as_bytes() && !process_alive(pid),
        _ => false,
    }
}

/// Whether two looks at a lock saw the same lock: the same inode, not changed in between (a
/// freed inode number is soon given to a new file).
pub(super) fn same_lock(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    (a.dev(), a.ino(), a.ctime(), a.ctime_nsec()) == (b.dev(), b.ino(), b.ctime(), b.ctime_nsec())
}

/// Sets a file's mtime (and atime) to the file server's current time.
pub(super) fn touch(file: &File) -> io::Result<()> {
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: UTIME_NOW,
    };
    Ok(futimens(
        file,
        &Timestamps {
            last_access: now,
            last_modification: now,
        },
    )?)
}

/// A thread that touches a held dotlock every `every` until it is dropped, so that the lock
/// never looks stale while its process lives, whatever the delivery is waiting for (a stalled
/// input, a slow disk).
pub(super) struct Refresher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Refresher {
    fn start(lock: File, every: Duration) -> io::Result<Refresher> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("dotlock-refresh".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let _ = touch(&lock);
                }
            })?;
        Ok(Refresher {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread at once.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        drop(self.refresher.take());
        // If someone judged it stale and took their own, only remove the lock if it is still
        // our inode.
        if let Ok(m) = fs::symlink_metadata(&self.lock_path)
            && m.dev() == self.dev
            && m.ino() == self.ino
        {
            let _ = fs::remove_file(&self.lock_path);
        }
    }
}
