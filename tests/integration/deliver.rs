//! Integration tests: `deliver`, `filter` and `check`, driven through the built binary.
//!
//! What they prove (issue 3): byte-exact storage of LF, CRLF and From_-prefixed input; folder
//! creation; 200 concurrent deliveries into one Maildir; SIGKILL at random moments; ENOSPC on a
//! tiny tmpfs; a panic inside evaluation; broken configs; two mbox writers at once; the exact
//! output of `filter`; the size limit and its streamed path; usage errors; and the `check`
//! output Sieve and procmail rely on. In `deliver` mode the only exit codes are 0 and 75.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{
    Rng, assert_quiet_for_mta, backstop, files_in, fixture_bytes, line_end_of, run_with_input,
    split_lines, temp_home, without_from_line,
};

/// The envelope recipient every delivery is made for.
pub(crate) const RECIPIENT: &str = "user@example.com";

/// The user's own infrastructure: with it, [`BACKSCATTER`] is judged backscatter.
pub(crate) const OWN: &str =
    "own:\n  domains: [example.com]\n  hosts: [mail.example.com]\n  networks: [192.0.2.0/24]\n";

/// A bounce of spam that forged the user's address: the original entered the bouncing site from
/// a host that is none of the user's.
pub(crate) const BACKSCATTER: &str = "Return-Path: <>
Received: from mx.foreign.example (mx.foreign.example [198.51.100.7])
\tby mail.example.com (Postfix) with ESMTP id 4A1B2C3D
\tfor <user@example.com>; Tue, 3 Mar 2026 10:00:05 +0000 (UTC)
From: Mail Delivery System <MAILER-DAEMON@mx.foreign.example>
To: user@example.com
Subject: Undelivered Mail Returned to Sender
Date: Tue, 3 Mar 2026 10:00:04 +0000 (UTC)
Message-ID: <20260303100004.AA11@mx.foreign.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary=\"BOUNDARY.1\"

--BOUNDARY.1
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.foreign.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<nobody@foreign.example>: host mx.foreign.example said: 550 5.1.1 User unknown

--BOUNDARY.1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.foreign.example
Arrival-Date: Tue, 3 Mar 2026 10:00:01 +0000 (UTC)

Final-Recipient: rfc822; nobody@foreign.example
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--BOUNDARY.1
Content-Type: message/rfc822

Received: from spambot.invalid (unknown [203.0.113.66])
\tby mx.foreign.example (Postfix) with SMTP id 99ZZ
\tfor <nobody@foreign.example>; Tue, 3 Mar 2026 10:00:01 +0000 (UTC)
From: \"Pharmacy\" <user@example.com>
To: nobody@foreign.example
Subject: cheap pills
Date: Tue, 3 Mar 2026 10:59:59 +0300
Message-ID: <8c1e0f2a.77@spambot.invalid>

Buy now.

--BOUNDARY.1--
";

/// Plain LF ham without a From_ line.
const HAM_LF: &str =
    "corpus/ham/spamassassin-hard-ham-1/00002.ca96f74042d05c1a1d29ca30467cfcd5.eml";

/// Real messages of every shape: LF, CRLF, and each with a leading mbox From_ line.
const FIXTURES: [&str; 6] = [
    HAM_LF,
    "corpus/ham/sisimai-not/is-not-bounce-01.eml",
    "corpus/bounces/sisimai-bsd/rhost-microsoft-04.eml",
    "corpus/ham/spamassassin-easy-ham-1/00001.7c53336b37003a9286aba55d2945844c.eml",
    "corpus/bounces/sisimai-bsd/lhost-exchange2003-02.eml",
    "corpus/bounces/sisimai-bsd/rfc3464-66.eml",
];

/// Every input shape the byte-exactness tests use: the fixtures, the backscatter sample with and
/// without a From_ line, and synthetic edge cases (no final line end, raw bytes, `From ` lines in
/// the body, a lone From_ line, an empty message).
fn shapes() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = FIXTURES
        .iter()
        .map(|f| (f.to_string(), fixture_bytes(f)))
        .collect();
    v.push(("backscatter sample".into(), BACKSCATTER.as_bytes().to_vec()));
    let mut from = b"From MAILER-DAEMON Tue Mar  3 10:00:06 2026\n".to_vec();
    from.extend_from_slice(BACKSCATTER.as_bytes());
    v.push(("backscatter sample with From_".into(), from));
    v.push((
        "CRLF, From_, quoted From lines, no final line end".into(),
        b"From bounce@example.org Tue Mar  3 10:00:00 2026\r\nSubject: crlf\r\nFrom: a@example.org\r\n\r\n>From quoted\r\nFrom unquoted\r\nno final line end"
            .to_vec(),
    ));
    v.push((
        "raw 8-bit and NUL bytes".into(),
        b"Subject: raw\nFrom: a@example.org\n\n\xff\xfe\x00 bytes \xc3\x28\nFrom x\n".to_vec(),
    ));
    v.push((
        "only a From_ line".into(),
        b"From a@example.org Tue Mar  3 10:00:00 2026\n".to_vec(),
    ));
    v.push(("empty".into(), Vec::new()));
    v
}

/// Writes a config file into `home` and returns its path.
pub(crate) fn write_config(home: &Path, name: &str, text: &str) -> PathBuf {
    let path = home.join(name);
    fs::write(&path, text).expect("write the config");
    path
}

/// `backstop deliver --maildir MAILDIR --recipient user@example.com [--config CONFIG]`.
pub(crate) fn deliver_cmd(home: &Path, maildir: &Path, config: Option<&Path>) -> Command {
    deliver_to(home, "--maildir", maildir, config)
}

/// `backstop deliver --mbox MBOX --recipient user@example.com [--config CONFIG]`.
pub(crate) fn deliver_mbox_cmd(home: &Path, mbox: &Path, config: Option<&Path>) -> Command {
    deliver_to(home, "--mbox", mbox, config)
}

/// `backstop deliver FLAG TARGET --recipient user@example.com [--config CONFIG]`.
pub(crate) fn deliver_to(home: &Path, flag: &str, target: &Path, config: Option<&Path>) -> Command {
    let mut cmd = backstop(home);
    cmd.arg("deliver")
        .arg(flag)
        .arg(target)
        .args(["--recipient", RECIPIENT]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd
}

/// Runs a delivery and asserts exit 0 with nothing said to the MTA.
pub(crate) fn deliver_ok(cmd: &mut Command, input: &[u8], what: &str) {
    deliver_exits(cmd, input, 0, what);
}

/// Runs a delivery and asserts exit 75 (the MTA tries again) with nothing else said to it.
pub(crate) fn deliver_deferred(cmd: &mut Command, input: &[u8], what: &str) -> Output {
    deliver_exits(cmd, input, 75, what)
}

pub(crate) fn deliver_exits(cmd: &mut Command, input: &[u8], code: i32, what: &str) -> Output {
    let out = run_with_input(cmd, input);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_quiet_for_mta(&out, what);
    out
}

/// The verdict word `check --format word` gives for `input`.
fn check_word(home: &Path, config: Option<&Path>, input: &[u8]) -> String {
    let mut cmd = backstop(home);
    cmd.args(["check", "--format", "word", "--recipient", RECIPIENT]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = run_with_input(&mut cmd, input);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("a UTF-8 verdict word")
}

/// The `new/` folder a verdict's message lands in, with the default actions.
fn new_dir_for(maildir: &Path, verdict: &str) -> PathBuf {
    match verdict {
        "clean" | "legit-bounce" => maildir.join("new"),
        "backscatter" | "unverified-bounce" => maildir.join(".Backscatter/new"),
        other => panic!("unknown verdict {other:?}"),
    }
}

/// Every message file in `new/` and `tmp/` of the inbox and of the backscatter folder.
pub(crate) fn all_files(maildir: &Path, sub: &str) -> Vec<PathBuf> {
    let mut v = files_in(&maildir.join(sub));
    v.extend(files_in(&maildir.join(".Backscatter").join(sub)));
    v
}

/// Asserts that two byte strings are equal, showing where they differ (not megabytes of bytes).
pub(crate) fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let show = |b: &[u8]| {
        String::from_utf8_lossy(&b[at.saturating_sub(20)..(at + 40).min(b.len())]).into_owned()
    };
    panic!(
        "{what}: {} bytes stored, {} expected; first difference at byte {at}: got {:?}, want {:?}",
        got.len(),
        want.len(),
        show(got),
        show(want)
    );
}

/// Checks a stored or filtered message: exactly two trace lines, each a single line with the
/// input's line end (`X-Backstop-Verdict: <verdict>...`, `X-Backstop-Reason: ...`), then the
/// input's bytes less its From_ line. Returns the verdict line.
fn assert_traced(stored: &[u8], input: &[u8], verdict: &str, what: &str) -> String {
    let eol = line_end_of(input);
    let (lines, rest) = split_lines(stored, 2);
    assert_eq!(lines.len(), 2, "{what}: two trace lines expected");
    let first = format!("X-Backstop-Verdict: {verdict}");
    assert!(
        lines[0].starts_with(first.as_bytes()),
        "{what}: {:?}",
        String::from_utf8_lossy(lines[0])
    );
    assert!(
        matches!(lines[0].get(first.len()), Some(b';' | b'\r' | b'\n')),
        "{what}: {:?}",
        String::from_utf8_lossy(lines[0])
    );
    assert!(
        lines[1].starts_with(b"X-Backstop-Reason: "),
        "{what}: {:?}",
        String::from_utf8_lossy(lines[1])
    );
    for line in &lines {
        assert!(
            line.ends_with(eol),
            "{what}: trace line {:?} must end like the message's lines",
            String::from_utf8_lossy(line)
        );
        let text = &line[..line.len() - eol.len()];
        assert!(
            !text.contains(&b'\r') && !text.contains(&b'\n'),
            "{what}: a trace line holds a line break"
        );
    }
    assert_same_bytes(rest, without_from_line(input), what);
    String::from_utf8_lossy(lines[0]).trim_end().to_string()
}

/// Asserts that a Maildir file's name carries its size as `,S=<bytes>`.
fn assert_size_in_name(path: &Path) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let size: u64 = name
        .rsplit_once(",S=")
        .and_then(|(_, s)| s.parse().ok())
        .unwrap_or_else(|| panic!("{name}: no ,S=size"));
    assert_eq!(size, fs::metadata(path).unwrap().len(), "{name}");
}

/// The one file in `new/` of the inbox or the backscatter folder, removed after reading.
pub(crate) fn take_only_message(maildir: &Path, what: &str) -> (PathBuf, Vec<u8>) {
    let files = all_files(maildir, "new");
    assert_eq!(
        files.len(),
        1,
        "{what}: one message expected in new/, found {files:?}"
    );
    assert!(
        all_files(maildir, "tmp").is_empty(),
        "{what}: tmp/ must be empty"
    );
    let data = fs::read(&files[0]).unwrap();
    assert_size_in_name(&files[0]);
    fs::remove_file(&files[0]).unwrap();
    (files[0].clone(), data)
}

#[test]
fn stores_lf_crlf_and_from_input_byte_exact() {
    let home = temp_home();
    let config = write_config(home.path(), "own.yaml", OWN);
    let bare = write_config(
        home.path(),
        "bare.yaml",
        &format!("{OWN}trace_headers: false\n"),
    );
    let maildir = home.path().join("Maildir");
    for (what, input) in shapes() {
        let verdict = check_word(home.path(), Some(&config), &input);
        deliver_ok(
            &mut deliver_cmd(home.path(), &maildir, Some(&config)),
            &input,
            &what,
        );
        let (path, stored) = take_only_message(&maildir, &what);
        assert_eq!(
            path.parent().unwrap(),
            new_dir_for(&maildir, &verdict),
            "{what}: filed by its verdict {verdict}"
        );
        assert_traced(&stored, &input, &verdict, &what);

        // trace_headers: false stores exactly the input less its From_ line.
        deliver_ok(
            &mut deliver_cmd(home.path(), &maildir, Some(&bare)),
            &input,
            &what,
        );
        let (_, stored) = take_only_message(&maildir, &what);
        assert_same_bytes(
            &stored,
            without_from_line(&input),
            &format!("{what}, no trace headers"),
        );
    }
    // The sample really is backscatter, so the folder path was taken above.
    assert_eq!(
        check_word(home.path(), Some(&config), BACKSCATTER.as_bytes()),
        "backscatter"
    );
}

#[test]
fn creates_the_backscatter_folder_and_subscribes_it_once() {
    let home = temp_home();
    let config = write_config(home.path(), "own.yaml", OWN);
    let maildir = home.path().join("Maildir");
    for _ in 0..2 {
        deliver_ok(
            &mut deliver_cmd(home.path(), &maildir, Some(&config)),
            BACKSCATTER.as_bytes(),
            "backscatter",
        );
    }
    let folder = maildir.join(".Backscatter");
    for dir in [&maildir, &folder] {
        for sub in ["cur", "new", "tmp"] {
            assert!(
                dir.join(sub).is_dir(),
                "{} missing",
                dir.join(sub).display()
            );
        }
    }
    assert_eq!(
        fs::read(folder.join("maildirfolder")).unwrap(),
        b"",
        "maildirfolder is an empty file"
    );
    assert_eq!(
        fs::read_to_string(maildir.join("subscriptions")).unwrap(),
        "V\t2\n\nBackscatter\n"
    );
    assert_eq!(files_in(&folder.join("new")).len(), 2);
    assert!(files_in(&maildir.join("new")).is_empty());
    assert!(files_in(&folder.join("tmp")).is_empty());

    // A nested folder name, Maildir++ (dots) and fs layout (directories).
    let nested = write_config(
        home.path(),
        "nested.yaml",
        &format!("{OWN}folder: Junk/Backscatter\n"),
    );
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&nested)),
        BACKSCATTER.as_bytes(),
        "nested folder",
    );
    let junk = maildir.join(".Junk.Backscatter");
    assert_eq!(files_in(&junk.join("new")).len(), 1);
    assert!(junk.join("maildirfolder").is_file());
    assert_eq!(
        fs::read_to_string(maildir.join("subscriptions")).unwrap(),
        "V\t2\n\nBackscatter\nJunk\tBackscatter\n"
    );
    let fs_layout = write_config(
        home.path(),
        "fs.yaml",
        &format!("{OWN}folder: Junk/Backscatter\nlayout: fs\n"),
    );
    let fs_maildir = home.path().join("FsMaildir");
    deliver_ok(
        &mut deliver_cmd(home.path(), &fs_maildir, Some(&fs_layout)),
        BACKSCATTER.as_bytes(),
        "fs layout",
    );
    let fs_folder = fs_maildir.join("Junk/Backscatter");
    assert_eq!(files_in(&fs_folder.join("new")).len(), 1);
    assert!(!fs_folder.join("maildirfolder").exists());
    assert!(!fs_maildir.join(".Junk.Backscatter").exists());
}

#[test]
fn two_hundred_concurrent_deliveries_lose_and_clash_nothing() {
    const N: usize = 200;
    let home = temp_home();
    let config = write_config(home.path(), "own.yaml", OWN);
    let maildir = home.path().join("Maildir");
    let ham = fixture_bytes(HAM_LF);
    // Even numbers are ham (inbox), odd numbers backscatter (the folder, created by the race).
    let inputs: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let mut m = format!("X-Test-Id: {i}\n").into_bytes();
            m.extend_from_slice(if i % 2 == 0 {
                &ham
            } else {
                BACKSCATTER.as_bytes()
            });
            m
        })
        .collect();
    // Start all 200 first: each loads its config, then blocks reading stdin until all are fed.
    let mut children: Vec<Child> = inputs
        .iter()
        .map(|_| {
            deliver_cmd(home.path(), &maildir, Some(&config))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn backstop")
        })
        .collect();
    let stdins: Vec<_> = children
        .iter_mut()
        .map(|c| c.stdin.take().unwrap())
        .collect();
    for (mut stdin, input) in stdins.into_iter().zip(&inputs) {
        stdin.write_all(input).expect("feed a delivery");
    }
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "delivery {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_quiet_for_mta(&out, &format!("delivery {i}"));
    }
    let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for (dir, parity) in [(maildir.clone(), 0), (maildir.join(".Backscatter"), 1)] {
        let files = files_in(&dir.join("new"));
        assert_eq!(files.len(), N / 2, "{}", dir.display());
        assert!(
            files_in(&dir.join("tmp")).is_empty(),
            "{}: tmp/ must be empty",
            dir.display()
        );
        for f in files {
            assert_size_in_name(&f);
            let data = fs::read(&f).unwrap();
            let (_, rest) = split_lines(&data, 2);
            let id = inputs
                .iter()
                .position(|m| m == rest)
                .unwrap_or_else(|| panic!("{}: not any input", f.display()));
            assert_eq!(id % 2, parity, "{}: filed in the wrong folder", f.display());
            *seen.entry(rest.to_vec()).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), N, "every message is there");
    assert!(seen.values().all(|&n| n == 1), "no message is there twice");
    assert_eq!(
        fs::read_to_string(maildir.join("subscriptions")).unwrap(),
        "V\t2\n\nBackscatter\n"
    );
    assert!(!maildir.join("subscriptions.lock").exists());
}

/// A large message (about 1.4 MB) whose write takes a while: headers, then a long body.
fn large_message(tag: &str) -> Vec<u8> {
    message_of_lines(tag, 20_000)
}

/// A message with a From_ line, headers, and `lines` body lines (about 70 bytes each), a fifth
/// of them `From ` lines and a fifth `>From ` lines.
fn message_of_lines(tag: &str, lines: usize) -> Vec<u8> {
    let mut m = format!(
        "From sender@example.org Tue Mar  3 10:00:00 2026\nFrom: Sender <sender@example.org>\nTo: {RECIPIENT}\nSubject: large {tag}\nMessage-ID: <{tag}@example.org>\n\n"
    )
    .into_bytes();
    for i in 0..lines {
        let line = match i % 5 {
            0 => format!("From line {i} that an mbox would quote\n"),
            1 => format!(">From line {i}, already quoted once\n"),
            _ => format!("{tag} body line {i:06} {}\n", "-".repeat(50)),
        };
        m.extend_from_slice(line.as_bytes());
    }
    m
}

/// When a kill lands: a delay counted from the spawn, or from the moment the delivery's file
/// appears in tmp/ (so that the kill lands while the message is written, synced or linked).
#[derive(Clone, Copy, Debug)]
enum KillAt {
    AfterSpawn(Duration),
    AfterTmpFile(Duration),
}

/// Runs a delivery with stdin from `input` and kills it with SIGKILL at `at` (unless it is done).
fn spawn_and_kill(
    cmd: &mut Command,
    input: &Path,
    maildir: &Path,
    at: KillAt,
) -> std::process::ExitStatus {
    let tmp_before = all_files(maildir, "tmp");
    let mut child = cmd
        .stdin(fs::File::open(input).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn backstop");
    let delay = match at {
        KillAt::AfterSpawn(d) => d,
        KillAt::AfterTmpFile(d) => {
            loop {
                if child.try_wait().unwrap().is_some() || all_files(maildir, "tmp") != tmp_before {
                    break;
                }
                std::thread::yield_now();
            }
            d
        }
    };
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL");
    child.wait().unwrap()
}

/// Runs a delivery to the end: its stored bytes, its duration, and how long its file was in
/// tmp/ before it exited (the write, the fsync and the link).
fn timed_delivery(
    cmd: &mut Command,
    input: &Path,
    maildir: &Path,
) -> (Vec<u8>, Duration, Duration) {
    let tmp_before = all_files(maildir, "tmp");
    let start = Instant::now();
    let mut child = cmd.stdin(fs::File::open(input).unwrap()).spawn().unwrap();
    let mut seen = None;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if seen.is_none() && all_files(maildir, "tmp") != tmp_before {
            seen = Some(Instant::now());
        }
        std::thread::yield_now();
    };
    let end = Instant::now();
    assert_eq!(status.code(), Some(0));
    let (_, stored) = take_only_message(maildir, "calibration");
    (stored, end - start, end - seen.unwrap_or(end))
}

#[test]
fn sigkill_at_random_moments_leaves_a_whole_message_or_nothing() {
    use std::os::unix::process::ExitStatusExt;
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    // The parsed path with a 1.4 MB message, and the streamed path of a 4 MB message over
    // max_size, whose tail is copied from stdin in 64 KiB chunks.
    let inputs = [home.path().join("large.eml"), home.path().join("huge.eml")];
    fs::write(&inputs[0], large_message("killed")).unwrap();
    fs::write(&inputs[1], message_of_lines("streamed", 60_000)).unwrap();
    let configs = [
        write_config(home.path(), "own.yaml", OWN),
        write_config(
            home.path(),
            "small.yaml",
            &format!("{OWN}max_size: 65536\n"),
        ),
    ];
    // One undisturbed delivery of each gives the expected file and its timings.
    let mut expected = Vec::new();
    let mut timings = Vec::new();
    for (config, input) in configs.iter().zip(&inputs) {
        let (stored, total, in_tmp) = timed_delivery(
            &mut deliver_cmd(home.path(), &maildir, Some(config)),
            input,
            &maildir,
        );
        expected.push(stored);
        timings.push((total, in_tmp));
    }
    let mut rng = Rng::new("sigkill");
    let (mut whole, mut nothing, mut mid_write) = (0, 0, 0);
    let micros = |d: Duration| d.as_micros() as u64;
    for round in 0..60 {
        let which = round % 2;
        let (total, in_tmp) = timings[which];
        // Kills spread over the whole run, and kills aimed at the write: half of those as soon
        // as the file is seen in tmp/.
        let at = if round % 6 == 2 {
            KillAt::AfterTmpFile(Duration::ZERO)
        } else if round % 6 == 5 {
            KillAt::AfterTmpFile(Duration::from_micros(
                rng.below(micros(in_tmp) * 3 / 2 + 2000),
            ))
        } else {
            KillAt::AfterSpawn(Duration::from_micros(
                rng.below(micros(total) * 5 / 4 + 5000),
            ))
        };
        let before = all_files(&maildir, "new").len();
        let tmp_before = all_files(&maildir, "tmp").len();
        let cmd = &mut deliver_cmd(home.path(), &maildir, Some(&configs[which]));
        let status = spawn_and_kill(cmd, &inputs[which], &maildir, at);
        let files = all_files(&maildir, "new");
        // Killed with its file in tmp/ and none in new/: the kill landed while it wrote.
        if status.signal() == Some(9)
            && files.len() == before
            && all_files(&maildir, "tmp").len() > tmp_before
        {
            mid_write += 1;
        }
        match status.signal() {
            Some(9) => assert!(
                files.len() == before || files.len() == before + 1,
                "round {round} ({at:?}): {files:?}"
            ),
            _ => assert_eq!(
                (status.code(), files.len()),
                (Some(0), before + 1),
                "round {round} ({at:?}): finished before the kill"
            ),
        }
        if files.len() == before {
            nothing += 1
        } else {
            whole += 1
        }
        for f in &files {
            let data = fs::read(f).unwrap();
            assert!(
                expected.contains(&data),
                "round {round} ({at:?}): {} is not a whole message ({} bytes)",
                f.display(),
                data.len()
            );
            assert_size_in_name(f);
        }
    }
    // tmp/ may keep leftovers of killed deliveries (Maildir readers ignore tmp/); new/ never does.
    let leftovers = all_files(&maildir, "tmp").len();
    eprintln!(
        "sigkill: {whole} whole, {nothing} nothing ({mid_write} killed while writing), {leftovers} partial files left in tmp/; timings {timings:?}"
    );
    // Otherwise no kill tested the write, and the test proves nothing about it.
    assert!(
        mid_write > 0,
        "no kill landed while a file was being written"
    );
    // The Maildir still takes mail.
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&configs[0])),
        BACKSCATTER.as_bytes(),
        "after the kills",
    );
}

#[test]
fn sigkill_while_reading_stdin_leaves_nothing_in_new() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    let message = large_message("blocked");
    let mut rng = Rng::new("sigkill-stdin");
    // The whole input is read before anything is written: a kill while reading leaves nothing.
    let config = write_config(home.path(), "own.yaml", OWN);
    for round in 0..10 {
        let mut child = deliver_cmd(home.path(), &maildir, Some(&config))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&message[..message.len() / 2]).unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(30)));
        child.kill().unwrap();
        child.wait().unwrap();
        drop(stdin);
        assert!(
            all_files(&maildir, "new").is_empty(),
            "round {round}: something reached new/"
        );
        assert!(
            all_files(&maildir, "tmp").is_empty(),
            "round {round}: nothing is written before the input is read"
        );
    }
    // Over max_size the tail is streamed into tmp/: kill while that write waits for more input.
    let small = write_config(
        home.path(),
        "small.yaml",
        &format!("{OWN}max_size: 65536\n"),
    );
    for round in 0..3 {
        let mut child = deliver_cmd(home.path(), &maildir, Some(&small))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let before = all_files(&maildir, "tmp").len();
        let part = message[..message.len() / 2].to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&part);
            stdin // kept open: the delivery blocks reading the rest
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while all_files(&maildir, "tmp").len() == before {
            assert!(
                Instant::now() < deadline,
                "round {round}: the streamed write never started"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.below(20)));
        child.kill().unwrap();
        child.wait().unwrap();
        drop(writer.join().unwrap());
        assert!(
            all_files(&maildir, "new").is_empty(),
            "round {round}: a partial message reached new/"
        );
    }
}

/// A tmpfs mounted for one test, unmounted when dropped (lazily if it is still busy).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs on {} failed (this test needs root, as CI has): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let done = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !done {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Fills the file system of `dir` with `dir/filler`, then frees `leave` bytes of it.
fn fill(dir: &Path, leave: u64) {
    let path = dir.join("filler");
    let mut f = fs::File::create(&path).unwrap();
    let block = [b'f'; 4096];
    let err = loop {
        if let Err(e) = f.write_all(&block) {
            break e;
        }
    };
    assert_eq!(err.raw_os_error(), Some(28), "expected ENOSPC, got {err}");
    let len = fs::metadata(&path).unwrap().len();
    f.set_len(len.saturating_sub(leave)).unwrap();
    f.sync_all().unwrap();
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn enospc_defers_with_75_and_leaves_nothing_half_written() {
    let home = temp_home();
    let disk = home.path().join("disk");
    // The backscatter mbox on the full disk too (by default it is ~/mail/Backscatter).
    let config = write_config(
        home.path(),
        "own.yaml",
        &format!("{OWN}mbox_folder: {}\n", disk.join("Backscatter").display()),
    );
    let _mount = Tmpfs::mount(&disk, "256k");
    let maildir = disk.join("Maildir");
    let mbox = disk.join("mbox");
    let ham = fixture_bytes(HAM_LF);
    // Before the disk is full, both targets take mail.
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&config)),
        &ham,
        "before filling",
    );
    let first = all_files(&maildir, "new");
    deliver_ok(
        &mut deliver_mbox_cmd(home.path(), &mbox, Some(&config)),
        &ham,
        "mbox before filling",
    );
    let mbox_before = fs::read(&mbox).unwrap();
    // A message larger than the room left: its write starts, then fails.
    let mut big = ham.clone();
    for i in 0..600 {
        big.extend_from_slice(format!("padding line {i:04} {}\n", "x".repeat(60)).as_bytes());
    }
    let backscatter = BACKSCATTER.as_bytes().to_vec();
    // A full disk fails the first write; with 8 KiB left, the write of a larger message starts,
    // then fails part way (ham is about 16 KB, the large ham about 64 KB).
    type Inputs<'a> = Vec<(&'a Vec<u8>, &'a str)>;
    let rounds: [(u64, &str, Inputs); 2] = [
        (
            0,
            "full disk",
            vec![
                (&ham, "ham"),
                (&big, "large ham"),
                (&backscatter, "backscatter"),
            ],
        ),
        (
            8 * 1024,
            "disk with 8 KiB left",
            vec![(&ham, "ham"), (&big, "large ham")],
        ),
    ];
    for (leave, what, inputs) in rounds {
        fill(&disk, leave);
        for (input, kind) in inputs {
            assert!(input.len() as u64 > leave);
            let what = format!("{what}, {kind}");
            deliver_deferred(
                &mut deliver_cmd(home.path(), &maildir, Some(&config)),
                input,
                &what,
            );
            assert_eq!(
                all_files(&maildir, "new"),
                first,
                "{what}: nothing new in new/"
            );
            assert!(
                all_files(&maildir, "tmp").is_empty(),
                "{what}: no stray file in tmp/"
            );
            deliver_deferred(
                &mut deliver_mbox_cmd(home.path(), &mbox, Some(&config)),
                input,
                &format!("{what}, mbox"),
            );
            assert_same_bytes(
                &fs::read(&mbox).unwrap(),
                &mbox_before,
                &format!("{what}: the mbox is rolled back"),
            );
            // The backscatter mbox may be left created but empty (the mbox writer truncates a
            // failed append back to the length it found).
            let folder = disk.join("Backscatter");
            if folder.exists() {
                assert_eq!(fs::metadata(&folder).unwrap().len(), 0, "{what}");
                fs::remove_file(&folder).unwrap();
            }
            assert_eq!(
                names_in(&disk),
                ["Maildir", "filler", "mbox"],
                "{what}: no lock or stray file left"
            );
        }
        fs::remove_file(disk.join("filler")).unwrap();
    }
    // With room again, the same deliveries go through.
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&config)),
        &big,
        "after freeing",
    );
    deliver_ok(
        &mut deliver_mbox_cmd(home.path(), &mbox, Some(&config)),
        &ham,
        "mbox after freeing",
    );
    assert_eq!(all_files(&maildir, "new").len(), 2);
}

// BACKSTOP_FAULT exists in debug builds only (it is compiled out of release binaries).
#[cfg(debug_assertions)]
#[test]
fn a_panic_inside_evaluation_or_storage_defers_with_75() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    for point in ["evaluate", "store"] {
        for input in [fixture_bytes(HAM_LF), BACKSCATTER.as_bytes().to_vec()] {
            let out = deliver_deferred(
                deliver_cmd(home.path(), &maildir, None).env("BACKSTOP_FAULT", point),
                &input,
                point,
            );
            assert!(
                String::from_utf8_lossy(&out.stderr).starts_with("backstop: "),
                "{point}: {:?}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                all_files(&maildir, "new").is_empty() && all_files(&maildir, "tmp").is_empty(),
                "{point}: nothing stored"
            );
        }
        let mbox = home.path().join("mbox");
        deliver_deferred(
            deliver_mbox_cmd(home.path(), &mbox, None).env("BACKSTOP_FAULT", point),
            BACKSCATTER.as_bytes(),
            &format!("{point}, mbox"),
        );
        assert!(
            fs::read(&mbox).unwrap_or_default().is_empty(),
            "{point}: nothing appended"
        );
    }
}

/// Broken configs of every sort: bad YAML, an unknown key, a bad rule, a missing file.
fn broken_configs(home: &Path) -> Vec<(&'static str, PathBuf)> {
    vec![
        (
            "bad YAML",
            write_config(home, "yaml.yaml", "own:\n  domains: [example.com\n"),
        ),
        (
            "unknown key",
            write_config(home, "key.yaml", &format!("{OWN}no_such_key: 1\n")),
        ),
        (
            "bad rule",
            write_config(
                home,
                "rule.yaml",
                &format!(
                    "{OWN}rules:\n  - id: broken\n    field: subject\n    match: ['(unclosed']\n"
                ),
            ),
        ),
        (
            "discarding unverified bounces",
            write_config(
                home,
                "discard.yaml",
                &format!("{OWN}actions:\n  unverified-bounce: discard\n"),
            ),
        ),
        ("missing file", home.join("no-such-config.yaml")),
    ]
}

/// Checks a message stored or printed unfiltered: one X-Backstop-Error line, then the input.
fn assert_error_traced(stored: &[u8], input: &[u8], what: &str) {
    let (lines, rest) = split_lines(stored, 1);
    assert_eq!(lines.len(), 1, "{what}");
    assert!(
        lines[0].starts_with(b"X-Backstop-Error: config error, not filtered: "),
        "{what}: {:?}",
        String::from_utf8_lossy(lines[0])
    );
    assert!(
        lines[0].ends_with(line_end_of(input)),
        "{what}: the header ends like the message's lines"
    );
    assert_same_bytes(rest, without_from_line(input), what);
}

#[test]
fn a_broken_config_delivers_to_the_inbox_with_a_header() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    let mut inputs = vec![BACKSCATTER.as_bytes().to_vec()];
    let mut crlf = b"From MAILER-DAEMON Tue Mar  3 10:00:06 2026\r\n".to_vec();
    crlf.extend_from_slice(BACKSCATTER.replace('\n', "\r\n").as_bytes());
    inputs.push(crlf);
    for (what, config) in broken_configs(home.path()) {
        for input in &inputs {
            let out = run_with_input(
                &mut deliver_cmd(home.path(), &maildir, Some(&config)),
                input,
            );
            assert_eq!(out.status.code(), Some(0), "{what}");
            assert_quiet_for_mta(&out, what);
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("delivering to the inbox unfiltered"),
                "{what}: says why on stderr"
            );
            // Backscatter, but unfiltered: the inbox.
            assert!(
                files_in(&maildir.join(".Backscatter/new")).is_empty(),
                "{what}"
            );
            let (path, stored) = take_only_message(&maildir, what);
            assert_eq!(path.parent().unwrap(), maildir.join("new"));
            assert_error_traced(&stored, input, what);
        }
        // Into an mbox as well.
        let mbox = home.path().join("mbox");
        let out = run_with_input(
            &mut deliver_mbox_cmd(home.path(), &mbox, Some(&config)),
            BACKSCATTER.as_bytes(),
        );
        assert_eq!(out.status.code(), Some(0), "{what}, mbox");
        let messages = mbox_messages(&fs::read(&mbox).unwrap());
        assert_eq!(messages.len(), 1, "{what}, mbox");
        assert_error_traced(&messages[0].1, BACKSCATTER.as_bytes(), what);
        fs::remove_file(&mbox).unwrap();
    }
    // The error is logged where the broken config's `log:` says.
    let log = home.path().join("decisions.log");
    let config = write_config(
        home.path(),
        "logged.yaml",
        &format!("log: {}\nown: [\n", log.display()),
    );
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&config)),
        BACKSCATTER.as_bytes(),
        "logged",
    );
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1);
    let entry: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert!(
        entry["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{entry}"
    );
    let stored = entry["stored"].as_str().unwrap();
    assert!(Path::new(stored).is_file(), "{entry}");
}

#[test]
fn every_decision_is_logged_and_only_backscatter_may_be_discarded() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    let log = home.path().join("decisions.log");
    let config = write_config(
        home.path(),
        "discard.yaml",
        &format!(
            "{OWN}log: {}\nactions:\n  backscatter: discard\n",
            log.display()
        ),
    );
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&config)),
        BACKSCATTER.as_bytes(),
        "discarded",
    );
    assert!(
        all_files(&maildir, "new").is_empty(),
        "backscatter is discarded when the config says so"
    );
    let ham = fixture_bytes(HAM_LF);
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&config)),
        &ham,
        "ham",
    );
    let (path, _) = take_only_message(&maildir, "ham");
    let entries: Vec<serde_json::Value> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (
            entries[0]["verdict"].as_str(),
            entries[0]["action"].as_str()
        ),
        (Some("backscatter"), Some("discard"))
    );
    assert!(entries[0]["stored"].is_null());
    assert_eq!(
        (
            entries[1]["verdict"].as_str(),
            entries[1]["action"].as_str()
        ),
        (Some("clean"), Some("inbox"))
    );
    assert_eq!(entries[1]["stored"].as_str(), Some(path.to_str().unwrap()));
    assert_eq!(
        entries[1]["message_id"].as_str().map(|s| s.is_empty()),
        Some(false)
    );
}

/// Splits an mboxrd file into its messages: each is its `From ` line and its content with the
/// separating empty line removed and one `>` taken off every `^>+From ` line.
pub(crate) fn mbox_messages(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let starts: Vec<usize> = (0..data.len())
        .filter(|&i| data[i..].starts_with(b"From ") && (i == 0 || data[i - 1] == b'\n'))
        .collect();
    assert_eq!(starts.first(), Some(&0), "an mbox starts with a From line");
    let mut out = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(data.len());
        let segment = &data[start..end];
        let (from, quoted) =
            segment.split_at(segment.iter().position(|&b| b == b'\n').unwrap() + 1);
        let quoted = quoted
            .strip_suffix(b"\n")
            .unwrap_or_else(|| panic!("message {n} does not end with an empty line"));
        let mut message = Vec::with_capacity(quoted.len());
        for line in quoted.split_inclusive(|&b| b == b'\n') {
            let gts = line.iter().take_while(|&&b| b == b'>').count();
            if gts > 0 && line[gts..].starts_with(b"From ") {
                message.extend_from_slice(&line[1..]);
            } else {
                message.extend_from_slice(line);
            }
        }
        out.push((
            String::from_utf8_lossy(from).trim_end().to_string(),
            message,
        ));
    }
    out
}

#[test]
fn two_mbox_writers_at_once_keep_both_messages_whole() {
    const ROUNDS: usize = 6;
    let home = temp_home();
    let config = write_config(home.path(), "own.yaml", OWN);
    let mbox = home.path().join("mbox");
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for round in 0..ROUNDS {
        // Two writers released at the same moment, each with a large message full of From lines.
        let pair: Vec<Vec<u8>> = ["a", "b"]
            .iter()
            .map(|w| large_message(&format!("{w}{round}")))
            .collect();
        let mut children: Vec<Child> = pair
            .iter()
            .map(|_| {
                deliver_mbox_cmd(home.path(), &mbox, Some(&config))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let feeders: Vec<_> = children
            .iter_mut()
            .zip(pair.clone())
            .map(|(c, input)| {
                let mut stdin = c.stdin.take().unwrap();
                std::thread::spawn(move || stdin.write_all(&input).unwrap())
            })
            .collect();
        for f in feeders {
            f.join().unwrap();
        }
        // A writer may give up waiting for the lock (10 s) on a loaded machine: it defers with
        // 75, leaving nothing, and is delivered again once the other is done, as the MTA would.
        let mut deferred = Vec::new();
        for (c, input) in children.into_iter().zip(&pair) {
            let out = c.wait_with_output().unwrap();
            match out.status.code() {
                Some(0) => {}
                Some(75) => deferred.push(input),
                _ => panic!("mbox writer: {out:?}"),
            }
            assert_quiet_for_mta(&out, "mbox writer");
        }
        for input in deferred {
            deliver_ok(
                &mut deliver_mbox_cmd(home.path(), &mbox, Some(&config)),
                input,
                "a deferred mbox writer, again",
            );
        }
        inputs.extend(pair);
    }
    let messages = mbox_messages(&fs::read(&mbox).unwrap());
    assert_eq!(
        messages.len(),
        2 * ROUNDS,
        "every message is whole and separate"
    );
    let mut seen = vec![0; inputs.len()];
    for (from, message) in &messages {
        assert!(from.starts_with("From sender@example.org "), "{from}");
        let (_, rest) = split_lines(message, 2);
        let i = inputs
            .iter()
            .position(|m| without_from_line(m) == rest)
            .unwrap_or_else(|| panic!("a message in the mbox is not whole ({} bytes)", rest.len()));
        seen[i] += 1;
    }
    assert!(
        seen.iter().all(|&n| n == 1),
        "each message exactly once: {seen:?}"
    );
    assert_eq!(
        names_in(home.path()),
        [".local", "mbox", "own.yaml"],
        "no lock file is left (.local holds the decision log)"
    );
}

#[test]
fn the_mbox_from_line_carries_the_envelope_sender() {
    let home = temp_home();
    let mbox = home.path().join("mbox");
    let ham = fixture_bytes(HAM_LF);
    // From --sender, from $SENDER, from the input's From_ line, and the null sender.
    deliver_ok(
        deliver_mbox_cmd(home.path(), &mbox, None).args(["--sender", "flag@example.org"]),
        &ham,
        "--sender",
    );
    deliver_ok(
        deliver_mbox_cmd(home.path(), &mbox, None).env("SENDER", "env@example.org"),
        &ham,
        "SENDER",
    );
    let mut with_line = b"From line@example.org Tue Mar  3 10:00:00 2026\n".to_vec();
    with_line.extend_from_slice(&ham);
    deliver_ok(
        &mut deliver_mbox_cmd(home.path(), &mbox, None),
        &with_line,
        "From_ line",
    );
    deliver_ok(
        deliver_mbox_cmd(home.path(), &mbox, None).args(["--sender", ""]),
        BACKSCATTER.as_bytes(),
        "null sender",
    );
    let senders = |path: &Path| -> Vec<String> {
        mbox_messages(&fs::read(path).unwrap())
            .into_iter()
            .map(|(from, _)| from.split(' ').nth(1).unwrap().to_string())
            .collect()
    };
    assert_eq!(
        senders(&mbox),
        ["flag@example.org", "env@example.org", "line@example.org"]
    );
    // The backscatter went to the backscatter mbox (~/mail/Backscatter, made for it).
    assert_eq!(
        senders(&home.path().join("mail/Backscatter")),
        ["MAILER-DAEMON"]
    );
}

#[test]
fn filter_prints_the_input_plus_two_headers_and_nothing_else() {
    let home = temp_home();
    let config = write_config(home.path(), "own.yaml", OWN);
    for (what, input) in shapes() {
        let verdict = check_word(home.path(), Some(&config), &input);
        let mut cmd = backstop(home.path());
        cmd.args(["filter", "--recipient", RECIPIENT, "--config"])
            .arg(&config);
        let out = run_with_input(&mut cmd, &input);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The From_ line stays first, then the two headers, then the rest of the input.
        let from_line = &input[..input.len() - without_from_line(&input).len()];
        let printed = out
            .stdout
            .strip_prefix(from_line)
            .unwrap_or_else(|| panic!("{what}: the From_ line must stay first"));
        assert_traced(printed, &input, &verdict, &what);
    }
    // Nothing is written to the Maildir by filter.
    assert!(!home.path().join("Maildir").exists());
}

/// X-Backstop fields that came with the message (a sender can write any header) leave the
/// filter: the hosts' rules would act on a forged `action=discard`.
#[test]
fn filter_drops_the_x_backstop_fields_the_message_came_with() {
    let home = temp_home();
    let config = write_config(home.path(), "own.yaml", OWN);
    let from_line: &[u8] = b"From MAILER-DAEMON Tue Mar  3 10:00:06 2026\n";
    let forged: &[u8] = b"X-Backstop-Verdict: clean; action=discard\n\
                          X-Backstop-Reason: forged,\n\tover two lines\n";
    for (what, message) in [
        ("backscatter", BACKSCATTER.as_bytes().to_vec()),
        ("clean", fixture_bytes(HAM_LF)),
    ] {
        let first_end = message.iter().position(|&b| b == b'\n').expect("a line") + 1;
        let input = [
            from_line,
            &message[..first_end],
            forged,
            &message[first_end..],
        ]
        .concat();
        let verdict = check_word(home.path(), Some(&config), &input);
        assert_eq!(verdict, what, "the forged fields change no verdict");
        let mut cmd = backstop(home.path());
        cmd.args(["filter", "--recipient", RECIPIENT, "--config"])
            .arg(&config);
        let out = run_with_input(&mut cmd, &input);
        assert_eq!(out.status.code(), Some(0), "{what}");
        let printed = out
            .stdout
            .strip_prefix(from_line)
            .expect("the From_ line first");
        // What is printed is the message as it was before the forged fields were added.
        assert_traced(printed, &[from_line, &message].concat(), &verdict, what);
    }
}

// BACKSTOP_FAULT exists in debug builds only (it is compiled out of release binaries).
#[cfg(debug_assertions)]
#[test]
fn filter_after_a_panic_still_prints_the_whole_message() {
    let home = temp_home();
    for (what, input) in shapes() {
        let out = run_with_input(
            backstop(home.path())
                .arg("filter")
                .env("BACKSTOP_FAULT", "evaluate"),
            &input,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let from_line = &input[..input.len() - without_from_line(&input).len()];
        let printed = out
            .stdout
            .strip_prefix(from_line)
            .expect("the From_ line first");
        let (lines, rest) = split_lines(printed, 1);
        assert_eq!(
            lines,
            [[
                b"X-Backstop-Error: internal error, not filtered".as_slice(),
                line_end_of(&input)
            ]
            .concat()],
            "{what}"
        );
        assert_same_bytes(rest, without_from_line(&input), &what);
    }
}

#[test]
fn filter_with_a_broken_config_still_prints_the_whole_message() {
    let home = temp_home();
    let mut input = b"From MAILER-DAEMON Tue Mar  3 10:00:06 2026\n".to_vec();
    input.extend_from_slice(BACKSCATTER.as_bytes());
    for (what, config) in broken_configs(home.path()) {
        let mut cmd = backstop(home.path());
        cmd.args(["filter", "--config"]).arg(&config);
        let out = run_with_input(&mut cmd, &input);
        assert_eq!(out.status.code(), Some(0), "{what}");
        let from_line = &input[..input.len() - without_from_line(&input).len()];
        let printed = out
            .stdout
            .strip_prefix(from_line)
            .expect("the From_ line first");
        assert_error_traced(printed, &input, what);
    }
}

#[test]
fn messages_over_max_size_go_to_the_inbox_unparsed_and_byte_exact() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    let mbox = home.path().join("mbox");
    let config = write_config(home.path(), "small.yaml", &format!("{OWN}max_size: 4096\n"));
    // Backscatter, but over the limit: the inbox, unparsed.
    let mut padded = BACKSCATTER.as_bytes().to_vec();
    padded.extend_from_slice("x".repeat(4000).as_bytes());
    padded.push(b'\n');
    let mut big_crlf = b"From MAILER-DAEMON Tue Mar  3 10:00:06 2026\r\n".to_vec();
    big_crlf.extend(
        large_message("crlf")
            .split(|&b| b == b'\n')
            .skip(1)
            .flat_map(|l| [l, b"\r\n"].concat()),
    );
    let long_from = format!(
        "From {}@example.org Tue Mar  3 10:00:00 2026\nSubject: long From_ line\n\nbody\n",
        "l".repeat(6000)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("just over the limit", padded.clone()),
        ("limit plus one byte", padded[..4097].to_vec()),
        (
            "large LF with From_ line (streamed tail)",
            large_message("lf"),
        ),
        ("large CRLF with From_ line (streamed tail)", big_crlf),
        ("From_ line longer than max_size", long_from.into_bytes()),
    ];
    for (what, input) in &cases {
        assert!(input.len() > 4096);
        deliver_ok(
            &mut deliver_cmd(home.path(), &maildir, Some(&config)),
            input,
            what,
        );
        let (path, stored) = take_only_message(&maildir, what);
        assert_eq!(
            path.parent().unwrap(),
            maildir.join("new"),
            "{what}: the inbox"
        );
        let verdict_line = assert_traced(&stored, input, "clean", what);
        assert!(
            verdict_line.contains("action=inbox"),
            "{what}: {verdict_line}"
        );
        assert!(
            String::from_utf8_lossy(&stored[..300.min(stored.len())]).contains("max_size"),
            "{what}: the reason names max_size"
        );

        deliver_ok(
            &mut deliver_mbox_cmd(home.path(), &mbox, Some(&config)),
            input,
            what,
        );
        let messages = mbox_messages(&fs::read(&mbox).unwrap());
        fs::remove_file(&mbox).unwrap();
        assert_eq!(messages.len(), 1, "{what}: mbox");
        let body = &messages[0].1;
        if input.ends_with(b"\n") {
            assert_traced(body, input, "clean", &format!("{what}, mbox"));
        }
    }
    // A CRLF From_ line cut by the limit between its CR and its LF.
    let input =
        b"From MAILER-DAEMON Tue Mar  3 10:00:06 2026\r\nSubject: cut\r\n\r\nbody\r\n".to_vec();
    let cr = input.iter().position(|&b| b == b'\r').unwrap();
    let cut = write_config(home.path(), "cut.yaml", &format!("max_size: {cr}\n"));
    deliver_ok(
        &mut deliver_cmd(home.path(), &maildir, Some(&cut)),
        &input,
        "CR|LF cut",
    );
    let (_, stored) = take_only_message(&maildir, "CR|LF cut");
    assert_traced(&stored, &input, "clean", "CR|LF cut");
}

#[test]
fn a_usage_error_in_deliver_defers_with_75() {
    let home = temp_home();
    // Help and version from a host (stdin not a terminal) must not pass for a delivery either.
    let cases: [&[&str]; 8] = [
        &["deliver", "--bogus"],
        &["deliver", "--maildir"],
        &["deliver", "one", "two"],
        &["deliver", "--maildir", "a", "--mbox", "b"],
        &["--bogus", "deliver"],
        &["-c", "x.yaml", "deliver"],
        &["deliver", "-h"],
        &["deliver", "--version"],
    ];
    for args in cases {
        let out = deliver_deferred(
            backstop(home.path()).args(args),
            BACKSCATTER.as_bytes(),
            &format!("{args:?}"),
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("backstop: "),
            "{args:?}"
        );
        assert!(
            names_in(home.path()).is_empty(),
            "{args:?}: nothing delivered"
        );
    }
}

#[test]
fn check_prints_a_bare_word_and_sets_the_exit_status() {
    let home = temp_home();
    let config = write_config(home.path(), "own.yaml", OWN);
    let ham = fixture_bytes(HAM_LF);
    let run = |args: &[&str], input: &[u8]| -> Output {
        let mut cmd = backstop(home.path());
        cmd.arg("check")
            .args(args)
            .args(["--recipient", RECIPIENT, "--config"])
            .arg(&config);
        run_with_input(&mut cmd, input)
    };
    let out = run(&["--format", "word"], &ham);
    assert_eq!(
        (out.status.code(), out.stdout.as_slice()),
        (Some(0), b"clean".as_slice())
    );
    let out = run(&["--format", "word"], BACKSCATTER.as_bytes());
    assert_eq!(
        (out.status.code(), out.stdout.as_slice()),
        (Some(0), b"backscatter".as_slice())
    );
    // Like grep -q: 0 when it is backscatter, 1 when it is not.
    assert_eq!(
        run(&["--exit-status"], BACKSCATTER.as_bytes())
            .status
            .code(),
        Some(0)
    );
    assert_eq!(run(&["--exit-status"], &ham).status.code(), Some(1));
    let out = run(&["--exit-status", "--format", "word"], &ham);
    assert_eq!(
        (out.status.code(), out.stdout.as_slice()),
        (Some(1), b"clean".as_slice())
    );
}

/// About 4 MB: 100,000 levels of a message inside the one before, each level written `level`.
fn deeply_nested(level: &str) -> Vec<u8> {
    let mut m = level.repeat(100_000).into_bytes();
    m.extend_from_slice(b"From: a@example.org\nSubject: the bottom\n\nbody\n");
    m
}

/// Ways to nest a message in a message. The parser nests all of them, and freeing such a tree
/// recursively overflows the stack (mail-parser 0.11); only the first names `/rfc822` literally.
const NESTINGS: [&str; 5] = [
    "Subject: x\nContent-Type: message/rfc822\n\n",
    "Subject: x\nContent-Type: multipart/digest; boundary=b\n\n--b\n\n",
    "Subject: x\nContent-Type: message/ rfc822\n\n",
    "Subject: x\nContent-Type: message/\"rfc822\"\n\n",
    "Subject: x\nContent-Type: message/(comment)rfc822\n\n",
];

#[test]
fn a_hundred_thousand_nested_messages_do_not_crash() {
    let home = temp_home();
    let maildir = home.path().join("Maildir");
    for (n, level) in NESTINGS.iter().enumerate() {
        let what = format!("deep nesting of {level:?}");
        let input = deeply_nested(level);
        let word = check_word(home.path(), None, &input);
        assert!(
            ["clean", "legit-bounce", "backscatter", "unverified-bounce"].contains(&word.as_str()),
            "{what}: {word:?}"
        );
        deliver_ok(&mut deliver_cmd(home.path(), &maildir, None), &input, &what);
        let (_, stored) = take_only_message(&maildir, &what);
        assert_traced(&stored, &input, &word, &what);
        if n < 2 {
            let out = run_with_input(backstop(home.path()).arg("filter"), &input);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{what}, filter: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_traced(&out.stdout, &input, &word, &format!("{what}, filter"));
        }
    }
}

#[test]
fn a_killed_mbox_delivery_does_not_hold_off_the_next() {
    // A delivery over max_size streams its tail while it holds the locks; killed with SIGKILL
    // there, it leaves NAME.lock behind, fresh. The next delivery breaks it at once (the pid in
    // it is gone), instead of deferring every message for 5 minutes.
    let home = temp_home();
    let mbox = home.path().join("mbox");
    let lock = home.path().join("mbox.lock");
    let small = write_config(
        home.path(),
        "small.yaml",
        &format!("{OWN}max_size: 65536\n"),
    );
    let message = large_message("killed");
    for round in 0..3 {
        let mut child = deliver_mbox_cmd(home.path(), &mbox, Some(&small))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let part = message[..message.len() / 2].to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&part);
            stdin // kept open: the delivery blocks reading the rest, holding the locks
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !lock.exists() {
            assert!(
                Instant::now() < deadline,
                "round {round}: the streamed write never took the lock"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        drop(writer.join().unwrap());
        assert!(
            lock.exists(),
            "round {round}: the killed delivery left no lock"
        );
        let tag = format!("after-{round}");
        deliver_ok(
            &mut deliver_mbox_cmd(home.path(), &mbox, Some(&small)),
            &message_of_lines(&tag, 10),
            "the delivery after a kill",
        );
        let data = fs::read(&mbox).unwrap();
        let (_, last) = mbox_messages(&data).pop().unwrap();
        assert!(
            String::from_utf8_lossy(&last).contains(&format!("Subject: large {tag}")),
            "round {round}: the next message is the last in the mbox"
        );
        assert!(!lock.exists(), "round {round}: a lock is left");
    }
}

#[test]
fn symbolic_links_out_of_the_maildir_are_not_followed() {
    // Someone made the backscatter folder a link out of the Maildir: the message goes to the
    // inbox (never lost), and nothing is written where the link leads.
    let home = temp_home();
    let config = write_config(home.path(), "own.yaml", OWN);
    let maildir = home.path().join("Maildir");
    let outside = home.path().join("elsewhere");
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(maildir.join(sub)).unwrap();
        fs::create_dir_all(outside.join(sub)).unwrap();
    }
    std::os::unix::fs::symlink(&outside, maildir.join(".Backscatter")).unwrap();
    let out = deliver_exits(
        &mut deliver_cmd(home.path(), &maildir, Some(&config)),
        BACKSCATTER.as_bytes(),
        0,
        "the backscatter folder is a link",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("symbolic link") && stderr.contains("filed in the inbox"),
        "{stderr}"
    );
    let (path, stored) = take_only_message(&maildir, "the backscatter, in the inbox");
    assert!(path.starts_with(maildir.join("new")), "{}", path.display());
    assert_traced(
        &stored,
        BACKSCATTER.as_bytes(),
        "backscatter",
        "in the inbox",
    );
    for sub in ["cur", "new", "tmp"] {
        assert!(
            all_files(&outside, sub).is_empty(),
            "written to {sub}/ outside"
        );
    }
    // tmp/ itself a link: the inbox cannot be written, and the MTA keeps the message.
    fs::remove_file(maildir.join(".Backscatter")).unwrap();
    fs::remove_dir(maildir.join("tmp")).unwrap();
    std::os::unix::fs::symlink(outside.join("tmp"), maildir.join("tmp")).unwrap();
    deliver_deferred(
        &mut deliver_cmd(home.path(), &maildir, Some(&config)),
        b"Subject: hello\n\nclean\n",
        "tmp/ is a link",
    );
    for sub in ["cur", "new", "tmp"] {
        assert!(
            all_files(&outside, sub).is_empty(),
            "written to {sub}/ outside"
        );
    }
}
