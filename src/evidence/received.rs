//! The returned original's Received chain: its hops, and which of them the user's side recorded.

use std::net::IpAddr;

use mail_parser::{Host, Message};
use serde::Serialize;

use crate::evidence::own::{Own, canonical_ip};
use crate::message::header_values;
use crate::util::text::shorten;

/// Hops beyond this many are not read (a real chain has a dozen at most).
const MAX_HOPS: usize = 64;

/// One Received header of the original, top (newest) first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Hop {
    /// The header, shortened, for explain.
    pub raw: String,
    /// The name after `from` (usually the HELO name).
    pub from_name: Option<String>,
    /// The reverse-DNS name the receiver recorded.
    pub from_rdns: Option<String>,
    pub from_ip: Option<IpAddr>,
    pub helo: Option<String>,
    pub by: Option<String>,
}

impl Hop {
    /// Reads every Received header of `mail`.
    pub fn all(mail: &Message<'_>) -> Vec<Hop> {
        let raws = header_values(mail, "Received");
        let parsed: Vec<_> = mail.received_all().collect();
        raws.iter()
            .take(MAX_HOPS)
            .enumerate()
            .map(|(i, raw)| {
                let mut hop = Hop {
                    raw: shorten(raw, 160),
                    ..Hop::default()
                };
                // mail-parser parses each Received in order; pair them by position.
                // Take mail-parser's reading only where the text has the clauses: it reads
                // `(qmail 1 invoked from network)` as from=network, `(from userid 22)` as from=userid.
                let bare = strip_comments(&raw.to_ascii_lowercase());
                let has_from = bare.trim_start().starts_with("from");
                let has_by = bare.split_whitespace().any(|w| w == "by");
                if parsed.len() == raws.len()
                    && has_from
                    && has_by
                    && let Some(r) = parsed.get(i)
                {
                    hop.from_name = r.from.as_ref().map(host_text);
                    hop.from_rdns = r.from_iprev.as_ref().map(|s| s.to_string());
                    hop.from_ip = r.from_ip.map(canonical_ip);
                    hop.helo = r.helo.as_ref().map(host_text);
                    hop.by = r.by.as_ref().map(host_text);
                    if hop.from_ip.is_none() {
                        hop.from_ip = match &r.from {
                            Some(Host::IpAddr(ip)) => Some(canonical_ip(*ip)),
                            _ => None,
                        };
                    }
                }
                hop.fill_from_text(raw);
                hop
            })
            .collect()
    }

    /// Fills what the parser missed with a plain reading of `from X (... [ip]) by Y`,
    /// ignoring comments such as `(Postfix, from userid 255)` or `(qmail 1 invoked by uid 0)`.
    fn fill_from_text(&mut self, raw: &str) {
        let lower = raw.to_ascii_lowercase();
        let bare = strip_comments(&lower);
        let words: Vec<&str> = bare.split_whitespace().collect();
        if self.by.is_none()
            && let Some(i) = words.iter().position(|w| *w == "by")
        {
            self.by = words
                .get(i + 1)
                .map(|w| clean_name(w))
                .filter(|w| !w.is_empty());
        }
        if self.from_name.is_none() && words.first() == Some(&"from") {
            self.from_name = words
                .get(1)
                .map(|w| clean_name(w))
                .filter(|w| !w.is_empty());
        }
        if self.from_ip.is_none() && words.first() == Some(&"from") {
            // The first address in the from clause, comments included.
            let from_clause = lower.split(" by ").next().unwrap_or(&lower);
            self.from_ip = from_clause
                .split(['[', ']', '(', ')', ' ', '=', ',', '\t'])
                .find_map(|w| w.trim_start_matches("ipv6:").parse::<IpAddr>().ok())
                .map(canonical_ip);
        }
    }

    /// True when the hop says where it came from (a name or an address).
    pub fn has_from(&self) -> bool {
        self.from_name.is_some() || self.from_ip.is_some() || self.from_rdns.is_some()
    }
}

/// Removes parenthesised comments (one level of nesting is enough for Received).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn host_text(host: &Host<'_>) -> String {
    match host {
        Host::Name(n) => n.trim_end_matches('.').to_ascii_lowercase(),
        Host::IpAddr(ip) => ip.to_string(),
    }
}

fn clean_name(word: &str) -> String {
    word.trim_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':'))
        .trim_end_matches('.')
        .to_string()
}

/// How the user's side figures in one hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HopRole {
    /// Recorded by a foreign server, above the entry point, in an unbroken chain: trustworthy.
    Foreign,
    /// The lowest hop the trusted chain reaches: where the message entered the foreign side,
    /// or where it was created if it names no sender.
    Entry,
    /// Recorded by an own server, below an entry that came from an own host.
    Own,
    /// Below the entry and not vouched for by it: anyone could have written it.
    Untrusted,
    /// Names neither a sender nor a receiver: nothing to judge.
    Ignored,
}

/// Why a hop's `from` was or was not judged own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FromJudgement {
    /// The address or name that matched an own network or host, if any.
    pub own_by: Option<String>,
    /// How strong the match is: an IP or rDNS name the receiver looked up is strong; a
    /// HELO name the client chose is weak.
    pub strong: bool,
    /// A foreign IP that claimed an own name as HELO: a forgery sign.
    pub own_name_from_foreign_ip: bool,
}

/// Judges the `from` side of a hop against the user's own hosts and networks.
pub fn judge_from(hop: &Hop, own: &Own) -> FromJudgement {
    let mut j = FromJudgement {
        own_by: None,
        strong: false,
        own_name_from_foreign_ip: false,
    };
    if let Some(ip) = hop.from_ip.filter(|ip| own.is_own_ip(*ip)) {
        j.own_by = Some(format!("IP {ip}"));
        j.strong = true;
        return j;
    }
    if let Some(rdns) = hop.from_rdns.as_deref().filter(|n| own.is_own_host(n)) {
        j.own_by = Some(format!("rDNS {rdns}"));
        j.strong = true;
        return j;
    }
    let claimed = [hop.from_name.as_deref(), hop.helo.as_deref()]
        .into_iter()
        .flatten()
        .find(|n| own.is_own_host(n) || n.parse::<IpAddr>().is_ok_and(|ip| own.is_own_ip(ip)));
    if let Some(name) = claimed {
        // An own name from an address of a family with own networks is a forgery sign;
        // with no own networks of that family, the address proves nothing either way.
        let family_known = hop.from_ip.is_some_and(|ip| {
            own.networks
                .iter()
                .any(|n| n.addr().is_ipv4() == ip.is_ipv4())
        });
        if family_known {
            j.own_name_from_foreign_ip = true;
        } else {
            j.own_by = Some(format!("name {name}"));
        }
    }
    j
}

/// Whether the `by` side names an own host.
pub fn by_own(hop: &Hop, own: &Own) -> bool {
    hop.by.as_deref().is_some_and(|b| {
        own.is_own_host(b) || b.parse::<IpAddr>().is_ok_and(|ip| own.is_own_ip(ip))
    })
}

/// A hop with the judgement made of it.
#[derive(Debug, Clone, Serialize)]
pub struct JudgedHop {
    #[serde(flatten)]
    pub hop: Hop,
    pub role: HopRole,
    pub by_own: bool,
    pub from: FromJudgement,
}

/// Judges a chain (top first). Only hops written after the message reached an
/// honest server can be believed, so trust runs down from the top hop, one hop at
/// a time, while the chain stays unbroken: the next hop must be recorded by the
/// host this one came from (same name, or an internal address), must not be an
/// own server's, and this one must not already come from an own host. The last
/// hop reached is the entry. Hops below it are own only if the entry came from
/// an own host; otherwise they are untrusted (and, if they claim own servers, forged).
pub fn judge_chain(hops: &[Hop], own: &Own) -> Vec<JudgedHop> {
    let mut judged: Vec<JudgedHop> = hops
        .iter()
        .map(|h| JudgedHop {
            hop: h.clone(),
            role: HopRole::Untrusted,
            by_own: by_own(h, own),
            from: judge_from(h, own),
        })
        .collect();
    let informative: Vec<usize> = (0..judged.len())
        .filter(|&i| judged[i].hop.by.is_some() || judged[i].hop.has_from())
        .collect();
    for h in judged.iter_mut() {
        h.role = HopRole::Ignored;
    }
    let Some(&top) = informative.first() else {
        return judged;
    };
    if judged[top].by_own {
        // The top hop claims to be ours: nobody foreign vouches for any of it.
        for &i in &informative {
            judged[i].role = if judged[i].by_own {
                HopRole::Own
            } else {
                HopRole::Untrusted
            };
        }
        return judged;
    }
    let mut entry = 0;
    for k in 1..informative.len() {
        let (prev, next) = (&judged[informative[k - 1]], &judged[informative[k]]);
        if prev.from.own_by.is_some() && prev.from.strong
            || next.by_own
            || !continuous(&prev.hop, &next.hop)
        {
            break;
        }
        entry = k;
    }
    let entry_from_own =
        judged[informative[entry]].from.own_by.is_some() && judged[informative[entry]].from.strong;
    for (k, &i) in informative.iter().enumerate() {
        judged[i].role = match k {
            _ if k < entry => HopRole::Foreign,
            _ if k == entry => HopRole::Entry,
            _ if entry_from_own && judged[i].by_own => HopRole::Own,
            _ => HopRole::Untrusted,
        };
    }
    judged
}

/// True when `next` (the hop below) was recorded by the host `prev` came from: the
/// names agree (exactly, or on their first label), or `prev` came from an internal
/// (loopback or private) address of the recording side.
fn continuous(prev: &Hop, next: &Hop) -> bool {
    if prev.from_ip.is_some_and(is_internal) {
        return true;
    }
    let Some(by) = next.by.as_deref() else {
        return false;
    };
    let first_label = |n: &str| n.split('.').next().unwrap_or(n).to_string();
    if !prev.has_from() {
        // A hop that names no sender above others: the same host handing the message on
        // inside itself (a filter, a local re-injection), recorded under its own name.
        return prev
            .by
            .as_deref()
            .is_some_and(|b| first_label(b) == first_label(by));
    }
    [prev.from_rdns.as_deref(), prev.from_name.as_deref()]
        .into_iter()
        .flatten()
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
        .any(|n| {
            n == by || (n.contains('.') != by.contains('.') && first_label(&n) == first_label(by))
        })
        || prev
            .from_ip
            .is_some_and(|ip| by.parse::<IpAddr>().is_ok_and(|b| canonical_ip(b) == ip))
}

/// Loopback, private and link-local addresses: hand-offs inside one site.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::own::{HostPattern, parse_network};

    fn own() -> Own {
        Own {
            domains: vec!["own.example".into()],
            message_id_domains: vec!["own.example".into()],
            hosts: vec![
                HostPattern::new("mail.own.example"),
                HostPattern::new("*.out.own.example"),
            ],
            networks: vec![parse_network("198.51.100.0/24").unwrap()],
            relays_configured: true,
            message_id_domains_configured: false,
            origin: vec![],
        }
    }

    fn hops(text: &str) -> Vec<Hop> {
        let mail = mail_parser::MessageParser::new()
            .parse(text.as_bytes())
            .unwrap();
        Hop::all(&mail)
    }

    const LEGIT: &str = "Received: from mail.own.example (mail.own.example [198.51.100.7])\n\tby mx.remote.example (Postfix) with ESMTPS id 1; Fri, 2 Jan 2026 00:00:02 +0000\nReceived: from laptop (unknown [10.0.0.5])\n\tby mail.own.example (Postfix) with ESMTPSA id 2; Fri, 2 Jan 2026 00:00:01 +0000\nSubject: x\n\nbody\n";

    const FORGED: &str = "Received: from bot.spam.example (bot.spam.example [203.0.113.9])\n\tby mx.remote.example (Postfix) with ESMTP id 1; Fri, 2 Jan 2026 00:00:02 +0000\nReceived: from laptop.own.example ([198.51.100.20])\n\tby mail.own.example (Postfix) with ESMTPSA id X; Fri, 2 Jan 2026 00:00:01 +0000\nSubject: x\n\nbody\n";

    #[test]
    fn legit_chain_enters_from_own_ip() {
        let judged = judge_chain(&hops(LEGIT), &own());
        assert_eq!(judged[0].role, HopRole::Entry);
        assert_eq!(judged[0].from.own_by.as_deref(), Some("IP 198.51.100.7"));
        assert_eq!(judged[1].role, HopRole::Own);
    }

    #[test]
    fn forged_own_hop_below_a_foreign_entry_is_untrusted() {
        let judged = judge_chain(&hops(FORGED), &own());
        assert_eq!(judged[0].role, HopRole::Entry);
        assert!(judged[0].from.own_by.is_none());
        assert_eq!(judged[1].role, HopRole::Untrusted);
        assert!(judged[1].by_own);
    }

    #[test]
    fn trust_follows_an_unbroken_foreign_chain() {
        let text = "Received: from mx1.remote.example (mx1.remote.example [10.1.1.1]) by store.remote.example; Fri, 2 Jan 2026 00:00:03 +0000\nReceived: from mail.own.example (mail.own.example [198.51.100.7]) by mx1.remote.example; Fri, 2 Jan 2026 00:00:02 +0000\nSubject: x\n\n";
        let judged = judge_chain(&hops(text), &own());
        assert_eq!(judged[0].role, HopRole::Foreign);
        assert_eq!(judged[1].role, HopRole::Entry);
        assert!(judged[1].from.strong);
    }

    #[test]
    fn a_forged_hop_that_breaks_the_chain_is_untrusted() {
        // The bottom hop claims an own sender but names a receiver the hop above did not come from.
        let text = "Received: from bot.spam.example (bot.spam.example [203.0.113.9]) by mx.remote.example; Fri, 2 Jan 2026 00:00:03 +0000\nReceived: from mail.own.example (mail.own.example [198.51.100.7]) by relay.elsewhere.example; Fri, 2 Jan 2026 00:00:02 +0000\nSubject: x\n\n";
        let judged = judge_chain(&hops(text), &own());
        assert_eq!(judged[0].role, HopRole::Entry);
        assert_eq!(judged[1].role, HopRole::Untrusted);
    }

    #[test]
    fn comments_are_not_senders() {
        let h = hops(
            "Received: by e1.example.ne.jp (Postfix, from userid 255)\n\tid 97DAA44A0204; Thu,  1 Jul 2014 23:45:59 +0900 (JST)\nSubject: x\n\n",
        );
        assert_eq!(h[0].from_name, None);
        assert_eq!(h[0].by.as_deref(), Some("e1.example.ne.jp"));
        assert!(!h[0].has_from());
    }

    #[test]
    fn own_helo_from_a_foreign_ip_is_a_forgery_sign() {
        let h = hops(
            "Received: from mail.own.example (unknown [203.0.113.9]) by mx.remote.example; Fri, 2 Jan 2026 00:00:02 +0000\nSubject: x\n\n",
        );
        let j = judge_from(&h[0], &own());
        assert!(j.own_by.is_none());
        assert!(j.own_name_from_foreign_ip);
    }
}
