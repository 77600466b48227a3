//! Integration test: `backstop-milter` behind a real Postfix smtpd (issue 16), driven by
//! `tests/hosts/milter.sh` with Python's smtplib over loopback. Postfix and python3 are
//! installed by `tests/hosts/install.sh`; without them the test fails, never skips.

use std::path::PathBuf;
use std::process::Command;

use crate::util::root;

#[test]
fn the_milter_behind_real_postfix() {
    let root = root();
    let script = root.join("tests/hosts/milter.sh");
    let milter = PathBuf::from(env!("CARGO_BIN_EXE_backstop-milter"));
    let out = Command::new("bash")
        .arg(&script)
        .arg(&milter)
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bash tests/hosts/milter.sh failed ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert_eq!(summary, "7 passed, 0 failed", "{stdout}");
}
