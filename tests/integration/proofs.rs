//! The proofs (issue 14) through the built binary: the ledger fed by `learn`, DKIM with keys
//! fetched by `dkim-keys fetch` from a DNS server, BATV on the envelope recipient, and the wave
//! alarm, each decided by `deliver` and shown by `check --format json`.

use std::fs;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};

use backstop::proofs::ledger::{self, Mark, Paths};

use crate::util::{backstop, files_in, fixture, run_with_input, temp_home};

fn now() -> i64 {
    backstop::proofs::now()
}

fn date(t: i64) -> String {
    mail_parser::DateTime::from_timestamp(t).to_rfc822()
}

/// An original the user sent (or a spammer forged as the user's).
fn original(id: &str, sent: i64) -> String {
    format!(
        "Received: from [10.0.0.5] (unknown [203.0.113.9])\n\tby mx.remote.example (Postfix) with ESMTP id 1A2B\n\tfor <bob@remote.example>; {d}\n\
         From: Alice <alice@vm.test>\nTo: bob@remote.example\nSubject: The quarterly figures\n\
         Date: {d}\nMessage-ID: <{id}>\n\nHere are the figures.\n",
        d = date(sent)
    )
}

/// A DSN from mx.remote.example returning `original` (whole, or its header as
/// text/rfc822-headers).
fn dsn(original: &str, headers_only: bool) -> String {
    let (ty, body) = if headers_only {
        let end = original.find("\n\n").map_or(original.len(), |i| i + 1);
        ("text/rfc822-headers", &original[..end])
    } else {
        ("message/rfc822", original)
    };
    format!(
        "Return-Path: <>\nFrom: Mail Delivery System <MAILER-DAEMON@mx.remote.example>\n\
         To: alice@vm.test\nSubject: Undelivered Mail Returned to Sender\nDate: {d}\n\
         Message-ID: <bounce.{n}@mx.remote.example>\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B1\"\n\n\
         --B1\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n\
         --B1\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.remote.example\n\n\
         Final-Recipient: rfc822; bob@remote.example\nAction: failed\nStatus: 5.1.1\n\n\
         --B1\nContent-Type: {ty}\n\n{body}\n--B1--\n",
        d = date(now()),
        n = now()
    )
}

/// An out-of-office reply to message `id`.
fn reply_to(id: &str, t: i64) -> String {
    format!(
        "From: Bob <bob@remote.example>\nTo: alice@vm.test\nSubject: Out of Office: The quarterly figures\n\
         Date: {}\nMessage-ID: <ooo.{id}>\nAuto-Submitted: auto-replied\nIn-Reply-To: <{id}>\n\n\
         I am out of the office until Monday and will not be reading mail.\n",
        date(t)
    )
}

/// A home with a Maildir and a config holding `extra`.
fn setup(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let home = temp_home();
    let config = home.path().join("config.yaml");
    fs::write(
        &config,
        format!(
            "own:\n  domains: [vm.test]\nmaildir: {}/Maildir\n{extra}",
            home.path().display()
        ),
    )
    .unwrap();
    (home, config)
}

/// Delivers `message` and returns the verdict header of the message it stored in the inbox
/// or the Backscatter folder (the newest file).
fn deliver(home: &Path, config: &Path, message: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = backstop(home);
    cmd.args(["deliver", "-c"]).arg(config);
    cmd.env("SENDER", "");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_with_input(&mut cmd, message.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut newest: Vec<(std::time::SystemTime, PathBuf)> =
        ["Maildir/new", "Maildir/.Backscatter/new"]
            .iter()
            .flat_map(|d| files_in(&home.join(d)))
            .map(|p| (fs::metadata(&p).unwrap().modified().unwrap(), p))
            .collect();
    newest.sort();
    let (_, path) = newest.last().expect("a stored message");
    let text = fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("X-Backstop-Verdict:"))
        .unwrap_or("none");
    fs::remove_file(path).unwrap();
    line.to_string()
}

/// The evidence tags `check` gives.
fn tags(home: &Path, config: &Path, message: &str, env: &[(&str, &str)]) -> Vec<String> {
    let mut cmd = backstop(home);
    cmd.args(["check", "--format", "json", "-c"]).arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_with_input(&mut cmd, message.as_bytes());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tag"].as_str().unwrap().to_string())
        .collect()
}

fn learn(home: &Path, config: &Path, message: &str) {
    let mut cmd = backstop(home);
    cmd.args(["learn", "-c"]).arg(config);
    let out = run_with_input(&mut cmd, message.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_ledger_proves_bounces_of_sent_mail_and_unmasks_forged_ones() {
    let (home, config) = setup("");
    let t = now();
    let sent = original("q4.1@vm.test", t - 120);
    let forged = original("spam.9@vm.test", t - 600);
    // No ledger: neither can be told.
    assert!(deliver(home.path(), &config, &dsn(&sent, false), &[]).contains("unverified-bounce"));
    assert!(deliver(home.path(), &config, &dsn(&forged, false), &[]).contains("unverified-bounce"));
    // The ledger has been learning for an hour (as a hook that was set up then), and the sent
    // message went through `learn`.
    let paths = Paths::new(home.path().join(".local/share/backstop/ledger"));
    ledger::learn(&paths, &[], &[Mark::Hook], t - 3600, 60).unwrap();
    learn(home.path(), &config, &sent);
    for headers_only in [false, true] {
        let v = deliver(home.path(), &config, &dsn(&sent, headers_only), &[]);
        assert!(v.contains("legit-bounce"), "{v}");
        let v = deliver(home.path(), &config, &dsn(&forged, headers_only), &[]);
        assert!(v.starts_with("X-Backstop-Verdict: backscatter"), "{v}");
    }
    assert!(tags(home.path(), &config, &dsn(&sent, false), &[]).contains(&"ledger-sent".into()));
    assert!(
        tags(home.path(), &config, &dsn(&forged, false), &[]).contains(&"ledger-not-sent".into())
    );
    // An original dated before the ledger started says nothing.
    let old = original("old.1@vm.test", t - 7200);
    let v = deliver(home.path(), &config, &dsn(&old, false), &[]);
    assert!(v.contains("unverified-bounce"), "{v}");
    // An out-of-office reply to the sent message is legitimate; one to a forged one is not,
    // once the ledger has been learning for longer than an auto-reply takes to come.
    let v = deliver(home.path(), &config, &reply_to("spam.9@vm.test", t), &[]);
    assert!(!v.contains("backscatter"), "too young a ledger: {v}");
    let (home, config) = setup("");
    let paths = Paths::new(home.path().join(".local/share/backstop/ledger"));
    ledger::learn(&paths, &[], &[Mark::Hook], t - 15 * 86_400, 60).unwrap();
    learn(home.path(), &config, &sent);
    for (id, want) in [
        ("q4.1@vm.test", "legit-bounce"),
        ("spam.9@vm.test", "backscatter"),
    ] {
        let v = deliver(home.path(), &config, &reply_to(id, t), &[]);
        assert!(v.contains(want), "{id}: {v}");
    }
    // The ledger holds no Message-ID in the clear.
    let raw = fs::read(&paths.ledger).unwrap();
    assert!(!raw.windows(7).any(|w| w == b"vm.test"));
}

#[test]
fn ledger_complete_false_keeps_absence_from_deciding() {
    let (home, config) = setup("ledger:\n  complete: false\n");
    let t = now();
    let paths = Paths::new(home.path().join(".local/share/backstop/ledger"));
    ledger::learn(&paths, &[], &[Mark::Hook], t - 3600, 60).unwrap();
    let forged = original("spam.9@vm.test", t - 600);
    let v = deliver(home.path(), &config, &dsn(&forged, false), &[]);
    assert!(v.contains("unverified-bounce"), "{v}");
}

#[test]
fn learn_reads_sent_folders_incrementally_and_idempotently() {
    let (home, config) = setup("");
    let md = home.path().join("Sent");
    for d in ["cur", "new", "tmp"] {
        fs::create_dir_all(md.join(d)).unwrap();
    }
    for i in 0..3 {
        fs::write(
            md.join(format!("cur/{i}.host:2,S")),
            original(&format!("m{i}@vm.test"), now() - 100),
        )
        .unwrap();
    }
    fs::write(
        md.join("cur/x.host:2,S"),
        "Subject: draft without an ID\n\nx\n",
    )
    .unwrap();
    let run = || {
        let out = backstop(home.path())
            .args(["learn", "-c"])
            .arg(&config)
            .arg(&md)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert!(
        first.contains("4 messages read, 3 learnt, 0 known already"),
        "{first}"
    );
    assert!(first.contains("1 without a Message-ID"), "{first}");
    let second = run();
    assert!(second.contains(" 0 learnt"), "{second}");
    let got = ledger::lookup(
        &Paths::new(home.path().join(".local/share/backstop/ledger")),
        &["<m2@vm.test>".into()],
        now(),
        60,
    )
    .unwrap()
    .unwrap();
    assert!(got.found.is_some());
}

const DKIM_RSA: &str = "proofs/signed-rsa.eml";

fn dkim_config(extra: &str) -> (tempfile::TempDir, PathBuf) {
    setup(&format!(
        "dkim:\n  keys_file: {}\n  signs_all: true\n{extra}",
        fixture("proofs/dkim-keys").display()
    ))
}

#[test]
fn an_own_dkim_signature_proves_the_original_even_without_its_body() {
    let (home, config) = dkim_config("");
    let signed = fs::read_to_string(fixture(DKIM_RSA)).unwrap();
    let signed_ed = fs::read_to_string(fixture("proofs/signed-ed.eml")).unwrap();
    let cut_body = signed.replace("Line two.\n", "");
    let tampered = signed.replace("The quarterly figures", "Buy now");
    let unsigned = original("x.1@vm.test", now());
    let cases = [
        (&signed, false, "legit-bounce", "dkim-valid"),
        (&signed, true, "legit-bounce", "dkim-valid"),
        (&signed_ed, false, "legit-bounce", "dkim-valid"),
        (&cut_body, false, "legit-bounce", "dkim-valid"),
        (&tampered, false, "backscatter", "dkim-invalid-required"),
        (&tampered, true, "backscatter", "dkim-invalid-required"),
        (&unsigned, false, "backscatter", "dkim-missing-required"),
    ];
    for (i, (orig, headers_only, want, tag)) in cases.iter().enumerate() {
        let bounce = dsn(orig, *headers_only);
        let v = deliver(home.path(), &config, &bounce, &[]);
        assert!(v.contains(want), "case {i}: {v}");
        assert!(
            tags(home.path(), &config, &bounce, &[]).contains(&tag.to_string()),
            "case {i}"
        );
    }
}

#[test]
fn batv_tags_prove_bounces_and_required_rejects_untagged_ones() {
    let (home, config) = setup("batv:\n  secrets: [unused, s3cret]\n  required: true\n");
    let day = (now() / 86_400 + 7) % 1000;
    let addr = "alice@vm.test";
    let hash = backstop::proofs::batv::hash(b"s3cret", 1, day as u32, addr);
    let tagged = format!("prvs=1{day:03}{hash}={addr}");
    let wrong = format!("prvs=1{day:03}000000={addr}");
    let bounce = dsn(&original("x.2@vm.test", now()), false);
    let cases = [
        ("RECIPIENT", tagged.as_str(), "legit-bounce", "batv-valid"),
        (
            "ORIGINAL_RECIPIENT",
            tagged.as_str(),
            "legit-bounce",
            "batv-valid",
        ),
        ("RECIPIENT", addr, "backscatter", "batv-invalid-required"),
        (
            "RECIPIENT",
            wrong.as_str(),
            "backscatter",
            "batv-invalid-required",
        ),
    ];
    for (var, value, want, tag) in cases {
        let env = [(var, value)];
        let v = deliver(home.path(), &config, &bounce, &env);
        assert!(v.contains(want), "{var}={value}: {v}");
        assert!(tags(home.path(), &config, &bounce, &env).contains(&tag.to_string()));
    }
    // A Delivered-To the host added counts as well.
    let with_header = format!("Delivered-To: {tagged}\n{bounce}");
    let v = deliver(home.path(), &config, &with_header, &[]);
    assert!(v.contains("legit-bounce"), "{v}");
}

#[test]
fn a_wave_of_legit_bounces_files_one_alarm() {
    let (home, config) =
        dkim_config("alarm:\n  bounces: 3\n  window_minutes: 60\n  recipients: 1\n");
    let signed = fs::read_to_string(fixture(DKIM_RSA)).unwrap();
    let bounce = dsn(&signed, false);
    let alarms = |home: &Path| -> Vec<String> {
        files_in(&home.join("Maildir/new"))
            .iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .filter(|t| t.contains("X-Backstop-Alarm: wave"))
            .collect()
    };
    for i in 0..5 {
        let mut cmd = backstop(home.path());
        cmd.args(["deliver", "-c"]).arg(&config).env("SENDER", "");
        let out = run_with_input(&mut cmd, bounce.as_bytes());
        assert_eq!(out.status.code(), Some(0));
        let n = alarms(home.path()).len();
        assert_eq!(n, usize::from(i >= 2), "after {} bounces", i + 1);
    }
    let alarm = &alarms(home.path())[0];
    assert!(alarm.contains("filed 3 bounces"), "{alarm}");
    assert!(alarm.contains("The quarterly figures"), "{alarm}");
    assert!(alarm.contains("bob@remote.example"), "{alarm}");
    assert!(
        alarm.contains("The relays the returned originals name"),
        "{alarm}"
    );
    // 5 bounces and one alarm in the inbox.
    assert_eq!(files_in(&home.path().join("Maildir/new")).len(), 6);
}

#[test]
fn the_alarm_can_run_a_command_instead() {
    let home = temp_home();
    let out_file = home.path().join("alarm.txt");
    let (home2, config) = dkim_config(&format!(
        "alarm:\n  bounces: 2\n  recipients: 1\n  command: [/usr/bin/tee, {}]\n",
        out_file.display()
    ));
    let bounce = dsn(&fs::read_to_string(fixture(DKIM_RSA)).unwrap(), false);
    for _ in 0..2 {
        let mut cmd = backstop(home2.path());
        cmd.args(["deliver", "-c"]).arg(&config).env("SENDER", "");
        assert_eq!(
            run_with_input(&mut cmd, bounce.as_bytes()).status.code(),
            Some(0)
        );
    }
    let text = fs::read_to_string(&out_file).unwrap();
    assert!(text.contains("backstop alarm: 2 bounces"), "{text}");
    assert_eq!(
        files_in(&home2.path().join("Maildir/new")).len(),
        2,
        "no alarm filed"
    );
}

#[test]
fn dkim_keys_fetch_copies_the_published_key_from_dns() {
    let record = fs::read_to_string(fixture("proofs/dkim-keys"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("sel1."))
        .unwrap()
        .split_once(' ')
        .unwrap()
        .1
        .to_string();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = sock.local_addr().unwrap();
    let answer_record = record.clone();
    let dns = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        let q = &buf[..n];
        // The question ends 4 bytes after its name's root label.
        let mut end = 12;
        while q[end] != 0 {
            end += 1 + usize::from(q[end]);
        }
        end += 5;
        let mut a = q[..end].to_vec();
        a[2] = 0x81;
        a[3] = 0x80;
        a[7] = 1;
        a[11] = 0;
        a.extend([0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60]);
        let mut rdata = Vec::new();
        for chunk in answer_record.as_bytes().chunks(255) {
            rdata.push(chunk.len() as u8);
            rdata.extend(chunk);
        }
        a.extend((rdata.len() as u16).to_be_bytes());
        a.extend(rdata);
        sock.send_to(&a, from).unwrap();
        String::from_utf8_lossy(&q[13..end - 5]).into_owned()
    });
    let home = temp_home();
    let keys = home.path().join("keys");
    let out = backstop(home.path())
        .args([
            "dkim-keys",
            "fetch",
            "--domain",
            "vm.test",
            "--selector",
            "sel1",
        ])
        .arg("--server")
        .arg(server.to_string())
        .arg("-o")
        .arg(&keys)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let asked = dns.join().unwrap();
    assert!(
        asked.contains("sel1") && asked.contains("_domainkey"),
        "{asked}"
    );
    let written = fs::read_to_string(&keys).unwrap();
    assert!(
        written.contains(&format!("sel1._domainkey.vm.test {record}")),
        "{written}"
    );
    // The fetched key proves a signed original.
    let config = home.path().join("config.yaml");
    fs::write(
        &config,
        format!(
            "own:\n  domains: [vm.test]\ndkim:\n  keys_file: {}\n",
            keys.display()
        ),
    )
    .unwrap();
    let bounce = dsn(&fs::read_to_string(fixture(DKIM_RSA)).unwrap(), false);
    assert!(tags(home.path(), &config, &bounce, &[]).contains(&"dkim-valid".to_string()));
}

#[test]
fn lint_checks_the_dkim_keys_and_the_proof_settings() {
    let home = temp_home();
    let config = home.path().join("config.yaml");
    let lint = |text: &str| {
        fs::write(&config, text).unwrap();
        let out = backstop(home.path())
            .arg("lint")
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let keys = fixture("proofs/dkim-keys");
    assert_eq!(
        lint(&format!("dkim:\n  keys_file: {}\n", keys.display())).0,
        Some(0)
    );
    let (code, err) =
        lint("dkim:\n  keys:\n    - {domain: vm.test, selector: s, record: \"v=DKIM1; p=AAAA\"}\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("s._domainkey.vm.test"), "{err}");
    let (code, err) = lint("batv:\n  required: true\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("batv.secrets"), "{err}");
    let (code, err) = lint("alarm:\n  bounces: 1\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("config.yaml:2:"), "{err}");
}

/// `original` with an `X-Bounce-Stamp` field made with key `id`/`secret` over its From, Date
/// and Message-ID (as `backstop-milter` stamps outbound mail), made `age` seconds ago.
fn stamped(original: &str, id: &str, secret: &str, age: i64) -> String {
    use backstop::proofs::stamp;
    let field = |name: &str| -> String {
        original
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap()
            .to_string()
    };
    let key = stamp::Key {
        id: id.into(),
        secret: secret.as_bytes().to_vec(),
    };
    let value = stamp::make(
        &key,
        now() - age,
        field("From").as_bytes(),
        field("Date").as_bytes(),
        field("Message-ID").as_bytes(),
    );
    original.replacen("\n\n", &format!("\n{}: {value}\n\n", stamp::FIELD), 1)
}

#[test]
fn a_site_stamp_proves_the_original_in_deliver_and_check() {
    let home = temp_home();
    let keys = home.path().join("stamp.keys");
    fs::write(
        &keys,
        "k2 second-secret-0123456789\nk1 first-secret-0123456789\n",
    )
    .unwrap();
    let (home2, config) = setup(&format!("stamp:\n  key_file: {}\n", keys.display()));
    let sent = original("s.1@vm.test", now() - 3600);
    let good = stamped(&sent, "k1", "first-secret-0123456789", 3600);
    let wrong_key = stamped(&sent, "k1", "someone-elses-secret-0123", 3600);
    let unknown_key = stamped(&sent, "k9", "first-secret-0123456789", 3600);
    let copied = good.replace("<s.1@vm.test>", "<s.2@vm.test>");
    let too_old = stamped(&sent, "k1", "first-secret-0123456789", 61 * 86_400);
    let cases = [
        (&good, false, Some("stamp-valid")),
        (&good, true, Some("stamp-valid")),
        (&wrong_key, true, Some("stamp-invalid")),
        (&unknown_key, true, Some("stamp-unknown")),
        (&copied, true, Some("stamp-invalid")),
        (&too_old, true, Some("stamp-unknown")),
        (&sent, true, None),
    ];
    for (i, (orig, headers_only, tag)) in cases.iter().enumerate() {
        let bounce = dsn(orig, *headers_only);
        let v = deliver(home2.path(), &config, &bounce, &[]);
        let got = tags(home2.path(), &config, &bounce, &[]);
        let stamp_tags: Vec<&String> = got.iter().filter(|t| t.starts_with("stamp-")).collect();
        match tag {
            Some(t) => assert_eq!(stamp_tags, vec![&t.to_string()], "case {i}: {got:?}"),
            None => assert!(stamp_tags.is_empty(), "case {i}: {got:?}"),
        }
        assert_eq!(
            v.contains("legit-bounce"),
            *tag == Some("stamp-valid"),
            "case {i}: {v}"
        );
    }
}

/// The known limit of a bouncer that returns the original without a Received line of its own
/// (issue 13): the spammer's top line `from <own relay> by <the bouncer>` is believed on the
/// bouncer's name alone. A complete ledger still unmasks it; the bouncer's own record of its
/// client (`Received-From-MTA`) does too, where the report has one.
#[test]
fn a_forged_top_line_for_a_bouncer_that_trims_its_own_is_stopped_by_the_ledger() {
    let home = temp_home();
    let config = home.path().join("config.yaml");
    fs::write(
        &config,
        format!(
            "own:\n  domains: [vm.test]\n  hosts: [mail.vm.test]\n  networks: [198.51.100.0/24]\nmaildir: {}/Maildir\n",
            home.path().display()
        ),
    )
    .unwrap();
    let t = now();
    let forged = original("spam.9@vm.test", t - 600).replacen(
        "from [10.0.0.5] (unknown [203.0.113.9])",
        "from mail.vm.test (mail.vm.test [198.51.100.7])",
        1,
    );
    let report = dsn(&forged, false);
    // No proof: believed on the bouncer's name (the limit the README states).
    let v = deliver(home.path(), &config, &report, &[]);
    assert!(v.contains("legit-bounce"), "{v}");
    // The report says it got the original from the spammer's host: not believed.
    let named = report.replacen(
        "Reporting-MTA: dns; mx.remote.example\n",
        "Reporting-MTA: dns; mx.remote.example\nReceived-From-MTA: dns; bot.spam.example ([203.0.113.9])\n",
        1,
    );
    let v = deliver(home.path(), &config, &named, &[]);
    assert!(!v.contains("legit-bounce"), "{v}");
    // A complete ledger that never saw the Message-ID: backscatter.
    let paths = Paths::new(home.path().join(".local/share/backstop/ledger"));
    ledger::learn(&paths, &[], &[Mark::Hook], t - 3600, 60).unwrap();
    let v = deliver(home.path(), &config, &report, &[]);
    assert!(v.starts_with("X-Backstop-Verdict: backscatter"), "{v}");
}
