//! Measures what the ledger of sent mail does on the corpus bounces (issue 14's note figures):
//! the share of `unverified-bounce` with no config at all, first without a ledger, then with
//! one built from the returned originals' Message-IDs (and, for automatic replies, the
//! In-Reply-To/References IDs), as the user's own Sent folder would have them.
//!
//! Run: `cargo run --release --example ledger_eval -- [CORPUS_DIR] [--set dev|holdout|all]`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use backstop::config::Config;
use backstop::evidence::original::Form;
use backstop::message::EnvVars;
use backstop::proofs::ledger::{self, Mark, Paths, Sent};
use backstop::rules::RuleSet;
use backstop::verdict::{Evaluation, Verdict, evaluate};

/// (set, file, kind) of every bounce in the manifest.
fn bounces(manifest: &Path, set: &str) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(manifest).map_err(|e| format!("{manifest:?}: {e}"))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(c_set), Some(c_file), Some(c_cat), Some(c_kind)) =
        (col("set"), col("file"), col("category"), col("kind"))
    else {
        return Err("the manifest lacks set, file, category or kind".into());
    };
    Ok(lines
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f.len() > c_kind && f[c_cat] == "bounces")
        .filter(|f| set == "all" || f[c_set] == set)
        .map(|f| (f[c_file].to_string(), f[c_kind].to_string()))
        .collect())
}

/// The IDs the user's Sent folder would hold for this bounce's original.
fn sent_ids(e: &Evaluation) -> Vec<String> {
    match &e.original {
        Some(o) if o.original.form == Form::Reference => o.original.references.clone(),
        Some(o) => o.original.message_id.iter().cloned().collect(),
        None => Vec::new(),
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut dir = PathBuf::from("../shared/corpus");
    let mut set = "all".to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--set" => set = args.next().unwrap_or_default(),
            _ => dir = PathBuf::from(a),
        }
    }
    let rows = match bounces(&dir.join("manifest.tsv"), &set) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ledger_eval: {e}");
            return ExitCode::from(2);
        }
    };
    let tmp = std::env::temp_dir().join(format!("ledger-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let paths = Paths::new(tmp.join("ledger"));
    let mut config = Config::default();
    config.ledger.path = Some(paths.ledger.display().to_string());
    let rules = RuleSet::build(&[], "(defaults)").expect("the default rules build");
    let env = EnvVars::default();
    let messages: Vec<(String, String, Vec<u8>)> = rows
        .into_iter()
        .filter_map(|(f, k)| std::fs::read(dir.join(&f)).ok().map(|b| (f, k, b)))
        .collect();

    let judge = |config: &Config| -> Vec<Evaluation> {
        messages
            .iter()
            .map(|(_, _, raw)| evaluate(raw, config, &rules, &env))
            .collect()
    };
    // Without a ledger (the ledger file does not exist yet).
    let before = judge(&config);
    // The ledger, as learnt from the user's Sent folder: every original's ID, sent "now".
    let now = backstop::proofs::now();
    let sent: Vec<Sent> = before
        .iter()
        .flat_map(sent_ids)
        .map(|id| Sent { id, date: now })
        .collect();
    if let Err(e) = ledger::learn(&paths, &sent, &[Mark::Hook], now, 3650) {
        eprintln!("ledger_eval: {e}");
        return ExitCode::from(2);
    }
    let after = judge(&config);
    let _ = std::fs::remove_dir_all(&tmp);

    let mut by_kind: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    let (mut recognised, mut unv_before, mut unv_after) = (0, 0, 0);
    for (((_, kind, _), b), a) in messages.iter().zip(&before).zip(&after) {
        if b.kind.is_none() {
            continue;
        }
        recognised += 1;
        let ub = b.verdict == Verdict::UnverifiedBounce;
        let ua = a.verdict == Verdict::UnverifiedBounce;
        unv_before += usize::from(ub);
        unv_after += usize::from(ua);
        let e = by_kind.entry(kind.as_str()).or_default();
        e[0] += 1;
        e[1] += usize::from(ub);
        e[2] += usize::from(ua);
    }
    let pct = |n: usize, d: usize| {
        if d == 0 {
            0.0
        } else {
            100.0 * n as f64 / d as f64
        }
    };
    println!(
        "corpus bounces ({set}): {} read, {recognised} recognised; no config",
        messages.len()
    );
    println!(
        "unverified-bounce without a ledger: {unv_before:>4} / {recognised} {:6.2}%",
        pct(unv_before, recognised)
    );
    println!(
        "unverified-bounce with the ledger:  {unv_after:>4} / {recognised} {:6.2}%",
        pct(unv_after, recognised)
    );
    println!("by kind (recognised, unverified without, with):");
    for (k, [n, b, a]) in &by_kind {
        println!(
            "  {k:<14} {n:>4}  {b:>4} ({:6.2}%)  {a:>4} ({:6.2}%)",
            pct(*b, *n),
            pct(*a, *n)
        );
    }
    let legit = after
        .iter()
        .filter(|e| e.verdict == Verdict::LegitBounce)
        .count();
    println!("legit-bounce with the ledger: {legit}");
    ExitCode::SUCCESS
}
