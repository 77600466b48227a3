//! Integration tests: `scan` and `stats`, driven through the built binary.
//!
//! What they prove (issue 7), on a Maildir and an mbox built from the corpus fixtures with a
//! config whose own domains, hosts and networks make some of them backscatter: `scan` counts
//! exactly what `check` says for each message; `--apply` moves exactly the backscatter (names
//! and flags kept, bytes unchanged) and nothing else; `--apply` killed at any of its steps (by
//! the debug-build crash points) or at random moments (SIGKILL, SIGINT), then run again, ends
//! in the same state as an uninterrupted run, with every message present exactly once; and
//! `stats` counts what real `deliver` runs wrote to the decision log.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Rng, backstop, fixture, fixture_bytes, run_with_input, temp_home};

/// With this, about half of the fixtures are backscatter.
const OWN: &str =
    "own:\n  domains: [example.jp]\n  hosts: [mail.own.example]\n  networks: [198.51.100.0/24]\n";

/// Every step of an mbox `--apply` at which the debug build can be made to crash.
const MBOX_POINTS: [&str; 12] = [
    "journal-created",
    "locked",
    "moves-recorded",
    "folder-staged",
    "folder-renamed",
    "folder-done",
    "mbox-staged",
    "mbox-renamed",
    "mbox-done",
    "unlocked",
    "kept",
    "closed",
];

/// The record a Maildir `--apply` keeps for `--undo`.
const UNDO_RECORD: &str = "backstop-scan-undo";

/// Every fixture message (bounces and ham), sorted.
fn corpus() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "eml") {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    for top in ["corpus/bounces", "corpus/ham"] {
        walk(&fixture(top), &mut v);
    }
    v.sort();
    assert!(v.len() > 100, "the fixture corpus is missing");
    v
}

/// Every `step`-th fixture: a smaller mix for the tests that run many times.
fn subset(step: usize) -> Vec<PathBuf> {
    corpus().into_iter().step_by(step).collect()
}

fn write_config(home: &Path, extra: &str) -> PathBuf {
    let conf = home.join("conf.yaml");
    let text = format!(
        "{OWN}mbox_folder: {}\n{extra}",
        home.join("mail/Backscatter.mbox").display()
    );
    fs::write(&conf, text).unwrap();
    conf
}

type VerdictKind = (String, Option<String>);

/// The verdict and kind `check --format json` gives a file.
fn check(home: &Path, conf: &Path, file: &Path) -> VerdictKind {
    let out = backstop(home)
        .args(["check", "--format", "json", "-c"])
        .arg(conf)
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "check {}: {out:?}", file.display());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["verdict"].as_str().unwrap().to_string(),
        v["kind"].as_str().map(str::to_string),
    )
}

/// `check` on every file, two at a time.
fn check_all(home: &Path, conf: &Path, files: &[PathBuf]) -> Vec<VerdictKind> {
    let half = files.len().div_ceil(2);
    std::thread::scope(|s| {
        let parts: Vec<_> = files
            .chunks(half.max(1))
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|f| check(home, conf, f))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().unwrap()).collect()
    })
}

/// What `check` says of fixture messages under the test config (`conf` must be one that
/// [`write_config`] made); each file is checked once for all the tests.
fn verdicts_of(home: &Path, conf: &Path, msgs: &[(PathBuf, PathBuf)]) -> Vec<VerdictKind> {
    static CACHE: Mutex<BTreeMap<PathBuf, VerdictKind>> = Mutex::new(BTreeMap::new());
    let missing: Vec<PathBuf> = {
        let cache = CACHE.lock().unwrap();
        msgs.iter()
            .map(|(_, src)| src.clone())
            .filter(|src| !cache.contains_key(src))
            .collect()
    };
    let found = check_all(home, conf, &missing);
    let mut cache = CACHE.lock().unwrap();
    cache.extend(missing.into_iter().zip(found));
    msgs.iter().map(|(_, src)| cache[src].clone()).collect()
}

fn tally<'a>(verdicts: impl IntoIterator<Item = &'a VerdictKind>) -> BTreeMap<VerdictKind, u64> {
    let mut m = BTreeMap::new();
    for v in verdicts {
        *m.entry(v.clone()).or_default() += 1;
    }
    m
}

fn scan_cmd(home: &Path, conf: &Path, args: &[&str], target: &Path) -> Command {
    let mut cmd = backstop(home);
    cmd.arg("scan").arg("-c").arg(conf).args(args).arg(target);
    cmd
}

fn run_ok(mut cmd: Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn scan_json(home: &Path, conf: &Path, args: &[&str], target: &Path) -> Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = run_ok(scan_cmd(home, conf, &all, target));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The (verdict, kind) counts of a scan report.
fn report_counts(report: &Value) -> BTreeMap<VerdictKind, u64> {
    report["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                (
                    c["verdict"].as_str().unwrap().to_string(),
                    c["kind"].as_str().map(str::to_string),
                ),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Every file under `dir`, by path relative to it, with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if p.file_name().is_some_and(|n| n == UNDO_RECORD) {
                // The record of the last --apply, for --undo: its own tests look at it.
            } else {
                out.insert(
                    p.strip_prefix(base).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            fs::copy(&p, &dest).unwrap();
        }
    }
}

fn make_maildir(dir: &Path) {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
}

/// Files the messages into `dir` in turn as `new/NAME`, `cur/NAME:2,S` and `cur/NAME:2,RS`;
/// returns each one's path relative to `dir` and its source.
fn fill_maildir(dir: &Path, files: &[PathBuf], first: usize) -> Vec<(PathBuf, PathBuf)> {
    make_maildir(dir);
    files
        .iter()
        .enumerate()
        .map(|(i, src)| {
            let n = first + i;
            let base = format!(
                "{}.M{n}P4242Q{n}.scan-test,S={}",
                1_700_000_000 + n,
                fs::metadata(src).unwrap().len()
            );
            let rel = match n % 3 {
                0 => PathBuf::from("new").join(base),
                1 => PathBuf::from("cur").join(format!("{base}:2,S")),
                _ => PathBuf::from("cur").join(format!("{base}:2,RS")),
            };
            fs::copy(src, dir.join(&rel)).unwrap();
            (rel, src.clone())
        })
        .collect()
}

#[test]
fn maildir_counts_match_check_and_apply_moves_exactly_the_backscatter() {
    let home = temp_home();
    let conf = write_config(home.path(), "");
    let root = home.path().join("Maildir");
    let all = corpus();
    let (in_lists, in_inbox) = all.split_at(20);
    let inbox = fill_maildir(&root, in_inbox, 0);
    let lists = fill_maildir(&root.join(".Lists"), in_lists, 1000);
    fs::write(root.join(".Lists/maildirfolder"), b"").unwrap();
    let (inbox_v, lists_v) = (
        verdicts_of(home.path(), &conf, &inbox),
        verdicts_of(home.path(), &conf, &lists),
    );
    let is_bs = |v: &VerdictKind| v.0 == "backscatter";
    assert!(
        inbox_v.iter().filter(|v| is_bs(v)).count() > 10,
        "the config makes too little backscatter"
    );
    assert!(lists_v.iter().any(is_bs) && lists_v.iter().any(|v| !is_bs(v)));

    // One folder, then the whole tree: the counts are check's, message for message. The dry
    // runs change nothing: the tree is compared with this snapshot after them.
    let before = tree(&root);
    let one = scan_json(home.path(), &conf, &[], &root);
    assert_eq!(report_counts(&one), tally(&inbox_v));
    assert_eq!(one["messages"], inbox.len());
    assert_eq!(one["to_move"], inbox_v.iter().filter(|v| is_bs(v)).count());
    let whole = scan_json(home.path(), &conf, &["--recursive", "--jobs", "1"], &root);
    assert_eq!(report_counts(&whole), tally(inbox_v.iter().chain(&lists_v)));
    let days: u64 = whole["backscatter_per_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["backscatter"].as_u64().unwrap())
        .sum();
    assert_eq!(days, whole["verdicts"]["backscatter"].as_u64().unwrap());

    // The dry runs changed nothing.
    assert!(tree(&root) == before, "a dry run changed the Maildir");
    assert!(!root.join(".Backscatter").exists());

    // --apply moves exactly the backscatter, keeping names (and so flags) and bytes.
    let applied = scan_json(home.path(), &conf, &["--recursive", "--apply"], &root);
    let mut want = before.clone();
    let mut moved = 0;
    for (folder, msgs, verdicts) in [("", &inbox, &inbox_v), (".Lists", &lists, &lists_v)] {
        for ((rel, _), v) in msgs.iter().zip(verdicts) {
            if is_bs(v) {
                let bytes = want.remove(&Path::new(folder).join(rel)).unwrap();
                assert!(
                    want.insert(Path::new(".Backscatter").join(rel), bytes)
                        .is_none()
                );
                moved += 1;
            }
        }
    }
    want.insert(".Backscatter/maildirfolder".into(), Vec::new());
    want.insert("subscriptions".into(), b"V\t2\n\nBackscatter\n".to_vec());
    assert_eq!(applied["moved"], moved);
    let after = tree(&root);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert!(after == want, "moved files must keep their bytes");

    // Again: nothing left to move, nothing changes.
    let again = scan_json(home.path(), &conf, &["--recursive", "--apply"], &root);
    assert_eq!(
        (again["to_move"].as_u64(), again["moved"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(tree(&root) == want);

    // Unverified bounces move only when asked.
    let unverified = scan_json(
        home.path(),
        &conf,
        &["-r", "--apply", "--include-unverified"],
        &root,
    );
    let n_unv = inbox_v
        .iter()
        .chain(&lists_v)
        .filter(|v| v.0 == "unverified-bounce")
        .count();
    assert!(n_unv > 0);
    assert_eq!(unverified["moved"], n_unv);
    let rest = scan_json(home.path(), &conf, &["-r"], &root);
    assert_eq!(rest["verdicts"]["unverified-bounce"], 0);
    assert_eq!(rest["verdicts"]["backscatter"], 0);
}

/// One message as an mbox holds it, and as `check` must see it.
struct MboxMsg {
    /// `From ` line, the mboxrd-quoted message, a line end if it had none, the empty line.
    chunk: Vec<u8>,
    /// `From ` line and the message as it was (what `scan` judges).
    plain: Vec<u8>,
}

/// Writes a fixture the way an mboxrd writer (`deliver`) does, written from the format's spec.
fn mbox_msg(eml: &[u8]) -> MboxMsg {
    let (from_line, content): (Vec<u8>, &[u8]) = if eml.starts_with(b"From ") {
        let nl = eml.iter().position(|&b| b == b'\n').unwrap();
        let line = eml[..nl].strip_suffix(b"\r").unwrap_or(&eml[..nl]);
        ([line, b"\n"].concat(), &eml[nl + 1..])
    } else {
        (
            b"From MAILER-DAEMON Thu Nov 26 07:38:00 2026\n".to_vec(),
            eml,
        )
    };
    let mut chunk = from_line.clone();
    let mut plain = from_line;
    for line in content.split_inclusive(|&b| b == b'\n') {
        let gts = line.iter().take_while(|&&b| b == b'>').count();
        if line[gts..].starts_with(b"From ") {
            chunk.push(b'>');
        }
        chunk.extend_from_slice(line);
        plain.extend_from_slice(line);
    }
    if !content.ends_with(b"\n") {
        chunk.push(b'\n');
        plain.push(b'\n');
    }
    chunk.push(b'\n');
    MboxMsg { chunk, plain }
}

/// A message already in the backscatter mbox before the scan.
const OLD_FOLDER_MESSAGE: &[u8] =
    b"From old@example.org Mon Nov 23 10:00:00 2026\nSubject: old\n\nalready here\n\n";

#[test]
fn mbox_counts_match_check_and_apply_moves_exactly_the_backscatter() {
    let home = temp_home();
    let conf = write_config(home.path(), "");
    // Every other fixture: `check` costs a process each, and the Maildir test checks them all.
    let msgs: Vec<MboxMsg> = subset(2)
        .iter()
        .map(|p| mbox_msg(&fs::read(p).unwrap()))
        .collect();
    let checks = home.path().join("check");
    fs::create_dir(&checks).unwrap();
    let files: Vec<PathBuf> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let f = checks.join(format!("{i}.mbox-msg"));
            fs::write(&f, &m.plain).unwrap();
            f
        })
        .collect();
    let verdicts = check_all(home.path(), &conf, &files);
    let is_bs = |v: &VerdictKind| v.0 == "backscatter";
    assert!(verdicts.iter().filter(|v| is_bs(v)).count() > 10);
    let inbox = home.path().join("inbox.mbox");
    let inbox_bytes: Vec<u8> = msgs.iter().flat_map(|m| m.chunk.clone()).collect();
    fs::write(&inbox, &inbox_bytes).unwrap();
    fs::create_dir(home.path().join("mail")).unwrap();
    let folder = home.path().join("mail/Backscatter.mbox");
    fs::write(&folder, OLD_FOLDER_MESSAGE).unwrap();

    let dry = scan_json(home.path(), &conf, &[], &inbox);
    assert_eq!(report_counts(&dry), tally(&verdicts));
    assert_eq!(dry["messages"], msgs.len());
    assert_eq!(fs::read(&inbox).unwrap(), inbox_bytes);
    assert_eq!(fs::read(&folder).unwrap(), OLD_FOLDER_MESSAGE);

    let applied = scan_json(home.path(), &conf, &["--apply"], &inbox);
    let n_bs = verdicts.iter().filter(|v| is_bs(v)).count();
    assert_eq!(applied["moved"], n_bs);
    let (moved, kept): (Vec<_>, Vec<_>) = msgs.iter().zip(&verdicts).partition(|(_, v)| is_bs(v));
    let want_inbox: Vec<u8> = kept.iter().flat_map(|(m, _)| m.chunk.clone()).collect();
    let mut want_folder = OLD_FOLDER_MESSAGE.to_vec();
    want_folder.extend(moved.iter().flat_map(|(m, _)| m.chunk.clone()));
    assert!(
        fs::read(&inbox).unwrap() == want_inbox,
        "the inbox must keep exactly the rest, byte for byte"
    );
    assert!(
        fs::read(&folder).unwrap() == want_folder,
        "the folder must gain exactly the backscatter"
    );
    assert_eq!(
        dir_names(home.path()),
        [
            ".inbox.mbox.backstop-scan.undo",
            "check",
            "conf.yaml",
            "inbox.mbox",
            "mail"
        ],
        "no journal, staged file or lock is left: only the record for --undo"
    );
    assert_eq!(dir_names(&home.path().join("mail")), ["Backscatter.mbox"]);

    // The messages left are judged as before; a second run moves nothing.
    let again = scan_json(home.path(), &conf, &["--apply"], &inbox);
    assert_eq!(again["moved"], 0);
    assert_eq!(
        report_counts(&again),
        tally(verdicts.iter().filter(|v| !is_bs(v)))
    );
    assert!(fs::read(&inbox).unwrap() == want_inbox);
    // And scanning the backscatter mbox itself finds them all, and moves nothing.
    let itself = scan_json(home.path(), &conf, &["--apply"], &folder);
    assert_eq!(itself["verdicts"]["backscatter"], n_bs);
    assert_eq!(itself["to_move"], 0);
    assert!(fs::read(&folder).unwrap() == want_folder);
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Runs `cmd` and stops it: with `fault` (a crash point) it must die by SIGKILL there;
/// otherwise it gets `signal` after `after`. Returns whether it finished all the same.
fn interrupt(
    mut cmd: Command,
    fault: Option<&str>,
    after: Duration,
    signal: rustix::process::Signal,
) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    if let Some(point) = fault {
        cmd.env("BACKSTOP_FAULT", format!("scan:{point}"));
        let status = cmd.status().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "the crash point {point} was not reached"
        );
        return false;
    }
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(after);
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
    let status = child.wait().unwrap();
    // Killed, finished, or (SIGINT/SIGTERM) stopped cleanly: never any other failure.
    assert!(
        status.success() || status.signal().is_some() || status.code() == Some(130),
        "unexpected status {status:?}"
    );
    status.success()
}

#[test]
fn killed_maildir_apply_resumes_to_the_same_end_state() {
    let home = temp_home();
    let conf = write_config(home.path(), "");
    let template = home.path().join("template");
    fill_maildir(&template, &subset(6), 0);

    let reference = home.path().join("reference");
    copy_tree(&template, &reference);
    let started = Instant::now();
    run_ok(scan_cmd(home.path(), &conf, &["--apply"], &reference));
    let took = started.elapsed();
    let want = tree(&reference);
    // The messages the uninterrupted run moved (their names are the same in both folders).
    let backscatter: Vec<PathBuf> = want
        .keys()
        .filter_map(|k| k.strip_prefix(".Backscatter").ok())
        .filter(|k| k.starts_with("cur") || k.starts_with("new"))
        .map(Path::to_path_buf)
        .collect();
    assert!(
        backscatter.len() >= 8,
        "too little backscatter: {backscatter:?}"
    );

    let mut rng = Rng::new("killed_maildir_apply_resumes_to_the_same_end_state");
    let last = format!("moved-{}", backscatter.len());
    let mut rounds: Vec<(Option<&str>, u64, rustix::process::Signal)> = vec![
        (Some("moved-1"), 0, rustix::process::Signal::KILL),
        (Some("moved-5"), 0, rustix::process::Signal::KILL),
        (Some(last.as_str()), 0, rustix::process::Signal::KILL),
    ];
    let span = took.as_millis() as u64 * 3 / 2 + 1;
    for _ in 0..4 {
        rounds.push((None, rng.below(span), rustix::process::Signal::KILL));
    }
    for _ in 0..2 {
        rounds.push((None, rng.below(span), rustix::process::Signal::INT));
    }
    for (n, (fault, ms, signal)) in rounds.into_iter().enumerate() {
        let work = home.path().join(format!("work{n}"));
        copy_tree(&template, &work);
        interrupt(
            scan_cmd(home.path(), &conf, &["--apply"], &work),
            fault,
            Duration::from_millis(ms),
            signal,
        );
        // Killed while it held Dovecot's subscriptions.lock: the rerun must not break a lock
        // that young (Dovecot waits 30 s), so subscribing the folder is left to a later run.
        // Every message is where it belongs all the same.
        let lock_left = work.join("subscriptions.lock").exists();
        run_ok(scan_cmd(home.path(), &conf, &["--apply"], &work));
        let mut got = tree(&work);
        let mut want = want.clone();
        if lock_left {
            for t in [&mut got, &mut want] {
                for name in [
                    "subscriptions",
                    "subscriptions.lock",
                    ".Backscatter/maildirfolder",
                ] {
                    t.remove(Path::new(name));
                }
            }
        }
        assert!(
            got == want,
            "round {n} ({fault:?}, {ms} ms, {signal:?}, lock left: {lock_left}) differs: {:?}",
            got.keys().collect::<Vec<_>>()
        );
        // The interrupted apply and the one that finished it are undone as one.
        let undone = scan_json(home.path(), &conf, &["--undo"], &work);
        assert_eq!(undone["restored"], backscatter.len(), "round {n}: {undone}");
        assert!(
            messages_of(&work) == tree(&template),
            "round {n}: the undo did not put every message back"
        );
    }

    // A run that died between link() and unlink() left the message under both names.
    let work = home.path().join("linked");
    copy_tree(&template, &work);
    make_maildir(&work.join(".Backscatter"));
    let rel = &backscatter[0];
    fs::hard_link(work.join(rel), work.join(".Backscatter").join(rel)).unwrap();
    let report = scan_json(home.path(), &conf, &["--apply"], &work);
    assert_eq!(report["already_moved"], 1);
    assert!(tree(&work) == want);

    // A different file under the same name is never overwritten, and the source stays.
    let work = home.path().join("conflict");
    copy_tree(&template, &work);
    make_maildir(&work.join(".Backscatter"));
    fs::write(work.join(".Backscatter").join(rel), b"someone else's\n").unwrap();
    let out = scan_cmd(home.path(), &conf, &["--apply"], &work)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a conflict is reported");
    assert_eq!(
        fs::read(work.join(".Backscatter").join(rel)).unwrap(),
        b"someone else's\n"
    );
    assert_eq!(
        fs::read(work.join(rel)).unwrap(),
        want[&Path::new(".Backscatter").join(rel)]
    );
}

#[test]
fn killed_mbox_apply_resumes_to_the_same_end_state() {
    let home = temp_home();
    let conf = write_config(home.path(), "");
    let msgs: Vec<MboxMsg> = subset(6)
        .iter()
        .map(|p| mbox_msg(&fs::read(p).unwrap()))
        .collect();
    let template: Vec<u8> = msgs.iter().flat_map(|m| m.chunk.clone()).collect();
    // A backscatter message that arrives between the crash and the next run.
    let probe = home.path().join("probe");
    let late = corpus()
        .iter()
        .skip(1)
        .step_by(6)
        .map(|p| mbox_msg(&fs::read(p).unwrap()))
        .find(|m| {
            fs::write(&probe, &m.plain).unwrap();
            check(home.path(), &conf, &probe).0 == "backscatter"
        })
        .unwrap();
    fs::remove_file(&probe).unwrap();

    let inbox = home.path().join("inbox.mbox");
    let mail = home.path().join("mail");
    let folder = mail.join("Backscatter.mbox");
    let record = home.path().join(".inbox.mbox.backstop-scan.undo");
    let setup = || {
        fs::write(&inbox, &template).unwrap();
        let _ = fs::remove_dir_all(&mail);
        fs::create_dir(&mail).unwrap();
        fs::write(&folder, OLD_FOLDER_MESSAGE).unwrap();
        // The undo record of the run before (the reference run's, closed) goes with its mail.
        let _ = fs::remove_file(&record);
    };
    let arrive = || {
        let mut data = fs::read(&inbox).unwrap();
        data.extend_from_slice(&late.chunk);
        fs::write(&inbox, data).unwrap();
    };

    // The reference: one uninterrupted run over the inbox with the late message.
    setup();
    arrive();
    let started = Instant::now();
    let report = scan_json(home.path(), &conf, &["--apply"], &inbox);
    let took = started.elapsed();
    assert!(report["moved"].as_u64().unwrap() >= 8);
    let (want_inbox, want_folder) = (fs::read(&inbox).unwrap(), fs::read(&folder).unwrap());
    assert!(want_folder.ends_with(&late.chunk));
    // Every message is in exactly one of the two files.
    let mut all: Vec<u8> = OLD_FOLDER_MESSAGE.to_vec();
    all.extend_from_slice(&template);
    all.extend_from_slice(&late.chunk);
    assert_eq!(want_inbox.len() + want_folder.len(), all.len());

    let mut rng = Rng::new("killed_mbox_apply_resumes_to_the_same_end_state");
    let kill = rustix::process::Signal::KILL;
    // (crash point of the first run, crash point of the second run, random delay, signal)
    let mut rounds: Vec<(Option<&str>, Option<&str>, u64, rustix::process::Signal)> = MBOX_POINTS
        .iter()
        .map(|p| (Some(*p), None, 0, kill))
        .collect();
    // The run that recovers dies too.
    for (a, b) in [
        ("folder-renamed", "mbox-staged"),
        ("locked", "folder-staged"),
        ("folder-staged", "folder-done"),
        ("mbox-staged", "moves-recorded"),
    ] {
        rounds.push((Some(a), Some(b), 0, kill));
    }
    let span = took.as_millis() as u64 * 3 / 2 + 1;
    for _ in 0..4 {
        rounds.push((None, None, rng.below(span), kill));
    }
    for _ in 0..2 {
        rounds.push((None, None, rng.below(span), rustix::process::Signal::INT));
    }
    for (n, (first, second, ms, signal)) in rounds.into_iter().enumerate() {
        setup();
        let exited = interrupt(
            scan_cmd(home.path(), &conf, &["--apply"], &inbox),
            first,
            Duration::from_millis(ms),
            signal,
        );
        // A signal that lands after the apply closed its undo record (its last step) but
        // before the process exits leaves it finished all the same: the next apply starts a
        // record of its own. (setup removed any earlier record, so one here is this run's.)
        let finished =
            exited || fs::read_to_string(&record).is_ok_and(|t| t.lines().any(|l| l == "closed"));
        arrive();
        if let Some(point) = second {
            interrupt(
                scan_cmd(home.path(), &conf, &["--apply"], &inbox),
                Some(point),
                Duration::ZERO,
                kill,
            );
        }
        run_ok(scan_cmd(home.path(), &conf, &["--apply"], &inbox));
        let what = format!("round {n} ({first:?} then {second:?}, {ms} ms, {signal:?})");
        assert!(
            fs::read(&inbox).unwrap() == want_inbox,
            "{what}: the inbox differs"
        );
        assert!(
            fs::read(&folder).unwrap() == want_folder,
            "{what}: the backscatter mbox differs"
        );
        // No journal, staged file or lock is left behind: only the record for --undo.
        assert_eq!(
            dir_names(home.path()),
            [
                ".inbox.mbox.backstop-scan.undo",
                "conf.yaml",
                "inbox.mbox",
                "mail"
            ],
            "{what}"
        );
        // The interrupted apply and the one that finished it are undone as one: every
        // message of the inbox is back (at its end), the old backscatter stays. (When the
        // first run was not interrupted after all, the last apply moved the late one alone.)
        let undone = scan_json(home.path(), &conf, &["--undo"], &inbox);
        assert_eq!(undone["missing"], 0, "{what}: {undone}");
        let mut back = sorted_chunks(&all[OLD_FOLDER_MESSAGE.len()..]);
        let mut kept = sorted_chunks(OLD_FOLDER_MESSAGE);
        if finished {
            back = sorted_chunks(&want_inbox);
            back.extend(sorted_chunks(&late.chunk));
            back.sort();
            kept = sorted_chunks(&want_folder);
            let late_at = kept
                .iter()
                .position(|c| sorted_chunks(&late.chunk)[0] == *c);
            kept.remove(late_at.unwrap());
        }
        assert!(
            sorted_chunks(&fs::read(&folder).unwrap()) == kept,
            "{what}: the backscatter mbox is not as before the apply"
        );
        assert!(
            sorted_chunks(&fs::read(&inbox).unwrap()) == back,
            "{what}: the inbox did not get every message back"
        );
        assert_eq!(dir_names(&mail), ["Backscatter.mbox"], "{what}");
    }
}

#[test]
fn a_dry_run_reports_an_unfinished_apply_and_leaves_it() {
    let home = temp_home();
    let conf = write_config(home.path(), "");
    let msgs: Vec<MboxMsg> = subset(8)
        .iter()
        .map(|p| mbox_msg(&fs::read(p).unwrap()))
        .collect();
    let inbox = home.path().join("inbox.mbox");
    fs::write(
        &inbox,
        msgs.iter()
            .flat_map(|m| m.chunk.clone())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    interrupt(
        scan_cmd(home.path(), &conf, &["--apply"], &inbox),
        Some("folder-done"),
        Duration::ZERO,
        rustix::process::Signal::KILL,
    );
    let journal = home.path().join(".inbox.mbox.backstop-scan");
    assert!(journal.exists());
    let before = (
        fs::read(&inbox).unwrap(),
        fs::read(home.path().join("mail/Backscatter.mbox")).unwrap(),
    );
    let dry = scan_json(home.path(), &conf, &[], &inbox);
    let notes = dry["notes"].to_string();
    assert!(notes.contains("run with --apply to finish it"), "{notes}");
    assert!(journal.exists());
    assert_eq!(
        (
            fs::read(&inbox).unwrap(),
            fs::read(home.path().join("mail/Backscatter.mbox")).unwrap()
        ),
        before
    );
    let done = scan_json(home.path(), &conf, &["--apply"], &inbox);
    assert!(done["recovered"].as_u64().unwrap() > 0);
    assert!(!journal.exists());
}

#[test]
fn stats_counts_match_a_log_written_by_deliver() {
    let home = temp_home();
    let log = home.path().join("decisions.log");
    let conf = write_config(
        home.path(),
        &format!(
            "maildir: {}\nlog: {}\n",
            home.path().join("Maildir").display(),
            log.display()
        ),
    );
    let files = subset(5);
    let pairs: Vec<(PathBuf, PathBuf)> = files.iter().map(|f| (f.clone(), f.clone())).collect();
    let checked: Vec<String> = verdicts_of(home.path(), &conf, &pairs)
        .into_iter()
        .map(|v| v.0)
        .collect();
    for f in &files {
        let mut cmd = backstop(home.path());
        cmd.arg("deliver").arg("-c").arg(&conf);
        let out = run_with_input(&mut cmd, &fs::read(f).unwrap());
        assert!(out.status.success(), "deliver {}: {out:?}", f.display());
    }
    // Every entry moved to one day, so that deliveries on both sides of midnight (UTC) do not
    // make two days; then a torn line, as a crash while appending would leave.
    let today = "2026-03-01";
    let mut text = String::new();
    for line in fs::read_to_string(&log).unwrap().lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let time = v["time"].as_str().unwrap();
        assert!(
            time.len() == 20 && &time[10..11] == "T" && time.ends_with('Z'),
            "{time}"
        );
        v["time"] = Value::from(format!("{today}{}", &time[10..]));
        text.push_str(&format!("{v}\n"));
    }
    text.push_str("{\"time\":\"2026-");
    fs::write(&log, &text).unwrap();

    // What the log says, read independently.
    let mut verdicts: BTreeMap<String, u64> = BTreeMap::new();
    let mut senders: BTreeMap<String, u64> = BTreeMap::new();
    let (mut forged, mut ips) = (
        BTreeMap::<String, u64>::new(),
        BTreeMap::<String, u64>::new(),
    );
    for line in text.lines().filter(|l| l.ends_with('}')) {
        let v: Value = serde_json::from_str(line).unwrap();
        let verdict = v["verdict"].as_str().unwrap().to_string();
        if verdict != "clean" {
            let from = v["from"].as_str().unwrap_or("").to_lowercase();
            let addr = match (from.rfind('<'), from.rfind('>')) {
                (Some(a), Some(b)) if a < b => from[a + 1..b].trim().to_string(),
                _ => from.trim().to_string(),
            };
            *senders
                .entry(if addr.is_empty() {
                    "(none)".into()
                } else {
                    addr
                })
                .or_default() += 1;
        }
        if verdict == "backscatter" {
            if let Some(f) = v["original_from"].as_str() {
                let f = f.to_lowercase();
                let addr = match (f.rfind('<'), f.rfind('>')) {
                    (Some(a), Some(b)) if a < b => f[a + 1..b].trim().to_string(),
                    _ => f.trim().to_string(),
                };
                *forged.entry(addr).or_default() += 1;
            }
            if let Some(ip) = v["original_ip"].as_str() {
                *ips.entry(ip.to_string()).or_default() += 1;
            }
        }
        *verdicts.entry(verdict).or_default() += 1;
    }
    // deliver records where the originals of backscatter came from.
    assert!(!forged.is_empty() && !ips.is_empty(), "{forged:?} {ips:?}");
    assert_eq!(verdicts.values().sum::<u64>(), files.len() as u64);
    assert_eq!(
        verdicts,
        checked.iter().fold(BTreeMap::new(), |mut m, v| {
            *m.entry(v.clone()).or_default() += 1;
            m
        })
    );

    let out = run_ok({
        let mut c = backstop(home.path());
        c.args([
            "stats",
            "--format",
            "json",
            "--wave-min",
            "1",
            "--top",
            "100",
        ])
        .arg(&log);
        c
    });
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["entries"], files.len());
    assert_eq!(stats["unreadable_lines"], 1);
    for (verdict, n) in &verdicts {
        assert_eq!(stats["totals"][verdict.as_str()], *n, "{verdict}");
        assert_eq!(stats["days"][0][verdict.as_str()], *n, "{verdict}");
    }
    assert_eq!(stats["days"].as_array().map(Vec::len), Some(1));
    assert_eq!(stats["days"][0]["date"], today);
    let listed = |key: &str| -> BTreeMap<String, u64> {
        stats[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["value"].as_str().unwrap().to_string(),
                    c["count"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(listed("top_forged_senders"), forged);
    assert_eq!(listed("top_original_ips"), ips);
    let top: BTreeMap<String, u64> = stats["top_senders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["sender"].as_str().unwrap().to_string(),
                s["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(top, senders);
    assert!(verdicts.get("backscatter").is_some_and(|&n| n > 0));
    assert_eq!(stats["current_wave_started"], today);

    // The default log is the config's; the text output names the wave.
    let out = run_ok({
        let mut c = backstop(home.path());
        c.args(["stats", "--wave-min", "1", "-c"]).arg(&conf);
        c
    });
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("Current backscatter wave: started {today}")),
        "{text}"
    );
    assert!(text.contains(&format!("{} entries", files.len())), "{text}");
}

#[test]
fn apply_moves_nothing_through_a_symbolic_link() {
    let home = temp_home();
    let conf = write_config(home.path(), "");
    let root = home.path().join("Maildir");
    let files = subset(4);
    let inbox = fill_maildir(&root, &files, 0);
    let n_bs = verdicts_of(home.path(), &conf, &inbox)
        .iter()
        .filter(|v| v.0 == "backscatter")
        .count();
    assert!(n_bs > 0);
    // A folder that is a link to a Maildir elsewhere, with backscatter in it too: not a folder
    // of this Maildir, so a tree scan does not take messages out of it.
    let outside = home.path().join("outside");
    fill_maildir(&outside, &files, 5000);
    std::os::unix::fs::symlink(&outside, root.join(".Linked")).unwrap();
    let outside_before = tree(&outside);
    // The backscatter folder is a link out of the Maildir: --apply moves nothing.
    let away = home.path().join("away");
    make_maildir(&away);
    std::os::unix::fs::symlink(&away, root.join(".Backscatter")).unwrap();
    let inbox_before = (tree(&root.join("cur")), tree(&root.join("new")));
    let out = scan_cmd(home.path(), &conf, &["-r", "--apply"], &root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("symbolic link"),
        "{stderr}"
    );
    assert!(tree(&away).is_empty(), "moved out of the Maildir");
    assert_eq!(
        (tree(&root.join("cur")), tree(&root.join("new"))),
        inbox_before
    );
    assert!(tree(&outside) == outside_before);
    // Without that link, the inbox's backscatter moves, and still nothing of `.Linked`.
    fs::remove_file(root.join(".Backscatter")).unwrap();
    let applied = scan_json(home.path(), &conf, &["-r", "--apply"], &root);
    assert_eq!(applied["moved"], n_bs);
    assert!(tree(&outside) == outside_before);
}

/// The messages (files under `cur/` and `new/`) of a Maildir's root folder, by path.
fn messages_of(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    tree(dir)
        .into_iter()
        .filter(|(k, _)| k.starts_with("cur") || k.starts_with("new"))
        .collect()
}

/// The messages of an mbox, each without its separating empty line, sorted.
fn sorted_chunks(data: &[u8]) -> Vec<Vec<u8>> {
    let mut starts = vec![0];
    let mut i = 0;
    while let Some(p) = data[i..].windows(7).position(|w| w == b"\n\nFrom ") {
        starts.push(i + p + 2);
        i += p + 2;
    }
    let mut out: Vec<Vec<u8>> = starts
        .iter()
        .zip(starts.iter().skip(1).chain([&data.len()]))
        .map(|(&a, &b)| {
            let mut c = data[a..b].to_vec();
            while c.ends_with(b"\n") {
                c.pop();
            }
            c
        })
        .filter(|c| !c.is_empty())
        .collect();
    out.sort();
    out
}

/// A DSN for a message the user never sent, with the given Subject, Date and top Received.
fn forged_bounce(subject: &str, date: &str) -> String {
    format!(
        "Received: from mx.remote.example (mx.remote.example [203.0.113.9]) by mail.own.example; Tue, 14 Nov 2023 22:13:20 +0000\n\
         From: Mail Delivery System <MAILER-DAEMON@mx.remote.example>\n\
         To: user@example.jp\n\
         Subject: {subject}\n\
         Date: {date}\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\
         \n\
         --b\n\
         Content-Type: text/plain\n\
         \n\
         Your message could not be delivered.\n\
         \n\
         --b\n\
         Content-Type: message/delivery-status\n\
         \n\
         Reporting-MTA: dns; mx.remote.example\n\
         \n\
         Final-Recipient: rfc822; nobody@remote.example\n\
         Action: failed\n\
         Status: 5.1.1\n\
         \n\
         --b\n\
         Content-Type: message/rfc822\n\
         \n\
         Received: from spammer.example ([192.0.2.66]) by mx.remote.example; Tue, 14 Nov 2023 22:13:00 +0000\n\
         From: user@example.jp\n\
         To: nobody@remote.example\n\
         Subject: cheap pills\n\
         Message-ID: <forged@spammer.example>\n\
         \n\
         buy\n\
         \n\
         --b--\n"
    )
}

#[test]
fn the_dry_run_lists_what_would_move_escaped_and_dated_by_arrival() {
    let home = temp_home();
    let conf = write_config(home.path(), "");
    let root = home.path().join("Maildir");
    let files = subset(9);
    let msgs = fill_maildir(&root, &files, 0);
    let verdicts = verdicts_of(home.path(), &conf, &msgs);
    // One more, whose Date (2035) and Subject (terminal escapes) its sender forged; it was
    // delivered at 1700000000 (2023-11-14T22:13:20Z), as its file name says.
    let hostile = forged_bounce(
        "\x1b]0;pwned\x07\x1b[2Jhello\nX-Fake: line",
        "Mon, 1 Jan 2035 00:00:00 +0000",
    );
    let name = "1700000000.M9999P1.scan-test:2,S";
    fs::write(root.join("cur").join(name), &hostile).unwrap();
    let check_hostile = check(home.path(), &conf, &root.join("cur").join(name));
    assert_eq!(check_hostile.0, "backscatter");

    let report = scan_json(home.path(), &conf, &[], &root);
    let listed = report["selected"].as_array().unwrap();
    let mut want: Vec<String> = msgs
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| v.0 == "backscatter")
        .map(|((rel, _), _)| root.join(rel).display().to_string())
        .collect();
    want.push(root.join("cur").join(name).display().to_string());
    want.sort();
    let mut got: Vec<String> = listed
        .iter()
        .map(|m| m["place"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(
        got, want,
        "the list is exactly what check calls backscatter"
    );
    assert_eq!(report["to_move"], listed.len());
    let entry = listed
        .iter()
        .find(|m| m["place"].as_str().unwrap().ends_with(name))
        .unwrap();
    assert_eq!(entry["verdict"], "backscatter");
    assert_eq!(entry["kind"], "dsn");
    assert_eq!(entry["arrived"], "2023-11-14T22:13:20Z");
    assert_eq!(
        entry["from"],
        "Mail Delivery System <MAILER-DAEMON@mx.remote.example>"
    );
    assert!(entry["subject"].as_str().unwrap().contains("pwned"));
    // Dated by arrival: no day in 2035.
    let days = report["backscatter_per_day"].to_string();
    assert!(
        days.contains("2023-11-14") && !days.contains("2035"),
        "{days}"
    );

    // The text lists the same, with the escapes made visible and no line forged.
    let out = run_ok(scan_cmd(home.path(), &conf, &[], &root));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("Would move ({}):", listed.len())),
        "{text}"
    );
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text}");
    assert!(text.contains("\\x1b]0;pwned\\x07"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("X-Fake")), "{text}");
    assert!(text.contains("2023-11-14 22:13  backscatter"), "{text}");
    for place in &want {
        assert!(text.contains(place.as_str()), "{place} not listed");
    }

    // --since leaves out what arrived before; a gap of empty days shows in the chart.
    fs::write(
        root.join("cur/1700604800.M9998P1.scan-test:2,S"),
        forged_bounce("later", "Tue, 14 Nov 2023 22:13:20 +0000"),
    )
    .unwrap();
    let since = scan_json(home.path(), &conf, &["--since", "2023-11-15"], &root);
    let places: Vec<&str> = since["selected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["place"].as_str().unwrap())
        .collect();
    assert_eq!(places.len(), 1, "{places:?}");
    assert!(places[0].ends_with("1700604800.M9998P1.scan-test:2,S"));
    let days: Vec<(String, u64)> = since["backscatter_per_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap().into(),
                d["backscatter"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(days.first().map(|d| d.0.as_str()), Some("2023-11-15"));
    assert_eq!(days.len(), 7, "{days:?}");
    assert_eq!(days.iter().filter(|d| d.1 == 0).count(), 6, "{days:?}");
}

#[test]
fn an_mbox_message_is_dated_by_its_from_line_or_top_received_never_its_date() {
    let home = temp_home();
    let conf = write_config(home.path(), "");
    let inbox = home.path().join("inbox.mbox");
    let forged = forged_bounce("x", "Mon, 1 Jan 2035 00:00:00 +0000");
    // One From line with a date (2025-11-27), one without (the top Received: 2023-11-14).
    fs::write(
        &inbox,
        format!(
            "From MAILER-DAEMON Thu Nov 27 07:38:00 2025\n{forged}\nFrom MAILER-DAEMON\n{forged}\n"
        ),
    )
    .unwrap();
    let report = scan_json(home.path(), &conf, &[], &inbox);
    let arrived: Vec<&str> = report["selected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["arrived"].as_str().unwrap())
        .collect();
    assert_eq!(arrived, ["2025-11-27T07:38:00Z", "2023-11-14T22:13:20Z"]);
}

#[test]
fn undo_puts_back_what_the_last_apply_moved_maildir() {
    let home = temp_home();
    let conf = write_config(home.path(), "");
    let root = home.path().join("Maildir");
    let msgs = fill_maildir(&root, &subset(7), 0);
    fill_maildir(&root.join(".Lists"), &subset(11), 1000);
    fs::write(root.join(".Lists/maildirfolder"), b"").unwrap();
    let before = tree(&root);
    // Nothing recorded yet: nothing to undo, nothing changes.
    let none = scan_json(home.path(), &conf, &["--undo"], &root);
    assert_eq!(none["recorded"], 0);
    let applied = scan_json(home.path(), &conf, &["-r", "--apply"], &root);
    let moved = applied["moved"].as_u64().unwrap();
    assert!(moved >= 5, "{applied}");
    assert_eq!(applied["selected"].as_array().unwrap().len() as u64, moved);
    assert!(root.join(UNDO_RECORD).exists());
    // Meanwhile the mail client reads one (a flag is added to its name) and deletes another.
    let bs = root.join(".Backscatter");
    let mut in_bs: Vec<PathBuf> = ["cur", "new"]
        .iter()
        .flat_map(|s| fs::read_dir(bs.join(s)).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    in_bs.sort();
    assert_eq!(in_bs.len() as u64, moved);
    let read = in_bs
        .iter()
        .find(|p| p.to_str().unwrap().ends_with(":2,S"))
        .unwrap();
    let read_now = PathBuf::from(format!("{}R", read.display()));
    fs::rename(read, &read_now).unwrap();
    let deleted = in_bs.iter().find(|p| **p != *read).unwrap().clone();
    fs::remove_file(&deleted).unwrap();

    // From another directory, with the text report.
    let out = run_ok({
        let mut c = scan_cmd(home.path(), &conf, &["--undo"], &root);
        c.current_dir("/");
        c
    });
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("Put back {} of {moved} messages", moved - 1)),
        "{text}"
    );
    assert!(text.contains("1 are no longer in"), "{text}");
    let after = tree(&root);
    let mut want = before.clone();
    let rel_of = |p: &Path| {
        let folder = p.parent().unwrap().file_name().unwrap();
        PathBuf::from(folder).join(p.file_name().unwrap())
    };
    // The deleted one stays deleted; the read one is back under its new name, in the folder
    // it came from (all of the moved ones came from the root or .Lists).
    let gone = before
        .keys()
        .find(|k| k.file_name() == deleted.file_name())
        .unwrap()
        .clone();
    want.remove(&gone);
    let old = before
        .keys()
        .find(|k| k.file_name() == read.file_name())
        .unwrap()
        .clone();
    let bytes = want.remove(&old).unwrap();
    want.insert(old.with_file_name(read_now.file_name().unwrap()), bytes);
    let _ = rel_of;
    let got: BTreeMap<_, _> = after
        .into_iter()
        .filter(|(k, _)| !k.starts_with(".Backscatter") && k != Path::new("subscriptions"))
        .collect();
    assert!(got == want, "{:?}", got.keys().collect::<Vec<_>>());
    assert!(!root.join(UNDO_RECORD).exists(), "the record is used up");
    // A second undo has nothing to do.
    let again = scan_json(home.path(), &conf, &["--undo"], &root);
    assert_eq!(again["recorded"], 0);
    let _ = msgs;
}

#[test]
fn undo_puts_back_what_the_last_apply_moved_mbox() {
    let home = temp_home();
    let conf = write_config(home.path(), "");
    let inbox = home.path().join("inbox.mbox");
    let msgs: Vec<MboxMsg> = subset(7)
        .iter()
        .map(|p| mbox_msg(&fs::read(p).unwrap()))
        .collect();
    let data: Vec<u8> = msgs.iter().flat_map(|m| m.chunk.clone()).collect();
    fs::write(&inbox, &data).unwrap();
    let folder = home.path().join("mail/Backscatter.mbox");
    fs::create_dir_all(folder.parent().unwrap()).unwrap();
    fs::write(&folder, OLD_FOLDER_MESSAGE).unwrap();
    let applied = scan_json(home.path(), &conf, &["--apply"], &inbox);
    let moved = applied["moved"].as_u64().unwrap();
    assert!(moved >= 5, "{applied}");
    // Mail arrives in both meanwhile; it stays where it is.
    let late = mbox_msg(&fixture_bytes(
        "corpus/ham/spamassassin-easy-ham-1/00001.7c53336b37003a9286aba55d2945844c.eml",
    ));
    let mut inbox_now = fs::read(&inbox).unwrap();
    inbox_now.extend_from_slice(&late.chunk);
    fs::write(&inbox, &inbox_now).unwrap();
    let mut folder_now = fs::read(&folder).unwrap();
    folder_now.extend_from_slice(&late.chunk);
    fs::write(&folder, &folder_now).unwrap();

    let undone = scan_json(home.path(), &conf, &["--undo"], &inbox);
    assert_eq!(undone["restored"], moved, "{undone}");
    assert_eq!(undone["missing"], 0);
    let mut want = data.clone();
    want.extend_from_slice(&late.chunk);
    assert!(sorted_chunks(&fs::read(&inbox).unwrap()) == sorted_chunks(&want));
    let mut want_folder = OLD_FOLDER_MESSAGE.to_vec();
    want_folder.extend_from_slice(&late.chunk);
    assert!(fs::read(&folder).unwrap() == want_folder);
    assert_eq!(
        dir_names(home.path()),
        ["conf.yaml", "inbox.mbox", "mail"],
        "the record is used up, no journal is left"
    );
    let again = scan_json(home.path(), &conf, &["--undo"], &inbox);
    assert_eq!(again["recorded"], 0);
}

/// The sample chart in the README (docs/stats-sample.svg) is what `stats --svg` draws from the
/// fixture log: regenerate it with `BACKSTOP_BLESS=1 cargo test --test integration
/// stats_sample` after changing the chart.
#[test]
fn stats_sample_chart_csv_and_top_lists_from_the_fixture_log() {
    let home = temp_home();
    let log = fixture("stats/sample-log.jsonl");
    let svg = home.path().join("chart.svg");
    let out = run_ok({
        let mut c = backstop(home.path());
        c.arg("stats").arg("--csv").arg("--svg").arg(&svg).arg(&log);
        c
    });
    let chart = fs::read_to_string(&svg).unwrap();
    let sample = crate::util::root().join("docs/stats-sample.svg");
    if std::env::var_os("BACKSTOP_BLESS").is_some() {
        fs::write(&sample, &chart).unwrap();
    }
    assert!(
        fs::read_to_string(&sample).unwrap() == chart,
        "docs/stats-sample.svg is stale: run with BACKSTOP_BLESS=1 to regenerate it"
    );
    // The six days the MX was down are in the CSV (and empty in the chart).
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(csv.lines().count(), 36, "a header and 35 days");
    for day in 21..=26 {
        assert!(
            csv.contains(&format!("\n2026-10-{day},0,0,0,0,0,0\n")),
            "{csv}"
        );
        assert!(!chart.contains(&format!("2026-10-{day}: ")));
    }
    assert!(chart.contains("<title>2026-10-14: 84 backscatter</title>"));
    // Older lines lack the originals' fields: only the newer ones are in the top lists.
    let json: Value = serde_json::from_slice(
        &run_ok({
            let mut c = backstop(home.path());
            c.args(["stats", "--format", "json", "--top", "2"])
                .arg(&log);
            c
        })
        .stdout,
    )
    .unwrap();
    assert_eq!(json["top_forged_senders"][0]["value"], "sales@example.org");
    assert_eq!(json["top_original_ips"][0]["value"], "192.0.2.17");
    assert_eq!(json["top_original_ips"].as_array().unwrap().len(), 2);
    let forged: u64 = json["top_forged_senders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert!(forged < json["totals"]["backscatter"].as_u64().unwrap());
}

/// docs/verdict.svg draws two walks with their scores: the fixture messages it was drawn from
/// (tests/fixtures/verdict-picture) must still come out as it says.
#[test]
fn the_verdict_picture_says_what_check_says() {
    let home = temp_home();
    let picture = fs::read_to_string(crate::util::root().join("docs/verdict.svg")).unwrap();
    let conf = fixture("verdict-picture/config.yaml");
    for (file, verdict, total, said) in [
        ("legit.eml", "legit-bounce", 5, "total +5  ⇒  legit-bounce"),
        ("forged.eml", "backscatter", -7, "total −7  ⇒  backscatter"),
    ] {
        let out = run_ok({
            let mut c = backstop(home.path());
            c.args([
                "check",
                "--format",
                "json",
                "--recipient",
                "me@own.example",
                "-c",
            ])
            .arg(&conf)
            .arg(fixture(&format!("verdict-picture/{file}")));
            c
        });
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["verdict"], verdict, "{file}");
        assert_eq!(v["ownership"], total, "{file}");
        assert!(
            picture.contains(said),
            "docs/verdict.svg no longer says {said:?}"
        );
    }
}
