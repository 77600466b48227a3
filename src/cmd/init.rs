//! `backstop init`: proposes the `own:` section from mail the user sent, and with `--write`
//! writes it as a commented config.
//!
//! # What it reads
//!
//! Each SOURCE is a Maildir (its `cur/` and `new/`), an mbox, or one message file. Each
//! message is either mail the user sent (a Sent folder's copy), or a bounce of it: a message
//! the default rules call a bounce and that carries the original is read for that original
//! (give only bounces of mail you really sent: the original of backscatter is a forgery).
//!
//! # What it proposes
//!
//! Counted over all the messages, most frequent first, each with why:
//!
//! - `domains`: the domains of the From addresses.
//! - `message_id_domains`, only when Message-IDs name other domains than the From (a mail
//!   client or provider that makes its own): the From domains and those.
//! - `hosts`: the server the message was handed to first (the `by` of the lowest Received
//!   line), and each server above it that is still the user's: its name is under a proposed
//!   domain or under the same parent domain as that first server.
//! - `networks`: where the mail left those servers: the `from` address of the first Received
//!   line written by a server that is not one of them (the next hop recorded it, so it is the
//!   address a bouncer sees), when it is a public address, as a single-address network.
//!
//! Names and addresses are checked (host names of letters, digits, `-` and `.`; addresses
//! parsed), so nothing a message says is written unchecked into the config. `--write` writes
//! to `-c FILE`, else `$BACKSTOP_CONFIG`, else the default config file, and never over an
//! existing file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use crate::cli::InitArgs;
use crate::cmd::scan::{for_judging, split_mbox};
use crate::config::Config;
use crate::evidence::original::id_domain;
use crate::evidence::received::{Hop, is_internal};
use crate::exit::Exit;
use crate::message::{self, EnvVars};
use crate::rules::RuleSet;
use crate::run::evaluate_bytes;
use crate::util::dates::rfc3339;

/// How many entries of each list are proposed at most.
const MAX_PROPOSED: usize = 10;

/// Runs `backstop init`.
pub fn run(args: &InitArgs) -> ExitCode {
    let mut found = Found::default();
    let config = Config::default();
    let rules = match RuleSet::build(&config.user_rules, "(defaults)") {
        Ok(r) => r,
        Err(e) => {
            say!("backstop: {e}");
            return ExitCode::from(Exit::Error);
        }
    };
    for source in &args.sources {
        if let Err(e) = read_source(source, &mut |raw| found.add(raw, &config, &rules)) {
            say!("backstop: {}: {e}", source.display());
            return ExitCode::from(Exit::Error);
        }
    }
    let proposal = Proposal::from(&found);
    if proposal.domains.is_empty() && proposal.hosts.is_empty() {
        say!(
            "backstop: found nothing to propose in {} messages: give your Sent folder (a Maildir or an mbox), or bounces of mail you sent",
            found.messages
        );
        return ExitCode::from(Exit::Partial);
    }
    let text = proposal.yaml(&found);
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(crate::util::text::for_terminal(&text).as_bytes()) {
        say!("backstop: cannot write the proposal: {e}");
        return ExitCode::from(Exit::Error);
    }
    if !args.write {
        let _ = writeln!(
            out,
            "\n(Nothing written: check the lines above, then run again with --write.)"
        );
        return ExitCode::SUCCESS;
    }
    let Some(path) = args
        .config
        .clone()
        .or_else(Config::env_path)
        .or_else(Config::default_path)
    else {
        say!("backstop: no place for the config (no home directory): give one with -c FILE");
        return ExitCode::from(Exit::Error);
    };
    match write_new(&path, &text) {
        Ok(()) => {
            let _ = writeln!(
                out,
                "\nWrote {}; `backstop lint` checks it.",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            say!("backstop: {e}");
            ExitCode::from(Exit::Error)
        }
    }
}

/// Writes `text` to the new file `path` (its directory made for the user alone when missing);
/// an existing file is never replaced.
fn write_new(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!(
                "{} exists: init never overwrites a config. Add the lines above to it by hand, or \
                 move it away, or write elsewhere with -c FILE",
                path.display()
            ),
            _ => format!("cannot create {}: {e}", path.display()),
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Calls `each` with every message of a Maildir, an mbox, or a message file.
fn read_source(path: &Path, each: &mut dyn FnMut(&[u8])) -> Result<(), String> {
    let meta = fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.is_dir() {
        if !path.join("cur").is_dir() && !path.join("new").is_dir() {
            return Err("a directory but not a Maildir (it has no cur/ or new/)".into());
        }
        for sub in ["cur", "new"] {
            let Ok(entries) = fs::read_dir(path.join(sub)) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.path())
                .collect();
            files.sort();
            for f in files {
                if let Ok(raw) = fs::read(&f) {
                    each(&raw);
                }
            }
        }
        return Ok(());
    }
    let raw = fs::read(path).map_err(|e| e.to_string())?;
    if raw.starts_with(b"From ") {
        for r in split_mbox(&raw)? {
            each(&for_judging(raw.get(r).unwrap_or_default()));
        }
    } else {
        each(&raw);
    }
    Ok(())
}

/// What the messages showed, counted.
#[derive(Debug, Default)]
struct Found {
    messages: usize,
    /// Messages read as sent mail, and originals read out of bounces.
    sent: usize,
    returned: usize,
    domains: BTreeMap<String, usize>,
    id_domains: BTreeMap<String, usize>,
    /// Host name: (how many messages, how many of them as the first server).
    hosts: BTreeMap<String, (usize, usize)>,
    /// Address: (how many messages, the server it left).
    networks: BTreeMap<IpAddr, (usize, String)>,
}

impl Found {
    fn add(&mut self, raw: &[u8], config: &Config, rules: &RuleSet) {
        self.messages += 1;
        let eval = evaluate_bytes(raw, config, rules, &EnvVars::default());
        if eval.kind.is_some() {
            // A bounce or an automatic reply: its original is what the user sent.
            if let Some(view) = &eval.original {
                self.returned += 1;
                let o = &view.original;
                self.sent_mail(o.from.as_deref(), o.message_id.as_deref(), &o.received);
            }
            return;
        }
        let (_, bytes) = message::split_from_line(raw);
        let analysed = message::for_analysis(bytes);
        let Some(mail) = message::parse(&analysed) else {
            return;
        };
        self.sent += 1;
        let from = message::from_text(&mail);
        self.sent_mail(from.as_deref(), mail.message_id(), &Hop::all(&mail));
    }

    fn sent_mail(&mut self, from: Option<&str>, id: Option<&str>, hops: &[Hop]) {
        let from_domain = from.and_then(address_domain);
        if let Some(d) = &from_domain {
            *self.domains.entry(d.clone()).or_default() += 1;
        }
        if let Some(d) = id.and_then(id_domain).filter(|d| valid_host(d)) {
            *self.id_domains.entry(d).or_default() += 1;
        }
        // Hops are top first: the lowest with a receiving host is the first server.
        let mut own: Vec<String> = Vec::new();
        for hop in hops.iter().rev() {
            let Some(by) = hop.by.as_deref().map(clean_host).filter(|b| valid_host(b)) else {
                continue;
            };
            let ours = match own.first() {
                None => true,
                Some(first) => {
                    under(&by, parent(first))
                        || from_domain.as_deref().is_some_and(|d| under(&by, d))
                }
            };
            if !ours {
                // The first server that is not the user's: where it got the message from is
                // the address the user's mail leaves from.
                if let (Some(ip), Some(last)) = (hop.from_ip, own.last())
                    && !is_internal(ip)
                    && !ip.is_unspecified()
                {
                    let e = self.networks.entry(ip).or_insert((0, last.clone()));
                    e.0 += 1;
                }
                break;
            }
            if !own.contains(&by) {
                own.push(by);
            }
        }
        for (i, h) in own.into_iter().enumerate() {
            let e = self.hosts.entry(h).or_default();
            e.0 += 1;
            if i == 0 {
                e.1 += 1;
            }
        }
    }
}

/// The lower-cased domain of the (last) address in a From text.
fn address_domain(from: &str) -> Option<String> {
    let addr = match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => from.get(a + 1..b)?,
        _ => from,
    };
    let domain = addr.trim().rsplit_once('@')?.1.trim().trim_end_matches('.');
    let domain = domain.to_ascii_lowercase();
    valid_host(&domain).then_some(domain)
}

/// A host name as Received lines write it, lower-cased, without a trailing dot.
fn clean_host(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// A host or domain name of at least two labels, of letters, digits and `-` only.
fn valid_host(name: &str) -> bool {
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && name.parse::<IpAddr>().is_err()
}

/// `name` without its first label (itself when it has two labels or fewer).
fn parent(name: &str) -> &str {
    match name.split_once('.') {
        Some((_, rest)) if rest.contains('.') => rest,
        _ => name,
    }
}

/// Whether `name` is `domain` or a name under it.
fn under(name: &str, domain: &str) -> bool {
    name == domain
        || name
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// The proposed `own:` section, each entry with how many messages showed it.
#[derive(Debug, Default)]
struct Proposal {
    domains: Vec<(String, usize)>,
    /// Empty unless Message-IDs name domains the From does not.
    id_domains: Vec<(String, usize)>,
    hosts: Vec<(String, usize, usize)>,
    networks: Vec<(String, usize, String)>,
}

fn most_first<K: Clone, V: Clone>(
    map: &BTreeMap<K, V>,
    count: impl Fn(&V) -> usize,
) -> Vec<(K, V)> {
    let mut v: Vec<(K, V)> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    // Stable: equal counts keep the map's (alphabetical) order.
    v.sort_by_key(|(_, v)| std::cmp::Reverse(count(v)));
    v.truncate(MAX_PROPOSED);
    v
}

impl From<&Found> for Proposal {
    fn from(f: &Found) -> Proposal {
        let domains: Vec<(String, usize)> = most_first(&f.domains, |n| *n);
        let extra = f
            .id_domains
            .keys()
            .any(|d| !domains.iter().any(|(own, _)| own == d));
        Proposal {
            id_domains: if extra {
                most_first(&f.id_domains, |n| *n)
            } else {
                Vec::new()
            },
            hosts: most_first(&f.hosts, |(n, _)| *n)
                .into_iter()
                .map(|(h, (n, first))| (h, n, first))
                .collect(),
            networks: most_first(&f.networks, |(n, _)| *n)
                .into_iter()
                .map(|(ip, (n, host))| {
                    let bits = if ip.is_ipv4() { 32 } else { 128 };
                    (format!("{ip}/{bits}"), n, host)
                })
                .collect(),
            domains,
        }
    }
}

impl Proposal {
    /// The config text, every entry with a comment that says why.
    fn yaml(&self, f: &Found) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "# backstop config, proposed by `backstop init` on {} from {} messages\n\
             # ({} sent, {} returned in bounces). Check every line: backstop believes a bounce\n\
             # is of your mail when it came through what is listed here. See man backstop.yaml.",
            rfc3339(SystemTime::now()),
            f.messages,
            f.sent,
            f.returned
        );
        t.push_str("own:\n");
        if !self.domains.is_empty() {
            t.push_str("  # The domains you send from (the From of your mail).\n  domains:\n");
            for (d, n) in &self.domains {
                let _ = writeln!(t, "    - {d}  # the From of {}", messages(*n));
            }
        }
        if !self.id_domains.is_empty() {
            t.push_str(
                "  # Your mail's Message-IDs name other domains than the From: all of them.\n  message_id_domains:\n",
            );
            let mut listed: Vec<&String> = Vec::new();
            for (d, n) in &self.id_domains {
                let _ = writeln!(t, "    - {d}  # in the Message-ID of {}", messages(*n));
                listed.push(d);
            }
            for (d, _) in self.domains.iter().filter(|(d, _)| !listed.contains(&d)) {
                let _ = writeln!(t, "    - {d}  # a From domain");
            }
        }
        if !self.hosts.is_empty() {
            t.push_str(
                "  # The servers your mail passes on its way out (from the Received lines). Leave\n  \
                 # out one that a big provider shares with everyone else.\n  hosts:\n",
            );
            for (h, n, first) in &self.hosts {
                let why = if *first > 0 {
                    format!(
                        "took your mail from you first, in {first} of {}",
                        messages(*n)
                    )
                } else {
                    format!("passed your mail on, in {}", messages(*n))
                };
                let _ = writeln!(t, "    - {h}  # {why}");
            }
        }
        if !self.networks.is_empty() {
            t.push_str(
                "  # Where your mail leaves those servers, as the next server recorded it.\n  networks:\n",
            );
            for (net, n, host) in &self.networks {
                let _ = writeln!(
                    t,
                    "    - {net}  # {host} sent from there, in {}",
                    messages(*n)
                );
            }
        }
        t
    }
}

/// "1 message", "2 messages".
fn messages(n: usize) -> String {
    if n == 1 {
        "1 message".into()
    } else {
        format!("{n} messages")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_they_are_proposed() {
        assert_eq!(
            address_domain("Me <ME@Example.ORG>").as_deref(),
            Some("example.org")
        );
        assert_eq!(address_domain("x@bad domain.org"), None);
        assert_eq!(address_domain("x@evil.org\n  - \"*\""), None);
        assert!(valid_host("smtp.example.org"));
        assert!(!valid_host("localhost"));
        assert!(!valid_host("198.51.100.7"));
        assert!(!valid_host("*.example.org"));
        assert_eq!(parent("smtp.mail.example.org"), "mail.example.org");
        assert_eq!(parent("example.org"), "example.org");
        assert!(under("a.example.org", "example.org"));
        assert!(!under("badexample.org", "example.org"));
    }
}
