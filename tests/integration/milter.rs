//! Integration tests: `backstop-milter` behind a real Postfix smtpd (issue 16), driven by
//! `tests/hosts/milter.sh` with Python's smtplib over loopback; and two Postfix instances of one
//! fleet sharing a ledger in a real redis-server (`tests/hosts/milter-fleet.sh`). Postfix,
//! redis-server and python3 are installed by `tests/hosts/install.sh`; without them the tests
//! fail, never skip.

use std::path::PathBuf;
use std::process::Command;

use crate::util::root;

/// Runs a host script with the milter binary; returns its standard output.
fn run_script(name: &str) -> String {
    let root = root();
    let script = root.join(name);
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
        "bash {name} failed ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    stdout.into_owned()
}

#[test]
fn the_milter_behind_real_postfix() {
    let stdout = run_script("tests/hosts/milter.sh");
    let summary = stdout.lines().last().unwrap_or_default();
    assert_eq!(summary, "7 passed, 0 failed", "{stdout}");
}

#[test]
fn a_fleet_of_two_postfix_shares_a_ledger_in_real_redis() {
    let stdout = run_script("tests/hosts/milter-fleet.sh");
    let summary = stdout.lines().last().unwrap_or_default();
    assert_eq!(summary, "9 passed, 0 failed", "{stdout}");
}
