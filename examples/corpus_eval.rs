//! Measures backstop on the labelled corpus (`shared/corpus`): bounce recognition,
//! false positives on ham, and the legit, backscatter and forged-relay scenarios.
//!
//! Run: `cargo run --release --example corpus_eval -- [CORPUS_DIR] [--set dev|holdout|all] [--verbose]`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use backstop::config::Config;
use backstop::message::EnvVars;
use backstop::rules::RuleSet;
use backstop::verdict::{Evaluation, Verdict, evaluate};

#[path = "../tests/integration/scenarios.rs"]
mod scenarios;

use scenarios::{
    OWN_HOST, OWN_NET, from_clauses, insert_forged_hop, json, json_str, read_manifest,
};

#[derive(Default)]
struct Tally {
    total: usize,
    good: usize,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, ok: bool, file: &str, got: &Evaluation) {
        self.total += 1;
        if ok {
            self.good += 1;
        } else {
            let kind = got.kind.map_or("-", |k| k.as_str());
            self.failures.push(format!(
                "{file}: {} {kind} (score {}, ownership {:+})",
                got.verdict.as_str(),
                got.score,
                got.ownership
            ));
        }
    }
    fn line(&self, what: &str) -> String {
        let rate = if self.total == 0 {
            0.0
        } else {
            100.0 * self.good as f64 / self.total as f64
        };
        format!(
            "{what:<64} {:>5} / {:<5} {:>7.2}%",
            self.good, self.total, rate
        )
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut dir = PathBuf::from("../shared/corpus");
    let mut set = "dev".to_string();
    let mut verbose = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--set" => set = args.next().unwrap_or_else(|| "dev".into()),
            "--verbose" | "-v" => verbose = true,
            _ => dir = PathBuf::from(a),
        }
    }
    let rows = match read_manifest(&dir.join("manifest.tsv"), &set) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("corpus_eval: {}: {e}", dir.join("manifest.tsv").display());
            return ExitCode::from(2);
        }
    };
    let rules = match RuleSet::build(&[], "none") {
        Ok(r) => r,
        Err(e) => {
            eprintln!("corpus_eval: {e}");
            return ExitCode::from(2);
        }
    };
    let env = EnvVars::default();
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut verdicts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for row in &rows {
        let Ok(raw) = std::fs::read(dir.join(&row.file)) else {
            eprintln!("corpus_eval: cannot read {}", row.file);
            continue;
        };
        // Recognition, with an own domain that is not in the message.
        let plain =
            config("own: {domains: [not-in-message.invalid], hosts: [mx.not-in-message.invalid]}");
        let got = evaluate(&raw, &plain, &rules, &env);
        *verdicts
            .entry((row.kind.clone(), got.verdict.as_str().to_string()))
            .or_default() += 1;
        if row.kind == "ham" {
            tallies.entry("ham: clean".into()).or_default().add(
                got.verdict == Verdict::Clean,
                &row.file,
                &got,
            );
            continue;
        }
        let recognised = got.verdict != Verdict::Clean;
        tallies
            .entry(format!("{}: recognised as bounce or auto-reply", row.kind))
            .or_default()
            .add(recognised, &row.file, &got);
        if row.kind != "dsn" && row.kind != "inline-bounce" {
            continue;
        }
        tallies
            .entry("dsn+inline: recognised".into())
            .or_default()
            .add(recognised, &row.file, &got);

        // Legit: own hosts and networks are the original's Received from-clauses.
        let (hosts, ips) = from_clauses(row);
        let legit = config(&format!(
            "own: {{hosts: {}, networks: {}}}",
            json(&hosts),
            json(&ips)
        ));
        let got = evaluate(&raw, &legit, &rules, &env);
        tallies
            .entry("legit scenario: not called backscatter".into())
            .or_default()
            .add(got.verdict != Verdict::Backscatter, &row.file, &got);

        // Backscatter: unrelated own relays, own domain = the original's From domain.
        if !row.orig_headers_found || row.orig_from_domain.is_empty() {
            continue;
        }
        let scatter = config(&format!(
            "own: {{domains: [{}], hosts: [{OWN_HOST}], networks: [{OWN_NET}]}}",
            json_str(&row.orig_from_domain)
        ));
        let got = evaluate(&raw, &scatter, &rules, &env);
        let is_bs = got.verdict == Verdict::Backscatter;
        tallies
            .entry("backscatter scenario (original headers came back)".into())
            .or_default()
            .add(is_bs, &row.file, &got);
        if row.orig_received.is_empty() {
            continue;
        }
        tallies
            .entry("backscatter scenario (original with Received came back)".into())
            .or_default()
            .add(is_bs, &row.file, &got);
        // Forged relay: a hop claiming own servers just below the genuine ones.
        match insert_forged_hop(&raw) {
            Some(forged) => {
                let got2 = evaluate(&forged, &scatter, &rules, &env);
                let took = got2.original.as_ref().map_or(0, |o| o.judged.len())
                    > got.original.as_ref().map_or(0, |o| o.judged.len());
                if took {
                    if is_bs {
                        tallies
                            .entry(
                                "forged-relay variant of those backscatter: still backscatter"
                                    .into(),
                            )
                            .or_default()
                            .add(got2.verdict == Verdict::Backscatter, &row.file, &got2);
                    }
                    tallies
                        .entry("forged-relay variant: never legit".into())
                        .or_default()
                        .add(got2.verdict != Verdict::LegitBounce, &row.file, &got2);
                } else {
                    tallies
                        .entry("forged-relay variant: hop not seen (encoded original)".into())
                        .or_default()
                        .add(true, &row.file, &got2);
                }
            }
            None => {
                tallies
                    .entry("forged-relay variant: no place to insert".into())
                    .or_default()
                    .add(true, &row.file, &got);
            }
        }
    }
    println!(
        "backstop corpus evaluation: {} ({} set, {} messages)",
        dir.display(),
        set,
        rows.len()
    );
    for (what, t) in &tallies {
        println!("{}", t.line(what));
    }
    println!("\nverdicts per manifest kind (plain config):");
    for ((kind, verdict), n) in &verdicts {
        println!("  {kind:<14} {verdict:<18} {n}");
    }
    if verbose {
        for (what, t) in &tallies {
            for f in &t.failures {
                println!("FAIL [{what}] {f}");
            }
        }
    }
    ExitCode::SUCCESS
}

fn config(yaml: &str) -> Config {
    match Config::from_str(yaml, "scenario") {
        Ok(c) => c,
        Err(e) => panic!("scenario config {yaml}: {e}"),
    }
}
