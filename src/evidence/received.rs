//! The returned original's Received chain: its hops, and which of them the bouncer vouches for.
//!
//! Threat model: the sender of the original wrote every line of it, in any order and
//! spelling. The bouncer wrote the lines above them, and the report around them ([`Anchor`]).
//! So a hop is believed only from the bouncer down, along links a sender cannot fake (a
//! receiver's recorded address or reverse-DNS name, never a HELO), inside the bouncer's
//! organisation; see [`judge_chain`].

use std::net::IpAddr;

use mail_parser::{Host, Message};
use serde::Serialize;

use crate::evidence::anchor::{Anchor, QueueId};
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
    /// The receiver's queue ID (`with ESMTP id 1C9F8ABBBE89`), as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Hop {
    /// Reads every Received header of `mail`.
    pub fn all(mail: &Message<'_>) -> Vec<Hop> {
        let raws = header_values(mail, "Received");
        let mut parsed: Vec<Option<mail_parser::Received<'_>>> =
            mail.received_all().cloned().map(Some).collect();
        if parsed.len() != raws.len() {
            // The message was parsed with Received left raw (see `message::parse`): read
            // each line alone, as the parser would have.
            parsed = raws
                .iter()
                .take(MAX_HOPS)
                .map(|raw| parse_received(raw))
                .collect();
        }
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
                if (parsed.len() == raws.len() || parsed.len() == MAX_HOPS)
                    && has_from
                    && has_by
                    && let Some(Some(r)) = parsed.get(i)
                {
                    hop.from_name = r.from.as_ref().map(host_text);
                    hop.from_rdns = r.from_iprev.as_ref().map(|s| s.to_string());
                    hop.from_ip = r.from_ip.map(canonical_ip);
                    hop.helo = r.helo.as_ref().map(host_text);
                    hop.by = r.by.as_ref().map(host_text);
                    hop.id = r.id.as_ref().map(|id| id.to_string());
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
        if self.id.is_none() {
            // The word after `id`, in the case it was written (queue IDs are case-sensitive).
            let bare = strip_comments(raw);
            let mut words = bare.split_whitespace();
            self.id = words
                .by_ref()
                .find(|w| w.eq_ignore_ascii_case("id"))
                .and_then(|_| words.next())
                .map(|w| {
                    w.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                        .to_string()
                })
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

/// One Received value parsed by mail-parser's own field parser, owned. (A whole
/// `MessageParser` per line would build its header table each time: most of the cost.)
fn parse_received(raw: &str) -> Option<mail_parser::Received<'static>> {
    let text = format!("{raw}\r\n\r\n");
    match mail_parser::parsers::MessageStream::new(text.as_bytes()).parse_received() {
        mail_parser::HeaderValue::Received(r) => Some(r.into_owned()),
        _ => None,
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
    /// Above the entry: recorded inside the bouncer's organisation.
    Foreign,
    /// The lowest hop of the chain the bouncer vouches for: where the message entered the
    /// bouncer's organisation (or, for a report written here, the user's own servers).
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
    /// How strong the match is: an address, or a reverse-DNS name where no address was
    /// recorded (or no own network of its family is known), is strong; a HELO name the
    /// client chose is weak.
    pub strong: bool,
    /// An own name beside an address that is not own: a forgery sign.
    pub own_name_from_foreign_ip: bool,
}

/// Judges the `from` side of a hop against the user's own hosts and networks. Where an
/// address is recorded and own networks of its family are known, the address decides: an own
/// name beside a foreign address is a forgery sign, whoever looked the name up.
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
    // An address of a family with own networks that is not in them says "not own".
    let address_decides = hop.from_ip.is_some_and(|ip| {
        own.networks
            .iter()
            .any(|n| n.addr().is_ipv4() == ip.is_ipv4())
    });
    if let Some(rdns) = hop.from_rdns.as_deref().filter(|n| own.is_own_host(n)) {
        if address_decides {
            j.own_name_from_foreign_ip = true;
        } else {
            j.own_by = Some(format!("rDNS {rdns}"));
            j.strong = true;
        }
        return j;
    }
    let claimed = [hop.from_name.as_deref(), hop.helo.as_deref()]
        .into_iter()
        .flatten()
        .find(|n| own.is_own_host(n) || n.parse::<IpAddr>().is_ok_and(|ip| own.is_own_ip(ip)));
    if let Some(name) = claimed {
        // With no own networks of that family, the address proves nothing either way.
        if address_decides {
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
    /// Recorded by the bouncer (or linked to a hop it recorded, inside its organisation):
    /// only such a hop counts for the user.
    pub believed: bool,
    /// Why it is believed or not, for explain.
    pub link: String,
}

/// Judges a chain (top first) from the bouncer down.
///
/// The top hop is believed only when the bouncer ([`Anchor`]) recorded it. A hop below a
/// believed hop is believed only when it is linked to it and recorded inside the bouncer's
/// organisation; linked means one of:
/// - its `by` is the host (reverse-DNS name) or address the hop above received from;
/// - the hop above came from loopback or names no sender (a hand-off inside one host), and
///   this hop's `by` is that same host: as the hop above names it, or as its loopback client
///   greeted (the host naming itself), inside the organisation;
/// - the hop above came from a private address under a name the site gave, and this hop's
///   `by` is that name, or this hop is a loopback re-injection greeting with that name.
///
/// The HELO name a client gave is never a link: the client chose it. The walk stops where the
/// message crossed from an own host into the bouncer's organisation, and at the first hop
/// that is not linked: nothing at or below it is believed. The lowest believed hop is the
/// entry.
///
/// When the bouncer recorded no hop of the chain (its own lines were trimmed, or the report
/// names no bouncer), nothing is believed; the entry is then guessed as before, by names that
/// agree from hop to hop, for evidence against the user only.
///
/// Where the report says which outside host the bouncer received the original from
/// (`Received-From-MTA`), a believed hop must have come from that host: else the bouncer wrote
/// none of the lines, and nothing is believed (see [`contradicts_report`]).
pub fn judge_chain(hops: &[Hop], own: &Own, anchor: &Anchor) -> Vec<JudgedHop> {
    let judged = walk(hops, own, anchor, None);
    match contradicts_report(&judged, anchor, own) {
        Some(why) => walk(hops, own, anchor, Some(why)),
        None => judged,
    }
}

/// The walk of [`judge_chain`]; with `refused`, the top hop is not believed, for that reason.
fn walk(hops: &[Hop], own: &Own, anchor: &Anchor, refused: Option<String>) -> Vec<JudgedHop> {
    let mut judged: Vec<JudgedHop> = hops
        .iter()
        .map(|h| JudgedHop {
            hop: h.clone(),
            role: HopRole::Ignored,
            by_own: by_own(h, own),
            from: judge_from(h, own),
            believed: false,
            link: String::new(),
        })
        .collect();
    let informative: Vec<usize> = (0..judged.len())
        .filter(|&i| judged[i].hop.by.is_some() || judged[i].hop.has_from())
        .collect();
    let Some(&top) = informative.first() else {
        return judged;
    };
    let vouched = judged[top]
        .hop
        .by
        .as_deref()
        .and_then(|b| anchor.vouches_for(b, own));
    let Some(why) = vouched.filter(|_| refused.is_none()) else {
        // The report says the top line is not the bouncer's: one that claims an own sender who
        // did not record the hop below it stands in the bouncer's place, as a spammer's line
        // does. It is not where the message entered, and the guess goes on below it.
        let floating = refused.is_some()
            && judged[top].from.own_by.is_some()
            && judged[top].from.strong
            && informative
                .get(1)
                .is_some_and(|&next| !continuous(&judged[top].hop, &judged[next].hop));
        judged[top].link = match (judged[top].hop.by.as_deref(), refused) {
            (_, Some(why)) if floating => format!(
                "not believed: {why}; and the own sender it names did not record the hop below: a forged own line"
            ),
            (_, Some(why)) => format!("not believed: {why}"),
            (Some(b), None) => format!(
                "not believed: {b} is not the bouncer (the bouncer: {})",
                anchor.describe()
            ),
            (None, None) => "not believed: it names no receiving host".into(),
        };
        guess_entry(&mut judged, &informative, usize::from(floating));
        if floating {
            judged[top].role = HopRole::Untrusted;
        }
        return judged;
    };
    judged[top].believed = true;
    judged[top].link = match carried_queue_id(&judged[top].hop, anchor) {
        Some(q) if !anchor.own => format!(
            "believed: {why}, and it carries the report's queue ID {} ({})",
            q.id, q.what
        ),
        _ => format!("believed: {why}"),
    };
    let mut entry = 0;
    for k in 1..informative.len() {
        let (prev, next) = (&judged[informative[k - 1]], &judged[informative[k]]);
        if !anchor.own && prev.from.own_by.is_some() && prev.from.strong {
            // The hop above came from an own host: below it is the user's own side.
            break;
        }
        match link(&prev.hop, &next.hop, anchor, own) {
            Ok(why) => {
                let next = &mut judged[informative[k]];
                next.believed = true;
                next.link = format!("linked: {why}");
                entry = k;
            }
            Err(why) => {
                judged[informative[k]].link =
                    format!("not linked: {why}; the believed chain ends here");
                break;
            }
        }
    }
    let entry_hop = &judged[informative[entry]];
    // The believed chain may end inside the bouncing site (a hop from a private or loopback
    // address, or with no address): where the site got the message is then not recorded in
    // lines it vouches for. Below, names suggest the way on, for evidence against only.
    let inside_site = entry_hop.hop.from_ip.is_none_or(is_internal);
    if !anchor.own && inside_site && entry + 1 < informative.len() {
        guess_entry(&mut judged, &informative, entry);
        return judged;
    }
    let entry_from_own = !anchor.own && entry_hop.from.own_by.is_some() && entry_hop.from.strong;
    for (k, &i) in informative.iter().enumerate() {
        judged[i].role = match k {
            _ if k < entry => HopRole::Foreign,
            _ if k == entry => HopRole::Entry,
            _ if entry_from_own && judged[i].by_own => HopRole::Own,
            _ => HopRole::Untrusted,
        };
        if k > entry && judged[i].link.is_empty() {
            judged[i].link = "not believed: below the end of the believed chain".into();
        }
    }
    judged
}

/// Why the believed hops contradict the report, if they do: the queue ID it gives for the
/// bouncer's own line ([`contradicts_queue_id`]), or the client it says the bouncer received the
/// original from ([`contradicts_received_from`]).
fn contradicts_report(judged: &[JudgedHop], anchor: &Anchor, own: &Own) -> Option<String> {
    if anchor.own {
        return None;
    }
    contradicts_queue_id(judged, anchor).or_else(|| contradicts_received_from(judged, anchor, own))
}

/// Why the top believed hop is not the bouncer's own line, by the queue ID the report gives
/// for it (Postfix's `X-Postfix-Queue-ID`, or its MIME boundary). Postfix writes that ID into the Received line it
/// adds on reception, and a bounce returns the queue file with that line on top; the sender of
/// the original cannot guess it (microseconds and an inode number, or a random long ID). A top
/// line without it was not written by the bouncer: a spammer's `from <own relay> by <the
/// bouncer>`, left on top by a bouncer that returned the original without its own line.
fn contradicts_queue_id(judged: &[JudgedHop], anchor: &Anchor) -> Option<String> {
    if anchor.queue_ids.is_empty() {
        return None;
    }
    let top = judged.iter().find(|h| h.believed)?;
    if carried_queue_id(&top.hop, anchor).is_some() {
        return None;
    }
    let carries = match top.hop.id.as_deref() {
        Some(id) => format!("it carries id {}", shorten(id, 40)),
        None => "it carries no id".into(),
    };
    Some(format!(
        "the report's queue ID {} is not on this line ({carries}): the bouncer's own line, which carries it, did not come back, so the bouncer wrote none of these",
        anchor.describe_queue_ids()
    ))
}

/// The queue ID of the report that `hop` carries, if any.
fn carried_queue_id<'a>(hop: &Hop, anchor: &'a Anchor) -> Option<&'a QueueId> {
    let id = hop.id.as_deref()?;
    anchor
        .queue_ids
        .iter()
        .find(|q| q.id.eq_ignore_ascii_case(id))
}

/// Why the believed hops contradict the client the report names, if they do. A DSN's `Received-From-MTA` is
/// the bouncer's own record of the client it got the original from. Where it names a host
/// outside the bouncer's site (not loopback, not a private address, no name in the bouncer's
/// organisation: those say only that the report was made after a hand-off inside the site),
/// one believed hop must have come from that host: by address where both give one, else by
/// name. The sender of the original writes every line the bouncer did not: where the bouncer
/// returned no line of its own, the spammer's top line `from <own relay> by <the bouncer>`
/// would otherwise be believed on the bouncer's name alone. A name the report gives without
/// an address may be the HELO of the spammer's host, which a prepared spammer can copy into
/// its line: only an address rules that out.
fn contradicts_received_from(judged: &[JudgedHop], anchor: &Anchor, own: &Own) -> Option<String> {
    let rf = anchor.received_from.as_ref()?;
    let ips: Vec<IpAddr> = rf
        .ips
        .iter()
        .copied()
        .filter(|ip| !is_internal(*ip) && !anchor.ips.contains(ip))
        .collect();
    let names: Vec<&str> = rf
        .names
        .iter()
        .map(String::as_str)
        .filter(|n| !is_loopback_name(n) && !anchor.inside(n, own))
        .collect();
    if ips.is_empty() && names.is_empty() {
        return None;
    }
    let believed: Vec<&Hop> = judged
        .iter()
        .filter(|h| h.believed && h.hop.has_from())
        .map(|h| &h.hop)
        .collect();
    let top = believed.first()?;
    let agrees = |hop: &Hop| match hop.from_ip {
        Some(ip) if !ips.is_empty() => ips.contains(&ip),
        _ => [
            hop.from_name.as_deref(),
            hop.from_rdns.as_deref(),
            hop.helo.as_deref(),
        ]
        .into_iter()
        .flatten()
        .any(|n| names.iter().any(|r| same_host(n.trim_end_matches('.'), r))),
    };
    if believed.iter().any(|h| agrees(h)) {
        return None;
    }
    Some(format!(
        "the bouncer says it received the original from {} ({}), not from the sender of any hop its names vouch for (the top one: {}): it wrote none of them",
        rf.raw,
        rf.what,
        describe_sender(top)
    ))
}

fn describe_sender(hop: &Hop) -> String {
    let name = hop
        .from_rdns
        .as_deref()
        .or(hop.from_name.as_deref())
        .unwrap_or("an unnamed host");
    match hop.from_ip {
        Some(ip) => format!("{name} [{ip}]"),
        None => name.to_string(),
    }
}

/// How `next` (the hop below) is linked to the believed hop `prev`, inside the bouncer's
/// organisation; or why it is not.
fn link(prev: &Hop, next: &Hop, anchor: &Anchor, own: &Own) -> Result<String, String> {
    let Some(by) = next.by.as_deref() else {
        return Err("it names no receiving host".into());
    };
    let inside = anchor.inside(by, own);
    let by_ip = by
        .trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .ok()
        .map(canonical_ip);
    let received_from = if by_ip.is_some() && by_ip == prev.from_ip {
        Some(format!("{by} is the address the hop above received from"))
    } else if verified_names(prev).any(|n| n == by) {
        Some(format!("{by} is the host the hop above received from"))
    } else {
        None
    };
    if let Some(why) = received_from {
        return if inside {
            Ok(why)
        } else {
            Err(format!(
                "{why}, but it is outside the bouncer's organisation"
            ))
        };
    }
    // A hand-off inside one host. Only a message made or re-injected on the bouncer's own host
    // comes this way: a spammer outside reaches it over SMTP from an address, and their lines
    // lie below that hop.
    // A sender with no address at all is no network peer either: a daemon of the host.
    let from_loopback = prev.from_ip.is_some_and(|ip| ip.is_loopback());
    // (No organisation check here: the hop below names the very host above, which the bouncer
    // vouches for, or that host under its organisation's other domain; anyone writing lines
    // below a hand-off inside one host could as well write its exact name.)
    let same = prev.by.as_deref().is_some_and(|b| {
        one_host(b, by) || (from_loopback && (is_loopback_name(by) || is_loopback_name(b)))
    });
    // Or by the name the host gave itself from its own loopback (a filter re-injecting under
    // the host's full name into an MTA that calls itself by another): inside the organisation.
    let self_named = from_loopback && inside && self_names(prev).any(|n| one_host(n, by));
    if (from_loopback || prev.from_ip.is_none()) && (same || self_named) {
        return Ok(format!(
            "the hop above was a hand-off inside {by} itself ({})",
            if self_named && !same {
                "from loopback, where it greeted under this name"
            } else if from_loopback {
                "from loopback"
            } else if prev.has_from() {
                "from a sender with no address"
            } else {
                "it names no sender"
            }
        ));
    }
    if let Some(ip) = prev
        .from_ip
        .filter(|ip| is_internal(*ip) && !ip.is_loopback())
    {
        // A private address is the bouncing site's own machine, whose name the site set: the
        // name it gave must be this hop's host, inside the organisation. Any host of the
        // organisation would not do: a customer submitting through the site's internal hops
        // (a sending API, a gateway) writes the lines below them.
        let site_names: Vec<&str> = [prev.from_name.as_deref(), prev.from_rdns.as_deref()]
            .into_iter()
            .flatten()
            .map(|n| n.trim_end_matches('.'))
            .collect();
        let named = site_names.iter().any(|n| one_host(n, by));
        // The same machine under its local name: this hop was a hand-off from its own loopback
        // whose client gave the name the hop above recorded (a content filter re-injecting
        // into the appliance's MTA: `from mx.example.net ([127.0.0.1]) by IMSVA`). A bare
        // name is then inside the organisation through that name.
        let self_named = next.from_ip.is_some_and(|ip| ip.is_loopback())
            && self_names(next).any(|n| site_names.iter().any(|s| one_host(s, n)));
        let bare = !by.contains('.') && by.parse::<IpAddr>().is_err();
        let inside =
            inside || (self_named && bare && site_names.iter().any(|n| anchor.inside(n, own)));
        let named = named || self_named;
        return match (named, inside) {
            (true, true) => Ok(format!(
                "the hop above came from {by} at the private address {ip}, inside the bouncer's organisation"
            )),
            (true, false) => Err(format!(
                "the hop above came from {by} at the private address {ip}, but {by} is outside the bouncer's organisation"
            )),
            (false, _) => Err(format!(
                "the hop above came from the private address {ip} under another name than {by}"
            )),
        };
    }
    let source = verified_names(prev)
        .next()
        .map(str::to_string)
        .or_else(|| prev.from_ip.map(|ip| ip.to_string()))
        .or_else(|| prev.from_name.clone())
        .unwrap_or_else(|| "an unnamed host".into());
    Err(format!(
        "{by} is not the host the hop above received from ({source})"
    ))
}

/// The names of a hop's sender that its receiver looked up, not the HELO the sender chose:
/// the reverse-DNS name, and Exim's leading name (`from NAME ([ip] helo=OTHER)`).
fn verified_names(hop: &Hop) -> impl Iterator<Item = &str> {
    let exim_name = hop.from_name.as_deref().filter(|n| {
        hop.helo
            .as_deref()
            .is_some_and(|h| !h.eq_ignore_ascii_case(n))
    });
    [hop.from_rdns.as_deref(), exim_name]
        .into_iter()
        .flatten()
        .map(|n| n.trim_end_matches('.'))
}

/// The names a hop's client gave itself (the name after `from`, the HELO), when the client is
/// the receiving host itself, from loopback: then the host chose them, not a sender outside.
fn self_names(hop: &Hop) -> impl Iterator<Item = &str> {
    let local = hop.from_ip.is_some_and(|ip| ip.is_loopback());
    [hop.from_name.as_deref(), hop.helo.as_deref()]
        .into_iter()
        .flatten()
        .filter(move |n| local && !is_loopback_name(n) && n.parse::<IpAddr>().is_err())
        .map(|n| n.trim_end_matches('.'))
}

/// `localhost`, `localhost.localdomain` or a loopback address: this very host.
fn is_loopback_name(name: &str) -> bool {
    let n = name.trim_matches(['[', ']']).to_ascii_lowercase();
    n == "localhost"
        || n.starts_with("localhost.")
        || n.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The same host as one host writes its own name from line to line: in full or by its first
/// label alone (`mx` and `mx.example.com`), or under its organisation's other domain
/// (`litemail00.example.com` above `litemail00.example.net`).
fn one_host(a: &str, b: &str) -> bool {
    let first = |n: &str| n.split('.').next().unwrap_or(n).to_ascii_lowercase();
    let brand = |n: &str| crate::evidence::anchor::registrable_domain(n).map(|d| first(&d));
    same_host(a, b) || (first(a) == first(b) && brand(a).is_some() && brand(a) == brand(b))
}

/// The same host, written in full or by its first label alone.
fn same_host(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    let first = |n: &str| n.split('.').next().unwrap_or(n).to_string();
    a == b || (a.contains('.') != b.contains('.') && first(&a) == first(&b))
}

/// Where the bouncer's believed record stops short (it vouches for no hop, or for none below
/// `start`): the entry as the names suggest, walking down from `start` while each hop was
/// recorded by the host the one above came from (or over an internal address). Nothing it
/// steps onto is believed; it only says where evidence against the user lies.
fn guess_entry(judged: &mut [JudgedHop], informative: &[usize], start: usize) {
    let top = informative[0];
    if start == 0 && judged[top].by_own {
        // The top hop claims to be ours: nobody foreign vouches for any of it.
        for &i in informative {
            judged[i].role = if judged[i].by_own {
                HopRole::Own
            } else {
                HopRole::Untrusted
            };
        }
        return;
    }
    let mut entry = start;
    for k in start + 1..informative.len() {
        let (prev, next) = (&judged[informative[k - 1]], &judged[informative[k]]);
        // Names alone never lead onto a hop that claims an own server or sender: below a hop
        // nobody vouches for, such a claim is a forgery sign, not an entry.
        if prev.from.own_by.is_some() && prev.from.strong
            || next.by_own
            || (next.from.own_by.is_some() && next.from.strong)
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
        if judged[i].link.is_empty() {
            judged[i].link = if !judged[informative[start]].believed {
                "not believed: the bouncer recorded no hop above it".into()
            } else {
                "not believed: below the end of the believed chain".into()
            };
        }
    }
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
    let first_label = |n: &str| n.split('.').next().unwrap_or(n).to_ascii_lowercase();
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
        .any(|n| same_host(n.trim_end_matches('.'), by))
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

    /// The bouncer: mx.remote.example, as its report names it.
    fn anchor() -> Anchor {
        Anchor {
            hosts: vec!["mx.remote.example".into()],
            domains: vec!["remote.example".into()],
            sources: vec!["Reporting-MTA mx.remote.example".into()],
            ..Anchor::default()
        }
    }

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
        let judged = judge_chain(&hops(LEGIT), &own(), &anchor());
        assert_eq!(judged[0].role, HopRole::Entry);
        assert_eq!(judged[0].from.own_by.as_deref(), Some("IP 198.51.100.7"));
        assert_eq!(judged[1].role, HopRole::Own);
    }

    #[test]
    fn forged_own_hop_below_a_foreign_entry_is_untrusted() {
        let judged = judge_chain(&hops(FORGED), &own(), &anchor());
        assert_eq!(judged[0].role, HopRole::Entry);
        assert!(judged[0].from.own_by.is_none());
        assert_eq!(judged[1].role, HopRole::Untrusted);
        assert!(judged[1].by_own);
    }

    #[test]
    fn trust_follows_an_unbroken_foreign_chain() {
        let text = "Received: from mx1.remote.example (mx1.remote.example [10.1.1.1]) by store.remote.example; Fri, 2 Jan 2026 00:00:03 +0000\nReceived: from mail.own.example (mail.own.example [198.51.100.7]) by mx1.remote.example; Fri, 2 Jan 2026 00:00:02 +0000\nSubject: x\n\n";
        let judged = judge_chain(&hops(text), &own(), &anchor());
        assert_eq!(judged[0].role, HopRole::Foreign);
        assert_eq!(judged[1].role, HopRole::Entry);
        assert!(judged[1].from.strong);
    }

    #[test]
    fn a_forged_hop_that_breaks_the_chain_is_untrusted() {
        // The bottom hop claims an own sender but names a receiver the hop above did not come from.
        let text = "Received: from bot.spam.example (bot.spam.example [203.0.113.9]) by mx.remote.example; Fri, 2 Jan 2026 00:00:03 +0000\nReceived: from mail.own.example (mail.own.example [198.51.100.7]) by relay.elsewhere.example; Fri, 2 Jan 2026 00:00:02 +0000\nSubject: x\n\n";
        let judged = judge_chain(&hops(text), &own(), &anchor());
        assert_eq!(judged[0].role, HopRole::Entry);
        assert_eq!(judged[1].role, HopRole::Untrusted);
    }

    #[test]
    fn a_chain_the_bouncer_did_not_record_is_not_believed() {
        // The bouncer's own lines were trimmed: the top line is anyone's.
        let text = "Received: from mail.own.example (mail.own.example [198.51.100.7]) by mx.invented.example; Fri, 2 Jan 2026 00:00:02 +0000\nSubject: x\n\n";
        let judged = judge_chain(&hops(text), &own(), &anchor());
        assert!(!judged[0].believed);
        assert!(
            judged[0].link.contains("is not the bouncer"),
            "{}",
            judged[0].link
        );
    }

    #[test]
    fn a_helo_name_is_no_link_but_loopback_is() {
        // The spammer's machine greeted with the bouncer's sister host's name; the line below
        // claims that host got the message from an own relay.
        let helo = "Received: from mx2.remote.example (bot.spam.example [203.0.113.9]) by mx.remote.example; Fri, 2 Jan 2026 00:00:03 +0000\nReceived: from mail.own.example (mail.own.example [198.51.100.7]) by mx2.remote.example; Fri, 2 Jan 2026 00:00:02 +0000\nSubject: x\n\n";
        let judged = judge_chain(&hops(helo), &own(), &anchor());
        assert!(judged[0].believed);
        assert!(!judged[1].believed, "{}", judged[1].link);
        assert_eq!(judged[0].role, HopRole::Entry);
        // A content filter's re-injection on the bouncer's host links to the hop below.
        let reinjected = "Received: from localhost (localhost [127.0.0.1]) by mx.remote.example; Fri, 2 Jan 2026 00:00:03 +0000\nReceived: from mail.own.example (mail.own.example [198.51.100.7]) by mx.remote.example; Fri, 2 Jan 2026 00:00:02 +0000\nSubject: x\n\n";
        let judged = judge_chain(&hops(reinjected), &own(), &anchor());
        assert!(judged[1].believed, "{}", judged[1].link);
        assert_eq!(judged[1].role, HopRole::Entry);
        assert!(judged[1].from.strong);
    }

    /// A filtering appliance inside the bouncing site: its MTA calls itself `FILTER`, its
    /// filter re-injects from loopback under the site's full names.
    const APPLIANCE: &str = "Received: from gw.remote.example (10.0.0.2) by mx.remote.example (10.0.0.1) with Microsoft SMTP Server; Fri, 2 Jan 2026 00:00:04 +0000\nReceived: from gw.remote.example (unknown [127.0.0.1]) by IMSVA (Postfix) with ESMTP id 3; Fri, 2 Jan 2026 00:00:03 +0000\nReceived: from scan7.remote.example (unknown [127.0.0.1]) by IMSVA (Postfix) with ESMTP id 2; Fri, 2 Jan 2026 00:00:02 +0000\nReceived: from mail.own.example (unknown [198.51.100.7]) by scan7.remote.example (Postfix) with ESMTPS id 1; Fri, 2 Jan 2026 00:00:01 +0000\nSubject: x\n\n";

    #[test]
    fn a_loopback_reinjection_links_by_the_names_the_host_gives_itself() {
        let judged = judge_chain(&hops(APPLIANCE), &own(), &anchor());
        for (i, h) in judged.iter().enumerate() {
            assert!(h.believed, "hop {}: {}", i + 1, h.link);
        }
        // The private hand-off from gw.remote.example: the bare-named MTA below is that host,
        // by the name its own loopback client gave.
        assert!(
            judged[1].link.contains("private address"),
            "{}",
            judged[1].link
        );
        // From loopback greeting as scan7.remote.example: that host received the hop below.
        assert!(
            judged[3].link.contains("greeted under this name"),
            "{}",
            judged[3].link
        );
        assert_eq!(judged[3].role, HopRole::Entry);
        assert!(judged[3].from.strong);
    }

    #[test]
    fn a_self_given_name_links_only_inside_the_organisation() {
        // The loopback client names a host outside the bouncer's organisation.
        let outside = APPLIANCE.replace("scan7.remote.example", "scan7.spam.example");
        let judged = judge_chain(&hops(&outside), &own(), &anchor());
        assert!(judged[2].believed, "{}", judged[2].link);
        assert!(!judged[3].believed, "{}", judged[3].link);
        // The private host named outside the organisation: a bare name is not inside through it.
        let outside = APPLIANCE.replace("gw.remote.example", "gw.spam.example");
        let judged = judge_chain(&hops(&outside), &own(), &anchor());
        assert!(!judged[1].believed, "{}", judged[1].link);
    }

    #[test]
    fn a_loopback_line_below_a_public_sender_is_not_linked() {
        // The spammer's host spoke to the bouncer from a public address; the lines below it,
        // a "re-injection" under its name and an own relay line, are its own writing.
        let text = "Received: from bot.spam.example (bot.spam.example [203.0.113.9]) by mx.remote.example; Fri, 2 Jan 2026 00:00:03 +0000\nReceived: from bot.spam.example (localhost [127.0.0.1]) by FILTER; Fri, 2 Jan 2026 00:00:02 +0000\nReceived: from mail.own.example (mail.own.example [198.51.100.7]) by FILTER; Fri, 2 Jan 2026 00:00:01 +0000\nSubject: x\n\n";
        let judged = judge_chain(&hops(text), &own(), &anchor());
        assert!(judged[0].believed);
        assert!(!judged[1].believed, "{}", judged[1].link);
        assert!(!judged[2].believed);
    }

    /// The bouncer as a report names it that also says where it got the original from.
    fn anchor_received_from(value: &str) -> Anchor {
        Anchor {
            received_from: crate::evidence::anchor::received_from_value(value),
            ..anchor()
        }
    }

    /// What a spammer writes atop the spam for a bouncer that returns no line of its own.
    const TRIMMED: &str = "Received: from mail.own.example (mail.own.example [198.51.100.7]) by mx.remote.example; Fri, 2 Jan 2026 00:00:02 +0000\nSubject: x\n\n";

    #[test]
    fn a_top_line_the_bouncer_says_it_did_not_receive_is_not_believed() {
        // The bouncer got the spam from the spammer's host, and says so.
        for rf in [
            "dns; bot.spam.example ([203.0.113.9])",
            "dns; [203.0.113.9]",
            "dns; bot.spam.example",
        ] {
            let judged = judge_chain(&hops(TRIMMED), &own(), &anchor_received_from(rf));
            assert!(!judged[0].believed, "{rf}: {}", judged[0].link);
            assert!(
                judged[0].link.contains("Received-From-MTA"),
                "{}",
                judged[0].link
            );
        }
        // Two lines, the top one a hand-off inside the bouncer's site: neither came from the
        // host the bouncer names.
        let two = "Received: from mx1.remote.example (mx1.remote.example [10.0.0.1]) by mx.remote.example; Fri, 2 Jan 2026 00:00:03 +0000\nReceived: from mail.own.example (mail.own.example [198.51.100.7]) by mx1.remote.example; Fri, 2 Jan 2026 00:00:02 +0000\nSubject: x\n\n";
        let judged = judge_chain(
            &hops(two),
            &own(),
            &anchor_received_from("dns; bot.spam.example ([203.0.113.9])"),
        );
        assert!(judged.iter().all(|h| !h.believed), "{judged:?}");
        // The report does not say: the line is believed on the bouncer's name (the known
        // limit of a bouncer that returns no line of its own).
        let judged = judge_chain(&hops(TRIMMED), &own(), &anchor());
        assert!(judged[0].believed);
    }

    #[test]
    fn a_top_line_the_bouncer_agrees_with_is_believed() {
        for rf in [
            "dns; mail.own.example ([198.51.100.7])",
            "dns; [198.51.100.7]",
            "dns; mail.own.example",
            // A hand-off inside the bouncer's site says nothing of where the site got it.
            "dns; localhost",
            "smtp; barracuda1.remote.example ([127.0.0.1])",
            "dns; mx1.remote.example (10.0.0.1)",
            // No host at all.
            "dns; user@example.net",
        ] {
            let judged = judge_chain(&hops(TRIMMED), &own(), &anchor_received_from(rf));
            assert!(judged[0].believed, "{rf}: {}", judged[0].link);
            assert_eq!(judged[0].role, HopRole::Entry);
        }
        // The address decides where both give one: a name the spammer chose does not agree.
        let judged = judge_chain(
            &hops(TRIMMED),
            &own(),
            &anchor_received_from("dns; mail.own.example ([203.0.113.9])"),
        );
        assert!(!judged[0].believed, "{}", judged[0].link);
        // The lower of two believed hops came from the host the bouncer names.
        let judged = judge_chain(
            &hops(
                "Received: from mx1.remote.example (mx1.remote.example [10.0.0.1]) by mx.remote.example; Fri, 2 Jan 2026 00:00:03 +0000\nReceived: from mail.own.example (mail.own.example [198.51.100.7]) by mx1.remote.example; Fri, 2 Jan 2026 00:00:02 +0000\nSubject: x\n\n",
            ),
            &own(),
            &anchor_received_from("dns; mail.own.example ([198.51.100.7])"),
        );
        assert!(judged.iter().all(|h| h.believed));
    }

    fn anchor_queue_id(id: &str) -> Anchor {
        Anchor {
            queue_ids: vec![QueueId {
                id: id.into(),
                what: "X-Postfix-Queue-ID",
            }],
            ..anchor()
        }
    }

    #[test]
    fn a_postfix_report_believes_only_the_line_with_its_queue_id() {
        // The bouncer's own line carries the ID the report gives; the spammer's lines below
        // it are judged as before.
        let genuine = "Received: from mail.own.example (mail.own.example [198.51.100.7]) by mx.remote.example (Postfix) with ESMTPS id 4dJF1p1qt4z20PyL for <u@remote.example>; Fri, 2 Jan 2026 00:00:02 +0000\nSubject: x\n\n";
        let judged = judge_chain(&hops(genuine), &own(), &anchor_queue_id("4dJF1p1qt4z20PyL"));
        assert!(judged[0].believed, "{}", judged[0].link);
        assert!(
            judged[0].link.contains("queue ID 4dJF1p1qt4z20PyL"),
            "{}",
            judged[0].link
        );
        assert_eq!(judged[0].role, HopRole::Entry);
        // A spammer's line where the bouncer returned none of its own: it cannot guess the ID.
        for forged in [
            TRIMMED,
            "Received: from mail.own.example (mail.own.example [198.51.100.7]) by mx.remote.example (Postfix) with ESMTPS id 3F2A1B0C9 for <u@remote.example>; Fri, 2 Jan 2026 00:00:02 +0000\nSubject: x\n\n",
        ] {
            let judged = judge_chain(&hops(forged), &own(), &anchor_queue_id("4dJF1p1qt4z20PyL"));
            assert!(!judged[0].believed, "{}", judged[0].link);
            assert!(
                judged[0].link.contains("X-Postfix-Queue-ID"),
                "{}",
                judged[0].link
            );
        }
    }

    #[test]
    fn a_disowned_own_line_that_its_sender_did_not_continue_is_forged() {
        // The spammer's own-relay line atop the bouncer's re-injection and the spam's entry:
        // the report disowns it, and mail.own.example recorded nothing below it.
        let text = "Received: from mail.own.example (mail.own.example [198.51.100.7]) by mx.remote.example (Postfix) with ESMTPS id F22; Fri, 2 Jan 2026 00:00:03 +0000\nReceived: from localhost (localhost [127.0.0.1]) by mx.remote.example (Postfix) with ESMTP id 1111111111; Fri, 2 Jan 2026 00:00:02 +0000\nReceived: from bot.spam.example (bot.spam.example [203.0.113.9]) by mx.remote.example (Postfix) with ESMTP id 2222222222; Fri, 2 Jan 2026 00:00:01 +0000\nSubject: x\n\n";
        let judged = judge_chain(&hops(text), &own(), &anchor_queue_id("3333333333"));
        assert!(judged.iter().all(|h| !h.believed), "{judged:?}");
        assert_eq!(judged[0].role, HopRole::Untrusted, "{}", judged[0].link);
        assert!(
            judged[0].link.contains("a forged own line"),
            "{}",
            judged[0].link
        );
        // The entry is guessed below it, for evidence against only.
        assert_eq!(judged[2].role, HopRole::Entry, "{judged:?}");
        // Where the own relay did record the hop below (the user's submission), the line
        // is only unvouched: the entry, believed by nobody.
        let text = "Received: from mail.own.example (mail.own.example [198.51.100.7]) by mx.remote.example (Postfix) with ESMTPS id F22; Fri, 2 Jan 2026 00:00:03 +0000\nReceived: from [192.168.1.5] (client.isp.example [192.0.2.5]) by mail.own.example (Postfix) with ESMTPSA id 4444444444; Fri, 2 Jan 2026 00:00:02 +0000\nSubject: x\n\n";
        let judged = judge_chain(&hops(text), &own(), &anchor_queue_id("3333333333"));
        assert!(judged.iter().all(|h| !h.believed), "{judged:?}");
        assert_eq!(judged[0].role, HopRole::Entry, "{}", judged[0].link);
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
