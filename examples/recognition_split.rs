//! Measures whether bounce recognition generalises: splits the corpus into two halves, A (to tune
//! on) and B (to measure on), and prints recognition recall and ham false positives per half,
//! with the default rules and with the wording rules (subjects, body phrases) disabled.
//!
//! Run: `cargo run --release --example recognition_split -- [CORPUS_DIR] [--set dev|holdout|all]
//! [--misses A|B] [--formats]` (`--misses` lists the bounces a half misses, and the ham it flags;
//! `--formats` prints, per Sisimai format, its half, its samples, how many each rule set
//! recognises, and the structural rules that fired: the checklist of docs/recognition.md).
//!
//! The split: a file's group key is its MTA format for Sisimai's `lhost-<mta>-NN` and
//! `rhost-<provider>-NN` samples (so a format is wholly in one half: rules fitted to one Postfix
//! sample's wording cannot be measured on another Postfix sample), and its file name otherwise
//! (so the CRLF and CR copies in sisimai-dos and sisimai-mac go with their sisimai-bsd original).
//! The half is the top bit of the hash of the key (FNV-1a, finalised): stable, and independent of the rules.
//! See docs/recognition.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use backstop::config::Config;
use backstop::message::EnvVars;
use backstop::rules::{Field, RuleSet, parse_rules};
use backstop::verdict::{Verdict, evaluate};

/// Rules on the subject or the body that look at structure, not at language: they stay on in
/// the structure-only measurement. Every other subject and body rule counts as wording.
const STRUCTURAL_TEXT_RULES: [&str; 5] = [
    "status-code-text",
    "dsn-fields-text",
    "smtp-transcript",
    "returned-header-block",
    "ses-notification",
];

/// One manifest row, as much as this measurement needs.
struct Row {
    file: String,
    category: String,
    kind: String,
}

/// The two halves of the split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Half {
    A,
    B,
}

/// The key that decides a file's half: the MTA format of a Sisimai sample, else the file name.
fn group_key(file: &str) -> String {
    let name = file.rsplit('/').next().unwrap_or(file);
    let stem = name.strip_suffix(".eml").unwrap_or(name);
    if (stem.starts_with("lhost-") || stem.starts_with("rhost-"))
        && let Some((format, number)) = stem.rsplit_once('-')
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
    {
        return format.to_string();
    }
    stem.to_string()
}

/// FNV-1a, 64 bits, then MurmurHash3's finaliser (FNV alone hardly mixes the last bytes into
/// the top bit): a fixed hash, so the split never changes with the toolchain.
fn hash(text: &str) -> u64 {
    let mut h = text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn half_of(file: &str) -> Half {
    if hash(&group_key(file)) >> 63 == 0 {
        Half::A
    } else {
        Half::B
    }
}

fn read_rows(path: &Path, set: &str) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("no column {name}"))
    };
    let (c_set, c_file, c_cat, c_kind) =
        (col("set")?, col("file")?, col("category")?, col("kind")?);
    Ok(lines
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f.len() == header.len() && (set == "all" || f[c_set] == set))
        .map(|f| Row {
            file: f[c_file].to_string(),
            category: f[c_cat].to_string(),
            kind: f[c_kind].to_string(),
        })
        .collect())
}

/// Counts of one half under one rule set.
#[derive(Default)]
struct Tally {
    bounces: usize,
    recognised: usize,
    ham: usize,
    flagged: usize,
    /// Recognised / total per manifest kind.
    kinds: Vec<(String, usize, usize)>,
    misses: Vec<String>,
}

impl Tally {
    fn add(&mut self, row: &Row, verdict: Option<Verdict>) {
        let hit = verdict.is_some_and(|v| v != Verdict::Clean);
        if row.category == "ham" {
            self.ham += 1;
            if hit {
                self.flagged += 1;
                self.misses.push(format!("ham flagged: {}", row.file));
            }
            return;
        }
        // `other` (SES event notices, an unsubscribe, bounces a person forwarded) is shown per
        // kind but kept out of the recall, as corpus_eval keeps it out of its gate.
        if row.kind != "other" {
            self.bounces += 1;
            self.recognised += usize::from(hit);
        }
        match self.kinds.iter_mut().find(|(k, _, _)| *k == row.kind) {
            Some((_, good, total)) => {
                *good += usize::from(hit);
                *total += 1;
            }
            None => self.kinds.push((row.kind.clone(), usize::from(hit), 1)),
        }
        if !hit {
            self.misses
                .push(format!("missed {}: {}", row.kind, row.file));
        }
    }
}

fn rate(good: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * good as f64 / total as f64
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut dir = PathBuf::from("../shared/corpus");
    let mut set = "dev".to_string();
    let mut misses: Option<Half> = None;
    let mut formats = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--set" => set = args.next().unwrap_or_else(|| "dev".into()),
            "--formats" => formats = true,
            "--misses" => {
                misses = match args.next().as_deref() {
                    Some("A" | "a") => Some(Half::A),
                    Some("B" | "b") => Some(Half::B),
                    _ => {
                        eprintln!("recognition_split: --misses takes A or B");
                        return ExitCode::from(2);
                    }
                }
            }
            _ => dir = PathBuf::from(a),
        }
    }
    let rows = match read_rows(&dir.join("manifest.tsv"), &set) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "recognition_split: {}: {e}",
                dir.join("manifest.tsv").display()
            );
            return ExitCode::from(2);
        }
    };
    let defaults = match RuleSet::build(&[], "none") {
        Ok(r) => r,
        Err(e) => {
            eprintln!("recognition_split: {e}");
            return ExitCode::from(2);
        }
    };
    // The wording rules: every subject or body rule not named structural above.
    let wording: Vec<String> = defaults
        .rules
        .iter()
        .filter(|r| matches!(r.field, Field::Subject | Field::Body))
        .filter(|r| !STRUCTURAL_TEXT_RULES.contains(&r.id.as_ref()))
        .map(|r| r.id.to_string())
        .collect();
    let disable: String = wording
        .iter()
        .map(|id| format!("  - {{id: {id}, disabled: true}}\n"))
        .collect();
    let structure = match parse_rules(&format!("rules:\n{disable}"), "structure-only")
        .and_then(|specs| RuleSet::build(&specs, "structure-only"))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("recognition_split: {e}");
            return ExitCode::from(2);
        }
    };
    // Recognition as corpus_eval measures it: an own domain that is not in the message.
    let config = match Config::from_str(
        "own: {domains: [not-in-message.invalid], hosts: [mx.not-in-message.invalid]}",
        "recognition",
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("recognition_split: {e}");
            return ExitCode::from(2);
        }
    };
    let env = EnvVars::default();
    // [rule set][half]
    let mut tallies: [[Tally; 2]; 2] = Default::default();
    let mut unreadable = 0;
    // Per format: half, samples, recognised by default, by structure, structural rules fired.
    let mut per_format: BTreeMap<String, (Half, usize, usize, usize, BTreeSet<String>)> =
        BTreeMap::new();
    for row in &rows {
        let raw = std::fs::read(dir.join(&row.file));
        if let Err(e) = &raw {
            eprintln!("recognition_split: cannot read {}: {e}", row.file);
            unreadable += 1;
        }
        let half = half_of(&row.file);
        let h = usize::from(half == Half::B);
        let key = group_key(&row.file);
        let format = (key.starts_with("lhost-") || key.starts_with("rhost-")).then(|| {
            per_format
                .entry(key)
                .or_insert((half, 0, 0, 0, BTreeSet::new()))
        });
        let mut found = [false; 2];
        let mut fired = Vec::new();
        for (s, rules) in [&defaults, &structure].into_iter().enumerate() {
            let got = raw.as_ref().ok().map(|r| evaluate(r, &config, rules, &env));
            let verdict = got.as_ref().map(|g| g.verdict);
            found[s] = verdict.is_some_and(|v| v != Verdict::Clean);
            if s == 1 {
                fired = got.map_or(Vec::new(), |g| {
                    g.rules
                        .into_iter()
                        .filter(|r| r.score > 0)
                        .map(|r| r.id)
                        .collect()
                });
            }
            tallies[s][h].add(row, verdict);
        }
        if let Some((_, n, by_default, by_structure, rules)) = format {
            *n += 1;
            *by_default += usize::from(found[0]);
            *by_structure += usize::from(found[1]);
            rules.extend(fired);
        }
    }
    println!(
        "backstop recognition split: {} ({} set, {} messages, {unreadable} unreadable)",
        dir.display(),
        set,
        rows.len()
    );
    println!(
        "halves: group key = MTA format (lhost-/rhost- samples) or file name; top bit of a fixed hash"
    );
    println!("structure-only disables: {}", wording.join(", "));
    println!();
    println!(
        "{:<16} {:<5} {:>17} {:>9} {:>15} {:>7}",
        "rules", "half", "bounces found", "recall", "ham flagged", "FP"
    );
    for (s, name) in ["default", "structure-only"].iter().enumerate() {
        for (h, half) in ["A", "B"].iter().enumerate() {
            let t = &tallies[s][h];
            println!(
                "{name:<16} {half:<5} {:>7} / {:<7} {:>8.2}% {:>5} / {:<7} {:>6.2}%",
                t.recognised,
                t.bounces,
                rate(t.recognised, t.bounces),
                t.flagged,
                t.ham,
                rate(t.flagged, t.ham)
            );
        }
    }
    println!("\nper kind (recognised / total):");
    for (s, name) in ["default", "structure-only"].iter().enumerate() {
        for (h, half) in ["A", "B"].iter().enumerate() {
            let mut kinds = tallies[s][h]
                .kinds
                .iter()
                .map(|(k, g, t)| format!("{k} {g}/{t}"))
                .collect::<Vec<_>>();
            kinds.sort();
            println!("  {name:<16} {half}: {}", kinds.join(", "));
        }
    }
    if formats {
        println!(
            "\nper format: half, samples, recognised (default), recognised (structure-only), structural rules that fired"
        );
        for (name, (half, n, by_default, by_structure, rules)) in &per_format {
            let half = if *half == Half::A { "A" } else { "B" };
            let rules = rules.iter().cloned().collect::<Vec<_>>().join(" ");
            println!("  {name:<28} {half} {n:>3} {by_default:>3} {by_structure:>3}  {rules}");
        }
    }
    if let Some(half) = misses {
        let h = usize::from(half == Half::B);
        for (s, name) in ["default", "structure-only"].iter().enumerate() {
            for m in &tallies[s][h].misses {
                println!("{name}: {m}");
            }
        }
    }
    if unreadable > 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_and_its_line_ending_copies_stay_in_one_half() {
        assert_eq!(
            group_key("bounces/sisimai-bsd/lhost-postfix-02.eml"),
            "lhost-postfix"
        );
        assert_eq!(
            group_key("bounces/sisimai-dos/rhost-google-3.eml"),
            "rhost-google"
        );
        assert_eq!(
            group_key("bounces/sisimai-err/make-test-07.eml"),
            "make-test-07"
        );
        assert_eq!(
            half_of("bounces/sisimai-bsd/rfc3464-05.eml"),
            half_of("bounces/sisimai-mac/rfc3464-05.eml")
        );
    }
}
