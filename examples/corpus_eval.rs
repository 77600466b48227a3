//! Measures backstop on the labelled corpus (`shared/corpus`): bounce recognition,
//! false positives on ham, and the legit, backscatter and forged-relay scenarios.
//!
//! Run: `cargo run --release --example corpus_eval -- [CORPUS_DIR] [--set dev|holdout|all] [--verbose]`
//!
//! `tests/corpus-gate.sh` gates every line it prints against `tests/corpus-floors.tsv` and checks
//! the totals against the manifest, so no case may drop out unseen: an unreadable file fails
//! every check it was in, and the forged-relay cases that cannot be tried are counted apart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use backstop::config::Config;
use backstop::message::EnvVars;
use backstop::rules::RuleSet;
use backstop::verdict::{Evaluation, Verdict, evaluate};

#[path = "../tests/integration/scenarios.rs"]
mod scenarios;

use scenarios::{OWN_HOST, OWN_NET, handoff, insert_forged_hop, json, json_str, read_manifest};

/// The kinds of the manifest; every one gets its recognition line, printed even when empty.
const KINDS: [&str; 5] = ["dsn", "inline-bounce", "autoreply", "arf", "other"];

// The lines the corpus gate (tests/corpus-gate.sh) reads: each is `LABEL  good / total  rate%`.
const HAM: &str = "ham: clean";
const DSN_INLINE: &str = "dsn+inline: recognised";
const LEGIT_NOT_BS: &str = "legit scenario: not called backscatter";
const LEGIT_INBOX: &str = "legit scenario: legit-bounce (reaches the inbox)";
const LEGIT_EXCLUDED: &str = "legit scenario: excluded, no hand-off to a bouncer elsewhere";
const BS_HEADERS: &str = "backscatter scenario (original headers came back)";
const BS_RECEIVED: &str = "backscatter scenario (original with Received came back)";
const FORGED_STILL: &str = "forged-relay variant of those backscatter: still backscatter";
const FORGED_NEVER: &str = "forged-relay variant: never legit";
const FORGED_UNSEEN: &str = "forged-relay variant: excluded, hop outside the judged original";
const FORGED_NO_PLACE: &str = "forged-relay variant: excluded, no place to insert";
const UNREADABLE: &str = "unreadable files";

fn recognised(kind: &str) -> String {
    format!("{kind}: recognised as bounce or auto-reply")
}

/// `good` of `total`: passes of a check, or (for the exclusion lines) cases counted.
#[derive(Default)]
struct Tally {
    total: usize,
    good: usize,
    failures: Vec<String>,
}

impl Tally {
    /// One case; `got` is `None` when the file could not be read, which fails every check.
    fn add(&mut self, ok: fn(Verdict) -> bool, file: &str, got: Option<&Evaluation>) {
        self.total += 1;
        match got {
            Some(got) if ok(got.verdict) => self.good += 1,
            Some(got) => {
                let kind = got.kind.map_or("-", |k| k.as_str());
                self.failures.push(format!(
                    "{file}: {} {kind} (score {}, ownership {:+})",
                    got.verdict.as_str(),
                    got.score,
                    got.ownership
                ));
            }
            None => self.failures.push(format!("{file}: unreadable")),
        }
    }
    /// One case of a count: `hit` adds it to `good`, and lists it with --verbose.
    fn count(&mut self, hit: bool, file: &str) {
        self.total += 1;
        if hit {
            self.good += 1;
            self.failures.push(file.to_string());
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
    // In print order; a kind the manifest has beyond KINDS gets its line after them.
    let mut order: Vec<String> = vec![HAM.into()];
    order.extend(KINDS.iter().map(|k| recognised(k)));
    order.extend(
        [
            DSN_INLINE,
            LEGIT_NOT_BS,
            LEGIT_INBOX,
            LEGIT_EXCLUDED,
            BS_HEADERS,
            BS_RECEIVED,
            FORGED_STILL,
            FORGED_NEVER,
            FORGED_UNSEEN,
            FORGED_NO_PLACE,
            UNREADABLE,
        ]
        .map(String::from),
    );
    let mut tallies: Tallies = order
        .iter()
        .map(|w| (w.clone(), Tally::default()))
        .collect();
    let mut verdicts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for row in &rows {
        let raw = match std::fs::read(dir.join(&row.file)) {
            Ok(raw) => Some(raw),
            Err(e) => {
                eprintln!("corpus_eval: cannot read {}: {e}", row.file);
                None
            }
        };
        count(&mut tallies, UNREADABLE, &row.file, raw.is_none());
        let run = |config: &Config| raw.as_ref().map(|r| evaluate(r, config, &rules, &env));
        // Recognition, with an own domain that is not in the message.
        let plain =
            config("own: {domains: [not-in-message.invalid], hosts: [mx.not-in-message.invalid]}");
        let got = run(&plain);
        let verdict = got.as_ref().map_or("unreadable", |g| g.verdict.as_str());
        *verdicts
            .entry((row.kind.clone(), verdict.to_string()))
            .or_default() += 1;
        if row.kind == "ham" {
            check(
                &mut tallies,
                HAM,
                &row.file,
                |v| v == Verdict::Clean,
                got.as_ref(),
            );
            continue;
        }
        let is_bounce = |v: Verdict| v != Verdict::Clean;
        check(
            &mut tallies,
            &recognised(&row.kind),
            &row.file,
            is_bounce,
            got.as_ref(),
        );
        if row.kind != "dsn" && row.kind != "inline-bounce" {
            continue;
        }
        check(&mut tallies, DSN_INLINE, &row.file, is_bounce, got.as_ref());

        // Legit: the relay that handed the original to the bouncer, and the senders below it,
        // are own; the bouncer is not (scenarios::handoff, read from the manifest alone).
        let handoff = handoff(row);
        count(&mut tallies, LEGIT_EXCLUDED, &row.file, handoff.is_none());
        if let Some(handoff) = handoff {
            let legit = config(&format!(
                "own: {{hosts: {}, networks: {}}}",
                json(&handoff.hosts),
                json(&handoff.ips)
            ));
            let got = run(&legit);
            if verbose
                && got
                    .as_ref()
                    .is_some_and(|g| g.verdict != Verdict::LegitBounce)
            {
                println!(
                    "LEGIT-CONFIG {}\town: {{hosts: {}, networks: {}}}",
                    row.file,
                    json(&handoff.hosts),
                    json(&handoff.ips)
                );
            }
            check(
                &mut tallies,
                LEGIT_NOT_BS,
                &row.file,
                |v| v != Verdict::Backscatter,
                got.as_ref(),
            );
            check(
                &mut tallies,
                LEGIT_INBOX,
                &row.file,
                |v| v == Verdict::LegitBounce,
                got.as_ref(),
            );
        }

        // Backscatter: unrelated own relays, own domain = the original's From domain.
        if !row.orig_headers_found || row.orig_from_domain.is_empty() {
            continue;
        }
        let scatter = config(&format!(
            "own: {{domains: [{}], hosts: [{OWN_HOST}], networks: [{OWN_NET}]}}",
            json_str(&row.orig_from_domain)
        ));
        let got = run(&scatter);
        let is_bs = |v: Verdict| v == Verdict::Backscatter;
        check(&mut tallies, BS_HEADERS, &row.file, is_bs, got.as_ref());
        if row.orig_received.is_empty() {
            continue;
        }
        check(&mut tallies, BS_RECEIVED, &row.file, is_bs, got.as_ref());
        // Forged relay: a hop claiming own servers just below the genuine ones. The cases
        // where it cannot be tried are excluded, and counted on their own lines.
        let forged = raw.as_deref().map(insert_forged_hop);
        let no_place = matches!(forged, Some(None));
        let got2 = forged
            .flatten()
            .map(|f| evaluate(&f, &scatter, &rules, &env));
        let judged = |e: Option<&Evaluation>| {
            e.and_then(|e| e.original.as_ref())
                .map_or(0, |o| o.judged.len())
        };
        let unseen = got2.is_some() && judged(got2.as_ref()) <= judged(got.as_ref());
        count(&mut tallies, FORGED_NO_PLACE, &row.file, no_place);
        count(&mut tallies, FORGED_UNSEEN, &row.file, unseen);
        if no_place || unseen {
            continue;
        }
        // Here the forged hop was seen, or the file was unreadable (a failure of both).
        if raw.is_none() || got.as_ref().is_some_and(|g| is_bs(g.verdict)) {
            check(&mut tallies, FORGED_STILL, &row.file, is_bs, got2.as_ref());
        }
        check(
            &mut tallies,
            FORGED_NEVER,
            &row.file,
            |v| v != Verdict::LegitBounce,
            got2.as_ref(),
        );
    }
    for kind in tallies.keys() {
        if !order.contains(kind) {
            order.push(kind.clone());
        }
    }
    println!(
        "backstop corpus evaluation: {} ({} set, {} messages)",
        dir.display(),
        set,
        rows.len()
    );
    for what in &order {
        if let Some(t) = tallies.get(what) {
            println!("{}", t.line(what));
        }
    }
    println!("\nverdicts per manifest kind (plain config):");
    for ((kind, verdict), n) in &verdicts {
        println!("  {kind:<14} {verdict:<18} {n}");
    }
    if verbose {
        for what in &order {
            for f in tallies.get(what).map_or(&[][..], |t| &t.failures) {
                println!("FAIL [{what}] {f}");
            }
        }
    }
    ExitCode::SUCCESS
}

type Tallies = BTreeMap<String, Tally>;

fn check(
    t: &mut Tallies,
    what: &str,
    file: &str,
    ok: fn(Verdict) -> bool,
    got: Option<&Evaluation>,
) {
    t.entry(what.into()).or_default().add(ok, file, got);
}

fn count(t: &mut Tallies, what: &str, file: &str, hit: bool) {
    t.entry(what.into()).or_default().count(hit, file);
}

fn config(yaml: &str) -> Config {
    match Config::from_str(yaml, "scenario") {
        Ok(c) => c,
        Err(e) => panic!("scenario config {yaml}: {e}"),
    }
}
