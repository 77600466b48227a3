//! Integration tests: the real delivery agents (issue 4), driven by `tests/hosts/run.sh`.
//!
//! procmail, maildrop, Dovecot LDA with Pigeonhole Sieve extprograms (Dovecot 2.3 of the host,
//! and Dovecot 2.4 in a Debian 13 chroot), a private Postfix instance delivering through
//! `~/.forward`, and Exim run the example files of `packaging/examples/` with the built binary.
//! The script needs root and the host programs (`tests/hosts/install.sh` installs them on
//! Debian 12, `tests/hosts/install-dovecot24.sh` builds the chroot); when they are missing it
//! fails, and so does this test: there is no silent skip.

use std::process::Command;

use crate::util::{bin, root};

#[test]
fn real_hosts_end_to_end() {
    let root = root();
    let script = root.join("tests/hosts/run.sh");
    let examples = root.join("packaging/examples");
    let out = Command::new("bash")
        .arg(&script)
        .arg(bin())
        .arg(&examples)
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bash tests/hosts/run.sh {} {} failed ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        bin().display(),
        examples.display(),
        out.status
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.ends_with(" passed, 0 failed") && !summary.starts_with("0 passed"),
        "unexpected summary {summary:?}:\n{stdout}"
    );
}
