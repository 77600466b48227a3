//! Integration tests: verdicts and explain output on real messages, through the built binary.

use std::path::Path;
use std::process::Output;

use crate::scenarios::{
    OWN_HOST, OWN_NET, Row, from_clauses, insert_forged_hop, json, json_str, read_manifest,
};
use crate::util::{backstop, fixture, root, run_with_input};

fn manifest() -> Vec<Row> {
    read_manifest(&fixture("corpus/manifest.tsv"), "all").expect("fixtures manifest")
}

fn check_json(home: &Path, config: &Path, file: &Path) -> serde_json::Value {
    let out = backstop(home)
        .arg("check")
        .arg("--format")
        .arg("json")
        .arg("-c")
        .arg(config)
        .arg(file)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "check {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("json of {}: {e}", file.display()))
}

fn write_config(dir: &Path, name: &str, yaml: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, yaml).expect("write config");
    p
}

/// The verdict table of every fixture under the corpus scenarios (plain, legit,
/// backscatter, forged relay), compared with the blessed table (BACKSTOP_BLESS=1
/// rewrites it after a deliberate change), plus the properties that must hold
/// whatever the table says.
#[test]
fn every_fixture_gets_its_verdicts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plain = write_config(
        tmp.path(),
        "plain.yaml",
        "own: {domains: [not-in-message.invalid], hosts: [mx.not-in-message.invalid]}\n",
    );
    let mut table = String::from("file\tplain\tlegit\tbackscatter\tforged\n");
    for row in manifest() {
        let path = fixture(&format!("corpus/{}", row.file));
        let v = check_json(tmp.path(), &plain, &path);
        let verdict = v["verdict"].as_str().unwrap_or("?").to_string();
        let kind = v["kind"].as_str().unwrap_or("-").to_string();
        match row.kind.as_str() {
            "ham" => assert_eq!(verdict, "clean", "ham {} must be clean", row.file),
            "other" => {}
            _ => assert_ne!(verdict, "clean", "bounce {} must be recognised", row.file),
        }
        let (mut legit, mut scatter, mut forged) =
            ("-".to_string(), "-".to_string(), "-".to_string());
        if row.kind == "dsn" || row.kind == "inline-bounce" {
            let (hosts, ips) = from_clauses(&row);
            let conf = write_config(
                tmp.path(),
                "legit.yaml",
                &format!(
                    "own: {{hosts: {}, networks: {}}}\n",
                    json(&hosts),
                    json(&ips)
                ),
            );
            legit = verdict_of(&check_json(tmp.path(), &conf, &path));
            assert_ne!(
                legit, "backscatter",
                "{}: mail that left through own relays",
                row.file
            );
        }
        if row.kind != "ham" && !row.orig_from_domain.is_empty() {
            let conf = write_config(
                tmp.path(),
                "scatter.yaml",
                &format!(
                    "own: {{domains: [{}], hosts: [{OWN_HOST}], networks: [{OWN_NET}]}}\n",
                    json_str(&row.orig_from_domain)
                ),
            );
            scatter = verdict_of(&check_json(tmp.path(), &conf, &path));
            assert_ne!(
                scatter, "legit-bounce",
                "{}: unrelated relays can never make it legit",
                row.file
            );
            // From the manifest, not from the program: a bounce whose returned original
            // names a sending host in a Received line, with none of the own relays in it, is
            // backscatter. (An original whose only Received is qmail's `invoked by uid`
            // names no host: nothing to judge.)
            if (row.kind == "dsn" || row.kind == "inline-bounce")
                && row.orig_received.iter().any(|r| r.starts_with("from "))
            {
                assert_eq!(
                    scatter, "backscatter",
                    "{}: its original came from a foreign host",
                    row.file
                );
            }
            let raw = std::fs::read(&path).expect("read");
            if let Some(bytes) = insert_forged_hop(&raw).filter(|_| !row.orig_received.is_empty()) {
                let forged_path = tmp.path().join("forged.eml");
                std::fs::write(&forged_path, bytes).expect("write");
                forged = verdict_of(&check_json(tmp.path(), &conf, &forged_path));
                assert_ne!(
                    forged, "legit-bounce",
                    "{}: a forged own hop must never make it legit",
                    row.file
                );
                if scatter == "backscatter" {
                    assert_eq!(
                        forged, "backscatter",
                        "{}: the forged hop rescued backscatter",
                        row.file
                    );
                }
            }
        }
        table.push_str(&format!(
            "{}\t{verdict} {kind}\t{legit}\t{scatter}\t{forged}\n",
            row.file
        ));
    }
    compare_or_bless(&root().join("tests/fixtures/expected/verdicts.tsv"), &table);
}

fn verdict_of(v: &serde_json::Value) -> String {
    v["verdict"].as_str().unwrap_or("?").to_string()
}

/// Compares `got` with the file, or writes it when BACKSTOP_BLESS is set.
fn compare_or_bless(path: &Path, got: &str) {
    if std::env::var_os("BACKSTOP_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, got).expect("bless");
        return;
    }
    let want = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with BACKSTOP_BLESS=1 to create it)",
            path.display()
        )
    });
    if want != got {
        let diff: Vec<String> = want
            .lines()
            .zip(got.lines())
            .filter(|(a, b)| a != b)
            .take(20)
            .map(|(a, b)| format!("- {a}\n+ {b}"))
            .collect();
        panic!(
            "{} differs (BACKSTOP_BLESS=1 rewrites it):\n{}\n(lines: want {}, got {})",
            path.display(),
            diff.join("\n"),
            want.lines().count(),
            got.lines().count()
        );
    }
}

/// The messages whose explain output is kept in `tests/fixtures/expected/explain/`.
const EXPLAINED: &[&str] = &[
    "bounces/sisimai-bsd/lhost-postfix-02.eml",
    "bounces/sisimai-bsd/lhost-qmail-02.eml",
    "bounces/sisimai-bsd/lhost-exim-02.eml",
    "bounces/sisimai-bsd/rfc3834-01.eml",
    "bounces/sisimai-bsd/arf-11.eml",
    "ham/spamassassin-hard-ham-1/00002.ca96f74042d05c1a1d29ca30467cfcd5.eml",
];

/// Explain output for a few messages of each form, under a config that names own relays.
#[test]
fn explain_output_matches_the_expected_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = write_config(
        tmp.path(),
        "own.yaml",
        "own:\n  domains: [example.jp]\n  hosts: [mail.own.example]\n  networks: [100.100.100.0/24, 192.0.2.0/24]\n",
    );
    let expected_dir = root().join("tests/fixtures/expected/explain");
    for rel in EXPLAINED {
        let path = named_fixture(rel);
        let out = backstop(tmp.path())
            .arg("explain")
            .arg("-c")
            .arg(&conf)
            .arg(&path)
            .output()
            .expect("run");
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).expect("utf-8");
        compare_or_bless(
            &expected_dir.join(format!("{}.txt", rel.replace('/', "__"))),
            &text,
        );
        // The explain trace and check's JSON come from the one evaluation.
        let v = check_json(tmp.path(), &conf, &path);
        let verdict = v["verdict"].as_str().expect("verdict");
        assert!(
            text.contains(&format!("\nverdict: {verdict}\n")),
            "{rel}: explain and check disagree"
        );
    }
    let mut kept: Vec<String> = std::fs::read_dir(&expected_dir)
        .expect("expected/explain")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    let mut named: Vec<String> = EXPLAINED
        .iter()
        .map(|rel| format!("{}.txt", rel.replace('/', "__")))
        .collect();
    named.sort();
    assert_eq!(
        kept, named,
        "an expected explain file per EXPLAINED name, and no other"
    );
}

/// The fixture `rel`, which must be there.
fn named_fixture(rel: &str) -> std::path::PathBuf {
    let p = fixture(&format!("corpus/{rel}"));
    assert!(p.is_file(), "no fixture {rel}");
    p
}

#[test]
fn check_json_carries_the_contract_fields() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = write_config(
        tmp.path(),
        "c.yaml",
        "own: {domains: [example.jp], hosts: [mail.own.example], networks: [100.100.100.0/24]}\n",
    );
    let v = check_json(
        tmp.path(),
        &conf,
        &named_fixture("bounces/sisimai-bsd/lhost-postfix-02.eml"),
    );
    for key in ["verdict", "kind", "action", "reasons", "original"] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert!(v["reasons"].as_array().is_some_and(|r| !r.is_empty()));
    let original = &v["original"];
    assert!(original.get("message_id").is_some() && original.get("from").is_some());
    assert!(
        original["received"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{original}"
    );
    let ham = check_json(
        tmp.path(),
        &conf,
        &named_fixture("ham/spamassassin-easy-ham-1/00001.7c53336b37003a9286aba55d2945844c.eml"),
    );
    assert_eq!(ham["verdict"], "clean");
    assert!(ham["kind"].is_null() && ham["original"].is_null());
}

fn check_with_env(env: &[(&str, &str)], input: &[u8]) -> serde_json::Value {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cmd = backstop(tmp.path());
    cmd.args(["check", "--format", "json"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: Output = run_with_input(&mut cmd, input);
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("json")
}

/// The envelope the delivery agent passes is used: an empty SENDER is bounce evidence, and
/// with no config the recipient's domain is the own domain.
#[test]
fn the_environment_gives_the_envelope() {
    let msg = b"From: Mail Delivery System <mailer-daemon@mx.example.net>\nSubject: hello\nMessage-ID: <1@mx.example.net>\n\nhello\n";
    let without = check_with_env(&[], msg);
    let with = check_with_env(&[("SENDER", ""), ("RECIPIENT", "me@own.example")], msg);
    assert_eq!(without["verdict"], "clean", "{without}");
    assert_ne!(with["verdict"], "clean", "{with}");
    assert!(
        with["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| r["id"] == "null-sender")
    );
    assert_eq!(with["envelope"]["sender_source"], "SENDER variable");
    assert_eq!(with["own"]["domains"][0], "own.example");
}

#[test]
fn word_and_exit_status_formats() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ham =
        named_fixture("ham/spamassassin-easy-ham-1/00001.7c53336b37003a9286aba55d2945844c.eml");
    let out = backstop(tmp.path())
        .args(["check", "--format", "word"])
        .arg(&ham)
        .output()
        .expect("run");
    assert_eq!(out.stdout, b"clean");
    let out = backstop(tmp.path())
        .args(["check", "--exit-status"])
        .arg(&ham)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
}
