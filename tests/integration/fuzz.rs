//! Property tests over message bytes: no input makes evaluation panic, and no input makes
//! `backstop deliver` exit with anything but 0 (or 75), or store anything but the input.
//!
//! The inputs are arbitrary bytes, real fixture messages mutated (bytes flipped, inserted,
//! deleted, regions duplicated, MIME tokens and the message's own boundaries injected) and
//! synthetic nests of `message/rfc822` and multiparts. The case counts keep the whole file to
//! about half a minute in a debug build; PROPTEST_CASES raises or lowers them all. The
//! coverage-guided counterpart is the cargo-fuzz target in `fuzz/` (`fuzz/run.sh SECONDS`).

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use backstop::config::Config;
use backstop::message::EnvVars;
use backstop::rules::RuleSet;
use backstop::verdict::evaluate;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence, TestRunner};

use crate::util::{
    assert_quiet_for_mta, backstop, files_in, fixture, run_with_input, split_lines, temp_home,
    without_from_line,
};

/// The own infrastructure, so that ownership judging runs too.
const OWN: &str =
    "own:\n  domains: [example.com]\n  hosts: [mail.example.com]\n  networks: [192.0.2.0/24]\n";

/// Every fixture message, read once.
static FIXTURES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let mut files = Vec::new();
    collect_eml(&fixture("corpus"), &mut files);
    files.sort();
    assert!(files.len() > 100, "the fixture corpus is missing");
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
});

fn collect_eml(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_eml(&path, out);
        } else if path.extension().is_some_and(|e| e == "eml") {
            out.push(path);
        }
    }
}

thread_local! {
    /// The config and rules, built once per test thread (a RuleSet is not Sync): the default
    /// rules and the own infrastructure.
    static SETUP: (Config, RuleSet) = {
        let config = Config::from_str(OWN, "fuzz.yaml").expect("the fuzz config");
        let rules = RuleSet::build(&config.user_rules, "fuzz.yaml").expect("the default rules");
        (config, rules)
    };
}

/// MIME and header fragments that steer the parser into its rarer paths.
const TOKENS: &[&[u8]] = &[
    b"\nContent-Type: message/rfc822\n\n",
    b"\nContent-Type: message/global\n\n",
    b"\nContent-Type: multipart/mixed; boundary=\"zz\"\n\n--zz\n",
    b"\nContent-Type: multipart/report; report-type=delivery-status; boundary=zz\n\n--zz\nContent-Type: message/delivery-status\n\n",
    b"\n--zz\n",
    b"\n--zz--\n",
    b"\nContent-Type: text/rfc822-headers\n\n",
    b"\nContent-Transfer-Encoding: base64\n\n",
    b"\nContent-Transfer-Encoding: quoted-printable\n\n=\n=4",
    b"=?utf-8?B?w6nDqQ==?=",
    b"=?iso-2022-jp?b?GyRCJDMbKEI=?=",
    b"=?x?q?",
    b"\nReceived: from a (b [203.0.113.1]) by mail.example.com with ESMTP; Tue, 3 Mar 2026 10:00:00 +0000\n",
    b"\nReturn-Path: <>\n",
    b"\nFrom: \"\\\" <@>,,<\n",
    b"\nMessage-ID: <<>>@\n",
    b"\nContent-Type: multipart/alternative; boundary=\"\"\n\n",
    b"\nContent-Type: ;;;=\"\n",
    b"\nContent-Disposition: attachment; filename*0*=utf-8''%E2%82; filename*1=x\n",
    b"\r\n\r\n",
    b"\r",
    b"\n\n",
    b"\n \t\n",
    b"\0",
    b"\xff\xfe\xc3",
    b"From ",
    b"\n>From ",
];

/// One change to a message. Positions are taken modulo the message's length.
#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Token {
        at: usize,
        token: usize,
    },
    /// The message's own boundary, as a delimiter (`--b`) or a close delimiter (`--b--`).
    Boundary {
        at: usize,
        close: bool,
    },
    Duplicate {
        from: usize,
        len: usize,
        at: usize,
    },
    Truncate {
        at: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (any::<usize>(), 1..64usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        4 => (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Token { at, token }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(at, close)| Mutation::Boundary { at, close }),
        1 => (any::<usize>(), 1..2048usize, any::<usize>()).prop_map(|(from, len, at)| Mutation::Duplicate { from, len, at }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

/// The `boundary=` values a message declares.
fn boundaries(m: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(m);
    let lower = text.to_ascii_lowercase();
    lower
        .match_indices("boundary=")
        .filter_map(|(i, k)| {
            let rest = &text[i + k.len()..];
            let b: String = rest
                .trim_start_matches('"')
                .chars()
                .take_while(|c| !matches!(c, '"' | ';' | '\r' | '\n'))
                .collect();
            (!b.is_empty()).then(|| b.into_bytes())
        })
        .collect()
}

fn apply(mut m: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let pos = |at: usize, len: usize| at % (len + 1);
        match mutation {
            Mutation::Flip { at, bit } => {
                if !m.is_empty() {
                    let i = at % m.len();
                    m[i] ^= 1 << bit;
                }
            }
            Mutation::Insert { at, bytes } => {
                let i = pos(*at, m.len());
                m.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete { at, len } => {
                let i = pos(*at, m.len());
                let end = (i + len).min(m.len());
                m.drain(i..end);
            }
            Mutation::Token { at, token } => {
                let i = pos(*at, m.len());
                m.splice(i..i, TOKENS[*token].iter().copied());
            }
            Mutation::Boundary { at, close } => {
                let found = boundaries(&m);
                if let Some(b) = found.get(at % found.len().max(1)) {
                    let mut line = b"\n--".to_vec();
                    line.extend_from_slice(b);
                    line.extend_from_slice(if *close { b"--\n" } else { b"\n" });
                    let i = pos(*at / 7, m.len());
                    m.splice(i..i, line);
                }
            }
            Mutation::Duplicate { from, len, at } => {
                let start = pos(*from, m.len());
                let end = (start + len).min(m.len());
                let region = m[start..end].to_vec();
                let i = pos(*at, m.len());
                m.splice(i..i, region);
            }
            Mutation::Truncate { at } => {
                let i = pos(*at, m.len());
                m.truncate(i);
            }
        }
    }
    m
}

/// A fixture message with a few mutations.
fn mutated_fixture() -> impl Strategy<Value = Vec<u8>> {
    (any::<usize>(), proptest::collection::vec(mutation(), 1..8))
        .prop_map(|(pick, mutations)| apply(FIXTURES[pick % FIXTURES.len()].clone(), &mutations))
}

/// How one level of a synthetic nest wraps the next.
#[derive(Debug, Clone, Copy)]
enum Level {
    Rfc822,
    Multipart,
    Report,
    Broken,
}

/// A nest of messages and multiparts, `levels` deep, around a leaf (a fixture or junk bytes).
fn nest(levels: &[Level], leaf: &[u8], unclosed: bool) -> Vec<u8> {
    let mut head = Vec::new();
    let mut tail: Vec<Vec<u8>> = Vec::new();
    for (depth, level) in levels.iter().enumerate() {
        let b = format!("b{depth}");
        match level {
            Level::Rfc822 => {
                head.extend_from_slice(b"Subject: nest\nContent-Type: message/rfc822\n\n")
            }
            Level::Multipart => {
                head.extend_from_slice(
                    format!("Content-Type: multipart/mixed; boundary=\"{b}\"\n\n--{b}\n")
                        .as_bytes(),
                );
                tail.push(format!("\n--{b}--\n").into_bytes());
            }
            Level::Report => {
                head.extend_from_slice(
                    format!(
                        "Return-Path: <>\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"{b}\"\n\n--{b}\nContent-Type: message/delivery-status\n\nStatus: 5.0.0\n\n--{b}\nContent-Type: message/rfc822\n\n"
                    )
                    .as_bytes(),
                );
                tail.push(format!("\n--{b}--\n").into_bytes());
            }
            Level::Broken => head.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=\"{b}\"\n\n--{b}").as_bytes(),
            ),
        }
    }
    head.extend_from_slice(leaf);
    if !unclosed {
        for t in tail.iter().rev() {
            head.extend_from_slice(t);
        }
    }
    head
}

fn nested() -> impl Strategy<Value = Vec<u8>> {
    let level = prop_oneof![
        Just(Level::Rfc822),
        Just(Level::Multipart),
        Just(Level::Report),
        Just(Level::Broken)
    ];
    (
        proptest::collection::vec(level, 1..400),
        any::<usize>(),
        any::<bool>(),
        proptest::collection::vec(mutation(), 0..3),
    )
        .prop_map(|(levels, pick, unclosed, mutations)| {
            let leaf = &FIXTURES[pick % FIXTURES.len()];
            apply(nest(&levels, leaf, unclosed), &mutations)
        })
}

/// Any of the input families.
fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 0..2048),
        6 => mutated_fixture(),
        2 => nested(),
    ]
}

/// `cases` cases, or PROPTEST_CASES when it is set.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// [`config`] for a test run by hand with a [`TestRunner`] (which needs the source file and
/// test name that the `proptest!` macro would give it).
fn config_for(cases: u32, test: &'static str) -> ProptestConfig {
    ProptestConfig {
        source_file: Some(file!()),
        test_name: Some(test),
        ..config(cases)
    }
}

/// Evaluates with and without an envelope, as deliver, check and filter may.
fn evaluate_all_ways(bytes: &[u8]) {
    SETUP.with(|(config, rules)| evaluate_with(bytes, config, rules));
}

fn evaluate_with(bytes: &[u8], config: &Config, rules: &RuleSet) {
    let bare = EnvVars::default();
    let envelope = EnvVars {
        sender: Some(String::new()),
        recipient: Some(("RECIPIENT".to_string(), "user@example.com".to_string())),
        ..EnvVars::default()
    };
    for env in [&bare, &envelope] {
        let eval = evaluate(bytes, config, rules, env);
        // What deliver and filter do next with the evaluation must not panic either.
        let _ = backstop::trace::trace_headers(bytes, &eval);
        let _ = backstop::explain::render(&eval);
        let _ = serde_json::to_string(&eval).expect("an evaluation serializes");
    }
}

proptest! {
    #![proptest_config(config(2500))]

    #[test]
    fn evaluation_never_panics(bytes in message_bytes()) {
        evaluate_all_ways(&bytes);
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn evaluation_of_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..8192)) {
        evaluate_all_ways(&bytes);
    }
}

/// Through the binary: every input is delivered (exit 0, never anything but 0 or 75), exactly
/// once, as the two trace lines and the input less its From_ line. One Maildir for all cases;
/// each case checks and removes what it stored.
#[test]
fn deliver_files_every_input_whole() {
    let home = temp_home();
    let config = home.path().join("own.yaml");
    // The wave alarm would file a message of its own among the cases (it has its own tests).
    std::fs::write(&config, format!("{OWN}alarm:\n  enabled: false\n")).unwrap();
    let maildir = home.path().join("Maildir");
    let mut runner = TestRunner::new(config_for(200, "deliver_files_every_input_whole"));
    let result = runner.run(&message_bytes(), |bytes| {
        let mut cmd = backstop(home.path());
        cmd.arg("deliver").arg("--maildir").arg(&maildir);
        cmd.args(["--recipient", "user@example.com", "--config"])
            .arg(&config);
        let out = run_with_input(&mut cmd, &bytes);
        let code = out.status.code();
        let stderr = String::from_utf8_lossy(&out.stderr);
        prop_assert!(
            code == Some(0) || code == Some(75),
            "exit {:?}: {}",
            code,
            stderr
        );
        prop_assert_eq!(
            code,
            Some(0),
            "a healthy Maildir takes every message: {}",
            stderr
        );
        assert_quiet_for_mta(&out, "deliver");
        let mut stored = files_in(&maildir.join("new"));
        stored.extend(files_in(&maildir.join(".Backscatter/new")));
        prop_assert_eq!(stored.len(), 1, "{:?}", stored);
        let data = std::fs::read(&stored[0]).unwrap();
        std::fs::remove_file(&stored[0]).unwrap();
        let (lines, rest) = split_lines(&data, 2);
        prop_assert_eq!(lines.len(), 2);
        prop_assert!(lines[0].starts_with(b"X-Backstop-Verdict: "));
        prop_assert!(lines[1].starts_with(b"X-Backstop-Reason: "));
        let want = without_from_line(&bytes);
        prop_assert!(
            rest == want,
            "stored {} bytes, want {}",
            rest.len(),
            want.len()
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\n{runner}");
    }
}

#[test]
fn mutations_do_what_they_say() {
    let m = b"Content-Type: multipart/mixed; boundary=\"ab\"\n\n--ab\nx\n--ab--\n".to_vec();
    assert_eq!(boundaries(&m), [b"ab".to_vec()]);
    assert_eq!(apply(m.clone(), &[Mutation::Truncate { at: 5 }]), b"Conte");
    assert_eq!(
        apply(b"abc".to_vec(), &[Mutation::Delete { at: 1, len: 5 }]),
        b"a"
    );
    assert_eq!(
        apply(b"abc".to_vec(), &[Mutation::Flip { at: 4, bit: 0 }]),
        b"acc"
    );
    assert_eq!(
        apply(
            b"ab".to_vec(),
            &[Mutation::Duplicate {
                from: 0,
                len: 2,
                at: 2
            }]
        ),
        b"abab"
    );
    let with = apply(m.clone(), &[Mutation::Boundary { at: 0, close: true }]);
    assert_eq!(with.len(), m.len() + b"\n--ab--\n".len());
    let deep = nest(
        &[Level::Rfc822, Level::Multipart],
        b"Subject: leaf\n\nx\n",
        false,
    );
    assert!(deep.ends_with(b"x\n\n--b1--\n"));
}
