//! The admin's side (issue 15): a site config merged under each user's, `backstop config`
//! showing where every setting came from, per-kind actions, and the system log.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::deliver::{BACKSCATTER, OWN, deliver_cmd, deliver_exits, deliver_ok, write_config};
use crate::util::{backstop, files_in, run_with_input, temp_home};

/// An automatic reply that names no message of the user's: unverified, kind auto-reply.
const AUTO_REPLY: &str = "Return-Path: <>\nFrom: Bob <bob@remote.example>\nTo: user@example.com\n\
Subject: Out of office\nMessage-ID: <ooo1@remote.example>\nAuto-Submitted: auto-replied\n\nI am away.\n";

/// A DSN that returned no part of the original: unverified, kind dsn.
const BARE_DSN: &str = "Return-Path: <>\nFrom: Mail Delivery System <MAILER-DAEMON@mx.foreign.example>\n\
To: user@example.com\nSubject: Undelivered Mail Returned to Sender\nMessage-ID: <b1@mx.foreign.example>\n\
Auto-Submitted: auto-replied\nMIME-Version: 1.0\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\n\
Content-Type: text/plain\n\nfailed.\n\n--B\nContent-Type: message/delivery-status\n\n\
Reporting-MTA: dns; mx.foreign.example\n\nFinal-Recipient: rfc822; nobody@foreign.example\n\
Action: failed\nStatus: 5.1.1\n\n--B--\n";

/// A site config file in its own directory (as /etc/backstop), mode 0644.
fn site_file(home: &Path, text: &str) -> std::path::PathBuf {
    let dir = home.join("etc-backstop");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// `cmd` with the site config at `site`.
fn with_site<'c>(cmd: &'c mut Command, site: &Path) -> &'c mut Command {
    cmd.env("BACKSTOP_SITE_CONFIG", site)
}

/// `backstop ARGS` with the site config; its exit status and outputs.
fn run(home: &Path, site: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = backstop(home);
    with_site(&mut cmd, site).args(args);
    let out = run_with_input(&mut cmd, b"");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_user_without_a_config_gets_the_site_config_and_a_users_keys_win_over_it() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    let site = site_file(home.path(), &format!("{OWN}folder: Site\n"));
    // The Exim every-user router: no config of the user's at all.
    let mut cmd = deliver_cmd(home.path(), &maildir, None);
    deliver_ok(
        with_site(&mut cmd, &site),
        BACKSCATTER.as_bytes(),
        "site only",
    );
    assert_eq!(files_in(&maildir.join(".Site/new")).len(), 1);
    // The user's own folder replaces the site's; the site's own.* still apply.
    let user = home.path().join(".config/backstop/config.yaml");
    fs::create_dir_all(user.parent().unwrap()).unwrap();
    fs::write(&user, "own:\n  domains: [example.net]\nfolder: Mine\n").unwrap();
    let mut cmd = deliver_cmd(home.path(), &maildir, None);
    deliver_ok(with_site(&mut cmd, &site), BACKSCATTER.as_bytes(), "both");
    assert_eq!(files_in(&maildir.join(".Mine/new")).len(), 1);
    let (code, out, err) = run(home.path(), &site, &["config", "-n"]);
    assert_eq!(code, Some(0), "{err}");
    let line = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in\n{out}"))
            .to_string()
    };
    let (s, u) = (site.display().to_string(), user.display().to_string());
    let domains = line("own.domains");
    assert!(
        domains.starts_with("own.domains = [example.com, example.net]")
            && domains.ends_with(&format!("# {s}:2, {u}:2")),
        "{domains}"
    );
    assert!(line("own.hosts").ends_with(&format!("# {s}:3")), "{out}");
    assert!(
        line("folder").starts_with("folder = Mine")
            && line("folder").ends_with(&format!("# {u}:3"))
    );
    // -n leaves the defaults out; without it they are there, marked.
    assert!(!out.contains("threshold = "), "{out}");
    let (_, all, _) = run(home.path(), &site, &["config"]);
    let threshold = all
        .lines()
        .find(|l| l.starts_with("threshold = 5"))
        .unwrap_or("");
    assert!(threshold.ends_with("# default"), "{all}");
}

#[test]
fn site_rules_and_user_rules_both_apply_and_config_says_where_each_is_written() {
    let home = temp_home();
    let site = site_file(
        home.path(),
        "rules:\n  - id: site-notice\n    field: subject\n    match: ['^Site notice']\n    score: 6\n    kind: ndr\n",
    );
    let user = write_config(
        home.path(),
        "c.yaml",
        "rules:\n  - id: null-sender\n    disabled: true\n",
    );
    let mut check = backstop(home.path());
    with_site(&mut check, &site)
        .args(["check", "--format", "word", "-c"])
        .arg(&user);
    let out = run_with_input(
        &mut check,
        b"From: a@b.example\nSubject: Site notice\n\nx\n",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "unverified-bounce");
    let (code, out, err) = run(
        home.path(),
        &site,
        &["config", "-n", "-c", &user.display().to_string()],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!(
            "rule site-notice = score +6, kind ndr, field subject  # {}:2:9\n",
            site.display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "rule null-sender = disabled  # {}:2:9\n",
            user.display()
        )),
        "{out}"
    );
    // Without -n the built-in rules are listed too, marked as such.
    let (_, all, _) = run(
        home.path(),
        &site,
        &["config", "-c", &user.display().to_string()],
    );
    assert!(
        all.contains(
            "rule daemon-from = score +4, kind ndr, field from  # built in (rules/default.yaml:"
        ),
        "{all}"
    );
    assert!(!all.contains("rule null-sender = score"), "{all}");
}

#[test]
fn a_site_config_others_can_write_is_refused_and_the_message_still_delivered() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    let site = site_file(
        home.path(),
        &format!("{OWN}actions: {{backscatter: discard}}\n"),
    );
    fs::set_permissions(&site, fs::Permissions::from_mode(0o666)).unwrap();
    let mut cmd = deliver_cmd(home.path(), &maildir, None);
    let out = deliver_exits(
        with_site(&mut cmd, &site),
        BACKSCATTER.as_bytes(),
        0,
        "untrusted site",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}: not trusted", site.display())) && err.contains("chmod go-w"),
        "{err}"
    );
    let inbox = files_in(&maildir.join("new"));
    assert_eq!(inbox.len(), 1, "delivered to the inbox, not discarded");
    let stored = fs::read_to_string(&inbox[0]).unwrap();
    assert!(
        stored.starts_with("X-Backstop-Error: config error, not filtered"),
        "{stored}"
    );
}

#[test]
fn errors_in_both_files_name_their_own_file_line_and_column() {
    let home = temp_home();
    let site = site_file(home.path(), "# site\nthreshold: five\n");
    let user = write_config(home.path(), "c.yaml", "own: {networks: [nope]}\n");
    let (code, _, err) = run(
        home.path(),
        &site,
        &["lint", "-c", &user.display().to_string()],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}:2:12: threshold takes a whole number",
            site.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:1:18: invalid network \"nope\"",
            user.display()
        )),
        "{err}"
    );
    // With no config of the user's, lint checks the site's alone.
    let (code, _, err) = run(home.path(), &site, &["lint"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("{}:2:12:", site.display())), "{err}");
}

#[test]
fn per_kind_actions_file_unverified_auto_replies_in_the_inbox_and_dsns_in_the_folder() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    let config = write_config(
        home.path(),
        "c.yaml",
        &format!(
            "{OWN}actions:\n  unverified-bounce:\n    auto-reply: inbox\n    dsn: folder\n  \
             backscatter: {{dsn: discard, other: folder}}\n"
        ),
    );
    let deliver = |input: &str, what: &str| {
        deliver_ok(
            &mut deliver_cmd(home.path(), &maildir, Some(&config)),
            input.as_bytes(),
            what,
        );
    };
    deliver(AUTO_REPLY, "auto-reply");
    let inbox = files_in(&maildir.join("new"));
    assert_eq!(inbox.len(), 1, "the unverified auto-reply in the inbox");
    let stored = fs::read_to_string(&inbox[0]).unwrap();
    assert!(
        stored.contains("unverified-bounce") && stored.contains("action=inbox"),
        "{stored}"
    );
    deliver(BARE_DSN, "dsn");
    assert_eq!(
        files_in(&maildir.join(".Backscatter/new")).len(),
        1,
        "the unverified DSN filed"
    );
    deliver(BACKSCATTER, "backscatter");
    assert_eq!(files_in(&maildir.join("new")).len(), 1);
    assert_eq!(
        files_in(&maildir.join(".Backscatter/new")).len(),
        1,
        "the forged DSN discarded"
    );
    let log = fs::read_to_string(home.path().join(".local/state/backstop/log.jsonl")).unwrap();
    assert!(
        log.lines()
            .last()
            .unwrap()
            .contains("\"action\":\"discard\""),
        "{log}"
    );
}

#[test]
fn lint_names_a_misspelt_kind_and_refuses_discarding_an_unverified_kind() {
    let home = temp_home();
    let site = home.path().join("none.yaml");
    let typo = write_config(
        home.path(),
        "a.yaml",
        "actions:\n  unverified-bounce: {dns: inbox}\n",
    );
    let (code, _, err) = run(
        home.path(),
        &site,
        &["lint", "-c", &typo.display().to_string()],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(":2:23: unknown key \"dns\": did you mean dsn?"),
        "{err}"
    );
    let discard = write_config(
        home.path(),
        "b.yaml",
        "actions:\n  unverified-bounce: {auto-reply: discard}\n",
    );
    let (code, _, err) = run(
        home.path(),
        &site,
        &["lint", "-c", &discard.display().to_string()],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(":2:22: only backscatter may be discarded"),
        "{err}"
    );
}

#[test]
fn syslog_gets_one_line_per_decision_and_a_missing_socket_changes_nothing_else() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    let socket_path = home.path().join("log.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    // A bound on a hang, not a timed assertion: the line is sent before deliver exits.
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let config = write_config(home.path(), "c.yaml", &format!("{OWN}syslog: true\n"));
    let mut cmd = deliver_cmd(home.path(), &maildir, Some(&config));
    cmd.env("BACKSTOP_SYSLOG_SOCKET", &socket_path);
    deliver_ok(&mut cmd, BACKSCATTER.as_bytes(), "syslog");
    let mut buf = [0u8; 2048];
    let n = socket.recv(&mut buf).expect("a syslog line");
    let line = String::from_utf8_lossy(&buf[..n]);
    assert!(line.starts_with("<22>backstop["), "{line}");
    assert!(
        line.contains("]: verdict=backscatter kind=dsn action=folder sender=\"\" message-id=\"20260303100004.AA11@mx.foreign.example\" stored=\""),
        "{line}"
    );
    // Nobody listening: the message is filed all the same, and stderr says why no line.
    drop(socket);
    let mut cmd = deliver_cmd(home.path(), &maildir, Some(&config));
    cmd.env("BACKSTOP_SYSLOG_SOCKET", &socket_path);
    let out = deliver_exits(&mut cmd, BACKSCATTER.as_bytes(), 0, "no syslog");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write to the system log"));
    assert_eq!(files_in(&maildir.join(".Backscatter/new")).len(), 2);
}

#[test]
fn config_output_is_escaped_for_the_terminal() {
    let home = temp_home();
    let site = home.path().join("none.yaml");
    let config = write_config(home.path(), "c.yaml", "maildir: \"/tmp/x\\e]0;pwned\\a\"\n");
    let (code, out, err) = run(
        home.path(),
        &site,
        &["config", "-c", &config.display().to_string()],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("maildir = /tmp/x\\x1b]0;pwned\\x07"), "{out}");
    assert!(!out.contains(['\x1b', '\x07']), "{out:?}");
}

/// The example site config is valid alone and under the example user config.
#[test]
fn the_example_site_config_passes_lint_alone_and_under_the_example_config() {
    let home = temp_home();
    let examples = crate::util::root().join("packaging/examples");
    let site = examples.join("site-config.yaml");
    let user = examples.join("config.yaml").display().to_string();
    for args in [vec!["lint"], vec!["lint", "-c", &user]] {
        let (code, out, err) = run(home.path(), &site, &args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(out.contains(": ok ("), "{args:?}: {out}");
    }
}
