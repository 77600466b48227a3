//! Integration tests for a new user's first day (issue 15): the decision log exists out of the
//! box, a discard always leaves a record, the mbox backscatter folder is made, and the
//! commands speak plainly.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::deliver::{
    BACKSCATTER, OWN, all_files, deliver_cmd, deliver_mbox_cmd, deliver_ok, write_config,
};
use crate::util::{backstop, run_with_input, temp_home};

/// The log entries in `path`, parsed.
fn entries(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_log_is_on_by_default_in_a_private_state_dir_and_stats_reads_it() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    let config = write_config(home.path(), "c.yaml", OWN);
    // stats before any delivery: no log yet is no error.
    let mut stats = backstop(home.path());
    stats.args(["stats", "-c"]).arg(&config);
    let out = run_with_input(&mut stats, b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no decisions logged yet"),
        "{out:?}"
    );
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&config)),
        BACKSCATTER.as_bytes(),
        "backscatter",
    );
    let dir = home.path().join(".local/state/backstop");
    let log = dir.join("log.jsonl");
    assert_eq!(entries(&log).len(), 1);
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // XDG_STATE_HOME moves it.
    let state = home.path().join("state");
    let mut cmd = deliver_cmd(home.path(), &maildir, Some(&config));
    cmd.env("XDG_STATE_HOME", &state);
    deliver_ok(&mut cmd, BACKSCATTER.as_bytes(), "backscatter");
    assert_eq!(entries(&state.join("backstop/log.jsonl")).len(), 1);
    let out = run_with_input(&mut stats, b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 entries"), "{text}");
}

#[test]
fn the_log_is_rotated_and_stats_reads_both_halves() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    let log = home.path().join("log.jsonl");
    let config = write_config(
        home.path(),
        "c.yaml",
        &format!("{OWN}log: {}\n", log.display()),
    );
    // A full log, of real entries.
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&config)),
        BACKSCATTER.as_bytes(),
        "first",
    );
    let line = fs::read_to_string(&log).unwrap();
    let full = line.repeat((::backstop::log::ROTATE_AT as usize) / line.len() + 1);
    fs::write(&log, &full).unwrap();
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&config)),
        BACKSCATTER.as_bytes(),
        "second",
    );
    let old = home.path().join("log.jsonl.1");
    assert_eq!(fs::read_to_string(&old).unwrap(), full, "rotated whole");
    assert_eq!(entries(&log).len(), 1, "a new log after the rotation");
    let mut stats = backstop(home.path());
    stats.args(["stats", "--format", "json", "-c"]).arg(&config);
    let out = run_with_input(&mut stats, b"");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["entries"].as_u64(),
        Some(full.lines().count() as u64 + 1)
    );
}

#[test]
fn a_discard_without_a_log_files_the_message_and_says_so() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    for (name, log) in [
        ("off", "off".to_string()),
        ("unwritable", "/proc/nope/log".to_string()),
    ] {
        let config = write_config(
            home.path(),
            &format!("{name}.yaml"),
            &format!("{OWN}log: {log}\nactions:\n  backscatter: discard\n"),
        );
        let out = run_with_input(
            &mut deliver_cmd(home.path(), &maildir, Some(&config)),
            BACKSCATTER.as_bytes(),
        );
        assert_eq!(out.status.code(), Some(0), "{name}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not discarded"),
            "{name}: {out:?}"
        );
        let files = all_files(&maildir, "new");
        assert_eq!(files.len(), 1, "{name}: kept, in the folder: {files:?}");
        assert!(files[0].starts_with(maildir.join(".Backscatter")));
        let stored = fs::read_to_string(&files[0]).unwrap();
        assert!(
            stored.contains("X-Backstop-Verdict: backscatter; kind=dsn; action=folder"),
            "{name}: the header tells what was done: {stored}"
        );
        fs::remove_file(&files[0]).unwrap();
    }
    // lint warns of it beforehand.
    let config = write_config(
        home.path(),
        "lint.yaml",
        &format!("{OWN}log: off\nactions:\n  backscatter: discard\n"),
    );
    let mut lint = backstop(home.path());
    lint.arg("lint").arg(&config);
    let out = run_with_input(&mut lint, b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning: actions.backscatter is discard"),
        "{out:?}"
    );
}

#[test]
fn a_discard_with_a_log_is_recorded() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    let config = write_config(
        home.path(),
        "c.yaml",
        &format!("{OWN}actions:\n  backscatter: discard\n"),
    );
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&config)),
        BACKSCATTER.as_bytes(),
        "discard",
    );
    assert!(all_files(&maildir, "new").is_empty());
    let e = entries(&home.path().join(".local/state/backstop/log.jsonl"));
    assert_eq!(e[0]["action"].as_str(), Some("discard"));
}

/// `deliver --mbox MBOX -c CONFIG`.
fn mbox_cmd(home: &Path, mbox: &Path, config: &Path) -> std::process::Command {
    deliver_mbox_cmd(home, mbox, Some(config))
}

#[test]
fn an_mbox_user_gets_a_backscatter_mbox_and_a_truthful_header() {
    let home = temp_home();
    let mbox = home.path().join("mbox");
    let config = write_config(home.path(), "c.yaml", OWN);
    deliver_ok(
        &mut mbox_cmd(home.path(), &mbox, &config),
        BACKSCATTER.as_bytes(),
        "backscatter",
    );
    let folder = home.path().join("mail/Backscatter");
    let stored = fs::read_to_string(&folder).expect("~/mail/Backscatter made");
    assert!(stored.contains("action=folder"), "{stored}");
    assert_eq!(
        fs::metadata(home.path().join("mail"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert!(!mbox.exists(), "nothing in the inbox");
    // A folder that cannot be made: the inbox, a header that says so, an error naming it.
    let home = temp_home();
    let mbox = home.path().join("mbox");
    let config = write_config(
        home.path(),
        "c.yaml",
        &format!(
            "{OWN}mbox_folder: {}/no/such/Backscatter\n",
            home.path().display()
        ),
    );
    let out = run_with_input(
        &mut mbox_cmd(home.path(), &mbox, &config),
        BACKSCATTER.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let missing = home.path().join("no/such/Backscatter");
    assert!(
        stderr.contains(&missing.display().to_string()) && stderr.contains("inbox instead"),
        "{stderr}"
    );
    let stored = fs::read_to_string(&mbox).unwrap();
    assert!(
        stored.contains("X-Backstop-Verdict: backscatter; kind=dsn; action=inbox"),
        "{stored}"
    );
    let log = entries(&home.path().join(".local/state/backstop/log.jsonl"));
    assert_eq!(log[0]["action"].as_str(), Some("inbox"));
    assert!(log[0]["fallback"].as_str().is_some(), "{:?}", log[0]);
}

/// `backstop lint ARGS` in `home`: (exit status, stdout, stderr).
fn lint(home: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = backstop(home);
    cmd.arg("lint").args(args);
    let out = run_with_input(&mut cmd, b"");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn lint_takes_c_and_says_when_the_defaults_are_in_use() {
    let home = temp_home();
    let (code, out, err) = lint(home.path(), &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("no config") && out.contains("the built-in defaults are in use and valid"),
        "{out}"
    );
    let config = write_config(home.path(), "c.yaml", OWN);
    let c = config.to_str().unwrap();
    let (code, out, err) = lint(home.path(), &["-c", c]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with(&format!("{c}: ok")), "{out}");
    // A file named that does not exist is an error, not the defaults.
    let (code, _, err) = lint(home.path(), &["-c", "/nonexistent/c.yaml"]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn lint_warns_of_risky_values() {
    let home = temp_home();
    let config = write_config(
        home.path(),
        "c.yaml",
        "own:\n  hosts: [\"*\", \"*.org\", \"*.out.example.org\"]\nmax_size: 0\nmaildir: Maildir\nlog: state/log.jsonl\n",
    );
    let (code, _, err) = lint(home.path(), &["-c", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "warnings only: {err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains(": warning: ")).collect();
    for want in [
        "own.hosts \"*\" matches far too many hosts",
        "own.hosts \"*.org\" matches far too many hosts",
        "max_size is 0",
        "maildir \"Maildir\" is relative",
        "log \"state/log.jsonl\" is relative",
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(want)),
            "{want:?} in {err}"
        );
    }
    assert_eq!(warnings.len(), 5, "{err}");
    // A relative path is taken from HOME, not from the working directory.
    let c = ::backstop::config::Config::from_str("maildir: Maildir\n", "c.yaml").unwrap();
    let home_dir = std::env::var("HOME").unwrap();
    assert_eq!(
        c.inbox,
        Some(::backstop::config::Inbox::Maildir(
            Path::new(&home_dir).join("Maildir")
        ))
    );
}

#[test]
fn help_from_a_pipe_is_whole_on_stderr_and_defers() {
    let home = temp_home();
    for args in [
        &["deliver", "--help"][..],
        &["help", "deliver"],
        &["deliver", "-h"],
    ] {
        let mut cmd = backstop(home.path());
        cmd.args(args);
        let out = run_with_input(&mut cmd, b"From: a@b\n\nhi\n");
        assert_eq!(out.status.code(), Some(75), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("backstop: "), "{args:?}: {err}");
        for want in ["Usage: backstop deliver", "--mbox <FILE>", "--recipient"] {
            assert!(err.contains(want), "{args:?}: {want:?} missing from {err}");
        }
    }
    // A typo keeps clap's hint.
    let mut cmd = backstop(home.path());
    cmd.args(["deliver", "--mbx", "/tmp/x"]);
    let out = run_with_input(&mut cmd, b"");
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a similar argument exists: '--mbox'"), "{err}");
}

#[test]
fn check_takes_several_files_and_reads_an_mbox_message_by_message() {
    let home = temp_home();
    let config = write_config(home.path(), "c.yaml", OWN);
    let a = home.path().join("a.eml");
    let b = home.path().join("b.eml");
    fs::write(&a, BACKSCATTER).unwrap();
    fs::write(&b, "From: friend@example.net\nSubject: lunch\n\nat noon?\n").unwrap();
    let mbox = home.path().join("some.mbox");
    fs::write(
        &mbox,
        format!(
            "From MAILER-DAEMON Tue Mar  3 10:00:05 2026\n{BACKSCATTER}\n\
             From friend@example.net Tue Mar  3 11:00:00 2026\nFrom: friend@example.net\n\
             Subject: lunch\n\n>From the top\n\n"
        ),
    )
    .unwrap();
    let mut cmd = backstop(home.path());
    cmd.args([
        "check",
        "--recipient",
        "user@example.com",
        "--format",
        "word",
        "-c",
    ])
    .arg(&config)
    .args([&a, &b, &mbox]);
    let out = run_with_input(&mut cmd, b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let (a, b, m) = (a.display(), b.display(), mbox.display());
    assert_eq!(
        text,
        format!("{a}: backscatter\n{b}: clean\n{m}#1: backscatter\n{m}#2: clean\n")
    );
    // One file alone prints as it always has.
    let mut cmd = backstop(home.path());
    cmd.args([
        "check",
        "--recipient",
        "user@example.com",
        "--format",
        "word",
        "-c",
    ])
    .arg(&config)
    .arg(home.path().join("b.eml"));
    assert_eq!(run_with_input(&mut cmd, b"").stdout, b"clean");
    // A bounce whose returned original keeps its own From_ line is one message, unasked.
    let bounce = crate::util::fixture("corpus/bounces/sisimai-not/rb-issue-368-bug.eml");
    let mut cmd = backstop(home.path());
    cmd.args(["check", "--format", "word", "-c"])
        .arg(&config)
        .arg(&bounce)
        .arg(&bounce);
    let out = run_with_input(&mut cmd, b"");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        2,
        "{out:?}"
    );
    // A missing file is named, and the others are still judged.
    let mut cmd = backstop(home.path());
    cmd.args(["check", "-c"])
        .arg(&config)
        .arg(home.path().join("nope.eml"))
        .arg(home.path().join("b.eml"));
    let out = run_with_input(&mut cmd, b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope.eml"),
        "{out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("b.eml: clean"),
        "{out:?}"
    );
}

/// The example config the README and man 1 point at is valid as shipped.
#[test]
fn the_example_config_passes_lint() {
    let home = crate::util::temp_home();
    let example = crate::util::root().join("packaging/examples/config.yaml");
    let out = crate::util::backstop(home.path())
        .args(["lint", "-c"])
        .arg(&example)
        .output()
        .expect("lint");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
}

/// `BACKSTOP_CONFIG` names the config when no `--config` does, as for a site's every-user
/// router; like `--config`, a missing file is an error (and deliver still delivers).
#[test]
fn backstop_config_names_the_config() {
    let home = crate::util::temp_home();
    let mbox = home.path().join("site.mbox");
    let config = home.path().join("site.yaml");
    std::fs::write(&config, format!("mbox: {}\n", mbox.display())).expect("write");
    let mut cmd = crate::util::backstop(home.path());
    cmd.args(["deliver", "--recipient", "user@example.com"])
        .env("BACKSTOP_CONFIG", &config);
    let out = crate::util::run_with_input(&mut cmd, b"Subject: hi\nFrom: a@b.example\n\nhello\n");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read_to_string(&mbox)
            .expect("the site's mbox")
            .contains("hello")
    );
    let out = crate::util::backstop(home.path())
        .arg("lint")
        .env("BACKSTOP_CONFIG", home.path().join("missing.yaml"))
        .output()
        .expect("lint");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a named file that is missing is an error"
    );
}

/// With no relays of their own named, a user's real bounces are unverified at best: `check`
/// says why and what proposes them, and stops saying it once `own.hosts` is set.
#[test]
fn an_unverified_verdict_without_own_relays_says_how_to_name_them() {
    let home = temp_home();
    let message = "tests/fixtures/corpus/bounces/sisimai-bsd/lhost-postfix-02.eml";
    let check = |config: Option<&Path>| {
        let mut cmd = backstop(home.path());
        cmd.arg("check");
        if let Some(c) = config {
            cmd.arg("-c").arg(c);
        }
        let out = run_with_input(cmd.arg(message), b"");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let bare = check(None);
    assert!(bare.starts_with("unverified-bounce"), "{bare}");
    assert!(
        bare.contains("no own.hosts or own.networks are configured"),
        "{bare}"
    );
    assert!(bare.contains("backstop init SENT-FOLDER"), "{bare}");
    let config = write_config(
        home.path(),
        "c.yaml",
        "own:\n  hosts: [relay.example.org]\n",
    );
    let named = check(Some(&config));
    assert!(!named.contains("no own.hosts or own.networks"), "{named}");
}
