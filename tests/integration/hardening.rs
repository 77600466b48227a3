//! Integration tests: hostile input and a hostile machine (issue 11), through the built binary.
//!
//! A message whose evaluation passes its CPU budget; a config others can write; a broken config
//! that names the inbox; `X-Backstop-*` fields written by the sender; CR-only line ends in
//! `filter`; a closed stderr or stdout; a mailbox that belongs to another user; `max_size` in
//! `filter` and `check`; folder names no Maildir can hold.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::deliver::{
    BACKSCATTER, OWN, RECIPIENT, all_files, assert_same_bytes, deliver_cmd, deliver_deferred,
    deliver_mbox_cmd, deliver_ok, mbox_messages, take_only_message, write_config,
};
use crate::util::{backstop, files_in, run_with_input, split_lines, temp_home};

/// Clean mail that claims a verdict of its own: backstop's fields, as a spammer writes them.
const FORGED: &str = "X-Backstop-Verdict: backscatter; kind=dsn; action=discard
X-Backstop-Reason: forged by the sender,
\tfolded over two lines
From: Friend <friend@example.net>
To: user@example.com
Subject: lunch
Message-ID: <lunch@example.net>
x-backstop-verdict: clean; action=inbox

See you at noon.
X-Backstop-Verdict: in the body, stays
";

/// [`FORGED`] less the sender's `X-Backstop-*` fields (its header block only).
const FORGED_STRIPPED: &str = "From: Friend <friend@example.net>
To: user@example.com
Subject: lunch
Message-ID: <lunch@example.net>

See you at noon.
X-Backstop-Verdict: in the body, stays
";

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `backstop deliver` with no inbox flag: the config (or ~/Maildir) says where mail goes.
fn deliver_by_config(home: &Path, config: &Path) -> Command {
    let mut cmd = backstop(home);
    cmd.args(["deliver", "--recipient", RECIPIENT])
        .arg("--config")
        .arg(config);
    cmd
}

#[test]
fn an_evaluation_past_its_cpu_budget_goes_to_the_inbox_marked() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    let config = write_config(
        home.path(),
        "budget.yaml",
        &format!("{OWN}cpu_budget_ms: 200\n"),
    );
    // BACKSTOP_FAULT=spin: the evaluation never ends, as on a slow path a message found.
    let mut cmd = deliver_cmd(home.path(), &maildir, Some(&config));
    cmd.env("BACKSTOP_FAULT", "spin");
    deliver_ok(&mut cmd, BACKSCATTER.as_bytes(), "over budget");
    let (path, stored) = take_only_message(&maildir, "over budget");
    assert_eq!(path.parent(), Some(maildir.join("new").as_path()));
    let (lines, rest) = split_lines(&stored, 3);
    let text: Vec<String> = lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    assert!(
        text[0].starts_with("X-Backstop-Verdict: clean; action=inbox"),
        "{text:?}"
    );
    assert!(
        text[2].starts_with("X-Backstop-Error: the evaluation used up its CPU budget (200 ms"),
        "{text:?}"
    );
    assert_same_bytes(rest, BACKSCATTER.as_bytes(), "over budget");

    // filter prints it whole with the error; check and explain say why.
    let mut cmd = backstop(home.path());
    cmd.args(["filter", "--config"])
        .arg(&config)
        .env("BACKSTOP_FAULT", "spin");
    let out = run_with_input(&mut cmd, BACKSCATTER.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let (lines, rest) = split_lines(&out.stdout, 3);
    assert!(lines[2].starts_with(b"X-Backstop-Error: the evaluation used up its CPU budget"));
    assert_same_bytes(rest, BACKSCATTER.as_bytes(), "filter over budget");
    for command in ["check", "explain"] {
        let mut cmd = backstop(home.path());
        cmd.args([command, "--config"])
            .arg(&config)
            .env("BACKSTOP_FAULT", "spin");
        let out = run_with_input(&mut cmd, BACKSCATTER.as_bytes());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{command}: {}", stderr_of(&out));
        assert!(stdout.contains("CPU budget (200 ms"), "{command}: {stdout}");
    }
    // Without the fault, the same message is judged: backscatter.
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&config)),
        BACKSCATTER.as_bytes(),
        "within budget",
    );
    assert_eq!(files_in(&maildir.join(".Backscatter/new")).len(), 1);
}

#[test]
fn scan_leaves_a_message_past_the_budget_where_it_is() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        fs::create_dir_all(maildir.join(sub)).expect("mkdir");
    }
    fs::write(maildir.join("new/1.host"), BACKSCATTER).expect("write");
    let config = write_config(
        home.path(),
        "budget.yaml",
        &format!("{OWN}cpu_budget_ms: 100\n"),
    );
    let out = backstop(home.path())
        .args(["scan", "--apply", "--config"])
        .arg(&config)
        .arg(&maildir)
        .env("BACKSTOP_FAULT", "spin")
        .output()
        .expect("scan");
    // The report (on stdout) lists it among the messages that could not be judged.
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("not judged (the evaluation used up its CPU budget (100 ms"),
        "{report}"
    );
    assert_ne!(
        out.status.code(),
        Some(0),
        "a message left unjudged is reported"
    );
    assert!(maildir.join("new/1.host").exists(), "it stays where it is");
    // Without the fault, the same scan moves it.
    let out = backstop(home.path())
        .args(["scan", "--apply", "--config"])
        .arg(&config)
        .arg(&maildir)
        .output()
        .expect("scan");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(!maildir.join("new/1.host").exists());
}

#[test]
fn the_budget_is_checked_in_the_config() {
    let home = temp_home();
    for value in ["0", "9", "60001", "-1", "two"] {
        let config = write_config(home.path(), "b.yaml", &format!("cpu_budget_ms: {value}\n"));
        let out = backstop(home.path())
            .arg("lint")
            .arg(&config)
            .output()
            .expect("lint");
        assert_eq!(out.status.code(), Some(2), "cpu_budget_ms: {value}");
        assert!(stderr_of(&out).contains("b.yaml:1:"), "{}", stderr_of(&out));
    }
}

#[test]
fn a_broken_config_keeps_its_inbox() {
    let home = temp_home();
    let mbox = home.path().join("var-mail-me");
    let maildir = home.path().join("Mail");
    for (name, text, mboxed) in [
        (
            "threshold.yaml",
            format!("mbox: {}\nthreshold: 0\n", mbox.display()),
            true,
        ),
        (
            "quoted.yaml",
            format!("own: [\nmbox: \"{}\"  # my spool\n", mbox.display()),
            true,
        ),
        (
            "maildir.yaml",
            format!("maildir: '{}'\nno_such_key: 1\n", maildir.display()),
            false,
        ),
    ] {
        let config = write_config(home.path(), name, &text);
        let out = run_with_input(
            &mut deliver_by_config(home.path(), &config),
            BACKSCATTER.as_bytes(),
        );
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains("delivering to the inbox unfiltered"),
            "{name}"
        );
        let stored = if mboxed {
            let messages = mbox_messages(&fs::read(&mbox).expect("the config's mbox"));
            fs::remove_file(&mbox).expect("rm");
            assert_eq!(messages.len(), 1, "{name}");
            messages[0].1.clone()
        } else {
            take_only_message(&maildir, name).1
        };
        assert!(
            stored.starts_with(b"X-Backstop-Error: config error, not filtered: "),
            "{name}"
        );
        assert!(
            !home.path().join("Maildir").exists(),
            "{name}: not the default inbox"
        );
    }
}

#[test]
fn a_config_others_can_write_is_not_obeyed() {
    let home = temp_home();
    let evil = home.path().join("evil.mbox");
    let dir = home.path().join("conf");
    fs::create_dir(&dir).expect("mkdir");
    let config = write_config(
        &dir,
        "config.yaml",
        &format!(
            "{OWN}mbox: {}\nlog: {}\n",
            evil.display(),
            home.path().join("evil.log").display()
        ),
    );
    let inbox = home.path().join("Maildir");
    for (target, mode, restore, word) in [
        (&config, 0o666, 0o644, "everyone"),
        (&config, 0o620, 0o644, "its group"),
        (&dir, 0o777, 0o755, "everyone"),
        (&dir, 0o770, 0o755, "its group"),
    ] {
        set_mode(target, mode);
        let what = format!("{} mode {mode:o}", target.display());
        let out = run_with_input(
            &mut deliver_by_config(home.path(), &config),
            BACKSCATTER.as_bytes(),
        );
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(
            err.contains("not trusted") && err.contains(word) && err.contains("chmod go-w"),
            "{what}: {err}"
        );
        assert!(
            !evil.exists(),
            "{what}: mail went where the writable config said"
        );
        assert!(
            !home.path().join("evil.log").exists(),
            "{what}: logged where it said"
        );
        let (path, stored) = take_only_message(&inbox, &what);
        assert_eq!(path.parent(), Some(inbox.join("new").as_path()), "{what}");
        assert!(
            stored.starts_with(b"X-Backstop-Error: config error, not filtered: "),
            "{what}"
        );
        // check and lint refuse it too.
        let out = backstop(home.path())
            .arg("lint")
            .arg(&config)
            .output()
            .expect("lint");
        assert_eq!(out.status.code(), Some(2), "{what}");
        assert!(stderr_of(&out).contains("not trusted"), "{what}");
        set_mode(target, restore);
    }
    // Trusted again, it is obeyed.
    deliver_ok(
        &mut deliver_by_config(home.path(), &config),
        BACKSCATTER.as_bytes(),
        "trusted",
    );
    // The config's mbox: is obeyed, so its backscatter mbox (~/mail/Backscatter) takes the
    // backscatter; with the config ignored it would be ~/Maildir/.Backscatter.
    assert!(home.path().join("mail/Backscatter").exists());
    assert!(home.path().join("evil.log").exists());
}

#[test]
fn deliver_removes_the_x_backstop_fields_a_message_came_with() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    let quiet = write_config(
        home.path(),
        "quiet.yaml",
        &format!("{OWN}trace_headers: false\n"),
    );
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&quiet)),
        FORGED.as_bytes(),
        "untraced",
    );
    let (_, stored) = take_only_message(&maildir, "untraced");
    assert_same_bytes(&stored, FORGED_STRIPPED.as_bytes(), "untraced");

    let traced = write_config(home.path(), "traced.yaml", OWN);
    let crlf = FORGED.replace('\n', "\r\n");
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&traced)),
        crlf.as_bytes(),
        "traced",
    );
    let (path, stored) = take_only_message(&maildir, "traced");
    assert_eq!(path.parent(), Some(maildir.join("new").as_path()));
    let (lines, rest) = split_lines(&stored, 2);
    assert!(
        lines[0].starts_with(b"X-Backstop-Verdict: clean"),
        "{lines:?}"
    );
    assert_same_bytes(
        rest,
        FORGED_STRIPPED.replace('\n', "\r\n").as_bytes(),
        "traced",
    );

    // Into an mbox, and through a broken config, the same.
    let mbox = home.path().join("mbox");
    let broken = write_config(home.path(), "broken.yaml", "own: [\n");
    for config in [&traced, &broken] {
        deliver_ok(
            &mut deliver_mbox_cmd(home.path(), &mbox, Some(config)),
            FORGED.as_bytes(),
            "mbox",
        );
        let messages = mbox_messages(&fs::read(&mbox).expect("mbox"));
        fs::remove_file(&mbox).expect("rm");
        let text = String::from_utf8_lossy(&messages[0].1).into_owned();
        assert!(text.ends_with(FORGED_STRIPPED), "{text}");
        assert!(
            !text.contains("forged by the sender") && !text.contains("action=discard"),
            "{text}"
        );
    }
}

#[test]
fn filter_keeps_a_cr_only_message_whole() {
    let home = temp_home();
    let config = write_config(home.path(), "c.yaml", OWN);
    let input = FORGED.replace('\n', "\r");
    let mut cmd = backstop(home.path());
    cmd.args(["filter", "--config"]).arg(&config);
    let out = run_with_input(&mut cmd, input.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("X-Backstop-Verdict: clean"), "{text:?}");
    assert!(
        text.ends_with(&FORGED_STRIPPED.replace('\n', "\r")),
        "the message, less the sender's fields, must follow: {text:?}"
    );
}

/// A pipe whose reading end is closed: writing to it fails with EPIPE (backstop, like every
/// Rust program, ignores SIGPIPE), as when the program reading a host's output has gone.
fn broken_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    writer
}

#[test]
fn a_broken_stderr_or_stdout_is_no_panic() {
    let home = temp_home();
    let config = write_config(home.path(), "c.yaml", OWN);
    // deliver's usage error: 75 whatever happens, never 101 (a panic in eprintln!).
    let mut cmd = backstop(home.path());
    cmd.args(["deliver", "--bogus"]);
    let out = cmd
        .stdin(std::process::Stdio::null())
        .stderr(broken_pipe())
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(75),
        "deliver --bogus, stderr broken"
    );
    // The other commands report their errors with 2.
    let out = backstop(home.path())
        .args(["check", "/no/such/message.eml"])
        .stderr(broken_pipe())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "check, stderr broken");
    let out = backstop(home.path())
        .arg("lint")
        .arg(&config)
        .stdout(broken_pipe())
        .stderr(broken_pipe())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "lint, stdout broken");
    let message = write_config(home.path(), "message.eml", BACKSCATTER);
    let out = backstop(home.path())
        .arg("check")
        .arg(&message)
        .stdout(fs::File::create("/dev/full").expect("/dev/full"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "check > /dev/full");
    assert!(stderr_of(&out).contains("cannot write the verdict"));
}

#[test]
fn deliver_writes_no_mailbox_of_another_user() {
    let home = temp_home();
    let root = rustix::process::geteuid().is_root();
    // A mailbox that belongs to someone else: made so as root; an existing root-owned
    // directory otherwise.
    let foreign = if root {
        let m = home.path().join("theirs");
        fs::create_dir(&m).expect("mkdir");
        rustix::fs::chown(&m, Some(rustix::fs::Uid::from_raw(65534)), None).expect("chown");
        m
    } else {
        Path::new("/etc").to_path_buf()
    };
    let out = deliver_deferred(
        &mut deliver_cmd(home.path(), &foreign, None),
        BACKSCATTER.as_bytes(),
        "foreign Maildir",
    );
    let err = stderr_of(&out);
    assert!(
        err.contains("belongs to uid") && err.contains("mailbox owner"),
        "{err}"
    );
    assert!(all_files(&foreign, "new").is_empty() && !foreign.join("tmp").exists());
    if root {
        let mbox = home.path().join("their.mbox");
        fs::write(&mbox, b"").expect("touch");
        rustix::fs::chown(&mbox, Some(rustix::fs::Uid::from_raw(65534)), None).expect("chown");
        deliver_deferred(
            &mut deliver_mbox_cmd(home.path(), &mbox, None),
            BACKSCATTER.as_bytes(),
            "foreign mbox",
        );
        assert_eq!(fs::metadata(&mbox).expect("mbox").len(), 0);
    }
    // A mailbox of one's own, new or existing, is written.
    let own = home.path().join("Maildir");
    deliver_ok(
        &mut deliver_cmd(home.path(), &own, None),
        BACKSCATTER.as_bytes(),
        "own",
    );
    assert_eq!(all_files(&own, "new").len(), 1);
}

#[test]
fn filter_and_check_pass_a_message_over_max_size_unread() {
    let home = temp_home();
    let config = write_config(home.path(), "small.yaml", &format!("{OWN}max_size: 1000\n"));
    let mut input = FORGED.as_bytes().to_vec();
    input.extend(std::iter::repeat_n(b"padding line\n".as_slice(), 400).flatten());
    let mut cmd = backstop(home.path());
    cmd.args(["filter", "--config"]).arg(&config);
    let out = run_with_input(&mut cmd, &input);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let (lines, rest) = split_lines(&out.stdout, 2);
    assert!(lines[1].starts_with(b"X-Backstop-Reason: the message is larger than max_size"));
    let mut want = FORGED_STRIPPED.as_bytes().to_vec();
    want.extend(std::iter::repeat_n(b"padding line\n".as_slice(), 400).flatten());
    assert_same_bytes(rest, &want, "filter over max_size");

    let mut cmd = backstop(home.path());
    cmd.args(["check", "--config"]).arg(&config);
    let out = run_with_input(&mut cmd, &input);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("clean - inbox\n") && text.contains("larger than max_size"),
        "{text}"
    );
}

#[test]
fn folder_names_no_maildir_can_hold_are_config_errors() {
    let home = temp_home();
    for (text, why) in [
        ("folder: \"Back\\nscatter\"\n", "control character"),
        ("folder: \"Back\\tscatter\"\n", "control character"),
        ("layout: fs\nfolder: cur\n", "cur, new or tmp"),
        ("layout: fs\nfolder: Junk/tmp\n", "cur, new or tmp"),
    ] {
        let config = write_config(home.path(), "f.yaml", text);
        let out = backstop(home.path())
            .arg("lint")
            .arg(&config)
            .output()
            .expect("lint");
        assert_eq!(out.status.code(), Some(2), "{text:?}");
        assert!(
            stderr_of(&out).contains(why),
            "{text:?}: {}",
            stderr_of(&out)
        );
    }
    let config = write_config(home.path(), "f.yaml", "layout: maildir++\nfolder: cur\n");
    let out = backstop(home.path())
        .arg("lint")
        .arg(&config)
        .output()
        .expect("lint");
    assert_eq!(out.status.code(), Some(0), "Maildir++ keeps it in .cur");
}

/// A bounce whose sender filled every field a report prints with terminal controls: a
/// title-setting OSC, a screen clear, BEL, NUL, a carriage return and a right-to-left override.
fn full_of_controls() -> Vec<u8> {
    let nasty = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{0}\r\u{202e}";
    BACKSCATTER
        .replacen("Subject: ", &format!("Subject: {nasty}"), 1)
        .replace("mx.remote.example", &format!("mx{nasty}.remote.example"))
        .into_bytes()
}

fn assert_no_controls(bytes: &[u8], what: &str) {
    let text = String::from_utf8_lossy(bytes);
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| (c.is_control() && c != '\n') || c == '\u{202e}')
        .collect();
    assert!(bad.is_empty(), "{what} printed {bad:?}:\n{text}");
}

#[test]
fn no_command_prints_a_control_character_from_a_message() {
    let home = temp_home();
    let input = full_of_controls();
    let log = home.path().join("decisions.jsonl");
    let config = write_config(
        home.path(),
        "c.yaml",
        &format!("{OWN}log: {}\n", log.display()),
    );
    for command in ["check", "explain"] {
        let mut cmd = backstop(home.path());
        cmd.args([command, "--config"]).arg(&config);
        let out = run_with_input(&mut cmd, &input);
        assert_eq!(out.status.code(), Some(0), "{command}: {}", stderr_of(&out));
        if command == "explain" {
            // The subject is shown, escaped.
            assert!(String::from_utf8_lossy(&out.stdout).contains("\\x1b]0;pwned"));
        }
        assert_no_controls(&out.stdout, command);
        assert_no_controls(&out.stderr, command);
    }
    let maildir = home.path().join("Maildir");
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&config)),
        &input,
        "deliver",
    );
    let out = backstop(home.path())
        .args(["stats", "--config"])
        .arg(&config)
        .output()
        .expect("stats");
    assert_no_controls(&out.stdout, "stats");
    fs::write(maildir.join("new/2.host"), &input).expect("write");
    let out = backstop(home.path())
        .args(["scan", "--config"])
        .arg(&config)
        .arg(&maildir)
        .output()
        .expect("scan");
    assert_no_controls(&out.stdout, "scan");
    assert_no_controls(&out.stderr, "scan");
}

/// With HOME unset and no password entry for the user, `~/Maildir` cannot be found: deliver
/// defers and says why, rather than make a folder named `~` where the mail system runs.
#[test]
fn deliver_defers_when_no_home_can_be_found() {
    if !rustix::process::geteuid().is_root() {
        // Running as a uid with no password entry needs root (as CI runs).
        println!("not root: cannot run as a uid with no password entry");
        return;
    }
    let dir = temp_home();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(crate::util::bin());
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .arg("deliver")
            .current_dir(dir.path())
            .uid(54_321)
            .gid(54_321);
        run_with_input(&mut cmd, BACKSCATTER.as_bytes())
    };
    assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("HOME is unset"),
        "{}",
        stderr_of(&out)
    );
    assert!(!dir.path().join("~").exists(), "a folder named ~ was made");
}
