//! Weighs the evidence that the user really sent the returned original.
//!
//! Only what the sender of the original could not write counts for the user: a hop the bouncer
//! vouches for that received it from an own relay, or an own server's report about mail it got
//! from the user. Everything a sender writes (unbelieved hops, Message-IDs, From) may count
//! against, never for.

use serde::Serialize;

use crate::evidence::anchor::{Anchor, registrable_domain};
use crate::evidence::original::{Form, Original, id_domain};
use crate::evidence::own::Own;
use crate::evidence::received::{HopRole, JudgedHop, is_internal};

/// One piece of evidence: positive for "I sent it", negative for "forged".
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub points: i32,
    /// A short stable name, for scripts.
    pub tag: &'static str,
    pub text: String,
}

impl Evidence {
    pub fn new(points: i32, tag: &'static str, text: String) -> Evidence {
        Evidence { points, tag, text }
    }
}

/// Evidence tags that say the message passed through an own host, from a hop the bouncer
/// vouches for: what a sender cannot forge. A legitimate bounce needs one of these (or a
/// proof); everything else that speaks for the user is a claim anyone could write.
pub const RELAY_POSITIVE: &[&str] = &["entered-from-own-relay", "returned-by-own-server"];
/// Evidence tags strong enough to call a message backscatter; guesses and identifiers
/// alone never are.
pub const STRONG_NEGATIVE: &[&str] = &[
    "forged-own-hop",
    "entered-from-foreign-host",
    "created-on-foreign-host",
    "own-name-from-foreign-ip",
    "foreign-message-id-configured",
    "no-own-hop",
];
/// The tag of a hop that claims an own server below a foreign entry.
pub const FORGED_OWN_HOP: &str = "forged-own-hop";

/// Totals at or above this are a legitimate bounce; at or below the negative, backscatter.
pub const DECISION_MARGIN: i32 = 2;

/// Looks for own names used where they should not be: an own mail domain as a bare HELO
/// from an address that is not own, and names one or two letters off an own host or
/// domain (`exarnple.org`), both forgery signs (Postfix's BACKSCATTER_README).
fn weigh_name_abuse(hops: &[JudgedHop], own: &Own, ev: &mut Vec<Evidence>) {
    for h in hops.iter().filter(|h| h.role != HopRole::Ignored) {
        let ip_own = h.hop.from_ip.is_some_and(|ip| own.is_own_ip(ip));
        for name in [h.hop.from_name.as_deref(), h.hop.helo.as_deref()]
            .into_iter()
            .flatten()
        {
            if !ip_own && h.hop.from_ip.is_some() && own.domains.iter().any(|d| d == name) {
                ev.push(Evidence::new(
                    -2,
                    "own-domain-as-helo",
                    format!(
                        "a host at {} greeted with the bare own domain {name}",
                        h.hop.from_ip.map(|i| i.to_string()).unwrap_or_default()
                    ),
                ));
                return;
            }
        }
        for name in [
            h.hop.from_name.as_deref(),
            h.hop.helo.as_deref(),
            h.hop.by.as_deref(),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(near) = misspelt_own_name(name, own) {
                ev.push(Evidence::new(
                    -2,
                    "misspelt-own-name",
                    format!("{name} is a misspelling of own name {near}"),
                ));
                return;
            }
        }
    }
}

/// The own host or domain that `name` is one or two edits away from, if any (names inside
/// an own domain are never misspellings: they are just hosts not listed).
fn misspelt_own_name(name: &str, own: &Own) -> Option<String> {
    if name.len() < 6 || !name.contains('.') || own.is_own_domain(name) || own.is_own_host(name) {
        return None;
    }
    let plain_hosts = own
        .hosts
        .iter()
        .map(|h| h.as_str())
        .filter(|h| !h.contains('*'));
    // A look-alike lives under a registrable domain of its own (`exarnple.org`); a name in the
    // own name's organisation (`usw-sf-list1.sourceforge.net` beside own host
    // `usw-sf-list1-b.sourceforge.net`) is a sister host of it, not a misspelling.
    let org = registrable_domain(name);
    own.domains
        .iter()
        .map(String::as_str)
        .chain(plain_hosts)
        .filter(|o| org.is_none() || registrable_domain(o) != org)
        .find(|o| o.len() >= 6 && (1..=2).contains(&edit_distance(name, o)))
        .map(str::to_string)
}

/// Levenshtein distance, stopping early above 2 (names are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 2 {
        return 3;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Weighs the original's Received chain and identifiers against the user's own
/// hosts, networks and domains. Only hops the bouncer vouches for ([`Anchor`], see
/// [`crate::evidence::received::judge_chain`]) count for the user; any hop may count against.
pub fn weigh(original: &Original, hops: &[JudgedHop], own: &Own, anchor: &Anchor) -> Vec<Evidence> {
    let mut ev = Vec::new();
    weigh_relays(hops, own, anchor, &mut ev);
    weigh_name_abuse(hops, own, &mut ev);
    let has_hops = hops.iter().any(|h| h.role != HopRole::Ignored);
    weigh_ids(original, own, has_hops, &mut ev);
    ev
}

fn weigh_relays(hops: &[JudgedHop], own: &Own, anchor: &Anchor, ev: &mut Vec<Evidence>) {
    let Some(top) = hops.iter().find(|h| h.role != HopRole::Ignored) else {
        return;
    };
    let Some(entry) = hops.iter().find(|h| h.role == HopRole::Entry) else {
        // The top hop claims an own server, and the report was not written here.
        let by = top.hop.by.clone().unwrap_or_default();
        ev.push(Evidence::new(
            0,
            "own-hops-unvouched",
            format!(
                "the top hop claims an own server ({by}), but the bouncer ({}) does not vouch \
                 for it: it could be forged",
                anchor.describe()
            ),
        ));
        return;
    };
    if anchor.own && entry.believed {
        weigh_own_report(entry, ev);
        return;
    }
    let entry_at = hops.iter().position(|h| std::ptr::eq(h, entry));
    if let Some(f) = hops[..entry_at.unwrap_or(0)]
        .iter()
        .find(|h| h.role == HopRole::Untrusted && h.from.own_by.is_some() && h.from.strong)
    {
        // A line in the bouncer's place that the report disowns (received::walk).
        ev.push(Evidence::new(
            -4,
            FORGED_OWN_HOP,
            format!(
                "the top line says {} received it from {}, which is own, but the report says \
                 the bouncer's own line did not come back, and that sender did not record the \
                 hop below: the own line is forged",
                f.hop.by.as_deref().unwrap_or("an unnamed host"),
                describe_from(f)
            ),
        ));
    }
    let by = entry
        .hop
        .by
        .clone()
        .unwrap_or_else(|| "an unnamed host".into());
    let source = describe_from(entry);
    let last_informative = hops.iter().rposition(|h| h.role != HopRole::Ignored);
    let entry_is_bottom = hops.iter().position(|h| std::ptr::eq(h, entry)) == last_informative;
    if !entry.hop.has_from() && !entry_is_bottom {
        ev.push(Evidence::new(
            0,
            "entry-names-no-sender",
            format!("{by} recorded the message without saying where it came from; the hops below cannot be vouched for"),
        ));
        push_forged(hops, &by, "an unnamed sender", ev);
        let touched_own = hops.iter().any(|h| h.by_own || h.from.own_by.is_some());
        if !touched_own && own.relays_configured {
            ev.push(Evidence::new(
                -3,
                "no-own-hop",
                "no hop anywhere in the chain names an own host or network".to_string(),
            ));
        }
        return;
    }
    if !entry.hop.has_from() {
        // A hop with no sender: the message was created (submitted locally) on `by`.
        if own.relays_configured {
            ev.push(Evidence::new(
                -3,
                "created-on-foreign-host",
                format!("the message was created on {by}, which is not an own host"),
            ));
        } else {
            ev.push(Evidence::new(
                -1,
                "created-on-unknown-host",
                format!("the message was created on {by}; no own hosts or networks are configured"),
            ));
        }
        return;
    }
    match (&entry.from.own_by, entry.from.strong) {
        (Some(what), _) if !entry.believed => ev.push(Evidence::new(
            0,
            "own-relay-unvouched",
            format!(
                "{by} says it received it from {source}, which is own ({what}), but the \
                 bouncer ({}) recorded no hop linked to it: anyone could have written it",
                anchor.describe()
            ),
        )),
        (Some(what), true) => ev.push(Evidence::new(
            5,
            "entered-from-own-relay",
            format!(
                "{by}, vouched for by the bouncer, received it from {source}, which is own ({what})"
            ),
        )),
        (Some(what), false) => ev.push(Evidence::new(
            1,
            "entered-from-own-name",
            format!(
                "{by} received it from {source}: own by name only ({what}), no address to confirm"
            ),
        )),
        (None, _) if entry.hop.from_ip.is_some_and(is_internal) && !entry_is_bottom => {
            push_forged(hops, &by, &source, ev);
            ev.push(Evidence::new(
                0,
                "entered-inside-the-site",
                format!(
                    "{by} received it from {source}, an internal address, and where the \
                     site got it from is not recorded"
                ),
            ));
        }
        (None, _) if entry.hop.from_ip.is_some_and(is_internal) => {
            // Nothing below: the message began inside that site (its webmail, an API).
            let (points, tag) = if own.relays_configured {
                (-3, "created-on-foreign-host")
            } else {
                (-1, "created-on-unknown-host")
            };
            ev.push(Evidence::new(
                points,
                tag,
                format!(
                    "the message began inside the site of {by}: it came from {source}, an \
                     internal address, and no hop below says it came from anywhere else"
                ),
            ));
        }
        (None, _) => {
            push_forged(hops, &by, &source, ev);
            if own.relays_configured {
                ev.push(Evidence::new(
                    -3,
                    "entered-from-foreign-host",
                    format!(
                        "{by} received it from {source}, which is none of the own hosts or networks"
                    ),
                ));
            } else {
                ev.push(Evidence::new(
                    -1,
                    "entered-from-unknown-host",
                    format!(
                        "{by} received it from {source}; no own hosts or networks are configured, \
                         so only this machine's name was checked"
                    ),
                ));
            }
        }
    }
    if entry.from.own_name_from_foreign_ip {
        ev.push(Evidence::new(
            -2,
            "own-name-from-foreign-ip",
            format!("{source} greeted with an own name but its address is not own"),
        ));
    }
    if let Some(origin) = hops
        .iter()
        .rev()
        .find(|h| matches!(h.role, HopRole::Own | HopRole::Entry))
    {
        ev.push(Evidence::new(
            0,
            "origin",
            format!("the bottom hop gives the origin: {}", describe_from(origin)),
        ));
    }
}

/// For a report an own server wrote: where did that server get the original? From an own
/// address, by an authenticated submission or on the server itself, it was the user's;
/// from anywhere else, the own server is bouncing mail someone else sent in the user's name.
fn weigh_own_report(entry: &JudgedHop, ev: &mut Vec<Evidence>) {
    let by = entry.hop.by.clone().unwrap_or_default();
    let source = describe_from(entry);
    let how = if entry.from.own_by.is_some() && entry.from.strong {
        Some(format!("from {source}, which is own"))
    } else if !entry.hop.has_from() || entry.hop.from_ip.is_some_and(|ip| ip.is_loopback()) {
        Some("on that server itself".to_string())
    } else if authenticated(&entry.hop.raw) {
        Some(format!("from {source} by an authenticated submission"))
    } else {
        None
    };
    match how {
        Some(how) => ev.push(Evidence::new(
            4,
            "returned-by-own-server",
            format!("an own server ({by}) wrote the report, and it received the original {how}"),
        )),
        None => ev.push(Evidence::new(
            -3,
            "entered-from-foreign-host",
            format!(
                "an own server ({by}) wrote the report, but it received the original from \
                 {source}, which is not own and did not authenticate"
            ),
        )),
    }
}

/// True when a Received line records an authenticated submission (RFC 3848's ESMTPA and
/// ESMTPSA, LMTPA, or Postfix's and Exim's "Authenticated sender" / "authenticated" notes).
fn authenticated(raw: &str) -> bool {
    let lower = raw.to_ascii_lowercase();
    lower.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
        matches!(
            w,
            "esmtpa" | "esmtpsa" | "lmtpa" | "lmtpsa" | "authenticated"
        )
    })
}

/// Flags the first untrusted hop that claims an own server or an own sending address.
fn push_forged(hops: &[JudgedHop], by: &str, source: &str, ev: &mut Vec<Evidence>) {
    let below = hops
        .iter()
        .position(|h| h.role == HopRole::Entry)
        .map_or(0, |i| i + 1);
    let forged = hops[below.min(hops.len())..].iter().find(|h| {
        h.role == HopRole::Untrusted && (h.by_own || (h.from.own_by.is_some() && h.from.strong))
    });
    if let Some(f) = forged {
        let claim = match (&f.hop.by, &f.from.own_by) {
            (Some(b), _) if f.by_own => format!("own server {b}"),
            (_, Some(what)) => format!("an own sender ({what})"),
            _ => "an own server".to_string(),
        };
        ev.push(Evidence::new(
            -4,
            FORGED_OWN_HOP,
            format!(
                "a hop below the entry claims {claim}, but {by} received the message from \
                 {source}, which is not own: the own hop is forged"
            ),
        ));
    }
}

fn describe_from(h: &JudgedHop) -> String {
    let name = h
        .hop
        .from_rdns
        .as_deref()
        .or(h.hop.from_name.as_deref())
        .unwrap_or("an unnamed host");
    match h.hop.from_ip {
        Some(ip) => format!("{name} [{ip}]"),
        None => name.to_string(),
    }
}

fn weigh_ids(original: &Original, own: &Own, has_hops: bool, ev: &mut Vec<Evidence>) {
    if own.message_id_domains.is_empty() {
        return;
    }
    let reference = original.form == Form::Reference;
    let domains: Vec<String> = if reference {
        original
            .references
            .iter()
            .filter_map(|r| id_domain(r))
            .collect()
    } else {
        original.message_id_domain().into_iter().collect()
    };
    if let Some(d) = domains.iter().find(|d| own.is_own_msgid_domain(d)) {
        // The sender writes Message-IDs, In-Reply-To and References: spamware writes them in
        // the forged sender's domain. They may count against the user, never for.
        if reference {
            ev.push(Evidence::new(
                0,
                "reply-to-own-message-id",
                format!(
                    "it answers a message whose ID is in own domain {d} (no proof: the sender \
                     of the original wrote that ID)"
                ),
            ));
        } else {
            ev.push(Evidence::new(
                0,
                "own-message-id",
                format!(
                    "the original's Message-ID is in own domain {d} (no proof: spamware forges it too)"
                ),
            ));
        }
    } else if let Some(d) = domains.first() {
        // Strong when the user named their Message-ID domains; a guess from the
        // mail domains alone (ESPs and clients use their own) counts for less,
        // and never decides on its own.
        let (points, how) = match (own.message_id_domains_configured, has_hops) {
            (true, _) => (-3, "named in message_id_domains"),
            (false, true) => (-2, "guessed from the own domains"),
            (false, false) => (
                -1,
                "guessed from the own domains; no Received hops to confirm",
            ),
        };
        let tag = if own.message_id_domains_configured {
            "foreign-message-id-configured"
        } else {
            "foreign-message-id"
        };
        ev.push(Evidence::new(
            points,
            tag,
            format!("the original's Message-ID domain {d} is not an own Message-ID domain ({how})"),
        ));
    }
    if !reference
        && !own.domains.is_empty()
        && let Some(from) = &original.from
    {
        let domain = from
            .rsplit('<')
            .next()
            .and_then(|a| a.trim_end_matches('>').rsplit_once('@'))
            .map(|(_, d)| d.trim().to_ascii_lowercase());
        if let Some(d) = domain.filter(|d| !own.is_own_domain(d)) {
            // Without hops it only informs: identifiers alone never decide.
            ev.push(Evidence::new(
                if has_hops { -1 } else { 0 },
                "foreign-from",
                format!("the original's From is in {d}, not an own domain"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::own::HostPattern;

    #[test]
    fn misspellings_of_own_names_are_found() {
        let own = Own {
            domains: vec!["example.org".into()],
            hosts: vec![HostPattern::new("mail.example.org")],
            ..Own::default()
        };
        assert_eq!(
            misspelt_own_name("exarnple.org", &own).as_deref(),
            Some("example.org")
        );
        assert_eq!(
            misspelt_own_name("mai1.example.org", &own),
            None,
            "inside an own domain"
        );
        assert_eq!(
            misspelt_own_name("mail.exampel.org", &own).as_deref(),
            Some("mail.example.org")
        );
        assert_eq!(misspelt_own_name("mx.remote.example", &own), None);
        // A sister host in an own host's organisation is no look-alike.
        let own = Own {
            hosts: vec![HostPattern::new("usw-sf-list1-b.sourceforge.net")],
            ..Own::default()
        };
        assert_eq!(
            misspelt_own_name("usw-sf-list1.sourceforge.net", &own),
            None
        );
        assert_eq!(
            misspelt_own_name("usw-sf-list1-b.sourceforqe.net", &own).as_deref(),
            Some("usw-sf-list1-b.sourceforge.net")
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
