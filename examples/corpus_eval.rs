//! Measures backstop on the labelled corpus (`shared/corpus`): bounce recognition,
//! false positives on ham, and the legit, backscatter and forged-relay scenarios.
//!
//! Run: `cargo run --release --example corpus_eval -- [CORPUS_DIR] [--set dev|holdout|all] [--verbose]`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use backstop::config::Config;
use backstop::message::EnvVars;
use backstop::rules::RuleSet;
use backstop::verdict::{Evaluation, Verdict, evaluate};

/// Unrelated own relays for the backscatter scenario; the forged hop claims them.
const OWN_HOST: &str = "mail.own.example";
const OWN_NET: &str = "100.100.100.0/24";
const FORGED_IP: &str = "100.100.100.20";

struct Row {
    file: String,
    kind: String,
    orig_headers_found: bool,
    orig_from_domain: String,
    orig_received: Vec<String>,
    orig_received_ips: Vec<String>,
}

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

fn json(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The hosts (HELO and rDNS names) and IPs of the from-clauses of the original's Received headers.
fn from_clauses(row: &Row) -> (Vec<String>, Vec<String>) {
    let mut hosts = Vec::new();
    for r in &row.orig_received {
        // `from <host> (<rDNS name>) [<IP literals>] by <host>`
        let Some(rest) = r.strip_prefix("from ") else {
            continue;
        };
        let clause = rest.split(" by ").next().unwrap_or(rest);
        for word in clause.split(|c: char| c.is_whitespace() || "()[],".contains(c)) {
            let w = word.trim();
            if !w.is_empty()
                && w.parse::<std::net::IpAddr>().is_err()
                && w.contains(|c: char| c.is_ascii_alphabetic())
            {
                hosts.push(w.to_string());
            }
        }
    }
    hosts.sort();
    hosts.dedup();
    let mut ips: Vec<String> = row
        .orig_received_ips
        .iter()
        .filter(|i| i.parse::<std::net::IpAddr>().is_ok())
        .cloned()
        .collect();
    ips.sort();
    ips.dedup();
    (hosts, ips)
}

/// Inserts a forged `Received` line claiming own servers just below the last Received header in
/// the body (the bottom of the returned original's chain), keeping its quoting and line ends.
fn insert_forged_hop(raw: &[u8]) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(raw);
    if text.len() != raw.len() {
        // Not UTF-8: work on bytes by the same rules, via Latin-1 mapping.
        let latin: String = raw.iter().map(|&b| b as char).collect();
        let out = insert_into(&latin)?;
        return Some(out.chars().map(|c| c as u32 as u8).collect());
    }
    insert_into(&text).map(String::into_bytes)
}

fn insert_into(text: &str) -> Option<String> {
    let eol = if text.contains("\r\n") {
        "\r\n"
    } else if text.contains('\n') {
        "\n"
    } else {
        "\r"
    };
    let header_end = text.find(&format!("{eol}{eol}"))?;
    let lines: Vec<&str> = text.split(eol).collect();
    // Index of the first body line.
    let mut pos = 0;
    let mut first_body = lines.len();
    for (i, l) in lines.iter().enumerate() {
        if pos > header_end {
            first_body = i;
            break;
        }
        pos += l.len() + eol.len();
    }
    let is_received = |l: &str| {
        let t = l.trim_start_matches(['>', ' ', '\t']);
        t.len() >= 9 && t[..9].eq_ignore_ascii_case("received:")
    };
    let last = (first_body..lines.len())
        .rev()
        .find(|&i| is_received(lines[i]))?;
    let prefix_len = lines[last].len() - lines[last].trim_start_matches(['>', ' ', '\t']).len();
    let prefix = &lines[last][..prefix_len];
    let mut end = last + 1;
    while end < lines.len() {
        let rest = lines[end].get(prefix_len..).unwrap_or("");
        if lines[end].starts_with(prefix)
            && (rest.starts_with(' ') || rest.starts_with('\t'))
            && !rest.trim().is_empty()
        {
            end += 1;
        } else {
            break;
        }
    }
    let forged = format!(
        "{prefix}Received: from laptop.own.example ([{FORGED_IP}]) by {OWN_HOST} (Postfix) with ESMTPSA id X; Fri, 2 Jan 2026 00:00:01 +0000"
    );
    let mut out: Vec<&str> = lines[..end].to_vec();
    out.push(&forged);
    out.extend_from_slice(&lines[end..]);
    Some(out.join(eol))
}

fn read_manifest(path: &Path, set: &str) -> std::io::Result<Vec<Row>> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (
        Some(c_set),
        Some(c_file),
        Some(c_kind),
        Some(c_found),
        Some(c_from),
        Some(c_rcv),
        Some(c_ips),
    ) = (
        col("set"),
        col("file"),
        col("kind"),
        col("orig_headers_found"),
        col("orig_from_domain"),
        col("orig_received"),
        col("orig_received_ips"),
    )
    else {
        return Err(std::io::Error::other("manifest lacks a needed column"));
    };
    let list = |s: &str, sep: &str| -> Vec<String> {
        s.split(sep)
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(lines
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f.len() == header.len() && (set == "all" || f[c_set] == set))
        .map(|f| Row {
            file: f[c_file].to_string(),
            kind: f[c_kind].to_string(),
            orig_headers_found: f[c_found] == "yes",
            orig_from_domain: f[c_from].to_string(),
            orig_received: list(f[c_rcv], " | "),
            orig_received_ips: list(f[c_ips], ","),
        })
        .collect())
}
