//! The journal of an mbox `--apply`: where it lives, what it records (each moved message by
//! its [`Key`]), and how it is read back.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::store::{host_name, replace_durably, sync_parent};

const JOURNAL_MAGIC: &str = "backstop-scan-journal 1";

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

    /// Keeps the finished journal as the record `--undo` reads (`to`), replacing the one of an
    /// earlier `scan --apply`; the record of an apply that was interrupted (not `closed`: this
    /// one or a recovery finishes it) is kept too, its messages before this journal's.
    pub(super) fn keep(self, to: &Path) -> Result<(), String> {
        drop(self.file);
        let earlier = fs::read(to)
            .ok()
            .and_then(|t| JournalState::parse(&t).ok())
            .filter(|s| !s.closed);
        let cannot = |e: io::Error| format!("cannot write {}: {e}", to.display());
        match earlier {
            Some(earlier) => {
                let ours = fs::read(&self.path)
                    .map_err(cannot)
                    .and_then(|t| JournalState::parse(&t))?;
                let mut moves = earlier.moves;
                moves.extend(ours.moves);
                let folder = ours.folder.or(earlier.folder).unwrap_or_default();
                let mut text = format!(
                    "{JOURNAL_MAGIC}\nfolder {}\n",
                    hex(folder.as_os_str().as_encoded_bytes())
                );
                for k in &moves {
                    let _ = writeln!(text, "move {} {:016x}", k.len, k.hash);
                }
                let _ = writeln!(text, "moves-end {}\nfolder-done\nmbox-done", moves.len());
                let staged = beside(to, ".tmp");
                replace_durably(&staged, to, text.as_bytes()).map_err(cannot)?;
                fs::remove_file(&self.path)
                    .map_err(|e| format!("cannot remove {}: {e}", self.path.display()))?;
            }
            None => fs::rename(&self.path, to).map_err(|e| {
                format!(
                    "cannot rename {} to {}: {e}",
                    self.path.display(),
                    to.display()
                )
            })?,
        }
        sync_parent(to).map_err(|e| format!("cannot fsync the directory of {}: {e}", to.display()))
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
    /// This journal is of `--undo`: the messages go back from the backscatter mbox (the
    /// journal's own file) to the inbox (`folder`).
    pub(super) undo: bool,
    /// The `scan --apply` that wrote this record ran to its end (a later one replaces it).
    pub(super) closed: bool,
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
                ["undo"] => state.undo = true,
                ["closed"] => state.closed = true,
                _ => return Err(bad(line)),
            }
        }
        Ok(state)
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

/// Marks the undo record `path` (if any) as that of an `--apply` that ran to its end.
pub(super) fn close_record(path: &Path) -> Result<(), String> {
    let open = fs::read(path)
        .ok()
        .and_then(|t| JournalState::parse(&t).ok())
        .is_some_and(|s| !s.closed);
    if !open {
        return Ok(());
    }
    OpenOptions::new()
        .append(true)
        .custom_flags(NOFOLLOW)
        .open(path)
        .and_then(|mut f| {
            f.write_all(b"closed\n")?;
            f.sync_data()
        })
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The identity of a message in the journal: length and FNV-1a hash of its bytes without the
/// trailing line ends (so the separator an append adds does not change it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub(super) len: usize,
    pub(super) hash: u64,
}

pub(super) fn key(chunk: &[u8]) -> Key {
    let end = chunk
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    let body = chunk.get(..end).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in body {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    Key {
        len: body.len(),
        hash,
    }
}

pub(super) fn journal_path(mbox: &Path) -> PathBuf {
    beside(mbox, ".backstop-scan")
}

/// Where the journal of the last finished `--apply` on `mbox` is kept for `--undo`.
pub(super) fn undo_path(mbox: &Path) -> PathBuf {
    beside(mbox, ".backstop-scan.undo")
}

/// `DIR/.NAME<suffix>` for `DIR/NAME`.
pub(super) fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_round_trip_and_torn_last_line() {
        let text = format!(
            "{JOURNAL_MAGIC}\nowner 42 {}\nfolder {}\nmove 10 00000000000000ff\nmoves-end 1\nfolder-staged 1 2\nfolder-done\nmbox-sta",
            hex(b"host"),
            hex(b"/tmp/B x")
        );
        let s = JournalState::parse(text.as_bytes()).unwrap();
        assert_eq!(s.owner, Some((42, "host".into())));
        assert_eq!(s.folder.as_deref(), Some(Path::new("/tmp/B x")));
        assert_eq!(s.moves, vec![Key { len: 10, hash: 255 }]);
        assert!(s.moves_end && s.folder_done && !s.mbox_done);
        assert_eq!(s.folder_staged, Some((1, 2)));
        assert_eq!(s.mbox_staged, None);
        assert!(JournalState::parse(b"garbage\n").is_err());
        assert!(JournalState::parse(format!("{JOURNAL_MAGIC}\nmoves-end 3\n").as_bytes()).is_err());
        assert_eq!(
            JournalState::parse(b"backstop-scan-jou").unwrap(),
            JournalState::default()
        );
    }
}
