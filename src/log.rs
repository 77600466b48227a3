//! The decision log: one JSON line per delivered message, appended to the file `log:` names
//! (by default `$XDG_STATE_HOME/backstop/log.jsonl`), rotated at [`ROTATE_AT`] bytes.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::evidence::received::{HopRole, is_internal};
use crate::store::Stored;
use crate::util::dates::rfc3339;
use crate::verdict::{Evaluation, OriginalView};

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// UTC, RFC 3339.
    pub time: String,
    pub verdict: String,
    pub kind: Option<String>,
    pub action: String,
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    /// The envelope sender ("" for the null sender).
    pub sender: Option<String>,
    /// Where the message went; None when discarded.
    pub stored: Option<String>,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the action differs from the verdict's: a discard that could not be recorded, a
    /// folder that could not be written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// The From of the returned original (for backscatter: the sender that was forged).
    /// Absent from logs of older versions, and when no original came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_from: Option<String>,
    /// The address the original came from, as the bouncer recorded it: the `from` address of
    /// the lowest Received hop the bouncer vouches for (the entry), when that is a public
    /// address. For backscatter, where the forged mail was sent from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_ip: Option<String>,
}

impl Entry {
    pub fn new(eval: &Evaluation, stored: Option<&Stored>) -> Entry {
        Entry {
            time: rfc3339(SystemTime::now()),
            verdict: eval.verdict.as_str().to_string(),
            kind: eval.kind.map(|k| k.as_str().to_string()),
            action: eval.action.as_str().to_string(),
            message_id: eval.message_id.clone(),
            from: eval.from.clone(),
            subject: eval.subject.clone(),
            sender: eval.envelope.sender.clone(),
            stored: stored.map(|s| s.path.display().to_string()),
            reasons: eval.reasons.clone(),
            error: None,
            fallback: None,
            original_from: eval.original.as_ref().and_then(|o| o.original.from.clone()),
            original_ip: eval.original.as_ref().and_then(original_ip),
        }
    }
}

/// The entry hop's address when the bouncer vouches for it and it is a public one.
fn original_ip(view: &OriginalView) -> Option<String> {
    view.judged
        .iter()
        .find(|h| h.role == HopRole::Entry && h.believed)
        .and_then(|h| h.hop.from_ip)
        .filter(|ip| !is_internal(*ip))
        .map(|ip| ip.to_string())
}

/// The size at which the log is rotated: the full file becomes `<log>.1` (replacing the one
/// before), and a new one is started; so the log never takes more than twice this. Some 8000
/// decisions fit in one file. `stats` reads both.
pub const ROTATE_AT: u64 = 4 * 1024 * 1024;

/// The file the log is rotated into.
pub fn rotated(path: &Path) -> PathBuf {
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    PathBuf::from(old)
}

/// Appends the decision. The caller decides what a failure means (a discarded message must
/// leave a record; any other delivery goes on, see [`warn`]).
pub fn append_entry(path: &Path, entry: &Entry) -> io::Result<()> {
    write_line(path, entry)
}

/// Says on stderr that the log could not be written: a log never fails a delivery.
pub fn warn(path: &Path, e: &io::Error) {
    let _ = writeln!(
        io::stderr(),
        "backstop: cannot write the log {}: {e}",
        path.display()
    );
}

/// Logs a config error that sent a message to the inbox unfiltered.
pub fn append_error(path: &Path, error: &str, stored: &Stored) {
    if let Err(e) = write_line(path, &Entry::error(error, stored)) {
        warn(path, &e);
    }
}

impl Entry {
    /// The entry of a message filed in the inbox unfiltered, because the config did not load.
    pub fn error(error: &str, stored: &Stored) -> Entry {
        Entry {
            time: rfc3339(SystemTime::now()),
            verdict: "clean".into(),
            kind: None,
            action: "inbox".into(),
            message_id: None,
            from: None,
            subject: None,
            sender: None,
            stored: Some(stored.path.display().to_string()),
            reasons: vec!["config error: delivered unfiltered".into()],
            error: Some(error.to_string()),
            fallback: None,
            original_from: None,
            original_ip: None,
        }
    }
}

fn write_line(path: &Path, entry: &Entry) -> io::Result<()> {
    let mut line = serde_json::to_string(entry).map_err(io::Error::other)?;
    line.push('\n');
    // Through a symbolic link only as the mailboxes are (see the `store` module comment).
    let real = crate::store::resolve_link(path)?;
    let mut file = match open_append(&real) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // The directory is made when first needed, for the user alone (the log names
            // senders and subjects).
            if let Some(dir) = real.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            open_append(&real)?
        }
        other => other?,
    };
    if file.metadata()?.len() >= ROTATE_AT {
        file = rotate(&real, file)?;
    }
    // One write(2) with O_APPEND: concurrent deliveries never interleave a line.
    file.write_all(line.as_bytes())
}

fn open_append(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| crate::store::no_follow_error(e, path))
}

/// Renames the full log `file` (open at `path`) to `<path>.1` and opens a new one. Under an
/// exclusive lock on the full file, and only while `path` still names it: concurrent
/// deliveries that found it full at once rotate it once. A line written meanwhile through an
/// older descriptor lands in `<path>.1`, still recorded.
fn rotate(path: &Path, file: File) -> io::Result<File> {
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
    let open = file.metadata()?;
    let current = std::fs::symlink_metadata(path);
    if current.is_ok_and(|m| m.dev() == open.dev() && m.ino() == open.ino()) {
        std::fs::rename(path, rotated(path))?;
    }
    drop(file);
    open_append(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_written_through_a_link_of_its_owner_only() {
        use rustix::fs::{AtFlags, CWD, Uid, chownat};
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real.log");
        let link = t.path().join("log");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let stored = Stored {
            path: "/m".into(),
            bytes: 1,
        };
        append_error(&link, "one", &stored);
        let lines = || std::fs::read_to_string(&real).unwrap().lines().count();
        assert_eq!(lines(), 1);
        chownat(
            CWD,
            &link,
            Some(Uid::from_raw(54_321)),
            None,
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .expect("lchown (this test needs root, as CI has)");
        append_error(&link, "two", &stored);
        assert_eq!(lines(), 1, "written through another user's link");
    }
}
