//! The journal of an mbox `--apply`: what it records, and the recovery that finishes or undoes
//! an interrupted one.

use super::*;

pub(super) const JOURNAL_MAGIC: &str = "backstop-scan-journal 1";

/// `O_NOFOLLOW` for the journal: a symbolic link put in its place is not followed (reopening
/// truncates).
pub(super) const NOFOLLOW: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;

/// The append-only journal of one `--apply` on an mbox.
pub(super) struct Journal {
    pub(super) path: PathBuf,
    pub(super) file: File,
}

impl Journal {
    /// Creates the journal (it must not exist) with its owner line, durably.
    pub(super) fn create(path: &Path) -> Result<Journal, String> {
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
    pub(super) fn reopen(path: &Path, len: u64) -> Result<Journal, String> {
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
    pub(super) fn record(&mut self, lines: &str) -> Result<(), String> {
        let mut text = String::with_capacity(lines.len() + 1);
        text.push_str(lines);
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    pub(super) fn remove(self) -> Result<(), String> {
        drop(self.file);
        fs::remove_file(&self.path)
            .map_err(|e| format!("cannot remove {}: {e}", self.path.display()))?;
        sync_parent(&self.path)
            .map_err(|e| format!("cannot fsync the directory of {}: {e}", self.path.display()))
    }
}

/// `owner PID HOST`: who may hold the locks while the journal exists.
pub(super) fn owner_line() -> String {
    format!(
        "owner {} {}",
        std::process::id(),
        hex(host_name().as_bytes())
    )
}

/// What a journal says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct JournalState {
    pub(super) owner: Option<(u32, String)>,
    pub(super) folder: Option<PathBuf>,
    pub(super) moves: Vec<Key>,
    pub(super) moves_end: bool,
    pub(super) folder_staged: Option<(u64, u64)>,
    pub(super) folder_done: bool,
    pub(super) mbox_staged: Option<(u64, u64)>,
    pub(super) mbox_done: bool,
}

impl JournalState {
    /// Parses a journal; a last line without its newline was being written when the run died
    /// and is ignored.
    pub(super) fn parse(text: &[u8]) -> Result<JournalState, String> {
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
pub(super) fn recover(path: &Path, config: &Config) -> Result<usize, String> {
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
pub(super) fn remove_dead_dotlocks(mbox: &Path, pid: u32) {
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

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub(super) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
