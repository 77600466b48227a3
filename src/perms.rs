//! Local trust: whose config backstop obeys, and whose mailbox it writes.
//!
//! A config says where mail goes, so whoever can write it can read the user's mail. As
//! procmail ("Suspicious rcfile"), maildrop and Exim (`.forward` modemask 022) do, a config
//! is obeyed only when it and every directory above it (up to the home directory, or to `/`
//! for a file outside it) belong to the user or root and no one else can write them. A
//! directory with the sticky bit (`/tmp`) is allowed: others cannot replace what is in it.
//!
//! A mailbox is written only by its owner: run as root (from `/etc/procmailrc`, say), backstop
//! would create root-owned files in the user's Maildir that the user cannot read.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Checks that no one but the user (or root) can change the config at `path`, or the
/// directories it is reached through. The error says what is wrong and how to fix it.
pub fn check_config_file(path: &Path) -> Result<(), String> {
    let euid = rustix::process::geteuid().as_raw();
    // A file that cannot be resolved cannot be read either: the read says why.
    let Ok(real) = std::fs::canonicalize(path) else {
        return Ok(());
    };
    let home = directories::BaseDirs::new().and_then(|d| d.home_dir().canonicalize().ok());
    let mut checked = vec![real.clone()];
    for dir in real.ancestors().skip(1) {
        checked.push(dir.to_path_buf());
        if Some(dir) == home.as_deref() {
            break;
        }
    }
    for (i, p) in checked.iter().enumerate() {
        let meta =
            std::fs::metadata(p).map_err(|e| format!("cannot check {}: {e}", p.display()))?;
        let is_dir = i > 0;
        let shown = if p == &real && real != path {
            format!("{} (as {})", path.display(), real.display())
        } else {
            p.display().to_string()
        };
        if meta.uid() != euid && meta.uid() != 0 {
            return Err(format!(
                "not trusted: {shown} belongs to uid {}, not to you (uid {euid}) or root, \
                 so its owner decides where your mail goes; ignored, mail goes to the inbox \
                 unfiltered. Fix: chown {euid} {}",
                meta.uid(),
                p.display()
            ));
        }
        let others_write = meta.mode() & 0o022 != 0;
        let sticky = meta.mode() & 0o1000 != 0;
        if others_write && !(is_dir && sticky) {
            return Err(format!(
                "not trusted: {shown} is writable by {} (mode {:04o}), so others decide where \
                 your mail goes; ignored, mail goes to the inbox unfiltered. Fix: chmod go-w {}",
                if meta.mode() & 0o002 != 0 {
                    "everyone"
                } else {
                    "its group"
                },
                meta.mode() & 0o7777,
                p.display()
            ));
        }
    }
    Ok(())
}

/// Checks that this process may write the mailbox at `path` (a Maildir or an mbox) as its
/// owner: the mailbox, or where it does not exist yet the nearest directory above it that
/// does, must belong to the effective user. A user may deliver under a root-owned directory
/// (`/var/mail`), where the kernel's permissions decide; root may not deliver into a user's.
pub fn check_mailbox_owner(path: &Path) -> Result<(), String> {
    let euid = rustix::process::geteuid().as_raw();
    let (existing, meta) = match nearest_existing(path) {
        Some(found) => found,
        // Nothing to compare with: the write itself will fail and say why.
        None => return Ok(()),
    };
    let owner = meta.uid();
    let exists = existing == path;
    if owner == euid || (!exists && owner == 0) {
        return Ok(());
    }
    Err(format!(
        "{} belongs to uid {owner}, but backstop runs as uid {euid}{}: files it made would \
         not be the mailbox owner's. Run backstop as the mailbox owner (procmail and the MTAs \
         do so for a user's .procmailrc or .forward; in /etc/procmailrc, use DROPPRIVS=yes)",
        existing.display(),
        if euid == 0 { " (root)" } else { "" }
    ))
}

/// The path itself or its nearest ancestor that exists, with its metadata. A link is judged by
/// what it leads to: that is the mailbox written (the store decides which links it follows).
fn nearest_existing(path: &Path) -> Option<(PathBuf, std::fs::Metadata)> {
    if let Ok(meta) = std::fs::metadata(path).or_else(|_| std::fs::symlink_metadata(path)) {
        return Some((path.to_path_buf(), meta));
    }
    path.ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
        .find_map(|p| std::fs::metadata(p).ok().map(|m| (p.to_path_buf(), m)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn configs_others_can_write_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("backstop");
        std::fs::create_dir(&sub).expect("mkdir");
        let file = sub.join("config.yaml");
        std::fs::write(&file, "threshold: 5\n").expect("write");
        set_mode(&file, 0o644);
        set_mode(&sub, 0o755);
        assert_eq!(check_config_file(&file), Ok(()));
        for (target, mode, word) in [
            (&file, 0o666, "everyone"),
            (&file, 0o664, "its group"),
            (&sub, 0o777, "everyone"),
            (&sub, 0o775, "its group"),
        ] {
            set_mode(target, mode);
            let err = check_config_file(&file).expect_err("refused");
            assert!(err.contains(word) && err.contains("chmod go-w"), "{err}");
            assert!(err.contains(&target.display().to_string()), "{err}");
            set_mode(target, if target == &file { 0o644 } else { 0o755 });
        }
        // A sticky directory (as /tmp) is no risk: others cannot replace the file.
        set_mode(&sub, 0o1777);
        assert_eq!(check_config_file(&file), Ok(()));
    }

    #[test]
    fn a_missing_mailbox_is_judged_by_the_directory_above() {
        let dir = tempfile::tempdir().expect("tempdir");
        let maildir = dir.path().join("a/b/Maildir");
        assert_eq!(check_mailbox_owner(&maildir), Ok(()));
    }
}
