//! Micro-benchmarks of the stages one delivery goes through: config load, rule compile,
//! parse, classify and the Maildir write.
//!
//! Run: `cargo bench --bench stages` (add `-- FILTER` to pick some, e.g. `-- classify`).
//!
//! Messages: a clean 10 KB mail and a 10 KB DSN from `tests/fixtures/corpus` (licensed
//! fixtures), and a 200 KB multipart mail built here from the clean one plus a base64
//! attachment made of fixture bytes. `benches/process/peers.sh` times the same cases as whole processes.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use backstop::config::Config;
use backstop::message::{self, EnvVars};
use backstop::rules::RuleSet;
use backstop::store::Payload;
use backstop::store::maildir::{self, Layout};
use backstop::verdict::evaluate;
use divan::Bencher;

fn main() {
    divan::main();
}

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/corpus");
/// A clean mailing-list message, 10.1 KB.
const CLEAN_10K: &str = "ham/spamassassin-easy-ham-2/00001.1a31cc283af0060967a233d26548a6ce.eml";
/// A Google DSN (multipart/report with the original), 10.4 KB.
const DSN_10K: &str = "bounces/sisimai-bsd/rfc3464-54.eml";

const MESSAGES: &[&str] = &["clean_10k", "dsn_10k", "mixed_200k"];

fn fixture(rel: &str) -> Vec<u8> {
    let path = Path::new(CORPUS).join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The named benchmark message.
fn message(name: &str) -> Vec<u8> {
    match name {
        "clean_10k" => fixture(CLEAN_10K),
        "dsn_10k" => fixture(DSN_10K),
        "mixed_200k" => with_attachment(&fixture(CLEAN_10K), 200 * 1024),
        _ => unreachable!("{name}"),
    }
}

/// `base` turned into multipart/mixed: its text, then a base64 attachment of fixture bytes,
/// to about `target` bytes in all (benches/process/peers.sh builds its large messages the same way).
pub fn with_attachment(base: &[u8], target: usize) -> Vec<u8> {
    let split = base
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("a header block")
        + 1;
    let (head, body) = (&base[..split], &base[split + 1..]);
    let mut out = Vec::with_capacity(target + 1024);
    let mut skipping = false;
    for line in head.split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            let lower = line.to_ascii_lowercase();
            skipping = [
                &b"content-type:"[..],
                b"content-transfer-encoding:",
                b"mime-version:",
            ]
            .iter()
            .any(|h| lower.starts_with(h));
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(
        b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"=-backstop-bench\"\n\n\
          --=-backstop-bench\nContent-Type: text/plain; charset=us-ascii\n\n",
    );
    out.extend_from_slice(body);
    out.extend_from_slice(
        b"\n--=-backstop-bench\nContent-Type: application/octet-stream; name=\"data.bin\"\n\
          Content-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"data.bin\"\n\n",
    );
    let mut data = Vec::new();
    let mut files = fixture_files(&Path::new(CORPUS).join("ham"));
    files.sort();
    while data.len() * 4 / 3 + out.len() + 64 < target {
        for f in &files {
            data.extend(std::fs::read(f).unwrap_or_default());
        }
    }
    let want = (target.saturating_sub(out.len() + 64)) * 3 / 4;
    data.truncate(want);
    for chunk in base64(&data).as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.push(b'\n');
    }
    out.extend_from_slice(b"--=-backstop-bench--\n");
    out
}

fn fixture_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(fixture_files(&p));
        } else if p.extension().is_some_and(|e| e == "eml") {
            out.push(p);
        }
    }
    out
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A typical config: own domains, relays and networks.
const CONFIG: &str = "own:
  domains: [example.org, example.net]
  hosts: [mail.example.org, '*.out.example.org']
  networks: [192.0.2.0/24, '2001:db8::/32']
maildir: ~/Maildir
threshold: 5
";

/// A config with one user rule of 500 subject patterns (also written by benches/process/peers.sh).
pub fn user_rules_500() -> String {
    let mut text = String::from(
        "rules:\n  - id: user-subjects\n    field: subject\n    score: 1\n    match:\n",
    );
    for i in 0..500 {
        let pattern = match i % 5 {
            0 => format!("^\\s*ticket #{i}\\b"),
            1 => format!("invoice\\s+\\d+ from vendor{i}"),
            2 => format!("^\\[list-{i}\\]"),
            3 => format!("newsletter (weekly|monthly) edition {i}"),
            _ => format!("alert: host{i}\\.example\\.(com|net) is down"),
        };
        text.push_str(&format!("      - '{pattern}'\n"));
    }
    text
}

mod config_load {
    use super::*;

    /// Parsing and checking a typical config file.
    #[divan::bench]
    fn typical_config() -> Config {
        Config::from_str(black_box(CONFIG), "config.yaml").expect("config")
    }

    /// Parsing the 500-pattern user rule config (its checks included).
    #[divan::bench]
    fn user_500_subject_patterns(bencher: Bencher) {
        let text = user_rules_500();
        bencher.bench(|| Config::from_str(black_box(&text), "config.yaml").expect("config"));
    }

    /// Reading the built-in rules (rules/default.yaml) into a rule set, regexes not compiled.
    #[divan::bench]
    fn default_rules() -> RuleSet {
        RuleSet::build(&[], "config.yaml").expect("rules")
    }
}

mod rule_compile {
    use super::*;

    /// Every default rule's regex, compiled (what classifying costs if nothing is skipped).
    #[divan::bench]
    fn all_default_rules(bencher: Bencher) {
        bencher
            .with_inputs(|| RuleSet::build(&[], "c").expect("rules"))
            .bench_local_values(|rules| {
                for rule in &rules.rules {
                    rule.compile().expect("compiles");
                }
                rules
            });
    }

    /// The 500 user subject patterns: the config's checks, the rule set and its compile.
    #[divan::bench]
    fn user_500_subject_patterns(bencher: Bencher) {
        let text = user_rules_500();
        bencher.bench(|| {
            let config = Config::from_str(black_box(&text), "c").expect("config");
            let rules = RuleSet::build(&config.user_rules, "c").expect("rules");
            for rule in rules.rules.iter().filter(|r| r.id == "user-subjects") {
                rule.compile().expect("compiles");
            }
            rules
        });
    }
}

/// The MIME parse alone.
#[divan::bench(args = MESSAGES)]
fn parse(bencher: Bencher, name: &str) {
    let raw = message(name);
    bencher
        .counter(divan::counter::BytesCount::of_slice(&raw))
        .bench(|| {
            let mail = message::parse(black_box(&raw)).expect("parses");
            mail.parts.len()
        });
}

mod classify {
    use super::*;

    /// The whole evaluation as one process does it: a fresh rule set (so every regex the
    /// message needs is compiled), parse, rules, and for bounces the ownership judgement.
    #[divan::bench(args = MESSAGES)]
    fn cold(bencher: Bencher, name: &str) {
        let raw = message(name);
        let config = Config::default();
        let env = EnvVars::default();
        bencher
            .with_inputs(|| RuleSet::build(&[], "c").expect("rules"))
            .bench_local_values(|rules| evaluate(black_box(&raw), &config, &rules, &env).verdict);
    }

    /// The same with the rules compiled already (the evaluation's own cost).
    #[divan::bench(args = MESSAGES)]
    fn warm(bencher: Bencher, name: &str) {
        let raw = message(name);
        let config = Config::default();
        let env = EnvVars::default();
        let rules = RuleSet::build(&[], "c").expect("rules");
        bencher.bench_local(|| evaluate(black_box(&raw), &config, &rules, &env).verdict);
    }

    /// Cold, with the 500 user subject patterns added.
    #[divan::bench(args = ["clean_10k", "dsn_10k"])]
    fn cold_user_500(bencher: Bencher, name: &str) {
        let raw = message(name);
        let config = Config::from_str(&user_rules_500(), "c").expect("config");
        let env = EnvVars::default();
        bencher
            .with_inputs(|| RuleSet::build(&config.user_rules, "c").expect("rules"))
            .bench_local_values(|rules| evaluate(black_box(&raw), &config, &rules, &env).verdict);
    }
}

/// One Maildir delivery: tmp/ file, fsync, link into new/, fsync new/.
#[divan::bench(args = ["clean_10k", "mixed_200k"], sample_count = 30, sample_size = 1)]
fn maildir_write(bencher: Bencher, name: &str) {
    let raw = message(name);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("Maildir");
    bencher.bench(|| {
        let payload = Payload {
            head: b"X-Backstop-Verdict: clean\n",
            body: &raw,
            tail: None,
        };
        maildir::deliver(&root, None, Layout::default(), payload).expect("delivered")
    });
}
