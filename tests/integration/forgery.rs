//! Integration tests: no header a spammer writes makes backscatter `legit-bounce` (issue 13).
//!
//! An adversarial generator goes over every bounce fixture (and over the whole shared corpus
//! when `BACKSTOP_CORPUS` names it) and writes forgeries into the returned original, as the
//! spammer would have written them into the spam: the bouncer's own lines, its report and the
//! delivery to us stay as they are. The user's own infrastructure is known to the attacker:
//! the domain (the original's From domain), the relay `mail.own.example` and its network
//! `100.100.100.0/24`. Each shape is named; for each forged message the verdict must not be
//! `legit-bounce`, and where the unforged message was `backscatter`, the forged one must be
//! too. Every shape must have been tried on some messages, so that no shape passes unseen.

use std::collections::BTreeMap;
use std::path::Path;

use backstop::config::Config;
use backstop::message::EnvVars;
use backstop::rules::RuleSet;
use backstop::verdict::{Evaluation, Verdict, evaluate};

use crate::scenarios::{OWN_HOST, Row, read_manifest};
use crate::util::fixture;

/// The own relay's address the attacker writes (inside `OWN_NET`).
const OWN_IP: &str = "100.100.100.7";
/// A receiving host the attacker invents.
const INVENTED_MX: &str = "mx.invented-receiver.example";

/// A message and where its returned original's Received lines are.
struct Bounce {
    lines: Vec<String>,
    eol: &'static str,
    /// The index of each Received line of the original (its first line), top first, with the
    /// index after its last folded line.
    received: Vec<(usize, usize)>,
    /// The quoting prefix of the original's lines (`> `, spaces, or nothing).
    prefix: String,
    /// The line just after the original's header block starts (for lines added at the end).
    header_end: usize,
}

impl Bounce {
    fn read(text: &str) -> Option<Bounce> {
        let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let lines: Vec<String> = text.split(eol).map(str::to_string).collect();
        let first_blank = lines.iter().position(|l| l.is_empty())?;
        let is_received = |l: &str| {
            let t = l.trim_start_matches(['>', ' ', '\t']);
            t.get(..9)
                .is_some_and(|h| h.eq_ignore_ascii_case("received:"))
        };
        let mut received = Vec::new();
        let mut prefix = None::<String>;
        let mut i = first_blank + 1;
        let mut header_end = None;
        while i < lines.len() {
            if is_received(&lines[i]) {
                let p_len = lines[i].len() - lines[i].trim_start_matches(['>', ' ', '\t']).len();
                let p = lines[i][..p_len].to_string();
                if prefix.as_ref().is_some_and(|q| *q != p) {
                    break;
                }
                let mut end = i + 1;
                while end < lines.len() {
                    let rest = lines[end].get(p_len..).unwrap_or("");
                    if lines[end].starts_with(&p)
                        && (rest.starts_with(' ') || rest.starts_with('\t'))
                        && !rest.trim().is_empty()
                    {
                        end += 1;
                    } else {
                        break;
                    }
                }
                received.push((i, end));
                prefix = Some(p);
                i = end;
                continue;
            }
            if let Some(p) = &prefix
                && (lines[i].trim_end() == p.trim_end() || lines[i].trim().is_empty())
            {
                header_end = Some(i);
                break;
            }
            i += 1;
        }
        let prefix = prefix?;
        let last = received.last()?.1;
        Some(Bounce {
            header_end: header_end.unwrap_or(last),
            lines,
            eol,
            received,
            prefix,
        })
    }

    /// The text with `added` Received lines just below the original's last one.
    fn with_below(&self, added: &[String]) -> String {
        let at = self.received.last().map_or(self.header_end, |r| r.1);
        let mut out: Vec<String> = self.lines[..at].to_vec();
        out.extend(
            added
                .iter()
                .map(|l| format!("{}Received: {l}", self.prefix)),
        );
        out.extend_from_slice(&self.lines[at..]);
        out.join(self.eol)
    }

    /// The text with the original's Received lines replaced by `added`.
    fn with_only(&self, added: &[String]) -> String {
        self.with_top(added, self.received.len())
    }

    /// The text with the original's first `drop` Received lines removed (a bouncer that
    /// returns the original without its own lines) and `added` put at the top instead.
    fn with_top(&self, added: &[String], drop: usize) -> String {
        let first = self.received.first().map_or(0, |r| r.0);
        let mut skip = vec![false; self.lines.len()];
        for &(a, b) in self.received.iter().take(drop) {
            skip[a..b].iter_mut().for_each(|s| *s = true);
        }
        let mut out: Vec<String> = Vec::new();
        for (i, l) in self.lines.iter().enumerate() {
            if i == first {
                out.extend(
                    added
                        .iter()
                        .map(|a| format!("{}Received: {a}", self.prefix)),
                );
            }
            if !skip[i] {
                out.push(l.clone());
            }
        }
        out.join(self.eol)
    }

    /// The text with the HELO name in the bottom genuine line replaced: the name the spammer's
    /// machine chose when it spoke to the bouncer. That is Exim's `helo=` note where there is
    /// one (Exim's first word is the name or address it looked up itself), else the first word
    /// after `from` (Postfix, Sendmail).
    fn with_bottom_helo(&self, helo: &str) -> Option<String> {
        let (a, b) = *self.received.last()?;
        let mut lines = self.lines.clone();
        let replace = |line: &str, at: usize| -> String {
            let end = line[at..]
                .find(|c: char| c.is_whitespace() || c == ')')
                .map_or(line.len(), |e| at + e);
            format!("{}{helo}{}", &line[..at], &line[end..])
        };
        if let Some(i) = (a..b).find(|&i| lines[i].contains("helo=")) {
            let at = lines[i].find("helo=")? + "helo=".len();
            lines[i] = replace(&lines[i], at);
        } else {
            let at =
                lines[a].to_ascii_lowercase().find("received: from ")? + "received: from ".len();
            if lines[a][at..].starts_with('[') {
                // `from [192.0.2.1] by ...`: the address the bouncer saw, and no HELO name.
                return None;
            }
            lines[a] = replace(&lines[a], at);
        }
        Some(lines.join(self.eol))
    }

    /// The text with the original's `name:` header (first one) given `value`, or added.
    fn with_header(&self, name: &str, value: &str) -> String {
        let (first, _) = self.received[0];
        let lower = format!("{}:", name.to_ascii_lowercase());
        let mut lines = self.lines.clone();
        let found = (first..self.header_end.min(lines.len())).find(|&i| {
            lines[i]
                .trim_start_matches(['>', ' ', '\t'])
                .to_ascii_lowercase()
                .starts_with(&lower)
        });
        let line = format!("{}{name}: {value}", self.prefix);
        match found {
            Some(i) => lines[i] = line,
            None => lines.insert(self.header_end, line),
        }
        lines.join(self.eol)
    }
}

const DATE: &str = "; Fri, 2 Jan 2026 00:00:01 +0000";

fn line(from: &str, by: &str, with: &str) -> String {
    format!("from {from} by {by} {with}{DATE}")
}

/// The forged shapes for one bounce: a name and the forged text.
fn forgeries(b: &Bounce, unforged: &Evaluation, own_domain: &str) -> Vec<(&'static str, String)> {
    let relay = format!("{OWN_HOST} ({OWN_HOST} [{OWN_IP}])");
    let mut v: Vec<(&'static str, String)> = vec![
        (
            "own relay by address, handing to an invented MX, below the bouncer's lines",
            b.with_below(&[line(&relay, INVENTED_MX, "with ESMTPS id F1")]),
        ),
        (
            "own name as HELO from a foreign address",
            b.with_below(&[line(
                &format!("{OWN_HOST} (unknown [203.0.113.77])"),
                INVENTED_MX,
                "with ESMTP id F2",
            )]),
        ),
        (
            "own name in the reverse-DNS comment with an own address",
            b.with_below(&[line(
                &format!("client.example ({OWN_HOST} [{OWN_IP}])"),
                INVENTED_MX,
                "with ESMTP id F3",
            )]),
        ),
        (
            "own relay as the receiving host",
            b.with_below(&[line("laptop ([10.0.0.5])", OWN_HOST, "with ESMTPSA id F4")]),
        ),
        (
            "own address as the receiving host",
            b.with_below(&[line(
                "laptop ([10.0.0.5])",
                &format!("[{OWN_IP}]"),
                "with ESMTPSA id F5",
            )]),
        ),
        (
            "three lines linked to each other, from an own relay to an invented MX",
            b.with_below(&[
                line(
                    &format!("{INVENTED_MX} ({INVENTED_MX} [198.51.100.9])"),
                    "mx2.invented-receiver.example",
                    "with ESMTP id F6",
                ),
                line(&relay, INVENTED_MX, "with ESMTPS id F7"),
                line(
                    "laptop (dyn.isp.example [192.0.2.55])",
                    OWN_HOST,
                    "with ESMTPSA id F8",
                ),
            ]),
        ),
        (
            "own relay lines as the only Received lines",
            b.with_only(&[
                line(&relay, INVENTED_MX, "with ESMTPS id F9"),
                line(
                    "laptop (dyn.isp.example [192.0.2.55])",
                    OWN_HOST,
                    "with ESMTPSA id F10",
                ),
            ]),
        ),
        (
            "own relay handing straight to an own-looking receiver, as the only line",
            b.with_only(&[line(
                &relay,
                &format!("mx.{own_domain}"),
                "with ESMTPS id F11",
            )]),
        ),
        (
            "own Message-ID and own From in the original",
            b.with_header("Message-ID", &format!("<spam.4711@{own_domain}>")),
        ),
    ];
    let own_id_and_relay =
        Bounce::read(&b.with_header("Message-ID", &format!("<spam.4712@{own_domain}>")))
            .map(|b2| b2.with_below(&[line(&relay, INVENTED_MX, "with ESMTPS id F12")]));
    if let Some(text) = own_id_and_relay {
        v.push(("own Message-ID and an own relay line", text));
    }
    // Shapes that link to the genuine chain: the attacker's own server (or a third party it
    // used) relays to the bouncer, under names the attacker chose.
    let hops = unforged
        .original
        .as_ref()
        .map(|o| {
            o.judged
                .iter()
                .filter(|h| h.hop.by.is_some() || h.hop.has_from())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if let (Some(top), Some(bottom)) = (hops.first(), hops.last()) {
        // The spammer's machine spoke to the bouncer from a public address: from a private or
        // loopback one, the spammer would be inside the bouncing site itself (a limit the
        // README names; only proofs help there).
        let org = |n: &str| backstop::evidence::anchor::registrable_domain(n);
        let bouncer_org = top.hop.by.as_deref().and_then(org);
        let sender_org = bottom
            .hop
            .from_rdns
            .as_deref()
            .or(bottom.hop.from_name.as_deref())
            .and_then(org);
        let from_outside = bottom
            .hop
            .from_ip
            .is_some_and(|ip| !ip.is_loopback() && !is_private(ip))
            && (sender_org.is_none() || sender_org != bouncer_org);
        let linked_name = bottom
            .hop
            .from_rdns
            .clone()
            .or_else(|| bottom.hop.from_name.clone())
            .filter(|_| from_outside);
        // The names the report gives the bouncer (its Reporting-MTA, the host its first
        // Received line says it was made on, its From and Message-ID domains): the attacker
        // knows them too.
        let bouncer_names: Vec<String> = unforged
            .original
            .as_ref()
            .filter(|_| from_outside)
            .map(|o| o.anchor.hosts.iter().take(4).cloned().collect())
            .unwrap_or_default();
        for (k, name) in bouncer_names.iter().enumerate() {
            v.push((
                "an own relay line received by a host the report names as the bouncer, below the bouncer's lines",
                b.with_below(&[line(&relay, name, &format!("with ESMTPS id F17.{k}"))]),
            ));
        }
        if let Some(sender) = linked_name.clone() {
            // A content filter's re-injection, as a bouncing site writes it: from loopback,
            // under the name the hop above recorded for its sender, into a bare-named MTA.
            v.push((
                "a loopback re-injection under the spam sender's name into a bare-named host, then an own relay line",
                b.with_below(&[
                    line(&format!("{sender} (localhost [127.0.0.1])"), "FILTER", "with ESMTP id F18"),
                    line(&relay, "FILTER", "with ESMTPS id F19"),
                ]),
            ));
            v.push((
                "a loopback hand-off greeting under an own-looking name, then that name receiving from an own relay",
                b.with_below(&[
                    line(&format!("mx.{own_domain} (localhost [127.0.0.1])"), &sender, "with ESMTP id F20"),
                    line(&relay, &format!("mx.{own_domain}"), "with ESMTPS id F21"),
                ]),
            ));
        }
        if let Some(name) = linked_name {
            v.push((
                "a relay the attacker named links the genuine chain to an own relay line",
                b.with_below(&[line(&relay, &name, "with ESMTPS id F13")]),
            ));
        }
        if let Some(ip) = bottom.hop.from_ip {
            v.push((
                "a line received by the address the bouncer got the spam from",
                b.with_below(&[line(&relay, &format!("[{ip}]"), "with ESMTPS id F14")]),
            ));
        }
        if let Some(bouncer) = top.hop.by.clone().filter(|_| from_outside) {
            if let Some(b2) = b.with_bottom_helo(&bouncer).and_then(|t| Bounce::read(&t)) {
                v.push((
                    "the spam's HELO names the bouncer's host, and a line says that host got it from an own relay",
                    b2.with_below(&[line(&relay, &bouncer, "with ESMTPS id F15")]),
                ));
            }
            {
                v.push((
                    "the bouncer's own host name receiving from an own relay, below its reception from a public address",
                    b.with_below(&[line(&relay, &bouncer, "with ESMTPS id F16")]),
                ));
            }
        }
    }
    v
}

/// The shape of issue 13's hole: a bouncer that returns the original without a Received line
/// of its own leaves the spammer's top line as the one the report's names are matched with.
pub const TRIMMING_BOUNCER: &str = "a bouncer that returns no line of its own: an own relay line received by a name the report gives the bouncer, at the top of the original";
/// The same, made from a bouncer that did write its lines: they are cut off.
pub const TRIMMED_BOUNCER: &str = "a bouncer's own lines cut off, and an own relay line received by a name the report gives it put at the top";

/// Forgeries of a bouncer that returns no line of its own, each with the text it is compared
/// with (the same message unforged, or with the bouncer's lines cut off and not forged): the
/// spammer writes `from <own relay> (<own relay> [<own address>]) by <the bouncer>` at the top
/// of the spam, for each name and address the anchor holds.
fn trimming_forgeries(
    b: &Bounce,
    unforged: &Evaluation,
) -> Vec<(&'static str, String, Option<String>)> {
    let Some(o) = unforged.original.as_ref() else {
        return Vec::new();
    };
    if o.judged.len() != b.received.len() {
        // The lines the generator found are not those of the judged original.
        return Vec::new();
    }
    let relay = format!("{OWN_HOST} ({OWN_HOST} [{OWN_IP}])");
    let names: Vec<String> = o
        .anchor
        .hosts
        .iter()
        .take(4)
        .cloned()
        .chain(o.anchor.ips.iter().take(2).map(|ip| format!("[{ip}]")))
        .collect();
    // The believed lines at the top: the bouncer's own.
    let believed = o.judged.iter().take_while(|h| h.believed).count();
    let mut v = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let forged = [line(&relay, name, &format!("with ESMTPS id F22.{k}"))];
        if believed == 0 {
            v.push((TRIMMING_BOUNCER, b.with_top(&forged, 0), None));
        } else {
            v.push((
                TRIMMED_BOUNCER,
                b.with_top(&forged, believed),
                Some(b.with_top(&[], believed)),
            ));
        }
    }
    v
}

fn is_private(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// Auto-replies and challenges whose In-Reply-To and References name own Message-IDs.
fn reply_forgeries(text: &str, own_domain: &str) -> Vec<(&'static str, String)> {
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let Some(end) = text.find(&format!("{eol}{eol}")) else {
        return Vec::new();
    };
    let (head, body) = text.split_at(end);
    let add = |h: &str| format!("{head}{eol}{h}{body}");
    vec![
        (
            "an automatic reply whose In-Reply-To names an own Message-ID",
            add(&format!("In-Reply-To: <spam.1@{own_domain}>")),
        ),
        (
            "an automatic reply whose References name own Message-IDs",
            add(&format!(
                "References: <a.1@{own_domain}>{eol} <b.2@mail.{own_domain}> <c.3@{own_domain}>"
            )),
        ),
    ]
}

struct Outcome {
    tried: BTreeMap<&'static str, usize>,
    /// Each forgery that helped the spammer: its shape, and what happened.
    failures: Vec<(&'static str, String)>,
}

fn judge(
    outcome: &mut Outcome,
    file: &str,
    shape: &'static str,
    message: &[u8],
    base: Verdict,
    config: &Config,
    rules: &RuleSet,
) {
    let got = evaluate(message, config, rules, &EnvVars::default());
    *outcome.tried.entry(shape).or_default() += 1;
    if got.verdict == Verdict::LegitBounce {
        outcome.failures.push((
            shape,
            format!(
                "{file}: {shape}: legit-bounce ({})",
                got.reasons.join(" / ")
            ),
        ));
    } else if base == Verdict::Backscatter && got.verdict != Verdict::Backscatter {
        outcome.failures.push((
            shape,
            format!(
                "{file}: {shape}: {} where the unforged message is backscatter ({})",
                got.verdict.as_str(),
                got.reasons.join(" / ")
            ),
        ));
    }
}

fn run_over(corpus: &Path, set: &str) -> Outcome {
    let rows: Vec<Row> = read_manifest(&corpus.join("manifest.tsv"), set).expect("the manifest");
    let mut outcome = Outcome {
        tried: BTreeMap::new(),
        failures: Vec::new(),
    };
    let judged_rows = rows
        .iter()
        .filter(|r| r.kind == "autoreply" || (r.kind != "ham" && !r.orig_from_domain.is_empty()));
    for row in judged_rows {
        let Ok(raw) = std::fs::read(corpus.join(&row.file)) else {
            outcome
                .failures
                .push(("unreadable", format!("{}: unreadable", row.file)));
            continue;
        };
        // Latin-1 keeps every byte as one char, so no byte is lost on the way.
        let text: String = raw.iter().map(|&b| b as char).collect();
        // The forged sender's domain: the original's From domain (an automatic reply names
        // no original: any own domain will do).
        let own_domain = match row.orig_from_domain.as_str() {
            "" => "own.example".to_string(),
            d => d.to_string(),
        };
        let config = Config::from_str(
            &format!(
                "own: {{domains: [\"{own_domain}\"], hosts: [{OWN_HOST}], networks: [100.100.100.0/24]}}\n"
            ),
            "forgery.yaml",
        )
        .expect("the scenario config");
        let rules = RuleSet::build(&config.user_rules, "forgery.yaml").expect("the rules");
        let unforged = evaluate(&raw, &config, &rules, &EnvVars::default());
        let latin1 = |t: &str| -> Vec<u8> { t.chars().map(|c| c as u32 as u8).collect() };
        if row.kind == "autoreply" {
            for (shape, t) in reply_forgeries(&text, &own_domain) {
                judge(
                    &mut outcome,
                    &row.file,
                    shape,
                    &latin1(&t),
                    unforged.verdict,
                    &config,
                    &rules,
                );
            }
            continue;
        }
        let Some(b) = Bounce::read(&text) else {
            continue;
        };
        for (shape, t) in forgeries(&b, &unforged, &own_domain) {
            // "As the only lines" removes the bouncer's genuine lines too: compare with the
            // same message trimmed and not forged.
            let base = if shape.contains("only") {
                evaluate(
                    &latin1(&b.with_only(&[])),
                    &config,
                    &rules,
                    &EnvVars::default(),
                )
                .verdict
            } else {
                unforged.verdict
            };
            judge(
                &mut outcome,
                &row.file,
                shape,
                &latin1(&t),
                base,
                &config,
                &rules,
            );
        }
        for (shape, t, base_text) in trimming_forgeries(&b, &unforged) {
            let base = match base_text {
                Some(bt) => evaluate(&latin1(&bt), &config, &rules, &EnvVars::default()).verdict,
                None => unforged.verdict,
            };
            judge(
                &mut outcome,
                &row.file,
                shape,
                &latin1(&t),
                base,
                &config,
                &rules,
            );
        }
    }
    outcome
}

/// Why the trimming-bouncer shapes are a known limit, printed with their count.
const TRIMMING_LIMIT: &str = "a bouncer that returns the original without a Received line of its own leaves the \
spammer's top line as the only one the report's names can match; where nothing the bouncer wrote \
(Received-From-MTA naming the client, Postfix's X-Postfix-Queue-ID on its line) ties that line \
to the report, one message cannot tell it from the bouncer's own. Proofs (a complete \
ledger, a stamp, DKIM, BATV) still stop it (README, limits; docs/trust.md)";

/// Asserts that no forgery helped the spammer, except the shapes in `limits`, each at most
/// the count given (a known limit, printed with its reason).
fn assert_no_forgery_helps(outcome: &Outcome, least: usize, limits: &[(&str, usize)]) {
    let shapes: Vec<String> = outcome
        .tried
        .iter()
        .map(|(s, n)| format!("{n:5}  {s}"))
        .collect();
    println!("forgeries tried per shape:\n{}", shapes.join("\n"));
    let (limited, helped): (Vec<_>, Vec<_>) = outcome
        .failures
        .iter()
        .partition(|(shape, _)| limits.iter().any(|(l, _)| l == shape));
    for (shape, max) in limits {
        let hits: Vec<&String> = limited
            .iter()
            .filter(|(s, _)| s == shape)
            .map(|(_, f)| f)
            .collect();
        println!(
            "known limit: {} of {} forgeries helped ({shape}; at most {max}): {TRIMMING_LIMIT}\n{}",
            hits.len(),
            outcome.tried.get(shape).copied().unwrap_or(0),
            hits.iter()
                .map(|f| format!("  {f}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(
            hits.len() <= *max,
            "{shape}: {} forgeries helped, above the known limit of {max}",
            hits.len()
        );
    }
    assert!(
        helped.is_empty(),
        "{} forgeries helped the spammer:\n{}",
        helped.len(),
        helped
            .iter()
            .map(|(_, f)| f.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(outcome.tried.len() >= 15, "shapes tried: {shapes:?}");
    for (shape, n) in &outcome.tried {
        assert!(*n >= least, "{shape}: tried on only {n} messages");
    }
}

#[test]
fn no_forged_header_makes_backscatter_legit_in_the_fixtures() {
    let outcome = run_over(&fixture("corpus"), "all");
    assert_no_forgery_helps(
        &outcome,
        2,
        &[(TRIMMING_BOUNCER, 31), (TRIMMED_BOUNCER, 72)],
    );
}

/// The same over the whole shared corpus, when `BACKSTOP_CORPUS` names it (CI sets it).
#[test]
fn no_forged_header_makes_backscatter_legit_in_the_corpus() {
    let Ok(dir) = std::env::var("BACKSTOP_CORPUS") else {
        println!("BACKSTOP_CORPUS is not set: the fixture test above covers the generator");
        return;
    };
    let outcome = run_over(Path::new(&dir), "dev");
    assert_no_forgery_helps(
        &outcome,
        5,
        &[(TRIMMING_BOUNCER, 62), (TRIMMED_BOUNCER, 193)],
    );
}

/// A real Postfix bounce whose own line (its original's only one) is cut off and replaced by
/// the spammer's own-relay line: the report's queue ID is not on it, so it is not believed,
/// and `explain` says so. The
/// same line with the genuine queue ID (what Postfix itself writes) is believed: the check
/// refuses the forgery, not the shape.
#[test]
fn a_postfix_bounce_without_its_own_line_is_caught_by_its_queue_id() {
    let text: String =
        crate::util::fixture_bytes("corpus/bounces/sisimai-bsd/lhost-postfix-02.eml")
            .iter()
            .map(|&b| b as char)
            .collect();
    let b = Bounce::read(&text).expect("the fixture's returned original");
    let dir = crate::util::temp_home();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "own: {{domains: [own.example], hosts: [{OWN_HOST}], networks: [100.100.100.0/24]}}\n"
        ),
    )
    .expect("the config");
    let relay = format!("{OWN_HOST} ({OWN_HOST} [{OWN_IP}])");
    let explain = |id: &str| -> String {
        let forged = b.with_top(
            &[line(
                &relay,
                "smtp.example.com (Postfix)",
                &format!("with ESMTP id {id}"),
            )],
            1,
        );
        let latin1: Vec<u8> = forged.chars().map(|c| c as u32 as u8).collect();
        let out = crate::util::run_with_input(
            crate::util::backstop(dir.path())
                .arg("explain")
                .arg("-c")
                .arg(&config),
            &latin1,
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let forged = explain("F22A0B1C2D");
    assert!(
        forged.contains(
            "not believed: the report's queue ID 7874F1FB8E (X-Postfix-Queue-ID) is not on this line (it carries id F22A0B1C2D)"
        ),
        "{forged}"
    );
    // The forged line is the only one left: an unvouched claim, nothing more.
    assert!(forged.contains("own-relay-unvouched"), "{forged}");
    assert!(forged.contains("verdict: unverified-bounce"), "{forged}");
    // Postfix's own line carries the ID: believed, and the crossing from the own relay counts.
    let genuine = explain("7874F1FB8E");
    assert!(
        genuine.contains("and it carries the report's queue ID 7874F1FB8E (X-Postfix-Queue-ID)"),
        "{genuine}"
    );
    assert!(genuine.contains("verdict: legit-bounce"), "{genuine}");
}
