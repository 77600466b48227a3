//! The decision log: one JSON line per delivered message, appended to the file `log:` names.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::store::Stored;
use crate::util::dates::rfc3339;
use crate::verdict::Evaluation;

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
        }
    }
}

/// Appends the decision; a log that cannot be written never fails a delivery.
pub fn append(path: &Path, eval: &Evaluation, stored: Option<&Stored>) {
    write_line(path, &Entry::new(eval, stored));
}

/// Logs a config error that sent a message to the inbox unfiltered.
pub fn append_error(path: &Path, error: &str, stored: &Stored) {
    let entry = Entry {
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
    };
    write_line(path, &entry);
}

fn write_line(path: &Path, entry: &Entry) {
    let Ok(mut line) = serde_json::to_string(entry) else {
        return;
    };
    line.push('\n');
    // Through a symbolic link only as the mailboxes are (see the `store` module comment).
    let file = crate::store::resolve_link(path).and_then(|real| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&real)
            .map_err(|e| crate::store::no_follow_error(e, &real))
    });
    // One write(2) with O_APPEND: concurrent deliveries never interleave a line.
    let result = file.and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = result {
        let _ = writeln!(
            std::io::stderr(),
            "backstop: cannot write the log {}: {e}",
            path.display()
        );
    }
}

/// The `log:` path of a config file that failed to load, read leniently.
pub fn path_hint(config_text: &str) -> Option<PathBuf> {
    crate::config::lenient_value(config_text, "log").map(|v| crate::config::expand_home(&v))
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
