//! Integration tests: `backstop init` proposes the `own:` section from fixture mail the user
//! sent (a Sent Maildir, and a bounce of one message that carries the original), writes it as
//! a config that `lint` accepts and that makes that bounce legitimate, and never overwrites a
//! config.

use std::fs;

use crate::util::{backstop, fixture, temp_home};

#[test]
fn init_proposes_own_from_sent_mail_and_writes_a_config_lint_accepts() {
    let home = temp_home();
    let sent = fixture("init/Sent");
    let bounce = fixture("init/bounce.eml");
    // Without a config, the bounce of the user's own mail cannot be told from backscatter.
    let before = backstop(home.path())
        .args(["check", "--format", "word"])
        .arg(&bounce)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&before.stdout), "unverified-bounce");

    let out = backstop(home.path())
        .arg("init")
        .arg(&sent)
        .arg(&bounce)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    // Counted, with why: four From lines (one upper case), the first server in two messages
    // (a Sent copy with its Received line, and the returned original), and the address the
    // next server recorded for it.
    assert!(
        text.contains("    - example.jp  # the From of 4 messages"),
        "{text}"
    );
    assert!(
        text.contains("    - smtp.example.jp  # took your mail from you first, in 2 of 2 messages"),
        "{text}"
    );
    assert!(
        text.contains("    - 198.51.100.7/32  # smtp.example.jp sent from there, in 1 message"),
        "{text}"
    );
    // Neither the private client address nor the bouncer's server is proposed.
    assert!(
        !text.contains("192.168.1.5") && !text.contains("mx.remote.example"),
        "{text}"
    );
    assert!(text.contains("Nothing written"), "{text}");

    // --write: a new file, which lint accepts and which makes the bounce legitimate.
    let conf = home.path().join("new/dir/config.yaml");
    let wrote = backstop(home.path())
        .args(["init", "--write", "-c"])
        .arg(&conf)
        .arg(&sent)
        .arg(&bounce)
        .output()
        .unwrap();
    assert!(wrote.status.success(), "{wrote:?}");
    let written = fs::read_to_string(&conf).unwrap();
    assert!(written.starts_with("# backstop config, proposed by `backstop init`"));
    let lint = backstop(home.path())
        .arg("lint")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(lint.status.success(), "{lint:?}");
    let after = backstop(home.path())
        .args(["check", "--format", "word", "-c"])
        .arg(&conf)
        .arg(&bounce)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&after.stdout), "legit-bounce");

    // A second --write refuses, says why, and leaves the file as it was.
    let again = backstop(home.path())
        .args(["init", "--write", "-c"])
        .arg(&conf)
        .arg(&sent)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("exists: init never overwrites a config"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&conf).unwrap(), written);

    // Nothing to go by: said, and nothing written.
    let empty = home.path().join("empty");
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(empty.join(sub)).unwrap();
    }
    let none = backstop(home.path())
        .args(["init", "--write", "-c"])
        .arg(home.path().join("none.yaml"))
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("found nothing to propose"));
    assert!(!home.path().join("none.yaml").exists());
}
